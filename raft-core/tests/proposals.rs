//! Client proposals (the paper's §8, "Client interaction", and §5.3: "Each
//! client request contains a command to be executed by the replicated state
//! machines. The leader appends the command to its log..."). Followers
//! forward to the leader they know; with none known they hold proposals in
//! a bounded queue.

mod common;

use common::*;
use raft_core::{
    Entry, Forward, ForwardResponse, Input, LogIndex, Message, Output, ProposalId, Rejection, Term, Timer,
};

fn forward(term: u64, proposals: &[(u64, &[u8])]) -> Message {
    Message::Forward(Forward {
        term: Term(term),
        proposals: proposals.iter().map(|(id, d)| (ProposalId(*id), d.to_vec())).collect(),
    })
}

fn forward_response(term: u64, leader_hint: Option<u64>, results: &[(u64, Option<(u64, u64)>)]) -> Message {
    Message::ForwardResponse(ForwardResponse {
        term: Term(term),
        leader_hint: leader_hint.map(id),
        results: results.iter().map(|(p, r)| (ProposalId(*p), r.map(|(t, i)| (Term(t), LogIndex(i))))).collect(),
    })
}

fn accepted(id: u64, term: u64, index: u64) -> Output {
    Output::ProposalAccepted { id: ProposalId(id), term: Term(term), index: LogIndex(index) }
}

fn rejected(id: u64, reason: Rejection) -> Output {
    Output::ProposalRejected { id: ProposalId(id), reason }
}

/// §5.3: the leader appends a proposal to its log, persists it, and answers
/// with the (term, index) it was given.
#[test]
fn s5_3_leader_appends_a_proposal_and_answers_with_its_place() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[], 0);
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"a"), proposal(2, b"b")]));
    let (a, b) = (Entry::command(Term(2), "a"), Entry::command(Term(2), "b"));
    // Both followers still owe an answer to their probe, so nothing is sent yet.
    assert_eq!(outputs, vec![persist_append(2, vec![a, b]), accepted(1, 2, 2), accepted(2, 2, 3)]);
}

/// A follower that knows the leader forwards proposals to it; the leader
/// appends them and tells the follower where they went.
#[test]
fn s8_follower_forwards_to_the_known_leader() {
    let c1 = config(1, 3);
    let c2 = config(2, 3);
    let (mut leader_state, _) = leader(&c1, 2, &[], 0);
    let mut f = follower(&c2, 2, None, &[], 0);
    step(&c2, &mut f, receive(1, append(2, 0, 0, vec![Entry::noop(Term(2))], 0)));
    step(&c1, &mut leader_state, receive(2, append_ok(2, 1)));

    let outputs = step(&c2, &mut f, Input::Propose(vec![proposal(7, b"x")]));
    assert_eq!(outputs, vec![send(1, forward(2, &[(7, b"x")]))]);
    assert!(f.pending().is_empty());

    let outputs = step(&c1, &mut leader_state, receive(2, forward(2, &[(7, b"x")])));
    assert_eq!(
        outputs,
        vec![
            persist_append(2, vec![Entry::command(Term(2), "x")]),
            send(2, forward_response(2, Some(1), &[(7, Some((2, 2)))])),
            send(2, append(2, 1, 2, vec![Entry::command(Term(2), "x")], 1)),
        ]
    );

    let outputs = step(&c2, &mut f, receive(1, forward_response(2, Some(1), &[(7, Some((2, 2)))])));
    assert_eq!(outputs, vec![accepted(7, 2, 2)]);
}

/// A forwarded proposal that reaches a node which is no longer leader is
/// refused, and the origin tells its client which leader to try.
#[test]
fn s8_forward_to_a_deposed_leader_is_refused_with_a_hint() {
    let c = config(1, 3);
    let mut s = follower(&c, 3, None, &[], 0);
    step(&c, &mut s, receive(3, append(3, 0, 0, vec![], 0)));
    let outputs = step(&c, &mut s, receive(2, forward(3, &[(4, b"y")])));
    assert_eq!(outputs, vec![send(2, forward_response(3, Some(3), &[(4, None)]))]);
    assert!(s.log().is_empty(), "a non-leader appends nothing");

    let c2 = config(2, 3);
    let mut origin = follower(&c2, 3, None, &[], 0);
    let outputs = step(&c2, &mut origin, receive(1, forward_response(3, Some(3), &[(4, None)])));
    assert_eq!(outputs, vec![rejected(4, Rejection::NotLeader { leader_hint: Some(id(3)) })]);
}

