//! Durable storage of a node's hard state, membership and log.
//!
//! Two stores, chosen explicitly by the configuration: [`DiskStore`] (a
//! write-ahead log, one file `raft.wal` in the node's data directory) and
//! raft-core's [`MemoryStore`] for tests and benchmarks, which a restart
//! loses. Both hand back what they hold as a `MemoryStore`, which raft-core
//! recovers from.
//!
//! The disk store runs on its own thread, so that a write and its fsync
//! never block a tokio worker (they would stall every other task on it, the
//! other nodes' included when several share a process). The driver hands it
//! the persists of one batch of inputs and awaits one reply.
//!
//! ## The file
//!
//! `raft.wal` is the sequence of raft-core's persists itself: eight magic
//! bytes, then frames, each a header (the record's length, and a CRC-32C
//! of those four bytes) and a record ([`crate::record`]: a version byte, a
//! CRC-32C of the body, the body in postcard). The first record is the
//! store's [`StoreIdentity`]; every later one is one write: the persists of
//! the batches the storage thread took together, in order. A write appends
//! its frame and calls `fdatasync`, once; so the term and vote, the
//! membership and the log changes of one batch are durable together or not
//! at all. The file is zero-filled a mebibyte ahead of the log, so that
//! an append changes no file size and its `fdatasync` has no metadata to
//! write. Reading the store applies every record to an empty
//! `MemoryStore` in order: the store is what raft-core asked for, replayed
//! by raft-core's own rules (a record that breaks them is refused).
//!
//! The snapshot's metadata (`Persist::Snapshot`) and the compaction point
//! (`Persist::Compact`) are persists like the others, written with their
//! batch. The snapshot's data is a file of the snapshot store
//! ([`crate::snapshots`]), made durable before raft-core asks for the record.
//!
//! ## A crash, and damage
//!
//! A crash can cut the last write short: its `fdatasync` had not returned,
//! so nothing that depends on it was acknowledged. Opening the store drops
//! such a torn tail (and logs what it dropped at WARN): a frame whose
//! header or record runs past the end of the file, whose bytes from its
//! start on are all zero, whose header fails its check while the frame's
//! part of the sector holding the header is all zero and no whole frame
//! follows, or, for the last
//! frame, whose record fails its checks while one of the disk sectors it
//! covers is all zero (a sector the crash left unwritten).
//! Anything else that fails its checks is damage, not a crash: the start
//! stops with [`StorageProblem::CorruptRecord`], naming the offset, and the
//! file is left as it is.
//!
//! ## Rewrites
//!
//! Compaction leaves dead records in the file. Once the file is over
//! [`REWRITE_BYTES_MIN`] and four times what it held after the last
//! rewrite, and the log was compacted since, the storage thread writes the
//! live state (identity, term and vote, membership, snapshot record,
//! compaction point and the entries after it) to `raft.wal.rewrite`,
//! fsyncs it, renames it over `raft.wal` and fsyncs the directory. A crash
//! before the rename leaves the old file whole (the partial rewrite is
//! removed at the next start); after it, the new one. So the file stays
//! within a constant factor of the live log plus `REWRITE_BYTES_MIN`.

use crate::record::{self, RecordError};
use crate::snapshots::SnapshotFileProblem;
use raft_core::{LogIndex, MemoryStore, NodeId, Persist, RecoverError, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The name of the store file inside the data directory.
pub const STORE_FILE: &str = "raft.wal";
/// The file a rewrite is written to before it replaces [`STORE_FILE`].
const REWRITE_FILE: &str = "raft.wal.rewrite";
/// The store file of versions before the write-ahead log, refused.
pub(crate) const REDB_STORE_FILE: &str = "raft.redb";
/// The first bytes of the store file: its name and format version.
const MAGIC: &[u8; 8] = b"raftwal1";
/// A frame's header: the record's length, then a CRC-32C of those bytes.
const FRAME_HEADER_BYTES: usize = 8;
/// The unit a disk writes whole, for telling a torn write from damage.
const SECTOR_BYTES: u64 = 512;
/// See [`has_zero_sector`].
const TAIL_ZEROS_MIN: u64 = 64;
/// How far ahead of the log the file is zero-filled (see [`DiskStore`]).
const PREALLOCATE_BYTES: u64 = 1 << 20;
/// The size below which the file is never rewritten (see the module
/// documentation).
pub const REWRITE_BYTES_MIN: u64 = 8 << 20;

/// Which node and cluster a store belongs to, written on first use and
/// checked on every later start, so that a data directory is never used by
/// the wrong node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreIdentity {
    /// The cluster id, when it was configured explicitly (a derived one
    /// changes with the members' addresses, which may move).
    pub cluster_id: Option<u64>,
    /// The node id.
    pub node_id: NodeId,
}

