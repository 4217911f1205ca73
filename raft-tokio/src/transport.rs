//! TCP between nodes: one connection per ordered pair of nodes.
//!
//! Each node dials every peer and only writes on the connections it dialed;
//! it accepts its peers' connections and only reads from them. A writer task
//! per peer owns a bounded queue of messages; it connects (with exponential
//! backoff), shakes hands, then writes batches of queued messages with one
//! system call per batch. A peer's address may be a host name: it is
//! resolved at every connection attempt, so a reconnect follows the name to
//! wherever it points now. When a peer is slow or unreachable its queue fills
//! and further messages to it are dropped and counted: Raft retries, and an
//! unbounded queue would only grow while the peer is away.
//!
//! The peers are the members of the membership in effect (raft-core's
//! `State::membership`, which changes at run time): the node loop hands
//! each new one to [`Transport::set_members`], which starts a writer for
//! every member it did not have and stops the writers of members removed.
//! A member's address is the one its membership records (the cluster's
//! initial members are recorded with the configured addresses; a member
//! added later with the address it was added with), read up to its first
//! space ([`raft_address`]: the rest is the application's). A node that has
//! not learnt the membership yet (one that joins) reaches the configured
//! members: the address book holds both, the membership's winning. A
//! message to a node with no writer that the book has an address for (a
//! joining node answering a leader it does not know as a member yet)
//! starts one.
//!
//! A connection whose handshake or any frame is bad (does not decode, is
//! over the size limit, names a node outside the cluster or another
//! cluster) is logged, counted and closed. The node keeps running.
//!
//! Until its handshake passes, an incoming connection is a stranger's: at
//! most [`HANDSHAKES_PENDING_MAX`] of them are served at once (more are
//! closed unread), each reads into a buffer the size of one handshake, and
//! each has [`HANDSHAKE_TIMEOUT`] to complete it. Only then does it get the
//! full-sized read buffer.
//!
//! Snapshot data travels on connections of their own (see
//! [`crate::transfer`]): an incoming connection whose first frame after the
//! handshake is a snapshot offer is handed to the transfer receiver. An
//! `InstallSnapshot` message on a message connection is refused: raft-core
//! must only see it once its data is installed.

use crate::config::cluster_id_text;
use crate::snapshots::SnapshotStore;
use crate::wire::{self, Frame, FrameError, Hello, HELLO_BYTES_MAX, LENGTH_PREFIX_BYTES};
use raft_core::{InstallSnapshot, Membership, Message, NodeId, ProposalId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// The first reconnection delay; doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The longest reconnection delay: a restarted peer is reached within this.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long a new connection may take to connect and say hello before it
/// is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most incoming connections served before their handshake passed. A
/// cluster's own peers need one each (and a second while one reconnects);
/// the rest is room for restarts. Past it, a new connection is closed at
/// once, unread, and counted: strangers cannot make a node hold more than
/// this many handshake buffers and tasks.
pub const HANDSHAKES_PENDING_MAX: usize = 64;
/// The read buffer of a connection whose handshake has not passed: one
/// handshake frame (its peer sends nothing else before the answer).
const HANDSHAKE_READ_BYTES: usize = LENGTH_PREFIX_BYTES + HELLO_BYTES_MAX;
/// Most messages one write system call carries: enough to amortise the call
/// under load, few enough that the first message is not held back long.
const MESSAGES_PER_WRITE_MAX: usize = 256;
/// Most bytes gathered for one write before it is issued.
const WRITE_BYTES_MAX: usize = 256 * 1024;
/// Bytes read per read system call at most (and the read buffer's size).
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Counters of what the transport dropped. Readable at any time.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    /// Connections closed because of a bad handshake or frame.
    pub rejected_connections: AtomicU64,
    /// Connections closed unread: too many handshakes were pending.
    pub refused_connections: AtomicU64,
    /// Messages dropped because a peer's send queue was full.
    pub send_queue_full: AtomicU64,
    /// Messages dropped because they would not fit in one frame.
    pub oversized_messages: AtomicU64,
    /// Snapshot transfers this node sent to completion.
    pub snapshots_sent: AtomicU64,
    /// Snapshot transfers this node received and installed.
    pub snapshots_received: AtomicU64,
    /// Snapshot transfers that failed, on either side.
    pub snapshot_transfers_failed: AtomicU64,
}

