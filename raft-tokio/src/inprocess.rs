//! Nodes in one process, joined by channels instead of sockets.
//!
//! An [`InProcessNetwork`] is a switchboard that every node of one cluster
//! joins ([`RaftConfig::with_in_process`](crate::RaftConfig::with_in_process)).
//! A message one node sends is the raft-core [`Message`] value itself, put
//! straight into the receiving node's inbox: no socket, no frame, no
//! encoding. Everything above the transport is the same as over TCP (the
//! node loop, storage, timers, the embedding API), so a test or a benchmark
//! on this network exercises the runtime an application deploys, without
//! ports to allocate and without the kernel's loopback.
//!
//! It behaves as the TCP transport does where Raft can tell:
//!
//! - **Bounded, and a full queue drops.** A node's inbox holds at most 4096
//!   messages (the same inbox TCP readers fill). A message to a node whose
//!   inbox is full is dropped and counted in
//!   [`TransportDrops::send_queue_full`](crate::TransportDrops::send_queue_full),
//!   as a message to a TCP peer whose send queue is full is: Raft retries
//!   (heartbeats and the leader's probes resend what matters), and a
//!   sender never waits on a slow receiver.
//! - **In order per pair.** Messages from one node to another arrive in the
//!   order they were sent, as on one TCP connection.
//! - **A stopped node is unreachable.** Messages to a node that is not
//!   running (stopped, not started yet, or restarting) are dropped; a
//!   proposal forwarded to it goes back to the sender's node loop, which
//!   may propose it again, exactly as when a TCP peer cannot be reached. A
//!   node that starts again under the same id joins the network again and
//!   is reached from its first message on.
//! - **Snapshots** are copied from the leader's snapshot store into the
//!   follower's (checked against their checksum, then sealed and fsynced
//!   as a TCP transfer's are), and only then handed to the follower's node
//!   loop; one transfer into a node at a time.
//!
//! Addresses are only names here: give every member a distinct one (such
//! as `"n1"`); nothing is bound, and [`RaftHandle::local_addr`] is
//! `0.0.0.0:0`. Two running nodes may not share an id on one network: the
//! second start fails with [`StartError::Bind`] (`AddrInUse`).
//!
//! [`RaftHandle::local_addr`]: crate::RaftHandle::local_addr
//! [`StartError::Bind`]: crate::StartError::Bind
//!
//! # Example
//!
//! Three in-memory nodes in one process elect a leader and commit an entry:
//!
//! ```
//! use raft_tokio::{InProcessNetwork, NodeId, Raft, RaftConfig, RaftParams, RoleKind};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let network = InProcessNetwork::new();
//! let members: Vec<(NodeId, String)> = (1..=3).map(|i| (NodeId(i), format!("n{i}"))).collect();
//! let mut nodes = Vec::new();
//! for (id, _) in &members {
//!     let config = RaftConfig::with_ids(members.clone(), *id, RaftParams::default(), None)
//!         .with_in_process(&network);
//!     let (node, _entries) = Raft::start(config).await?;
//!     nodes.push(node);
//! }
//! let leader = loop {
//!     if let Some(n) = nodes.iter().find(|n| n.leader().role == RoleKind::Leader) {
//!         break n.clone();
//!     }
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! };
//! let index = leader.propose(b"hello".to_vec()).await?; // committed by a majority
//! assert!(index.0 >= 1);
//! for node in &nodes {
//!     node.shutdown().await?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use crate::snapshots::{seal, FileError, SnapshotStore};
use crate::transport::{Inbound, TransportCounters};
use raft_core::{InstallSnapshot, Message, NodeId};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Bytes copied per read while a snapshot moves from one store to another.
const SNAPSHOT_COPY_BYTES: usize = 1 << 20;

/// A switchboard for the nodes of one cluster in one process: see the
/// [module documentation](self). Cheap to clone; every clone is the same
/// network.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    nodes: Arc<Mutex<BTreeMap<NodeId, Slot>>>,
}

impl std::fmt::Debug for InProcessNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<NodeId> = self.lock().keys().copied().collect();
        f.debug_struct("InProcessNetwork").field("nodes", &nodes).finish()
    }
}

