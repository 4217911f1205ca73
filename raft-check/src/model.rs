//! The model: servers (and optionally clients) on a stateright network,
//! the history the properties need, and the bounds that keep it finite.

use crate::actor::{node_at, node_id, Msg, Node, NodeState, OperatorChange, Server, Switches};
use crate::kv::{self, Op, Value};
use crate::properties;
use raft_core::{Config, Fault, LogIndex, Membership, Message, NodeId, Term};
use stateright::actor::{ActorModel, ActorModelState, Envelope, Id, LossyNetwork, Network};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// Which model to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Raft servers; the paper's properties.
    Raft,
    /// Raft servers and clients of a replicated register; the paper's
    /// properties and linearizability.
    Kv,
}

/// Where client commands come from in the raft model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proposals {
    /// Each server proposes one value when it first starts (raft-lite's model).
    Start,
    /// Model client actors, one write each.
    Clients,
    /// No commands: elections and no-op entries only.
    None,
}

/// The network semantics, named as stateright names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkKind {
    /// Messages race one another and each is delivered at most once.
    #[value(name = "unordered_nonduplicating")]
    UnorderedNonduplicating,
    /// Messages race one another and may be delivered more than once.
    #[value(name = "unordered_duplicating")]
    UnorderedDuplicating,
    /// Each directed flow between two actors is FIFO.
    #[value(name = "ordered")]
    Ordered,
}

/// Everything that defines one model. The raft-core configurations are
/// built from it and live in the actors, never in the states.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Which model.
    pub kind: ModelKind,
    /// Number of Raft servers.
    pub servers: usize,
    /// Where commands come from (raft model; the kv model always has clients).
    pub proposals: Proposals,
    /// Number of model clients (kv model, or `Proposals::Clients`).
    pub clients: usize,
    /// Network semantics.
    pub network: NetworkKind,
    /// Whether the network may lose messages.
    pub lossy: bool,
    /// How many servers may be down at once (each may recover).
    pub crashes: usize,
    /// Bound: no state where a server's term exceeds this.
    pub max_term: u64,
    /// Bound: no state where a server's log holds more entries than this.
    pub max_log: usize,
    /// Whether leaders' heartbeat timers fire. Heartbeats carry the commit
    /// index to followers and retry lost appends; without them followers
    /// learn commits only with the next append, and the state space is
    /// much smaller.
    pub heartbeats: bool,
    /// Whether leaders send one entry per AppendEntries with at most one
    /// entry in flight per follower, so that a follower can hold part of a
    /// leader's log and the commit rule's term check, the follower's commit
    /// bound and the match index of an acknowledgement decide something.
    /// Off, a leader sends its whole log at once (the runtime's default of
    /// 64 entries per message covers every model log).
    pub split_appends: bool,
    /// Pre-vote (thesis §9.6): a node whose election timer fires asks
    /// whether it could win before it changes its term.
    pub pre_vote: bool,
    /// Check-quorum (thesis §6.2): a leader steps down when a majority was
    /// not heard from in a period (its timer fires at any moment in the
    /// model), and a node that hears from a live leader ignores vote
    /// requests of higher terms.
    pub check_quorum: bool,
    /// Whether each server asks, once, to hand its leadership to the next
    /// server (thesis §3.10), by a message that may arrive at any moment.
    pub transfers: bool,
    /// How many snapshots each server's application may take (0: none, the
    /// default). Each may be taken at any index past the server's snapshot
    /// (raft-core refuses those it has not applied); with snapshots the
    /// servers keep no trailing entries (`Config::with_trailing_entries(0)`),
    /// so that every snapshot compacts the log, and a follower that lags
    /// behind it is caught up by an `InstallSnapshot`.
    pub snapshots: u8,
    /// Whether a leader's own entries and a candidate's vote are written in
    /// the background (thesis §10.2.1): each write becomes durable in a step
    /// of its own, which may come after sends, deliveries and crashes (a
    /// crash loses it). Off: the adapter completes each write within the
    /// step that asked for it, as a driver with an instant disk, which
    /// keeps the paths to the interesting states short.
    pub background_writes: bool,
    /// How many servers start as voters (0: all of them). The others start
    /// as learners of the initial membership.
    pub voters: usize,
    /// Membership changes (thesis §4): at most this many configuration
    /// entries in a leader's log for the model's operator to ask it for
    /// another change (0, the default: no changes). The operator asks any
    /// leader, at any moment, to add a server as a learner, promote a
    /// learner or remove a member.
    pub max_changes: u8,
    /// A rule of raft-core broken on purpose (the mutation harness).
    pub fault: Option<Fault>,
    /// Deliberate adapter bugs, for tests.
    pub switches: Switches,
    /// Adjusts every raft-core configuration (tests use it to inject a fault).
    pub config_hook: Option<fn(Config) -> Config>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Raft,
            servers: 3,
            proposals: Proposals::Start,
            clients: 2,
            network: NetworkKind::UnorderedNonduplicating,
            lossy: false,
            crashes: 1,
            max_term: 2,
            max_log: 3,
            heartbeats: true,
            split_appends: false,
            pre_vote: false,
            check_quorum: false,
            transfers: false,
            snapshots: 0,
            background_writes: false,
            voters: 0,
            max_changes: 0,
            fault: None,
            switches: Switches::default(),
            config_hook: None,
        }
    }
}

