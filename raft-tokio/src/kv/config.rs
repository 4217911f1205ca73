//! The cluster file of `raft-kv serve`: TOML, one `[[node]]` table per node.
//!
//! ```toml
//! cluster_id = "demo"
//! [[node]]
//! id = 1
//! raft = "127.0.0.1:7001"
//! http = "127.0.0.1:8001"
//! ```
//!
//! Two optional top-level keys switch off the protocol's extensions, which
//! are on by default (see `RaftParams::pre_vote` and
//! `RaftParams::check_quorum`): `pre_vote = false` and
//! `check_quorum = false`. Every node of a cluster should use the same
//! values.
//!
//! Three more optional top-level keys, each with a `raft-kv serve` flag of
//! the same name that overrides it:
//!
//! - `snapshot_every = N`: each node writes a snapshot of its state machine
//!   every N applied log entries, after which its log is compacted to the
//!   last `trailing_entries` entries before the snapshot (default
//!   [`SNAPSHOT_EVERY_DEFAULT`]; 0: never, the log grows for ever).
//! - `trailing_entries = N`: how many entries a compaction keeps (default
//!   1024, `RaftParams::trailing_entries`): a follower that lags by fewer
//!   is sent entries, one that lags by more is sent the snapshot.
//! - `initial_cluster_state = "new" | "existing"` (etcd's name): what a node
//!   that finds an empty data directory does. `"new"` (the default, for the
//!   first start of a cluster) starts it as a new member. `"existing"`
//!   refuses to start it: the cluster has formed, so an empty directory
//!   means the node lost its disk, and as a voter it could vote twice in a
//!   term or help lose committed entries. Set it once the cluster is up.
//!
//! Addresses are `host:port`, the host an IP address (`[::1]` for IPv6)
//! or a name. A name is resolved when it is used, never at parse time: a
//! node resolves its own names when it binds them, and its peers' Raft and
//! HTTP names every time it connects to them, so a reconnect after a peer
//! moved (a new address under the same name) reaches it.
//!
//! The cluster id is a name; raft-tokio's handshakes carry a 64-bit hash of
//! it ([`super::cluster_hash`]), which raft-tokio's logs and errors show in
//! hex. raft-kv's logs, errors and `/status` show the two together, as
//! [`ClusterFile::cluster_text`] writes them: `"demo" (0x…)`.
//!
//! Every refusal names the line and says why.

use crate::{ClusterState, RaftParams};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// One node of the cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Its id.
    pub id: u64,
    /// Where it listens for Raft peers: `host:port`.
    pub raft: String,
    /// Where it serves HTTP: `host:port`.
    pub http: String,
}

/// A validated cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFile {
    /// Keeps two clusters on the same ports from talking to each other.
    pub cluster_id: String,
    /// The nodes, in file order.
    pub nodes: Vec<NodeEntry>,
    /// Pre-vote (thesis §9.6); `pre_vote = false` in the file turns it off.
    pub pre_vote: bool,
    /// Check-quorum (thesis §6.2); `check_quorum = false` turns it off.
    pub check_quorum: bool,
    /// Applied entries between two snapshots of the state machine; 0: never.
    pub snapshot_every: u64,
    /// Entries kept before a snapshot when the log is compacted.
    pub trailing_entries: u64,
    /// What an empty data directory means (see the module documentation).
    pub initial_cluster_state: ClusterState,
}

/// The default of `snapshot_every`: at 100-byte writes, about 1 MiB of log
/// between snapshots, and a snapshot every few seconds under load.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 10_000;

/// Parses `"new"` or `"existing"`, the values of `initial_cluster_state`
/// (and of the `--initial-cluster-state` flag).
pub fn parse_cluster_state(text: &str) -> Result<ClusterState, String> {
    match text {
        "new" => Ok(ClusterState::New),
        "existing" => Ok(ClusterState::Existing),
        other => Err(format!("initial_cluster_state must be \"new\" or \"existing\", not {other:?}")),
    }
}

/// Why a cluster file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// The 1-based line the problem is on, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for ConfigFileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster_id: Spanned<String>,
    #[serde(default = "on")]
    pre_vote: bool,
    #[serde(default = "on")]
    check_quorum: bool,
    #[serde(default = "snapshot_every_default")]
    snapshot_every: u64,
    #[serde(default = "trailing_entries_default")]
    trailing_entries: u64,
    initial_cluster_state: Option<Spanned<String>>,
    #[serde(default)]
    node: Vec<Spanned<RawNode>>,
}

fn on() -> bool {
    true
}

fn snapshot_every_default() -> u64 {
    SNAPSHOT_EVERY_DEFAULT
}