/// Every node this node knows an address for: the configured members and
/// those of the membership in effect (which wins). Handshakes from nodes
/// outside it are refused. Written by the node loop when the membership
/// changes, read at each connection attempt.
#[derive(Clone, Default)]
pub(crate) struct AddressBook {
    inner: Arc<std::sync::RwLock<BTreeMap<NodeId, String>>>,
}

impl AddressBook {
    pub fn new(configured: BTreeMap<NodeId, String>) -> AddressBook {
        AddressBook { inner: Arc::new(std::sync::RwLock::new(configured)) }
    }

    /// The Raft address of `id`, if known.
    pub fn get(&self, id: NodeId) -> Option<String> {
        self.inner.read().expect("not poisoned").get(&id).cloned()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.inner.read().expect("not poisoned").contains_key(&id)
    }

    /// Records the addresses `membership` holds (over what the book had).
    fn learn(&self, membership: &Membership) {
        let mut book = self.inner.write().expect("not poisoned");
        for (&id, address) in membership.addresses() {
            let address = raft_address(address);
            if !address.is_empty() {
                book.insert(id, address.to_string());
            }
        }
    }
}

/// The part of a member's address the transport dials: up to the first
/// whitespace. An application may keep more after it (raft-kv keeps its
/// HTTP address as `http=host:port`).
pub fn raft_address(address: &str) -> &str {
    address.split_whitespace().next().unwrap_or("")
}

/// What the transport needs to know about the cluster.
#[derive(Clone)]
pub(crate) struct TransportConfig {
    pub id: NodeId,
    pub cluster_id: u64,
    pub members: AddressBook,
    pub frame_bytes_max: usize,
    pub send_queue_max: usize,
    /// Where snapshot files are read from and received into.
    pub snapshots: SnapshotStore,
    /// Transfers being received (see `transfer::RECEIVES_MAX`).
    pub receives: Arc<Semaphore>,
}

/// What the transport hands the node loop.
pub(crate) enum Inbound {
    /// A message from a peer.
    Message(NodeId, Message),
    /// A snapshot received from a peer and durably installed in the snapshot
    /// store: its `InstallSnapshot` message, for raft-core.
    Installed(NodeId, InstallSnapshot),
    /// Proposals forwarded to a peer that were never written to a
    /// connection (it was down): proposing them again cannot duplicate them.
    Unsent(Vec<ProposalId>),
}

/// The driver's handle on the transport: one queue (and writer) per peer.
pub(crate) struct Transport {
    config: Arc<TransportConfig>,
    queues: BTreeMap<NodeId, Peer>,
    counters: Arc<TransportCounters>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    inbox: mpsc::Sender<Inbound>,
}

/// One peer's queue, its writer task and the address it dials.
struct Peer {
    queue: mpsc::Sender<Message>,
    writer: JoinHandle<()>,
    addr: String,
}

impl Transport {
    /// Starts the accept loop on `listener` and a writer per peer. Received
    /// messages go to `inbox`.
    pub fn start(
        config: TransportConfig,
        listener: TcpListener,
        inbox: mpsc::Sender<Inbound>,
        counters: Arc<TransportCounters>,
    ) -> Transport {
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(config);
        let tasks = vec![tokio::spawn(accept_loop(config.clone(), listener, inbox.clone(), counters.clone(), stopped))];
        Transport { config, queues: BTreeMap::new(), counters, tasks, stop, inbox }
    }

    /// Follows the membership in effect: writers for its members (at the
    /// addresses it records), none for anyone else.
    pub fn set_members(&mut self, membership: &Membership) {
        self.config.members.learn(membership);
        let me = self.config.id;
        let peers: Vec<NodeId> = membership.peers(me).collect();
        let gone: Vec<NodeId> = self.queues.keys().copied().filter(|p| !peers.contains(p)).collect();
        for peer in gone {
            if let Some(p) = self.queues.remove(&peer) {
                info!(node = %me, %peer, "no longer a member: stopped sending to it");
                p.writer.abort();
            }
        }
        for peer in peers {
            let Some(addr) = self.config.members.get(peer) else { continue };
            match self.queues.get(&peer) {
                Some(p) if p.addr == addr => {}
                _ => self.start_writer(peer, addr),
            }
        }
    }

