//! Pre-vote (thesis §9.6): a node whose election timer fires first asks its
//! peers whether they would vote for it in the next term, changing no term
//! and no vote, and stands for election only with a majority of yes. So a
//! node that was cut off, and comes back with an old log or while the
//! leader lives, disrupts nobody.
//!
//! Each test asserts the exact output list of every step it checks.

mod common;

use common::*;
use raft_core::{Dropped, Entry, Input, Output, RoleKind, Term, Timer};

/// Node `me` of an `n`-node cluster with pre-vote on (check-quorum off:
/// pre-vote's own rules, without the lease).
fn pre_vote_config(me: u64, n: u64) -> TestConfig {
    config(me, n).with_pre_vote(true)
}

/// Thesis §9.6: a follower whose election timer fires becomes a
/// pre-candidate: its term and vote stay as they were (nothing is
/// persisted), it re-arms its election timer and asks every peer for a
/// pre-vote of the next term, with its last log index and term. It keeps
/// the leader it knew (etcd PR 8334, raft-rs PR 84: a pre-candidate that
/// forgot its leader could not forward to it), so no LeaderChanged.
#[test]
fn s9_6_a_timed_out_follower_becomes_pre_candidate_without_changing_term_or_vote() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, Some(2), &[1, 2], 0);
    step(&c, &mut s, receive(2, append(2, 2, 2, vec![], 0)));
    assert_eq!(s.leader(), Some(id(2)));

    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(outputs, vec![election_timer(&c), send(2, pre_vote(3, 2, 2)), send(3, pre_vote(3, 2, 2))]);
    assert_eq!(s.role_kind(), RoleKind::PreCandidate);
    assert_eq!((s.term(), s.hard_state().voted_for), (Term(2), Some(id(2))));
    assert_eq!(s.leader(), Some(id(2)), "the leader it knew is kept");

    // A pre-candidate whose pre-vote fails tries again on the next timeout,
    // still in the same term.
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(outputs, vec![election_timer(&c), send(2, pre_vote(3, 2, 2)), send(3, pre_vote(3, 2, 2))]);
    assert_eq!(s.term(), Term(2));
}

/// Thesis §9.6 with etcd PR 8334: a pre-candidate still forwards client
/// proposals to the leader it knew, rather than holding them.
#[test]
fn s9_6_a_pre_candidate_forwards_proposals_to_the_leader_it_knew() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
    step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(s.role_kind(), RoleKind::PreCandidate);

    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(7, b"x")]));
    let forward = raft_core::Message::Forward(raft_core::Forward {
        term: Term(2),
        proposals: vec![(raft_core::ProposalId(7), b"x".to_vec())],
    });
    assert_eq!(outputs, vec![send(2, forward)]);
    assert!(s.pending().is_empty());
}

/// Thesis §9.6: once a majority (itself included) would vote for it, the
/// pre-candidate stands for election for real: the next term, its vote
/// for itself persisted before any request leaves, its timer re-armed,
/// and RequestVote, not started by a transfer, to every peer. Before
/// that, a refusal and a repeated grant count for nothing.
#[test]
fn s9_6_a_majority_of_pre_votes_starts_a_real_election() {
    let c = pre_vote_config(1, 5);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));

    assert_eq!(step(&c, &mut s, receive(2, pre_vote_answer(3, true))), vec![]);
    assert_eq!(step(&c, &mut s, receive(3, pre_vote_answer(2, false))), vec![]);
    assert_eq!(step(&c, &mut s, receive(2, pre_vote_answer(3, true))), vec![], "a grant counts once");
    assert_eq!((s.role_kind(), s.term()), (RoleKind::PreCandidate, Term(2)));

    let outputs = step(&c, &mut s, receive(4, pre_vote_answer(3, true)));
    let mut expected = vec![persist_candidacy(3, 1, 2), election_timer(&c)];
    expected.extend((2..=5).map(|p| send(p, request_vote(3, 2, 2))));
    assert_eq!(outputs, expected);
    assert_eq!((s.role_kind(), s.term()), (RoleKind::Candidate, Term(3)));
}

