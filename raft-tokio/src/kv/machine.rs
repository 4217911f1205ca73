//! The replicated key-value state machine: commands carried in log
//! entries, applied in log order on every node, with a table of each
//! client's last request so that a retried write is applied once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most bytes in a key.
pub const KEY_BYTES_MAX: usize = 1024;
/// The most bytes in a value.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;
/// The most clients whose last answer is remembered for deduplication. When
/// full, the client seen longest ago (by log index, so every replica
/// evicts the same one) is forgotten; a retry from it after that is applied
/// again.
pub const SESSIONS_MAX: usize = 100_000;

/// The client id of a request made outside any session: applied as it
/// comes, never deduplicated (so never retried by the server either).
pub const NO_SESSION: u64 = 0;

/// The format version of encoded commands; the first byte of each entry.
const COMMAND_VERSION: u8 = 1;

/// A write, as carried in a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client's session id (random, chosen by the client), or
    /// [`NO_SESSION`]. A session issues one request at a time: a request
    /// with a sequence number at or below the session's last applied one is
    /// a retry and is not applied again.
    pub client: u64,
    /// The client's request number; a retry reuses it.
    pub seq: u64,
    /// What to do.
    pub op: Op,
}

/// A write operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Set `key` to `new` (absent: delete) if it holds `expected` (absent:
    /// if it is absent).
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value required.
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Option<Vec<u8>>,
    },
}

/// What applying a write did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A put or delete was applied.
    Written,
    /// A compare-and-set swapped.
    Swapped,
    /// A compare-and-set did not swap; the key held this.
    NotSwapped(Option<Vec<u8>>),
}

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// An unknown format version.
    Version(u8),
    /// The bytes do not form a command.
    Malformed,
}

impl Command {
    /// Encodes for a log entry: a version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![COMMAND_VERSION];
        out.extend(postcard::to_stdvec(self).expect("commands always encode"));
        out
    }

    /// Decodes a log entry.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        match bytes.split_first() {
            Some((&COMMAND_VERSION, rest)) => postcard::from_bytes(rest).map_err(|_| DecodeError::Malformed),
            Some((&v, _)) => Err(DecodeError::Version(v)),
            None => Err(DecodeError::Malformed),
        }
    }

    /// The key the command writes.
    pub fn key(&self) -> &[u8] {
        match &self.op {
            Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }
}

/// The state machine: the map, and each client's last request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvMachine {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// client -> (its last seq, that request's outcome, the index applied at).
    sessions: BTreeMap<u64, (u64, Outcome, u64)>,
    applied: u64,
}

impl KvMachine {
    /// An empty machine.
    pub fn new() -> KvMachine {
        KvMachine::default()
    }

