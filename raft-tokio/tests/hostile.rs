//! Bytes that are not our protocol, sent to a node's port: garbage, frames
//! over the size limit, handshakes from outside the cluster. Each connection
//! is closed, counted, and the node keeps serving. Connections that never
//! shake hands hold a bounded number of slots, each for a bounded time.

mod common;
use common::{propose_many, Cluster, CLUSTER_ID};
use raft_tokio::wire::{encode_frame, split_frame, Frame, Hello};
use raft_tokio::{NodeId, HANDSHAKES_PENDING_MAX};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hello(cluster_id: u64, from: u64, to: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_frame(&Frame::Hello(Hello { cluster_id, from: NodeId(from), to: NodeId(to) }), &mut buf, 1 << 20).unwrap();
    buf
}

/// Sends `first`, then (if the node answers it with a handshake) `then`,
/// and expects the node to close the connection. Returns whether the node
/// answered with a handshake.
async fn expect_closed(addr: &str, first: &[u8], then: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(first).await.unwrap();
    let mut got = Vec::new();
    let mut answered = false;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !answered {
                if let Ok(Some((Frame::Hello(h), _))) = split_frame(&got, 1 << 20) {
                    assert_eq!(h.from, NodeId(1));
                    answered = true;
                    // The connection may already be closing; a failed write is fine.
                    let _ = s.write_all(then).await;
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node kept the connection open after {:?}", &first[..first.len().min(12)]);
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_are_dropped_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3, false).await;
    cluster.leader().await;
    let target = cluster.node(0);
    let addr = target.local_addr().to_string();
    let before = target.status().transport.rejected_connections;

    let garbage: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let oversized = u32::MAX.to_be_bytes();
    // Garbage where the handshake should be, and a length far over the limit.
    assert!(!expect_closed(&addr, &garbage, &[]).await);
    assert!(!expect_closed(&addr, &oversized, &[]).await);
    // Well-formed handshakes that must be refused: a node outside the
    // cluster, another cluster, one meant for another node.
    assert!(!expect_closed(&addr, &hello(CLUSTER_ID, 99, 1), &[]).await);
    assert!(!expect_closed(&addr, &hello(CLUSTER_ID + 1, 2, 1), &[]).await);
    assert!(!expect_closed(&addr, &hello(CLUSTER_ID, 2, 3), &[]).await);
    // A valid handshake, then an oversized frame, or a frame of garbage.
    assert!(expect_closed(&addr, &hello(CLUSTER_ID, 2, 1), &oversized).await);
    let mut bad_frame = (garbage.len() as u32).to_be_bytes().to_vec();
    bad_frame.extend_from_slice(&garbage);
    assert!(expect_closed(&addr, &hello(CLUSTER_ID, 3, 1), &bad_frame).await);

    common::wait_until("seven rejections counted", || target.status().transport.rejected_connections - before == 7)
        .await;
    // The cluster still commits, through the node that was attacked.
    propose_many(target, "after", 5).await;
    cluster.converge(5).await;
    cluster.shutdown().await;
}

/// Waits until the node closes `s`; returns how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    read.ok().map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_hold_bounded_slots_for_a_bounded_time() {
    let cluster = Cluster::start(3, false).await;
    cluster.leader().await;
    let target = cluster.node(0);
    let addr = target.local_addr().to_string();
    let before = target.status().transport;
    // Strangers that connect and say nothing take every handshake slot...
    let mut silent = Vec::new();
    for _ in 0..HANDSHAKES_PENDING_MAX {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // ... so one more is closed at once, unread, and counted.
    let mut one_more = TcpStream::connect(&addr).await.unwrap();
    let refused = closed_within(&mut one_more, Duration::from_secs(1)).await;
    assert!(refused.is_some(), "a connection past the bound was kept");
    common::wait_until("the refusal counted", || {
        target.status().transport.refused_connections - before.refused_connections == 1
    })
    .await;
    // Each silent one is closed at the handshake deadline (2 s) and counted.
    for s in &mut silent {
        let closed = closed_within(s, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "a connection without a handshake outlived the deadline");
    }
    let pending = HANDSHAKES_PENDING_MAX as u64;
    common::wait_until("the timeouts counted", || {
        target.status().transport.rejected_connections - before.rejected_connections == pending
    })
    .await;
    // The slots are free again: a valid handshake is answered.
    assert!(expect_closed(&addr, &hello(CLUSTER_ID, 2, 1), &u32::MAX.to_be_bytes()).await);
    propose_many(target, "after", 5).await;
    cluster.converge(5).await;
    cluster.shutdown().await;
}

fn frame(f: &Frame) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_frame(f, &mut buf, 2 << 20).unwrap();
    buf
}

/// Reads frames from `s` until one is whole.
async fn read_frame(s: &mut TcpStream, got: &mut Vec<u8>) -> Frame {
    let mut buf = [0u8; 256];
    loop {
        if let Ok(Some((f, used))) = split_frame(got, 1 << 20) {
            got.drain(..used);
            return f;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_frames_outside_a_transfer_and_bad_chunks_are_refused() {
    use raft_core::{InstallSnapshot, LogIndex, Membership, Message, SnapshotMeta, Term};
    use raft_tokio::wire::{Bytes, SnapshotChunk, SnapshotOffer, TransferRefusal};
    let cluster = Cluster::start(3, false).await;
    cluster.leader().await;
    let target = cluster.node(0);
    let addr = target.local_addr().to_string();
    let before = target.status();
    let membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    let install = InstallSnapshot {
        term: Term(100),
        snapshot: SnapshotMeta { index: LogIndex(1000), term: Term(100), membership },
    };
    // raft-core must never see an InstallSnapshot whose data was not
    // installed: on a message connection it closes the connection.
    let bare = frame(&Frame::Message(Message::InstallSnapshot(install.clone())));
    assert!(expect_closed(&addr, &hello(CLUSTER_ID, 2, 1), &bare).await);
    let chunk = SnapshotChunk { offset: 0, crc: 0, data: Bytes(b"0123456789".to_vec()) };
    assert!(expect_closed(&addr, &hello(CLUSTER_ID, 2, 1), &frame(&Frame::SnapshotChunk(chunk.clone()))).await);

    // A transfer whose chunk fails its checksum is refused.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&hello(CLUSTER_ID, 2, 1)).await.unwrap();
    let mut got = Vec::new();
    assert!(matches!(read_frame(&mut s, &mut got).await, Frame::Hello(_)));
    let crc = 0x1234_5678;
    s.write_all(&frame(&Frame::SnapshotOffer(SnapshotOffer { message: install, len: 10, crc }))).await.unwrap();
    assert_eq!(read_frame(&mut s, &mut got).await, Frame::SnapshotAccept { offset: 0 });
    s.write_all(&frame(&Frame::SnapshotChunk(chunk))).await.unwrap();
    assert_eq!(read_frame(&mut s, &mut got).await, Frame::SnapshotDone(Err(TransferRefusal::BadData)));

    common::wait_until("the refusals counted", || {
        let now = target.status();
        now.transport.rejected_connections - before.transport.rejected_connections == 2
            && now.snapshot_transfers_failed - before.snapshot_transfers_failed == 1
    })
    .await;
    let after = target.status();
    assert_eq!(after.snapshots_received, 0);
    assert!(after.raft.term < Term(100), "the offer never reached raft-core: {:?}", after.raft);
    assert_eq!(after.raft.snapshot_index, LogIndex(0));
    propose_many(target, "after", 5).await;
    cluster.converge(5).await;
    cluster.shutdown().await;
}
