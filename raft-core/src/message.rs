//! The messages nodes exchange. One variant per message, so that "a vote
//! carries a term" is a compile-time fact.

use crate::io::Rejection;
use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, LogIndex, NodeId, ProposalId, ReadId, Term, PROPOSAL_OVERHEAD_BYTES};
use core::fmt;
use serde::{Deserialize, Serialize};

/// A message between two members of a cluster. The sender is not inside:
/// the transport knows it and hands it to [`crate::Input::Receive`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Message {
    /// A candidate asks for a vote (§5.2).
    RequestVote(RequestVote),
    /// The answer to a `RequestVote`.
    RequestVoteResponse(RequestVoteResponse),
    /// A leader replicates entries, or just asserts its leadership (§5.3).
    AppendEntries(AppendEntries),
    /// The answer to an `AppendEntries`.
    AppendEntriesResponse(AppendEntriesResponse),
    /// A follower forwards proposals it received to the leader it knows.
    Forward(Forward),
    /// The leader's answer to a `Forward`: where each proposal went.
    ForwardResponse(ForwardResponse),
    /// A leader confirms it still leads before serving reads (thesis §6.4).
    LeadershipCheck(LeadershipCheck),
    /// The answer to a `LeadershipCheck`.
    LeadershipCheckResponse(LeadershipCheckResponse),
    /// A follower asks the leader for a read index (thesis §6.4).
    ReadIndexRequest(ReadIndexRequest),
    /// The leader's answer to a `ReadIndexRequest`.
    ReadIndexResponse(ReadIndexResponse),
    /// A node whose election timer fired asks whether it could win an
    /// election, before it changes any term (pre-vote, thesis §9.6).
    PreVote(PreVote),
    /// The answer to a `PreVote`.
    PreVoteResponse(PreVoteResponse),
    /// A leader hands its leadership to an up-to-date follower: start an
    /// election now (thesis §3.10).
    TimeoutNow(TimeoutNow),
    /// A leader brings a follower that needs compacted entries up to date
    /// with its snapshot (§7). Only the metadata is here: the driver moves
    /// the snapshot's data, and hands this message to the follower's core
    /// once the data is durably installed. The follower answers with an
    /// `AppendEntriesResponse`.
    InstallSnapshot(InstallSnapshot),
}

impl fmt::Debug for InstallSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstallSnapshot({}, {:?})", self.term, self.snapshot)
    }
}

/// Arguments of InstallSnapshot (§7, Figure 13), without the data.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstallSnapshot {
    /// The leader's term.
    pub term: Term,
    /// What the snapshot covers.
    pub snapshot: SnapshotMeta,
}

/// Arguments of a pre-vote: the RequestVote the sender would send if it
/// stood for election. Nobody adopts its term, or changes a vote for it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PreVote {
    /// The term the sender would stand in: its own term plus one.
    pub term: Term,
    /// Index of the sender's last log entry.
    pub last_log_index: LogIndex,
    /// Term of the sender's last log entry.
    pub last_log_term: Term,
}

/// The answer to a [`PreVote`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// If granted, the term asked about (the responder did not adopt it);
    /// if refused, the responder's own term, so that a pre-candidate with an
    /// older term learns the newer one and can make progress.
    pub term: Term,
    /// Whether the responder would vote for the sender in that term.
    pub granted: bool,
}

/// A leader's request that its transfer target start an election at once.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeoutNow {
    /// The leader's term.
    pub term: Term,
}

/// A leader asks its followers to confirm that it still leads, for the
/// reads it holds. Rounds are numbered within a term.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeadershipCheck {
    /// The leader's term.
    pub term: Term,
    /// The round.
    pub round: u64,
}

/// A follower's answer to a [`LeadershipCheck`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeadershipCheckResponse {
    /// The follower's current term.
    pub term: Term,
    /// The round answered.
    pub round: u64,
}

/// A follower's read requests, sent to the leader it knows.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReadIndexRequest {
    /// The sender's current term.
    pub term: Term,
    /// The reads, by the ids their origin gave them.
    pub ids: Vec<ReadId>,
}

/// The leader's answer to a [`ReadIndexRequest`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReadIndexResponse {
    /// The responder's current term.
    pub term: Term,
    /// The leader the responder knows of, for reads it refused.
    pub leader_hint: Option<NodeId>,
    /// For each read: its read index, or why the responder refused it
    /// (it was not the leader, or held as many reads as it may).
    pub results: Vec<(ReadId, ReadIndexResult)>,
}

/// Arguments of RequestVote (Figure 2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestVote {
    /// The candidate's term.
    pub term: Term,
    /// Index of the candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// The election was started by a leadership transfer (`TimeoutNow`):
    /// voters that hear from a live leader vote anyway (thesis §3.10).
    /// Absent in a replay file written before transfers existed: false.
    #[serde(default)]
    pub transfer: bool,
}

/// Results of RequestVote (Figure 2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestVoteResponse {
    /// The voter's current term.
    pub term: Term,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// Arguments of AppendEntries (Figure 2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AppendEntries {
    /// The leader's term.
    pub term: Term,
    /// Index of the entry just before `entries`.
    pub prev_log_index: LogIndex,
    /// Term of the entry at `prev_log_index`.
    pub prev_log_term: Term,
    /// Entries to store, at `prev_log_index + 1` onwards (empty for a heartbeat).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
}

/// Results of AppendEntries (Figure 2), with the follower's hint on rejection.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AppendEntriesResponse {
    /// The follower's current term.
    pub term: Term,
    /// What the follower did.
    pub result: AppendResult,
}

