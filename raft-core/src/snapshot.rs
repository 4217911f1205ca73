//! Snapshots and log compaction (§7; thesis chapter 5), with the bytes kept
//! out of the core.
//!
//! - **Taking one.** The application snapshots its state machine at an
//!   index it has applied, makes it durable, and says so
//!   (`Input::SnapshotTaken`). The core records the snapshot's metadata
//!   (`Persist::Snapshot`) and compacts its log (`Persist::Compact`), keeping
//!   `Config::trailing_entries` entries before the snapshot's index: a
//!   follower that lags by fewer is sent entries, which is cheaper than a
//!   snapshot (etcd's and hashicorp's trailing logs). Nothing unapplied is
//!   ever compacted.
//! - **Sending one.** A leader whose follower needs an entry it has
//!   compacted sends `InstallSnapshot` with its snapshot's metadata, and
//!   holds that follower in snapshot mode (no appends) until it answers.
//!   The driver moves the data (etcd's design): it streams the snapshot the
//!   metadata names, and hands the message to the follower's core only once
//!   the data is durably installed there. Each heartbeat sends the message
//!   again, so a lost message or a broken transfer is retried; a driver
//!   runs one transfer per follower and ignores a repeat while it runs.
//!   The heartbeat also sends an empty append, so that the follower keeps
//!   hearing from its leader during a long transfer.
//! - **Installing one.** A follower installs a snapshot newer than its
//!   commit index: it keeps the log suffix after the snapshot's last entry
//!   if it holds that entry with the same term, and discards the whole log
//!   otherwise (the paper's rule); its commit, delivered and applied indexes
//!   jump to the snapshot's index, and the application is told to restore
//!   it (`Output::RestoreSnapshot`). It acknowledges the snapshot's index,
//!   and nothing beyond: entries it kept after it are not known to match.
//!   An older snapshot is acknowledged at the commit index, which matches
//!   every leader's log.
//! - **Recovering.** A node restarts from its latest snapshot plus the log
//!   after the compaction point (`State::recover`).

use crate::config::Config;
use crate::fault::Fault;
use crate::io::{Dropped, Output, Persist};
use crate::membership::{Configs, Membership};
use crate::message::{AppendResult, InstallSnapshot, Message};
use crate::state::State;
use crate::types::{LogIndex, NodeId, Term};
use core::fmt;
use serde::{Deserialize, Serialize};

/// What a snapshot covers: every entry up to `index`, the last of which has
/// `term`, and the membership in force at that index. (`index`, `term`)
/// names the snapshot's data: two snapshots with the same pair hold the
/// same state (Log Matching), whichever node took them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last index covered.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: Membership,
}

impl fmt::Debug for SnapshotMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot {}@{}", self.index, self.term)
    }
}

impl State {
    /// The application took a snapshot at `index` (see `Input::SnapshotTaken`).
    pub(crate) fn on_snapshot_taken(&mut self, config: &Config, index: LogIndex, out: &mut Vec<Output>) {
        let limit = if config.breaks(Fault::CompactPastCommit) { self.log.last_index() } else { self.applied_index };
        if index > limit {
            out.push(Output::Dropped(Dropped::OutOfRange));
            return;
        }
        if self.snapshot.as_ref().is_some_and(|s| index <= s.index) || index == LogIndex(0) {
            return;
        }
        let term = self.log.term_at(index).expect("an applied index past the last snapshot is held");
        let meta = SnapshotMeta { index, term, membership: self.configs.at(index).clone() };
        self.snapshot = Some(meta.clone());
        self.persist(Persist::Snapshot(meta), out);
        self.forget_configs_before(index, out);
        let keep = if config.breaks(Fault::CompactPastCommit) { 0 } else { config.trailing_entries() };
        let through = LogIndex(index.0.saturating_sub(keep));
        if through > self.log.compacted_index() {
            let term = self.log.term_at(through).expect("held");
            self.log.compact_through(through, term);
            self.persist(Persist::Compact { through, term }, out);
        }
    }

    /// A snapshot covers `index`: the memberships before the one in force
    /// there are forgotten, and a new base membership is stored.
    fn forget_configs_before(&mut self, index: LogIndex, out: &mut Vec<Output>) {
        let before = self.configs.base().clone();
        self.configs.forget_before(index);
        if *self.configs.base() != before {
            self.persist(Persist::Membership(self.configs.base().clone()), out);
        }
    }

    /// Leader: sends its snapshot to `peer`, which needs entries it has
    /// compacted, and waits for the answer.
    pub(crate) fn send_snapshot(&mut self, peer: NodeId, out: &mut Vec<Output>) {
        let term = self.hard.term;
        let snapshot = self.snapshot.clone().expect("a leader that compacted holds a snapshot");
        self.progress_mut(peer).become_snapshot(snapshot.index);
        out.push(Output::Send { to: peer, message: Message::InstallSnapshot(InstallSnapshot { term, snapshot }) });
    }

    /// Follower side of InstallSnapshot (Figure 13, with the data already
    /// installed by the driver).
    pub(crate) fn on_install_snapshot(
        &mut self,
        config: &Config,
        from: NodeId,
        m: InstallSnapshot,
        out: &mut Vec<Output>,
    ) {
        self.debug_assert_current_term(config, m.term);
        self.follow(config, from, out);
        let meta = m.snapshot;
        if meta.index <= self.commit_index {
            // Older than what this node knows committed: nothing to install.
            self.reply_append(from, AppendResult::Success { match_index: self.commit_index }, out);
            return;
        }
        let old_last = self.log.last_index();
        let matches = self.log.term_at(meta.index) == Some(meta.term);
        let discard_all = !matches || config.breaks(Fault::InstallDiscardsMatchingSuffix);
        self.persist(Persist::Snapshot(meta.clone()), out);
        if discard_all && !self.log.is_empty() {
            let from = self.log.first_index();
            self.log.truncate_from(from);
            self.persist(Persist::Truncate { from }, out);
        }
        self.log.compact_through(meta.index, meta.term);
        self.persist(Persist::Compact { through: meta.index, term: meta.term }, out);
        // The snapshot's membership, then any configuration entry in the
        // suffix kept after it.
        let before = self.configs.base().clone();
        self.configs = Configs::of_log((meta.index, meta.membership.clone()), &self.log);
        if *self.configs.base() != before {
            self.persist(Persist::Membership(self.configs.base().clone()), out);
        }
        self.commit_index = meta.index;
        self.delivered_index = meta.index;
        self.applied_index = meta.index;
        self.unapplied_bytes = 0;
        self.snapshot = Some(meta.clone());
        out.push(Output::RestoreSnapshot(meta.clone()));
        // Reads waiting for entries the snapshot covers can now be served.
        self.release_applied_reads(config, out);
        let acknowledged = if matches && config.breaks(Fault::InstallDiscardsMatchingSuffix) {
            old_last.max(meta.index)
        } else {
            meta.index
        };
        self.reply_append(from, AppendResult::Success { match_index: acknowledged }, out);
    }
}
