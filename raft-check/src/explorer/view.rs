//! What the explorer's page shows, as JSON: a path of the model walked from
//! its initial state, and the last state of it decoded into Raft terms (each
//! server's role, term, vote, log and commit index; the messages in flight;
//! the next actions; every property's verdict).
//!
//! Servers are named by the raft-core [`NodeId`](raft_core::NodeId) in their configuration, never
//! by their position among the actors, so that the page follows whatever
//! numbering the model uses.

use crate::actor::{ModelTimer, Msg, Node, NodeState, ServerState};
use crate::model::{in_flight, ModelConfig, RaftModel, RaftState};
use clap::ValueEnum;
use raft_core::{Message, Payload, Role};
use serde::Serialize;
use stateright::actor::{ActorModelAction, Id};
use stateright::{Expectation, Model};
use std::fmt;

type Action = ActorModelAction<Msg, ModelTimer, ()>;

/// Why a path names no state of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A component is not a number.
    NotANumber(String),
    /// The model has no initial state of this index.
    NoInitialState {
        /// The index asked for.
        index: usize,
        /// How many initial states there are.
        count: usize,
    },
    /// The state after `step` steps has no action of this index.
    NoAction {
        /// The number of steps taken before (0: the initial state).
        step: usize,
        /// The index asked for.
        index: usize,
        /// How many actions that state has.
        count: usize,
    },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotANumber(text) => write!(f, "{text:?} in the path is not an action index"),
            PathError::NoInitialState { index, count } => {
                write!(f, "no initial state {index}: the model has {count}")
            }
            PathError::NoAction { step, index, count } => {
                write!(f, "no action {index} after step {step}: that state has {count} actions (0 to {})", count - 1)
            }
        }
    }
}

/// Parses a path as stateright encodes it (`0/4/2`: the initial state's
/// index, then action indices); an empty path is the first initial state.
pub fn parse_path(text: &str) -> Result<Vec<usize>, PathError> {
    let path: Result<Vec<usize>, PathError> = text
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().map_err(|_| PathError::NotANumber(part.to_string())))
        .collect();
    let mut path = path?;
    if path.is_empty() {
        path.push(0);
    }
    Ok(path)
}

/// A path followed through the model: `states[k]` is the state after `k`
/// steps, `actions[k]` the action from `states[k]` to `states[k + 1]`, and
/// `changed[k]` whether it changed anything (stateright keeps the state when
/// an action is ignored).
pub struct Walk {
    /// The path, initial state index first.
    pub path: Vec<usize>,
    /// The states along the path, the initial one first.
    pub states: Vec<RaftState>,
    /// The actions taken.
    pub actions: Vec<Action>,
    /// Whether each action changed the state.
    pub changed: Vec<bool>,
}

/// Follows `path` from the model's initial states.
pub fn walk(model: &RaftModel, path: &[usize]) -> Result<Walk, PathError> {
    let (&init, steps) = path.split_first().expect("a parsed path is never empty");
    let inits = model.init_states();
    let count = inits.len();
    let first = inits.into_iter().nth(init).ok_or(PathError::NoInitialState { index: init, count })?;
    let mut walk = Walk { path: path.to_vec(), states: vec![first], actions: Vec::new(), changed: Vec::new() };
    for (step, &index) in steps.iter().enumerate() {
        let last = walk.states.last().expect("the initial state");
        let mut actions = Vec::new();
        model.actions(last, &mut actions);
        let count = actions.len();
        let action = actions.into_iter().nth(index).ok_or(PathError::NoAction { step, index, count })?;
        let next = model.next_state(last, action.clone());
        walk.changed.push(next.is_some());
        let next = next.unwrap_or_else(|| last.clone());
        walk.states.push(next);
        walk.actions.push(action);
    }
    Ok(walk)
}

