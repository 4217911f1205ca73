//! The embedding API: start a node, propose, read committed entries, watch
//! the leader, read the status, shut down.

use crate::config::{ConfigurationError, RaftConfig, FRAME_OVERHEAD_BYTES};
use crate::driver::{Driver, Published, Timers};
use crate::reads::{ReadError, ReadRequest, ReadWaiters};
use crate::storage::{Storage, StorageCounters, StorageError, StoreIdentity};
use crate::transport::{Transport, TransportConfig, TransportCounters};
use crate::waiters::{ProposeRequest, Waiters};
use raft_core::{Committed, DropCounters, Log, LogIndex, Node, NodeId, RecoverError, RoleKind, Status, Term};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

/// Most peer messages waiting for the node loop. Readers wait when it is
/// full, which pushes back on the senders through TCP.
const INBOX_MAX: usize = 4096;
/// Most proposals waiting for the node loop. `ProposalSender::send` fails
/// with `Busy` when it is full; `propose` waits.
const PROPOSAL_QUEUE_MAX: usize = 4096;

/// Why a proposal did not commit (or may not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// The node is not running (shut down or failed).
    Stopped,
    /// The proposal queue is full (only from the non-waiting
    /// [`ProposalSender::send`]). Retry later.
    Busy,
    /// The proposal is larger than `RaftParams::message_bytes_max` allows.
    TooLarge,
    /// No leader is known and the node holds as many proposals as it may
    /// (`RaftParams::pending_proposals_max`). Retry later.
    NoLeader,
    /// Every attempt reached a node that was no longer leader.
    NotLeader {
        /// The leader the last refusing node knew of.
        leader_hint: Option<NodeId>,
    },
    /// Every attempt was appended by a leader that lost its place in the
    /// log to another leader's entries. It did not commit.
    Lost,
    /// Not known to be committed within `RaftParams::proposal_timeout`.
    /// Its fate is unknown: it may still commit.
    Timeout,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::Stopped => write!(f, "the node is not running"),
            ProposeError::Busy => write!(f, "the proposal queue is full"),
            ProposeError::TooLarge => write!(f, "the proposal is larger than message_bytes_max"),
            ProposeError::NoLeader => write!(f, "no leader is known and the pending queue is full"),
            ProposeError::NotLeader { leader_hint } => {
                write!(f, "refused by a node that is not leader (hint {leader_hint:?})")
            }
            ProposeError::Lost => write!(f, "overwritten by a new leader's entries; not committed"),
            ProposeError::Timeout => write!(f, "not committed in time; it may still commit"),
        }
    }
}

impl std::error::Error for ProposeError {}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration cannot work.
    Config(ConfigurationError),
    /// The node's address cannot be bound.
    Bind {
        /// The address.
        addr: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The store cannot be opened or holds something wrong. It is left as
    /// it is, never reset.
    Storage(StorageError),
    /// The in-memory store was asked to skip applied entries it does not
    /// have (`applied_index` beyond an empty log).
    Recover(RecoverError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "bad configuration: {e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Recover(e) => write!(f, "cannot recover: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a running node stopped on its own.
#[derive(Debug, Clone)]
pub enum NodeError {
    /// A write or fsync failed: the node stops rather than go on with state
    /// it could not save.
    Storage(StorageError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Who leads, as this node knows it, and its own role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader of `term`, if known.
    pub leader: Option<NodeId>,
    /// This node's current term.
    pub term: Term,
    /// This node's role.
    pub role: RoleKind,
}

/// Messages the transport dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportDrops {
    /// Incoming connections closed for a bad handshake or frame (garbage,
    /// over the size limit, another cluster, a node outside the cluster).
    pub rejected_connections: u64,
    /// Outgoing messages dropped because the peer's queue was full.
    pub send_queue_full: u64,
    /// Outgoing messages dropped because they do not fit in one frame.
    pub oversized_messages: u64,
}

/// A snapshot of a node's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: RoleKind,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its last log index.
    pub last_log_index: LogIndex,
    /// The highest index it knows committed.
    pub commit_index: LogIndex,
    /// The highest index handed to the application (queued on the entry
    /// receiver), or given as `applied_index` at start.
    pub applied_index: LogIndex,
    /// Peer messages raft-core ignored, by reason.
    pub dropped: DropCounters,
    /// What the transport dropped.
    pub transport: TransportDrops,
    /// Batches of changes made durable (one fsync each with the disk store).
    pub storage_writes: u64,
    /// Total time spent making them durable, in microseconds.
    pub storage_write_micros: u64,
    /// Whether the node has stopped.
    pub stopped: bool,
}

/// The sending half for proposals, as raft-lite hands it out. Cheap to clone.
#[derive(Clone)]
pub struct ProposalSender {
    tx: mpsc::Sender<ProposeRequest>,
}

impl ProposalSender {
    /// Queues a proposal without waiting (usable outside async code). Its
    /// fate is not reported (a failure is logged); use [`Self::propose`] to
    /// learn it. Errors: `Busy` when the queue is full, `Stopped`.
    pub fn send(&self, data: Vec<u8>) -> Result<(), ProposeError> {
        self.tx.try_send(ProposeRequest { data, reply: None }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Busy,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped,
        })
    }

    /// Proposes and waits until the entry is committed (and queued for the
    /// entry receiver): returns its log index. Retries as the crate
    /// documentation describes.
    pub async fn propose(&self, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(ProposeRequest { data, reply: Some(reply) }).await.map_err(|_| ProposeError::Stopped)?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }
}

