//! The embedding API: start a node, propose, read committed entries (and
//! snapshots to restore), watch the leader, read the status, shut down.

use crate::config::{ClusterState, ConfigurationError, RaftConfig, FRAME_OVERHEAD_BYTES};
use crate::driver::{Delivered, DriverCounters, SnapshotRequest, Snapshots, TransferRequest};
use crate::driver::{Delivery, Driver, MembershipChanges, Memberships, Published, Timers};
use crate::inprocess::{InProcessTransport, Reservation};
use crate::members::{ChangeError, ChangeRequest, ChangeWaiters};
use crate::network::Network;
use crate::reads::{ReadError, ReadRequest, ReadWaiters};
use crate::snapshots::{SnapshotReader, SnapshotStore};
use crate::storage::StorageProblem;
use crate::storage::{Storage, StorageCounters, StorageError, StoreIdentity};
use crate::transport::{AddressBook, Transport, TransportConfig, TransportCounters};
use crate::waiters::{ProposeRequest, Waiters};
use raft_core::{
    Change, Committed, Config, LogIndex, Membership, MemoryStore, Node, NodeId, Output, RecoverError, RoleKind, Status,
    Term, TransferRejection,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Most peer messages waiting for the node loop. Readers wait when it is
/// full, which pushes back on the senders through TCP.
const INBOX_MAX: usize = 4096;
/// Most proposals waiting for the node loop. `ProposalSender::send` fails
/// with `Busy` when it is full; `propose` waits.
const PROPOSAL_QUEUE_MAX: usize = 4096;
/// Most leadership transfer requests waiting for the node loop: an
/// operator's action, rare; callers beyond it wait.
const TRANSFER_QUEUE_MAX: usize = 16;
/// Most membership changes waiting for the node loop: an operator's
/// action, rare; callers beyond it wait.
const CHANGE_QUEUE_MAX: usize = 16;
/// How long a membership change refused for a passing reason (the leader
/// has not committed an entry of its term yet, another change is not
/// committed yet, a transfer runs) waits before it is asked again.
const CHANGE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Most snapshot requests waiting for the node loop: an application takes
/// one snapshot at a time; callers beyond it wait.
const SNAPSHOT_QUEUE_MAX: usize = 16;

/// Why a proposal did not commit (or may not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// The node is not running (shut down or failed).
    Stopped,
    /// A bounded queue is full: this node's proposal queue (at once from
    /// the non-waiting [`ProposalSender::send`]; until the deadline from
    /// `propose`), or the leader's backlog of uncommitted entries. The
    /// proposal was not appended. Retry later.
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
    /// Its fate is unknown: it may have been appended by a leader that then
    /// died or was cut off, and it may or may not commit later. See the
    /// crate documentation.
    Timeout,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::Stopped => write!(f, "the node is not running"),
            ProposeError::Busy => write!(f, "a proposal queue is full"),
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

/// Why a leadership transfer did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The node is not running.
    Stopped,
    /// raft-core refused it at once: this node does not lead (ask the
    /// hinted leader), the target is this node, or the target is not a
    /// voter. Nothing changed.
    Refused(TransferRejection),
    /// The target was not known as leader here within two maximum election
    /// timeouts (its log could not be brought up to date, or it lost the
    /// election). The leader gives the transfer up after one election
    /// timeout and takes proposals again; `leader` is the leader this node
    /// knows of now.
    Timeout {
        /// The leader this node knows of at the deadline.
        leader: Option<NodeId>,
    },
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Stopped => write!(f, "the node is not running"),
            TransferError::Refused(TransferRejection::NotLeader { leader_hint: Some(l) }) => {
                write!(f, "this node does not lead; node {l} does")
            }
            TransferError::Refused(TransferRejection::NotLeader { leader_hint: None }) => {
                write!(f, "this node does not lead, and knows no leader")
            }
            TransferError::Refused(TransferRejection::ToSelf) => write!(f, "the target leads already"),
            TransferError::Refused(TransferRejection::NotVoter) => write!(f, "the target is not a voter"),
            TransferError::Timeout { leader } => {
                write!(f, "the target did not become leader in time (leader now: {leader:?})")
            }
        }
    }
}