    /// Starts (or restarts, at a new address) the writer to `peer`.
    fn start_writer(&mut self, peer: NodeId, addr: String) {
        let (tx, rx) = mpsc::channel(self.config.send_queue_max);
        let writer = Writer {
            config: self.config.clone(),
            peer,
            addr: addr.clone(),
            counters: self.counters.clone(),
            inbox: self.inbox.clone(),
        };
        let writer = tokio::spawn(writer.run(rx, self.stop.subscribe()));
        if let Some(old) = self.queues.insert(peer, Peer { queue: tx, writer, addr }) {
            old.writer.abort();
        }
    }

    /// Queues `message` for `to`; drops (and counts) it when the queue is full.
    /// Never an `InstallSnapshot`: its data goes with it, on a transfer's
    /// connection (`transfer::send`). A node without a writer whose
    /// address the book knows gets one (see the module documentation).
    pub fn send(&mut self, to: NodeId, message: Message) {
        debug_assert!(!matches!(message, Message::InstallSnapshot(_)), "a snapshot is sent by a transfer");
        if !self.queues.contains_key(&to) && to != self.config.id {
            let Some(addr) = self.config.members.get(to) else { return };
            self.start_writer(to, addr);
        }
        if let Some(p) = self.queues.get(&to) {
            if p.queue.try_send(message).is_err() {
                self.counters.send_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts sending the snapshot `message` names to `to`, with its data,
    /// on a connection of its own (see [`crate::transfer`]).
    pub fn send_snapshot(&self, to: NodeId, message: InstallSnapshot) -> JoinHandle<()> {
        tokio::spawn(crate::transfer::send(self.config.clone(), to, message, self.counters.clone()))
    }

    /// Stops every task and waits for them, so that the port is free again.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let writers = self.queues.into_values().map(|p| p.writer);
        for t in self.tasks.into_iter().chain(writers) {
            let _ = t.await;
        }
    }
}

async fn accept_loop(
    config: Arc<TransportConfig>,
    listener: TcpListener,
    inbox: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
    mut stopped: watch::Receiver<bool>,
) {
    // The connections' tasks, so that a stopped node has closed every
    // connection (and its peers see it) before `Transport::stop` returns.
    let mut connections = tokio::task::JoinSet::new();
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_PENDING_MAX));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = connections.join_next() => continue,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    counters.refused_connections.fetch_add(1, Ordering::Relaxed);
                    debug!(node = %config.id, peer_addr = %addr, "refused a connection: too many handshakes pending");
                    continue;
                };
                let (config, inbox, counters) = (config.clone(), inbox.clone(), counters.clone());
                connections.spawn(async move {
                    match serve(&config, stream, &inbox, permit, &counters).await {
                        Ok(()) => {}
                        Err(e) if e.is_peer_fault() => {
                            counters.rejected_connections.fetch_add(1, Ordering::Relaxed);
                            warn!(node = %config.id, peer_addr = %addr, "closed an incoming connection: {e}");
                        }
                        Err(e) => debug!(node = %config.id, peer_addr = %addr, "incoming connection ended: {e}"),
                    }
                });
            }
            // Out of file descriptors and the like: wait rather than spin.
            Err(e) => {
                warn!(node = %config.id, "accept failed: {e}");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
    connections.shutdown().await;
}

