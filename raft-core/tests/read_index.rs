//! Linearizable reads without the log: the ReadIndex protocol of Ongaro's
//! thesis, §6.4. A leader serves a read only once (1) an entry of its own
//! term is committed, (2) it has fixed the read index at its commit index,
//! and (3) a majority has confirmed its leadership in a round sent after
//! that; a follower asks the leader for the index and waits until it has
//! delivered that far.

mod common;

use common::*;
use raft_core::{
    Input, LeadershipCheck, LeadershipCheckResponse, LogIndex, Message, NodeId, Output, ReadId, ReadIndexRequest,
    ReadIndexResponse, Rejection, Term,
};

fn check(term: u64, round: u64) -> Message {
    Message::LeadershipCheck(LeadershipCheck { term: Term(term), round })
}

fn check_ok(term: u64, round: u64) -> Message {
    Message::LeadershipCheckResponse(LeadershipCheckResponse { term: Term(term), round })
}

fn read(ids: &[u64]) -> Input {
    Input::Read(ids.iter().map(|&i| ReadId(i)).collect())
}

fn ready(outputs: &[Output]) -> Vec<(u64, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ReadReady { id, index } => Some((id.0, index.0)),
            _ => None,
        })
        .collect()
}

/// A 3-node leader of term 2 whose no-op (index 2) is committed.
fn committed_leader() -> (TestConfig, raft_core::State) {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 0);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    assert_eq!(s.commit_index(), LogIndex(2));
    (c, s)
}

#[test]
fn thesis_6_4_leader_serves_after_a_quorum_round() {
    let (c, mut s) = committed_leader();
    let out = step(&c, &mut s, read(&[7]));
    assert_eq!(sends(&out), vec![(NodeId(2), check(2, 1)), (NodeId(3), check(2, 1))]);
    assert!(ready(&out).is_empty(), "served before leadership was confirmed");
    // One follower plus the leader is a majority of three.
    let out = step(&c, &mut s, receive(3, check_ok(2, 1)));
    assert_eq!(ready(&out), vec![(7, 2)]);
}

#[test]
fn thesis_6_4_no_read_index_before_an_entry_of_the_term_commits() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1, 1], 0);
    // The no-op (index 3) is not committed: the read waits, no round yet.
    let out = step(&c, &mut s, read(&[1]));
    assert!(sends(&out).is_empty() && ready(&out).is_empty(), "{out:?}");
    // The no-op commits: the index is fixed at 3 and a round starts.
    let out = step(&c, &mut s, receive(2, append_ok(2, 3)));
    assert_eq!(s.commit_index(), LogIndex(3));
    assert!(sends(&out).contains(&(NodeId(3), check(2, 1))), "{out:?}");
    assert!(ready(&out).is_empty());
    let out = step(&c, &mut s, receive(2, check_ok(2, 1)));
    assert_eq!(ready(&out), vec![(1, 3)]);
}

#[test]
fn thesis_6_4_a_round_sent_before_a_read_does_not_serve_it() {
    let (c, mut s) = committed_leader();
    step(&c, &mut s, read(&[1]));
    // Read 2 arrives while round 1 is in flight: it needs round 2.
    let out = step(&c, &mut s, read(&[2, 3]));
    assert!(sends(&out).is_empty(), "a second round while one is in flight: {out:?}");
    let out = step(&c, &mut s, receive(2, check_ok(2, 1)));
    assert_eq!(ready(&out), vec![(1, 2)]);
    assert_eq!(sends(&out), vec![(NodeId(2), check(2, 2)), (NodeId(3), check(2, 2))]);
    // A late answer to round 1 from the other follower serves nothing.
    let out = step(&c, &mut s, receive(3, check_ok(2, 1)));
    assert!(ready(&out).is_empty(), "{out:?}");
    let out = step(&c, &mut s, receive(3, check_ok(2, 2)));
    assert_eq!(ready(&out), vec![(2, 2), (3, 2)]);
}

#[test]
fn thesis_6_4_a_leader_without_a_majority_never_serves() {
    let (c, mut s) = committed_leader();
    step(&c, &mut s, read(&[1]));
    // Its round is lost; each heartbeat sends it again, still unanswered.
    for _ in 0..3 {
        let out = step(&c, &mut s, Input::Timeout(raft_core::Timer::Heartbeat));
        assert!(sends(&out).contains(&(NodeId(2), check(2, 1))), "{out:?}");
        assert!(ready(&out).is_empty());
    }
}

