//! A Jepsen-style test of raft-kv: three `raft-kv serve` processes on
//! loopback, concurrent clients doing put, get and compare-and-set on a few
//! keys, and a nemesis that kills nodes with SIGKILL (the leader or any
//! node) and restarts them from their data directories, pauses nodes
//! with SIGSTOP/SIGCONT to force elections, and partitions the network:
//! every directed link between two nodes goes through a TCP proxy in this
//! test (`proxy.rs`), and the nemesis cuts the leader off alone, splits a
//! random node from the other two (a majority and a minority), or cuts the
//! link between two nodes that both still reach the third (a partial
//! partition). After each fault heals, a write must succeed within
//! `SERVING_AGAIN_MAX`; the longest wait is reported. Every operation is recorded
//! with its invocation and return times; at the end each key's history is
//! checked for linearizability (Wing & Gong with Lowe's memoization, see
//! `checker.rs`; operations whose outcome is unknown count as
//! indeterminate), and every acknowledged write to a write-once key must be
//! readable.
//!
//! Every node snapshots its state machine every `SNAPSHOT_EVERY` applied
//! entries and keeps only `TRAILING_ENTRIES` entries before its snapshot,
//! so a node killed and restarted recovers from its snapshot (and the log
//! after it), and one that was down, paused or cut off for more than a few
//! dozen writes is caught up by the leader's snapshot (InstallSnapshot)
//! rather than by entries. Restarted nodes run with
//! `--initial-cluster-state existing`. The report counts the restores and
//! the snapshots installed from a leader (from the nodes' logs).
//!
//! A third run churns the membership instead (`churn_nemesis`): it removes
//! a voter (the leader, when the draw says so: it steps down once the
//! change commits) and kills it, starts a fresh node with `--join`, adds
//! it with `POST /members/add` and waits until the leader has promoted it
//! to voter, `CHURN_ROUNDS` times, with a random member killed and
//! restarted between rounds. Its nodes talk directly (no proxies): the
//! members' addresses travel in the log, so one address per node. The
//! fresh nodes join after the logs were compacted, so they are caught up by
//! the leader's snapshot. Histories must stay linearizable and no
//! acknowledged write may be lost, as in the other runs.
//!
//! `JEPSEN_SECONDS` sets how long the clients run (default 40),
//! `JEPSEN_SEED` the seed (printed either way).

mod checker;
mod proxy;

use checker::{check, Answer, Call, Operation, Value, Verdict};
use raft_tokio::kv::http::{percent_encode, request, HttpError, Response};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const NODES: usize = 3;
/// Membership rounds (remove one voter, add and promote a fresh node) in
/// the churn run; each adds a node slot.
const CHURN_ROUNDS: usize = 2;
/// How long the churn run's clients run by default: two rounds take about
/// ten seconds.
const CHURN_SECONDS: u64 = 20;
/// The longest a membership change (or a promotion) may take in the churn
/// run, retries of a 503 included.
const CHANGE_PATIENCE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 6;
const REGISTER_KEYS: usize = 3;
/// A client gives up on one request after this long; the outcome of a write
/// is then unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a fault heals, the cluster must take a write within this long.
const SERVING_AGAIN_MAX: Duration = Duration::from_secs(10);
/// Each node snapshots after this many applied entries.
const SNAPSHOT_EVERY: u64 = 100;
/// Entries kept before a snapshot's index: a follower further behind gets
/// the snapshot.
const TRAILING_ENTRIES: u64 = 20;
/// The node processes' log filter: warnings, and the snapshot lines the
/// report counts.
const NODE_LOG_FILTER: &str = "warn,raft_tokio::transfer=info,raft_tokio::driver=info";

/// Only one Jepsen run at a time: each starts three processes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Node {
    id: usize,
    /// Its own Raft address.
    raft: SocketAddr,
    http: SocketAddr,
    /// Removed from the cluster (and stopped for good).
    removed: bool,
    child: Option<Child>,
    paused: bool,
    /// Whether it was started before: later starts say the cluster exists.
    started: bool,
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// The proxy of every directed link (from, to), by node index.
    links: BTreeMap<(usize, usize), proxy::Link>,
    unsafe_reads: bool,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    l.local_addr().expect("bound")
}

