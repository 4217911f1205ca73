//! Snapshot transfers: a leader's snapshot file, streamed to a follower.
//!
//! raft-core's `InstallSnapshot` carries only the snapshot's metadata; the
//! driver moves the data (raft-core's snapshot module explains why). When
//! raft-core sends one, the driver starts [`send`] in a task of its own, so
//! the node loop never waits on it, and ignores the repeats raft-core sends
//! with every heartbeat while that task runs: one transfer per follower at
//! a time. A transfer that breaks (a lost connection, a peer that restarts
//! or goes silent for [`STALL_TIMEOUT`]) ends with a warning, and the next
//! heartbeat's `InstallSnapshot` starts another, which resumes where the
//! receiver's partial file ends.
//!
//! The frames are in [`crate::wire`]. The sender reads the file one chunk
//! at a time ([`SNAPSHOT_CHUNK_BYTES_MAX`]); the receiver checks each
//! chunk's offset, length and CRC-32, writes it to `incoming-*.part`, checks
//! the whole data's CRC-32 at the end, seals the file (trailer, fsync,
//! rename, directory fsync) and only then hands the `InstallSnapshot`
//! message to its node loop ([`Inbound::Installed`]). Neither side holds
//! more than a few chunks in memory. A node receives one transfer at a time
//! ([`RECEIVES_MAX`]); another is refused `Busy` and comes again with the
//! next heartbeat.

use crate::snapshots::{seal, FileError, SnapshotStore, Trailer};
use crate::transport::{dial, ConnectionError, FrameReader, Inbound, TransportConfig, TransportCounters};
use crate::wire::{
    self, Bytes, Frame, SnapshotChunk, SnapshotOffer, TransferRefusal, SNAPSHOT_CHUNK_BYTES_MAX,
    SNAPSHOT_FRAME_BYTES_MAX,
};
use raft_core::{InstallSnapshot, LogIndex, NodeId, Term};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

/// A transfer whose peer makes no progress for this long (no frame read, or
/// a write that does not complete) is given up: a paused or cut-off peer
/// must not hold the follower's one transfer slot for ever.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the sender waits for the receiver to seal and install the file
/// after the last chunk: an fsync of a large file takes seconds.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Most transfers a node receives at once. One: a follower needs one
/// snapshot, and two leaders sending at once (an old one and a new one) is
/// rare and brief; the refused one comes again with the next heartbeat.
pub(crate) const RECEIVES_MAX: usize = 1;
/// The largest frame a sender reads back (accept, refusal, done).
const ANSWER_FRAME_BYTES_MAX: usize = 1024;

/// Why a transfer failed.
#[derive(Debug)]
enum Failure {
    File(FileError),
    Connection(ConnectionError),
    Refused(TransferRefusal),
    /// The peer broke the transfer's protocol (on the receiver: a chunk of
    /// the wrong offset, length or checksum).
    BadData(String),
    Stalled,
    /// The sender could not connect to the receiver.
    Unreachable(ConnectionError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::File(e) => write!(f, "{e}"),
            Failure::Connection(e) => write!(f, "{e}"),
            Failure::Refused(r) => write!(f, "refused by the receiver: {r:?}"),
            Failure::BadData(what) => write!(f, "{what}"),
            Failure::Stalled => write!(f, "no progress for {STALL_TIMEOUT:?}"),
            Failure::Unreachable(e) => write!(f, "cannot connect: {e}"),
        }
    }
}

impl From<ConnectionError> for Failure {
    fn from(e: ConnectionError) -> Failure {
        Failure::Connection(e)
    }
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Failure {
        Failure::File(e)
    }
}

/// Runs blocking file work off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Failure::Connection(ConnectionError::Io(std::io::Error::other("the runtime is shutting down"))))
}

