//! Proposals made at this node, from the call until their fate is known.
//!
//! raft-core answers a proposal in two steps: `ProposalAccepted` (the leader
//! appended it at term t, index i) or `ProposalRejected`; then the entry is
//! committed when an entry is delivered at i with term t, and lost if a
//! different entry is delivered at i (or a no-op, which is not delivered, is
//! committed there). This module keeps the callers' replies until then.
//!
//! Retrying is safe in exactly two cases, which are the ones retried (up to
//! `proposal_retries_max` times, under a new proposal id):
//! - refused with `NotLeader`: the refusing node did not append it;
//! - lost: another entry was committed at its index, so it can never commit.
//!
//! A proposal that is never answered (its Forward or the answer was lost on
//! the way) times out: the caller learns its fate is unknown.

use crate::api::ProposeError;
use raft_core::{Committed, LogIndex, Proposal, ProposalId, Rejection, State, Term};
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
    timeout: std::time::Duration,
    /// Proposals to hand to raft-core in the next `Input::Propose`.
    batch: Vec<Proposal>,
    unanswered: HashMap<ProposalId, Waiter>,
    accepted: BTreeMap<LogIndex, (Term, Waiter)>,
    /// Proposals that never left this node, to propose again at the next
    /// sweep (not counted as attempts: they cannot be duplicates).
    parked: Vec<Waiter>,
}

