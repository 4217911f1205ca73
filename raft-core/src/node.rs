//! A convenience wrapper for drivers: the configuration, the state, and
//! counters of what was dropped, behind one `step` call.

use crate::config::Config;
use crate::io::{Dropped, Input, Output};
use crate::membership::Membership;
use crate::state::{RecoverError, RoleKind, State};
use crate::store::MemoryStore;
use crate::types::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// Counts of inputs ignored, by reason. Kept outside [`State`] so that a
/// dropped message leaves the state unchanged (which the model checker
/// relies on to prune no-op transitions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    /// See [`Dropped::UnknownSender`].
    pub unknown_sender: u64,
    /// See [`Dropped::StaleResponse`].
    pub stale_response: u64,
    /// See [`Dropped::OutOfRange`].
    pub out_of_range: u64,
    /// See [`Dropped::SecondLeader`].
    pub second_leader: u64,
    /// See [`Dropped::StaleTimer`].
    pub stale_timer: u64,
    /// See [`Dropped::InLease`].
    pub in_lease: u64,
}

impl DropCounters {
    /// Counts one dropped input.
    pub fn record(&mut self, reason: Dropped) {
        let counter = match reason {
            Dropped::UnknownSender => &mut self.unknown_sender,
            Dropped::StaleResponse => &mut self.stale_response,
            Dropped::OutOfRange => &mut self.out_of_range,
            Dropped::SecondLeader => &mut self.second_leader,
            Dropped::StaleTimer => &mut self.stale_timer,
            Dropped::InLease => &mut self.in_lease,
        };
        *counter += 1;
    }

    /// Inputs dropped because a peer sent something wrong (timers excluded).
    pub fn bad_messages(&self) -> u64 {
        self.unknown_sender + self.out_of_range + self.second_leader
    }
}

/// A snapshot of a node's condition, for status pages and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
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
    /// The first index its log holds (entries before are compacted).
    pub first_log_index: LogIndex,
    /// The index of its latest snapshot (0: none).
    pub snapshot_index: LogIndex,
    /// The highest index it knows committed.
    pub commit_index: LogIndex,
    /// The highest index delivered to the application.
    pub delivered_index: LogIndex,
    /// The highest index the application reported applied.
    pub applied_index: LogIndex,
    /// Inputs it ignored, by reason.
    pub dropped: DropCounters,
}

/// A node: its configuration, its state and its drop counters.
#[derive(Clone, Debug)]
pub struct Node {
    config: Config,
    state: State,
    dropped: DropCounters,
}

impl Node {
    /// A brand-new node of the cluster `membership`, and the outputs that
    /// start it (see [`State::new`]).
    pub fn new(config: Config, membership: Membership) -> (Node, Vec<Output>) {
        let (state, outputs) = State::new(&config, membership);
        (Node { config, state, dropped: DropCounters::default() }, outputs)
    }

    /// A node restarted from what it persisted (see [`State::recover`]),
    /// and the outputs that start it.
    pub fn recover(config: Config, store: MemoryStore, applied: LogIndex) -> Result<(Node, Vec<Output>), RecoverError> {
        let (state, outputs) = State::recover(&config, store, applied)?;
        Ok((Node { config, state, dropped: DropCounters::default() }, outputs))
    }

    /// Handles one input; appends the outputs to `out`, counting drops.
    pub fn step(&mut self, input: Input, out: &mut Vec<Output>) {
        let start = out.len();
        self.state.step(&self.config, input, out);
        for o in &out[start..] {
            if let Output::Dropped(reason) = o {
                self.dropped.record(*reason);
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The protocol state.
    pub fn state(&self) -> &State {
        &self.state
    }
    /// The current status.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id(),
            role: self.state.role_kind(),
            term: self.state.term(),
            leader: self.state.leader(),
            last_log_index: self.state.log().last_index(),
            first_log_index: self.state.log().first_index(),
            snapshot_index: self.state.snapshot().map_or(LogIndex(0), |s| s.index),
            commit_index: self.state.commit_index(),
            delivered_index: self.state.delivered_index(),
            applied_index: self.state.applied_index(),
            dropped: self.dropped,
        }
    }
}