async fn write_frame(write: &mut OwnedWriteHalf, frame: &Frame, buf: &mut Vec<u8>) -> Result<(), Failure> {
    buf.clear();
    wire::encode_frame(frame, buf, SNAPSHOT_FRAME_BYTES_MAX).map_err(|e| Failure::BadData(e.to_string()))?;
    match timeout(STALL_TIMEOUT, write.write_all(buf)).await {
        Err(_) => Err(Failure::Stalled),
        Ok(r) => r.map_err(|e| Failure::Connection(ConnectionError::Io(e))),
    }
}

async fn read_frame(reader: &mut FrameReader, wait: Duration) -> Result<Frame, Failure> {
    match timeout(wait, reader.next()).await {
        Err(_) => Err(Failure::Stalled),
        Ok(r) => r?.ok_or(Failure::Connection(ConnectionError::PeerClosed)),
    }
}

fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Sends the snapshot `message` names to `peer`; logs how it went.
pub(crate) async fn send(
    config: Arc<TransportConfig>,
    peer: NodeId,
    message: InstallSnapshot,
    counters: Arc<TransportCounters>,
) {
    let (start, meta) = (Instant::now(), message.snapshot.clone());
    match send_data(&config, peer, message).await {
        Ok((len, offset)) => {
            counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
            let secs = seconds(start);
            let sent = len - offset;
            let mib_per_sec = sent as f64 / (1 << 20) as f64 / secs.max(1e-9);
            info!(node = %config.id, %peer, snapshot = ?meta, bytes = len, resumed_at = offset, secs, mib_per_sec,
                "snapshot sent");
        }
        // The follower is down: the message connection's writer says so
        // already, and the next heartbeat tries again.
        Err(Failure::Unreachable(e)) => {
            debug!(node = %config.id, %peer, snapshot = ?meta, "cannot reach the follower to send a snapshot: {e}")
        }
        Err(e) => {
            counters.snapshot_transfers_failed.fetch_add(1, Ordering::Relaxed);
            warn!(node = %config.id, %peer, snapshot = ?meta, secs = seconds(start),
                "snapshot transfer failed (the next heartbeat retries): {e}");
        }
    }
}

/// The sender's side; returns the data's length and the offset it resumed at.
async fn send_data(config: &TransportConfig, peer: NodeId, message: InstallSnapshot) -> Result<(u64, u64), Failure> {
    let store = config.snapshots.clone();
    let (index, term) = (message.snapshot.index, message.snapshot.term);
    let (mut file, trailer, path) = blocking(move || store.open_file(index, term)).await??;
    let file_error = |e| Failure::File(io_error(&path, e));
    let addr = config.members.get(peer).unwrap_or_default();
    let (mut reader, mut write) = dial(config, peer, &addr).await.map_err(Failure::Unreachable)?;
    reader.for_messages(ANSWER_FRAME_BYTES_MAX);
    info!(node = %config.id, %peer, snapshot = ?message.snapshot, bytes = trailer.len, "sending a snapshot");
    let mut buf = Vec::with_capacity(SNAPSHOT_FRAME_BYTES_MAX + wire::LENGTH_PREFIX_BYTES);
    let offer = SnapshotOffer { message, len: trailer.len, crc: trailer.crc };
    write_frame(&mut write, &Frame::SnapshotOffer(offer), &mut buf).await?;
    let offset = match read_frame(&mut reader, STALL_TIMEOUT).await? {
        Frame::SnapshotAccept { offset } if offset <= trailer.len => offset,
        Frame::SnapshotRefused(r) => return Err(Failure::Refused(r)),
        _ => return Err(Failure::BadData("unexpected answer to a snapshot offer".into())),
    };
    if offset < trailer.len {
        file = blocking(move || file.seek(SeekFrom::Start(offset)).map(|_| file)).await?.map_err(file_error)?;
    }
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES_MAX);
    let mut position = offset;
    // Bound: each pass sends at least one byte of the `trailer.len` bytes.
    while position < trailer.len {
        let n = (trailer.len - position).min(SNAPSHOT_CHUNK_BYTES_MAX as u64) as usize;
        let read = blocking(move || {
            chunk.resize(n, 0);
            file.read_exact(&mut chunk).map(|()| (file, chunk))
        })
        .await?;
        (file, chunk) = read.map_err(file_error)?;
        let frame =
            Frame::SnapshotChunk(SnapshotChunk { offset: position, crc: crc32fast::hash(&chunk), data: Bytes(chunk) });
        write_frame(&mut write, &frame, &mut buf).await?;
        let Frame::SnapshotChunk(sent) = frame else { unreachable!("built above") };
        chunk = sent.data.0;
        position += n as u64;
    }
    match read_frame(&mut reader, INSTALL_TIMEOUT).await? {
        Frame::SnapshotDone(Ok(())) => Ok((trailer.len, offset)),
        Frame::SnapshotDone(Err(r)) => Err(Failure::Refused(r)),
        _ => Err(Failure::BadData("unexpected answer after the last chunk".into())),
    }
}

