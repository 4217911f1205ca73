//! Membership changes as the runtime carries them: an operator's change
//! waits for its configuration entry to commit, and a leader promotes the
//! learners that have caught up.
//!
//! raft-core decides every rule (one change at a time, none before the
//! leader committed an entry of its term, who counts in a majority); this
//! module only matches raft-core's answers to the callers that asked, and
//! holds the one piece of operator policy the runtime adds: when a learner
//! is close enough to the leader to become a voter ([`PROMOTE_LAG_MAX`]).
//!
//! A change's fate is known from raft-core's outputs and state:
//!
//! - `ChangeRejected`: refused, nothing appended.
//! - `ChangeAccepted { term, index }`, then `MembershipCommitted` at that
//!   index with that term: committed, the call returns the new membership.
//! - The commit index passes `index` while the log holds another term
//!   there: a new leader's entries replaced it; it never commits ([`Lost`]).
//! - Neither by the deadline: unknown ([`Timeout`]); a leader that lost its
//!   leadership after appending the entry does not make it fail at once,
//!   since the entry may still commit under the next leader.
//!
//! [`Lost`]: ChangeError::Lost
//! [`Timeout`]: ChangeError::Timeout

use raft_core::{Change, ChangeRejection, LogIndex, Membership, NodeId, ProposalId, Role, State, Term};
use std::collections::BTreeMap;
use std::fmt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;

/// A learner whose log ends at most this many entries before the leader's
/// last index, as the leader last heard it acknowledge, is promoted to voter
/// (when `RaftParams::promote_learners` is on). Small enough that a new
/// voter adds no long catch-up to the commit path (a leader streams far
/// more than this in one round trip: `entries_per_append_max` is 1024), large
/// enough that a learner under steady write load still qualifies.
pub const PROMOTE_LAG_MAX: u64 = 256;

/// Why a membership change did not complete (or may not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeError {
    /// The node is not running.
    Stopped,
    /// raft-core refused the change: this node does not lead (ask the
    /// hinted leader), the change is invalid (the node is a member already,
    /// is not a learner, is not a member, or is the last voter), or (after
    /// retrying until the deadline) the leader was not ready or another
    /// change stayed uncommitted. Nothing was appended.
    Refused(ChangeRejection),
    /// The change was appended, but a new leader's entries replaced it: it
    /// will never commit. Retrying cannot apply it twice (a repeat of a
    /// change already made is refused as invalid).
    Lost,
    /// Not known committed by the deadline (`RaftParams::proposal_timeout`).
    /// Its fate is unknown: read the membership to learn it.
    Timeout,
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::Stopped => write!(f, "the node is not running"),
            ChangeError::Refused(r) => write!(f, "refused: {r}"),
            ChangeError::Lost => write!(f, "replaced by a new leader's entries; not committed"),
            ChangeError::Timeout => write!(f, "not committed in time; it may still commit"),
        }
    }
}

impl std::error::Error for ChangeError {}

impl ChangeError {
    /// Whether asking again in a moment may succeed: the leader had not
    /// committed an entry of its term yet, another change was uncommitted,
    /// or a leadership transfer was under way.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ChangeError::Refused(
                ChangeRejection::LeaderNotReady
                    | ChangeRejection::ChangeInProgress { .. }
                    | ChangeRejection::Transferring { .. }
            )
        )
    }
}

/// The answer to a change: the membership once it committed.
pub(crate) type ChangeReply = oneshot::Sender<Result<Membership, ChangeError>>;

/// A change asked for through the API.
pub(crate) struct ChangeRequest {
    pub change: Change,
    pub reply: ChangeReply,
    pub deadline: Instant,
}

/// A change stepped and not yet settled.
struct Pending {
    change: Change,
    /// Where raft-core appended it, once it said.
    placed: Option<(Term, LogIndex)>,
    reply: Option<ChangeReply>,
    deadline: Instant,
}

/// The changes in flight, by the id they were stepped with. The runtime's
/// own promotions are here too, without a reply.
#[derive(Default)]
pub(crate) struct ChangeWaiters {
    next_id: u64,
    pending: BTreeMap<ProposalId, Pending>,
}

impl ChangeWaiters {
    /// A fresh id for a change, recorded with its caller.
    pub fn add(&mut self, change: Change, reply: Option<ChangeReply>, deadline: Instant) -> ProposalId {
        self.next_id += 1;
        let id = ProposalId(self.next_id);
        self.pending.insert(id, Pending { change, placed: None, reply, deadline });
        id
    }

    /// Whether a promotion the runtime asked for is still in flight.
    pub fn promoting(&self) -> bool {
        self.pending.values().any(|p| p.reply.is_none())
    }

    pub fn on_accepted(&mut self, id: ProposalId, term: Term, index: LogIndex, me: NodeId) {
        if let Some(p) = self.pending.get_mut(&id) {
            info!(node = %me, change = ?p.change, %term, %index, "membership change proposed");
            p.placed = Some((term, index));
        }
    }

    pub fn on_rejected(&mut self, id: ProposalId, reason: ChangeRejection) {
        if let Some(mut p) = self.pending.remove(&id) {
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Err(ChangeError::Refused(reason)));
            }
        }
    }

    /// A configuration entry committed: the change placed there with that
    /// term is done.
    pub fn on_committed(&mut self, index: LogIndex, term: Term, membership: &Membership) {
        self.pending.retain(|_, p| {
            if p.placed != Some((term, index)) {
                return true;
            }
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Ok(membership.clone()));
            }
            false
        });
    }

    /// After a batch: changes whose place was committed with another entry
    /// are lost; those past their deadline time out.
    pub fn settle(&mut self, state: &State, now: Instant) {
        let commit = state.commit_index();
        self.pending.retain(|_, p| {
            let lost = p
                .placed
                .is_some_and(|(term, index)| index <= commit && state.log().term_at(index).is_some_and(|t| t != term));
            let outcome = if lost {
                ChangeError::Lost
            } else if now >= p.deadline {
                ChangeError::Timeout
            } else {
                return true;
            };
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Err(outcome));
            }
            false
        });
    }
}

/// The learner a leader should promote now, if any: one whose log is
/// within [`PROMOTE_LAG_MAX`] of the leader's, which answered recently when
/// check-quorum tracks that, while no change is uncommitted (raft-core
/// would refuse it anyway).
pub(crate) fn learner_to_promote(state: &State) -> Option<(NodeId, LogIndex)> {
    let Role::Leader { progress, .. } = state.role() else { return None };
    if state.membership() != state.committed_membership() {
        return None;
    }
    let last = state.log().last_index();
    state.membership().learners().iter().find_map(|id| {
        let p = progress.get(id)?;
        let matched = p.match_index();
        let close = matched.0 > 0 && matched.0 + PROMOTE_LAG_MAX >= last.0;
        close.then_some((*id, matched))
    })
}