/// The outcome of an AppendEntries at the follower.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to and including
    /// `match_index` (= prev_log_index + number of entries sent).
    Success {
        /// The highest index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The consistency check failed at the `prev_log_index` given; the hint
    /// lets the leader skip a whole term of entries per round trip (§5.3).
    Conflict {
        /// The `prev_log_index` of the rejected request.
        rejected_index: LogIndex,
        /// The follower's last index.
        last_index: LogIndex,
        /// When the follower holds an entry at `rejected_index` with a
        /// different term: that term and the first index the follower holds
        /// with it.
        conflict: Option<(Term, LogIndex)>,
    },
}

/// Proposals forwarded by a follower to the leader.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Forward {
    /// The sender's current term.
    pub term: Term,
    /// The proposals, each with the id its origin gave it.
    pub proposals: Vec<(ProposalId, Vec<u8>)>,
}

/// The leader's answer to a [`Forward`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ForwardResponse {
    /// The responder's current term.
    pub term: Term,
    /// The leader the responder knows of, for proposals it refused.
    pub leader_hint: Option<NodeId>,
    /// For each proposal: the (term, index) it was appended at, or why the
    /// responder refused it (it was not the leader, or its backlog of
    /// uncommitted entries is full).
    pub results: Vec<(ProposalId, Placement)>,
}

/// Where a forwarded proposal was appended, as (term, index), or why it
/// was refused.
pub type Placement = Result<(Term, LogIndex), Rejection>;

/// A read's confirmed read index, or why it was refused.
pub type ReadIndexResult = Result<LogIndex, Rejection>;

impl Message {
    /// Whether this answers a term-checked request: such an answer of a
    /// newer term has done its work once the receiver adopted that term.
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Message::RequestVoteResponse(_)
                | Message::AppendEntriesResponse(_)
                | Message::LeadershipCheckResponse(_)
                | Message::PreVoteResponse(_)
        )
    }

    /// Whether §5.1's term rules govern this message: the requests and
    /// answers of elections, replication and leadership checks, which a
    /// receiver of a newer term rejects. Forwarded proposals and read-index
    /// requests, and their answers, are served whatever their term.
    pub fn is_term_checked(&self) -> bool {
        matches!(
            self,
            Message::RequestVote(_)
                | Message::RequestVoteResponse(_)
                | Message::AppendEntries(_)
                | Message::AppendEntriesResponse(_)
                | Message::LeadershipCheck(_)
                | Message::LeadershipCheckResponse(_)
                | Message::PreVote(_)
                | Message::PreVoteResponse(_)
                | Message::TimeoutNow(_)
                | Message::InstallSnapshot(_)
        )
    }

    /// The sender's term, carried by every message.
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVote(m) => m.term,
            Message::RequestVoteResponse(m) => m.term,
            Message::AppendEntries(m) => m.term,
            Message::AppendEntriesResponse(m) => m.term,
            Message::Forward(m) => m.term,
            Message::ForwardResponse(m) => m.term,
            Message::LeadershipCheck(m) => m.term,
            Message::LeadershipCheckResponse(m) => m.term,
            Message::ReadIndexRequest(m) => m.term,
            Message::ReadIndexResponse(m) => m.term,
            Message::PreVote(m) => m.term,
            Message::PreVoteResponse(m) => m.term,
            Message::TimeoutNow(m) => m.term,
            Message::InstallSnapshot(m) => m.term,
        }
    }

    /// Bytes of payload carried, for size accounting.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Message::AppendEntries(m) => m.entries.iter().map(Entry::size_bytes).sum(),
            Message::Forward(m) => m.proposals.iter().map(|(_, d)| d.len() + PROPOSAL_OVERHEAD_BYTES).sum(),
            _ => 0,
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::RequestVote(m) => {
                let transfer = if m.transfer { ", transfer" } else { "" };
                write!(f, "RequestVote({}, last {}@{}{transfer})", m.term, m.last_log_index, m.last_log_term)
            }
            Message::RequestVoteResponse(m) => {
                write!(f, "Vote({}, {})", m.term, if m.granted { "granted" } else { "refused" })
            }
            Message::AppendEntries(m) => write!(
                f,
                "Append({}, prev {}@{}, {:?}, commit {})",
                m.term, m.prev_log_index, m.prev_log_term, m.entries, m.leader_commit
            ),
            Message::AppendEntriesResponse(m) => match &m.result {
                AppendResult::Success { match_index } => write!(f, "AppendOk({}, match {})", m.term, match_index),
                AppendResult::Conflict { rejected_index, last_index, conflict } => {
                    write!(f, "AppendConflict({}, at {}, last {}, {:?})", m.term, rejected_index, last_index, conflict)
                }
            },
            Message::Forward(m) => {
                write!(f, "Forward({}, {:?})", m.term, m.proposals.iter().map(|p| p.0).collect::<Vec<_>>())
            }
            Message::ForwardResponse(m) => write!(f, "ForwardResponse({}, {:?})", m.term, m.results),
            Message::LeadershipCheck(m) => write!(f, "Check({}, round {})", m.term, m.round),
            Message::LeadershipCheckResponse(m) => write!(f, "CheckOk({}, round {})", m.term, m.round),
            Message::ReadIndexRequest(m) => write!(f, "ReadIndex({}, {:?})", m.term, m.ids),
            Message::ReadIndexResponse(m) => write!(f, "ReadIndexResponse({}, {:?})", m.term, m.results),
            Message::PreVote(m) => write!(f, "PreVote({}, last {}@{})", m.term, m.last_log_index, m.last_log_term),
            Message::PreVoteResponse(m) => {
                write!(f, "PreVoteAnswer({}, {})", m.term, if m.granted { "granted" } else { "refused" })
            }
            Message::TimeoutNow(m) => write!(f, "TimeoutNow({})", m.term),
            Message::InstallSnapshot(m) => m.fmt(f),
        }
    }
}
