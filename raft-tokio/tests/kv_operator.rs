//! raft-kv as an operator meets it: three `raft-kv serve` processes whose
//! cluster file names every address `localhost:PORT` (a host name, resolved
//! when a node binds it, connects to it, and connects again after a peer
//! restarted), with their logs written to files.
//!
//! - The logs have no ANSI colours (stderr is a file, not a terminal), and
//!   show the election: a node logs `elected leader` at INFO with its node
//!   and term.
//! - The cluster id is shown one way: raft-kv's lines and `/status` give
//!   the file's name with the hash raft-tokio's own lines, handshake errors
//!   and storage errors show.
//! - Every error answer is JSON with a message: a body over the limit (413,
//!   naming it), an unknown `consistency=` value or query parameter (400),
//!   an unknown path (404) or method (405).
//! - A follower killed and restarted catches up: the leader reconnects to
//!   it by name.
//!
//! Every server binds the loopback interface (what `localhost` resolves
//! to); every wait is bounded by `PATIENCE`.

use raft_tokio::kv::http::{request, Response};
use raft_tokio::kv::server::{StatusBody, BODY_BYTES_MAX};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every wait gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// One HTTP request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
const CLUSTER_ID: &str = "operator-test";

struct Node {
    id: u64,
    raft: String,
    http: String,
    child: Option<Child>,
}

struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Node>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A cluster file for `nodes` (id, raft, http).
fn cluster_file(cluster_id: &str, nodes: &[(u64, &str, &str)]) -> String {
    let mut text = format!("cluster_id = \"{cluster_id}\"\n");
    for (id, raft, http) in nodes {
        text += &format!("[[node]]\nid = {id}\nraft = \"{raft}\"\nhttp = \"{http}\"\n");
    }
    text
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// `raft-kv serve`, its stderr appended to `<name>.log` in `dir`.
fn serve(dir: &Path, name: &str, id: u64, config: &Path, data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raft-kv"));
    command.args(["serve", "--id", &id.to_string(), "--config"]).arg(config).arg("--data-dir").arg(data);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path(dir, name)).unwrap();
    command.env("RUST_LOG", "info").env_remove("NO_COLOR").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    command
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=3)
            .map(|id| Node {
                id,
                raft: format!("localhost:{}", free_port()),
                http: format!("localhost:{}", free_port()),
                child: None,
            })
            .collect();
        let entries: Vec<(u64, &str, &str)> = nodes.iter().map(|n| (n.id, n.raft.as_str(), n.http.as_str())).collect();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, cluster_file(CLUSTER_ID, &entries)).unwrap();
        let mut cluster = Cluster { dir, config, nodes };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let (dir, id) = (self.dir.path(), self.nodes[i].id);
        let child = serve(dir, &format!("n{id}"), id, &self.config, &dir.join(format!("n{id}"))).spawn().unwrap();
        self.nodes[i].child = Some(child);
    }

    /// SIGKILL: a crash.
    fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(log_path(self.dir.path(), &format!("n{}", self.nodes[i].id))).unwrap_or_default()
    }

    /// The index of the node every running node agrees leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                leaders.push(status(&n.http).await.and_then(|s| s.leader));
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
            for i in 0..self.nodes.len() {
                eprintln!("--- node {} log ---\n{}", self.nodes[i].id, self.log_of(i));
            }
        }
    }
}

async fn status(http: &str) -> Option<StatusBody> {
    let r = request(http, "GET", "/status", &[], &[], REQUEST_TIMEOUT).await.ok()?;
    serde_json::from_slice(&r.body).ok()
}

async fn call(http: &str, method: &str, path: &str, body: &[u8]) -> Response {
    request(http, method, path, &[], body, REQUEST_TIMEOUT).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The answer is `status`, JSON, and its `error` message contains `says`.
fn assert_json_error(r: &Response, status: u16, says: &str) {
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, status, "{text}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{text}");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let message = body["error"].as_str().unwrap_or_else(|| panic!("no error message: {text}"));
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}

