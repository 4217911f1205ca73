//! A node's configuration, checked once when it is built.

#[cfg(feature = "fault-injection")]
use crate::fault::Fault;
use crate::types::NodeId;
use core::fmt;
use core::time::Duration;
use serde::{Deserialize, Serialize};

/// A validated node configuration: the node's id and its static
/// parameters (timeouts and bounds). Build it with [`Config::new`]
/// (defaults for every parameter) and adjust with the `with_*` methods,
/// each of which re-validates; the fields are read-only so a `Config` is
/// always valid. The cluster's members are not here: they are part of the
/// node's state ([`Membership`](crate::Membership)), persisted with it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    id: NodeId,
    election_timeout_min: Duration,
    election_timeout_max: Duration,
    heartbeat_interval: Duration,
    entries_per_append_max: usize,
    pending_proposals_max: usize,
    message_bytes_max: usize,
    inflight_entries_max: u64,
    unapplied_entries_max: u64,
    unapplied_bytes_max: u64,
    uncommitted_entries_max: u64,
    reads_max: usize,
    trailing_entries: u64,
    pre_vote: bool,
    check_quorum: bool,
    #[cfg(feature = "fault-injection")]
    fault: Option<Fault>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config({})", self.id)
    }
}

/// Why a configuration was refused. Each variant is a caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The election timeout range is empty or starts at zero.
    ElectionTimeoutRange {
        /// The minimum given.
        min: Duration,
        /// The maximum given.
        max: Duration,
    },
    /// The heartbeat interval is zero or not well below the minimum election
    /// timeout (it must be at most half of it, or followers would time out
    /// between two heartbeats of a healthy leader).
    HeartbeatInterval {
        /// The interval given.
        heartbeat: Duration,
        /// The minimum election timeout it is compared with.
        election_timeout_min: Duration,
    },
    /// A named bound is zero.
    ZeroBound {
        /// The name of the bound.
        name: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ElectionTimeoutRange { min, max } => write!(
                f,
                "election timeout range {min:?}..={max:?} is invalid: the minimum must be above zero and not above the maximum"
            ),
            ConfigError::HeartbeatInterval { heartbeat, election_timeout_min } => write!(
                f,
                "heartbeat interval {heartbeat:?} must be above zero and at most half the minimum election timeout {election_timeout_min:?}"
            ),
            ConfigError::ZeroBound { name } => write!(f, "{name} must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Default election timeout range: 150–300 ms, the paper's recommendation (§9.3).
    pub const ELECTION_TIMEOUT_DEFAULT: (Duration, Duration) = (Duration::from_millis(150), Duration::from_millis(300));
    /// Default heartbeat interval: half the minimum election timeout would
    /// leave no slack for a slow round trip, so a third.
    pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_millis(50);

    /// A configuration for node `id`, with default timeouts and bounds.
    pub fn new(id: NodeId) -> Config {
        let (min, max) = Self::ELECTION_TIMEOUT_DEFAULT;
        Config {
            id,
            election_timeout_min: min,
            election_timeout_max: max,
            heartbeat_interval: Self::HEARTBEAT_INTERVAL_DEFAULT,
            entries_per_append_max: 64,
            pending_proposals_max: 1024,
            message_bytes_max: 1 << 20,
            inflight_entries_max: 4096,
            // Enough for any batch the runtime makes, and a backlog the
            // application can hold in memory (64 MiB).
            unapplied_entries_max: 4096,
            unapplied_bytes_max: 64 << 20,
            // A leader without a quorum keeps at most this many entries it
            // cannot commit; proposals beyond are refused, not hoarded.
            uncommitted_entries_max: 64 * 1024,
            reads_max: 64 * 1024,
            // A follower that lags by fewer entries than this behind a
            // snapshot is sent entries, not the snapshot (hashicorp keeps
            // 10240, etcd 5000); 64 MiB of 64 KiB entries at most.
            trailing_entries: 1024,
            // On by default, as hashicorp's raft and CockroachDB have them: a
            // node cut off and healed cannot depose a healthy leader, and a
            // leader cut off from its majority steps down.
            pre_vote: true,
            check_quorum: true,
            #[cfg(feature = "fault-injection")]
            fault: None,
        }
    }

    /// Sets the election timeout range (inclusive) and the heartbeat
    /// interval together, checked together (setting them one at a time
    /// checks each against the other's old value).
    pub fn with_timing(mut self, min: Duration, max: Duration, heartbeat: Duration) -> Result<Config, ConfigError> {
        if min.is_zero() || min > max {
            return Err(ConfigError::ElectionTimeoutRange { min, max });
        }
        (self.election_timeout_min, self.election_timeout_max, self.heartbeat_interval) = (min, max, heartbeat);
        self.check_heartbeat()?;
        Ok(self)
    }

    /// Sets the election timeout range (inclusive). The heartbeat interval is
    /// checked against the new minimum.
    pub fn with_election_timeout(mut self, min: Duration, max: Duration) -> Result<Config, ConfigError> {
        if min.is_zero() || min > max {
            return Err(ConfigError::ElectionTimeoutRange { min, max });
        }
        self.election_timeout_min = min;
        self.election_timeout_max = max;
        self.check_heartbeat()?;
        Ok(self)
    }

    /// Sets the heartbeat interval; it must be at most half the minimum
    /// election timeout.
    pub fn with_heartbeat_interval(mut self, heartbeat: Duration) -> Result<Config, ConfigError> {
        self.heartbeat_interval = heartbeat;
        self.check_heartbeat()?;
        Ok(self)
    }

    /// Sets the most entries one AppendEntries message carries.
    pub fn with_entries_per_append_max(mut self, n: usize) -> Result<Config, ConfigError> {
        self.entries_per_append_max = nonzero("entries_per_append_max", n)?;
        Ok(self)
    }

    /// Sets the most proposals held while no leader is known.
    pub fn with_pending_proposals_max(mut self, n: usize) -> Result<Config, ConfigError> {
        self.pending_proposals_max = nonzero("pending_proposals_max", n)?;
        Ok(self)
    }

    /// Sets the most payload bytes one message carries. A single proposal
    /// larger than this is refused.
    pub fn with_message_bytes_max(mut self, n: usize) -> Result<Config, ConfigError> {
        self.message_bytes_max = nonzero("message_bytes_max", n)?;
        Ok(self)
    }

    /// Sets the most entries a leader sends ahead of a follower's
    /// acknowledgements.
    pub fn with_inflight_entries_max(mut self, n: u64) -> Result<Config, ConfigError> {
        self.inflight_entries_max = nonzero("inflight_entries_max", n as usize)? as u64;
        Ok(self)
    }

    /// Sets the most entries delivered to the application and not yet
    /// reported applied (`Input::Applied`): one `Deliver` never carries
    /// more, and a lagging application holds no more.
    pub fn with_unapplied_entries_max(mut self, n: u64) -> Result<Config, ConfigError> {
        self.unapplied_entries_max = nonzero("unapplied_entries_max", n as usize)? as u64;
        Ok(self)
    }

    /// Sets the most command bytes delivered and not yet reported applied
    /// (a single larger entry is still delivered, alone).
    pub fn with_unapplied_bytes_max(mut self, n: u64) -> Result<Config, ConfigError> {
        self.unapplied_bytes_max = nonzero("unapplied_bytes_max", n as usize)? as u64;
        Ok(self)
    }

    /// Sets the most entries a leader holds uncommitted; proposals beyond
    /// it, local or forwarded, are refused with `Rejection::QueueFull`.
    pub fn with_uncommitted_entries_max(mut self, n: u64) -> Result<Config, ConfigError> {
        self.uncommitted_entries_max = nonzero("uncommitted_entries_max", n as usize)? as u64;
        Ok(self)
    }

    /// Sets the most reads a leader holds waiting for confirmation, and a
    /// follower holds asked of its leader; reads beyond are refused with
    /// `Rejection::QueueFull`.
    pub fn with_reads_max(mut self, n: usize) -> Result<Config, ConfigError> {
        self.reads_max = nonzero("reads_max", n)?;
        Ok(self)
    }

    /// Sets how many entries at and before a snapshot's index the log keeps
    /// when the application takes a snapshot (`Input::SnapshotTaken`): a
    /// follower that lags by fewer is sent entries rather than the whole
    /// snapshot. 0 compacts everything the snapshot covers.
    pub fn with_trailing_entries(mut self, n: u64) -> Config {
        self.trailing_entries = n;
        self
    }

    /// Turns pre-vote (thesis §9.6) on or off: with it, a node whose
    /// election timer fires first asks whether it could win, and changes
    /// its term only if a majority says yes.
    pub fn with_pre_vote(mut self, on: bool) -> Config {
        self.pre_vote = on;
        self
    }

    /// Turns check-quorum (thesis §6.2) on or off: with it, a leader that
    /// has not heard from a majority for an election timeout steps down,
    /// and a node that hears from a live leader ignores vote requests of
    /// higher terms (unless a leadership transfer sent them).
    pub fn with_check_quorum(mut self, on: bool) -> Config {
        self.check_quorum = on;
        self
    }

    /// Breaks one rule on purpose (test builds only).
    #[cfg(feature = "fault-injection")]
    pub fn with_fault(mut self, fault: Fault) -> Config {
        self.fault = Some(fault);
        self
    }

    /// The rule broken on purpose, if any.
    #[cfg(feature = "fault-injection")]
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// Whether the rule `fault` names is broken on purpose. A constant
    /// `false` without the `fault-injection` feature.
    #[inline]
    pub(crate) fn breaks(&self, fault: crate::fault::Fault) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.fault == Some(fault)
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = fault;
            false
        }
    }

    /// Whether any rule is broken on purpose (the core then skips its own
    /// invariant assertions, so that the checkers must find the fault).
    #[inline]
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn has_fault(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.fault.is_some()
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            false
        }
    }

    fn check_heartbeat(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.election_timeout_min {
            return Err(ConfigError::HeartbeatInterval {
                heartbeat: self.heartbeat_interval,
                election_timeout_min: self.election_timeout_min,
            });
        }
        Ok(())
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The election timeout range, inclusive.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        (self.election_timeout_min, self.election_timeout_max)
    }
    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }
    /// The most entries in one AppendEntries.
    pub fn entries_per_append_max(&self) -> usize {
        self.entries_per_append_max
    }
    /// The most proposals queued while no leader is known.
    pub fn pending_proposals_max(&self) -> usize {
        self.pending_proposals_max
    }
    /// The most payload bytes in one message.
    pub fn message_bytes_max(&self) -> usize {
        self.message_bytes_max
    }
    /// The most entries sent ahead of acknowledgements, per follower.
    pub fn inflight_entries_max(&self) -> u64 {
        self.inflight_entries_max
    }
    /// The most entries delivered and not yet reported applied.
    pub fn unapplied_entries_max(&self) -> u64 {
        self.unapplied_entries_max
    }
    /// The most command bytes delivered and not yet reported applied.
    pub fn unapplied_bytes_max(&self) -> u64 {
        self.unapplied_bytes_max
    }
    /// The most entries a leader holds uncommitted.
    pub fn uncommitted_entries_max(&self) -> u64 {
        self.uncommitted_entries_max
    }
    /// The entries kept at and before a snapshot's index.
    pub fn trailing_entries(&self) -> u64 {
        self.trailing_entries
    }
    /// Whether pre-vote is on.
    pub fn pre_vote(&self) -> bool {
        self.pre_vote
    }
    /// Whether check-quorum is on.
    pub fn check_quorum(&self) -> bool {
        self.check_quorum
    }
    /// The most reads held waiting (see [`Config::with_reads_max`]).
    pub fn reads_max(&self) -> usize {
        self.reads_max
    }
}

