//! Proposals made at this node, from the call until their fate is known.
//!
//! raft-core answers a proposal in two steps: `ProposalAccepted` (the leader
//! appended it at term t, index i) or `ProposalRejected`; then
//! [`State::proposal_fate`] says whether the entry at (t, i) committed or
//! was lost to another leader's entry. This module keeps the callers'
//! replies until then, and answers each once its index has been handed to
//! the entry receiver (so that "committed" also means "in the application's
//! queue").
//!
//! Retrying is safe in exactly two cases, which are the ones retried (up to
//! `proposal_retries_max` times, under a new proposal id):
//! - refused with `NotLeader`: the refusing node did not append it;
//! - lost: another entry was committed at its index, so it can never commit.
//!
//! Every proposal has a deadline, set when it was asked for. A proposal
//! that is never answered (its Forward or the answer was lost on the way,
//! or the leader it reached died) is answered `Timeout` at its deadline:
//! the caller learns its fate is unknown.

use crate::api::ProposeError;
use raft_core::{LogIndex, Proposal, ProposalFate, ProposalId, Rejection, State, Term};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

/// The reply channel of one proposal call (`None`: fire and forget).
pub(crate) type Reply = Option<oneshot::Sender<Result<LogIndex, ProposeError>>>;

/// A proposal as the API hands it to the driver.
pub(crate) struct ProposeRequest {
    pub data: Vec<u8>,
    pub reply: Reply,
    /// When the caller is answered `Timeout` at the latest.
    pub deadline: Instant,
}

struct Waiter {
    reply: Reply,
    /// Kept until the fate is known, to propose it again if that is safe.
    data: Vec<u8>,
    attempts: u32,
    deadline: Instant,
}

impl Waiter {
    fn resolve(self, result: Result<LogIndex, ProposeError>) {
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    warn!("a proposal of {} bytes made with ProposalSender::send failed: {e}", self.data.len());
                }
            }
        }
    }
}

pub(crate) struct Waiters {
    next_id: u64,
    retries_max: u32,
    /// Proposals to hand to raft-core in the next `Input::Propose`.
    batch: Vec<Proposal>,
    unanswered: HashMap<ProposalId, Waiter>,
    /// By (index, term): two attempts may be accepted at one index by the
    /// leaders of two terms, and neither is decided until the index commits.
    accepted: BTreeMap<(LogIndex, Term), Waiter>,
    /// Proposals that never left this node, to propose again at the next
    /// sweep (not counted as attempts: they cannot be duplicates).
    parked: Vec<Waiter>,
}

impl Waiters {
    pub fn new(retries_max: u32) -> Waiters {
        Waiters {
            next_id: 1,
            retries_max,
            batch: Vec::new(),
            unanswered: HashMap::new(),
            accepted: BTreeMap::new(),
            parked: Vec::new(),
        }
    }

    /// Proposals whose fate is not known yet.
    pub fn in_flight(&self) -> usize {
        self.unanswered.len() + self.accepted.len() + self.parked.len()
    }

    /// Proposals waiting to be stepped.
    pub fn batch_len(&self) -> usize {
        self.batch.len()
    }

