//! Bad input from the network is dropped with a reason and changes nothing
//! (DESIGN.md: "Bad input from the network is dropped and counted, never a
//! panic"). Each case builds a node in the role that would see the input,
//! feeds it, and checks the output is exactly `Dropped(reason)` and the
//! state is unchanged. Also: the `Node` wrapper counts what was dropped.

mod common;

use common::*;
use raft_core::{
    AppendEntries, AppendEntriesResponse, AppendResult, Dropped, Entry, Forward, ForwardResponse, Input,
    LeadershipCheck, LeadershipCheckResponse, LogIndex, Message, Node, Output, ProposalId, ReadId, ReadIndexRequest,
    ReadIndexResponse, RequestVote, RequestVoteResponse, State, Term, Timer,
};

/// One node of each role of node 1 in a 3-node cluster, all in term 3,
/// with the log [1, 1, 2] (the leader has its no-op after it).
fn every_role() -> Vec<(&'static str, TestConfig, State)> {
    let c = config(1, 3);
    let f = follower(&c, 3, None, &[1, 1, 2], 0);
    let mut candidate = follower(&c, 2, None, &[1, 1, 2], 0);
    step(&c, &mut candidate, Input::Timeout(Timer::Election));
    let (l, _) = leader(&c, 3, &[1, 1, 2], 0);
    vec![("follower", c.clone(), f), ("candidate", c.clone(), candidate), ("leader", c, l)]
}

/// A message that claims to come from the node itself is dropped in every
/// role, whatever it says; so is an answer from a node that is not a
/// member. A request from a non-member is served (thesis §4.1): it may be
/// from a leader whose configuration entry this node has not received.
#[test]
fn unknown_senders_are_dropped() {
    let requests = [request_vote(9, 9, 9), append(9, 0, 0, vec![], 0)];
    let answers = [vote(9, true), append_ok(3, 1)];
    for (role, c, state) in every_role() {
        let me = c.config().id().0;
        for m in requests.iter().chain(&answers) {
            assert_dropped(&c, &mut state.clone(), receive(me, m.clone()), Dropped::UnknownSender);
        }
        for from in [0, 4, 99] {
            for m in &answers {
                assert_dropped(&c, &mut state.clone(), receive(from, m.clone()), Dropped::UnknownSender);
            }
            for m in &requests {
                let mut s = state.clone();
                let out = step(&c, &mut s, receive(from, m.clone()));
                assert!(
                    !out.contains(&Output::Dropped(Dropped::UnknownSender)),
                    "{role}: {m:?} from n{from} is served"
                );
                assert_eq!(s.hard_state().term, Term(9), "{role}: the request's term was adopted");
            }
        }
    }
}

/// AppendEntries whose entries are impossible for the leader it claims to
/// be from: terms that go backwards, that precede `prevLogTerm`, that exceed
/// the message's term, or a `prevLogTerm` above it; and index arithmetic
/// that overflows. Dropped before anything, even the term update.
#[test]
fn malformed_appends_are_dropped_before_the_term_is_adopted() {
    let malformed = [
        ("entry terms decrease", append(5, 0, 0, vec![entry(1, 3), entry(2, 2)], 0)),
        ("entry term below prevLogTerm", append(5, 2, 3, vec![entry(3, 2)], 0)),
        ("entry term above the message's", append(5, 0, 0, vec![entry(1, 6)], 0)),
        ("prevLogTerm above the message's", append(5, 2, 6, vec![], 0)),
        ("index overflow", append(5, u64::MAX, 1, vec![entry(1, 1)], 0)),
    ];
    for (role, c, state) in every_role() {
        for (what, m) in &malformed {
            let mut s = state.clone();
            let before = s.clone();
            let outputs = step(&c, &mut s, receive(2, m.clone()));
            assert_eq!(outputs, vec![raft_core::Output::Dropped(Dropped::OutOfRange)], "{role}: {what}");
            assert_eq!(s, before, "{role}: {what}");
        }
    }
}

