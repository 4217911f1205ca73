//! Membership changes (thesis §4): configuration entries that take effect
//! when appended, one change at a time and only after the leader has
//! committed an entry of its term, learners that count in nothing, and a
//! leader that removes itself.

mod common;

use common::*;
use raft_core::{
    Change, ChangeRejection, Config, Dropped, Entry, HardState, Input, LogIndex, Membership, MemoryStore, Message,
    NodeId, Output, Payload, Persist, ProposalId, RoleKind, State, Term, Timer,
};

fn ids(v: &[u64]) -> Vec<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

fn change(id: u64, change: Change) -> Input {
    Input::ChangeMembership { id: ProposalId(id), change }
}

fn add_learner(id: u64) -> Change {
    Change::AddLearner { id: NodeId(id), address: format!("h{id}:1") }
}

fn config_entry(term: u64, voters: &[u64], learners: &[u64]) -> Entry {
    let m = Membership::with_learners(ids(voters), ids(learners)).unwrap();
    Entry { term: Term(term), payload: Payload::Membership(m) }
}

/// Nodes 1 to 3 as voters, plus node 4 started empty to join them. Node 1
/// is elected and its no-op committed everywhere.
fn cluster_with_joiner(extensions: bool) -> Harness {
    let mut configs: Vec<TestConfig> =
        (1..=3).map(|me| if extensions { config_with_extensions(me, 3) } else { config(me, 3) }).collect();
    let joiner = Config::new(NodeId(4)).with_pre_vote(extensions).with_check_quorum(extensions);
    configs.push(TestConfig::new(joiner, Membership::joining(NodeId(4))));
    let states = configs.iter().map(|c| State::new(c, c.membership().clone()).0).collect();
    let mut h = Harness::new(configs, states);
    h.step(1, Input::Timeout(Timer::Election));
    h.run(100);
    assert!(h.state(1).is_leader(), "node 1 leads");
    h
}

/// Delivers messages until none is in flight, dropping those to or from
/// the nodes in `cut`.
fn run_without(h: &mut Harness, cut: &[u64], limit: usize) {
    for _ in 0..limit {
        h.in_flight.retain(|(from, to, _)| !cut.contains(&from.0) && !cut.contains(&to.0));
        let Some((from, to, message)) = h.in_flight.pop_front() else { return };
        h.step(to.0, Input::Receive { from, message });
    }
    panic!("the network did not quiesce within {limit} messages");
}

fn proposal_input(id: u64, data: &[u8]) -> Input {
    Input::Propose(vec![proposal(id, data)])
}

fn accepted(outputs: &[Output]) -> Option<(Term, LogIndex)> {
    outputs.iter().find_map(|o| match o {
        Output::ChangeAccepted { term, index, .. } => Some((*term, *index)),
        _ => None,
    })
}

