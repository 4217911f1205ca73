//! Snapshots and log compaction (§7, Figure 13; thesis chapter 5): taking a
//! snapshot compacts the log up to a bound, a leader sends its snapshot to a
//! follower that needs compacted entries, a follower installs it keeping a
//! matching suffix, and a node recovers from its snapshot plus the log after
//! it. The snapshot's bytes never enter the core; only its metadata does.

mod common;

use common::*;
use raft_core::{
    Dropped, Entry, HardState, Input, InstallSnapshot, LogIndex, MemoryStore, Message, Mode, NodeId, Output, Persist,
    RecoverError, Role, SnapshotMeta, State, StoreError, Term, Timer,
};

fn meta(config: &TestConfig, index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta { index: LogIndex(index), term: Term(term), membership: config.membership().clone() }
}

fn install(term: u64, snapshot: SnapshotMeta) -> Message {
    Message::InstallSnapshot(InstallSnapshot { term: Term(term), snapshot })
}

fn installs(outputs: &[Output]) -> Vec<(NodeId, SnapshotMeta)> {
    sends(outputs)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::InstallSnapshot(m) => Some((to, m.snapshot)),
            _ => None,
        })
        .collect()
}

fn progress_mode(state: &State, peer: u64) -> Mode {
    match state.role() {
        Role::Leader { progress, .. } => progress[&id(peer)].mode(),
        _ => panic!("not a leader"),
    }
}

/// A leader of term 2 whose log holds five applied entries of term 1 and
/// its no-op at 6, with `trailing` entries kept at compaction.
fn leader_with_history(trailing: u64) -> (TestConfig, State) {
    let c = config(1, 3).with_trailing_entries(trailing);
    let (s, _) = leader(&c, 2, &[1, 1, 1, 1, 1], 5);
    (c, s)
}

/// §7: a snapshot at an applied index is recorded, and the log compacted up
/// to the trailing bound before it; the store accepts both persists.
#[test]
fn s7_a_snapshot_compacts_the_log_up_to_the_trailing_entries() {
    let (c, mut s) = leader_with_history(2);
    let mut store = MemoryStore::of(&s);
    let outputs = step(&c, &mut s, Input::SnapshotTaken(LogIndex(5)));
    assert_eq!(
        outputs,
        vec![
            Output::Persist(Persist::Snapshot(meta(&c, 5, 1))),
            Output::Persist(Persist::Compact { through: LogIndex(3), term: Term(1) }),
        ]
    );
    persist_all(&mut store, &outputs);
    assert_eq!(store.log, *s.log());
    assert_eq!((s.log().first_index(), s.log().last_index()), (LogIndex(4), LogIndex(6)));
    assert_eq!(s.snapshot(), Some(&meta(&c, 5, 1)));
    // With nothing kept, the compaction reaches the snapshot's index.
    let (c, mut s) = leader_with_history(0);
    let outputs = step(&c, &mut s, Input::SnapshotTaken(LogIndex(4)));
    assert_eq!(persists(&outputs)[1], Persist::Compact { through: LogIndex(4), term: Term(1) });
    assert_eq!(s.log().first_index(), LogIndex(5));
}

/// §7: only applied entries go into a snapshot. One past the applied index
/// is refused and changes nothing; one at or below the current snapshot
/// changes nothing either.
#[test]
fn s7_a_snapshot_of_entries_not_applied_is_refused() {
    let (c, mut s) = leader_with_history(0);
    assert_eq!(s.applied_index(), LogIndex(5));
    assert_dropped(&c, &mut s, Input::SnapshotTaken(LogIndex(6)), Dropped::OutOfRange);
    step(&c, &mut s, Input::SnapshotTaken(LogIndex(4)));
    let before = s.clone();
    assert_eq!(step(&c, &mut s, Input::SnapshotTaken(LogIndex(3))), vec![]);
    assert_eq!(step(&c, &mut s, Input::SnapshotTaken(LogIndex(4))), vec![]);
    assert_eq!(s, before);
}