/// The model as the page introduces it.
#[derive(Serialize)]
pub struct ModelView {
    /// One line: what the model is (its flags, spelled as the CLI spells them).
    pub summary: String,
    /// The servers, in actor order.
    pub servers: Vec<String>,
    /// Every property checked, in the model's order.
    pub properties: Vec<PropertyInfo>,
    /// What the page's signs mean.
    pub legend: Vec<LegendEntry>,
}

/// A property of the model.
#[derive(Serialize)]
pub struct PropertyInfo {
    /// Its name, as the checker prints it.
    pub name: &'static str,
    /// `Always`, `Sometimes` or `Eventually`.
    pub expectation: &'static str,
}

/// One sign the page shows and what it means.
#[derive(Serialize)]
pub struct LegendEntry {
    /// The sign, as shown.
    pub sign: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// The signs the page itself shows; the legend follows them with the
/// checker's notation table (`crate::notation::NOTATION`), which explains
/// raft-core's text of each state and every message.
pub const LEGEND: &[(&str, &str)] = &[
    ("Leader, Candidate, PreCandidate, Follower", "the server's role in its current term"),
    ("Down", "crashed: the box shows what the server persisted (term, vote, log), which is all it recovers"),
    ("t1", "term 1: the server's current term"),
    ("vote n2", "the vote it cast (and persisted) in its current term; \"no vote\": none yet"),
    ("leader n1", "the leader it knows of in its term"),
    ("log cell", "one entry: its index above, its command inside (· is a new leader's no-op), coloured by its term"),
    ("solid cell with ✓", "committed, as far as this server knows (index ≤ its commit index)"),
    ("pale dashed cell", "held, not known committed by this server yet"),
    ("commit 2", "the server's commit index"),
    ("n2 1/2", "a leader's progress for follower n2: match index 1, next index 2"),
    ("pending 1", "proposals the server holds until it knows a leader to forward them to"),
    ("(changes nothing)", "an action the server ignores: stateright keeps the state as it was"),
    (
        "(outside the model's bounds)",
        "it leads past --max-term or --max-log, or to a second copy of a message in flight: the checker does not go there",
    ),
    ("breaks P", "an action after which property P, which holds now, fails"),
];

/// One state, decoded, with the path that reaches it.
#[derive(Serialize)]
pub struct StateView {
    /// The path, as stateright encodes it (`0/4/2`).
    pub path: String,
    /// The path's steps: the initial state, then one per action.
    pub steps: Vec<StepView>,
    /// The servers, in actor order.
    pub servers: Vec<ServerView>,
    /// The model clients, if any.
    pub clients: Vec<ClientView>,
    /// Every message in flight, each copy once.
    pub messages: Vec<MessageView>,
    /// Every leader ever elected, with its term (`n1 in t1`), from the model's history.
    pub leaders: Vec<String>,
    /// Every property's verdict in this state.
    pub properties: Vec<PropertyView>,
    /// The actions this state offers, in the model's order.
    pub actions: Vec<ActionView>,
    /// Whether the state is inside the model's bounds (the checker does not
    /// expand states outside them).
    pub within_bounds: bool,
}

/// One step of a path.
#[derive(Serialize)]
pub struct StepView {
    /// 0 for the initial state, then 1, 2, ...
    pub number: usize,
    /// What happened.
    pub label: String,
    /// The actor it happened to, if any.
    pub node: Option<String>,
    /// That actor's state after the step, in one line.
    pub after: Option<String>,
    /// Whether the step changed the state (stateright ignores actions that
    /// change nothing).
    pub changed: bool,
    /// The `Always` properties that fail in the state after the step.
    pub broken: Vec<&'static str>,
    /// The `Sometimes` properties that hold in the state after the step.
    pub reached: Vec<&'static str>,
}

/// A server, as the page draws its box.
#[derive(Serialize)]
pub struct ServerView {
    /// Its raft-core id (`n1`).
    pub id: String,
    /// Whether it is up (not crashed).
    pub up: bool,
    /// `Leader`, `Candidate`, `PreCandidate`, `Follower`, or `Down`.
    pub role: &'static str,
    /// Its current term (a crashed server: the one it persisted).
    pub term: u64,
    /// The vote it cast in its term.
    pub vote: Option<String>,
    /// The leader it knows of (not for a crashed server).
    pub leader: Option<String>,
    /// Its commit index (not for a crashed server: volatile).
    pub commit: Option<u64>,
    /// The snapshot its log starts after, as `i2@t1`.
    pub snapshot: Option<String>,
    /// Its log entries after the snapshot.
    pub log: Vec<EntryView>,
    /// A candidate's or pre-candidate's votes so far.
    pub votes: Vec<String>,
    /// A leader's view of each follower.
    pub progress: Vec<ProgressView>,
    /// Proposals held until a leader is known.
    pub pending: usize,
    /// Its timers that are set (each one an action that can fire).
    pub timers: Vec<String>,
    /// The rules the model's adapter saw this server's steps break.
    pub broken: Vec<&'static str>,
    /// raft-core's own text of its state (the notation of the legend).
    pub raft: String,
    /// Whether the last step of the path changed this server.
    pub changed: bool,
}

/// One log entry.
#[derive(Serialize)]
pub struct EntryView {
    /// Its index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Its command as text, or `·` for a no-op.
    pub text: String,
    /// Whether the server knows it committed.
    pub committed: bool,
}

/// A leader's view of one follower.
#[derive(Serialize)]
pub struct ProgressView {
    /// The follower.
    pub peer: String,
    /// The highest index known to match.
    pub match_index: u64,
    /// The next index to send.
    pub next_index: u64,
}

/// A model client.
#[derive(Serialize)]
pub struct ClientView {
    /// Its name (`c1`).
    pub id: String,
    /// Whether it is up.
    pub up: bool,
    /// Its state, as text.
    pub text: String,
}

/// One message in flight.
#[derive(Serialize)]
pub struct MessageView {
    /// The sender.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// The message's kind (`RequestVote`, `AppendEntriesResponse`, ...).
    pub kind: &'static str,
    /// The message, as raft-core writes it.
    pub text: String,
}

/// A property's verdict in one state.
#[derive(Serialize)]
pub struct PropertyView {
    /// Its name.
    pub name: &'static str,
    /// `Always`, `Sometimes` or `Eventually`.
    pub expectation: &'static str,
    /// Whether its condition holds in this state (for an `Always`, false
    /// means broken here; for a `Sometimes`, true means an example).
    pub holds: bool,
}

/// One action the state offers: a button on the page.
#[derive(Serialize)]
pub struct ActionView {
    /// Its index among the state's actions (the next component of a path).
    pub index: usize,
    /// What it does, in words.
    pub label: String,
    /// `deliver`, `drop`, `timeout`, `crash` or `recover`.
    pub kind: &'static str,
    /// The actor it happens to.
    pub node: String,
    /// A delivery's or a loss's sender.
    pub from: Option<String>,
    /// The message's kind, or the timer's name.
    pub detail: String,
    /// The path to the state it leads to.
    pub path: String,
    /// Whether it changes the state (stateright ignores those that do not).
    pub changes: bool,
    /// Whether the state it leads to is inside the model's bounds.
    pub within_bounds: bool,
    /// The `Always` properties that hold in this state and fail in the
    /// state it leads to.
    pub breaks: Vec<&'static str>,
}

/// The model as the page introduces it.
pub fn model_view(model: &RaftModel) -> ModelView {
    ModelView {
        summary: summary(&model.cfg),
        servers: (0..model.actors.len()).filter(|&i| is_server(model, i)).map(|i| actor_name(model, i)).collect(),
        properties: model
            .properties()
            .iter()
            .map(|p| PropertyInfo { name: p.name, expectation: expectation(&p.expectation) })
            .collect(),
        legend: LEGEND
            .iter()
            .chain(crate::notation::NOTATION)
            .map(|&(sign, meaning)| LegendEntry { sign, meaning })
            .collect(),
    }
}

/// The last state of `walk`, decoded, with every step of the walk.
pub fn state_view(model: &RaftModel, walk: &Walk) -> StateView {
    let state = walk.states.last().expect("the initial state");
    let before = walk.states.len().checked_sub(2).map(|k| &walk.states[k]);
    let path = encode(&walk.path);
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..model.actors.len() {
        let changed =
            before.is_some_and(|b| b.actor_states[i] != state.actor_states[i] || b.crashed[i] != state.crashed[i]);
        match &*state.actor_states[i] {
            NodeState::Server(s) => servers.push(server_view(model, state, i, s, changed)),
            NodeState::Client(c) => {
                clients.push(ClientView { id: actor_name(model, i), up: !state.crashed[i], text: format!("{c:?}") })
            }
        }
    }
    let mut messages: Vec<_> = in_flight(&state.network)
        .map(|e| MessageView {
            from: actor_name(model, usize::from(e.src)),
            to: actor_name(model, usize::from(e.dst)),
            kind: msg_kind(e.msg),
            text: format!("{:?}", e.msg),
        })
        .collect();
    messages.sort_by(|a, b| (&a.from, &a.to, &a.text).cmp(&(&b.from, &b.to, &b.text)));
    StateView {
        steps: steps(model, walk),
        servers,
        clients,
        messages,
        leaders: state.history.leaders.iter().map(|(term, id)| format!("{id} in {term}")).collect(),
        properties: model
            .properties()
            .iter()
            .map(|p| PropertyView {
                name: p.name,
                expectation: expectation(&p.expectation),
                holds: (p.condition)(model, state),
            })
            .collect(),
        actions: actions(model, state, &path),
        within_bounds: model.within_boundary(state),
        path,
    }
}

fn steps(model: &RaftModel, walk: &Walk) -> Vec<StepView> {
    let properties = model.properties();
    let verdicts = |state: &RaftState| {
        let broken = properties
            .iter()
            .filter(|p| p.expectation == Expectation::Always && !(p.condition)(model, state))
            .map(|p| p.name)
            .collect();
        let reached = properties
            .iter()
            .filter(|p| p.expectation == Expectation::Sometimes && (p.condition)(model, state))
            .map(|p| p.name)
            .collect();
        (broken, reached)
    };
    let (broken, reached) = verdicts(&walk.states[0]);
    let mut steps = vec![StepView {
        number: 0,
        label: "initial state".to_string(),
        node: None,
        after: None,
        changed: true,
        broken,
        reached,
    }];
    for (k, action) in walk.actions.iter().enumerate() {
        let state = &walk.states[k + 1];
        let actor = acted_on(action);
        let (broken, reached) = verdicts(state);
        steps.push(StepView {
            number: k + 1,
            label: action_label(model, action),
            node: actor.map(|i| actor_name(model, i)),
            after: actor.map(|i| actor_line(model, state, i)),
            changed: walk.changed[k],
            broken,
            reached,
        });
    }
    steps
}

fn actions(model: &RaftModel, state: &RaftState, path: &str) -> Vec<ActionView> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    let properties = model.properties();
    actions
        .into_iter()
        .enumerate()
        .map(|(index, action)| {
            let (kind, node, from, detail) = describe(model, &action);
            let label = action_label(model, &action);
            let next = model.next_state(state, action);
            let reached = next.as_ref().unwrap_or(state);
            ActionView {
                index,
                label,
                kind,
                node,
                from,
                detail,
                path: format!("{path}/{index}"),
                changes: next.is_some(),
                within_bounds: model.within_boundary(reached),
                breaks: properties
                    .iter()
                    .filter(|p| p.expectation == Expectation::Always)
                    .filter(|p| (p.condition)(model, state) && !(p.condition)(model, reached))
                    .map(|p| p.name)
                    .collect(),
            }
        })
        .collect()
}

