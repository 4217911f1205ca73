//! The HTTP face of a raft-kv node: every node answers every request.
//!
//! Writes go through the log: the leader proposes them; a follower forwards
//! the request to the leader over HTTP and returns the leader's answer.
//! Reads are linearizable without the log (ReadIndex, through
//! [`RaftHandle::read_barrier`]) on any node, or local (`?consistency=local`,
//! possibly stale). See the README for the API table.
//!
//! Every error answer is JSON, `{"error": "what went wrong"}`: refusals of
//! this server, axum's own (a body over [`BODY_BYTES_MAX`], an unknown path
//! or method) and a leader's answers passed on by a follower.
//!
//! Snapshots: every `snapshot_every` applied log entries the applier writes
//! the state machine into raft-tokio's snapshot store (applies pause while
//! it writes, reads go on), after which raft-tokio compacts the log. When
//! raft-tokio hands over a snapshot instead of entries (at a restart, from
//! the node's own; or a leader's, when this node fell behind its compacted
//! log) the machine is replaced by it, and entries after its index follow.

use super::config::ClusterFile;
use super::http::{percent_decode, request, HttpError};
use super::machine::{Command, KvMachine, Op, Outcome, KEY_BYTES_MAX, NO_SESSION, VALUE_BYTES_MAX};
use crate::{
    Change, ChangeError, ChangeRejection, EntryReceiver, Event, LogIndex, Membership, ProposeError, RaftHandle,
    RaftParams, ReadError, RoleKind, SnapshotError, SnapshotReader, TransferError, TransferRejection,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

/// How long a request waits for its write to apply or its read to be
/// confirmed before answering 504.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The header a client sets to have retries of one write applied once,
/// with [`REQUEST_SEQ_HEADER`].
pub const CLIENT_ID_HEADER: &str = "x-client-id";
/// See [`CLIENT_ID_HEADER`].
pub const REQUEST_SEQ_HEADER: &str = "x-request-seq";
/// Marks a request forwarded by a follower, so it is not forwarded again.
const FORWARDED_HEADER: &str = "x-raft-kv-forwarded";
/// Bytes a request body may have (a value, or a small JSON document); a
/// longer body is answered 413.
pub const BODY_BYTES_MAX: usize = VALUE_BYTES_MAX + 4096;

/// Test-only switch: serve linearizable reads from local state, skipping
/// ReadIndex. It exists to show that the Jepsen-style test catches the
/// stale reads this causes; never set it in a deployment.
pub const UNSAFE_LOCAL_READS_ENV: &str = "RAFT_KV_UNSAFE_LOCAL_READS";

/// A node's HTTP-side state.
pub struct KvServer {
    raft: RaftHandle,
    machine: RwLock<KvMachine>,
    applied: watch::Sender<u64>,
    waiting: Waiting,
    /// The cluster file's nodes' HTTP addresses (`host:port`, a name
    /// resolved at every forward), for forwarding and the status page.
    /// Members added later carry theirs in their membership address
    /// ([`member_address`]).
    http: BTreeMap<NodeId, String>,
    /// The cluster file's `cluster_id`, and its hash as raft-tokio shows it.
    cluster: (String, String),
    /// Requests without a session go under `NO_SESSION` with a fresh number
    /// (to match the applied entry to its waiting request). The numbers
    /// start at a random point so that entries proposed by an earlier
    /// leader's server never wake this server's requests.
    next_seq: AtomicU64,
    unsafe_local_reads: bool,
    /// Why the server stopped its node, if it did (a snapshot it could not
    /// restore).
    failure: Mutex<Option<String>>,
}

impl KvServer {
    /// Starts applying the node's committed entries (and snapshots) to a
    /// fresh state machine, and writes a snapshot every
    /// `cluster.snapshot_every` applied log entries (0: never). After a
    /// restart the node hands over its latest snapshot first, then the
    /// entries after it.
    pub fn start(raft: RaftHandle, entries: EntryReceiver, cluster: &ClusterFile) -> Arc<KvServer> {
        let start = random_start(raft.id().0);
        let http = cluster.nodes.iter().map(|n| (NodeId(n.id), n.http.clone())).collect();
        let hash = crate::config::cluster_id_text(super::cluster_hash(&cluster.cluster_id));
        let snapshot_every = cluster.snapshot_every;
        let server = Arc::new(KvServer {
            raft,
            machine: RwLock::new(KvMachine::new()),
            applied: watch::channel(0).0,
            waiting: Mutex::new(HashMap::new()),
            http,
            cluster: (cluster.cluster_id.clone(), hash),
            next_seq: AtomicU64::new(start),
            unsafe_local_reads: std::env::var_os(UNSAFE_LOCAL_READS_ENV).is_some(),
            failure: Mutex::new(None),
        });
        tokio::spawn(server.clone().run_applier(entries, snapshot_every));
        server
    }

    /// Why this server stopped its node, if it did: it was handed a snapshot
    /// it could not read, and a node must not go on without the entries a
    /// snapshot stands for.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("not poisoned").clone()
    }

    async fn run_applier(self: Arc<Self>, mut entries: EntryReceiver, snapshot_every: u64) {
        // The index of the last snapshot taken or restored (attempted, for
        // one that failed to write: the next attempt is `snapshot_every`
        // entries later, not at every entry).
        let mut last_snapshot = 0u64;
        while let Some(event) = entries.recv_event().await {
            match event {
                Event::Entry(entry) => {
                    let index = entry.index.0;
                    self.apply(index, &entry.data);
                    if snapshot_every > 0 && index.saturating_sub(last_snapshot) >= snapshot_every {
                        last_snapshot = index;
                        self.take_snapshot(entry.index).await;
                    }
                }
                Event::Restore(reader) => {
                    let index = reader.index().0;
                    if let Err(reason) = self.restore(reader).await {
                        error!("{reason}: stopping the node");
                        *self.failure.lock().expect("not poisoned") = Some(reason);
                        let _ = self.raft.shutdown().await;
                        return;
                    }
                    last_snapshot = index;
                }
            }
        }
    }

    /// Writes the machine, which has applied every entry through `index`,
    /// into the node's snapshot store. A failure is logged; the node goes
    /// on with its log uncompacted until the next attempt.
    async fn take_snapshot(self: &Arc<Self>, index: LogIndex) {
        let started = std::time::Instant::now();
        let writer = match self.raft.snapshot_writer(index).await {
            Ok(w) => w,
            Err(e) => return snapshot_not_taken(index, e),
        };
        let server = self.clone();
        // Holding the read lock for the whole write: the applier is here, so
        // nothing is applied meanwhile, and readers are not held up.
        let written = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            let machine = server.machine.read().expect("not poisoned");
            debug_assert_eq!(machine.applied(), index.0, "the applier snapshots right after applying");
            machine.write_snapshot(&mut writer).map(|summary| (summary, writer))
        })
        .await
        .expect("writing a snapshot does not panic");
        let (summary, writer) = match written {
            Ok(done) => done,
            Err(e) => return warn!(%index, "the snapshot could not be written (the log stays uncompacted): {e}"),
        };
        match writer.finish().await {
            Ok(meta) => info!(
                index = meta.index.0,
                term = meta.term.0,
                keys = summary.keys,
                sessions = summary.sessions,
                bytes = summary.bytes,
                ms = started.elapsed().as_millis() as u64,
                "snapshot taken"
            ),
            Err(e) => snapshot_not_taken(index, e),
        }
    }

    /// Replaces the machine by the snapshot's.
    async fn restore(&self, reader: SnapshotReader) -> Result<(), String> {
        let (index, path) = (reader.index(), reader.path().to_path_buf());
        let describe = |e: &dyn std::fmt::Display| format!("cannot restore snapshot {index} ({}): {e}", path.display());
        let read = tokio::task::spawn_blocking(move || KvMachine::read_snapshot(reader))
            .await
            .expect("reading a snapshot does not panic");
        let machine = read.map_err(|e| describe(&e))?;
        if machine.applied() > index.0 {
            return Err(describe(&format!("its data has applied entry {}, beyond its index", machine.applied())));
        }
        info!(%index, keys = machine.len(), "state machine restored from a snapshot");
        *self.machine.write().expect("not poisoned") = machine;
        // Requests waiting for entries the snapshot covers are not answered
        // here: they time out as unknown (504), as across a leader change.
        self.applied.send_replace(index.0);
        Ok(())
    }

    fn apply(&self, index: u64, data: &[u8]) {
        let result = self.machine.write().expect("not poisoned").apply(index, data);
        match result {
            Ok((client, seq, outcome)) => {
                let waiters = self.waiting.lock().expect("not poisoned").remove(&(client, seq));
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(outcome.clone());
                }
            }
            Err(e) => warn!(index, ?e, "skipped an entry that is not a raft-kv command"),
        }
        self.applied.send_replace(index);
    }

    /// The HTTP address of node `id`: the one its membership address
    /// carries (a member added at run time), else the cluster file's.
    fn http_of(&self, id: NodeId) -> Option<String> {
        let membership = self.raft.membership();
        let added = membership.address(id).and_then(|a| split_member_address(a).1.map(str::to_string));
        added.or_else(|| self.http.get(&id).cloned())
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/kv/{key}", get(get_key).put(put_key).delete(delete_key))
            .route("/kv/{key}/cas", post(cas_key))
            .route("/command", post(command))
            .route("/status", get(status))
            .route("/leader/transfer", post(transfer_leader))
            .route("/members", get(list_members))
            .route("/members/add", post(add_member))
            .route("/members/promote", post(promote_member))
            .route("/members/remove", post(remove_member))
            .fallback(no_route)
            .method_not_allowed_fallback(no_method)
            .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
            .with_state(self.clone())
    }

    /// The raft handle.
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }
}

