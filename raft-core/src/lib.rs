//! # raft-core: Raft as a pure, deterministic state machine
//!
//! This crate is the Raft protocol of the extended paper's §5 (Figure 2),
//! with linearizable reads (ReadIndex, thesis §6.4), pre-vote (§9.6),
//! check-quorum (§6.2), leadership transfer (§3.10), and snapshots with log
//! compaction (§7; the bytes stay with the driver, see below). **It does no I/O,
//! reads no clock and draws no random numbers.** Messages, timer expiries and client proposals come in as
//! [`Input`]s; everything the node wants done goes out as [`Output`]s, in a
//! list the driver executes in order. The same code runs under the model
//! checker (raft-check), the simulators, and the tokio runtime (raft-tokio).
//!
//! ## The step contract
//!
//! ```text
//! step(config, state, input) -> (state, outputs)
//! ```
//!
//! - Start a brand-new node with [`State::new`], giving it the cluster's
//!   [`Membership`]; after a crash, start it with [`State::recover`] from
//!   exactly what it persisted (a [`MemoryStore`], or the driver's own store
//!   read back into one). Both return the first outputs: a new node's first
//!   persists its membership, and both arm the election timer.
//! - Feed every input to [`step`] (or the in-place [`State::step`], or the
//!   [`Node`] wrapper that also counts dropped inputs): peer messages, timer
//!   expiries, proposals, reads, the application's progress
//!   ([`Input::Applied`]), its snapshots ([`Input::SnapshotTaken`]) and the
//!   storage's completions ([`Input::Persisted`]).
//! - Execute the outputs **in order**:
//!   - [`Output::Persist`]: make the change durable (write and fsync)
//!     **before executing any later output**, of this list or of a later
//!     one. This is the rule that makes Raft safe across crashes: a vote or
//!     an append acknowledgement is never sent before the state it reports
//!     is on disk. A driver may group the persists of several steps into
//!     one fsync as long as no later output overtakes the fsync it follows.
//!   - [`Output::PersistAsync`]: make the change durable **in the
//!     background**; later outputs need not wait for it (thesis §10.2.1).
//!     Persists of both kinds still reach the disk in the order given.
//!     When the change is durable, feed [`Input::Persisted`] with the
//!     `term` and `index` it names. Only two writes are made so: a leader's
//!     own new entries (its appends go out while its disk works; it counts
//!     itself towards the commit index only for entries reported durable,
//!     and delivers only those) and a candidate's vote for itself (its vote
//!     requests go out at once; it counts its own vote, and can win, only
//!     once the vote is durable). A driver without a background writer may
//!     treat it as a `Persist` and feed `Input::Persisted` after the list
//!     ([`MemoryStore::apply_all`] returns the report to feed).
//!
//!     So each output waits for exactly the persists it depends on: every
//!     output waits for every `Persist` before it, and for no
//!     `PersistAsync`. The core emits every persist of a step before its
//!     first send, and checks that after every step, in release builds too.
//!   - [`Output::Send`]: best-effort delivery to a peer; Raft retries.
//!   - [`Output::SetTimer`] / [`Output::CancelTimer`]: one timer per
//!     [`Timer`] kind; setting re-arms it with a delay drawn (by the driver)
//!     uniformly from the range given. When it fires, feed
//!     [`Input::Timeout`].
//!   - [`Output::Deliver`]: committed commands, in log order, exactly once
//!     per node lifetime (no-op entries are skipped). At most
//!     [`Config::unapplied_entries_max`] entries and
//!     [`Config::unapplied_bytes_max`] bytes are out at once without an
//!     [`Input::Applied`] for them: report progress as the application
//!     applies, and more is delivered. The node keeps working while the
//!     application lags; a driver need not, and should not, block on it.
//!   - [`Output::LeaderChanged`], [`Output::ProposalAccepted`],
//!     [`Output::ProposalRejected`], [`Output::ReadReady`],
//!     [`Output::ReadRejected`]: notifications for the application.
//!   - [`Output::RestoreSnapshot`]: replace the application's state by the
//!     snapshot named (installed from the leader, or found at recovery);
//!     entries after it are delivered next.
//!   - [`Output::FollowerRegressed`]: a follower lost entries it had
//!     acknowledged (a wiped disk); log it loudly.
//!   - [`Output::Dropped`]: an input was ignored (bad or stale); count it.
//!
//! ## Snapshots: the core keeps metadata, the driver keeps the bytes
//!
//! The application snapshots its state at an applied index, makes it
//! durable, and reports [`Input::SnapshotTaken`]; the core records the
//! [`SnapshotMeta`] ([`Persist::Snapshot`]) and compacts its log
//! ([`Persist::Compact`]), keeping [`Config::trailing_entries`] entries
//! before the snapshot for followers that lag a little. A leader sends
//! [`Message::InstallSnapshot`], which carries only the metadata, to a
//! follower that needs compacted entries, and re-sends it on every
//! heartbeat until the follower answers. The driver streams the data the
//! metadata names (one transfer per follower at a time: a repeat is
//! ignored while one runs), and hands the message to the follower's core
//! once the data is durably installed there. The follower keeps the log
//! suffix after a matching last entry, discards a log that does not match,
//! and says [`Output::RestoreSnapshot`]. A node recovers from its snapshot
//! plus the log after it ([`State::recover`]).
//!
//! ## Proposals: what is answered, and what the driver must time out
//!
//! A proposal made at a leader is answered at once: accepted at a (term,
//! index), or rejected with a reason. A proposal made at a follower is
//! forwarded to the leader it knows, and answered when the leader's answer
//! comes back, or rejected if no leader is known and the queue is full.
//! **A forwarded proposal whose leader dies, or whose messages are lost,
//! gets no answer at all**: the core cannot tell a lost message from a slow
//! one. The driver must give every proposal a deadline and report its
//! outcome then as unknown (it may or may not commit: a retry may apply it
//! twice unless the application deduplicates). Once accepted, a proposal's
//! fate is [`State::proposal_fate`]: committed when its entry is delivered,
//! lost when another entry commits at its index. Reads are answered in the
//! same way ([`Output::ReadReady`] or [`Output::ReadRejected`]) and need the
//! same deadline.
//!
//! The configuration is passed to every step rather than stored in the state:
//! it never changes during a node's life, and keeping it out of the state
//! keeps states small and cheap to hash for the model checker. The member
//! set is not configuration: it is state ([`Membership`]), persisted and
//! recovered with the term, vote and log, and changed one server at a time
//! by configuration entries in the log ([`Input::ChangeMembership`]; the
//! rules are in the documentation of [`Membership`]).
//!
//! ## Bad input
//!
//! A message claiming to come from the node itself, an answer from a
//! non-member, a message of a term above [`Term::MAX_ACCEPTED`], or one with
//! indexes out of range is dropped and counted ([`Dropped`]), never a
//! panic. The core's own invariants are assertions checked after every
//! step: a node whose invariant breaks stops rather than go on misbehaving.
//!
//! ## Example: a one-node cluster elects itself and commits
//!
//! ```
//! use raft_core::{step, Config, Input, MemoryStore, Membership, NodeId, Output, Proposal, ProposalId, State, Timer};
//!
//! let config = Config::new(NodeId(1));
//! let membership = Membership::new([NodeId(1)]).unwrap();
//! let mut disk = MemoryStore::new(); // stands for the driver's storage
//! let (state, outputs) = State::new(&config, membership);
//! disk.apply_all(&outputs).unwrap();
//! // The election timer fires: a candidate, its vote for itself being written.
//! let (state, outputs) = step(&config, state, Input::Timeout(Timer::Election));
//! assert!(!state.is_leader());
//! // The vote is durable: the storage reports it, and the node leads.
//! let written = disk.apply_all(&outputs).unwrap().expect("a background write");
//! let (state, outputs) = step(&config, state, written);
//! assert!(state.is_leader());
//! let written = disk.apply_all(&outputs).unwrap().expect("the leader's no-op");
//! let (state, _) = step(&config, state, written);
//! let proposal = Proposal { id: ProposalId(7), data: b"x=1".to_vec() };
//! let (state, outputs) = step(&config, state, Input::Propose(vec![proposal]));
//! // Committed once the leader's own copy is durable (it is the majority).
//! let written = disk.apply_all(&outputs).unwrap().expect("x=1 being written");
//! let (state, outputs) = step(&config, state, written);
//! assert!(outputs.iter().any(|o| matches!(o, Output::Deliver(c) if c[0].data == b"x=1")));
//! assert_eq!(state.commit_index().0, 2); // the leader's no-op, then x=1
//! let delivered = state.delivered_index();
//! let (state, _) = step(&config, state, Input::Applied(delivered));
//! assert_eq!(state.applied_index().0, 2);
//! ```
//!
//! ## What is not here yet
//!
//! Joint consensus (changing several voters in one step through a joint
//! configuration): changes are single-server. Every majority question goes
//! through one quorum module, written for a joint variant.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod delivery;
mod election;
mod fault;
mod io;
mod leadership;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod proposals;
mod quorum;
mod read;
mod replication;
mod snapshot;
mod state;
mod store;
mod types;