fn server_view(model: &RaftModel, state: &RaftState, i: usize, s: &ServerState, changed: bool) -> ServerView {
    let id = actor_name(model, i);
    let broken = broken_flags(s);
    if state.crashed[i] {
        // Only what it persisted survives a crash; that is what it recovers.
        let durable = state.actor_storages[i].as_ref();
        let store = durable.map(|d| &d.raft);
        let log = store.map(|st| entries(&st.log, 0)).unwrap_or_default();
        return ServerView {
            id,
            up: false,
            role: "Down",
            term: store.map_or(0, |st| st.hard.term.0),
            vote: store.and_then(|st| st.hard.voted_for).map(|v| v.to_string()),
            leader: None,
            commit: None,
            snapshot: store.and_then(|st| st.snapshot.as_ref()).map(|m| format!("{}@{}", m.index, m.term)),
            log,
            votes: Vec::new(),
            progress: Vec::new(),
            pending: 0,
            timers: Vec::new(),
            broken,
            raft: durable.map_or_else(|| "nothing persisted".to_string(), |d| format!("persisted: {d:?}")),
            changed,
        };
    }
    let raft = &s.raft;
    let (role, votes, progress) = match raft.role() {
        Role::Follower => ("Follower", Vec::new(), Vec::new()),
        Role::PreCandidate { votes } => ("PreCandidate", votes.iter().map(|v| v.to_string()).collect(), Vec::new()),
        Role::Candidate { votes } => ("Candidate", votes.iter().map(|v| v.to_string()).collect(), Vec::new()),
        Role::Leader { progress, .. } => {
            let progress = progress
                .iter()
                .map(|(peer, p)| ProgressView {
                    peer: peer.to_string(),
                    match_index: p.match_index().0,
                    next_index: p.next_index().0,
                })
                .collect();
            ("Leader", Vec::new(), progress)
        }
    };
    let mut timers: Vec<&ModelTimer> = state.timers_set[i].iter().collect();
    timers.sort();
    ServerView {
        id,
        up: true,
        role,
        term: raft.term().0,
        vote: raft.hard_state().voted_for.map(|v| v.to_string()),
        leader: raft.leader().map(|l| l.to_string()),
        commit: Some(raft.commit_index().0),
        snapshot: raft.snapshot().map(|m| format!("{}@{}", m.index, m.term)),
        log: entries(raft.log(), raft.commit_index().0),
        votes,
        progress,
        pending: raft.pending().len(),
        timers: timers.into_iter().map(|t| timer_name(t).to_string()).collect(),
        broken,
        raft: format!("{s:?}"),
        changed,
    }
}