/// The model type checked by every mode.
pub type RaftModel = ActorModel<Node, ModelConfig, History>;
/// One state of the model.
pub type RaftState = ActorModelState<Node, History>;

/// What the properties need beyond the current state (stateright's
/// auxiliary history, updated as messages are sent and received).
#[derive(Clone, Debug, Default, PartialEq, Hash)]
pub struct History {
    /// Every (term, leader) that ever sent an AppendEntries. Every new
    /// leader sends one to each peer in the step that elects it, so this is
    /// every leader ever elected (in clusters of two or more), including
    /// leaders that have since crashed and lost their volatile state.
    /// Sorted, without repeats; a `Vec` because a `BTreeSet` allocates a
    /// whole node for its first element, in every state.
    pub leaders: Vec<(Term, NodeId)>,
    /// kv model: the clients' operations, for the linearizability check.
    pub register: Option<LinearizabilityTester<Id, Register<Value>>>,
    /// kv model: the highest commit index a leader has sent in an
    /// AppendEntries: every index up to it was committed by then.
    pub commit_sent: LogIndex,
    /// kv model: for each client's read in flight, `commit_sent` when it
    /// was issued. Its read index must be at least that (thesis §6.4).
    pub read_floors: Vec<(Id, LogIndex)>,
    /// kv model: a read was answered at a read index below its floor.
    pub stale_read_index: bool,
    /// Every (term, candidate) whose election a leadership transfer started
    /// (it sent a RequestVote marked as a transfer). Empty unless the model
    /// has transfers.
    pub transfer_elections: Vec<(Term, NodeId)>,
}

/// The command server `i` proposes at start: one ASCII letter, `a` for the
/// first server (`n1`).
pub fn start_value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8]
}

impl ModelConfig {
    /// The raft-core configuration of server `i`.
    pub fn raft_config(&self, i: usize) -> Config {
        let mut config = Config::new(node_at(i)).with_pre_vote(self.pre_vote).with_check_quorum(self.check_quorum);
        if self.split_appends {
            config = config
                .with_entries_per_append_max(1)
                .and_then(|c| c.with_inflight_entries_max(1))
                .expect("bounds of at least 1");
        }
        if self.snapshots > 0 {
            config = config.with_trailing_entries(0);
        }
        if let Some(fault) = self.fault {
            config = config.with_fault(fault);
        }
        match self.config_hook {
            Some(hook) => hook(config),
            None => config,
        }
    }

