//! Durable storage of a node's hard state, membership and log.
//!
//! Two stores, chosen explicitly by the configuration: [`DiskStore`] (redb,
//! one file `raft.redb` in the node's data directory) and raft-core's
//! [`MemoryStore`] for tests and benchmarks, which a restart loses. Both
//! hand back what they hold as a `MemoryStore`, which raft-core recovers
//! from.
//!
//! The disk store runs on its own thread, so that a write and its fsync
//! never block a tokio worker (they would stall every other task on it, the
//! other nodes' included when several share a process). The driver hands it
//! the persists of one batch of inputs and awaits one reply: one redb write
//! transaction, committed with `Durability::Immediate`, which is one fsync.
//!
//! The snapshot's metadata (`Persist::Snapshot`) and the compaction point
//! (`Persist::Compact`: the last index removed and its term) are records of
//! the meta table, written in the same transaction as the rest of their
//! batch; a compaction removes the log's entries through it in that
//! transaction too. So the store always holds a snapshot record, a
//! compaction point at or before it, and the log contiguous after that
//! point. The snapshot's data is a file of the snapshot store
//! ([`crate::snapshots`]), made durable before raft-core asks for the record.

use crate::record::{self, RecordError};
use crate::snapshots::SnapshotFileProblem;
use raft_core::{Log, LogIndex, MemoryStore, NodeId, Persist, RecoverError, Term};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The name of the store file inside the data directory.
pub const STORE_FILE: &str = "raft.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const KEY_HARD_STATE: &str = "hard_state";
const KEY_IDENTITY: &str = "identity";
const KEY_MEMBERSHIP: &str = "membership";
const KEY_SNAPSHOT: &str = "snapshot";
/// The compaction point: (last index removed, its term).
const KEY_COMPACTED: &str = "compacted";

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
    /// redb refused to open or read the file (a damaged header or page, a
    /// file that is not a redb database, an I/O error, a lock held by
    /// another process).
    Unreadable(Arc<redb::Error>),
    /// redb panicked while reading the file: it met a state its own
    /// checks say it never writes.
    ReaderPanicked(String),
    /// A record failed its checksum or does not decode.
    CorruptRecord {
        /// `"log"` or `"meta"`.
        table: &'static str,
        /// The log index, or 0 for the meta table.
        index: u64,
        /// Why.
        error: RecordError,
    },
    /// The log's indexes are not contiguous from 1.
    LogGap {
        /// The index expected next.
        expected: LogIndex,
        /// The index found.
        found: LogIndex,
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
    WriteFailed(Arc<redb::Error>),
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
            StorageProblem::ReaderPanicked(m) => write!(f, "is corrupt (redb panicked reading it: {m})"),
            StorageProblem::CorruptRecord { table, index, error } => {
                write!(f, "is corrupt: record {index} of table {table}: {error}")
            }
            StorageProblem::LogGap { expected, found } => {
                write!(f, "is corrupt: the log jumps from index {} to {found}", expected.prev())
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

/// The redb store of one node.
pub(crate) struct DiskStore {
    db: Database,
    path: PathBuf,
}

impl DiskStore {
    /// Opens (or creates) the store in `dir` and reads everything back.
    pub fn open(dir: &Path, identity: StoreIdentity) -> Result<(DiskStore, MemoryStore), StorageError> {
        let path = dir.join(STORE_FILE);
        let fail = |problem| StorageError { path: path.clone(), problem };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(fail(StorageProblem::Unreadable(Arc::new(redb::Error::Io(e)))));
        }
        // redb checks its own structures with assertions in debug builds; a
        // damaged file must give an error naming it, not a crash.
        let opened = std::panic::catch_unwind(|| -> Result<_, StorageError> {
            let db = Database::create(&path).map_err(|e| fail(StorageProblem::Unreadable(Arc::new(e.into()))))?;
            let store = DiskStore { db, path: path.clone() };
            let recovered = store.load(identity)?;
            Ok((store, recovered))
        });
        match opened {
            Ok(result) => result,
            Err(panic) => Err(fail(StorageProblem::ReaderPanicked(panic_message(&panic)))),
        }
    }

    fn unreadable(&self, e: impl Into<redb::Error>) -> StorageError {
        StorageError { path: self.path.clone(), problem: StorageProblem::Unreadable(Arc::new(e.into())) }
    }

    fn corrupt(&self, table: &'static str, index: u64, error: RecordError) -> StorageError {
        StorageError { path: self.path.clone(), problem: StorageProblem::CorruptRecord { table, index, error } }
    }

    fn load(&self, identity: StoreIdentity) -> Result<MemoryStore, StorageError> {
        self.check_identity(identity)?;
        let txn = self.db.begin_read().map_err(|e| self.unreadable(e))?;
        let mut recovered = MemoryStore::new();
        let meta = txn.open_table(META).map_err(|e| self.unreadable(e))?;
        if let Some(v) = meta.get(KEY_HARD_STATE).map_err(|e| self.unreadable(e))? {
            recovered.hard = record::decode(v.value()).map_err(|e| self.corrupt("meta", 0, e))?;
        }
        if let Some(v) = meta.get(KEY_MEMBERSHIP).map_err(|e| self.unreadable(e))? {
            recovered.membership = Some(record::decode(v.value()).map_err(|e| self.corrupt("meta", 0, e))?);
        }
        if let Some(v) = meta.get(KEY_SNAPSHOT).map_err(|e| self.unreadable(e))? {
            recovered.snapshot = Some(record::decode(v.value()).map_err(|e| self.corrupt("meta", 0, e))?);
        }
        let mut compacted = (LogIndex(0), Term(0));
        if let Some(v) = meta.get(KEY_COMPACTED).map_err(|e| self.unreadable(e))? {
            compacted = record::decode(v.value()).map_err(|e| self.corrupt("meta", 0, e))?;
        }
        let mut entries = Vec::new();
        let log = txn.open_table(LOG).map_err(|e| self.unreadable(e))?;
        let mut expected = compacted.0.next();
        for item in log.iter().map_err(|e| self.unreadable(e))? {
            let (k, v) = item.map_err(|e| self.unreadable(e))?;
            let found = LogIndex(k.value());
            if found != expected {
                let problem = StorageProblem::LogGap { expected, found };
                return Err(StorageError { path: self.path.clone(), problem });
            }
            entries.push(record::decode(v.value()).map_err(|e| self.corrupt("log", found.0, e))?);
            expected = expected.next();
        }
        let mut log = Log::new();
        log.compact_through(compacted.0, compacted.1);
        log.extend(entries);
        recovered.log = log;
        Ok(recovered)
    }

    /// Refuses a store of another node; writes the identity on first use
    /// (only then: an existing store is not written before it is read).
    fn check_identity(&self, configured: StoreIdentity) -> Result<(), StorageError> {
        let stored = {
            let txn = self.db.begin_read().map_err(|e| self.unreadable(e))?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(KEY_IDENTITY).map_err(|e| self.unreadable(e))?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.unreadable(e)),
            }
        };
        if let Some(bytes) = stored {
            let stored: StoreIdentity = record::decode(&bytes).map_err(|e| self.corrupt("meta", 0, e))?;
            let clusters_differ = matches!((stored.cluster_id, configured.cluster_id), (Some(a), Some(b)) if a != b);
            if stored.node_id != configured.node_id || clusters_differ {
                let problem = StorageProblem::WrongIdentity { stored, configured };
                return Err(StorageError { path: self.path.clone(), problem });
            }
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.unreadable(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.unreadable(e))?;
            txn.open_table(LOG).map_err(|e| self.unreadable(e))?;
            meta.insert(KEY_IDENTITY, record::encode(&configured).as_slice()).map_err(|e| self.unreadable(e))?;
        }
        txn.commit().map_err(|e| self.unreadable(e))
    }

    /// Makes `batch` durable: one transaction, one fsync, so that the term
    /// and vote, the membership and the log changes of one batch commit
    /// together or not at all. Order within the batch is kept (a truncation
    /// before the append that follows it).
    pub fn write(&mut self, batch: &[Persist]) -> Result<(), StorageError> {
        let failed = |e: redb::Error| StorageError {
            path: self.path.clone(),
            problem: StorageProblem::WriteFailed(Arc::new(e)),
        };
        let txn = self.db.begin_write().map_err(|e| failed(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| failed(e.into()))?;
            let mut log = txn.open_table(LOG).map_err(|e| failed(e.into()))?;
            for p in batch {
                match p {
                    Persist::HardState(h) => {
                        meta.insert(KEY_HARD_STATE, record::encode(h).as_slice()).map_err(|e| failed(e.into()))?;
                    }
                    Persist::Membership(m) => {
                        meta.insert(KEY_MEMBERSHIP, record::encode(m).as_slice()).map_err(|e| failed(e.into()))?;
                    }
                    Persist::Truncate { from } => {
                        log.retain_in(from.0.., |_, _| false).map_err(|e| failed(e.into()))?;
                    }
                    Persist::Append { first, entries } => {
                        for (i, e) in entries.iter().enumerate() {
                            let value = record::encode(e);
                            log.insert(first.0 + i as u64, value.as_slice()).map_err(|e| failed(e.into()))?;
                        }
                    }
                    Persist::Snapshot(s) => {
                        meta.insert(KEY_SNAPSHOT, record::encode(s).as_slice()).map_err(|e| failed(e.into()))?;
                    }
                    Persist::Compact { through, term } => {
                        log.retain_in(..=through.0, |_, _| false).map_err(|e| failed(e.into()))?;
                        let point = record::encode(&(*through, *term));
                        meta.insert(KEY_COMPACTED, point.as_slice()).map_err(|e| failed(e.into()))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| failed(e.into()))
    }
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
            .map_err(|e| StorageError {
                path: path.clone(),
                problem: StorageProblem::WriteFailed(Arc::new(redb::Error::Io(e))),
            })?;
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
                    problem: StorageProblem::WriteFailed(Arc::new(redb::Error::Io(std::io::Error::other(
                        "injected failure",
                    )))),
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
