//! A node's state and the step function's dispatch: the message's term is
//! settled first, once, for every message and role; then the message goes
//! to the handler of the node's role. Every role change goes through
//! `become_follower`, `become_candidate` or `become_leader`, and each of
//! them through one `reset`.
//!
//! The rules themselves live in `election.rs` (§5.2, §5.4.1),
//! `replication.rs` (§5.3, §5.4.2), `read.rs` (ReadIndex), `proposals.rs`
//! (client requests) and `delivery.rs` (committed entries to the
//! application).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Dropped, Input, Output, Persist, Proposal, Timer};
use crate::log::Log;
use crate::membership::{Configs, Membership};
use crate::message::Message;
use crate::progress::Progress;
use crate::read::Reads;
use crate::snapshot::SnapshotMeta;
use crate::store::MemoryStore;
use crate::types::{Entry, HardState, LogIndex, NodeId, Term};
use core::fmt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Everything one node knows: its durable part (hard state, membership and
/// log) and its volatile part (role, leader, commit and delivery progress,
/// queued proposals, reads). Two equal histories give equal states.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct State {
    pub(crate) hard: HardState,
    /// The membership in effect (the latest in the log) and those it may
    /// fall back on.
    pub(crate) configs: Configs,
    /// The latest snapshot recorded (taken here or installed from a leader).
    pub(crate) snapshot: Option<SnapshotMeta>,
    pub(crate) log: Log,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) commit_index: LogIndex,
    /// The last index handed to the application in a `Deliver`.
    pub(crate) delivered_index: LogIndex,
    /// The last index the application reported applied (`Input::Applied`).
    pub(crate) applied_index: LogIndex,
    /// The payload bytes delivered and not yet reported applied.
    pub(crate) unapplied_bytes: u64,
    pub(crate) pending: Vec<Proposal>,
    pub(crate) reads: Reads,
    /// The latest term whose hard state is known durable: a `Persist` was
    /// issued in it, or the driver reported a `PersistAsync` of it.
    pub(crate) durable_term: Term,
    /// The log is known durable through this index (the same sources).
    /// Below the last index only at a leader or a candidate whose
    /// background writes are still running, or at a node that stepped down
    /// from leading without a term change (check-quorum).
    pub(crate) durable_index: LogIndex,
}

/// A node's role, with the bookkeeping only that role needs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows the leader of its term, if any.
    Follower,
    /// Its election timer fired and pre-vote is on: asks whether it could
    /// win an election, without changing its term or vote (thesis §9.6).
    /// It still knows the leader it followed, if any, and forwards to it.
    PreCandidate {
        /// The voters that would vote for it (itself included).
        votes: BTreeSet<NodeId>,
    },
    /// Asks for votes; holds the voters that granted theirs. Its own vote
    /// counts once it is durable (`Input::Persisted`), and it wins only
    /// with its own vote among a majority: a candidate that won before its
    /// vote was durable could crash, forget its term, stand again in the
    /// same term and win it a second time with another log.
    Candidate {
        /// The members that granted their vote this term (itself once its
        /// vote is durable).
        votes: BTreeSet<NodeId>,
    },
    /// Replicates its log; holds its view of each follower.
    Leader {
        /// Per follower: what is known to match and what to send next.
        progress: BTreeMap<NodeId, Progress>,
        /// The follower leadership is being handed to, if a transfer is
        /// under way (thesis §3.10).
        transfer: Option<NodeId>,
    },
}

/// The role without its bookkeeping, for status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoleKind {
    /// See [`Role::Follower`].
    Follower,
    /// See [`Role::PreCandidate`].
    PreCandidate,
    /// See [`Role::Candidate`].
    Candidate,
    /// See [`Role::Leader`].
    Leader,
}

/// Why a persisted state could not be recovered. Each variant means the
/// storage handed back something a correct node never wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverError {
    /// A log entry's term is below the one before it, or above the stored
    /// current term.
    LogTermsOutOfOrder {
        /// The index of the offending entry.
        index: LogIndex,
    },
    /// Nothing says who the members are: the store never received the
    /// membership that `State::new` persists first.
    NoMembership,
    /// The stored current term is beyond what a node accepts
    /// ([`Term::MAX_ACCEPTED`]).
    TermOutOfRange {
        /// The term stored.
        term: Term,
    },
    /// The log is compacted past the snapshot recorded (or without one):
    /// entries were removed that nothing holds any more.
    CompactedPastSnapshot {
        /// The log's compaction point.
        compacted: LogIndex,
        /// The snapshot's index (0: none).
        snapshot: LogIndex,
    },
    /// The application says it applied more than the log holds.
    AppliedBeyondLog {
        /// The applied index given.
        applied: LogIndex,
        /// The last index in the log.
        last_index: LogIndex,
    },
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::LogTermsOutOfOrder { index } => {
                write!(f, "log entry {index} has a term below its predecessor's or above the stored current term")
            }
            RecoverError::NoMembership => write!(f, "the store holds no membership"),
            RecoverError::TermOutOfRange { term } => {
                write!(f, "the stored term {term} is above the highest a node accepts")
            }
            RecoverError::CompactedPastSnapshot { compacted, snapshot } => {
                write!(f, "the log is compacted through {compacted} but the snapshot recorded ends at {snapshot}")
            }
            RecoverError::AppliedBeyondLog { applied, last_index } => {
                write!(f, "the application reports entries applied up to {applied} but the log ends at {last_index}")
            }
        }
    }
}

