//! Builders and checks shared by raft-core's integration tests.
//!
//! Every test drives the core through [`step`] (or [`Harness::step`]), which
//! checks the persist-before-send rule on every output list the core returns,
//! so no test can see an output list that breaks it without failing.
//!
//! Nodes in arbitrary situations are built the way a real driver would build
//! them: from a persisted store (term and vote, membership, log), through
//! `State::recover`, and then moved into a role by feeding them inputs. No
//! test reaches into the core's private fields.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

pub mod sim;

use raft_core::{
    AppendEntries, AppendEntriesResponse, AppendResult, Config, ConfigError, Entry, HardState, Input, Log, LogIndex,
    Membership, MemoryStore, Message, NodeId, Output, Persist, PreVote, PreVoteResponse, Proposal, ProposalId,
    RequestVote, RequestVoteResponse, State, Term, TimeoutNow, Timer,
};

/// A node's configuration together with the membership of its cluster:
/// what a test needs to start or recover a node. It dereferences to the
/// [`Config`], so it goes wherever a `&Config` does.
#[derive(Clone, Debug)]
pub struct TestConfig {
    config: Config,
    membership: Membership,
}

impl core::ops::Deref for TestConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// Forwards `Config`'s `with_*` setters, so that a test adjusts a bound as
/// it would on a `Config` and keeps the membership.
macro_rules! forward_setters {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(
            #[doc = concat!("[`Config::", stringify!($name), "`], keeping the membership.")]
            pub fn $name(self, n: $ty) -> Result<TestConfig, ConfigError> {
                Ok(TestConfig { config: self.config.$name(n)?, membership: self.membership })
            }
        )*
    };
}

impl TestConfig {
    /// `config` in the cluster `membership`.
    pub fn new(config: Config, membership: Membership) -> TestConfig {
        TestConfig { config, membership }
    }
    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The cluster's members.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// Every member but this node, in id order.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.membership.peers(self.config.id())
    }
    /// The number of votes (or acknowledgements) that make a majority.
    pub fn quorum(&self) -> usize {
        self.membership.voters().len() / 2 + 1
    }
    forward_setters!(
        with_entries_per_append_max(usize),
        with_pending_proposals_max(usize),
        with_message_bytes_max(usize),
        with_inflight_entries_max(u64),
        with_unapplied_entries_max(u64),
        with_unapplied_bytes_max(u64),
        with_uncommitted_entries_max(u64),
        with_reads_max(usize),
    );
    /// [`Config::with_pre_vote`], keeping the membership.
    pub fn with_pre_vote(self, on: bool) -> TestConfig {
        TestConfig { config: self.config.with_pre_vote(on), membership: self.membership }
    }
    /// [`Config::with_check_quorum`], keeping the membership.
    pub fn with_check_quorum(self, on: bool) -> TestConfig {
        TestConfig { config: self.config.with_check_quorum(on), membership: self.membership }
    }
    /// [`Config::with_trailing_entries`], keeping the membership.
    pub fn with_trailing_entries(self, n: u64) -> TestConfig {
        TestConfig { config: self.config.with_trailing_entries(n), membership: self.membership }
    }
}

/// Node `n`.
pub fn id(n: u64) -> NodeId {
    NodeId(n)
}

