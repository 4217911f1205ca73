//! raft-kv's snapshots, end to end: three `raft-kv serve` processes on
//! 127.0.0.1 with a small `snapshot_every` and few trailing entries.
//!
//! - A follower killed while the others write and compact past its log is
//!   caught up by a snapshot when it comes back, and then holds the
//!   leader's data.
//! - A node killed and restarted loads its own snapshot and replays only the
//!   entries after it; so does the whole cluster restarted at once.
//! - A node whose data directory was wiped, started with
//!   `--initial-cluster-state existing`, refuses to start.
//!
//! Every wait is bounded by `PATIENCE`.

use raft_tokio::kv::http::{percent_encode, request};
use raft_tokio::kv::server::StatusBody;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every wait gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// One HTTP request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// The cluster's snapshot interval and trailing entries: small, so that a
/// few hundred writes compact the log several times.
const SNAPSHOT_EVERY: u64 = 50;
const TRAILING_ENTRIES: u64 = 10;
/// Distinct keys written (rewritten over and over).
const KEYS: usize = 40;

struct Node {
    id: u64,
    http: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Node>,
    /// The value each key was last set to.
    model: BTreeMap<String, String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Writes the cluster file and starts three nodes.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "cluster_id = \"kv-snapshots\"\nsnapshot_every = {SNAPSHOT_EVERY}\ntrailing_entries = {TRAILING_ENTRIES}\n"
        );
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            let (raft, http) = (free_port(), free_port());
            text += &format!("[[node]]\nid = {id}\nraft = \"127.0.0.1:{raft}\"\nhttp = \"127.0.0.1:{http}\"\n");
            nodes.push(Node {
                id,
                http: format!("127.0.0.1:{http}").parse().unwrap(),
                data: dir.path().join(format!("n{id}")),
                log: dir.path().join(format!("n{id}.log")),
                child: None,
            });
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).unwrap();
        let mut cluster = Cluster { dir, config, nodes, model: BTreeMap::new() };
        for i in 0..3 {
            cluster.spawn(i, &[]);
        }
        cluster
    }

    fn command(&self, i: usize, extra: &[&str]) -> Command {
        let n = &self.nodes[i];
        let mut command = Command::new(env!("CARGO_BIN_EXE_raft-kv"));
        command.args(["serve", "--id", &n.id.to_string(), "--config"]).arg(&self.config);
        command.arg("--data-dir").arg(&n.data).args(extra);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log).unwrap();
        command.env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        command
    }

    fn spawn(&mut self, i: usize, extra: &[&str]) {
        assert!(self.nodes[i].child.is_none(), "node {} runs already", i + 1);
        self.nodes[i].child = Some(self.command(i, extra).spawn().unwrap());
    }

    /// SIGKILL: a crash, not a clean shutdown.
    fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The index of the node every running node agrees leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                leaders.push(status(n.http).await.and_then(|s| s.leader));
            }
            if let Some(&Some(l)) = leaders.first() {
                let leader = self.nodes.iter().position(|n| n.id == l).unwrap();
                if leaders.iter().all(|x| *x == Some(l)) && self.nodes[leader].child.is_some() {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "the running nodes agree on no leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `count` values, rewriting the keys round robin, through the
    /// running nodes; each write is retried until it is acknowledged.
    async fn write(&mut self, count: usize, round: &str) {
        let targets: Vec<SocketAddr> = self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.http).collect();
        for w in 0..count {
            let key = format!("key-{}", w % KEYS);
            let value = format!("{round}-{w}");
            put(&targets, &key, &value).await;
            self.model.insert(key, value);
        }
    }

    /// Waits until every running node has applied what the leader has
    /// (`applied_index` counts commands: a new leader's no-op entry is not
    /// one), then checks that each holds exactly the model.
    async fn converge(&self) {
        let leader = self.leader().await;
        let applied = status(self.nodes[leader].http).await.expect("the leader answers").applied_index;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let http = n.http;
            wait_for(&format!("node {} to apply through {applied}", n.id), || async move {
                status(http).await.is_some_and(|s| s.applied_index >= applied)
            })
            .await;
            for (key, value) in &self.model {
                let held = get_local(n.http, key).await;
                assert_eq!(held.as_deref(), Some(value.as_str()), "node {} holds the wrong value of {key}", n.id);
            }
        }
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
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of node {} ({}):", n.id, self.dir.path().display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(http: SocketAddr) -> Option<StatusBody> {
    let r = request(http, "GET", "/status", &[], &[], REQUEST_TIMEOUT).await.ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).expect("/status is JSON"))
}

async fn get_local(http: SocketAddr, key: &str) -> Option<String> {
    let path = format!("/kv/{}?consistency=local", percent_encode(key.as_bytes()));
    let r = request(http, "GET", &path, &[], &[], REQUEST_TIMEOUT).await.expect("the node answers");
    match r.status {
        200 => Some(String::from_utf8(r.body).unwrap()),
        404 => None,
        other => panic!("GET {key} on {http}: {other}"),
    }
}

