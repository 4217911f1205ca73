//! How a node is configured: who the members are, where they listen, the
//! protocol's parameters and where the node keeps its state.

use raft_core::{Config, ConfigError, LogIndex, Membership, MembershipError, NodeId};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Parameters with sensible defaults (`RaftParams::default()`); change
/// fields with struct update syntax:
/// `RaftParams { seed: Some(7), ..RaftParams::default() }`.
#[derive(Clone, Debug)]
pub struct RaftParams {
    /// The election timeout range; each timeout is drawn uniformly from it.
    /// Default 150–300 ms (the Raft paper's recommendation).
    pub election_timeout: (Duration, Duration),
    /// How often a leader sends heartbeats. Default 50 ms; at most half the
    /// minimum election timeout.
    pub heartbeat_interval: Duration,
    /// The seed of the RNG that draws timer durations. `None`: a seed is
    /// made from the clock and the process id, and logged, so that a run
    /// can be replayed.
    pub seed: Option<u64>,
    /// The cluster id every connection's handshake must carry. `None`: a
    /// hash of the member list (ids and addresses), so that two clusters
    /// with different members never mix even on the same ports.
    pub cluster_id: Option<u64>,
    /// The last log index the application has already applied (and kept,
    /// e.g. in its own snapshot or database). On restart, only committed
    /// entries after it are delivered again. Default 0: every committed
    /// entry is delivered again after a restart. When the node holds a
    /// snapshot beyond it, the application is handed that snapshot first
    /// ([`crate::Event::Restore`]), then the entries after it.
    pub applied_index: u64,
    /// How long a proposal call waits for its entry to commit before it
    /// reports [`crate::ProposeError::Timeout`]. Default 10 s.
    pub proposal_timeout: Duration,
    /// How many times a proposal refused by a node that was no longer
    /// leader (or lost to a new leader's log) is proposed again before the
    /// call reports the refusal. Default 5.
    pub proposal_retries_max: u32,
    /// Most entries in one AppendEntries. Default 1024 (raft-core's 64 would
    /// need several round trips to replicate one batch of 256 proposals).
    pub entries_per_append_max: usize,
    /// Most payload bytes in one message; a larger proposal is refused.
    /// Default 1 MiB. Frames may exceed it by [`FRAME_OVERHEAD_BYTES`].
    pub message_bytes_max: usize,
    /// Most entries sent to a follower ahead of its acknowledgements.
    /// Default 8192.
    pub inflight_entries_max: u64,
    /// Most proposals a follower holds while it knows no leader. Default 4096.
    pub pending_proposals_max: usize,
    /// Most messages queued for one peer; when it is full (the peer is slow
    /// or unreachable), further messages to it are dropped and counted, and
    /// Raft retries. Default 4096.
    pub send_queue_max: usize,
    /// Most committed entries handed to the application and not yet taken
    /// from the [`crate::EntryReceiver`] (raft-core's
    /// `unapplied_entries_max`, which counts no-op entries too): the
    /// receiver's queue never holds more, and the node hands over more as
    /// the application takes them. The node never waits for the
    /// application; while it lags, new proposals wait (see the crate
    /// documentation). Default 4096.
    pub unapplied_entries_max: u64,
    /// Pre-vote (Raft thesis §9.6): a node whose election timer fires asks
    /// first whether it could win, and changes its term only if a majority
    /// says yes, so a node that was cut off or restarted does not depose a
    /// live leader when it comes back. Default on (raft-core's default is
    /// off; hashicorp's raft and CockroachDB run with it on).
    pub pre_vote: bool,
    /// Check-quorum (Raft thesis §6.2): a leader that has not heard from a
    /// majority for an election timeout steps down, so a leader cut off in
    /// a minority stops saying it leads (and its clients are told at once
    /// that no leader is known) within two election timeouts; and a node
    /// that hears from a live leader ignores vote requests of higher terms.
    /// Default on, as `pre_vote`.
    pub check_quorum: bool,
    /// Log entries kept before a snapshot's index when the application
    /// takes a snapshot (raft-core's `Config::trailing_entries`): a follower
    /// that lags by fewer is sent entries, which is cheaper than the
    /// snapshot. Default 1024.
    pub trailing_entries: u64,
    /// Whether the cluster is being created or already exists; decides what
    /// an empty store means. See [`ClusterState`]. Default
    /// [`ClusterState::New`].
    pub initial_cluster_state: ClusterState,
    /// Whether this node, while it leads, promotes each learner to voter
    /// once the learner's log is within [`crate::PROMOTE_LAG_MAX`] entries
    /// of the leader's (see the crate documentation on membership). Default
    /// on: a node added to the cluster (started with
    /// [`RaftConfig::joining`]) becomes a voter by itself once caught up.
    /// Off: learners stay learners until [`crate::RaftHandle::promote`].
    pub promote_learners: bool,
}

