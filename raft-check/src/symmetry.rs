//! Symmetry reduction: servers are interchangeable, so two states that
//! differ only by a renaming of servers (and of the values each server
//! proposed at start, which are named after it) are explored once.
//!
//! [`representative`] picks a renaming from an id-free summary of each
//! server and applies it to the whole state: actor states, storages,
//! timers, crash flags, messages in flight and the history. Any renaming is
//! sound (the result is a state equivalent to the input); a good choice of
//! renaming is what makes equivalent states meet.
//!
//! raft-core's `State` keeps its fields private, so the renaming goes
//! through its serde form. The field names are checked, so that a field
//! added to `State` fails loudly here instead of escaping the renaming.
//! (A `State::map_node_ids` in raft-core would replace this.)

use crate::actor::{Durable, Msg, NodeState, ServerState};
use crate::model::{History, RaftState};
use raft_core::{Entry, Log, Message, NodeId, Payload, State};
use serde_json::Value as Json;
use stateright::actor::{Envelope, Id, Network};

/// A renaming of servers: `perm[old] == new`.
struct Renaming {
    perm: Vec<usize>,
}

impl Renaming {
    fn node(&self, id: NodeId) -> NodeId {
        NodeId(self.perm[id.0 as usize] as u64)
    }
    fn id(&self, id: Id) -> Id {
        Id::from(self.perm[usize::from(id)])
    }
    /// Start values are named after their proposer (`a` for node 0).
    fn data(&self, data: &[u8]) -> Vec<u8> {
        match data {
            [c] if c.checked_sub(b'a').is_some_and(|i| usize::from(i) < self.perm.len()) => {
                vec![b'a' + self.perm[usize::from(c - b'a')] as u8]
            }
            _ => data.to_vec(),
        }
    }
    fn entry(&self, e: &Entry) -> Entry {
        match &e.payload {
            Payload::Noop => e.clone(),
            Payload::Command(data) => Entry::command(e.term, self.data(data)),
        }
    }
    fn log(&self, log: &Log) -> Log {
        assert_eq!(log.snapshot_index().0, 0, "symmetry: snapshots are not renamed yet");
        Log::from_entries(log.entries().iter().map(|e| self.entry(e)).collect())
    }
    fn reindex<T: Clone>(&self, v: &[T]) -> Vec<T> {
        let mut out = v.to_vec();
        for (old, x) in v.iter().enumerate() {
            out[self.perm[old]] = x.clone();
        }
        out
    }
}

/// An equivalent state under a renaming of servers chosen from an id-free
/// summary of each. Only for models where every actor is a server.
///
/// It also forgets what cannot matter any more.
///
/// A crashed server's in-memory state is gone: nothing reads it (the
/// properties skip it, messages wait, recovery rebuilds it from storage),
/// but stateright keeps the last one, which would tell apart states that
/// differ only in what a crashed node used to know. Replacing it with one
/// fixed placeholder merges them.
///
/// Likewise a response that its receiver will drop whenever it is delivered
/// can never matter again, and is removed (see [`is_garbage`]). Any
/// property about it was checked when it was sent, against a storage that
/// only moves forward.
pub fn representative(state: &RaftState) -> RaftState {
    representative_with(state, true)
}

/// As [`representative`], but keeping every message in flight. The garbage
/// collection relies on how a correct core treats stale responses, so it is
/// not sound when a rule is broken on purpose (a fault may make a node act
/// on a stale response): the mutation harness uses this one.
pub fn representative_keeping_messages(state: &RaftState) -> RaftState {
    representative_with(state, false)
}

/// The representative function to use with `fault` injected (or none).
pub fn representative_for(fault: Option<raft_core::Fault>) -> fn(&RaftState) -> RaftState {
    match fault {
        None => representative,
        Some(_) => representative_keeping_messages,
    }
}

fn representative_with(state: &RaftState, collect_garbage: bool) -> RaftState {
    let n = state.actor_states.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_cached_key(|&i| summary(state, i));
    let mut perm = vec![0; n];
    for (new, &old) in order.iter().enumerate() {
        perm[old] = new;
    }
    let r = Renaming { perm };
    let identity = r.perm.iter().enumerate().all(|(i, &p)| i == p);
    let garbage = collect_garbage && crate::model::in_flight(&state.network).any(|e| is_garbage(state, &e));
    let mut actor_states = state.actor_states.clone();
    for (i, s) in actor_states.iter_mut().enumerate() {
        if state.crashed[i] {
            *s = placeholder();
        }
    }
    if identity {
        let network = if garbage {
            rename_network(&state.network, &r, true, |e| !is_garbage(state, e))
        } else {
            state.network.clone()
        };
        return RaftState { actor_states, network, ..state.clone() };
    }
    rename(state, actor_states, &r, |e| !garbage || !is_garbage(state, e))
}

