//! Leadership transfer (thesis §3.10): an operator names a target; the
//! leader stops taking proposals, brings the target's log up to date and
//! sends it `TimeoutNow`, on which the target stands for election at once
//! (skipping pre-vote, and with a vote request that check-quorum's lease
//! does not hold back). The transfer is abandoned after an election
//! timeout, and proposals resume.
//!
//! Each test asserts the exact output list of every step it checks.

mod common;

use common::*;
use raft_core::{
    Dropped, Entry, Forward, ForwardResponse, Input, Message, NodeId, Output, ProposalId, Rejection, RoleKind, State,
    Term, Timer, TransferRejection,
};

/// A leader of term 2 in three nodes (pre-vote and check-quorum on), log
/// [1@1, no-op@2], whose followers have both acknowledged all of it.
fn leader_with_followers_up_to_date() -> (TestConfig, State) {
    let c = config_with_extensions(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    step(&c, &mut s, receive(3, append_ok(2, 2)));
    assert_eq!(s.commit_index(), raft_core::LogIndex(2));
    (c, s)
}

/// A leader of term 3 in three nodes, log [1@1, 2@1, no-op@3] with all of
/// it committed by n2's acknowledgement, and n3 lagging: it holds entry 1
/// only, and its answer to the leader's first probe is still on its way.
fn leader_with_a_lagging_follower() -> (TestConfig, State) {
    let c = config_with_extensions(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 1], 1);
    step(&c, &mut s, receive(2, append_ok(3, 3)));
    assert_eq!(s.commit_index(), raft_core::LogIndex(3));
    (c, s)
}

fn rejected(target: u64, reason: TransferRejection) -> Output {
    Output::TransferRejected { target: NodeId(target), reason }
}

fn transferring(target: u64) -> Rejection {
    Rejection::Transferring { target: NodeId(target) }
}