impl std::error::Error for RecoverError {}

impl State {
    /// A brand-new node of a cluster whose members are `membership`: term 0,
    /// no vote, empty log. The outputs persist the membership (the first
    /// record of the node's store) and arm its election timer.
    pub fn new(config: &Config, membership: Membership) -> (State, Vec<Output>) {
        let state = State {
            hard: HardState::default(),
            configs: Configs::new(LogIndex(0), membership),
            snapshot: None,
            log: Log::new(),
            role: Role::Follower,
            leader: None,
            commit_index: LogIndex(0),
            delivered_index: LogIndex(0),
            applied_index: LogIndex(0),
            unapplied_bytes: 0,
            pending: Vec::new(),
            reads: Reads::default(),
            durable_term: Term(0),
            durable_index: LogIndex(0),
        };
        let outputs =
            vec![Output::Persist(Persist::Membership(state.membership().clone())), state.election_timer(config)];
        (state, outputs)
    }

    /// A node restarted from what it persisted (the `Persist` outputs, as a
    /// [`MemoryStore`] applies them): its latest snapshot plus the log after
    /// the compaction point. `applied` is the last index the application
    /// has already applied and does not want delivered again (0 to have
    /// every committed entry delivered anew). When the store holds a
    /// snapshot beyond `applied`, the first output is
    /// [`Output::RestoreSnapshot`]: the application loads it, and delivery
    /// resumes after it. The node starts as a follower knowing no leader.
    pub fn recover(
        config: &Config,
        store: MemoryStore,
        applied: LogIndex,
    ) -> Result<(State, Vec<Output>), RecoverError> {
        let MemoryStore { hard, membership, snapshot, log } = store;
        let membership = membership.ok_or(RecoverError::NoMembership)?;
        if hard.term > Term::MAX_ACCEPTED {
            return Err(RecoverError::TermOutOfRange { term: hard.term });
        }
        let mut previous = Term(0);
        for (i, entry) in log.entries().iter().enumerate() {
            if entry.term < previous || entry.term > hard.term {
                let index = LogIndex(log.first_index().0 + i as u64);
                return Err(RecoverError::LogTermsOutOfOrder { index });
            }
            previous = entry.term;
        }
        let snapshot_index = snapshot.as_ref().map_or(LogIndex(0), |s| s.index);
        if log.compacted_index() > snapshot_index {
            return Err(RecoverError::CompactedPastSnapshot {
                compacted: log.compacted_index(),
                snapshot: snapshot_index,
            });
        }
        let mut outputs = Vec::new();
        let mut log = log;
        if let Some(s) = snapshot.as_ref().filter(|s| log.term_at(s.index) != Some(s.term)) {
            // A crash cut short the install of a leader's snapshot that this
            // log does not match (Figure 13, rule 7): its persists after the
            // `Snapshot` are done now, so that the log starts after it.
            if !log.is_empty() {
                let from = log.first_index();
                log.truncate_from(from);
                outputs.push(Output::Persist(Persist::Truncate { from }));
            }
            log.compact_through(s.index, s.term);
            outputs.push(Output::Persist(Persist::Compact { through: s.index, term: s.term }));
        }
        if applied > log.last_index() {
            return Err(RecoverError::AppliedBeyondLog { applied, last_index: log.last_index() });
        }
        if let Some(s) = snapshot.as_ref().filter(|s| s.index > applied) {
            outputs.push(Output::RestoreSnapshot(s.clone()));
        }
        let applied = applied.max(snapshot_index);
        let (durable_term, durable_index) = (hard.term, log.last_index());
        let base = match &snapshot {
            Some(s) => (s.index, s.membership.clone()),
            None => (LogIndex(0), membership),
        };
        let configs = Configs::of_log(base, &log);
        let state = State {
            hard,
            configs,
            snapshot,
            log,
            role: Role::Follower,
            leader: None,
            commit_index: applied,
            delivered_index: applied,
            applied_index: applied,
            unapplied_bytes: 0,
            pending: Vec::new(),
            reads: Reads::default(),
            durable_term,
            durable_index,
        };
        outputs.push(state.election_timer(config));
        Ok((state, outputs))
    }

