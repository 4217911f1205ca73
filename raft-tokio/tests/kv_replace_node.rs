//! The README's procedure for replacing a dead node, end to end, with the
//! commands it prints: three `raft-kv serve` processes on 127.0.0.1; node 3
//! is killed for good; then
//!
//! 1. `raft-kv serve --id 4 --config cluster.toml --join --raft … --http …`
//!    starts node 4 empty, as a learner the cluster file does not list;
//! 2. `raft-kv member add --id 4 --raft … --http …` adds it (the leader
//!    catches it up and promotes it to voter by itself);
//! 3. `raft-kv member remove --id 3` removes the dead node.
//!
//! A client writes throughout, and the cluster must acknowledge a write at
//! least every `SERVING_GAP_MAX`. At the end the members are 1, 2 and 4
//! (`raft-kv member list`, `/status` on every node), node 4 holds every
//! acknowledged write, and after node 4 and node 1 restart from their data
//! directories the membership is the same (it is persisted).
//!
//! Every wait is bounded by `PATIENCE`; every loop by a count or a deadline.

use raft_tokio::kv::http::request;
use raft_tokio::kv::server::{MembersBody, StatusBody};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every wait gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// One HTTP request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the cluster may go without acknowledging a write while the
/// procedure runs (an election after node 3's death, if it led, takes well
/// under a second).
const SERVING_GAP_MAX: Duration = Duration::from_secs(5);
/// Most writes the background client makes.
const WRITES_MAX: usize = 100_000;

struct Node {
    id: u64,
    raft: String,
    http: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn raft_kv(dir: &Path, log: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raft-kv"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{log}.log"))).unwrap();
    command.current_dir(dir).env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    command
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    fn spawn(&mut self, i: usize, join: bool) {
        let n = &self.nodes[i];
        let id = n.id.to_string();
        let mut command = raft_kv(self.dir.path(), &format!("n{id}"));
        command.args(["serve", "--id", &id, "--config", "cluster.toml", "--data-dir", &format!("n{id}")]);
        if join {
            command.args(["--join", "--raft", &n.raft, "--http", &n.http]);
        }
        let child = command.stdout(Stdio::null()).spawn().unwrap();
        self.nodes[i].child = Some(child);
    }

    fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Runs a client command of raft-kv to its end; returns its stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = raft_kv(self.dir.path(), "cli").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "raft-kv {args:?} failed: {stdout}");
        stdout
    }

    fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("--- node {} log ---\n{}", n.id, self.log_of(n.id));
            }
        }
    }
}

async fn status(http: &str) -> Option<StatusBody> {
    let r = request(http, "GET", "/status", &[], &[], REQUEST_TIMEOUT).await.ok()?;
    serde_json::from_slice(&r.body).ok()
}

/// Waits until `cond` holds of node `http`'s status.
async fn wait_status(what: &str, http: &str, cond: impl Fn(&StatusBody) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if status(http).await.is_some_and(|s| cond(&s)) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what} at {http}: {:?}", status(http).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the background client saw.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<String>,
    longest_gap: Duration,
}

