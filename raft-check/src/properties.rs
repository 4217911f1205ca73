//! The properties, named as in the Raft paper (§5, Figure 3), checked on
//! every state. Each `Always` is paired with a `Sometimes` that shows the
//! states it constrains are reached, so that a model that never gets there
//! cannot pass vacuously:
//!
//! | Always                | non-vacuous because, Sometimes          |
//! |-----------------------|-----------------------------------------|
//! | Election Safety       | Election Liveness                       |
//! | Log Matching          | Commit Known To Two Servers             |
//! | State Machine Safety  | Commit Known To Two Servers             |
//! | Leader Completeness   | Leader Change After Commit              |
//! | Leader Append-Only    | Log Liveness                            |
//! | Persist Before Send   | Acknowledgement In Flight               |
//! | Delivered In Order    | Delivered On Two Servers                |
//! | Match Index Sound     | Leader Knows A Match                    |
//! | Higher Term Adopted   | Leader Stepped Down                     |
//! | Stale Term Rejected   | Stale Message In Flight                 |
//! | No Panic              | Log Liveness                            |
//! | Pre-Vote Changes Nothing (pre-vote on) | Pre-Vote Refused       |
//! | Linearizable (kv)     | Read Completed (kv)                     |
//! | Read Index Fresh (kv) | Read Completed (kv)                     |
//! | Restore Keeps Applied (snapshots on) | Caught Up By Snapshot    |
//! | Snapshot Covers Committed (snapshots on) | Caught Up By Snapshot |
//!
//! plus `Sometimes` Leader Elected After Crash, and with snapshots on,
//! Recovered From Snapshot (with crashes).
//!
//! With snapshots a node's log starts after its compaction point: every
//! property over logs is stated over what a node *holds*, its snapshot's
//! data up to that point and its log after it
//! ([`held`](crate::actor::held)). Caught Up By Snapshot and Recovered From
//! Snapshot show that those states are reached: a follower's whole prefix
//! replaced by a leader's data, and a node restarted from its own.
//!
//! Some rules concern a step rather than a state (what a leader's log was
//! before, the order of a step's outputs, what it delivered, the term of
//! the message it received); the adapter records them per step in
//! [`Broken`](crate::actor::Broken) and the properties read those flags.
//!
//! Crashed servers have lost their volatile state: their in-memory state is
//! ignored and their storage stands for them.

use crate::actor::{Durable, Msg, NodeState, ServerState};
use crate::model::{live_servers, ModelKind, RaftModel, RaftState};
use raft_core::{AppendResult, Entry, LogIndex, Message, NodeId, Payload, Role};
use stateright::semantics::ConsistencyTester;
use stateright::Expectation;
use std::borrow::Cow;
use std::collections::BTreeSet;

