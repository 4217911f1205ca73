//! Log replication: the Raft paper's §5.3, the AppendEntries receiver rules
//! of Figure 2, the leader's side of them, and the six follower logs of
//! Figure 7.

mod common;

use common::*;
use raft_core::{AppendResult, Dropped, Entry, Input, LogIndex, Message, NodeId, Output, Persist, State, Term, Timer};

/// Follower 2 of a 3-node cluster in term 3, holding entries of terms
/// [1, 1, 2], that already knows node 1 as the leader of term 3.
fn follower_of_term_3(commit: u64) -> (TestConfig, State) {
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2], commit);
    let outputs = step(&c, &mut s, receive(1, append(3, 0, 0, vec![], 0)));
    assert_eq!(outputs, vec![leader_changed(Some(1), 3), election_timer(&c), send(1, append_ok(3, 0))]);
    (c, s)
}

/// Figure 2, AppendEntries receiver rules 2–4, as a table over the
/// follower's log [1, 1, 2]: which (prevLogIndex, prevLogTerm, entries)
/// succeed, with what match index, what the rejections say, and what the
/// log holds afterwards.
#[test]
fn s5_3_append_entries_receiver_table() {
    struct Case {
        what: &'static str,
        prev: (u64, u64),
        entries: Vec<Entry>,
        result: AppendResult,
        log_after: &'static [u64],
    }
    let ok = |m: u64| AppendResult::Success { match_index: LogIndex(m) };
    let conflict = |rejected: u64, conflict: Option<(u64, u64)>| AppendResult::Conflict {
        rejected_index: LogIndex(rejected),
        last_index: LogIndex(3),
        conflict: conflict.map(|(t, i)| (Term(t), LogIndex(i))),
    };
    let cases = vec![
        Case { what: "heartbeat at the start", prev: (0, 0), entries: vec![], result: ok(0), log_after: &[1, 1, 2] },
        Case { what: "heartbeat at the end", prev: (3, 2), entries: vec![], result: ok(3), log_after: &[1, 1, 2] },
        Case {
            what: "new entry at the end",
            prev: (3, 2),
            entries: vec![entry(4, 3)],
            result: ok(4),
            log_after: &[1, 1, 2, 3],
        },
        Case {
            what: "an entry already held is kept, and so is what follows it",
            prev: (1, 1),
            entries: vec![entry(2, 1)],
            result: ok(2),
            log_after: &[1, 1, 2],
        },
        Case {
            what: "a whole log from the start, partly held",
            prev: (0, 0),
            entries: vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 3)],
            result: ok(4),
            log_after: &[1, 1, 2, 3],
        },
        Case {
            what: "a conflicting entry is cut with everything after it",
            prev: (1, 1),
            entries: vec![entry(2, 3)],
            result: ok(2),
            log_after: &[1, 3],
        },
        Case {
            what: "prev just past the end",
            prev: (4, 2),
            entries: vec![],
            result: conflict(4, None),
            log_after: &[1, 1, 2],
        },
        Case {
            what: "prev far past the end",
            prev: (9, 3),
            entries: vec![entry(10, 3)],
            result: conflict(9, None),
            log_after: &[1, 1, 2],
        },
        Case {
            what: "prev term differs at the last entry",
            prev: (3, 3),
            entries: vec![entry(4, 3)],
            result: conflict(3, Some((2, 3))),
            log_after: &[1, 1, 2],
        },
        Case {
            what: "prev term differs inside a run of one term",
            prev: (2, 2),
            entries: vec![entry(3, 2)],
            result: conflict(2, Some((1, 1))),
            log_after: &[1, 1, 2],
        },
    ];
    for case in cases {
        let (c, mut s) = follower_of_term_3(0);
        let message = append(3, case.prev.0, case.prev.1, case.entries.clone(), 0);
        let outputs = step(&c, &mut s, receive(1, message));
        let reply = Message::AppendEntriesResponse(raft_core::AppendEntriesResponse {
            term: Term(3),
            result: case.result.clone(),
        });
        assert_eq!(outputs.first(), Some(&election_timer(&c)), "{}: a valid leader resets the timer", case.what);
        assert_eq!(outputs.last(), Some(&send(1, reply)), "{}", case.what);
        assert_eq!(terms_of(&s), case.log_after, "{}", case.what);
        if matches!(case.result, AppendResult::Conflict { .. }) {
            assert!(persists(&outputs).is_empty(), "{}: a rejection changes no log", case.what);
        }
    }
}

