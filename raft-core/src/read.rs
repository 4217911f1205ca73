//! Linearizable reads without writing to the log: the ReadIndex protocol
//! (Ongaro's thesis, §6.4).
//!
//! A read is served once the reading node's state machine has applied up to
//! a *read index*, which the leader fixes as follows:
//! 1. the leader must have committed an entry of its own term (its no-op),
//!    so that its commit index is at least that of any earlier leader;
//! 2. it takes its commit index as the read index;
//! 3. it confirms it is still the leader with a round of
//!    `LeadershipCheck` messages *sent after the read arrived*, answered by a
//!    majority; a deposed leader cannot gather one.
//!
//! Rounds are numbered; a read waits for the first round sent after it
//! arrived, so many reads share one round. A round that loses messages is
//! sent again with the next heartbeat. A follower asks the leader for a read
//! index (`ReadIndexRequest`) and serves the read once it has delivered up
//! to it. Reads are volatile: a node that steps down refuses the reads it
//! was confirming, and a restart forgets them (the client retries).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Output, Rejection};
use crate::message::{
    LeadershipCheck, LeadershipCheckResponse, Message, ReadIndexRequest, ReadIndexResponse, ReadIndexResult,
};
use crate::state::State;
use crate::types::{LogIndex, NodeId, ReadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The read requests a node holds.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reads {
    /// Leader: the last leadership-check round sent this term (0: none).
    round: u64,
    /// Leader: the highest round each peer has answered this term.
    acked: BTreeMap<NodeId, u64>,
    /// Leader: reads waiting for a read index or for their round.
    waiting: Vec<WaitingRead>,
    /// Any node: reads with a confirmed read index, waiting until this node
    /// has delivered up to it.
    applying: Vec<(ReadId, LogIndex)>,
    /// Follower: reads sent to a leader and not yet answered, with the
    /// leader asked. Only these are answered when a response comes (a
    /// duplicated or late response is ignored); all are refused when the
    /// known leader changes, since the old one may never answer.
    asked: Vec<(ReadId, NodeId)>,
    /// Reads a leader was confirming when it stopped leading, to be
    /// refused to their origins at the end of the step (after every persist
    /// of the step: see `State::step`). Always empty between steps.
    refused: Vec<(ReadId, NodeId)>,
}

/// A read the leader is confirming.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct WaitingRead {
    id: ReadId,
    /// The node that asked (this node for a local read).
    origin: NodeId,
    /// The round that must be confirmed before the read is served.
    round: u64,
    /// The read index, once the leader has committed in its term.
    index: Option<LogIndex>,
}

impl core::fmt::Debug for Reads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "reads(round {}, waiting {}, applying {})", self.round, self.waiting.len(), self.applying.len())
    }
}

impl Reads {
    /// Whether no read is held.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.applying.is_empty() && self.asked.is_empty()
    }

    /// The same reads with every node id renamed (see [`State::renamed`]).
    pub(crate) fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId) -> Reads {
        Reads {
            round: self.round,
            acked: self.acked.iter().map(|(&id, &round)| (node(id), round)).collect(),
            waiting: self.waiting.iter().map(|r| WaitingRead { origin: node(r.origin), ..r.clone() }).collect(),
            applying: self.applying.clone(),
            asked: self.asked.iter().map(|&(id, leader)| (id, node(leader))).collect(),
            refused: self.refused.iter().map(|&(id, origin)| (id, node(origin))).collect(),
        }
    }

    /// Whether the leader-only part is reset.
    pub(crate) fn leader_part_is_empty(&self) -> bool {
        self.waiting.is_empty() && self.round == 0 && self.acked.is_empty() && self.refused.is_empty()
    }

    /// The leader stops leading: its rounds are forgotten and the reads it
    /// was confirming are set aside to be refused.
    pub(crate) fn abandon_leader_part(&mut self) {
        self.refused.extend(self.waiting.drain(..).map(|r| (r.id, r.origin)));
        self.round = 0;
        self.acked.clear();
    }

    /// Whether every read waiting to be served needs more than `delivered`.
    #[cfg(debug_assertions)]
    pub(crate) fn applying_all_above(&self, delivered: LogIndex) -> bool {
        self.applying.iter().all(|&(_, index)| index > delivered)
    }
}