/// Whether a message in flight is a response its receiver drops now and
/// forever. Terms never go down (not even across a crash, since the term is
/// persisted before it is used), and a node never becomes candidate or
/// leader again in a term it has left those roles in, so:
/// - a response of an earlier term than the receiver's stored one is stale;
/// - a vote response of the receiver's term is used only when granted and
///   the receiver is (live and) a candidate of that term;
/// - an append response of the receiver's term is used only by a live
///   leader of that term;
/// - a forward response only produces notifications, which the model ignores.
fn is_garbage(state: &RaftState, e: &Envelope<&Msg>) -> bool {
    let Msg::Raft(m) = e.msg else { return false };
    let m = &**m;
    let dst = usize::from(e.dst);
    let Some(stored) = state.actor_storages[dst].as_ref().map(|d| d.hard.term) else { return false };
    let live = match (&*state.actor_states[dst], state.crashed[dst]) {
        (NodeState::Server(s), false) => Some(&s.raft),
        _ => None,
    };
    match m {
        Message::RequestVoteResponse(r) => {
            let candidate = live.is_some_and(|s| s.role_kind() == raft_core::RoleKind::Candidate);
            r.term < stored || (r.term == stored && (!r.granted || !candidate))
        }
        Message::AppendEntriesResponse(r) => {
            let leader = live.is_some_and(|s| s.is_leader());
            r.term < stored || (r.term == stored && !leader)
        }
        Message::ForwardResponse(r) => r.term <= stored,
        _ => false,
    }
}

fn placeholder() -> std::sync::Arc<NodeState> {
    static PLACEHOLDER: std::sync::OnceLock<std::sync::Arc<NodeState>> = std::sync::OnceLock::new();
    PLACEHOLDER
        .get_or_init(|| {
            let config = raft_core::Config::new(NodeId(0), [NodeId(0)]).expect("a one-node config");
            let raft = State::new(&config).0;
            std::sync::Arc::new(NodeState::Server(ServerState::new(raft)))
        })
        .clone()
}

/// What a server looks like without any node id or start value in it.
fn summary(state: &RaftState, i: usize) -> (bool, Vec<u64>, u64, u8, u64, usize, bool) {
    let crashed = state.crashed[i];
    let storage_terms = state.actor_storages[i]
        .as_ref()
        .map(|d| std::iter::once(d.hard.term.0).chain(d.log.entries().iter().map(|e| e.term.0)).collect())
        .unwrap_or_default();
    if crashed {
        return (crashed, storage_terms, 0, 0, 0, 0, false);
    }
    match &*state.actor_states[i] {
        NodeState::Server(s) => (
            crashed,
            storage_terms,
            s.raft.term().0,
            s.raft.role_kind() as u8,
            s.raft.commit_index().0,
            s.raft.pending().len(),
            state.timers_set[i].iter().next().is_some(),
        ),
        NodeState::Client(_) => unreachable!("symmetry applies to servers-only models"),
    }
}

fn rename(
    state: &RaftState,
    actor_states: Vec<std::sync::Arc<NodeState>>,
    r: &Renaming,
    keep: impl Fn(&Envelope<&Msg>) -> bool,
) -> RaftState {
    let actor_states = actor_states
        .iter()
        .map(|s| match &**s {
            NodeState::Server(s) => std::sync::Arc::new(NodeState::Server(rename_server(s, r))),
            NodeState::Client(_) => unreachable!("symmetry applies to servers-only models"),
        })
        .collect::<Vec<_>>();
    let storages: Vec<Option<std::sync::Arc<Durable>>> = state
        .actor_storages
        .iter()
        .map(|d| d.as_ref().map(|d| std::sync::Arc::new(Durable { hard: rename_hard(d.hard, r), log: r.log(&d.log) })))
        .collect();
    let history = History {
        leaders: {
            let mut leaders: Vec<_> = state.history.leaders.iter().map(|&(t, n)| (t, r.node(n))).collect();
            leaders.sort_unstable();
            leaders
        },
        // Reads (and so read floors) exist only in the kv model, which has
        // clients and is never symmetry-reduced.
        ..state.history.clone()
    };
    RaftState {
        actor_states: r.reindex(&actor_states),
        network: rename_network(&state.network, r, false, keep),
        timers_set: r.reindex(&state.timers_set),
        random_choices: r.reindex(&state.random_choices),
        crashed: r.reindex(&state.crashed),
        history,
        actor_storages: r.reindex(&storages),
    }
}

fn rename_hard(hard: raft_core::HardState, r: &Renaming) -> raft_core::HardState {
    raft_core::HardState { term: hard.term, voted_for: hard.voted_for.map(|v| r.node(v)) }
}

/// Renaming through serde is slow, and the same server state meets the
/// same renaming in many system states, so renamed states are memoised per
/// thread (keyed by a 64-bit hash of the state and the renaming, the same
/// trust in 64-bit hashes that stateright's fingerprints ask for). The memo
/// is emptied when it reaches `MEMO_ENTRIES_MAX`, to bound its memory.
const MEMO_ENTRIES_MAX: usize = 1 << 20;