/// The members of an `n`-node cluster: nodes 1 to `n`.
pub fn members(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

/// The configuration of node `me` in an `n`-node cluster, as the paper's §5
/// has it: defaults, but with pre-vote and check-quorum off, so that the
/// tests of §5's rules see §5's messages. Tests of those two extensions
/// turn them on ([`config_with_extensions`]).
pub fn config(me: u64, n: u64) -> TestConfig {
    let membership = Membership::new(members(n)).expect("a valid test membership");
    TestConfig::new(Config::new(NodeId(me)).with_pre_vote(false).with_check_quorum(false), membership)
}

/// The configuration of node `me` in an `n`-node cluster with raft-core's
/// defaults: pre-vote and check-quorum on.
pub fn config_with_extensions(me: u64, n: u64) -> TestConfig {
    config(me, n).with_pre_vote(true).with_check_quorum(true)
}

/// A brand-new node of `config`'s cluster, and the outputs that start it.
pub fn new_node(config: &TestConfig) -> (State, Vec<Output>) {
    State::new(config, config.membership().clone())
}

/// A brand-new node and its store, which holds what the node's first
/// outputs persisted (its membership), as a driver would have executed them.
pub fn new_node_with_store(config: &TestConfig) -> (State, MemoryStore) {
    let (state, outputs) = new_node(config);
    assert_eq!(
        outputs,
        vec![Output::Persist(Persist::Membership(config.membership().clone())), election_timer(config)],
        "a new node persists its membership and arms its election timer"
    );
    let mut store = MemoryStore::new();
    persist_all(&mut store, &outputs);
    (state, store)
}

/// Executes every persist of an output list against `store`, as a driver
/// would; a persist the store refuses breaks the step contract.
pub fn persist_all(store: &mut MemoryStore, outputs: &[Output]) {
    if let Err(refused) = store.apply_all(outputs) {
        panic!("the store refused a persist of {outputs:?}: {refused}");
    }
}

/// A node restarted from `store` alone, having applied nothing.
pub fn recover(config: &TestConfig, store: &MemoryStore) -> State {
    let (state, outputs) =
        State::recover(config, store.clone(), LogIndex(0)).expect("what the node persisted is recoverable");
    assert_eq!(outputs, vec![election_timer(config)]);
    state
}

/// The store of a node of `config`'s cluster that persisted `hard` and `entries`.
pub fn store_of(config: &TestConfig, hard: HardState, entries: Vec<Entry>) -> MemoryStore {
    MemoryStore { hard, membership: Some(config.membership().clone()), snapshot: None, log: Log::from_entries(entries) }
}

/// The command entry a leader of `term` would have written at `index` in
/// these tests. Its bytes name its place, so two entries with the same index
/// and term are equal, as Log Matching requires of real logs.
pub fn entry(index: u64, term: u64) -> Entry {
    Entry::command(Term(term), format!("{index}@{term}"))
}

/// A log with one command entry per term given, at indexes 1, 2, ...
pub fn log_of(terms: &[u64]) -> Vec<Entry> {
    terms.iter().enumerate().map(|(i, &t)| entry(i as u64 + 1, t)).collect()
}

/// The terms of a state's log, first to last.
pub fn terms_of(state: &State) -> Vec<u64> {
    state.log().entries().iter().map(|e| e.term.0).collect()
}

/// A follower recovered from disk: current `term`, `voted_for`, a log whose
/// entries have the given terms, and `commit` entries already applied (so
/// its commit index is `commit`).
pub fn follower(config: &TestConfig, term: u64, voted_for: Option<u64>, log_terms: &[u64], commit: u64) -> State {
    follower_with_log(config, term, voted_for, log_of(log_terms), commit)
}

/// As [`follower`], with the entries given.
pub fn follower_with_log(
    config: &TestConfig,
    term: u64,
    voted_for: Option<u64>,
    entries: Vec<Entry>,
    commit: u64,
) -> State {
    let hard = HardState { term: Term(term), voted_for: voted_for.map(NodeId) };
    let (state, outputs) = State::recover(config, store_of(config, hard, entries), LogIndex(commit))
        .expect("a consistent persisted state");
    assert_eq!(outputs, vec![election_timer(config)], "a recovered node only arms its election timer");
    state
}

/// The election timer output of `config`.
pub fn election_timer(config: &Config) -> Output {
    let (min, max) = config.election_timeout();
    Output::SetTimer { timer: Timer::Election, min, max }
}

/// The heartbeat timer output of `config`.
pub fn heartbeat_timer(config: &Config) -> Output {
    let interval = config.heartbeat_interval();
    Output::SetTimer { timer: Timer::Heartbeat, min: interval, max: interval }
}

/// The check-quorum timer output of `config` (thesis §6.2): every minimum
/// election timeout.
pub fn check_quorum_timer(config: &Config) -> Output {
    let (min, _) = config.election_timeout();
    Output::SetTimer { timer: Timer::CheckQuorum, min, max: min }
}

/// The transfer deadline output of `config` (thesis §3.10): a minimum
/// election timeout.
pub fn transfer_timer(config: &Config) -> Output {
    let (min, _) = config.election_timeout();
    Output::SetTimer { timer: Timer::Transfer, min, max: min }
}

/// Persist-before-send (the step contract): once a `Send` appears in an
/// output list, no `Persist` may follow it, so a driver that executes the
/// list in order never sends a vote or an acknowledgement before the state
/// it reports is durable. Checked on every output list the tests see.
pub fn assert_persist_before_send(outputs: &[Output]) {
    if let Some(first_send) = outputs.iter().position(|o| matches!(o, Output::Send { .. })) {
        let late = outputs[first_send..].iter().find(|o| matches!(o, Output::Persist(_) | Output::PersistAsync { .. }));
        assert!(late.is_none(), "a Persist follows a Send in one output list: {outputs:#?}");
    }
}

/// Steps `state` as a driver with an instant disk would: the input, then,
/// if the outputs hold a background write (`PersistAsync`), its completion
/// (`Input::Persisted`) at once. Returns the outputs of both, in order. The
/// rules of §5 are tested so; the tests of the parallel writes themselves
/// (thesis §10.2.1) use [`step_only`] and complete writes when they choose.
pub fn step(config: &Config, state: &mut State, input: Input) -> Vec<Output> {
    let mut outputs = step_only(config, state, input);
    let mut last = outputs.clone();
    // A completion may start another background write (a candidate whose
    // vote is durable wins and appends its no-op); two suffice, one more
    // proves it stops.
    for _ in 0..3 {
        let Some(written) = completion(&last) else { break };
        last = step_only(config, state, written);
        outputs.extend(last.iter().cloned());
    }
    outputs
}

/// The completion to report for the last background write in `outputs`.
pub fn completion(outputs: &[Output]) -> Option<Input> {
    outputs.iter().rev().find_map(|o| match o {
        Output::PersistAsync { term, index, .. } => Some(Input::Persisted { term: *term, index: *index }),
        _ => None,
    })
}

/// Steps `state` in place through the in-place form and returns the outputs,
/// after checking them with [`assert_persist_before_send`]. Also checks that
/// the pure form `raft_core::step` gives the same result. Background writes
/// stay outstanding until the test reports them.
pub fn step_only(config: &Config, state: &mut State, input: Input) -> Vec<Output> {
    let (pure_state, pure_outputs) = raft_core::step(config, state.clone(), input.clone());
    let mut outputs = Vec::new();
    state.step(config, input, &mut outputs);
    assert_persist_before_send(&outputs);
    assert_eq!((&pure_state, &pure_outputs), (&*state, &outputs), "the pure and in-place forms disagree");
    outputs
}

/// Feeds `input` and asserts that it was dropped for `reason` and left the
/// state exactly as it was.
pub fn assert_dropped(config: &Config, state: &mut State, input: Input, reason: raft_core::Dropped) {
    let before = state.clone();
    let outputs = step(config, state, input);
    assert_eq!(outputs, vec![Output::Dropped(reason)]);
    assert_eq!(*state, before, "a dropped input changed the state");
}

/// A message from peer `from`.
pub fn receive(from: u64, message: Message) -> Input {
    Input::Receive { from: NodeId(from), message }
}

/// A RequestVote.
pub fn request_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::RequestVote(RequestVote {
        term: Term(term),
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        transfer: false,
    })
}

