//! What goes into `step` and what comes out of it.

use crate::membership::{Change, ChangeRejection, Membership};
use crate::message::Message;
use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, HardState, LogIndex, NodeId, ProposalId, ReadId, Term};
use core::time::Duration;
use serde::{Deserialize, Serialize};

/// The timers a node asks its driver to run. There is at most one of each
/// kind: setting a timer replaces the previous deadline of that kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Followers and candidates: start an election when it fires.
    Election,
    /// Leaders: send heartbeats (and retry appends) when it fires.
    Heartbeat,
    /// Leaders with check-quorum (thesis §6.2): every minimum election
    /// timeout, step down unless a majority was heard from since the last.
    CheckQuorum,
    /// Leaders transferring leadership (thesis §3.10): give up the transfer
    /// when it fires (an election timeout after it began).
    Transfer,
}

/// One input to [`crate::step`]. Nothing else reaches the core.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Input {
    /// A message from peer `from`.
    Receive {
        /// The sender, as authenticated by the transport.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// A timer the node set earlier has fired (and was not reset since).
    Timeout(Timer),
    /// Client proposals, handled together so that they travel in one append.
    Propose(Vec<Proposal>),
    /// Linearizable read requests (ReadIndex, thesis §6.4), handled together
    /// so that they share one leadership check. Each is answered with
    /// [`Output::ReadReady`] or [`Output::ReadRejected`].
    Read(Vec<ReadId>),
    /// The application has applied every delivered entry up to this index
    /// (etcd's `Advance`). The core keeps a bounded window of entries
    /// delivered and not yet applied, and delivers more as this arrives;
    /// see `Config::unapplied_entries_max`.
    Applied(LogIndex),
    /// An operator asks the leader to hand its leadership to `target`
    /// (thesis §3.10). Refused with [`Output::TransferRejected`] unless this
    /// node leads and the target is another voter; success shows as a
    /// [`Output::LeaderChanged`] naming the target.
    TransferLeadership(NodeId),
    /// An operator asks the leader to change the membership by one server
    /// (see the `membership` module for the rules). Answered with
    /// [`Output::ChangeAccepted`] (the configuration entry's place) or
    /// [`Output::ChangeRejected`]; its commit shows as
    /// [`Output::MembershipCommitted`].
    ChangeMembership {
        /// The caller's id for the answer.
        id: ProposalId,
        /// The change.
        change: Change,
    },
    /// The application has made durable a snapshot of its state machine
    /// covering every entry up to this index, which it has applied (§7).
    /// The core records the snapshot (`Persist::Snapshot`) and compacts its
    /// log, keeping `Config::trailing_entries` entries before the index for
    /// followers that lag a little. An index above the applied index is
    /// refused ([`Dropped::OutOfRange`]); one at or below the current
    /// snapshot's changes nothing.
    SnapshotTaken(LogIndex),
    /// The driver has made durable every persist up to the
    /// [`Output::PersistAsync`] that named this `term` and `index` (and
    /// every persist before it). A leader counts its own entries towards
    /// the commit index, and a candidate counts its own vote, only once
    /// reported here (thesis §10.2.1). A report may be late, and may be
    /// skipped when a later one covers it; one of an older term changes
    /// nothing, so a late completion of a write that a truncation undid
    /// cannot count the entry that replaced it.
    Persisted {
        /// The term named by the `PersistAsync`.
        term: Term,
        /// The index named by the `PersistAsync`.
        index: LogIndex,
    },
}

/// A client proposal: opaque bytes and the caller's id for the answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposal {
    /// The caller's id for this proposal.
    pub id: ProposalId,
    /// The command.
    pub data: Vec<u8>,
}