/// A RequestVote whose last log term exceeds its own term is impossible.
#[test]
fn impossible_vote_requests_are_dropped() {
    for (_, c, state) in every_role() {
        let mut s = state.clone();
        assert_dropped(&c, &mut s, receive(2, request_vote(4, 3, 5)), Dropped::OutOfRange);
    }
}

/// A PreVote whose last log term exceeds the term it asks about is as
/// impossible as such a RequestVote (the sender's last log term is at most
/// its own term, one below the term asked about), and should be dropped
/// alike rather than answered.
#[test]
fn impossible_pre_votes_are_dropped() {
    for (role, c, state) in every_role() {
        let mut s = state.clone();
        let before = s.clone();
        let outputs = step(&c, &mut s, receive(2, pre_vote(4, 3, 5)));
        assert_eq!(outputs, vec![raft_core::Output::Dropped(Dropped::OutOfRange)], "{role}");
        assert_eq!(s, before, "{role}");
    }
}

/// A leader told that a follower matches beyond the leader's own log has
/// been lied to: dropped, no commit.
#[test]
fn an_acknowledgement_beyond_the_leaders_log_is_dropped() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 1, 2], 0);
    assert_dropped(&c, &mut s, receive(2, append_ok(3, 5)), Dropped::OutOfRange);
    assert_dropped(&c, &mut s, receive(2, append_ok(3, u64::MAX)), Dropped::OutOfRange);
}

/// §5.2 (Election Safety): there is at most one leader per term, so a
/// leader that receives an AppendEntries of its own term distrusts it.
#[test]
fn a_second_leader_in_the_same_term_is_dropped() {
    let c = config(1, 3);
    let (mut s, _) = leader(&c, 3, &[1, 1, 2], 0);
    assert_dropped(&c, &mut s, receive(2, append(3, 4, 3, vec![entry(5, 3)], 4)), Dropped::SecondLeader);
    assert_dropped(&c, &mut s, receive(3, append(3, 0, 0, vec![], 0)), Dropped::SecondLeader);
    assert!(s.is_leader());
}

/// Responses that arrive in a role that does not expect them, or from an
/// older term, are stale.
#[test]
fn stale_responses_are_dropped() {
    let c = config(1, 3);
    let mut f = follower(&c, 3, None, &[1], 0);
    assert_dropped(&c, &mut f, receive(2, append_ok(3, 1)), Dropped::StaleResponse);
    assert_dropped(&c, &mut f, receive(2, append_ok(2, 1)), Dropped::StaleResponse);
    assert_dropped(&c, &mut f, receive(2, vote(2, true)), Dropped::StaleResponse);
}

/// Garbage within the rules — a heartbeat whose prevLogIndex is far past
/// anything held — is not bad input: it is an ordinary rejection.
#[test]
fn a_far_prev_index_is_a_rejection_not_a_crash() {
    let c = config(2, 3);
    let mut s = follower(&c, 3, None, &[1], 0);
    // As far as a node accepts (`LogIndex::MAX_ACCEPTED`; past it the
    // append is dropped, see the test of that bound).
    let far = raft_core::LogIndex::MAX_ACCEPTED.0 - 1;
    let outputs = step(&c, &mut s, receive(1, append(3, far, 3, vec![Entry::noop(Term(3))], 0)));
    assert_eq!(outputs.last(), Some(&send(1, append_conflict(3, far, 1, None))));
    assert_eq!(terms_of(&s), vec![1]);
}

/// The `Node` wrapper counts every dropped input by reason.
#[test]
fn node_counts_drops_by_reason() {
    let c = config(1, 3);
    let (mut node, _) = Node::new(c.config().clone(), c.membership().clone());
    let mut out = Vec::new();
    node.step(receive(9, vote(1, true)), &mut out);
    node.step(receive(2, append(1, 0, 0, vec![entry(1, 2)], 0)), &mut out);
    node.step(Input::Timeout(Timer::Heartbeat), &mut out);
    node.step(
        receive(
            2,
            Message::RequestVote(raft_core::RequestVote {
                term: Term(1),
                last_log_index: raft_core::LogIndex(0),
                last_log_term: Term(0),
                transfer: false,
            }),
        ),
        &mut out,
    );
    let dropped = node.status().dropped;
    assert_eq!((dropped.unknown_sender, dropped.out_of_range, dropped.stale_timer), (1, 1, 1));
    assert_eq!(dropped.bad_messages(), 2);
    assert_eq!(node.status().term, Term(1), "the valid request was handled");
}

