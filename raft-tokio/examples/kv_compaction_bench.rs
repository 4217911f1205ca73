//! What snapshots buy raft-kv: a 3-node cluster on disk, each node its own
//! process, after `--writes` writes of `--value-bytes` values to `--keys`
//! keys rewritten round robin (so the live data stays small while the log
//! grows). Measured at the end: the disk each node's data directory uses,
//! each node process's resident memory (VmRSS, and its peak VmHWM), and how
//! long a follower killed with SIGKILL takes to restart: until it answers
//! HTTP, and until it has applied everything the leader has.
//!
//! `cargo run --release -p raft-tokio --example kv_compaction_bench -- --writes 1000000 --snapshot-every 10000`
//! (and `--snapshot-every 0` for no snapshots). Prints one line of figures.
//!
//! Writes go to the leader over HTTP/1.1 keep-alive connections, one per
//! client, each client with its own session (`x-client-id`, so the
//! snapshot carries a sessions table too). The nodes are this same
//! executable, started again with `--node ID`.

use clap::Parser;
use raft_tokio::kv::config::ClusterFile;
use raft_tokio::kv::http::request;
use raft_tokio::kv::server::StatusBody;
use raft_tokio::kv::KvNode;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Writes in all.
    #[arg(long, default_value_t = 1_000_000)]
    writes: u64,
    /// Distinct keys, rewritten round robin.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes in each value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// The cluster file's snapshot_every (0: no snapshots).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// The cluster file's trailing_entries.
    #[arg(long, default_value_t = 1024)]
    trailing_entries: u64,
    /// Where the data directories go (default: a new directory under the
    /// system's temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: run node ID of the cluster file --config in --data-dir.
    #[arg(long, hide = true)]
    node: Option<u64>,
    #[arg(long, hide = true)]
    config: Option<PathBuf>,
    #[arg(long, hide = true)]
    data_dir: Option<PathBuf>,
}

/// Every wait of the benchmark gives up after this long.
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(id) = args.node {
        return run_node(id, args.config.expect("--config"), args.data_dir.expect("--data-dir")).await;
    }
    let scratch = args.dir.is_none();
    let dir =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("kv-compaction-{}", std::process::id())));
    std::fs::create_dir_all(&dir).expect("the benchmark directory");
    let mut cluster = Cluster::start(&args, &dir);
    let leader = cluster.leader().await;
    let started = Instant::now();
    let failed = write_all(&args, cluster.nodes[leader].http).await;
    let write_secs = started.elapsed().as_secs_f64();
    let applied = cluster.converge(leader).await;
    // Let the last snapshot's file replace the previous one.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut disk = Vec::new();
    let mut rss = Vec::new();
    for n in &cluster.nodes {
        disk.push(disk_bytes(&n.data));
        rss.push(memory_kib(n.child.as_ref().expect("running").id()));
    }
    let follower = (leader + 1) % 3;
    let before = status(cluster.nodes[follower].http).await.expect("the follower answers");
    let (ready, caught_up) = cluster.restart(follower, applied).await;
    let after_rss = memory_kib(cluster.nodes[follower].child.as_ref().expect("running").id());

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let disks: Vec<String> = disk.iter().map(|&b| format!("{:.1}", mib(b))).collect();
    let rsss: Vec<String> =
        rss.iter().map(|(r, h)| format!("{:.0}/{:.0}", *r as f64 / 1024.0, *h as f64 / 1024.0)).collect();
    println!(
        "raft-kv compaction, 3 nodes on disk, snapshot_every {} trailing {}: {} writes of {} B to {} keys by {} clients in {:.1} s ({:.0}/s, {} retried); \
         disk MiB per node [{}]; RSS/peak MiB per node [{}]; follower log {}..{} snapshot {}; \
         restart of a follower: HTTP up in {:.2} s, caught up in {:.2} s ({} entries replayed after its snapshot), \
         RSS after {:.0} MiB",
        args.snapshot_every,
        args.trailing_entries,
        args.writes,
        args.value_bytes,
        args.keys,
        args.clients,
        write_secs,
        args.writes as f64 / write_secs,
        failed,
        disks.join(", "),
        rsss.join(", "),
        before.first_log_index,
        before.last_log_index,
        before.snapshot_index,
        ready.as_secs_f64(),
        caught_up.as_secs_f64(),
        before.last_log_index - before.snapshot_index,
        after_rss.0 as f64 / 1024.0,
    );
    drop(cluster);
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One node, in this process, until it is killed.
async fn run_node(id: u64, config: PathBuf, data_dir: PathBuf) {
    let text = std::fs::read_to_string(&config).expect("the cluster file");
    let cluster = ClusterFile::parse(&text, Some(id)).expect("a good cluster file");
    let node = KvNode::start(&cluster, id, Some(data_dir), None).await.expect("the node starts");
    let _ = node.raft().stopped().await;
}