/// At most one leader can be elected in a given term (§5.2).
pub const ELECTION_SAFETY: &str = "Election Safety";
/// If two logs contain an entry with the same index and term, the logs are
/// identical in all entries up through that index (§5.3).
pub const LOG_MATCHING: &str = "Log Matching";
/// An entry committed in a term is in the log of every leader of a later term (§5.4).
pub const LEADER_COMPLETENESS: &str = "Leader Completeness";
/// No two servers apply different entries at the same index (§5.4.3).
pub const STATE_MACHINE_SAFETY: &str = "State Machine Safety";
/// A leader never overwrites or deletes entries in its log; it only appends (§5.3).
pub const LEADER_APPEND_ONLY: &str = "Leader Append-Only";
/// Every vote, vote request and append acknowledgement in flight is backed
/// by its sender's storage, and every live server's storage holds its
/// in-memory term, vote and log.
pub const PERSIST_BEFORE_SEND: &str = "Persist Before Send";
/// What each server delivers in one lifetime is its log's commands in
/// order, each once, none beyond its commit index; and the delivered
/// prefixes of the live servers agree.
pub const DELIVERED_IN_ORDER: &str = "Delivered In Order";
/// A message of a higher term makes its receiver adopt the term and step
/// down to follower (§5.1).
pub const HIGHER_TERM_ADOPTED: &str = "Higher Term Adopted";
/// A leader's match index for a follower of its term is backed: the
/// follower's storage holds the leader's entries up to it (§5.3, Figure 2's
/// matchIndex).
pub const MATCH_INDEX_SOUND: &str = "Match Index Sound";
/// A request or answer of an older term than its receiver's changes nothing
/// and is neither granted nor acknowledged (§5.1).
pub const STALE_TERM_REJECTED: &str = "Stale Term Rejected";
/// raft-core never panics (an `assert!` of its contract failing is a
/// counterexample like any other).
pub const NO_PANIC: &str = "No Panic";
/// A pre-vote changes no term and no vote: neither the pre-candidate's
/// when it starts one, nor its voters' when they answer (thesis §9.6).
pub const PRE_VOTE_CHANGES_NOTHING: &str = "Pre-Vote Changes Nothing";
/// Sometimes a leader of a term was elected in an election a leadership
/// transfer started (with transfers in the model).
pub const TRANSFER_COMPLETED: &str = "Transfer Completed";
/// Sometimes a live server that led a term is a follower of that same term:
/// in a model without crashes only check-quorum does that.
pub const STEPPED_DOWN_BY_CHECK_QUORUM: &str = "Leader Stepped Down By Check-Quorum";
/// Sometimes a refused pre-vote is in flight (with pre-vote on).
pub const PRE_VOTE_REFUSED: &str = "Pre-Vote Refused";
/// kv model: the clients' reads and writes are linearizable.
pub const LINEARIZABLE: &str = "Linearizable";
/// kv model: a read is served at a read index at least as high as every
/// commit index a leader had announced when the read was issued (thesis
/// §6.4). Stricter than Linearizable, which sees a stale read only when a
/// newer write changed the value.
pub const READ_INDEX_FRESH: &str = "Read Index Fresh";
/// Sometimes a leader is elected.
pub const ELECTION_LIVENESS: &str = "Election Liveness";
/// Sometimes a client command is committed.
pub const LOG_LIVENESS: &str = "Log Liveness";
/// Sometimes, while a server is down, a leader of a later term than the one
/// it persisted is elected.
pub const LEADER_AFTER_CRASH: &str = "Leader Elected After Crash";
/// Sometimes two live servers both know an entry is committed.
pub const COMMIT_ON_TWO: &str = "Commit Known To Two Servers";
/// Sometimes a leader of a later term meets an entry committed in an earlier term.
pub const LEADER_CHANGE_AFTER_COMMIT: &str = "Leader Change After Commit";
/// Sometimes a granted vote or an append acknowledgement is in flight.
pub const ACK_IN_FLIGHT: &str = "Acknowledgement In Flight";
/// Sometimes a Raft message of an older term than its receiver's is in flight.
pub const STALE_MESSAGE_IN_FLIGHT: &str = "Stale Message In Flight";
/// Sometimes a leader knows a follower matches at least one entry.
pub const LEADER_KNOWS_A_MATCH: &str = "Leader Knows A Match";
/// Sometimes two live servers have each delivered a command.
pub const DELIVERED_ON_TWO: &str = "Delivered On Two Servers";
/// Sometimes a live server that led a term is a follower of a later one.
pub const LEADER_STEPPED_DOWN: &str = "Leader Stepped Down";
/// kv model: sometimes a client's read completes.
pub const READ_COMPLETED: &str = "Read Completed";
/// With snapshots: no server's application ever applies, in one lifetime,
/// a different command at an index where it applied one before: neither a
/// restored snapshot (a leader's, installed) nor a delivery after it
/// replaces what was applied.
pub const RESTORE_KEEPS_APPLIED: &str = "Restore Keeps Applied";
/// With snapshots: a live server's snapshot covers only entries it knows
/// committed (§7: "each server takes snapshots independently, covering
/// just the committed entries in its log"), and so does the compacted
/// part of its log.
pub const SNAPSHOT_COVERS_COMMITTED: &str = "Snapshot Covers Committed";
/// With snapshots: sometimes a live follower's application has been
/// restored from a leader's snapshot (an `InstallSnapshot` caught it up).
pub const CAUGHT_UP_BY_SNAPSHOT: &str = "Caught Up By Snapshot";
/// With snapshots and crashes: sometimes a live server recovered after a
/// crash from its own snapshot (plus the log after it).
pub const RECOVERED_FROM_SNAPSHOT: &str = "Recovered From Snapshot";
/// With membership changes: any two quorums that could elect leaders in
/// one term overlap (thesis §4.2). For each live server that is a voter of
/// the membership in effect at it, the voters of that membership whose logs
/// are no more up to date than its own could elect it (it votes for
/// itself); no two servers may have such electing majorities that are
/// disjoint. Two changes across a change of leader without the own-term
/// commit rule (raft-dev, 2015) break it.
pub const QUORUMS_OVERLAP: &str = "Quorums Overlap";
/// With membership changes: sometimes a live server knows committed a
/// membership in which a server that started as a learner votes.
pub const LEARNER_PROMOTED: &str = "Learner Promoted";
/// With membership changes: sometimes a live server knows committed a
/// membership without a server that started as a voter.
pub const VOTER_REMOVED: &str = "Voter Removed";
/// With membership changes: sometimes a server that led a term removed
/// itself in that term, and stepped down once the removal committed.
pub const LEADER_REMOVED_ITSELF: &str = "Leader Removed Itself";

