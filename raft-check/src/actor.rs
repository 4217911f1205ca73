//! The stateright [`Actor`] adapter over raft-core's step function.
//!
//! Every callback builds one raft-core [`Input`], calls [`State::step`] and
//! maps the outputs to stateright commands. Raft's durable part (term, vote,
//! log) is the actor's [`Storage`](Actor::Storage): the `Persist` outputs of a step are
//! applied to what was durable before the step and saved, so a node that
//! crashes comes back through [`State::recover`] with exactly what it
//! persisted. When a step changes nothing and asks for nothing, the state is
//! left borrowed, which lets stateright prune the transition.
//!
//! Snapshots (`ModelConfig::snapshots`): raft-core never sees snapshot
//! bytes, so the adapter plays the driver and the application. A node's
//! application may take a snapshot at any index past its current one (a
//! timer per index, [`ModelTimer::Snapshot`], bounded per node by the
//! model); its data is the list of entries the node holds up to that index
//! ([`SnapshotData`]), kept with the snapshot's metadata in the node's
//! [`Durable`] part. An `InstallSnapshot` travels with the leader's data
//! ([`Msg::Snapshot`]); the receiver installs the data in the same atomic
//! write as the metadata raft-core records (a crash between the two would
//! leave data that no metadata names, which is the state before). On
//! `RestoreSnapshot` (an install, or a recovery) the application's state is
//! replaced by the data.
//!
//! Background writes (thesis §10.2.1): a leader's own entries and a
//! candidate's vote come as `Output::PersistAsync`. The adapter queues them
//! ([`Writing`]); a timer ([`ModelTimer::Written`]) makes the oldest one
//! durable at any moment, saving it and feeding raft-core its
//! `Input::Persisted`. A `Persist` makes every queued write durable first
//! (writes reach the disk in order), and a crash loses what is queued.
//!
//! Model clients (for the `kv` model, or `--proposals clients`) are actors of
//! the same type, so that one [`ActorModel`](stateright::actor::ActorModel)
//! holds both.

use crate::kv::{self, ClientState, Command as KvCommand, Value};
use raft_core::{
    Change, Config, Entry, Input, Log, LogIndex, Membership, MemoryStore, Message, NodeId, Output, Payload, Persist,
    Proposal, ProposalId, ReadId, RoleKind, SnapshotMeta, State, Term, Timer,
};
use stateright::actor::{model_timeout, Actor, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// The stateright id of raft node `id`. Users see raft-core's ids, which
/// count from 1 (`n1`, `n2`, `n3`, as in raft-core's examples and
/// raft-tokio); stateright's actors count from 0.
pub fn actor_id(id: NodeId) -> Id {
    Id::from(server_index(id))
}

/// The raft node id of stateright actor `id` (one more).
pub fn node_id(id: Id) -> NodeId {
    node_at(usize::from(id))
}

/// The raft node id of the server at position `i` of the model's actors
/// (and of `actor_states`, `actor_storages`, `crashed`): `n{i + 1}`.
pub fn node_at(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

/// The position among the model's actors of the server with raft id `id`.
pub fn server_index(id: NodeId) -> usize {
    (id.0 as usize).checked_sub(1).expect("raft node ids count from 1")
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
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
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
    /// A raft-core `InstallSnapshot`, server to server, with the data of the
    /// snapshot it names: the driver moves the data (raft-core's messages
    /// carry metadata only).
    Snapshot(Arc<Message>, Arc<SnapshotData>),
}

/// Hashed by hand so that hashing a `Raft` message, which the checker does
/// for every message in flight in every state, stays one inlined call: an
/// `InstallSnapshot` hashes its fields, not the whole `Message` again.
impl std::hash::Hash for Msg {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Msg::Raft(m) => m.hash(h),
            Msg::Put(v) => v.hash(h),
            Msg::GetOk(v, i) => (v, i).hash(h),
            Msg::Transfer(target) => target.hash(h),
            Msg::Snapshot(m, data) => {
                if let Message::InstallSnapshot(install) = &**m {
                    install.hash(h);
                }
                data.hash(h);
            }
            Msg::PutOk | Msg::Get => {}
        }
    }
}

impl Msg {
    /// The raft-core message this carries, if it is one between servers.
    pub fn raft(&self) -> Option<&Message> {
        match self {
            Msg::Raft(m) | Msg::Snapshot(m, _) => Some(m),
            _ => None,
        }
    }
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
            Msg::Snapshot(m, data) => write!(f, "{m:?} data {:?}", data.entries),
        }
    }
}

