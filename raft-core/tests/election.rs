//! Terms and leader election: the Raft paper's §5.1 (terms), §5.2 (leader
//! election) and §5.4.1 (the election restriction), as Figure 2 states them.

mod common;

use common::*;
use raft_core::{Dropped, Entry, Input, Output, Term, Timer};

/// §5.1: "If a server's current term is smaller than the other's, it updates
/// its current term to the larger value": a follower adopts the term of any
/// message, clearing its vote, and persists that before answering.
#[test]
fn s5_1_follower_adopts_a_higher_term_from_every_message() {
    let c = config(1, 3);
    let messages = [
        request_vote(5, 0, 0),
        vote(5, false),
        append(5, 0, 0, vec![], 0),
        append_ok(5, 0),
        append_conflict(5, 1, 0, None),
    ];
    for message in messages {
        let mut s = follower(&c, 2, Some(2), &[1, 2], 0);
        let outputs = step(&c, &mut s, receive(3, message.clone()));
        assert_eq!(s.term(), Term(5), "{message:?}");
        assert!(!s.is_leader() && s.role_kind() == raft_core::RoleKind::Follower, "{message:?}");
        assert_eq!(outputs[0], persist_hard(5, None), "{message:?}: the new term is persisted first");
        assert!(!outputs.contains(&Output::Dropped(Dropped::StaleResponse)), "{message:?}: not ignored");
    }
}

/// §5.1: a candidate that sees a higher term returns to follower state.
#[test]
fn s5_1_candidate_steps_down_on_a_higher_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!((s.role_kind(), s.term()), (raft_core::RoleKind::Candidate, Term(3)));

    let outputs = step(&c, &mut s, receive(2, vote(7, false)));
    assert_eq!(outputs, vec![persist_hard(7, None)]);
    assert_eq!((s.role_kind(), s.term(), s.hard_state().voted_for), (raft_core::RoleKind::Follower, Term(7), None));
}

/// §5.1: a leader that sees a higher term steps down at once: it stops its
/// heartbeats and arms its election timer. A late answer carrying the higher
/// term is not "ignored": it changed the node's term and role.
#[test]
fn s5_1_leader_steps_down_on_a_higher_term() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 2], 0);

    let outputs = step(&c, &mut s, receive(2, append_conflict(4, 2, 2, None)));
    assert_eq!(
        outputs,
        vec![persist_hard(4, None), Output::CancelTimer(Timer::Heartbeat), election_timer(&c), leader_changed(None, 4),]
    );
    assert_eq!((s.role_kind(), s.term(), s.leader()), (raft_core::RoleKind::Follower, Term(4), None));
}

/// §5.1: a leader deposed by a higher-term AppendEntries follows the new leader.
#[test]
fn s5_1_leader_follows_a_newer_leader() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 2], 0);
    // The new leader's log has our entries 1 and 2 and its own no-op at 3.
    let outputs = step(&c, &mut s, receive(3, append(5, 2, 2, vec![Entry::noop(Term(5))], 0)));
    assert_eq!(s.leader(), Some(id(3)));
    assert_eq!(s.term(), Term(5));
    assert_eq!(outputs.first(), Some(&persist_hard(5, None)));
    // Our own no-op of term 3 conflicts with the new leader's entry 3 and goes.
    assert!(outputs.contains(&Output::Persist(raft_core::Persist::Truncate { from: raft_core::LogIndex(3) })));
    assert_eq!(outputs.last(), Some(&send(3, append_ok(5, 3))));
    assert_eq!(terms_of(&s), vec![1, 2, 5]);
}

/// §5.1: "If a server receives a request with a stale term number, it
/// rejects the request", in every role, answering with its own term.
#[test]
fn s5_1_stale_requests_are_rejected_with_the_current_term() {
    let c = config(1, 3);
    let follower_state = follower(&c, 4, None, &[1], 0);
    let mut candidate_state = follower(&c, 3, None, &[1], 0);
    step(&c, &mut candidate_state, Input::Timeout(Timer::Election));
    let (leader_state, _) = leader(&c, 4, &[1], 0);

    for state in [follower_state, candidate_state, leader_state] {
        assert_eq!(state.term(), Term(4));
        let mut s = state.clone();
        let outputs = step(&c, &mut s, receive(2, request_vote(3, 9, 3)));
        assert_eq!(outputs, vec![send(2, vote(4, false))]);
        assert_eq!(s, state, "a stale RequestVote changes nothing");

        let mut s = state.clone();
        let outputs = step(&c, &mut s, receive(2, append(3, 1, 1, vec![entry(2, 3)], 1)));
        assert_eq!(outputs, vec![send(2, append_conflict(4, 1, s.log().last_index().0, None))]);
        assert_eq!(s, state, "a stale AppendEntries changes nothing");

        let mut s = state.clone();
        assert_dropped(&c, &mut s, receive(2, vote(3, true)), Dropped::StaleResponse);
        assert_dropped(&c, &mut s, receive(2, append_ok(3, 1)), Dropped::StaleResponse);
    }
}