impl std::error::Error for TransferError {}

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
    /// have (`applied_index` beyond its empty log).
    Recover(RecoverError),
    /// The store is empty but the configuration says the cluster exists
    /// (`RaftParams::initial_cluster_state` is
    /// [`ClusterState::Existing`]): this node lost its state (a wiped or
    /// replaced disk, a wrong data directory), and must not vote or
    /// acknowledge entries as if it had never been a member. Nothing was
    /// written.
    EmptyStoreInExistingCluster {
        /// The data directory (`None`: the in-memory store, which is always
        /// empty at start).
        data_dir: Option<PathBuf>,
    },
    /// The snapshot directory cannot be created or listed.
    SnapshotDir {
        /// The directory.
        dir: PathBuf,
        /// The system's error.
        source: Arc<std::io::Error>,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "bad configuration: {e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Recover(e) => write!(f, "cannot recover: {e}"),
            StartError::EmptyStoreInExistingCluster { data_dir: Some(dir) } => write!(
                f,
                "the data directory {} holds no Raft state, but initial_cluster_state is Existing: this node \
                 has lost its state and refuses to start as a voter (restore the directory, or start it with \
                 New only if it never was a member)",
                dir.display()
            ),
            StartError::EmptyStoreInExistingCluster { data_dir: None } => write!(
                f,
                "an in-memory node always starts empty, and initial_cluster_state is Existing: refusing to \
                 start as a voter that forgot its state"
            ),
            StartError::SnapshotDir { dir, source } => {
                write!(f, "snapshot directory {}: {source}", dir.display())
            }
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
    /// The node loop panicked: an invariant of raft-core or of the runtime
    /// broke (a bug). The message is the panic's.
    Panicked(String),
    /// raft-core installed a snapshot (a leader sent it: this node lagged
    /// behind the leader's compacted log), but the application reads with
    /// [`EntryReceiver::recv`] or [`EntryReceiver::recv_committed`], which
    /// cannot hand it over. Going on would leave the application's state
    /// without the snapshot's entries, so the node stops. Read with
    /// [`EntryReceiver::recv_event`] to handle snapshots.
    RestoreNotHandled {
        /// The snapshot's index.
        index: LogIndex,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Storage(e) => write!(f, "{e}"),
            NodeError::Panicked(m) => write!(f, "the node loop panicked (a bug): {m}"),
            NodeError::RestoreNotHandled { index } => write!(
                f,
                "the application must restore the snapshot at {index}, but it reads entries with recv or \
                 recv_committed, which cannot restore; use recv_event"
            ),
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

impl LeaderInfo {
    /// Logs at INFO, with the node and its term, what an operator wants to
    /// see of a change from `before`: an election (or a pre-vote) started,
    /// a leader elected, a new leader followed, a leader stepping down or
    /// lost. The node loop calls it each time it publishes a change.
    pub(crate) fn log_change(&self, node: NodeId, before: &LeaderInfo) {
        if let Some(what) = self.change_from(before) {
            info!(node = %node, term = %self.term, "{what}");
        }
    }

    /// What [`LeaderInfo::log_change`] says; `None` when nothing changed.
    fn change_from(&self, before: &LeaderInfo) -> Option<String> {
        if self == before {
            return None;
        }
        let stepped_down = before.role == RoleKind::Leader && self.role != RoleKind::Leader;
        let text = match (self.role, self.leader) {
            (RoleKind::Leader, _) => "elected leader".to_string(),
            (RoleKind::Candidate, _) => "election started: candidate, votes for itself".to_string(),
            (RoleKind::PreCandidate, _) => "pre-vote started: asks the others whether it could win".to_string(),
            (RoleKind::Follower, Some(l)) if stepped_down => format!("stepped down; follows leader {l}"),
            (RoleKind::Follower, Some(l)) => format!("follows leader {l}"),
            (RoleKind::Follower, None) if stepped_down => "stepped down; no leader known".to_string(),
            (RoleKind::Follower, None) => match before.leader {
                Some(l) if before.term == self.term => format!("no leader known (was {l})"),
                Some(l) => format!("new term, no leader known yet (was {l})"),
                None => "new term, no leader known yet".to_string(),
            },
        };
        Some(text)
    }
}

/// Messages the transport dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportDrops {
    /// Incoming connections closed for a bad handshake or frame (garbage,
    /// over the size limit, another cluster, a node outside the cluster, no
    /// handshake within the deadline).
    pub rejected_connections: u64,
    /// Incoming connections closed at once, unread, because
    /// [`crate::HANDSHAKES_PENDING_MAX`] others were still shaking hands.
    pub refused_connections: u64,
    /// Outgoing messages dropped because the peer's queue was full.
    pub send_queue_full: u64,
    /// Outgoing messages dropped because they do not fit in one frame.
    pub oversized_messages: u64,
}

/// A snapshot of a node's condition: raft-core's status and the runtime's
/// own counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// raft-core's status: id, role, term, leader, last log index, commit
    /// index, the indexes handed to the application (`delivered_index`)
    /// and taken by it (`applied_index`, see [`EntryReceiver`]), and the
    /// inputs it ignored. As published after the node loop's last batch.
    pub raft: Status,
    /// What the transport dropped.
    pub transport: TransportDrops,
    /// Batches of changes made durable (one fsync each with the disk store).
    pub storage_writes: u64,
    /// Total time spent making them durable, in microseconds.
    pub storage_write_micros: u64,
    /// How many times, as leader, this node saw a follower report a log
    /// ending before what it had acknowledged (raft-core's
    /// `Output::FollowerRegressed`, each logged at WARN): a follower that
    /// lost its disk, or whose storage loses writes.
    pub followers_regressed: u64,
    /// Snapshot transfers this node sent to completion.
    pub snapshots_sent: u64,
    /// Snapshot transfers this node received and installed.
    pub snapshots_received: u64,
    /// Snapshot transfers that broke or were refused, on either side (each
    /// logged at WARN; the leader's next heartbeat retries).
    pub snapshot_transfers_failed: u64,
    /// Whether the node has stopped.
    pub stopped: bool,
}