    /// Handles one input, appending what the driver must do to `out`, in
    /// order. See the crate documentation for the contract.
    pub fn step(&mut self, config: &Config, input: Input, out: &mut Vec<Output>) {
        let first_output = out.len();
        match input {
            Input::Receive { from, message } => self.receive(config, from, message, out),
            Input::Timeout(timer) => self.timeout(config, timer, out),
            Input::Propose(proposals) => self.propose(config, proposals, out),
            Input::Read(ids) => self.read(config, ids, out),
            Input::Applied(index) => self.on_applied(config, index, out),
            Input::TransferLeadership(target) => self.transfer_leadership(config, target, out),
            Input::SnapshotTaken(index) => self.on_snapshot_taken(config, index, out),
            Input::ChangeMembership { id, change } => self.change_membership(config, id, change, out),
            Input::Persisted { term, index } => self.on_persisted(config, term, index, out),
        }
        // A persist that made a candidate's vote durable (a snapshot taken
        // meanwhile) counts the vote as its report would.
        self.count_own_vote_if_durable(config, out);
        // A leader whose removal has committed hands over (thesis §4.2.2).
        self.step_down_if_removed(config, first_output, out);
        // Messages that a role change or a new leader made due are sent
        // last, so that every persist of this step precedes every send.
        self.send_refused_reads(config, out);
        if let Some(leader) = self.leader.filter(|&l| l != config.id()) {
            if !self.pending.is_empty() {
                let pending = core::mem::take(&mut self.pending);
                self.forward(config, leader, pending, out);
            }
        }
        if !config.has_fault() {
            // Cheap enough for every step of a release build: a node whose
            // invariant breaks stops rather than go on misbehaving.
            self.check_invariants(config);
            check_persist_before_send(&out[first_output..]);
            #[cfg(debug_assertions)]
            self.check_invariants_fully(config);
        }
    }

