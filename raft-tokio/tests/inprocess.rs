//! Clusters on the in-process network (channels, no sockets): an election,
//! commits, a stopped leader and a stopped follower, a restart, a follower
//! caught up by a snapshot copied between stores, and a second node under
//! one id refused.

mod common;

use common::{agreed_leader, wait_until};
use raft_tokio::{Event, InProcessNetwork, LogIndex, NodeId, Raft, RaftConfig, RaftHandle, RaftParams, StartError};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a node's application applied in its current life: every command in
/// order, and the index of each snapshot it restored.
#[derive(Default)]
struct App {
    commands: Vec<Vec<u8>>,
    applied: LogIndex,
    restores: Vec<u64>,
}

type Shared = Arc<Mutex<App>>;

struct Cluster {
    network: InProcessNetwork,
    members: Vec<(NodeId, String)>,
    params: RaftParams,
    nodes: Vec<Option<RaftHandle>>,
    apps: Vec<Shared>,
}

/// The application's snapshot: its commands, newline-separated.
fn encode(commands: &[Vec<u8>]) -> Vec<u8> {
    commands.join(&b'\n')
}

fn decode(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

impl Cluster {
    async fn start(n: u64, params: RaftParams) -> Cluster {
        let members = (1..=n).map(|i| (NodeId(i), format!("n{i}"))).collect();
        let mut cluster =
            Cluster { network: InProcessNetwork::new(), members, params, nodes: Vec::new(), apps: Vec::new() };
        for i in 0..n as usize {
            cluster.nodes.push(None);
            cluster.apps.push(Shared::default());
            cluster.restart(i).await;
        }
        cluster
    }

    fn config(&self, i: usize) -> RaftConfig {
        let params = RaftParams { seed: Some(7 + i as u64), ..self.params.clone() };
        RaftConfig::with_ids(self.members.clone(), NodeId(i as u64 + 1), params, None).with_in_process(&self.network)
    }

    /// Starts node `i` (in memory: a new life starts empty).
    async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "stop it first");
        let (node, mut events) = Raft::start(self.config(i)).await.expect("node starts");
        let app = Shared::default();
        let sink = app.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv_event().await {
                match event {
                    Event::Entry(c) => {
                        let mut app = sink.lock().unwrap();
                        app.commands.push(c.data);
                        app.applied = c.index;
                    }
                    Event::Restore(mut snapshot) => {
                        let mut bytes = Vec::new();
                        snapshot.read_to_end(&mut bytes).expect("the snapshot reads back whole");
                        let mut app = sink.lock().unwrap();
                        app.commands = decode(&bytes);
                        app.applied = snapshot.index();
                        app.restores.push(snapshot.index().0);
                    }
                }
            }
        });
        self.nodes[i] = Some(node);
        self.apps[i] = app;
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node running");
        node.shutdown().await.expect("clean shutdown");
    }

    fn node(&self, i: usize) -> &RaftHandle {
        self.nodes[i].as_ref().expect("node running")
    }

    /// Waits until the running nodes agree on one leader; returns its index.
    async fn leader(&self) -> usize {
        agreed_leader(&self.nodes).await
    }

    /// Proposes `{tag}-0` .. `{tag}-{count-1}` at node `i`, concurrently;
    /// every one must commit.
    async fn propose(&self, i: usize, tag: &str, count: usize) {
        let mut calls = Vec::new();
        for k in 0..count {
            let node = self.node(i).clone();
            let data = format!("{tag}-{k}").into_bytes();
            calls.push(tokio::spawn(async move { node.propose(data).await }));
        }
        for c in calls {
            c.await.unwrap().expect("the proposal commits");
        }
    }

    fn commands(&self, i: usize) -> Vec<Vec<u8>> {
        self.apps[i].lock().unwrap().commands.clone()
    }

    /// Waits until every running node applied `n` commands; checks they
    /// are the same commands in the same order, and returns them.
    async fn converge(&self, n: usize) -> Vec<Vec<u8>> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        wait_until(&format!("{n} commands applied on every running node"), || {
            running.iter().all(|&i| self.apps[i].lock().unwrap().commands.len() >= n)
        })
        .await;
        let first = self.commands(running[0]);
        assert_eq!(first.len(), n, "more commands than proposed on node {}", running[0] + 1);
        for &i in &running[1..] {
            assert_eq!(self.commands(i), first, "node {} applied another order than node {}", i + 1, running[0] + 1);
        }
        first
    }

    async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