/// How much later than its deadline a caller stops waiting for the node's
/// answer. The node answers every proposal it took by its deadline plus one
/// sweep of its loop (100 ms); this backstop covers a proposal still queued
/// because the node stopped taking proposals (its application lags).
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The sending half for proposals, as raft-lite hands it out. Cheap to clone.
#[derive(Clone)]
pub struct ProposalSender {
    tx: mpsc::Sender<ProposeRequest>,
    timeout: std::time::Duration,
}

impl ProposalSender {
    /// Queues a proposal without waiting (usable outside async code). Its
    /// fate is not reported (a failure is logged); use [`Self::propose`] to
    /// learn it. Errors: `Busy` when the queue is full, `Stopped`.
    pub fn send(&self, data: Vec<u8>) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.timeout;
        self.tx.try_send(ProposeRequest { data, reply: None, deadline }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Busy,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped,
        })
    }

    /// Proposes and waits until the entry is committed and handed to the
    /// entry receiver: returns its log index. Retries as the crate
    /// documentation describes; answers within `RaftParams::proposal_timeout`
    /// (and a little: see the crate documentation on deadlines).
    pub async fn propose(&self, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let request = ProposeRequest { data, reply: Some(reply), deadline };
        match tokio::time::timeout_at(deadline, self.tx.send(request)).await {
            // Never queued: the node cannot have seen it.
            Err(_) => return Err(ProposeError::Busy),
            Ok(Err(_)) => return Err(ProposeError::Stopped),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline + ANSWER_GRACE, answer).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(answer) => answer.map_err(|_| ProposeError::Stopped)?,
        }
    }
}

/// What the [`EntryReceiver`] hands the application, in log order.
#[derive(Debug)]
pub enum Event {
    /// A committed command: apply it.
    Entry(Committed),
    /// Replace the whole state machine by this snapshot's data: a leader
    /// sent it (this node lagged behind its compacted log), or the node
    /// restarted from its own snapshot beyond `RaftParams::applied_index`
    /// (then it comes before any entry). Entries after its index follow.
    Restore(SnapshotReader),
}

/// The receiving half of committed entries, in log order; each entry once
/// per node lifetime (see the crate documentation on restarts).
///
/// An entry counts as applied (raft-core's `Input::Applied`) once the
/// application asks for the next one, or drops the receiver: the node hands
/// over at most `RaftParams::unapplied_entries_max` entries beyond that. A
/// restore counts as applied through its index in the same way.
pub struct EntryReceiver {
    /// Unbounded as a channel, bounded by raft-core's delivery window: see
    /// the driver's `deliveries`.
    rx: mpsc::UnboundedReceiver<Delivered>,
    buffered: std::vec::IntoIter<Committed>,
    /// The index of the entry returned last, reported applied at the next call.
    returned: Option<LogIndex>,
    /// The last index the application has applied, for the node loop.
    applied: crate::applied::AppliedSender,
    /// Tells the node loop that a restore reached `recv_committed` (which
    /// cannot hand it over): the node stops.
    refusals: mpsc::Sender<LogIndex>,
    /// Set once a restore was refused: nothing more is handed over.
    refused: bool,
}

