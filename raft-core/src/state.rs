//! A node's state and the step function's dispatch: term handling first, for
//! every role and message, then the rule of the node's current role.
//!
//! The rules themselves live in `election.rs` (§5.2, §5.4.1),
//! `replication.rs` (§5.3, §5.4.2) and `proposals.rs` (client requests).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Committed, Dropped, Input, Output, Persist, Proposal, Timer};
use crate::log::Log;
use crate::message::Message;
use crate::read::Reads;
use crate::types::{Entry, HardState, LogIndex, NodeId, Payload, Term};
use core::fmt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Everything one node knows: its durable part (hard state and log) and its
/// volatile part (role, leader, commit and delivery progress, queued
/// proposals). Two equal histories give equal states.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct State {
    pub(crate) hard: HardState,
    pub(crate) log: Log,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) commit_index: LogIndex,
    pub(crate) delivered_index: LogIndex,
    pub(crate) pending: Vec<Proposal>,
    pub(crate) reads: Reads,
}

/// A node's role, with the bookkeeping only that role needs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows the leader of its term, if any.
    Follower,
    /// Asks for votes; holds the voters that granted theirs (itself included).
    Candidate {
        /// The members that granted their vote this term.
        votes: BTreeSet<NodeId>,
    },
    /// Replicates its log; holds its view of each follower.
    Leader {
        /// Per follower: what is known to match and what to send next.
        progress: BTreeMap<NodeId, Progress>,
    },
}

/// The leader's view of one follower's log (Figure 2, "Volatile state on
/// leaders"), plus the mode of sending.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    /// The next index to send.
    pub next_index: LogIndex,
    /// The highest index known to match the leader's log.
    pub match_index: LogIndex,
    /// How the leader sends to this follower.
    pub mode: Mode,
}

/// How a leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// The match point is unknown: one append at a time, waiting for its
    /// answer (`sent`), until one succeeds.
    Probe {
        /// An append was sent and not yet answered.
        sent: bool,
    },
    /// The follower is known to match up to `match_index`: new entries are
    /// streamed as they arrive, up to `Config::inflight_entries_max` ahead.
    Replicate,
}

/// The role without its bookkeeping, for status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoleKind {
    /// See [`Role::Follower`].
    Follower,
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
            RecoverError::AppliedBeyondLog { applied, last_index } => {
                write!(f, "the application reports entries applied up to {applied} but the log ends at {last_index}")
            }
        }
    }
}

impl std::error::Error for RecoverError {}

impl State {
    /// A brand-new node: term 0, no vote, empty log. The outputs arm its
    /// election timer.
    pub fn new(config: &Config) -> (State, Vec<Output>) {
        let state = State {
            hard: HardState::default(),
            log: Log::new(),
            role: Role::Follower,
            leader: None,
            commit_index: LogIndex(0),
            delivered_index: LogIndex(0),
            pending: Vec::new(),
            reads: Reads::default(),
        };
        let outputs = vec![state.election_timer(config)];
        (state, outputs)
    }

