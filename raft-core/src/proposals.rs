//! Client proposals: appended by the leader, forwarded by followers that
//! know one, held (boundedly) by followers that do not.

use crate::config::Config;
use crate::io::{Output, Proposal, Rejection};
use crate::message::{Forward, ForwardResponse, Message, Placement};
use crate::state::State;
use crate::types::{Entry, LogIndex, NodeId, ProposalId, Term, PROPOSAL_OVERHEAD_BYTES};

impl State {
    /// Handles proposals made at this node.
    pub(crate) fn propose(&mut self, config: &Config, proposals: Vec<Proposal>, out: &mut Vec<Output>) {
        let mut fitting = Vec::with_capacity(proposals.len());
        for p in proposals {
            if p.data.len() + PROPOSAL_OVERHEAD_BYTES > config.message_bytes_max() {
                out.push(Output::ProposalRejected { id: p.id, reason: Rejection::TooLarge });
            } else {
                fitting.push(p);
            }
        }
        if fitting.is_empty() {
            return;
        }
        if self.is_leader() {
            self.append_proposals(config, fitting, out);
            self.broadcast_append(config, out);
            self.maybe_commit(config, out);
        } else if self.leader.is_some() {
            // Forwarded at the end of `step`, with anything else pending.
            self.pending.extend(fitting);
        } else {
            for p in fitting {
                if self.pending.len() < config.pending_proposals_max() {
                    self.pending.push(p);
                } else {
                    out.push(Output::ProposalRejected { id: p.id, reason: Rejection::QueueFull });
                }
            }
        }
    }

    /// Leader: appends proposals to its log and answers each with its place,
    /// or with `QueueFull` past the bound on uncommitted entries.
    pub(crate) fn append_proposals(&mut self, config: &Config, proposals: Vec<Proposal>, out: &mut Vec<Output>) {
        let placed = self.append_commands(config, proposals.into_iter().map(|p| (p.id, p.data)).collect(), out);
        for (id, place) in placed {
            out.push(match place {
                Ok((term, index)) => Output::ProposalAccepted { id, term, index },
                Err(reason) => Output::ProposalRejected { id, reason },
            });
        }
    }

    /// Leader: appends commands of its term while its backlog of
    /// uncommitted entries has room (`Config::uncommitted_entries_max`: a
    /// leader that cannot reach a quorum must not hoard proposals without
    /// end), and says where each went or why it was refused.
    fn append_commands(
        &mut self,
        config: &Config,
        commands: Vec<(ProposalId, Vec<u8>)>,
        out: &mut Vec<Output>,
    ) -> Vec<(ProposalId, Placement)> {
        let term = self.hard.term;
        if let Some(target) = self.transfer_target() {
            // Thesis §3.10: a leader handing over takes no proposals, so
            // that the target can catch up and the transfer end.
            return commands.into_iter().map(|(id, _)| (id, Err(Rejection::Transferring { target }))).collect();
        }
        let first = self.log.last_index().next();
        let uncommitted = self.log.last_index().0 - self.commit_index.0;
        let room = config.uncommitted_entries_max().saturating_sub(uncommitted) as usize;
        let mut placed = Vec::with_capacity(commands.len());
        let mut entries = Vec::with_capacity(commands.len().min(room));
        for (id, data) in commands {
            if entries.len() < room {
                placed.push((id, Ok((term, LogIndex(first.0 + entries.len() as u64)))));
                entries.push(Entry::command(term, data));
            } else {
                placed.push((id, Err(Rejection::QueueFull)));
            }
        }
        self.append_own(config, entries, out);
        placed
    }

    /// Sends proposals to the leader, in as many `Forward` messages as
    /// `message_bytes_max` needs (each proposal fits one: larger ones were
    /// refused when proposed).
    pub(crate) fn forward(&mut self, config: &Config, leader: NodeId, proposals: Vec<Proposal>, out: &mut Vec<Output>) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for p in proposals {
            let size = p.data.len() + PROPOSAL_OVERHEAD_BYTES;
            if !batch.is_empty() && bytes + size > config.message_bytes_max() {
                let message =
                    Message::Forward(Forward { term: self.hard.term, proposals: core::mem::take(&mut batch) });
                out.push(Output::Send { to: leader, message });
                bytes = 0;
            }
            bytes += size;
            batch.push((p.id, p.data));
        }
        if !batch.is_empty() {
            let message = Message::Forward(Forward { term: self.hard.term, proposals: batch });
            out.push(Output::Send { to: leader, message });
        }
    }

    /// A peer forwarded proposals: the leader appends them and answers with
    /// their places; any other node refuses them, naming the leader it knows.
    pub(crate) fn on_forward(&mut self, config: &Config, from: NodeId, m: Forward, out: &mut Vec<Output>) {
        let results = if self.is_leader() {
            self.append_commands(config, m.proposals, out)
        } else {
            let refusal = Err(Rejection::NotLeader { leader_hint: self.leader });
            m.proposals.into_iter().map(|(id, _)| (id, refusal)).collect()
        };
        let response = ForwardResponse { term: self.hard.term, leader_hint: self.leader, results };
        out.push(Output::Send { to: from, message: Message::ForwardResponse(response) });
        if self.is_leader() {
            self.broadcast_append(config, out);
            self.maybe_commit(config, out);
        }
    }

    /// The answer to proposals this node forwarded.
    pub(crate) fn on_forward_response(&mut self, m: ForwardResponse, out: &mut Vec<Output>) {
        for (id, result) in m.results {
            out.push(match result {
                Ok((term, index)) => Output::ProposalAccepted { id, term, index },
                Err(reason) => Output::ProposalRejected { id, reason },
            });
        }
    }
}

/// What became of a proposal that was accepted at a (term, index), as far
/// as one node can tell. See [`State::proposal_fate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ProposalFate {
    /// Committed: it will be (or was) delivered at its index, everywhere.
    Committed,
    /// Not decided yet: it may still commit, or be overwritten.
    Pending,
    /// Another entry was committed at its index: it will never commit.
    Lost,
}

impl State {
    /// The fate of a proposal accepted at (`term`, `index`). Decided only
    /// once this node knows its index committed: then the entry there is
    /// either the proposal's (same term, Log Matching) or not. Before that
    /// an entry of another term at the index does not decide it: a later
    /// leader may still hold and commit the proposal's entry (Figure 8).
    pub fn proposal_fate(&self, term: Term, index: LogIndex) -> ProposalFate {
        if index > self.commit_index {
            return ProposalFate::Pending;
        }
        match self.log.term_at(index) {
            Some(t) if t == term => ProposalFate::Committed,
            Some(_) => ProposalFate::Lost,
            // Only below the log's start, once compaction exists: the
            // snapshot's own term decides at its index, and the log no
            // longer says what was committed before it.
            None => ProposalFate::Pending,
        }
    }
}