impl EntryReceiver {
    /// The next committed command's bytes; `None` once the node stopped.
    /// For applications that never take snapshots: see
    /// [`Self::recv_committed`].
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.recv_committed().await.map(|c| c.data)
    }

    /// The next committed entry with its index and term; `None` once the
    /// node stopped. Calling it again reports this entry applied.
    ///
    /// For applications that never take snapshots. If the node must hand
    /// over a snapshot (a leader's, because this node lagged behind its
    /// compacted log), this logs an error, returns `None`, and the node
    /// stops with [`NodeError::RestoreNotHandled`]: the application would
    /// otherwise go on without the entries the snapshot covers. Use
    /// [`Self::recv_event`] to handle snapshots.
    pub async fn recv_committed(&mut self) -> Option<Committed> {
        match self.recv_event().await? {
            Event::Entry(c) => Some(c),
            Event::Restore(reader) => {
                let index = reader.index();
                error!(
                    "the node must hand the application the snapshot at {index}, which recv/recv_committed \
                     cannot do (use recv_event): stopping the node"
                );
                self.refused = true;
                let _ = self.refusals.try_send(index);
                None
            }
        }
    }

    /// The next event: a committed entry to apply, or a snapshot to replace
    /// the state machine with. `None` once the node stopped. Calling it
    /// again reports the event applied.
    pub async fn recv_event(&mut self) -> Option<Event> {
        if self.refused {
            return None;
        }
        if let Some(index) = self.returned.take() {
            self.applied.send(index);
        }
        loop {
            if let Some(c) = self.buffered.next() {
                self.returned = Some(c.index);
                return Some(Event::Entry(c));
            }
            match self.rx.recv().await? {
                Delivered::Entries(entries) => self.buffered = entries.into_iter(),
                Delivered::Restore(reader) => {
                    self.returned = Some(reader.index());
                    return Some(Event::Restore(reader));
                }
            }
        }
    }
}

type Outcome = Option<Result<(), NodeError>>;

/// A running node: propose, watch, read status, shut down. Cheap to clone;
/// the node keeps running when every handle is dropped (until
/// [`RaftHandle::shutdown`] or the end of the runtime).
#[derive(Clone)]
pub struct RaftHandle {
    pub(crate) snapshots: mpsc::Sender<SnapshotRequest>,
    pub(crate) snapshot_store: SnapshotStore,
    driver_counters: Arc<DriverCounters>,
    id: NodeId,
    local_addr: SocketAddr,
    members: Arc<[(NodeId, String)]>,
    proposals: ProposalSender,
    reads: mpsc::Sender<ReadRequest>,
    read_timeout: std::time::Duration,
    transfers: mpsc::Sender<TransferRequest>,
    changes: mpsc::Sender<ChangeRequest>,
    /// How long a membership change may take (`RaftParams::proposal_timeout`).
    change_timeout: std::time::Duration,
    membership: watch::Receiver<Memberships>,
    /// Two maximum election timeouts: how long a transfer may take.
    transfer_timeout: std::time::Duration,
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

    /// The configured members' ids and addresses (this node's included):
    /// the initial members. The members now are [`Self::membership`].
    pub fn members(&self) -> &[(NodeId, String)] {
        &self.members
    }

    /// The membership in effect at this node: the latest in its log,
    /// committed or not (raft-core takes a change into effect when it is
    /// appended). Voters, learners, and the address each was added with.
    pub fn membership(&self) -> Membership {
        self.membership.borrow().current.clone()
    }

    /// The latest committed membership this node knows of.
    pub fn committed_membership(&self) -> Membership {
        self.membership.borrow().committed.clone()
    }