/// §7: a follower that needs an entry the leader compacted is sent the
/// snapshot instead, and nothing else until it answers; the heartbeat sends
/// the snapshot again, with an empty append at the compaction point so the
/// follower keeps hearing from its leader. Its answer resumes appends after
/// the snapshot.
#[test]
fn s7_a_leader_sends_its_snapshot_to_a_follower_behind_its_compaction_point() {
    let (c, mut s) = leader_with_history(0);
    step(&c, &mut s, Input::SnapshotTaken(LogIndex(5)));
    // Follower 2 holds only two entries: the probe at 5 is refused.
    let outputs = step(&c, &mut s, receive(2, append_conflict(2, 5, 2, None)));
    assert_eq!(installs(&outputs), vec![(id(2), meta(&c, 5, 1))]);
    assert_eq!(progress_mode(&s, 2), Mode::Snapshot { index: LogIndex(5) });
    // A proposal is not sent to it meanwhile.
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"x")]));
    assert!(sends(&outputs).iter().all(|(to, _)| *to != id(2)), "{outputs:?}");
    // The heartbeat retries the snapshot, and keeps the follower's timer reset.
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Heartbeat));
    let to_2: Vec<Message> = sends(&outputs).into_iter().filter(|(to, _)| *to == id(2)).map(|(_, m)| m).collect();
    assert_eq!(to_2, vec![install(2, meta(&c, 5, 1)), append(2, 5, 1, vec![], 5)]);
    // Installed: the follower is streamed the entries after the snapshot.
    let outputs = step(&c, &mut s, receive(2, append_ok(2, 5)));
    assert_eq!(progress_mode(&s, 2), Mode::Replicate);
    let to_2: Vec<Message> = sends(&outputs).into_iter().filter(|(to, _)| *to == id(2)).map(|(_, m)| m).collect();
    assert!(
        matches!(&to_2[..], [Message::AppendEntries(a)] if a.prev_log_index == LogIndex(5) && a.entries.len() == 2)
    );
}

/// Figure 13, receiver rule 6: a follower that holds the snapshot's last
/// entry with the snapshot's term keeps the entries after it; its commit,
/// delivered and applied indexes jump to the snapshot, the application is
/// told to restore it, and only the snapshot's index is acknowledged.
#[test]
fn s7_an_installed_snapshot_keeps_the_matching_suffix() {
    let c = config(2, 3);
    let mut s = follower(&c, 2, None, &[1, 1, 1, 2, 2], 1);
    let mut store = MemoryStore::of(&s);
    let outputs = step(&c, &mut s, receive(1, install(2, meta(&c, 3, 1))));
    assert_eq!(
        persists(&outputs),
        vec![Persist::Snapshot(meta(&c, 3, 1)), Persist::Compact { through: LogIndex(3), term: Term(1) }]
    );
    persist_all(&mut store, &outputs);
    assert!(outputs.contains(&Output::RestoreSnapshot(meta(&c, 3, 1))));
    assert_eq!(sends(&outputs), vec![(id(1), append_ok(2, 3))]);
    assert_eq!(terms_of(&s), vec![2, 2]);
    assert_eq!((s.log().first_index(), s.log().last_index()), (LogIndex(4), LogIndex(5)));
    assert_eq!((s.commit_index(), s.delivered_index(), s.applied_index()), (LogIndex(3), LogIndex(3), LogIndex(3)));
    assert_eq!(store.log, *s.log());
    assert_eq!(s.leader(), Some(id(1)));
    // The next append commits and delivers what the follower kept.
    let outputs = step(&c, &mut s, receive(1, append(2, 5, 2, vec![], 5)));
    assert_eq!(delivered(&outputs).iter().map(|d| d.0).collect::<Vec<_>>(), vec![4, 5]);
}

