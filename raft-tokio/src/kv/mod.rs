//! raft-kv: a replicated key-value server on raft-tokio (the `kv` feature).
//!
//! - [`machine`]: the state machine replicated through the log;
//! - [`snapshot`]: the machine written to and read from a snapshot;
//! - [`server`]: the HTTP API every node serves;
//! - [`config`]: the cluster file of `raft-kv serve`;
//! - [`http`]: the small HTTP client used for forwarding and by the CLI.

pub mod config;
pub mod http;
pub mod machine;
pub mod server;
pub mod snapshot;

use crate::{Raft, RaftConfig, RaftHandle, RaftParams, StartError};
use config::{ClusterFile, NodeEntry};
use raft_core::NodeId;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

/// A stable 64-bit hash (FNV-1a) of the cluster file's `cluster_id`, for
/// raft-tokio's handshake.
pub fn cluster_hash(cluster_id: &str) -> u64 {
    cluster_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// How long a joining node waits for each cluster-file node's `/members`.
const MEMBERS_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The addresses a joining node starts its address book with: the cluster
/// file's, and those of the current members as the first cluster-file node
/// that answers `GET /members` lists them. The cluster file may be stale (its
/// nodes replaced since), and a joining node must reach whichever member
/// leads before the leader's log tells it the membership: the leader's
/// first messages need an answer. Without an answer it keeps the file's.
async fn with_current_members(cluster: &ClusterFile, mut members: Vec<(NodeId, String)>) -> Vec<(NodeId, String)> {
    // Bound: one query per cluster-file node.
    for node in &cluster.nodes {
        let answer = http::request(node.http.as_str(), "GET", "/members", &[], &[], MEMBERS_QUERY_TIMEOUT).await;
        let Ok(response) = answer else { continue };
        let Ok(body) = serde_json::from_slice::<server::MembersBody>(&response.body) else { continue };
        for m in body.members.iter().filter(|m| !m.raft.is_empty()) {
            members.retain(|(id, _)| id.0 != m.id);
            members.push((NodeId(m.id), m.raft.clone()));
        }
        info!(from = %node.http, members = ?body.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            "joining: the current members' addresses");
        return members;
    }
    tracing::warn!("joining: no cluster-file node answered GET /members; only the file's addresses are known");
    members
}

/// A running raft-kv node: the Raft node and its HTTP server.
pub struct KvNode {
    /// The HTTP side.
    pub server: Arc<KvServer>,
    /// Where it serves HTTP.
    pub http_addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub use server::KvServer;

/// Why a raft-kv node could not start.
#[derive(Debug)]
pub enum KvStartError {
    /// The Raft node could not start.
    Raft(StartError),
    /// The HTTP address (as the cluster file gives it) cannot be bound.
    Http(String, std::io::Error),
}

impl std::fmt::Display for KvStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvStartError::Raft(e @ StartError::EmptyStoreInExistingCluster { .. }) => write!(
                f,
                "{e} [raft-kv: \"existing\" comes from the cluster file's initial_cluster_state or from \
                 --initial-cluster-state]"
            ),
            KvStartError::Raft(e) => write!(f, "{e}"),
            KvStartError::Http(addr, e) => write!(f, "cannot serve HTTP on {addr}: {e}"),
        }
    }
}

impl std::error::Error for KvStartError {}

impl KvNode {
    /// Starts node `id` of `cluster`, keeping its Raft state in `data_dir`
    /// (`None`: in memory). `listeners` may hand over already-bound Raft and
    /// HTTP sockets (used by `raft-kv local` and tests).
    pub async fn start(
        cluster: &ClusterFile,
        id: u64,
        data_dir: Option<PathBuf>,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener)>,
    ) -> Result<KvNode, KvStartError> {
        let me = cluster.node(id).expect("the id was checked against the cluster file").clone();
        KvNode::start_node(cluster, me, false, data_dir, listeners).await
    }

    /// Starts a node that is not in the cluster file and joins the running
    /// cluster (raft-tokio's `RaftConfig::joining`): an empty data directory
    /// starts as a lone learner until the leader adds it (`raft-kv member
    /// add`), catches it up and promotes it; a data directory with state
    /// restarts as the member it has become. `me` gives its id and
    /// addresses; the cluster file's nodes are the initial members it can
    /// reach first.
    pub async fn join(
        cluster: &ClusterFile,
        me: NodeEntry,
        data_dir: Option<PathBuf>,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener)>,
    ) -> Result<KvNode, KvStartError> {
        KvNode::start_node(cluster, me, true, data_dir, listeners).await
    }

    async fn start_node(
        cluster: &ClusterFile,
        me: NodeEntry,
        join: bool,
        data_dir: Option<PathBuf>,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener)>,
    ) -> Result<KvNode, KvStartError> {
        let id = me.id;
        let mut members: Vec<(NodeId, String)> = cluster.nodes.iter().map(|n| (NodeId(n.id), n.raft.clone())).collect();
        if join {
            members = with_current_members(cluster, members).await;
        }
        let params = RaftParams {
            cluster_id: Some(cluster_hash(&cluster.cluster_id)),
            pre_vote: cluster.pre_vote,
            check_quorum: cluster.check_quorum,
            trailing_entries: cluster.trailing_entries,
            initial_cluster_state: cluster.initial_cluster_state,
            ..RaftParams::default()
        };
        let mut config = if join {
            RaftConfig::joining(members, NodeId(id), me.raft.clone(), params, data_dir)
        } else {
            RaftConfig::with_ids(members, NodeId(id), params, data_dir)
        };
        let http_error = |e| KvStartError::Http(me.http.clone(), e);
        let http_listener = match listeners {
            Some((raft, http)) => {
                config = config.with_listener(raft);
                http
            }
            // A host name is resolved here, once: a socket binds one address.
            None => std::net::TcpListener::bind(me.http.as_str()).map_err(http_error)?,
        };
        http_listener.set_nonblocking(true).map_err(http_error)?;
        let http_addr = http_listener.local_addr().map_err(http_error)?;
        let listener = tokio::net::TcpListener::from_std(http_listener).map_err(http_error)?;
        let (raft, entries) = Raft::start(config).await.map_err(KvStartError::Raft)?;
        let server = KvServer::start(raft, entries, cluster);
        let router = server.router();
        let task = tokio::spawn(async move { axum::serve(listener, router).await });
        info!(node = %NodeId(id), cluster = %cluster.cluster_text(), http = %http_addr, join, "raft-kv serving");
        Ok(KvNode { server, http_addr, task })
    }

    /// The Raft handle.
    pub fn raft(&self) -> &RaftHandle {
        self.server.raft()
    }

    /// Stops serving HTTP and shuts the Raft node down.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.server.raft().shutdown().await;
    }
}