    /// A receiver that sees every change of [`Self::membership`].
    pub fn watch_membership(&self) -> watch::Receiver<Membership> {
        let mut source = self.membership.clone();
        let (tx, rx) = watch::channel(source.borrow().current.clone());
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                let current = source.borrow().current.clone();
                tx.send_if_modified(|m| {
                    let changed = *m != current;
                    *m = current;
                    changed
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }

    /// Adds node `id` as a learner, reached at `address` (its Raft
    /// `host:port`; anything after a space is the application's, see
    /// [`crate::raft_address`]). Ask the leader. Returns the new membership
    /// once the change is committed. With `RaftParams::promote_learners`
    /// the leader promotes the learner to voter once it has caught up.
    pub async fn add_learner(&self, id: NodeId, address: impl Into<String>) -> Result<Membership, ChangeError> {
        self.change_membership(Change::AddLearner { id, address: address.into() }).await
    }

    /// Makes learner `id` a voter; returns once committed. Ask the leader.
    pub async fn promote(&self, id: NodeId) -> Result<Membership, ChangeError> {
        self.change_membership(Change::Promote(id)).await
    }

    /// Removes member `id` (a voter or a learner, the leader included: it
    /// steps down once the change commits); returns once committed. Ask the
    /// leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<Membership, ChangeError> {
        self.change_membership(Change::Remove(id)).await
    }

    /// Asks for one membership change and waits until it is committed (see
    /// [`crate::members`] for how its fate is known). A refusal for a
    /// passing reason (`LeaderNotReady`, `ChangeInProgress`,
    /// `Transferring`) is asked again every 100 ms until the deadline,
    /// `RaftParams::proposal_timeout` after the call; any other refusal is
    /// returned at once.
    pub async fn change_membership(&self, change: Change) -> Result<Membership, ChangeError> {
        let deadline = Instant::now() + self.change_timeout;
        // Bound: one attempt per CHANGE_RETRY_PAUSE until the deadline.
        loop {
            let (reply, answer) = oneshot::channel();
            let request = ChangeRequest { change: change.clone(), reply, deadline };
            match tokio::time::timeout_at(deadline, self.changes.send(request)).await {
                Err(_) => return Err(ChangeError::Timeout),
                Ok(Err(_)) => return Err(ChangeError::Stopped),
                Ok(Ok(())) => {}
            }
            let outcome = match tokio::time::timeout_at(deadline + ANSWER_GRACE, answer).await {
                Err(_) => Err(ChangeError::Timeout),
                Ok(answer) => answer.unwrap_or(Err(ChangeError::Stopped)),
            };
            match outcome {
                Err(e) if e.is_transient() && Instant::now() + CHANGE_RETRY_PAUSE < deadline => {
                    tokio::time::sleep(CHANGE_RETRY_PAUSE).await;
                }
                outcome => return outcome,
            }
        }
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
        let deadline = Instant::now() + self.read_timeout;
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.reads.send(ReadRequest { reply })).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Err(_)) => return Err(ReadError::Stopped),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline + ANSWER_GRACE, answer).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(answer) => answer.unwrap_or(Err(ReadError::Stopped)),
        }
    }

    /// Hands this node's leadership to `target` (Raft thesis §3.10), and
    /// waits until this node knows `target` as leader. The leader stops
    /// taking proposals (they are proposed again at the target), brings the
    /// target's log up to date and tells it to stand for election at once.
    ///
    /// Errors: [`TransferError::Refused`] at once when this node does not
    /// lead (with the leader it knows, to ask there), or `target` is this
    /// node or not a voter; [`TransferError::Timeout`] when `target` is not
    /// leader within two maximum election timeouts (the leader gives up
    /// after one and takes proposals again); [`TransferError::Stopped`].
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), TransferError> {
        let deadline = Instant::now() + self.transfer_timeout;
        let mut leader = self.leader.clone();
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.transfers.send(TransferRequest { target, reply })).await {
            Err(_) => return Err(TransferError::Timeout { leader: self.leader().leader }),
            Ok(Err(_)) => return Err(TransferError::Stopped),
            Ok(Ok(())) => {}
        }
        match answer.await {
            Err(_) => return Err(TransferError::Stopped),
            Ok(Err(rejection)) => return Err(TransferError::Refused(rejection)),
            Ok(Ok(())) => {}
        }
        let known = tokio::time::timeout_at(deadline, leader.wait_for(|l| l.leader == Some(target))).await;
        match known.map(|seen| seen.is_ok()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TransferError::Stopped),
            Err(_) => Err(TransferError::Timeout { leader: self.leader().leader }),
        }
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
        let c = &self.counters;
        NodeStatus {
            raft: self.status.borrow().clone(),
            transport: TransportDrops {
                rejected_connections: c.rejected_connections.load(Ordering::Relaxed),
                refused_connections: c.refused_connections.load(Ordering::Relaxed),
                send_queue_full: c.send_queue_full.load(Ordering::Relaxed),
                oversized_messages: c.oversized_messages.load(Ordering::Relaxed),
            },
            storage_writes: self.storage.writes.load(Ordering::Relaxed),
            storage_write_micros: self.storage.write_micros.load(Ordering::Relaxed),
            followers_regressed: self.driver_counters.followers_regressed.load(Ordering::Relaxed),
            snapshots_sent: c.snapshots_sent.load(Ordering::Relaxed),
            snapshots_received: c.snapshots_received.load(Ordering::Relaxed),
            snapshot_transfers_failed: c.snapshot_transfers_failed.load(Ordering::Relaxed),
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
    given: Option<(Storage, MemoryStore)>,
) -> Result<(RaftHandle, EntryReceiver), StartError> {
    let (id, core, membership) = config.core_config().map_err(StartError::Config)?;
    let cluster_id = config.cluster_id();
    let (listener, local_addr) = bind(&mut config, id)?;

    let identity = StoreIdentity { cluster_id: config.params.cluster_id, node_id: id };
    if let (ClusterState::Existing, Some(dir)) = (config.params.initial_cluster_state, &config.data_dir) {
        // Refused before the store is created: nothing is written.
        // A store of an earlier format is refused by the store itself,
        // with an error that says so.
        if !dir.join(crate::STORE_FILE).exists() && !dir.join(crate::storage::REDB_STORE_FILE).exists() {
            return Err(StartError::EmptyStoreInExistingCluster { data_dir: Some(dir.clone()) });
        }
    }
    let storage_counters = Arc::new(StorageCounters::default());
    let (storage, stored) = match (given, &config.data_dir) {
        (Some(given), _) => given,
        (None, Some(dir)) => Storage::disk(dir, identity, format!("raft-store-{id}"), storage_counters.clone())
            .map_err(StartError::Storage)?,
        (None, None) => Storage::memory(),
    };
    if config.params.initial_cluster_state == ClusterState::Existing && stored == MemoryStore::new() {
        storage.close_blocking();
        return Err(StartError::EmptyStoreInExistingCluster { data_dir: config.data_dir.clone() });
    }
    let snapshot_store = match open_snapshot_store(config.data_dir.as_deref(), id, stored.snapshot.as_ref()) {
        Ok(store) => store,
        Err(e) => {
            storage.close_blocking();
            return Err(e);
        }
    };
    let durable_snapshot = stored.snapshot.clone();
    let (node, first_outputs) = match open_node(core, membership, stored, config.applied(), storage.path()) {
        Ok(started) => started,
        Err(e) => {
            storage.close_blocking();
            snapshot_store.remove_temporary();
            return Err(e);
        }
    };

    let p = &config.params;
    let counters = Arc::new(TransportCounters::default());
    let (inbox_tx, inbox) = mpsc::channel(INBOX_MAX);
    let transport_config = TransportConfig {
        id,
        cluster_id,
        members: AddressBook::new(config.members.iter().cloned().collect()),
        frame_bytes_max: p.message_bytes_max + FRAME_OVERHEAD_BYTES,
        send_queue_max: p.send_queue_max,
        snapshots: snapshot_store.clone(),
        receives: Arc::new(tokio::sync::Semaphore::new(crate::transfer::RECEIVES_MAX)),
    };
    let transport = match listener {
        Listener::Tcp(listener) => {
            Network::Tcp(Transport::start(transport_config, listener, inbox_tx, counters.clone()))
        }
        Listener::InProcess(reservation) => {
            let TransportConfig { snapshots, receives, .. } = transport_config;
            Network::InProcess(InProcessTransport::start(reservation, inbox_tx, snapshots, receives, counters.clone()))
        }
    };
    let (request_tx, requests) = mpsc::channel(PROPOSAL_QUEUE_MAX);
    let (read_tx, read_requests) = mpsc::channel(PROPOSAL_QUEUE_MAX);
    let (transfer_tx, transfers) = mpsc::channel(TRANSFER_QUEUE_MAX);
    let (change_tx, change_requests) = mpsc::channel(CHANGE_QUEUE_MAX);
    let memberships = Memberships {
        current: node.state().membership().clone(),
        committed: node.state().committed_membership().clone(),
    };
    let (membership_tx, membership_rx) = watch::channel(memberships);
    let changes = MembershipChanges {
        requests: change_requests,
        waiters: ChangeWaiters::default(),
        promote_learners: p.promote_learners,
        timeout: p.proposal_timeout,
        followed: None,
    };
    let (snapshot_tx, snapshot_requests) = mpsc::channel(SNAPSHOT_QUEUE_MAX);
    let (refusal_tx, refusals) = mpsc::channel(1);
    let driver_counters = Arc::new(DriverCounters::default());
    let snapshots = Snapshots::new(
        snapshot_store.clone(),
        snapshot_requests,
        refusals,
        driver_counters.clone(),
        durable_snapshot.as_ref(),
    );
    let read_waiters = ReadWaiters::new(p.proposal_retries_max, p.proposal_timeout);
    // Unbounded as a channel; what it holds is bounded by raft-core's
    // delivery window (see `Delivery`).
    let (delivery_tx, deliveries) = mpsc::unbounded_channel();
    let (applied_tx, applied_rx) = crate::applied::channel(node.state().applied_index());
    let status = node.status();
    let leader = LeaderInfo { leader: status.leader, term: status.term, role: status.role };
    let (status_tx, status_rx) = watch::channel(status);
    let (leader_tx, leader_rx) = watch::channel(leader);
    let shutdown = Arc::new(watch::channel(false).0);
    let (outcome_tx, outcome) = watch::channel(None);
    let timers = Timers::new(ChaCha8Rng::seed_from_u64(seed_for(id, p.seed)));
    let waiters = Waiters::new(p.proposal_retries_max);
    let driver = Driver::new(
        node,
        first_outputs,
        storage,
        transport,
        timers,
        waiters,
        inbox,
        requests,
        (read_requests, read_waiters),
        transfers,
        changes,
        Delivery { entries: Some(delivery_tx), applied: applied_rx },
        Published { status: status_tx, leader: leader_tx, membership: membership_tx },
        shutdown.subscribe(),
        snapshots,
    );
    let keep_running = shutdown.clone();
    let node_loop = tokio::spawn(driver.run());
    tokio::spawn(async move {
        let result = match node_loop.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => {
                let message = crate::storage::panic_message(&e.into_panic());
                error!(node = %id, "the node loop panicked: {message}");
                Err(NodeError::Panicked(message))
            }
            // The runtime is shutting down.
            Err(_) => Ok(()),
        };
        drop(keep_running);
        outcome_tx.send_replace(Some(result));
    });
    info!(node = %id, addr = %local_addr, cluster = %crate::config::cluster_id_text(cluster_id), "started");
    let handle = RaftHandle {
        snapshots: snapshot_tx,
        snapshot_store,
        driver_counters,
        id,
        local_addr,
        members: config.members.clone().into(),
        proposals: ProposalSender { tx: request_tx, timeout: p.proposal_timeout },
        reads: read_tx,
        read_timeout: p.proposal_timeout,
        transfers: transfer_tx,
        changes: change_tx,
        change_timeout: p.proposal_timeout,
        membership: membership_rx,
        transfer_timeout: 2 * p.election_timeout.1,
        status: status_rx,
        leader: leader_rx,
        counters,
        storage: storage_counters,
        shutdown,
        outcome,
    };
    let entries = EntryReceiver {
        rx: deliveries,
        buffered: Vec::new().into_iter(),
        returned: None,
        applied: applied_tx,
        refusals: refusal_tx,
        refused: false,
    };
    Ok((handle, entries))
}

