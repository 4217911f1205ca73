//! `raft-check`: see `raft-check --help`.

fn main() {
    std::process::exit(raft_check::cli::main());
}
