//! Hostile input (DESIGN.md: "Bad input from the network is dropped and
//! counted, never a panic"): node 1 of a 3-node cluster is brought into a
//! role by legal inputs (a follower with a log that knows its leader, a
//! candidate, a leader whose followers have acknowledged its log), and
//! then fed arbitrary sequences of inputs: messages of every kind with
//! arbitrary fields (biased towards 0, 1, small values, `u64::MAX`, and
//! `Term::MAX_ACCEPTED` / `LogIndex::MAX_ACCEPTED` and their neighbours),
//! from members, non-members and the node itself; both timers; proposals,
//! oversized ones among them; reads; and `Applied` at any index. The node
//! runs with small bounds drawn per case, so that every queue can fill.
//!
//! After every step: no panic (the core's invariant checks are assertions
//! inside `step`, so a broken invariant is a panic); persist-before-send;
//! the persists of every step, applied in order, keep the store equal to
//! the state's durable part; a dropped input is dropped alone and changes
//! nothing; the term and the commit index never go down; and delivered
//! commands are the node's committed entries, in log order, none repeated
//! and none skipped.
//!
//! The case count is proptest's (`PROPTEST_CASES`, 256 by default, a few
//! seconds in a debug build). The long run:
//! `PROPTEST_CASES=200000 cargo test --release -p raft-core --test hostile`.

mod common;

use common::*;
use proptest::prelude::*;
use raft_core::{
    AppendEntries, AppendEntriesResponse, AppendResult, Entry, Forward, ForwardResponse, Input, LeadershipCheck,
    LeadershipCheckResponse, LogIndex, MemoryStore, Message, NodeId, Output, Payload, PreVote, PreVoteResponse,
    Proposal, ProposalId, ReadId, ReadIndexRequest, ReadIndexResponse, Rejection, RequestVote, RequestVoteResponse,
    State, Term, TimeoutNow, Timer,
};

/// `Term::MAX_ACCEPTED` and `LogIndex::MAX_ACCEPTED` (the same number).
const MAX: u64 = u64::MAX / 2;

/// A number biased towards the edges: mostly small (around the node's
/// terms, log end and read ids), sometimes an edge value, now and then
/// anything.
fn number(small: u64) -> impl Strategy<Value = u64> {
    let edges = vec![0, 1, MAX - 1, MAX, MAX + 1, MAX + 2, u64::MAX - 1, u64::MAX];
    prop_oneof![
        6 => 0..small,
        3 => prop::sample::select(edges),
        1 => any::<u64>(),
    ]
}

fn term() -> impl Strategy<Value = Term> {
    number(8).prop_map(Term)
}

fn index() -> impl Strategy<Value = LogIndex> {
    number(16).prop_map(LogIndex)
}

fn sender() -> impl Strategy<Value = NodeId> {
    // Members 2 and 3 most of the time; the node itself; non-members.
    prop_oneof![8 => 2u64..=3, 1 => Just(1u64), 1 => prop::sample::select(vec![0, 4, 99, u64::MAX])].prop_map(NodeId)
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![Just(Payload::Noop), prop::collection::vec(any::<u8>(), 0..6).prop_map(Payload::Command)]
}

fn rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        Just(Rejection::QueueFull),
        Just(Rejection::TooLarge),
        prop::option::of(sender()).prop_map(|leader_hint| Rejection::NotLeader { leader_hint }),
    ]
}

/// Command bytes around the bounds drawn in [`bounds`]: empty, small, and
/// around and past `message_bytes_max` (oversized proposals are refused).
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => 0usize..8, 1 => 40usize..56, 1 => 230usize..260].prop_map(|n| vec![b'x'; n])
}