/// What an empty store at start means (etcd's `initial-cluster-state`).
///
/// A node that lost its disk and starts again with an empty store is not a
/// new node: it has voted and acknowledged entries that the cluster counts
/// on (Raft's safety assumes that what a node persisted stays persisted).
/// Started as a voter it may vote a second time in a term, or help elect a
/// leader that lacks entries it had acknowledged, and committed entries can
/// be lost. raft-tokio cannot tell such a node from a brand-new one by its
/// disk alone, so it is told.
///
/// The default is [`ClusterState::New`], as etcd's: it is the only value
/// with which a new cluster starts without a second configuration, and it
/// keeps every caller that predates this setting working. It is also the
/// less safe one once the cluster has formed: deployments should start
/// every node after its first start with [`ClusterState::Existing`] (raft-kv
/// has a flag for it), so that a wiped data directory is refused instead of
/// silently rejoining. Leaders see such a node anyway and count it
/// (`NodeStatus::followers_regressed`, logged at WARN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    /// The cluster is being created: an empty store is a new member's, and
    /// starts with the configured members.
    #[default]
    New,
    /// The cluster exists: this node has started before, so an empty store
    /// means it lost its state. The start is refused with
    /// [`crate::StartError::EmptyStoreInExistingCluster`], naming the data
    /// directory. Such a node comes back as a new member, under a new id
    /// ([`RaftConfig::joining`]), once the old one is removed.
    Existing,
}

/// Bytes a frame may carry beyond `message_bytes_max`: the encoding's
/// per-entry and per-message overhead (a few bytes per entry, at most
/// `entries_per_append_max` entries).
pub const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

impl Default for RaftParams {
    fn default() -> Self {
        RaftParams {
            election_timeout: Config::ELECTION_TIMEOUT_DEFAULT,
            heartbeat_interval: Config::HEARTBEAT_INTERVAL_DEFAULT,
            seed: None,
            cluster_id: None,
            applied_index: 0,
            proposal_timeout: Duration::from_secs(10),
            proposal_retries_max: 5,
            entries_per_append_max: 1024,
            message_bytes_max: 1 << 20,
            inflight_entries_max: 8192,
            pending_proposals_max: 4096,
            send_queue_max: 4096,
            unapplied_entries_max: 4096,
            pre_vote: true,
            check_quorum: true,
            trailing_entries: 1024,
            initial_cluster_state: ClusterState::New,
            promote_learners: true,
        }
    }
}

/// A node's configuration, in raft-lite's shape: the members' addresses,
/// this node's address, parameters, and a data directory.
#[derive(Debug)]
pub struct RaftConfig {
    pub(crate) members: Vec<(NodeId, String)>,
    pub(crate) id: Option<NodeId>,
    pub(crate) self_addr: String,
    pub(crate) params: RaftParams,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) listener: Option<std::net::TcpListener>,
    pub(crate) in_process: Option<crate::InProcessNetwork>,
    /// Whether an empty store starts as a learner that joins a running
    /// cluster (see [`RaftConfig::joining`]).
    pub(crate) join: bool,
}

/// A configuration that cannot work. Each variant is the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigurationError {
    /// The node's own address is not in the member list.
    SelfNotListed {
        /// The address given for this node.
        addr: String,
    },
    /// Two members share an address.
    DuplicateAddress {
        /// The address.
        addr: String,
    },
    /// The node's id (given with [`RaftConfig::with_ids`]) is not in the
    /// member list.
    SelfNotMember {
        /// The id given for this node.
        id: NodeId,
    },
    /// The member list names no member, or one id twice.
    Members(MembershipError),
    /// The protocol parameters are refused by raft-core.
    Protocol(ConfigError),
    /// A size bound is zero.
    ZeroBound {
        /// Its name.
        name: &'static str,
    },
}