/// Figure 2 rule 3: "If an existing entry conflicts with a new one (same
/// index but different terms), delete the existing entry and all that
/// follow it", persisted as a truncation before the new entries.
#[test]
fn s5_3_conflict_truncates_then_appends() {
    let (c, mut s) = follower_of_term_3(0);
    let outputs = step(&c, &mut s, receive(1, append(3, 2, 1, vec![entry(3, 3), entry(4, 3)], 0)));
    assert_eq!(
        outputs,
        vec![
            election_timer(&c),
            Output::Persist(Persist::Truncate { from: LogIndex(3) }),
            persist_append(3, vec![entry(3, 3), entry(4, 3)]),
            send(1, append_ok(3, 4)),
        ]
    );
    assert_eq!(s.log().entries(), &[entry(1, 1), entry(2, 1), entry(3, 3), entry(4, 3)][..]);
}

/// Figure 2 rule 4, and §5.3's idempotence: a duplicated append changes
/// nothing the second time and gets the same answer.
#[test]
fn s5_3_a_duplicated_append_is_idempotent() {
    let (c, mut s) = follower_of_term_3(0);
    let message = append(3, 3, 2, vec![entry(4, 3), entry(5, 3)], 0);
    let first = step(&c, &mut s, receive(1, message.clone()));
    assert_eq!(
        first,
        vec![election_timer(&c), persist_append(4, vec![entry(4, 3), entry(5, 3)]), send(1, append_ok(3, 5))]
    );
    let after_first = s.clone();
    let second = step(&c, &mut s, receive(1, message));
    assert_eq!(second, vec![election_timer(&c), send(1, append_ok(3, 5))]);
    assert_eq!(s, after_first);
}

/// §5.3: appends that arrive out of order never lose entries: an older,
/// shorter append that arrives after a longer one matches what is held and
/// cuts nothing ("if an existing entry conflicts" — these do not).
#[test]
fn s5_3_a_reordered_append_cuts_nothing() {
    let c = config(2, 3);
    let mut s = follower(&c, 1, None, &[], 0);
    let older = append(1, 0, 0, vec![entry(1, 1), entry(2, 1)], 0);
    let newer = append(1, 2, 1, vec![entry(3, 1), entry(4, 1)], 0);

    // The newer append overtakes the older one: rejected, nothing stored.
    let outputs = step(&c, &mut s, receive(1, newer.clone()));
    assert_eq!(outputs.last(), Some(&send(1, append_conflict(1, 2, 0, None))));
    step(&c, &mut s, receive(1, older.clone()));
    step(&c, &mut s, receive(1, newer));
    assert_eq!(terms_of(&s), vec![1, 1, 1, 1]);

    // A late copy of the older one: acknowledged up to what it carried, and
    // entries 3 and 4 stay.
    let before = s.clone();
    let outputs = step(&c, &mut s, receive(1, older));
    assert_eq!(outputs, vec![election_timer(&c), send(1, append_ok(1, 2))]);
    assert_eq!(s, before);
}

/// §5.4 (Leader Completeness) implies a follower never has to cut a
/// committed entry; an append that would is from a broken leader, and is
/// dropped without touching anything.
#[test]
fn s5_3_committed_entries_are_never_truncated() {
    let (c, mut s) = follower_of_term_3(2);
    assert_eq!(s.commit_index(), LogIndex(2));
    assert_dropped(&c, &mut s, receive(1, append(3, 1, 1, vec![entry(2, 3)], 2)), Dropped::OutOfRange);
    assert_eq!(terms_of(&s), vec![1, 1, 2]);
    // The uncommitted entry 3 may still be replaced.
    step(&c, &mut s, receive(1, append(3, 2, 1, vec![entry(3, 3)], 2)));
    assert_eq!(terms_of(&s), vec![1, 1, 3]);
}

