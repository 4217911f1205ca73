//! Throughput and commit latency of a cluster in one process, on loopback
//! TCP or on the in-process network (channels, no sockets, no encoding).
//!
//! `cargo run --release -p raft-tokio --example bench -- --nodes 3 --clients 64 --seconds 10 --storage disk`
//!
//! `--transport inprocess` runs the same cluster on
//! [`raft_tokio::InProcessNetwork`] instead of TCP: everything else (node
//! loop, storage, timers, the API the clients call) is the same.
//!
//! Every client is a task that proposes at the leader and waits for the
//! commit before proposing again, so `clients` is the number of proposals in
//! flight. The physical references are measured in the same run, in the
//! temporary directory the nodes use: before the cluster starts, 200
//! back-to-back fsynced rewrites of one 4 KiB block (`fsync/s`,
//! `fsync_p50`) and a loopback TCP ping-pong (`loopback_rtt_p50`); while it
//! runs, one such fsync every 20 ms (`fsync_p50_during_run`), because a
//! shared virtual disk's fsync time changes from minute to minute.
//! `write_mean` is the nodes' mean time per durable write (one append to
//! the write-ahead log, one fdatasync) during the measured window. It
//! prints one line.

use clap::Parser;
use raft_tokio::{InProcessNetwork, NodeId, Raft, RaftConfig, RaftHandle, RaftParams, RoleKind};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Concurrent clients (proposals in flight).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds measured (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `memory` or `disk`.
    #[arg(long, default_value = "memory")]
    storage: String,
    /// Bytes per proposal.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// `tcp` (loopback) or `inprocess` (channels).
    #[arg(long, default_value = "tcp")]
    transport: String,
    /// Worker threads of the runtime every node and client runs on
    /// (default: one per core). openraft's benchmark runs 16 for its nodes
    /// and 1 for its clients; on a shared machine more threads get a larger
    /// share of the cores, so a comparison says which it used.
    #[arg(long)]
    workers: Option<usize>,
}

/// What every client reads before and after each proposal, on a cache line
/// of its own: a flag that shared its line with data written on every
/// commit would cost every client a cache miss per proposal.
#[derive(Default)]
#[repr(align(128))]
struct Flags {
    /// Whether the measured window is open.
    measuring: AtomicBool,
    /// Whether the clients should stop.
    stop: AtomicBool,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One 4 KiB block of a file, rewritten in place and fsynced (fdatasync):
/// the cheapest durable write, since the file's size never changes. The
/// strictest reference for a commit's latency.
fn probe_file(path: &std::path::Path) -> std::fs::File {
    let mut f = std::fs::File::create(path).expect("probe file");
    f.write_all(&[7u8; 4096]).unwrap();
    f.sync_all().unwrap();
    f
}

fn rewrite_block(f: &mut std::fs::File) {
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(&[9u8; 4096]).unwrap();
    f.sync_data().unwrap();
}

/// 200 fsynced rewrites: latency p50 (µs) and rate (/s).
fn measure_fsync(dir: &std::path::Path) -> (u32, f64) {
    let mut f = probe_file(&dir.join("fsync-probe"));
    let mut lat = Vec::new();
    let start = Instant::now();
    for _ in 0..200 {
        let t = Instant::now();
        rewrite_block(&mut f);
        lat.push(t.elapsed().as_micros() as u32);
    }
    let rate = 200.0 / start.elapsed().as_secs_f64();
    lat.sort_unstable();
    (percentile(&lat, 0.5), rate)
}

/// While the cluster runs: one fsynced rewrite every 20 ms on a file of
/// its own, until `stop`; the p50 (µs) says what the disk did meanwhile
/// (at ~2% of the cluster's fsync rate, it hardly adds load).
fn sample_fsync_during(dir: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut f = probe_file(&dir.join("fsync-sampler"));
        let mut lat = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            rewrite_block(&mut f);
            lat.push(t.elapsed().as_micros() as u32);
            std::thread::sleep(Duration::from_millis(20));
        }
        lat.sort_unstable();
        percentile(&lat, 0.5)
    })
}

/// A 16-byte ping-pong over loopback TCP, 2000 times: p50 round trip (µs).
fn measure_rtt() -> u32 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 16];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 16];
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        s.write_all(&buf).unwrap();
        s.read_exact(&mut buf).unwrap();
        lat.push(t.elapsed().as_micros() as u32);
    }
    drop(s);
    echo.join().unwrap();
    lat.sort_unstable();
    percentile(&lat, 0.5)
}

