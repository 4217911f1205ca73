//! A leader's view of one follower's log (Figure 2, "Volatile state on
//! leaders"), with the transitions of how the leader sends to it, in the
//! manner of etcd's tracker: the rules read as verbs on the type.
//!
//! ```text
//!   new ──> Probe ──(an append succeeds)──> Replicate
//!            ^ │                                │
//!            │ └────(an append is rejected)─────┘
//!            │ │
//!            │ └──(the entries it needs are compacted)──> Snapshot
//!            │                                               │
//!            └──(regressed)        Replicate <──(answered)───┘
//! ```

use crate::types::LogIndex;
use core::fmt;
use serde::{Deserialize, Serialize};

/// What a leader knows of one follower's log, and how it sends to it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    next_index: LogIndex,
    match_index: LogIndex,
    mode: Mode,
    /// The follower answered since the leader's last check-quorum (thesis
    /// §6.2). Always false with check-quorum off.
    active: bool,
}

/// How a leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// The match point is unknown: one append at a time, waiting for its
    /// answer (`sent`), until one succeeds.
    Probe {
        /// An append was sent and not yet answered.
        sent: bool,
    },
    /// The follower is known to match up to `match_index`: new entries are
    /// streamed as they arrive, up to `Config::inflight_entries_max` ahead.
    Replicate,
    /// The follower needs entries the leader has compacted: its snapshot
    /// at `index` was sent, and nothing else is until the follower answers
    /// (the heartbeat sends the snapshot again).
    Snapshot {
        /// The index of the snapshot sent.
        index: LogIndex,
    },
}

impl Progress {
    /// A follower a new leader knows nothing of: probed from `next_index`
    /// (just past the leader's log).
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress { next_index, match_index: LogIndex(0), mode: Mode::Probe { sent: false }, active: false }
    }

    /// Whether the follower answered since the last check-quorum.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The follower answered this leader.
    pub(crate) fn heard_from(&mut self) {
        self.active = true;
    }

    /// A check-quorum passed: every follower must answer again before the next.
    pub(crate) fn forget_heard(&mut self) {
        self.active = false;
    }

    /// The next index to send.
    pub fn next_index(&self) -> LogIndex {
        self.next_index
    }
    /// The highest index known to match the leader's log.
    pub fn match_index(&self) -> LogIndex {
        self.match_index
    }
    /// How the leader sends to this follower.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Entries sent and not yet acknowledged (in replicate mode).
    pub(crate) fn in_flight(&self) -> u64 {
        self.next_index.0 - self.match_index.0 - 1
    }

    /// Whether the leader must not send entries now: a probe is out, or as
    /// many entries as `inflight_max` allows are in flight.
    pub(crate) fn is_paused(&self, inflight_max: u64) -> bool {
        match self.mode {
            Mode::Probe { sent } => sent,
            Mode::Replicate => self.in_flight() >= inflight_max,
            Mode::Snapshot { .. } => true,
        }
    }

    /// An append carrying `entries` entries was sent from `next_index`. A
    /// probe waits for its answer; in replicate mode the next append follows
    /// on from these entries.
    pub(crate) fn sent(&mut self, entries: u64) {
        match self.mode {
            Mode::Probe { .. } => self.mode = Mode::Probe { sent: true },
            Mode::Replicate => self.next_index = LogIndex(self.next_index.0 + entries),
            Mode::Snapshot { .. } => {}
        }
    }

    /// The leader's snapshot at `index` was sent: nothing more is sent until
    /// the follower answers, and then from past the snapshot.
    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.next_index = self.next_index.max(index.next());
        self.mode = Mode::Snapshot { index };
    }

    /// The follower reported a log ending at `last_index`, before what it
    /// had acknowledged: what it acknowledged is no longer known to match,
    /// so it is probed again from past its end.
    pub(crate) fn regressed(&mut self, last_index: LogIndex) {
        self.match_index = LogIndex(0);
        self.next_index = last_index.next();
        self.mode = Mode::Probe { sent: false };
    }

    /// The follower acknowledged a match up to `index`: the leader now knows
    /// where it stands and streams to it. A late acknowledgement never lowers
    /// what is known. Returns whether the match point moved.
    pub(crate) fn acknowledged(&mut self, index: LogIndex) -> bool {
        let moved = index > self.match_index;
        self.match_index = self.match_index.max(index);
        self.next_index = self.next_index.max(index.next());
        self.mode = Mode::Replicate;
        moved
    }

    /// The follower refused an append: probe again from `next_index`,
    /// which must lie past the match point.
    pub(crate) fn become_probe(&mut self, next_index: LogIndex) {
        assert!(next_index > self.match_index, "probing at or below the match point");
        self.next_index = next_index;
        self.mode = Mode::Probe { sent: false };
    }

    /// Whether a rejection of the append whose previous index is
    /// `rejected_index` answers an append this leader still waits on (a
    /// late or duplicated one is ignored).
    pub(crate) fn expects_rejection_at(&self, rejected_index: LogIndex) -> bool {
        match self.mode {
            Mode::Probe { .. } => rejected_index == self.next_index.prev(),
            Mode::Replicate => rejected_index > self.match_index && rejected_index < self.next_index,
            Mode::Snapshot { .. } => false,
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "match {} next {} {:?}", self.match_index, self.next_index, self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate_then_probe_again() {
        let mut p = Progress::new(LogIndex(5));
        assert!(!p.is_paused(8));
        p.sent(1);
        assert!(p.is_paused(8), "one probe at a time");
        assert!(p.expects_rejection_at(LogIndex(4)) && !p.expects_rejection_at(LogIndex(3)));
        assert!(p.acknowledged(LogIndex(5)));
        assert_eq!((p.match_index(), p.next_index(), p.mode()), (LogIndex(5), LogIndex(6), Mode::Replicate));
        p.sent(3);
        assert_eq!((p.next_index(), p.in_flight()), (LogIndex(9), 3));
        assert!(p.is_paused(3) && !p.is_paused(4));
        assert!(!p.acknowledged(LogIndex(4)), "a late acknowledgement moves nothing");
        assert_eq!(p.next_index(), LogIndex(9));
        assert!(p.expects_rejection_at(LogIndex(7)) && !p.expects_rejection_at(LogIndex(5)));
        p.become_probe(LogIndex(6));
        assert_eq!(p.mode(), Mode::Probe { sent: false });
    }

    #[test]
    fn a_snapshot_pauses_until_answered() {
        let mut p = Progress::new(LogIndex(20));
        p.become_snapshot(LogIndex(10));
        assert!(p.is_paused(u64::MAX), "nothing is sent while a snapshot is out");
        assert!(!p.expects_rejection_at(LogIndex(19)), "appends' rejections are not awaited");
        p.acknowledged(LogIndex(10));
        assert_eq!((p.match_index(), p.next_index(), p.mode()), (LogIndex(10), LogIndex(20), Mode::Replicate));
        p.regressed(LogIndex(3));
        assert_eq!(
            (p.match_index(), p.next_index(), p.mode()),
            (LogIndex(0), LogIndex(4), Mode::Probe { sent: false })
        );
    }

    #[test]
    #[should_panic(expected = "probing at or below the match point")]
    fn never_probes_below_the_match_point() {
        let mut p = Progress::new(LogIndex(3));
        p.acknowledged(LogIndex(3));
        p.become_probe(LogIndex(3));
    }
}