    /// The same state with every node id renamed by `node` and every
    /// command's bytes replaced by `command(bytes)`. For a model checker's
    /// symmetry reduction: when nodes are interchangeable, a state and its
    /// renaming behave alike, so one of them is explored. `node` must be a
    /// bijection on the member set; `command` lets the caller rename
    /// commands that carry node ids of their own.
    pub fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId, command: &dyn Fn(&[u8]) -> Vec<u8>) -> State {
        let role = match &self.role {
            Role::Follower => Role::Follower,
            Role::PreCandidate { votes } => Role::PreCandidate { votes: votes.iter().map(|&v| node(v)).collect() },
            Role::Candidate { votes } => Role::Candidate { votes: votes.iter().map(|&v| node(v)).collect() },
            Role::Leader { progress, transfer } => Role::Leader {
                progress: progress.iter().map(|(&id, &p)| (node(id), p)).collect(),
                transfer: transfer.map(node),
            },
        };
        State {
            hard: HardState { term: self.hard.term, voted_for: self.hard.voted_for.map(node) },
            configs: self.configs.renamed(node),
            snapshot: self
                .snapshot
                .as_ref()
                .map(|s| SnapshotMeta { membership: s.membership.renamed(node), ..s.clone() }),
            log: self.log.renamed(node, command),
            role,
            leader: self.leader.map(node),
            commit_index: self.commit_index,
            delivered_index: self.delivered_index,
            applied_index: self.applied_index,
            unapplied_bytes: self.unapplied_bytes,
            pending: self.pending.iter().map(|p| Proposal { id: p.id, data: command(&p.data) }).collect(),
            reads: self.reads.renamed(node),
            durable_term: self.durable_term,
            durable_index: self.durable_index,
        }
    }

    /// The current term and vote.
    pub fn hard_state(&self) -> HardState {
        self.hard
    }
    /// The current term.
    pub fn term(&self) -> Term {
        self.hard.term
    }
    /// The members of the cluster, as this node knows them.
    pub fn membership(&self) -> &Membership {
        self.configs.current()
    }
    /// The membership in force before the log's configuration entries (at
    /// the snapshot, or the one the cluster was bootstrapped with): what
    /// [`Persist::Membership`] stores.
    pub fn base_membership(&self) -> &Membership {
        self.configs.base()
    }
    /// The membership in force at the commit index: the one above, unless
    /// a change is still uncommitted.
    pub fn committed_membership(&self) -> &Membership {
        self.configs.at(self.commit_index)
    }
    /// The latest snapshot this node recorded, if any.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }
    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// The role, with its bookkeeping.
    pub fn role(&self) -> &Role {
        &self.role
    }
    /// The role, without its bookkeeping.
    pub fn role_kind(&self) -> RoleKind {
        match self.role {
            Role::Follower => RoleKind::Follower,
            Role::PreCandidate { .. } => RoleKind::PreCandidate,
            Role::Candidate { .. } => RoleKind::Candidate,
            Role::Leader { .. } => RoleKind::Leader,
        }
    }
    /// Whether this node is the leader of its term.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }
    /// The leader this node knows of in its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// The highest index known to be committed.
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }
    /// The highest index delivered to the application (or given as applied
    /// at recovery).
    pub fn delivered_index(&self) -> LogIndex {
        self.delivered_index
    }
    /// The highest index the application reported applied (or given as
    /// applied at recovery).
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }
    /// Proposals held until a leader is known.
    pub fn pending(&self) -> &[Proposal] {
        &self.pending
    }
    /// The read requests this node holds.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }
    /// Whether this node leads and replicates to `peer`.
    fn replicates_to(&self, peer: NodeId) -> bool {
        matches!(&self.role, Role::Leader { progress, .. } if progress.contains_key(&peer))
    }
    /// The index through which this node's log is known durable: its last
    /// index, except while a leader's or a candidate's background writes
    /// run (see [`Output::PersistAsync`]).
    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }
    /// Whether this node's current term and vote are known durable (false
    /// only while a candidate's vote for itself is being written).
    pub fn hard_state_is_durable(&self) -> bool {
        self.durable_term == self.hard.term
    }

    /// The one dispatch for messages: the sender and the message's own
    /// claims are checked, then its term is settled, once, for every
    /// message and role (§5.1), then the handler of the message runs, with
    /// the role guards here rather than in each handler.
    fn receive(&mut self, config: &Config, from: NodeId, message: Message, out: &mut Vec<Output>) {
        // Requests are processed whatever this node's membership says
        // (thesis §4.1): a leader or candidate this node does not know of
        // yet may hold a configuration entry it has not received. Answers
        // to elections, appends and leadership checks come from members
        // only (a removed node may still answer).
        if from == config.id() || (message.is_response() && !self.configs.current().contains(from)) {
            out.push(Output::Dropped(Dropped::UnknownSender));
            return;
        }
        if let Err(reason) = validate(&message) {
            out.push(Output::Dropped(reason));
            return;
        }
        let term = message.term();
        if let Message::AppendEntries(m) = &message {
            // Only a broken leader asks to cut a committed entry (§5.4.3).
            // Refused before anything changes, its term included, so the
            // drop leaves no trace. (An append of an older term is answered
            // by rule 1 instead, and one of this term by its handler, after
            // the second-leader check.)
            if term > self.hard.term && self.conflicts_with_committed(config, m) {
                out.push(Output::Dropped(Dropped::OutOfRange));
                return;
            }
        }
        if term > self.hard.term {
            // §5.1: a higher term in any message makes this node a follower
            // of that term. An AppendEntries, a LeadershipCheck or a
            // TimeoutNow also names the leader.
            //
            // The exceptions, all here: a pre-vote request, and a granted
            // pre-vote's answer, carry a term nobody adopted (thesis §9.6);
            // a node that hears from a live leader ignores a vote request
            // of a higher term unless a transfer sent it (thesis §6.2).
            match &message {
                Message::PreVote(_) if !config.breaks(Fault::PreVoteAdoptsTerm) => {}
                Message::PreVoteResponse(m) if m.granted => {}
                Message::RequestVote(m) if !m.transfer && self.in_leader_lease(config) => {
                    out.push(Output::Dropped(Dropped::InLease));
                    return;
                }
                _ => {
                    let step_down = !(self.is_leader() && config.breaks(Fault::NoStepDownOnHigherTerm));
                    if step_down {
                        let names_leader = matches!(
                            message,
                            Message::AppendEntries(_)
                                | Message::LeadershipCheck(_)
                                | Message::TimeoutNow(_)
                                | Message::InstallSnapshot(_)
                        );
                        self.become_follower(config, term, names_leader.then_some(from), out);
                        // An answer that carried a newer term has done its
                        // work: this node is now a follower of that term,
                        // which expects no answers. Not reported as
                        // dropped: it changed the state.
                        if message.is_response() {
                            return;
                        }
                    }
                }
            }
        } else if term < self.hard.term && message.is_term_checked() && !accepts_stale(config, &message) {
            self.refuse_stale(from, message, out);
            return;
        }
        self.dispatch(config, from, message, out);
    }

    /// Hands a message whose term is settled to its handler, if the node's
    /// role takes it. Client traffic (forwarded proposals and read index
    /// requests, and their answers) is not term-checked: its term only
    /// says what the sender knew, and any role answers it.
    fn dispatch(&mut self, config: &Config, from: NodeId, message: Message, out: &mut Vec<Output>) {
        let is_leader = self.is_leader();
        let other_leader = self.leader.is_some_and(|l| l != from);
        match message {
            Message::RequestVote(m) => self.on_request_vote(config, from, m, out),
            Message::RequestVoteResponse(m) if matches!(self.role, Role::Candidate { .. }) => {
                self.on_vote_response(config, from, m, out)
            }
            Message::PreVote(m) => self.on_pre_vote(from, m, out),
            Message::PreVoteResponse(m) if matches!(self.role, Role::PreCandidate { .. }) => {
                self.on_pre_vote_response(config, from, m, out)
            }
            // Only the leader of this term may hand its leadership over.
            Message::TimeoutNow(m) if !is_leader && self.leader == Some(from) => self.on_timeout_now(config, m, out),
            Message::TimeoutNow(_) => out.push(Output::Dropped(Dropped::SecondLeader)),
            // One leader per term (§5.2): an append or a leadership check of
            // this term from anyone but the leader already known for it is
            // distrusted, by a leader and by a follower alike.
            Message::AppendEntries(_) | Message::LeadershipCheck(_) | Message::InstallSnapshot(_)
                if is_leader || other_leader =>
            {
                out.push(Output::Dropped(Dropped::SecondLeader))
            }
            Message::AppendEntries(m) => self.on_append_entries(config, from, m, out),
            Message::InstallSnapshot(m) => self.on_install_snapshot(config, from, m, out),
            Message::LeadershipCheck(m) => self.on_leadership_check(config, from, m, out),
            // A leader takes answers from the members it replicates to only
            // (one it removed may still answer).
            Message::AppendEntriesResponse(m) if self.replicates_to(from) => {
                self.on_append_response(config, from, m, out)
            }
            Message::LeadershipCheckResponse(m) if self.replicates_to(from) => {
                self.on_leadership_check_response(config, from, m, out)
            }
            // An answer to a role this node no longer has.
            Message::RequestVoteResponse(_)
            | Message::AppendEntriesResponse(_)
            | Message::LeadershipCheckResponse(_)
            | Message::PreVoteResponse(_) => out.push(Output::Dropped(Dropped::StaleResponse)),
            Message::Forward(m) => self.on_forward(config, from, m, out),
            Message::ForwardResponse(m) => self.on_forward_response(m, out),
            Message::ReadIndexRequest(m) => self.on_read_index_request(config, from, m, out),
            Message::ReadIndexResponse(m) => self.on_read_index_response(config, m, out),
        }
    }

    /// §5.1: a request of an older term is refused with this node's term,
    /// which tells the sender to step down; an answer of an older term is
    /// dropped.
    fn refuse_stale(&mut self, from: NodeId, message: Message, out: &mut Vec<Output>) {
        match message {
            Message::RequestVote(_) => self.reply_vote(from, false, out),
            // Figure 2, AppendEntries receiver rule 1.
            Message::AppendEntries(m) => self.refuse_append(from, m.prev_log_index, out),
            Message::InstallSnapshot(m) => self.refuse_append(from, m.snapshot.index, out),
            Message::LeadershipCheck(m) => self.reply_leadership_check(from, m.round, out),
            // A pre-vote of an older term is refused with this node's term:
            // dropping it could leave a node with a longer log but an older
            // term unable ever to win (etcd issues 8243, 9586).
            Message::PreVote(m) => self.reply_pre_vote(from, m.term, false, out),
            _ => out.push(Output::Dropped(Dropped::StaleResponse)),
        }
    }

    /// Handlers of term-checked messages run only with the message's term
    /// settled: it is the node's own (unless a fault switch broke the
    /// settling on purpose).
    pub(crate) fn debug_assert_current_term(&self, config: &Config, term: Term) {
        debug_assert!(config.has_fault() || term == self.hard.term, "a handler got term {term} in {}", self.hard.term);
    }

    fn timeout(&mut self, config: &Config, timer: Timer, out: &mut Vec<Output>) {
        let voter = self.configs.current().is_voter(config.id());
        match (timer, &self.role) {
            (Timer::Election, Role::Follower | Role::PreCandidate { .. } | Role::Candidate { .. }) if voter => {
                if config.pre_vote() {
                    self.start_pre_vote(config, out)
                } else {
                    self.start_election(config, false, out)
                }
            }
            (Timer::Heartbeat, Role::Leader { .. }) => self.heartbeat(config, out),
            (Timer::CheckQuorum, Role::Leader { .. }) => self.check_quorum(config, out),
            (Timer::Transfer, Role::Leader { transfer: Some(_), .. }) => self.abandon_transfer(),
            _ => out.push(Output::Dropped(Dropped::StaleTimer)),
        }
    }

    /// Check-quorum's lease (thesis §6.2): this node leads, or follows a
    /// leader it heard from within an election timeout (its election timer
    /// has not fired since: that would have made it a pre-candidate or a
    /// candidate).
    fn in_leader_lease(&self, config: &Config) -> bool {
        config.check_quorum() && self.hears_from_live_leader()
    }

    /// Clears what belongs to the role this node is leaving, and adopts
    /// `term` if it is newer (clearing the vote, and persisting that before
    /// anything is sent). Every role change goes through here.
    fn reset(&mut self, config: &Config, term: Term, out: &mut Vec<Output>) {
        if term > self.hard.term {
            self.hard = HardState { term, voted_for: None };
            if !config.breaks(Fault::TermNotPersisted) {
                self.persist(Persist::HardState(self.hard), out);
            }
        }
        // A leader's reads in flight are refused: their origins retry with
        // whoever leads next. (A leadership transfer target will be cleared
        // here too.)
        if self.is_leader() {
            self.reads.abandon_leader_part();
        }
    }

    /// Becomes a follower of `term` (adopting it if newer), knowing `leader`
    /// if the message that caused it named one. Arms the election timer if
    /// this node was leader (it had none running).
    pub(crate) fn become_follower(
        &mut self,
        config: &Config,
        term: Term,
        leader: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let was_leader = self.is_leader();
        let was_transferring = matches!(self.role, Role::Leader { transfer: Some(_), .. });
        let same_term = term == self.hard.term;
        self.reset(config, term, out);
        if was_leader {
            out.push(Output::CancelTimer(Timer::Heartbeat));
            if config.check_quorum() {
                out.push(Output::CancelTimer(Timer::CheckQuorum));
            }
            if was_transferring {
                out.push(Output::CancelTimer(Timer::Transfer));
            }
            out.push(self.election_timer(config));
        }
        // A leader or a candidate that steps down within its term may still
        // have writes in the background. From now on its answers report its
        // state (an acknowledgement counts its log), so that state is made
        // durable first: the write below waits for every earlier one. (A
        // new term's persist in `reset` did that already.)
        let writing = self.durable_term != self.hard.term || self.durable_index < self.log.last_index();
        if same_term && writing {
            self.persist(Persist::HardState(self.hard), out);
        }
        self.role = Role::Follower;
        self.set_leader(config, leader, out);
    }

    /// Thesis §9.6: becomes a pre-candidate. Its term, vote and the leader it
    /// knew are kept (a pre-candidate that forgot its leader could not
    /// forward to it, etcd PR 8334, raft-rs PR 84); only the role changes.
    pub(crate) fn become_pre_candidate(&mut self, config: &Config, out: &mut Vec<Output>) {
        if config.breaks(Fault::PreCandidateBumpsTerm) {
            self.hard = HardState { term: self.hard.term.next(), voted_for: None };
            self.persist(Persist::HardState(self.hard), out);
        }
        self.reset(config, self.hard.term, out);
        self.role = Role::PreCandidate { votes: BTreeSet::from([config.id()]) };
    }

    /// §5.2: becomes a candidate of the next term, voting for itself. The
    /// new term and vote are one record, written in the background while
    /// the vote requests go out (thesis §10.2.1); its own vote counts once
    /// the driver reports the record durable.
    pub(crate) fn become_candidate(&mut self, config: &Config, out: &mut Vec<Output>) {
        let me = config.id();
        let term = if config.breaks(Fault::ElectionKeepsTerm) && matches!(self.role, Role::PreCandidate { .. }) {
            self.hard.term
        } else {
            self.hard.term.next()
        };
        self.hard = HardState { term, voted_for: Some(me) };
        let index = self.log.last_index();
        out.push(Output::PersistAsync { persist: Persist::HardState(self.hard), term, index });
        self.reset(config, self.hard.term, out);
        self.role = Role::Candidate { votes: BTreeSet::new() };
        self.set_leader(config, None, out);
    }

    /// §5.2, §5.4.2, §8: becomes leader of the current term: every follower
    /// starts in probe mode just past this node's log; a no-op of the new
    /// term is appended (so that earlier entries can commit, Figure 8), and
    /// the proposals held are appended after it; the election timer gives
    /// way to the heartbeat. The caller then sends the appends.
    pub(crate) fn become_leader(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.reset(config, self.hard.term, out);
        let next_index = self.log.last_index().next();
        let progress: BTreeMap<NodeId, Progress> =
            self.configs.current().peers(config.id()).map(|p| (p, Progress::new(next_index))).collect();
        self.role = Role::Leader { progress, transfer: None };
        let pending = core::mem::take(&mut self.pending);
        self.append_own(config, vec![Entry::noop(self.hard.term)], out);
        self.append_proposals(config, pending, out);
        out.push(Output::CancelTimer(Timer::Election));
        self.set_leader(config, Some(config.id()), out);
        let hb = config.heartbeat_interval();
        out.push(Output::SetTimer { timer: Timer::Heartbeat, min: hb, max: hb });
        if config.check_quorum() {
            out.push(self.check_quorum_timer(config));
        }
    }

    /// Records the leader of the current term and reports a change. A
    /// follower's reads asked of another leader are refused: it may never
    /// answer.
    pub(crate) fn set_leader(&mut self, config: &Config, leader: Option<NodeId>, out: &mut Vec<Output>) {
        if self.leader != leader {
            self.leader = leader;
            out.push(Output::LeaderChanged { leader, term: self.hard.term });
            self.refuse_reads_asked_elsewhere(config, out);
        }
    }

    pub(crate) fn election_timer(&self, config: &Config) -> Output {
        let (min, max) = config.election_timeout();
        Output::SetTimer { timer: Timer::Election, min, max }
    }

    /// Check-quorum's period, and a transfer's deadline: the minimum
    /// election timeout, so that a leader cut off from its majority steps
    /// down within two of them.
    pub(crate) fn check_quorum_timer(&self, config: &Config) -> Output {
        let (min, _) = config.election_timeout();
        Output::SetTimer { timer: Timer::CheckQuorum, min, max: min }
    }

    /// Appends entries to this node's own log and asks for them to be
    /// persisted: a follower's before anything later (its acknowledgement
    /// follows), a leader's in the background (thesis §10.2.1).
    pub(crate) fn append_own(&mut self, config: &Config, entries: Vec<Entry>, out: &mut Vec<Output>) {
        if entries.is_empty() {
            return;
        }
        let first = self.log.last_index().next();
        self.log.extend(entries.iter().cloned());
        self.note_configs(config, first);
        let persist = Persist::Append { first, entries };
        if self.is_leader() {
            let (term, index) = (self.hard.term, self.log.last_index());
            out.push(Output::PersistAsync { persist, term, index });
        } else {
            self.persist(persist, out);
        }
    }

    /// Asks for `persist` to be made durable before any later output. Once
    /// it is, so is everything before it: the hard state and the log as
    /// they stand are durable for every later output.
    pub(crate) fn persist(&mut self, persist: Persist, out: &mut Vec<Output>) {
        out.push(Output::Persist(persist));
        self.durable_term = self.hard.term;
        self.durable_index = self.log.last_index();
    }

    /// The driver reports background writes durable (`Input::Persisted`).
    /// A report of an older term changes nothing: its writes are covered by
    /// the persists of the term change, and its index may name an entry
    /// that a truncation has since replaced (etcd's append ABA race).
    fn on_persisted(&mut self, config: &Config, term: Term, index: LogIndex, out: &mut Vec<Output>) {
        if term != self.hard.term {
            return;
        }
        if index > self.log.last_index() {
            // In this term the log only grew since the write was asked
            // for, unless a leader truncated it (the write is covered by
            // the truncation's persist, and counts for nothing more).
            if matches!(self.role, Role::Candidate { .. } | Role::Leader { .. }) {
                out.push(Output::Dropped(Dropped::OutOfRange));
            }
            return;
        }
        self.durable_term = term;
        self.durable_index = self.durable_index.max(index);
        if self.is_leader() {
            self.maybe_commit(config, out);
        }
        self.deliver(config, out);
    }

    /// A candidate whose vote for itself is durable counts it, and leads if
    /// that makes a majority.
    fn count_own_vote_if_durable(&mut self, config: &Config, out: &mut Vec<Output>) {
        let durable = self.hard_state_is_durable();
        let Role::Candidate { votes } = &mut self.role else { return };
        if durable && votes.insert(config.id()) && self.configs.current().quorum().is_won(votes) {
            self.start_leading(config, out);
        }
    }

    /// Invariants cheap enough (O(1)) to check after every step of a
    /// release build.
    fn check_invariants(&self, config: &Config) {
        assert!(self.applied_index <= self.delivered_index, "applied past delivered");
        assert!(self.delivered_index <= self.commit_index, "delivered past commit");
        assert!(self.delivered_index <= self.durable_index, "delivered an entry not known durable here");
        assert!(self.durable_index <= self.log.last_index(), "durable past the log's end");
        assert!(self.durable_term <= self.hard.term, "durable term above the current term");
        assert!(self.commit_index <= self.log.last_index(), "commit past the log's end");
        assert!(self.log.last_term() <= self.hard.term, "log term above current term");
        let snapshot_index = self.snapshot.as_ref().map_or(LogIndex(0), |s| s.index);
        assert!(self.log.compacted_index() <= snapshot_index, "compacted past the snapshot");
        assert!(snapshot_index <= self.applied_index, "a snapshot of entries not applied");
        assert!(self.is_leader() || self.reads.leader_part_is_empty(), "a non-leader holds leader reads");
        assert!(self.pending.len() <= config.pending_proposals_max(), "pending queue over its bound");
        if let Some(l) = self.leader {
            assert!(l == config.id() || self.pending.is_empty(), "proposals held while a leader is known");
        }
        match &self.role {
            Role::Follower | Role::PreCandidate { .. } => {
                assert!(self.leader != Some(config.id()), "follower names itself leader")
            }
            Role::Candidate { votes } => {
                assert_eq!(self.hard.voted_for, Some(config.id()), "candidate did not vote for itself");
                assert!(self.leader.is_none(), "candidate knows a leader");
                let counted = votes.contains(&config.id());
                assert_eq!(counted, self.durable_term == self.hard.term, "candidate counts a vote not durable");
            }
            Role::Leader { .. } => {
                assert_eq!(self.hard.voted_for, Some(config.id()), "leader did not vote for itself");
                assert_eq!(self.durable_term, self.hard.term, "leader whose vote is not durable");
                assert_eq!(self.leader, Some(config.id()), "leader does not name itself");
                assert!(self.pending.is_empty(), "leader holds pending proposals");
            }
        }
    }

    /// Invariants that cost time in the number of peers or reads: debug
    /// builds only.
    #[cfg(debug_assertions)]
    fn check_invariants_fully(&self, config: &Config) {
        assert!(self.reads.applying_all_above(self.delivered_index), "a read ready to serve was held back");
        match &self.role {
            Role::Follower => {}
            Role::PreCandidate { votes } => {
                assert!(votes.contains(&config.id()), "pre-candidate did not count its own vote");
                assert!(!self.configs.current().quorum().is_won(votes), "pre-candidate holds a majority of votes");
            }
            Role::Candidate { votes } => {
                let won = votes.contains(&config.id()) && self.configs.current().quorum().is_won(votes);
                assert!(!won, "candidate holds a majority of votes, its own durable among them");
            }
            Role::Leader { progress, transfer } => {
                let me = config.id();
                let peers: BTreeSet<NodeId> = self.configs.current().peers(me).collect();
                assert!(progress.keys().copied().eq(peers), "progress is not the peer set");
                assert!(transfer.is_none_or(|t| progress.contains_key(&t)), "transfer to a non-peer");
                for p in progress.values() {
                    assert!(p.match_index() < p.next_index(), "match_index not below next_index");
                    assert!(p.next_index() <= self.log.last_index().next(), "next_index past the log's end");
                }
            }
        }
    }
}