    /// A node restarted from what it persisted: its hard state and its log.
    /// `applied` is the last index the application has already applied and
    /// does not want delivered again (0 to have every committed entry
    /// delivered anew). The node starts as a follower knowing no leader.
    pub fn recover(
        config: &Config,
        hard: HardState,
        log: Log,
        applied: LogIndex,
    ) -> Result<(State, Vec<Output>), RecoverError> {
        let mut previous = Term(0);
        for (i, entry) in log.entries().iter().enumerate() {
            if entry.term < previous || entry.term > hard.term {
                let index = LogIndex(log.first_index().0 + i as u64);
                return Err(RecoverError::LogTermsOutOfOrder { index });
            }
            previous = entry.term;
        }
        if applied > log.last_index() {
            return Err(RecoverError::AppliedBeyondLog { applied, last_index: log.last_index() });
        }
        let state = State {
            hard,
            log,
            role: Role::Follower,
            leader: None,
            commit_index: applied,
            delivered_index: applied,
            pending: Vec::new(),
            reads: Reads::default(),
        };
        let outputs = vec![state.election_timer(config)];
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
        }
        // A node that stopped leading refuses the reads it was confirming.
        self.abandon_leader_reads(config, out);
        // A follower that has learned of a leader forwards what it held.
        // Done last, so that every persist of this step precedes the send.
        if let Some(leader) = self.leader.filter(|&l| l != config.id()) {
            if !self.pending.is_empty() {
                let pending = core::mem::take(&mut self.pending);
                self.forward(config, leader, pending, out);
            }
        }
        #[cfg(debug_assertions)]
        if !config.has_fault() {
            self.check_invariants(config);
            check_persist_before_send(&out[first_output..]);
        }
        let _ = first_output;
    }

    /// The same state with every node id renamed by `node` and every
    /// command's bytes replaced by `command(bytes)`. For a model checker's
    /// symmetry reduction: when nodes are interchangeable, a state and its
    /// renaming behave alike, so one of them is explored. `node` must be a
    /// bijection on the member set (the caller renames the configurations
    /// the same way); `command` lets the caller rename commands that carry
    /// node ids of their own.
    pub fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId, command: &dyn Fn(&[u8]) -> Vec<u8>) -> State {
        let role = match &self.role {
            Role::Follower => Role::Follower,
            Role::Candidate { votes } => Role::Candidate { votes: votes.iter().map(|&v| node(v)).collect() },
            Role::Leader { progress } => {
                Role::Leader { progress: progress.iter().map(|(&id, &p)| (node(id), p)).collect() }
            }
        };
        State {
            hard: HardState { term: self.hard.term, voted_for: self.hard.voted_for.map(node) },
            log: self.log.map_commands(command),
            role,
            leader: self.leader.map(node),
            commit_index: self.commit_index,
            delivered_index: self.delivered_index,
            pending: self.pending.iter().map(|p| Proposal { id: p.id, data: command(&p.data) }).collect(),
            reads: self.reads.renamed(node),
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
    /// Proposals held until a leader is known.
    pub fn pending(&self) -> &[Proposal] {
        &self.pending
    }
    /// The read requests this node holds.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    fn receive(&mut self, config: &Config, from: NodeId, message: Message, out: &mut Vec<Output>) {
        if !config.is_peer(from) {
            out.push(Output::Dropped(Dropped::UnknownSender));
            return;
        }
        if let Err(reason) = self.validate(&message) {
            out.push(Output::Dropped(reason));
            return;
        }
        let term = message.term();
        let newer_term = term > self.hard.term && !(self.is_leader() && config.breaks(Fault::NoStepDownOnHigherTerm));
        if newer_term {
            // §5.1: a higher term in any message makes this node a follower
            // of that term. An AppendEntries or a LeadershipCheck also names
            // the leader.
            let names_leader = matches!(message, Message::AppendEntries(_) | Message::LeadershipCheck(_));
            let leader = names_leader.then_some(from);
            self.become_follower(config, term, leader, out);
        }
        match message {
            // An answer that carried a newer term has done its work: this
            // node is now a follower of that term, which expects no answers.
            // It is not reported as dropped, since it changed the state.
            Message::RequestVoteResponse(_)
            | Message::AppendEntriesResponse(_)
            | Message::LeadershipCheckResponse(_)
                if newer_term => {}
            Message::RequestVote(m) => self.on_request_vote(config, from, m, out),
            Message::RequestVoteResponse(m) => self.on_vote_response(config, from, m, out),
            Message::AppendEntries(m) => self.on_append_entries(config, from, m, out),
            Message::AppendEntriesResponse(m) => self.on_append_response(config, from, m, out),
            Message::Forward(m) => self.on_forward(config, from, m, out),
            Message::ForwardResponse(m) => self.on_forward_response(m, out),
            Message::LeadershipCheck(m) => self.on_leadership_check(config, from, m, out),
            Message::LeadershipCheckResponse(m) => self.on_leadership_check_response(config, from, m, out),
            Message::ReadIndexRequest(m) => self.on_read_index_request(config, from, m, out),
            Message::ReadIndexResponse(m) => self.on_read_index_response(config, m, out),
        }
    }

    /// Checks what a message claims against itself, before any state is
    /// touched: entries whose terms go backwards, precede `prev_log_term` or
    /// exceed the message's term, and index arithmetic that would overflow.
    fn validate(&self, message: &Message) -> Result<(), Dropped> {
        match message {
            Message::AppendEntries(m) => {
                let mut previous = m.prev_log_term;
                for e in &m.entries {
                    if e.term < previous || e.term > m.term {
                        return Err(Dropped::OutOfRange);
                    }
                    previous = e.term;
                }
                if m.prev_log_term > m.term || m.prev_log_index.0.checked_add(m.entries.len() as u64).is_none() {
                    return Err(Dropped::OutOfRange);
                }
                Ok(())
            }
            Message::RequestVote(m) if m.last_log_term > m.term => Err(Dropped::OutOfRange),
            _ => Ok(()),
        }
    }

    fn timeout(&mut self, config: &Config, timer: Timer, out: &mut Vec<Output>) {
        match (timer, &self.role) {
            (Timer::Election, Role::Follower | Role::Candidate { .. }) => self.start_election(config, out),
            (Timer::Heartbeat, Role::Leader { .. }) => self.heartbeat(config, out),
            _ => out.push(Output::Dropped(Dropped::StaleTimer)),
        }
    }

    /// Steps down to follower. With a higher `term`, adopts it (clearing the
    /// vote) and persists that first. Arms the election timer if this node
    /// was leader (it had none running).
    pub(crate) fn become_follower(
        &mut self,
        config: &Config,
        term: Term,
        leader: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        if term > self.hard.term {
            self.hard = HardState { term, voted_for: None };
            if !config.breaks(Fault::TermNotPersisted) {
                out.push(Output::Persist(Persist::HardState(self.hard)));
            }
        }
        if self.is_leader() {
            out.push(Output::CancelTimer(Timer::Heartbeat));
            out.push(self.election_timer(config));
        }
        self.role = Role::Follower;
        self.set_leader(leader, out);
    }

    /// Records the leader of the current term and reports a change.
    pub(crate) fn set_leader(&mut self, leader: Option<NodeId>, out: &mut Vec<Output>) {
        if self.leader != leader {
            self.leader = leader;
            out.push(Output::LeaderChanged { leader, term: self.hard.term });
        }
    }

    pub(crate) fn election_timer(&self, config: &Config) -> Output {
        let (min, max) = config.election_timeout();
        Output::SetTimer { timer: Timer::Election, min, max }
    }

    /// Appends entries to this node's own log and asks for them to be persisted.
    pub(crate) fn append_own(&mut self, config: &Config, entries: Vec<Entry>, out: &mut Vec<Output>) {
        if entries.is_empty() {
            return;
        }
        let first = self.log.last_index().next();
        self.log.extend(entries.iter().cloned());
        if !(self.is_leader() && config.breaks(Fault::LeaderEntriesNotPersisted)) {
            out.push(Output::Persist(Persist::Append { first, entries }));
        }
    }

    /// Raises the commit index (never lowers it) and delivers what is newly
    /// committed, in order, skipping no-ops.
    pub(crate) fn commit_to(&mut self, config: &Config, index: LogIndex, out: &mut Vec<Output>) {
        if index <= self.commit_index {
            return;
        }
        self.commit_index = index;
        let from = if config.breaks(Fault::DeliverTwice) { LogIndex(1) } else { self.delivered_index.next() };
        let index = if config.breaks(Fault::DeliverUncommitted) { self.log.last_index() } else { index };
        let delivered: Vec<Committed> = (from.0..=index.0)
            .filter_map(|i| {
                let entry = self.log.get(LogIndex(i))?;
                match &entry.payload {
                    Payload::Noop => None,
                    Payload::Command(data) => {
                        Some(Committed { index: LogIndex(i), term: entry.term, data: data.clone() })
                    }
                }
            })
            .collect();
        self.delivered_index = index;
        if !delivered.is_empty() {
            out.push(Output::Deliver(delivered));
        }
        self.release_applied_reads(config, out);
    }

    #[cfg(debug_assertions)]
    fn check_invariants(&self, config: &Config) {
        assert!(self.delivered_index <= self.commit_index, "delivered past commit");
        assert!(self.is_leader() || self.reads.leader_part_is_empty(), "a non-leader holds leader reads");
        assert!(self.reads.applying_all_above(self.delivered_index), "a read ready to serve was held back");
        assert!(self.commit_index <= self.log.last_index(), "commit past the log's end");
        assert!(self.log.last_term() <= self.hard.term, "log term above current term");
        assert!(self.pending.len() <= config.pending_proposals_max(), "pending queue over its bound");
        if let Some(l) = self.leader {
            assert!(l == config.id() || self.pending.is_empty(), "proposals held while a leader is known");
        }
        match &self.role {
            Role::Follower => assert!(self.leader != Some(config.id()), "follower names itself leader"),
            Role::Candidate { votes } => {
                assert_eq!(self.hard.voted_for, Some(config.id()), "candidate did not vote for itself");
                assert!(votes.contains(&config.id()) && votes.len() < config.quorum().max(2));
                assert!(self.leader.is_none(), "candidate knows a leader");
            }
            Role::Leader { progress } => {
                assert_eq!(self.hard.voted_for, Some(config.id()), "leader did not vote for itself");
                assert_eq!(self.leader, Some(config.id()), "leader does not name itself");
                assert!(progress.keys().copied().eq(config.peers()), "progress is not the peer set");
                for p in progress.values() {
                    assert!(p.match_index < p.next_index, "match_index not below next_index");
                    assert!(p.next_index <= self.log.last_index().next(), "next_index past the log's end");
                }
                assert!(self.pending.is_empty(), "leader holds pending proposals");
            }
        }
    }
}

