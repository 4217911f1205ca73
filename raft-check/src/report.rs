//! What `-m check` and `-m simulate` print, in this order: progress while
//! the search runs (on standard error), the `Done.` line, one verdict per
//! property, then each counterexample as a numbered trace of raft-core
//! inputs with the state of the node after each, the final state of every
//! node, the explorer URL that opens it and the replay file written for it;
//! then, only with `--examples`, the examples of the `Sometimes`
//! properties in the same form.
//!
//! The notation of node states and messages (`t1`, `i3@t2`, `1:"a"`,
//! `Append(...)`) is raft-core's `Debug` notation, listed in
//! [`crate::notation`].

use crate::actor::{node_at, ModelTimer, Node, NodeState, ServerState};
use crate::model::{in_flight, RaftModel, RaftState};
use crate::properties as p;
use crate::replay::{self, Action, Event, ReplayFile, Step};
use raft_core::{Input, MemoryStore, Payload, Role, State, Timer};
use stateright::actor::ActorModelAction;
use stateright::{Expectation, Model, Path};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A path of the model, from its initial state.
pub type ModelPath = Path<RaftState, Action>;

/// What a search covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Breadth-first to this depth (stateright's: the initial state is depth 1).
    Depth(usize),
    /// Exhaustive within the model's bounds.
    Bounds,
    /// This many random walks.
    Walks(usize),
}

impl Scope {
    /// The most steps (actions after the initial state) of an execution
    /// whose every state is checked: stateright checks a state of depth d
    /// only if d < N, and a state of depth d is d - 1 steps from the initial
    /// state, so N - 2. `None` when the search has no depth bound; `Some(0)`
    /// at depth 2 (the initial state alone) and at depth 1 (nothing).
    pub fn max_steps(self) -> Option<usize> {
        match self {
            Scope::Depth(depth) => Some(depth.saturating_sub(2)),
            Scope::Bounds | Scope::Walks(_) => None,
        }
    }

    /// Whether the search checks any state at all (`--depth 1` checks none).
    pub fn checks_anything(self) -> bool {
        self != Scope::Depth(1)
    }

    /// The sentence, printed once before the search, that says what it checks.
    pub fn explain(self, symmetric: bool) -> String {
        match self {
            Scope::Depth(1) => "Checking breadth-first to depth 1: stateright counts the initial state as depth 1 \
                                and checks only states of a lower depth than the one given, so --depth 1 checks \
                                no state (--depth N checks every execution of at most N-2 steps)."
                .to_string(),
            Scope::Depth(depth) => format!(
                "Checking breadth-first to depth {depth}: every execution of at most {} step{} from the initial \
                 state (stateright counts the initial state as depth 1; the states of depth {depth} are generated \
                 and counted, not checked).",
                depth - 2,
                if depth == 3 { "" } else { "s" }
            ),
            Scope::Bounds if symmetric => {
                "Checking exhaustively within the bounds, depth-first, with symmetry reduction: every execution \
                 whose states stay within --max-term and --max-log."
                    .to_string()
            }
            Scope::Bounds => "Checking exhaustively within the bounds, depth-first: every execution whose states \
                              stay within --max-term and --max-log."
                .to_string(),
            Scope::Walks(_) => String::new(),
        }
    }

    fn within(self) -> String {
        match self {
            Scope::Depth(d) => format!("to depth {d}"),
            Scope::Bounds => "within the bounds".to_string(),
            Scope::Walks(n) => format!("on {n} walks"),
        }
    }
}

/// What a search found.
pub struct Findings {
    /// What it covers.
    pub scope: Scope,
    /// Whether it was stopped by Ctrl-C before it finished.
    pub interrupted: bool,
    /// States generated.
    pub states: usize,
    /// Distinct states.
    pub unique: usize,
    /// The deepest state reached (stateright's depth: the initial state is 1).
    pub depth: usize,
    /// Time taken.
    pub elapsed: Duration,
    /// The path found for each property discovered (a counterexample of an
    /// Always, an example of a Sometimes).
    pub discoveries: BTreeMap<&'static str, ModelPath>,
}