/// Adds every property that applies to the model's kind.
pub fn add_all(model: RaftModel) -> RaftModel {
    let kv = model.cfg.kind == ModelKind::Kv;
    let model = model
        .property(Expectation::Always, ELECTION_SAFETY, election_safety)
        .property(Expectation::Always, LOG_MATCHING, log_matching)
        .property(Expectation::Always, LEADER_COMPLETENESS, leader_completeness)
        .property(Expectation::Always, STATE_MACHINE_SAFETY, state_machine_safety)
        .property(Expectation::Always, LEADER_APPEND_ONLY, leader_append_only)
        .property(Expectation::Always, PERSIST_BEFORE_SEND, persist_before_send)
        .property(Expectation::Always, DELIVERED_IN_ORDER, delivered_in_order)
        .property(Expectation::Always, MATCH_INDEX_SOUND, match_index_sound)
        .property(Expectation::Always, HIGHER_TERM_ADOPTED, higher_term_adopted)
        .property(Expectation::Always, STALE_TERM_REJECTED, stale_term_rejected)
        .property(Expectation::Always, NO_PANIC, no_panic);
    let model = add_if(model, kv, |m| {
        m.property(Expectation::Always, LINEARIZABLE, linearizable).property(
            Expectation::Always,
            READ_INDEX_FRESH,
            read_index_fresh,
        )
    });
    let model = model
        .property(Expectation::Sometimes, ELECTION_LIVENESS, election_liveness)
        .property(Expectation::Sometimes, LOG_LIVENESS, log_liveness)
        .property(Expectation::Sometimes, COMMIT_ON_TWO, commit_on_two)
        .property(Expectation::Sometimes, LEADER_CHANGE_AFTER_COMMIT, leader_change_after_commit)
        .property(Expectation::Sometimes, ACK_IN_FLIGHT, ack_in_flight)
        .property(Expectation::Sometimes, LEADER_KNOWS_A_MATCH, leader_knows_a_match)
        .property(Expectation::Sometimes, STALE_MESSAGE_IN_FLIGHT, stale_message_in_flight)
        .property(Expectation::Sometimes, DELIVERED_ON_TWO, delivered_on_two)
        .property(Expectation::Sometimes, LEADER_STEPPED_DOWN, leader_stepped_down);
    let cfg = model.cfg.clone();
    let model =
        add_if(model, cfg.crashes > 0, |m| m.property(Expectation::Sometimes, LEADER_AFTER_CRASH, leader_after_crash));
    let model = add_if(model, cfg.pre_vote, |m| {
        m.property(Expectation::Always, PRE_VOTE_CHANGES_NOTHING, pre_vote_changes_nothing).property(
            Expectation::Sometimes,
            PRE_VOTE_REFUSED,
            pre_vote_refused,
        )
    });
    let model =
        add_if(model, cfg.transfers, |m| m.property(Expectation::Sometimes, TRANSFER_COMPLETED, transfer_completed));
    let model = add_if(model, cfg.check_quorum && cfg.crashes == 0, |m| {
        m.property(Expectation::Sometimes, STEPPED_DOWN_BY_CHECK_QUORUM, stepped_down_by_check_quorum)
    });
    let model = add_if(model, cfg.snapshots > 0, |m| {
        m.property(Expectation::Always, RESTORE_KEEPS_APPLIED, restore_keeps_applied)
            .property(Expectation::Always, SNAPSHOT_COVERS_COMMITTED, snapshot_covers_committed)
            .property(Expectation::Sometimes, CAUGHT_UP_BY_SNAPSHOT, caught_up_by_snapshot)
    });
    let model = add_if(model, cfg.max_changes > 0, |m| {
        m.property(Expectation::Always, QUORUMS_OVERLAP, quorums_overlap)
            .property(Expectation::Sometimes, LEARNER_PROMOTED, learner_promoted)
            .property(Expectation::Sometimes, VOTER_REMOVED, voter_removed)
            .property(Expectation::Sometimes, LEADER_REMOVED_ITSELF, leader_removed_itself)
    });
    let model = add_if(model, cfg.snapshots > 0 && cfg.crashes > 0, |m| {
        m.property(Expectation::Sometimes, RECOVERED_FROM_SNAPSHOT, recovered_from_snapshot)
    });
    add_if(model, kv, |m| m.property(Expectation::Sometimes, READ_COMPLETED, read_completed))
}

