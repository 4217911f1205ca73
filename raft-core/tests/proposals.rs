//! Client proposals (the paper's §8, "Client interaction", and §5.3: "Each
//! client request contains a command to be executed by the replicated state
//! machines. The leader appends the command to its log..."). Followers
//! forward to the leader they know; with none known they hold proposals in
//! a bounded queue.

mod common;

use common::*;
use raft_core::{
    Entry, Forward, ForwardResponse, Input, LogIndex, Message, Output, Placement, ProposalFate, ProposalId, Rejection,
    Term, Timer,
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
        // A refusal (`None`) is a non-leader's, naming the leader it knows.
        results: results
            .iter()
            .map(|(p, r)| {
                let placement = r.map(|(t, i)| (Term(t), LogIndex(i)));
                (ProposalId(*p), placement.ok_or(Rejection::NotLeader { leader_hint: leader_hint.map(id) }))
            })
            .collect(),
    })
}

/// A ForwardResponse with the results given as they travel.
fn forward_results(term: u64, leader_hint: Option<u64>, results: Vec<(u64, Placement)>) -> Message {
    Message::ForwardResponse(ForwardResponse {
        term: Term(term),
        leader_hint: leader_hint.map(id),
        results: results.into_iter().map(|(p, r)| (ProposalId(p), r)).collect(),
    })
}

fn committed(index: u64, term: u64, data: &[u8]) -> raft_core::Committed {
    raft_core::Committed { index: LogIndex(index), term: Term(term), data: data.to_vec() }
}

fn placed(term: u64, index: u64) -> Placement {
    Ok((Term(term), LogIndex(index)))
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
    assert_eq!(outputs, vec![persist_append_async(2, 2, vec![a, b]), accepted(1, 2, 2), accepted(2, 2, 3)]);
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
            persist_append_async(2, 2, vec![Entry::command(Term(2), "x")]),
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
            persist_append_async(1, 1, vec![Entry::noop(Term(1))]),
            persist_append_async(1, 2, vec![Entry::command(Term(1), "p")]),
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
            persist_append_async(2, 2, vec![Entry::command(Term(2), vec![7; 84])]),
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

/// `Config::uncommitted_entries_max`: a leader holds at most that many
/// entries past its commit index (its no-op included). Proposals beyond,
/// local or forwarded, are refused with `QueueFull`, the rest of the batch
/// still placed; once entries commit, there is room again.
#[test]
fn leader_refuses_proposals_past_uncommitted_entries_max() {
    let c = config(1, 3).with_uncommitted_entries_max(3).expect("valid");
    let (mut s, _) = leader(&c, 2, &[], 0);
    // The no-op (index 1) is uncommitted: room for two.
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"a"), proposal(2, b"b"), proposal(3, b"c")]));
    let (a, b) = (Entry::command(Term(2), "a"), Entry::command(Term(2), "b"));
    assert_eq!(
        outputs,
        vec![
            persist_append_async(2, 2, vec![a, b]),
            accepted(1, 2, 2),
            accepted(2, 2, 3),
            rejected(3, Rejection::QueueFull),
        ]
    );
    // No room at all: a forward is refused whole, nothing appended.
    let outputs = step(&c, &mut s, receive(2, forward(2, &[(7, b"x"), (8, b"y")])));
    let full = Err(Rejection::QueueFull);
    assert_eq!(outputs, vec![send(2, forward_results(2, Some(1), vec![(7, full), (8, full)]))]);
    assert_eq!(s.log().last_index(), LogIndex(3));

    // Follower 2 acknowledges everything: 1..=3 commit, and there is room
    // for three again; the fourth of a forwarded batch is refused.
    let outputs = step(&c, &mut s, receive(2, append_ok(2, 3)));
    assert_eq!(outputs, vec![Output::Deliver(vec![committed(2, 2, b"a"), committed(3, 2, b"b")])]);
    let outputs = step(&c, &mut s, receive(2, forward(2, &[(7, b"x"), (8, b"y"), (9, b"z"), (10, b"w")])));
    let xyz: Vec<Entry> = ["x", "y", "z"].iter().map(|d| Entry::command(Term(2), *d)).collect();
    assert_eq!(
        outputs,
        vec![
            persist_append_async(2, 4, xyz.clone()),
            send(
                2,
                forward_results(2, Some(1), vec![(7, placed(2, 4)), (8, placed(2, 5)), (9, placed(2, 6)), (10, full)])
            ),
            send(2, append(2, 3, 2, xyz, 3)),
        ]
    );

    // The origin tells its client why.
    let c2 = config(2, 3);
    let mut origin = follower(&c2, 2, None, &[], 0);
    let outputs = step(&c2, &mut origin, receive(1, forward_results(2, Some(1), vec![(9, placed(2, 6)), (10, full)])));
    assert_eq!(outputs, vec![accepted(9, 2, 6), rejected(10, Rejection::QueueFull)]);
}