pub use config::{Config, ConfigError};
#[cfg(feature = "fault-injection")]
pub use fault::Fault;
pub use io::{Committed, Dropped, Input, Output, Persist, Proposal, Rejection, Timer, TransferRejection};
pub use log::Log;
pub use membership::{Change, ChangeRejection, Membership, MembershipError};
pub use message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Forward, ForwardResponse, InstallSnapshot, LeadershipCheck,
    LeadershipCheckResponse, Message, Placement, PreVote, PreVoteResponse, ReadIndexRequest, ReadIndexResponse,
    ReadIndexResult, RequestVote, RequestVoteResponse, TimeoutNow,
};
pub use node::{DropCounters, Node, Status};
pub use progress::{Mode, Progress};
pub use proposals::ProposalFate;
pub use read::Reads;
pub use snapshot::SnapshotMeta;
pub use state::{RecoverError, Role, RoleKind, State};
pub use store::{MemoryStore, StoreError};
pub use types::{
    Entry, HardState, LogIndex, NodeId, Payload, ProposalId, ReadId, Term, ENTRY_OVERHEAD_BYTES,
    PROPOSAL_OVERHEAD_BYTES,
};

/// The pure form of the step function: consumes a state and an input,
/// returns the next state and the outputs to execute in order.
pub fn step(config: &Config, mut state: State, input: Input) -> (State, Vec<Output>) {
    let mut outputs = Vec::new();
    state.step(config, input, &mut outputs);
    (state, outputs)
}