/// Retries a write until it is acknowledged (an election may be running).
async fn put(http: &str, key: &str, value: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match request(http, "PUT", &format!("/kv/{key}"), &[], value.as_bytes(), REQUEST_TIMEOUT).await {
            Ok(r) if r.status == 204 => return,
            other => assert!(Instant::now() < deadline, "PUT {key} at {http} never succeeded: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `http`'s own copy of `key` is `value`.
async fn wait_for_local(http: &str, key: &str, value: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let path = format!("/kv/{key}?consistency=local");
        if let Ok(r) = request(http, "GET", &path, &[], &[], REQUEST_TIMEOUT).await {
            if r.status == 200 && r.body == value.as_bytes() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{http} never held {key} = {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_operator_sees_json_errors_plain_logs_one_cluster_id_and_host_names() {
    let mut c = Cluster::start();
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let (leader_http, follower_http) = (c.nodes[leader].http.clone(), c.nodes[follower].http.clone());

    // A write at a follower is forwarded to the leader's HTTP name.
    put(&follower_http, "a", "1").await;
    assert_eq!(call(&leader_http, "GET", "/kv/a", &[]).await.body, b"1");

    // Errors, every one JSON with a message.
    let big = vec![b'x'; BODY_BYTES_MAX + 1];
    assert_json_error(&call(&leader_http, "PUT", "/kv/big", &big).await, 413, &BODY_BYTES_MAX.to_string());
    assert_json_error(&call(&follower_http, "PUT", "/kv/big", &big).await, 413, &BODY_BYTES_MAX.to_string());
    assert_json_error(&call(&leader_http, "POST", "/command", &big).await, 413, &BODY_BYTES_MAX.to_string());
    let r = call(&leader_http, "GET", "/kv/a?consistency=bogus", &[]).await;
    assert_json_error(&r, 400, r#"consistency must be "linearizable" (the default) or "local", not "bogus""#);
    assert_json_error(&call(&leader_http, "GET", "/kv/a?consistency=", &[]).await, 400, "not \"\"");
    assert_json_error(&call(&leader_http, "GET", "/kv/a?consistancy=local", &[]).await, 400, "consistancy");
    let r = call(&leader_http, "GET", "/kv/a?consistency=local&consistency=linearizable", &[]).await;
    assert_json_error(&r, 400, "twice");
    for good in ["", "?consistency=local", "?consistency=linearizable"] {
        let r = call(&follower_http, "GET", &format!("/kv/a{good}"), &[]).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"1"[..]), "GET /kv/a{good}");
    }
    assert_json_error(&call(&leader_http, "GET", "/nope", &[]).await, 404, "no such endpoint: GET /nope");
    assert_json_error(&call(&leader_http, "POST", "/status", &[]).await, 405, "/status does not take POST");
    assert_json_error(&call(&leader_http, "GET", "/kv/missing", &[]).await, 404, "no such key");

    // The cluster id: the file's name and its hash, the same in /status,
    // raft-kv's log line and raft-tokio's.
    let s = status(&leader_http).await.unwrap();
    assert_eq!(s.cluster_id, CLUSTER_ID);
    assert!(s.cluster_hash.starts_with("0x") && s.cluster_hash.len() == 18, "{}", s.cluster_hash);
    assert_eq!(
        s.members.iter().map(|m| m.http.as_str()).collect::<Vec<_>>(),
        c.nodes.iter().map(|n| n.http.as_str()).collect::<Vec<_>>(),
        "as the file names them"
    );
    let log = c.log_of(leader);
    assert!(!log.contains('\x1b'), "no ANSI escapes when stderr is not a terminal:\n{log}");
    let shown = format!("\"{CLUSTER_ID}\" ({})", s.cluster_hash);
    assert!(log.contains(&format!("cluster={shown}")), "raft-kv's line shows {shown}:\n{log}");
    assert!(log.contains(&format!("node {} of cluster {shown} serving HTTP", c.nodes[leader].id)), "{log}");
    let started = log.lines().find(|l| l.contains(" started ")).unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert!(started.contains(&format!("cluster={}", s.cluster_hash)), "raft-tokio's line shows the hash: {started}");
    // The election, at INFO with node and term.
    let elected =
        log.lines().find(|l| l.contains("elected leader")).unwrap_or_else(|| panic!("no election line:\n{log}"));
    assert!(elected.contains(" INFO "), "{elected}");
    assert!(elected.contains(&format!("node=n{}", c.nodes[leader].id)) && elected.contains("term=t"), "{elected}");
    let follower_log = c.log_of(follower);
    assert!(
        follower_log.contains(&format!("follows leader n{}", c.nodes[leader].id)),
        "the follower logs its leader:\n{follower_log}"
    );

    // A stranger from another cluster dials the follower's Raft port: the
    // follower's error shows both ids as everything else does.
    let dir = c.dir.path().to_path_buf();
    let (own_raft, own_http, dead) = (
        format!("localhost:{}", free_port()),
        format!("localhost:{}", free_port()),
        format!("localhost:{}", free_port()),
    );
    let stranger_nodes =
        [(1, own_raft.as_str(), own_http.as_str()), (2, c.nodes[follower].raft.as_str(), dead.as_str())];
    let stranger_config = dir.join("stranger.toml");
    std::fs::write(&stranger_config, cluster_file("stranger", &stranger_nodes)).unwrap();
    let stranger_data = dir.join("stranger");
    let mut stranger = serve(&dir, "stranger", 1, &stranger_config, &stranger_data).spawn().unwrap();
    let stranger_hash = format!("{:#018x}", raft_tokio::kv::cluster_hash("stranger"));
    let refusal = format!("handshake from cluster {stranger_hash}, not this node's cluster {}", s.cluster_hash);
    let deadline = Instant::now() + PATIENCE;
    while !c.log_of(follower).contains(&refusal) {
        assert!(Instant::now() < deadline, "the follower never logged {refusal:?}:\n{}", c.log_of(follower));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    // Its data directory is the stranger's: a node of this cluster started
    // on it is refused, with the ids shown the same way again.
    let mine = format!("{:#018x}", raft_tokio::kv::cluster_hash(CLUSTER_ID));
    let wrong_config = dir.join("wrong.toml");
    std::fs::write(&wrong_config, cluster_file(CLUSTER_ID, &stranger_nodes)).unwrap();
    let mut wrong = serve(&dir, "wrong", 1, &wrong_config, &stranger_data).spawn().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = wrong.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            wrong.kill().unwrap();
            panic!("a node on another cluster's data directory did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let err = std::fs::read_to_string(log_path(&dir, "wrong")).unwrap();
    assert!(!exit.success(), "{err}");
    assert!(err.contains(&format!("node 1 of cluster \"{CLUSTER_ID}\" ({mine}): ")), "{err}");
    assert!(
        err.contains(&format!("belongs to node n1 of cluster {stranger_hash}, but this node is n1 of cluster {mine}")),
        "{err}"
    );

    // A follower killed and restarted: the leader reaches it again by name
    // and it catches up.
    c.kill(follower);
    put(&leader_http, "b", "2").await;
    c.spawn(follower);
    wait_for_local(&follower_http, "b", "2").await;
    wait_for_local(&follower_http, "a", "1").await;
}