/// Why a connection was closed.
#[derive(Debug)]
pub(crate) enum ConnectionError {
    Io(std::io::Error),
    Frame(FrameError),
    HandshakeTimeout,
    ClosedBeforeHello,
    Truncated,
    PeerClosed,
    ExpectedHello,
    WrongCluster {
        theirs: u64,
        ours: u64,
    },
    UnknownNode(NodeId),
    NotForUs(NodeId),
    UnexpectedPeer {
        expected: NodeId,
        found: NodeId,
    },
    /// A snapshot transfer's frame on a message connection, or the reverse.
    UnexpectedFrame(&'static str),
    /// `InstallSnapshot` without its data, on a message connection.
    BareInstallSnapshot,
    /// A snapshot transfer's peer went silent.
    Stalled,
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::Io(e) => write!(f, "i/o error: {e}"),
            ConnectionError::Frame(e) => write!(f, "bad frame: {e}"),
            ConnectionError::HandshakeTimeout => write!(f, "no handshake within {HANDSHAKE_TIMEOUT:?}"),
            ConnectionError::ClosedBeforeHello => write!(f, "closed before the handshake"),
            ConnectionError::Truncated => write!(f, "closed in the middle of a frame"),
            ConnectionError::PeerClosed => write!(f, "closed by the peer"),
            ConnectionError::ExpectedHello => write!(f, "first frame is not a handshake"),
            ConnectionError::WrongCluster { theirs, ours } => write!(
                f,
                "handshake from cluster {}, not this node's cluster {}",
                cluster_id_text(*theirs),
                cluster_id_text(*ours)
            ),
            ConnectionError::UnknownNode(n) => write!(f, "handshake from {n}, not a member of this cluster"),
            ConnectionError::NotForUs(n) => write!(f, "handshake meant for {n}"),
            ConnectionError::UnexpectedPeer { expected, found } => write!(f, "expected {expected}, reached {found}"),
            ConnectionError::UnexpectedFrame(what) => write!(f, "unexpected frame: {what}"),
            ConnectionError::BareInstallSnapshot => write!(f, "InstallSnapshot outside a snapshot transfer"),
            ConnectionError::Stalled => write!(f, "no progress for {:?}", crate::transfer::STALL_TIMEOUT),
        }
    }
}

impl ConnectionError {
    /// Whether the peer broke the protocol (counted as a rejection), rather
    /// than the connection failing (a crash, a reset).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(
            self,
            ConnectionError::Io(_)
                | ConnectionError::Truncated
                | ConnectionError::PeerClosed
                | ConnectionError::Stalled
        )
    }
}

impl From<std::io::Error> for ConnectionError {
    fn from(e: std::io::Error) -> Self {
        ConnectionError::Io(e)
    }
}

/// Reads frames from a connection into a buffer, one read call for as many
/// frames as arrived.
pub(crate) struct FrameReader {
    stream: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    /// The largest frame body accepted.
    limit: usize,
    /// Bytes one read call may add to the buffer.
    read_bytes: usize,
}

impl FrameReader {
    /// A reader for the handshake: frames of a handshake's size only, read
    /// into a buffer of that size.
    fn for_handshake(stream: tokio::net::tcp::OwnedReadHalf) -> FrameReader {
        let read_bytes = HANDSHAKE_READ_BYTES;
        FrameReader { stream, buf: Vec::with_capacity(read_bytes), start: 0, limit: HELLO_BYTES_MAX, read_bytes }
    }

    /// After the handshake: frames up to `limit`, read in big pieces.
    pub fn for_messages(&mut self, limit: usize) {
        self.limit = limit;
        self.read_bytes = READ_BUFFER_BYTES;
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, ConnectionError> {
        // Bound: every read adds at least one byte and a frame is refused as
        // soon as its prefix announces more than the limit, so this loop
        // reads at most one frame's worth before it returns.
        loop {
            if let Some((frame, used)) =
                wire::split_frame(&self.buf[self.start..], self.limit).map_err(ConnectionError::Frame)?
            {
                self.start += used;
                return Ok(Some(frame));
            }
            // Keep the unread tail at the front so the buffer never grows
            // beyond one frame plus one read.
            self.buf.drain(..self.start);
            self.start = 0;
            // Before the handshake the buffer stays a few hundred bytes: it
            // holds less than one handshake frame here, and reserving grows
            // it to at most twice what it must hold.
            self.buf.reserve(self.read_bytes);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(ConnectionError::Truncated) };
            }
        }
    }
}