    /// The cluster's initial members: the first `voters` servers as voters
    /// (all of them when 0), the others as learners.
    pub fn membership(&self) -> Membership {
        let voters = if self.voters == 0 { self.servers } else { self.voters.min(self.servers) };
        Membership::with_learners((0..voters).map(node_at), (voters..self.servers).map(node_at))
            .expect("at least one server")
    }

    /// The number of client actors in this model.
    pub fn client_count(&self) -> usize {
        match (self.kind, self.proposals) {
            (ModelKind::Kv, _) | (ModelKind::Raft, Proposals::Clients) => self.clients,
            _ => 0,
        }
    }

    /// Whether every actor is a server (then the model is symmetric under
    /// renaming servers).
    pub fn servers_only(&self) -> bool {
        self.client_count() == 0
    }

    /// Builds the stateright model.
    pub fn into_model(self) -> RaftModel {
        let proposes_at_start = self.kind == ModelKind::Raft && self.proposals == Proposals::Start;
        let servers: Vec<Node> = (0..self.servers)
            .map(|i| {
                Node::Server(Server {
                    config: self.raft_config(i),
                    membership: self.membership(),
                    propose_at_start: proposes_at_start.then(|| start_value(i)),
                    transfer_at_start: self.transfers.then(|| node_at((i + 1) % self.servers)),
                    heartbeats: self.heartbeats,
                    background_writes: self.background_writes,
                    snapshots: self.snapshots,
                    max_changes: self.max_changes,
                    changes: OperatorChange::all((0..self.servers).map(node_at)),
                    switches: self.switches,
                })
            })
            .collect();
        let ops = match self.kind {
            ModelKind::Raft => vec![Op::Write],
            ModelKind::Kv => vec![Op::Write, Op::Read],
        };
        let server_count = self.servers;
        let clients: Vec<Node> = (0..self.client_count())
            .map(|_| Node::Client(kv::Client { ops: ops.clone(), servers: server_count }))
            .collect();
        let network = match self.network {
            NetworkKind::UnorderedNonduplicating => Network::new_unordered_nonduplicating([]),
            NetworkKind::UnorderedDuplicating => Network::new_unordered_duplicating([]),
            NetworkKind::Ordered => Network::new_ordered([]),
        };
        let history = History {
            leaders: Vec::new(),
            register: (self.kind == ModelKind::Kv).then(|| LinearizabilityTester::new(Register(0))),
            ..History::default()
        };
        let lossy = if self.lossy { LossyNetwork::Yes } else { LossyNetwork::No };
        let crashes = self.crashes;
        let model = ActorModel::new(self, history)
            .actors(servers)
            .actors(clients)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(crashes)
            .record_msg_out(record_out)
            .record_msg_in(record_in)
            .within_boundary(within_boundary);
        properties::add_all(model)
    }
}

fn record_out(cfg: &ModelConfig, history: &History, env: Envelope<&Msg>) -> Option<History> {
    match env.msg {
        Msg::Raft(m) => {
            if let Message::RequestVote(r) = &**m {
                let election = (r.term, node_id(env.src));
                if !r.transfer || history.transfer_elections.contains(&election) {
                    return None;
                }
                let mut next = history.clone();
                next.transfer_elections.push(election);
                next.transfer_elections.sort_unstable();
                return Some(next);
            }
            let Message::AppendEntries(append) = &**m else { return None };
            let leader = (m.term(), node_id(env.src));
            let new_leader = history.leaders.binary_search(&leader).err();
            // The commit index is tracked only where reads use it, so that
            // the raft model's states do not multiply.
            let new_commit = cfg.kind == ModelKind::Kv && append.leader_commit > history.commit_sent;
            if new_leader.is_none() && !new_commit {
                return None;
            }
            let mut next = history.clone();
            if let Some(at) = new_leader {
                next.leaders.insert(at, leader);
            }
            if new_commit {
                next.commit_sent = append.leader_commit;
            }
            Some(next)
        }
        Msg::Put(value) => invoke(history, env.src, RegisterOp::Write(*value)),
        Msg::Get => {
            let mut next = invoke(history, env.src, RegisterOp::Read)?;
            next.read_floors.retain(|&(client, _)| client != env.src);
            next.read_floors.push((env.src, history.commit_sent));
            Some(next)
        }
        _ => None,
    }
}