/// `n` nodes on loopback TCP (each on a port of its own), or on one
/// in-process network (`network`), where addresses are only names.
async fn start_cluster(n: u64, data: Option<&std::path::Path>, network: Option<&InProcessNetwork>) -> Vec<RaftHandle> {
    let mut listeners: Vec<_> = match network {
        Some(_) => (0..n).map(|_| None).collect(),
        None => (0..n).map(|_| Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap())).collect(),
    };
    let members: Vec<(NodeId, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let addr = l.as_ref().map_or_else(|| format!("n{}", i + 1), |l| l.local_addr().unwrap().to_string());
            (NodeId(i as u64 + 1), addr)
        })
        .collect();
    let mut handles = Vec::new();
    for (i, listener) in listeners.drain(..).enumerate() {
        let id = NodeId(i as u64 + 1);
        let params = RaftParams { seed: Some(i as u64), ..RaftParams::default() };
        let dir = data.map(|d| d.join(format!("n{}", id.0)));
        let mut config = RaftConfig::with_ids(members.clone(), id, params, dir);
        if let Some(l) = listener {
            config = config.with_listener(l);
        }
        if let Some(network) = network {
            config = config.with_in_process(network);
        }
        let (handle, mut entries) = Raft::start(config).await.expect("node starts");
        // The application side: read every committed entry, as a real one would.
        tokio::spawn(async move { while entries.recv_committed().await.is_some() {} });
        handles.push(handle);
    }
    handles
}

async fn wait_for_leader(handles: &[RaftHandle]) -> RaftHandle {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(h) = handles.iter().find(|h| h.leader().role == RoleKind::Leader) {
            return h.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader within 10 s");
}

fn main() {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build().expect("a tokio runtime").block_on(run(args));
}

async fn run(args: Args) {
    let disk = match args.storage.as_str() {
        "disk" => true,
        "memory" => false,
        other => panic!("--storage must be memory or disk, not {other}"),
    };
    let network = match args.transport.as_str() {
        "tcp" => None,
        "inprocess" => Some(InProcessNetwork::new()),
        other => panic!("--transport must be tcp or inprocess, not {other}"),
    };
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (fsync_p50, fsync_rate) = measure_fsync(tmp.path());
    let rtt_p50 = measure_rtt();

    let handles = start_cluster(args.nodes, disk.then(|| tmp.path()), network.as_ref()).await;
    let leader = wait_for_leader(&handles).await;
    let flags = Arc::new(Flags::default());
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (leader, flags) = (leader.clone(), flags.clone());
        let payload = vec![c as u8; args.payload];
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !flags.stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = leader.propose(payload.clone()).await.is_ok();
                if flags.measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes_before: Vec<_> = handles.iter().map(|h| h.status()).collect();
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_fsync_during(tmp.path().to_path_buf(), sampler_stop.clone());
    flags.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    flags.measuring.store(false, Ordering::Relaxed);
    sampler_stop.store(true, Ordering::Relaxed);
    let fsync_during_p50 = sampler.join().unwrap();
    // Mean time per durable write (one fsync with the disk store), over
    // every node, during the measured window.
    let (mut writes, mut micros) = (0, 0);
    for (h, before) in handles.iter().zip(&writes_before) {
        let after = h.status();
        writes += after.storage_writes - before.storage_writes;
        micros += after.storage_write_micros - before.storage_write_micros;
    }
    let write_mean = micros.checked_div(writes).unwrap_or(0);
    // Messages the transport dropped because a queue was full, over every
    // node and the whole run: Raft resends them, but each costs a wait.
    let drops: u64 = handles.iter().map(|h| h.status().transport.send_queue_full).sum();
    let elapsed = start.elapsed().as_secs_f64();
    flags.stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    for h in &handles {
        let _ = h.shutdown().await;
    }
    println!(
        "nodes={} clients={} storage={} transport={} payload={}B seconds={:.1} committed/s={:.0} p50={}us p99={}us errors={} queue_full_drops={} write_mean={}us writes/s={:.0} | fsync/s={:.0} fsync_p50={}us fsync_p50_during_run={}us loopback_rtt_p50={}us",
        args.nodes,
        args.clients,
        args.storage,
        args.transport,
        args.payload,
        elapsed,
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        errors,
        drops,
        write_mean,
        writes as f64 / elapsed,
        fsync_rate,
        fsync_p50,
        fsync_during_p50,
        rtt_p50,
    );
}
