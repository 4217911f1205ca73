//! Throughput of raft-kv through its HTTP API: a 3-node cluster on loopback
//! in this process, `--clients` concurrent clients for `--seconds` each of
//! writes (PUT) and then linearizable reads (GET), spread over all nodes.
//! Each client keeps one HTTP/1.1 connection open (keep-alive) and sends
//! its next request when the answer to the last has arrived; it reconnects
//! only after an error. A follower still forwards each write to the leader
//! on a new connection of its own (`raft_tokio::kv::http::request`).
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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one request may take (raft-kv answers 504 after 5 s itself).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// The most header lines read from one answer (raft-kv sends a handful).
const HEADER_LINES_MAX: usize = 64;
/// The most bytes of one answer's head or body (a value is at most 64 KiB).
const ANSWER_BYTES_MAX: u64 = 1 << 20;

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
        entries.push(NodeEntry {
            id,
            raft: raft.local_addr().unwrap().to_string(),
            http: http.local_addr().unwrap().to_string(),
        });
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
            let mut connection = Connection { addr: node, stream: None };
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let path = format!("/kv/key-{}", (c as u64 * 7 + n) % 100);
                let result = if write {
                    connection.send("PUT", &path, format!("value-{c}-{n}").as_bytes()).await
                } else {
                    connection.send("GET", &path, &[]).await
                };
                match result {
                    Ok(status) if status < 500 => ok.fetch_add(1, Ordering::Relaxed),
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

/// One client's HTTP/1.1 connection to one node, kept open from request to
/// request; dropped after any error (or a `Connection: close` answer) and
/// opened again by the next request.
struct Connection {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    /// Sends one request and returns the answer's status, reading (and
    /// dropping) its body so that the connection is ready for the next.
    async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time");
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream.insert(BufReader::new(stream))
            }
        };
        let mut out =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n", self.addr, body.len())
                .into_bytes();
        out.extend_from_slice(body);
        stream.get_mut().write_all(&out).await?;
        let answer = read_answer(stream).await?;
        if answer.close {
            self.stream = None;
        }
        Ok(answer.status)
    }
}

/// What the client needs of an answer.
struct Answer {
    status: u16,
    /// The server will close the connection after this answer.
    close: bool,
}

async fn read_answer(stream: &mut BufReader<TcpStream>) -> std::io::Result<Answer> {
    let malformed = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut head = stream.take(ANSWER_BYTES_MAX);
    let mut line = String::new();
    head.read_line(&mut line).await?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| malformed("bad status line"))?;
    let (mut content_length, mut close, mut ended) = (0u64, false, false);
    for _ in 0..HEADER_LINES_MAX {
        line.clear();
        if head.read_line(&mut line).await? == 0 {
            return Err(malformed("the connection closed inside the head"));
        }
        if line == "\r\n" {
            ended = true;
            break;
        }
        let Some((name, value)) = line.split_once(':') else { return Err(malformed("bad header line")) };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => content_length = value.parse().map_err(|_| malformed("bad content-length"))?,
            "connection" => close = value.eq_ignore_ascii_case("close"),
            // raft-kv sends every body with a length; this client reads no other framing.
            "transfer-encoding" => return Err(malformed("a chunked answer")),
            _ => {}
        }
    }
    if !ended {
        return Err(malformed("too many header lines"));
    }
    if content_length > ANSWER_BYTES_MAX {
        return Err(malformed("an answer too large"));
    }
    let mut body = head.into_inner().take(content_length);
    tokio::io::copy(&mut body, &mut tokio::io::sink()).await?;
    if body.limit() > 0 {
        return Err(malformed("the connection closed inside the body"));
    }
    Ok(Answer { status, close })
}