/// `State::proposal_fate`: a proposal accepted at (term, index) is pending
/// until its index is known committed, then committed if the entry there is
/// of its term, and lost otherwise.
#[test]
fn s5_3_proposal_fate_is_decided_by_the_commit_index() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[], 0);
    step(&c, &mut s, Input::Propose(vec![proposal(1, b"a")]));
    assert_eq!(s.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Pending);
    assert_eq!(s.proposal_fate(Term(2), LogIndex(9)), ProposalFate::Pending, "past the log's end");
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    assert_eq!(s.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Committed);
    assert_eq!(s.proposal_fate(Term(1), LogIndex(2)), ProposalFate::Lost, "another term's entry at a committed index");

    // A follower that held a deposed leader's entry (index 2 of term 2)
    // learns that the next leader committed its own entry there.
    let c2 = config(2, 3);
    let mut f = follower(&c2, 2, None, &[1, 2], 1);
    assert_eq!(f.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Pending);
    step(&c2, &mut f, receive(3, append(3, 1, 1, vec![Entry::noop(Term(3))], 2)));
    assert_eq!(terms_of(&f), vec![1, 3]);
    assert_eq!(f.commit_index(), LogIndex(2));
    assert_eq!(f.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Lost);
    assert_eq!(f.proposal_fate(Term(3), LogIndex(2)), ProposalFate::Committed);
}

/// §5.4.2, Figure 8: an entry of another term at the proposal's index does
/// not make it lost while that index is uncommitted: S3 holds S5's entry
/// of term 3 at index 2, yet the proposal S1 accepted at index 2 in term 2
/// still commits once S1, leader of term 4, replicates it with its no-op.
#[test]
fn s5_4_2_figure_8_an_overwritten_uncommitted_proposal_is_pending_not_lost() {
    let c = config(3, 5);
    let mut s3 = follower(&c, 3, None, &[1, 3], 1);
    assert_eq!(s3.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Pending);
    // S1 leads term 4 with [1, 2, 4:noop], committed up to 3.
    let s1_entries = vec![entry(2, 2), Entry::noop(Term(4))];
    let outputs = step(&c, &mut s3, receive(1, append(4, 1, 1, s1_entries.clone(), 3)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(4, None),
            leader_changed(Some(1), 4),
            election_timer(&c),
            Output::Persist(raft_core::Persist::Truncate { from: LogIndex(2) }),
            persist_append(2, s1_entries),
            Output::Deliver(vec![committed(2, 2, b"2@2")]),
            send(1, append_ok(4, 3)),
        ]
    );
    assert_eq!(terms_of(&s3), vec![1, 2, 4]);
    assert_eq!(s3.proposal_fate(Term(2), LogIndex(2)), ProposalFate::Committed);
    assert_eq!(s3.proposal_fate(Term(3), LogIndex(2)), ProposalFate::Lost);
}
