//! Linearizable reads (ReadIndex) through the runtime: a read barrier on any
//! node covers every write committed before it, and a leader cut off from
//! its majority never confirms one (with check-quorum, it steps down and
//! says so).

mod common;
use common::Cluster;
use raft_tokio::{RaftParams, ReadError};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_barrier_on_any_node_covers_every_committed_write() {
    let cluster = Cluster::start(3, false).await;
    cluster.leader().await;
    for round in 0..6u64 {
        let writer = (round % 3) as usize;
        let data = format!("w{round}").into_bytes();
        let index = cluster.node(writer).propose(data.clone()).await.expect("commits");
        for reader in 0..3 {
            let barrier = cluster.node(reader).read_barrier().await.expect("confirmed");
            assert!(barrier >= index, "node {reader}: barrier {barrier} below the write at {index}");
            // Applying up to the barrier shows the write.
            common::wait_until("the reader applies up to its barrier", || {
                cluster.delivered(reader).last().is_some_and(|(i, _)| *i >= barrier.0)
            })
            .await;
            assert!(cluster.delivered(reader).iter().any(|(i, d)| *i == index.0 && *d == data));
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_its_majority_confirms_no_read() {
    // Check-quorum off, so that the leader goes on believing it leads: the
    // case ReadIndex's leadership check is for.
    let params = RaftParams { check_quorum: false, ..RaftParams::default() };
    let mut cluster = Cluster::start_with(3, false, params, Duration::ZERO).await;
    let leader = cluster.leader().await;
    let index = cluster.node(leader).propose(b"before".to_vec()).await.expect("commits");
    assert!(cluster.node(leader).read_barrier().await.expect("confirmed") >= index);
    for i in 0..3 {
        if i != leader {
            cluster.stop(i).await;
        }
    }
    // It still believes it leads (no check-quorum), but no majority answers
    // its leadership check: the read must not be confirmed.
    let read = tokio::time::timeout(Duration::from_secs(2), cluster.node(leader).read_barrier()).await;
    assert!(read.is_err() || read == Ok(Err(ReadError::Timeout)), "confirmed without a majority: {read:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_check_quorum_a_leader_without_its_majority_refuses_reads() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.leader().await;
    for i in 0..3 {
        if i != leader {
            cluster.stop(i).await;
        }
    }
    // It steps down within two election timeouts and knows no leader; the
    // read is refused (after its paced retries), not left to time out.
    let read = tokio::time::timeout(Duration::from_secs(3), cluster.node(leader).read_barrier()).await;
    assert_eq!(read, Ok(Err(ReadError::NoLeader)), "confirmed without a majority, or not refused");
    cluster.shutdown().await;
}