/// Figure 2 rule 5: "If leaderCommit > commitIndex, set commitIndex =
/// min(leaderCommit, index of last new entry)": a follower commits only what
/// it holds and knows to match the leader, even when its log is longer.
#[test]
fn s5_3_follower_commit_is_bounded_by_what_it_holds() {
    // Entries 3 and 4 (term 2) are a deposed leader's, not the new leader's.
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2, 2], 0);
    let outputs = step(&c, &mut s, receive(1, append(3, 2, 1, vec![], 4)));
    assert_eq!(s.commit_index(), LogIndex(2), "only entries 1 and 2 are known to match");
    assert_eq!(delivered(&outputs), vec![(1, 1, b"1@1".to_vec()), (2, 1, b"2@1".to_vec())]);

    // Once the leader's entry 3 arrives, entry 3 commits, and 4 is gone.
    let outputs = step(&c, &mut s, receive(1, append(3, 2, 1, vec![entry(3, 3)], 4)));
    assert_eq!(s.commit_index(), LogIndex(3));
    assert_eq!(delivered(&outputs), vec![(3, 3, b"3@3".to_vec())]);
    assert_eq!(terms_of(&s), vec![1, 1, 3]);

    // The leader's commit index never moves a follower's backwards.
    step(&c, &mut s, receive(1, append(3, 3, 3, vec![], 1)));
    assert_eq!(s.commit_index(), LogIndex(3));
}

/// §5.3: on a rejection the leader backs up, using the follower's hint, so
/// that a follower 50 entries behind costs one extra round trip, not 50.
#[test]
fn s5_3_leader_backs_up_in_one_round_trip_to_a_short_follower() {
    let c = config(1, 3);
    let log: Vec<u64> = vec![1; 60];
    let (mut s, _) = leader(&c, 2, &log, 0);
    // The probe at 60 was sent when it became leader; follower 2 has 10 entries.
    let outputs = step(&c, &mut s, receive(2, append_conflict(2, 60, 10, None)));
    let expected: Vec<Entry> = (11..=60).map(|i| entry(i, 1)).chain([Entry::noop(Term(2))]).collect();
    assert_eq!(outputs, vec![send(2, append(2, 10, 1, expected, 0))]);
}

/// §5.3: when the follower's entry at prevLogIndex has another term, the
/// leader skips that whole term: past its own last entry of that term, or
/// to the follower's first entry of it when the leader has none.
#[test]
fn s5_3_leader_skips_a_conflicting_term() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 5, &[1, 1, 2, 2, 4, 4], 0);
    // Follower 2 has [1, 1, 2, 2, 3, 3, 3]: term 3 at 6, first held at 5.
    let outputs = step(&c, &mut s, receive(2, append_conflict(5, 6, 7, Some((3, 5)))));
    assert_eq!(
        sends(&outputs),
        vec![(id(2), append(5, 4, 2, vec![entry(5, 4), entry(6, 4), Entry::noop(Term(5))], 0))]
    );

    // Follower 3 has [1, 1, 2, 2, 2, 2, 2]: term 2 at 6; the leader's last
    // entry of term 2 is at 4, so it probes with prev 4.
    let outputs = step(&c, &mut s, receive(3, append_conflict(5, 6, 7, Some((2, 3)))));
    assert_eq!(
        sends(&outputs),
        vec![(id(3), append(5, 4, 2, vec![entry(5, 4), entry(6, 4), Entry::noop(Term(5))], 0))]
    );
}

/// §5.3: a leader retries until followers have everything: an unanswered
/// probe is resent on the heartbeat, and an up-to-date follower gets an
/// empty append carrying the commit index.
#[test]
fn s5_3_heartbeats_resend_probes_and_carry_the_commit_index() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1], 1);
    step(&c, &mut s, receive(2, append_ok(2, 2)));
    assert_eq!(s.commit_index(), LogIndex(2));
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Heartbeat));
    assert_eq!(
        outputs,
        vec![
            heartbeat_timer(&c),
            send(2, append(2, 2, 2, vec![], 2)),
            send(3, append(2, 1, 1, vec![Entry::noop(Term(2))], 2)),
        ]
    );
}