fn entries(log: &raft_core::Log, commit: u64) -> Vec<EntryView> {
    let first = log.first_index().0;
    log.entries()
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let index = first + k as u64;
            let text = match &e.payload {
                Payload::Noop => "·".to_string(),
                Payload::Membership(m) => {
                    let voters: Vec<String> = m.voters().iter().map(|v| v.0.to_string()).collect();
                    let learners: String = m.learners().iter().map(|l| format!("+{}", l.0)).collect();
                    format!("⚙{}{learners}", voters.join(""))
                }
                Payload::Command(data) => match std::str::from_utf8(data) {
                    Ok(s) if s.len() <= 8 && s.chars().all(|c| c.is_ascii_graphic()) => s.to_string(),
                    _ => format!("{} B", data.len()),
                },
            };
            EntryView { index, term: e.term.0, text, committed: index <= commit }
        })
        .collect()
}

fn broken_flags(s: &ServerState) -> Vec<&'static str> {
    let b = &s.broken;
    [
        (b.overwrote_as_leader, "overwrote its own entries as leader"),
        (b.persisted_after_send, "persisted after a send in one step"),
        (b.bad_delivery, "delivered an entry out of order or uncommitted"),
        (b.kept_old_term, "kept an older term after a newer one"),
        (b.acted_on_stale_term, "acted on a stale term"),
        (b.pre_vote_changed_term, "a pre-vote changed its term or vote"),
        (b.panicked, "raft-core panicked"),
        (b.unrecoverable, "could not recover from its storage"),
        (b.snapshot_without_data, "a snapshot without its data"),
        (b.applied_changed, "applied a different command at an index"),
    ]
    .into_iter()
    .filter(|&(set, _)| set)
    .map(|(_, what)| what)
    .collect()
}