type Shared = State<Arc<KvServer>>;

fn snapshot_not_taken(index: LogIndex, e: SnapshotError) {
    match e {
        // A leader's snapshot was installed meanwhile: nothing to do.
        SnapshotError::Superseded { .. } | SnapshotError::Stopped => debug!(%index, "snapshot not taken: {e}"),
        _ => warn!(%index, "the snapshot could not be taken (the log stays uncompacted): {e}"),
    }
}

/// Writes waiting for their entry to apply, by (client, seq).
type Waiting = Mutex<HashMap<(u64, u64), Vec<oneshot::Sender<Outcome>>>>;

/// A refusal: a status and a message, made into a JSON error response.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            unavailable(&self.1)
        } else {
            error(self.0, self.1)
        }
    }
}

/// A starting point for request numbers, different for every process.
fn random_start(node: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ node.rotate_left(40) ^ u64::from(std::process::id()).rotate_left(20);
    // splitmix64's finalizer spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    (status, axum::Json(Body { error: message.into() })).into_response()
}

fn unavailable(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    r
}

/// The key in `/kv/{key}` or `/kv/{key}/cas`, percent-decoded to bytes.
fn key_of(uri: &Uri) -> Result<Vec<u8>, Refusal> {
    let path = uri.path();
    let encoded = path.strip_prefix("/kv/").unwrap_or("");
    let encoded = encoded.strip_suffix("/cas").unwrap_or(encoded);
    let broken = || Refusal(StatusCode::BAD_REQUEST, "broken percent-encoding in the key".into());
    let key = percent_decode(encoded).ok_or_else(broken)?;
    if key.is_empty() {
        return Err(Refusal(StatusCode::BAD_REQUEST, "empty key".into()));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(Refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("keys are at most {KEY_BYTES_MAX} bytes")));
    }
    Ok(key)
}

