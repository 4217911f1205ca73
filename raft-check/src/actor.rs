//! The stateright [`Actor`] adapter over raft-core's step function.
//!
//! Every callback builds one raft-core [`Input`], calls [`State::step`] and
//! maps the outputs to stateright commands. Raft's durable part (term, vote,
//! log) is the actor's [`Storage`]: the `Persist` outputs of a step are
//! applied to what was durable before the step and saved, so a node that
//! crashes comes back through [`State::recover`] with exactly what it
//! persisted. When a step changes nothing and asks for nothing, the state is
//! left borrowed, which lets stateright prune the transition.
//!
//! Model clients (for the `kv` model, or `--proposals clients`) are actors of
//! the same type, so that one [`ActorModel`](stateright::actor::ActorModel)
//! holds both.

use crate::kv::{self, ClientState, Command as KvCommand, Value};
use raft_core::{
    Config, Input, LogIndex, Membership, MemoryStore, Message, NodeId, Output, Payload, Proposal, ProposalId, ReadId,
    RoleKind, State, Timer,
};
use stateright::actor::{model_timeout, Actor, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// The stateright id of raft node `id` (they are the same number).
pub fn actor_id(id: NodeId) -> Id {
    Id::from(id.0 as usize)
}

/// The raft node id of stateright actor `id` (the same number).
pub fn node_id(id: Id) -> NodeId {
    NodeId(usize::from(id) as u64)
}

/// Deliberate bugs in the adapter, for tests that show the checker catches
/// them. The CLI never sets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Switches {
    /// On recovery, drop the vote from the persisted hard state: the bug of
    /// stateright's own Raft example (a node may then vote twice in a term).
    pub forget_vote_on_recovery: bool,
    /// kv model: answer reads from the local state machine instead of
    /// through the log (stale reads become possible).
    pub reads_bypass_log: bool,
    /// Once a server leads, step it with another node's configuration: a
    /// broken driver contract (the configuration never changes during a
    /// node's life), which raft-core's own end-of-step assertions reject
    /// with a panic (a leader must name itself). For the test that a panic
    /// is reported as a counterexample.
    pub foreign_config_after_election: bool,
}

/// A message in the model: a Raft message between servers, or a register
/// operation between a model client and a server. Ordered (stateright
/// orders actions) through raft-core's own derived order on messages.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Msg {
    /// A raft-core message, server to server. Shared, because stateright
    /// clones the whole network for every state it generates.
    Raft(Arc<Message>),
    /// Client to server: write `Value` to the register.
    Put(Value),
    /// Server to client: the write is committed and applied.
    PutOk,
    /// Client to server: read the register.
    Get,
    /// Server to client: the value read, and the log index it was read at
    /// (the read index; 0 for a read that bypassed the log).
    GetOk(Value, LogIndex),
    /// Operator to server (a server sends it to itself at start, so that it
    /// arrives at any moment): hand the leadership to this node.
    Transfer(NodeId),
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Raft(m) => write!(f, "{m:?}"),
            Msg::Put(v) => write!(f, "Put({v})"),
            Msg::PutOk => write!(f, "PutOk"),
            Msg::Get => write!(f, "Get"),
            Msg::GetOk(v, i) => write!(f, "GetOk({v} at {i})"),
            Msg::Transfer(target) => write!(f, "TransferLeadership(to {target})"),
        }
    }
}

/// What a server keeps on disk: raft-core's one in-memory store of
/// persists (term and vote, membership, log).
pub type Durable = MemoryStore;