fn rejected(outputs: &[Output]) -> Option<ChangeRejection> {
    outputs.iter().find_map(|o| match o {
        Output::ChangeRejected { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// §4.1: a learner is added, catches up, is promoted, and from then on
/// counts in the majority; each change is in effect on a node as soon as it
/// holds the entry, and its commit is reported in log order.
#[test]
fn s4_1_a_learner_is_added_caught_up_and_promoted() {
    let mut h = cluster_with_joiner(false);
    h.step(1, proposal_input(1, b"x"));
    h.run(100);
    let out = h.step(1, change(1, add_learner(4)));
    let (term, index) = accepted(&out).expect("accepted");
    assert_eq!((term, index), (Term(1), LogIndex(3)));
    assert!(h.state(1).membership().is_learner(NodeId(4)), "in effect at the leader once appended");
    assert!(!h.state(1).committed_membership().contains(NodeId(4)), "not committed yet");
    assert!(sends(&out).iter().any(|(to, _)| *to == NodeId(4)), "the leader replicates to the learner at once");
    h.run(100);
    for n in 1..=4 {
        let s = h.state(n);
        assert!(s.membership().is_learner(NodeId(4)), "n{n} holds the change");
        assert_eq!(s.membership().address(NodeId(4)), Some("h4:1"));
        assert_eq!(s.log().last_index(), LogIndex(3), "n{n} caught up");
    }
    assert!(h.state(1).committed_membership().is_learner(NodeId(4)));
    assert_eq!(h.applied[3], vec![(2, 1, b"x".to_vec())], "the learner applies the commands");

    // The commit is reported to the application in its place.
    let out = h.step(1, change(2, Change::Promote(NodeId(4))));
    assert_eq!(accepted(&out), Some((Term(1), LogIndex(4))));
    let mut reported = Vec::new();
    while let Some((from, to, message)) = h.in_flight.pop_front() {
        let out = h.step(to.0, Input::Receive { from, message });
        if to == NodeId(1) {
            reported.extend(out.into_iter().filter(|o| matches!(o, Output::MembershipCommitted { .. })));
        }
    }
    let voters = Membership::new(ids(&[1, 2, 3, 4])).unwrap().with_address(NodeId(4), "h4:1");
    assert_eq!(reported, vec![Output::MembershipCommitted { index: LogIndex(4), term: Term(1), membership: voters }]);

    // Four voters: a majority is three, and node 4 is one of them.
    h.step(1, proposal_input(2, b"y"));
    run_without(&mut h, &[2, 3], 100);
    assert_eq!(h.state(1).commit_index(), LogIndex(4), "two of four voters commit nothing");
    h.step(1, proposal_input(3, b"z"));
    run_without(&mut h, &[3], 100);
    assert_eq!(h.state(1).commit_index(), LogIndex(6), "nodes 1, 2 and 4 are a majority");
}

/// §4.1: a learner's acknowledgements count in no majority, and its
/// election timer starts no election.
#[test]
fn s4_1_a_learner_counts_in_no_majority_and_never_stands() {
    let mut h = cluster_with_joiner(false);
    h.step(1, change(1, add_learner(4)));
    h.run(100);
    h.step(1, proposal_input(1, b"x"));
    run_without(&mut h, &[2, 3], 100);
    assert_eq!(h.state(4).log().last_index(), LogIndex(3), "the learner holds the entry");
    assert_eq!(h.state(1).commit_index(), LogIndex(2), "the leader and a learner are no majority of three");
    let c = h.configs[3].clone();
    let mut s = h.state(4).clone();
    assert_dropped(&c, &mut s, Input::Timeout(Timer::Election), Dropped::StaleTimer);
}

/// §4.2: one change at a time. A second is refused while the first is
/// uncommitted, with the first's index; once it commits the second goes.
#[test]
fn s4_2_one_change_at_a_time() {
    let mut h = cluster_with_joiner(false);
    h.step(1, change(1, add_learner(4)));
    let out = h.step(1, change(2, Change::Remove(NodeId(3))));
    assert_eq!(rejected(&out), Some(ChangeRejection::ChangeInProgress { index: LogIndex(2) }));
    assert!(h.state(1).membership().is_voter(NodeId(3)), "nothing changed");
    h.run(100);
    let out = h.step(1, change(3, Change::Remove(NodeId(3))));
    assert!(accepted(&out).is_some(), "{out:?}");
    assert!(!h.state(1).membership().contains(NodeId(3)));
}

/// The raft-dev fix of 2015: a new leader takes no change until it has
/// committed an entry of its own term (its no-op); a follower refuses with
/// the leader's id; a change that makes no sense is refused with its reason.
#[test]
fn s4_2_a_new_leader_changes_nothing_before_it_commits_an_entry_of_its_term() {
    let c = config(1, 3);
    let (mut l, _) = leader(&c, 2, &[1, 1], 1);
    let out = step(&c, &mut l, change(1, add_learner(4)));
    assert_eq!(out, vec![Output::ChangeRejected { id: ProposalId(1), reason: ChangeRejection::LeaderNotReady }]);
    step(&c, &mut l, receive(2, append_ok(2, 3)));
    assert_eq!(l.commit_index(), LogIndex(3), "the no-op of term 2 is committed");
    for (bad, reason) in [
        (Change::Promote(NodeId(2)), ChangeRejection::NotLearner),
        (Change::Remove(NodeId(9)), ChangeRejection::NotMember),
        (add_learner(3), ChangeRejection::AlreadyMember),
    ] {
        let out = step(&c, &mut l, change(2, bad));
        assert_eq!(rejected(&out), Some(reason));
    }
    assert!(accepted(&step(&c, &mut l, change(3, add_learner(4)))).is_some());

    let cf = config(2, 3);
    let mut f = follower(&cf, 2, Some(1), &[1, 1, 2], 3);
    step(&cf, &mut f, receive(1, append(2, 3, 2, vec![], 3)));
    let out = step(&cf, &mut f, change(4, add_learner(4)));
    assert_eq!(rejected(&out), Some(ChangeRejection::NotLeader { leader_hint: Some(NodeId(1)) }));
}

/// §4.1: a change takes effect on a follower when appended, and is undone
/// when a later leader truncates its entry.
#[test]
fn s4_1_a_truncated_configuration_entry_is_undone() {
    let c = config(2, 3);
    let mut f = follower(&c, 1, Some(1), &[1], 1);
    let entry = config_entry(1, &[1, 2, 3], &[4]);
    step(&c, &mut f, receive(1, append(1, 1, 1, vec![entry], 1)));
    assert!(f.membership().is_learner(NodeId(4)), "in effect once appended, uncommitted");
    assert!(!f.committed_membership().contains(NodeId(4)));
    // A leader of term 2 that never had the entry overwrites it.
    let out = step(&c, &mut f, receive(3, append(2, 1, 1, vec![entry_of(2)], 1)));
    assert!(persists(&out).contains(&Persist::Truncate { from: LogIndex(2) }));
    assert_eq!(f.membership(), c.membership(), "back to the membership before the entry");
}

fn entry_of(term: u64) -> Entry {
    Entry::noop(Term(term))
}

/// Thesis §4.2.2: a leader that removes itself keeps replicating, without
/// counting itself, until the removal commits, and then steps down; the
/// others elect a leader among themselves.
#[test]
fn s4_2_2_a_leader_that_removes_itself_steps_down_once_the_removal_commits() {
    let mut h = cluster_with_joiner(false);
    let out = h.step(1, change(1, Change::Remove(NodeId(1))));
    assert!(accepted(&out).is_some());
    run_without(&mut h, &[3], 100);
    assert!(h.state(1).is_leader(), "still leading: the removal needs nodes 2 and 3");
    assert_eq!(h.state(1).commit_index(), LogIndex(1), "node 1 does not count itself");
    h.step(1, Input::Timeout(Timer::Heartbeat));
    h.run(100);
    assert_eq!(h.state(1).commit_index(), LogIndex(2));
    assert_eq!(h.state(1).role_kind(), RoleKind::Follower, "stepped down once the removal committed");
    assert!(!h.state(1).membership().contains(NodeId(1)));
    let c1 = h.configs[0].clone();
    let mut s1 = h.state(1).clone();
    assert_dropped(&c1, &mut s1, Input::Timeout(Timer::Election), Dropped::StaleTimer);
    h.step(2, Input::Timeout(Timer::Election));
    h.run(100);
    assert!(h.state(2).is_leader(), "nodes 2 and 3 elect a leader without node 1");
}

/// Thesis §4.2.3: a server removed while cut off never hears of its
/// removal; with pre-vote and check-quorum its election attempts change
/// nobody's term, and the leader keeps leading.
#[test]
fn s4_2_3_a_removed_server_does_not_disrupt_the_rest() {
    let mut h = cluster_with_joiner(true);
    let term = h.state(1).term();
    h.step(1, change(1, Change::Remove(NodeId(3))));
    run_without(&mut h, &[3], 100);
    assert!(h.state(1).committed_membership().voters().iter().eq(&ids(&[1, 2])));
    assert!(h.state(3).membership().is_voter(NodeId(3)), "node 3 never heard");
    for _ in 0..3 {
        h.step(3, Input::Timeout(Timer::Election));
        h.run(100);
    }
    assert!(h.state(1).is_leader(), "the leader keeps leading");
    assert_eq!((h.state(1).term(), h.state(2).term()), (term, term), "nobody's term changed");
}

/// §4.1, §7: a node recovers the latest configuration in its log; a
/// snapshot carries the membership in force at its index.
#[test]
fn s4_1_recovery_and_snapshots_keep_the_membership() {
    let c = config(2, 3);
    let mut store = MemoryStore::new();
    store.apply(&Persist::Membership(c.membership().clone())).unwrap();
    store.apply(&Persist::HardState(HardState { term: Term(1), voted_for: None })).unwrap();
    let entries = vec![entry_of(1), config_entry(1, &[1, 2, 3], &[4]), entry_of(1)];
    store.apply(&Persist::Append { first: LogIndex(1), entries }).unwrap();
    let (mut s, _) = State::recover(&c, store, LogIndex(0)).unwrap();
    assert!(s.membership().is_learner(NodeId(4)), "the configuration entry in the log");
    step(&c, &mut s, receive(1, append(1, 3, 1, vec![], 3)));
    step(&c, &mut s, Input::Applied(LogIndex(3)));
    let out = step(&c, &mut s, Input::SnapshotTaken(LogIndex(3)));
    let meta = persists(&out)
        .into_iter()
        .find_map(|p| match p {
            Persist::Snapshot(meta) => Some(meta),
            _ => None,
        })
        .expect("a snapshot recorded");
    assert!(meta.membership.is_learner(NodeId(4)), "the snapshot's membership is the one at its index");
    assert!(persists(&out).contains(&Persist::Membership(meta.membership.clone())), "the new base is stored");

    // A joining node takes its membership from the leader's snapshot.
    let cj = TestConfig::new(Config::new(NodeId(4)), Membership::joining(NodeId(4)));
    let (mut j, _) = State::new(&cj, cj.membership().clone());
    let install = Message::InstallSnapshot(raft_core::InstallSnapshot { term: Term(1), snapshot: meta.clone() });
    let out = step(&cj, &mut j, receive(1, install));
    assert_eq!(j.membership(), &meta.membership);
    assert!(persists(&out).contains(&Persist::Membership(meta.membership.clone())));
}

/// Thesis §4.2.2 with the persist-before-send rule: a leader whose removal
/// commits on an answer that it follows with the next append (one entry in
/// flight per follower), while its own write of that next entry is still
/// in the background, steps down; stepping down flushes that write with a
/// hard-state persist, which goes before the step's first send. (It came
/// after the append, a persist following a send in one output list: found
/// by the simulator.)
#[test]
fn s4_2_2_a_leader_stepping_down_on_its_removal_persists_before_it_sends() {
    let c = config(1, 3).with_inflight_entries_max(1).unwrap().with_entries_per_append_max(1).unwrap();
    let (mut s, _) = new_node(&c);
    step(&c, &mut s, Input::Timeout(Timer::Election));
    step(&c, &mut s, receive(2, vote(1, true)));
    assert!(s.is_leader());
    step(&c, &mut s, receive(2, append_ok(1, 1)));
    step(&c, &mut s, receive(3, append_ok(1, 1)));
    assert_eq!(s.commit_index(), LogIndex(1), "the no-op committed");
    let out = step(&c, &mut s, change(1, Change::Remove(NodeId(1))));
    assert_eq!(accepted(&out), Some((Term(1), LogIndex(2))));
    // A command at 3, its write left in the background; one entry in flight
    // per follower, so it waits for the acknowledgements of 2.
    let out = step_only(&c, &mut s, proposal_input(7, b"x"));
    assert!(out.iter().any(|o| matches!(o, Output::PersistAsync { .. })));
    let out = step_only(&c, &mut s, receive(2, append_ok(1, 2)));
    assert_eq!(s.commit_index(), LogIndex(1), "the removal needs nodes 2 and 3: {out:?}");
    let out = step_only(&c, &mut s, receive(3, append_ok(1, 2)));
    assert_eq!(s.commit_index(), LogIndex(2));
    assert_eq!(s.role_kind(), RoleKind::Follower, "stepped down once the removal committed");
    let flush = out.iter().position(|o| *o == Output::Persist(Persist::HardState(s.hard_state())));
    let first_send = out.iter().position(|o| matches!(o, Output::Send { .. }));
    assert!(flush.is_some() && first_send.is_some() && flush < first_send, "{out:?}");
}