/// §5.2: on election timeout a follower increments its term, votes for
/// itself (persisted before any request leaves), re-arms its election timer
/// and sends RequestVote, carrying its last log index and term (§5.4.1), to
/// every other server.
#[test]
fn s5_2_follower_times_out_and_starts_an_election() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(
        outputs,
        vec![
            persist_candidacy(3, 1, 2),
            election_timer(&c),
            send(2, request_vote(3, 2, 2)),
            send(3, request_vote(3, 2, 2)),
        ]
    );
    assert_eq!(s.role_kind(), raft_core::RoleKind::Candidate);
}

/// §5.2: a follower that knew a leader forgets it when it starts an election.
#[test]
fn s5_2_a_new_election_forgets_the_old_leader() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    step(&c, &mut s, receive(2, append(2, 2, 2, vec![], 0)));
    assert_eq!(s.leader(), Some(id(2)));
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(&outputs[..2], &[persist_candidacy(3, 1, 2), leader_changed(None, 3)]);
    assert_eq!(s.leader(), None);
}

/// §5.2: "If election timeout elapses" while a candidate, it starts a new
/// election in the next term.
#[test]
fn s5_2_candidate_times_out_and_tries_again_in_the_next_term() {
    let c = config(1, 5);
    let mut s = follower(&c, 0, None, &[], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    step(&c, &mut s, receive(2, vote(1, true)));
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(outputs[0], persist_candidacy(2, 1, 0));
    assert_eq!(sends(&outputs).len(), 4);
    assert_eq!(s.term(), Term(2));
    // The vote from term 1 does not carry over: two more are needed.
    step(&c, &mut s, receive(2, vote(2, true)));
    assert!(!s.is_leader());
    step(&c, &mut s, receive(3, vote(2, true)));
    assert!(s.is_leader());
}

/// §5.2: a candidate becomes leader when it holds votes from a majority, and
/// not before. For clusters of 1, 3 and 5, every pattern of granted and
/// refused answers from the peers is tried, in peer order; the node must
/// become leader exactly at the answer that completes a majority.
#[test]
fn s5_2_elections_with_every_pattern_of_votes() {
    for n in [1u64, 3, 5] {
        let c = config(1, n);
        let peers: Vec<u64> = (2..=n).collect();
        for pattern in 0u32..(1 << peers.len()) {
            let mut s = follower(&c, 0, None, &[], 0);
            let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
            let mut votes = 1; // its own
            let mut won_at = (votes >= c.quorum()).then_some(0);
            if n == 1 {
                assert!(s.is_leader(), "a one-node cluster elects itself at once");
                assert!(outputs.contains(&persist_append_async(1, 1, vec![Entry::noop(Term(1))])));
            }
            for (k, &peer) in peers.iter().enumerate() {
                let granted = pattern & (1 << k) != 0;
                let was_leader = s.is_leader();
                let outputs = step(&c, &mut s, receive(peer, vote(1, granted)));
                if granted {
                    votes += 1;
                }
                if won_at.is_none() && votes >= c.quorum() {
                    won_at = Some(k + 1);
                    assert!(s.is_leader(), "n={n} pattern={pattern:b}: majority at answer {}", k + 1);
                    assert!(outputs.contains(&leader_changed(Some(1), 1)));
                } else {
                    assert_eq!(s.is_leader(), was_leader, "n={n} pattern={pattern:b} answer {}", k + 1);
                    assert!(!outputs.iter().any(|o| matches!(o, Output::LeaderChanged { .. })));
                }
            }
            let granted_votes = 1 + pattern.count_ones() as usize;
            assert_eq!(s.is_leader(), granted_votes >= c.quorum(), "n={n} pattern={pattern:b}");
            assert_eq!(s.term(), Term(1));
        }
    }
}

/// §5.2: what a candidate does when it wins: it appends the no-op of its
/// term (§8), stops its election timer, announces itself, starts its
/// heartbeat timer, and sends AppendEntries to every follower at once.
#[test]
fn s5_2_a_new_leader_asserts_itself_at_once() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 1);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, receive(3, vote(3, true)));
    let noop = Entry::noop(Term(3));
    assert_eq!(
        outputs,
        vec![
            persist_append_async(3, 3, vec![noop.clone()]),
            Output::CancelTimer(Timer::Election),
            leader_changed(Some(1), 3),
            heartbeat_timer(&c),
            send(2, append(3, 2, 2, vec![noop.clone()], 1)),
            send(3, append(3, 2, 2, vec![noop], 1)),
        ]
    );
}