/// The body, or axum's refusal of it as JSON: 413 naming the limit for
/// one over [`BODY_BYTES_MAX`] (axum's own answer is plain text).
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are at most {BODY_BYTES_MAX} bytes (values at most {VALUE_BYTES_MAX})"),
        ),
        status => Refusal(status, format!("cannot read the request body: {}", rejection.body_text())),
    })
}

/// Unknown paths: 404, in JSON as every error.
async fn no_route(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no such endpoint: {method} {}", uri.path()))
}

/// A known path with a method it does not take: 405, in JSON.
async fn no_method(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

fn check_value(value: &[u8]) -> Result<(), Refusal> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(Refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("values are at most {VALUE_BYTES_MAX} bytes")));
    }
    Ok(())
}

async fn get_key(State(s): Shared, uri: Uri) -> Response {
    let key = match key_of(&uri) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let local = match read_consistency(uri.query()) {
        Ok(consistency) => consistency == Consistency::Local,
        Err(r) => return r.into_response(),
    };
    if !local && !s.unsafe_local_reads {
        if let Err(r) = s.wait_for_read_barrier().await {
            return r.into_response();
        }
    }
    match s.machine.read().expect("not poisoned").get(&key) {
        Some(value) => (StatusCode::OK, value.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such key"),
    }
}

/// What a read asks for: `?consistency=linearizable` (the default) or
/// `?consistency=local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consistency {
    Linearizable,
    Local,
}

