//! Counterexamples as raft-core inputs, and a helper that replays them
//! against raft-core's `step` with no model checker involved.
//!
//! [`steps_of_path`] turns a path the checker found into the sequence of
//! [`Step`]s that each server saw: its start, every input (message received,
//! timer fired, proposal), its crashes and recoveries. The CLI writes that
//! sequence, with the model's flags, to a replay file ([`ReplayFile`]) that
//! `--replay FILE` runs back; paste its `steps` into a test and call
//! [`replay_json`] to get a [`Cluster`] whose states the test can assert on. The replay drives each
//! node as raft-tokio would: persists applied to a per-node store before
//! anything else, and recovery from that store alone. Snapshot data never
//! enters raft-core, so a replay needs none: an application's snapshot is
//! its report of what it applied and `SnapshotTaken`, and an
//! `InstallSnapshot` is the message alone.

use crate::actor::{node_at, node_id, server_index, ModelTimer, Msg, Node, NodeState};
use crate::kv::Command as KvCommand;
use crate::model::{RaftModel, RaftState};
use raft_core::{
    Config, Input, LogIndex, Membership, MemoryStore, NodeId, Output, Persist, Proposal, ProposalId, ReadId, State,
    Term,
};
use serde::{Deserialize, Serialize};
use stateright::actor::ActorModelAction;
use stateright::Path;
use std::fmt;

/// What happens to one server in one step of a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The node starts for the first time (`State::new`), in a cluster of
    /// every server as voters.
    Start,
    /// The node starts for the first time in a cluster of this membership.
    StartIn(Membership),
    /// One input to `step`.
    Input(Input),
    /// The node crashes: its volatile state is gone, its storage stays.
    Crash,
    /// The node restarts from its storage (`State::recover`).
    Recover,
    /// The node's oldest background write (`Output::PersistAsync`) is
    /// durable: it is stored, and its `Input::Persisted` fed to the node.
    Written,
    /// The node's background writes complete in steps of their own
    /// (`Written`); without this event (before its start), each is stored
    /// and reported within the step that asked for it, as the model without
    /// `--background-writes` does.
    BackgroundWrites,
}

/// One step of a replay: which server, and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The server.
    pub node: NodeId,
    /// What happens.
    pub event: Event,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event {
            Event::Start => write!(f, "{} start", self.node),
            Event::StartIn(m) => write!(f, "{} start in {m:?}", self.node),
            Event::Crash => write!(f, "{} crash", self.node),
            Event::Recover => write!(f, "{} recover", self.node),
            Event::Written => write!(f, "{} write durable", self.node),
            Event::BackgroundWrites => write!(f, "{} writes in the background", self.node),
            Event::Input(Input::Receive { from, message }) => write!(f, "{} <- {from}: {message:?}", self.node),
            Event::Input(Input::Timeout(timer)) => write!(f, "{} timeout {timer:?}", self.node),
            Event::Input(Input::Read(ids)) => write!(f, "{} read {ids:?}", self.node),
            Event::Input(Input::Applied(index)) => write!(f, "{} applied {index}", self.node),
            Event::Input(Input::TransferLeadership(target)) => write!(f, "{} transfer to {target}", self.node),
            Event::Input(Input::SnapshotTaken(index)) => write!(f, "{} snapshot taken at {index}", self.node),
            Event::Input(Input::Persisted { term, index }) => write!(f, "{} persisted {index}@{term}", self.node),
            Event::Input(Input::ChangeMembership { change, .. }) => write!(f, "{} change {change:?}", self.node),
            Event::Input(Input::Propose(ps)) => {
                let data: Vec<_> = ps.iter().map(|p| String::from_utf8_lossy(&p.data).into_owned()).collect();
                write!(f, "{} propose {data:?}", self.node)
            }
        }
    }
}

/// An action of the model.
pub type Action = ActorModelAction<Msg, ModelTimer, ()>;

/// The raft-core steps behind a path of the model, in order.
pub fn steps_of_path(model: &RaftModel, path: &Path<RaftState, Action>) -> Vec<Step> {
    let mut steps = initial_steps(model);
    for (state, action) in path.clone().into_vec() {
        if let Some(action) = action {
            steps.extend(steps_of_action(model, &state, action));
        }
    }
    steps
}

/// The steps that make the model's initial state: each server starts and,
/// in the raft model, is asked to propose its start value.
pub fn initial_steps(model: &RaftModel) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, actor) in model.actors.iter().enumerate() {
        if let Node::Server(server) = actor {
            let node = node_at(i);
            if server.background_writes {
                steps.push(Step { node, event: Event::BackgroundWrites });
            }
            let all_voters = server.membership.voters().len() == model.cfg.servers;
            let event = if all_voters { Event::Start } else { Event::StartIn(server.membership.clone()) };
            steps.push(Step { node, event });
            if let Some(data) = &server.propose_at_start {
                let proposal = Proposal { id: ProposalId(1), data: data.clone() };
                steps.push(Step { node, event: Event::Input(Input::Propose(vec![proposal])) });
            }
        }
    }
    steps
}

