//! Committed entries to the application, in log order, exactly once, in
//! bounded pieces.
//!
//! The core hands out committed commands in `Deliver` outputs and keeps at
//! most `Config::unapplied_entries_max` entries and
//! `Config::unapplied_bytes_max` payload bytes delivered and not yet
//! reported applied (`Input::Applied`, etcd's `Advance`; a no-op, which the
//! application never sees, counts as applied once everything before it
//! is). So one `Deliver`
//! is bounded, a restart with a long committed log hands it out piece by
//! piece, and an application that lags holds a bounded backlog; the node
//! meanwhile keeps stepping messages and timers. A driver that never
//! reports progress gets the first window's worth and then nothing more.

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Committed, Dropped, Output};
use crate::state::State;
use crate::types::{LogIndex, Payload};

impl State {
    /// Raises the commit index (never lowers it) and delivers what is newly
    /// committed, as far as the window allows.
    pub(crate) fn commit_to(&mut self, config: &Config, index: LogIndex, out: &mut Vec<Output>) {
        if index <= self.commit_index {
            return;
        }
        self.commit_index = index;
        self.deliver(config, out);
    }

    /// The application reports every entry up to `index` applied: the
    /// window moves on, and more is delivered. An index beyond what was
    /// delivered is the caller's mistake and is ignored.
    pub(crate) fn on_applied(&mut self, config: &Config, index: LogIndex, out: &mut Vec<Output>) {
        if index > self.delivered_index {
            out.push(Output::Dropped(Dropped::OutOfRange));
            return;
        }
        if index <= self.applied_index {
            return;
        }
        let freed: u64 = self.log.slice(self.applied_index.next(), index).iter().map(|e| e.payload_bytes()).sum();
        self.unapplied_bytes = self.unapplied_bytes.saturating_sub(freed);
        self.applied_index = index;
        self.deliver(config, out);
    }

    /// Delivers committed entries past the last delivered one, skipping
    /// no-ops, while the window of unapplied entries and bytes has room (an
    /// entry larger than the byte bound goes alone, once nothing else is
    /// unapplied). Then serves the reads that waited for them.
    /// Only entries durable here are delivered: a leader may know an entry
    /// committed by its followers before its own copy is on disk, and an
    /// application that keeps its state on disk must not get ahead of the log.
    pub(crate) fn deliver(&mut self, config: &Config, out: &mut Vec<Output>) {
        let last = if config.breaks(Fault::DeliverUncommitted) {
            self.log.last_index()
        } else {
            self.commit_index.min(self.durable_index)
        };
        let first = if config.breaks(Fault::DeliverTwice) { LogIndex(1) } else { self.delivered_index.next() };
        // No-ops already handed over behind the last reported command count
        // as applied now.
        while self.applied_index < self.delivered_index
            && self.log.get(self.applied_index.next()).is_some_and(|e| !is_command(&e.payload))
        {
            self.applied_index = self.applied_index.next();
        }
        let mut delivered = Vec::new();
        let mut index = first;
        while index <= last {
            let Some(entry) = self.log.get(index) else { break };
            // A configuration entry is reported in its place among the
            // commands.
            if let Payload::Membership(membership) = &entry.payload {
                if !delivered.is_empty() {
                    out.push(Output::Deliver(core::mem::take(&mut delivered)));
                }
                let membership = membership.clone();
                out.push(Output::MembershipCommitted { index, term: entry.term, membership });
            }
            // The application never sees a no-op or a configuration entry
            // as a command, so it cannot report one applied: such an entry
            // counts as applied as soon as everything before it is, and
            // never holds the window.
            if !is_command(&entry.payload) && index == self.applied_index.next() {
                self.applied_index = index;
                index = index.next();
                continue;
            }
            let unapplied = index.0.saturating_sub(self.applied_index.0 + 1);
            let bytes = entry.payload_bytes();
            let nothing_unapplied = unapplied == 0;
            let fits = self.unapplied_bytes + bytes <= config.unapplied_bytes_max();
            if unapplied >= config.unapplied_entries_max() || !(fits || nothing_unapplied) {
                break;
            }
            self.unapplied_bytes += bytes;
            if let Payload::Command(data) = &entry.payload {
                delivered.push(Committed { index, term: entry.term, data: data.clone() });
            }
            index = index.next();
        }
        self.delivered_index = self.delivered_index.max(index.prev());
        if !delivered.is_empty() {
            out.push(Output::Deliver(delivered));
        }
        self.release_applied_reads(config, out);
    }
}

/// Whether the application sees this entry as a command.
fn is_command(payload: &Payload) -> bool {
    matches!(payload, Payload::Command(_))
}
