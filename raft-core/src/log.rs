//! The replicated log, as held in memory by one node.
//!
//! Indexes start at 1. After compaction (§7) the log starts later:
//! `first_index() == compacted_index() + 1`, and the term of the entry at
//! the compacted index is kept so that the AppendEntries consistency check
//! works at the boundary. Compacted entries are committed and applied, and
//! covered by a snapshot; the compaction point may lag the snapshot's index
//! (entries kept for followers that lag a little, `Config::trailing_entries`).

use crate::types::{Entry, LogIndex, NodeId, Payload, Term};
use serde::{Deserialize, Serialize};

/// A node's log: a contiguous run of entries after a compaction point (0:
/// nothing compacted).
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Log {
    compacted_index: LogIndex,
    compacted_term: Term,
    entries: Vec<Entry>,
}

impl core::fmt::Debug for Log {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.compacted_index.0 > 0 {
            write!(f, "[..{}@{}] ", self.compacted_index, self.compacted_term)?;
        }
        f.debug_list().entries(&self.entries).finish()
    }
}

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// A log holding `entries` at indexes 1, 2, ...
    pub fn from_entries(entries: Vec<Entry>) -> Log {
        Log { compacted_index: LogIndex(0), compacted_term: Term(0), entries }
    }

    /// The index of the last entry compacted away (0: none).
    pub fn compacted_index(&self) -> LogIndex {
        self.compacted_index
    }

    /// The term of the last entry compacted away (0: none).
    pub fn compacted_term(&self) -> Term {
        self.compacted_term
    }

    /// The index of the first entry held.
    pub fn first_index(&self) -> LogIndex {
        self.compacted_index.next()
    }

    /// The index of the last entry (0 for an empty log).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.compacted_index.0 + self.entries.len() as u64)
    }

    /// The term of the last entry (0 for an empty log).
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.compacted_term, |e| e.term)
    }

    /// Number of entries held (not counting compacted ones).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The term of the entry at `index`: `Some(0)` for index 0, the
    /// compacted term at the compacted index, `None` when the index is past
    /// the end or before the compaction point.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.compacted_index {
            return Some(self.compacted_term);
        }
        self.get(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        let offset = self.offset(index)?;
        self.entries.get(offset)
    }

    /// The entries from `from` to `to` inclusive (both must be held).
    pub fn slice(&self, from: LogIndex, to: LogIndex) -> &[Entry] {
        match (self.offset(from), self.offset(to)) {
            (Some(a), Some(b)) if a <= b && b < self.entries.len() => &self.entries[a..=b],
            _ => &[],
        }
    }

    /// The same log with every node id in its configuration entries renamed
    /// by `node` and every command's bytes replaced by `command(bytes)` (see
    /// [`crate::State::renamed`]).
    pub fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId, command: &dyn Fn(&[u8]) -> Vec<u8>) -> Log {
        let entries = self
            .entries
            .iter()
            .map(|e| match &e.payload {
                Payload::Noop => e.clone(),
                Payload::Command(data) => Entry::command(e.term, command(data)),
                Payload::Membership(m) => Entry { term: e.term, payload: Payload::Membership(m.renamed(node)) },
            })
            .collect();
        Log { compacted_index: self.compacted_index, compacted_term: self.compacted_term, entries }
    }

    /// All entries held, first to last.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Appends one entry at `last_index() + 1`.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Appends entries at `last_index() + 1`.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        self.entries.extend(entries);
    }

    /// Removes the entries at `from` and after.
    ///
    /// # Panics
    /// When `from` is at or before the compacted index: compacted entries are
    /// committed and can never be truncated (our bug if asked).
    pub fn truncate_from(&mut self, from: LogIndex) {
        assert!(from > self.compacted_index, "truncating compacted entries at {from:?}");
        let keep = (from.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
    }

    /// Removes the entries at `through` and before (§7). When `through` is
    /// at or past the last entry, the log is left empty, starting after
    /// `through`, whose entry had `term` (installing a snapshot that covers
    /// the whole log). When it is held, `term` must be its term.
    ///
    /// # Panics
    /// When `through` is below the compaction point, or held with another
    /// term (our bug if asked).
    pub fn compact_through(&mut self, through: LogIndex, term: Term) {
        assert!(through >= self.compacted_index, "compacting behind the compaction point at {through:?}");
        if let Some(held) = self.term_at(through) {
            assert_eq!(held, term, "compacting through {through:?} with the wrong term");
        }
        let remove = ((through.0 - self.compacted_index.0) as usize).min(self.entries.len());
        self.entries.drain(..remove);
        self.compacted_index = through;
        self.compacted_term = term;
    }

    /// The first index of the run of entries with the same term as the entry
    /// at `index` (which must be held), walking back no further than the
    /// start of the log. Used for the conflict hint (§5.3).
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else { return index };
        let mut i = index;
        while i > self.first_index() && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index whose entry has term `term`, if any entry has it.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let pos = self.entries.iter().rposition(|e| e.term == term)?;
        Some(LogIndex(self.compacted_index.0 + 1 + pos as u64))
    }

    /// Whether a log ending at (`last_term`, `last_index`) is at least as
    /// up-to-date as this one (§5.4.1).
    pub fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    fn offset(&self, index: LogIndex) -> Option<usize> {
        if index <= self.compacted_index {
            return None;
        }
        let offset = (index.0 - self.compacted_index.0 - 1) as usize;
        (offset < self.entries.len()).then_some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(terms: &[u64]) -> Log {
        Log::from_entries(terms.iter().map(|&t| Entry::noop(Term(t))).collect())
    }

    #[test]
    fn indexes_and_terms() {
        let l = log(&[1, 1, 2, 3, 3]);
        assert_eq!(l.last_index(), LogIndex(5));
        assert_eq!(l.last_term(), Term(3));
        assert_eq!(l.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(l.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(l.term_at(LogIndex(6)), None);
        assert_eq!(l.first_index_of_term_at(LogIndex(5)), LogIndex(4));
        assert_eq!(l.first_index_of_term_at(LogIndex(2)), LogIndex(1));
        assert_eq!(l.last_index_of_term(Term(1)), Some(LogIndex(2)));
        assert_eq!(l.last_index_of_term(Term(4)), None);
        assert_eq!(l.slice(LogIndex(2), LogIndex(3)).len(), 2);
        assert_eq!(l.slice(LogIndex(4), LogIndex(9)).len(), 0);
    }

    #[test]
    fn truncate_keeps_prefix() {
        let mut l = log(&[1, 1, 2]);
        l.truncate_from(LogIndex(2));
        assert_eq!(l.last_index(), LogIndex(1));
        l.truncate_from(LogIndex(5));
        assert_eq!(l.last_index(), LogIndex(1));
    }

    #[test]
    fn compaction_keeps_the_boundary_term() {
        let mut l = log(&[1, 1, 2, 3]);
        l.compact_through(LogIndex(2), Term(1));
        assert_eq!((l.first_index(), l.last_index(), l.len()), (LogIndex(3), LogIndex(4), 2));
        assert_eq!(l.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(l.term_at(LogIndex(1)), None);
        assert_eq!(l.get(LogIndex(3)).map(|e| e.term), Some(Term(2)));
        assert_eq!(l.first_index_of_term_at(LogIndex(3)), LogIndex(3));
        // Past the end: the log is empty and starts after the point given.
        l.compact_through(LogIndex(9), Term(5));
        assert_eq!((l.first_index(), l.last_index(), l.last_term()), (LogIndex(10), LogIndex(9), Term(5)));
        l.push(Entry::noop(Term(6)));
        assert_eq!(l.term_at(LogIndex(10)), Some(Term(6)));
    }

    #[test]
    #[should_panic(expected = "wrong term")]
    fn compaction_refuses_a_mismatched_term() {
        log(&[1, 2]).compact_through(LogIndex(2), Term(1));
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let l = log(&[1, 2]);
        assert!(l.is_up_to_date(Term(2), LogIndex(2)));
        assert!(l.is_up_to_date(Term(3), LogIndex(1)));
        assert!(!l.is_up_to_date(Term(2), LogIndex(1)));
        assert!(!l.is_up_to_date(Term(1), LogIndex(9)));
    }
}