/// The receiving half of committed entries, in log order; each entry once
/// per node lifetime (see the crate documentation on restarts).
pub struct EntryReceiver {
    rx: mpsc::Receiver<Vec<Committed>>,
    buffered: std::vec::IntoIter<Committed>,
}

impl EntryReceiver {
    /// The next committed command's bytes; `None` once the node stopped.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.recv_committed().await.map(|c| c.data)
    }

    /// The next committed entry with its index and term; `None` once the
    /// node stopped.
    pub async fn recv_committed(&mut self) -> Option<Committed> {
        loop {
            if let Some(c) = self.buffered.next() {
                return Some(c);
            }
            self.buffered = self.rx.recv().await?.into_iter();
        }
    }
}

type Outcome = Option<Result<(), NodeError>>;

/// A running node: propose, watch, read status, shut down. Cheap to clone;
/// the node keeps running when every handle is dropped (until
/// [`RaftHandle::shutdown`] or the end of the runtime).
#[derive(Clone)]
pub struct RaftHandle {
    id: NodeId,
    local_addr: SocketAddr,
    members: Arc<[(NodeId, String)]>,
    proposals: ProposalSender,
    reads: mpsc::Sender<ReadRequest>,
    status: watch::Receiver<Status>,
    leader: watch::Receiver<LeaderInfo>,
    counters: Arc<TransportCounters>,
    storage: Arc<StorageCounters>,
    shutdown: Arc<watch::Sender<bool>>,
    outcome: watch::Receiver<Outcome>,
}

impl RaftHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every member's id and configured address (this node's included), for
    /// example to redirect a client to the leader.
    pub fn members(&self) -> &[(NodeId, String)] {
        &self.members
    }

    /// Proposes and waits until committed; see [`ProposalSender::propose`].
    pub async fn propose(&self, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        self.proposals.propose(data).await
    }

    /// Waits until a linearizable read may be served, and returns the
    /// *barrier*: once the application has applied every entry the
    /// [`EntryReceiver`] gave it up to this index, reading its own state
    /// reflects every write committed before this call (ReadIndex, Raft
    /// thesis §6.4: the leader confirms with a majority that it still leads,
    /// without writing to the log). Works on any node; a follower asks the
    /// leader. Refused reads are asked again up to
    /// `RaftParams::proposal_retries_max` times (paced, 100 ms apart).
    pub async fn read_barrier(&self) -> Result<LogIndex, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.reads.send(ReadRequest { reply }).await.map_err(|_| ReadError::Stopped)?;
        answer.await.unwrap_or(Err(ReadError::Stopped))
    }

    /// A sender for proposals.
    pub fn proposer(&self) -> ProposalSender {
        self.proposals.clone()
    }

    /// The leader and role now.
    pub fn leader(&self) -> LeaderInfo {
        *self.leader.borrow()
    }

    /// A watch of the leader and role: `changed().await` wakes on each change.
    pub fn watch_leader(&self) -> watch::Receiver<LeaderInfo> {
        self.leader.clone()
    }

    /// A snapshot of the node's condition.
    pub fn status(&self) -> NodeStatus {
        let s = self.status.borrow().clone();
        let c = &self.counters;
        NodeStatus {
            id: s.id,
            role: s.role,
            term: s.term,
            leader: s.leader,
            last_log_index: s.last_log_index,
            commit_index: s.commit_index,
            applied_index: s.delivered_index,
            dropped: s.dropped,
            transport: TransportDrops {
                rejected_connections: c.rejected_connections.load(Ordering::Relaxed),
                send_queue_full: c.send_queue_full.load(Ordering::Relaxed),
                oversized_messages: c.oversized_messages.load(Ordering::Relaxed),
            },
            storage_writes: self.storage.writes.load(Ordering::Relaxed),
            storage_write_micros: self.storage.write_micros.load(Ordering::Relaxed),
            stopped: self.outcome.borrow().is_some(),
        }
    }

    /// Stops the node: the current batch finishes (its writes are durable),
    /// connections close, the store is closed and the port released.
    /// Pending proposal calls fail with `Stopped`; the entry receiver ends.
    /// Returns how the node ended (an error if it had failed before).
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.shutdown.send_replace(true);
        self.stopped().await
    }

    /// Waits until the node stops, without asking it to.
    pub async fn stopped(&self) -> Result<(), NodeError> {
        let mut outcome = self.outcome.clone();
        let done = outcome.wait_for(Option::is_some).await;
        match done {
            Ok(o) => o.clone().expect("waited for Some"),
            Err(_) => Ok(()),
        }
    }
}