/// A store that could not be opened, read or written. The node stops.
#[derive(Debug, Clone)]
pub struct StorageError {
    /// The store file (or the snapshot file, for
    /// [`StorageProblem::Snapshot`]).
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: StorageProblem,
}

/// What is wrong with a store.
#[derive(Debug, Clone)]
pub enum StorageProblem {
    /// The file could not be created, opened or read (an I/O error, or
    /// permissions).
    Unreadable(Arc<io::Error>),
    /// Another process has the store open.
    InUse,
    /// The file does not start as a store file does: it is not one, or its
    /// first bytes are damaged.
    NotAStore,
    /// A store written by an earlier version (one redb file), which this
    /// version cannot read.
    EarlierFormat,
    /// A record failed its checks, and not as a crash leaves the last one
    /// (see the module documentation): the file is damaged.
    CorruptRecord {
        /// The record's offset in the file (its frame's first byte).
        offset: u64,
        /// Why it was refused.
        error: RecordError,
    },
    /// A record asks for a change raft-core's rules refuse (a log that
    /// jumps, a term that goes back): a record damaged in a way its
    /// checksum missed, or a bug.
    RejectedRecord {
        /// The record's offset in the file.
        offset: u64,
        /// What the store refused.
        error: StoreError,
    },
    /// The stored state is one a correct node never writes (raft-core's
    /// recovery check).
    Inconsistent(RecoverError),
    /// The store belongs to another node or cluster.
    WrongIdentity {
        /// What the store says.
        stored: StoreIdentity,
        /// What the configuration says.
        configured: StoreIdentity,
    },
    /// A write or its fsync failed.
    WriteFailed(Arc<io::Error>),
    /// The storage thread is gone (it panicked).
    ThreadGone,
    /// The snapshot file the store records cannot be used (the error's path
    /// is the snapshot file).
    Snapshot(SnapshotFileProblem),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let StorageProblem::Snapshot(problem) = &self.problem {
            return write!(f, "snapshot file {} {problem}", self.path.display());
        }
        write!(f, "store {}: ", self.path.display())?;
        match &self.problem {
            StorageProblem::Unreadable(e) => write!(f, "cannot be opened or read: {e}"),
            StorageProblem::InUse => write!(f, "is in use by another process"),
            StorageProblem::NotAStore => write!(f, "is corrupt or not a store: its first bytes are not {MAGIC:?}"),
            StorageProblem::EarlierFormat => write!(
                f,
                "was written by an earlier version of raft-tokio (one redb file), which this version cannot \
                 read: replace the node (remove it from the membership, add an empty node in its place), and the \
                 leader sends the new node the log"
            ),
            StorageProblem::CorruptRecord { offset, error } => {
                write!(f, "is corrupt: the record at byte {offset}: {error}")
            }
            StorageProblem::RejectedRecord { offset, error } => {
                write!(f, "is corrupt: the record at byte {offset} asks for a change the log refuses: {error}")
            }
            StorageProblem::Inconsistent(e) => write!(f, "holds an impossible state: {e}"),
            StorageProblem::WrongIdentity { stored, configured } => write!(
                f,
                "belongs to node {} of cluster {}, but this node is {} of cluster {}",
                stored.node_id,
                cluster(stored.cluster_id),
                configured.node_id,
                cluster(configured.cluster_id)
            ),
            StorageProblem::WriteFailed(e) => write!(f, "write failed: {e}"),
            StorageProblem::ThreadGone => write!(f, "the storage thread stopped unexpectedly"),
            StorageProblem::Snapshot(_) => unreachable!("written above"),
        }
    }
}

impl std::error::Error for StorageError {}

/// A cluster id as every message shows it; `None`: none was configured.
fn cluster(id: Option<u64>) -> String {
    id.map_or_else(|| "(no id configured)".to_string(), crate::config::cluster_id_text)
}

/// A record of the store file.
#[derive(Serialize, Deserialize)]
enum Frame {
    /// The first record: whose store this is.
    Identity(StoreIdentity),
    /// One write: persists, in order.
    Write(Vec<Persist>),
}

/// The same, borrowing: what is written (postcard encodes a reference as
/// its value and a slice as a `Vec`, so the two read back alike).
#[derive(Serialize)]
enum FrameRef<'a> {
    Identity(&'a StoreIdentity),
    Write(&'a [Persist]),
}

/// A frame header's record length, if the header passes its check.
fn header_at(bytes: &[u8], at: usize) -> Result<usize, RecordError> {
    let len_bytes: [u8; 4] = bytes[at..at + 4].try_into().expect("four bytes");
    let stored = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("four bytes"));
    let computed = record::crc32c(&len_bytes);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(u32::from_le_bytes(len_bytes) as usize)
}

/// A store file holding only `store`'s state: magic, identity, and one
/// write that rebuilds the rest.
fn live_file(identity: &StoreIdentity, store: &MemoryStore) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(frame_bytes(&FrameRef::Identity(identity)));
    out.extend(frame_bytes(&FrameRef::Write(&live_persists(store))));
    out
}