/// Leaders ever elected come from the history (a leader that crashed still
/// counts); live leaders are added for clusters of one, which send nothing.
fn election_safety(_: &RaftModel, state: &RaftState) -> bool {
    let mut leaders: Vec<(u64, u64)> = state.history.leaders.iter().map(|(t, n)| (t.0, n.0)).collect();
    for (i, s) in live_servers(state) {
        if s.raft.is_leader() {
            leaders.push((s.raft.term().0, crate::actor::node_at(i).0));
        }
    }
    leaders.sort_unstable();
    leaders.dedup();
    leaders.windows(2).all(|w| w[0].0 != w[1].0)
}

/// What every server holds (see [`held`](crate::actor::held)): in memory
/// when up, on disk when down. A server whose log is compacted past the
/// snapshot data it keeps is left out (Persist Before Send reports it).
fn server_logs(state: &RaftState) -> Vec<Cow<'_, [Entry]>> {
    let mut logs = Vec::new();
    for (i, s) in state.actor_states.iter().enumerate() {
        if let NodeState::Server(s) = &**s {
            let held = if !state.crashed[i] {
                s.held()
            } else {
                state.actor_storages[i].as_ref().and_then(|durable| durable.held())
            };
            logs.extend(held);
        }
    }
    logs
}

fn log_matching(_: &RaftModel, state: &RaftState) -> bool {
    let logs = server_logs(state);
    for (k, a) in logs.iter().enumerate() {
        for b in &logs[k + 1..] {
            let common = a.len().min(b.len());
            // The highest index where both hold an entry of the same term
            // must have identical logs up to it.
            let last_same_term = (0..common).rev().find(|&i| a[i].term == b[i].term);
            if let Some(i) = last_same_term {
                if a[..=i] != b[..=i] {
                    return false;
                }
            }
        }
    }
    true
}

/// The first `n` entries of what `held` holds (all of them if fewer).
fn prefix<'a>(held: Cow<'a, [Entry]>, n: LogIndex) -> Cow<'a, [Entry]> {
    let n = (n.0 as usize).min(held.len());
    match held {
        Cow::Borrowed(entries) => Cow::Borrowed(&entries[..n]),
        Cow::Owned(mut entries) => {
            entries.truncate(n);
            Cow::Owned(entries)
        }
    }
}

