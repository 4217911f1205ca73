//! The node loop: the one task that owns a node's raft-core state.
//!
//! It waits for a peer message, a proposal, a read, the application's
//! progress, a write's completion, or the next timer deadline; steps
//! raft-core with it and with whatever else is ready (a bounded batch);
//! submits the batch's persists, in order, to the storage thread as one
//! write; and executes the batch's other outputs in order: sends, timers,
//! deliveries, answers. An output that follows a `Persist` (in this batch,
//! or behind one still being written) waits until that write is durable;
//! an output that follows only `PersistAsync`s (a leader's own entries, a
//! candidate's vote) goes out at once, while the disk works (thesis
//! §10.2.1), and the write's completion comes back as `Input::Persisted`.
//! That is raft-core's ordering rule (see its crate documentation). The
//! storage thread makes the batches that wait behind a write durable
//! together, in one transaction and one fsync (group commit). There is no
//! Raft rule here.
//!
//! The loop never waits for the application. Committed entries go into a
//! channel that never blocks, whose content raft-core's delivery window
//! bounds; the application's progress comes back as `Input::Applied`. While
//! the application lags, the loop goes on stepping messages and timers (a
//! leader keeps heartbeating) and only stops taking new proposals.
//!
//! Snapshots: the application's (`RaftHandle::save_snapshot`) reach the loop
//! as requests once their file is sealed, and become
//! `Input::SnapshotTaken`; a leader's `InstallSnapshot` sends start a
//! transfer task per follower ([`crate::transfer`]), repeats ignored while
//! it runs; a received snapshot reaches the loop once installed, as
//! `Inbound::Installed`; `RestoreSnapshot` opens the file for the
//! application. After each flush the loop removes the snapshot file the
//! durable state no longer names (see [`Snapshots::settle`]).

use crate::api::{LeaderInfo, NodeError};
use crate::members::{learner_to_promote, ChangeRequest, ChangeWaiters};
use crate::network::Network;
use crate::reads::{ReadRequest, ReadWaiters};
use crate::snapshot_api::SnapshotError;
use crate::snapshots::{SnapshotReader, SnapshotStore};
use crate::storage::{Storage, StorageError, StorageProblem};
use crate::transport::Inbound;
use crate::waiters::{ProposeRequest, Waiters};
use raft_core::{
    Change, Committed, Input, LogIndex, Membership, Message, Node, NodeId, Output, SnapshotMeta, Status, Term, Timer,
    TransferRejection, PROPOSAL_OVERHEAD_BYTES,
};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Most peer messages stepped in one batch. A batch shares one fsync, so a
/// bigger one saves fsyncs under load; but the first message's answer waits
/// for the whole batch to be stepped, so the batch stays short next to a
/// disk write (stepping one message takes about a microsecond).
const MESSAGES_PER_BATCH_MAX: usize = 512;
/// Most proposals taken from the queue per batch: they become one
/// `Input::Propose`, so one log append and one AppendEntries per follower.
const PROPOSALS_PER_BATCH_MAX: usize = 1024;
/// Most proposals in flight (taken from the queue, fate not yet known).
/// Past it the node stops taking proposals, so callers wait in the bounded
/// queue instead of the node holding their data without end (a leader
/// without a quorum accepts proposals it cannot commit).
const PROPOSALS_IN_FLIGHT_MAX: usize = 64 * 1024;
/// How far the commit index may run ahead of the application's applied
/// index before the node stops taking proposals, in delivery windows
/// (raft-core's `unapplied_entries_max`): one window handed over and being
/// applied, one committed and ready to follow. Past it, new proposals wait
/// in the bounded queue (and their callers with them) until the
/// application catches up, rather than the log growing without end ahead
/// of it.
const APPLY_LAG_WINDOWS_MAX: u64 = 2;
/// Most reads held at once; past it callers wait in the bounded queue.
const READS_IN_FLIGHT_MAX: usize = 64 * 1024;
/// Most reads taken from the queue per batch (they become one `Input::Read`,
/// which shares one leadership check).
const READS_PER_BATCH_MAX: usize = 4096;
/// The least time between the starts of two snapshot transfers to one
/// follower. raft-core repeats `InstallSnapshot` with every heartbeat; one
/// that comes just after a transfer ended (before the follower's answer
/// reached this leader) would send the snapshot again, and one that comes
/// while the follower is down would dial it twenty times a second.
const TRANSFER_RESTART_MIN: Duration = Duration::from_millis(500);
/// How often proposals that waited too long are answered with a timeout.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The timers raft-core asked for, with their deadlines, and the seeded RNG
/// that draws their durations from the ranges it gave.
pub(crate) struct Timers {
    election: Option<Instant>,
    heartbeat: Option<Instant>,
    check_quorum: Option<Instant>,
    transfer: Option<Instant>,
    sweep: Instant,
    rng: ChaCha8Rng,
}