/// Encodes one frame: header, then record.
fn frame_bytes<T: Serialize>(record: &T) -> Vec<u8> {
    let body = record::encode(record);
    let len = u32::try_from(body.len()).expect("a write is under 4 GiB (the driver bounds batches)").to_le_bytes();
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&record::crc32c(&len).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// What reading a store file found.
struct Read {
    identity: Option<StoreIdentity>,
    store: MemoryStore,
    /// The end of the last whole record: where the next write goes.
    end: u64,
    /// A torn tail cut off at `end`: its length (0 when only zeros follow
    /// `end`).
    torn: u64,
}

/// Reads a store file's bytes (after the magic): see the module
/// documentation for what counts as a torn tail and what as damage.
fn read_frames(bytes: &[u8]) -> Result<Read, StorageProblem> {
    let total = bytes.len() as u64;
    let mut at = MAGIC.len() as u64;
    let mut read = Read { identity: None, store: MemoryStore::new(), end: at, torn: 0 };
    while at < total {
        let rest = &bytes[at as usize..];
        let torn = |read: Read| Ok(Read { torn: total - at, ..read });
        if rest.iter().all(|&b| b == 0) {
            // The zeros ahead of the log (or a write none of which landed).
            return Ok(read);
        }
        if rest.len() < FRAME_HEADER_BYTES {
            return torn(read);
        }
        let len = match header_at(bytes, at as usize) {
            Ok(len) => len as u64,
            Err(error) => {
                // A header a crash left partly unwritten: this frame's part of
                // the sector holding its first or its last byte is all zero.
                let unwritten = |byte: u64| {
                    let sector = byte / SECTOR_BYTES * SECTOR_BYTES;
                    let (a, b) = (sector.max(at) as usize, (sector + SECTOR_BYTES).min(total) as usize);
                    bytes[a..b].iter().all(|&x| x == 0)
                };
                // And nothing after it is a frame: a crash tears the last write
                // only, so a whole frame further on means damage.
                if (unwritten(at) || unwritten(at + FRAME_HEADER_BYTES as u64 - 1)) && !frame_after(bytes, at + 1) {
                    return torn(read);
                }
                return Err(StorageProblem::CorruptRecord { offset: at, error });
            }
        };
        let frame_end = at + FRAME_HEADER_BYTES as u64 + len;
        if frame_end > total {
            return torn(read);
        }
        let body = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len as usize];
        let frame = match record::decode::<Frame>(body) {
            Ok(frame) => frame,
            Err(error) => {
                let last = bytes[frame_end as usize..].iter().all(|&b| b == 0);
                if last && has_zero_sector(bytes, at, frame_end) {
                    return torn(read);
                }
                return Err(StorageProblem::CorruptRecord { offset: at, error });
            }
        };
        match (frame, read.identity.is_some()) {
            (Frame::Identity(identity), false) => read.identity = Some(identity),
            (Frame::Write(persists), true) => {
                for p in &persists {
                    read.store.apply(p).map_err(|error| StorageProblem::RejectedRecord { offset: at, error })?;
                }
            }
            // An identity anywhere but first, or a write before it.
            _ => return Err(StorageProblem::CorruptRecord { offset: at, error: RecordError::Malformed }),
        }
        at = frame_end;
        read.end = at;
    }
    Ok(read)
}

/// Whether a whole frame (its header and its record passing their checks)
/// starts anywhere at or after `from`.
fn frame_after(bytes: &[u8], from: u64) -> bool {
    let total = bytes.len();
    (from as usize..total.saturating_sub(FRAME_HEADER_BYTES)).any(|at| {
        header_at(bytes, at).is_ok_and(|len| {
            let end = at + FRAME_HEADER_BYTES + len;
            end <= total && record::decode::<Frame>(&bytes[at + FRAME_HEADER_BYTES..end]).is_ok()
        })
    })
}

/// Whether the frame `from..to` of the file covers a disk sector that is
/// all zero: a whole one, or its last partial one when that holds at least
/// [`TAIL_ZEROS_MIN`] of its bytes (a few zero bytes at a frame's end can be
/// its own).
fn has_zero_sector(bytes: &[u8], from: u64, to: u64) -> bool {
    let zero = |a: u64, b: u64| bytes[a as usize..b as usize].iter().all(|&x| x == 0);
    let mut sector = from.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    while sector + SECTOR_BYTES <= to {
        if zero(sector, sector + SECTOR_BYTES) {
            return true;
        }
        sector += SECTOR_BYTES;
    }
    let tail = (to / SECTOR_BYTES * SECTOR_BYTES).max(from);
    to - tail >= TAIL_ZEROS_MIN && zero(tail, to)
}

