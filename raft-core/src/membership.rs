//! Who is in the cluster, and how that changes: see [`Membership`].

use crate::config::Config;
use crate::fault::Fault;
use crate::io::Output;
use crate::io::Persist;
use crate::log::Log;
use crate::progress::Progress;
use crate::quorum::Quorum;
use crate::state::{Role, State};
use crate::types::{Entry, LogIndex, NodeId, Payload, ProposalId};
use core::fmt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The members of the cluster: voters, learners, and the address each
/// member was added with (opaque to the core; the runtime's address book).
/// Build it with [`Membership::new`] or [`Membership::with_learners`], which
/// check it. Shared: every state of a node holds the same one until a
/// membership change, so cloning a state does not copy it.
///
/// The voters' majorities elect leaders, commit entries and confirm reads;
/// the learners receive the log and are counted in nothing. The member set is part of a node's *state*, not of its [`Config`](crate::Config). A
/// cluster starts from the membership given to [`State::new`](crate::State::new) (persisted as
/// [`Persist::Membership`](crate::Persist::Membership)); each change after that is a configuration entry
/// in the log ([`Payload::Membership`](crate::Payload::Membership), carrying the whole new membership),
/// and a snapshot carries the membership in force at its index.
///
/// # When a change takes effect: when it is appended
///
/// A node uses the latest membership in its log, committed or not (thesis
/// §4.1), and falls back to the one before when a conflicting leader
/// truncates that entry away. etcd instead applies a change when it is
/// applied; we take the thesis' choice because then the one-change-at-a-time
/// argument of §4.2 holds as written: every configuration a leader can use
/// differs from the committed one by at most one server, so any majority of
/// one overlaps any majority of the other. The cost is that a node must
/// remember the memberships of its uncommitted entries, to fall back on
/// truncation.
///
/// # The rules for a change (thesis §4.2, §4.2.3, and the raft-dev fix of 2015)
///
/// - Only a leader takes one, and one at a time: a change is refused while
///   the last configuration entry in the leader's log is uncommitted.
/// - A leader takes none before it has committed an entry of its own term.
///   Without this rule, two changes proposed by leaders of successive terms
///   can each form a majority that the other's does not meet, and a
///   committed entry can be lost (Ongaro, raft-dev, 2015: the fix is that a
///   new leader first commits its no-op).
/// - A leader that removes itself keeps replicating, without counting
///   itself, until the entry commits, and then steps down.
/// - Learners are never counted in a majority and never stand for election;
///   a learner is promoted to voter by a change of its own.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    members: Arc<Members>,
}

#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Members {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    addresses: BTreeMap<NodeId, String>,
}

/// Why a member set was refused. Each variant is a caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// The list names no voter: such a cluster can elect no leader.
    NoVoters,
    /// A member id appears twice in the lists given.
    DuplicateMember {
        /// The repeated id.
        id: NodeId,
    },
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::NoVoters => write!(f, "the member list names no voter"),
            MembershipError::DuplicateMember { id } => write!(f, "member {id} is listed twice"),
        }
    }
}

impl std::error::Error for MembershipError {}

/// One membership change, asked of the leader with
/// [`Input::ChangeMembership`](crate::Input::ChangeMembership).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    /// Add a new member as a learner: it receives the log and counts in no
    /// majority. `address` is stored with it, for the runtime (may be empty).
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Where the runtime reaches it.
        address: String,
    },
    /// Make a learner a voter.
    Promote(NodeId),
    /// Remove a member, voter or learner (the leader itself included).
    Remove(NodeId),
}

impl Change {
    /// The member the change is about.
    pub fn node(&self) -> NodeId {
        match self {
            Change::AddLearner { id, .. } | Change::Promote(id) | Change::Remove(id) => *id,
        }
    }
}