/// Checks what a message claims against itself, before any state is
/// touched: a term too high to be incremented, entries whose terms go
/// backwards, precede `prev_log_term` or exceed the message's term, and
/// index arithmetic that would overflow.
fn validate(message: &Message) -> Result<(), Dropped> {
    if message.term() > Term::MAX_ACCEPTED {
        return Err(Dropped::OutOfRange);
    }
    match message {
        Message::AppendEntries(m) => {
            let mut previous = m.prev_log_term;
            for e in &m.entries {
                if e.term < previous || e.term > m.term {
                    return Err(Dropped::OutOfRange);
                }
                previous = e.term;
            }
            let end = m.prev_log_index.0.checked_add(m.entries.len() as u64);
            if m.prev_log_term > m.term || end.is_none_or(|end| end > LogIndex::MAX_ACCEPTED.0) {
                return Err(Dropped::OutOfRange);
            }
            Ok(())
        }
        Message::RequestVote(m) if m.last_log_term > m.term => Err(Dropped::OutOfRange),
        Message::PreVote(m) if m.last_log_term > m.term => Err(Dropped::OutOfRange),
        Message::InstallSnapshot(m) => {
            let s = &m.snapshot;
            let bad = s.term > m.term || s.index == LogIndex(0) || s.index > LogIndex::MAX_ACCEPTED;
            if bad {
                Err(Dropped::OutOfRange)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Whether a fault switch makes this node act on a message of an older
/// term as if it were current.
fn accepts_stale(config: &Config, message: &Message) -> bool {
    match message {
        Message::AppendEntries(_) => config.breaks(Fault::AcceptStaleAppend),
        Message::AppendEntriesResponse(_) => config.breaks(Fault::AcceptStaleAppendResponse),
        Message::RequestVoteResponse(_) => config.breaks(Fault::CountStaleVotes),
        _ => false,
    }
}

/// Persist-before-send, checked on every output list: once a `Send` is
/// out, no persist may follow that a previous send depends on. The core's
/// simplest way to honour this is to emit every persist of a step (either
/// kind) before its first send, which is what this checks. What a send
/// waits for is then read off the list: every `Persist` before it, and no
/// `PersistAsync`.
fn check_persist_before_send(outputs: &[Output]) {
    let first_send = outputs.iter().position(|o| matches!(o, Output::Send { .. }));
    if let Some(first_send) = first_send {
        assert!(
            !outputs[first_send..].iter().any(|o| matches!(o, Output::Persist(_) | Output::PersistAsync { .. })),
            "a Persist follows a Send in one output list: {outputs:?}"
        );
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match &self.role {
            Role::Follower => "F".to_string(),
            Role::PreCandidate { votes } => format!("P{:?}", votes),
            Role::Candidate { votes } => format!("C{:?}", votes),
            Role::Leader { progress, transfer } => {
                let p: Vec<String> = progress
                    .iter()
                    .map(|(id, p)| {
                        let active = if p.is_active() { "*" } else { "" };
                        format!("{id}:{}/{}{active}", p.match_index().0, p.next_index().0)
                    })
                    .collect();
                let transfer = transfer.map(|t| format!(" transfer to {t}")).unwrap_or_default();
                format!("L[{}]{transfer}", p.join(" "))
            }
        };
        write!(f, "{role} {:?} log {:?} commit {}", self.hard, self.log, self.commit_index.0)?;
        if let Some(s) = &self.snapshot {
            write!(f, " {s:?}")?;
        }
        if let Some(l) = self.leader {
            write!(f, " leader {l}")?;
        }
        if !self.pending.is_empty() {
            write!(f, " pending {}", self.pending.len())?;
        }
        if self.durable_term != self.hard.term {
            write!(f, " vote writing")?;
        }
        if self.durable_index < self.log.last_index() {
            write!(f, " durable {}", self.durable_index.0)?;
        }
        if !self.reads.is_empty() {
            write!(f, " {:?}", self.reads)?;
        }
        Ok(())
    }
}