struct Node {
    http: SocketAddr,
    data: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    config: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(args: &Args, dir: &Path) -> Cluster {
        let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut text = format!(
            "cluster_id = \"compaction-bench\"\nsnapshot_every = {}\ntrailing_entries = {}\n",
            args.snapshot_every, args.trailing_entries
        );
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let (raft, http) = (port(), port());
            text += &format!("[[node]]\nid = {id}\nraft = \"127.0.0.1:{raft}\"\nhttp = \"127.0.0.1:{http}\"\n");
            let data = dir.join(format!("n{id}"));
            let _ = std::fs::remove_dir_all(&data);
            nodes.push(Node { http: format!("127.0.0.1:{http}").parse().unwrap(), data, child: None });
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, text).expect("the cluster file");
        let mut cluster = Cluster { config, nodes };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let child = Command::new(std::env::current_exe().expect("this executable"))
            .arg("--node")
            .arg((i + 1).to_string())
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&n.data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("a node process");
        n.child = Some(child);
    }

    /// The node all three agree leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut views = Vec::new();
            for n in &self.nodes {
                views.push(status(n.http).await.and_then(|s| s.leader));
            }
            if let Some(Some(l)) = views.first().copied() {
                if views.iter().all(|v| *v == Some(l)) {
                    return l as usize - 1;
                }
            }
            assert!(Instant::now() < deadline, "no leader: {views:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node applied what the leader has; returns that.
    async fn converge(&self, leader: usize) -> u64 {
        let applied = status(self.nodes[leader].http).await.expect("the leader answers").applied_index;
        for n in &self.nodes {
            wait_for_applied(n.http, applied).await;
        }
        applied
    }

    /// Kills node `i` and starts it again: how long until it answers HTTP,
    /// and until it has applied `applied`.
    async fn restart(&mut self, i: usize, applied: u64) -> (Duration, Duration) {
        let mut child = self.nodes[i].child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let started = Instant::now();
        self.spawn(i);
        let http = self.nodes[i].http;
        let deadline = started + PATIENCE;
        while status(http).await.is_none() {
            assert!(Instant::now() < deadline, "the restarted node does not answer");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = started.elapsed();
        wait_for_applied(http, applied).await;
        (ready, started.elapsed())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn wait_for_applied(http: SocketAddr, applied: u64) {
    let deadline = Instant::now() + PATIENCE;
    while status(http).await.is_none_or(|s| s.applied_index < applied) {
        assert!(Instant::now() < deadline, "{http} did not apply through {applied}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn status(http: SocketAddr) -> Option<StatusBody> {
    let r = request(http, "GET", "/status", &[], &[], Duration::from_secs(2)).await.ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).expect("/status is JSON"))
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += disk_bytes(&entry.path()),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}

/// (VmRSS, VmHWM) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs the writes over `--clients` keep-alive connections to the leader;
/// returns how many attempts were answered otherwise than 204 (and retried).
async fn write_all(args: &Args, leader: SocketAddr) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (next, retried, done) = (next.clone(), retried.clone(), done.clone());
        let (writes, keys, value_bytes, tenth) = (args.writes, args.keys, args.value_bytes, (args.writes / 10).max(1));
        tasks.push(tokio::spawn(async move {
            let mut conn = KeepAlive::new(leader);
            let mut seq = 0u64;
            loop {
                let w = next.fetch_add(1, Ordering::Relaxed);
                if w >= writes {
                    return;
                }
                seq += 1;
                let value = format!("{w:0width$}", width = value_bytes);
                let headers = [("x-client-id", c + 1), ("x-request-seq", seq)];
                let path = format!("/kv/key-{}", w % keys);
                let deadline = Instant::now() + PATIENCE;
                while conn.put(&path, &headers, value.as_bytes()).await != Some(204) {
                    retried.fetch_add(1, Ordering::Relaxed);
                    assert!(Instant::now() < deadline, "write {w} was never acknowledged");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if done.fetch_add(1, Ordering::Relaxed) % tenth == tenth - 1 {
                    eprintln!("  {} writes done", done.load(Ordering::Relaxed));
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a client");
    }
    retried.load(Ordering::Relaxed)
}

/// An HTTP/1.1 connection kept open across requests (reconnected after an
/// error), so that a million writes do not cost a million connections.
struct KeepAlive {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, stream: None }
    }

    /// PUTs and returns the status, or `None` when the exchange failed.
    async fn put(&mut self, path: &str, headers: &[(&str, u64)], body: &[u8]) -> Option<u16> {
        let answer = tokio::time::timeout(Duration::from_secs(10), self.exchange(path, headers, body)).await;
        match answer {
            Ok(Ok(status)) => Some(status),
            _ => {
                self.stream = None;
                None
            }
        }
    }

    async fn exchange(&mut self, path: &str, headers: &[(&str, u64)], body: &[u8]) -> std::io::Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(BufReader::new(stream));
        }
        let stream = self.stream.as_mut().expect("connected");
        let mut head = format!("PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.get_mut().write_all(&request).await?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Err(bad("headers cut short"));
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| bad("content-length"))?;
            }
            close |= header == "connection: close";
        }
        let mut rest = vec![0u8; length];
        stream.read_exact(&mut rest).await?;
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}