/// §5.2 (Election Safety), seen from a follower: it already follows the
/// leader of its term, so an AppendEntries of that term from another node
/// is from a second leader. It is dropped, and the entries it carries do
/// not replace the real leader's.
#[test]
fn a_follower_drops_a_second_leader_of_its_term() {
    let c = config(1, 3);
    let mut s = follower(&c, 3, None, &[1], 0);
    step(&c, &mut s, receive(2, append(3, 1, 1, vec![entry(2, 3)], 0)));
    assert_eq!(s.leader(), Some(id(2)));
    assert_dropped(&c, &mut s, receive(3, append(3, 1, 1, vec![Entry::noop(Term(3))], 0)), Dropped::SecondLeader);
    assert_eq!(s.log().entries(), &[entry(1, 1), entry(2, 3)][..]);
    // A leader of a later term is followed as usual.
    step(&c, &mut s, receive(3, append(4, 2, 3, vec![], 0)));
    assert_eq!(s.leader(), Some(id(3)));
}

/// One message of every kind, each carrying `term` and otherwise harmless
/// fields. The match in the assertion below is exhaustive, so a new kind of
/// message does not compile until it is listed here.
fn one_of_every_kind(term: Term) -> Vec<Message> {
    let messages = vec![
        Message::RequestVote(RequestVote { term, last_log_index: LogIndex(0), last_log_term: Term(0), transfer: true }),
        Message::RequestVoteResponse(RequestVoteResponse { term, granted: true }),
        Message::AppendEntries(AppendEntries {
            term,
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
        }),
        Message::AppendEntriesResponse(AppendEntriesResponse {
            term,
            result: AppendResult::Success { match_index: LogIndex(0) },
        }),
        Message::Forward(Forward { term, proposals: vec![(ProposalId(1), b"x".to_vec())] }),
        Message::ForwardResponse(ForwardResponse { term, leader_hint: None, results: vec![] }),
        Message::LeadershipCheck(LeadershipCheck { term, round: 1 }),
        Message::LeadershipCheckResponse(LeadershipCheckResponse { term, round: 1 }),
        Message::ReadIndexRequest(ReadIndexRequest { term, ids: vec![ReadId(1)] }),
        Message::ReadIndexResponse(ReadIndexResponse { term, leader_hint: None, results: vec![] }),
        Message::PreVote(raft_core::PreVote { term, last_log_index: LogIndex(0), last_log_term: Term(0) }),
        Message::PreVoteResponse(raft_core::PreVoteResponse { term, granted: true }),
        Message::TimeoutNow(raft_core::TimeoutNow { term }),
        Message::InstallSnapshot(raft_core::InstallSnapshot {
            term,
            snapshot: raft_core::SnapshotMeta {
                index: LogIndex(5),
                term: Term(1),
                membership: raft_core::Membership::new([
                    raft_core::NodeId(1),
                    raft_core::NodeId(2),
                    raft_core::NodeId(3),
                ])
                .unwrap(),
            },
        }),
    ];
    let kinds: Vec<usize> = messages
        .iter()
        .map(|m| match m {
            Message::RequestVote(_) => 0,
            Message::RequestVoteResponse(_) => 1,
            Message::AppendEntries(_) => 2,
            Message::AppendEntriesResponse(_) => 3,
            Message::Forward(_) => 4,
            Message::ForwardResponse(_) => 5,
            Message::LeadershipCheck(_) => 6,
            Message::LeadershipCheckResponse(_) => 7,
            Message::ReadIndexRequest(_) => 8,
            Message::ReadIndexResponse(_) => 9,
            Message::PreVote(_) => 10,
            Message::PreVoteResponse(_) => 11,
            Message::TimeoutNow(_) => 12,
            Message::InstallSnapshot(_) => 13,
        })
        .collect();
    assert_eq!(kinds, (0..14).collect::<Vec<_>>(), "one message of each kind");
    messages
}