/// The write-ahead log of one node.
pub(crate) struct DiskStore {
    file: File,
    dir: PathBuf,
    path: PathBuf,
    /// Where the next frame goes.
    end: u64,
    /// The file's length: zeros from `end` to there. A frame written
    /// inside them changes no file size, so its `fdatasync` has no
    /// metadata to write (ext4 skips its journal); the file is extended
    /// [`PREALLOCATE_BYTES`] at a time, zeros written out, by the write
    /// that needs the room.
    allocated: u64,
    /// The file's length after the last rewrite (or at opening).
    rewritten_at: u64,
    /// Whether a compaction or a truncation was written since: only then
    /// has a rewrite anything to drop.
    compacted: bool,
    /// [`REWRITE_BYTES_MIN`], lower in tests.
    rewrite_min: u64,
}

impl DiskStore {
    /// Opens (or creates) the store in `dir` and reads everything back.
    pub fn open(dir: &Path, identity: StoreIdentity) -> Result<(DiskStore, MemoryStore), StorageError> {
        let path = dir.join(STORE_FILE);
        let fail = |path: &Path, problem| StorageError { path: path.to_path_buf(), problem };
        let io_fail = |path: &Path, e: io::Error| fail(path, StorageProblem::Unreadable(Arc::new(e)));
        std::fs::create_dir_all(dir).map_err(|e| io_fail(&path, e))?;
        let redb = dir.join(REDB_STORE_FILE);
        if redb.exists() && !path.exists() {
            return Err(fail(&redb, StorageProblem::EarlierFormat));
        }
        // A rewrite a crash cut short: the store file is still whole.
        match std::fs::remove_file(dir.join(REWRITE_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_fail(&path, e)),
            _ => {}
        }
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_fail(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(fail(&path, StorageProblem::InUse)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_fail(&path, e)),
        }
        let mut store = DiskStore {
            file,
            dir: dir.to_path_buf(),
            path: path.clone(),
            end: 0,
            allocated: 0,
            rewritten_at: 0,
            compacted: false,
            rewrite_min: REWRITE_BYTES_MIN,
        };
        let bytes = std::fs::read(&path).map_err(|e| io_fail(&path, e))?;
        if bytes.iter().all(|&b| b == 0) {
            // New (or a crash before its first write was durable: empty,
            // or the zeros written with it without its first bytes).
            let mut first = MAGIC.to_vec();
            first.extend(frame_bytes(&FrameRef::Identity(&identity)));
            store.append(&first).map_err(|e| io_fail(&path, e))?;
            if created {
                sync_dir(dir).map_err(|e| io_fail(&path, e))?;
            }
            store.rewritten_at = store.end;
            return Ok((store, MemoryStore::new()));
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(fail(&path, StorageProblem::NotAStore));
        }
        let read = read_frames(&bytes).map_err(|problem| fail(&path, problem))?;
        let Some(stored) = read.identity else {
            // Only the magic survived a crash during creation.
            return Err(fail(&path, StorageProblem::NotAStore));
        };
        let clusters_differ = matches!((stored.cluster_id, identity.cluster_id), (Some(a), Some(b)) if a != b);
        if stored.node_id != identity.node_id || clusters_differ {
            return Err(fail(&path, StorageProblem::WrongIdentity { stored, configured: identity }));
        }
        store.allocated = bytes.len() as u64;
        if read.torn > 0 {
            warn!(store = %path.display(), offset = read.end, bytes = read.torn,
                "dropping the end of the store: a write that a crash cut short");
            store.file.set_len(read.end).map_err(|e| io_fail(&path, e))?;
            store.file.sync_all().map_err(|e| io_fail(&path, e))?;
            store.allocated = read.end;
        }
        store.end = read.end;
        // What a rewrite now would leave: the base for the next one.
        store.rewritten_at = live_file(&identity, &read.store).len() as u64;
        store.compacted = store.end > store.rewritten_at;
        Ok((store, read.store))
    }

    /// Appends `bytes` at the end and makes them durable, first
    /// zero-filling the file ahead if they do not fit in its zeros.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.end + bytes.len() as u64;
        self.file.write_all_at(bytes, self.end)?;
        if end > self.allocated {
            let allocated = (end + PREALLOCATE_BYTES).div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
            let zeros = vec![0u8; 64 << 10];
            let mut at = end;
            while at < allocated {
                let n = (allocated - at).min(zeros.len() as u64);
                self.file.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
            self.allocated = allocated;
        }
        self.file.sync_data()?;
        self.end = end;
        Ok(())
    }