fn record_in(_cfg: &ModelConfig, history: &History, env: Envelope<&Msg>) -> Option<History> {
    let ret = match env.msg {
        Msg::PutOk => RegisterRet::WriteOk,
        Msg::GetOk(v, _) => RegisterRet::ReadOk(*v),
        _ => return None,
    };
    let mut next = history.clone();
    if let Msg::GetOk(_, index) = env.msg {
        if let Some(at) = next.read_floors.iter().position(|&(client, _)| client == env.dst) {
            let (_, floor) = next.read_floors.remove(at);
            next.stale_read_index |= *index < floor;
        }
    }
    // An invalid history (an answer nobody asked for) makes the tester
    // report inconsistency, which the property then shows.
    let _ = next.register.as_mut()?.on_return(env.dst, ret);
    Some(next)
}

fn invoke(history: &History, client: Id, op: RegisterOp<Value>) -> Option<History> {
    let mut next = history.clone();
    let _ = next.register.as_mut()?.on_invoke(client, op);
    Some(next)
}

/// The bounds that make every model finite: no term above `max_term`, no
/// log longer than `max_log` (its last index: compacted entries count), and
/// at most one copy of any message in flight
/// (a leader's heartbeat timer can fire at any time; a second identical
/// heartbeat in flight adds nothing a first one cannot do, and redelivery
/// is what `unordered_duplicating` is for).
pub fn within_boundary(cfg: &ModelConfig, state: &RaftState) -> bool {
    let servers_ok = state
        .actor_states
        .iter()
        .filter_map(|s| s.server())
        .all(|s| s.raft.term().0 <= cfg.max_term && s.raft.log().last_index().0 <= cfg.max_log as u64);
    servers_ok && no_duplicate_in_flight(&state.network)
}

fn no_duplicate_in_flight(network: &Network<Msg>) -> bool {
    match network {
        Network::UnorderedNonDuplicating(multiset) => multiset.values().all(|&n| n <= 1),
        Network::UnorderedDuplicating(..) => true,
        Network::Ordered(flows) => flows
            .values()
            .all(|flow| flow.iter().enumerate().all(|(i, m)| !flow.iter().skip(i + 1).any(|other| other == m))),
    }
}

/// Every message in flight, each copy once. (stateright 0.31's
/// `Network::iter_all` never advances within an ordered flow, and yields
/// one copy too many of a repeated unordered message, so it is not used.)
pub fn in_flight(network: &Network<Msg>) -> Box<dyn Iterator<Item = Envelope<&Msg>> + '_> {
    match network {
        Network::UnorderedDuplicating(set, _) => {
            Box::new(set.iter().map(|e| Envelope { src: e.src, dst: e.dst, msg: &e.msg }))
        }
        Network::UnorderedNonDuplicating(multiset) => Box::new(
            multiset
                .iter()
                .flat_map(|(e, &count)| std::iter::repeat_n(Envelope { src: e.src, dst: e.dst, msg: &e.msg }, count)),
        ),
        Network::Ordered(flows) => Box::new(
            flows.iter().flat_map(|(&(src, dst), flow)| flow.iter().map(move |msg| Envelope { src, dst, msg })),
        ),
    }
}

/// The node states of the servers that are up, with their ids.
pub fn live_servers(state: &RaftState) -> impl Iterator<Item = (usize, &crate::actor::ServerState)> {
    state.actor_states.iter().enumerate().filter(|(i, _)| !state.crashed[*i]).filter_map(|(i, s)| match &**s {
        NodeState::Server(s) => Some((i, s)),
        NodeState::Client(_) => None,
    })
}