/// The read's `consistency` from the query string. Anything else in it is
/// refused (400) rather than ignored: a misspelt `consistency=locl` must not
/// quietly be served as a linearizable read, nor a misspelt key
/// `consistancy=local` (a typo for a stale read) pass unnoticed.
fn read_consistency(query: Option<&str>) -> Result<Consistency, Refusal> {
    let bad = |m: String| Err(Refusal(StatusCode::BAD_REQUEST, m));
    let mut consistency = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "consistency" {
            return bad(format!("unknown query parameter {name:?}: a read takes only consistency="));
        }
        let asked = match value {
            "linearizable" => Consistency::Linearizable,
            "local" => Consistency::Local,
            other => {
                return bad(format!("consistency must be \"linearizable\" (the default) or \"local\", not {other:?}"))
            }
        };
        if consistency.is_some_and(|c| c != asked) {
            return bad("consistency is given twice, with two values".into());
        }
        consistency = Some(asked);
    }
    Ok(consistency.unwrap_or(Consistency::Linearizable))
}

impl KvServer {
    /// Waits until a linearizable read may be served here: the leader has
    /// confirmed the read index, and this node has applied through it.
    async fn wait_for_read_barrier(&self) -> Result<(), Refusal> {
        let barrier = tokio::time::timeout(REQUEST_TIMEOUT, self.raft.read_barrier()).await;
        let barrier = match barrier {
            Ok(Ok(b)) => b.0,
            Ok(Err(ReadError::NoLeader)) | Ok(Err(ReadError::Stopped)) => {
                return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "no leader".into()))
            }
            Ok(Err(ReadError::Timeout)) | Err(_) => {
                return Err(Refusal(StatusCode::GATEWAY_TIMEOUT, "the read could not be confirmed in time".into()))
            }
        };
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(REQUEST_TIMEOUT, applied.wait_for(|&a| a >= barrier)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => {
                Err(Refusal(StatusCode::GATEWAY_TIMEOUT, "this node did not apply up to the read index in time".into()))
            }
        }
    }
}

/// A handler's body: the bytes, or the JSON refusal of them.
type Body = Result<Bytes, BytesRejection>;

async fn put_key(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let key = match key_of(&uri) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let body = match body_of(body).and_then(|b| check_value(&b).map(|()| b)) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    s.write(&method, &uri, &headers, &body, Op::Put { key, value: body.to_vec() }).await
}

async fn delete_key(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let key = match key_of(&uri) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    s.write(&method, &uri, &headers, &[], Op::Delete { key }).await
}

/// `{"expected": "old" or null, "new": "value" or null}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    expected: Option<String>,
    new: Option<String>,
}