/// Figure 13, receiver rule 7: a log that does not hold the snapshot's last
/// entry with its term is discarded whole; the log then starts after the
/// snapshot.
#[test]
fn s7_an_installed_snapshot_discards_a_log_that_does_not_match() {
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2], 1);
    let mut store = MemoryStore::of(&s);
    let outputs = step(&c, &mut s, receive(1, install(3, meta(&c, 5, 3))));
    assert_eq!(
        persists(&outputs),
        vec![
            Persist::Snapshot(meta(&c, 5, 3)),
            Persist::Truncate { from: LogIndex(1) },
            Persist::Compact { through: LogIndex(5), term: Term(3) },
        ]
    );
    persist_all(&mut store, &outputs);
    assert_eq!((s.log().first_index(), s.log().last_index(), s.log().last_term()), (LogIndex(6), LogIndex(5), Term(3)));
    assert_eq!(store.log, *s.log());
    assert_eq!(sends(&outputs), vec![(id(1), append_ok(3, 5))]);
    // The leader's next entries land after the snapshot.
    let outputs = step(&c, &mut s, receive(1, append(3, 5, 3, vec![entry(6, 3)], 6)));
    persist_all(&mut store, &outputs);
    assert_eq!(delivered(&outputs), vec![(6, 3, b"6@3".to_vec())]);
}

/// §7: a snapshot no newer than what the follower knows committed changes
/// nothing; it is acknowledged at the commit index, which matches every
/// leader's log (§5.4.3).
#[test]
fn s7_an_older_snapshot_is_acknowledged_at_the_commit_index() {
    let c = config(2, 3);
    let mut s = follower(&c, 2, None, &[1, 1, 1, 1], 4);
    step(&c, &mut s, receive(1, append(2, 4, 1, vec![], 4)));
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(1, install(2, meta(&c, 3, 1))));
    assert!(persists(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(sends(&outputs), vec![(id(1), append_ok(2, 4))]);
    assert_eq!(s, before);
}

/// §5.1 for InstallSnapshot: one of an older term is refused with this
/// node's term, and changes nothing.
#[test]
fn s5_1_a_stale_snapshot_is_refused() {
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1], 0);
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(1, install(2, meta(&c, 5, 2))));
    assert_eq!(sends(&outputs), vec![(id(1), append_conflict(3, 5, 1, None))]);
    assert_eq!(s, before);
}

/// An append that starts inside the follower's compacted prefix: the
/// compacted entries are committed, so they match; only what follows is
/// checked and stored.
#[test]
fn s7_an_append_reaching_into_the_compacted_prefix_is_taken_after_it() {
    let c = config(2, 3);
    let mut s = follower(&c, 2, None, &[1, 1, 1], 3);
    step(&c, &mut s, Input::SnapshotTaken(LogIndex(3)));
    let c0 = config(2, 3).with_trailing_entries(0);
    let mut s0 = follower(&c0, 2, None, &[1, 1, 1], 3);
    step(&c0, &mut s0, Input::SnapshotTaken(LogIndex(3)));
    assert_eq!(s0.log().first_index(), LogIndex(4));
    let outputs = step(&c0, &mut s0, receive(1, append(2, 1, 1, vec![entry(2, 1), entry(3, 1), entry(4, 2)], 4)));
    assert_eq!(persists(&outputs), vec![Persist::Append { first: LogIndex(4), entries: vec![entry(4, 2)] }]);
    assert_eq!(sends(&outputs), vec![(id(1), append_ok(2, 4))]);
    // An old append that ends before the compaction point matches up to it.
    let outputs = step(&c0, &mut s0, receive(1, append(2, 0, 0, vec![entry(1, 1)], 4)));
    assert_eq!(sends(&outputs), vec![(id(1), append_ok(2, 3))]);
    // With the default trailing entries nothing was compacted from three.
    assert_eq!(s.log().first_index(), LogIndex(1));
}

/// §5.4.3 across the compaction point: an append whose entry at the
/// compaction point has another term than the compacted (committed) one
/// comes from a broken leader, and is dropped before anything changes;
/// found by the hostile-input test.
#[test]
fn s7_an_append_contradicting_the_compacted_entry_is_dropped() {
    for trailing in [0, 1] {
        let c = config(1, 3).with_trailing_entries(trailing);
        let mut s = follower(&c, 3, None, &[1, 1, 2, 3], 3);
        step(&c, &mut s, Input::SnapshotTaken(LogIndex(2)));
        let m = append(3, 0, 0, vec![Entry::noop(Term(0)), Entry::noop(Term(2))], 0);
        assert_dropped(&c, &mut s, receive(2, m), Dropped::OutOfRange);
    }
}