/// A snapshot's data as the model's application keeps it: every entry up to
/// `index`, as the node that took the snapshot held them (`entries[k]` is
/// the entry at index `k + 1`). The application's state (the commands
/// applied, the kv register) is a function of it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotData {
    /// The last index covered.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The entries at indexes `1..=index`.
    pub entries: Vec<Entry>,
}

impl SnapshotData {
    /// Whether this is the data `meta` names (its index and term).
    pub fn is_named_by(&self, meta: &SnapshotMeta) -> bool {
        self.index == meta.index && self.term == meta.term
    }

    /// The same data with every command's bytes replaced by `command(bytes)`.
    pub fn map_commands(&self, command: &dyn Fn(&[u8]) -> Vec<u8>) -> SnapshotData {
        let entries = self.entries.iter().map(|e| map_entry(e, command)).collect();
        SnapshotData { entries, ..self.clone() }
    }
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data {}@{} {:?}", self.index, self.term, self.entries)
    }
}

/// An entry with its command's bytes replaced by `command(bytes)`.
pub fn map_entry(e: &Entry, command: &dyn Fn(&[u8]) -> Vec<u8>) -> Entry {
    match &e.payload {
        Payload::Noop | Payload::Membership(_) => e.clone(),
        Payload::Command(data) => Entry::command(e.term, command(data)),
    }
}

/// What a server keeps on disk: raft-core's one in-memory store of
/// persists (term and vote, membership, snapshot metadata, log), and the
/// driver's part: the data of the snapshot the store records, and how many
/// snapshots this node's application has taken (the model's bound, as a
/// snapshot file's sequence number would count them).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    /// raft-core's persists.
    pub raft: MemoryStore,
    /// The data of `raft.snapshot`, if any.
    pub snapshot_data: Option<Arc<SnapshotData>>,
    /// Snapshots taken by this node's application so far.
    pub snapshots_taken: u8,
}

impl Durable {
    /// An empty store: what a brand-new node has.
    pub fn new() -> Durable {
        Durable::default()
    }

    /// What a correct driver has stored for this server state.
    pub fn of(s: &ServerState) -> Durable {
        Durable {
            raft: MemoryStore::of(&s.raft),
            snapshot_data: s.snapshot_data().cloned(),
            snapshots_taken: s.snapshots_taken(),
        }
    }

    /// Every entry this store holds, snapshot included (see [`held`]).
    pub fn held(&self) -> Option<Cow<'_, [Entry]>> {
        held(&self.raft.log, self.snapshot_data.as_deref())
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raft)?;
        if let Some(data) = &self.snapshot_data {
            write!(f, " {data:?}")?;
        }
        Ok(())
    }
}

/// Every entry a node holds, from index 1: its snapshot's data up to the
/// log's compaction point, then its log (`[k]` is the entry at index
/// `k + 1`). Borrowed when nothing is compacted; `None` when the log is
/// compacted past the data (a driver that lost its snapshot data, which
/// Persist Before Send reports).
#[inline]
pub fn held<'a>(log: &'a Log, data: Option<&'a SnapshotData>) -> Option<Cow<'a, [Entry]>> {
    let compacted = log.compacted_index().0 as usize;
    if compacted == 0 {
        return Some(Cow::Borrowed(log.entries()));
    }
    let prefix = data.filter(|d| d.entries.len() >= compacted)?;
    let mut entries = Vec::with_capacity(compacted + log.len());
    entries.extend_from_slice(&prefix.entries[..compacted]);
    entries.extend_from_slice(log.entries());
    Some(Cow::Owned(entries))
}

/// The timers of a server in the model: raft-core's, and the application's
/// decision to take a snapshot at an index (armed for every index past the
/// node's snapshot up to its last index, while the model's bound allows;
/// raft-core refuses those it must, and the refusal changes nothing).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelTimer {
    /// A raft-core timer.
    Raft(Timer),
    /// The application takes a snapshot at this index.
    Snapshot(LogIndex),
    /// The oldest background write is durable (armed while one is queued).
    Written,
    /// The operator asks this server for a membership change (armed on
    /// every server, for every change the model allows, while the model's
    /// bound on changes allows; see `Server::operator_change`).
    Change(OperatorChange),
}

