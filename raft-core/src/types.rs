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
    /// The highest term a node accepts from a peer or from its store. A
    /// message of a higher term is dropped: obeying `Term(u64::MAX)` would
    /// leave the next election no term to take. A node at this term can
    /// still run 2^63 elections of its own, so [`Term::next`] never
    /// overflows in a node's life.
    pub const MAX_ACCEPTED: Term = Term(u64::MAX / 2);

    /// The term after this one.
    ///
    /// # Panics
    /// On overflow, which a node never reaches: terms above
    /// [`Term::MAX_ACCEPTED`] are refused.
    pub fn next(self) -> Term {
        Term(self.0.checked_add(1).expect("term overflow: terms above Term::MAX_ACCEPTED are refused"))
    }
}

impl LogIndex {
    /// The highest log index a node accepts from a peer: an append that
    /// would end past it is dropped, so [`LogIndex::next`] never overflows.
    pub const MAX_ACCEPTED: LogIndex = LogIndex(u64::MAX / 2);

    /// The index after this one.
    ///
    /// # Panics
    /// On overflow, which a node never reaches: appends past
    /// [`LogIndex::MAX_ACCEPTED`] are refused.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.checked_add(1).expect("log index overflow: indexes above LogIndex::MAX_ACCEPTED are refused"))
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
    /// A configuration entry: the whole membership in effect from this
    /// entry on (see the `membership` module). Never delivered as a
    /// command; its commit is reported as `Output::MembershipCommitted`.
    Membership(crate::Membership),
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

/// Bytes an entry counts beyond its command in an AppendEntries (its term,
/// tag and length, as encoded, and then some).
pub const ENTRY_OVERHEAD_BYTES: usize = 16;

/// Bytes a proposal counts beyond its data wherever proposals are batched
/// against a byte bound: its id and length as encoded in a `Forward` (at
/// most 14), and then some. The core, the runtime's batching and the
/// message-size accounting all use this one figure.
pub const PROPOSAL_OVERHEAD_BYTES: usize = 16;

impl Entry {
    /// A command entry.
    pub fn command(term: Term, data: impl Into<Vec<u8>>) -> Entry {
        Entry { term, payload: Payload::Command(data.into()) }
    }
    /// A no-op entry.
    pub fn noop(term: Term) -> Entry {
        Entry { term, payload: Payload::Noop }
    }
    /// The command's bytes (0 for a no-op or a configuration entry): what
    /// delivering it hands over.
    pub fn payload_bytes(&self) -> u64 {
        match &self.payload {
            Payload::Noop | Payload::Membership(_) => 0,
            Payload::Command(data) => data.len() as u64,
        }
    }
    /// Bytes this entry counts against `Config::message_bytes_max`: its
    /// command's bytes plus [`ENTRY_OVERHEAD_BYTES`].
    pub fn size_bytes(&self) -> usize {
        ENTRY_OVERHEAD_BYTES + self.payload_bytes() as usize
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Noop => write!(f, "noop"),
            Payload::Membership(m) => write!(f, "config {m:?}"),
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