impl fmt::Display for ConfigurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigurationError::SelfNotListed { addr } => write!(f, "own address {addr} is not in the member list"),
            ConfigurationError::DuplicateAddress { addr } => write!(f, "address {addr} is listed twice"),
            ConfigurationError::SelfNotMember { id } => write!(f, "node {id} is not in the member list"),
            ConfigurationError::Members(e) => write!(f, "{e}"),
            ConfigurationError::Protocol(e) => write!(f, "{e}"),
            ConfigurationError::ZeroBound { name } => write!(f, "{name} must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigurationError {}

impl RaftConfig {
    /// A configuration from the list of every member's address (this node's
    /// included) and this node's address, as raft-lite takes it. Members
    /// get node ids 1, 2, 3, ... in list order, so every node must be given
    /// the same list in the same order. `data_dir: None` selects the
    /// in-memory store: nothing survives a restart.
    pub fn new(peers: Vec<String>, self_addr: String, params: RaftParams, data_dir: Option<PathBuf>) -> RaftConfig {
        let members = peers.into_iter().enumerate().map(|(i, a)| (NodeId(i as u64 + 1), a)).collect();
        RaftConfig { members, id: None, self_addr, params, data_dir, listener: None, in_process: None, join: false }
    }

    /// A configuration with explicit node ids: `members` lists every
    /// member's id and address, `id` is this node's.
    pub fn with_ids(
        members: Vec<(NodeId, String)>,
        id: NodeId,
        params: RaftParams,
        data_dir: Option<PathBuf>,
    ) -> RaftConfig {
        let self_addr = members.iter().find(|(m, _)| *m == id).map(|(_, a)| a.clone()).unwrap_or_default();
        RaftConfig { members, id: Some(id), self_addr, params, data_dir, listener: None, in_process: None, join: false }
    }

    /// A node that joins a running cluster: `members` are the cluster's
    /// initial members (as every other node was given them: they make the
    /// cluster id unless `RaftParams::cluster_id` is set, and they are the
    /// addresses this node can reach before it learns the current
    /// membership from the leader); `id` and `self_addr` are this node's,
    /// which need not be among them. An empty store starts as
    /// [`Membership::joining`]: a learner that knows no voter, stands for
    /// nothing, and waits for the leader to add it
    /// ([`crate::RaftHandle::add_learner`]) and send it the log (or a
    /// snapshot). A store that holds state starts from it, as any restart
    /// does, so a joined node is restarted with the same configuration.
    pub fn joining(
        members: Vec<(NodeId, String)>,
        id: NodeId,
        self_addr: String,
        params: RaftParams,
        data_dir: Option<PathBuf>,
    ) -> RaftConfig {
        let members = members.into_iter().filter(|(m, _)| *m != id).collect();
        RaftConfig { members, id: Some(id), self_addr, params, data_dir, listener: None, in_process: None, join: true }
    }

    /// Uses an already-bound listener for this node's address instead of
    /// binding it at start (tests bind port 0 and learn the port first).
    pub fn with_listener(mut self, listener: std::net::TcpListener) -> RaftConfig {
        self.listener = Some(listener);
        self
    }

    /// Runs the node on `network` (nodes of this process, over channels)
    /// instead of TCP: nothing is bound, and the members' addresses are
    /// only names. See [`crate::inprocess`].
    pub fn with_in_process(mut self, network: &crate::InProcessNetwork) -> RaftConfig {
        self.in_process = Some(network.clone());
        self
    }

    /// The parameters.
    pub fn params(&self) -> &RaftParams {
        &self.params
    }

    /// This node's id, the raft-core configuration, and the members as
    /// raft-core takes them (the membership a fresh store starts with).
    pub(crate) fn core_config(&self) -> Result<(NodeId, Config, Membership), ConfigurationError> {
        let mut addrs = std::collections::BTreeSet::new();
        for (_, a) in &self.members {
            if !addrs.insert(a.as_str()) {
                return Err(ConfigurationError::DuplicateAddress { addr: a.clone() });
            }
        }
        let id = match self.id {
            Some(id) => id,
            None => self
                .members
                .iter()
                .find(|(_, a)| *a == self.self_addr)
                .map(|(id, _)| *id)
                .ok_or_else(|| ConfigurationError::SelfNotListed { addr: self.self_addr.clone() })?,
        };
        let membership = if self.join {
            Membership::joining(id).with_address(id, self.self_addr.clone())
        } else {
            let ids = self.members.iter().map(|(m, _)| *m);
            let bare = Membership::new(ids).map_err(ConfigurationError::Members)?;
            if !bare.contains(id) {
                return Err(ConfigurationError::SelfNotMember { id });
            }
            // The bootstrap membership carries every member's address, so
            // that nodes added later learn them from the log or a snapshot.
            self.members.iter().fold(bare, |m, (id, addr)| m.with_address(*id, addr.clone()))
        };
        let p = &self.params;
        if p.send_queue_max == 0 {
            return Err(ConfigurationError::ZeroBound { name: "send_queue_max" });
        }
        let config = Config::new(id)
            .with_timing(p.election_timeout.0, p.election_timeout.1, p.heartbeat_interval)
            .and_then(|c| c.with_entries_per_append_max(p.entries_per_append_max))
            .and_then(|c| c.with_message_bytes_max(p.message_bytes_max))
            .and_then(|c| c.with_inflight_entries_max(p.inflight_entries_max))
            .and_then(|c| c.with_pending_proposals_max(p.pending_proposals_max))
            .and_then(|c| c.with_unapplied_entries_max(p.unapplied_entries_max))
            .map_err(ConfigurationError::Protocol)?
            .with_pre_vote(p.pre_vote)
            .with_check_quorum(p.check_quorum)
            .with_trailing_entries(p.trailing_entries);
        Ok((id, config, membership))
    }

    /// The cluster id: the configured one, or a hash (FNV-1a) of the member
    /// list.
    pub(crate) fn cluster_id(&self) -> u64 {
        if let Some(id) = self.params.cluster_id {
            return id;
        }
        let mut members = self.members.clone();
        members.sort();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (id, addr) in &members {
            for b in id.0.to_le_bytes().iter().chain(addr.as_bytes()).chain([0xff].iter()) {
                hash ^= *b as u64;
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }

    /// The applied index as raft-core takes it.
    pub(crate) fn applied(&self) -> LogIndex {
        LogIndex(self.params.applied_index)
    }
}

/// A cluster id as every log line and error shows it: `0x` and 16 hex
/// digits (raft-kv adds the cluster file's name before it).
pub(crate) fn cluster_id_text(id: u64) -> String {
    format!("{id:#018x}")
}