fn trailing_entries_default() -> u64 {
    RaftParams::default().trailing_entries
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<u64>,
    raft: Spanned<String>,
    http: Spanned<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl ClusterFile {
    /// Parses and validates a cluster file's text; `own_id`, when given,
    /// must be one of its nodes.
    pub fn parse(text: &str, own_id: Option<u64>) -> Result<ClusterFile, ConfigFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigFileError {
            line: e.span().map(|s| line_of(text, s.start)),
            reason: e.message().trim().to_string(),
        })?;
        let at = |span: std::ops::Range<usize>, reason: String| ConfigFileError {
            line: Some(line_of(text, span.start)),
            reason,
        };
        if raw.cluster_id.get_ref().trim().is_empty() {
            return Err(at(raw.cluster_id.span(), "cluster_id must not be empty".into()));
        }
        let initial_cluster_state = match &raw.initial_cluster_state {
            None => ClusterState::default(),
            Some(s) => parse_cluster_state(s.get_ref()).map_err(|reason| at(s.span(), reason))?,
        };
        if raw.node.is_empty() {
            return Err(ConfigFileError {
                line: None,
                reason: "no [[node]] table: a cluster needs at least one node".into(),
            });
        }
        let mut nodes: Vec<NodeEntry> = Vec::new();
        for table in &raw.node {
            let n = table.get_ref();
            let addr = |s: &Spanned<String>, what: &str| -> Result<String, ConfigFileError> {
                check_host_port(s.get_ref()).map_err(|why| {
                    at(
                        s.span(),
                        format!(
                            "{what} = {:?} is not an address like 127.0.0.1:7001 or node1:7001: {why}",
                            s.get_ref()
                        ),
                    )
                })
            };
            let entry = NodeEntry { id: *n.id.get_ref(), raft: addr(&n.raft, "raft")?, http: addr(&n.http, "http")? };
            if nodes.iter().any(|m| m.id == entry.id) {
                return Err(at(n.id.span(), format!("node id {} is used twice", entry.id)));
            }
            // Host names compare without case, as DNS does. Two names for
            // one address are not caught: that would need resolving them.
            let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
            let all_addrs: Vec<&str> = nodes.iter().flat_map(|m| [m.raft.as_str(), m.http.as_str()]).collect();
            for (s, a) in [(&n.raft, &entry.raft), (&n.http, &entry.http)] {
                if all_addrs.iter().any(|b| same(a, b)) {
                    return Err(at(s.span(), format!("address {a} is used twice")));
                }
            }
            if same(&entry.raft, &entry.http) {
                return Err(at(n.http.span(), format!("node {} uses {} for both raft and http", entry.id, entry.raft)));
            }
            nodes.push(entry);
        }
        if let Some(id) = own_id {
            if !nodes.iter().any(|n| n.id == id) {
                let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
                return Err(ConfigFileError {
                    line: None,
                    reason: format!("--id {id} is not in the cluster file (its ids: {})", ids.join(", ")),
                });
            }
        }
        Ok(ClusterFile {
            cluster_id: raw.cluster_id.into_inner(),
            nodes,
            pre_vote: raw.pre_vote,
            check_quorum: raw.check_quorum,
            snapshot_every: raw.snapshot_every,
            trailing_entries: raw.trailing_entries,
            initial_cluster_state,
        })
    }

    /// A cluster of `nodes` with every default: pre-vote and check-quorum
    /// on, a snapshot every [`SNAPSHOT_EVERY_DEFAULT`] entries, a new cluster.
    pub fn new(cluster_id: impl Into<String>, nodes: Vec<NodeEntry>) -> ClusterFile {
        ClusterFile {
            cluster_id: cluster_id.into(),
            nodes,
            pre_vote: true,
            check_quorum: true,
            snapshot_every: SNAPSHOT_EVERY_DEFAULT,
            trailing_entries: trailing_entries_default(),
            initial_cluster_state: ClusterState::New,
        }
    }

    /// The entry of node `id`.
    pub fn node(&self, id: u64) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The cluster id as raft-kv shows it in logs, errors and `/status`:
    /// the file's name and the hash raft-tokio's handshakes carry (and its
    /// own logs and errors show), `"demo" (0xa5e41b674276d396)`.
    pub fn cluster_text(&self) -> String {
        format!("{:?} ({})", self.cluster_id, crate::config::cluster_id_text(super::cluster_hash(&self.cluster_id)))
    }
}