/// `Term::MAX_ACCEPTED`: a message of a higher term, of any kind, in any
/// role, is dropped before it touches the state. Obeying it would leave the
/// node's next election no term to take (`Term::next` would overflow).
#[test]
fn terms_above_max_accepted_are_dropped_in_every_role() {
    for (role, c, state) in every_role() {
        for term in [Term(u64::MAX), Term::MAX_ACCEPTED.next(), Term(u64::MAX - 1)] {
            for m in one_of_every_kind(term) {
                let mut s = state.clone();
                let before = s.clone();
                let outputs = step(&c, &mut s, receive(2, m.clone()));
                assert_eq!(outputs, vec![raft_core::Output::Dropped(Dropped::OutOfRange)], "{role}: {m:?}");
                assert_eq!(s, before, "{role}: {m:?} changed the state");
            }
        }
    }
}

/// The bound itself is accepted: a vote request of `Term::MAX_ACCEPTED` is
/// adopted and answered, and the node can still start an election after it.
#[test]
fn the_max_accepted_term_itself_is_adopted() {
    let c = config(1, 3);
    let max = Term::MAX_ACCEPTED.0;
    let mut s = follower(&c, 3, None, &[1, 1, 2], 0);
    let outputs = step(&c, &mut s, receive(2, request_vote(max, 3, 2)));
    assert_eq!(
        outputs,
        vec![persist_hard(max, None), persist_hard(max, Some(2)), election_timer(&c), send(2, vote(max, true))]
    );
    let outputs = step(&c, &mut s, Input::Timeout(Timer::Election));
    assert_eq!(outputs[0], persist_candidacy(max + 1, 1, 3));
    assert_eq!(s.term(), Term::MAX_ACCEPTED.next());
}

/// `LogIndex::MAX_ACCEPTED`: an append whose last entry would land past it
/// is dropped in every role, before its term is adopted; one that ends
/// exactly at it is an ordinary append (here rejected: the follower holds
/// nothing near it).
#[test]
fn appends_past_max_accepted_index_are_dropped() {
    let max = LogIndex::MAX_ACCEPTED.0;
    let past = [
        ("one entry past", append(5, max, 1, vec![entry(max + 1, 1)], 0)),
        ("two entries, the second past", append(5, max - 1, 1, vec![entry(max, 1), entry(max + 1, 1)], 0)),
        ("a heartbeat far past", append(5, u64::MAX - 1, 1, vec![Entry::noop(Term(5))], 0)),
    ];
    for (role, c, state) in every_role() {
        for (what, m) in &past {
            let mut s = state.clone();
            assert_dropped(&c, &mut s, receive(2, m.clone()), Dropped::OutOfRange);
            assert_eq!(s.term(), Term(3), "{role}: {what}");
        }
    }
    let c = config(1, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2], 0);
    let outputs = step(&c, &mut s, receive(2, append(5, max - 1, 1, vec![entry(max, 1)], 0)));
    assert_eq!(
        outputs,
        vec![
            persist_hard(5, None),
            leader_changed(Some(2), 5),
            election_timer(&c),
            send(2, append_conflict(5, max - 1, 3, None)),
        ]
    );
}

/// An append that would cut an entry the receiver knows committed comes
/// from a broken leader (§5.4.3: Leader Completeness means no correct one
/// asks) and is dropped. Dropped inputs change nothing (the `Node`
/// counters are kept outside the state for this), so it must be dropped
/// before its newer term is adopted, as a malformed append is.
///
/// Fails today: the dispatch settles the term first (the follower persists
/// term 4; a leader would step down), and only then is the append dropped.
#[test]
fn a_newer_append_that_would_cut_committed_entries_changes_nothing() {
    let c = config(1, 3);
    let mut s = follower(&c, 3, None, &[1, 1, 2, 3], 3);
    // Index 3 (term 2) is committed; the append claims term 1 there.
    assert_dropped(&c, &mut s, receive(2, append(4, 2, 1, vec![Entry::noop(Term(1))], 0)), Dropped::OutOfRange);
    assert_eq!(s.term(), Term(3));
}