fn nonzero(name: &'static str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(ConfigError::ZeroBound { name })
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_configs_with_reasons() {
        let c = Config::new(NodeId(1));
        let ms = Duration::from_millis;
        assert!(matches!(
            c.clone().with_election_timeout(ms(0), ms(10)),
            Err(ConfigError::ElectionTimeoutRange { .. })
        ));
        assert!(matches!(
            c.clone().with_election_timeout(ms(20), ms(10)),
            Err(ConfigError::ElectionTimeoutRange { .. })
        ));
        // 50 ms heartbeat against a 60 ms minimum is not "well below".
        assert!(matches!(c.clone().with_election_timeout(ms(60), ms(120)), Err(ConfigError::HeartbeatInterval { .. })));
        assert!(matches!(c.clone().with_heartbeat_interval(ms(0)), Err(ConfigError::HeartbeatInterval { .. })));
        // Short timeouts with a short heartbeat, set together, are fine.
        assert!(c.clone().with_timing(ms(12), ms(24), ms(6)).is_ok());
        assert!(matches!(c.clone().with_timing(ms(12), ms(24), ms(7)), Err(ConfigError::HeartbeatInterval { .. })));
        assert_eq!(
            c.clone().with_entries_per_append_max(0),
            Err(ConfigError::ZeroBound { name: "entries_per_append_max" })
        );
        assert_eq!(
            c.clone().with_unapplied_entries_max(0),
            Err(ConfigError::ZeroBound { name: "unapplied_entries_max" })
        );
        let err = c.with_heartbeat_interval(ms(100)).unwrap_err().to_string();
        assert!(err.contains("at most half"), "{err}");
    }
}