/// Serves one incoming connection: handshake (holding one of the
/// `HANDSHAKES_PENDING_MAX` permits), then messages into the inbox.
async fn serve(
    config: &TransportConfig,
    stream: TcpStream,
    inbox: &mpsc::Sender<Inbound>,
    handshake_permit: OwnedSemaphorePermit,
    counters: &TransportCounters,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::for_handshake(read);
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(config, &mut reader, &mut write)).await {
        Err(_) => return Err(ConnectionError::HandshakeTimeout),
        Ok(hello) => hello?,
    };
    drop(handshake_permit);
    reader.for_messages(config.frame_bytes_max);
    debug!(node = %config.id, peer = %hello.from, "accepted a connection");
    let mut first = true;
    loop {
        match reader.next().await? {
            None => return Ok(()),
            Some(Frame::Message(Message::InstallSnapshot(_))) => return Err(ConnectionError::BareInstallSnapshot),
            Some(Frame::Message(m)) => {
                if inbox.send(Inbound::Message(hello.from, m)).await.is_err() {
                    return Ok(()); // the node stopped
                }
            }
            Some(Frame::SnapshotOffer(offer)) if first => {
                let peer = crate::transfer::Peer { from: hello.from, reader, write: &mut write };
                return crate::transfer::receive(config, peer, offer, inbox, counters).await;
            }
            Some(Frame::Hello(_)) => return Err(ConnectionError::ExpectedHello),
            Some(_) => return Err(ConnectionError::UnexpectedFrame("a snapshot frame on a message connection")),
        }
        first = false;
    }
}

/// The accepting side's handshake: their hello, checked, then ours.
async fn handshake(
    config: &TransportConfig,
    reader: &mut FrameReader,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<Hello, ConnectionError> {
    let Frame::Hello(hello) = reader.next().await?.ok_or(ConnectionError::ClosedBeforeHello)? else {
        return Err(ConnectionError::ExpectedHello);
    };
    check_hello(config, &hello)?;
    let mut buf = Vec::new();
    let ours = Hello { cluster_id: config.cluster_id, from: config.id, to: hello.from };
    wire::encode_frame(&Frame::Hello(ours), &mut buf, HELLO_BYTES_MAX).map_err(ConnectionError::Frame)?;
    write.write_all(&buf).await?;
    Ok(hello)
}

fn check_hello(config: &TransportConfig, hello: &Hello) -> Result<(), ConnectionError> {
    if hello.cluster_id != config.cluster_id {
        return Err(ConnectionError::WrongCluster { theirs: hello.cluster_id, ours: config.cluster_id });
    }
    if hello.from == config.id || !config.members.contains(hello.from) {
        return Err(ConnectionError::UnknownNode(hello.from));
    }
    if hello.to != config.id {
        return Err(ConnectionError::NotForUs(hello.to));
    }
    Ok(())
}

/// Connects to `peer` at `addr` and shakes hands; returns the two halves,
/// the read half as a handshake-sized frame reader.
pub(crate) async fn dial(
    config: &TransportConfig,
    peer: NodeId,
    addr: &str,
) -> Result<(FrameReader, tokio::net::tcp::OwnedWriteHalf), ConnectionError> {
    // A peer whose host drops packets would hold a connect for minutes.
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(connected) => connected?,
        Err(_) => return Err(ConnectionError::HandshakeTimeout),
    };
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let hello = Hello { cluster_id: config.cluster_id, from: config.id, to: peer };
    wire::encode_frame(&Frame::Hello(hello), &mut buf, HELLO_BYTES_MAX).map_err(ConnectionError::Frame)?;
    let (read, mut write) = stream.into_split();
    write.write_all(&buf).await?;
    let mut reader = FrameReader::for_handshake(read);
    let answer = match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.next()).await {
        Err(_) => return Err(ConnectionError::HandshakeTimeout),
        Ok(r) => r?.ok_or(ConnectionError::ClosedBeforeHello)?,
    };
    let Frame::Hello(answer) = answer else { return Err(ConnectionError::ExpectedHello) };
    if answer.cluster_id != config.cluster_id {
        return Err(ConnectionError::WrongCluster { theirs: answer.cluster_id, ours: config.cluster_id });
    }
    if answer.from != peer {
        return Err(ConnectionError::UnexpectedPeer { expected: peer, found: answer.from });
    }
    Ok((reader, write))
}

/// The task that owns the connection to one peer.
struct Writer {
    config: Arc<TransportConfig>,
    peer: NodeId,
    addr: String,
    counters: Arc<TransportCounters>,
    inbox: mpsc::Sender<Inbound>,
}