    /// Makes `batch` durable: one frame, one fsync, so that the term and
    /// vote, the membership and the log changes of one batch are durable
    /// together or not at all. Order within the batch is kept (a truncation
    /// before the append that follows it).
    pub fn write(&mut self, batch: &[Persist]) -> Result<(), StorageError> {
        let path = self.path.clone();
        let failed = |e| StorageError { path, problem: StorageProblem::WriteFailed(Arc::new(e)) };
        let mut written = self.append(&frame_bytes(&FrameRef::Write(batch)));
        self.compacted |= batch.iter().any(|p| matches!(p, Persist::Compact { .. } | Persist::Truncate { .. }));
        if written.is_ok() && self.compacted && self.end > self.rewrite_min.max(4 * self.rewritten_at) {
            written = self.rewrite();
        }
        written.map_err(failed)
    }

    /// Replaces the file by one holding only the live state (see the module
    /// documentation).
    fn rewrite(&mut self) -> io::Result<()> {
        let started = std::time::Instant::now();
        let bytes = std::fs::read(&self.path)?;
        let read = read_frames(&bytes[..self.end as usize]).map_err(|p| io::Error::other(format!("{p:?}")))?;
        let identity = read.identity.ok_or_else(|| io::Error::other("the store lost its identity"))?;
        let out = live_file(&identity, &read.store);
        let temporary = self.dir.join(REWRITE_FILE);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temporary)?;
        file.write_all_at(&out, 0)?;
        file.sync_all()?;
        file.try_lock().map_err(|_| io::Error::other("cannot lock the rewritten store"))?;
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(&self.dir)?;
        let before = self.end;
        self.file = file;
        self.end = out.len() as u64;
        self.allocated = self.end;
        self.rewritten_at = self.end;
        self.compacted = false;
        info!(store = %self.path.display(), before, after = self.end, millis = started.elapsed().as_millis() as u64,
            "rewrote the store without its compacted records");
        Ok(())
    }
}

/// The persists that rebuild `store` from nothing.
fn live_persists(store: &MemoryStore) -> Vec<Persist> {
    let mut out = vec![Persist::HardState(store.hard)];
    out.extend(store.membership.clone().map(Persist::Membership));
    out.extend(store.snapshot.clone().map(Persist::Snapshot));
    let log = &store.log;
    if log.compacted_index() > LogIndex(0) {
        out.push(Persist::Compact { through: log.compacted_index(), term: log.compacted_term() });
    }
    if !log.is_empty() {
        out.push(Persist::Append { first: log.first_index(), entries: log.entries().to_vec() });
    }
    out
}

/// Makes a directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// How many batches were made durable and how long that took, including
/// the hand-off to the storage thread.
#[derive(Debug, Default)]
pub(crate) struct StorageCounters {
    pub writes: std::sync::atomic::AtomicU64,
    pub write_micros: std::sync::atomic::AtomicU64,
}

/// A batch of writes for the storage thread, with its sequence number.
type Job = (u64, Vec<Persist>);

/// The completion of a batch: its sequence number once durable, or why
/// not. Completions come in the order the batches were submitted.
pub(crate) type Completion = Result<u64, StorageError>;

/// Most batches the storage thread makes durable in one transaction (one
/// fsync) when several wait: the batches a node loop submits while the
/// disk is busy share its next fsync (group commit), and the bound keeps
/// one transaction, and the wait of the first batch in it, short.
const BATCHES_PER_WRITE_MAX: usize = 64;

/// The store as the driver sees it: writes are submitted and complete in
/// the background, in order, while the node loop goes on.
pub(crate) struct Storage {
    kind: StorageKind,
    /// Where completions arrive (see [`Storage::completions`]).
    completions: mpsc::UnboundedReceiver<Completion>,
}

enum StorageKind {
    /// raft-core's in-memory store: a write is applied, and reported
    /// complete, at once.
    Memory(MemoryStore, mpsc::UnboundedSender<Completion>),
    /// Every write fails (tests of what a failed write does).
    #[cfg(test)]
    FailWrites(mpsc::UnboundedSender<Completion>),
    /// Writes go to the storage thread.
    Disk { jobs: Option<std::sync::mpsc::Sender<Job>>, thread: Option<std::thread::JoinHandle<()>>, path: PathBuf },
}

impl Storage {
    /// The in-memory store, empty.
    pub fn memory() -> (Storage, MemoryStore) {
        let (tx, completions) = mpsc::unbounded_channel();
        (Storage { kind: StorageKind::Memory(MemoryStore::new(), tx), completions }, MemoryStore::new())
    }

    /// A store whose every write fails.
    #[cfg(test)]
    pub fn failing() -> Storage {
        let (tx, completions) = mpsc::unbounded_channel();
        Storage { kind: StorageKind::FailWrites(tx), completions }
    }