/// How to print what was found.
pub struct Options<'a> {
    /// Print the examples of the Sometimes properties too.
    pub examples: bool,
    /// Where to write the replay files.
    pub replay_dir: &'a FsPath,
    /// The model's flags (those that differ from the defaults), for the
    /// replay files and the explorer command.
    pub flags: Vec<String>,
    /// The address `-m explore` serves on.
    pub addr: &'a str,
}

/// One line per property: (name, is an Always, was it discovered).
pub struct Verdicts(Vec<(&'static str, bool, bool)>);

impl Verdicts {
    /// 1 when an Always failed or, with `require_examples`, a Sometimes has
    /// no example; 130 (as a shell reports SIGINT) when interrupted without
    /// either; else 0.
    pub fn exit_status(&self, require_examples: bool, interrupted: bool) -> i32 {
        let failed = self.0.iter().any(|&(_, always, found)| if always { found } else { require_examples && !found });
        if failed {
            1
        } else if interrupted {
            130
        } else {
            0
        }
    }
}

/// Prints the `Done.` line, the verdicts, the counterexamples (writing a
/// replay file for each) and, with `--examples`, the examples.
pub fn print(model: &RaftModel, found: &Findings, options: &Options, out: &mut impl Write) -> Verdicts {
    let what = if found.interrupted { "Interrupted" } else { "Done" };
    let _ = writeln!(
        out,
        "{what}. states={}, unique={}, depth={}, sec={}",
        found.states,
        found.unique,
        found.depth,
        found.elapsed.as_secs()
    );
    let properties = model.properties();
    let always = |name: &str| properties.iter().any(|p| p.name == name && p.expectation != Expectation::Sometimes);
    let mut counterexamples: Vec<(&'static str, &ModelPath)> =
        found.discoveries.iter().filter(|(n, _)| always(n)).map(|(n, path)| (*n, path)).collect();
    counterexamples.sort_by_key(|(name, path)| (steps_of(path), *name));
    let _ = writeln!(out);
    let mut verdicts = Vec::new();
    for p in &properties {
        let is_always = p.expectation != Expectation::Sometimes;
        let path = found.discoveries.get(p.name);
        verdicts.push((p.name, is_always, path.is_some()));
        let verdict = match (is_always, path) {
            (true, Some(path)) => {
                let k = counterexamples.iter().position(|(n, _)| *n == p.name).map_or(0, |k| k + 1);
                format!("FAILS: counterexample {k} below ({} steps)", steps_of(path))
            }
            (false, Some(path)) => format!("example found ({} steps)", steps_of(path)),
            (_, None) if !found.scope.checks_anything() => {
                "not checked: --depth 1 explores only the initial state".to_string()
            }
            (true, None) if found.interrupted => "no counterexample so far (interrupted)".to_string(),
            (false, None) if found.interrupted => "no example so far (interrupted)".to_string(),
            (true, None) => format!("holds {}", found.scope.within()),
            (false, None) => format!("no example {}", found.scope.within()),
        };
        let kind = if is_always { "Always" } else { "Sometimes" };
        let _ = writeln!(out, "{kind:<9} {:<28} {verdict}", p.name);
    }
    let mut printed = Vec::new();
    for (k, (name, path)) in counterexamples.iter().enumerate() {
        let _ = writeln!(out);
        let title = format!("Counterexample {}: {name} FAILS after {} steps", k + 1, steps_of(path));
        print_path(model, name, path, &title, options, true, &mut printed, out);
    }
    let examples: Vec<_> = found.discoveries.iter().filter(|(n, _)| !always(n)).collect();
    if !examples.is_empty() && !options.examples {
        let _ = writeln!(out);
        let _ = writeln!(out, "{} Sometimes properties have an example; --examples prints them.", examples.len());
    }
    if options.examples {
        for (name, path) in examples {
            let _ = writeln!(out);
            let title = format!("Example: {name}, after {} steps", steps_of(path));
            print_path(model, name, path, &title, options, false, &mut printed, out);
        }
    }
    let _ = out.flush();
    Verdicts(verdicts)
}

/// The number of actions (steps) of a path.
pub fn steps_of(path: &ModelPath) -> usize {
    path.clone().into_actions().len()
}

/// Prints one path: its title, the rule, the trace (or, when an earlier
/// path in `printed` had the same steps, a reference to it), the explorer
/// URL and, with `write_replay`, the replay file written.
#[allow(clippy::too_many_arguments)]
fn print_path(
    model: &RaftModel,
    name: &str,
    path: &ModelPath,
    title: &str,
    options: &Options,
    write_replay: bool,
    printed: &mut Vec<(String, String)>,
    out: &mut impl Write,
) {
    let _ = writeln!(out, "{title}");
    if let Some(rule) = rule_of(name) {
        let _ = writeln!(out, "  The rule: {rule}.");
    }
    let encoded = path.encode(model);
    match printed.iter().find(|(_, e)| *e == encoded) {
        Some((first, _)) => {
            let _ = writeln!(out, "  The same steps as {first} above.");
        }
        None => {
            for line in trace(model, path) {
                let _ = writeln!(out, "  {line}");
            }
            printed.push((title.split(':').next().unwrap_or(title).to_string(), encoded.clone()));
        }
    }
    let flags = options.flags.join(" ");
    let explore = format!("cargo run --release -- -m explore {flags}");
    let _ = writeln!(out, "  Explorer: run `{}`, then open", explore.trim_end());
    let _ = writeln!(out, "    {}", explorer_url(options.addr, &encoded, name));
    if write_replay {
        let file = ReplayFile {
            property: name.to_string(),
            flags: options.flags.clone(),
            steps: replay::steps_of_path(model, path),
        };
        match write_replay_file(options.replay_dir, name, &file) {
            Ok(written) => {
                let _ = writeln!(out, "  Replay file: {}", written.display());
                let _ = writeln!(
                    out,
                    "    `cargo run --release -- --replay {}` runs its steps on raft-core alone",
                    written.display()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  Replay file: not written ({e})");
            }
        }
    }
}

/// The URL of the Raft explorer at a path (`Path::encode`'s action
/// indexes), opened as a counterexample of `property`, when `-m explore`
/// serves on `addr`.
pub fn explorer_url(addr: &str, encoded_path: &str, property: &str) -> String {
    format!("http://{addr}/#/steps/{encoded_path}?property={}", property.replace(' ', "%20"))
}

/// Writes `file` as `counterexample-<property>.json` under `dir` (made if
/// missing) and returns its path.
pub fn write_replay_file(dir: &FsPath, property: &str, file: &ReplayFile) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let slug: String =
        property.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let path = dir.join(format!("counterexample-{slug}.json"));
    std::fs::write(&path, file.to_json())?;
    Ok(path)
}

/// What each Always property requires, in a line, for a counterexample's title.
fn rule_of(name: &str) -> Option<&'static str> {
    Some(match name {
        p::ELECTION_SAFETY => "at most one leader per term, counting leaders that have since crashed (§5.2)",
        p::LOG_MATCHING => "two logs with an entry of the same index and term are identical up to it (§5.3)",
        p::LEADER_COMPLETENESS => "a leader holds every entry committed in an earlier term (§5.4)",
        p::STATE_MACHINE_SAFETY => "no two servers commit different entries at one index (§5.4.3)",
        p::LEADER_APPEND_ONLY => "a leader never changes or removes its own entries within its term (§5.3)",
        p::PERSIST_BEFORE_SEND => {
            "what a node sends (a vote, a vote request, an acknowledgement) is on its disk first, and its disk \
             holds its in-memory term, vote and log"
        }
        p::DELIVERED_IN_ORDER => "a node delivers its log's commands in order, once each, within its commit index",
        p::HIGHER_TERM_ADOPTED => "a message of a higher term makes its receiver a follower of that term (§5.1)",
        p::MATCH_INDEX_SOUND => "a leader's match index for a follower is backed by the follower's stored entries",
        p::STALE_TERM_REJECTED => "a request or answer of an older term changes nothing and is not granted (§5.1)",
        p::NO_PANIC => "raft-core never panics",
        p::PRE_VOTE_CHANGES_NOTHING => "a pre-vote changes no term and no vote (thesis §9.6)",
        p::LINEARIZABLE => "the clients' reads and writes are linearizable",
        p::READ_INDEX_FRESH => "a read is served at a read index at least every commit index announced before it",
        p::RESTORE_KEEPS_APPLIED => "an application never applies a different command where it applied one",
        p::SNAPSHOT_COVERS_COMMITTED => "a snapshot and the compacted log never pass the commit index (§7)",
        _ => return None,
    })
}

/// The columns of one node's state in a trace: role, term, vote, commit
/// index, log, and what else it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// The node: `n1`, or `client 4`.
    pub node: String,
    /// `follower`, `pre-candidate`, `candidate`, `leader`, or `down`.
    pub role: String,
    /// `t1`.
    pub term: String,
    /// `vote n2`, or `no vote`.
    pub vote: String,
    /// `commit 2`.
    pub commit: String,
    /// `log [1:noop, 1:"a"]`.
    pub log: String,
    /// The rest: votes received, a leader's view of its followers, the
    /// leader known, proposals held, snapshot, reads.
    pub notes: String,
}

impl NodeRow {
    /// A live node's state.
    pub fn of(node: String, s: &State) -> NodeRow {
        let mut notes = Vec::new();
        let role = match s.role() {
            Role::Follower => "follower",
            Role::PreCandidate { votes } => {
                notes.push(format!("pre-votes {}", ids(votes.iter())));
                "pre-candidate"
            }
            Role::Candidate { votes } => {
                notes.push(format!("votes {}", ids(votes.iter())));
                "candidate"
            }
            Role::Leader { progress, transfer } => {
                let view: Vec<String> = progress
                    .iter()
                    .map(|(id, p)| {
                        let active = if p.is_active() { "*" } else { "" };
                        format!("{id}:{}/{}{active}", p.match_index().0, p.next_index().0)
                    })
                    .collect();
                notes.push(format!("match/next {}", view.join(" ")));
                if let Some(t) = transfer {
                    notes.push(format!("transfer to {t}"));
                }
                "leader"
            }
        };
        if let (Some(leader), false) = (s.leader(), s.is_leader()) {
            notes.push(format!("leader {leader}"));
        }
        if !s.pending().is_empty() {
            notes.push(format!("pending {}", s.pending().len()));
        }
        if let Some(snapshot) = s.snapshot() {
            notes.push(format!("{snapshot:?}"));
        }
        if !s.reads().is_empty() {
            notes.push(format!("{:?}", s.reads()));
        }
        NodeRow {
            node,
            role: role.to_string(),
            term: s.term().to_string(),
            vote: vote_of(s.hard_state().voted_for),
            commit: format!("commit {}", s.commit_index().0),
            log: format!("log {:?}", s.log()),
            notes: notes.join(", "),
        }
    }

    /// A crashed node: what its storage holds (`commit -`: the commit index is volatile).
    pub fn down(node: String, storage: Option<&MemoryStore>) -> NodeRow {
        let empty = MemoryStore::new();
        let store = storage.unwrap_or(&empty);
        let mut notes = vec!["(its storage)".to_string()];
        if let Some(snapshot) = &store.snapshot {
            notes.push(format!("{snapshot:?}"));
        }
        NodeRow {
            node,
            role: "down".to_string(),
            term: store.hard.term.to_string(),
            vote: vote_of(store.hard.voted_for),
            commit: "commit -".to_string(),
            log: format!("log {:?}", store.log),
            notes: notes.join(", "),
        }
    }

    /// A row of free text (a model client).
    fn text(node: String, text: String) -> NodeRow {
        NodeRow {
            node,
            role: text,
            term: String::new(),
            vote: String::new(),
            commit: String::new(),
            log: String::new(),
            notes: String::new(),
        }
    }

    fn columns(&self) -> [&str; 7] {
        [&self.node, &self.role, &self.term, &self.vote, &self.commit, &self.log, &self.notes]
    }
}

fn vote_of(vote: Option<raft_core::NodeId>) -> String {
    vote.map_or_else(|| "no vote".to_string(), |v| format!("vote {v}"))
}

fn ids<'a>(ids: impl Iterator<Item = &'a raft_core::NodeId>) -> String {
    let ids: Vec<String> = ids.map(|id| id.to_string()).collect();
    format!("{{{}}}", ids.join(", "))
}

