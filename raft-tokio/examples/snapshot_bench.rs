//! Sends a large snapshot to a follower over loopback and reports the time
//! and the peak memory of both ends, which shows that neither holds the
//! snapshot in memory.
//!
//! ```text
//! cargo run --release -p raft-tokio --example snapshot_bench -- --size-mib 1024
//! ```
//!
//! This process runs nodes 1 and 2 of a three-node cluster (data in a
//! temporary directory, or `--dir`). They elect a leader and commit a few
//! entries; the leader's application then writes a snapshot of
//! `--size-mib` MiB of pseudo-random bytes, generated block by block
//! (`RaftHandle::save_snapshot`), and the log is compacted through it (no
//! trailing entries). Then it starts node 3, empty, as a child process
//! (this binary with `--role receiver`): it lags behind the compacted log,
//! so the leader streams it the snapshot; node 3 installs it and its
//! application reads it back whole (which checks its checksum). The child
//! reports when the restore reached it and its peak resident memory
//! (VmHWM, from /proc/self/status); this process reports its own. One line
//! of figures at the end.

use clap::Parser;
use raft_tokio::{EntryReceiver, Event, LogIndex, NodeId, Raft, RaftConfig, RaftHandle, RaftParams, RoleKind};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The snapshot's size.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Where the nodes keep their data (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: `receiver` runs node 3.
    #[arg(long)]
    role: Option<String>,
    /// Internal, for the receiver: a member as `id=host:port`.
    #[arg(long = "member")]
    members: Vec<String>,
}

/// Bytes generated per write: the application holds one block at a time.
const BLOCK_BYTES: usize = 1 << 20;
/// Every wait gives up after this long.
const PATIENCE: Duration = Duration::from_secs(600);

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn params() -> RaftParams {
    RaftParams { trailing_entries: 0, cluster_id: Some(0xbe7c), seed: Some(1), ..RaftParams::default() }
}

fn parse_members(members: &[String]) -> Vec<(NodeId, String)> {
    members
        .iter()
        .map(|m| {
            let (id, addr) = m.split_once('=').expect("id=host:port");
            (NodeId(id.parse().expect("a number")), addr.to_string())
        })
        .collect()
}

/// The receiver: node 3, whose application reads the snapshot it is given.
async fn receiver(args: Args) {
    let members = parse_members(&args.members);
    let config = RaftConfig::with_ids(members, NodeId(3), params(), args.dir);
    let start = Instant::now();
    let (node, mut events) = Raft::start(config).await.expect("node 3 starts");
    let mut reader = match events.recv_event().await.expect("the node runs") {
        Event::Restore(reader) => reader,
        Event::Entry(e) => panic!("node 3 was handed entry {} before a snapshot: not what this measures", e.index),
    };
    let installed = start.elapsed();
    let (bytes, index) = (reader.len(), reader.index());
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; BLOCK_BYTES];
        let mut total = 0u64;
        // Bound: the file ends; each pass reads at least one byte.
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok::<u64, std::io::Error>(total);
            }
            total += n as u64;
        }
    })
    .await
    .unwrap()
    .expect("the snapshot reads back whole and checks");
    assert_eq!(read, bytes);
    let restored = start.elapsed();
    let (installed, restored) = (installed.as_secs_f64(), restored.as_secs_f64());
    println!("restored {} {bytes} {installed:.3} {restored:.3} {}", index.0, vm_hwm_kib());
    std::io::stdout().flush().unwrap();
    node.shutdown().await.expect("clean shutdown");
}