/// §5.3: a leader streams new entries to a follower known to match without
/// waiting for the previous append's answer.
#[test]
fn s5_3_leader_streams_to_a_matching_follower() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[], 0);
    step(&c, &mut s, receive(2, append_ok(2, 1)));
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(1, b"a")]));
    let a = Entry::command(Term(2), "a");
    assert!(sends(&outputs).contains(&(id(2), append(2, 1, 2, vec![a.clone()], 1))));
    let outputs = step(&c, &mut s, Input::Propose(vec![proposal(2, b"b")]));
    let b = Entry::command(Term(2), "b");
    assert!(sends(&outputs).contains(&(id(2), append(2, 2, 2, vec![b], 1))), "{outputs:?}");
    // Follower 3 never answered its probe: it gets nothing more until it does.
    assert!(!sends(&outputs).iter().any(|(to, _)| *to == id(3)));
}

/// Figure 7: a leader comes to power in term 8 while the followers' logs
/// are those of the figure's (a)–(f). Driven through `step` on a perfect
/// network, every log converges to the leader's (plus the leader's no-op
/// of term 8), entries are delivered everywhere, and the conflict hint keeps
/// each follower to at most two rejected round trips.
#[test]
fn s5_3_figure_7_every_follower_converges_to_the_leader() {
    let leader_log: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    // (node, log, rejected appends the hint should cost)
    let followers: [(u64, &[u64], usize); 6] = [
        (2, &[1, 1, 1, 4, 4, 5, 5, 6, 6], 1),          // (a) missing one entry
        (3, &[1, 1, 1, 4], 1),                         // (b) missing many
        (4, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),    // (c) one extra uncommitted entry
        (5, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 0), // (d) extra entries of term 7
        (6, &[1, 1, 1, 4, 4, 4, 4], 2),                // (e) extra entries of term 4
        (7, &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 2),    // (f) entries of terms 2 and 3
    ];
    let configs: Vec<_> = (1..=7).map(|i| config(i, 7)).collect();
    let mut states = vec![follower(&configs[0], 7, None, leader_log, 0)];
    for (node, log, _) in followers {
        states.push(follower(&configs[node as usize - 1], 7, None, log, 0));
    }
    let mut h = Harness::new(configs, states);

    h.step(1, Input::Timeout(Timer::Election));
    h.run(1000);
    assert!(h.state(1).is_leader(), "(a), (b), (e) and (f) vote for it; (c) and (d) are more up-to-date");
    h.step(1, Input::Timeout(Timer::Heartbeat));
    h.run(1000);

    let expected: Vec<u64> = leader_log.iter().copied().chain([8]).collect();
    let commands: Vec<(u64, u64, Vec<u8>)> =
        log_of(leader_log).into_iter().enumerate().map(|(i, e)| (i as u64 + 1, e.term.0, payload(&e))).collect();
    for (node, log, rejections) in followers {
        let s = h.state(node);
        assert_eq!(terms_of(s), expected, "follower {node} (log {log:?}) did not converge");
        assert_eq!(s.log(), h.state(1).log());
        assert_eq!(s.commit_index(), LogIndex(11));
        assert_eq!(h.applied[node as usize - 1], commands, "follower {node} delivers the leader's commands");
        let rejected = h
            .trace
            .iter()
            .filter(|(from, to, m)| {
                *from == NodeId(node)
                    && *to == id(1)
                    && matches!(m, Message::AppendEntriesResponse(r) if matches!(r.result, AppendResult::Conflict { .. }))
            })
            .count();
        assert_eq!(rejected, rejections, "follower {node}: rejected appends");
    }
    assert_eq!(h.applied[0], commands, "the leader delivers its commands, not its no-op");
}

fn payload(e: &Entry) -> Vec<u8> {
    match &e.payload {
        raft_core::Payload::Command(data) => data.clone(),
        _ => panic!("not a command"),
    }
}

/// §5.3: an answer to an append the leader has since moved past does not
/// move `next_index` backwards past what is known to match.
#[test]
fn s5_3_a_stale_rejection_does_not_undo_progress() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 2, &[1, 1], 0);
    step(&c, &mut s, receive(2, append_ok(2, 3)));
    let before = s.clone();
    // A rejection of an old heartbeat at index 2, delivered late.
    let outputs = step(&c, &mut s, receive(2, append_conflict(2, 2, 1, None)));
    assert!(sends(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(s, before);
}
