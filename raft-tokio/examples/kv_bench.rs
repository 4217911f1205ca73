//! Throughput of raft-kv through its HTTP API: a 3-node cluster on loopback
//! in this process, `--clients` concurrent clients for `--seconds` each of
//! writes (PUT) and then linearizable reads (GET), spread over all nodes.
//! Each request is one HTTP/1.1 exchange on a new connection.
//!
//! `cargo run --release -p raft-tokio --example kv_bench -- --clients 16 --seconds 10 [--storage memory|disk]`

use clap::Parser;
use raft_tokio::kv::config::{ClusterFile, NodeEntry};
use raft_tokio::kv::http::request;
use raft_tokio::kv::KvNode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of writes, then as many of reads.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where nodes keep their Raft state: "memory" or "disk" (a temp dir).
    #[arg(long, default_value = "disk")]
    storage: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("raft-kv-bench-{}", std::process::id()));
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let mut listeners = Vec::new();
    let mut entries = Vec::new();
    for id in 1..=3 {
        let (raft, http) = (bind(), bind());
        entries.push(NodeEntry { id, raft: raft.local_addr().unwrap(), http: http.local_addr().unwrap() });
        listeners.push((raft, http));
    }
    let cluster = ClusterFile::new("bench", entries);
    let mut nodes = Vec::new();
    for (i, pair) in listeners.into_iter().enumerate() {
        let data = (args.storage == "disk").then(|| dir.join(format!("n{}", i + 1)));
        nodes.push(KvNode::start(&cluster, i as u64 + 1, data, Some(pair)).await.expect("node starts"));
    }
    let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http_addr).collect();
    // Wait for a leader: the first write succeeds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while request(http[0], "PUT", "/kv/warmup", &[], b"x", Duration::from_secs(2))
        .await
        .map_or(true, |r| r.status != 204)
    {
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writes = phase(&http, args.clients, args.seconds, true).await;
    let reads = phase(&http, args.clients, args.seconds, false).await;
    println!(
        "raft-kv, 3 nodes, {} storage, {} clients over HTTP: {:.0} writes/s ({} failed), {:.0} linearizable reads/s ({} failed)",
        args.storage,
        args.clients,
        writes.0 as f64 / args.seconds as f64,
        writes.1,
        reads.0 as f64 / args.seconds as f64,
        reads.1
    );
    for n in nodes {
        n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs clients for `seconds`; returns (succeeded, failed).
async fn phase(http: &[SocketAddr], clients: usize, seconds: u64, write: bool) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ok, failed, node) = (ok.clone(), failed.clone(), http[c % http.len()]);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let path = format!("/kv/key-{}", (c as u64 * 7 + n) % 100);
                let result = if write {
                    request(node, "PUT", &path, &[], format!("value-{c}-{n}").as_bytes(), Duration::from_secs(5)).await
                } else {
                    request(node, "GET", &path, &[], &[], Duration::from_secs(5)).await
                };
                match result {
                    Ok(r) if r.status < 500 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}