async fn cas_key(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let key = match key_of(&uri) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let body = match body_of(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let cas: CasBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"expected\": ..., \"new\": ...}}: {e}")),
    };
    let (expected, new) = (cas.expected.map(String::into_bytes), cas.new.map(String::into_bytes));
    if let Err(r) = check_value(expected.as_deref().unwrap_or(&[])).and(check_value(new.as_deref().unwrap_or(&[]))) {
        return r.into_response();
    }
    s.write(&method, &uri, &headers, &body, Op::Cas { key, expected, new }).await
}

/// rafting's `{"key": "a", "value": "1"}`: a put.
#[derive(Deserialize)]
struct CommandBody {
    key: String,
    value: String,
}

async fn command(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let body = match body_of(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let c: CommandBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"key\": ..., \"value\": ...}}: {e}")),
    };
    if c.key.is_empty() || c.key.len() > KEY_BYTES_MAX {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("keys are 1 to {KEY_BYTES_MAX} bytes"));
    }
    if let Err(r) = check_value(c.value.as_bytes()) {
        return r.into_response();
    }
    s.write(&method, &uri, &headers, &body, Op::Put { key: c.key.into_bytes(), value: c.value.into_bytes() }).await
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, format!("{name} must be an unsigned integer"))),
    }
}

impl KvServer {
    /// A write: proposed here if this node leads, forwarded to the leader
    /// otherwise.
    async fn write(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], op: Op) -> Response {
        let (client, seq) = match (header_u64(headers, CLIENT_ID_HEADER), header_u64(headers, REQUEST_SEQ_HEADER)) {
            (Ok(Some(c)), Ok(Some(q))) => (c, q),
            (Ok(None), Ok(None)) => (NO_SESSION, self.next_seq.fetch_add(1, Ordering::Relaxed)),
            (Ok(Some(NO_SESSION)), _) => return error(StatusCode::BAD_REQUEST, "x-client-id 0 is reserved"),
            (Err(r), _) | (_, Err(r)) => return r.into_response(),
            _ => return error(StatusCode::BAD_REQUEST, "give both x-client-id and x-request-seq, or neither"),
        };
        let info = self.raft.leader();
        if info.role == RoleKind::Leader {
            return self.propose(Command { client, seq, op }).await;
        }
        match info.leader.and_then(|l| self.http_of(l)) {
            Some(leader) if !headers.contains_key(FORWARDED_HEADER) => {
                self.forward(&leader, method, uri, body, client, seq).await
            }
            _ => unavailable("no leader is known; retry"),
        }
    }

    async fn propose(&self, command: Command) -> Response {
        let (tx, rx) = oneshot::channel();
        let id = (command.client, command.seq);
        self.waiting.lock().expect("not poisoned").entry(id).or_default().push(tx);
        let proposed = tokio::time::timeout(REQUEST_TIMEOUT, self.raft.propose(command.encode())).await;
        let unknown =
            || error(StatusCode::GATEWAY_TIMEOUT, "the outcome is unknown: the write may or may not take effect");
        let refused = match proposed {
            Ok(Ok(_)) => None,
            Ok(Err(ProposeError::Timeout)) | Err(_) => return unknown(),
            Ok(Err(ProposeError::TooLarge)) => Some(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                // KvNode::start leaves message_bytes_max at its default.
                format!("the entry is over the limit of {} bytes per message", RaftParams::default().message_bytes_max),
            )),
            Ok(Err(e @ (ProposeError::Lost | ProposeError::NotLeader { .. } | ProposeError::NoLeader))) => {
                Some(unavailable(&format!("not committed ({e}); retry")))
            }
            Ok(Err(ProposeError::Busy | ProposeError::Stopped)) => Some(unavailable("the node is busy or stopping")),
        };
        if let Some(response) = refused {
            self.waiting.lock().expect("not poisoned").remove(&id);
            return response;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome_response(outcome),
            _ => unknown(),
        }
    }

    async fn forward(&self, leader: &str, method: &Method, uri: &Uri, body: &[u8], client: u64, seq: u64) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = vec![(FORWARDED_HEADER, "1".to_string())];
        if client != NO_SESSION {
            headers.push((CLIENT_ID_HEADER, client.to_string()));
            headers.push((REQUEST_SEQ_HEADER, seq.to_string()));
        }
        match request(leader, method.as_str(), path, &headers, body, REQUEST_TIMEOUT).await {
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = (status, answer.body.clone()).into_response();
                for name in ["content-type", "retry-after"] {
                    if let Some(v) = answer.header(name).and_then(|v| HeaderValue::from_str(v).ok()) {
                        response.headers_mut().insert(name, v);
                    }
                }
                response
            }
            Err(HttpError::Connect(e)) => unavailable(&format!("the leader at {leader} is unreachable ({e}); retry")),
            // The request may have reached the leader and committed.
            Err(HttpError::Timeout | HttpError::Io(_) | HttpError::Malformed(_)) => {
                error(StatusCode::GATEWAY_TIMEOUT, "the outcome is unknown: the write may or may not take effect")
            }
        }
    }
}