/// Why a membership change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChangeRejection {
    /// This node does not lead; ask the hinted leader.
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The leader has not yet committed an entry of its own term (the 2015
    /// fix): retry in a moment.
    LeaderNotReady,
    /// An earlier change, appended at `index`, is not committed yet: one
    /// change at a time. Retry once it is.
    ChangeInProgress {
        /// The earlier change's index.
        index: LogIndex,
    },
    /// The leader is handing its leadership over; retry at the new leader.
    Transferring {
        /// The node leadership is being handed to.
        target: NodeId,
    },
    /// The node to add is a member already.
    AlreadyMember,
    /// The node to promote is not a learner.
    NotLearner,
    /// The node to remove is not a member.
    NotMember,
    /// The change would leave no voter.
    LastVoter,
}

impl fmt::Display for ChangeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeRejection::NotLeader { leader_hint: Some(l) } => write!(f, "not the leader; the leader is {l}"),
            ChangeRejection::NotLeader { leader_hint: None } => write!(f, "not the leader; no leader is known"),
            ChangeRejection::LeaderNotReady => {
                write!(f, "the leader has not committed an entry of its term yet; retry")
            }
            ChangeRejection::ChangeInProgress { index } => {
                write!(f, "the change at {index} is not committed yet; one change at a time")
            }
            ChangeRejection::Transferring { target } => write!(f, "leadership is being handed to {target}"),
            ChangeRejection::AlreadyMember => write!(f, "the node is a member already"),
            ChangeRejection::NotLearner => write!(f, "only a learner can be promoted"),
            ChangeRejection::NotMember => write!(f, "the node is not a member"),
            ChangeRejection::LastVoter => write!(f, "the change would leave no voter"),
        }
    }
}

impl Membership {
    /// A cluster whose members are all voters.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Result<Membership, MembershipError> {
        Membership::with_learners(voters, [])
    }

    /// A cluster of these voters and learners.
    pub fn with_learners(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, MembershipError> {
        let mut members = Members::default();
        for v in voters {
            if !members.voters.insert(v) {
                return Err(MembershipError::DuplicateMember { id: v });
            }
        }
        for l in learners {
            if members.voters.contains(&l) || !members.learners.insert(l) {
                return Err(MembershipError::DuplicateMember { id: l });
            }
        }
        if members.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        Ok(Membership { members: Arc::new(members) })
    }

    /// What a node that joins a running cluster knows before the leader's
    /// log or snapshot tells it more: only that it is a learner. It takes
    /// the leader's appends from whoever leads, and stands for nothing.
    pub fn joining(me: NodeId) -> Membership {
        let learners = BTreeSet::from([me]);
        Membership { members: Arc::new(Members { learners, ..Members::default() }) }
    }

    /// The same membership, with `address` recorded for member `id`.
    pub fn with_address(&self, id: NodeId, address: impl Into<String>) -> Membership {
        let mut members = (*self.members).clone();
        members.addresses.insert(id, address.into());
        Membership { members: Arc::new(members) }
    }

    /// The voters.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.members.voters
    }

    /// The learners.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.members.learners
    }

    /// The address recorded for a member, if any.
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.members.addresses.get(&id).map(String::as_str)
    }

    /// Every address recorded.
    pub fn addresses(&self) -> &BTreeMap<NodeId, String> {
        &self.members.addresses
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Whether `id` votes (and so may stand for election).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.voters.contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.members.learners.contains(&id)
    }

    /// Every member but `me`, voters first: the nodes a leader replicates to.
    pub fn peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.members.voters.iter().chain(&self.members.learners).copied().filter(move |&m| m != me)
    }

    /// Every voter but `me`: the nodes a candidate asks for votes.
    pub fn voting_peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.members.voters.iter().copied().filter(move |&m| m != me)
    }

    /// The membership `change` leads to, or why it is refused.
    pub fn changed(&self, change: &Change) -> Result<Membership, ChangeRejection> {
        let mut members = (*self.members).clone();
        match change {
            Change::AddLearner { id, address } => {
                if self.contains(*id) {
                    return Err(ChangeRejection::AlreadyMember);
                }
                members.learners.insert(*id);
                if !address.is_empty() {
                    members.addresses.insert(*id, address.clone());
                }
            }
            Change::Promote(id) => {
                if !members.learners.remove(id) {
                    return Err(ChangeRejection::NotLearner);
                }
                members.voters.insert(*id);
            }
            Change::Remove(id) => {
                if !members.voters.remove(id) && !members.learners.remove(id) {
                    return Err(ChangeRejection::NotMember);
                }
                if members.voters.is_empty() {
                    return Err(ChangeRejection::LastVoter);
                }
                members.addresses.remove(id);
            }
        }
        Ok(Membership { members: Arc::new(members) })
    }

    /// The rule that decides whether the members agree.
    pub(crate) fn quorum(&self) -> Quorum<'_> {
        Quorum::Majority(&self.members.voters)
    }

    /// The same membership with every id renamed by `node` (a bijection).
    /// A bijection on the member set gives the same set back, shared.
    pub fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId) -> Membership {
        let m = &self.members;
        let fixed = |set: &BTreeSet<NodeId>| set.iter().all(|&v| set.contains(&node(v)));
        if fixed(&m.voters) && fixed(&m.learners) && m.addresses.keys().all(|&k| node(k) == k) {
            return self.clone();
        }
        let members = Members {
            voters: m.voters.iter().map(|&v| node(v)).collect(),
            learners: m.learners.iter().map(|&v| node(v)).collect(),
            addresses: m.addresses.iter().map(|(&k, a)| (node(k), a.clone())).collect(),
        };
        Membership { members: Arc::new(members) }
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters {:?}", self.members.voters)?;
        if !self.members.learners.is_empty() {
            write!(f, " learners {:?}", self.members.learners)?;
        }
        Ok(())
    }
}

