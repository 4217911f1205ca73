//! Linearizable reads for the application: the driver's side of raft-core's
//! ReadIndex (`Input::Read`, `Output::ReadReady` / `ReadRejected`).
//!
//! A read request waits here until raft-core says it may be served. It is
//! then answered with a *barrier*: the index of the last command handed to
//! the entry receiver. Every command up to the read index was handed over
//! before the answer (raft-core emits `Deliver` before `ReadReady`), so once
//! the application has applied through the barrier, its state reflects every
//! write committed before the read was asked for.

use raft_core::{LogIndex, ReadId, Rejection};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Why a read could not be confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The node is not running.
    Stopped,
    /// Every attempt found no leader that could confirm it leads.
    NoLeader,
    /// Not confirmed within `RaftParams::proposal_timeout`.
    Timeout,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Stopped => write!(f, "the node is not running"),
            ReadError::NoLeader => write!(f, "no leader could confirm the read"),
            ReadError::Timeout => write!(f, "the read was not confirmed in time"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A read request on its way to the node loop.
pub(crate) struct ReadRequest {
    pub reply: oneshot::Sender<Result<LogIndex, ReadError>>,
}

struct Waiting {
    reply: oneshot::Sender<Result<LogIndex, ReadError>>,
    deadline: Instant,
    attempts: u32,
}

/// The reads the node loop holds.
pub(crate) struct ReadWaiters {
    next_id: u64,
    waiting: BTreeMap<ReadId, Waiting>,
    /// Reads to step as one `Input::Read` in the next batch.
    to_send: Vec<ReadId>,
    /// Refused reads, asked again at the next sweep (a node without a
    /// leader refuses at once; asking again at once would spin).
    retry_later: Vec<ReadId>,
    retries_max: u32,
    timeout: Duration,
}

impl ReadWaiters {
    pub fn new(retries_max: u32, timeout: Duration) -> ReadWaiters {
        ReadWaiters {
            next_id: 1,
            waiting: BTreeMap::new(),
            to_send: Vec::new(),
            retry_later: Vec::new(),
            retries_max,
            timeout,
        }
    }

    /// Reads held (for the in-flight bound).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn add(&mut self, request: ReadRequest, now: Instant) {
        let id = ReadId(self.next_id);
        self.next_id += 1;
        self.waiting.insert(id, Waiting { reply: request.reply, deadline: now + self.timeout, attempts: 0 });
        self.to_send.push(id);
    }

    /// Whether reads wait to be stepped.
    pub fn has_batch(&self) -> bool {
        !self.to_send.is_empty()
    }

    /// The reads to step now, if any.
    pub fn take_batch(&mut self) -> Option<Vec<ReadId>> {
        (!self.to_send.is_empty()).then(|| std::mem::take(&mut self.to_send))
    }

    pub fn on_ready(&mut self, id: ReadId, barrier: LogIndex) {
        if let Some(w) = self.waiting.remove(&id) {
            let _ = w.reply.send(Ok(barrier));
        }
    }

    pub fn on_rejected(&mut self, id: ReadId, _reason: Rejection) {
        let Some(w) = self.waiting.get_mut(&id) else { return };
        if w.attempts < self.retries_max {
            w.attempts += 1;
            self.retry_later.push(id);
        } else if let Some(w) = self.waiting.remove(&id) {
            let _ = w.reply.send(Err(ReadError::NoLeader));
        }
    }

    /// Asks again for refused reads and answers expired ones.
    pub fn sweep(&mut self, now: Instant) {
        self.to_send.append(&mut self.retry_later);
        let expired: Vec<ReadId> = self.waiting.iter().filter(|(_, w)| w.deadline <= now).map(|(&id, _)| id).collect();
        for id in expired {
            if let Some(w) = self.waiting.remove(&id) {
                let _ = w.reply.send(Err(ReadError::Timeout));
            }
        }
        self.to_send.retain(|id| self.waiting.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_reads_are_asked_again_then_given_up() {
        let mut w = ReadWaiters::new(1, Duration::from_secs(10));
        let (tx, mut rx) = oneshot::channel();
        let now = Instant::now();
        w.add(ReadRequest { reply: tx }, now);
        let ids = w.take_batch().unwrap();
        assert_eq!(ids.len(), 1);
        let refusal = Rejection::NotLeader { leader_hint: None };
        w.on_rejected(ids[0], refusal);
        assert!(w.take_batch().is_none(), "not asked again before the sweep");
        w.sweep(now);
        assert_eq!(w.take_batch(), Some(ids.clone()));
        w.on_rejected(ids[0], refusal);
        assert_eq!(rx.try_recv().unwrap(), Err(ReadError::NoLeader));
    }

    #[tokio::test]
    async fn ready_reads_get_their_barrier_and_late_ones_time_out() {
        let mut w = ReadWaiters::new(3, Duration::from_millis(10));
        let now = Instant::now();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        w.add(ReadRequest { reply: tx1 }, now);
        w.add(ReadRequest { reply: tx2 }, now);
        let ids = w.take_batch().unwrap();
        w.on_ready(ids[0], LogIndex(7));
        assert_eq!(rx1.try_recv().unwrap(), Ok(LogIndex(7)));
        w.sweep(now + Duration::from_millis(11));
        assert_eq!(rx2.try_recv().unwrap(), Err(ReadError::Timeout));
        assert_eq!(w.len(), 0);
    }
}