/// A membership change the model's operator may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperatorChange {
    /// Add this server as a learner.
    AddLearner(NodeId),
    /// Promote this learner to voter.
    Promote(NodeId),
    /// Remove this member.
    Remove(NodeId),
}

impl OperatorChange {
    /// Every change about the servers `nodes`.
    pub fn all(nodes: impl Iterator<Item = NodeId>) -> Vec<OperatorChange> {
        nodes
            .flat_map(|n| [OperatorChange::AddLearner(n), OperatorChange::Promote(n), OperatorChange::Remove(n)])
            .collect()
    }

    /// The raft-core change.
    pub fn change(self) -> Change {
        match self {
            OperatorChange::AddLearner(id) => Change::AddLearner { id, address: String::new() },
            OperatorChange::Promote(id) => Change::Promote(id),
            OperatorChange::Remove(id) => Change::Remove(id),
        }
    }

    /// Whether the change makes sense in `membership` (the model's
    /// operator asks only for those; raft-core refuses the others anyway).
    pub fn applies_to(self, membership: &Membership) -> bool {
        membership.changed(&self.change()).is_ok()
    }

    /// The input that asks for it.
    pub fn input(self) -> Input {
        Input::ChangeMembership { id: ProposalId(0), change: self.change() }
    }
}

impl fmt::Debug for ModelTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelTimer::Raft(t) => write!(f, "{t:?}"),
            ModelTimer::Snapshot(i) => write!(f, "TakeSnapshot({i})"),
            ModelTimer::Written => write!(f, "Written"),
            ModelTimer::Change(c) => write!(f, "Operator{c:?}"),
        }
    }
}

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
    /// A step recorded a snapshot (`Persist::Snapshot`) whose data the
    /// driver did not have, or asked to send or restore one it does not hold.
    pub snapshot_without_data: bool,
    /// The application applied a command at an index where it had applied
    /// a different one earlier in this lifetime (a restored snapshot, or a
    /// delivery after one, replaced what it had applied).
    pub applied_changed: bool,
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
    /// What the application keeps about snapshots; `None` until it has
    /// something to keep (always, in a model without snapshots), so that a
    /// model without them pays one pointer per server.
    pub snapshots: Option<Box<Snapshots>>,
    /// Background writes not yet durable; `None` when there are none (then
    /// the storage is what `Durable::of` this state says).
    pub writing: Option<Box<Writing>>,
}

/// A server's background writes in progress (`Output::PersistAsync`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Writing {
    /// What the storage holds meanwhile.
    pub disk: Durable,
    /// The writes not yet durable, oldest first, each with the completion
    /// to report (`Input::Persisted`).
    pub queue: Vec<(Persist, Input)>,
}

/// What a server's application keeps about snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshots {
    /// The data of the snapshot raft-core records (`raft.snapshot()`): the
    /// application's copy, which it sends with an `InstallSnapshot`.
    pub data: Option<Arc<SnapshotData>>,
    /// Snapshots taken by this node's application so far (as its storage
    /// counts them, across crashes).
    pub taken: u8,
    /// Every command the application applied in this lifetime, by index
    /// (from deliveries and restored snapshots), to check that none is ever
    /// replaced. In a correct run it is a function of what the node holds
    /// and `delivered`, so it adds no states.
    pub applied: Vec<(LogIndex, Entry)>,
    /// How this lifetime's application state was restored from a snapshot.
    pub restored: Restored,
}

/// Whether a server's application restored a snapshot in this lifetime, and
/// from where (for the `Sometimes` properties that show snapshots at work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Restored {
    /// From its own storage, when it recovered after a crash.
    pub at_recovery: bool,
    /// From a leader's `InstallSnapshot`.
    pub by_install: bool,
}

impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raft)?;
        if self.register != 0 || !self.awaiting.is_empty() {
            write!(f, " reg {} awaiting {:?}", self.register, self.awaiting)?;
        }
        if let Some(data) = self.snapshot_data() {
            write!(f, " {data:?}")?;
        }
        if let Some(w) = &self.writing {
            write!(f, " writing {}", w.queue.len())?;
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
    /// Whether background writes complete in steps of their own (see
    /// `ModelConfig::background_writes`).
    pub background_writes: bool,
    /// How many snapshots this node's application may take (0: none; see
    /// `ModelConfig::snapshots`).
    pub snapshots: u8,
    /// The most configuration entries a leader's log may hold for the
    /// model's operator to ask it for another change (0: no changes).
    pub max_changes: u8,
    /// The changes the operator may ask for.
    pub changes: Vec<OperatorChange>,
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
    type Timer = ModelTimer;
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

    fn on_timeout(&self, _id: Id, state: &mut Cow<NodeState>, timer: &ModelTimer, o: &mut Out<Self>) {
        if let (Node::Server(server), NodeState::Server(s)) = (self, &**state) {
            let next = match *timer {
                ModelTimer::Raft(timer) => server.step(s, Input::Timeout(timer), o),
                ModelTimer::Snapshot(index) => server.take_snapshot(s, index, o),
                ModelTimer::Written => server.complete_write(s, o),
                ModelTimer::Change(c) => server.operator_change(s, c, o),
            };
            if let Some(next) = next {
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
                let mut store = durable.raft.clone();
                if self.switches.forget_vote_on_recovery {
                    store.hard.voted_for = None;
                }
                match State::recover(&self.config, store, LogIndex(0)) {
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
        if let Some(durable) = storage.as_ref().filter(|d| d.snapshot_data.is_some() || d.snapshots_taken > 0) {
            let snapshots = state.snapshots_mut();
            snapshots.data.clone_from(&durable.snapshot_data);
            snapshots.taken = durable.snapshots_taken;
        }
        if outputs.iter().any(|out| matches!(out, Output::RestoreSnapshot(_))) {
            state.snapshots_mut().restored.at_recovery = true;
        }
        let before = state.clone();
        // A fresh start's outputs persist the membership first, so that a
        // crash before any other persist recovers (and does not start, and
        // propose, anew).
        self.execute(&mut state, &before, outputs, None, o);
        if let (None, Some(data)) = (storage, &self.propose_at_start) {
            let proposal = Proposal { id: ProposalId(1), data: data.clone() };
            let mut outputs = Vec::new();
            let before = state.clone();
            state.raft.step(&self.config, Input::Propose(vec![proposal]), &mut outputs);
            self.execute(&mut state, &before, outputs, None, o);
        }
        if let (None, Some(target)) = (storage, self.transfer_at_start) {
            o.send(id, Msg::Transfer(target));
        }
        for index in self.snapshot_offers(&state) {
            o.set_timer(ModelTimer::Snapshot(LogIndex(index)), model_timeout());
        }
        if self.max_changes > 0 {
            for &c in &self.changes {
                o.set_timer(ModelTimer::Change(c), model_timeout());
            }
        }
        state
    }

    /// The operator asks this server for `change`. It asks only a leader
    /// whose log holds fewer configuration entries than the model's bound,
    /// and only for a change that makes sense in the leader's membership;
    /// raft-core may still refuse it (one change at a time, or no entry of
    /// the leader's term committed yet). Whatever happens, the timer stays
    /// armed: when nothing changed, the state stays borrowed and stateright
    /// prunes the transition.
    pub(crate) fn operator_change(
        &self,
        s: &ServerState,
        change: OperatorChange,
        o: &mut Out<Node>,
    ) -> Option<ServerState> {
        o.set_timer(ModelTimer::Change(change), model_timeout());
        if !self.operator_asks(s, change) {
            return None;
        }
        self.step(s, change.input(), o)
    }

    /// Whether the operator asks this server for `change` now: it leads,
    /// its log holds fewer configuration entries than the model's bound,
    /// and the change makes sense in its membership.
    pub(crate) fn operator_asks(&self, s: &ServerState, change: OperatorChange) -> bool {
        let entries = s.raft.log().entries().iter().filter(|e| matches!(e.payload, Payload::Membership(_))).count();
        s.raft.is_leader() && entries < usize::from(self.max_changes) && change.applies_to(s.raft.membership())
    }

    fn on_msg(&self, s: &ServerState, src: Id, msg: Msg, o: &mut Out<Node>) -> Option<ServerState> {
        match msg {
            Msg::Raft(message) => {
                let message = Arc::unwrap_or_clone(message);
                self.step(s, Input::Receive { from: node_id(src), message }, o)
            }
            // The driver installs the data, then hands the message to the
            // core: both land in the one write that records the snapshot.
            Msg::Snapshot(message, data) => {
                let message = Arc::unwrap_or_clone(message);
                self.step_with(s, Input::Receive { from: node_id(src), message }, Some(data), o)
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
        self.step_with(s, input, None, o)
    }

    /// As [`Server::step`], with the data of a snapshot received with the
    /// input (an `InstallSnapshot`), which is stored if raft-core records it.
    fn step_with(
        &self,
        s: &ServerState,
        input: Input,
        incoming: Option<Arc<SnapshotData>>,
        o: &mut Out<Node>,
    ) -> Option<ServerState> {
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
            // Check-quorum's lease: a vote request dropped by a node that
            // hears from a live leader (thesis §6.2) is one exception; an
            // answer from a node that is no member (one removed) is the
            // other: dropped, as if lost.
            let in_lease = outputs
                .iter()
                .any(|o| matches!(o, Output::Dropped(raft_core::Dropped::InLease | raft_core::Dropped::UnknownSender)));
            next.broken.kept_old_term |=
                !in_lease && higher_term.is_some_and(|t| next.raft.term() < t || next.raft.is_leader());
            let starts_pre_vote = next.raft.role_kind() == RoleKind::PreCandidate
                && (s.raft.role_kind() != RoleKind::PreCandidate || election_timeout);
            next.broken.pre_vote_changed_term |=
                (answers_pre_vote || starts_pre_vote) && next.raft.hard_state() != s.raft.hard_state();
            next.broken.acted_on_stale_term |= stale_rpc && (next.raft != s.raft || outputs.iter().any(grants));
            if incoming.is_some() && outputs.iter().any(|o| matches!(o, Output::RestoreSnapshot(_))) {
                next.snapshots_mut().restored.by_install = true;
            }
            let mut written = self.instant_completion(&outputs);
            self.execute(&mut next, s, outputs, incoming, &mut local);
            // An instant disk reports each background write at once (a
            // completion may start another: a candidate that wins appends).
            while let Some(report) = written.take() {
                let before = next.clone();
                let mut outputs = Vec::new();
                next.raft.step(config, report, &mut outputs);
                written = self.instant_completion(&outputs);
                self.execute(&mut next, &before, outputs, None, &mut local);
            }
            next.broken.overwrote_as_leader |= overwrote_own_entries(s, &next);
            next
        }));
        let next = match attempt {
            Ok(next) => {
                o.append(&mut local);
                next
            }
            Err(_) => panicked(s),
        };
        if next == *s {
            return None;
        }
        self.rearm_snapshot_timers(s, &next, o);
        Some(next)
    }

    /// The application takes a snapshot at `index`: it reports what it has
    /// applied (`Input::Applied`, as an application reports its progress
    /// with each snapshot), builds the data from what the node holds up to
    /// `index`, and says so (`Input::SnapshotTaken`). When raft-core records
    /// no snapshot (it refuses the index, or has a newer one), nothing
    /// happens: the state stays borrowed and the timer stays armed, so
    /// stateright prunes the transition.
    fn take_snapshot(&self, s: &ServerState, index: LogIndex, o: &mut Out<Node>) -> Option<ServerState> {
        if s.broken.panicked || s.broken.unrecoverable {
            return None;
        }
        let refused = |o: &mut Out<Node>| {
            o.set_timer(ModelTimer::Snapshot(index), model_timeout());
            None
        };
        let Some(data) = s.data_through(index) else { return refused(o) };
        let mut local = Out::new();
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut next = s.clone();
            let mut outputs = Vec::new();
            if s.delivered > next.raft.applied_index() {
                next.raft.step(&self.config, Input::Applied(s.delivered), &mut outputs);
            }
            next.raft.step(&self.config, Input::SnapshotTaken(index), &mut outputs);
            if !outputs.iter().any(|o| matches!(o, Output::Persist(Persist::Snapshot(_)))) {
                return None;
            }
            next.snapshots_mut().taken += 1;
            self.execute(&mut next, s, outputs, Some(Arc::new(data)), &mut local);
            next.broken.overwrote_as_leader |= overwrote_own_entries(s, &next);
            Some(next)
        }));
        let next = match attempt {
            Ok(None) => return refused(o),
            Ok(Some(next)) => {
                o.append(&mut local);
                next
            }
            Err(_) => panicked(s),
        };
        self.rearm_snapshot_timers(s, &next, o);
        Some(next)
    }

    /// Without background writes: the completion to report at once for the
    /// last background write of `outputs`, if any.
    fn instant_completion(&self, outputs: &[Output]) -> Option<Input> {
        if self.background_writes {
            return None;
        }
        outputs.iter().rev().find_map(|o| match o {
            Output::PersistAsync { term, index, .. } => Some(Input::Persisted { term: *term, index: *index }),
            _ => None,
        })
    }

    /// The oldest background write of `s` is durable: it is saved, and its
    /// completion fed to raft-core. The timer is re-armed while writes stay
    /// queued.
    fn complete_write(&self, s: &ServerState, o: &mut Out<Node>) -> Option<ServerState> {
        if s.broken.panicked || s.broken.unrecoverable {
            return None;
        }
        let w = s.writing.as_ref()?;
        let mut next = s.clone();
        let mut disk = w.disk.clone();
        let (persist, report) = w.queue[0].clone();
        if disk.raft.apply(&persist).is_err() {
            // Queued in order after what the disk holds: only a broken
            // contract gets here.
            return Some(panicked(s));
        }
        o.save(Arc::new(disk.clone()));
        let queue = w.queue[1..].to_vec();
        if queue.is_empty() {
            next.writing = None;
        } else {
            next.writing = Some(Box::new(Writing { disk, queue }));
            o.set_timer(ModelTimer::Written, model_timeout());
        }
        Some(self.step(&next, report, o).unwrap_or(next))
    }

    /// The indexes at which the application of a node in state `s` may take
    /// a snapshot: past its snapshot, up to its last index, while the
    /// model's bound allows. (Up to the last index, not the applied one, so
    /// that a core that accepts too much, `Fault::CompactPastCommit`, is
    /// given the chance; a correct one refuses, and that changes nothing.)
    fn snapshot_offers(&self, s: &ServerState) -> Range<u64> {
        let exhausted = s.snapshots_taken() >= self.snapshots || s.broken.panicked || s.broken.unrecoverable;
        if exhausted {
            return 0..0;
        }
        let after = s.raft.snapshot().map_or(0, |m| m.index.0);
        after + 1..s.raft.log().last_index().0 + 1
    }

    /// Arms the snapshot timers `next` offers and cancels those `before`
    /// offered and `next` does not.
    fn rearm_snapshot_timers(&self, before: &ServerState, next: &ServerState, o: &mut Out<Node>) {
        if self.snapshots == 0 {
            return;
        }
        let (old, new) = (self.snapshot_offers(before), self.snapshot_offers(next));
        for index in old.clone().filter(|i| !new.contains(i)) {
            o.cancel_timer(ModelTimer::Snapshot(LogIndex(index)));
        }
        for index in new.filter(|i| !old.contains(i)) {
            o.set_timer(ModelTimer::Snapshot(LogIndex(index)), model_timeout());
        }
    }

    /// Executes outputs in order: persists are applied to what was durable
    /// before the step (what `before` had; a correct earlier step stored
    /// exactly that) and saved once, as one atomic write, before any send of the
    /// same step is executed, together with the data of a snapshot the step
    /// records (`incoming`: taken by the application or received from a
    /// leader); sends to the network (an `InstallSnapshot` with this node's
    /// snapshot data), timers to stateright's timers, deliveries and
    /// restored snapshots to the kv state machine. A persist that follows a
    /// send in the list is marked as broken (`Broken::persisted_after_send`);
    /// deliveries are checked against the node's log and commit index.
    fn execute(
        &self,
        state: &mut ServerState,
        before: &ServerState,
        outputs: Vec<Output>,
        incoming: Option<Arc<SnapshotData>>,
        o: &mut Out<Node>,
    ) {
        let persists = |out: &Output| matches!(out, Output::Persist(_) | Output::PersistAsync { .. });
        let first_send = outputs.iter().position(|out| matches!(out, Output::Send { .. }));
        if first_send.is_some_and(|i| outputs[i..].iter().any(persists)) {
            state.broken.persisted_after_send = true;
        }
        let mut queue = before.writing.as_ref().map(|w| w.queue.clone()).unwrap_or_default();
        let mut disk = None;
        for out in &outputs {
            match out {
                Output::PersistAsync { persist, term, index } if self.background_writes => {
                    queue.push((persist.clone(), Input::Persisted { term: *term, index: *index }));
                }
                // Writes reach the disk in order: the queued ones are durable
                // once this one is. (Without background writes, a
                // `PersistAsync` is written here and reported by the caller.)
                Output::Persist(p) | Output::PersistAsync { persist: p, .. } => {
                    let durable = disk.get_or_insert_with(|| before.disk().into_owned());
                    for p in queue.drain(..).map(|(queued, _)| queued).chain([p.clone()]) {
                        if let Err(refused) = durable.raft.apply(&p) {
                            panic!("raft-core broke the persist contract: {refused}");
                        }
                    }
                }
                _ => {}
            }
        }
        let was_writing = before.writing.is_some();
        if let Some(mut durable) = disk {
            let recorded = outputs.iter().rev().find_map(|out| match out {
                Output::Persist(Persist::Snapshot(meta)) => Some(meta),
                _ => None,
            });
            if let Some(meta) = recorded {
                match incoming.filter(|data| data.is_named_by(meta)) {
                    Some(data) => durable.snapshot_data = Some(data),
                    None => state.broken.snapshot_without_data = true,
                }
            }
            durable.snapshots_taken = state.snapshots_taken();
            if durable.snapshot_data.as_ref() != state.snapshot_data() {
                state.snapshots_mut().data.clone_from(&durable.snapshot_data);
            }
            o.save(Arc::new(durable.clone()));
            state.writing = (!queue.is_empty()).then(|| Box::new(Writing { disk: durable, queue }));
        } else if !queue.is_empty() {
            let disk = before.disk().into_owned();
            state.writing = Some(Box::new(Writing { disk, queue }));
        }
        match (was_writing, state.writing.is_some()) {
            (false, true) => o.set_timer(ModelTimer::Written, model_timeout()),
            (true, false) => o.cancel_timer(ModelTimer::Written),
            _ => {}
        }
        for output in outputs {
            match output {
                Output::Persist(_) | Output::PersistAsync { .. } => {}
                Output::Send { to, message: Message::InstallSnapshot(m) } => {
                    match state.snapshot_data().filter(|data| data.is_named_by(&m.snapshot)).cloned() {
                        Some(data) => o.send(actor_id(to), Msg::Snapshot(Arc::new(Message::InstallSnapshot(m)), data)),
                        None => state.broken.snapshot_without_data = true,
                    }
                }
                Output::Send { to, message } => o.send(actor_id(to), Msg::Raft(Arc::new(message))),
                Output::SetTimer { timer: Timer::Heartbeat, .. } if !self.heartbeats => {}
                Output::SetTimer { timer, .. } => o.set_timer(ModelTimer::Raft(timer), model_timeout()),
                Output::CancelTimer(timer) => o.cancel_timer(ModelTimer::Raft(timer)),
                Output::Deliver(committed) => {
                    for c in committed {
                        state.broken.bad_delivery |= !delivers_next(state, &c);
                        state.delivered = state.delivered.max(c.index);
                        if self.snapshots > 0 {
                            state.record_applied(c.index, Entry::command(c.term, c.data.clone()));
                        }
                        apply_command(state, &c, o);
                    }
                }
                // Deliveries before it in this list are applied already.
                Output::ReadReady { id, index } => o.send(Id::from(id.0 as usize), Msg::GetOk(state.register, index)),
                Output::RestoreSnapshot(meta) => self.restore(state, &meta),
                // The client's read stays unanswered (as over a lossy network).
                Output::ReadRejected { .. }
                | Output::LeaderChanged { .. }
                | Output::ProposalAccepted { .. }
                | Output::ProposalRejected { .. }
                | Output::TransferRejected { .. }
                | Output::FollowerRegressed { .. }
                | Output::ChangeAccepted { .. }
                | Output::ChangeRejected { .. }
                | Output::MembershipCommitted { .. }
                | Output::Dropped(_) => {}
            }
        }
    }

    /// The application replaces its state by the data of the snapshot
    /// `meta` names: what it applied is now exactly the data's commands.
    fn restore(&self, state: &mut ServerState, meta: &SnapshotMeta) {
        let Some(data) = state.snapshot_data().filter(|data| data.is_named_by(meta)).cloned() else {
            state.broken.snapshot_without_data = true;
            return;
        };
        if self.snapshots > 0 {
            for (k, entry) in data.entries.iter().enumerate() {
                if matches!(entry.payload, Payload::Command(_)) {
                    state.record_applied(LogIndex(k as u64 + 1), entry.clone());
                }
            }
        }
        state.delivered = meta.index;
        state.register = register_of(&data.entries);
    }
}