/// The memberships a node must know: the one in force at its latest
/// snapshot (or the bootstrap one), and the one of every configuration
/// entry after it, in log order. The last is the one in effect. A
/// truncation falls back on the ones before it; a snapshot forgets what it
/// covers. Never empty.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Configs {
    /// (index of the entry, or of the snapshot, or 0 for the bootstrap; membership).
    history: Vec<(LogIndex, Membership)>,
}

impl Configs {
    pub(crate) fn new(index: LogIndex, membership: Membership) -> Configs {
        Configs { history: vec![(index, membership)] }
    }

    /// `base` and the configuration entries of `log` after it.
    pub(crate) fn of_log(base: (LogIndex, Membership), log: &Log) -> Configs {
        let mut configs = Configs::new(base.0, base.1);
        let from = base.0.next().max(log.first_index());
        configs.scan(from, log);
        configs
    }

    /// Records the configuration entries of `log` from `from` on.
    pub(crate) fn scan(&mut self, from: LogIndex, log: &Log) {
        if from > log.last_index() {
            return;
        }
        for (i, e) in log.slice(from, log.last_index()).iter().enumerate() {
            if let Payload::Membership(m) = &e.payload {
                self.appended(LogIndex(from.0 + i as u64), m.clone());
            }
        }
    }

    /// The membership in effect: the latest in the log.
    pub(crate) fn current(&self) -> &Membership {
        &self.history.last().expect("never empty").1
    }

    /// The index of the entry that set the membership in effect (that of
    /// the snapshot, or 0, when no entry since did).
    pub(crate) fn current_index(&self) -> LogIndex {
        self.history.last().expect("never empty").0
    }

    /// The membership in force before the log's configuration entries: at
    /// the snapshot, or the bootstrap one. This is what
    /// [`Persist::Membership`] stores.
    pub(crate) fn base(&self) -> &Membership {
        &self.history[0].1
    }

    /// The membership in force at `index` (at or after the snapshot).
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        let i = self.history.iter().rposition(|(at, _)| *at <= index).unwrap_or(0);
        &self.history[i].1
    }

    /// A configuration entry at `index` was appended.
    pub(crate) fn appended(&mut self, index: LogIndex, membership: Membership) {
        debug_assert!(index > self.current_index(), "configuration entries out of order");
        self.history.push((index, membership));
    }

    /// The log was truncated from `from`: entries there and after are gone.
    /// (A truncation never reaches the snapshot, so the first stays.)
    pub(crate) fn truncated(&mut self, from: LogIndex) {
        while self.history.len() > 1 && self.current_index() >= from {
            self.history.pop();
        }
    }

    /// A snapshot covers every entry through `index`: the memberships
    /// before the one in force there are of no further use.
    pub(crate) fn forget_before(&mut self, index: LogIndex) {
        let keep_from = self.history.iter().rposition(|(i, _)| *i <= index).unwrap_or(0);
        self.history.drain(..keep_from);
    }

    /// Every id renamed (see [`Membership::renamed`]).
    pub(crate) fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId) -> Configs {
        Configs { history: self.history.iter().map(|(i, m)| (*i, m.renamed(node))).collect() }
    }
}

