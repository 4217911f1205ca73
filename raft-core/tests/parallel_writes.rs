//! Thesis §10.2.1: the leader writes its own entries to disk in parallel
//! with replicating them, and a candidate writes its vote while its vote
//! requests travel. Both are `Output::PersistAsync`; the driver reports
//! each durable with `Input::Persisted`. The leader counts itself towards
//! the commit index, and delivers, only what was reported durable; a
//! candidate counts its own vote, and can win, only once it is durable.
//!
//! These tests complete background writes by hand (`step_only` and
//! `completion`), where the other tests use an instant disk.

mod common;

use common::*;
use raft_core::{Dropped, Entry, Input, LogIndex, Output, Persist, RoleKind, Term, Timer};

/// A leader of term 2 in a 3-node cluster whose no-op (index 1) is durable
/// and acknowledged by both followers, so that both replicate.
fn streaming_leader(c: &TestConfig) -> raft_core::State {
    let (mut s, _) = leader(c, 2, &[], 0);
    step(c, &mut s, receive(2, append_ok(2, 1)));
    step(c, &mut s, receive(3, append_ok(2, 1)));
    assert_eq!(s.commit_index(), LogIndex(1));
    s
}

/// §10.2.1: the appends of new entries leave in the same output list as
/// their background write, which nothing after it waits for.
#[test]
fn s10_2_1_a_leader_sends_its_entries_while_they_are_written() {
    let c = config(1, 3);
    let mut s = streaming_leader(&c);
    let outputs = step_only(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    let x = Entry::command(Term(2), "x");
    assert_eq!(outputs[0], persist_append_async(2, 2, vec![x.clone()]));
    assert!(!outputs.iter().any(|o| matches!(o, Output::Persist(_))), "nothing waits: {outputs:?}");
    assert_eq!(sends(&outputs).len(), 2, "both followers are sent x at once: {outputs:?}");
    assert_eq!(s.durable_index(), LogIndex(1));
}

/// §10.2.1: one acknowledgement and the leader's own copy make a majority
/// of three, but the leader's copy counts only once it is durable.
#[test]
fn s10_2_1_a_leader_counts_itself_only_for_durable_entries() {
    let c = config(1, 3);
    let mut s = streaming_leader(&c);
    let outputs = step_only(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    let written = completion(&outputs).expect("a background write");
    let outputs = step_only(&c, &mut s, receive(2, append_ok(2, 2)));
    assert_eq!(s.commit_index(), LogIndex(1), "committed on one durable copy: {outputs:?}");
    let outputs = step_only(&c, &mut s, written);
    assert_eq!(s.commit_index(), LogIndex(2));
    assert_eq!(delivered(&outputs), vec![(2, 2, b"x".to_vec())]);
}

/// §10.2.1: both followers make a majority without the leader, so the
/// entry commits; the leader delivers it only once its own copy is
/// durable, so that an application that keeps state on disk never gets
/// ahead of the log (etcd does the same).
#[test]
fn s10_2_1_a_leader_delivers_only_what_it_holds_durably() {
    let c = config(1, 3);
    let mut s = streaming_leader(&c);
    let outputs = step_only(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    let written = completion(&outputs).expect("a background write");
    step_only(&c, &mut s, receive(2, append_ok(2, 2)));
    let outputs = step_only(&c, &mut s, receive(3, append_ok(2, 2)));
    assert_eq!(s.commit_index(), LogIndex(2));
    assert!(delivered(&outputs).is_empty(), "delivered before durable: {outputs:?}");
    assert_eq!(s.delivered_index(), LogIndex(1));
    let outputs = step_only(&c, &mut s, written);
    assert_eq!(delivered(&outputs), vec![(2, 2, b"x".to_vec())]);
}

/// §10.2.1: a candidate asks for votes while its own is written. Votes of
/// a majority of the others do not elect it: it wins once its own vote is
/// durable. (Winning earlier would let it crash, forget the term, stand
/// again in the same term, win it twice and append two different entries
/// at one index of one term.)
#[test]
fn s10_2_1_a_candidate_wins_only_once_its_vote_is_durable() {
    let c = config(1, 3);
    let mut s = follower(&c, 1, None, &[1], 1);
    let outputs = step_only(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(outputs[0], persist_candidacy(2, 1, 1));
    assert_eq!(sends(&outputs).len(), 2, "the vote requests leave at once");
    assert!(!s.hard_state_is_durable());
    let written = completion(&outputs).expect("the vote is written in the background");
    step_only(&c, &mut s, receive(2, vote(2, true)));
    step_only(&c, &mut s, receive(3, vote(2, true)));
    assert_eq!(s.role_kind(), RoleKind::Candidate, "won on votes of others alone");
    let outputs = step_only(&c, &mut s, written);
    assert!(s.is_leader() && s.hard_state_is_durable());
    assert_eq!(outputs[0], persist_append_async(2, 2, vec![Entry::noop(Term(2))]));
}

/// §10.2.1: in a cluster of one, the candidate's durable vote is the
/// majority, and its no-op commits once durable.
#[test]
fn s10_2_1_one_node_leads_and_commits_as_its_writes_complete() {
    let c = config(1, 1);
    let mut s = follower(&c, 0, None, &[], 0);
    let outputs = step_only(&c, &mut s, Input::Timeout(Timer::Election));
    assert!(!s.is_leader());
    let outputs = step_only(&c, &mut s, completion(&outputs).expect("the vote"));
    assert!(s.is_leader());
    assert_eq!(s.commit_index(), LogIndex(0));
    step_only(&c, &mut s, completion(&outputs).expect("the no-op"));
    assert_eq!(s.commit_index(), LogIndex(1));
}

/// etcd's `async_storage_writes_append_aba_race`: a leader's background
/// append at index 2 (term 2) is overtaken by a new leader's entry at the
/// same index (term 3), written before the acknowledgement. The first
/// write's completion, arriving late, must not count the new entry, nor
/// anything this node appends later, as durable. Here the late report
/// comes once the node is a candidate of term 4 and again once it leads:
/// neither its vote nor its no-op is taken as durable on the strength of it.
#[test]
fn s10_2_1_a_late_completion_after_a_truncation_counts_nothing() {
    let c = config(1, 3);
    let mut s = streaming_leader(&c);
    let outputs = step_only(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    let late = completion(&outputs).expect("x is written in the background");
    assert_eq!(late, Input::Persisted { term: Term(2), index: LogIndex(2) });

    // n2 leads term 3 and replaces index 2: a follower's truncation and
    // append are written before its acknowledgement.
    let y = entry(2, 3);
    let outputs = step_only(&c, &mut s, receive(2, append(3, 1, 2, vec![y.clone()], 1)));
    assert_eq!(
        persists(&outputs),
        vec![
            Persist::HardState(raft_core::HardState { term: Term(3), voted_for: None }),
            Persist::Truncate { from: LogIndex(2) },
            Persist::Append { first: LogIndex(2), entries: vec![y] },
        ]
    );
    assert!(outputs.iter().all(|o| !matches!(o, Output::PersistAsync { .. })));
    assert_eq!(s.durable_index(), LogIndex(2));

    // n1 stands in term 4: the late report of term 2 is not its vote.
    let outputs = step_only(&c, &mut s, Input::Timeout(Timer::Election));
    let vote_written = completion(&outputs).expect("the vote");
    step_only(&c, &mut s, receive(2, vote(4, true)));
    assert_eq!(step_only(&c, &mut s, late.clone()), vec![], "a report of an older term changes nothing");
    assert_eq!(s.role_kind(), RoleKind::Candidate);
    let outputs = step_only(&c, &mut s, vote_written);
    assert!(s.is_leader());
    let noop_written = completion(&outputs).expect("the no-op");
    assert_eq!(noop_written, Input::Persisted { term: Term(4), index: LogIndex(3) });

    // Both followers hold the no-op: it commits without the leader...
    step_only(&c, &mut s, receive(2, append_ok(4, 3)));
    step_only(&c, &mut s, receive(3, append_ok(4, 3)));
    assert_eq!(s.commit_index(), LogIndex(3));
    // ...but the late report does not make the leader's copy durable.
    assert_eq!(step_only(&c, &mut s, late), vec![]);
    assert_eq!(s.durable_index(), LogIndex(2));
    step_only(&c, &mut s, noop_written);
    assert_eq!(s.durable_index(), LogIndex(3));
}

/// A leader that steps down within its term (check-quorum, thesis §6.2)
/// with a background write running makes its state durable before it
/// answers anyone: from then on its acknowledgements count its log.
#[test]
fn s10_2_1_a_leader_stepping_down_in_its_term_flushes_its_writes() {
    let c = config(1, 3).with_check_quorum(true);
    let (mut s, _) = leader(&c, 2, &[], 0);
    step_only(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    assert_eq!(s.durable_index(), LogIndex(1));
    let outputs = step_only(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(s.role_kind(), RoleKind::Follower);
    assert!(outputs.contains(&persist_hard(2, Some(1))), "no barrier before answering: {outputs:?}");
    assert_eq!(s.durable_index(), LogIndex(2));
}

/// A report of this term past the log's end is the driver's mistake: a
/// leader's log only grew since it asked for the write.
#[test]
fn a_report_past_the_log_is_dropped() {
    let c = config(1, 3);
    let mut s = streaming_leader(&c);
    assert_dropped(&c, &mut s, Input::Persisted { term: Term(2), index: LogIndex(9) }, Dropped::OutOfRange);
}
