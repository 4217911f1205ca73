//! The small value types every other module speaks in.

use core::fmt;
use serde::{Deserialize, Serialize};

/// A node's identity within a cluster. Chosen by the operator; never zero-length
/// or reused for a different machine while the cluster lives.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A Raft term (§5.1): a logical clock that only grows.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

/// The position of an entry in the log. The first entry has index 1; index 0
/// means "before the first entry".
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

/// An identifier the caller attaches to a proposal so that it can match the
/// answer (`Output::ProposalAccepted` / `Output::ProposalRejected`) to it.
/// raft-core never interprets it; it is unique only within its origin node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId(pub u64);

/// An identifier the caller attaches to a read request so that it can match
/// the answer (`Output::ReadReady` / `Output::ReadRejected`) to it. Unique
/// only within its origin node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReadId(pub u64);

impl Term {
    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The index before this one (saturating at 0).
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

macro_rules! compact_debug {
    ($ty:ident, $prefix:literal) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}
compact_debug!(NodeId, "n");
compact_debug!(Term, "t");
compact_debug!(LogIndex, "i");
compact_debug!(ProposalId, "p");
compact_debug!(ReadId, "r");

/// What an entry carries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// The entry each new leader appends at the start of its term (§5.4.2,
    /// §8): it lets entries of earlier terms commit and is never delivered to
    /// the application.
    Noop,
    /// An application command: opaque bytes.
    Command(Vec<u8>),
}

/// One log entry: the term in which a leader created it, and its payload.
/// Its index is its position in the log, not stored in the entry.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// What the entry carries.
    pub payload: Payload,
}

impl Entry {
    /// A command entry.
    pub fn command(term: Term, data: impl Into<Vec<u8>>) -> Entry {
        Entry { term, payload: Payload::Command(data.into()) }
    }
    /// A no-op entry.
    pub fn noop(term: Term) -> Entry {
        Entry { term, payload: Payload::Noop }
    }
    /// Bytes this entry counts against `Config::message_bytes_max`.
    pub fn size_bytes(&self) -> usize {
        // A fixed overhead for the term and tag, plus the command bytes.
        16 + match &self.payload {
            Payload::Noop => 0,
            Payload::Command(data) => data.len(),
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Noop => write!(f, "noop"),
            Payload::Command(data) => match core::str::from_utf8(data) {
                Ok(s) if s.len() <= 16 && s.chars().all(|c| c.is_ascii_graphic()) => {
                    write!(f, "{s:?}")
                }
                _ => write!(f, "<{} bytes>", data.len()),
            },
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:?}", self.term.0, self.payload)
    }
}

/// The part of a node's state that must survive a crash besides the log:
/// the current term and the vote cast in it (Figure 2, "Persistent state").
/// Always written as one record, so that a crash never separates them.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
}

impl fmt::Debug for HardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.voted_for {
            Some(v) => write!(f, "{}/vote {}", self.term, v),
            None => write!(f, "{}/no vote", self.term),
        }
    }
}