/// What the adapter saw a step do that breaks a rule no single state can
/// show (it needs the state before the step, or the order of the outputs).
/// Every flag stays `false` in a correct run, so they add no states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Broken {
    /// A step of this node, as leader, removed or changed an entry of its
    /// own log within one term (Leader Append-Only).
    pub overwrote_as_leader: bool,
    /// A step emitted a `Persist` after a `Send` (the ordering rule of the
    /// step contract: what is sent must be durable first).
    pub persisted_after_send: bool,
    /// A step delivered an entry out of log order, twice, beyond the
    /// commit index, skipping a command, or other than the entry its log
    /// holds at that index.
    pub bad_delivery: bool,
    /// A step received a message of a higher term and left the node in an
    /// older term, or still leader (§5.1).
    pub kept_old_term: bool,
    /// A step received a vote or append request, a leadership check, or an
    /// answer to one, of an older term than the node's, and changed the
    /// node's state or granted or acknowledged it (§5.1: a stale term is
    /// rejected).
    pub acted_on_stale_term: bool,
    /// A step that started a pre-vote, or answered one, changed the node's
    /// term or vote (thesis §9.6: a pre-vote changes neither).
    pub pre_vote_changed_term: bool,
    /// raft-core (or the adapter executing its outputs) panicked in a step:
    /// a broken contract. The node takes no further input.
    pub panicked: bool,
    /// The node restarted from a store that `State::recover` refuses (terms
    /// out of order): what it persisted was not what it held. It takes no
    /// further input.
    pub unrecoverable: bool,
}

impl Broken {
    /// Whether any rule was seen broken.
    pub fn any(&self) -> bool {
        *self != Broken::default()
    }
}

/// A server's state in the model: raft-core's state plus what the model
/// observes about it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerState {
    /// raft-core's state.
    pub raft: State,
    /// Rules the adapter saw a step break.
    pub broken: Broken,
    /// The highest index delivered to the application in this lifetime (0
    /// after a start or a recovery). In a correct run it is a function of
    /// raft-core's state (its last command up to the delivered index), so
    /// it adds no states.
    pub delivered: LogIndex,
    /// kv model: the register as applied from the committed log.
    pub register: Value,
    /// kv model: the clients whose request this server proposed and has not
    /// answered yet.
    pub awaiting: BTreeSet<u8>,
}

impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raft)?;
        if self.register != 0 || !self.awaiting.is_empty() {
            write!(f, " reg {} awaiting {:?}", self.register, self.awaiting)?;
        }
        if self.broken.any() {
            write!(f, " BROKEN {:?}", self.broken)?;
        }
        Ok(())
    }
}

/// An actor's state: a server's or a client's. Not boxed: stateright keeps
/// states by value and the model has few clients.
#[derive(Clone, PartialEq, Eq, Hash)]
#[allow(clippy::large_enum_variant)]
pub enum NodeState {
    /// A Raft server.
    Server(ServerState),
    /// A model client.
    Client(ClientState),
}

impl NodeState {
    /// The server state, if this is a server.
    pub fn server(&self) -> Option<&ServerState> {
        match self {
            NodeState::Server(s) => Some(s),
            NodeState::Client(_) => None,
        }
    }
}

impl fmt::Debug for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Server(s) => write!(f, "{s:?}"),
            NodeState::Client(c) => write!(f, "{c:?}"),
        }
    }
}

/// A Raft server: its raft-core configuration and how the model drives it.
#[derive(Clone)]
pub struct Server {
    /// raft-core's configuration for this node (kept here, not in the state).
    pub config: Config,
    /// The cluster's members, given to the node when it first starts.
    pub membership: Membership,
    /// A command this node proposes when it first starts (raft-lite's model).
    pub propose_at_start: Option<Vec<u8>>,
    /// A node this one asks (once, at its first start, by a message to
    /// itself that arrives at any moment) to take over its leadership.
    pub transfer_at_start: Option<NodeId>,
    /// Whether the leader's heartbeat timer is modelled (see
    /// `ModelConfig::heartbeats`).
    pub heartbeats: bool,
    /// Deliberate bugs, for tests.
    pub switches: Switches,
}