impl ServerState {
    /// A server that has just started or recovered.
    pub fn new(raft: State) -> ServerState {
        ServerState {
            raft,
            broken: Broken::default(),
            delivered: LogIndex(0),
            register: 0,
            awaiting: BTreeSet::new(),
            snapshots: None,
            writing: None,
        }
    }

    /// What this server's storage holds: its state's durable part, less
    /// the background writes still running.
    pub fn disk(&self) -> Cow<'_, Durable> {
        match &self.writing {
            Some(w) => Cow::Borrowed(&w.disk),
            None => Cow::Owned(Durable::of(self)),
        }
    }

    /// The data of the snapshot raft-core records, as the application keeps it.
    pub fn snapshot_data(&self) -> Option<&Arc<SnapshotData>> {
        self.snapshots.as_ref().and_then(|s| s.data.as_ref())
    }

    /// Snapshots this node's application has taken so far.
    pub fn snapshots_taken(&self) -> u8 {
        self.snapshots.as_ref().map_or(0, |s| s.taken)
    }

    /// How this lifetime's application state was restored from a snapshot.
    pub fn restored(&self) -> Restored {
        self.snapshots.as_ref().map_or(Restored::default(), |s| s.restored)
    }

    /// What the application keeps about snapshots, made on first use.
    fn snapshots_mut(&mut self) -> &mut Snapshots {
        self.snapshots.get_or_insert_with(Box::default)
    }

    /// Every entry this node holds in memory, snapshot included (see [`held`]).
    pub fn held(&self) -> Option<Cow<'_, [Entry]>> {
        held(self.raft.log(), self.snapshot_data().map(|d| &**d))
    }

    /// The data of a snapshot at `index` of what this node holds, if it
    /// holds every entry up to it.
    fn data_through(&self, index: LogIndex) -> Option<SnapshotData> {
        let held = self.held()?;
        let n = usize::try_from(index.0).ok().filter(|&n| n >= 1 && n <= held.len())?;
        Some(SnapshotData { index, term: held[n - 1].term, entries: held[..n].to_vec() })
    }

    /// Records that the application applied `entry` at `index`; marks the
    /// node if it had applied a different command there.
    fn record_applied(&mut self, index: LogIndex, entry: Entry) {
        let applied = &mut self.snapshots_mut().applied;
        let changed = match applied.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => applied[at].1 != entry,
            Err(at) => {
                applied.insert(at, (index, entry));
                false
            }
        };
        self.broken.applied_changed |= changed;
    }
}