impl Timers {
    pub fn new(rng: ChaCha8Rng) -> Timers {
        Timers {
            election: None,
            heartbeat: None,
            check_quorum: None,
            transfer: None,
            sweep: Instant::now() + SWEEP_INTERVAL,
            rng,
        }
    }

    fn slot(&mut self, timer: Timer) -> &mut Option<Instant> {
        match timer {
            Timer::Election => &mut self.election,
            Timer::Heartbeat => &mut self.heartbeat,
            Timer::CheckQuorum => &mut self.check_quorum,
            Timer::Transfer => &mut self.transfer,
        }
    }

    fn set(&mut self, timer: Timer, min: Duration, max: Duration, now: Instant) {
        let delay = if max > min { self.rng.random_range(min..=max) } else { min };
        *self.slot(timer) = Some(now + delay);
    }

    fn next_deadline(&self) -> Instant {
        [self.election, self.heartbeat, self.check_quorum, self.transfer]
            .into_iter()
            .flatten()
            .fold(self.sweep, Instant::min)
    }

    /// Clears and returns a timer whose deadline has passed.
    fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        [Timer::Election, Timer::Heartbeat, Timer::CheckQuorum, Timer::Transfer].into_iter().find(|&t| {
            let slot = self.slot(t);
            let due = slot.is_some_and(|d| d <= now);
            if due {
                *slot = None;
            }
            due
        })
    }
}

/// A leadership transfer asked for through the API: the node loop steps it
/// and answers whether raft-core began it or refused it.
pub(crate) struct TransferRequest {
    pub target: NodeId,
    pub reply: oneshot::Sender<Result<(), TransferRejection>>,
}

/// What the driver publishes for the API after every batch.
pub(crate) struct Published {
    pub status: watch::Sender<Status>,
    pub leader: watch::Sender<LeaderInfo>,
    pub membership: watch::Sender<Memberships>,
}

/// The membership in effect (the latest in the log) and the committed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Memberships {
    pub current: Membership,
    pub committed: Membership,
}

/// The node loop's side of membership changes: the operator's changes and
/// the runtime's promotions in flight, and the membership the transport
/// was last given.
pub(crate) struct MembershipChanges {
    pub requests: mpsc::Receiver<ChangeRequest>,
    pub waiters: ChangeWaiters,
    /// `RaftParams::promote_learners`.
    pub promote_learners: bool,
    /// How long a promotion the runtime asks for may take to commit.
    pub timeout: Duration,
    /// What the transport follows; `None` before the first batch.
    pub followed: Option<Membership>,
}

/// What the driver hands the [`crate::EntryReceiver`].
pub(crate) enum Delivered {
    /// Committed commands, in log order.
    Entries(Vec<Committed>),
    /// The application must replace its state by this snapshot.
    Restore(SnapshotReader),
}

/// The application's snapshot, in two steps (see `RaftHandle::snapshot_writer`).
pub(crate) enum SnapshotRequest {
    /// May a snapshot at `index` be taken, and what is its term?
    Prepare { index: LogIndex, reply: oneshot::Sender<Result<Term, SnapshotError>> },
    /// The file of snapshot (index, term) is sealed: step `SnapshotTaken`,
    /// answer once its record is durable.
    Taken { index: LogIndex, term: Term, reply: TakenReply },
}

/// Counters the driver keeps for the status.
#[derive(Debug, Default)]
pub(crate) struct DriverCounters {
    pub followers_regressed: AtomicU64,
}