/// One line for the steps list: the actor's role, term, vote, log and commit
/// index after a step.
fn actor_line(model: &RaftModel, state: &RaftState, i: usize) -> String {
    let server = match &*state.actor_states[i] {
        NodeState::Server(s) => server_view(model, state, i, s, false),
        NodeState::Client(c) => return format!("{c:?}"),
    };
    let vote = server.vote.as_deref().map_or("no vote".to_string(), |v| format!("vote {v}"));
    let log: Vec<String> = server.log.iter().map(|e| format!("{}@t{} {}", e.index, e.term, e.text)).collect();
    let commit = server.commit.map_or(String::new(), |c| format!(", commit {c}"));
    format!("{} t{}, {vote}, log [{}]{commit}", server.role, server.term, log.join(", "))
}

fn describe(model: &RaftModel, action: &Action) -> (&'static str, String, Option<String>, String) {
    let name = |id: &Id| actor_name(model, usize::from(*id));
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            ("deliver", name(dst), Some(name(src)), msg_kind(msg).to_string())
        }
        ActorModelAction::Drop(e) => ("drop", name(&e.dst), Some(name(&e.src)), msg_kind(&e.msg).to_string()),
        ActorModelAction::Timeout(id, timer) => ("timeout", name(id), None, timer_name(timer).to_string()),
        ActorModelAction::Crash(id) => ("crash", name(id), None, String::new()),
        ActorModelAction::Recover(id) => ("recover", name(id), None, String::new()),
        ActorModelAction::SelectRandom { actor, key, .. } => ("random", name(actor), None, key.clone()),
    }
}