/// Where a starting node receives its peers' messages.
enum Listener {
    Tcp(tokio::net::TcpListener),
    InProcess(Reservation),
}

/// Binds the node's address (or takes the listener given), or reserves its
/// place on the in-process network, whose nodes have no address
/// (`0.0.0.0:0`).
fn bind(config: &mut RaftConfig, id: NodeId) -> Result<(Listener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr: config.self_addr.clone(), source };
    if let Some(network) = config.in_process.take() {
        let reservation = network.reserve(id).map_err(bind_error)?;
        return Ok((Listener::InProcess(reservation), SocketAddr::from(([0, 0, 0, 0], 0))));
    }
    let listener = match config.listener.take() {
        Some(l) => l,
        None => std::net::TcpListener::bind(config.self_addr.as_str()).map_err(bind_error)?,
    };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    Ok((Listener::Tcp(listener), local_addr))
}

/// The snapshot store: `<data_dir>/snapshots`, cleaned of every file but
/// the one `current` names, which is checked whole (see
/// [`crate::snapshots`]); or a private temporary directory for an
/// in-memory node.
fn open_snapshot_store(
    data_dir: Option<&Path>,
    id: NodeId,
    current: Option<&raft_core::SnapshotMeta>,
) -> Result<SnapshotStore, StartError> {
    let opened = match data_dir {
        Some(dir) => SnapshotStore::open(dir),
        None => SnapshotStore::temporary(id.0),
    };
    let store = opened.map_err(|e| match e.problem {
        crate::SnapshotFileProblem::Io(source) => StartError::SnapshotDir { dir: e.path, source },
        problem => StartError::Storage(StorageError { path: e.path, problem: StorageProblem::Snapshot(problem) }),
    })?;
    if let Err(e) = store.clean_and_check(current) {
        warn!(node = %id, "{e}");
        store.remove_temporary();
        return Err(StartError::Storage(StorageError { path: e.path, problem: StorageProblem::Snapshot(e.problem) }));
    }
    Ok(store)
}