/// Checks that `text` is `host:port`: a port number after the last colon,
/// and a host before it that is an IPv4 address, a bracketed IPv6 address
/// or a DNS name. Names are not resolved here (see the module
/// documentation).
pub fn check_host_port(text: &str) -> Result<String, String> {
    let (host, port) = text.rsplit_once(':').ok_or("no :port")?;
    port.parse::<u16>().map_err(|_| format!("{port:?} is not a port number"))?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{host} is not an IPv6 address"))?;
        return Ok(text.to_string());
    }
    // Underscores are not DNS, but container networks resolve such names.
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(name_byte) && !l.starts_with('-');
    if host.is_empty() {
        return Err("no host".into());
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, as [::1]:7001".into());
    }
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"cluster_id = "demo"
[[node]]
id = 1
raft = "127.0.0.1:7001"
http = "127.0.0.1:8001"
[[node]]
id = 2
raft = "127.0.0.1:7002"
http = "127.0.0.1:8002"
"#;

    #[test]
    fn parses_a_good_file() {
        let f = ClusterFile::parse(GOOD, Some(2)).unwrap();
        assert_eq!(f.cluster_id, "demo");
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.node(2).unwrap().http, "127.0.0.1:8002");
        assert!(f.pre_vote && f.check_quorum, "on unless the file says otherwise");
        let off = format!("pre_vote = false\ncheck_quorum = false\n{GOOD}");
        let f = ClusterFile::parse(&off, None).unwrap();
        assert!(!f.pre_vote && !f.check_quorum);
    }

    #[test]
    fn snapshot_keys_have_defaults_and_can_be_set() {
        let f = ClusterFile::parse(GOOD, None).unwrap();
        assert_eq!(f.snapshot_every, SNAPSHOT_EVERY_DEFAULT);
        assert_eq!(f.trailing_entries, RaftParams::default().trailing_entries);
        assert_eq!(f.initial_cluster_state, ClusterState::New);
        assert_eq!(f, ClusterFile::new("demo", f.nodes.clone()), "the file's defaults are new()'s");
        let set = format!("snapshot_every = 0\ntrailing_entries = 20\ninitial_cluster_state = \"existing\"\n{GOOD}");
        let f = ClusterFile::parse(&set, None).unwrap();
        assert_eq!((f.snapshot_every, f.trailing_entries), (0, 20));
        assert_eq!(f.initial_cluster_state, ClusterState::Existing);
        let bad = format!("cluster_id = \"x\"\ninitial_cluster_state = \"old\"\n{}", &GOOD[GOOD.find('[').unwrap()..]);
        let e = ClusterFile::parse(&bad, None).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("\"new\" or \"existing\""), "{e}");
        let negative = format!("snapshot_every = -1\n{GOOD}");
        assert_eq!(ClusterFile::parse(&negative, None).unwrap_err().line, Some(1));
    }

    #[test]
    fn host_names_are_kept_as_written_and_resolved_later() {
        let named = GOOD.replace("127.0.0.1:7001", "localhost:7001").replace("127.0.0.1:8002", "node-2.example:8002");
        let f = ClusterFile::parse(&named, None).unwrap();
        assert_eq!(f.node(1).unwrap().raft, "localhost:7001");
        assert_eq!(f.node(2).unwrap().http, "node-2.example:8002");
        for good in ["[::1]:7001", "10.0.0.1:1", "a.b.c.:65535", "x:0", "kv_node_1:7001"] {
            assert_eq!(check_host_port(good).as_deref(), Ok(good));
        }
        for (bad, why) in [
            ("::1:7001", "brackets"),
            ("host:port", "not a port number"),
            ("host:70000", "not a port number"),
            (":7001", "no host"),
            ("a b:1", "neither"),
            ("a..b:1", "neither"),
            ("[::g]:1", "not an IPv6 address"),
            ("-a:1", "neither"),
        ] {
            let e = check_host_port(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_cluster_id_is_shown_with_its_hash() {
        let f = ClusterFile::parse(GOOD, None).unwrap();
        let hash = crate::kv::cluster_hash("demo");
        assert_eq!(f.cluster_text(), format!("\"demo\" (0x{hash:016x})"));
        assert_eq!(f.cluster_text(), "\"demo\" (0xa5e41b674276d396)", "as the module documentation shows it");
    }

    #[test]
    fn refusals_name_the_line_and_the_reason() {
        let dup_id = GOOD.replace("id = 2", "id = 1");
        let e = ClusterFile::parse(&dup_id, None).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (Some(7), "node id 1 is used twice"));

        let dup_addr = GOOD.replace("127.0.0.1:8002", "127.0.0.1:7001");
        let e = ClusterFile::parse(&dup_addr, None).unwrap_err();
        assert_eq!(e.line, Some(9));
        assert!(e.reason.contains("127.0.0.1:7001 is used twice"), "{e}");

        let bad_addr = GOOD.replace("127.0.0.1:7002", "localhost");
        let e = ClusterFile::parse(&bad_addr, None).unwrap_err();
        assert_eq!(e.line, Some(8));
        assert!(e.reason.contains("not an address") && e.reason.contains("no :port"), "{e}");

        let same_name = GOOD.replace("127.0.0.1:8002", "LocalHost:8001").replace("127.0.0.1:8001", "localhost:8001");
        let e = ClusterFile::parse(&same_name, None).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert!(e.reason.contains("LocalHost:8001 is used twice"), "{e}");

        let e = ClusterFile::parse(GOOD, Some(3)).unwrap_err();
        assert!(e.to_string().contains("--id 3 is not in the cluster file (its ids: 1, 2)"), "{e}");

        let malformed = GOOD.replace("id = 2", "id = = 2");
        let e = ClusterFile::parse(&malformed, None).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");

        let unknown = GOOD.replace("id = 2", "id = 2\nport = 5");
        let e = ClusterFile::parse(&unknown, None).unwrap_err();
        assert!(e.reason.contains("port"), "{e}");

        let e = ClusterFile::parse("cluster_id = \"x\"\n", None).unwrap_err();
        assert!(e.reason.contains("no [[node]]"), "{e}");
    }
}
