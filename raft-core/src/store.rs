//! The one in-memory store of what a node persisted.
//!
//! A driver executes every `Persist` output against its storage; this is
//! that storage kept in memory, checked against the contract. The model
//! checker keeps it as a node's durable state across crashes, the
//! simulators and tests use it as their disk, and raft-tokio's memory
//! storage is one. [`State::recover`](crate::State::recover) starts a node
//! from it.

use crate::io::{Output, Persist};
use crate::log::Log;
use crate::membership::Membership;
use crate::snapshot::SnapshotMeta;
use crate::state::State;
use crate::types::{HardState, LogIndex, Term};
use core::fmt;
use serde::{Deserialize, Serialize};

/// What a node has persisted: its term and vote (one record), its
/// membership, its latest snapshot's metadata, and its log after the
/// compaction point.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoryStore {
    /// The last term-and-vote record written.
    pub hard: HardState,
    /// The last membership written: the one in force before the log's
    /// configuration entries (none before the node's first step).
    pub membership: Option<Membership>,
    /// The last snapshot recorded (the data is the driver's to keep).
    pub snapshot: Option<SnapshotMeta>,
    /// The log entries written and not compacted.
    pub log: Log,
}

/// A persist that breaks the contract of the step function: a bug in the
/// core (or a fault switch), never the driver's or a peer's doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The term went down.
    TermLowered {
        /// The stored term.
        stored: Term,
        /// The lower term written.
        written: Term,
    },
    /// A truncation outside the stored log.
    TruncateOutsideLog {
        /// The first index to remove.
        from: LogIndex,
        /// The stored log's last index.
        last_index: LogIndex,
    },
    /// A snapshot older than the one recorded.
    SnapshotGoesBack {
        /// The index of the snapshot recorded.
        stored: LogIndex,
        /// The index of the older one written.
        written: LogIndex,
    },
    /// A compaction behind the compaction point, past the snapshot
    /// recorded, or through an entry held with another term.
    BadCompaction {
        /// The last index to remove.
        through: LogIndex,
        /// The stored log's compaction point.
        compacted: LogIndex,
    },
    /// An append that does not start just past the stored log.
    AppendNotAtEnd {
        /// Where the append starts.
        first: LogIndex,
        /// The stored log's last index.
        last_index: LogIndex,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TermLowered { stored, written } => write!(f, "term lowered from {stored} to {written}"),
            StoreError::TruncateOutsideLog { from, last_index } => {
                write!(f, "truncation from {from} of a log ending at {last_index}")
            }
            StoreError::SnapshotGoesBack { stored, written } => {
                write!(f, "a snapshot at {written} is older than the one recorded at {stored}")
            }
            StoreError::BadCompaction { through, compacted } => write!(
                f,
                "a compaction through {through} (compacted through {compacted}) is behind the log's start, past the snapshot, or of the wrong term"
            ),
            StoreError::AppendNotAtEnd { first, last_index } => {
                write!(f, "an append at {first} must land just past the log's end, {last_index}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl MemoryStore {
    /// An empty store: what a brand-new node has.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The durable part of a state, as a correct driver would have stored it.
    pub fn of(state: &State) -> MemoryStore {
        MemoryStore {
            hard: state.hard_state(),
            membership: Some(state.base_membership().clone()),
            snapshot: state.snapshot().cloned(),
            log: state.log().clone(),
        }
    }

    /// Executes one persist. One that breaks the contract is refused and
    /// the store left unchanged.
    pub fn apply(&mut self, persist: &Persist) -> Result<(), StoreError> {
        let last_index = self.log.last_index();
        match persist {
            Persist::HardState(hard) => {
                if hard.term < self.hard.term {
                    return Err(StoreError::TermLowered { stored: self.hard.term, written: hard.term });
                }
                self.hard = *hard;
            }
            Persist::Membership(m) => self.membership = Some(m.clone()),
            Persist::Truncate { from } => {
                if *from <= self.log.compacted_index() || *from > last_index {
                    return Err(StoreError::TruncateOutsideLog { from: *from, last_index });
                }
                self.log.truncate_from(*from);
            }
            Persist::Append { first, entries } => {
                if *first != last_index.next() {
                    return Err(StoreError::AppendNotAtEnd { first: *first, last_index });
                }
                self.log.extend(entries.iter().cloned());
            }
            Persist::Snapshot(meta) => {
                let stored = self.snapshot.as_ref().map_or(LogIndex(0), |s| s.index);
                if meta.index < stored {
                    return Err(StoreError::SnapshotGoesBack { stored, written: meta.index });
                }
                self.snapshot = Some(meta.clone());
            }
            Persist::Compact { through, term } => {
                let compacted = self.log.compacted_index();
                let covered = self.snapshot.as_ref().is_some_and(|s| s.index >= *through);
                let wrong_term = self.log.term_at(*through).is_some_and(|t| t != *term);
                if *through <= compacted || !covered || wrong_term {
                    return Err(StoreError::BadCompaction { through: *through, compacted });
                }
                self.log.compact_through(*through, *term);
            }
        }
        Ok(())
    }

    /// Executes every persist of an output list, in order, background ones
    /// included, stopping at the first that breaks the contract. Returns
    /// the completion to report for the last `PersistAsync` executed, if
    /// any: a driver that writes everything at once feeds it back as
    /// [`Input::Persisted`](crate::Input::Persisted).
    pub fn apply_all(&mut self, outputs: &[Output]) -> Result<Option<crate::Input>, StoreError> {
        let mut report = None;
        for o in outputs {
            match o {
                Output::Persist(p) => self.apply(p)?,
                Output::PersistAsync { persist, term, index } => {
                    self.apply(persist)?;
                    report = Some(crate::Input::Persisted { term: *term, index: *index });
                }
                _ => {}
            }
        }
        Ok(report)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} log {:?}", self.hard, self.log)?;
        if let Some(s) = &self.snapshot {
            write!(f, " {s:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Entry;

    #[test]
    fn refuses_persists_that_break_the_contract() {
        let mut store = MemoryStore::new();
        let append = |first: u64, terms: &[u64]| Persist::Append {
            first: LogIndex(first),
            entries: terms.iter().map(|&t| Entry::noop(Term(t))).collect(),
        };
        store.apply(&Persist::HardState(HardState { term: Term(2), voted_for: None })).unwrap();
        store.apply(&append(1, &[1, 2])).unwrap();
        assert_eq!(
            store.apply(&append(4, &[2])),
            Err(StoreError::AppendNotAtEnd { first: LogIndex(4), last_index: LogIndex(2) })
        );
        assert_eq!(
            store.apply(&Persist::Truncate { from: LogIndex(3) }),
            Err(StoreError::TruncateOutsideLog { from: LogIndex(3), last_index: LogIndex(2) })
        );
        let lowered = Persist::HardState(HardState { term: Term(1), voted_for: None });
        assert_eq!(store.apply(&lowered), Err(StoreError::TermLowered { stored: Term(2), written: Term(1) }));
        store.apply(&Persist::Truncate { from: LogIndex(2) }).unwrap();
        assert_eq!(store.log.last_index(), LogIndex(1));
        assert_eq!(store.hard.term, Term(2));
    }
}