/// Writes `k{n}` = `v{n}` through nodes 1 and 2 in turn until `stop`.
async fn write_until(endpoints: Vec<String>, stop: Arc<AtomicBool>, writes: Arc<Mutex<Writes>>) {
    let mut last_ack = Instant::now();
    for n in 0..WRITES_MAX {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let http = &endpoints[n % endpoints.len()];
        let key = format!("k{n}");
        let r = request(http.as_str(), "PUT", &format!("/kv/{key}"), &[], format!("v{n}").as_bytes(), REQUEST_TIMEOUT)
            .await;
        let acknowledged = matches!(r, Ok(ref r) if r.status == 204);
        {
            let mut w = writes.lock().unwrap();
            w.longest_gap = w.longest_gap.max(last_ack.elapsed());
            if acknowledged {
                w.acknowledged.push(key);
            }
        }
        if acknowledged {
            last_ack = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_with_three_commands_while_the_cluster_serves() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (1..=4)
        .map(|id| Node {
            id,
            raft: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            child: None,
        })
        .collect();
    let mut text = "cluster_id = \"replace-test\"\n".to_string();
    for n in &nodes[..3] {
        text += &format!("[[node]]\nid = {}\nraft = \"{}\"\nhttp = \"{}\"\n", n.id, n.raft, n.http);
    }
    std::fs::write(dir.path().join("cluster.toml"), text).unwrap();
    let mut c = Cluster { dir, nodes };
    for i in 0..3 {
        c.spawn(i, false);
    }
    let (http1, http2, http4) = (c.nodes[0].http.clone(), c.nodes[1].http.clone(), c.nodes[3].http.clone());
    let endpoint = format!("http://{http1}");
    wait_status("a leader", &http1, |s| s.leader.is_some()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let client = tokio::spawn(write_until(vec![http1.clone(), http2.clone()], stop.clone(), writes.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Node 3 dies for good.
    c.kill(2);
    // 1. Node 4 starts empty and joins.
    c.spawn(3, true);
    wait_status("node 4 serving, as a lone learner", &http4, |s| s.learners == [4]).await;
    // 2. The operator adds it; the leader catches it up and promotes it.
    let (raft4, http4_flag) = (c.nodes[3].raft.clone(), c.nodes[3].http.clone());
    let added =
        c.cli(&["member", "add", "--id", "4", "--raft", &raft4, "--http", &http4_flag, "--endpoint", &endpoint]);
    let added: MembersBody = serde_json::from_str(added.trim()).unwrap();
    assert!(added.learners.contains(&4) || added.voters.contains(&4), "{added:?}");
    wait_status("node 4 promoted", &http1, |s| s.voters == [1, 2, 3, 4] && s.commit_index > 0).await;
    // 3. The operator removes the dead node.
    let removed = c.cli(&["member", "remove", "--id", "3", "--endpoint", &endpoint]);
    let removed: MembersBody = serde_json::from_str(removed.trim()).unwrap();
    assert_eq!(removed.voters, [1, 2, 4], "{removed:?}");

    // The cluster kept serving, and serves on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let (acknowledged, gap) = {
        let w = writes.lock().unwrap();
        (w.acknowledged.clone(), w.longest_gap)
    };
    assert!(gap <= SERVING_GAP_MAX, "no write acknowledged for {gap:?}");
    assert!(acknowledged.len() > 10, "only {} writes acknowledged", acknowledged.len());

    // Every node sees 1, 2, 4; node 4 holds every acknowledged write.
    for http in [&http1, &http2, &http4] {
        wait_status("the new membership", http, |s| s.voters == [1, 2, 4] && s.learners.is_empty()).await;
    }
    let listed: MembersBody = serde_json::from_str(c.cli(&["member", "list", "--endpoint", &endpoint]).trim()).unwrap();
    assert_eq!((listed.voters.as_slice(), listed.committed), (&[1, 2, 4][..], true));
    let four = listed.members.iter().find(|m| m.id == 4).unwrap();
    assert_eq!((four.raft.as_str(), four.http.as_str(), four.role.as_str()), (raft4.as_str(), http4.as_str(), "voter"));
    let check_writes = |http: String, keys: Vec<String>| async move {
        for key in keys {
            let r = request(http.as_str(), "GET", &format!("/kv/{key}"), &[], &[], REQUEST_TIMEOUT).await.unwrap();
            assert_eq!(r.status, 200, "{key} lost at {http}");
            assert_eq!(r.body, format!("v{}", &key[1..]).into_bytes());
        }
    };
    check_writes(http4.clone(), acknowledged.clone()).await;

    // Restarted from their data directories, nodes 4 and 1 keep it.
    c.kill(3);
    c.spawn(3, true);
    c.kill(0);
    c.spawn(0, false);
    for http in [&http1, &http4] {
        wait_status("the membership after a restart", http, |s| s.voters == [1, 2, 4] && s.leader.is_some()).await;
    }
    let tail: Vec<String> = acknowledged.iter().rev().take(20).cloned().collect();
    check_writes(http4.clone(), tail).await;
    assert!(c.log_of(1).contains("membership change committed"), "membership changes are logged at INFO");
    eprintln!(
        "replaced node 3 by node 4 in {:?}: {} writes acknowledged, longest gap {gap:?}",
        started.elapsed(),
        acknowledged.len()
    );
}