/// PUTs until a node acknowledges it (a retry of a PUT whose outcome was
/// unknown sets the same value, so it cannot change the outcome).
async fn put(targets: &[SocketAddr], key: &str, value: &str) {
    let path = format!("/kv/{}", percent_encode(key.as_bytes()));
    let deadline = Instant::now() + PATIENCE;
    for attempt in 0.. {
        let node = targets[attempt % targets.len()];
        match request(node, "PUT", &path, &[], value.as_bytes(), REQUEST_TIMEOUT).await {
            Ok(r) if r.status == 204 => return,
            Ok(r) if r.status == 503 || r.status == 504 => {}
            Ok(r) => panic!("PUT {key} on {node}: {} {}", r.status, String::from_utf8_lossy(&r.body)),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "PUT {key} was not acknowledged in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn snapshot_files(data: &Path) -> Vec<String> {
    let dir = data.join(raft_tokio::SNAPSHOT_DIR);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_is_caught_up_by_a_snapshot() {
    let mut c = Cluster::start();
    c.write(20, "before").await;
    c.converge().await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let behind = status(c.nodes[follower].http).await.unwrap();
    c.kill(follower);

    // The two others write on and compact their logs well past the
    // follower's last entry.
    c.write(8 * SNAPSHOT_EVERY as usize, "while-down").await;
    let leader = c.leader().await;
    let l = status(c.nodes[leader].http).await.unwrap();
    assert!(l.snapshot_index > behind.last_log_index, "the leader snapshotted past the follower: {l:?}");
    assert!(l.first_log_index > behind.last_log_index + 1, "the leader compacted past the follower's log: {l:?}");
    assert!(l.last_log_index >= l.first_log_index.saturating_sub(1));

    c.spawn(follower, &[]);
    c.converge().await;
    let f = status(c.nodes[follower].http).await.unwrap();
    assert!(f.snapshots_received >= 1, "the follower installed a leader's snapshot: {f:?}");
    assert!(f.snapshot_index > behind.last_log_index, "{f:?}");
    assert!(f.first_log_index > behind.last_log_index + 1, "its own log starts after the snapshot: {f:?}");
    let l = status(c.nodes[leader].http).await.unwrap();
    assert!(l.snapshots_sent >= 1, "the leader counts the snapshot it sent: {l:?}");
    assert!(c.log_of(follower).contains("state machine restored from a snapshot"));

    // It goes on with entries after the snapshot, like the others.
    c.write(30, "after").await;
    c.converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_loads_its_snapshot_and_replays_only_the_suffix() {
    let mut c = Cluster::start();
    // Not a multiple of the interval, so that a suffix follows the snapshot.
    c.write(5 * SNAPSHOT_EVERY as usize + 17, "first").await;
    c.converge().await;
    let node = (c.leader().await + 2) % 3;
    let before = status(c.nodes[node].http).await.unwrap();
    assert!(before.snapshot_index >= 4 * SNAPSHOT_EVERY, "{before:?}");
    assert!(!snapshot_files(&c.nodes[node].data).is_empty(), "a snapshot file is on disk");

    let restores = |c: &Cluster| c.log_of(node).matches("state machine restored from a snapshot").count();
    let restores_before = restores(&c);
    c.kill(node);
    c.spawn(node, &[]);
    // Right after the restart, before any leader's message could matter,
    // the node already starts from its snapshot: its log begins after the
    // compacted prefix, which it no longer holds and cannot replay.
    let http = c.nodes[node].http;
    wait_for("the restarted node to answer /status", || async move { status(http).await.is_some() }).await;
    let after = status(http).await.unwrap();
    assert_eq!(after.snapshot_index, before.snapshot_index, "{after:?}");
    assert!(after.first_log_index > 1, "{after:?}");
    assert_eq!(after.first_log_index, before.first_log_index, "{after:?}");
    assert_eq!(after.snapshots_received, 0, "restored from its own disk, not from the leader");
    wait_for("the restarted node to restore its snapshot", || {
        let n = restores(&c);
        async move { n > restores_before }
    })
    .await;
    c.converge().await;

    // The whole cluster killed and restarted: every node starts from its
    // own snapshot and its log's suffix.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i, &[]);
    }
    c.converge().await;
    for n in &c.nodes {
        let s = status(n.http).await.unwrap();
        assert!(s.snapshot_index > 0 && s.first_log_index > 1, "node {}: {s:?}", n.id);
    }
    c.write(10, "later").await;
    c.converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_directory_in_an_existing_cluster_is_refused() {
    let mut c = Cluster::start();
    c.write(10, "formed").await;
    c.converge().await;
    let leader = c.leader().await;
    let lost = (leader + 1) % 3;
    c.kill(lost);
    std::fs::remove_dir_all(&c.nodes[lost].data).unwrap();

    let output = c.command(lost, &["--initial-cluster-state", "existing"]).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must refuse to start: {stderr}");
    assert!(stderr.contains("refuses to start as a voter"), "{stderr}");
    assert!(stderr.contains(&c.nodes[lost].data.display().to_string()), "the message names the directory: {stderr}");
    assert!(!c.nodes[lost].data.join(raft_tokio::STORE_FILE).exists(), "nothing was written");
    // Refused again: the refusal left nothing that passes for a state.
    let again = c.command(lost, &["--initial-cluster-state", "existing"]).output().unwrap();
    assert!(!again.status.success());

    // The two others go on.
    c.write(10, "without-it").await;
    c.converge().await;
}