/// A change to the durable state that the driver must make durable before
/// executing any later output of the same list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Persist {
    /// Store term and vote, as one atomic record.
    HardState(HardState),
    /// Store the membership in force before the log's configuration
    /// entries (replacing the one stored): the bootstrap one, or the one of
    /// the latest snapshot. Later changes live in the log.
    Membership(Membership),
    /// Remove every log entry at `from` and after.
    Truncate {
        /// The first index removed.
        from: LogIndex,
    },
    /// Store `entries` at `first`, `first + 1`, ...; `first` is always one
    /// past the last entry stored (after any preceding `Truncate`).
    Append {
        /// The index of the first entry.
        first: LogIndex,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// Record this as the node's snapshot, replacing the one recorded. Its
    /// data is already durable: the application took it (`Input::SnapshotTaken`)
    /// or the driver received and installed it before handing the core the
    /// `InstallSnapshot` message. Older snapshot data may be deleted once
    /// this is durable.
    Snapshot(SnapshotMeta),
    /// Remove every log entry at `through` and before; the entry at
    /// `through` had `term`, which is kept for the consistency check. When
    /// `through` is at or past the last entry stored, the log is left empty
    /// and starts after `through`. Always preceded by the `Snapshot` that
    /// covers `through`, in this list or an earlier one.
    Compact {
        /// The last index removed.
        through: LogIndex,
        /// The term of the entry at `through`.
        term: Term,
    },
}

/// One committed command, delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Committed {
    /// Its index in the log.
    pub index: LogIndex,
    /// The term it was appended in.
    pub term: Term,
    /// The command.
    pub data: Vec<u8>,
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rejection {
    /// A bounded queue is full: no leader is known and the pending queue
    /// is full (`Config::pending_proposals_max`), or the leader holds as
    /// many uncommitted entries (`Config::uncommitted_entries_max`) or
    /// waiting reads (`Config::reads_max`) as it may. Retry later.
    QueueFull,
    /// The proposal is larger than `Config::message_bytes_max`.
    TooLarge,
    /// The leader is handing its leadership to `target` and takes no
    /// proposals meanwhile. Retry at the target, or here after an election
    /// timeout if the transfer fails.
    Transferring {
        /// The node leadership is being handed to.
        target: NodeId,
    },
    /// The node it was forwarded to was no longer leader. Retry, possibly at
    /// the hinted leader.
    NotLeader {
        /// The leader the refusing node knew of, if any.
        leader_hint: Option<NodeId>,
    },
}

/// Why a leadership transfer was refused: each is the caller's mistake or
/// bad timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferRejection {
    /// This node does not lead; ask the hinted leader.
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The target is this node, which leads already.
    ToSelf,
    /// The target is not a voter of the cluster.
    NotVoter,
}

/// Why an input was ignored. Each is counted by [`crate::Node`]; none is an
/// error of this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dropped {
    /// The message claims to come from this node, or is an answer (to a
    /// vote, an append or a leadership check) from a node that is not a
    /// member. Requests from non-members are served (thesis §4.1: a
    /// leader this node has not heard of may hold a configuration entry it
    /// has not received yet).
    UnknownSender,
    /// A response from an older term, or a response this node's role does
    /// not expect; or a leader's `TimeoutNow` of an older term, which needs
    /// no answer.
    StaleResponse,
    /// An index beyond what this node holds or sent, entries whose terms
    /// go backwards or exceed the message's term, a term or index above
    /// what a node accepts ([`Term::MAX_ACCEPTED`], [`LogIndex::MAX_ACCEPTED`]),
    /// or an `Input::Applied` beyond what was delivered.
    OutOfRange,
    /// A second leader claims the same term as this leader, or as the
    /// leader this follower already follows: impossible in a correct
    /// cluster, so the message is distrusted.
    SecondLeader,
    /// A timer fired that the node's role does not use (a late timeout
    /// after a role change).
    StaleTimer,
    /// A vote request of a higher term reached a node that hears from a
    /// live leader (check-quorum's lease, thesis §6.2): a disruptive
    /// candidate is ignored, unless a leadership transfer sent it.
    InLease,
}