/// A node in raft-lite's shape: `Raft::new(config)`, then `run()`.
pub struct Raft {
    config: Option<RaftConfig>,
    handle: Option<RaftHandle>,
}

impl Raft {
    /// A node that is not running yet.
    pub fn new(config: RaftConfig) -> Raft {
        Raft { config: Some(config), handle: None }
    }

    /// Starts the node (call inside a tokio runtime) and returns the sender
    /// of proposals and the receiver of committed entries, as raft-lite
    /// does. Opening the store blocks briefly.
    ///
    /// # Panics
    /// When the node cannot start (bad configuration, address in use, a
    /// corrupt store: the message says which), or when called twice. Use
    /// [`Raft::try_run`] or [`Raft::start`] to handle those as errors.
    pub fn run(&mut self) -> (ProposalSender, EntryReceiver) {
        match self.try_run() {
            Ok(pair) => pair,
            Err(e) => panic!("raft-tokio: the node cannot start: {e}"),
        }
    }

    /// [`Raft::run`], with start-up failures as errors (it still panics
    /// when called twice).
    pub fn try_run(&mut self) -> Result<(ProposalSender, EntryReceiver), StartError> {
        let config = self.config.take().expect("Raft::run called twice");
        let (handle, entries) = start_blocking(config)?;
        let sender = handle.proposer();
        self.handle = Some(handle);
        Ok((sender, entries))
    }

    /// The running node's handle (after `run`).
    pub fn handle(&self) -> Option<&RaftHandle> {
        self.handle.as_ref()
    }

    /// Starts a node without blocking the runtime: opens the store, binds
    /// the address, recovers, and returns its handle and entry receiver.
    pub async fn start(config: RaftConfig) -> Result<(RaftHandle, EntryReceiver), StartError> {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _entered = runtime.enter();
            start_blocking(config)
        })
        .await
        .expect("start-up does not panic")
    }
}