/// The kv register after applying `entries` in order: the last write's value.
fn register_of(entries: &[Entry]) -> Value {
    entries.iter().fold(0, |register, e| match &e.payload {
        Payload::Command(data) => match KvCommand::decode(data) {
            Some(KvCommand::Write { value, .. }) => value,
            _ => register,
        },
        Payload::Noop | Payload::Membership(_) => register,
    })
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
/// changed an entry of what it holds (Leader Append-Only). Compaction moves
/// entries into the snapshot's data; it removes none.
fn overwrote_own_entries(before: &ServerState, after: &ServerState) -> bool {
    let (b, a) = (&before.raft, &after.raft);
    if !(b.is_leader() && a.is_leader() && b.term() == a.term()) {
        return false;
    }
    if b.log().compacted_index() == LogIndex(0) && a.log().compacted_index() == LogIndex(0) {
        let (b, a) = (b.log().entries(), a.log().entries());
        return a.len() < b.len() || a[..b.len()] != *b;
    }
    match (before.held(), after.held()) {
        (Some(b), Some(a)) => a.len() < b.len() || a[..b.len()] != *b,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// Whether delivering `c` now is right: it is the next command the node
/// holds after the last one applied in this lifetime (only no-ops in
/// between, which may have been compacted into a snapshot), its log holds
/// exactly it there, and it is committed.
fn delivers_next(state: &ServerState, c: &raft_core::Committed) -> bool {
    let log = state.raft.log();
    let held = log.get(c.index).is_some_and(|e| e.term == c.term && e.payload == Payload::Command(c.data.clone()));
    let holds = state.held().unwrap_or_default();
    let noop_at = |i: u64| holds.get(i as usize - 1).is_some_and(|e| !matches!(e.payload, Payload::Command(_)));
    let skipped_only_noops = (state.delivered.0 + 1..c.index.0).all(noop_at);
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

/// The state a server is left in when raft-core panicked on a step from
/// `s`: unchanged, marked panicked (the No Panic property fails).
fn panicked(s: &ServerState) -> ServerState {
    let mut next = s.clone();
    next.broken.panicked = true;
    next
}