impl State {
    /// Read requests made at this node.
    pub(crate) fn read(&mut self, config: &Config, ids: Vec<ReadId>, out: &mut Vec<Output>) {
        if self.is_leader() {
            self.leader_read(config, config.id(), ids, out);
        } else if let Some(leader) = self.leader {
            // Bounded: a leader that never answers must not make this list
            // grow without end.
            let room = config.reads_max().saturating_sub(self.reads.asked.len());
            let mut ids = ids;
            for id in ids.split_off(room.min(ids.len())) {
                out.push(Output::ReadRejected { id, reason: Rejection::QueueFull });
            }
            if ids.is_empty() {
                return;
            }
            self.reads.asked.extend(ids.iter().map(|&id| (id, leader)));
            let request = ReadIndexRequest { term: self.hard.term, ids };
            out.push(Output::Send { to: leader, message: Message::ReadIndexRequest(request) });
        } else {
            for id in ids {
                out.push(Output::ReadRejected { id, reason: Rejection::NotLeader { leader_hint: None } });
            }
        }
    }

    /// A follower asks this node, which it thinks leads, for a read index.
    pub(crate) fn on_read_index_request(
        &mut self,
        config: &Config,
        from: NodeId,
        m: ReadIndexRequest,
        out: &mut Vec<Output>,
    ) {
        if self.is_leader() {
            self.leader_read(config, from, m.ids, out);
        } else {
            let refusal = Err(Rejection::NotLeader { leader_hint: self.leader });
            let results = m.ids.into_iter().map(|id| (id, refusal)).collect();
            let response = ReadIndexResponse { term: self.hard.term, leader_hint: self.leader, results };
            out.push(Output::Send { to: from, message: Message::ReadIndexResponse(response) });
        }
    }

    /// The leader's answer to this node's read index request.
    pub(crate) fn on_read_index_response(&mut self, config: &Config, m: ReadIndexResponse, out: &mut Vec<Output>) {
        for (id, index) in m.results {
            let Some(position) = self.reads.asked.iter().position(|&(asked, _)| asked == id) else {
                continue; // a duplicate, or an answer to a read already refused
            };
            self.reads.asked.remove(position);
            match index {
                Ok(index) => self.reads.applying.push((id, index)),
                Err(reason) => out.push(Output::ReadRejected { id, reason }),
            }
        }
        self.release_applied_reads(config, out);
    }

    /// Leader: registers reads. With an entry of this term committed, the
    /// read index is the commit index now and the read waits for the next
    /// round, which starts at once unless one is in flight. Otherwise the
    /// read waits for the commit (see `fix_read_indexes`).
    fn leader_read(&mut self, config: &Config, origin: NodeId, mut ids: Vec<ReadId>, out: &mut Vec<Output>) {
        let room = config.reads_max().saturating_sub(self.reads.waiting.len());
        let refused = ids.split_off(room.min(ids.len()));
        if !refused.is_empty() {
            if origin == config.id() {
                out.extend(refused.into_iter().map(|id| Output::ReadRejected { id, reason: Rejection::QueueFull }));
            } else {
                let results = refused.into_iter().map(|id| (id, Err(Rejection::QueueFull))).collect();
                let response = ReadIndexResponse { term: self.hard.term, leader_hint: Some(config.id()), results };
                out.push(Output::Send { to: origin, message: Message::ReadIndexResponse(response) });
            }
        }
        let fixed = self.committed_in_term() || config.breaks(Fault::ReadIndexBeforeTermCommit);
        let next_round = if config.breaks(Fault::ReadRoundNotFresh) { self.reads.round } else { self.reads.round + 1 };
        let (index, round) = if fixed { (Some(self.commit_index), next_round) } else { (None, u64::MAX) };
        self.reads.waiting.extend(ids.into_iter().map(|id| WaitingRead { id, origin, round, index }));
        if fixed {
            self.release_confirmed_reads(config, out);
        }
    }

    fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit_index) == Some(self.hard.term)
    }

    /// Leader: sends a new leadership-check round to every peer.
    fn start_round(&mut self, config: &Config, out: &mut Vec<Output>) {
        self.reads.round += 1;
        self.send_round(config, out);
    }

    fn send_round(&self, config: &Config, out: &mut Vec<Output>) {
        let check = LeadershipCheck { term: self.hard.term, round: self.reads.round };
        for to in self.configs.current().peers(config.id()) {
            out.push(Output::Send { to, message: Message::LeadershipCheck(check.clone()) });
        }
    }

    /// Leader, on its heartbeat: an unconfirmed round may have lost
    /// messages; send it again.
    pub(crate) fn resend_unconfirmed_round(&mut self, config: &Config, out: &mut Vec<Output>) {
        if !self.reads.waiting.is_empty() && self.confirmed_round(config) < self.reads.round {
            self.send_round(config, out);
        }
    }

    /// The highest round a majority (this leader included) has answered.
    fn confirmed_round(&self, config: &Config) -> u64 {
        if config.breaks(Fault::ServeReadsWithoutQuorum) {
            return self.reads.round;
        }
        let me = config.id();
        let answered =
            |n: NodeId| if n == me { self.reads.round } else { self.reads.acked.get(&n).copied().unwrap_or(0) };
        self.configs.current().quorum().agreed(answered)
    }

    /// A follower answers a leadership check of its term: the sender leads
    /// it (the dispatch refused a second leader).
    pub(crate) fn on_leadership_check(
        &mut self,
        config: &Config,
        from: NodeId,
        m: LeadershipCheck,
        out: &mut Vec<Output>,
    ) {
        self.debug_assert_current_term(config, m.term);
        if m.term == self.hard.term {
            self.follow(config, from, out);
        }
        self.reply_leadership_check(from, m.round, out);
    }

    /// The answer to a leadership check, with this node's term (which tells
    /// a stale leader to step down).
    pub(crate) fn reply_leadership_check(&self, to: NodeId, round: u64, out: &mut Vec<Output>) {
        let response = LeadershipCheckResponse { term: self.hard.term, round };
        out.push(Output::Send { to, message: Message::LeadershipCheckResponse(response) });
    }

    /// Leader: a peer confirmed a round.
    pub(crate) fn on_leadership_check_response(
        &mut self,
        config: &Config,
        from: NodeId,
        m: LeadershipCheckResponse,
        out: &mut Vec<Output>,
    ) {
        self.debug_assert_current_term(config, m.term);
        if m.round > self.reads.round {
            out.push(Output::Dropped(crate::io::Dropped::StaleResponse));
            return;
        }
        self.heard_from(config, from);
        let acked = self.reads.acked.entry(from).or_insert(0);
        *acked = (*acked).max(m.round);
        self.release_confirmed_reads(config, out);
    }

    /// Leader: once the no-op of its term is committed, held reads get
    /// their read index (the commit index now, which covers every write
    /// committed before they arrived) and wait for a round started after
    /// that: confirming leadership before the index was fixed would not
    /// prove that no newer leader committed writes in between.
    pub(crate) fn fix_read_indexes(&mut self, config: &Config, out: &mut Vec<Output>) {
        if !self.committed_in_term() || self.reads.waiting.iter().all(|r| r.index.is_some()) {
            return;
        }
        let (commit, round) = (self.commit_index, self.reads.round + 1);
        for r in self.reads.waiting.iter_mut().filter(|r| r.index.is_none()) {
            r.index = Some(commit);
            r.round = round;
        }
        self.release_confirmed_reads(config, out);
    }

    /// Leader: serves (or answers for) every read whose round is confirmed
    /// and whose read index is fixed, then starts the next round if reads
    /// are waiting for one.
    fn release_confirmed_reads(&mut self, config: &Config, out: &mut Vec<Output>) {
        let confirmed = self.confirmed_round(config);
        let me = config.id();
        let mut remote: BTreeMap<NodeId, Vec<(ReadId, ReadIndexResult)>> = BTreeMap::new();
        let (ready, waiting): (Vec<WaitingRead>, Vec<WaitingRead>) = core::mem::take(&mut self.reads.waiting)
            .into_iter()
            .partition(|r| r.round <= confirmed && r.index.is_some());
        self.reads.waiting = waiting;
        for r in ready {
            let index = r.index.expect("partitioned on index");
            if r.origin == me {
                self.reads.applying.push((r.id, index));
            } else {
                remote.entry(r.origin).or_default().push((r.id, Ok(index)));
            }
        }
        for (to, results) in remote {
            let response = ReadIndexResponse { term: self.hard.term, leader_hint: Some(me), results };
            out.push(Output::Send { to, message: Message::ReadIndexResponse(response) });
            // The follower serves the read once it has delivered up to the
            // index: tell it the commit index now rather than at the next
            // heartbeat.
            self.send_append(config, to, true, out);
        }
        self.release_applied_reads(config, out);
        // Reads waiting for a round not yet sent: send it, unless one is in
        // flight (they will share the next). A one-node cluster confirms
        // its own round at once.
        let due = |reads: &Reads| reads.waiting.iter().any(|r| r.round == reads.round + 1);
        if due(&self.reads) && confirmed == self.reads.round {
            self.start_round(config, out);
            if self.confirmed_round(config) == self.reads.round {
                self.release_confirmed_reads(config, out);
            }
        }
    }

    /// Any node: serves the reads whose read index it has delivered.
    pub(crate) fn release_applied_reads(&mut self, config: &Config, out: &mut Vec<Output>) {
        if self.reads.applying.is_empty() {
            return;
        }
        let delivered = self.delivered_index;
        self.reads.applying.retain(|&(id, index)| {
            let ready = index <= delivered || config.breaks(Fault::ServeBeforeApplied);
            if ready {
                out.push(Output::ReadReady { id, index });
            }
            !ready
        });
    }

    /// A follower's leader changed: the reads it asked of another leader
    /// are refused (that one may never answer; the client retries).
    pub(crate) fn refuse_reads_asked_elsewhere(&mut self, config: &Config, out: &mut Vec<Output>) {
        let leader = self.leader;
        if self.reads.asked.iter().all(|&(_, asked)| Some(asked) == leader) {
            return;
        }
        let hint = leader.filter(|&l| l != config.id());
        self.reads.asked.retain(|&(id, asked)| {
            let keep = Some(asked) == leader;
            if !keep {
                out.push(Output::ReadRejected { id, reason: Rejection::NotLeader { leader_hint: hint } });
            }
            keep
        });
    }

    /// At the end of a step: the reads set aside when this node stopped
    /// leading are refused, naming the leader it knows now.
    pub(crate) fn send_refused_reads(&mut self, config: &Config, out: &mut Vec<Output>) {
        if self.reads.refused.is_empty() {
            return;
        }
        let me = config.id();
        let hint = self.leader;
        let refusal = Err(Rejection::NotLeader { leader_hint: hint });
        let mut remote: BTreeMap<NodeId, Vec<(ReadId, ReadIndexResult)>> = BTreeMap::new();
        for (id, origin) in core::mem::take(&mut self.reads.refused) {
            if origin == me {
                out.push(Output::ReadRejected { id, reason: Rejection::NotLeader { leader_hint: hint } });
            } else {
                remote.entry(origin).or_default().push((id, refusal));
            }
        }
        for (to, results) in remote {
            let response = ReadIndexResponse { term: self.hard.term, leader_hint: hint, results };
            out.push(Output::Send { to, message: Message::ReadIndexResponse(response) });
        }
    }
}