/// Persist-before-send, checked on every output list in debug builds: once
/// a `Send` is out, no `Persist` may follow that a previous send depends on.
/// The core's simplest way to honour this is to emit every persist of a step
/// before its first send, which is what this checks.
#[cfg(debug_assertions)]
fn check_persist_before_send(outputs: &[Output]) {
    let first_send = outputs.iter().position(|o| matches!(o, Output::Send { .. }));
    if let Some(first_send) = first_send {
        assert!(
            !outputs[first_send..].iter().any(|o| matches!(o, Output::Persist(_))),
            "a Persist follows a Send in one output list: {outputs:?}"
        );
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match &self.role {
            Role::Follower => "F".to_string(),
            Role::Candidate { votes } => format!("C{:?}", votes),
            Role::Leader { progress } => {
                let p: Vec<String> =
                    progress.iter().map(|(id, p)| format!("{id}:{}/{}", p.match_index.0, p.next_index.0)).collect();
                format!("L[{}]", p.join(" "))
            }
        };
        write!(f, "{role} {:?} log {:?} commit {}", self.hard, self.log, self.commit_index.0)?;
        if let Some(l) = self.leader {
            write!(f, " leader {l}")?;
        }
        if !self.pending.is_empty() {
            write!(f, " pending {}", self.pending.len())?;
        }
        if !self.reads.is_empty() {
            write!(f, " {:?}", self.reads)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "match {} next {} {:?}", self.match_index, self.next_index, self.mode)
    }
}
