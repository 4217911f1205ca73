//! Check-quorum (thesis §6.2): a leader steps down when, over a minimum
//! election timeout, it has not heard from a majority (itself included),
//! so that a leader cut off from its majority stops saying it leads; and a
//! node that hears from a live leader ignores vote requests of higher
//! terms (the leader's lease), unless a leadership transfer sent them.
//!
//! Each test asserts the exact output list of every step it checks.

mod common;

use common::*;
use raft_core::{Dropped, Input, Output, RoleKind, Term, Timer};

/// Node `me` of an `n`-node cluster with check-quorum on (pre-vote off:
/// check-quorum's own rules).
fn check_quorum_config(me: u64, n: u64) -> TestConfig {
    config(me, n).with_check_quorum(true)
}

/// Thesis §6.2: a new leader arms its check-quorum timer, every minimum
/// election timeout, beside its heartbeat.
#[test]
fn s6_2_a_new_leader_arms_its_check_quorum_timer() {
    let c = check_quorum_config(1, 3);
    let (_, outputs) = leader(&c, 2, &[1], 1);
    let noop = raft_core::Entry::noop(Term(2));
    assert_eq!(
        outputs,
        vec![
            persist_append_async(2, 2, vec![noop.clone()]),
            Output::CancelTimer(Timer::Election),
            leader_changed(Some(1), 2),
            heartbeat_timer(&c),
            check_quorum_timer(&c),
            send(2, append(2, 1, 1, vec![noop.clone()], 1)),
            send(3, append(2, 1, 1, vec![noop], 1)),
        ]
    );
}

/// Thesis §6.2: a leader whose check-quorum timer fires without having
/// heard from a majority since the last check steps down: its heartbeat
/// and check-quorum timers are cancelled, its election timer armed, and it
/// knows no leader any more. It keeps its term and its vote: stepping down
/// is no new term.
#[test]
fn s6_2_a_leader_without_a_majority_heard_steps_down() {
    let c = check_quorum_config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(
        outputs,
        vec![
            Output::CancelTimer(Timer::Heartbeat),
            Output::CancelTimer(Timer::CheckQuorum),
            election_timer(&c),
            leader_changed(None, 2),
        ]
    );
    assert_eq!((s.role_kind(), s.term(), s.hard_state().voted_for), (RoleKind::Follower, Term(2), Some(id(1))));
    assert_eq!(s.leader(), None);
}

/// Thesis §6.2: with a majority heard from (here one follower of two, with
/// itself), the leader stays and starts the next period. Each period
/// starts afresh: the follower heard in the last one does not count in the
/// next, and a leader heard by nobody then steps down.
#[test]
fn s6_2_a_leader_that_heard_from_a_majority_stays_and_rearms() {
    let c = check_quorum_config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs, vec![check_quorum_timer(&c)]);
    assert!(s.is_leader());

    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs.last(), Some(&leader_changed(None, 2)));
    assert!(!s.is_leader());
}

/// Thesis §6.2: in five nodes, one follower heard is not a majority, two
/// are. Any valid answer of the leader's term counts, a rejection
/// included: the follower is alive.
#[test]
fn s6_2_a_majority_of_five_needs_two_followers_and_a_rejection_counts() {
    let c = check_quorum_config(1, 5);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    let mut one = s.clone();
    let outputs = step(&c, &mut one, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs.last(), Some(&leader_changed(None, 2)), "itself and one follower of five");

    // A rejection of the probe (the follower lacks entry 1) shows it alive.
    step(&c, &mut s, receive(3, append_conflict(2, 1, 0, None)));
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs, vec![check_quorum_timer(&c)]);
    assert!(s.is_leader());
}

/// Thesis §6.2: an answer the leader drops does not count as heard: one
/// acknowledging past the leader's log (a broken or hostile follower), or
/// one of an older term (from a follower that has not heard of this one).
#[test]
fn s6_2_a_dropped_answer_does_not_count_as_heard() {
    let c = check_quorum_config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1], 1);
    assert_dropped(&c, &mut s, receive(2, append_ok(3, 99)), Dropped::OutOfRange);
    assert_dropped(&c, &mut s, receive(3, append_ok(2, 1)), Dropped::StaleResponse);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs.last(), Some(&leader_changed(None, 3)));
    assert!(!s.is_leader());
}

