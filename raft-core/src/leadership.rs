//! A leader that knows when to go: check-quorum (thesis §6.2) and
//! leadership transfer (thesis §3.10).
//!
//! - **Check-quorum.** Every minimum election timeout (`Timer::CheckQuorum`)
//!   a leader asks whether a majority, itself included, answered it since
//!   the last check; if not, it steps down, so that a leader cut off from
//!   its majority stops saying it leads within two election timeouts. The
//!   other half of the rule (voters that hear from a live leader ignore
//!   disruptive vote requests) is in the dispatch, `State::receive`.
//! - **Leadership transfer.** An operator names a target; the leader stops
//!   taking proposals, brings the target's log up to date, and sends it
//!   `TimeoutNow`, on which the target stands for election at once. The
//!   transfer is abandoned after an election timeout (`Timer::Transfer`),
//!   and proposals resume.

use crate::config::Config;
use crate::io::{Output, Timer, TransferRejection};
use crate::message::{Message, TimeoutNow};
use crate::state::{Role, State};
use crate::types::NodeId;
use std::collections::BTreeSet;

impl State {
    /// Leader, on `Timer::CheckQuorum`: steps down unless a majority was
    /// heard from since the last check; otherwise starts the next period.
    pub(crate) fn check_quorum(&mut self, config: &Config, out: &mut Vec<Output>) {
        let Role::Leader { progress, .. } = &mut self.role else { unreachable!("dispatched to leaders only") };
        let mut heard: BTreeSet<NodeId> = progress.iter().filter(|(_, p)| p.is_active()).map(|(&id, _)| id).collect();
        heard.insert(config.id());
        if !self.configs.current().quorum().is_won(&heard) {
            // Stepping down cancels every leader timer (this one is spent
            // already: the cancel is harmless) and arms the election timer.
            self.become_follower(config, self.hard.term, None, out);
            return;
        }
        progress.values_mut().for_each(|p| p.forget_heard());
        out.push(self.check_quorum_timer(config));
    }

    /// Marks `peer` as heard from this check-quorum period.
    pub(crate) fn heard_from(&mut self, config: &Config, peer: NodeId) {
        if let (true, Role::Leader { progress, .. }) = (config.check_quorum(), &mut self.role) {
            if let Some(p) = progress.get_mut(&peer) {
                p.heard_from();
            }
        }
    }

    /// An operator asks this node to hand its leadership to `target`.
    pub(crate) fn transfer_leadership(&mut self, config: &Config, target: NodeId, out: &mut Vec<Output>) {
        let reason = if !self.is_leader() {
            Some(TransferRejection::NotLeader { leader_hint: self.leader })
        } else if target == config.id() {
            Some(TransferRejection::ToSelf)
        } else if !self.configs.current().is_voter(target) {
            Some(TransferRejection::NotVoter)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(Output::TransferRejected { target, reason });
            return;
        }
        let Role::Leader { transfer, .. } = &mut self.role else { unreachable!("checked above") };
        if *transfer == Some(target) {
            return;
        }
        *transfer = Some(target);
        let (min, _) = config.election_timeout();
        out.push(Output::SetTimer { timer: Timer::Transfer, min, max: min });
        self.send_append(config, target, false, out);
        self.maybe_send_timeout_now(target, out);
    }

    /// The target of a transfer holds the leader's whole log: tell it to
    /// stand for election now.
    pub(crate) fn maybe_send_timeout_now(&self, peer: NodeId, out: &mut Vec<Output>) {
        let Role::Leader { progress, transfer: Some(target) } = &self.role else { return };
        if *target == peer && progress[&peer].match_index() == self.log.last_index() {
            let message = Message::TimeoutNow(TimeoutNow { term: self.hard.term });
            out.push(Output::Send { to: peer, message });
        }
    }

    /// The transfer's deadline passed: proposals are taken again.
    pub(crate) fn abandon_transfer(&mut self) {
        if let Role::Leader { transfer, .. } = &mut self.role {
            *transfer = None;
        }
    }

    /// The target of the transfer under way, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader { transfer, .. } => *transfer,
            _ => None,
        }
    }
}