/// An AppendEntries: either with arbitrary fields (mostly malformed), or
/// well formed for its claims (entry terms non-decreasing between
/// `prev_log_term` and the message's term), so that it reaches the
/// receiver's rules. (Built as a `Message`: only it implements `Debug`.)
fn append_entries() -> impl Strategy<Value = Message> {
    let arbitrary = (term(), index(), term(), prop::collection::vec((term(), payload()), 0..4), index());
    let well_formed = (1u64..8, 0u64..8, 0u64..12, prop::collection::vec((0u64..8, payload()), 0..5), 0u64..14);
    prop_oneof![
        arbitrary.prop_map(|(term, prev_log_index, prev_log_term, entries, leader_commit)| {
            Message::AppendEntries(AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries: entries.into_iter().map(|(term, payload)| Entry { term, payload }).collect(),
                leader_commit,
            })
        }),
        well_formed.prop_map(|(t, prev_term, prev, mut entries, commit)| {
            let prev_term = prev_term.min(t);
            entries.sort_by_key(|e| e.0);
            Message::AppendEntries(AppendEntries {
                term: Term(t),
                prev_log_index: LogIndex(prev),
                prev_log_term: Term(prev_term),
                entries: entries
                    .into_iter()
                    .map(|(et, payload)| Entry { term: Term(et.clamp(prev_term, t)), payload })
                    .collect(),
                leader_commit: LogIndex(commit),
            })
        }),
    ]
}