/// A RequestVoteResponse.
pub fn vote(term: u64, granted: bool) -> Message {
    Message::RequestVoteResponse(RequestVoteResponse { term: Term(term), granted })
}

/// A RequestVote of an election that a leadership transfer started
/// (thesis §3.10).
pub fn request_vote_transfer(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::RequestVote(RequestVote {
        term: Term(term),
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        transfer: true,
    })
}

/// A PreVote (thesis §9.6): `term` is the one the sender would stand in.
pub fn pre_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::PreVote(PreVote {
        term: Term(term),
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
    })
}

/// A PreVoteResponse.
pub fn pre_vote_answer(term: u64, granted: bool) -> Message {
    Message::PreVoteResponse(PreVoteResponse { term: Term(term), granted })
}

/// A TimeoutNow (thesis §3.10).
pub fn timeout_now(term: u64) -> Message {
    Message::TimeoutNow(TimeoutNow { term: Term(term) })
}

/// An AppendEntries.
pub fn append(term: u64, prev_log_index: u64, prev_log_term: u64, entries: Vec<Entry>, leader_commit: u64) -> Message {
    Message::AppendEntries(AppendEntries {
        term: Term(term),
        prev_log_index: LogIndex(prev_log_index),
        prev_log_term: Term(prev_log_term),
        entries,
        leader_commit: LogIndex(leader_commit),
    })
}