/// The committed prefix of what a server holds, as it knows it.
/// (A broken core may claim a commit index past its log's end: the prefix
/// then stops at the end, and Delivered In Order or the other properties
/// report what went wrong.)
fn committed(s: &ServerState) -> Cow<'_, [Entry]> {
    prefix(s.held().unwrap_or_default(), s.raft.commit_index())
}

/// The prefix of what a server holds that its application has applied in
/// this lifetime (delivered, or restored from a snapshot).
fn delivered(s: &ServerState) -> Cow<'_, [Entry]> {
    prefix(s.held().unwrap_or_default(), s.delivered)
}

/// A server learns its commit index from the leader of a term no later than
/// its own; so for a leader whose term is at least that server's, Leader
/// Completeness (with Leader Append-Only for the leader's own term) says
/// the leader holds that committed prefix. Servers of a later term may know
/// commits the (stale) leader does not, and are skipped.
fn leader_completeness(_: &RaftModel, state: &RaftState) -> bool {
    for (_, leader) in live_servers(state).filter(|(_, s)| s.raft.is_leader()) {
        for (_, other) in live_servers(state) {
            if other.raft.term() > leader.raft.term() {
                continue;
            }
            let prefix = committed(other);
            let held = leader.held().unwrap_or_default();
            if held.len() < prefix.len() || held[..prefix.len()] != *prefix {
                return false;
            }
        }
    }
    true
}

fn state_machine_safety(_: &RaftModel, state: &RaftState) -> bool {
    let prefixes: Vec<_> = live_servers(state).map(|(_, s)| committed(s)).collect();
    for (k, a) in prefixes.iter().enumerate() {
        for b in &prefixes[k + 1..] {
            let n = a.len().min(b.len());
            if a[..n] != b[..n] {
                return false;
            }
        }
    }
    true
}

fn leader_append_only(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.overwrote_as_leader)
}

fn delivered_in_order(_: &RaftModel, state: &RaftState) -> bool {
    if live_servers(state).any(|(_, s)| s.broken.bad_delivery || s.delivered > s.raft.commit_index()) {
        return false;
    }
    let prefixes: Vec<_> = live_servers(state).map(|(_, s)| delivered(s)).collect();
    prefixes.iter().enumerate().all(|(k, a)| {
        prefixes[k + 1..].iter().all(|b| {
            let n = a.len().min(b.len());
            a[..n] == b[..n]
        })
    })
}

/// The (follower, match index) pairs of each live leader, with the leader
/// and its term.
fn leader_matches(state: &RaftState) -> impl Iterator<Item = (&ServerState, raft_core::Term, usize, LogIndex)> {
    live_servers(state).flat_map(|(_, s)| {
        let progress = match s.raft.role() {
            Role::Leader { progress, .. } => Some(progress),
            _ => None,
        };
        progress
            .into_iter()
            .flatten()
            .map(move |(id, p)| (s, s.raft.term(), crate::actor::server_index(*id), p.match_index()))
    })
}

/// Whether `a` and `b` both hold at least `n` entries and the same first `n`.
fn same_first(a: &[Entry], b: &[Entry], n: usize) -> bool {
    a.len() >= n && b.len() >= n && a[..n] == b[..n]
}

fn match_index_sound(_: &RaftModel, state: &RaftState) -> bool {
    leader_matches(state).all(|(leader, term, follower, match_index)| {
        let Some(Some(durable)) = state.actor_storages.get(follower) else { return match_index.0 == 0 };
        durable.raft.hard.term != term
            || same_first(
                &leader.held().unwrap_or_default(),
                &durable.held().unwrap_or_default(),
                match_index.0 as usize,
            )
    })
}

fn leader_knows_a_match(_: &RaftModel, state: &RaftState) -> bool {
    leader_matches(state).any(|(.., match_index)| match_index.0 > 0)
}

fn higher_term_adopted(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.kept_old_term)
}

