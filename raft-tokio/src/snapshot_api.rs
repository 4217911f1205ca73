//! The application's side of taking snapshots: [`RaftHandle::save_snapshot`]
//! and its two-step form, [`RaftHandle::snapshot_writer`] and
//! [`SnapshotWriter::finish`].
//!
//! A snapshot is the application's state after applying every entry up to
//! an index, as bytes the application writes and reads back itself
//! ([`crate::Event::Restore`]). The runtime writes them into the snapshot
//! store (a `*.part` file, CRC-32 computed as they are written, fsync,
//! rename, directory fsync), then tells raft-core (`Input::SnapshotTaken`),
//! which records the snapshot and compacts its log, keeping
//! `RaftParams::trailing_entries` entries before it. The call resolves once
//! that record is durable. Older snapshot files are removed then.

use crate::api::RaftHandle;
use crate::driver::SnapshotRequest;
use crate::snapshots::{FileWriter, SnapshotStore};
use raft_core::{LogIndex, SnapshotMeta, Term};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why a snapshot was not taken.
#[derive(Debug, Clone)]
pub enum SnapshotError {
    /// The node is not running.
    Stopped,
    /// The index is beyond what the node handed to the application: the
    /// application cannot have applied it. The caller's mistake.
    NotApplied {
        /// The index asked for.
        index: LogIndex,
        /// The last index handed to the application.
        delivered: LogIndex,
    },
    /// The node holds a snapshot at or beyond this index already (the
    /// application took one, or a leader's was installed meanwhile):
    /// nothing to do, and no file is left behind. Harmless.
    Superseded {
        /// The index asked for.
        index: LogIndex,
        /// The index of the snapshot the node holds.
        snapshot: LogIndex,
    },
    /// Writing, syncing or renaming the snapshot file failed (or the
    /// application's writer returned an error); the temporary file is
    /// removed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Arc<std::io::Error>,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Stopped => write!(f, "the node is not running"),
            SnapshotError::NotApplied { index, delivered } => {
                write!(f, "a snapshot at {index} asked for, but only entries up to {delivered} were handed over")
            }
            SnapshotError::Superseded { index, snapshot } => {
                write!(f, "a snapshot at {index} is not newer than the one held, at {snapshot}")
            }
            SnapshotError::Io { path, source } => write!(f, "snapshot file {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<crate::snapshots::FileError> for SnapshotError {
    fn from(e: crate::snapshots::FileError) -> SnapshotError {
        let source = match e.problem {
            crate::SnapshotFileProblem::Io(source) => source,
            other => Arc::new(std::io::Error::other(other.to_string())),
        };
        SnapshotError::Io { path: e.path, source }
    }
}

/// A snapshot being written (see [`RaftHandle::snapshot_writer`]): a
/// buffered [`Write`] into a temporary file of the snapshot store. `Send`,
/// so it can be moved into `spawn_blocking` with a copy of the state.
/// Dropped without [`Self::finish`], it removes its file.
pub struct SnapshotWriter {
    index: LogIndex,
    term: Term,
    file: FileWriter,
    store: SnapshotStore,
    requests: mpsc::Sender<SnapshotRequest>,
}

impl fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotWriter({}@{})", self.index, self.term)
    }
}

impl SnapshotWriter {
    /// The index the snapshot covers.
    pub fn index(&self) -> LogIndex {
        self.index
    }

    /// Seals the file (trailer, fsync, rename, directory fsync), tells
    /// raft-core, and waits until the snapshot's record is durable.
    pub async fn finish(self) -> Result<SnapshotMeta, SnapshotError> {
        let SnapshotWriter { index, term, file, store, requests } = self;
        let sealed = tokio::task::spawn_blocking(move || file.seal(&store, index, term)).await;
        sealed.map_err(|_| SnapshotError::Stopped)??;
        let (reply, answer) = oneshot::channel();
        requests.send(SnapshotRequest::Taken { index, term, reply }).await.map_err(|_| SnapshotError::Stopped)?;
        answer.await.map_err(|_| SnapshotError::Stopped)?
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl RaftHandle {
    /// Takes a snapshot of the application's state at `index`: `write`
    /// writes that state (any bytes; the application reads them back on
    /// [`crate::Event::Restore`]), the runtime makes them durable, tells
    /// raft-core, and resolves once the snapshot is recorded and the log
    /// compacted (see the [module documentation](crate#snapshots)).
    ///
    /// `index` is an index the application has applied: at most the index
    /// of the last entry (or restore) the [`crate::EntryReceiver`] gave it.
    /// Calling this right after applying that entry, before asking for the
    /// next one, is the usual way; the call reports the entry applied
    /// itself. `write` runs on the calling task, synchronously, and blocks
    /// its thread while it writes; to go on serving while a large state is
    /// written, use [`Self::snapshot_writer`] in `spawn_blocking` with a
    /// copy of the state.
    ///
    /// Errors: [`SnapshotError::NotApplied`] (the caller's mistake),
    /// [`SnapshotError::Superseded`] (harmless), [`SnapshotError::Io`]
    /// (also when `write` fails), [`SnapshotError::Stopped`].
    pub async fn save_snapshot<F>(&self, index: LogIndex, write: F) -> Result<SnapshotMeta, SnapshotError>
    where
        F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
    {
        let mut writer = self.snapshot_writer(index).await?;
        let path = writer.file_path();
        let written = write(&mut writer).and_then(|()| writer.flush());
        written.map_err(|e| SnapshotError::Io { path, source: Arc::new(e) })?;
        writer.finish().await
    }

    /// The first step of [`Self::save_snapshot`]: checks that a snapshot
    /// may be taken at `index` and opens its temporary file. Write the state
    /// into the writer, then call [`SnapshotWriter::finish`].
    pub async fn snapshot_writer(&self, index: LogIndex) -> Result<SnapshotWriter, SnapshotError> {
        let (reply, answer) = oneshot::channel();
        self.snapshots.send(SnapshotRequest::Prepare { index, reply }).await.map_err(|_| SnapshotError::Stopped)?;
        let term = answer.await.map_err(|_| SnapshotError::Stopped)??;
        let store = self.snapshot_store.clone();
        let file = tokio::task::spawn_blocking(move || store.create_taken(index)).await;
        let file = file.map_err(|_| SnapshotError::Stopped)??;
        Ok(SnapshotWriter { index, term, file, store: self.snapshot_store.clone(), requests: self.snapshots.clone() })
    }
}

impl SnapshotWriter {
    fn file_path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}
