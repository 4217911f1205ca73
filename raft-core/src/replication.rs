//! Log replication (§5.3), the commit rule (§5.4.2) and heartbeats.

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Dropped, Output};
use crate::message::{AppendEntries, AppendEntriesResponse, AppendResult, Message};
use crate::progress::{Mode, Progress};
use crate::state::{Role, State};
use crate::types::{Entry, LogIndex, NodeId, Term};

/// Most AppendEntries sent to one follower when new entries are appended.
/// With the in-flight bound this caps what one step sends; acknowledgements
/// then send one message each (so duplicated acknowledgements cannot
/// multiply the traffic).
const APPENDS_PER_TRIGGER_MAX: usize = 64;

impl State {
    /// Leader, on its heartbeat timer: one append to every follower, empty
    /// when the follower is up to date, so that followers keep their
    /// election timers reset and learn the commit index; a probe that went
    /// unanswered is sent again.
    pub(crate) fn heartbeat(&mut self, config: &Config, out: &mut Vec<Output>) {
        let hb = config.heartbeat_interval();
        out.push(Output::SetTimer { timer: crate::io::Timer::Heartbeat, min: hb, max: hb });
        for peer in self.configs.current().peers(config.id()).collect::<Vec<_>>() {
            self.send_append(config, peer, true, out);
        }
        self.resend_unconfirmed_round(config, out);
    }

    /// Leader, after appending new entries: sends them to every follower
    /// that can take them now. A follower known to match gets all of them
    /// at once, one message per `entries_per_append_max` entries (up to the
    /// in-flight bound), rather than one message per acknowledgement.
    pub(crate) fn broadcast_append(&mut self, config: &Config, out: &mut Vec<Output>) {
        for peer in self.configs.current().peers(config.id()).collect::<Vec<_>>() {
            self.send_append(config, peer, false, out);
            for _ in 1..APPENDS_PER_TRIGGER_MAX {
                if !self.has_streamable_backlog(config, peer) {
                    break;
                }
                self.send_append(config, peer, false, out);
            }
        }
    }

    fn has_streamable_backlog(&self, config: &Config, peer: NodeId) -> bool {
        let Role::Leader { progress, .. } = &self.role else { return false };
        progress.get(&peer).is_some_and(|p| {
            p.mode() == crate::progress::Mode::Replicate
                && p.next_index() <= self.log.last_index()
                && !p.is_paused(config.inflight_entries_max())
        })
    }

    /// Leader: builds and sends one AppendEntries to `peer` from its
    /// `next_index`, within the per-message bounds. Unless `force`d (the
    /// heartbeat), nothing is sent to a follower that is waiting on a probe,
    /// is up to date, or already has `inflight_entries_max` entries in flight.
    pub(crate) fn send_append(&mut self, config: &Config, peer: NodeId, force: bool, out: &mut Vec<Output>) {
        let Role::Leader { progress, .. } = &self.role else { return };
        let Some(p) = progress.get(&peer) else { return };
        let in_snapshot = matches!(p.mode(), Mode::Snapshot { .. });
        if in_snapshot || p.next_index() <= self.log.compacted_index() {
            // The follower needs entries this leader compacted (§7). The
            // heartbeat sends the snapshot again (a driver ignores a repeat
            // while the transfer runs), with an empty append at the
            // compaction point, so that the follower keeps hearing from its
            // leader during a long transfer.
            if force || !in_snapshot {
                self.send_snapshot(peer, out);
            }
            if force {
                let message = AppendEntries {
                    term: self.hard.term,
                    prev_log_index: self.log.compacted_index(),
                    prev_log_term: self.log.compacted_term(),
                    entries: Vec::new(),
                    leader_commit: self.commit_index,
                };
                out.push(Output::Send { to: peer, message: Message::AppendEntries(message) });
            }
            return;
        }
        let term = self.hard.term;
        let leader_commit = self.commit_index;
        let last = self.log.last_index();
        let Role::Leader { progress, .. } = &mut self.role else { return };
        let Some(p) = progress.get_mut(&peer) else { return };
        let may_carry_entries = force && matches!(p.mode(), crate::progress::Mode::Probe { .. })
            || !p.is_paused(config.inflight_entries_max());
        if !force && (!may_carry_entries || p.next_index() > last) {
            return;
        }
        let prev_log_index = p.next_index().prev();
        let prev_log_term = self.log.term_at(prev_log_index).expect("next_index within the leader's log");
        // Never more in flight than the bound allows.
        let room = config.inflight_entries_max().saturating_sub(p.in_flight()).max(1);
        let until = LogIndex(last.0.min(p.next_index().0.saturating_add(room) - 1));
        let entries =
            if may_carry_entries { take_entries(config, &self.log, p.next_index(), until) } else { Vec::new() };
        p.sent(entries.len() as u64);
        let message = AppendEntries { term, prev_log_index, prev_log_term, entries, leader_commit };
        out.push(Output::Send { to: peer, message: Message::AppendEntries(message) });
    }

