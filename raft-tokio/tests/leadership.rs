//! Leadership transfer (Raft thesis §3.10) and check-quorum (§6.2) through
//! the runtime, and raft-kv's face of them: `POST /leader/transfer`, and a
//! minority leader that steps down so that writes are refused at once.

mod common;
use common::Cluster;
use raft_tokio::kv::config::{ClusterFile, NodeEntry};
use raft_tokio::kv::http::request;
use raft_tokio::kv::KvNode;
use raft_tokio::{NodeId, RoleKind, TransferError, TransferRejection};
use std::time::{Duration, Instant};

/// Two maximum election timeouts of the default parameters (150-300 ms).
const TWO_ELECTION_TIMEOUTS: Duration = Duration::from_millis(600);
/// Slack for a loaded two-core machine on top of the protocol's bound.
const SLACK: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_makes_an_up_to_date_follower_leader() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.leader().await;
    common::propose_many(cluster.node(leader), "before", 10).await;
    let target = (leader + 1) % 3;
    let target_id = cluster.node(target).id();
    let began = Instant::now();
    cluster.node(leader).transfer_leadership(target_id).await.expect("the transfer completes");
    println!("transfer completed in {:?}", began.elapsed());
    assert_eq!(cluster.node(leader).leader().leader, Some(target_id), "resolved once the old leader knows");
    assert_eq!(cluster.leader().await, target, "every node follows the target");
    // Proposals made during and after the transfer commit (at the new leader).
    common::propose_many(cluster.node(leader), "after", 5).await;
    cluster.converge(15).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_self_a_non_member_or_at_a_follower_is_refused() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.leader().await;
    let leader_id = cluster.node(leader).id();
    let node = cluster.node(leader);
    assert_eq!(node.transfer_leadership(leader_id).await, Err(TransferError::Refused(TransferRejection::ToSelf)));
    assert_eq!(node.transfer_leadership(NodeId(9)).await, Err(TransferError::Refused(TransferRejection::NotVoter)));
    let follower = cluster.node((leader + 1) % 3);
    let other = cluster.node((leader + 2) % 3).id();
    assert_eq!(
        follower.transfer_leadership(other).await,
        Err(TransferError::Refused(TransferRejection::NotLeader { leader_hint: Some(leader_id) }))
    );
    assert_eq!(cluster.leader().await, leader, "nothing changed");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_followers_stop_steps_down_within_two_election_timeouts() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.leader().await;
    let mut watch = cluster.node(leader).watch_leader();
    for i in (0..3).filter(|&i| i != leader) {
        cluster.stop(i).await;
    }
    let stopped = Instant::now();
    let limit = TWO_ELECTION_TIMEOUTS + SLACK;
    let stepped = tokio::time::timeout(limit, watch.wait_for(|l| l.role != RoleKind::Leader)).await;
    assert!(stepped.is_ok(), "still leading {limit:?} after its followers stopped");
    println!("stepped down {:?} after its followers stopped", stopped.elapsed());
    assert_eq!(cluster.node(leader).leader().leader, None, "it knows no leader");
    cluster.shutdown().await;
}

/// Three raft-kv nodes in this process, in memory.
async fn kv_cluster() -> Vec<Option<KvNode>> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listeners: Vec<_> = (0..3).map(|_| (bind(), bind())).collect();
    let entries = listeners
        .iter()
        .enumerate()
        .map(|(i, (r, h))| NodeEntry {
            id: i as u64 + 1,
            raft: r.local_addr().unwrap().to_string(),
            http: h.local_addr().unwrap().to_string(),
        })
        .collect();
    let cluster = ClusterFile::new("leadership", entries);
    let mut nodes = Vec::new();
    for (i, pair) in listeners.into_iter().enumerate() {
        nodes.push(Some(KvNode::start(&cluster, i as u64 + 1, None, Some(pair)).await.unwrap()));
    }
    nodes
}

async fn kv_leader(nodes: &[Option<KvNode>]) -> usize {
    let mut found = 0;
    common::wait_until("a raft-kv leader", || {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].as_ref().is_some_and(|n| n.raft().leader().role == RoleKind::Leader))
            .collect();
        found = leaders.first().copied().unwrap_or(0);
        leaders.len() == 1
    })
    .await;
    found
}

async fn post_transfer(node: &KvNode, to: u64) -> (u16, String) {
    let body = format!("{{\"to\": {to}}}");
    let r = request(node.http_addr, "POST", "/leader/transfer", &[], body.as_bytes(), Duration::from_secs(5))
        .await
        .expect("an answer");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_kv_transfers_leadership_over_http_from_any_node() {
    let nodes = kv_cluster().await;
    let leader = kv_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let n = |i: usize| nodes[i].as_ref().unwrap();
    // Asked at a follower, which forwards it to the leader.
    let (status, body) = post_transfer(n(follower), other as u64 + 1).await;
    assert_eq!((status, body), (200, format!("{{\"leader\":{}}}", other + 1)));
    assert_eq!(kv_leader(&nodes).await, other);
    let (status, body) = post_transfer(n(leader), other as u64 + 1).await;
    assert_eq!(status, 409, "to the leader itself: {body}");
    let (status, body) = post_transfer(n(other), 9).await;
    assert_eq!(status, 400, "to a non-member: {body}");
    let r = request(n(other).http_addr, "POST", "/leader/transfer", &[], b"{\"to\": \"x\"}", Duration::from_secs(5));
    assert_eq!(r.await.unwrap().status, 400, "a bad body");
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_raft_kv_leader_steps_down_and_refuses_writes_at_once() {
    let mut nodes = kv_cluster().await;
    let leader = kv_leader(&nodes).await;
    let n = nodes[leader].as_ref().unwrap().http_addr;
    let put = |key: &'static str| async move {
        let began = Instant::now();
        let r = request(n, "PUT", &format!("/kv/{key}"), &[], b"v", Duration::from_secs(10)).await.expect("an answer");
        (r.status, began.elapsed())
    };
    assert_eq!(put("before").await.0, 204);
    for i in (0..3).filter(|&i| i != leader) {
        nodes[i].take().unwrap().shutdown().await;
    }
    let stopped = Instant::now();
    let limit = TWO_ELECTION_TIMEOUTS + SLACK;
    let status_says_leader = || async {
        let r = request(n, "GET", "/status", &[], &[], Duration::from_secs(1)).await.expect("status");
        String::from_utf8_lossy(&r.body).contains("\"role\":\"leader\"")
    };
    while status_says_leader().await {
        assert!(stopped.elapsed() < limit, "/status still says leader after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("/status stopped saying leader {:?} after the followers stopped", stopped.elapsed());
    let (status, took) = put("after").await;
    assert_eq!(status, 503, "no leader is known");
    assert!(took < Duration::from_millis(200), "refused at once, not after a timeout: {took:?}");
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}