fn outcome_response(outcome: Outcome) -> Response {
    #[derive(Serialize)]
    struct Current {
        current: Option<String>,
    }
    match outcome {
        Outcome::Written => StatusCode::NO_CONTENT.into_response(),
        Outcome::Swapped => (StatusCode::OK, axum::Json(serde_json::json!({"swapped": true}))).into_response(),
        Outcome::NotSwapped(current) => {
            let current = current.map(|v| String::from_utf8_lossy(&v).into_owned());
            (StatusCode::CONFLICT, axum::Json(Current { current })).into_response()
        }
    }
}

/// `{"to": 2}`: the node to hand the leadership to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: u64,
}

/// `POST /leader/transfer`: the leader hands its leadership to `to` and
/// answers 200 `{"leader": to}` once it knows `to` leads. A follower
/// forwards the request to the leader it knows, as it does writes; 503
/// when no leader is known (or it changed meanwhile: retry), 409 when `to`
/// leads already, 400 when `to` is not a voter, 504 when `to` did not
/// become leader within two election timeouts.
async fn transfer_leader(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let body = match body_of(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let t: TransferBody = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"to\": node id}}: {e}")),
    };
    let info = s.raft.leader();
    if info.role != RoleKind::Leader {
        return match info.leader.and_then(|l| s.http_of(l)) {
            Some(leader) if !headers.contains_key(FORWARDED_HEADER) => {
                s.forward(&leader, &method, &uri, &body, NO_SESSION, 0).await
            }
            _ => unavailable("no leader is known; retry"),
        };
    }
    let to = t.to;
    match s.raft.transfer_leadership(NodeId(to)).await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({ "leader": to }))).into_response(),
        Err(TransferError::Refused(TransferRejection::ToSelf)) => {
            error(StatusCode::CONFLICT, format!("node {to} leads already"))
        }
        Err(TransferError::Refused(TransferRejection::NotVoter)) => {
            error(StatusCode::BAD_REQUEST, format!("node {to} is not a voter of the cluster"))
        }
        Err(e @ (TransferError::Refused(TransferRejection::NotLeader { .. }) | TransferError::Stopped)) => {
            unavailable(&format!("{e}; retry"))
        }
        Err(e @ TransferError::Timeout { .. }) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
    }
}

/// The address raft-kv records for a member it adds: its Raft address,
/// which raft-tokio's transport dials, then `http=` and its HTTP address
/// (raft-tokio reads an address up to its first space:
/// [`crate::raft_address`]).
pub fn member_address(raft: &str, http: &str) -> String {
    format!("{raft} http={http}")
}

/// A member address split into its Raft and HTTP addresses (the latter
/// only for members added at run time: the cluster file gives the rest).
pub fn split_member_address(address: &str) -> (&str, Option<&str>) {
    let raft = crate::raft_address(address);
    let http = address.split_whitespace().find_map(|w| w.strip_prefix("http="));
    (raft, http)
}

/// The body of `POST /members/add`: the new member's id and addresses.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddMemberBody {
    /// Its id, new to the cluster.
    pub id: u64,
    /// Its Raft address, `host:port`.
    pub raft: String,
    /// Its HTTP address, `host:port`.
    pub http: String,
}