/// §5.2: the same peer's vote counts once, however often it arrives.
#[test]
fn s5_2_a_duplicated_vote_counts_once() {
    let c = config(1, 5);
    let mut s = follower(&c, 0, None, &[], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    for _ in 0..3 {
        step(&c, &mut s, receive(2, vote(1, true)));
    }
    assert!(!s.is_leader(), "two distinct votes of five are not a majority");
    step(&c, &mut s, receive(4, vote(1, true)));
    assert!(s.is_leader());
}

/// §5.2: "While waiting for votes, a candidate may receive an AppendEntries
/// RPC from another server claiming to be leader. If the leader's term is
/// at least as large as the candidate's current term, then the candidate
/// recognizes the leader as legitimate and returns to follower state."
#[test]
fn s5_2_candidate_yields_to_a_leader_of_its_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, receive(3, append(3, 1, 1, vec![], 0)));
    assert_eq!(outputs, vec![leader_changed(Some(3), 3), election_timer(&c), send(3, append_ok(3, 1))]);
    assert_eq!(s.role_kind(), raft_core::RoleKind::Follower);
    assert_eq!(s.hard_state().voted_for, Some(id(1)), "its own vote in term 3 stands");
    // A late vote for the lost election does nothing: a follower expects
    // no votes, so it is a stale response.
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(2, vote(3, true)));
    assert_eq!(outputs, vec![Output::Dropped(Dropped::StaleResponse)]);
    assert_eq!(s, before);
}

/// §5.4.1: a voter grants its vote only if the candidate's log is at least
/// as up-to-date as its own: "If the logs have last entries with different
/// terms, then the log with the later term is more up-to-date. If the logs
/// end with the same term, then whichever log is longer is more up-to-date."
#[test]
fn s5_4_1_vote_granting_compares_last_term_then_length() {
    // (voter's log terms, candidate's last index, candidate's last term, granted)
    let table: &[(&[u64], u64, u64, bool)] = &[
        (&[], 0, 0, true),              // both empty
        (&[], 3, 2, true),              // the candidate has entries, the voter none
        (&[1], 0, 0, false),            // the candidate is empty, the voter is not
        (&[1, 1, 2], 3, 2, true),       // same last term, same length
        (&[1, 1, 2], 4, 2, true),       // same last term, candidate longer
        (&[1, 1, 2], 2, 2, false),      // same last term, candidate shorter
        (&[1, 1, 2], 1, 3, true),       // later last term wins although shorter
        (&[1, 1, 2], 9, 1, false),      // earlier last term loses although longer
        (&[1, 1, 2, 2, 2], 3, 3, true), // later term, much shorter
        (&[3], 7, 2, false),            // earlier term, much longer
    ];
    for &(voter_log, last_index, last_term, granted) in table {
        let c = config(1, 3);
        let mut s = follower(&c, 3, None, voter_log, 0);
        let outputs = step(&c, &mut s, receive(2, request_vote(4, last_index, last_term)));
        let case = format!("voter {voter_log:?}, candidate last {last_index}@{last_term}");
        if granted {
            assert_eq!(
                outputs,
                vec![persist_hard(4, None), persist_hard(4, Some(2)), election_timer(&c), send(2, vote(4, true))],
                "{case}"
            );
            assert_eq!(s.hard_state().voted_for, Some(id(2)), "{case}");
        } else {
            assert_eq!(outputs, vec![persist_hard(4, None), send(2, vote(4, false))], "{case}");
            assert_eq!(s.hard_state().voted_for, None, "{case}");
        }
    }
}