/// Thesis §9.6: the real election that follows a won pre-vote is that of
/// a candidate: a pre-candidate that knew a leader forgets it now, and
/// says so.
#[test]
fn s9_6_the_election_after_a_pre_vote_forgets_the_leader() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(2, append(2, 1, 1, vec![], 0)));
    step(&c, &mut s, Input::Timeout(Timer::Election));

    let outputs = step(&c, &mut s, receive(3, pre_vote_answer(3, true)));
    assert_eq!(
        outputs,
        vec![
            persist_candidacy(3, 1, 1),
            leader_changed(None, 3),
            election_timer(&c),
            send(2, request_vote(3, 1, 1)),
            send(3, request_vote(3, 1, 1)),
        ]
    );
    assert_eq!(s.leader(), None);
}

/// Thesis §9.6: a voter answers a pre-vote as it would answer the vote
/// request (a term above its own, a log at least as up to date), but
/// changes nothing: no term adopted, no vote recorded, nothing persisted,
/// no timer re-armed. Whom it voted for in its own term does not matter:
/// the pre-vote asks about the next one. A candidate of its own term
/// answers alike.
#[test]
fn s9_6_a_voter_grants_a_pre_vote_without_persisting_or_rearming_anything() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, Some(3), &[1, 2], 0);
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(2, pre_vote(3, 2, 2)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(3, true))]);
    assert_eq!(s, before);

    // Far ahead, too: the answer echoes the term asked about.
    let outputs = step(&c, &mut s, receive(2, pre_vote(9, 2, 2)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(9, true))]);
    assert_eq!(s, before);

    let c = config(1, 3);
    let mut candidate = follower(&c, 1, None, &[1], 0);
    step(&c, &mut candidate, Input::Timeout(Timer::Election));
    let before = candidate.clone();
    let outputs = step(&c, &mut candidate, receive(3, pre_vote(3, 1, 1)));
    assert_eq!(outputs, vec![send(3, pre_vote_answer(3, true))], "the voter's own pre-vote setting does not matter");
    assert_eq!(candidate, before);
}

/// Thesis §9.6: a voter that hears from a live leader refuses a pre-vote
/// (the leader's followers, and the leader itself), answering with its own
/// term; so a node cut off and back disrupts nobody. Once its own election
/// timer fires it no longer hears from a leader, and grants.
#[test]
fn s9_6_a_voter_that_follows_a_live_leader_refuses_a_pre_vote() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(3, append(2, 1, 1, vec![], 0)));
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(2, pre_vote(3, 1, 1)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(2, false))]);
    assert_eq!(s, before);

    step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(s.role_kind(), RoleKind::PreCandidate);
    let outputs = step(&c, &mut s, receive(2, pre_vote(3, 1, 1)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(3, true))]);

    let (mut leader, _) = leader(&c, 2, &[1], 1);
    let before = leader.clone();
    let outputs = step(&c, &mut leader, receive(2, pre_vote(3, 2, 2)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(2, false))]);
    assert_eq!(leader, before, "a leader is not deposed by a pre-vote");
}

/// Thesis §9.6 with §5.4.1: a pre-vote for a log less up to date than the
/// voter's is refused (a last term below the voter's, or the same last term
/// with fewer entries), with the voter's term, changing nothing.
#[test]
fn s9_6_a_voter_refuses_a_pre_vote_for_a_stale_log() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    let before = s.clone();
    for (last_index, last_term, granted) in [(1, 1, false), (5, 1, false), (1, 2, false), (2, 2, true), (1, 3, true)] {
        let outputs = step(&c, &mut s, receive(2, pre_vote(3, last_index, last_term)));
        let term = if granted { 3 } else { 2 };
        assert_eq!(outputs, vec![send(2, pre_vote_answer(term, granted))], "last {last_index}@{last_term}");
        assert_eq!(s, before);
    }
}