impl Waiters {
    pub fn new(retries_max: u32, timeout: std::time::Duration) -> Waiters {
        Waiters {
            next_id: 1,
            retries_max,
            timeout,
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

    /// A new proposal from the API.
    pub fn add(&mut self, request: ProposeRequest, now: Instant) {
        let waiter = Waiter { reply: request.reply, data: request.data, attempts: 0, deadline: now + self.timeout };
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

    pub fn on_accepted(&mut self, id: ProposalId, term: Term, index: LogIndex, state: &State) {
        let Some(waiter) = self.unanswered.remove(&id) else { return };
        if index <= state.delivered_index() {
            // Its index was delivered before the answer arrived: the log
            // says whether our entry is the one there.
            if state.log().term_at(index) == Some(term) {
                waiter.resolve(Ok(index));
            } else {
                self.retry_or(waiter, ProposeError::Lost);
            }
            return;
        }
        self.accepted.insert(index, (term, waiter));
    }

    pub fn on_rejected(&mut self, id: ProposalId, reason: Rejection) {
        let Some(waiter) = self.unanswered.remove(&id) else { return };
        match reason {
            Rejection::NotLeader { leader_hint } => self.retry_or(waiter, ProposeError::NotLeader { leader_hint }),
            Rejection::QueueFull => waiter.resolve(Err(ProposeError::NoLeader)),
            Rejection::TooLarge => waiter.resolve(Err(ProposeError::TooLarge)),
        }
    }

    pub fn on_delivered(&mut self, committed: &[Committed]) {
        for c in committed {
            if let Some((term, waiter)) = self.accepted.remove(&c.index) {
                if term == c.term {
                    waiter.resolve(Ok(c.index));
                } else {
                    self.retry_or(waiter, ProposeError::Lost);
                }
            }
        }
    }

    /// After a batch: every accepted proposal at or below the delivered
    /// index that was not delivered lost its place (a no-op or an entry of
    /// another term was committed there).
    pub fn settle(&mut self, delivered: LogIndex) {
        while let Some(entry) = self.accepted.first_entry() {
            if *entry.key() > delivered {
                break;
            }
            let (_, waiter) = entry.remove();
            self.retry_or(waiter, ProposeError::Lost);
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
        let late: Vec<LogIndex> =
            self.accepted.iter().filter(|(_, (_, w))| w.deadline <= now).map(|(i, _)| *i).collect();
        for index in late {
            if let Some((_, w)) = self.accepted.remove(&index) {
                w.resolve(Err(ProposeError::Timeout));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Config, NodeId};
    use std::time::Duration;

    fn request() -> (ProposeRequest, oneshot::Receiver<Result<LogIndex, ProposeError>>) {
        let (tx, rx) = oneshot::channel();
        (ProposeRequest { data: b"x".to_vec(), reply: Some(tx) }, rx)
    }

    fn fresh_state() -> State {
        State::new(&Config::new(NodeId(1), [NodeId(1), NodeId(2), NodeId(3)]).unwrap()).0
    }

    fn committed(index: u64, term: u64) -> Committed {
        Committed { index: LogIndex(index), term: Term(term), data: b"x".to_vec() }
    }

    #[test]
    fn not_leader_is_retried_under_a_new_id_then_commits() {
        let mut w = Waiters::new(2, Duration::from_secs(10));
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let first = w.take_batch(usize::MAX, 0).unwrap();
        w.on_rejected(first[0].id, Rejection::NotLeader { leader_hint: None });
        let second = w.take_batch(usize::MAX, 0).expect("proposed again");
        assert_ne!(second[0].id, first[0].id);
        assert_eq!(second[0].data, b"x");
        w.on_accepted(second[0].id, Term(2), LogIndex(5), &fresh_state());
        assert!(rx.try_recv().is_err(), "accepted is not committed");
        w.on_delivered(&[committed(5, 2)]);
        assert_eq!(rx.try_recv().unwrap(), Ok(LogIndex(5)));
    }

    #[test]
    fn batches_are_cut_to_the_byte_bound_but_never_empty() {
        let mut w = Waiters::new(0, Duration::from_secs(10));
        for len in [10, 10, 10, 50] {
            w.add(ProposeRequest { data: vec![0; len], reply: None }, Instant::now());
        }
        let sizes = |b: Vec<Proposal>| b.iter().map(|p| p.data.len()).collect::<Vec<_>>();
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![10, 10]);
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![10]);
        assert_eq!(sizes(w.take_batch(40, 4).unwrap()), vec![50], "one proposal over the bound still goes");
        assert!(w.take_batch(40, 4).is_none());
    }

    #[test]
    fn retries_are_bounded() {
        let mut w = Waiters::new(1, Duration::from_secs(10));
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        for _ in 0..2 {
            let batch = w.take_batch(usize::MAX, 0).unwrap();
            w.on_rejected(batch[0].id, Rejection::NotLeader { leader_hint: Some(NodeId(3)) });
        }
        assert!(w.take_batch(usize::MAX, 0).is_none());
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::NotLeader { leader_hint: Some(NodeId(3)) }));
    }

    #[test]
    fn an_entry_of_another_term_at_its_index_means_lost_and_retried() {
        let mut w = Waiters::new(1, Duration::from_secs(10));
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        w.on_accepted(batch[0].id, Term(2), LogIndex(5), &fresh_state());
        w.on_delivered(&[committed(5, 3)]);
        assert!(w.take_batch(usize::MAX, 0).is_some(), "proposed again: it can no longer commit at 5");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_skipped_index_settles_as_lost() {
        let mut w = Waiters::new(0, Duration::from_secs(10));
        let (req, mut rx) = request();
        w.add(req, Instant::now());
        let batch = w.take_batch(usize::MAX, 0).unwrap();
        w.on_accepted(batch[0].id, Term(2), LogIndex(5), &fresh_state());
        // Index 5 committed as a no-op (never delivered): the node's
        // delivered index passes it.
        w.settle(LogIndex(4));
        assert!(rx.try_recv().is_err());
        w.settle(LogIndex(6));
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::Lost));
    }

    #[test]
    fn unanswered_proposals_time_out() {
        let mut w = Waiters::new(3, Duration::from_millis(100));
        let start = Instant::now();
        let (req, mut rx) = request();
        w.add(req, start);
        w.take_batch(usize::MAX, 0);
        w.expire(start + Duration::from_millis(99));
        assert!(rx.try_recv().is_err());
        w.expire(start + Duration::from_millis(100));
        assert_eq!(rx.try_recv().unwrap(), Err(ProposeError::Timeout));
    }
}
