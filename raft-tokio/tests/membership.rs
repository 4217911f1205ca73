//! Membership changes through `RaftHandle`, over TCP: a node started empty
//! with `RaftConfig::joining` is added as a learner at an address the other
//! nodes' configuration never listed, caught up, promoted by the leader on
//! its own, and a voter is removed; the new membership survives restarts.

mod common;

use common::{propose_many, wait_until, Cluster, CLUSTER_ID};
use raft_tokio::{ChangeError, ChangeRejection, NodeId, Raft, RaftConfig, RaftHandle, RaftParams};
use std::collections::BTreeSet;

fn ids(v: &[u64]) -> BTreeSet<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

/// Starts node 4, joining the cluster whose initial members are `members`.
async fn start_joiner(cluster: &Cluster, listener: Option<std::net::TcpListener>, addr: &str) -> RaftHandle {
    let params = RaftParams { seed: Some(104), cluster_id: Some(CLUSTER_ID), ..RaftParams::default() };
    let dir = cluster.dir.as_ref().unwrap().path().join("n4");
    let mut config = RaftConfig::joining(cluster.members.clone(), NodeId(4), addr.to_string(), params, Some(dir));
    if let Some(l) = listener {
        config = config.with_listener(l);
    }
    let (node, mut entries) = Raft::start(config).await.expect("the joiner starts");
    tokio::spawn(async move { while entries.recv_committed().await.is_some() {} });
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_is_caught_up_promoted_and_a_voter_removed_across_restarts() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.leader().await;
    propose_many(cluster.node(leader), "before", 20).await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let joiner = start_joiner(&cluster, Some(listener), &addr).await;
    assert_eq!(joiner.membership().learners(), &ids(&[4]), "a joiner knows only itself, as a learner");
    cluster.nodes.push(Some(joiner.clone()));
    cluster.delivered.push(Default::default());

    // Only the leader takes a change; a follower names it.
    let follower = (leader + 1) % 3;
    let refused = cluster.node(follower).add_learner(NodeId(4), addr.clone()).await;
    assert!(matches!(refused, Err(ChangeError::Refused(ChangeRejection::NotLeader { leader_hint: Some(_) }))));

    let added = cluster.node(leader).add_learner(NodeId(4), addr.clone()).await.expect("the learner is added");
    assert!(added.is_learner(NodeId(4)) && added.address(NodeId(4)) == Some(addr.as_str()));
    // The leader promotes it once it has caught up.
    wait_until("node 4 promoted on every node", || {
        cluster.nodes.iter().flatten().all(|n| n.committed_membership().voters() == &ids(&[1, 2, 3, 4]))
    })
    .await;
    let again = cluster.node(leader).add_learner(NodeId(4), addr.clone()).await;
    assert_eq!(again, Err(ChangeError::Refused(ChangeRejection::AlreadyMember)));

    // Remove node 3 (the leader itself, if it leads: it steps down).
    let at = cluster.leader().await;
    let removed = cluster.node(at).remove_member(NodeId(3)).await.expect("node 3 is removed");
    assert_eq!(removed.voters(), &ids(&[1, 2, 4]));
    cluster.stop(2).await;
    let leader = cluster.leader().await;
    propose_many(cluster.node(leader), "after", 20).await;
    wait_until("node 4 committed every entry", || {
        cluster.node(3).status().raft.commit_index == cluster.node(leader).status().raft.commit_index
    })
    .await;

    // Restarted from their stores, node 1 or 2 and node 4 keep the new
    // membership.
    let other = if leader == 0 { 1 } else { 0 };
    cluster.stop(other).await;
    cluster.restart(other, 0).await;
    assert_eq!(cluster.node(other).membership().voters(), &ids(&[1, 2, 4]));
    cluster.stop(3).await;
    let joiner = start_joiner(&cluster, None, &addr).await;
    assert_eq!(joiner.membership().voters(), &ids(&[1, 2, 4]), "the joiner restarts as the voter it became");
    cluster.nodes[3] = Some(joiner);
    let leader = cluster.leader().await;
    propose_many(cluster.node(leader), "restarted", 5).await;
    cluster.shutdown().await;
}