/// The raft-core steps behind one action of the model, taken from `state`:
/// none for an action no server sees (a message to a model client, a
/// message lost), two for a snapshot the application takes while ahead of
/// what raft-core knows it applied.
pub fn steps_of_action(model: &RaftModel, state: &RaftState, action: Action) -> Vec<Step> {
    let mut steps = Vec::new();
    let (id, event) = match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let Some(Node::Server(server)) = model.actors.get(usize::from(dst)) else { return steps };
            let client = usize::from(src) as u8;
            let input = match msg {
                Msg::Raft(message) | Msg::Snapshot(message, _) => {
                    Input::Receive { from: node_id(src), message: (*message).clone() }
                }
                Msg::Put(value) => propose(KvCommand::Write { client, value }),
                Msg::Get if !server.switches.reads_bypass_log => Input::Read(vec![ReadId(u64::from(client))]),
                Msg::Transfer(target) => Input::TransferLeadership(target),
                Msg::Get | Msg::PutOk | Msg::GetOk(..) => return steps,
            };
            (dst, Event::Input(input))
        }
        ActorModelAction::Timeout(id, ModelTimer::Raft(timer)) => (id, Event::Input(Input::Timeout(timer))),
        ActorModelAction::Timeout(id, ModelTimer::Snapshot(index)) => {
            // The application reports what it applied first, as the
            // adapter does when that is ahead of raft-core's count.
            if let NodeState::Server(s) = &*state.actor_states[usize::from(id)] {
                if s.delivered > s.raft.applied_index() {
                    steps.push(Step { node: node_id(id), event: Event::Input(Input::Applied(s.delivered)) });
                }
            }
            (id, Event::Input(Input::SnapshotTaken(index)))
        }
        ActorModelAction::Timeout(id, ModelTimer::Written) => (id, Event::Written),
        ActorModelAction::Timeout(id, ModelTimer::Change(change)) => {
            // The operator asks only a leader that may take the change.
            let NodeState::Server(s) = &*state.actor_states[usize::from(id)] else { return steps };
            let Some(Node::Server(server)) = model.actors.get(usize::from(id)) else { return steps };
            if !server.operator_asks(s, change) {
                return steps;
            }
            (id, Event::Input(change.input()))
        }
        ActorModelAction::Crash(id) => (id, Event::Crash),
        ActorModelAction::Recover(id) => (id, Event::Recover),
        ActorModelAction::Drop(_) | ActorModelAction::SelectRandom { .. } => return steps,
    };
    if matches!(model.actors.get(usize::from(id)), Some(Node::Server(_))) {
        steps.push(Step { node: node_id(id), event });
    }
    steps
}

fn propose(command: KvCommand) -> Input {
    let client = match command {
        KvCommand::Write { client, .. } | KvCommand::Read { client } => client,
    };
    Input::Propose(vec![Proposal { id: ProposalId(u64::from(client)), data: command.encode() }])
}

/// The servers after a replay.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Each server's configuration.
    pub configs: Vec<Config>,
    /// Each server's state; `None` while crashed or before its start.
    pub states: Vec<Option<State>>,
    /// Each server's storage, as its persists left it.
    pub storage: Vec<MemoryStore>,
    /// Each server's background writes not yet durable, oldest first, with
    /// the completion each reports.
    pub writing: Vec<Vec<(Persist, Input)>>,
    /// Whether each server's background writes complete in steps of their
    /// own (`Event::BackgroundWrites`) rather than at once.
    pub background: Vec<bool>,
    /// The outputs of the last step of each server.
    pub last_outputs: Vec<Vec<Output>>,
}

impl Cluster {
    /// The live leaders, as (term, node), sorted.
    pub fn leaders(&self) -> Vec<(Term, NodeId)> {
        let mut leaders: Vec<_> = self
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.is_leader()).map(|s| (s.term(), node_at(i))))
            .collect();
        leaders.sort();
        leaders
    }
}

/// Replays `steps` on fresh servers with these configurations (`configs[i]`
/// is node `n{i + 1}`'s). With `forget_vote_on_recovery`, recovery drops the
/// persisted vote (the adapter bug the checker must catch).
///
/// # Panics
/// When a step names a node that is down, or not started, and needs it up.
pub fn replay(configs: Vec<Config>, steps: &[Step], forget_vote_on_recovery: bool) -> Cluster {
    let mut cluster = Cluster::new(configs);
    for step in steps {
        cluster.apply(step, forget_vote_on_recovery);
    }
    cluster
}