/// §5.2: "Each server will vote for at most one candidate in a given term,
/// on a first-come-first-served basis." A second candidate of the same
/// term is refused, whatever its log.
#[test]
fn s5_2_one_vote_per_term() {
    let c = config(1, 5);
    let mut s = follower(&c, 3, None, &[1], 0);
    let outputs = step(&c, &mut s, receive(2, request_vote(3, 1, 1)));
    assert_eq!(outputs, vec![persist_hard(3, Some(2)), election_timer(&c), send(2, vote(3, true))]);

    let before = s.clone();
    let outputs = step(&c, &mut s, receive(3, request_vote(3, 50, 3)));
    assert_eq!(outputs, vec![send(3, vote(3, false))]);
    assert_eq!(s, before);

    // In the next term the vote is free again.
    let outputs = step(&c, &mut s, receive(3, request_vote(4, 1, 1)));
    assert_eq!(
        outputs,
        vec![persist_hard(4, None), persist_hard(4, Some(3)), election_timer(&c), send(3, vote(4, true))]
    );
}

/// §5.2, Figure 2 ("votedFor is null or candidateId"): a candidate whose
/// request was answered but whose answer was lost asks again and is granted
/// again; the vote is already on disk, so nothing is persisted anew.
#[test]
fn s5_2_the_same_candidate_is_granted_again() {
    let c = config(1, 3);
    let mut s = follower(&c, 3, None, &[1], 0);
    step(&c, &mut s, receive(2, request_vote(3, 1, 1)));
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(2, request_vote(3, 1, 1)));
    assert_eq!(outputs, vec![election_timer(&c), send(2, vote(3, true))]);
    assert_eq!(s, before);
}

/// §5.2: candidates vote for themselves, so they refuse other candidates of
/// their term; a leader refuses too.
#[test]
fn s5_2_candidates_and_leaders_refuse_votes_in_their_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, receive(2, request_vote(3, 5, 2)));
    assert_eq!(outputs, vec![send(2, vote(3, false))]);
    assert_eq!(s.hard_state().voted_for, Some(id(1)));

    let (mut s, _) = leader(&c, 3, &[1], 0);
    let outputs = step(&c, &mut s, receive(3, request_vote(3, 5, 2)));
    assert_eq!(outputs, vec![send(3, vote(3, false))]);
    assert!(s.is_leader());
}

/// §5.2: a vote request with a higher term deposes a leader even when the
/// vote itself is refused (here the candidate's log is behind).
#[test]
fn s5_2_leader_deposed_by_a_higher_term_request_even_when_refusing() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 2], 0);
    let outputs = step(&c, &mut s, receive(2, request_vote(4, 1, 1)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(4, None),
            Output::CancelTimer(Timer::Heartbeat),
            election_timer(&c),
            leader_changed(None, 4),
            send(2, vote(4, false)),
        ]
    );
}

/// §5.2: timers that belong to another role are ignored.
#[test]
fn s5_2_timers_of_another_role_are_dropped() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    assert_dropped(&c, &mut s, Input::Timeout(Timer::Heartbeat), Dropped::StaleTimer);
    let (mut s, _) = leader(&c, 3, &[1], 0);
    assert_dropped(&c, &mut s, Input::Timeout(Timer::Election), Dropped::StaleTimer);
}

/// §5.1, §5.2: a candidate that meets a leader of a higher term follows it,
/// with its vote of the old term gone and none cast in the new one.
#[test]
fn s5_1_candidate_follows_a_leader_of_a_higher_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, receive(3, append(5, 1, 1, vec![], 0)));
    assert_eq!(
        outputs,
        vec![persist_hard(5, None), leader_changed(Some(3), 5), election_timer(&c), send(3, append_ok(5, 1))]
    );
    assert_eq!(s.hard_state().voted_for, None);
}

/// §5.1, §5.2: a candidate asked for its vote in a higher term adopts the
/// term and, its own vote being of the old term, may grant it.
#[test]
fn s5_1_candidate_votes_in_a_higher_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, receive(2, request_vote(4, 1, 1)));
    assert_eq!(
        outputs,
        vec![persist_hard(4, None), persist_hard(4, Some(2)), election_timer(&c), send(2, vote(4, true))]
    );
    assert_eq!(s.role_kind(), raft_core::RoleKind::Follower);
}