fn seed_for(id: NodeId, configured: Option<u64>) -> u64 {
    if let Some(seed) = configured {
        info!(node = %id, seed, "timer RNG seeded from the configuration");
        return seed;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ id.0.rotate_left(17);
    info!(node = %id, seed, "timer RNG seed (set RaftParams::seed to replay)");
    seed
}

/// Opens everything a node needs, then spawns its loop. Blocking (the store
/// is opened and read here); must run inside a tokio runtime context.
fn start_blocking(config: RaftConfig) -> Result<(RaftHandle, EntryReceiver), StartError> {
    start_with(config, None)
}

/// `start_blocking`, with the store given instead of opened (tests inject
/// a failing one).
fn start_with(
    mut config: RaftConfig,
    given: Option<(Storage, crate::storage::Recovered)>,
) -> Result<(RaftHandle, EntryReceiver), StartError> {
    let (id, core) = config.core_config().map_err(StartError::Config)?;
    let cluster_id = config.cluster_id();
    let listener = match config.listener.take() {
        Some(l) => l,
        None => std::net::TcpListener::bind(config.self_addr.as_str())
            .map_err(|source| StartError::Bind { addr: config.self_addr.clone(), source })?,
    };
    let bind_error = |source| StartError::Bind { addr: config.self_addr.clone(), source };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;

    let identity = StoreIdentity { cluster_id: config.params.cluster_id, node_id: id };
    let (storage, recovered) = match (given, &config.data_dir) {
        (Some(given), _) => given,
        (None, Some(dir)) => Storage::disk(dir, identity, format!("raft-store-{id}")).map_err(StartError::Storage)?,
        (None, None) => Storage::memory(),
    };
    let log = Log::from_entries(recovered.entries);
    info!(node = %id, term = %recovered.hard.term, last = %log.last_index(), "recovered");
    let (node, first_outputs) =
        Node::recover(core, recovered.hard, log, config.applied()).map_err(|e| match &storage {
            Storage::Disk { path, .. } => StartError::Storage(StorageError {
                path: path.clone(),
                problem: crate::storage::StorageProblem::Inconsistent(e),
            }),
            _ => StartError::Recover(e),
        })?;

    let p = &config.params;
    let counters = Arc::new(TransportCounters::default());
    let (inbox_tx, inbox) = mpsc::channel(INBOX_MAX);
    let transport_config = TransportConfig {
        id,
        cluster_id,
        members: config.members.iter().cloned().collect(),
        frame_bytes_max: p.message_bytes_max + FRAME_OVERHEAD_BYTES,
        send_queue_max: p.send_queue_max,
    };
    let transport = Transport::start(transport_config, listener, inbox_tx, counters.clone());
    let (request_tx, requests) = mpsc::channel(PROPOSAL_QUEUE_MAX);
    let (read_tx, read_requests) = mpsc::channel(PROPOSAL_QUEUE_MAX);
    let read_waiters = ReadWaiters::new(p.proposal_retries_max, p.proposal_timeout);
    let (delivery_tx, deliveries) = mpsc::channel(p.delivery_queue_max);
    let status = node.status();
    let leader = LeaderInfo { leader: status.leader, term: status.term, role: status.role };
    let (status_tx, status_rx) = watch::channel(status);
    let (leader_tx, leader_rx) = watch::channel(leader);
    let shutdown = Arc::new(watch::channel(false).0);
    let (outcome_tx, outcome) = watch::channel(None);
    let timers = Timers::new(ChaCha8Rng::seed_from_u64(seed_for(id, p.seed)));
    let waiters = Waiters::new(p.proposal_retries_max, p.proposal_timeout);
    let storage_counters = Arc::new(StorageCounters::default());
    let driver = Driver::new(
        node,
        first_outputs,
        (storage, storage_counters.clone()),
        transport,
        timers,
        waiters,
        inbox,
        requests,
        (read_requests, read_waiters),
        delivery_tx,
        Published { status: status_tx, leader: leader_tx },
        shutdown.subscribe(),
    );
    let keep_running = shutdown.clone();
    tokio::spawn(async move {
        let result = driver.run().await;
        drop(keep_running);
        outcome_tx.send_replace(Some(result));
    });
    info!(node = %id, addr = %local_addr, cluster = format!("{cluster_id:#x}"), "started");
    let handle = RaftHandle {
        id,
        local_addr,
        members: config.members.clone().into(),
        proposals: ProposalSender { tx: request_tx },
        reads: read_tx,
        status: status_rx,
        leader: leader_rx,
        counters,
        storage: storage_counters,
        shutdown,
        outcome,
    };
    Ok((handle, EntryReceiver { rx: deliveries, buffered: Vec::new().into_iter() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Recovered, StorageProblem};
    use crate::RaftParams;

    #[tokio::test]
    async fn a_failed_write_stops_the_node_with_the_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = RaftConfig::new(vec![addr.clone()], addr, RaftParams::default(), None).with_listener(listener);
        // A one-node cluster: its first election persists its vote, which fails.
        let (node, mut entries) = start_with(config, Some((Storage::FailWrites, Recovered::default()))).unwrap();
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), node.stopped()).await.unwrap();
        match stopped {
            Err(NodeError::Storage(StorageError { problem: StorageProblem::WriteFailed(_), .. })) => {}
            other => panic!("expected a write failure, got {other:?}"),
        }
        assert!(node.status().stopped);
        assert_eq!(node.status().term, Term(0), "the status never showed the term it could not save");
        assert_eq!(node.propose(b"x".to_vec()).await, Err(ProposeError::Stopped));
        assert!(entries.recv().await.is_none());
    }
}
