//! Recovery from the persisted part alone (Figure 2, "Persistent state on
//! all servers: updated on stable storage before responding to RPCs"): a
//! node that restarts keeps its term, its vote and its log, so it never
//! votes twice in a term and never forgets what it acknowledged.

mod common;

use common::*;
use raft_core::{Config, Entry, HardState, Input, LogIndex, MemoryStore, NodeId, RecoverError, State, Term, Timer};

/// Steps a node and writes its persists to its disk, as a driver would.
fn step_and_persist(c: &Config, s: &mut State, disk: &mut MemoryStore, input: Input) -> Vec<raft_core::Output> {
    let outputs = step(c, s, input);
    persist_all(disk, &outputs);
    outputs
}

/// §5.2 with §5.1's persistence: a node that voted in term 5 and crashed
/// comes back remembering the vote, refuses a second candidate of term 5,
/// and still grants the first one again.
#[test]
fn s5_2_a_recovered_node_never_votes_twice_in_a_term() {
    let c = config(1, 3);
    let (mut s, mut disk) = new_node_with_store(&c);
    step_and_persist(&c, &mut s, &mut disk, receive(2, request_vote(5, 0, 0)));
    assert_eq!(disk.hard, HardState { term: Term(5), voted_for: Some(NodeId(2)) });

    // Crash: everything but the disk is lost.
    let mut s = recover(&c, &disk);
    assert_eq!(s.hard_state(), HardState { term: Term(5), voted_for: Some(NodeId(2)) });
    let outputs = step_and_persist(&c, &mut s, &mut disk, receive(3, request_vote(5, 0, 0)));
    assert_eq!(outputs, vec![send(3, vote(5, false))]);
    let outputs = step_and_persist(&c, &mut s, &mut disk, receive(2, request_vote(5, 0, 0)));
    assert_eq!(outputs, vec![election_timer(&c), send(2, vote(5, true))]);
}

/// A candidate that crashed comes back having voted for itself in its term:
/// it cannot be talked into voting for a rival of that term.
#[test]
fn s5_2_a_recovered_candidate_keeps_its_own_vote() {
    let c = config(1, 3);
    let (mut s, mut disk) = new_node_with_store(&c);
    step_and_persist(&c, &mut s, &mut disk, Input::Timeout(Timer::Election));
    let mut s = recover(&c, &disk);
    assert_eq!(s.role_kind(), raft_core::RoleKind::Follower);
    let outputs = step_and_persist(&c, &mut s, &mut disk, receive(2, request_vote(1, 0, 0)));
    assert_eq!(outputs, vec![send(2, vote(1, false))]);
}

/// A follower's acknowledged entries survive a crash, the term survives
/// (a stale leader is still refused), and after recovery the committed
/// commands are delivered again from the start, since nothing was applied.
#[test]
fn s5_3_a_recovered_follower_keeps_its_log_and_term() {
    let c = config(2, 3);
    let (mut s, mut disk) = new_node_with_store(&c);
    let entries = vec![Entry::noop(Term(4)), entry(2, 4), entry(3, 4)];
    step_and_persist(&c, &mut s, &mut disk, receive(1, append(4, 0, 0, entries.clone(), 2)));
    assert_eq!(s.commit_index(), LogIndex(2));

    let mut s = recover(&c, &disk);
    assert_eq!(s.log().entries(), &entries[..]);
    assert_eq!(s.term(), Term(4));
    assert_eq!(s.commit_index(), LogIndex(0), "the commit index is volatile");
    let outputs = step_and_persist(&c, &mut s, &mut disk, receive(3, append(3, 0, 0, vec![], 0)));
    assert_eq!(outputs, vec![send(3, append_conflict(4, 0, 3, None))]);

    let outputs = step_and_persist(&c, &mut s, &mut disk, receive(1, append(4, 3, 4, vec![], 3)));
    assert_eq!(delivered(&outputs), vec![(2, 4, b"2@4".to_vec()), (3, 4, b"3@4".to_vec())]);
}

