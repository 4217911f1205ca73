//! Commitment: the Raft paper's §5.3 ("a log entry is committed once the
//! leader that created the entry has replicated it on a majority") and
//! §5.4.2 (Committing entries from previous terms, Figure 8), and the no-op
//! each leader appends at the start of its term (§8).

mod common;

use common::*;
use raft_core::{Entry, Input, LogIndex, NodeId, Output, State, Term, Timer};

/// The five servers of Figure 8 at the moment of its panel (c): S1 and S2
/// hold index 2 of term 2, S5 holds a different index 2 of term 3, S3 and
/// S4 hold only index 1. Everyone has seen term 3. Appends carry one entry
/// each, so that replication goes one index at a time as in the figure.
fn figure_8_cluster() -> Harness {
    let configs: Vec<TestConfig> =
        (1..=5).map(|i| config(i, 5).with_entries_per_append_max(1).expect("valid")).collect();
    let logs: [&[u64]; 5] = [&[1, 2], &[1, 2], &[1], &[1], &[1, 3]];
    let states: Vec<State> = configs.iter().zip(logs).map(|(c, log)| follower(c, 3, None, log, 1)).collect();
    Harness::new(configs, states)
}

/// Delivers the first in-flight message addressed `from -> to`, leaving
/// the others in flight.
fn deliver(h: &mut Harness, from: u64, to: u64) -> Vec<Output> {
    let position = h
        .in_flight
        .iter()
        .position(|(f, t, _)| *f == NodeId(from) && *t == NodeId(to))
        .unwrap_or_else(|| panic!("no message in flight from {from} to {to}"));
    let (f, t, message) = h.in_flight.remove(position).expect("present");
    h.step(t.0, Input::Receive { from: f, message })
}

/// §5.4.2, Figure 8: a leader never commits an entry of an earlier term by
/// counting replicas, even once a majority stores it, because a later
/// leader could still overwrite it; it commits it, and everything before
/// it, once an entry of its own term is stored on a majority.
#[test]
fn s5_4_2_figure_8_no_commit_by_counting_replicas_of_an_earlier_term() {
    let mut h = figure_8_cluster();
    // (c): S1 is elected in term 4 with the votes of S2 and S3.
    h.step(1, Input::Timeout(Timer::Election));
    deliver(&mut h, 1, 2);
    deliver(&mut h, 1, 3);
    deliver(&mut h, 2, 1);
    let outputs = deliver(&mut h, 3, 1);
    assert!(h.state(1).is_leader() && h.state(1).term() == Term(4));
    assert!(outputs.contains(&persist_append_async(4, 3, vec![Entry::noop(Term(4))])));

    // S3 lacks index 2: its probe is rejected and S1 sends index 2 alone.
    deliver(&mut h, 1, 3);
    deliver(&mut h, 3, 1);
    deliver(&mut h, 1, 3);
    let outputs = deliver(&mut h, 3, 1);
    assert!(delivered(&outputs).is_empty());
    // S2 takes the no-op (it already had index 2) and acknowledges it.
    deliver(&mut h, 1, 2);
    let outputs = deliver(&mut h, 2, 1);
    // Index 2 of term 2 is now on S1, S2 and S3: a majority of five. S1
    // must not commit it: its term is 2, not 4.
    assert_eq!(terms_of(h.state(3)), vec![1, 2]);
    assert_eq!(h.state(1).commit_index(), LogIndex(1));
    assert!(delivered(&outputs).is_empty());

    // Why: in this state S5 (last term 3) can still win an election with
    // the votes of S3 and S4, and would overwrite index 2.
    for voter in [3, 4] {
        let c = h.configs[voter - 1].clone();
        let mut s = h.states[voter - 1].clone();
        let outputs = step(&c, &mut s, receive(5, request_vote(5, 2, 3)));
        assert_eq!(outputs.last(), Some(&send(5, vote(5, true))), "S{voter} would vote for S5");
    }

    // (e): once S3 also stores the no-op of term 4, index 3 is on a majority
    // and of S1's term: indexes 2 and 3 commit together.
    deliver(&mut h, 1, 3);
    let outputs = deliver(&mut h, 3, 1);
    assert_eq!(h.state(1).commit_index(), LogIndex(3));
    assert_eq!(delivered(&outputs), vec![(2, 2, b"2@2".to_vec())], "the earlier entry, not the no-op");
    // Now S5 can no longer win: S3 refuses it.
    let c = h.configs[2].clone();
    let mut s = h.states[2].clone();
    let outputs = step(&c, &mut s, receive(5, request_vote(5, 2, 3)));
    assert_eq!(outputs.last(), Some(&send(5, vote(5, false))));
}