/// A node's place on the network: reserved when it starts, reachable once
/// its node loop runs.
struct Slot {
    /// Tells one life of a node from the next, so that a stopping node
    /// cannot remove the place its successor took.
    life: u64,
    peer: Option<Peer>,
}

/// What other nodes need to reach a running node.
#[derive(Clone)]
struct Peer {
    inbox: mpsc::Sender<Inbound>,
    snapshots: SnapshotStore,
    /// Transfers being received (one at a time, as over TCP).
    receives: Arc<Semaphore>,
    counters: Arc<TransportCounters>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> InProcessNetwork {
        InProcessNetwork::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, Slot>> {
        // A panic while the map is held leaves it whole (every update is
        // one insert or remove), so a poisoned lock is still usable.
        self.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves `id`'s place (the start's "bind"); `AddrInUse` if a node
    /// with that id runs on this network.
    pub(crate) fn reserve(&self, id: NodeId) -> std::io::Result<Reservation> {
        static NEXT_LIFE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut nodes = self.lock();
        if nodes.contains_key(&id) {
            let message = format!("node {id} already runs on this in-process network");
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, message));
        }
        let life = NEXT_LIFE.fetch_add(1, Ordering::Relaxed);
        nodes.insert(id, Slot { life, peer: None });
        Ok(Reservation { network: self.clone(), id, life })
    }

    fn peer(&self, id: NodeId) -> Option<Peer> {
        self.lock().get(&id).and_then(|slot| slot.peer.clone())
    }
}

/// A reserved place; freed when dropped (a start that fails after the
/// reservation, or a node that stopped).
pub(crate) struct Reservation {
    network: InProcessNetwork,
    id: NodeId,
    life: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut nodes = self.network.lock();
        if nodes.get(&self.id).is_some_and(|slot| slot.life == self.life) {
            nodes.remove(&self.id);
        }
    }
}

/// The driver's handle on the in-process network: what `Transport` is for
/// TCP.
pub(crate) struct InProcessTransport {
    reservation: Reservation,
    inbox: mpsc::Sender<Inbound>,
    snapshots: SnapshotStore,
    counters: Arc<TransportCounters>,
    /// The peers' inboxes as last seen, so that a send takes no lock. An
    /// entry whose inbox closed (the peer stopped) is looked up again.
    peers: BTreeMap<NodeId, mpsc::Sender<Inbound>>,
}

impl InProcessTransport {
    /// Makes the reserved node reachable: its peers' messages go to `inbox`.
    pub fn start(
        reservation: Reservation,
        inbox: mpsc::Sender<Inbound>,
        snapshots: SnapshotStore,
        receives: Arc<Semaphore>,
        counters: Arc<TransportCounters>,
    ) -> InProcessTransport {
        let peer = Peer { inbox: inbox.clone(), snapshots: snapshots.clone(), receives, counters: counters.clone() };
        if let Some(slot) = reservation.network.lock().get_mut(&reservation.id) {
            slot.peer = Some(peer);
        }
        InProcessTransport { reservation, inbox, snapshots, counters, peers: BTreeMap::new() }
    }

    /// Puts `message` in `to`'s inbox; drops (and counts) it when that is
    /// full. A message to a node that does not run is dropped; a forward
    /// among them goes back to this node's loop.
    pub fn send(&mut self, to: NodeId, message: Message) {
        debug_assert!(!matches!(message, Message::InstallSnapshot(_)), "a snapshot is sent by a transfer");
        let message = match self.peers.get(&to).filter(|inbox| !inbox.is_closed()) {
            Some(inbox) => match self.deliver(inbox, message) {
                None => return,
                Some(undelivered) => undelivered, // it stopped just now
            },
            None => message,
        };
        self.peers.remove(&to);
        let Some(peer) = self.reservation.network.peer(to) else { return self.unreachable(message) };
        let message = self.deliver(&peer.inbox, message);
        self.peers.insert(to, peer.inbox);
        if let Some(message) = message {
            self.unreachable(message);
        }
    }