impl fmt::Debug for Configs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.current())?;
        if self.history.len() > 1 {
            write!(f, " (from {})", self.current_index())?;
        }
        Ok(())
    }
}

impl State {
    /// An operator asks this node for a membership change
    /// (`Input::ChangeMembership`): refused unless this node leads, has
    /// committed an entry of its term, has no change uncommitted and no
    /// transfer under way, and the change is valid; otherwise appended as
    /// a configuration entry, in effect at once, and sent.
    pub(crate) fn change_membership(&mut self, config: &Config, id: ProposalId, change: Change, out: &mut Vec<Output>) {
        let term = self.hard.term;
        let own_term_committed = self.log.term_at(self.commit_index) == Some(term);
        let pending = self.configs.current_index() > self.commit_index;
        let refused = if !self.is_leader() {
            Err(ChangeRejection::NotLeader { leader_hint: self.leader })
        } else if let Some(target) = self.transfer_target() {
            Err(ChangeRejection::Transferring { target })
        } else if !own_term_committed && !config.breaks(Fault::ChangeBeforeTermCommit) {
            Err(ChangeRejection::LeaderNotReady)
        } else if pending {
            Err(ChangeRejection::ChangeInProgress { index: self.configs.current_index() })
        } else {
            self.configs.current().changed(&change)
        };
        let membership = match refused {
            Ok(m) => m,
            Err(reason) => {
                out.push(Output::ChangeRejected { id, reason });
                return;
            }
        };
        let index = self.log.last_index().next();
        self.append_own(config, vec![Entry { term, payload: Payload::Membership(membership) }], out);
        out.push(Output::ChangeAccepted { id, term, index });
        self.broadcast_append(config, out);
        self.maybe_commit(config, out);
    }

    /// Records the configuration entries among those just appended at
    /// `first`; a leader starts or stops replicating to the members added
    /// or removed.
    pub(crate) fn note_configs(&mut self, config: &Config, first: LogIndex) {
        let before = self.configs.current_index();
        self.configs.scan(first, &self.log);
        if self.configs.current_index() != before {
            self.sync_progress(config);
        }
    }

    /// Truncates the log from `from` (a conflict with the leader's),
    /// falling back on the membership before any entry cut.
    pub(crate) fn truncate_log(&mut self, from: LogIndex, out: &mut Vec<Output>) {
        self.log.truncate_from(from);
        self.configs.truncated(from);
        self.persist(Persist::Truncate { from }, out);
    }

    /// A leader's progress map follows the membership in effect: a new
    /// member is probed from the entry that added it; a removed one is
    /// forgotten.
    fn sync_progress(&mut self, config: &Config) {
        let me = config.id();
        let next = self.configs.current_index().max(LogIndex(1));
        let members: Vec<NodeId> = self.configs.current().peers(me).collect();
        let Role::Leader { progress, .. } = &mut self.role else { return };
        progress.retain(|id, _| members.contains(id));
        for id in members {
            progress.entry(id).or_insert_with(|| Progress::new(next));
        }
    }

