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
//! raft-core renames its own state ([`State::renamed`]), so that a field
//! added to `State` is renamed where it is defined.

use crate::actor::{Durable, Msg, NodeState, ServerState, SnapshotData};
use crate::model::{History, RaftState};
use raft_core::{Entry, Log, Message, NodeId, Payload, State};
use stateright::actor::{Envelope, Id, Network};
use std::sync::Arc;

/// A renaming of servers: `perm[old] == new`.
struct Renaming {
    perm: Vec<usize>,
}

impl Renaming {
    fn node(&self, id: NodeId) -> NodeId {
        crate::actor::node_at(self.perm[crate::actor::server_index(id)])
    }
    fn id(&self, id: Id) -> Id {
        Id::from(self.perm[usize::from(id)])
    }
    /// Start values are named after their proposer (`a` for the first, `n1`).
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
            Payload::Membership(m) => {
                Entry { term: e.term, payload: Payload::Membership(m.renamed(&|n| self.node(n))) }
            }
        }
    }
    fn snapshot_data(&self, data: &Arc<SnapshotData>) -> Arc<SnapshotData> {
        Arc::new(data.map_commands(&|d| self.data(d)))
    }
    fn log(&self, log: &Log) -> Log {
        log.renamed(&|n| self.node(n), &|data| self.data(data))
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
/// can never matter again, and is removed (see `is_garbage`). Any
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
    let Some(stored) = state.actor_storages[dst].as_ref().map(|d| d.raft.hard.term) else { return false };
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
            let config = raft_core::Config::new(crate::actor::node_at(0));
            let membership = raft_core::Membership::new([crate::actor::node_at(0)]).expect("one member");
            let raft = State::new(&config, membership).0;
            std::sync::Arc::new(NodeState::Server(ServerState::new(raft)))
        })
        .clone()
}

/// What a server looks like without any node id or start value in it.
fn summary(state: &RaftState, i: usize) -> (bool, Vec<u64>, u64, u8, u64, usize, bool) {
    let crashed = state.crashed[i];
    let storage_terms = state.actor_storages[i]
        .as_ref()
        .map(|d| std::iter::once(d.raft.hard.term.0).chain(d.raft.log.entries().iter().map(|e| e.term.0)).collect())
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
        .map(|d| {
            d.as_ref().map(|d| {
                // The renaming is a bijection on the members, so the
                // membership (the store's, and its snapshot's) is renamed
                // to itself.
                let raft = raft_core::MemoryStore {
                    hard: rename_hard(d.raft.hard, r),
                    membership: d.raft.membership.clone(),
                    snapshot: d.raft.snapshot.clone(),
                    log: r.log(&d.raft.log),
                };
                let snapshot_data = d.snapshot_data.as_ref().map(|data| r.snapshot_data(data));
                std::sync::Arc::new(Durable { raft, snapshot_data, snapshots_taken: d.snapshots_taken })
            })
        })
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

fn rename_server(s: &ServerState, r: &Renaming) -> ServerState {
    ServerState {
        raft: s.raft.renamed(&|id| r.node(id), &|data| r.data(data)),
        snapshots: s.snapshots.as_ref().map(|snapshots| {
            Box::new(crate::actor::Snapshots {
                data: snapshots.data.as_ref().map(|data| r.snapshot_data(data)),
                applied: snapshots.applied.iter().map(|(i, e)| (*i, r.entry(e))).collect(),
                ..(**snapshots).clone()
            })
        }),
        ..s.clone()
    }
}

fn rename_msg(msg: &Msg, r: &Renaming) -> Msg {
    let message = match msg {
        Msg::Raft(message) => message,
        Msg::Transfer(target) => return Msg::Transfer(r.node(*target)),
        // An InstallSnapshot names no node but in its membership, which is
        // renamed to itself.
        Msg::Snapshot(message, data) => return Msg::Snapshot(message.clone(), r.snapshot_data(data)),
        _ => return msg.clone(),
    };
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
            for (_, result) in &mut m.results {
                if let Err(reason) = result {
                    *reason = rename_rejection(*reason, r);
                }
            }
            Message::ForwardResponse(m)
        }
        Message::ReadIndexResponse(m) => {
            let mut m = m.clone();
            m.leader_hint = m.leader_hint.map(|l| r.node(l));
            for (_, result) in &mut m.results {
                if let Err(reason) = result {
                    *reason = rename_rejection(*reason, r);
                }
            }
            Message::ReadIndexResponse(m)
        }
        _ => return msg.clone(),
    };
    Msg::Raft(std::sync::Arc::new(message))
}

/// A refusal names nodes only as a leader hint.
fn rename_rejection(reason: raft_core::Rejection, r: &Renaming) -> raft_core::Rejection {
    match reason {
        raft_core::Rejection::NotLeader { leader_hint } => {
            raft_core::Rejection::NotLeader { leader_hint: leader_hint.map(|l| r.node(l)) }
        }
        other => other,
    }
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