/// Thesis §9.6 with etcd issues 8243 and 9586 (and openraft 1796): a
/// pre-vote of a term not above the voter's is refused with the voter's
/// own term, whether it is older (the §5.1 rule for stale requests) or
/// equal to the voter's (the pre-candidate is one term behind). Dropping
/// it would leave the pre-candidate unaware of the newer term.
#[test]
fn s9_6_a_pre_vote_of_an_older_term_is_refused_with_the_newer_term() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 5, None, &[1], 0);
    let before = s.clone();
    for term in [3, 5] {
        let outputs = step(&c, &mut s, receive(2, pre_vote(term, 4, 2)));
        assert_eq!(outputs, vec![send(2, pre_vote_answer(5, false))], "pre-vote of {term}");
        assert_eq!(s, before);
    }
}

/// Thesis §9.6 with etcd issues 8243 and 9586: a pre-candidate refused
/// with a newer term adopts it (persisting it, forgetting the leader of
/// its old term) and becomes a follower of it.
#[test]
fn s9_6_a_pre_candidate_adopts_the_newer_term_of_a_refusal() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, Some(2), &[1, 2], 0);
    step(&c, &mut s, receive(2, append(2, 2, 2, vec![], 0)));
    step(&c, &mut s, Input::Timeout(Timer::Election));

    let outputs = step(&c, &mut s, receive(3, pre_vote_answer(5, false)));
    assert_eq!(outputs, vec![persist_hard(5, None), leader_changed(None, 5)]);
    assert_eq!((s.role_kind(), s.term(), s.hard_state().voted_for), (RoleKind::Follower, Term(5), None));
}

/// Etcd issues 8243 and 9586: of a three-node cluster with n1 down, n2
/// holds the longer log in an older term (2) and n3 a shorter log in a
/// newer one (4). Neither can win unless n2 learns term 4: n3's pre-votes
/// fail on its log, and n2's pre-vote of term 3 is not above n3's term.
/// Because n3 refuses with its term, n2 adopts it, asks again for term 5,
/// and wins; the entry only it held survives.
#[test]
fn s9_6_an_older_term_with_a_longer_log_can_still_win() {
    let (c2, c3) = (pre_vote_config(2, 3), pre_vote_config(3, 3));
    let mut n2 = follower(&c2, 2, None, &[1, 2], 0);
    let mut n3 = follower(&c3, 4, None, &[1], 0);

    let outputs = step(&c2, &mut n2, Input::Timeout(Timer::Election));
    assert_eq!(outputs, vec![election_timer(&c2), send(1, pre_vote(3, 2, 2)), send(3, pre_vote(3, 2, 2))]);
    let outputs = step(&c3, &mut n3, receive(2, pre_vote(3, 2, 2)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(4, false))]);
    let outputs = step(&c2, &mut n2, receive(3, pre_vote_answer(4, false)));
    assert_eq!(outputs, vec![persist_hard(4, None)]);

    // n3's own pre-vote fails on its shorter log, and changes nobody's term.
    let outputs = step(&c3, &mut n3, Input::Timeout(Timer::Election));
    assert_eq!(outputs, vec![election_timer(&c3), send(1, pre_vote(5, 1, 1)), send(2, pre_vote(5, 1, 1))]);
    let outputs = step(&c2, &mut n2, receive(3, pre_vote(5, 1, 1)));
    assert_eq!(outputs, vec![send(3, pre_vote_answer(4, false))]);
    assert_eq!(step(&c3, &mut n3, receive(2, pre_vote_answer(4, false))), vec![]);
    assert_eq!((n3.role_kind(), n3.term()), (RoleKind::PreCandidate, Term(4)));

    // Now in n3's term, n2 asks about the next one, and wins.
    step(&c2, &mut n2, Input::Timeout(Timer::Election));
    let outputs = step(&c3, &mut n3, receive(2, pre_vote(5, 2, 2)));
    assert_eq!(outputs, vec![send(2, pre_vote_answer(5, true))]);
    let outputs = step(&c2, &mut n2, receive(3, pre_vote_answer(5, true)));
    assert_eq!(
        outputs,
        vec![
            persist_candidacy(5, 2, 2),
            election_timer(&c2),
            send(1, request_vote(5, 2, 2)),
            send(3, request_vote(5, 2, 2)),
        ]
    );
    let outputs = step(&c3, &mut n3, receive(2, request_vote(5, 2, 2)));
    assert_eq!(
        outputs,
        vec![persist_hard(5, None), persist_hard(5, Some(2)), election_timer(&c3), send(2, vote(5, true))]
    );
    step(&c2, &mut n2, receive(3, vote(5, true)));
    assert!(n2.is_leader());
    assert_eq!(n2.term(), Term(5));
    assert_eq!(terms_of(&n2), vec![1, 2, 5], "the entry of term 2 survives, under the new no-op");
}