/// An actor of the model.
#[derive(Clone)]
pub enum Node {
    /// A Raft server.
    Server(Server),
    /// A model client.
    Client(kv::Client),
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    /// Shared, because stateright clones every storage for every state it
    /// generates.
    type Storage = Arc<Durable>;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Arc<Durable>>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Server(server) => {
                let mut local = Out::new();
                let started =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.start(id, storage, &mut local)));
                match started {
                    Ok(state) => {
                        o.append(&mut local);
                        NodeState::Server(state)
                    }
                    Err(_) => {
                        let mut state = ServerState::new(State::new(&server.config, server.membership.clone()).0);
                        state.broken.panicked = true;
                        NodeState::Server(state)
                    }
                }
            }
            Node::Client(client) => NodeState::Client(client.start(id, storage.is_some(), o)),
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match (self, &**state) {
            (Node::Server(server), NodeState::Server(s)) => {
                if let Some(next) = server.on_msg(s, src, msg, o) {
                    *state = Cow::Owned(NodeState::Server(next));
                }
            }
            (Node::Client(client), NodeState::Client(c)) => {
                if let Some(next) = client.on_msg(id, c, msg, o) {
                    *state = Cow::Owned(NodeState::Client(next));
                }
            }
            _ => unreachable!("actor and state kinds differ"),
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        if let (Node::Server(server), NodeState::Server(s)) = (self, &**state) {
            if let Some(next) = server.step(s, Input::Timeout(*timer), o) {
                *state = Cow::Owned(NodeState::Server(next));
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Node::Server(_) => String::new(),
            Node::Client(_) => "client".to_string(),
        }
    }
}

impl Server {
    /// A fresh start (no storage yet) or a recovery from storage.
    fn start(&self, id: Id, storage: &Option<Arc<Durable>>, o: &mut Out<Node>) -> ServerState {
        let (raft, outputs) = match storage {
            None => State::new(&self.config, self.membership.clone()),
            Some(durable) => {
                let mut durable = MemoryStore::clone(durable);
                if self.switches.forget_vote_on_recovery {
                    durable.hard.voted_for = None;
                }
                match State::recover(&self.config, durable, LogIndex(0)) {
                    Ok(recovered) => recovered,
                    Err(_) => {
                        // Only a node that broke the persistence rules
                        // leaves such a store: it stays down, marked.
                        let mut state = ServerState::new(State::new(&self.config, self.membership.clone()).0);
                        state.broken.unrecoverable = true;
                        return state;
                    }
                }
            }
        };
        let mut state = ServerState::new(raft);
        let before = state.raft.clone();
        // A fresh start's outputs persist the membership first, so that a
        // crash before any other persist recovers (and does not start, and
        // propose, anew).
        self.execute(&mut state, &before, outputs, o);
        if let (None, Some(data)) = (storage, &self.propose_at_start) {
            let proposal = Proposal { id: ProposalId(1), data: data.clone() };
            let mut outputs = Vec::new();
            let before = state.raft.clone();
            state.raft.step(&self.config, Input::Propose(vec![proposal]), &mut outputs);
            self.execute(&mut state, &before, outputs, o);
        }
        if let (None, Some(target)) = (storage, self.transfer_at_start) {
            o.send(id, Msg::Transfer(target));
        }
        state
    }

    fn on_msg(&self, s: &ServerState, src: Id, msg: Msg, o: &mut Out<Node>) -> Option<ServerState> {
        match msg {
            Msg::Raft(message) => {
                let message = Arc::unwrap_or_clone(message);
                self.step(s, Input::Receive { from: node_id(src), message }, o)
            }
            Msg::Put(value) => {
                let client = usize::from(src) as u8;
                self.client_request(s, client, KvCommand::Write { client, value }, o)
            }
            Msg::Get if self.switches.reads_bypass_log => {
                o.send(src, Msg::GetOk(s.register, LogIndex(0)));
                None
            }
            // Linearizable reads without the log (ReadIndex): the answer goes
            // out when raft-core says the read may be served (`ReadReady`).
            Msg::Get => self.step(s, Input::Read(vec![ReadId(usize::from(src) as u64)]), o),
            Msg::Transfer(target) => self.step(s, Input::TransferLeadership(target), o),
            Msg::PutOk | Msg::GetOk(..) => None,
        }
    }

    fn client_request(
        &self,
        s: &ServerState,
        client: u8,
        command: KvCommand,
        o: &mut Out<Node>,
    ) -> Option<ServerState> {
        let proposal = Proposal { id: ProposalId(u64::from(client)), data: command.encode() };
        let mut next = self.step(s, Input::Propose(vec![proposal]), o).unwrap_or_else(|| s.clone());
        next.awaiting.insert(client);
        Some(next)
    }