/// §7 recovery: a node restarts from its snapshot plus the log after the
/// compaction point; the application is told to restore the snapshot first
/// unless it says it applied past it.
#[test]
fn s7_a_node_recovers_from_its_snapshot_and_the_log_after_it() {
    let (c, mut s) = leader_with_history(2);
    let mut store = MemoryStore::of(&s);
    persist_all(&mut store, &step(&c, &mut s, Input::SnapshotTaken(LogIndex(5))));
    let (r, outputs) = State::recover(&c, store.clone(), LogIndex(0)).unwrap();
    assert_eq!(outputs, vec![Output::RestoreSnapshot(meta(&c, 5, 1)), election_timer(&c)]);
    assert_eq!((r.commit_index(), r.applied_index(), r.log().first_index()), (LogIndex(5), LogIndex(5), LogIndex(4)));
    assert_eq!(r.snapshot(), Some(&meta(&c, 5, 1)));
    // An application that kept its own state up to 5 restores nothing.
    let (r, outputs) = State::recover(&c, store.clone(), LogIndex(5)).unwrap();
    assert_eq!(outputs, vec![election_timer(&c)]);
    assert_eq!(r.applied_index(), LogIndex(5));
    // A log compacted past its snapshot is refused.
    let mut broken = store.clone();
    broken.snapshot = None;
    assert_eq!(
        State::recover(&c, broken, LogIndex(0)).map(|_| ()),
        Err(RecoverError::CompactedPastSnapshot { compacted: LogIndex(3), snapshot: LogIndex(0) })
    );
}

/// Figure 13, rule 7, at recovery: a crash after an installed snapshot was
/// recorded but before the log that does not match it was discarded leaves
/// a store whose log contradicts its snapshot (or ends before it). Recovery
/// finishes the install: the log starts after the snapshot, and the
/// persists that say so are the first outputs. (The simulator found this
/// once crashes could fall between the two persists.)
#[test]
fn s7_recovery_finishes_an_install_a_crash_cut_short() {
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2], 1);
    let mut store = MemoryStore::of(&s);
    let outputs = step(&c, &mut s, receive(1, install(3, meta(&c, 5, 3))));
    // The crash: only the first persist, the snapshot's record, is done.
    store.apply(&persists(&outputs)[0]).unwrap();
    let (r, outputs) = State::recover(&c, store.clone(), LogIndex(0)).unwrap();
    assert_eq!(
        outputs,
        vec![
            Output::Persist(Persist::Truncate { from: LogIndex(1) }),
            Output::Persist(Persist::Compact { through: LogIndex(5), term: Term(3) }),
            Output::RestoreSnapshot(meta(&c, 5, 3)),
            election_timer(&c),
        ]
    );
    assert_eq!((r.log().first_index(), r.commit_index(), r.durable_index()), (LogIndex(6), LogIndex(5), LogIndex(5)));
    persist_all(&mut store, &outputs);
    assert_eq!(store.log, *r.log());
}

/// The store refuses compactions and snapshots that break the contract.
#[test]
fn s7_the_store_refuses_a_compaction_no_snapshot_covers() {
    let c = config(1, 3);
    let hard = HardState { term: Term(2), voted_for: None };
    let mut store = store_of(&c, hard, log_of(&[1, 1, 2]));
    let compact = |through: u64, term: u64| Persist::Compact { through: LogIndex(through), term: Term(term) };
    assert_eq!(
        store.apply(&compact(2, 1)),
        Err(StoreError::BadCompaction { through: LogIndex(2), compacted: LogIndex(0) })
    );
    store.apply(&Persist::Snapshot(meta(&c, 3, 2))).unwrap();
    assert!(store.apply(&compact(2, 2)).is_err(), "the entry at 2 has term 1");
    store.apply(&compact(2, 1)).unwrap();
    assert!(store.apply(&compact(1, 1)).is_err(), "behind the compaction point");
    assert_eq!(
        store.apply(&Persist::Snapshot(meta(&c, 1, 1))),
        Err(StoreError::SnapshotGoesBack { stored: LogIndex(3), written: LogIndex(1) })
    );
    assert_eq!(store.log.first_index(), LogIndex(3));
}