/// §5.3: "This also commits all preceding entries in the leader's log":
/// one acknowledgement that makes a majority delivers every earlier command
/// in log order, including those of earlier terms.
#[test]
fn s5_3_committing_an_index_commits_all_preceding_entries() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 1, 2], 0);
    step(&c, &mut s, Input::Propose(vec![proposal(1, b"x"), proposal(2, b"y")]));
    let outputs = step(&c, &mut s, receive(2, append_ok(3, 6)));
    assert_eq!(s.commit_index(), LogIndex(6));
    assert_eq!(
        delivered(&outputs),
        vec![
            (1, 1, b"1@1".to_vec()),
            (2, 1, b"2@1".to_vec()),
            (3, 2, b"3@2".to_vec()),
            (5, 3, b"x".to_vec()),
            (6, 3, b"y".to_vec()),
        ]
    );
}

/// §5.3: the leader commits the highest index stored on a majority, not
/// the lowest nor the highest anyone has.
#[test]
fn s5_3_leader_commits_the_majority_index() {
    let c = config(1, 5);
    let (mut s, _) = leader(&c, 2, &[], 0);
    let data: Vec<_> = (1..=4).map(|i| proposal(i, format!("c{i}").as_bytes())).collect();
    step(&c, &mut s, Input::Propose(data));
    // Leader holds 1..=5; S2 has 5, S3 has 3, S4 and S5 nothing yet.
    step(&c, &mut s, receive(2, append_ok(2, 5)));
    assert_eq!(s.commit_index(), LogIndex(0), "two of five");
    let outputs = step(&c, &mut s, receive(3, append_ok(2, 3)));
    assert_eq!(s.commit_index(), LogIndex(3), "1..=3 are on three of five");
    assert_eq!(delivered(&outputs), vec![(2, 2, b"c1".to_vec()), (3, 2, b"c2".to_vec())]);
    let outputs = step(&c, &mut s, receive(4, append_ok(2, 5)));
    assert_eq!(s.commit_index(), LogIndex(5));
    assert_eq!(delivered(&outputs), vec![(4, 2, b"c3".to_vec()), (5, 2, b"c4".to_vec())]);
}

/// §5.3: a follower learns the commit index from the leader and delivers
/// what it newly commits, once, in log order.
#[test]
fn s5_3_followers_learn_the_commit_index_and_deliver_once() {
    let c = config(2, 3);
    let mut s = follower(&c, 2, None, &[], 0);
    let entries = vec![Entry::noop(Term(2)), entry(2, 2), entry(3, 2)];
    let outputs = step(&c, &mut s, receive(1, append(2, 0, 0, entries, 0)));
    assert!(delivered(&outputs).is_empty(), "nothing is committed yet");
    let outputs = step(&c, &mut s, receive(1, append(2, 3, 2, vec![], 2)));
    assert_eq!(delivered(&outputs), vec![(2, 2, b"2@2".to_vec())]);
    let outputs = step(&c, &mut s, receive(1, append(2, 3, 2, vec![], 2)));
    assert!(delivered(&outputs).is_empty(), "delivered once");
    let outputs = step(&c, &mut s, receive(1, append(2, 3, 2, vec![], 3)));
    assert_eq!(delivered(&outputs), vec![(3, 2, b"3@2".to_vec())]);
    assert_eq!(s.delivered_index(), LogIndex(3));
}

/// §8 (and §5.4.2): each new leader appends a no-op entry of its term at
/// once; it commits like any entry but is never delivered to the
/// application, by the leader or by any follower.
#[test]
fn s8_noop_at_term_start_is_appended_and_never_delivered() {
    // One node: elected and committed in one step, nothing delivered.
    let c = config(1, 1);
    let mut s = follower(&c, 0, None, &[], 0);
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert!(s.is_leader());
    assert_eq!(s.log().entries(), &[Entry::noop(Term(1))][..]);
    assert_eq!(s.commit_index(), LogIndex(1));
    assert!(delivered(&outputs).is_empty() && !outputs.iter().any(|o| matches!(o, Output::Deliver(_))));

    // Three nodes, through a real exchange.
    let configs: Vec<TestConfig> = (1..=3).map(|i| config(i, 3)).collect();
    let states = configs.iter().map(|c| follower(c, 0, None, &[], 0)).collect();
    let mut h = Harness::new(configs, states);
    h.step(1, Input::Timeout(Timer::Election));
    h.run(100);
    h.step(1, Input::Timeout(Timer::Heartbeat));
    h.run(100);
    for node in 1..=3 {
        assert_eq!(h.state(node).log().entries(), &[Entry::noop(Term(1))][..]);
        assert_eq!(h.state(node).commit_index(), LogIndex(1), "node {node}");
        assert!(h.applied[node as usize - 1].is_empty(), "node {node} delivered the no-op");
    }
    // The next command lands after it, at index 2.
    h.step(1, Input::Propose(vec![proposal(9, b"cmd")]));
    h.run(100);
    h.step(1, Input::Timeout(Timer::Heartbeat));
    h.run(100);
    for node in 1..=3 {
        assert_eq!(h.applied[node as usize - 1], vec![(2, 1, b"cmd".to_vec())], "node {node}");
    }
}
