//! Leader election (§5.2) and the election restriction (§5.4.1).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Output, Persist, Timer};
use crate::message::{Message, RequestVote, RequestVoteResponse};
use crate::state::{Mode, Progress, Role, State};
use crate::types::{Entry, HardState, NodeId};
use std::collections::{BTreeMap, BTreeSet};

impl State {
    /// §5.2: on election timeout, a follower or candidate starts an election:
    /// it increments its term, votes for itself (persisted before any
    /// request leaves), re-arms its timer and asks every peer for a vote.
    pub(crate) fn start_election(&mut self, config: &Config, out: &mut Vec<Output>) {
        let me = config.id();
        self.hard = HardState { term: self.hard.term.next(), voted_for: Some(me) };
        out.push(Output::Persist(Persist::HardState(self.hard)));
        self.role = Role::Candidate { votes: BTreeSet::from([me]) };
        self.set_leader(None, out);
        if config.quorum() == 1 {
            self.become_leader(config, out);
            return;
        }
        out.push(self.election_timer(config));
        let request = RequestVote {
            term: self.hard.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for to in config.peers() {
            out.push(Output::Send { to, message: Message::RequestVote(request.clone()) });
        }
    }

    /// §5.2, §5.4.1: grant at most one vote per term, and only to a candidate
    /// whose log is at least as up-to-date as ours. The vote is persisted
    /// before the answer is sent.
    pub(crate) fn on_request_vote(&mut self, config: &Config, from: NodeId, m: RequestVote, out: &mut Vec<Output>) {
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
        let response = RequestVoteResponse { term: self.hard.term, granted };
        out.push(Output::Send { to: from, message: Message::RequestVoteResponse(response) });
    }

    /// §5.2: a candidate that gathers votes from a majority becomes leader.
    pub(crate) fn on_vote_response(
        &mut self,
        config: &Config,
        from: NodeId,
        m: RequestVoteResponse,
        out: &mut Vec<Output>,
    ) {
        if m.term < self.hard.term && !config.breaks(Fault::CountStaleVotes) {
            out.push(Output::Dropped(crate::io::Dropped::StaleResponse));
            return;
        }
        let Role::Candidate { votes } = &mut self.role else {
            // A late answer after this node won or lost: nothing to do.
            return;
        };
        if m.granted || config.breaks(Fault::CountRefusedVotes) {
            votes.insert(from);
            if votes.len() >= config.quorum() {
                self.become_leader(config, out);
            }
        }
    }

    /// §5.2, §5.4.2, §8: a new leader starts every follower in probe mode
    /// just past its own log, appends a no-op of its term (so that earlier
    /// entries can commit, Figure 8), takes the proposals it held, and sends
    /// appends at once to assert its leadership.
    pub(crate) fn become_leader(&mut self, config: &Config, out: &mut Vec<Output>) {
        let next_index = self.log.last_index().next();
        let progress: BTreeMap<NodeId, Progress> = config
            .peers()
            .map(|p| {
                let progress =
                    Progress { next_index, match_index: Default::default(), mode: Mode::Probe { sent: false } };
                (p, progress)
            })
            .collect();
        self.role = Role::Leader { progress };
        let pending = core::mem::take(&mut self.pending);
        self.append_own(config, vec![Entry::noop(self.hard.term)], out);
        self.append_proposals(config, pending, out);
        out.push(Output::CancelTimer(Timer::Election));
        self.set_leader(Some(config.id()), out);
        let hb = config.heartbeat_interval();
        out.push(Output::SetTimer { timer: Timer::Heartbeat, min: hb, max: hb });
        self.broadcast_append(config, out);
        self.maybe_commit(config, out);
    }
}