    /// Takes proposals to step as one input, if any: as many as fit in
    /// `bytes_max`, counting `overhead` bytes each (always at least one).
    pub fn take_batch(&mut self, bytes_max: usize, overhead: usize) -> Option<Vec<Proposal>> {
        let mut bytes = 0;
        let fit = self
            .batch
            .iter()
            .position(|p| {
                bytes += p.data.len() + overhead;
                bytes > bytes_max
            })
            .unwrap_or(self.batch.len())
            .max(1);
        if fit >= self.batch.len() {
            return (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch));
        }
        let rest = self.batch.split_off(fit);
        Some(std::mem::replace(&mut self.batch, rest))
    }

    /// A new proposal from the API. One that waited in the queue past its
    /// deadline is not proposed: it never reached raft-core.
    pub fn add(&mut self, request: ProposeRequest, now: Instant) {
        let waiter = Waiter { reply: request.reply, data: request.data, attempts: 0, deadline: request.deadline };
        if waiter.deadline <= now {
            waiter.resolve(Err(ProposeError::Busy));
            return;
        }
        self.enqueue(waiter);
    }

    fn enqueue(&mut self, waiter: Waiter) {
        let id = ProposalId(self.next_id);
        self.next_id += 1;
        self.batch.push(Proposal { id, data: waiter.data.clone() });
        self.unanswered.insert(id, waiter);
    }

    /// Proposes again if attempts remain; otherwise resolves with `error`.
    fn retry_or(&mut self, mut waiter: Waiter, error: ProposeError) {
        if waiter.attempts < self.retries_max {
            waiter.attempts += 1;
            self.enqueue(waiter);
        } else {
            waiter.resolve(Err(error));
        }
    }

    pub fn on_accepted(&mut self, id: ProposalId, term: Term, index: LogIndex) {
        let Some(waiter) = self.unanswered.remove(&id) else { return };
        self.accepted.insert((index, term), waiter);
    }

    /// A refusal. `QueueFull` comes from the bounded queue of a node that
    /// knows no leader, or from a leader's backlog: `leader_known` tells
    /// which.
    pub fn on_rejected(&mut self, id: ProposalId, reason: Rejection, leader_known: bool) {
        let Some(waiter) = self.unanswered.remove(&id) else { return };
        match reason {
            Rejection::NotLeader { leader_hint } => self.retry_or(waiter, ProposeError::NotLeader { leader_hint }),
            Rejection::QueueFull if leader_known => waiter.resolve(Err(ProposeError::Busy)),
            Rejection::QueueFull => waiter.resolve(Err(ProposeError::NoLeader)),
            Rejection::TooLarge => waiter.resolve(Err(ProposeError::TooLarge)),
            // The leader hands over its leadership and did not append it:
            // propose again at the next sweep (100 ms on), when this node
            // forwards it to the new leader, or takes it again itself if
            // the transfer failed. Not an attempt: it cannot be a duplicate,
            // and the deadline bounds the waiting.
            Rejection::Transferring { .. } => self.parked.push(waiter),
        }
    }

    /// After a batch: answers every accepted proposal whose index has been
    /// handed to the entry receiver, as raft-core judges its fate
    /// (committed, or lost and proposed again).
    pub fn settle(&mut self, state: &State) {
        let delivered = state.delivered_index();
        let due: Vec<(LogIndex, Term)> =
            self.accepted.range(..=(delivered, Term(u64::MAX))).map(|(&key, _)| key).collect();
        for (index, term) in due {
            match state.proposal_fate(term, index) {
                ProposalFate::Committed => {
                    let waiter = self.accepted.remove(&(index, term)).expect("listed");
                    waiter.resolve(Ok(index));
                }
                ProposalFate::Lost => {
                    let waiter = self.accepted.remove(&(index, term)).expect("listed");
                    self.retry_or(waiter, ProposeError::Lost);
                }
                // Delivered means committed, so only an index below the
                // log's start (after compaction) is undecided: it waits for
                // its deadline.
                ProposalFate::Pending => {}
            }
        }
    }

    /// Forwarded proposals the transport could not send.
    pub fn on_unsent(&mut self, ids: Vec<ProposalId>) {
        for id in ids {
            if let Some(w) = self.unanswered.remove(&id) {
                self.parked.push(w);
            }
        }
    }

    /// The sweep: resolves every proposal past its deadline with `Timeout`,
    /// and proposes the parked ones again. Paced by the sweep interval, so
    /// that a follower that still names a dead leader does not spin.
    pub fn expire(&mut self, now: Instant) {
        for w in std::mem::take(&mut self.parked) {
            if w.deadline <= now {
                w.resolve(Err(ProposeError::Timeout));
            } else {
                self.enqueue(w);
            }
        }
        let late: Vec<ProposalId> =
            self.unanswered.iter().filter(|(_, w)| w.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(w) = self.unanswered.remove(&id) {
                w.resolve(Err(ProposeError::Timeout));
            }
        }
        let late: Vec<(LogIndex, Term)> =
            self.accepted.iter().filter(|(_, w)| w.deadline <= now).map(|(&key, _)| key).collect();
        for key in late {
            if let Some(w) = self.accepted.remove(&key) {
                w.resolve(Err(ProposeError::Timeout));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{AppendEntries, Config, Entry, Input, Membership, Message, NodeId};
    use std::time::Duration;

    fn request_until(deadline: Instant) -> (ProposeRequest, oneshot::Receiver<Result<LogIndex, ProposeError>>) {
        let (tx, rx) = oneshot::channel();
        (ProposeRequest { data: b"x".to_vec(), reply: Some(tx), deadline }, rx)
    }

    fn request() -> (ProposeRequest, oneshot::Receiver<Result<LogIndex, ProposeError>>) {
        request_until(Instant::now() + Duration::from_secs(10))
    }

    /// Node 1 of three, following node 2 in term 2, whose log holds
    /// commands of term 1 at 1 to 4 and term 2's no-op at 5, committed (and
    /// delivered) up to `commit`.
    fn follower(commit: u64) -> State {
        let config = Config::new(NodeId(1));
        let members = Membership::new([NodeId(1), NodeId(2), NodeId(3)]).unwrap();
        let (mut state, _) = State::new(&config, members);
        let mut entries: Vec<Entry> = (0..4).map(|_| Entry::command(Term(1), b"x".to_vec())).collect();
        entries.push(Entry::noop(Term(2)));
        let append = AppendEntries {
            term: Term(2),
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries,
            leader_commit: LogIndex(commit),
        };
        let input = Input::Receive { from: NodeId(2), message: Message::AppendEntries(append) };
        state.step(&config, input, &mut Vec::new());
        assert_eq!(state.delivered_index(), LogIndex(commit));
        state
    }

    #[test]
    fn not_leader_is_retried_under_a_new_id_then_commits() {
        let mut w = Waiters::new(2);
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let first = w.take_batch(usize::MAX, 0).unwrap();
        w.on_rejected(first[0].id, Rejection::NotLeader { leader_hint: None }, true);
        let second = w.take_batch(usize::MAX, 0).expect("proposed again");
        assert_ne!(second[0].id, first[0].id);
        assert_eq!(second[0].data, b"x");
        w.on_accepted(second[0].id, Term(1), LogIndex(4));
        w.settle(&follower(3));
        assert!(rx.try_recv().is_err(), "accepted is not committed");
        w.settle(&follower(4));
        assert_eq!(rx.try_recv().unwrap(), Ok(LogIndex(4)));
    }

    #[test]
    fn batches_are_cut_to_the_byte_bound_but_never_empty() {
        let mut w = Waiters::new(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        for len in [10, 10, 10, 50] {
            w.add(ProposeRequest { data: vec![0; len], reply: None, deadline }, Instant::now());
        }
        let sizes = |b: Vec<Proposal>| b.iter().map(|p| p.data.len()).collect::<Vec<_>>();
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![10, 10]);
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![10]);
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![50], "one proposal over the bound still goes");
        assert!(w.take_batch(40, 4).is_none());
    }

    #[test]
    fn retries_are_bounded() {
        let mut w = Waiters::new(1);
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        for _ in 0..2 {
            let batch = w.take_batch(usize::MAX, 0).unwrap();
            w.on_rejected(batch[0].id, Rejection::NotLeader { leader_hint: Some(NodeId(3)) }, true);
        }
        assert!(w.take_batch(usize::MAX, 0).is_none());
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::NotLeader { leader_hint: Some(NodeId(3)) }));
    }

    #[test]
    fn an_entry_of_another_term_at_its_index_means_lost_and_retried() {
        let mut w = Waiters::new(1);
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        // Appended at 3 by a leader of term 2; term 1's entry committed there.
        w.on_accepted(batch[0].id, Term(2), LogIndex(3));
        w.settle(&follower(4));
        assert!(w.take_batch(usize::MAX, 0).is_some(), "proposed again: it can no longer commit at 3");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn two_attempts_accepted_at_one_index_are_both_kept_until_it_commits() {
        let mut w = Waiters::new(0);
        let (first, mut first_rx) = request();
        let (second, mut second_rx) = request();
        w.add(first, Instant::now());
        w.add(second, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        w.on_accepted(batch[0].id, Term(1), LogIndex(4));
        w.on_accepted(batch[1].id, Term(2), LogIndex(4));
        w.settle(&follower(4));
        assert_eq!(first_rx.try_recv().unwrap(), Ok(LogIndex(4)));
        assert_eq!(second_rx.try_recv().unwrap(), Err(ProposeError::Lost));
    }

    #[test]
    fn a_no_op_committed_at_its_index_settles_as_lost() {
        let mut w = Waiters::new(0);
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        w.on_accepted(batch[0].id, Term(1), LogIndex(5));
        // Index 5 is not committed yet: undecided.
        w.settle(&follower(4));
        assert!(rx.try_recv().is_err());
        // Term 2's no-op committed at 5 (never delivered: the delivered
        // index passes it).
        w.settle(&follower(5));
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::Lost));
    }

    #[test]
    fn unanswered_proposals_time_out_at_their_deadline() {
        let mut w = Waiters::new(3);
        let start = Instant::now();
        let (req, mut rx) = request_until(start + Duration::from_millis(100));
        w.add(req, start);
        w.take_batch(usize::MAX, 0);
        w.expire(start + Duration::from_millis(99));
        assert!(rx.try_recv().is_err());
        w.expire(start + Duration::from_millis(100));
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::Timeout));
    }

    #[test]
    fn a_proposal_taken_after_its_deadline_is_not_proposed() {
        let mut w = Waiters::new(3);
        let start = Instant::now();
        let (req, mut rx) = request_until(start);
        w.add(req, start + Duration::from_millis(1));
        assert!(w.take_batch(usize::MAX, 0).is_none());
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::Busy));
    }

    #[test]
    fn queue_full_means_no_leader_only_when_none_is_known() {
        let mut w = Waiters::new(0);
        let (a, mut a_rx) = request();
        let (b, mut b_rx) = request();
        w.add(a, Instant::now());
        w.add(b, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        w.on_rejected(batch[0].id, Rejection::QueueFull, false);
        w.on_rejected(batch[1].id, Rejection::QueueFull, true);
        assert_eq!(a_rx.try_recv().unwrap(), Err(ProposeError::NoLeader));
        assert_eq!(b_rx.try_recv().unwrap(), Err(ProposeError::Busy));
    }
}