#[test]
fn thesis_6_4_a_deposed_leader_refuses_its_reads() {
    let (c, mut s) = committed_leader();
    step(&c, &mut s, read(&[1]));
    step(&c, &mut s, receive(2, Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(9)] })));
    let out = step(&c, &mut s, receive(3, append(3, 0, 0, vec![], 0)));
    assert!(!s.is_leader());
    assert!(out.contains(&Output::ReadRejected {
        id: ReadId(1),
        reason: Rejection::NotLeader { leader_hint: Some(NodeId(3)) }
    }));
    let refused = ReadIndexResponse {
        term: Term(3),
        leader_hint: Some(NodeId(3)),
        results: vec![(ReadId(9), Err(Rejection::NotLeader { leader_hint: Some(NodeId(3)) }))],
    };
    assert!(sends(&out).contains(&(NodeId(2), Message::ReadIndexResponse(refused))), "{out:?}");
    assert!(ready(&out).is_empty());
}

#[test]
fn thesis_6_4_stale_rounds_and_terms_are_dropped() {
    let (c, mut s) = committed_leader();
    step(&c, &mut s, read(&[1]));
    assert_dropped(&c, &mut s, receive(2, check_ok(2, 5)), raft_core::Dropped::StaleResponse);
    assert_dropped(&c, &mut s, receive(2, check_ok(1, 1)), raft_core::Dropped::StaleResponse);
}

#[test]
fn thesis_6_4_one_node_serves_at_once() {
    let c = config(1, 1);
    let (mut s, _) = new_node(&c);
    step(&c, &mut s, Input::Timeout(raft_core::Timer::Election));
    let out = step(&c, &mut s, read(&[4]));
    assert_eq!(ready(&out), vec![(4, 1)]);
}

#[test]
fn thesis_6_4_a_follower_without_a_leader_refuses() {
    let c = config(2, 3);
    let mut s = follower(&c, 1, None, &[1], 0);
    let out = step(&c, &mut s, read(&[3]));
    assert_eq!(out, vec![Output::ReadRejected { id: ReadId(3), reason: Rejection::NotLeader { leader_hint: None } }]);
}

#[test]
fn thesis_6_4_follower_answers_a_check_and_asks_the_leader() {
    let c = config(2, 3);
    let mut s = follower(&c, 2, None, &[1, 2], 0);
    // A check from the leader of its term resets the timer and is answered.
    let out = step(&c, &mut s, receive(1, check(2, 4)));
    assert_eq!(s.leader(), Some(NodeId(1)));
    assert!(out.contains(&election_timer(&c)));
    assert_eq!(sends(&out), vec![(NodeId(1), check_ok(2, 4))]);
    // Its reads go to that leader.
    let out = step(&c, &mut s, read(&[5]));
    let request = Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(5)] });
    assert_eq!(sends(&out), vec![(NodeId(1), request)]);
    // The answer's index (2) is not yet delivered here: the read waits ...
    let answer =
        ReadIndexResponse { term: Term(2), leader_hint: Some(NodeId(1)), results: vec![(ReadId(5), Ok(LogIndex(2)))] };
    let out = step(&c, &mut s, receive(1, Message::ReadIndexResponse(answer)));
    assert!(ready(&out).is_empty(), "served before delivering up to the read index: {out:?}");
    // ... until the leader's commit index reaches it, after the delivery.
    let out = step(&c, &mut s, receive(1, append(2, 2, 2, vec![], 2)));
    let deliver = out.iter().position(|o| matches!(o, Output::Deliver(_))).expect("delivered");
    let served = out.iter().position(|o| matches!(o, Output::ReadReady { .. })).expect("served");
    assert!(deliver < served, "the read must follow the entries it depends on");
    assert_eq!(ready(&out), vec![(5, 2)]);
}