/// An action in words, with raft-core's node names.
pub fn action_label(model: &RaftModel, action: &Action) -> String {
    let name = |id: &Id| actor_name(model, usize::from(*id));
    match action {
        ActorModelAction::Deliver { src, dst, msg } => format!("{} ← {}: {msg:?}", name(dst), name(src)),
        ActorModelAction::Drop(e) => format!("network loses {} → {}: {:?}", name(&e.src), name(&e.dst), e.msg),
        ActorModelAction::Timeout(id, timer) => format!("{}: {} timer fires", name(id), timer_name(timer)),
        ActorModelAction::Crash(id) => format!("{} crashes", name(id)),
        ActorModelAction::Recover(id) => format!("{} recovers from its storage", name(id)),
        ActorModelAction::SelectRandom { actor, key, .. } => format!("{} chooses {key}", name(actor)),
    }
}

fn acted_on(action: &Action) -> Option<usize> {
    match action {
        ActorModelAction::Deliver { dst, .. } => Some(usize::from(*dst)),
        ActorModelAction::Drop(_) => None,
        ActorModelAction::Timeout(id, _) | ActorModelAction::Crash(id) | ActorModelAction::Recover(id) => {
            Some(usize::from(*id))
        }
        ActorModelAction::SelectRandom { actor, .. } => Some(usize::from(*actor)),
    }
}

fn is_server(model: &RaftModel, i: usize) -> bool {
    matches!(model.actors[i], Node::Server(_))
}

/// A server's raft-core id (`n1`); a client's name (`c1` for the first).
pub fn actor_name(model: &RaftModel, i: usize) -> String {
    match model.actors.get(i) {
        Some(Node::Server(server)) => server.config.id().to_string(),
        Some(Node::Client(_)) => {
            let k = model.actors[..i].iter().filter(|a| matches!(a, Node::Client(_))).count();
            format!("c{}", k + 1)
        }
        None => format!("actor {i}"),
    }
}

