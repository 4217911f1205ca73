//! Leader election (§5.2) and the election restriction (§5.4.1).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Output, Persist};
use crate::message::{Message, RequestVote, RequestVoteResponse};
use crate::state::{Role, State};
use crate::types::NodeId;

impl State {
    /// §5.2: on election timeout, a follower or candidate starts an election:
    /// it becomes a candidate of the next term (its vote for itself persisted
    /// before any request leaves), re-arms its timer and asks every peer for
    /// a vote. A cluster of one voter elects it at once.
    pub(crate) fn start_election(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.become_candidate(config, out);
        if self.has_won_election() {
            self.start_leading(config, out);
            return;
        }
        out.push(self.election_timer(config));
        let request = RequestVote {
            term: self.hard.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for to in self.membership.peers(config.id()) {
            out.push(Output::Send { to, message: Message::RequestVote(request.clone()) });
        }
    }

    fn has_won_election(&self) -> bool {
        match &self.role {
            Role::Candidate { votes } => self.membership.quorum().is_won(votes),
            _ => false,
        }
    }

    /// §5.2, §5.4.1: grant at most one vote per term, and only to a candidate
    /// whose log is at least as up-to-date as ours. The vote is persisted
    /// before the answer is sent.
    pub(crate) fn on_request_vote(&mut self, config: &Config, from: NodeId, m: RequestVote, out: &mut Vec<Output>) {
        self.debug_assert_current_term(config, m.term);
        // The injected fault breaks the rule in followers only: a candidate
        // that gave its vote away would break the core's own invariants (a
        // candidate votes for itself) and panic instead of misbehaving.
        let free = match self.hard.voted_for {
            None => true,
            Some(v) => v == from || (matches!(self.role, Role::Follower) && config.breaks(Fault::GrantSecondVote)),
        };
        let up_to_date = if config.breaks(Fault::UpToDateByLengthOnly) {
            m.last_log_index >= self.log.last_index()
        } else {
            self.log.is_up_to_date(m.last_log_term, m.last_log_index)
        };
        let granted = m.term == self.hard.term
            && free
            && !self.is_leader()
            && (up_to_date || config.breaks(Fault::SkipUpToDateCheck));
        if granted {
            if self.hard.voted_for != Some(from) {
                self.hard.voted_for = Some(from);
                if !config.breaks(Fault::VoteNotPersisted) {
                    out.push(Output::Persist(Persist::HardState(self.hard)));
                }
            }
            // Granting a vote defers this node's own candidacy (Figure 2).
            out.push(self.election_timer(config));
        }
        self.reply_vote(from, granted, out);
    }

    pub(crate) fn reply_vote(&self, to: NodeId, granted: bool, out: &mut Vec<Output>) {
        let response = RequestVoteResponse { term: self.hard.term, granted };
        out.push(Output::Send { to, message: Message::RequestVoteResponse(response) });
    }

    /// §5.2: a candidate that gathers votes from a majority becomes leader.
    pub(crate) fn on_vote_response(
        &mut self,
        config: &Config,
        from: NodeId,
        m: RequestVoteResponse,
        out: &mut Vec<Output>,
    ) {
        self.debug_assert_current_term(config, m.term);
        let Role::Candidate { votes } = &mut self.role else { unreachable!("dispatched to candidates only") };
        if m.granted || config.breaks(Fault::CountRefusedVotes) {
            votes.insert(from);
            if self.has_won_election() {
                self.start_leading(config, out);
            }
        }
    }

    /// §5.2: a new leader sends appends at once to assert its leadership
    /// (and commits at once if it is the only voter).
    fn start_leading(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.become_leader(config, out);
        self.broadcast_append(config, out);
        self.maybe_commit(config, out);
    }
}