fn tagged(tag: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|k| format!("{tag}-{k}").into_bytes()).collect()
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_commit_and_survive_a_stopped_leader() {
    let mut cluster = Cluster::start(3, RaftParams::default()).await;
    let leader = cluster.leader().await;
    cluster.propose(leader, "a", 50).await;
    assert_eq!(sorted(cluster.converge(50).await), sorted(tagged("a", 50)));
    assert_eq!(cluster.node(leader).local_addr(), std::net::SocketAddr::from(([0, 0, 0, 0], 0)));

    // The leader stops: the other two elect one of them and go on.
    cluster.stop(leader).await;
    let second = cluster.leader().await;
    assert_ne!(second, leader);
    cluster.propose(second, "b", 50).await;
    let both = cluster.converge(100).await;
    assert_eq!(sorted(both[50..].to_vec()), sorted(tagged("b", 50)));

    // A proposal made at a follower is forwarded over the network too.
    let follower = (0..3).find(|&i| i != leader && i != second).unwrap();
    cluster.propose(follower, "c", 10).await;
    cluster.converge(110).await;

    // The old leader comes back empty (in memory) and catches up.
    cluster.restart(leader).await;
    let all = cluster.converge(110).await;
    assert_eq!(cluster.commands(leader), all);
    for i in 0..3 {
        assert_eq!(cluster.node(i).status().transport.send_queue_full, 0, "node {} dropped messages", i + 1);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_leaves_a_majority_that_commits() {
    let mut cluster = Cluster::start(3, RaftParams::default()).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    cluster.stop(follower).await;
    cluster.propose(leader, "x", 20).await;
    assert_eq!(sorted(cluster.converge(20).await), sorted(tagged("x", 20)));
    // With a second node stopped there is no majority: nothing commits.
    let other = (0..3).find(|&i| i != leader && i != follower).unwrap();
    cluster.stop(other).await;
    let stuck = cluster.node(leader).clone();
    let pending = tokio::spawn(async move { stuck.propose(b"alone".to_vec()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "a lone node committed a proposal");
    assert_eq!(cluster.commands(leader).len(), 20);
    pending.abort();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_lost_everything_is_caught_up_by_a_copied_snapshot() {
    let params = RaftParams { trailing_entries: 2, ..RaftParams::default() };
    let mut cluster = Cluster::start(3, params).await;
    let leader = cluster.leader().await;
    let lagging = (leader + 1) % 3;
    cluster.stop(lagging).await;
    cluster.propose(leader, "s", 30).await;
    cluster.converge(30).await;

    // Both running nodes snapshot what they applied: the leader's log now
    // starts after it, so the restarted node can only get a snapshot.
    for i in (0..3).filter(|&i| i != lagging) {
        let (applied, bytes) = {
            let app = cluster.apps[i].lock().unwrap();
            (app.applied, encode(&app.commands))
        };
        let meta = cluster.node(i).save_snapshot(applied, |w| w.write_all(&bytes)).await.expect("snapshot taken");
        assert_eq!(meta.index, applied);
    }
    cluster.restart(lagging).await;
    let all = cluster.converge(30).await;
    assert_eq!(cluster.commands(lagging), all);
    assert_eq!(cluster.apps[lagging].lock().unwrap().restores.len(), 1, "caught up by one restore");
    wait_until("the transfer counted on both sides", || {
        cluster.node(leader).status().snapshots_sent >= 1 && cluster.node(lagging).status().snapshots_received >= 1
    })
    .await;

    // And it follows the log after the snapshot.
    cluster.propose(leader, "t", 5).await;
    let more = cluster.converge(35).await;
    assert_eq!(sorted(more[30..].to_vec()), sorted(tagged("t", 5)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_with_a_running_id_is_refused() {
    let cluster = Cluster::start(3, RaftParams::default()).await;
    let twin = Raft::start(cluster.config(1)).await;
    match twin {
        Err(StartError::Bind { addr, source }) => {
            assert_eq!(addr, "n2");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("two nodes started as n2"),
    }
    // The refused start took nothing from the running node.
    let leader = cluster.leader().await;
    cluster.propose(leader, "z", 5).await;
    cluster.converge(5).await;
    cluster.shutdown().await;
}
