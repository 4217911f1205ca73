//! Leader election (§5.2) and the election restriction (§5.4.1).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Output, Persist};
use crate::message::{Message, PreVote, PreVoteResponse, RequestVote, RequestVoteResponse, TimeoutNow};
use crate::state::{Role, State};
use crate::types::NodeId;

impl State {
    /// §5.2: on election timeout (without pre-vote), after a won pre-vote,
    /// or on a leader's `TimeoutNow` (`transfer`), a node starts an election:
    /// it becomes a candidate of the next term (its vote for itself written
    /// while the requests go out), re-arms its timer and asks every peer
    /// for a vote. A cluster of one voter elects it once its vote is durable.
    pub(crate) fn start_election(&mut self, config: &Config, transfer: bool, out: &mut Vec<Output>) {
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
            transfer,
        };
        for to in self.configs.current().voting_peers(config.id()) {
            out.push(Output::Send { to, message: Message::RequestVote(request.clone()) });
        }
    }

    fn has_won_election(&self) -> bool {
        match &self.role {
            Role::PreCandidate { votes } => self.configs.current().quorum().is_won(votes),
            // Its own vote among them: it is counted once durable.
            Role::Candidate { votes } => self.hard_state_is_durable() && self.configs.current().quorum().is_won(votes),
            _ => false,
        }
    }

    /// Thesis §9.6: on election timeout with pre-vote on, a node first asks
    /// every peer whether it would vote for it in the next term, changing no
    /// term and no vote; it stands for election only with a majority of yes.
    /// So a node that was cut off, and comes back with an old log or while
    /// the leader lives, disrupts nobody.
    pub(crate) fn start_pre_vote(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.become_pre_candidate(config, out);
        if self.has_won_election() {
            self.start_election(config, false, out);
            return;
        }
        out.push(self.election_timer(config));
        let request = PreVote {
            term: self.hard.term.next(),
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for to in self.configs.current().voting_peers(config.id()) {
            out.push(Output::Send { to, message: Message::PreVote(request.clone()) });
        }
    }

    /// Thesis §9.6: a pre-vote is granted when a real vote would be (the
    /// term asked about is above ours, the log is up to date) and this node
    /// does not hear from a live leader (check-quorum's lease). Nothing
    /// changes here: no term, no vote, no timer.
    pub(crate) fn on_pre_vote(&self, from: NodeId, m: PreVote, out: &mut Vec<Output>) {
        let granted = m.term > self.hard.term
            && self.log.is_up_to_date(m.last_log_term, m.last_log_index)
            && !self.hears_from_live_leader();
        let term = if granted { m.term } else { self.hard.term };
        self.reply_pre_vote(from, term, granted, out);
    }

    /// Whether this node leads, or follows a leader it has heard from since
    /// its election timer last fired.
    pub(crate) fn hears_from_live_leader(&self) -> bool {
        self.is_leader() || (matches!(self.role, Role::Follower) && self.leader.is_some())
    }

    pub(crate) fn reply_pre_vote(&self, to: NodeId, term: crate::types::Term, granted: bool, out: &mut Vec<Output>) {
        let response = PreVoteResponse { term: if granted { term } else { self.hard.term }, granted };
        out.push(Output::Send { to, message: Message::PreVoteResponse(response) });
    }

    /// A pre-candidate that gathers a majority of pre-votes stands for
    /// election. A refusal of a higher term made it a follower already (the
    /// dispatch adopts that term, so a pre-candidate with an older term makes
    /// progress); a grant counts only if it answers this round.
    pub(crate) fn on_pre_vote_response(
        &mut self,
        config: &Config,
        from: NodeId,
        m: PreVoteResponse,
        out: &mut Vec<Output>,
    ) {
        let round = self.hard.term.next();
        let Role::PreCandidate { votes } = &mut self.role else { unreachable!("dispatched to pre-candidates only") };
        if m.granted && m.term == round {
            votes.insert(from);
            if self.has_won_election() {
                self.start_election(config, false, out);
            }
        }
    }

    /// Thesis §3.10: the leader of this term hands over its leadership: this
    /// node stands for election at once, skipping pre-vote, and its vote
    /// requests say so (voters then set check-quorum's lease aside).
    pub(crate) fn on_timeout_now(&mut self, config: &Config, m: TimeoutNow, out: &mut Vec<Output>) {
        self.debug_assert_current_term(config, m.term);
        if self.configs.current().is_voter(config.id()) {
            self.start_election(config, true, out);
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
                    self.persist(Persist::HardState(self.hard), out);
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
    pub(crate) fn start_leading(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.become_leader(config, out);
        self.broadcast_append(config, out);
        self.maybe_commit(config, out);
    }
}