fn timer_name(timer: &ModelTimer) -> &'static str {
    match timer {
        ModelTimer::Raft(raft_core::Timer::Election) => "Election",
        ModelTimer::Raft(raft_core::Timer::Heartbeat) => "Heartbeat",
        ModelTimer::Raft(raft_core::Timer::CheckQuorum) => "CheckQuorum",
        ModelTimer::Raft(raft_core::Timer::Transfer) => "Transfer",
        ModelTimer::Snapshot(_) => "TakeSnapshot",
        ModelTimer::Written => "Written",
        ModelTimer::Change(_) => "Operator",
    }
}

fn msg_kind(msg: &Msg) -> &'static str {
    match msg {
        Msg::Raft(m) | Msg::Snapshot(m, _) => match &**m {
            Message::RequestVote(_) => "RequestVote",
            Message::RequestVoteResponse(_) => "RequestVoteResponse",
            Message::AppendEntries(_) => "AppendEntries",
            Message::AppendEntriesResponse(_) => "AppendEntriesResponse",
            Message::Forward(_) => "Forward",
            Message::ForwardResponse(_) => "ForwardResponse",
            Message::LeadershipCheck(_) => "LeadershipCheck",
            Message::LeadershipCheckResponse(_) => "LeadershipCheckResponse",
            Message::ReadIndexRequest(_) => "ReadIndexRequest",
            Message::ReadIndexResponse(_) => "ReadIndexResponse",
            Message::PreVote(_) => "PreVote",
            Message::PreVoteResponse(_) => "PreVoteResponse",
            Message::TimeoutNow(_) => "TimeoutNow",
            Message::InstallSnapshot(_) => "InstallSnapshot",
        },
        Msg::Put(_) => "Put",
        Msg::PutOk => "PutOk",
        Msg::Get => "Get",
        Msg::GetOk(..) => "GetOk",
        Msg::Transfer(_) => "TransferLeadership",
    }
}

fn expectation(e: &Expectation) -> &'static str {
    match e {
        Expectation::Always => "Always",
        Expectation::Sometimes => "Sometimes",
        Expectation::Eventually => "Eventually",
    }
}

/// A path as stateright encodes it.
pub fn encode(path: &[usize]) -> String {
    path.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("/")
}

/// The model's flags, as the CLI spells them.
fn summary(cfg: &ModelConfig) -> String {
    let name = |v: Option<clap::builder::PossibleValue>| v.map_or(String::new(), |v| v.get_name().to_string());
    let mut parts = vec![
        format!("--model {}", name(cfg.kind.to_possible_value())),
        format!("--nodes {}", cfg.servers),
        format!("--proposals {}", name(cfg.proposals.to_possible_value())),
        format!("--network {}", name(cfg.network.to_possible_value())),
        format!("--crashes {}", cfg.crashes),
        format!("--max-term {}", cfg.max_term),
        format!("--max-log {}", cfg.max_log),
        format!("--heartbeats {}", cfg.heartbeats),
    ];
    if cfg.client_count() > 0 {
        parts.push(format!("--clients {}", cfg.clients));
    }
    for (on, flag) in [
        (cfg.lossy, "--lossy"),
        (cfg.split_appends, "--split-appends"),
        (cfg.pre_vote, "--pre-vote"),
        (cfg.check_quorum, "--check-quorum"),
        (cfg.switches.forget_vote_on_recovery, "--bug forget-vote-on-recovery"),
        (cfg.switches.reads_bypass_log, "--bug reads-bypass-log"),
    ] {
        if on {
            parts.push(flag.to_string());
        }
    }
    if cfg.snapshots > 0 {
        parts.push(format!("--snapshots {}", cfg.snapshots));
    }
    if let Some(fault) = cfg.fault {
        parts.push(format!("--fault {}", fault.name()));
    }
    parts.join(" ")
}