    /// Follower side of AppendEntries (Figure 2, receiver rules 1–5).
    pub(crate) fn on_append_entries(&mut self, config: &Config, from: NodeId, m: AppendEntries, out: &mut Vec<Output>) {
        // Rule 1 (a stale term) was settled by the dispatch, which also
        // drops an append from a second leader of this term.
        self.debug_assert_current_term(config, m.term);
        if self.conflicts_with_committed(config, &m) {
            // Only a broken leader asks to cut a committed entry (§5.4.3).
            // Refused before anything changes, so the drop leaves no trace.
            out.push(Output::Dropped(Dropped::OutOfRange));
            return;
        }
        // A valid leader of our term: a candidate steps down (§5.2), and the
        // election timer restarts.
        self.follow(config, from, out);
        let m = self.skip_compacted(m);

        // Rule 2: the consistency check on (prev index, prev term).
        if !self.passes_consistency_check(config, m.prev_log_index, m.prev_log_term) {
            let conflict = (m.prev_log_index <= self.log.last_index() && m.prev_log_index > self.log.compacted_index())
                .then(|| {
                    let term = self.log.term_at(m.prev_log_index).expect("held");
                    (term, self.log.first_index_of_term_at(m.prev_log_index))
                });
            let result = AppendResult::Conflict {
                rejected_index: m.prev_log_index,
                last_index: self.log.last_index(),
                conflict,
            };
            self.reply_append(from, result, out);
            return;
        }
        // Rules 3 and 4: skip entries already held, cut at the first
        // conflict, append the rest. A committed entry is never cut.
        let match_index = LogIndex(m.prev_log_index.0 + m.entries.len() as u64);
        let mut index = m.prev_log_index;
        let mut entries = m.entries.into_iter();
        let mut fresh = Vec::new();
        for entry in entries.by_ref() {
            index = index.next();
            match self.log.term_at(index) {
                Some(t) if t == entry.term || config.breaks(Fault::KeepConflictingEntry) => continue,
                Some(_) => {
                    // Refused before any change by `conflicts_with_committed`.
                    assert!(index > self.commit_index, "cutting committed entry {index:?}");
                    self.truncate_log(index, out);
                    fresh.push(entry);
                    break;
                }
                None => {
                    fresh.push(entry);
                    break;
                }
            }
        }
        fresh.extend(entries);
        let acknowledged = if config.breaks(Fault::MatchIndexFromLastIndex) {
            self.log.last_index().max(match_index)
        } else {
            match_index
        };
        let ack_first = config.breaks(Fault::AckBeforePersist);
        if ack_first {
            self.reply_append(from, AppendResult::Success { match_index: acknowledged }, out);
        }
        self.append_own(config, fresh, out);
        if config.breaks(Fault::TruncateWithoutConflict) && self.log.last_index() > match_index {
            self.truncate_log(match_index.next(), out);
        }
        // Rule 5: commit what the leader committed, bounded by what we now
        // know to match.
        let bound = if config.breaks(Fault::FollowerCommitToLastIndex) { self.log.last_index() } else { match_index };
        self.commit_to(config, m.leader_commit.min(bound), out);
        if !ack_first {
            self.reply_append(from, AppendResult::Success { match_index: acknowledged }, out);
        }
    }

    /// An append that starts before this node's compaction point: the
    /// compacted entries are committed, so they match every leader's log
    /// (§5.4.3), and only what follows them is checked and stored. An
    /// append that ends before the point matches up to it. Called once
    /// `conflicts_with_committed` has refused an append that contradicts
    /// the compacted entry's term.
    fn skip_compacted(&self, m: AppendEntries) -> AppendEntries {
        let Some((prev_log_index, prev_log_term, entries)) = self.after_compaction(&m) else { return m };
        let entries = entries.to_vec();
        AppendEntries { prev_log_index, prev_log_term, entries, ..m }
    }