impl Writer {
    async fn run(self, mut queue: mpsc::Receiver<Message>, mut stopped: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        let mut failures = 0u32;
        loop {
            let connected = tokio::select! {
                _ = stopped.changed() => return,
                c = self.connect() => c,
            };
            match connected {
                Ok(stream) => {
                    info!(node = %self.config.id, peer = %self.peer, "connected to {}", self.addr);
                    backoff = BACKOFF_MIN;
                    failures = 0;
                    let pumped = tokio::select! {
                        _ = stopped.changed() => return,
                        p = self.pump(stream, &mut queue) => p,
                    };
                    match pumped {
                        Ok(()) => return, // the queue closed: the node stopped
                        Err(e) => info!(node = %self.config.id, peer = %self.peer, "connection lost: {e}"),
                    }
                    self.discard_queued(&mut queue);
                }
                Err(e) => {
                    self.discard_queued(&mut queue);
                    failures += 1;
                    // The first failure and then every twentieth are worth a
                    // line; a peer that is down would otherwise flood the log.
                    if failures == 1 || failures.is_multiple_of(20) {
                        debug!(node = %self.config.id, peer = %self.peer, "cannot reach {}: {e}", self.addr);
                    }
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// While the peer cannot be reached, queued messages are dropped rather
    /// than sent stale later (Raft retries what matters). Forwarded
    /// proposals among them go back to the node loop, which may propose
    /// them again: they never left this node.
    fn discard_queued(&self, queue: &mut mpsc::Receiver<Message>) {
        let mut unsent = Vec::new();
        // Bound: the queue holds at most send_queue_max messages.
        for _ in 0..self.config.send_queue_max {
            match queue.try_recv() {
                Ok(Message::Forward(f)) => unsent.extend(f.proposals.into_iter().map(|(id, _)| id)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // If the loop's inbox is full the proposals time out instead.
        if !unsent.is_empty() && self.inbox.try_send(Inbound::Unsent(unsent)).is_err() {
            debug!(node = %self.config.id, peer = %self.peer, "could not return unsent proposals");
        }
    }

    async fn connect(&self) -> Result<TcpStream, ConnectionError> {
        let (reader, write) = dial(&self.config, self.peer, &self.addr).await?;
        Ok(reader.stream.reunite(write).expect("the two halves of one stream"))
    }

    /// Writes queued messages until the queue closes (`Ok`) or the
    /// connection fails (`Err`; the batch being written is lost).
    async fn pump(&self, mut stream: TcpStream, queue: &mut mpsc::Receiver<Message>) -> Result<(), ConnectionError> {
        let mut buf = Vec::with_capacity(WRITE_BYTES_MAX);
        let mut peek = [0u8; 1];
        loop {
            let first = tokio::select! {
                // Closure first: a message is not written to a connection
                // the peer has already closed when that can be seen.
                biased;
                // The peer never writes on this connection; a read that
                // returns means it closed it (or broke the protocol).
                r = stream.peek(&mut peek) => {
                    r?;
                    return Err(ConnectionError::PeerClosed);
                }
                m = queue.recv() => m,
            };
            let Some(first) = first else { return Ok(()) };
            buf.clear();
            self.encode(first, &mut buf);
            // Let the tasks that are ready run first: under load they add
            // messages to the queue, and one write carries them all (a
            // loopback send costs more than the whole step that made it).
            tokio::task::yield_now().await;
            // Bound: see MESSAGES_PER_WRITE_MAX and WRITE_BYTES_MAX.
            for _ in 1..MESSAGES_PER_WRITE_MAX {
                if buf.len() >= WRITE_BYTES_MAX {
                    break;
                }
                match queue.try_recv() {
                    Ok(m) => self.encode(m, &mut buf),
                    Err(_) => break,
                }
            }
            stream.write_all(&buf).await?;
        }
    }

    fn encode(&self, message: Message, buf: &mut Vec<u8>) {
        if let Err(e) = wire::encode_frame(&Frame::Message(message), buf, self.config.frame_bytes_max) {
            self.counters.oversized_messages.fetch_add(1, Ordering::Relaxed);
            warn!(node = %self.config.id, peer = %self.peer, "dropped a message that does not fit a frame: {e}");
        }
    }
}
