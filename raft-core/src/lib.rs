//! # raft-core: Raft as a pure, deterministic state machine
//!
//! This crate is the Raft protocol of the extended paper's §5 (Figure 2) and
//! nothing else. **It does no I/O, reads no clock and draws no random
//! numbers.** Messages, timer expiries and client proposals come in as
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
//! - Start a node with [`State::new`] or, after a crash, [`State::recover`]
//!   from exactly what it persisted; both return the first outputs (the
//!   election timer).
//! - Feed every input to [`step`] (or the in-place [`State::step`], or the
//!   [`Node`] wrapper that also counts dropped inputs).
//! - Execute the outputs **in order**:
//!   - [`Output::Persist`]: make the change durable (write and fsync)
//!     **before executing any later output of the list**. This is the rule
//!     that makes Raft safe across crashes: a vote or an append
//!     acknowledgement is never sent before the state it reports is on disk.
//!     The core emits every persist of a step before its first send, and
//!     checks that in debug builds. A driver may group the persists of
//!     several steps into one fsync as long as no send overtakes the fsync
//!     that it follows.
//!   - [`Output::Send`]: best-effort delivery to a peer; Raft retries.
//!   - [`Output::SetTimer`] / [`Output::CancelTimer`]: one timer per
//!     [`Timer`] kind; setting re-arms it with a delay drawn (by the driver)
//!     uniformly from the range given. When it fires, feed
//!     [`Input::Timeout`].
//!   - [`Output::Deliver`]: committed commands, in log order, exactly once
//!     per node lifetime (no-op entries are skipped).
//!   - [`Output::LeaderChanged`], [`Output::ProposalAccepted`],
//!     [`Output::ProposalRejected`]: notifications for the application.
//!   - [`Output::Dropped`]: an input was ignored (bad or stale); count it.
//!
//! The configuration is passed to every step rather than stored in the state:
//! it never changes during a node's life, and keeping it out of the state
//! keeps states small and cheap to hash for the model checker.
//!
//! ## Example: a one-node cluster elects itself and commits
//!
//! ```
//! use raft_core::{step, Config, Input, NodeId, Output, Proposal, ProposalId, State, Timer};
//!
//! let config = Config::new(NodeId(1), [NodeId(1)]).unwrap();
//! let (state, _arm_timer) = State::new(&config);
//! let (state, _) = step(&config, state, Input::Timeout(Timer::Election));
//! assert!(state.is_leader());
//! let proposal = Proposal { id: ProposalId(7), data: b"x=1".to_vec() };
//! let (state, outputs) = step(&config, state, Input::Propose(vec![proposal]));
//! assert!(outputs.iter().any(|o| matches!(o, Output::Deliver(c) if c[0].data == b"x=1")));
//! assert_eq!(state.commit_index().0, 2); // the leader's no-op, then x=1
//! ```
//!
//! ## What is not here yet
//!
//! Log compaction (the [`Log`] already starts after a snapshot index) and
//! membership changes are later work.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod election;
mod fault;
mod io;
mod log;
mod message;
mod node;
mod proposals;
mod read;
mod replication;
mod state;
mod types;

pub use config::{Config, ConfigError};
#[cfg(feature = "fault-injection")]
pub use fault::Fault;
pub use io::{Committed, Dropped, Input, Output, Persist, Proposal, Rejection, Timer};
pub use log::Log;
pub use message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Forward, ForwardResponse, LeadershipCheck,
    LeadershipCheckResponse, Message, ReadIndexRequest, ReadIndexResponse, RequestVote, RequestVoteResponse,
};
pub use node::{DropCounters, Node, Status};
pub use read::Reads;
pub use state::{Mode, Progress, RecoverError, Role, RoleKind, State};
pub use types::{Entry, HardState, LogIndex, NodeId, Payload, ProposalId, ReadId, Term};

/// The pure form of the step function: consumes a state and an input,
/// returns the next state and the outputs to execute in order.
pub fn step(config: &Config, mut state: State, input: Input) -> (State, Vec<Output>) {
    let mut outputs = Vec::new();
    state.step(config, input, &mut outputs);
    (state, outputs)
}