    /// The part of `m` after this node's compaction point, as (previous
    /// index, previous term, entries); `None` when `m` holds an entry at the
    /// compaction point whose term differs from the compacted one.
    fn after_compaction<'m>(&self, m: &'m AppendEntries) -> Option<(LogIndex, Term, &'m [Entry])> {
        let compacted = self.log.compacted_index();
        if m.prev_log_index >= compacted {
            return Some((m.prev_log_index, m.prev_log_term, &m.entries));
        }
        let covered = (compacted.0 - m.prev_log_index.0) as usize;
        if m.entries.get(covered - 1).is_some_and(|e| e.term != self.log.compacted_term()) {
            return None;
        }
        let skipped = covered.min(m.entries.len());
        Some((compacted, self.log.compacted_term(), &m.entries[skipped..]))
    }

    /// Rule 2: the entry before the new ones is held with the term the
    /// leader has there.
    fn passes_consistency_check(&self, config: &Config, prev_log_index: LogIndex, prev_log_term: Term) -> bool {
        match self.log.term_at(prev_log_index) {
            Some(_) if config.breaks(Fault::ConsistencyCheckIgnoresTerm) => true,
            held => held == Some(prev_log_term),
        }
    }

    /// Whether `m` passes the consistency check but holds an entry whose
    /// term differs from that of an entry this node knows committed (a
    /// compacted one included).
    pub(crate) fn conflicts_with_committed(&self, config: &Config, m: &AppendEntries) -> bool {
        let Some((prev_log_index, prev_log_term, entries)) = self.after_compaction(m) else { return true };
        if !self.passes_consistency_check(config, prev_log_index, prev_log_term) {
            return false;
        }
        (prev_log_index.0 + 1..).zip(entries).any(|(i, entry)| {
            let index = LogIndex(i);
            index <= self.commit_index && self.log.term_at(index).is_some_and(|t| t != entry.term)
        })
    }

    /// Figure 2, AppendEntries receiver rule 1: an append of an older term is
    /// refused; the answer's term tells the stale leader to step down.
    pub(crate) fn refuse_append(&self, to: NodeId, prev_log_index: LogIndex, out: &mut Vec<Output>) {
        let result = AppendResult::Conflict {
            rejected_index: prev_log_index,
            last_index: self.log.last_index(),
            conflict: None,
        };
        self.reply_append(to, result, out);
    }

    /// This node hears from `leader`, the leader of its term: it follows it
    /// (a candidate steps down, §5.2) and restarts its election timer.
    pub(crate) fn follow(&mut self, config: &Config, leader: NodeId, out: &mut Vec<Output>) {
        if matches!(self.role, Role::Follower) {
            self.set_leader(config, Some(leader), out);
        } else {
            self.become_follower(config, self.hard.term, Some(leader), out);
        }
        out.push(self.election_timer(config));
    }

    pub(crate) fn reply_append(&self, to: NodeId, result: AppendResult, out: &mut Vec<Output>) {
        let response = AppendEntriesResponse { term: self.hard.term, result };
        out.push(Output::Send { to, message: Message::AppendEntriesResponse(response) });
    }

    /// Leader side of an AppendEntries answer: advance the follower's match
    /// point and commit, or back `next_index` up using the follower's hint.
    pub(crate) fn on_append_response(
        &mut self,
        config: &Config,
        from: NodeId,
        m: AppendEntriesResponse,
        out: &mut Vec<Output>,
    ) {
        self.debug_assert_current_term(config, m.term);
        let last = self.log.last_index();
        if matches!(m.result, AppendResult::Success { match_index } if match_index > last) {
            out.push(Output::Dropped(Dropped::OutOfRange));
            return;
        }
        // Any valid answer of this term shows the follower alive (§6.2).
        self.heard_from(config, from);
        match m.result {
            AppendResult::Success { match_index } => {
                self.progress_mut(from).acknowledged(match_index);
                self.maybe_commit(config, out);
                self.maybe_send_timeout_now(from, out);
                self.send_append(config, from, false, out);
            }
            AppendResult::Conflict { rejected_index, last_index, .. }
                if last_index < self.match_index_of(from) && rejected_index >= self.match_index_of(from) =>
            {
                // An append at or past what the follower acknowledged was
                // refused by a log that ends before it: the follower lost
                // entries it had acknowledged (a wiped disk), and nothing it
                // acknowledged can be trusted any more. (A rejection sent
                // before the acknowledgement and duplicated late can look the
                // same; it costs a probe from the follower's end, never safety:
                // a lower match index only delays commits.)
                let acknowledged = self.match_index_of(from);
                out.push(Output::FollowerRegressed { peer: from, acknowledged, last_index });
                self.progress_mut(from).regressed(last_index);
                self.send_append(config, from, false, out);
            }
            AppendResult::Conflict { rejected_index, last_index, conflict } => {
                let Some(next) = self.next_after_conflict(from, rejected_index, last_index, conflict) else {
                    // An answer to an append we have since moved past.
                    return;
                };
                self.progress_mut(from).become_probe(next);
                self.send_append(config, from, false, out);
            }
        }
    }

    /// Where to probe next after a rejection at `rejected_index` (§5.3's
    /// optimisation): past the follower's end if it is short; otherwise past
    /// our last entry of the conflicting term, or at the first index of that
    /// term in the follower's log if we have none. Always within
    /// `match_index + 1 ..= rejected_index`, so it moves back at least one
    /// step and never below what is known to match. `None` for a stale answer.
    fn next_after_conflict(
        &self,
        from: NodeId,
        rejected_index: LogIndex,
        follower_last: LogIndex,
        conflict: Option<(crate::types::Term, LogIndex)>,
    ) -> Option<LogIndex> {
        let Role::Leader { progress, .. } = &self.role else { return None };
        let p = progress.get(&from)?;
        if !p.expects_rejection_at(rejected_index) || rejected_index == LogIndex(0) {
            return None;
        }
        let hint = if follower_last < rejected_index {
            follower_last.next()
        } else if let Some((term, first)) = conflict {
            match self.log.last_index_of_term(term) {
                Some(ours) => ours.next(),
                None => first,
            }
        } else {
            rejected_index
        };
        Some(hint.min(rejected_index).max(p.match_index().next()))
    }

    fn match_index_of(&self, peer: NodeId) -> LogIndex {
        match &self.role {
            Role::Leader { progress, .. } => progress.get(&peer).map_or(LogIndex(0), |p| p.match_index()),
            _ => LogIndex(0),
        }
    }

    pub(crate) fn progress_mut(&mut self, peer: NodeId) -> &mut Progress {
        match &mut self.role {
            Role::Leader { progress, .. } => progress.get_mut(&peer).expect("progress for every peer"),
            _ => unreachable!("progress_mut outside the leader role"),
        }
    }

    /// §5.3, §5.4.2: the leader commits the highest index held by a majority,
    /// but only when that entry is of its own term (Figure 8); everything
    /// before it commits with it. The leader holds what is durable on its
    /// own disk (thesis §10.2.1), not what it has appended.
    pub(crate) fn maybe_commit(&mut self, config: &Config, out: &mut Vec<Output>) {
        let Role::Leader { progress, .. } = &self.role else { return };
        let held =
            if config.breaks(Fault::LeaderCountsUndurableEntries) { self.log.last_index() } else { self.durable_index };
        let (me, last) = (config.id(), held);
        let matched = |n: NodeId| if n == me { last } else { progress[&n].match_index() };
        let quorum = self.configs.current().quorum();
        let majority = if config.breaks(Fault::CommitWithoutMajority) {
            quorum.agreed_short_of(1, matched)
        } else {
            quorum.agreed(matched)
        };
        let of_term = self.log.term_at(majority) == Some(self.hard.term);
        if majority > self.commit_index && (of_term || config.breaks(Fault::CommitPreviousTermByCount)) {
            self.commit_to(config, majority, out);
            self.fix_read_indexes(config, out);
        }
    }
}

/// Entries from `from` to at most `last`, bounded by the entry count and
/// byte limits per message, but always at least one entry when any is due
/// (a single large entry must still be sendable).
fn take_entries(config: &Config, log: &crate::log::Log, from: LogIndex, last: LogIndex) -> Vec<crate::types::Entry> {
    if from > last {
        return Vec::new();
    }
    let mut bytes = 0;
    let mut taken = Vec::new();
    for entry in log.slice(from, last).iter().take(config.entries_per_append_max()) {
        bytes += entry.size_bytes();
        if !taken.is_empty() && bytes > config.message_bytes_max() {
            break;
        }
        taken.push(entry.clone());
    }
    taken
}