/// The driver's snapshot bookkeeping.
pub(crate) struct Snapshots {
    pub store: SnapshotStore,
    pub requests: mpsc::Receiver<SnapshotRequest>,
    /// A restore the application refused to handle (it read with
    /// `recv_committed`): the node stops.
    pub refusals: mpsc::Receiver<LogIndex>,
    pub counters: Arc<DriverCounters>,
    /// The last transfer task of each follower sent a snapshot, and when it
    /// started.
    outgoing: BTreeMap<NodeId, (JoinHandle<()>, Instant)>,
    /// The snapshot the durable state names (whose file is live).
    durable: Option<(LogIndex, Term)>,
    /// Files raft-core was offered in this batch (received, or taken by the
    /// application), to remove after the flush unless it took them.
    offered: Vec<(LogIndex, Term)>,
    /// Taken snapshots, answered after the flush.
    replies: Vec<(LogIndex, Term, TakenReply)>,
}

/// The answer to an application's snapshot, once its record is durable.
type TakenReply = oneshot::Sender<Result<SnapshotMeta, SnapshotError>>;

/// The snapshot files offered to raft-core in one batch and the
/// application's snapshots to answer: settled once the batch's write is
/// durable.
#[derive(Default)]
struct SnapshotsOffered {
    offered: Vec<(LogIndex, Term)>,
    replies: Vec<(LogIndex, Term, TakenReply)>,
}

impl Snapshots {
    pub fn new(
        store: SnapshotStore,
        requests: mpsc::Receiver<SnapshotRequest>,
        refusals: mpsc::Receiver<LogIndex>,
        counters: Arc<DriverCounters>,
        durable: Option<&SnapshotMeta>,
    ) -> Snapshots {
        Snapshots {
            store,
            requests,
            refusals,
            counters,
            outgoing: BTreeMap::new(),
            durable: durable.map(|m| (m.index, m.term)),
            offered: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Removes a snapshot file off the node loop (an unlink of a large file
    /// takes a while). A file a removal misses is removed at the next start.
    fn remove(&self, (index, term): (LogIndex, Term)) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.remove(index, term));
    }

    /// After a flush, with `current` the snapshot raft-core holds (durable
    /// now): removes the file of the snapshot it replaced, and the files it
    /// was offered and did not take; answers the application's snapshots.
    fn settle(&mut self, current: Option<&SnapshotMeta>, done: SnapshotsOffered) {
        let SnapshotsOffered { offered, replies } = done;
        let key = current.map(|m| (m.index, m.term));
        if key != self.durable {
            if let Some(old) = self.durable.take() {
                self.remove(old);
            }
            self.durable = key;
        }
        for offered in offered {
            if Some(offered) != key {
                self.remove(offered);
            }
        }
        for (index, term, reply) in replies {
            let answer = match current {
                Some(meta) if (meta.index, meta.term) == (index, term) => Ok(meta.clone()),
                _ => Err(SnapshotError::Superseded { index, snapshot: key.map_or(LogIndex(0), |k| k.0) }),
            };
            let _ = reply.send(answer);
        }
    }

    /// Starts sending `to` the snapshot, unless a transfer to it runs (a
    /// heartbeat's repeat) or started less than [`TRANSFER_RESTART_MIN`] ago.
    fn send(&mut self, transport: &Network, to: NodeId, message: raft_core::InstallSnapshot) {
        let now = Instant::now();
        if let Some((task, started)) = self.outgoing.get(&to) {
            if !task.is_finished() || now < *started + TRANSFER_RESTART_MIN {
                return;
            }
        }
        self.outgoing.insert(to, (transport.send_snapshot(to, message), now));
    }

    /// Stops every transfer this node sends.
    fn stop(&mut self) {
        for (task, _) in std::mem::take(&mut self.outgoing).into_values() {
            task.abort();
        }
    }
}

/// The way to the application and back.
pub(crate) struct Delivery {
    /// Committed entries for the [`crate::EntryReceiver`] (`None` once it is
    /// dropped). Unbounded as a channel so that the node loop never waits
    /// on it, and yet bounded: raft-core keeps at most
    /// `Config::unapplied_entries_max` entries (and `unapplied_bytes_max`
    /// bytes) delivered and not reported applied, and the loop reports an
    /// entry applied only once the application has taken it (see
    /// `Driver::report_applied`), so the channel never holds more than one
    /// window.
    pub entries: Option<mpsc::UnboundedSender<Delivered>>,
    /// The index of the last entry the application has applied: an entry
    /// counts as applied once the application asks for the next one.
    pub applied: crate::applied::AppliedReceiver,
}

pub(crate) struct Driver {
    node: Node,
    storage: Storage,
    transport: Network,
    timers: Timers,
    waiters: Waiters,
    inbox: mpsc::Receiver<Inbound>,
    requests: mpsc::Receiver<ProposeRequest>,
    read_requests: mpsc::Receiver<ReadRequest>,
    reads: ReadWaiters,
    transfers: mpsc::Receiver<TransferRequest>,
    changes: MembershipChanges,
    /// The index of the last command handed to the entry receiver: the
    /// barrier a confirmed read is answered with.
    last_delivered: LogIndex,
    delivery: Delivery,
    published: Published,
    shutdown: watch::Receiver<bool>,
    snapshots: Snapshots,
    /// An error met while executing outputs; the node stops after the batch.
    fatal: Option<NodeError>,
    /// Outputs of the inputs stepped since the last flush.
    outputs: Vec<Output>,
    /// Writes submitted and not yet durable, oldest first.
    writing: std::collections::VecDeque<Write>,
    next_write: u64,
    proposal_bytes: usize,
}

/// A batch of persists the storage thread is making durable.
struct Write {
    seq: u64,
    /// Whether it holds a `Persist`: the outputs after it wait for it.
    barrier: bool,
    /// The completion to report for its last `PersistAsync`.
    report: Option<Input>,
    /// The node's snapshot when it was submitted: durable with it.
    snapshot: Option<SnapshotMeta>,
    /// What to settle about snapshots once it is durable.
    offered: SnapshotsOffered,
    /// Outputs to execute once it is durable, in order.
    deferred: Vec<Output>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: Node,
        first_outputs: Vec<Output>,
        storage: Storage,
        transport: Network,
        timers: Timers,
        waiters: Waiters,
        inbox: mpsc::Receiver<Inbound>,
        requests: mpsc::Receiver<ProposeRequest>,
        reads: (mpsc::Receiver<ReadRequest>, ReadWaiters),
        transfers: mpsc::Receiver<TransferRequest>,
        changes: MembershipChanges,
        delivery: Delivery,
        published: Published,
        shutdown: watch::Receiver<bool>,
        snapshots: Snapshots,
    ) -> Driver {
        Driver {
            node,
            storage,
            transport,
            timers,
            waiters,
            inbox,
            requests,
            read_requests: reads.0,
            reads: reads.1,
            transfers,
            changes,
            last_delivered: LogIndex(0),
            delivery,
            published,
            shutdown,
            snapshots,
            fatal: None,
            outputs: first_outputs,
            writing: std::collections::VecDeque::new(),
            next_write: 0,
            proposal_bytes: 0,
        }
    }