/// An application that has applied entries says so at recovery and does
/// not get them again.
#[test]
fn recovery_with_applied_entries_skips_them() {
    let c = config(2, 3);
    let hard = HardState { term: Term(1), voted_for: None };
    let (mut s, _) = State::recover(&c, store_of(&c, hard, log_of(&[1, 1, 1])), LogIndex(2)).expect("consistent");
    assert_eq!((s.commit_index(), s.delivered_index()), (LogIndex(2), LogIndex(2)));
    let outputs = step(&c, &mut s, receive(1, append(1, 3, 1, vec![], 3)));
    assert_eq!(delivered(&outputs), vec![(3, 1, b"3@1".to_vec())]);
}

/// Recovery refuses what a correct node never persisted, with the reason.
#[test]
fn recovery_refuses_inconsistent_disks() {
    let c = config(1, 3);
    let hard = |t| HardState { term: Term(t), voted_for: None };
    let disk = |t, terms: &[u64]| store_of(&c, hard(t), log_of(terms));
    let err = State::recover(&c, disk(3, &[1, 2, 1]), LogIndex(0)).unwrap_err();
    assert_eq!(err, RecoverError::LogTermsOutOfOrder { index: LogIndex(3) });
    let err = State::recover(&c, disk(1, &[1, 2]), LogIndex(0)).unwrap_err();
    assert_eq!(err, RecoverError::LogTermsOutOfOrder { index: LogIndex(2) });
    let err = State::recover(&c, disk(2, &[1, 2]), LogIndex(3)).unwrap_err();
    assert_eq!(err, RecoverError::AppliedBeyondLog { applied: LogIndex(3), last_index: LogIndex(2) });
    // A store that never received the membership `State::new` persists first.
    let no_membership = MemoryStore { membership: None, ..disk(2, &[1, 2]) };
    assert_eq!(State::recover(&c, no_membership, LogIndex(0)).unwrap_err(), RecoverError::NoMembership);
    // A term no node accepts from a peer is not accepted from the store either.
    let too_high = Term(Term::MAX_ACCEPTED.0 + 1);
    let err = State::recover(&c, disk(too_high.0, &[1, 2]), LogIndex(0)).unwrap_err();
    assert_eq!(err, RecoverError::TermOutOfRange { term: too_high });
    assert!(State::recover(&c, disk(Term::MAX_ACCEPTED.0, &[1, 2]), LogIndex(0)).is_ok());
}

/// Persist-before-send, on the steps where it matters most: the self-vote
/// before RequestVote, the vote before the grant, the entries before the
/// acknowledgement, the leader's entries before it replicates them. A crash
/// after the persists and before the sends leaves a disk that already
/// justifies every message of the list.
#[test]
fn persist_before_send_in_every_output_list() {
    let c1 = config(1, 3);
    let c2 = config(2, 3);
    let (mut s1, mut d1) = new_node_with_store(&c1);
    let (mut s2, mut d2) = new_node_with_store(&c2);
    // Each output list is checked by `step`; here we also check that the
    // disk, after the persists of the list, backs every message in it.
    let check = |disk: &MemoryStore, outputs: &[raft_core::Output]| {
        for (_, m) in sends(outputs) {
            assert!(disk.hard.term >= m.term(), "{m:?} sent before its term was durable");
            if let raft_core::Message::AppendEntriesResponse(r) = &m {
                if let raft_core::AppendResult::Success { match_index } = r.result {
                    assert!(disk.log.len() as u64 >= match_index.0, "{m:?} acknowledges entries not on disk");
                }
            }
        }
    };
    let o = step_and_persist(&c1, &mut s1, &mut d1, Input::Timeout(Timer::Election));
    check(&d1, &o);
    assert_eq!(d1.hard.voted_for, Some(NodeId(1)));
    let request = sends(&o)[0].1.clone();
    let o = step_and_persist(&c2, &mut s2, &mut d2, receive(1, request));
    check(&d2, &o);
    assert_eq!(d2.hard, HardState { term: Term(1), voted_for: Some(NodeId(1)) });
    let o = step_and_persist(&c1, &mut s1, &mut d1, receive(2, sends(&o)[0].1.clone()));
    check(&d1, &o);
    assert_eq!(d1.log.entries(), &[Entry::noop(Term(1))][..]);
    let o = step_and_persist(&c2, &mut s2, &mut d2, receive(1, sends(&o)[0].1.clone()));
    check(&d2, &o);
    assert_eq!(d2.log.entries(), &[Entry::noop(Term(1))][..]);
}