/// `add(model)` when `on`, else the model unchanged.
fn add_if(model: RaftModel, on: bool, add: impl FnOnce(RaftModel) -> RaftModel) -> RaftModel {
    if on {
        add(model)
    } else {
        model
    }
}

fn pre_vote_changes_nothing(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.pre_vote_changed_term)
}

fn transfer_completed(_: &RaftModel, state: &RaftState) -> bool {
    state.history.transfer_elections.iter().any(|e| state.history.leaders.binary_search(e).is_ok())
}

fn stepped_down_by_check_quorum(_: &RaftModel, state: &RaftState) -> bool {
    let leaders = &state.history.leaders;
    live_servers(state)
        .any(|(i, s)| !s.raft.is_leader() && leaders.binary_search(&(s.raft.term(), crate::actor::node_at(i))).is_ok())
}

fn pre_vote_refused(_: &RaftModel, state: &RaftState) -> bool {
    crate::model::in_flight(&state.network)
        .any(|env| matches!(env.msg.raft(), Some(Message::PreVoteResponse(r)) if !r.granted))
}

fn stale_term_rejected(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.acted_on_stale_term)
}

fn stale_message_in_flight(_: &RaftModel, state: &RaftState) -> bool {
    crate::model::in_flight(&state.network).any(|env| {
        let Some(m) = env.msg.raft() else { return false };
        let dst = usize::from(env.dst);
        !state.crashed[dst] && matches!(&*state.actor_states[dst], NodeState::Server(s) if m.term() < s.raft.term())
    })
}

fn no_panic(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.panicked)
}

/// Live server `i` if it leads in `term`.
fn leader_in(state: &RaftState, i: usize, term: raft_core::Term) -> Option<&ServerState> {
    let NodeState::Server(s) = &**state.actor_states.get(i)? else { return None };
    (!state.crashed[i] && s.raft.is_leader() && s.raft.term() == term).then_some(s)
}

/// A step's persists come before its sends; the storage of every live
/// server holds its in-memory term, vote, log and snapshot (metadata and
/// data); every storage keeps the data of the entries its log compacted;
/// and every vote, vote request and acknowledgement in flight is backed by
/// its sender's storage. An acknowledgement of entries up to `match_index`
/// is backed when the sender stored that many entries (its snapshot
/// included) and, if its receiver still leads that term, the same entries
/// as the receiver holds.
fn persist_before_send(_: &RaftModel, state: &RaftState) -> bool {
    for (i, s) in live_servers(state) {
        if s.broken.unrecoverable || s.broken.snapshot_without_data {
            return false;
        }
        if s.broken.persisted_after_send || state.actor_storages[i].as_deref() != Some(&*s.disk()) {
            return false;
        }
        if !claims_only_durable(s, state.actor_storages[i].as_deref()) {
            return false;
        }
    }
    let compacted_without_data = state.actor_storages.iter().flatten().any(|d| d.held().is_none());
    if compacted_without_data {
        return false;
    }
    crate::model::in_flight(&state.network).all(|env| {
        let Some(message) = env.msg.raft() else { return true };
        let Some(Some(durable)) = state.actor_storages.get(usize::from(env.src)) else { return false };
        let hard = durable.raft.hard;
        let dst = crate::actor::node_id(env.dst);
        let src = crate::actor::node_id(env.src);
        match message {
            // A later stored term backs any message of an earlier term: the
            // sender can never act in that term again.
            Message::RequestVoteResponse(m) if m.granted => {
                hard.term > m.term || (hard.term == m.term && hard.voted_for == Some(dst))
            }
            // A vote request needs no backing (thesis §10.2.1): it leaves
            // while its vote is written, and the write may be lost in a
            // crash. The node may then stand in that term again with a log
            // that a leader of an earlier term has since changed, and count
            // votes granted to the old request. That is safe: a change never
            // cuts a committed entry, and a voter that granted in the term
            // takes no entries of an earlier term after it. What must be
            // durable is the candidate's own vote before it wins: see
            // `claims_only_durable` and the leader's appends below.
            Message::RequestVote(_) => true,
            // A leader's messages carry a term and vote that are durable:
            // it wins only once its own vote is.
            Message::AppendEntries(m) => hard.term > m.term || (hard.term == m.term && hard.voted_for == Some(src)),
            Message::AppendEntriesResponse(m) => match m.result {
                AppendResult::Success { match_index } => {
                    let same_entries = |leader: &ServerState| {
                        same_first(
                            &leader.held().unwrap_or_default(),
                            &durable.held().unwrap_or_default(),
                            match_index.0 as usize,
                        )
                    };
                    hard.term > m.term
                        || (hard.term >= m.term
                            && durable.raft.log.last_index() >= match_index
                            && leader_in(state, usize::from(env.dst), m.term).is_none_or(same_entries))
                }
                AppendResult::Conflict { .. } => true,
            },
            _ => true,
        }
    })
}