    /// A leader that is no voter of the membership in effect, once the
    /// entry that made it so is committed, steps down (thesis §4.2.2): it
    /// kept replicating, without counting itself, until then.
    ///
    /// The step may have sent already (the answer that committed the entry
    /// is followed by more appends), so the persist that stepping down may
    /// need (the flush of the leader's background writes, see
    /// `become_follower`) goes before the first send of the step, from
    /// `first_output` on: every persist of a step precedes every send. The
    /// sends it moves ahead of only wait for it.
    pub(crate) fn step_down_if_removed(&mut self, config: &Config, first_output: usize, out: &mut Vec<Output>) {
        let removed = !self.configs.current().is_voter(config.id());
        if !(self.is_leader() && removed && self.configs.current_index() <= self.commit_index) {
            return;
        }
        let mut outputs = Vec::new();
        self.become_follower(config, self.hard.term, None, &mut outputs);
        let first_send = out[first_output..].iter().position(|o| matches!(o, Output::Send { .. }));
        let at = first_send.map_or(out.len(), |k| first_output + k);
        let (persists, rest): (Vec<Output>, Vec<Output>) =
            outputs.into_iter().partition(|o| matches!(o, Output::Persist(_) | Output::PersistAsync { .. }));
        out.splice(at..at, persists);
        out.extend(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn refuses_empty_and_duplicate_member_lists() {
        assert_eq!(Membership::new([]), Err(MembershipError::NoVoters));
        assert_eq!(
            Membership::new([NodeId(1), NodeId(2), NodeId(1)]),
            Err(MembershipError::DuplicateMember { id: NodeId(1) })
        );
        assert_eq!(
            Membership::with_learners(ids(&[1, 2]), ids(&[2])),
            Err(MembershipError::DuplicateMember { id: NodeId(2) })
        );
        let m = Membership::with_learners(ids(&[3, 1]), ids(&[4])).unwrap();
        assert_eq!(m.peers(NodeId(1)).collect::<Vec<_>>(), ids(&[3, 4]));
        assert_eq!(m.voting_peers(NodeId(1)).collect::<Vec<_>>(), ids(&[3]));
        assert!(m.is_voter(NodeId(3)) && m.is_learner(NodeId(4)) && !m.contains(NodeId(2)));
    }

    #[test]
    fn s4_1_changes_add_promote_and_remove_one_server() {
        let m = Membership::new(ids(&[1, 2, 3])).unwrap();
        let add = Change::AddLearner { id: NodeId(4), address: "h4:1".into() };
        let m = m.changed(&add).unwrap();
        assert!(m.is_learner(NodeId(4)) && m.address(NodeId(4)) == Some("h4:1"));
        assert_eq!(m.changed(&add), Err(ChangeRejection::AlreadyMember));
        assert_eq!(m.changed(&Change::Promote(NodeId(1))), Err(ChangeRejection::NotLearner));
        let m = m.changed(&Change::Promote(NodeId(4))).unwrap();
        assert_eq!(m.voters().iter().copied().collect::<Vec<_>>(), ids(&[1, 2, 3, 4]));
        let m = m.changed(&Change::Remove(NodeId(4))).unwrap();
        assert!(!m.contains(NodeId(4)) && m.address(NodeId(4)).is_none());
        assert_eq!(m.changed(&Change::Remove(NodeId(9))), Err(ChangeRejection::NotMember));
        let one = Membership::new(ids(&[1])).unwrap();
        assert_eq!(one.changed(&Change::Remove(NodeId(1))), Err(ChangeRejection::LastVoter));
    }

    #[test]
    fn s4_1_a_truncation_falls_back_and_a_snapshot_forgets() {
        let m = |v: &[u64]| Membership::new(ids(v)).unwrap();
        let mut c = Configs::new(LogIndex(0), m(&[1, 2, 3]));
        c.appended(LogIndex(3), m(&[1, 2, 3, 4]));
        c.appended(LogIndex(5), m(&[1, 2, 4]));
        assert_eq!(c.current(), &m(&[1, 2, 4]));
        assert_eq!(c.at(LogIndex(4)), &m(&[1, 2, 3, 4]));
        assert_eq!(c.at(LogIndex(2)), &m(&[1, 2, 3]));
        c.truncated(LogIndex(5));
        assert_eq!((c.current_index(), c.current()), (LogIndex(3), &m(&[1, 2, 3, 4])));
        c.forget_before(LogIndex(4));
        assert_eq!(c.at(LogIndex(0)), &m(&[1, 2, 3, 4]), "what a snapshot covers is forgotten");
        c.truncated(LogIndex(1));
        assert_eq!(c.current(), &m(&[1, 2, 3, 4]), "the snapshot's membership is never cut");
    }
}