/// One output of [`crate::step`], to be executed by the driver in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Output {
    /// Make this change durable before executing any later output (of this
    /// list or of a later one). Every reply that reports durable state (a
    /// vote granted, an append acknowledged) comes after the persist it
    /// reports, so it waits for it.
    Persist(Persist),
    /// Make this change durable in the background: later outputs need not
    /// wait for it. Persists still reach the disk in order (a later
    /// `Persist` waits for this one too). Once this change and every
    /// persist before it are durable, feed [`Input::Persisted`] with this
    /// `term` and `index`. Only a leader's own new entries and a
    /// candidate's vote for itself are written so (thesis §10.2.1): the
    /// appends and vote requests that follow go out while the disk works,
    /// and the node counts itself only for what was reported durable.
    PersistAsync {
        /// The change.
        persist: Persist,
        /// The term to report back.
        term: Term,
        /// The index to report back.
        index: LogIndex,
    },
    /// Send a message to a peer. Delivery may fail; Raft retries.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// (Re)arm a timer to fire after a duration drawn uniformly from
    /// `min..=max`. The core draws no random numbers; the driver does.
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// Disarm a timer.
    CancelTimer(Timer),
    /// Committed commands, in log order, each delivered once per node lifetime.
    /// No-op entries are not delivered, so indexes may skip.
    Deliver(Vec<Committed>),
    /// The leader this node knows of has changed (`None`: unknown).
    LeaderChanged {
        /// The leader, if known.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
    /// A proposal made at this node was appended by the leader at (term,
    /// index). It is committed once delivered at that index with that term;
    /// if a different entry is delivered at that index, it was lost.
    ProposalAccepted {
        /// The proposal's id.
        id: ProposalId,
        /// The term of the leader that appended it.
        term: Term,
        /// Its index.
        index: LogIndex,
    },
    /// A proposal made at this node was refused.
    ProposalRejected {
        /// The proposal's id.
        id: ProposalId,
        /// Why.
        reason: Rejection,
    },
    /// A read may be served: once the application has applied every entry
    /// delivered up to `index` (all of them are delivered before this
    /// output), reading its state machine is linearizable.
    ReadReady {
        /// The read's id.
        id: ReadId,
        /// Its read index.
        index: LogIndex,
    },
    /// A read made at this node could not be confirmed; retry it.
    ReadRejected {
        /// The read's id.
        id: ReadId,
        /// Why (always `NotLeader`, with the leader this node knows of).
        reason: Rejection,
    },
    /// The input was ignored (see [`Dropped`]).
    Dropped(Dropped),
    /// The application must replace its state machine with the snapshot's
    /// data: a leader's snapshot was installed (the driver received the
    /// data with the `InstallSnapshot` message), or a node recovered with
    /// a snapshot beyond what the application said it applied. Entries
    /// after `meta.index` are delivered next.
    RestoreSnapshot(SnapshotMeta),
    /// A follower reported a log that ends before what it had acknowledged
    /// to this leader: it lost entries it had said were durable (its disk
    /// was wiped, or its storage loses writes). Raft's safety assumes this
    /// never happens, so the driver should log it loudly. The leader probes
    /// the follower again from its reported end.
    FollowerRegressed {
        /// The follower.
        peer: NodeId,
        /// The highest index it had acknowledged.
        acknowledged: LogIndex,
        /// The last index it now reports.
        last_index: LogIndex,
    },
    /// A membership change asked of this node was appended at (term,
    /// index), and is in effect here from now on. It is committed once
    /// [`Output::MembershipCommitted`] reports that index with that term.
    ChangeAccepted {
        /// The change's id.
        id: ProposalId,
        /// The leader's term.
        term: Term,
        /// The configuration entry's index.
        index: LogIndex,
    },
    /// A membership change asked of this node was refused.
    ChangeRejected {
        /// The change's id.
        id: ProposalId,
        /// Why.
        reason: ChangeRejection,
    },
    /// A configuration entry is committed, in log order among the
    /// `Deliver`s: from `index` on, `membership` is the cluster's.
    MembershipCommitted {
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
        /// The membership it set.
        membership: Membership,
    },
    /// A leadership transfer was refused.
    TransferRejected {
        /// The node named as target.
        target: NodeId,
        /// Why.
        reason: TransferRejection,
    },
}