thread_local! {
    static MEMO: std::cell::RefCell<std::collections::HashMap<(u64, u64), State>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn rename_server(s: &ServerState, r: &Renaming) -> ServerState {
    if r.perm.len() > 16 {
        return ServerState { raft: rename_raft(&s.raft, r), ..s.clone() };
    }
    let perm_code = r.perm.iter().enumerate().fold(0u64, |acc, (i, &p)| acc | ((p as u64) << (4 * i)));
    let key = (ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(&s.raft), perm_code);
    let raft = MEMO.with(|memo| {
        if let Some(raft) = memo.borrow().get(&key) {
            return raft.clone();
        }
        let raft = rename_raft(&s.raft, r);
        let mut memo = memo.borrow_mut();
        if memo.len() >= MEMO_ENTRIES_MAX {
            memo.clear();
        }
        memo.insert(key, raft.clone());
        raft
    });
    ServerState { raft, ..s.clone() }
}

const STATE_FIELDS: [&str; 8] =
    ["hard", "log", "role", "leader", "commit_index", "delivered_index", "pending", "reads"];

/// Renames the node ids and start values inside a raft-core state, through
/// its serde form.
fn rename_raft(state: &State, r: &Renaming) -> State {
    let mut json = serde_json::to_value(state).expect("State serializes");
    let obj = json.as_object_mut().expect("State is a struct");
    let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    fields.sort_unstable();
    let mut expected = STATE_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(fields, expected, "raft-core's State changed: update the symmetry renaming");
    // Reads hold node ids too, but only the kv model makes reads, and it has
    // clients, so it is never symmetry-reduced.
    assert!(state.reads().is_empty(), "symmetry renaming does not rename reads");
    let node = |v: &Json| Json::from(r.perm[v.as_u64().expect("a node id") as usize] as u64);
    if let Some(v) = obj["hard"].get_mut("voted_for").filter(|v| !v.is_null()) {
        *v = node(v);
    }
    if !obj["leader"].is_null() {
        obj["leader"] = node(&obj["leader"]);
    }
    if let Some(votes) = obj["role"].pointer_mut("/Candidate/votes").and_then(Json::as_array_mut) {
        for v in votes.iter_mut() {
            *v = node(v);
        }
    }
    if let Some(progress) = obj["role"].pointer_mut("/Leader/progress").and_then(Json::as_object_mut) {
        let renamed: serde_json::Map<String, Json> = std::mem::take(progress)
            .into_iter()
            .map(|(k, v)| (r.perm[k.parse::<usize>().expect("a node id key")].to_string(), v))
            .collect();
        *progress = renamed;
    }
    let log: Log = serde_json::from_value(obj["log"].take()).expect("Log deserializes");
    obj["log"] = serde_json::to_value(r.log(&log)).expect("Log serializes");
    if let Some(pending) = obj["pending"].as_array_mut() {
        for p in pending {
            let data: Vec<u8> = serde_json::from_value(p["data"].take()).expect("proposal bytes");
            p["data"] = Json::from(r.data(&data));
        }
    }
    serde_json::from_value(json).expect("renamed State deserializes")
}

fn rename_msg(msg: &Msg, r: &Renaming) -> Msg {
    let Msg::Raft(message) = msg else { return msg.clone() };
    let message = match &**message {
        Message::AppendEntries(m) => {
            let mut m = m.clone();
            m.entries = m.entries.iter().map(|e| r.entry(e)).collect();
            Message::AppendEntries(m)
        }
        Message::Forward(m) => {
            let mut m = m.clone();
            m.proposals = m.proposals.iter().map(|(id, d)| (*id, r.data(d))).collect();
            Message::Forward(m)
        }
        Message::ForwardResponse(m) => {
            let mut m = m.clone();
            m.leader_hint = m.leader_hint.map(|l| r.node(l));
            Message::ForwardResponse(m)
        }
        _ => return msg.clone(),
    };
    Msg::Raft(std::sync::Arc::new(message))
}

fn rename_network(
    network: &Network<Msg>,
    r: &Renaming,
    identity: bool,
    keep: impl Fn(&Envelope<&Msg>) -> bool,
) -> Network<Msg> {
    let envelope = |e: Envelope<&Msg>| {
        let msg = if identity { e.msg.clone() } else { rename_msg(e.msg, r) };
        Envelope { src: r.id(e.src), dst: r.id(e.dst), msg }
    };
    let all = crate::model::in_flight(network).filter(|e| keep(e)).map(envelope);
    match network {
        Network::UnorderedNonDuplicating(_) => Network::new_unordered_nonduplicating(all),
        Network::Ordered(_) => Network::new_ordered(all),
        Network::UnorderedDuplicating(_, last) => {
            let last = last.as_ref().map(|e| envelope(Envelope { src: e.src, dst: e.dst, msg: &e.msg }));
            Network::new_unordered_duplicating_with_last_msg(all, last)
        }
    }
}