impl Cluster {
    /// `NODES` nodes, and `joiners` slots for nodes the churn run adds.
    /// With joiners, nodes talk directly, without proxies (see the module
    /// documentation).
    async fn start(unsafe_reads: bool, joiners: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        let mut rafts = Vec::new();
        for id in 1..=NODES + joiners {
            rafts.push(free_addr());
            let (raft, http) = (rafts[id - 1], free_addr());
            nodes.push(Node { id, raft, http, removed: false, child: None, paused: false, started: false });
        }
        let mut links = BTreeMap::new();
        for from in 0..NODES {
            for to in (0..NODES).filter(|&to| to != from && joiners == 0) {
                links.insert((from, to), proxy::Link::start(rafts[to]).await);
            }
        }
        // Each node's own cluster file: its own address, and its peers'
        // proxies on the links from it.
        for from in 0..NODES {
            let mut toml = format!(
                "cluster_id = \"jepsen\"\nsnapshot_every = {SNAPSHOT_EVERY}\ntrailing_entries = {TRAILING_ENTRIES}\n"
            );
            for (to, node) in nodes.iter().enumerate().take(NODES) {
                let raft = if to == from || joiners > 0 { rafts[to] } else { links[&(from, to)].addr };
                toml.push_str(&format!("[[node]]\nid = {}\nraft = \"{raft}\"\nhttp = \"{}\"\n", node.id, node.http));
            }
            std::fs::write(dir.path().join(format!("cluster-{}.toml", from + 1)), toml).expect("write a cluster file");
        }
        let mut cluster = Cluster { dir, nodes, links, unsafe_reads };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let file = id.min(NODES); // a joiner reads node 3's file: the initial members
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_raft-kv"));
        command
            .args(["serve", "--id", &id.to_string(), "--config"])
            .arg(self.dir.path().join(format!("cluster-{file}.toml")))
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("n{id}")))
            .env("RUST_LOG", NODE_LOG_FILTER)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if i >= NODES {
            let (raft, http) = (self.nodes[i].raft.to_string(), self.nodes[i].http.to_string());
            command.args(["--join", "--raft", &raft, "--http", &http]);
        }
        if self.unsafe_reads {
            command.env(raft_tokio::kv::server::UNSAFE_LOCAL_READS_ENV, "1");
        }
        if self.nodes[i].started {
            // Its data directory holds its state: an empty one would mean a
            // lost disk, which must be refused.
            command.args(["--initial-cluster-state", "existing"]);
        }
        self.nodes[i].started = true;
        self.nodes[i].child = Some(command.spawn().expect("spawn raft-kv"));
        self.nodes[i].paused = false;
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            if self.nodes[i].paused {
                signal(&child, "CONT").await;
            }
            let _ = child.kill().await;
        }
    }

    async fn pause(&mut self, i: usize, on: bool) {
        if let Some(child) = &self.nodes[i].child {
            signal(child, if on { "STOP" } else { "CONT" }).await;
            self.nodes[i].paused = on;
        }
    }

    /// The node that says it leads, if exactly one running node does.
    async fn leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.child.is_none() || n.paused {
                continue;
            }
            if let Ok(r) = request(n.http, "GET", "/status", &[], &[], Duration::from_millis(500)).await {
                if String::from_utf8_lossy(&r.body).contains("\"role\":\"leader\"") {
                    leaders.push(i);
                }
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    async fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader().await {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within 30 s; node logs in {}", self.dir.path().display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cuts (or heals) both directions between `a` and `b`.
    fn cut(&self, a: usize, b: usize, on: bool) {
        self.links[&(a, b)].set_cut(on);
        self.links[&(b, a)].set_cut(on);
    }

    /// The nodes that are members and started (the live cluster).
    fn members(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].started && !self.nodes[i].removed).collect()
    }

    /// Cuts (or heals) every link of node `a`.
    fn isolate(&self, a: usize, on: bool) {
        for b in (0..NODES).filter(|&b| b != a) {
            self.cut(a, b, on);
        }
    }

    async fn heal(&mut self) {
        for link in self.links.values() {
            link.set_cut(false);
        }
        for i in self.members() {
            if self.nodes[i].paused {
                self.pause(i, false).await;
            }
            if self.nodes[i].child.is_none() {
                self.spawn(i);
            }
        }
    }
}