    /// Hands `message` over; gives it back if the receiver has stopped.
    fn deliver(&self, inbox: &mpsc::Sender<Inbound>, message: Message) -> Option<Message> {
        match inbox.try_send(Inbound::Message(self.reservation.id, message)) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.send_queue_full.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(mpsc::error::TrySendError::Closed(Inbound::Message(_, m))) => Some(m),
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// A message for a node that does not run: dropped, as TCP drops what
    /// it cannot connect to send; forwarded proposals return to this node.
    fn unreachable(&self, message: Message) {
        if let Message::Forward(f) = message {
            let unsent = f.proposals.into_iter().map(|(id, _)| id).collect();
            // If the loop's inbox is full the proposals time out instead.
            if self.inbox.try_send(Inbound::Unsent(unsent)).is_err() {
                debug!(node = %self.reservation.id, "could not return unsent proposals");
            }
        }
    }

    /// Copies the snapshot `message` names into `to`'s snapshot store, in a
    /// task of its own, then hands `message` to `to`'s node loop.
    pub fn send_snapshot(&self, to: NodeId, message: InstallSnapshot) -> JoinHandle<()> {
        let from = self.reservation.id;
        let (store, counters, peer) =
            (self.snapshots.clone(), self.counters.clone(), self.reservation.network.peer(to));
        tokio::spawn(async move {
            let Some(peer) = peer else {
                debug!(node = %from, peer = %to, "cannot reach the follower to send a snapshot");
                return;
            };
            // Another transfer into it runs: the next heartbeat retries.
            let Ok(_permit) = peer.receives.clone().try_acquire_owned() else { return };
            let (index, term) = (message.snapshot.index, message.snapshot.term);
            let into = peer.snapshots.clone();
            let copied = tokio::task::spawn_blocking(move || copy_snapshot(&store, &into, index, term)).await;
            match copied {
                Ok(Ok(bytes)) => {
                    counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    peer.counters.snapshots_received.fetch_add(1, Ordering::Relaxed);
                    info!(node = %from, peer = %to, snapshot = ?message.snapshot, bytes, "snapshot copied in process");
                    let _ = peer.inbox.send(Inbound::Installed(from, message)).await;
                }
                Ok(Err(e)) => {
                    counters.snapshot_transfers_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(node = %from, peer = %to, snapshot = ?message.snapshot,
                        "snapshot copy failed (the next heartbeat retries): {e}");
                }
                Err(_) => {} // the runtime is shutting down
            }
        })
    }

    /// Leaves the network: peers see this node as stopped from now on.
    pub fn stop(self) {
        drop(self.reservation);
    }
}

/// Copies snapshot (index, term) from `from` into `into`, checking the
/// data against the trailer's checksum, and seals it there; returns its
/// length. A snapshot `into` holds already is not copied again. Blocking.
fn copy_snapshot(
    from: &SnapshotStore,
    into: &SnapshotStore,
    index: raft_core::LogIndex,
    term: raft_core::Term,
) -> Result<u64, FileError> {
    let (file, trailer, path) = from.open_file(index, term)?;
    if into.open_file(index, term).is_ok_and(|(_, t, _)| t.len == trailer.len && t.crc == trailer.crc) {
        return Ok(trailer.len);
    }
    let temp = into.incoming_path(index, term);
    let io = |path: &std::path::Path, e| FileError { path: path.to_path_buf(), problem: io_problem(e) };
    let mut out = std::fs::File::create(&temp).map_err(|e| io(&temp, e))?;
    let mut data = file.take(trailer.len);
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; SNAPSHOT_COPY_BYTES];
    // Bound: the data is `trailer.len` bytes and every pass reads at least one.
    loop {
        let n = data.read(&mut buf).map_err(|e| io(&path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io(&temp, e))?;
    }
    let computed = hasher.finalize();
    if computed != trailer.crc {
        drop(out);
        let _ = std::fs::remove_file(&temp);
        let problem = crate::SnapshotFileProblem::Checksum { stored: trailer.crc, computed };
        return Err(FileError { path, problem });
    }
    seal(out, &temp, trailer, &into.path(index, term)).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    Ok(trailer.len)
}

fn io_problem(e: std::io::Error) -> crate::SnapshotFileProblem {
    crate::SnapshotFileProblem::Io(Arc::new(e))
}
