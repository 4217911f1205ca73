//! Property tests of the receiver rules over generated logs and message
//! orders, to reach the cases a table does not list.

mod common;

use common::*;
use proptest::prelude::*;
use raft_core::{AppendResult, Entry, Message, State, Term};

/// A leader's log: terms that start at 1 and never go down, each entry
/// named by its place; and the leader's term, at or above the last.
fn leader_log() -> impl Strategy<Value = (Vec<Entry>, u64)> {
    (prop::collection::vec(0u64..2, 0..16), 0u64..2).prop_map(|(steps, extra)| {
        let mut term = 1;
        let terms: Vec<u64> = steps
            .iter()
            .map(|s| {
                term += s;
                term
            })
            .collect();
        let last = terms.last().copied().unwrap_or(1);
        (log_of(&terms), last + extra)
    })
}

/// A follower's starting log: a prefix of the leader's of length `keep`,
/// then `extra` entries of one term `d` that differs from the leader's term
/// at each of those indexes (Log Matching forbids anything else), or none
/// if no such term fits.
fn follower_log(leader: &[Entry], term: u64, keep: usize, extra: usize) -> Vec<Entry> {
    let keep = keep.min(leader.len());
    let mut log = leader[..keep].to_vec();
    let floor = log.last().map_or(1, |e| e.term.0);
    let clashes = |d: u64| (keep..keep + extra).any(|i| leader.get(i).is_some_and(|e| e.term.0 == d));
    if let Some(d) = (floor..=term).find(|&d| !clashes(d)) {
        log.extend((keep..keep + extra).map(|i| Entry::command(Term(d), format!("stale {i}@{d}"))));
    }
    log
}

proptest! {
    /// §5.3, Figure 2 rules 2–4: appends from one leader, delivered in any
    /// order and any number of times, to a follower that holds a prefix of
    /// the leader's log and a stale tail. Each answer is right (success
    /// exactly when the follower held the leader's entry at prevLogIndex),
    /// an acknowledged prefix is never lost afterwards, and a final full
    /// append leaves the follower with the leader's log.
    #[test]
    fn s5_3_appends_in_any_order_converge_and_never_lose_acknowledged_entries(
        (log, term) in leader_log(),
        keep in 0usize..16,
        extra in 0usize..6,
        appends in prop::collection::vec((0usize..64, 0usize..64), 1..24),
    ) {
        let c = config(2, 3);
        let start = follower_log(&log, term, keep, extra);
        let mut s: State = follower_with_log(&c, term, None, start, 0);
        let n = log.len();
        let message = |p: usize, k: usize| {
            let prev_term = if p == 0 { 0 } else { log[p - 1].term.0 };
            append(term, p as u64, prev_term, log[p..p + k].to_vec(), 0)
        };
        let mut acknowledged = 0usize;
        let full = (0usize, n);
        for (p, k) in appends.into_iter().map(|(p, k)| (p % (n + 1), k)).map(|(p, k)| (p, k % (n - p + 1))).chain([full]) {
            let held = if p == 0 { true } else { s.log().get(raft_core::LogIndex(p as u64)) == Some(&log[p - 1]) };
            let outputs = step(&c, &mut s, receive(1, message(p, k)));
            let reply = sends(&outputs).pop().expect("every append is answered").1;
            let Message::AppendEntriesResponse(r) = reply else { panic!("not an append answer: {reply:?}") };
            match r.result {
                AppendResult::Success { match_index } => {
                    prop_assert!(held, "accepted prev {} that did not match", p);
                    prop_assert_eq!(match_index.0 as usize, p + k);
                    acknowledged = acknowledged.max(p + k);
                }
                AppendResult::Conflict { .. } => prop_assert!(!held, "refused prev {} that matched", p),
            }
            let now = s.log().entries();
            prop_assert!(now.len() >= acknowledged && now[..acknowledged] == log[..acknowledged],
                "acknowledged entries lost: {:?} vs leader {:?}", now, log);
        }
        prop_assert_eq!(&s.log().entries()[..n], &log[..]);
    }

    /// §5.4.1: a vote is granted exactly when the candidate's (last term,
    /// last index) is at least the voter's, compared term first.
    #[test]
    fn s5_4_1_vote_granted_iff_candidate_is_at_least_as_up_to_date(
        (log, term) in leader_log(),
        candidate_index in 0u64..20,
        candidate_term in 0u64..5,
    ) {
        let c = config(1, 3);
        let mut s = follower_with_log(&c, term, None, log.clone(), 0);
        let candidate_term = candidate_term.min(term + 1);
        let outputs = step(&c, &mut s, receive(2, request_vote(term + 1, candidate_index, candidate_term)));
        let voter = (log.last().map_or(0, |e| e.term.0), log.len() as u64);
        let expected = (candidate_term, candidate_index) >= voter;
        prop_assert_eq!(outputs.last(), Some(&send(2, vote(term + 1, expected))));
    }
}