/// Rows rendered with every column as wide as its widest entry, except the
/// last two, which are as long as they are.
pub fn render(rows: &[NodeRow]) -> Vec<String> {
    let mut widths = [0; 7];
    for row in rows.iter().filter(|r| !r.term.is_empty()) {
        for (w, c) in widths.iter_mut().zip(row.columns()) {
            *w = (*w).max(c.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            if row.term.is_empty() {
                return format!("{}  {}", row.node, row.role);
            }
            let c = row.columns();
            let mut line = String::new();
            for (k, (w, text)) in widths.iter().zip(c).enumerate() {
                if k == 6 {
                    line.push_str(text);
                } else {
                    line.push_str(&format!("{text:<w$}  "));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// What a step does, in words, with the node as its subject.
pub fn describe(step: &Step) -> String {
    let node = step.node;
    match &step.event {
        Event::Start => format!("{node} starts"),
        Event::StartIn(m) => format!("{node} starts in a cluster of {m:?}"),
        Event::Crash => format!("{node} crashes"),
        Event::Recover => format!("{node} restarts from its storage"),
        Event::Written => format!("{node}'s disk makes its oldest background write durable"),
        Event::BackgroundWrites => format!("{node} writes its own entries and its vote in the background"),
        Event::Input(input) => format!("{node} {}", describe_input(input)),
    }
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::Receive { from, message } => format!("receives {message:?} from {from}"),
        Input::Timeout(Timer::Election) => "election timer fires".to_string(),
        Input::Timeout(Timer::Heartbeat) => "heartbeat timer fires".to_string(),
        Input::Timeout(Timer::CheckQuorum) => "check-quorum timer fires".to_string(),
        Input::Timeout(Timer::Transfer) => "transfer timer fires".to_string(),
        Input::Propose(proposals) => {
            let data: Vec<String> =
                proposals.iter().map(|p| format!("{:?}", Payload::Command(p.data.clone()))).collect();
            format!("is asked to propose {}", data.join(", "))
        }
        Input::Read(reads) => format!("is asked to read ({})", ids_of(reads.iter().map(|r| r.to_string()))),
        Input::Applied(index) => format!("learns its application applied through {index}"),
        Input::SnapshotTaken(index) => format!("learns its application took a snapshot at {index}"),
        Input::TransferLeadership(target) => format!("is asked to hand its leadership to {target}"),
        Input::Persisted { term, index } => format!("learns its writes through {index}@{term} are durable"),
        Input::ChangeMembership { change, .. } => format!("is asked for the membership change {change:?}"),
    }
}

fn ids_of(ids: impl Iterator<Item = String>) -> String {
    ids.collect::<Vec<_>>().join(", ")
}

/// The name users see for actor `i`: `n{i + 1}` for a server, `client i`
/// for a model client (the number its commands carry: `"w3=3"`).
fn actor_name(model: &RaftModel, i: usize) -> String {
    match model.actors.get(i) {
        Some(Node::Server(_)) => node_at(i).to_string(),
        _ => format!("client {i}"),
    }
}

/// The row of actor `i` in `state`.
fn row_of(model: &RaftModel, state: &RaftState, i: usize) -> NodeRow {
    let name = actor_name(model, i);
    match (&*state.actor_states[i], state.crashed[i]) {
        (NodeState::Server(_), true) => NodeRow::down(name, state.actor_storages[i].as_deref().map(|d| &d.raft)),
        (NodeState::Server(s), false) => NodeRow::of(name, &s.raft),
        (NodeState::Client(c), crashed) => {
            let ops = match model.actors.get(i) {
                Some(Node::Client(client)) => client.ops.len(),
                _ => 0,
            };
            let text = match usize::from(c.next) {
                _ if crashed => "down".to_string(),
                n if n == usize::from(u8::MAX) => "gave up (restarted)".to_string(),
                n if n >= ops => "done".to_string(),
                n => format!("waiting for the answer to operation {} of {ops}", n + 1),
            };
            NodeRow::text(name, text)
        }
    }
}

/// What an action no server sees does, in words.
fn describe_other(model: &RaftModel, action: &Action) -> String {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            format!(
                "{} receives {msg:?} from {}",
                actor_name(model, usize::from(*dst)),
                actor_name(model, usize::from(*src))
            )
        }
        ActorModelAction::Drop(env) => format!(
            "the network loses {:?} from {} to {}",
            env.msg,
            actor_name(model, usize::from(env.src)),
            actor_name(model, usize::from(env.dst))
        ),
        ActorModelAction::Timeout(id, ModelTimer::Raft(t)) => {
            format!("{} {t:?} timer fires", actor_name(model, usize::from(*id)))
        }
        ActorModelAction::Timeout(id, ModelTimer::Snapshot(i)) => {
            format!("{}'s application takes a snapshot at {i} (refused)", actor_name(model, usize::from(*id)))
        }
        ActorModelAction::Timeout(id, ModelTimer::Written) => {
            format!("{}'s disk completes a write", actor_name(model, usize::from(*id)))
        }
        ActorModelAction::Timeout(id, ModelTimer::Change(c)) => {
            format!("the operator asks {} for {c:?} (not taken)", actor_name(model, usize::from(*id)))
        }
        ActorModelAction::Crash(id) => format!("{} crashes", actor_name(model, usize::from(*id))),
        ActorModelAction::Recover(id) => format!("{} restarts", actor_name(model, usize::from(*id))),
        ActorModelAction::SelectRandom { actor, .. } => {
            format!("{} makes a random choice", actor_name(model, usize::from(*actor)))
        }
    }
}

/// The actor an action happens to.
fn actor_of(action: &Action) -> usize {
    usize::from(match action {
        ActorModelAction::Deliver { dst, .. } => *dst,
        ActorModelAction::Drop(env) => env.dst,
        ActorModelAction::Timeout(id, _) | ActorModelAction::Crash(id) | ActorModelAction::Recover(id) => *id,
        ActorModelAction::SelectRandom { actor, .. } => *actor,
    })
}

/// A path as numbered lines: step 0 is the initial state (every node's
/// state in it), then each step with the state of the node it happened to
/// after it, then the final state of every node, the messages in flight
/// and the leaders elected so far.
pub fn trace(model: &RaftModel, path: &ModelPath) -> Vec<String> {
    enum Line {
        Text(String),
        Row(NodeRow),
    }
    let pairs = path.clone().into_vec();
    let mut lines = Vec::new();
    let init = &pairs[0].0;
    let mut start: BTreeMap<raft_core::NodeId, Vec<String>> = BTreeMap::new();
    for step in replay::initial_steps(model) {
        let text = describe(&step);
        let text = text.strip_prefix(&format!("{} ", step.node)).unwrap_or(&text).to_string();
        start.entry(step.node).or_default().push(text);
    }
    let start: Vec<String> = start.into_iter().map(|(node, what)| format!("{node} {}", what.join(", "))).collect();
    lines.push(Line::Text(format!("0. initial state: {}", start.join("; "))));
    for i in 0..init.actor_states.len() {
        lines.push(Line::Row(row_of(model, init, i)));
    }
    let mut broken_seen = vec![false; init.actor_states.len()];
    for (k, window) in pairs.windows(2).enumerate() {
        let (before, action) = (&window[0].0, window[0].1.clone().expect("an action before the last state"));
        let after = &window[1].0;
        let steps = replay::steps_of_action(model, before, action.clone());
        let from_client = matches!(&action, ActorModelAction::Deliver { src, .. }
            if matches!(model.actors.get(usize::from(*src)), Some(Node::Client(_))));
        let what = if steps.is_empty() {
            describe_other(model, &action)
        } else if from_client {
            // A client's request: the message, then what raft-core got.
            let inputs: Vec<String> = steps
                .iter()
                .filter_map(|s| match &s.event {
                    Event::Input(input) => Some(describe_input(input)),
                    _ => None,
                })
                .collect();
            format!("{}, so it {}", describe_other(model, &action), inputs.join(", then "))
        } else {
            let node = steps[0].node;
            let parts: Vec<String> = steps.iter().map(describe).collect();
            let parts: Vec<&str> = parts
                .iter()
                .enumerate()
                .map(|(j, s)| if j == 0 { s.as_str() } else { s.strip_prefix(&format!("{node} ")).unwrap_or(s) })
                .collect();
            parts.join(", then ")
        };
        lines.push(Line::Text(format!("{}. {what}", k + 1)));
        let i = actor_of(&action);
        if matches!(action, ActorModelAction::Drop(_)) || i >= after.actor_states.len() {
            continue;
        }
        lines.push(Line::Row(row_of(model, after, i)));
        if let NodeState::Server(s) = &*after.actor_states[i] {
            if s.broken.any() && !broken_seen[i] {
                broken_seen[i] = true;
                lines.push(Line::Text(format!("   {} broke a rule in this step: {}", node_at(i), broken_flags(s))));
            }
        }
    }
    let last = path.last_state();
    lines.push(Line::Text(format!("Final state, after step {}:", pairs.len() - 1)));
    for i in 0..last.actor_states.len() {
        lines.push(Line::Row(row_of(model, last, i)));
    }
    let messages: Vec<String> = in_flight(&last.network)
        .map(|e| {
            format!(
                "{} -> {}: {:?}",
                actor_name(model, usize::from(e.src)),
                actor_name(model, usize::from(e.dst)),
                e.msg
            )
        })
        .collect();
    if messages.is_empty() {
        lines.push(Line::Text("   no message in flight".to_string()));
    } else {
        lines.push(Line::Text("   in flight:".to_string()));
        lines.extend(messages.into_iter().map(|m| Line::Text(format!("     {m}"))));
    }
    if !last.history.leaders.is_empty() {
        let leaders: Vec<String> = last.history.leaders.iter().map(|(t, n)| format!("{n} in {t}")).collect();
        lines.push(Line::Text(format!("   leaders elected so far: {}", leaders.join(", "))));
    }
    let rows: Vec<NodeRow> =
        lines.iter().filter_map(|l| if let Line::Row(r) = l { Some(r.clone()) } else { None }).collect();
    let mut rendered = render(&rows).into_iter();
    lines
        .into_iter()
        .map(|l| match l {
            Line::Text(t) => t,
            Line::Row(_) => format!("     {}", rendered.next().expect("one rendering per row")),
        })
        .collect()
}

/// The rules the adapter saw a node break (the `Broken` flags set), by name.
fn broken_flags(s: &ServerState) -> String {
    let text = format!("{:?}", s.broken);
    let inner = text.trim_start_matches("Broken").trim().trim_start_matches('{').trim_end_matches('}');
    let set: Vec<String> =
        inner.split(',').filter_map(|f| f.trim().strip_suffix(": true")).map(|f| f.replace('_', " ")).collect();
    set.join(", ")
}

/// The progress line while a search runs, on standard error: one line
/// rewritten in place on a terminal, else a line every few seconds.
pub struct Progress {
    started: Instant,
    last: Option<Instant>,
    terminal: bool,
    shown: bool,
}

/// How often the progress line is printed when standard error is not a
/// terminal (a CI log): often enough to show life, rarely enough that a
/// ten-minute run prints a hundred lines.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How often the progress line is rewritten on a terminal.
const PROGRESS_TERMINAL_INTERVAL: Duration = Duration::from_millis(250);

impl Progress {
    /// Starts the clock.
    pub fn start() -> Progress {
        Progress { started: Instant::now(), last: None, terminal: std::io::stderr().is_terminal(), shown: false }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints the line if it is time to.
    pub fn tick(&mut self, states: usize, unique: usize, depth: usize) {
        let now = Instant::now();
        let interval = if self.terminal { PROGRESS_TERMINAL_INTERVAL } else { PROGRESS_LOG_INTERVAL };
        let due = match self.last {
            None => self.terminal || now - self.started >= interval,
            Some(last) => now - last >= interval,
        };
        if !due {
            return;
        }
        self.last = Some(now);
        let line = progress_line(states, unique, depth, self.started.elapsed(), memory_bytes());
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
            self.shown = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Clears the line on a terminal, so that the report starts clean.
    pub fn finish(&mut self) {
        if self.terminal && self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// `Checking. states=…, unique=…, depth=…` (stateright's progress line, as
/// raft-lite prints it), then the elapsed time, the rate and the memory.
pub fn progress_line(states: usize, unique: usize, depth: usize, elapsed: Duration, memory: Option<u64>) -> String {
    let secs = elapsed.as_secs_f64();
    // A rate over the first half second says little (and divides by ~0).
    let rate = if secs >= 0.5 { format!("{:.0} states/s", states as f64 / secs) } else { "- states/s".to_string() };
    let memory = memory.map(|b| format!(", {} MB resident", b / 1_000_000)).unwrap_or_default();
    format!("Checking. states={states}, unique={unique}, depth={depth}, {secs:.0} s, {rate}{memory}")
}

/// The process's resident memory, where the system says (Linux's /proc).
fn memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process): from then on Ctrl-C
/// makes [`interrupted`] true instead of killing the process, so that the
/// search can print what it reached. A second Ctrl-C, once the first has
/// been seen, exits at once.
pub fn catch_interrupts() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    });
}

/// Whether Ctrl-C was pressed since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `--replay FILE`: runs a replay file's steps on raft-core alone (no
/// model checker), printing each with the state of its node after it, and
/// the final state of every node. Exit status 0, or 2 for a file that cannot
/// be read or whose flags describe no model.
pub fn replay_file(file: &FsPath, out: &mut impl Write) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 2;
        }
    };
    let replay = match ReplayFile::from_json(&text) {
        Ok(replay) => replay,
        Err(e) => {
            eprintln!("error: {} is not a replay file: {e}", file.display());
            return 2;
        }
    };
    let args = std::iter::once("raft-check".to_string()).chain(replay.flags.iter().cloned());
    let parsed = <crate::cli::Args as clap::Parser>::try_parse_from(args).map_err(|e| e.to_string());
    let config = match parsed.and_then(|a| a.model_config()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: the flags of {} describe no model: {e}", file.display());
            return 2;
        }
    };
    let flags = if replay.flags.is_empty() { "the default model".to_string() } else { replay.flags.join(" ") };
    let _ = writeln!(
        out,
        "Replaying {} on raft-core alone (no model checker): the {} steps of a counterexample to {}, found \
         with {flags}.",
        file.display(),
        replay.steps.len(),
        replay.property
    );
    let forget = config.switches.forget_vote_on_recovery;
    let configs: Vec<_> = (0..config.servers).map(|i| config.raft_config(i)).collect();
    let mut cluster = replay::Cluster::new(configs);
    let node_row = |cluster: &replay::Cluster, i: usize| match &cluster.states[i] {
        Some(s) => NodeRow::of(node_at(i).to_string(), s),
        None => NodeRow::down(node_at(i).to_string(), Some(&cluster.storage[i])),
    };
    let mut lines: Vec<(String, Option<NodeRow>)> = Vec::new();
    for (k, step) in replay.steps.iter().enumerate() {
        if cluster.states[crate::actor::server_index(step.node)].is_none() && matches!(step.event, Event::Input(_)) {
            let _ = writeln!(out, "{}. {}: the node is down; the replay stops here", k + 1, describe(step));
            return 2;
        }
        cluster.apply(step, forget);
        let row = node_row(&cluster, crate::actor::server_index(step.node));
        lines.push((format!("{}. {}", k + 1, describe(step)), Some(row)));
    }
    lines.push(("Final state:".to_string(), None));
    for i in 0..config.servers {
        lines.push((String::new(), Some(node_row(&cluster, i))));
    }
    let rows: Vec<NodeRow> = lines.iter().filter_map(|(_, r)| r.clone()).collect();
    let mut rendered = render(&rows).into_iter();
    for (text, row) in lines {
        if !text.is_empty() {
            let _ = writeln!(out, "  {text}");
        }
        if row.is_some() {
            let _ = writeln!(out, "       {}", rendered.next().expect("one rendering per row"));
        }
    }
    let leaders: Vec<String> = cluster.leaders().iter().map(|(t, n)| format!("{n} in {t}")).collect();
    let leaders = if leaders.is_empty() { "none".to_string() } else { leaders.join(", ") };
    let _ = writeln!(out, "     live leaders: {leaders}");
    0
}