async fn signal(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().await;
    }
}

/// What the nemesis did, for the report.
#[derive(Default, Debug)]
struct Faults {
    leader_kills: u32,
    random_kills: u32,
    pauses: u32,
    /// The leader cut off alone.
    leader_isolations: u32,
    /// A random node cut off from the other two.
    splits: u32,
    /// The link between two nodes cut, both still reaching the third.
    partial_partitions: u32,
    /// Voters removed (and stopped for good) by the churn run.
    removed: u32,
    /// Of those, how many led when removed.
    removed_leaders: u32,
    /// Fresh nodes added, and seen promoted to voter.
    added: u32,
    promoted: u32,
    /// The longest time from a heal until a write succeeded.
    longest_unavailable: Duration,
}

/// Waits until a write succeeds at some node; how long that took. Panics
/// past `SERVING_AGAIN_MAX`.
async fn wait_serving(http: &[SocketAddr], probe: u64) -> Duration {
    let healed = Instant::now();
    for attempt in 0usize.. {
        let node = http[attempt % http.len()];
        let path = format!("/kv/probe-{probe}");
        let r = request(node, "PUT", &path, &[], b"p", Duration::from_secs(1)).await;
        if matches!(&r, Ok(resp) if resp.status == 204) {
            break;
        }
        assert!(healed.elapsed() < SERVING_AGAIN_MAX, "no write succeeded within {SERVING_AGAIN_MAX:?} of a heal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    healed.elapsed()
}

async fn nemesis(cluster: Arc<tokio::sync::Mutex<Cluster>>, seed: u64, until: Instant) -> Faults {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e656d);
    let mut faults = Faults::default();
    let http: Vec<SocketAddr> = cluster.lock().await.nodes.iter().map(|n| n.http).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut probes = 0;
    while Instant::now() + Duration::from_secs(4) < until {
        let down = Duration::from_millis(rng.random_range(500..2500));
        let choice = rng.random_range(0..6);
        let target = match choice {
            0 | 3 => cluster.lock().await.leader().await,
            _ => Some(rng.random_range(0..NODES)),
        };
        let Some(target) = target else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        match choice {
            0 | 1 => {
                if choice == 0 {
                    faults.leader_kills += 1
                } else {
                    faults.random_kills += 1
                }
                cluster.lock().await.kill(target).await;
                tokio::time::sleep(down).await;
                cluster.lock().await.spawn(target);
            }
            2 => {
                faults.pauses += 1;
                cluster.lock().await.pause(target, true).await;
                tokio::time::sleep(down).await;
                cluster.lock().await.pause(target, false).await;
            }
            3 | 4 => {
                if choice == 3 {
                    faults.leader_isolations += 1
                } else {
                    faults.splits += 1
                }
                cluster.lock().await.isolate(target, true);
                tokio::time::sleep(down).await;
                cluster.lock().await.isolate(target, false);
            }
            _ => {
                faults.partial_partitions += 1;
                let other = (target + rng.random_range(1..NODES)) % NODES;
                cluster.lock().await.cut(target, other, true);
                tokio::time::sleep(down).await;
                cluster.lock().await.cut(target, other, false);
            }
        }
        probes += 1;
        faults.longest_unavailable = faults.longest_unavailable.max(wait_serving(&http, probes).await);
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
    }
    faults
}

/// Posts a membership change to the live members in turn until one answers
/// 200 (a 503 means nothing changed: no leader known, or busy); panics past
/// `CHANGE_PATIENCE` or on any other answer.
async fn change(members: &[SocketAddr], path: &str, body: serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + CHANGE_PATIENCE;
    let body = body.to_string();
    for attempt in 0usize.. {
        let node = members[attempt % members.len()];
        match request(node, "POST", path, &[], body.as_bytes(), Duration::from_secs(12)).await {
            Ok(r) if r.status == 200 => return serde_json::from_slice(&r.body).expect("a change answers JSON"),
            Ok(r) if r.status == 503 || r.status == 504 => {}
            Ok(r) => panic!("{path} {body}: {} {}", r.status, String::from_utf8_lossy(&r.body)),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "{path} {body} not done within {CHANGE_PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// Waits until some live member's `/status` shows node `id` as a voter.
async fn wait_voter(members: &[SocketAddr], id: usize) {
    let deadline = Instant::now() + CHANGE_PATIENCE;
    for attempt in 0usize.. {
        let node = members[attempt % members.len()];
        if let Ok(r) = request(node, "GET", "/status", &[], &[], Duration::from_secs(1)).await {
            if let Ok(s) = serde_json::from_slice::<raft_tokio::kv::server::StatusBody>(&r.body) {
                if s.voters.contains(&(id as u64)) {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "node {id} not promoted within {CHANGE_PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The churn run's nemesis: `CHURN_ROUNDS` times, remove a voter (the
/// leader or a random one) and stop it for good, start a fresh node, add
/// it, wait for its promotion; between rounds, kill and restart a random
/// member.
async fn churn_nemesis(cluster: Arc<tokio::sync::Mutex<Cluster>>, seed: u64) -> Faults {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x636875);
    let mut faults = Faults::default();
    let http: Vec<SocketAddr> = cluster.lock().await.nodes.iter().map(|n| n.http).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for round in 0..CHURN_ROUNDS {
        let members = cluster.lock().await.members();
        let leader = cluster.lock().await.leader().await;
        let victim = match leader {
            Some(l) if rng.random_range(0..2) == 0 => l,
            _ => members[rng.random_range(0..members.len())],
        };
        let live: Vec<SocketAddr> = members.iter().map(|&i| http[i]).collect();
        let id = cluster.lock().await.nodes[victim].id;
        let answer = change(&live, "/members/remove", serde_json::json!({ "id": id })).await;
        assert!(!answer["voters"].as_array().expect("voters").contains(&serde_json::json!(id)), "{answer}");
        faults.removed += 1;
        faults.removed_leaders += u32::from(leader == Some(victim));
        {
            let mut c = cluster.lock().await;
            c.kill(victim).await;
            c.nodes[victim].removed = true;
        }
        let fresh = NODES + round;
        let (fresh_id, raft, fresh_http) = {
            let mut c = cluster.lock().await;
            c.spawn(fresh);
            let n = &c.nodes[fresh];
            (n.id, n.raft.to_string(), n.http.to_string())
        };
        let live: Vec<SocketAddr> = cluster.lock().await.members().iter().map(|&i| http[i]).collect();
        change(&live, "/members/add", serde_json::json!({ "id": fresh_id, "raft": raft, "http": fresh_http })).await;
        faults.added += 1;
        wait_voter(&live, fresh_id).await;
        faults.promoted += 1;
        faults.longest_unavailable = faults.longest_unavailable.max(wait_serving(&live, round as u64).await);
        if round + 1 < CHURN_ROUNDS {
            let members = cluster.lock().await.members();
            let target = members[rng.random_range(0..members.len())];
            faults.random_kills += 1;
            cluster.lock().await.kill(target).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
            cluster.lock().await.spawn(target);
            faults.longest_unavailable = faults.longest_unavailable.max(wait_serving(&live, 100 + round as u64).await);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..2000))).await;
    }
    faults
}

type History = Arc<Mutex<Vec<Operation>>>;

/// Acknowledged writes to write-once keys: key -> value.
type Durable = Arc<Mutex<BTreeMap<String, String>>>;

fn value_of(body: &[u8]) -> Value {
    Some(body.to_vec())
}

/// What a response means for the history; `None`: the operation certainly
/// had no effect (a read that failed, a write refused before it was
/// proposed), so it is left out.
fn answer_of(call: &Call, result: &Result<Response, HttpError>) -> Option<Answer> {
    let response = match result {
        Err(HttpError::Connect(_)) => return None,
        Err(_) => return matches!(call, Call::Get).not_then(Answer::Unknown),
        Ok(r) => r,
    };
    match (call, response.status) {
        (Call::Get, 200) => Some(Answer::Read(value_of(&response.body))),
        (Call::Get, 404) => Some(Answer::Read(None)),
        (Call::Get, _) => None,
        (Call::Put(_), 204) => Some(Answer::Written),
        (Call::Cas { .. }, 200) => Some(Answer::Swapped),
        (Call::Cas { .. }, 409) => {
            let v: serde_json::Value = serde_json::from_slice(&response.body).expect("409 carries JSON");
            Some(Answer::NotSwapped(v["current"].as_str().map(|s| s.as_bytes().to_vec())))
        }
        (_, 503) => None,
        (_, 504) => Some(Answer::Unknown),
        (call, status) => {
            panic!("unexpected answer {status} to {call:?}: {:?}", String::from_utf8_lossy(&response.body))
        }
    }
}

trait NotThen {
    fn not_then<T>(self, t: T) -> Option<T>;
}
impl NotThen for bool {
    fn not_then<T>(self, t: T) -> Option<T> {
        (!self).then_some(t)
    }
}

async fn client(
    c: usize,
    http: Vec<SocketAddr>,
    seed: u64,
    start: Instant,
    until: Instant,
    history: History,
    durable: Durable,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(c as u64 * 7919));
    let mut n = 0u64;
    let mut last_seen: Value = None;
    while Instant::now() < until {
        n += 1;
        let node = http[rng.random_range(0..http.len())];
        if n.is_multiple_of(5) {
            let key = format!("d-{c}-{n}");
            let value = format!("v{c}-{n}");
            let path = format!("/kv/{key}");
            let r = request(node, "PUT", &path, &[], value.as_bytes(), CLIENT_TIMEOUT).await;
            if matches!(&r, Ok(resp) if resp.status == 204) {
                durable.lock().unwrap().insert(key, value);
            }
            continue;
        }
        let key = format!("k{}", rng.random_range(0..REGISTER_KEYS));
        let unique = format!("c{c}-{n}").into_bytes();
        let call = match rng.random_range(0..10) {
            0..=3 => Call::Get,
            4..=7 => Call::Put(Some(unique.clone())),
            _ => Call::Cas { expected: last_seen.clone(), new: Some(unique.clone()) },
        };
        let path = format!("/kv/{}", percent_encode(key.as_bytes()));
        let invoked = start.elapsed().as_micros() as u64;
        let result = match &call {
            Call::Get => request(node, "GET", &path, &[], &[], CLIENT_TIMEOUT).await,
            Call::Put(v) => request(node, "PUT", &path, &[], v.as_deref().unwrap_or(&[]), CLIENT_TIMEOUT).await,
            Call::Cas { expected, new } => {
                let s = |v: &Value| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                let body = serde_json::json!({"expected": s(expected), "new": s(new)}).to_string();
                request(node, "POST", &format!("{path}/cas"), &[], body.as_bytes(), CLIENT_TIMEOUT).await
            }
        };
        let returned = start.elapsed().as_micros() as u64;
        if let Some(answer) = answer_of(&call, &result) {
            if let Answer::Read(v) | Answer::NotSwapped(v) = &answer {
                last_seen = v.clone();
            }
            history.lock().unwrap().push(Operation { key: key.into_bytes(), call, answer, invoked, returned });
        }
        if result.is_err() || result.as_ref().is_ok_and(|r| r.status >= 500) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the whole test; returns the checker's verdict. `churn`: the
/// membership nemesis instead of the faults one.
async fn run(seconds: u64, seed: u64, unsafe_reads: bool, churn: bool) -> Verdict {
    let _one = ONE_AT_A_TIME.lock().await;
    println!("jepsen: seed {seed} (JEPSEN_SEED={seed} replays the client and nemesis choices), {seconds} s");
    let cluster = Cluster::start(unsafe_reads, if churn { CHURN_ROUNDS } else { 0 }).await;
    cluster.wait_for_leader().await;
    let http: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let logs: PathBuf = cluster.dir.path().to_path_buf();
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let history: History = Arc::default();
    let durable: Durable = Arc::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        clients.push(tokio::spawn(client(c, http.clone(), seed, start, until, history.clone(), durable.clone())));
    }
    let faults =
        if churn { churn_nemesis(cluster.clone(), seed).await } else { nemesis(cluster.clone(), seed, until).await };
    for c in clients {
        c.await.expect("client task");
    }
    let mut cluster = Arc::try_unwrap(cluster).ok().expect("nemesis done").into_inner();
    cluster.heal().await;
    cluster.wait_for_leader().await;
    let live: Vec<SocketAddr> = cluster.members().iter().map(|&i| http[i]).collect();
    let acknowledged = durable.lock().unwrap().clone();
    check_durable(&live, &acknowledged, &logs, unsafe_reads).await;
    let history = history.lock().unwrap().clone();
    report(&history, &faults, durable.lock().unwrap().len());
    check_snapshots(&live, &logs, &faults, history.len()).await;
    if churn {
        check_churn(&cluster, &faults).await;
    }
    check(&history)
}

/// Every node took snapshots; restarted nodes restored theirs. Counts the
/// restores and the snapshots installed from a leader in the nodes' logs.
async fn check_snapshots(http: &[SocketAddr], logs: &Path, faults: &Faults, operations: usize) {
    let mut indexes = Vec::new();
    for &node in http {
        // A node the heal just restarted may not listen yet: bounded retries.
        let mut attempts = 0;
        let r = loop {
            match request(node, "GET", "/status", &[], &[], CLIENT_TIMEOUT).await {
                Ok(r) => break r,
                Err(e) if attempts >= 100 => panic!("node {node} does not answer /status within 10 s: {e:?}"),
                Err(_) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let status: raft_tokio::kv::server::StatusBody = serde_json::from_slice(&r.body).expect("/status is JSON");
        indexes.push((status.snapshot_index, status.first_log_index, status.last_log_index));
    }
    let (mut restores, mut installs) = (0, 0);
    for id in 1..=NODES + CHURN_ROUNDS {
        let log = std::fs::read_to_string(logs.join(format!("node-{id}.log"))).unwrap_or_default();
        restores += log.matches("the application restores a snapshot").count();
        installs += log.matches("snapshot received and installed").count();
    }
    println!(
        "jepsen: snapshots every {SNAPSHOT_EVERY} entries; (snapshot index, first, last log index) per node at \
         the end: {indexes:?}; {restores} restores, {installs} snapshots installed from a leader"
    );
    // A short run (JEPSEN_SECONDS) may not reach a snapshot; the default does.
    if operations > 2000 {
        for (i, (snapshot, _, _)) in indexes.iter().enumerate() {
            assert!(*snapshot > 0, "node {} never took a snapshot; logs in {}", i + 1, logs.display());
        }
        if faults.leader_kills + faults.random_kills > 0 {
            assert!(restores > 0, "no restarted node restored a snapshot; logs in {}", logs.display());
        }
    }
}

/// Every acknowledged write-once key must be readable, with its value.
/// With `unsafe_reads` (the deliberate bug: reads served from a node's local
/// state) a node still catching up answers 404 for a key it has not applied
/// yet; that is the bug under test, not a lost write, so a 404 is retried
/// (at the other nodes, and later) before it counts.
async fn check_durable(http: &[SocketAddr], durable: &BTreeMap<String, String>, logs: &Path, unsafe_reads: bool) {
    for (key, value) in durable {
        let mut answer = None;
        for attempt in 0..50 {
            let node = http[attempt % http.len()];
            if let Ok(r) = request(node, "GET", &format!("/kv/{key}"), &[], &[], CLIENT_TIMEOUT).await {
                let stale_miss = unsafe_reads && r.status == 404 && attempt < 49;
                if (r.status == 200 || r.status == 404) && !stale_miss {
                    answer = Some(r);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = answer.unwrap_or_else(|| panic!("no answer reading {key}; logs in {}", logs.display()));
        assert_eq!(
            (r.status, String::from_utf8_lossy(&r.body).into_owned()),
            (200, value.clone()),
            "acknowledged write {key}={value} lost"
        );
    }
}

/// After the churn run: every live member shows the membership the
/// nemesis made (the initial voters less those removed, and the nodes
/// added, all voters), and each node added was caught up (by the leader's
/// snapshot: the logs were compacted long before it joined).
async fn check_churn(cluster: &Cluster, faults: &Faults) {
    let expected: Vec<u64> = cluster.members().iter().map(|&i| cluster.nodes[i].id as u64).collect();
    for &i in &cluster.members() {
        let deadline = Instant::now() + CHANGE_PATIENCE;
        loop {
            let r = request(cluster.nodes[i].http, "GET", "/status", &[], &[], CLIENT_TIMEOUT).await;
            let status =
                r.ok().and_then(|r| serde_json::from_slice::<raft_tokio::kv::server::StatusBody>(&r.body).ok());
            if status.as_ref().is_some_and(|s| s.voters == expected && s.learners.is_empty()) {
                break;
            }
            assert!(Instant::now() < deadline, "node {} shows {status:?}, not voters {expected:?}", i + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut installed = Vec::new();
    for n in &cluster.nodes[NODES..] {
        let log = std::fs::read_to_string(cluster.dir.path().join(format!("node-{}.log", n.id))).unwrap_or_default();
        installed.push(log.matches("snapshot received and installed").count());
    }
    println!(
        "jepsen churn: {} voters removed ({} of them leaders), {} fresh nodes added and {} promoted; members at the \
         end {expected:?}; snapshots installed by each fresh node: {installed:?}",
        faults.removed, faults.removed_leaders, faults.added, faults.promoted
    );
    assert_eq!((faults.added, faults.promoted), (CHURN_ROUNDS as u32, CHURN_ROUNDS as u32));
}

fn report(history: &[Operation], faults: &Faults, durable: usize) {
    let count = |f: &dyn Fn(&Operation) -> bool| history.iter().filter(|o| f(o)).count();
    println!(
        "jepsen: {} operations checked ({} reads, {} writes, {} cas; {} indeterminate), {durable} write-once keys \
         acknowledged; faults: {} leader kills, {} random kills, {} pauses, {} leader isolations, {} splits, {} \
         partial partitions; longest wait for a write after a heal: {:?}",
        history.len(),
        count(&|o| o.call == Call::Get),
        count(&|o| matches!(o.call, Call::Put(_))),
        count(&|o| matches!(o.call, Call::Cas { .. })),
        count(&|o| o.answer == Answer::Unknown),
        faults.leader_kills,
        faults.random_kills,
        faults.pauses,
        faults.leader_isolations,
        faults.splits,
        faults.partial_partitions,
        faults.longest_unavailable,
    );
}

fn seed() -> u64 {
    std::env::var("JEPSEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    })
}

fn seconds(default: u64) -> u64 {
    std::env::var("JEPSEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_kv_is_linearizable_under_kills_pauses_and_partitions() {
    let verdict = run(seconds(40), seed(), false, false).await;
    assert_eq!(verdict, Verdict::Linearizable);
}

/// Membership churn during the run: voters removed (the leader among them
/// when the draw says so), fresh nodes joined, added and promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_kv_is_linearizable_while_members_are_removed_added_and_promoted() {
    let verdict = run(seconds(CHURN_SECONDS), seed(), false, true).await;
    assert_eq!(verdict, Verdict::Linearizable);
}

/// The test can fail: with reads served from local state (no ReadIndex),
/// the checker must find a non-linearizable history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_stale_reads_from_local_state() {
    let verdict = run(seconds(40).min(20), seed(), true, false).await;
    println!("jepsen (reads from local state, a deliberate bug): {verdict:?}");
    assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "stale reads went unnoticed");
}
