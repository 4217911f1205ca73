//! A cluster of in-process nodes on loopback TCP, for the integration tests.
#![allow(dead_code)]

use raft_tokio::{Committed, NodeId, Raft, RaftConfig, RaftHandle, RaftParams, RoleKind, StartError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cluster id of every test cluster (set explicitly so that the hostile
/// tests can make valid handshakes).
pub const CLUSTER_ID: u64 = 0x7e57;

/// Every wait in these tests gives up after this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `cond` every 20 ms until it holds; panics with `what` after `PATIENCE`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the running nodes among `nodes` (node `i + 1` at `i`) agree
/// on one leader; returns its index.
pub async fn agreed_leader(nodes: &[Option<RaftHandle>]) -> usize {
    let mut found = None;
    wait_until("one leader known to every running node", || {
        let running: Vec<_> = nodes.iter().flatten().collect();
        let leaders: Vec<_> = running.iter().filter(|h| h.leader().role == RoleKind::Leader).collect();
        if leaders.len() != 1 {
            return false;
        }
        let id = leaders[0].id();
        found = Some((id.0 - 1) as usize);
        running.iter().all(|h| h.leader().leader == Some(id))
    })
    .await;
    found.unwrap()
}

/// What one node delivered in its current life, in order.
pub type Delivered = Arc<Mutex<Vec<Committed>>>;

pub struct Cluster {
    pub members: Vec<(NodeId, String)>,
    pub nodes: Vec<Option<RaftHandle>>,
    pub delivered: Vec<Delivered>,
    pub dir: Option<tempfile::TempDir>,
    /// Every node's parameters but its seed, applied index and cluster id.
    pub params: RaftParams,
    /// How long every node's application takes over each entry.
    pub apply_delay: Duration,
}

impl Cluster {
    /// `n` nodes; with `disk`, each keeps its state in a temporary directory.
    pub async fn start(n: u64, disk: bool) -> Cluster {
        Cluster::start_with(n, disk, RaftParams::default(), Duration::ZERO).await
    }

    /// `start`, with these parameters and an application that sleeps
    /// `apply_delay` after each entry it takes.
    pub async fn start_with(n: u64, disk: bool, params: RaftParams, apply_delay: Duration) -> Cluster {
        let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let members = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().unwrap().to_string()))
            .collect();
        let dir = disk.then(|| tempfile::tempdir().unwrap());
        let mut cluster = Cluster { members, nodes: Vec::new(), delivered: Vec::new(), dir, params, apply_delay };
        for (i, l) in listeners.into_iter().enumerate() {
            let (handle, delivered) = cluster.launch(i, Some(l), 0).await.expect("node starts");
            cluster.nodes.push(Some(handle));
            cluster.delivered.push(delivered);
        }
        cluster
    }

    pub fn data_dir(&self, i: usize) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join(format!("n{}", i + 1)))
    }

    pub fn config(&self, i: usize, applied: u64) -> RaftConfig {
        let params = RaftParams {
            seed: Some(100 + i as u64),
            applied_index: applied,
            cluster_id: Some(CLUSTER_ID),
            ..self.params.clone()
        };
        RaftConfig::with_ids(self.members.clone(), NodeId(i as u64 + 1), params, self.data_dir(i))
    }

    async fn launch(
        &self,
        i: usize,
        listener: Option<std::net::TcpListener>,
        applied: u64,
    ) -> Result<(RaftHandle, Delivered), StartError> {
        let mut config = self.config(i, applied);
        if let Some(l) = listener {
            config = config.with_listener(l);
        }
        let (handle, mut entries) = Raft::start(config).await?;
        let delivered: Delivered = Arc::default();
        let sink = delivered.clone();
        let delay = self.apply_delay;
        tokio::spawn(async move {
            while let Some(c) = entries.recv_committed().await {
                sink.lock().unwrap().push(c);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        });
        Ok((handle, delivered))
    }

    pub fn node(&self, i: usize) -> &RaftHandle {
        self.nodes[i].as_ref().expect("node running")
    }

    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node running");
        node.shutdown().await.expect("clean shutdown");
    }

    /// Restarts node `i` on its address and data directory; its delivered
    /// list starts empty, as a new life's does.
    pub async fn restart(&mut self, i: usize, applied: u64) {
        assert!(self.nodes[i].is_none(), "stop it first");
        let (handle, delivered) = self.launch(i, None, applied).await.expect("node restarts");
        self.nodes[i] = Some(handle);
        self.delivered[i] = delivered;
    }

    /// Waits until the running nodes agree on one leader; returns its index.
    pub async fn leader(&self) -> usize {
        agreed_leader(&self.nodes).await
    }

    pub fn delivered(&self, i: usize) -> Vec<(u64, Vec<u8>)> {
        self.delivered[i].lock().unwrap().iter().map(|c| (c.index.0, c.data.clone())).collect()
    }

    /// Waits until every running node has delivered `n` entries, then
    /// checks they delivered the same entries in the same order.
    pub async fn converge(&self, n: usize) -> Vec<(u64, Vec<u8>)> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        wait_until(&format!("{n} entries delivered on every running node"), || {
            running.iter().all(|&i| self.delivered[i].lock().unwrap().len() >= n)
        })
        .await;
        let first = self.delivered(running[0]);
        assert_eq!(first.len(), n, "more entries than proposed on node {}", running[0] + 1);
        for &i in &running[1..] {
            assert_eq!(self.delivered(i), first, "node {} delivered another order than node {}", i + 1, running[0] + 1);
        }
        first
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// Proposes `count` entries named `{tag}-{k}` at node `i`, concurrently, and
/// returns (index, data) of each once committed.
pub async fn propose_many(node: &RaftHandle, tag: &str, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut calls = Vec::new();
    for k in 0..count {
        let node = node.clone();
        let data = format!("{tag}-{k}").into_bytes();
        calls.push(tokio::spawn(async move {
            let index = node.propose(data.clone()).await.expect("proposal commits");
            (index.0, data)
        }));
    }
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}