/// The body of `POST /members/promote` and `POST /members/remove`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberIdBody {
    /// The member.
    pub id: u64,
}

/// `GET /members` and the answer of every change: the membership in
/// effect at the node that answers, and the committed one's voters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MembersBody {
    /// The voters of the membership in effect.
    pub voters: Vec<u64>,
    /// Its learners.
    pub learners: Vec<u64>,
    /// Every member with its role and addresses.
    pub members: Vec<Member>,
    /// Whether the membership in effect is committed (a change may be in
    /// flight otherwise).
    pub committed: bool,
}

impl KvServer {
    /// The membership in effect as [`MembersBody`] shows it.
    fn members_body(&self, membership: &Membership) -> MembersBody {
        let committed = *membership == self.raft.committed_membership();
        let member = |id: &NodeId, role: &str| {
            let (raft, _) = membership.address(*id).map(split_member_address).unwrap_or(("", None));
            Member {
                id: id.0,
                raft: raft.to_string(),
                http: self.http_of(*id).unwrap_or_default(),
                role: role.to_string(),
            }
        };
        let members = membership
            .voters()
            .iter()
            .map(|id| member(id, "voter"))
            .chain(membership.learners().iter().map(|id| member(id, "learner")))
            .collect();
        MembersBody {
            voters: membership.voters().iter().map(|v| v.0).collect(),
            learners: membership.learners().iter().map(|v| v.0).collect(),
            members,
            committed,
        }
    }

    /// A membership change: made here if this node leads, forwarded to the
    /// leader otherwise (as writes are).
    async fn change(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], change: Change) -> Response {
        let info = self.raft.leader();
        if info.role != RoleKind::Leader {
            return match info.leader.and_then(|l| self.http_of(l)) {
                Some(leader) if !headers.contains_key(FORWARDED_HEADER) => {
                    self.forward(&leader, method, uri, body, NO_SESSION, 0).await
                }
                _ => unavailable("no leader is known; retry"),
            };
        }
        info!(node = %self.raft.id(), ?change, "membership change asked for over HTTP");
        match self.raft.change_membership(change).await {
            Ok(m) => (StatusCode::OK, axum::Json(self.members_body(&m))).into_response(),
            Err(e @ ChangeError::Refused(ChangeRejection::NotLeader { .. })) => unavailable(&format!("{e}; retry")),
            Err(
                e @ ChangeError::Refused(
                    ChangeRejection::LeaderNotReady
                    | ChangeRejection::ChangeInProgress { .. }
                    | ChangeRejection::Transferring { .. },
                ),
            ) => unavailable(&format!("{e}; retry")),
            Err(e @ ChangeError::Refused(_)) => error(StatusCode::CONFLICT, e.to_string()),
            Err(e @ (ChangeError::Lost | ChangeError::Stopped)) => unavailable(&format!("{e}; retry")),
            Err(e @ ChangeError::Timeout) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        }
    }
}

/// The body, and its JSON as a `T`; or the answer refusing it (boxed: a
/// `Response` is large).
fn parse_body<T: serde::de::DeserializeOwned>(body: Body, shape: &str) -> Result<(Bytes, T), Box<Response>> {
    let body = body_of(body).map_err(|r| Box::new(r.into_response()))?;
    let parsed = serde_json::from_slice(&body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("expected {shape}: {e}"))))?;
    Ok((body, parsed))
}

/// `GET /members`: the membership in effect at this node (200).
async fn list_members(State(s): Shared) -> Response {
    axum::Json(s.members_body(&s.raft.membership())).into_response()
}

/// `POST /members/add {"id", "raft", "http"}`: adds a learner (which the
/// leader promotes to voter once it has caught up); 200 with the new
/// membership once the change is committed. A follower forwards it to the
/// leader. 409 when the node is a member already, 503 when no leader is
/// known or the leader is busy with another change (retry), 504 when the
/// outcome is unknown.
async fn add_member(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let shape = "{\"id\": node id, \"raft\": \"host:port\", \"http\": \"host:port\"}";
    let (bytes, add): (Bytes, AddMemberBody) = match parse_body(body, shape) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    for addr in [&add.raft, &add.http] {
        if let Err(why) = super::config::check_host_port(addr) {
            return error(StatusCode::BAD_REQUEST, format!("{addr:?}: {why}"));
        }
    }
    let change = Change::AddLearner { id: NodeId(add.id), address: member_address(&add.raft, &add.http) };
    s.change(&method, &uri, &headers, &bytes, change).await
}