/// The node, from what its store holds. A store that holds nothing is a new
/// node's: it starts with the configured members (or, joining, as a lone
/// learner), and its first output persists them. Any other store is
/// recovered with the membership it holds (the bootstrap or snapshot's,
/// and the configuration entries of its log): after membership changes it
/// differs from the configured members, which then only seed the address
/// book. `path` names the disk store in errors (`None`: the in-memory
/// store).
fn open_node(
    config: Config,
    configured: Membership,
    stored: MemoryStore,
    applied: LogIndex,
    path: Option<&Path>,
) -> Result<(Node, Vec<Output>), StartError> {
    let id = config.id();
    let refuse = |problem| match path {
        Some(path) => StartError::Storage(StorageError { path: path.to_path_buf(), problem }),
        None => match problem {
            StorageProblem::Inconsistent(e) => StartError::Recover(e),
            _ => unreachable!("the memory store is always new"),
        },
    };
    if stored == MemoryStore::new() {
        if applied > LogIndex(0) {
            let e = RecoverError::AppliedBeyondLog { applied, last_index: LogIndex(0) };
            return Err(refuse(StorageProblem::Inconsistent(e)));
        }
        info!(node = %id, "a new store: starting with the configured members");
        return Ok(Node::new(config, configured));
    }
    let (term, last) = (stored.hard.term, stored.log.last_index());
    info!(node = %id, %term, %last, base_membership = ?stored.membership, "recovered");
    Node::recover(config, stored, applied).map_err(|e| refuse(StorageProblem::Inconsistent(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageProblem;
    use crate::RaftParams;

    #[test]
    fn leader_and_role_changes_are_described_for_the_log() {
        let info =
            |leader: Option<u64>, term: u64, role| LeaderInfo { leader: leader.map(NodeId), term: Term(term), role };
        let follower = info(Some(1), 3, RoleKind::Follower);
        let steps = [
            (follower, follower, None),
            (
                follower,
                info(Some(1), 3, RoleKind::PreCandidate),
                Some("pre-vote started: asks the others whether it could win"),
            ),
            (
                info(None, 3, RoleKind::PreCandidate),
                info(None, 4, RoleKind::Candidate),
                Some("election started: candidate, votes for itself"),
            ),
            (
                info(None, 4, RoleKind::Candidate),
                info(None, 5, RoleKind::Candidate),
                Some("election started: candidate, votes for itself"),
            ),
            (info(None, 5, RoleKind::Candidate), info(Some(2), 5, RoleKind::Leader), Some("elected leader")),
            (
                info(Some(2), 5, RoleKind::Leader),
                info(None, 6, RoleKind::Follower),
                Some("stepped down; no leader known"),
            ),
            (
                info(Some(2), 5, RoleKind::Leader),
                info(Some(3), 6, RoleKind::Follower),
                Some("stepped down; follows leader n3"),
            ),
            (info(None, 6, RoleKind::Follower), info(Some(3), 6, RoleKind::Follower), Some("follows leader n3")),
            (info(Some(3), 6, RoleKind::Follower), info(Some(3), 7, RoleKind::Follower), Some("follows leader n3")),
            (info(Some(3), 6, RoleKind::Follower), info(None, 6, RoleKind::Follower), Some("no leader known (was n3)")),
            (
                info(Some(3), 6, RoleKind::Follower),
                info(None, 7, RoleKind::Follower),
                Some("new term, no leader known yet (was n3)"),
            ),
            (
                info(None, 6, RoleKind::Follower),
                info(None, 7, RoleKind::Follower),
                Some("new term, no leader known yet"),
            ),
        ];
        for (before, after, said) in steps {
            assert_eq!(after.change_from(&before).as_deref(), said, "{before:?} -> {after:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_node_with_the_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = RaftConfig::new(vec![addr.clone()], addr, RaftParams::default(), None).with_listener(listener);
        // A one-node cluster: its first batch persists its membership, which fails.
        let (node, mut entries) = start_with(config, Some((Storage::failing(), MemoryStore::new()))).unwrap();
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), node.stopped()).await.unwrap();
        match stopped {
            Err(NodeError::Storage(StorageError { problem: StorageProblem::WriteFailed(_), .. })) => {}
            other => panic!("expected a write failure, got {other:?}"),
        }
        assert!(node.status().stopped);
        assert_eq!(node.status().raft.term, Term(0), "the status never showed the term it could not save");
        assert_eq!(node.propose(b"x".to_vec()).await, Err(ProposeError::Stopped));
        assert!(entries.recv().await.is_none());
    }
}