    /// Opens the disk store (blocking: call at start-up, not from a task's
    /// hot path) and starts its thread.
    pub fn disk(
        dir: &Path,
        identity: StoreIdentity,
        name: String,
        counters: Arc<StorageCounters>,
    ) -> Result<(Storage, MemoryStore), StorageError> {
        let (mut store, recovered) = DiskStore::open(dir, identity)?;
        let path = store.path.clone();
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (done, completions) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || write_jobs(&mut store, &rx, &done, &counters))
            .map_err(|e| StorageError { path: path.clone(), problem: StorageProblem::WriteFailed(Arc::new(e)) })?;
        Ok((
            Storage { kind: StorageKind::Disk { jobs: Some(jobs), thread: Some(thread), path }, completions },
            recovered,
        ))
    }

    /// Starts making `batch` durable, after every batch submitted before;
    /// its completion, `seq`, comes on [`Storage::completions`].
    pub fn submit(&mut self, seq: u64, batch: Vec<Persist>) -> Result<(), StorageError> {
        match &mut self.kind {
            StorageKind::Memory(m, done) => {
                for p in &batch {
                    // raft-core's store refuses only persists that break the
                    // step contract: a raft-core bug, like a failed invariant
                    // of its own, so the node stops the same way.
                    if let Err(e) = m.apply(p) {
                        panic!("raft-core asked for a write that breaks its contract: {e}");
                    }
                }
                let _ = done.send(Ok(seq));
                Ok(())
            }
            #[cfg(test)]
            StorageKind::FailWrites(done) => {
                let _ = done.send(Err(StorageError {
                    path: PathBuf::from("injected"),
                    problem: StorageProblem::WriteFailed(Arc::new(std::io::Error::other("injected failure"))),
                }));
                Ok(())
            }
            StorageKind::Disk { jobs, path, .. } => {
                let gone = || StorageError { path: path.clone(), problem: StorageProblem::ThreadGone };
                jobs.as_ref().ok_or_else(gone)?.send((seq, batch)).map_err(|_| gone())
            }
        }
    }

    /// The completions of submitted batches, in submission order.
    pub fn completions(&mut self) -> &mut mpsc::UnboundedReceiver<Completion> {
        &mut self.completions
    }

    /// The store file, for the disk store.
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            StorageKind::Disk { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Stops the storage thread and waits until the file is closed,
    /// blocking: for a start that fails after the store was opened, so
    /// that the store can be opened again at once.
    pub fn close_blocking(mut self) {
        if let StorageKind::Disk { jobs, thread, .. } = &mut self.kind {
            drop(jobs.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Stops the storage thread and waits until the file is closed, so that
    /// a restarted node can open it again.
    pub async fn close(&mut self) {
        if let StorageKind::Disk { jobs, thread, .. } = &mut self.kind {
            drop(jobs.take());
            if let Some(t) = thread.take() {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        }
    }
}

/// The storage thread: takes a batch and whatever batches wait behind it
/// (at most [`BATCHES_PER_WRITE_MAX`]), makes them durable in one
/// transaction, and reports each complete, in order. A failed write is
/// reported for its batches and ends the thread (the node stops).
fn write_jobs(
    store: &mut DiskStore,
    jobs: &std::sync::mpsc::Receiver<Job>,
    done: &mpsc::UnboundedSender<Completion>,
    counters: &StorageCounters,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut batch = Vec::new();
    let mut seqs = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some((seq, persists)) = next.take() {
            seqs.push(seq);
            batch.extend(persists);
            if seqs.len() < BATCHES_PER_WRITE_MAX {
                next = jobs.try_recv().ok();
            }
        }
        let start = std::time::Instant::now();
        let result = store.write(&batch);
        counters.writes.fetch_add(1, Relaxed);
        counters.write_micros.fetch_add(start.elapsed().as_micros() as u64, Relaxed);
        batch.clear();
        let failed = result.is_err();
        for seq in seqs.drain(..) {
            let _ = done.send(result.clone().map(|()| seq));
        }
        if failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, HardState, Membership, Term};

    #[test]
    fn the_membership_is_written_with_its_batch_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let identity = StoreIdentity { cluster_id: Some(7), node_id: NodeId(1) };
        let (mut store, fresh) = DiskStore::open(dir.path(), identity).unwrap();
        assert_eq!(fresh, MemoryStore::new(), "a new store holds nothing");
        let members = Membership::new([NodeId(1), NodeId(2), NodeId(3)]).unwrap();
        let batch = vec![
            Persist::Membership(members.clone()),
            Persist::HardState(HardState { term: Term(1), voted_for: Some(NodeId(1)) }),
            Persist::Append { first: LogIndex(1), entries: vec![Entry::noop(Term(1))] },
        ];
        store.write(&batch).unwrap();
        drop(store);
        let (_, stored) = DiskStore::open(dir.path(), identity).unwrap();
        let mut expected = MemoryStore::new();
        for p in &batch {
            expected.apply(p).unwrap();
        }
        assert_eq!(stored, expected);
        assert_eq!(stored.membership, Some(members));
    }

    const ID: StoreIdentity = StoreIdentity { cluster_id: Some(7), node_id: NodeId(1) };

    fn entries(from: u64, n: u64, term: u64) -> Persist {
        let entries = (0..n).map(|i| Entry::command(Term(term), format!("entry {}", from + i).into_bytes())).collect();
        Persist::Append { first: LogIndex(from), entries }
    }

    /// A store with three writes; returns its directory, the file's length
    /// after each write and the state after each.
    fn three_writes() -> (tempfile::TempDir, Vec<u64>, Vec<MemoryStore>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path(), ID).unwrap();
        let batches = vec![
            vec![
                Persist::Membership(Membership::new([NodeId(1)]).unwrap()),
                Persist::HardState(HardState { term: Term(1), voted_for: Some(NodeId(1)) }),
                entries(1, 3, 1),
            ],
            vec![entries(4, 200, 1)],
            vec![entries(204, 2, 1)],
        ];
        let (mut ends, mut states, mut expected) = (vec![store.end], vec![MemoryStore::new()], MemoryStore::new());
        for batch in &batches {
            store.write(batch).unwrap();
            batch.iter().for_each(|p| expected.apply(p).unwrap());
            ends.push(store.end);
            states.push(expected.clone());
        }
        (dir, ends, states)
    }

    #[test]
    fn a_write_a_crash_cut_short_is_dropped_at_every_length() {
        let (dir, ends, states) = three_writes();
        let path = dir.path().join(STORE_FILE);
        let whole = std::fs::read(&path).unwrap();
        // The second write (200 entries, some sectors long), cut at every
        // length, and the third lost: the store comes back as after the first.
        for cut in ends[1]..ends[2] {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            let (mut store, stored) = DiskStore::open(dir.path(), ID).unwrap();
            assert_eq!(stored, states[1], "cut at {cut}");
            let len = std::fs::metadata(&path).unwrap().len();
            let zeros = whole[ends[1] as usize..cut as usize].iter().all(|&b| b == 0);
            assert!(len == ends[1] || zeros && len == cut, "the torn tail is gone: {len}");
            // Writing goes on after the cut, and reads back (at some cuts:
            // each write there zero-fills the file ahead).
            if !(cut - ends[1]).is_multiple_of(61) {
                continue;
            }
            store.write(&[entries(4, 1, 2)]).unwrap();
            drop(store);
            let (_, again) = DiskStore::open(dir.path(), ID).unwrap();
            assert_eq!(again.log.last_index(), LogIndex(4), "cut at {cut}");
        }
    }

    #[test]
    fn a_tail_the_disk_left_zero_is_dropped() {
        let (dir, ends, states) = three_writes();
        let path = dir.path().join(STORE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // The last write's sectors unwritten: zeros, the file's length kept.
        bytes[ends[2] as usize..].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(DiskStore::open(dir.path(), ID).unwrap().1, states[2]);
        // The second write's record with a whole sector left zero.
        let (dir, ends, states) = three_writes();
        let path = dir.path().join(STORE_FILE);
        let mut bytes = std::fs::read(&path).unwrap()[..ends[2] as usize].to_vec();
        let sector = ends[1].div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        assert!(sector + SECTOR_BYTES <= ends[2], "the write covers a whole sector");
        bytes[sector as usize..(sector + SECTOR_BYTES) as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(DiskStore::open(dir.path(), ID).unwrap().1, states[1]);
        // Its first sector unwritten (the header with it), its later ones
        // written: the disk wrote them out of order.
        let (dir, ends, states) = three_writes();
        let path = dir.path().join(STORE_FILE);
        let mut bytes = std::fs::read(&path).unwrap()[..ends[2] as usize].to_vec();
        let boundary = (ends[1] + 1).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        bytes[ends[1] as usize..boundary as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(DiskStore::open(dir.path(), ID).unwrap().1, states[1]);
        // The same with the third write still there: not a torn tail but
        // damage, since a whole frame follows.
        let (dir, ends, _) = three_writes();
        let path = dir.path().join(STORE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ends[1] as usize..boundary as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let err = DiskStore::open(dir.path(), ID).err().expect("damage is refused");
        assert!(matches!(err.problem, StorageProblem::CorruptRecord { offset, .. } if offset == ends[1]), "{err}");
    }

    #[test]
    fn damage_is_refused_with_its_offset_and_the_file_kept() {
        for (victim, last) in [(1, false), (3, true)] {
            let (dir, ends, _) = three_writes();
            let path = dir.path().join(STORE_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            // One bit of the write's record flipped (its header, then its body).
            for at in [ends[victim - 1] + 2, (ends[victim - 1] + ends[victim]) / 2] {
                let mut damaged = bytes.clone();
                damaged[at as usize] ^= 0x10;
                std::fs::write(&path, &damaged).unwrap();
                let err = DiskStore::open(dir.path(), ID).err().expect("damage is refused");
                match err.problem {
                    StorageProblem::CorruptRecord { offset, .. } => assert_eq!(offset, ends[victim - 1], "{last}"),
                    other => panic!("unexpected problem at {at} (last write: {last}): {other:?}"),
                }
                assert!(err.to_string().contains("corrupt"), "{err}");
                assert_eq!(std::fs::read(&path).unwrap(), damaged, "nothing is cut away");
            }
            bytes[0] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            assert!(matches!(DiskStore::open(dir.path(), ID).err().unwrap().problem, StorageProblem::NotAStore));
        }
    }

    #[test]
    fn the_file_is_rewritten_without_what_was_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path(), ID).unwrap();
        store.rewrite_min = 16 << 10;
        let members = Membership::new([NodeId(1)]).unwrap();
        let mut expected = MemoryStore::new();
        let mut write = |store: &mut DiskStore, batch: Vec<Persist>| {
            store.write(&batch).unwrap();
            batch.iter().for_each(|p| expected.apply(p).unwrap());
            expected.clone()
        };
        write(
            &mut store,
            vec![
                Persist::Membership(members.clone()),
                Persist::HardState(HardState { term: Term(3), voted_for: None }),
            ],
        );
        let (mut next, mut largest) = (1, 0);
        for round in 1..=40u64 {
            write(&mut store, vec![entries(next, 40, 3)]);
            next += 40;
            // A snapshot every round, keeping five entries behind it.
            let meta =
                raft_core::SnapshotMeta { index: LogIndex(next - 1), term: Term(3), membership: members.clone() };
            let state = write(
                &mut store,
                vec![Persist::Snapshot(meta), Persist::Compact { through: LogIndex(next - 6), term: Term(3) }],
            );
            largest = largest.max(store.end);
            if round.is_multiple_of(10) {
                let (reopened, stored) = {
                    drop(store);
                    DiskStore::open(dir.path(), ID).unwrap()
                };
                assert_eq!(stored, state, "round {round}");
                store = reopened;
                store.rewrite_min = 16 << 10;
            }
        }
        let file = std::fs::metadata(dir.path().join(STORE_FILE)).unwrap().len();
        assert!(largest < 80 << 10, "the log stays bounded: at most {largest} bytes");
        assert!(store.end < largest, "and was rewritten: {} < {largest}", store.end);
        assert!(file <= store.end + 2 * PREALLOCATE_BYTES, "the zeros ahead are bounded too: {file}");
        assert!(!dir.path().join(REWRITE_FILE).exists());
    }

    #[test]
    fn a_store_in_use_or_of_an_earlier_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_open, _) = DiskStore::open(dir.path(), ID).unwrap();
        let err = DiskStore::open(dir.path(), ID).err().unwrap();
        assert!(matches!(err.problem, StorageProblem::InUse), "{err}");
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join(REDB_STORE_FILE), b"redb").unwrap();
        let err = DiskStore::open(old.path(), ID).err().unwrap();
        assert!(matches!(err.problem, StorageProblem::EarlierFormat), "{err}");
        assert!(err.to_string().contains("earlier version"), "{err}");
        assert!(!old.path().join(STORE_FILE).exists(), "nothing was written");
    }

    #[test]
    fn the_snapshot_record_and_the_compaction_point_are_read_back_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let identity = StoreIdentity { cluster_id: Some(7), node_id: NodeId(1) };
        let (mut store, _) = DiskStore::open(dir.path(), identity).unwrap();
        let members = Membership::new([NodeId(1)]).unwrap();
        let meta =
            |index| raft_core::SnapshotMeta { index: LogIndex(index), term: Term(1), membership: members.clone() };
        let entries = |n| (0..n).map(|_| Entry::noop(Term(1))).collect::<Vec<_>>();
        let batches = vec![
            vec![
                Persist::Membership(members.clone()),
                Persist::HardState(HardState { term: Term(1), voted_for: Some(NodeId(1)) }),
                Persist::Append { first: LogIndex(1), entries: entries(10) },
            ],
            // An application's snapshot at 6, keeping two trailing entries.
            vec![Persist::Snapshot(meta(6)), Persist::Compact { through: LogIndex(4), term: Term(1) }],
            // A leader's snapshot past the log's end: the log is emptied and
            // starts after it.
            vec![Persist::Snapshot(meta(12)), Persist::Compact { through: LogIndex(12), term: Term(1) }],
            vec![Persist::Append { first: LogIndex(13), entries: entries(2) }],
        ];
        let mut expected = MemoryStore::new();
        for batch in &batches {
            store.write(batch).unwrap();
            for p in batch {
                expected.apply(p).unwrap();
            }
            drop(store);
            let (reopened, stored) = DiskStore::open(dir.path(), identity).unwrap();
            assert_eq!(stored, expected);
            store = reopened;
        }
        assert_eq!(expected.log.first_index(), LogIndex(13));
        assert_eq!(expected.log.last_index(), LogIndex(14));
        assert_eq!(expected.snapshot.map(|s| s.index), Some(LogIndex(12)));
    }
}
