//! Three nodes as separate OS processes (the `raft-node` binary), killed
//! with SIGKILL and restarted from their data directories: a crash, not a
//! clean shutdown; and paused with SIGSTOP and resumed with SIGCONT.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn committed(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter_map(|l| l.strip_prefix("committed ").map(str::to_string)).collect()
    }
    /// The last leader line: (leader id, role).
    fn leader(&self) -> Option<(String, String)> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.starts_with("leader "))?;
        let parts: Vec<&str> = last.split(' ').collect();
        Some((parts[1].to_string(), parts[3].to_string()))
    }
    fn propose(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").unwrap();
        self.stdin.flush().unwrap();
    }
    /// Every `leader` line so far: (leader id, term, role).
    fn leader_lines(&self) -> Vec<(String, u64, String)> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("leader "))
            .map(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                (parts[0].to_string(), parts[1].parse().unwrap(), parts[2].to_string())
            })
            .collect()
    }
    /// SIGSTOP (`on`) or SIGCONT.
    fn pause(&self, on: bool) {
        let signal = if on { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }
    fn kill(mut self) {
        // A paused process dies of SIGKILL too; resume it anyway so that
        // nothing is left stopped if the kill fails.
        self.pause(false);
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

struct Cluster {
    members: Vec<String>,
    dir: tempfile::TempDir,
    procs: Vec<Option<Proc>>,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        // Learn free ports, then let the nodes bind them.
        let ports: Vec<u16> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
        let members = ports.iter().enumerate().map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1)).collect();
        let mut c = Cluster { members, dir: tempfile::tempdir().unwrap(), procs: Vec::new() };
        for i in 0..n {
            let p = c.spawn(i);
            c.procs.push(Some(p));
        }
        c
    }

    fn spawn(&self, i: usize) -> Proc {
        let data: PathBuf = self.dir.path().join(format!("n{}", i + 1));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raft-node"));
        cmd.arg("--id").arg((i + 1).to_string()).arg("--data-dir").arg(data).arg("--seed").arg(i.to_string());
        for m in &self.members {
            cmd.arg("--member").arg(m);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Proc { child, stdin, lines }
    }

    fn proc(&mut self, i: usize) -> &mut Proc {
        self.procs[i].as_mut().unwrap()
    }

    fn kill(&mut self, i: usize) {
        self.procs[i].take().unwrap().kill();
    }

    fn restart(&mut self, i: usize) {
        assert!(self.procs[i].is_none());
        self.procs[i] = Some(self.spawn(i));
    }

    /// Waits until the running processes agree on a leader; its index.
    fn leader(&self) -> usize {
        wait_until("the processes agree on a leader", || {
            let views: Vec<_> = self.procs.iter().flatten().map(|p| p.leader()).collect();
            let Some(Some((id, _))) = views.first() else { return None };
            if id == "none" || !views.iter().all(|v| v.as_ref().map(|(l, _)| l) == Some(id)) {
                return None;
            }
            let leader = id.parse::<usize>().unwrap() - 1;
            let role = self.procs[leader].as_ref()?.leader()?.1;
            (role == "Leader").then_some(leader)
        })
    }

    /// Waits until every running process delivered `n` entries; checks that
    /// they are the same, in the same order; returns them.
    fn converge(&self, n: usize) -> Vec<String> {
        let running: Vec<&Proc> = self.procs.iter().flatten().collect();
        wait_until(&format!("{n} entries on every process"), || {
            running.iter().all(|p| p.committed().len() >= n).then_some(())
        });
        let first = running[0].committed();
        assert_eq!(first.len(), n, "more entries than proposed");
        for p in &running[1..] {
            assert_eq!(p.committed(), first, "two processes delivered different logs");
        }
        first
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().filter_map(Option::take) {
            p.kill();
        }
    }
}

fn wait_until<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn contains_all(log: &[String], tags: &[String]) {
    for t in tags {
        assert!(log.iter().any(|l| l.ends_with(&format!(" {t}"))), "{t} was committed and is missing");
    }
}