/// Thesis §6.2: a leader alone is its own majority; check-quorum never
/// deposes the one voter of its cluster.
#[test]
fn s6_2_a_one_voter_leader_always_has_its_quorum() {
    let c = check_quorum_config(1, 1);
    let mut s = follower(&c, 0, None, &[], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    assert!(s.is_leader());
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(outputs, vec![check_quorum_timer(&c)]);
}

/// Thesis §6.2: a follower that hears from a live leader (its election
/// timer has not fired since) drops a vote request of a higher term: no
/// term adopted, no vote, no answer, and the leader it follows is kept.
/// A leader in its lease drops one too.
#[test]
fn s6_2_a_follower_in_lease_drops_a_higher_term_vote_request() {
    let c = check_quorum_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
    assert_dropped(&c, &mut s, receive(3, request_vote(3, 1, 1)), Dropped::InLease);
    assert_eq!((s.term(), s.leader()), (Term(2), Some(id(2))));

    let (mut leader, _) = leader(&c, 2, &[1], 1);
    assert_dropped(&c, &mut leader, receive(3, request_vote(3, 2, 2)), Dropped::InLease);
    assert!(leader.is_leader());
}

/// Thesis §6.2 with §3.10: a vote request sent by a leadership transfer
/// (`transfer`) is no disruption; a follower in lease adopts its term and
/// votes as §5 says.
#[test]
fn s6_2_a_follower_in_lease_answers_a_transfer_vote_request() {
    let c = check_quorum_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
    let outputs = step(&c, &mut s, receive(3, request_vote_transfer(3, 1, 1)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(3, None),
            leader_changed(None, 3),
            persist_hard(3, Some(3)),
            election_timer(&c),
            send(3, vote(3, true)),
        ]
    );
}

/// Thesis §6.2: the lease ends when the follower's election timer fires
/// (it then stands, or asks for pre-votes, itself): a vote request of a
/// higher term deposes it as in §5, even while, as a pre-candidate, it
/// still knows the leader.
#[test]
fn s6_2_the_lease_ends_when_the_election_timer_fires() {
    let c = check_quorum_config(1, 3).with_pre_vote(true);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
    step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!((s.role_kind(), s.leader()), (RoleKind::PreCandidate, Some(id(2))));
    let outputs = step(&c, &mut s, receive(3, request_vote(3, 1, 1)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(3, None),
            leader_changed(None, 3),
            persist_hard(3, Some(3)),
            election_timer(&c),
            send(3, vote(3, true)),
        ]
    );
    assert_eq!(s.role_kind(), RoleKind::Follower);
}

/// §5.1, with check-quorum off (pre-vote on or off): no lease; a vote
/// request of a higher term makes a follower of a live leader adopt the
/// term, forget the leader, and vote.
#[test]
fn s5_1_without_check_quorum_a_higher_term_vote_request_deposes() {
    for pre_vote in [false, true] {
        let c = config(1, 3).with_pre_vote(pre_vote);
        let mut s = follower(&c, 2, None, &[1], 0);
        step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
        let outputs = step(&c, &mut s, receive(3, request_vote(3, 1, 1)));
        assert_eq!(
            outputs,
            vec![
                persist_hard(3, None),
                leader_changed(None, 3),
                persist_hard(3, Some(3)),
                election_timer(&c),
                send(3, vote(3, true)),
            ],
            "pre-vote {pre_vote}"
        );

        let (mut leader, _) = leader(&c, 2, &[1], 1);
        let outputs = step(&c, &mut leader, receive(3, request_vote(3, 1, 1)));
        assert_eq!(
            outputs,
            vec![
                persist_hard(3, None),
                Output::CancelTimer(Timer::Heartbeat),
                election_timer(&c),
                leader_changed(None, 3),
                send(3, vote(3, false)),
            ],
            "pre-vote {pre_vote}: the leader's log (the no-op of term 2) is more up to date"
        );
    }
}

/// Thesis §6.2 with §6.4: a leader that steps down on check-quorum refuses
/// the reads it held (they could never be confirmed now), naming no
/// leader, so that their clients retry elsewhere.
#[test]
fn s6_2_a_leader_stepping_down_refuses_the_reads_it_held() {
    let c = check_quorum_config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    // Its no-op is not committed yet: the read waits for it.
    assert_eq!(step(&c, &mut s, Input::Read(vec![raft_core::ReadId(1)])), vec![]);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::CheckQuorum));
    assert_eq!(
        outputs,
        vec![
            Output::CancelTimer(Timer::Heartbeat),
            Output::CancelTimer(Timer::CheckQuorum),
            election_timer(&c),
            leader_changed(None, 2),
            Output::ReadRejected {
                id: raft_core::ReadId(1),
                reason: raft_core::Rejection::NotLeader { leader_hint: None }
            },
        ]
    );
    assert!(s.reads().is_empty());
}