/// The application of nodes 1 and 2: applies nothing; on the entry
/// `snapshot`, the leader's writes a snapshot of `size` bytes.
async fn application(node: RaftHandle, mut events: EntryReceiver, size: u64, done: tokio::sync::mpsc::Sender<f64>) {
    while let Some(event) = events.recv_event().await {
        let Event::Entry(entry) = event else { continue };
        if entry.data != b"snapshot" || node.leader().role != RoleKind::Leader {
            continue;
        }
        let start = Instant::now();
        let taken = node
            .save_snapshot(entry.index, |w| {
                let mut block = vec![0u8; BLOCK_BYTES];
                let mut state = 0x9e37_79b9_7f4a_7c15u64;
                let mut left = size;
                while left > 0 {
                    for word in block.chunks_exact_mut(8) {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        word.copy_from_slice(&state.to_le_bytes());
                    }
                    let n = left.min(BLOCK_BYTES as u64) as usize;
                    w.write_all(&block[..n])?;
                    left -= n as u64;
                }
                Ok(())
            })
            .await;
        taken.expect("the snapshot is saved");
        let _ = done.send(start.elapsed().as_secs_f64()).await;
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sender(args: Args) {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let size = args.size_mib << 20;
    let listeners: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let members: Vec<(NodeId, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().unwrap().to_string()))
        .collect();
    let mut listeners = listeners.into_iter();
    let (done_tx, mut done) = tokio::sync::mpsc::channel(2);
    let mut nodes = Vec::new();
    for i in 0..2u64 {
        let config =
            RaftConfig::with_ids(members.clone(), NodeId(i + 1), params(), Some(dir.join(format!("n{}", i + 1))))
                .with_listener(listeners.next().unwrap());
        let (node, events) = Raft::start(config).await.expect("starts");
        tokio::spawn(application(node.clone(), events, size, done_tx.clone()));
        nodes.push(node);
    }
    drop(listeners); // node 3's port: its process binds it
    wait_for("a leader", || nodes.iter().any(|n| n.leader().role == RoleKind::Leader)).await;
    let leader = nodes.iter().find(|n| n.leader().role == RoleKind::Leader).unwrap().clone();
    for k in 0..10 {
        leader.propose(format!("entry-{k}").into_bytes()).await.expect("commits");
    }
    leader.propose(b"snapshot".to_vec()).await.expect("commits");
    let written = tokio::time::timeout(PATIENCE, done.recv()).await.expect("in time").expect("written");
    let status = leader.status().raft;
    assert!(status.snapshot_index >= LogIndex(12), "{status:?}");
    // Appends to node 3 queued before the compaction (with the entries the
    // snapshot now covers) wait in its send queue until the next failed
    // connection attempt discards them (every 500 ms at most); wait them
    // out, so that node 3 can only be caught up by the snapshot.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let start = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--role")
        .arg("receiver")
        .arg("--dir")
        .arg(dir.join("n3"))
        .args(members.iter().map(|(id, a)| format!("--member={}={a}", id.0)))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the receiver");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .expect("the receiver reports");
    let total = start.elapsed().as_secs_f64();
    let status = child.wait().expect("the receiver exits");
    assert!(status.success(), "the receiver failed: {status}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"restored"), "unexpected report: {line}");
    let (bytes, installed, restored, receiver_kib): (u64, f64, f64, u64) = (
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
        fields[4].parse().unwrap(),
        fields[5].parse().unwrap(),
    );
    assert_eq!(bytes, size);
    wait_for("the leader counts the transfer", || leader.status().snapshots_sent >= 1).await;
    let sender_kib = vm_hwm_kib();
    for n in &nodes {
        n.shutdown().await.expect("clean shutdown");
    }
    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "snapshot_bench: {mib:.0} MiB snapshot over loopback: written and fsynced by the leader's application in \
         {written:.2} s; follower started -> snapshot installed (transfer, checks, fsync, rename) in {installed:.2} s \
         ({:.0} MiB/s), read back by its application in {:.2} s more (child process total {total:.2} s); peak memory \
         (VmHWM): sender process (nodes 1 and 2) {:.1} MiB, receiver process (node 3) {:.1} MiB",
        mib / installed,
        restored - installed,
        sender_kib as f64 / 1024.0,
        receiver_kib as f64 / 1024.0,
    );
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,raft_tokio::transfer=info")),
        )
        .init();
    let args = Args::parse();
    match args.role.as_deref() {
        Some("receiver") => receiver(args).await,
        None => sender(args).await,
        Some(other) => panic!("unknown role {other}"),
    }
}