/// A follower that lost its disk answers a heartbeat with an empty log: the
/// leader reports it, and probes it again from its end instead of ignoring
/// its rejections for ever.
#[test]
fn a_follower_whose_log_went_backwards_is_reported_and_probed_again() {
    let (c, mut s) = leader_with_history(1024);
    step(&c, &mut s, receive(2, append_ok(2, 6)));
    let outputs = step(&c, &mut s, receive(2, append_conflict(2, 6, 0, None)));
    assert!(outputs.contains(&Output::FollowerRegressed {
        peer: id(2),
        acknowledged: LogIndex(6),
        last_index: LogIndex(0)
    }));
    assert_eq!(sends(&outputs), vec![(id(2), append(2, 0, 0, s.log().slice(LogIndex(1), LogIndex(6)).to_vec(), 6))]);
}

/// Scenario (§7 end to end): follower 3 is down while the leader commits and
/// compacts past everything 3 holds; when it returns it is brought up to
/// date by the snapshot, then by appends, and every node ends with the same
/// log and commit index.
#[test]
fn s7_a_follower_that_was_down_is_caught_up_by_snapshot() {
    let configs: Vec<TestConfig> = (1..=3).map(|i| config(i, 3).with_trailing_entries(1)).collect();
    let states: Vec<State> = configs.iter().map(|c| new_node(c).0).collect();
    let mut h = Harness::new(configs, states);
    h.step(1, Input::Timeout(Timer::Election));
    h.run(100);
    assert!(h.state(1).is_leader());
    // Node 3 goes down: nothing reaches it.
    let mut down = true;
    let mut restores = Vec::new();
    let mut deliver = |h: &mut Harness, down: bool| {
        for _ in 0..1000 {
            let Some((from, to, message)) = h.in_flight.pop_front() else { return };
            if down && (to == id(3) || from == id(3)) {
                continue;
            }
            let outputs = h.step(to.0, Input::Receive { from, message });
            restores.extend(outputs.into_iter().filter_map(|o| match o {
                Output::RestoreSnapshot(m) => Some((to, m.index)),
                _ => None,
            }));
        }
        panic!("the network did not quiesce");
    };
    for k in 0..6u64 {
        h.step(1, Input::Propose(vec![proposal(k, format!("c{k}").as_bytes())]));
        deliver(&mut h, down);
    }
    for node in 1..=2 {
        let applied = h.state(node).delivered_index();
        h.step(node, Input::Applied(applied));
        h.step(node, Input::SnapshotTaken(applied));
    }
    assert!(h.state(1).log().first_index() > h.state(3).log().last_index().next(), "3 needs compacted entries");
    down = false;
    h.step(1, Input::Timeout(Timer::Heartbeat));
    deliver(&mut h, down);
    h.step(1, Input::Timeout(Timer::Heartbeat));
    deliver(&mut h, down);
    for node in 2..=3 {
        assert_eq!(h.state(node).commit_index(), h.state(1).commit_index(), "node {node}");
        assert_eq!(h.state(node).log().last_index(), h.state(1).log().last_index(), "node {node}");
    }
    assert_eq!(h.state(3).snapshot().map(|s| s.index), h.state(1).snapshot().map(|s| s.index));
    // Node 3's application saw no command before the snapshot: it restored
    // it, and then got the rest delivered.
    assert!(h.applied[2].iter().all(|(i, _, _)| LogIndex(*i) > h.state(3).snapshot().unwrap().index));
    assert_eq!(restores, vec![(id(3), h.state(1).snapshot().unwrap().index)], "only node 3 restores, once");
}
