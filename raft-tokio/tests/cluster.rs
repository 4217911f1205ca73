//! Several nodes in one process, over real loopback TCP: election, total
//! order of proposals from every node, restarts from the data directory.

mod common;
use common::{propose_many, Cluster};
use raft_tokio::RoleKind;

/// Every proposal a call reported committed is in `delivered` at the index
/// the call returned.
fn assert_all_present(delivered: &[(u64, Vec<u8>)], committed: &[(u64, Vec<u8>)]) {
    for c in committed {
        assert!(delivered.contains(c), "committed entry {c:?} missing after restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_every_nodes_proposals_in_one_order() {
    let cluster = Cluster::start(3, true).await;
    let leader = cluster.leader().await;
    let terms: Vec<_> = cluster.nodes.iter().flatten().map(|n| n.leader().term).collect();
    assert!(terms.iter().all(|&t| t == terms[0]), "all in the leader's term: {terms:?}");
    let leaders = cluster.nodes.iter().flatten().filter(|n| n.leader().role == RoleKind::Leader).count();
    assert_eq!(leaders, 1);
    // A follower can name the leader's address (to redirect a client).
    let follower = cluster.node((leader + 1) % 3);
    let leader_id = follower.leader().leader.unwrap();
    let addr = follower.members().iter().find(|(id, _)| *id == leader_id).map(|(_, a)| a.clone());
    assert_eq!(addr, Some(cluster.node(leader).local_addr().to_string()));

    // Proposals from every node at once, so followers forward theirs.
    let (a, b, c) = tokio::join!(
        propose_many(cluster.node(0), "n1", 20),
        propose_many(cluster.node(1), "n2", 20),
        propose_many(cluster.node(2), "n3", 20),
    );
    let delivered = cluster.converge(60).await;
    for committed in [&a, &b, &c] {
        assert_all_present(&delivered, committed);
    }
    let status = cluster.node(leader).status().raft;
    assert!(status.commit_index.0 >= 61, "60 entries and the leader's no-op: {status:?}");
    // Everything committed was handed to the application...
    assert_eq!(status.delivered_index, status.commit_index);
    // ... and it reports it applied once it asks for more.
    let node = cluster.node(leader);
    common::wait_until("the leader's application applies all", || {
        let s = node.status().raft;
        s.applied_index == s.commit_index
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_then_the_leader_restart_and_nothing_committed_is_lost() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.leader().await;
    let mut committed = propose_many(cluster.node(leader), "before", 10).await;
    cluster.converge(10).await;

    let follower = (leader + 1) % 3;
    cluster.stop(follower).await;
    committed.extend(propose_many(cluster.node(leader), "follower-down", 10).await);
    cluster.restart(follower, 0).await;
    // Restarted with applied_index 0: it delivers the whole log again.
    let delivered = cluster.converge(20).await;
    assert_all_present(&delivered, &committed);

    cluster.stop(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    committed.extend(propose_many(cluster.node(new_leader), "leader-down", 10).await);
    cluster.restart(leader, 0).await;
    let delivered = cluster.converge(30).await;
    assert_all_present(&delivered, &committed);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_loses_nothing() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.leader().await;
    let mut committed = propose_many(cluster.node(leader), "first-life", 15).await;
    let before = cluster.converge(15).await;
    for i in 0..3 {
        cluster.stop(i).await;
    }
    for i in 0..3 {
        cluster.restart(i, 0).await;
    }
    let after = cluster.converge(15).await;
    assert_eq!(after, before, "the same entries at the same indexes after the restart");
    let leader = cluster.leader().await;
    committed.extend(propose_many(cluster.node((leader + 1) % 3), "second-life", 5).await);
    let delivered = cluster.converge(20).await;
    assert_all_present(&delivered, &committed);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_index_skips_what_the_application_already_has() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.leader().await;
    propose_many(cluster.node(leader), "x", 10).await;
    let all = cluster.converge(10).await;
    let follower = (leader + 1) % 3;
    cluster.stop(follower).await;
    let applied = all[5].0; // the sixth entry's index
    cluster.restart(follower, applied).await;
    let leader = cluster.leader().await;
    propose_many(cluster.node(leader), "y", 1).await;
    common::wait_until("the restarted node catches up", || cluster.delivered(follower).len() >= 5).await;
    let again = cluster.delivered(follower);
    assert_eq!(again[..4], all[6..], "only entries after the applied index are delivered again");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_made_during_an_election_is_not_lost() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    cluster.stop(leader).await;
    // Let the follower's transport see the closed connection (a few ms):
    // a Forward written into a connection in the instant the peer closes it
    // is lost with it, and its fate is unknown (the call would time out).
    // Well before the election timeout (150 ms or more), the follower still
    // names the old leader: its proposal is handed back unsent, held until
    // a new leader is known, and then forwarded, never silently dropped.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(cluster.node(follower).leader().leader.is_some_and(|l| l.0 as usize == leader + 1));
    let index = cluster.node(follower).propose(b"mid-election".to_vec()).await.expect("commits");
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let delivered = cluster.converge(1).await;
    assert_eq!(delivered, vec![(index.0, b"mid-election".to_vec())]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_proposals_fail_and_the_receiver_ends() {
    let (node, mut entries) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = raft_tokio::RaftConfig::new(vec![addr.clone()], addr, raft_tokio::RaftParams::default(), None)
            .with_listener(listener);
        raft_tokio::Raft::start(config).await.unwrap()
    };
    let index = node.propose(b"one".to_vec()).await.unwrap();
    assert_eq!(entries.recv_committed().await.unwrap().index, index);
    node.shutdown().await.unwrap();
    assert!(node.status().stopped);
    assert_eq!(node.propose(b"two".to_vec()).await, Err(raft_tokio::ProposeError::Stopped));
    assert_eq!(node.proposer().send(b"three".to_vec()), Err(raft_tokio::ProposeError::Stopped));
    assert!(entries.recv().await.is_none());
}

#[tokio::test]
async fn a_bad_configuration_is_refused_at_start() {
    use raft_tokio::{ConfigurationError, Raft, RaftConfig, RaftParams, StartError};
    let peers = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
    let not_listed = RaftConfig::new(peers.clone(), "127.0.0.1:3".into(), RaftParams::default(), None);
    match Raft::start(not_listed).await {
        Err(StartError::Config(ConfigurationError::SelfNotListed { addr })) => assert_eq!(addr, "127.0.0.1:3"),
        other => panic!("expected SelfNotListed, got {:?}", other.err()),
    }
    let slow_heartbeat =
        RaftParams { heartbeat_interval: std::time::Duration::from_millis(100), ..RaftParams::default() };
    let config = RaftConfig::new(peers.clone(), peers[0].clone(), slow_heartbeat, None);
    let err = Raft::start(config).await.err().expect("refused");
    assert!(err.to_string().contains("at most half"), "{err}");
}