    /// The last log index applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key and its value, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Every remembered session: (client, its last seq, that request's
    /// outcome, the index it was applied at), in client order.
    pub fn sessions(&self) -> impl Iterator<Item = (u64, u64, &Outcome, u64)> + '_ {
        self.sessions.iter().map(|(&client, (seq, outcome, at))| (client, *seq, outcome, *at))
    }

    /// Writes this machine as a snapshot (see [`super::snapshot`]).
    pub fn write_snapshot<W: std::io::Write>(&self, out: W) -> std::io::Result<super::snapshot::SnapshotSummary> {
        super::snapshot::write_snapshot(self, out)
    }

    /// Reads a machine from a snapshot (see [`super::snapshot`]).
    pub fn read_snapshot<R: std::io::Read>(input: R) -> Result<KvMachine, super::snapshot::RestoreError> {
        super::snapshot::read_snapshot(input)
    }

    /// A machine made of restored parts (the snapshot reader's).
    pub(super) fn from_parts(
        map: BTreeMap<Vec<u8>, Vec<u8>>,
        sessions: BTreeMap<u64, (u64, Outcome, u64)>,
        applied: u64,
    ) -> KvMachine {
        KvMachine { map, sessions, applied }
    }

    /// Applies the entry at `index`. A request the client already had
    /// applied (same or older seq) is not applied again; the outcome of the
    /// same seq is returned again. Undecodable entries are skipped (and
    /// reported), identically on every replica.
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Result<(u64, u64, Outcome), DecodeError> {
        assert!(index > self.applied, "entries applied out of order: {index} after {}", self.applied);
        self.applied = index;
        let command = Command::decode(data)?;
        if command.client == NO_SESSION {
            return Ok((command.client, command.seq, self.execute(command.op)));
        }
        if let Some((seq, outcome, _)) = self.sessions.get(&command.client) {
            if command.seq <= *seq {
                let outcome = if command.seq == *seq { outcome.clone() } else { Outcome::Written };
                return Ok((command.client, command.seq, outcome));
            }
        }
        let outcome = self.execute(command.op);
        self.remember(command.client, command.seq, outcome.clone(), index);
        Ok((command.client, command.seq, outcome))
    }

    fn execute(&mut self, op: Op) -> Outcome {
        match op {
            Op::Put { key, value } => {
                self.map.insert(key, value);
                Outcome::Written
            }
            Op::Delete { key } => {
                self.map.remove(&key);
                Outcome::Written
            }
            Op::Cas { key, expected, new } => {
                let current = self.map.get(&key).cloned();
                if current != expected {
                    return Outcome::NotSwapped(current);
                }
                match new {
                    Some(v) => self.map.insert(key, v),
                    None => self.map.remove(&key),
                };
                Outcome::Swapped
            }
        }
    }

    fn remember(&mut self, client: u64, seq: u64, outcome: Outcome, index: u64) {
        if self.sessions.len() >= SESSIONS_MAX && !self.sessions.contains_key(&client) {
            let oldest = self.sessions.iter().min_by_key(|(_, (_, _, at))| *at).map(|(&c, _)| c);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(client, (seq, outcome, index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u64, seq: u64, k: &str, v: &str) -> Vec<u8> {
        Command { client, seq, op: Op::Put { key: k.into(), value: v.into() } }.encode()
    }

    #[test]
    fn applies_puts_deletes_and_cas() {
        let mut m = KvMachine::new();
        m.apply(1, &put(1, 1, "a", "1")).unwrap();
        assert_eq!(m.get(b"a"), Some(&b"1".to_vec()));
        let cas = |seq, e: Option<&str>, n: Option<&str>| {
            Command {
                client: 1,
                seq,
                op: Op::Cas { key: b"a".to_vec(), expected: e.map(Into::into), new: n.map(Into::into) },
            }
            .encode()
        };
        assert_eq!(m.apply(2, &cas(2, Some("0"), Some("2"))).unwrap().2, Outcome::NotSwapped(Some(b"1".to_vec())));
        assert_eq!(m.apply(3, &cas(3, Some("1"), Some("2"))).unwrap().2, Outcome::Swapped);
        assert_eq!(m.apply(4, &cas(4, Some("2"), None)).unwrap().2, Outcome::Swapped);
        assert_eq!(m.get(b"a"), None);
        assert_eq!(m.apply(5, &cas(5, None, Some("3"))).unwrap().2, Outcome::Swapped);
        let del = Command { client: 2, seq: 1, op: Op::Delete { key: b"a".to_vec() } }.encode();
        m.apply(6, &del).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn a_retried_write_is_applied_once() {
        let mut m = KvMachine::new();
        m.apply(1, &put(7, 1, "a", "1")).unwrap();
        m.apply(2, &put(8, 1, "a", "2")).unwrap();
        // Client 7 retries its first write: it must not overwrite client 8's.
        let (_, _, outcome) = m.apply(3, &put(7, 1, "a", "1")).unwrap();
        assert_eq!(outcome, Outcome::Written);
        assert_eq!(m.get(b"a"), Some(&b"2".to_vec()));
    }

    #[test]
    fn requests_outside_a_session_are_never_deduplicated() {
        let mut m = KvMachine::new();
        // Concurrent requests without a session may commit in any order.
        m.apply(1, &put(NO_SESSION, 6, "a", "6")).unwrap();
        m.apply(2, &put(NO_SESSION, 5, "a", "5")).unwrap();
        assert_eq!(m.get(b"a"), Some(&b"5".to_vec()));
    }

    #[test]
    fn a_retried_cas_returns_its_first_outcome() {
        let mut m = KvMachine::new();
        let cas =
            Command { client: 3, seq: 9, op: Op::Cas { key: b"k".to_vec(), expected: None, new: Some(b"x".to_vec()) } };
        assert_eq!(m.apply(1, &cas.encode()).unwrap().2, Outcome::Swapped);
        // Applied again (a retry that also committed), it must still say it
        // swapped, not "not swapped: x".
        assert_eq!(m.apply(2, &cas.encode()).unwrap().2, Outcome::Swapped);
    }

    #[test]
    fn bad_entries_are_reported_and_skipped_alike_everywhere() {
        let mut m = KvMachine::new();
        assert_eq!(m.apply(1, &[9, 1, 2]), Err(DecodeError::Version(9)));
        assert_eq!(m.apply(2, &[1, 255, 255, 255]), Err(DecodeError::Malformed));
        assert_eq!(m.apply(3, &[]), Err(DecodeError::Malformed));
        assert_eq!(m.applied(), 3);
    }
}