/// Thesis §9.6: a grant counts only if it answers this round (the term
/// after the pre-candidate's). A grant of an earlier round (from before
/// the pre-candidate adopted its present term), of the pre-candidate's own
/// term, or of a round it never asked about, makes no majority; one of a
/// term below its own is a stale response.
#[test]
fn s9_6_a_granted_answer_of_an_older_round_is_not_counted() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 4, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let before = s.clone();

    assert_eq!(step(&c, &mut s, receive(2, pre_vote_answer(4, true))), vec![]);
    assert_eq!(s, before, "a grant of the pre-candidate's own term is not counted");
    assert_eq!(step(&c, &mut s, receive(2, pre_vote_answer(7, true))), vec![]);
    assert_eq!(s, before, "a grant of a round never asked about is not counted, nor its term adopted");
    assert_dropped(&c, &mut s, receive(2, pre_vote_answer(3, true)), Dropped::StaleResponse);

    // The answer of this round wins.
    let outputs = step(&c, &mut s, receive(2, pre_vote_answer(5, true)));
    assert_eq!(outputs[0], persist_candidacy(5, 1, 1));
    assert_eq!(s.role_kind(), RoleKind::Candidate);
}

/// Thesis §9.6: a pre-vote's answer reaching a node that is no longer a
/// pre-candidate (it won, lost, or heard from a leader meanwhile) is a
/// stale response, and a granted one carries a term nobody adopted, so it
/// changes no term either.
#[test]
fn s9_6_a_late_pre_vote_answer_is_dropped_without_adopting_its_term() {
    let c = pre_vote_config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    assert_dropped(&c, &mut s, receive(2, pre_vote_answer(3, true)), Dropped::StaleResponse);
    let (mut leader, _) = leader(&c, 3, &[1], 0);
    assert_dropped(&c, &mut leader, receive(2, pre_vote_answer(4, true)), Dropped::StaleResponse);
    assert_dropped(&c, &mut leader, receive(2, pre_vote_answer(3, true)), Dropped::StaleResponse);
}

/// Thesis §9.6: a cluster of one voter needs nobody's pre-vote, nor
/// anybody's vote: it becomes leader of the next term at once.
#[test]
fn s9_6_a_one_voter_cluster_goes_straight_to_leader() {
    let c = pre_vote_config(1, 1);
    let mut s = follower(&c, 2, None, &[1], 1);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(
        outputs,
        vec![
            persist_candidacy(3, 1, 1),
            election_timer(&c),
            persist_append_async(3, 2, vec![Entry::noop(Term(3))]),
            Output::CancelTimer(Timer::Election),
            leader_changed(Some(1), 3),
            heartbeat_timer(&c),
        ]
    );
    assert!(s.is_leader());
    assert_eq!((s.term(), s.commit_index()), (Term(3), raft_core::LogIndex(2)));
}
