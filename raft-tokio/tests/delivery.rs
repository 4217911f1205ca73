//! Committed entries to a slow application: the node never waits for it.
//! A leader whose application lags keeps its term (it goes on
//! heartbeating), new proposals wait while the lag is long, and a long
//! backlog is handed over in pieces no larger than raft-core's window.

mod common;
use common::{propose_many, wait_until, Cluster};
use raft_tokio::{LogIndex, NodeId, Raft, RaftConfig, RaftParams};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The (node, leader, term) views that differed from the expected, and the
/// leader's largest apply lag.
type Seen = (Vec<(NodeId, Option<NodeId>, u64)>, u64);

/// Samples every node's status every 5 ms until `stop`; returns every
/// (node, leader, term) seen that is not (`leader`, `term`), and the
/// largest lag of the application behind the commit index on the leader.
fn watch_leadership(cluster: &Cluster, leader: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    let nodes: Vec<_> = cluster.nodes.iter().flatten().cloned().collect();
    let leader_id = cluster.node(leader).id();
    let term = cluster.node(leader).leader().term;
    tokio::spawn(async move {
        let (mut changes, mut lag_max) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            for n in &nodes {
                let s = n.status().raft;
                if s.leader != Some(leader_id) || s.term != term {
                    changes.push((s.id, s.leader, s.term.0));
                }
                if s.id == leader_id {
                    lag_max = lag_max.max(s.commit_index.0 - s.applied_index.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (changes, lag_max)
    })
}

/// Applying takes 4 ms per entry on every node, and the leader gets waves
/// of 150 concurrent writes: each wave commits at once and takes its
/// application 600 ms, twice the longest election timeout. A node loop that
/// waited for its application (as the driver once did when its delivery
/// queue was full) would send no heartbeat for that long, and the
/// followers would elect another leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_does_not_cost_the_leader_its_term() {
    let cluster = Cluster::start_with(3, false, RaftParams::default(), Duration::from_millis(4)).await;
    let leader = cluster.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_leadership(&cluster, leader, stop.clone());
    let mut committed = Vec::new();
    for wave in 0..3 {
        committed.extend(propose_many(cluster.node(leader), &format!("wave{wave}"), 150).await);
    }
    stop.store(true, Ordering::Relaxed);
    let (changes, lag_max) = watcher.await.unwrap();
    assert!(changes.is_empty(), "the leadership changed while the application lagged: {changes:?}");
    assert!(lag_max >= 100, "the application never lagged far (at most {lag_max} entries): the test shows nothing");
    let delivered = cluster.converge(450).await;
    for c in &committed {
        assert!(delivered.contains(c), "{c:?} committed and not delivered");
    }
    cluster.shutdown().await;
}

/// With a window of 8 entries the node stops taking proposals while its
/// application lags more than two windows (16 entries) behind the commit
/// index; messages and timers go on, and the waiting proposal is taken once
/// the application catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_application_holds_back_new_proposals_only() {
    let params = RaftParams { unapplied_entries_max: 8, ..RaftParams::default() };
    let cluster = Cluster::start_with(3, false, params, Duration::from_millis(5)).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).clone();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_leadership(&cluster, leader, stop.clone());
    // 100 writes, taken at once (nothing lags yet): the no-op and them.
    for k in 0..100 {
        node.proposer().send(format!("early-{k}").into_bytes()).unwrap();
    }
    wait_until("the early writes commit", || node.status().raft.commit_index.0 >= 101).await;
    let late = tokio::spawn({
        let node = node.clone();
        async move { node.propose(b"late".to_vec()).await }
    });
    // Every status published while the early writes lag more than two
    // windows behind shows the late write not yet appended. (Once it is
    // appended and commits, the lag may exceed the bound again by one.)
    let mut lagging_samples = 0;
    while !late.is_finished() {
        let s = node.status().raft;
        if s.commit_index.0 == 101 && s.commit_index.0 - s.applied_index.0 > 16 {
            lagging_samples += 1;
            assert_eq!(s.last_log_index, LogIndex(101), "a proposal was taken while the application lagged: {s:?}");
        }
        assert!(s.delivered_index.0 - s.applied_index.0 <= 8, "more than the window handed over: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lagging_samples > 0, "the application never lagged: the test shows nothing");
    let index = late.await.unwrap().expect("the late write commits once the application catches up");
    assert_eq!(index, LogIndex(102));
    stop.store(true, Ordering::Relaxed);
    let (changes, _) = watcher.await.unwrap();
    assert!(changes.is_empty(), "the leadership changed while the application lagged: {changes:?}");
    cluster.converge(101).await;
    cluster.shutdown().await;
}

fn single_node(dir: &Path, params: RaftParams) -> RaftConfig {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let params = RaftParams { seed: Some(3), cluster_id: Some(common::CLUSTER_ID), ..params };
    RaftConfig::with_ids(vec![(NodeId(1), addr)], NodeId(1), params, Some(dir.to_path_buf())).with_listener(listener)
}

/// A node restarted with applied index 0 and 300 committed commands hands
/// them to an application that does not read in one window of 16 entries,
/// no more; then, as the application takes them, in pieces that keep
/// within the window, until all 300 came in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_is_handed_over_in_window_sized_pieces() {
    const WINDOW: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let params = RaftParams { unapplied_entries_max: WINDOW, ..RaftParams::default() };
    let (node, mut entries) = Raft::start(single_node(dir.path(), params.clone())).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(c) = entries.recv_committed().await {
            all.push(c);
        }
        all
    });
    let mut written = propose_many(&node, "backlog", 300).await;
    node.shutdown().await.unwrap();
    let first_life = reader.await.unwrap();
    assert_eq!(first_life.len(), 300);
    written.sort();

    let (node, mut entries) = Raft::start(single_node(dir.path(), params)).await.unwrap();
    // The no-op of the first term, 300 commands, the no-op of the second.
    wait_until("the restarted node commits its log", || node.status().raft.commit_index.0 == 302).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = node.status().raft;
    // The first term's no-op counts as applied at once (the application
    // never sees it); then one window of commands, and no more.
    assert_eq!((s.applied_index, s.delivered_index), (LogIndex(1), LogIndex(1 + WINDOW)), "one window: {s:?}");
    let mut second_life = Vec::new();
    while second_life.len() < 300 {
        let c = tokio::time::timeout(common::PATIENCE, entries.recv_committed()).await.unwrap().unwrap();
        second_life.push((c.index.0, c.data));
        let s = node.status().raft;
        assert!(s.delivered_index.0 - s.applied_index.0 <= WINDOW, "more than a window handed over: {s:?}");
    }
    assert_eq!(second_life, written, "the same entries, in log order");
    let first: Vec<_> = first_life.into_iter().map(|c| (c.index.0, c.data)).collect();
    assert_eq!(first, second_life);
    node.shutdown().await.unwrap();
}