impl Cluster {
    /// Servers with these configurations (`configs[i]` is node `n{i + 1}`'s),
    /// none started yet.
    pub fn new(configs: Vec<Config>) -> Cluster {
        let n = configs.len();
        Cluster {
            configs,
            states: vec![None; n],
            storage: vec![MemoryStore::new(); n],
            writing: vec![Vec::new(); n],
            background: vec![false; n],
            last_outputs: vec![Vec::new(); n],
        }
    }

    /// Applies one step (see [`replay`]).
    ///
    /// # Panics
    /// When the step names a node that is down, or not started, and needs it up.
    pub fn apply(&mut self, step: &Step, forget_vote_on_recovery: bool) {
        let i = server_index(step.node);
        let config = self.configs[i].clone();
        let config = &config;
        let outputs = match &step.event {
            Event::BackgroundWrites => {
                self.background[i] = true;
                return;
            }
            Event::Start | Event::StartIn(_) => {
                let membership = match &step.event {
                    Event::StartIn(m) => m.clone(),
                    _ => Membership::new(self.configs.iter().map(|c| c.id())).expect("at least one node"),
                };
                let (state, outputs) = State::new(config, membership);
                self.states[i] = Some(state);
                outputs
            }
            Event::Crash => {
                // What the disk had not written is lost.
                self.states[i] = None;
                self.writing[i].clear();
                Vec::new()
            }
            Event::Recover => {
                let mut store = self.storage[i].clone();
                if forget_vote_on_recovery {
                    store.hard.voted_for = None;
                }
                let (state, outputs) = State::recover(config, store, LogIndex(0)).expect("recoverable storage");
                self.states[i] = Some(state);
                outputs
            }
            Event::Input(input) => {
                let state = self.states[i].as_mut().unwrap_or_else(|| panic!("{} is down at: {step}", step.node));
                let mut outputs = Vec::new();
                state.step(config, input.clone(), &mut outputs);
                outputs
            }
            Event::Written => {
                let (p, report) = self.writing[i].remove(0);
                self.storage[i].apply(&p).expect("raft-core keeps the persist contract");
                let state = self.states[i].as_mut().unwrap_or_else(|| panic!("{} is down at: {step}", step.node));
                let mut outputs = Vec::new();
                state.step(config, report, &mut outputs);
                outputs
            }
        };
        let mut outputs = outputs;
        let mut k = 0;
        while k < outputs.len() {
            let output = outputs[k].clone();
            k += 1;
            match output {
                // An instant disk: stored and reported at once.
                Output::PersistAsync { persist, term, index } if !self.background[i] => {
                    self.write(i, persist);
                    let state = self.states[i].as_mut().expect("a node that wrote is up");
                    state.step(config, Input::Persisted { term, index }, &mut outputs);
                }
                Output::PersistAsync { persist, term, index } => {
                    self.writing[i].push((persist, Input::Persisted { term, index }));
                }
                Output::Persist(p) => self.write(i, p),
                _ => {}
            }
        }
        self.last_outputs[i] = outputs;
    }

    /// Puts server `i`'s queued background writes on its storage, in order,
    /// then `persist`.
    fn write(&mut self, i: usize, persist: Persist) {
        for p in self.writing[i].drain(..).map(|(p, _)| p).chain([persist]) {
            self.storage[i].apply(&p).expect("raft-core keeps the persist contract");
        }
    }
}

/// Replays steps given as a JSON list (the `steps` of a replay file).
///
/// # Panics
/// On JSON that is not a list of steps.
pub fn replay_json(configs: Vec<Config>, json: &str, forget_vote_on_recovery: bool) -> Cluster {
    let steps: Vec<Step> = serde_json::from_str(json).expect("a JSON list of replay steps");
    replay(configs, &steps, forget_vote_on_recovery)
}

/// The JSON form of `steps`, on one line.
pub fn to_json(steps: &[Step]) -> String {
    serde_json::to_string(steps).expect("steps serialize")
}

/// A counterexample as the CLI writes it to disk: the property it breaks,
/// the command-line flags of the model it was found in (those that differ
/// from the defaults), and the raft-core steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFile {
    /// The property the steps break.
    pub property: String,
    /// The model's flags, as given to `raft-check` (`--fault NAME`, ...).
    pub flags: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl ReplayFile {
    /// The file's text: JSON, one step per line, so that two files diff well.
    pub fn to_json(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(|s| format!("    {}", one_line(s))).collect();
        format!(
            "{{\n  \"property\": {},\n  \"flags\": {},\n  \"steps\": [\n{}\n  ]\n}}\n",
            one_line(&self.property),
            one_line(&self.flags),
            steps.join(",\n")
        )
    }

    /// Reads a file's text.
    pub fn from_json(text: &str) -> Result<ReplayFile, serde_json::Error> {
        serde_json::from_str(text)
    }
}

fn one_line<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("replay values serialize")
}