    /// Runs until shutdown or a storage failure; then stops the transport
    /// and closes the store.
    pub async fn run(mut self) -> Result<(), NodeError> {
        let result = self.drive().await;
        if let Err(e) = &result {
            error!(node = %self.node.config().id(), "node stopped: {e}");
        }
        self.snapshots.stop();
        self.transport.stop().await;
        self.storage.close().await;
        let store = self.snapshots.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.remove_temporary()).await;
        result
    }

    /// The loop: wait (unless outputs are left over, e.g. retried
    /// proposals or entries the application made room for), take what else
    /// is ready, flush, report the application's progress.
    async fn drive(&mut self) -> Result<(), NodeError> {
        let sleep = tokio::time::sleep_until(self.timers.next_deadline());
        tokio::pin!(sleep);
        loop {
            if self.outputs.is_empty() && self.waiters.batch_len() == 0 && !self.reads.has_batch() {
                sleep.as_mut().reset(self.timers.next_deadline());
                let listening = self.delivery.entries.is_some();
                tokio::select! {
                    biased;
                    _ = self.shutdown.changed() => return Ok(()),
                    () = &mut sleep => self.on_deadlines(),
                    // Read by `report_applied` below.
                    () = self.delivery.applied.changed(), if listening => {
                        if self.delivery.applied.is_closed() {
                            self.delivery.entries = None; // the receiver is gone
                        }
                    }
                    Some(inbound) = self.inbox.recv() => self.on_inbound(inbound),
                    Some(request) = self.requests.recv(), if self.takes_proposals() => {
                        self.add_proposal(request, Instant::now())
                    }
                    Some(request) = self.read_requests.recv(), if self.reads.len() < READS_IN_FLIGHT_MAX => {
                        self.reads.add(request, Instant::now())
                    }
                    Some(request) = self.transfers.recv() => self.on_transfer(request),
                    Some(request) = self.changes.requests.recv() => self.on_change(request),
                    Some(done) = self.storage.completions().recv() => self.on_written(done)?,
                    Some(request) = self.snapshots.requests.recv() => self.on_snapshot_request(request),
                    Some(index) = self.snapshots.refusals.recv() => {
                        return Err(NodeError::RestoreNotHandled { index });
                    }
                }
                // Let the tasks that are ready run first: under load they
                // queue more inputs, and one batch takes them all.
                tokio::task::yield_now().await;
            }
            self.take_ready()?;
            self.flush()?;
            self.report_applied();
        }
    }

    /// Whether new proposals are taken: not while too many are in flight,
    /// nor while the application lags too far behind the commit index.
    fn takes_proposals(&self) -> bool {
        let state = self.node.state();
        let lag = state.commit_index().0 - state.applied_index().0;
        let lag_max = APPLY_LAG_WINDOWS_MAX * self.node.config().unapplied_entries_max();
        self.waiters.in_flight() < PROPOSALS_IN_FLIGHT_MAX && lag <= lag_max
    }

    /// Tells raft-core how far the application has applied, which lets it
    /// deliver more. Called after a flush, when every `Deliver` stepped so
    /// far has been handed over. (No-op entries the application never sees
    /// count as applied in raft-core itself.) A receiver that is gone
    /// applies nothing more: everything delivered counts as applied, so
    /// that the node does not stop taking proposals for it.
    fn report_applied(&mut self) {
        let state = self.node.state();
        let applied = match self.delivery.entries {
            None => state.delivered_index(),
            Some(_) => self.delivery.applied.get(),
        };
        if applied > state.applied_index() {
            self.node.step(Input::Applied(applied), &mut self.outputs);
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Message(from, message) => self.node.step(Input::Receive { from, message }, &mut self.outputs),
            Inbound::Installed(from, m) => {
                self.snapshots.offered.push((m.snapshot.index, m.snapshot.term));
                let message = Message::InstallSnapshot(m);
                self.node.step(Input::Receive { from, message }, &mut self.outputs);
            }
            Inbound::Unsent(ids) => self.waiters.on_unsent(ids),
        }
    }

    /// The application's snapshot: whether it may be taken (and its term),
    /// then, once its file is sealed, `SnapshotTaken`. An application
    /// snapshots right after applying an entry, before it asks for the next
    /// one, so the entry may not be reported applied yet: the snapshot says
    /// it was.
    fn on_snapshot_request(&mut self, request: SnapshotRequest) {
        let state = self.node.state();
        let current = state.snapshot().map_or(LogIndex(0), |s| s.index);
        let delivered = state.delivered_index();
        match request {
            SnapshotRequest::Prepare { index, reply } => {
                let answer = if index <= current {
                    Err(SnapshotError::Superseded { index, snapshot: current })
                } else if index > delivered {
                    Err(SnapshotError::NotApplied { index, delivered })
                } else {
                    state.log().term_at(index).ok_or(SnapshotError::Superseded { index, snapshot: current })
                };
                let _ = reply.send(answer);
            }
            SnapshotRequest::Taken { index, term, reply } => {
                if index > state.applied_index() && index <= delivered {
                    self.node.step(Input::Applied(index), &mut self.outputs);
                }
                self.node.step(Input::SnapshotTaken(index), &mut self.outputs);
                self.snapshots.offered.push((index, term));
                self.snapshots.replies.push((index, term, reply));
            }
        }
    }

    /// Steps a leadership transfer; raft-core refuses it in the same step
    /// or not at all, so the answer is known at once.
    fn on_transfer(&mut self, request: TransferRequest) {
        let first = self.outputs.len();
        self.node.step(Input::TransferLeadership(request.target), &mut self.outputs);
        let refused = self.outputs[first..].iter().find_map(|o| match o {
            Output::TransferRejected { target, reason } if *target == request.target => Some(*reason),
            _ => None,
        });
        let _ = request.reply.send(refused.map_or(Ok(()), Err));
    }

    /// Steps an operator's membership change; its answer comes with the
    /// outputs (see [`crate::members`]).
    fn on_change(&mut self, request: ChangeRequest) {
        let ChangeRequest { change, reply, deadline } = request;
        let id = self.changes.waiters.add(change.clone(), Some(reply), deadline);
        self.node.step(Input::ChangeMembership { id, change }, &mut self.outputs);
    }

    /// While leading, promotes a learner that has caught up (operator
    /// policy, see [`crate::members::PROMOTE_LAG_MAX`]); one at a time.
    fn maybe_promote(&mut self, now: Instant) {
        if !self.changes.promote_learners || self.changes.waiters.promoting() {
            return;
        }
        let state = self.node.state();
        let Some((learner, matched)) = learner_to_promote(state) else { return };
        let last = state.log().last_index();
        info!(node = %self.node.config().id(), %learner, %matched, %last,
            "learner {learner} has caught up (match index {matched}, leader's last {last}): promoting it to voter");
        let change = Change::Promote(learner);
        let id = self.changes.waiters.add(change.clone(), None, now + self.changes.timeout);
        self.node.step(Input::ChangeMembership { id, change }, &mut self.outputs);
    }

    /// Hands the transport the membership in effect when it changed, so
    /// that this batch's sends reach new members; logs what changed.
    fn follow_membership(&mut self) {
        let current = self.node.state().membership();
        if self.changes.followed.as_ref() == Some(current) {
            return;
        }
        let id = self.node.config().id();
        if let Some(before) = &self.changes.followed {
            let was = |m: NodeId| before.contains(m);
            let added: Vec<NodeId> =
                current.voters().iter().chain(current.learners()).copied().filter(|&m| !was(m)).collect();
            let removed: Vec<NodeId> =
                before.voters().iter().chain(before.learners()).copied().filter(|&m| !current.contains(m)).collect();
            let promoted: Vec<NodeId> = current.voters().iter().copied().filter(|&m| before.is_learner(m)).collect();
            info!(node = %id, membership = ?current, ?added, ?removed, ?promoted, "membership in effect changed");
        }
        self.transport.set_members(current);
        self.changes.followed = Some(current.clone());
    }

    fn on_deadlines(&mut self) {
        let now = Instant::now();
        // Bound: each timer kind fires at most once (take_expired clears it).
        while let Some(timer) = self.timers.take_expired(now) {
            self.node.step(Input::Timeout(timer), &mut self.outputs);
        }
        if self.timers.sweep <= now {
            self.waiters.expire(now);
            self.reads.sweep(now);
            self.changes.waiters.settle(self.node.state(), now);
            self.maybe_promote(now);
            self.timers.sweep = now + SWEEP_INTERVAL;
        }
    }

    fn add_proposal(&mut self, request: ProposeRequest, now: Instant) {
        self.proposal_bytes += request.data.len() + PROPOSAL_OVERHEAD_BYTES;
        self.waiters.add(request, now);
    }

    /// Steps the peer messages and proposals already waiting, each drain
    /// bounded (see the constants), proposals as one input.
    fn take_ready(&mut self) -> Result<(), NodeError> {
        // Bound: one completion per write in flight.
        while let Ok(done) = self.storage.completions().try_recv() {
            self.on_written(done)?;
        }
        for _ in 0..MESSAGES_PER_BATCH_MAX {
            let Ok(inbound) = self.inbox.try_recv() else { break };
            self.on_inbound(inbound);
        }
        // The byte bound: a follower forwards the whole batch as one message,
        // which must fit in a frame (raft-core's message_bytes_max).
        let bytes_max = self.node.config().message_bytes_max();
        let now = Instant::now();
        while self.waiters.batch_len() < PROPOSALS_PER_BATCH_MAX
            && self.proposal_bytes < bytes_max
            && self.takes_proposals()
        {
            let Ok(request) = self.requests.try_recv() else { break };
            self.add_proposal(request, now);
        }
        // Bound: the drain above took at most PROPOSALS_PER_BATCH_MAX.
        while let Some(batch) = self.waiters.take_batch(bytes_max, PROPOSAL_OVERHEAD_BYTES) {
            self.node.step(Input::Propose(batch), &mut self.outputs);
        }
        self.proposal_bytes = 0;
        for _ in 0..READS_PER_BATCH_MAX {
            if self.reads.len() >= READS_IN_FLIGHT_MAX {
                break;
            }
            let Ok(request) = self.read_requests.try_recv() else { break };
            self.reads.add(request, now);
        }
        if let Some(ids) = self.reads.take_batch() {
            self.node.step(Input::Read(ids), &mut self.outputs);
        }
        Ok(())
    }

    /// Executes the batch's outputs in order: persists are submitted as one
    /// write; an output waits for the write if a `Persist` precedes it in
    /// the batch or is still being written, and goes out now otherwise.
    fn flush(&mut self) -> Result<(), NodeError> {
        self.follow_membership();
        // Outputs stay in order: behind a `Persist` being written, and
        // behind outputs already waiting for a write.
        let fenced = self.writing.iter().any(|w| w.barrier || !w.deferred.is_empty());
        let mut offered = SnapshotsOffered {
            offered: std::mem::take(&mut self.snapshots.offered),
            replies: std::mem::take(&mut self.snapshots.replies),
        };
        let (mut persists, mut deferred) = (Vec::new(), Vec::new());
        let (mut barrier, mut report) = (false, None);
        for o in std::mem::take(&mut self.outputs) {
            match o {
                Output::Persist(p) => {
                    persists.push(p);
                    barrier = true;
                }
                Output::PersistAsync { persist, term, index } => {
                    persists.push(persist);
                    report = Some(Input::Persisted { term, index });
                }
                o if fenced || barrier => deferred.push(o),
                o => self.execute(o),
            }
        }
        if !persists.is_empty() {
            let seq = self.next_write;
            self.next_write += 1;
            self.storage.submit(seq, persists).map_err(NodeError::Storage)?;
            let snapshot = self.node.state().snapshot().cloned();
            self.writing.push_back(Write { seq, barrier, report, snapshot, offered, deferred });
        } else if let Some(last) = self.writing.back_mut() {
            last.deferred.append(&mut deferred);
            last.offered.offered.append(&mut offered.offered);
            last.offered.replies.append(&mut offered.replies);
        } else {
            // Nothing being written: the state's snapshot is the durable one.
            self.snapshots.settle(self.node.state().snapshot(), offered);
        }
        // The in-memory store completes at once: its completions are taken
        // here rather than after another wait. Bound: one per write in flight.
        while let Ok(done) = self.storage.completions().try_recv() {
            self.on_written(done)?;
        }
        self.settle()
    }

    /// A write is durable: the outputs that waited for it are executed, and
    /// its background writes reported.
    fn on_written(&mut self, done: crate::storage::Completion) -> Result<(), NodeError> {
        let seq = done.map_err(NodeError::Storage)?;
        let write = self.writing.pop_front().expect("a completion for a write submitted");
        debug_assert_eq!(write.seq, seq, "writes complete in order");
        for o in write.deferred {
            self.execute(o);
        }
        if let Some(report) = write.report {
            self.node.step(report, &mut self.outputs);
        }
        // Snapshot files the now durable state no longer names go.
        self.snapshots.settle(write.snapshot.as_ref(), write.offered);
        self.settle()
    }

    /// After outputs ran: proposals settled, the status published.
    fn settle(&mut self) -> Result<(), NodeError> {
        self.waiters.settle(self.node.state());
        self.publish();
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The application must load `meta`'s snapshot: hand it a reader (the
    /// file is opened here, so that its removal once a newer snapshot is
    /// durable cannot pull it from under the application).
    fn restore(&mut self, meta: SnapshotMeta) {
        info!(node = %self.node.config().id(), snapshot = ?meta, "the application restores a snapshot");
        self.last_delivered = meta.index;
        let Some(tx) = &self.delivery.entries else { return };
        match self.snapshots.store.reader(&meta) {
            Ok(reader) => {
                if tx.send(Delivered::Restore(reader)).is_err() {
                    self.delivery.entries = None;
                }
            }
            Err(e) => {
                let problem = StorageProblem::Snapshot(e.problem);
                self.fatal = Some(NodeError::Storage(StorageError { path: e.path, problem }));
            }
        }
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::Persist(_) | Output::PersistAsync { .. } => unreachable!("persists are taken out before"),
            Output::Send { to, message: Message::InstallSnapshot(m) } => self.snapshots.send(&self.transport, to, m),
            Output::Send { to, message } => self.transport.send(to, message),
            Output::SetTimer { timer, min, max } => self.timers.set(timer, min, max, Instant::now()),
            Output::CancelTimer(timer) => *self.timers.slot(timer) = None,
            Output::Deliver(committed) => {
                if let Some(last) = committed.last() {
                    self.last_delivered = last.index;
                }
                // Never waits (see `Delivery`); a receiver that is gone no
                // longer gets entries.
                if let Some(tx) = &self.delivery.entries {
                    if tx.send(Delivered::Entries(committed)).is_err() {
                        self.delivery.entries = None;
                    }
                }
            }
            Output::ProposalAccepted { id, term, index } => self.waiters.on_accepted(id, term, index),
            Output::ProposalRejected { id, reason } => {
                self.waiters.on_rejected(id, reason, self.node.state().leader().is_some())
            }
            Output::LeaderChanged { leader, term } => {
                debug!(node = %self.node.config().id(), ?leader, %term, "leader changed");
            }
            Output::ReadReady { id, .. } => self.reads.on_ready(id, self.last_delivered),
            Output::ReadRejected { id, reason } => self.reads.on_rejected(id, reason),
            Output::Dropped(reason) => debug!(node = %self.node.config().id(), ?reason, "input dropped"),
            Output::TransferRejected { target, reason } => {
                info!(node = %self.node.config().id(), %target, ?reason, "leadership transfer refused")
            }
            Output::RestoreSnapshot(meta) => self.restore(meta),
            Output::ChangeAccepted { id, term, index } => {
                self.changes.waiters.on_accepted(id, term, index, self.node.config().id())
            }
            Output::ChangeRejected { id, reason } => {
                debug!(node = %self.node.config().id(), ?reason, "membership change refused");
                self.changes.waiters.on_rejected(id, reason)
            }
            Output::MembershipCommitted { index, term, membership } => {
                info!(node = %self.node.config().id(), %index, ?membership, "membership change committed");
                self.changes.waiters.on_committed(index, term, &membership);
            }
            Output::FollowerRegressed { peer, acknowledged, last_index } => {
                self.snapshots.counters.followers_regressed.fetch_add(1, Ordering::Relaxed);
                warn!(node = %self.node.config().id(), %peer, %acknowledged, %last_index,
                    "follower {peer} reports a log ending at {last_index}, before the {acknowledged} it had \
                     acknowledged: it lost entries it had said were durable (a wiped or lossy disk?)");
            }
        }
    }

    fn publish(&mut self) {
        let status = self.node.status();
        let leader = LeaderInfo { leader: status.leader, term: status.term, role: status.role };
        let id = self.node.config().id();
        self.published.leader.send_if_modified(|l| {
            let changed = *l != leader;
            leader.log_change(id, l);
            *l = leader;
            changed
        });
        let state = self.node.state();
        self.published.membership.send_if_modified(|m| {
            let changed = m.current != *state.membership() || m.committed != *state.committed_membership();
            if changed {
                *m = Memberships {
                    current: state.membership().clone(),
                    committed: state.committed_membership().clone(),
                };
            }
            changed
        });
        self.published.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn draws(seed: u64) -> Vec<Duration> {
        let mut timers = Timers::new(ChaCha8Rng::seed_from_u64(seed));
        let now = Instant::now();
        (0..20)
            .map(|_| {
                timers.set(Timer::Election, Duration::from_millis(150), Duration::from_millis(300), now);
                timers.election.unwrap() - now
            })
            .collect()
    }

    #[test]
    fn timer_durations_are_in_range_and_replayable_from_the_seed() {
        let a = draws(42);
        assert_eq!(a, draws(42), "the same seed draws the same durations");
        assert_ne!(a, draws(43));
        for d in &a {
            assert!(*d >= Duration::from_millis(150) && *d <= Duration::from_millis(300), "{d:?}");
        }
    }
}