    /// Steps raft-core with one input. `None` when the state is unchanged
    /// (the caller then leaves it borrowed).
    ///
    /// A panic inside raft-core, or in executing its outputs, is a broken
    /// contract: it is caught, the node is marked (`Broken::panicked`, which
    /// the No Panic property reports with its path) and takes no further
    /// input, and none of the step's outputs is executed.
    pub(crate) fn step(&self, s: &ServerState, input: Input, o: &mut Out<Node>) -> Option<ServerState> {
        if s.broken.panicked || s.broken.unrecoverable {
            return None;
        }
        // A pre-vote, and a granted pre-vote's answer, carry a term nobody
        // adopts (thesis §9.6); every other higher term must be adopted.
        let higher_term = match &input {
            Input::Receive { message: Message::PreVote(_), .. } => None,
            Input::Receive { message: Message::PreVoteResponse(r), .. } if r.granted => None,
            Input::Receive { message, .. } => Some(message.term()).filter(|&t| t > s.raft.term()),
            _ => None,
        };
        let answers_pre_vote = matches!(&input, Input::Receive { message: Message::PreVote(_), .. });
        let stale_rpc = matches!(&input, Input::Receive { message, .. } if message.is_term_checked() && message.term() < s.raft.term());
        let election_timeout = matches!(input, Input::Timeout(Timer::Election));
        let mut local = Out::new();
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut next = s.clone();
            let mut outputs = Vec::new();
            let foreign;
            let config = if self.switches.foreign_config_after_election && s.raft.is_leader() {
                let me = self.config.id();
                let other = s.raft.membership().peers(me).next().expect("a peer");
                foreign = Config::new(other);
                &foreign
            } else {
                &self.config
            };
            next.raft.step(config, input, &mut outputs);
            next.broken.overwrote_as_leader |= overwrote_own_entries(&s.raft, &next.raft);
            // Check-quorum's lease: a vote request dropped by a node that
            // hears from a live leader (thesis §6.2) is the one exception.
            let in_lease = outputs.iter().any(|o| matches!(o, Output::Dropped(raft_core::Dropped::InLease)));
            next.broken.kept_old_term |=
                !in_lease && higher_term.is_some_and(|t| next.raft.term() < t || next.raft.is_leader());
            let starts_pre_vote = next.raft.role_kind() == RoleKind::PreCandidate
                && (s.raft.role_kind() != RoleKind::PreCandidate || election_timeout);
            next.broken.pre_vote_changed_term |=
                (answers_pre_vote || starts_pre_vote) && next.raft.hard_state() != s.raft.hard_state();
            next.broken.acted_on_stale_term |= stale_rpc && (next.raft != s.raft || outputs.iter().any(grants));
            self.execute(&mut next, &s.raft, outputs, &mut local);
            next
        }));
        let next = match attempt {
            Ok(next) => {
                o.append(&mut local);
                next
            }
            Err(_) => {
                let mut next = s.clone();
                next.broken.panicked = true;
                next
            }
        };
        (next != *s).then_some(next)
    }

    /// Executes outputs in order: persists are applied to what `before` had
    /// durable (a correct earlier step stored exactly that) and saved once, as
    /// one atomic write, before any send of the same step is executed),
    /// sends to the network, timers to stateright's timers, deliveries to
    /// the kv state machine. A persist that follows a send in the list is
    /// marked as broken (`Broken::persisted_after_send`); deliveries are
    /// checked against the node's log and commit index.
    fn execute(&self, state: &mut ServerState, before: &State, outputs: Vec<Output>, o: &mut Out<Node>) {
        let first_send = outputs.iter().position(|out| matches!(out, Output::Send { .. }));
        if first_send.is_some_and(|i| outputs[i..].iter().any(|out| matches!(out, Output::Persist(_)))) {
            state.broken.persisted_after_send = true;
        }
        if outputs.iter().any(|out| matches!(out, Output::Persist(_))) {
            let mut durable = MemoryStore::of(before);
            if let Err(refused) = durable.apply_all(&outputs) {
                panic!("raft-core broke the persist contract: {refused}");
            }
            o.save(Arc::new(durable));
        }
        for output in outputs {
            match output {
                Output::Persist(_) => {}
                Output::Send { to, message } => o.send(actor_id(to), Msg::Raft(Arc::new(message))),
                Output::SetTimer { timer: Timer::Heartbeat, .. } if !self.heartbeats => {}
                Output::SetTimer { timer, .. } => o.set_timer(timer, model_timeout()),
                Output::CancelTimer(timer) => o.cancel_timer(timer),
                Output::Deliver(committed) => {
                    for c in committed {
                        state.broken.bad_delivery |= !delivers_next(state, &c);
                        state.delivered = state.delivered.max(c.index);
                        apply_command(state, &c, o);
                    }
                }
                // Deliveries before it in this list are applied already.
                Output::ReadReady { id, index } => o.send(Id::from(id.0 as usize), Msg::GetOk(state.register, index)),
                // The client's read stays unanswered (as over a lossy network).
                Output::ReadRejected { .. }
                | Output::LeaderChanged { .. }
                | Output::ProposalAccepted { .. }
                | Output::ProposalRejected { .. }
                | Output::TransferRejected { .. }
                | Output::RestoreSnapshot(_)
                | Output::FollowerRegressed { .. }
                | Output::Dropped(_) => {}
            }
        }
    }
}

