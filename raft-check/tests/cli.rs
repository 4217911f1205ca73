//! The command line's contract: its output and its exit status (0 when every
//! Always holds, 1 when one fails or, with --require-examples, a Sometimes
//! has no example, 2 for bad arguments, 130 when interrupted).
//!
//! The output's order is part of the contract: the `Done.` line, then one
//! verdict per property, then each counterexample as a numbered trace with
//! its replay file, then (with `--examples`) the examples.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-check")).args(args).output().expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("an exit status"), text)
}

/// A fresh directory for one test's replay files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raft-check-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The line number of the first line that satisfies `f`.
fn line_of(out: &str, f: impl Fn(&str) -> bool) -> Option<usize> {
    out.lines().position(f)
}

/// The node rows of the block that starts with a line ending in `header`,
/// with runs of spaces collapsed (two reports align their columns to
/// different widths).
fn block_rows(out: &str, header: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.trim_end().ends_with(header))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('n'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(run(&["-m", "nonsense"]).0, 2);
    assert_eq!(run(&["--nodes", "0"]).0, 2);
    assert_eq!(run(&["--depth", "0"]).0, 2);
    assert_eq!(run(&["--replay", "no-such-file.json"]).0, 2);
}

#[test]
fn a_passing_check_prints_done_then_the_verdicts_then_the_examples_and_exits_0() {
    let dir = scratch("passing");
    let dir = dir.to_str().expect("a UTF-8 path");
    let (code, out) = run(&["-m", "check", "--depth", "4", "--threads", "1", "--replay-dir", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("every execution of at most 2 steps"), "{out}");
    for name in ["Election Safety", "Log Matching", "Leader Completeness", "State Machine Safety"] {
        assert!(out.lines().any(|l| l.starts_with("Always") && l.contains(name) && l.contains("holds")), "{out}");
    }
    // Examples only with --examples, and then after every verdict.
    assert!(!out.contains("Example:") && out.contains("--examples prints them"), "{out}");
    let (code, out) = run(&["-m", "check", "--depth", "4", "--threads", "1", "--examples", "--replay-dir", dir]);
    assert_eq!(code, 0, "{out}");
    let done = line_of(&out, |l| l.starts_with("Done. states=")).expect("a Done line");
    let lines: Vec<&str> = out.lines().collect();
    let last_verdict = lines.iter().rposition(|l| l.starts_with("Always") || l.starts_with("Sometimes")).unwrap();
    let first_example = line_of(&out, |l| l.starts_with("Example: ")).expect("an example");
    assert!(done < last_verdict && last_verdict < first_example, "{out}");
    assert!(out.contains("Example: Acknowledgement In Flight, after 2 steps"), "{out}");
    // No counterexample: no replay file.
    assert!(!std::path::Path::new(dir).exists(), "{out}");
    // Some Sometimes are out of reach at depth 4: --require-examples fails.
    assert_eq!(run(&["-m", "check", "--depth", "4", "--threads", "1", "--require-examples"]).0, 1);
}

#[test]
fn depth_1_checks_nothing_and_says_so() {
    let (code, out) = run(&["-m", "check", "--depth", "1", "--threads", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--depth 1 checks no state"), "{out}");
    assert!(!out.contains("holds"), "{out}");
    let verdicts: Vec<&str> = out.lines().filter(|l| l.starts_with("Always") || l.starts_with("Sometimes")).collect();
    assert!(verdicts.len() > 10 && verdicts.iter().all(|l| l.contains("not checked")), "{out}");
    assert!(out.contains("Done. states=1, unique=1, depth=1"), "{out}");
}

/// A broken rule of raft-core (a fault switch): a numbered trace, in node
/// ids from 1, before the examples; a replay file that `--replay` runs on
/// raft-core alone to the same final state.
#[test]
fn a_broken_rule_prints_a_numbered_trace_and_a_replay_file_that_replays() {
    let dir = scratch("fault");
    let dir_text = dir.to_str().expect("a UTF-8 path");
    let args = ["-m", "check", "--depth", "8", "--threads", "1", "--fault", "grant-second-vote"];
    let (code, out) = run(&[&args[..], &["--examples", "--replay-dir", dir_text]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Election Safety              FAILS: counterexample"), "{out}");
    let counterexample = line_of(&out, |l| l.starts_with("Counterexample 1: ")).expect("a counterexample");
    let first_example = line_of(&out, |l| l.starts_with("Example: ")).expect("an example");
    let lines: Vec<&str> = out.lines().collect();
    let last_verdict = lines.iter().rposition(|l| l.starts_with("Sometimes")).unwrap();
    assert!(last_verdict < counterexample && counterexample < first_example, "{out}");
    // The trace: step 0 is the initial state, then numbered steps, each
    // naming its node (from n1) and followed by that node's state.
    let trace: Vec<&str> = out.lines().skip(counterexample).take_while(|l| !l.contains("Final state")).collect();
    assert!(trace.iter().any(|l| l.trim_start().starts_with("0. initial state: n1 starts")), "{out}");
    for k in 1..=6 {
        let at = trace.iter().position(|l| l.trim_start().starts_with(&format!("{k}. n"))).expect("step k");
        let row = trace[at + 1].trim_start();
        assert!(["n1 ", "n2 ", "n3 "].iter().any(|n| row.starts_with(n)), "{out}");
        assert!(row.contains(" t1 ") && row.contains("commit ") && row.contains("log ["), "{out}");
    }
    assert!(trace.iter().any(|l| l.contains(" leader ") && l.contains("match/next")), "{out}");
    assert!(!out.contains("n0") && !out.contains("Replay: ["), "{out}");
    assert!(out.contains("leaders elected so far: n2 in t1, n3 in t1"), "{out}");
    assert!(out.contains("http://127.0.0.1:3000/#/steps/0/"), "{out}");
    assert!(out.contains("?property=Election%20Safety"), "the URL opens the counterexample view: {out}");
    assert!(out.contains("cargo run --release -- -m explore --fault grant-second-vote"), "{out}");
    let file = dir.join("counterexample-election-safety.json");
    assert!(out.contains(&format!("Replay file: {}", file.display())), "{out}");

    let text = std::fs::read_to_string(&file).expect("the replay file is written");
    assert!(text.contains("\"flags\": [\"--fault\",\"grant-second-vote\"]") && text.contains("{\"node\":1"), "{text}");
    let (code, replayed) = run(&["--replay", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{replayed}");
    assert!(replayed.contains("on raft-core alone"), "{replayed}");
    assert!(replayed.contains("live leaders: n2 in t1, n3 in t1"), "{replayed}");
    let checked = block_rows(&out, "Final state, after step 6:");
    assert_eq!(checked.len(), 3, "{out}");
    assert_eq!(block_rows(&replayed, "Final state:"), checked, "{replayed}");
}

#[test]
fn a_failing_adapter_exits_1_with_a_recovery_in_its_trace() {
    let dir = scratch("bug");
    let args = ["--bug", "forget-vote-on-recovery", "--proposals", "none", "--max-term", "1", "--max-log", "2"];
    let dir_text = dir.to_str().unwrap();
    let more = ["-m", "check", "--depth", "11", "--threads", "1", "--heartbeats", "false", "--replay-dir", dir_text];
    let (code, out) = run(&[&more[..], &args[..]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Election Safety              FAILS"), "{out}");
    assert!(out.contains("Counterexample 1: Election Safety FAILS"), "{out}");
    assert!(out.contains("restarts from its storage") && out.contains("  down "), "{out}");
    let file = dir.join("counterexample-election-safety.json");
    let (code, replayed) = run(&["--replay", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{replayed}");
    assert!(
        replayed.contains("found with --proposals none --max-term 1 --max-log 2 --heartbeats false --bug"),
        "{replayed}"
    );
    // One of the two leaders may have crashed since (Election Safety counts
    // it): the final states, a crashed node's storage included, agree.
    let header = out.lines().find(|l| l.contains("Final state, after step")).expect("a final state").trim();
    let checked = block_rows(&out, header);
    assert_eq!(checked.len(), 3, "{out}");
    assert_eq!(block_rows(&replayed, "Final state:"), checked, "{replayed}");
}

/// Ctrl-C stops the search and prints what it reached: no verdict says
/// "holds", and the exit status is 130.
#[cfg(unix)]
#[test]
fn ctrl_c_prints_what_was_reached() {
    // Exhaustive with heartbeats: runs for many minutes if not stopped.
    let mut child = Command::new(env!("CARGO_BIN_EXE_raft-check"))
        .args(["-m", "check", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the first line");
    assert!(first.starts_with("Checking exhaustively"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill runs").success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the rest");
    let status = child.wait().expect("it exits");
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.starts_with("Interrupted. states="), "{rest}");
    assert!(rest.contains("no counterexample so far (interrupted)") && !rest.contains("holds"), "{rest}");
}

#[test]
fn snapshots_flag_adds_the_snapshot_properties() {
    let args = [
        "-m",
        "check",
        "--depth",
        "10",
        "--threads",
        "1",
        "--snapshots",
        "1",
        "--max-term",
        "1",
        "--max-log",
        "2",
        "--examples",
    ];
    let (code, out) = run(&args);
    assert_eq!(code, 0, "{out}");
    for name in ["Restore Keeps Applied", "Snapshot Covers Committed"] {
        assert!(out.lines().any(|l| l.starts_with("Always") && l.contains(name) && l.contains("holds")), "{out}");
    }
    for name in ["Caught Up By Snapshot", "Recovered From Snapshot"] {
        assert!(out.lines().any(|l| l.starts_with("Sometimes") && l.contains(name) && l.contains("found")), "{out}");
    }
    assert!(out.contains("took a snapshot at") && out.contains("InstallSnapshot("), "{out}");
    // Without the flag the model takes no snapshot and has none of them.
    let (_, out) = run(&["-m", "check", "--depth", "4", "--threads", "1", "--examples"]);
    assert!(!out.contains("Restore Keeps Applied") && !out.contains("snapshot"), "{out}");
}
