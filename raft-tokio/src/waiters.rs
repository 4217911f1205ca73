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
        }
    }

    /// Proposals waiting to be stepped.
    pub fn batch_len(&self) -> usize {
        self.batch.len()
    }

    /// Takes the proposals to step, if any.
    pub fn take_batch(&mut self) -> Option<Vec<Proposal>> {
        (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch))
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

    /// Resolves every proposal past its deadline with `Timeout`.
    pub fn expire(&mut self, now: Instant) {
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