/// What raft-core counts as durable (its log through `durable_index`, its
/// vote when `hard_state_is_durable`) is in its storage, not merely being
/// written: a leader counts itself towards the commit index, and a
/// candidate its vote, only for that.
fn claims_only_durable(s: &ServerState, storage: Option<&Durable>) -> bool {
    let Some(storage) = storage else { return false };
    let raft = &s.raft;
    let durable = raft.durable_index();
    let log_ok = storage.raft.log.last_index() >= durable
        && (raft.log().first_index().0..=durable.0)
            .all(|i| storage.raft.log.get(LogIndex(i)) == raft.log().get(LogIndex(i)));
    log_ok && (!raft.hard_state_is_durable() || storage.raft.hard == raft.hard_state())
}

fn linearizable(_: &RaftModel, state: &RaftState) -> bool {
    state.history.register.as_ref().is_none_or(|tester| tester.is_consistent())
}

fn read_index_fresh(_: &RaftModel, state: &RaftState) -> bool {
    !state.history.stale_read_index
}

fn election_liveness(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).any(|(_, s)| s.raft.is_leader())
}

fn log_liveness(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).any(|(_, s)| committed(s).iter().any(|e| matches!(e.payload, Payload::Command(_))))
}

fn leader_after_crash(_: &RaftModel, state: &RaftState) -> bool {
    let down_terms: Vec<_> = (0..state.crashed.len())
        .filter(|&i| state.crashed[i])
        .filter_map(|i| state.actor_storages[i].as_ref().map(|d| d.raft.hard.term))
        .collect();
    live_servers(state).any(|(_, s)| s.raft.is_leader() && down_terms.iter().any(|&t| s.raft.term() > t))
}

fn commit_on_two(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).filter(|(_, s)| s.raft.commit_index() >= LogIndex(1)).count() >= 2
}

fn leader_change_after_commit(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).filter(|(_, s)| s.raft.is_leader()).any(|(_, leader)| {
        live_servers(state).any(|(_, other)| {
            other.raft.term() <= leader.raft.term() && committed(other).iter().any(|e| e.term < leader.raft.term())
        })
    })
}

fn ack_in_flight(_: &RaftModel, state: &RaftState) -> bool {
    crate::model::in_flight(&state.network).any(|env| match env.msg {
        Msg::Raft(m) => match &**m {
            Message::RequestVoteResponse(m) => m.granted,
            Message::AppendEntriesResponse(m) => matches!(m.result, AppendResult::Success { .. }),
            _ => false,
        },
        _ => false,
    })
}

fn delivered_on_two(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).filter(|(_, s)| !delivered(s).is_empty()).count() >= 2
}

fn leader_stepped_down(_: &RaftModel, state: &RaftState) -> bool {
    let leaders = &state.history.leaders;
    live_servers(state).any(|(i, s)| {
        !s.raft.is_leader() && leaders.iter().any(|&(t, n)| n == crate::actor::node_at(i) && s.raft.term() > t)
    })
}

fn restore_keeps_applied(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| !s.broken.applied_changed)
}

fn snapshot_covers_committed(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).all(|(_, s)| {
        let snapshot = s.raft.snapshot().map_or(LogIndex(0), |m| m.index);
        snapshot.max(s.raft.log().compacted_index()) <= s.raft.commit_index()
    })
}

