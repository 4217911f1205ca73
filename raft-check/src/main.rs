//! `raft-check`: see `raft-check --help`.

/// The checker allocates and frees states at a high rate from several
/// threads; mimalloc roughly halves the time glibc's allocator takes there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(raft_check::cli::main());
}