impl ServerState {
    /// A server that has just started or recovered.
    pub fn new(raft: State) -> ServerState {
        ServerState { raft, broken: Broken::default(), delivered: LogIndex(0), register: 0, awaiting: BTreeSet::new() }
    }
}

/// Whether an output grants a vote or acknowledges an append.
fn grants(output: &Output) -> bool {
    match output {
        Output::Send { message: Message::RequestVoteResponse(r), .. } => r.granted,
        Output::Send { message: Message::AppendEntriesResponse(r), .. } => {
            matches!(r.result, raft_core::AppendResult::Success { .. })
        }
        _ => false,
    }
}

/// Whether `after`, a leader in the same term as `before`, removed or
/// changed an entry of its log (Leader Append-Only).
fn overwrote_own_entries(before: &State, after: &State) -> bool {
    if !(before.is_leader() && after.is_leader() && before.term() == after.term()) {
        return false;
    }
    let (before, after) = (before.log().entries(), after.log().entries());
    after.len() < before.len() || after[..before.len()] != *before
}

/// Whether delivering `c` now is right: it is the next command of the
/// node's log after the last one delivered in this lifetime (only no-ops in
/// between), the log holds exactly it there, and it is committed.
fn delivers_next(state: &ServerState, c: &raft_core::Committed) -> bool {
    let log = state.raft.log();
    let held = log.get(c.index).is_some_and(|e| e.term == c.term && e.payload == Payload::Command(c.data.clone()));
    let skipped_only_noops =
        (state.delivered.0 + 1..c.index.0).all(|i| log.get(LogIndex(i)).is_some_and(|e| e.payload == Payload::Noop));
    c.index > state.delivered && held && skipped_only_noops && c.index <= state.raft.commit_index()
}

/// Applies one committed command to the kv state machine, answering the
/// client if this server proposed it.
fn apply_command(state: &mut ServerState, c: &raft_core::Committed, o: &mut Out<Node>) {
    match KvCommand::decode(&c.data) {
        Some(KvCommand::Write { client, value }) => {
            state.register = value;
            if state.awaiting.remove(&client) {
                o.send(Id::from(usize::from(client)), Msg::PutOk);
            }
        }
        Some(KvCommand::Read { client }) if state.awaiting.remove(&client) => {
            o.send(Id::from(usize::from(client)), Msg::GetOk(state.register, c.index));
        }
        Some(KvCommand::Read { .. }) | None => {}
    }
}

/// Installs a panic hook that prints the first panic of the process and
/// counts the rest silently. Under the checker a panic inside raft-core is
/// caught and reported as a No Panic counterexample, and the same broken
/// step can be reached along many paths: printing every one would bury
/// the report.
pub fn print_first_panic_only() {
    static PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !PRINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            default(info);
            eprintln!("(further panics are caught and reported as No Panic counterexamples, not printed)");
        }
    }));
}