/// A successful AppendEntriesResponse.
pub fn append_ok(term: u64, match_index: u64) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        term: Term(term),
        result: AppendResult::Success { match_index: LogIndex(match_index) },
    })
}

/// A rejected AppendEntriesResponse.
pub fn append_conflict(term: u64, rejected_index: u64, last_index: u64, conflict: Option<(u64, u64)>) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        term: Term(term),
        result: AppendResult::Conflict {
            rejected_index: LogIndex(rejected_index),
            last_index: LogIndex(last_index),
            conflict: conflict.map(|(t, i)| (Term(t), LogIndex(i))),
        },
    })
}

/// A send output.
pub fn send(to: u64, message: Message) -> Output {
    Output::Send { to: NodeId(to), message }
}

/// A hard-state persist output.
pub fn persist_hard(term: u64, voted_for: Option<u64>) -> Output {
    Output::Persist(Persist::HardState(HardState { term: Term(term), voted_for: voted_for.map(NodeId) }))
}

/// An append persist output (a follower's: its acknowledgement waits for it).
pub fn persist_append(first: u64, entries: Vec<Entry>) -> Output {
    Output::Persist(Persist::Append { first: LogIndex(first), entries })
}

/// A leader's append of its own entries, written in the background (thesis
/// §10.2.1), reported durable as (`term`, last index).
pub fn persist_append_async(term: u64, first: u64, entries: Vec<Entry>) -> Output {
    let index = LogIndex(first + entries.len() as u64 - 1);
    Output::PersistAsync { persist: Persist::Append { first: LogIndex(first), entries }, term: Term(term), index }
}

/// A candidate's term and vote for itself, written in the background,
/// reported durable as (`term`, `last_index`).
pub fn persist_candidacy(term: u64, me: u64, last_index: u64) -> Output {
    let persist = Persist::HardState(HardState { term: Term(term), voted_for: Some(NodeId(me)) });
    Output::PersistAsync { persist, term: Term(term), index: LogIndex(last_index) }
}

/// A leader-change output.
pub fn leader_changed(leader: Option<u64>, term: u64) -> Output {
    Output::LeaderChanged { leader: leader.map(NodeId), term: Term(term) }
}

/// One proposal of `data` with id `id`.
pub fn proposal(id: u64, data: &[u8]) -> Proposal {
    Proposal { id: ProposalId(id), data: data.to_vec() }
}