fn caught_up_by_snapshot(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).any(|(_, s)| s.restored().by_install)
}

fn recovered_from_snapshot(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).any(|(_, s)| s.restored().at_recovery)
}

fn read_completed(model: &RaftModel, state: &RaftState) -> bool {
    state.actor_states.iter().any(|s| match &**s {
        NodeState::Client(c) => c.next == 2 && model.cfg.kind == ModelKind::Kv,
        NodeState::Server(_) => false,
    })
}

/// The (last term, last index) of every server's log: in memory when up,
/// on disk when down.
fn log_ends(state: &RaftState) -> Vec<(raft_core::Term, LogIndex)> {
    state
        .actor_states
        .iter()
        .enumerate()
        .map(|(i, s)| match (&**s, state.crashed[i], state.actor_storages[i].as_ref()) {
            (NodeState::Server(s), false, _) => (s.raft.log().last_term(), s.raft.log().last_index()),
            (NodeState::Server(_), true, Some(d)) => (d.raft.log.last_term(), d.raft.log.last_index()),
            _ => (raft_core::Term(0), LogIndex(0)),
        })
        .collect()
}

fn quorums_overlap(_: &RaftModel, state: &RaftState) -> bool {
    let ends = log_ends(state);
    let end_of = |n: NodeId| ends.get(crate::actor::server_index(n)).copied().unwrap_or_default();
    // Each candidate: (itself, its majority size, the voters that could vote for it).
    let candidates: Vec<(NodeId, usize, BTreeSet<NodeId>)> = live_servers(state)
        .filter_map(|(i, s)| {
            let me = crate::actor::node_at(i);
            let m = s.raft.membership();
            if !m.is_voter(me) {
                return None;
            }
            let could: BTreeSet<NodeId> = m.voters().iter().copied().filter(|&v| end_of(v) <= end_of(me)).collect();
            let majority = m.voters().len() / 2 + 1;
            (could.len() >= majority).then_some((me, majority, could))
        })
        .collect();
    for (k, (a, need_a, qa)) in candidates.iter().enumerate() {
        for (b, need_b, qb) in &candidates[k + 1..] {
            // Each votes for itself: a is in a's majority, b in b's.
            let qa: BTreeSet<NodeId> = qa.iter().copied().filter(|v| v != b).collect();
            let qb: BTreeSet<NodeId> = qb.iter().copied().filter(|v| v != a).collect();
            let shared = qa.intersection(&qb).count();
            let only_a = qa.len() - shared;
            let only_b = qb.len() - shared;
            let from_shared = need_a.saturating_sub(only_a) + need_b.saturating_sub(only_b);
            if qa.len() >= *need_a && qb.len() >= *need_b && from_shared <= shared {
                return false;
            }
        }
    }
    true
}

fn learner_promoted(model: &RaftModel, state: &RaftState) -> bool {
    let initial = model.cfg.membership();
    live_servers(state).any(|(_, s)| initial.learners().iter().any(|&l| s.raft.committed_membership().is_voter(l)))
}

fn voter_removed(model: &RaftModel, state: &RaftState) -> bool {
    let initial = model.cfg.membership();
    live_servers(state).any(|(_, s)| initial.voters().iter().any(|&v| !s.raft.committed_membership().is_voter(v)))
}

/// A follower of the term it voted for itself in (so it stood, and the
/// configuration entry of that term is its own), that holds committed an
/// entry of that term making it no voter.
fn leader_removed_itself(_: &RaftModel, state: &RaftState) -> bool {
    live_servers(state).any(|(i, s)| {
        let me = crate::actor::node_at(i);
        let r = &s.raft;
        let own_term = r.hard_state().voted_for == Some(me) && !r.is_leader();
        let removed_in_term = committed(s)
            .iter()
            .any(|e| e.term == r.term() && matches!(&e.payload, Payload::Membership(m) if !m.is_voter(me)));
        own_term && removed_in_term && state.history.leaders.contains(&(r.term(), me))
    })
}