#[test]
fn thesis_6_4_follower_reads_end_to_end() {
    let configs: Vec<_> = (1..=3).map(|n| config(n, 3)).collect();
    let states = configs.iter().map(|c| new_node(c).0).collect();
    let mut h = Harness::new(configs, states);
    h.step(1, Input::Timeout(raft_core::Timer::Election));
    h.run(100);
    h.step(1, Input::Propose(vec![proposal(1, b"x=1")]));
    h.run(100);
    let mut served = ready(&h.step(3, read(&[1])));
    // The follower learns that x=1 committed from the next heartbeat.
    h.step(1, Input::Timeout(raft_core::Timer::Heartbeat));
    while let Some((from, to, message)) = h.in_flight.pop_front() {
        let out = h.step(to.0, Input::Receive { from, message });
        if to == NodeId(3) {
            served.extend(ready(&out));
        }
    }
    assert_eq!(served.len(), 1, "exactly one answer: {served:?}");
    assert!(served[0].1 >= 2, "the read index covers x=1 (index 2): {served:?}");
    assert!(h.state(3).delivered_index().0 >= served[0].1, "served before delivering its index");
}

/// `Config::reads_max`: a leader holds at most that many reads waiting for
/// confirmation; local reads beyond are refused with `QueueFull`, and a
/// follower's beyond are answered `Err(QueueFull)` in a ReadIndexResponse.
/// Served reads make room again.
#[test]
fn thesis_6_4_leader_refuses_reads_past_reads_max() {
    let c = config(1, 3).with_reads_max(2).expect("valid");
    let (mut s, _) = leader(&c, 2, &[1], 0);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    let out = step(&c, &mut s, read(&[1, 2, 3]));
    assert_eq!(
        out,
        vec![
            Output::ReadRejected { id: ReadId(3), reason: Rejection::QueueFull },
            send(2, check(2, 1)),
            send(3, check(2, 1)),
        ]
    );
    let request = Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(8), ReadId(9)] });
    let out = step(&c, &mut s, receive(2, request));
    let refused = ReadIndexResponse {
        term: Term(2),
        leader_hint: Some(NodeId(1)),
        results: vec![(ReadId(8), Err(Rejection::QueueFull)), (ReadId(9), Err(Rejection::QueueFull))],
    };
    assert_eq!(out, vec![send(2, Message::ReadIndexResponse(refused))]);
    // Round 1 confirmed: reads 1 and 2 are served, and room is made.
    let out = step(&c, &mut s, receive(3, check_ok(2, 1)));
    assert_eq!(ready(&out), vec![(1, 2), (2, 2)]);
    let request = Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(8)] });
    let out = step(&c, &mut s, receive(2, request));
    assert_eq!(out, vec![send(2, check(2, 2)), send(3, check(2, 2))]);
}

/// `Config::reads_max` at a follower: it holds at most that many reads
/// asked of its leader and not yet answered; beyond, `QueueFull`. A leader's
/// `Err(QueueFull)` for a read is passed on to the client.
#[test]
fn thesis_6_4_follower_refuses_reads_past_reads_max() {
    let c = config(2, 3).with_reads_max(2).expect("valid");
    let mut s = follower(&c, 2, None, &[1], 0);
    step(&c, &mut s, receive(1, append(2, 1, 1, vec![], 0)));
    let out = step(&c, &mut s, read(&[1, 2, 3]));
    let request = Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(1), ReadId(2)] });
    assert_eq!(out, vec![Output::ReadRejected { id: ReadId(3), reason: Rejection::QueueFull }, send(1, request)]);
    let out = step(&c, &mut s, read(&[4]));
    assert_eq!(out, vec![Output::ReadRejected { id: ReadId(4), reason: Rejection::QueueFull }]);
    let answer = ReadIndexResponse {
        term: Term(2),
        leader_hint: Some(NodeId(1)),
        results: vec![(ReadId(1), Err(Rejection::QueueFull)), (ReadId(2), Ok(LogIndex(0)))],
    };
    let out = step(&c, &mut s, receive(1, Message::ReadIndexResponse(answer)));
    assert_eq!(
        out,
        vec![
            Output::ReadRejected { id: ReadId(1), reason: Rejection::QueueFull },
            Output::ReadReady { id: ReadId(2), index: LogIndex(0) },
        ]
    );
    // Both answered: room for two again.
    let out = step(&c, &mut s, read(&[5, 6]));
    let request = Message::ReadIndexRequest(ReadIndexRequest { term: Term(2), ids: vec![ReadId(5), ReadId(6)] });
    assert_eq!(out, vec![send(1, request)]);
}
