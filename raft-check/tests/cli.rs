//! The command line's contract: its output and its exit status (0 when every
//! Always holds, 1 when one fails or, with --require-examples, a Sometimes
//! has no example, 2 for bad arguments).

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-check")).args(args).output().expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("an exit status"), text)
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(run(&["-m", "nonsense"]).0, 2);
    assert_eq!(run(&["--nodes", "0"]).0, 2);
    assert_eq!(run(&["--depth", "0"]).0, 2);
}

#[test]
fn a_passing_check_prints_done_and_every_property_and_exits_0() {
    let (code, out) = run(&["-m", "check", "--depth", "4", "--threads", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Done. states="), "{out}");
    for name in ["Election Safety", "Log Matching", "Leader Completeness", "State Machine Safety"] {
        assert!(out.lines().any(|l| l.starts_with("Always") && l.contains(name) && l.contains("holds")), "{out}");
    }
    // Some Sometimes are out of reach at depth 4: --require-examples fails.
    assert_eq!(run(&["-m", "check", "--depth", "4", "--threads", "1", "--require-examples"]).0, 1);
}

#[test]
fn a_failing_always_exits_1_with_its_counterexample_as_raft_core_inputs() {
    let args = ["--bug", "forget-vote-on-recovery", "--proposals", "none", "--max-term", "1", "--max-log", "2"];
    let (code, out) = run(&[&["-m", "check", "--depth", "11", "--heartbeats", "false"][..], &args[..]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Election Safety              FAILS"), "{out}");
    assert!(out.contains("Discovered \"Election Safety\" counterexample"), "{out}");
    assert!(out.contains("recover") && out.contains("Replay: [{\"node\":0"), "{out}");
}

#[test]
fn snapshots_flag_adds_the_snapshot_properties() {
    let args =
        ["-m", "check", "--depth", "10", "--threads", "1", "--snapshots", "1", "--max-term", "1", "--max-log", "2"];
    let (code, out) = run(&args);
    assert_eq!(code, 0, "{out}");
    for name in ["Restore Keeps Applied", "Snapshot Covers Committed"] {
        assert!(out.lines().any(|l| l.starts_with("Always") && l.contains(name) && l.contains("holds")), "{out}");
    }
    for name in ["Caught Up By Snapshot", "Recovered From Snapshot"] {
        assert!(out.lines().any(|l| l.starts_with("Sometimes") && l.contains(name) && l.contains("found")), "{out}");
    }
    assert!(out.contains("TakeSnapshot(") && out.contains("InstallSnapshot("), "{out}");
    // Without the flag the model takes no snapshot and has none of them.
    let (_, out) = run(&["-m", "check", "--depth", "4", "--threads", "1"]);
    assert!(!out.contains("Restore Keeps Applied") && !out.contains("TakeSnapshot"), "{out}");
}