#[test]
fn processes_agree_and_survive_kill_and_restart() {
    let mut c = Cluster::new(3);
    let leader = c.leader();
    let mut proposed = Vec::new();
    for i in 0..3 {
        for k in 0..5 {
            let tag = format!("p{}-{k}", i + 1);
            c.proc(i).propose(&tag);
            proposed.push(tag);
        }
    }
    contains_all(&c.converge(15), &proposed);

    // A follower crashes; the others go on; it comes back with everything.
    let follower = (leader + 1) % 3;
    c.kill(follower);
    for k in 0..5 {
        let tag = format!("follower-down-{k}");
        c.proc(leader).propose(&tag);
        proposed.push(tag);
    }
    c.restart(follower);
    contains_all(&c.converge(20), &proposed);

    // The leader crashes; a new one is elected; it comes back with everything.
    c.kill(leader);
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    for k in 0..5 {
        let tag = format!("leader-down-{k}");
        c.proc(new_leader).propose(&tag);
        proposed.push(tag);
    }
    c.restart(leader);
    let before = c.converge(25);
    contains_all(&before, &proposed);

    // Every process crashes at once; the cluster comes back with everything.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.leader();
    assert_eq!(c.converge(25), before, "the same log after a whole-cluster crash");
}

/// Pre-vote (thesis §9.6): a follower frozen for 3 s (ten election
/// timeouts) times out the moment it resumes, but its pre-vote is refused by
/// nodes that hear from the leader, so it changes no term and the leader
/// stays. Without pre-vote it would stand in a higher term and depose it.
#[test]
fn a_paused_follower_resumes_without_deposing_the_leader() {
    let mut c = Cluster::new(3);
    let leader = c.leader();
    let (_, term, _) = *c.proc(leader).leader_lines().last().unwrap();
    let follower = (leader + 1) % 3;
    c.proc(follower).pause(true);
    std::thread::sleep(Duration::from_secs(3));
    c.proc(follower).pause(false);
    // Long enough for the resumed node's timer to fire, its pre-vote to be
    // refused, and the leader's heartbeats to reach it.
    std::thread::sleep(Duration::from_secs(2));
    c.proc(leader).propose("after-pause");
    c.converge(1);
    for (i, p) in c.procs.iter().enumerate() {
        let p = p.as_ref().unwrap();
        let later: Vec<_> = p.leader_lines().into_iter().filter(|(_, t, _)| *t > term).collect();
        assert!(later.is_empty(), "node {} saw a term after {term}: {later:?}", i + 1);
    }
    let leader_id = (leader + 1).to_string();
    assert_eq!(c.proc(leader).leader(), Some((leader_id.clone(), "Leader".into())), "the leader still leads");
    assert_eq!(c.proc(follower).leader().map(|(l, _)| l), Some(leader_id), "and the resumed node follows it");
}

/// Check-quorum (thesis §6.2): a leader whose two followers are frozen
/// hears from no majority and steps down within two election timeouts
/// (300-600 ms by default), instead of leading a minority for ever.
#[test]
fn a_leader_whose_followers_are_paused_steps_down() {
    let mut c = Cluster::new(3);
    let leader = c.leader();
    let others = [(leader + 1) % 3, (leader + 2) % 3];
    for &i in &others {
        c.proc(i).pause(true);
    }
    let paused = Instant::now();
    let stepped_down = wait_until("the leader steps down", || {
        let role = c.proc(leader).leader()?.1;
        (role != "Leader").then(Instant::now)
    });
    let took = stepped_down - paused;
    for &i in &others {
        c.proc(i).pause(false);
    }
    println!("leader stepped down {took:?} after its followers were paused");
    // Two maximum election timeouts, and slack for a loaded machine and
    // the 25 ms polling.
    assert!(took < Duration::from_millis(600 + 400), "took {took:?}");
    c.leader();
}