/// A message of any kind, with arbitrary fields.
fn message() -> impl Strategy<Value = Message> {
    let round = || number(4);
    let ids = || prop::collection::vec(number(8).prop_map(ReadId), 0..4);
    let append_response = |term, result| Message::AppendEntriesResponse(AppendEntriesResponse { term, result });
    let placement = prop_oneof![(term(), index()).prop_map(Ok), rejection().prop_map(Err)];
    let read_result = prop_oneof![index().prop_map(Ok), rejection().prop_map(Err)];
    prop_oneof![
        (term(), index(), term(), any::<bool>()).prop_map(|(term, last_log_index, last_log_term, transfer)| {
            Message::RequestVote(RequestVote { term, last_log_index, last_log_term, transfer })
        }),
        (term(), index(), term()).prop_map(|(term, last_log_index, last_log_term)| {
            Message::PreVote(PreVote { term, last_log_index, last_log_term })
        }),
        (term(), any::<bool>()).prop_map(|(term, granted)| Message::PreVoteResponse(PreVoteResponse { term, granted })),
        term().prop_map(|term| Message::TimeoutNow(TimeoutNow { term })),
        (term(), any::<bool>())
            .prop_map(|(term, granted)| Message::RequestVoteResponse(RequestVoteResponse { term, granted })),
        append_entries(),
        (term(), index())
            .prop_map(move |(term, match_index)| append_response(term, AppendResult::Success { match_index })),
        (term(), index(), index(), prop::option::of((term(), index()))).prop_map(
            move |(term, rejected_index, last_index, conflict)| {
                append_response(term, AppendResult::Conflict { rejected_index, last_index, conflict })
            }
        ),
        (term(), prop::collection::vec((number(8).prop_map(ProposalId), data()), 0..4))
            .prop_map(|(term, proposals)| Message::Forward(Forward { term, proposals })),
        (term(), prop::option::of(sender()), prop::collection::vec((number(8).prop_map(ProposalId), placement), 0..4))
            .prop_map(|(term, leader_hint, results)| {
                Message::ForwardResponse(ForwardResponse { term, leader_hint, results })
            }),
        (term(), round()).prop_map(|(term, round)| Message::LeadershipCheck(LeadershipCheck { term, round })),
        (term(), round())
            .prop_map(|(term, round)| Message::LeadershipCheckResponse(LeadershipCheckResponse { term, round })),
        (term(), ids()).prop_map(|(term, ids)| Message::ReadIndexRequest(ReadIndexRequest { term, ids })),
        (term(), index(), term(), prop::sample::select(vec![vec![1u64, 2, 3], vec![2], vec![1, 2, 3, 4]])).prop_map(
            |(term, index, snapshot_term, voters)| {
                let membership = raft_core::Membership::new(voters.into_iter().map(NodeId)).expect("valid");
                let snapshot = raft_core::SnapshotMeta { index, term: snapshot_term, membership };
                Message::InstallSnapshot(raft_core::InstallSnapshot { term, snapshot })
            }
        ),
        (term(), prop::option::of(sender()), prop::collection::vec((number(8).prop_map(ReadId), read_result), 0..4))
            .prop_map(|(term, leader_hint, results)| {
                Message::ReadIndexResponse(ReadIndexResponse { term, leader_hint, results })
            }),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let proposals = prop::collection::vec((number(8).prop_map(ProposalId), data()), 0..5)
        .prop_map(|ps| ps.into_iter().map(|(id, data)| Proposal { id, data }).collect());
    prop_oneof![
        12 => (sender(), message()).prop_map(|(from, message)| Input::Receive { from, message }),
        2 => prop_oneof![
            Just(Timer::Election),
            Just(Timer::Heartbeat),
            Just(Timer::CheckQuorum),
            Just(Timer::Transfer)
        ]
        .prop_map(Input::Timeout),
        1 => sender().prop_map(Input::TransferLeadership),
        2 => proposals.prop_map(Input::Propose),
        1 => prop::collection::vec(number(8).prop_map(ReadId), 0..5).prop_map(Input::Read),
        2 => index().prop_map(Input::Applied),
        1 => index().prop_map(Input::SnapshotTaken),
    ]
}

/// The node's bounds for one case: small enough that each queue and window
/// can fill within a few dozen inputs (proposal overhead is 16 bytes, so
/// `data()`'s 40..56-byte proposals straddle a 64-byte message bound).
fn bounds() -> impl Strategy<Value = TestConfig> {
    (
        prop::sample::select(vec![1usize, 4]),
        prop::sample::select(vec![64usize, 256]),
        prop::sample::select(vec![1u64, 8]),
        prop::sample::select(vec![1usize, 4]),
        prop::sample::select(vec![1u64, 4, 4096]),
        prop::sample::select(vec![8u64, 64 << 20]),
        prop::sample::select(vec![2u64, 8, 64 * 1024]),
        prop::sample::select(vec![1usize, 4, 64 * 1024]),
        any::<(bool, bool)>(),
        prop::sample::select(vec![0u64, 1, 1024]),
    )
        .prop_map(
            |(
                entries,
                bytes,
                inflight,
                pending,
                unapplied,
                unapplied_bytes,
                uncommitted,
                reads,
                extensions,
                trailing,
            )| {
                config(1, 3)
                    .with_pre_vote(extensions.0)
                    .with_check_quorum(extensions.1)
                    .with_trailing_entries(trailing)
                    .with_entries_per_append_max(entries)
                    .and_then(|c| c.with_message_bytes_max(bytes))
                    .and_then(|c| c.with_inflight_entries_max(inflight))
                    .and_then(|c| c.with_pending_proposals_max(pending))
                    .and_then(|c| c.with_unapplied_entries_max(unapplied))
                    .and_then(|c| c.with_unapplied_bytes_max(unapplied_bytes))
                    .and_then(|c| c.with_uncommitted_entries_max(uncommitted))
                    .and_then(|c| c.with_reads_max(reads))
                    .expect("valid bounds")
            },
        )
}

/// Follower of term 3 with the log [1, 1, 2, 3], entry 3 committed, that
/// knows node 2 as its leader.
fn a_follower(c: &TestConfig) -> State {
    let mut s = follower(c, 3, None, &[1, 1, 2, 3], 2);
    step(c, &mut s, receive(2, append(3, 4, 3, vec![], 3)));
    assert_eq!((s.leader(), s.commit_index()), (Some(NodeId(2)), LogIndex(3)));
    s
}

/// Candidate of term 3 with the log [1, 1, 2] (a pre-candidate of term 2
/// first, with pre-vote on).
fn a_candidate(c: &TestConfig) -> State {
    let mut s = follower(c, 2, None, &[1, 1, 2], 0);
    step(c, &mut s, Input::Timeout(Timer::Election));
    if c.pre_vote() {
        assert_eq!((s.role_kind(), s.term()), (raft_core::RoleKind::PreCandidate, Term(2)));
        step(c, &mut s, receive(2, Message::PreVoteResponse(PreVoteResponse { term: Term(3), granted: true })));
    }
    assert_eq!((s.role_kind(), s.term()), (raft_core::RoleKind::Candidate, Term(3)));
    s
}

/// Leader of term 3 with the log [1, 1, 2, 3:noop], acknowledged by both
/// followers, so everything is committed and both are streamed to.
fn a_leader(c: &TestConfig) -> State {
    let (mut s, _) = leader(c, 3, &[1, 1, 2], 0);
    step(c, &mut s, receive(2, append_ok(3, 4)));
    step(c, &mut s, receive(3, append_ok(3, 4)));
    assert_eq!(s.commit_index(), LogIndex(4));
    s
}

/// Feeds `inputs` to `state`, checking the properties after every step.
fn feed(c: &TestConfig, mut state: State, inputs: Vec<Input>) -> Result<(), TestCaseError> {
    let mut store = MemoryStore::of(&state);
    let mut last_delivered = state.delivered_index();
    for input in inputs {
        let before = state.clone();
        // `common::step` asserts persist-before-send and that the pure and
        // in-place forms agree; the core asserts its invariants.
        let outputs = step(c, &mut state, input.clone());
        if let Err(refused) = store.apply_all(&outputs) {
            return Err(TestCaseError::fail(format!("the store refused a persist on {input:?}: {refused}")));
        }
        prop_assert_eq!(&store, &MemoryStore::of(&state), "persists do not describe the state after {:?}", input);
        if outputs.iter().any(|o| matches!(o, Output::Dropped(_))) {
            prop_assert_eq!(outputs.len(), 1, "a drop with other outputs on {:?}: {:?}", input, outputs);
            prop_assert_eq!(&state, &before, "a dropped {:?} changed the state", input);
        }
        prop_assert!(state.term() >= before.term(), "term went down on {:?}", input);
        prop_assert!(state.commit_index() >= before.commit_index(), "commit index went down on {:?}", input);
        // A restored snapshot replaces everything delivered up to its index.
        if let Some(meta) = outputs.iter().find_map(|o| if let Output::RestoreSnapshot(m) = o { Some(m) } else { None })
        {
            last_delivered = last_delivered.max(meta.index);
        }
        for committed in
            outputs.iter().filter_map(|o| if let Output::Deliver(d) = o { Some(d) } else { None }).flatten()
        {
            let index = committed.index;
            prop_assert!(index > last_delivered, "{:?} delivered after {:?}", index, last_delivered);
            prop_assert!(index <= state.commit_index(), "{:?} delivered beyond the commit index", index);
            let held = state.log().get(index);
            let expected = Entry { term: committed.term, payload: Payload::Command(committed.data.clone()) };
            prop_assert_eq!(held, Some(&expected), "delivered {:?} is not the log's entry", index);
            let skipped = (last_delivered.0 + 1..index.0)
                .find(|&i| state.log().get(LogIndex(i)).is_some_and(|e| e.payload != Payload::Noop));
            prop_assert_eq!(skipped, None, "a command skipped before {:?}", index);
            last_delivered = index;
        }
    }
    Ok(())
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(input(), 1..48)
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Hostile input to a follower with a log and a leader.
    #[test]
    fn hostile_inputs_to_a_follower(c in bounds(), inputs in inputs()) {
        let state = a_follower(&c);
        feed(&c, state, inputs)?;
    }

    /// Hostile input to a candidate.
    #[test]
    fn hostile_inputs_to_a_candidate(c in bounds(), inputs in inputs()) {
        let state = a_candidate(&c);
        feed(&c, state, inputs)?;
    }

    /// Hostile input to a leader whose followers acknowledged its log.
    #[test]
    fn hostile_inputs_to_a_leader(c in bounds(), inputs in inputs()) {
        let state = a_leader(&c);
        feed(&c, state, inputs)?;
    }
}