/// An incoming transfer's connection.
pub(crate) struct Peer<'a> {
    pub from: NodeId,
    pub reader: FrameReader,
    pub write: &'a mut OwnedWriteHalf,
}

/// The receiver's side of one transfer: takes the data, installs it, hands
/// the message to the node loop, and answers the sender.
pub(crate) async fn receive(
    config: &TransportConfig,
    mut peer: Peer<'_>,
    offer: SnapshotOffer,
    inbox: &mpsc::Sender<Inbound>,
    counters: &TransportCounters,
) -> Result<(), ConnectionError> {
    let mut buf = Vec::new();
    let Ok(_permit) = config.receives.try_acquire() else {
        let _ = write_frame(peer.write, &Frame::SnapshotRefused(TransferRefusal::Busy), &mut buf).await;
        return Ok(());
    };
    let (start, from, meta) = (Instant::now(), peer.from, offer.message.snapshot.clone());
    info!(node = %config.id, %from, snapshot = ?meta, bytes = offer.len, "receiving a snapshot");
    match receive_data(config, &mut peer, &offer).await {
        Ok((offset, seal_secs)) => {
            counters.snapshots_received.fetch_add(1, Ordering::Relaxed);
            info!(node = %config.id, %from, snapshot = ?meta, bytes = offer.len, resumed_at = offset,
                secs = seconds(start), seal_secs, "snapshot received and installed");
            if inbox.send(Inbound::Installed(from, offer.message)).await.is_err() {
                return Ok(()); // the node stopped
            }
            let _ = write_frame(peer.write, &Frame::SnapshotDone(Ok(())), &mut buf).await;
            Ok(())
        }
        Err(e) => {
            counters.snapshot_transfers_failed.fetch_add(1, Ordering::Relaxed);
            warn!(node = %config.id, %from, snapshot = ?meta, secs = seconds(start),
                "receiving a snapshot failed (the leader retries): {e}");
            let refusal = match &e {
                Failure::File(_) => Some(TransferRefusal::Storage),
                Failure::BadData(_) => Some(TransferRefusal::BadData),
                _ => None,
            };
            if let Some(r) = refusal {
                let _ = write_frame(peer.write, &Frame::SnapshotDone(Err(r)), &mut buf).await;
            }
            match e {
                Failure::Connection(e) | Failure::Unreachable(e) => Err(e),
                Failure::Stalled => Err(ConnectionError::Stalled),
                _ => Ok(()),
            }
        }
    }
}