/// The messages sent in `outputs`, in order.
pub fn sends(outputs: &[Output]) -> Vec<(NodeId, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

/// The persist outputs, in order, background ones included.
pub fn persists(outputs: &[Output]) -> Vec<Persist> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(p) | Output::PersistAsync { persist: p, .. } => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// The committed commands delivered in `outputs`, as (index, term, data).
pub fn delivered(outputs: &[Output]) -> Vec<(u64, u64, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(c) => Some(c),
            _ => None,
        })
        .flatten()
        .map(|c| (c.index.0, c.term.0, c.data.clone()))
        .collect()
}

/// A node that has just become leader of `config`'s cluster: recovered at
/// `term - 1` with the log given, timed out into an election for `term`, and
/// granted the votes of the lowest-numbered peers it needs. Returns the
/// state and the outputs of the step that made it leader.
pub fn leader(config: &TestConfig, term: u64, log_terms: &[u64], commit: u64) -> (State, Vec<Output>) {
    let mut state = follower(config, term - 1, None, log_terms, commit);
    let mut outputs = step(config, &mut state, Input::Timeout(Timer::Election));
    let voters: Vec<NodeId> = config.peers().take(config.quorum() - 1).collect();
    if config.pre_vote() {
        // A pre-vote first (thesis §9.6): the same majority says yes.
        for &voter in &voters {
            outputs = step(config, &mut state, receive(voter.0, pre_vote_answer(term, true)));
        }
    }
    for voter in voters {
        outputs = step(config, &mut state, receive(voter.0, vote(term, true)));
    }
    assert!(state.is_leader(), "the fixture failed to elect {:?}", config.id());
    assert_eq!(state.term(), Term(term));
    (state, outputs)
}

/// A small in-memory cluster on a perfect network (every message arrives,
/// in order, at once), for scenario tests that need several real nodes.
pub struct Harness {
    /// The nodes' configurations, node `i + 1` at position `i`.
    pub configs: Vec<TestConfig>,
    /// The nodes' states.
    pub states: Vec<State>,
    /// Messages sent and not yet delivered: (from, to, message).
    pub in_flight: std::collections::VecDeque<(NodeId, NodeId, Message)>,
    /// Every message delivered so far, in order: (from, to, message).
    pub trace: Vec<(NodeId, NodeId, Message)>,
    /// Per node, the commands delivered to its application.
    pub applied: Vec<Vec<(u64, u64, Vec<u8>)>>,
}

impl Harness {
    /// A cluster of the given states; `configs[i]` belongs to `states[i]`.
    pub fn new(configs: Vec<TestConfig>, states: Vec<State>) -> Harness {
        let n = states.len();
        Harness { configs, states, in_flight: Default::default(), trace: Vec::new(), applied: vec![Vec::new(); n] }
    }

    /// Feeds `input` to node `node` (1-based) and queues what it sends.
    pub fn step(&mut self, node: u64, input: Input) -> Vec<Output> {
        let i = (node - 1) as usize;
        let outputs = step(&self.configs[i], &mut self.states[i], input);
        for o in &outputs {
            if let Output::Send { to, message } = o {
                self.in_flight.push_back((NodeId(node), *to, message.clone()));
            }
        }
        self.applied[i].extend(delivered(&outputs));
        outputs
    }

    /// Queues messages a node produced outside [`Harness::step`].
    pub fn queue_sends(&mut self, node: u64, outputs: &[Output]) {
        for (to, message) in sends(outputs) {
            self.in_flight.push_back((NodeId(node), to, message));
        }
    }

    /// Delivers messages until none is in flight; at most `limit` of them.
    pub fn run(&mut self, limit: usize) {
        for _ in 0..limit {
            let Some((from, to, message)) = self.in_flight.pop_front() else { return };
            self.trace.push((from, to, message.clone()));
            self.step(to.0, Input::Receive { from, message });
        }
        assert!(self.in_flight.is_empty(), "the network did not quiesce within {limit} messages");
    }

    /// The state of node `node` (1-based).
    pub fn state(&self, node: u64) -> &State {
        &self.states[(node - 1) as usize]
    }
}