/// Thesis §3.10: only the leader hands its leadership over; any other node
/// refuses, naming the leader it knows (if any), and changes nothing.
#[test]
fn s3_10_a_transfer_is_refused_when_not_leader() {
    let c = config_with_extensions(1, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    let before = s.clone();
    let outputs = step(&c, &mut s, Input::TransferLeadership(id(2)));
    assert_eq!(outputs, vec![rejected(2, TransferRejection::NotLeader { leader_hint: None })]);
    assert_eq!(s, before);

    step(&c, &mut s, receive(3, append(2, 1, 1, vec![], 0)));
    let before = s.clone();
    let outputs = step(&c, &mut s, Input::TransferLeadership(id(2)));
    assert_eq!(outputs, vec![rejected(2, TransferRejection::NotLeader { leader_hint: Some(id(3)) })]);
    assert_eq!(s, before);
}

/// Thesis §3.10: a leader refuses a transfer to itself, and to a node that
/// is not a voter of the cluster, changing nothing.
#[test]
fn s3_10_a_transfer_is_refused_to_itself_and_to_a_non_voter() {
    let (c, mut s) = leader_with_followers_up_to_date();
    let before = s.clone();
    assert_eq!(step(&c, &mut s, Input::TransferLeadership(id(1))), vec![rejected(1, TransferRejection::ToSelf)]);
    assert_eq!(step(&c, &mut s, Input::TransferLeadership(id(9))), vec![rejected(9, TransferRejection::NotVoter)]);
    assert_eq!(s, before);
}

/// Thesis §3.10: to a target that holds the leader's whole log, the leader
/// sends TimeoutNow at once, and arms the transfer's deadline. Asking again
/// for the same target changes nothing.
#[test]
fn s3_10_a_transfer_to_an_up_to_date_target_sends_timeout_now_at_once() {
    let (c, mut s) = leader_with_followers_up_to_date();
    let outputs = step(&c, &mut s, Input::TransferLeadership(id(2)));
    assert_eq!(outputs, vec![transfer_timer(&c), send(2, timeout_now(2))]);
    assert_eq!(s.transfer_target(), Some(id(2)));
    assert!(s.is_leader(), "the leader leads until the target's election deposes it");

    let before = s.clone();
    assert_eq!(step(&c, &mut s, Input::TransferLeadership(id(2))), vec![]);
    assert_eq!(s, before);
}

/// Thesis §3.10: to a lagging target the leader first sends the entries it
/// lacks (here the catch-up append that answers its rejection), and sends
/// TimeoutNow only when the target's acknowledgement reaches the leader's
/// last index; a later acknowledgement sends it again, in case it was lost.
#[test]
fn s3_10_a_transfer_to_a_lagging_target_catches_it_up_first() {
    let (c, mut s) = leader_with_a_lagging_follower();
    let outputs = step(&c, &mut s, Input::TransferLeadership(id(3)));
    assert_eq!(outputs, vec![transfer_timer(&c)], "the probe to n3 is still out: nothing more to send");

    let outputs = step(&c, &mut s, receive(3, append_conflict(3, 2, 1, None)));
    assert_eq!(outputs, vec![send(3, append(3, 1, 1, vec![entry(2, 1), Entry::noop(Term(3))], 3))]);

    let outputs = step(&c, &mut s, receive(3, append_ok(3, 3)));
    assert_eq!(outputs, vec![send(3, timeout_now(3))]);
    let outputs = step(&c, &mut s, receive(3, append_ok(3, 3)));
    assert_eq!(outputs, vec![send(3, timeout_now(3))]);
    assert_eq!(s.transfer_target(), Some(id(3)));
}

/// Thesis §3.10: while a transfer is under way the leader takes no
/// proposals, made at it or forwarded to it, and says to whom leadership
/// is going; the reason reaches the forwarding node's client intact.
#[test]
fn s3_10_proposals_are_refused_during_a_transfer() {
    let (c, mut s) = leader_with_a_lagging_follower();
    step(&c, &mut s, Input::TransferLeadership(id(3)));
    let before = s.clone();

    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    assert_eq!(outputs, vec![Output::ProposalRejected { id: ProposalId(1), reason: transferring(3) }]);
    assert_eq!(s, before);

    let forward = Message::Forward(Forward { term: Term(3), proposals: vec![(ProposalId(7), b"y".to_vec())] });
    let outputs = step(&c, &mut s, receive(2, forward));
    let answer = Message::ForwardResponse(ForwardResponse {
        term: Term(3),
        leader_hint: Some(id(1)),
        results: vec![(ProposalId(7), Err(transferring(3)))],
    });
    assert_eq!(outputs, vec![send(2, answer.clone())]);
    assert_eq!(s, before);

    let c2 = config_with_extensions(2, 3);
    let mut n2 = follower(&c2, 3, None, &[1], 0);
    let outputs = step(&c2, &mut n2, receive(1, answer));
    assert_eq!(outputs, vec![Output::ProposalRejected { id: ProposalId(7), reason: transferring(3) }]);
}

/// Thesis §3.10: when the transfer's deadline passes without the target
/// taking over, the leader gives the transfer up and takes proposals
/// again, in its term. A second firing finds no transfer: a stale timer.
#[test]
fn s3_10_the_transfer_timer_abandons_it_and_proposals_are_accepted_again() {
    let (c, mut s) = leader_with_a_lagging_follower();
    step(&c, &mut s, Input::TransferLeadership(id(3)));

    let outputs = step(&c, &mut s, Input::Timeout(Timer::Transfer));
    assert_eq!(outputs, vec![]);
    assert_eq!((s.transfer_target(), s.is_leader(), s.term()), (None, true, Term(3)));

    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(2, b"y")]));
    let command = Entry::command(Term(3), b"y".to_vec());
    assert_eq!(
        outputs,
        vec![
            persist_append_async(3, 4, vec![command.clone()]),
            Output::ProposalAccepted { id: ProposalId(2), term: Term(3), index: raft_core::LogIndex(4) },
            send(2, append(3, 3, 3, vec![command], 3)),
        ],
        "n3's probe is still out, so only n2 is sent the entry"
    );
    assert_dropped(&c, &mut s, Input::Timeout(Timer::Transfer), Dropped::StaleTimer);
}