/// Receives the data into the snapshot store; returns the offset it resumed
/// at (the whole length when the file was already installed) and the time
/// the file took to seal (its fsync, mostly).
async fn receive_data(
    config: &TransportConfig,
    peer: &mut Peer<'_>,
    offer: &SnapshotOffer,
) -> Result<(u64, f64), Failure> {
    let store = config.snapshots.clone();
    let (index, term) = (offer.message.snapshot.index, offer.message.snapshot.term);
    let (len, crc) = (offer.len, offer.crc);
    let mut buf = Vec::new();
    let had = blocking(move || store.open_file(index, term).map(|(_, t, _)| t)).await?;
    if had.is_ok_and(|t| t.len == len && t.crc == crc) {
        // Installed already (the transfer was done, and this is a repeat
        // sent before the follower's answer reached the leader).
        write_frame(peer.write, &Frame::SnapshotAccept { offset: len }, &mut buf).await?;
        return Ok((len, 0.0));
    }
    let store = config.snapshots.clone();
    let (mut file, offset, mut hasher) = blocking(move || resume(&store, index, term, len)).await??;
    write_frame(peer.write, &Frame::SnapshotAccept { offset }, &mut buf).await?;
    peer.reader.for_messages(SNAPSHOT_FRAME_BYTES_MAX);
    let mut position = offset;
    // Bound: each chunk adds at least one byte (an empty one is refused) of
    // the `len` announced.
    while position < len {
        let Frame::SnapshotChunk(chunk) = read_frame(&mut peer.reader, STALL_TIMEOUT).await? else {
            return Err(Failure::BadData("expected a snapshot chunk".into()));
        };
        let data = chunk.data.0;
        let n = data.len() as u64;
        if chunk.offset != position || n == 0 || n > SNAPSHOT_CHUNK_BYTES_MAX as u64 || position + n > len {
            return Err(Failure::BadData(format!("a chunk of {n} bytes at {} (expected {position})", chunk.offset)));
        }
        let computed = crc32fast::hash(&data);
        if computed != chunk.crc {
            return Err(Failure::BadData(format!("the chunk at {position} fails its checksum")));
        }
        hasher.update(&data);
        let written = blocking(move || file.write_all(&data).map(|()| file)).await?;
        file = written.map_err(|e| Failure::File(io_error(&config.snapshots.incoming_path(index, term), e)))?;
        position += n;
    }
    let store = config.snapshots.clone();
    let computed = hasher.finalize();
    let sealing = Instant::now();
    blocking(move || {
        let temp = store.incoming_path(index, term);
        if computed != crc {
            let _ = std::fs::remove_file(&temp);
            return Err(Failure::BadData(format!("the data fails its checksum ({computed:#010x}, not {crc:#010x})")));
        }
        let sealed = seal(file, &temp, Trailer { index, term, len, crc }, &store.path(index, term));
        sealed.map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Failure::File(e)
        })
    })
    .await??;
    Ok((offset, seconds(sealing)))
}

fn io_error(path: &Path, e: std::io::Error) -> FileError {
    FileError { path: path.to_path_buf(), problem: crate::SnapshotFileProblem::Io(Arc::new(e)) }
}

/// Opens the partial file of (index, term), keeping what an earlier broken
/// transfer of the same snapshot left (it holds a prefix of the same data:
/// the name fixes the data); removes partial files of other snapshots.
/// Returns the file (positioned at its end), its length and the checksum
/// state of what it holds. Blocking.
fn resume(
    store: &SnapshotStore,
    index: LogIndex,
    term: Term,
    len: u64,
) -> Result<(File, u64, crc32fast::Hasher), FileError> {
    let path = store.incoming_path(index, term);
    let io = |e| FileError { path: path.clone(), problem: crate::SnapshotFileProblem::Io(Arc::new(e)) };
    if let Ok(listing) = std::fs::read_dir(store.dir()) {
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with("incoming-") && item.path() != path {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let held = file.metadata().map_err(io)?.len();
    let mut hasher = crc32fast::Hasher::new();
    if held > len {
        file.set_len(0).map_err(io)?;
        return Ok((file, 0, hasher));
    }
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES_MAX];
    let mut read = 0u64;
    // Bound: the file holds `held` bytes; each pass reads at least one.
    while read < held {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    file.seek(SeekFrom::Start(read)).map_err(io)?;
    Ok((file, read, hasher))
}
