//! Client proposals: appended by the leader, forwarded by followers that
//! know one, held (boundedly) by followers that do not.

use crate::config::Config;
use crate::io::{Output, Proposal, Rejection};
use crate::message::{Forward, ForwardResponse, Message};
use crate::state::State;
use crate::types::{Entry, LogIndex, NodeId, ProposalId, Term};

/// Bytes a forwarded proposal counts beyond its data (its id and length).
const FORWARD_OVERHEAD_BYTES: usize = 16;

impl State {
    /// Handles proposals made at this node.
    pub(crate) fn propose(&mut self, config: &Config, proposals: Vec<Proposal>, out: &mut Vec<Output>) {
        let mut fitting = Vec::with_capacity(proposals.len());
        for p in proposals {
            if p.data.len() + FORWARD_OVERHEAD_BYTES > config.message_bytes_max() {
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

    /// Leader: appends proposals to its log and answers each with its place.
    pub(crate) fn append_proposals(&mut self, config: &Config, proposals: Vec<Proposal>, out: &mut Vec<Output>) {
        let placed = self.append_commands(config, proposals.into_iter().map(|p| (p.id, p.data)).collect(), out);
        for (id, term, index) in placed {
            out.push(Output::ProposalAccepted { id, term, index });
        }
    }

    fn append_commands(
        &mut self,
        config: &Config,
        commands: Vec<(ProposalId, Vec<u8>)>,
        out: &mut Vec<Output>,
    ) -> Vec<(ProposalId, Term, LogIndex)> {
        let term = self.hard.term;
        let first = self.log.last_index().next();
        let mut placed = Vec::with_capacity(commands.len());
        let mut entries = Vec::with_capacity(commands.len());
        for (i, (id, data)) in commands.into_iter().enumerate() {
            placed.push((id, term, LogIndex(first.0 + i as u64)));
            entries.push(Entry::command(term, data));
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
            let size = p.data.len() + FORWARD_OVERHEAD_BYTES;
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
            let placed = self.append_commands(config, m.proposals, out);
            placed.into_iter().map(|(id, term, index)| (id, Some((term, index)))).collect()
        } else {
            m.proposals.into_iter().map(|(id, _)| (id, None)).collect()
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
                Some((term, index)) => Output::ProposalAccepted { id, term, index },
                None => Output::ProposalRejected { id, reason: Rejection::NotLeader { leader_hint: m.leader_hint } },
            });
        }
    }
}