/// `POST /members/promote {"id"}`: makes a learner a voter (409 if it is not
/// a learner).
async fn promote_member(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let (bytes, m): (Bytes, MemberIdBody) = match parse_body(body, "{\"id\": node id}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    s.change(&method, &uri, &headers, &bytes, Change::Promote(NodeId(m.id))).await
}

/// `POST /members/remove {"id"}`: removes a voter or a learner (409 if it
/// is not a member, or is the last voter).
async fn remove_member(State(s): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let (bytes, m): (Bytes, MemberIdBody) = match parse_body(body, "{\"id\": node id}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    s.change(&method, &uri, &headers, &bytes, Change::Remove(NodeId(m.id))).await
}

/// The body of `GET /status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StatusBody {
    /// This node.
    pub id: u64,
    /// The cluster file's `cluster_id`.
    pub cluster_id: String,
    /// Its hash, which raft-tokio's handshakes carry and its logs and
    /// errors show (`0x` and 16 hex digits).
    pub cluster_hash: String,
    /// "leader", "follower", "pre-candidate" or "candidate".
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The highest index it knows committed.
    pub commit_index: u64,
    /// The highest index its state machine applied.
    pub applied_index: u64,
    /// The index of its latest snapshot (0: none yet).
    pub snapshot_index: u64,
    /// The first index its log holds: entries before it are compacted into
    /// the snapshot.
    pub first_log_index: u64,
    /// The last index its log holds (below `first_log_index` when the log
    /// is empty after a compaction).
    pub last_log_index: u64,
    /// Snapshots it sent to followers that had fallen behind.
    pub snapshots_sent: u64,
    /// Snapshots it received from a leader and installed.
    pub snapshots_received: u64,
    /// Times, while leading, it saw a follower's log end before what that
    /// follower had acknowledged (a follower that lost its disk; logged at
    /// WARN with the follower's id).
    pub followers_regressed: u64,
    /// Every member of the membership in effect: id, role, Raft address,
    /// HTTP address (voters first).
    pub members: Vec<Member>,
    /// The voters of the membership in effect.
    #[serde(default)]
    pub voters: Vec<u64>,
    /// Its learners.
    #[serde(default)]
    pub learners: Vec<u64>,
}

/// One member in [`StatusBody`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: u64,
    /// Its Raft address.
    pub raft: String,
    /// Its HTTP address.
    pub http: String,
    /// "voter" or "learner".
    #[serde(default)]
    pub role: String,
}

async fn status(State(s): Shared) -> Response {
    let node = s.raft.status();
    let st = node.raft;
    let role = match st.role {
        RoleKind::Leader => "leader",
        RoleKind::Follower => "follower",
        RoleKind::Candidate => "candidate",
        RoleKind::PreCandidate => "pre-candidate",
    };
    let MembersBody { voters, learners, members, .. } = s.members_body(&s.raft.membership());
    let body = StatusBody {
        id: st.id.0,
        cluster_id: s.cluster.0.clone(),
        cluster_hash: s.cluster.1.clone(),
        role: role.to_string(),
        term: st.term.0,
        leader: st.leader.map(|l| l.0),
        commit_index: st.commit_index.0,
        applied_index: *s.applied.borrow(),
        snapshot_index: st.snapshot_index.0,
        first_log_index: st.first_log_index.0,
        last_log_index: st.last_log_index.0,
        snapshots_sent: node.snapshots_sent,
        snapshots_received: node.snapshots_received,
        followers_regressed: node.followers_regressed,
        members,
        voters,
        learners,
    };
    axum::Json(body).into_response()
}