/// With no leader known, proposals wait in a queue bounded by
/// `pending_proposals_max`; beyond it they are refused with `QueueFull`.
/// When a leader becomes known, the queue is forwarded to it in one message,
/// after the answer that the leader's append required.
#[test]
fn s8_pending_queue_is_bounded_and_forwarded_when_a_leader_is_known() {
    let c = config(2, 3).with_pending_proposals_max(2).expect("valid");
    let mut s = follower(&c, 1, None, &[], 0);
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"a"), proposal(2, b"b"), proposal(3, b"c")]));
    assert_eq!(outputs, vec![rejected(3, Rejection::QueueFull)]);
    assert_eq!(s.pending().len(), 2);
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(4, b"d")]));
    assert_eq!(outputs, vec![rejected(4, Rejection::QueueFull)]);

    let outputs = step(&c, &mut s, receive(1, append(1, 0, 0, vec![], 0)));
    assert_eq!(
        outputs,
        vec![
            leader_changed(Some(1), 1),
            election_timer(&c),
            send(1, append_ok(1, 0)),
            send(1, forward(1, &[(1, b"a"), (2, b"b")])),
        ]
    );
    assert!(s.pending().is_empty());
}

/// A candidate holds proposals like a follower without a leader; when it
/// wins, it appends them itself, after its no-op.
#[test]
fn s8_a_candidate_that_wins_appends_what_it_held() {
    let c = config(1, 3);
    let mut s = follower(&c, 0, None, &[], 0);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(5, b"p")]));
    assert!(outputs.is_empty());
    let outputs = step(&c, &mut s, receive(2, vote(1, true)));
    assert_eq!(
        &outputs[..3],
        &[
            persist_append(1, vec![Entry::noop(Term(1))]),
            persist_append(2, vec![Entry::command(Term(1), "p")]),
            accepted(5, 1, 2),
        ]
    );
    assert!(s.pending().is_empty());
}

/// A proposal that could never fit in one message is refused with
/// `TooLarge`, at any node, while the others of the same batch go on.
#[test]
fn s8_oversized_proposals_are_refused() {
    // An entry costs its bytes plus 16 bytes of overhead.
    let c = config(1, 3).with_message_bytes_max(100).expect("valid");
    let (mut s, _) = leader(&c, 2, &[], 0);
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, &[7; 85]), proposal(2, &[7; 84])]));
    assert_eq!(
        outputs,
        vec![
            rejected(1, Rejection::TooLarge),
            persist_append(2, vec![Entry::command(Term(2), vec![7; 84])]),
            accepted(2, 2, 2),
        ]
    );

    let c = config(2, 3).with_message_bytes_max(100).expect("valid");
    let mut f = follower(&c, 2, None, &[], 0);
    let outputs = step(&c, &mut f, Input::Propose(vec![proposal(3, &[0; 1000])]));
    assert_eq!(outputs, vec![rejected(3, Rejection::TooLarge)]);
    assert!(f.pending().is_empty());
}

/// A follower's forwarded proposals travel in as many `Forward` messages as
/// `message_bytes_max` needs, so each fits a transport frame.
#[test]
fn forwarded_proposals_are_split_to_fit_message_bytes_max() {
    let c = config(2, 3).with_message_bytes_max(100).unwrap();
    let mut s = follower(&c, 1, None, &[1], 0);
    step(&c, &mut s, receive(1, append(1, 1, 1, vec![], 0)));
    // Each proposal counts 30 bytes plus 16 of overhead: two fit in 100.
    let out = step(&c, &mut s, Input::Propose((1..=3).map(|i| proposal(i, &[b'x'; 30])).collect()));
    let forwards: Vec<usize> = sends(&out)
        .into_iter()
        .map(|(to, m)| match m {
            Message::Forward(f) if to == id(1) => f.proposals.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(forwards, vec![2, 1]);
}

/// New entries reach a follower known to match in one step, split by
/// `entries_per_append_max`, not one message per acknowledgement.
#[test]
fn new_entries_stream_to_a_matching_follower_in_one_step() {
    let c = config(1, 3).with_entries_per_append_max(2).unwrap();
    let (mut s, _) = leader(&c, 2, &[1], 0);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    let out = step(&c, &mut s, Input::Propose((1..=5).map(|i| proposal(i, b"v")).collect()));
    let to_2: Vec<(u64, usize)> = sends(&out)
        .into_iter()
        .filter(|(to, _)| *to == id(2))
        .map(|(_, m)| match m {
            Message::AppendEntries(a) => (a.prev_log_index.0, a.entries.len()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(to_2, vec![(2, 2), (4, 2), (6, 1)]);
    // Node 3 has not answered the first append (probe): nothing more to it.
    assert!(sends(&out).iter().all(|(to, _)| *to != id(3)), "{out:?}");
}