/// Thesis §3.10: TimeoutNow from the leader of its term makes the target
/// stand for election at once: no pre-vote (pre-vote is on), the next term
/// with its vote persisted first, and vote requests marked as a transfer's.
/// A pre-candidate that still knows the leader obeys too.
#[test]
fn s3_10_timeout_now_starts_an_election_at_once_skipping_pre_vote() {
    let c = config_with_extensions(2, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    step(&c, &mut s, receive(1, append(2, 2, 2, vec![], 0)));
    let mut pre_candidate = s.clone();

    let outputs = step(&c, &mut s, receive(1, timeout_now(2)));
    let expected = vec![
        persist_candidacy(3, 2, 2),
        leader_changed(None, 3),
        election_timer(&c),
        send(1, request_vote_transfer(3, 2, 2)),
        send(3, request_vote_transfer(3, 2, 2)),
    ];
    assert_eq!(outputs, expected);
    assert_eq!((s.role_kind(), s.term()), (RoleKind::Candidate, Term(3)));

    step(&c, &mut pre_candidate, Input::Timeout(Timer::Election));
    assert_eq!(pre_candidate.role_kind(), RoleKind::PreCandidate);
    assert_eq!(step(&c, &mut pre_candidate, receive(1, timeout_now(2))), expected);
}

/// Thesis §3.10: only the leader of the receiver's term may hand its
/// leadership over: a TimeoutNow from another node, to a node that knows no
/// leader, or to the leader itself, is distrusted as a second leader; one of
/// an older term is stale. None changes anything.
#[test]
fn s3_10_a_timeout_now_from_a_non_leader_is_dropped() {
    let c = config_with_extensions(2, 3);
    let mut s = follower(&c, 2, None, &[1], 0);
    assert_dropped(&c, &mut s, receive(1, timeout_now(2)), Dropped::SecondLeader);
    step(&c, &mut s, receive(1, append(2, 1, 1, vec![], 0)));
    assert_dropped(&c, &mut s, receive(3, timeout_now(2)), Dropped::SecondLeader);
    assert_dropped(&c, &mut s, receive(1, timeout_now(1)), Dropped::StaleResponse);

    let c = config_with_extensions(1, 3);
    let (mut leader, _) = leader(&c, 2, &[1], 1);
    assert_dropped(&c, &mut leader, receive(2, timeout_now(2)), Dropped::SecondLeader);
}

/// Thesis §3.10: the leader, on its target's vote request (a higher term,
/// marked as a transfer's, so not held back by its own lease), steps down:
/// its heartbeat, check-quorum and transfer timers are cancelled, and it
/// votes for the target, whose log is as up to date as its own.
#[test]
fn s3_10_the_old_leader_steps_down_on_its_targets_vote_request() {
    let (c, mut s) = leader_with_followers_up_to_date();
    step(&c, &mut s, Input::TransferLeadership(id(2)));
    let outputs = step(&c, &mut s, receive(2, request_vote_transfer(3, 2, 2)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(3, None),
            Output::CancelTimer(Timer::Heartbeat),
            Output::CancelTimer(Timer::CheckQuorum),
            Output::CancelTimer(Timer::Transfer),
            election_timer(&c),
            leader_changed(None, 3),
            persist_hard(3, Some(2)),
            election_timer(&c),
            send(2, vote(3, true)),
        ]
    );
    assert_eq!((s.role_kind(), s.transfer_target()), (RoleKind::Follower, None));
}

/// Thesis §3.10, end to end: a three-node cluster (pre-vote and
/// check-quorum on) elects n1, commits a command, and n1 hands its
/// leadership to n2. n2 leads the very next term, which every node then
/// follows; no pre-vote and no other election took place: the only vote
/// requests after the transfer began are n2's, of term 2.
#[test]
fn s3_10_a_three_node_cluster_transfers_leadership_from_n1_to_n2_in_one_term() {
    let configs: Vec<TestConfig> = (1..=3).map(|n| config_with_extensions(n, 3)).collect();
    let states = configs.iter().map(|c| new_node(c).0).collect();
    let mut h = Harness::new(configs.clone(), states);
    h.step(1, Input::Timeout(Timer::Election));
    h.run(1_000);
    assert!(h.state(1).is_leader());
    h.step(1, Input::Propose(vec![proposal(1, b"a")]));
    h.run(1_000);
    h.step(1, Input::Timeout(Timer::Heartbeat));
    h.run(1_000);
    assert!((1..=3).all(|n| h.applied[n as usize - 1] == vec![(2, 1, b"a".to_vec())]));

    let mark = h.trace.len();
    let outputs = h.step(1, Input::TransferLeadership(id(2)));
    assert_eq!(outputs, vec![transfer_timer(&configs[0]), send(2, timeout_now(1))]);
    h.run(1_000);

    for n in 1..=3 {
        let s = h.state(n);
        assert_eq!((s.term(), s.leader()), (Term(2), Some(id(2))), "n{n}");
    }
    assert!(h.state(2).is_leader());
    assert_eq!(h.state(2).commit_index(), h.state(2).log().last_index(), "n2's no-op of term 2 committed");
    let votes: Vec<(NodeId, NodeId, Message)> = h.trace[mark..]
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::RequestVote(_) | Message::PreVote(_)))
        .cloned()
        .collect();
    assert_eq!(
        votes,
        vec![(id(2), id(1), request_vote_transfer(2, 2, 1)), (id(2), id(3), request_vote_transfer(2, 2, 1))]
    );
    assert!(h.trace[mark..].iter().all(|(_, _, m)| m.term() <= Term(2)), "no term beyond 2");
}
