//! The snapshot store: the application's snapshots as files, one per
//! snapshot, in a directory beside the store file (`<data_dir>/snapshots`).
//!
//! A file is named by the snapshot it holds, `snap-<index>-<term>.snap`:
//! (index, term) names the data (raft-core's `SnapshotMeta`), so two files
//! of one name hold the same state. It holds the application's bytes as
//! written, then a trailer of [`TRAILER_BYTES`]: a magic string, the index,
//! the term, the data's length, the CRC-32 of the data, and the CRC-32 of
//! the trailer itself. The trailer comes last so that a snapshot is written
//! in one pass while its checksum is computed, without knowing its length
//! first.
//!
//! Every file is written as `*.part`, fsynced, renamed into place, and its
//! directory fsynced; only then is raft-core told about it
//! (`Input::SnapshotTaken`, or the `InstallSnapshot` message of a transfer),
//! so the snapshot the store records is always a whole file. A torn or damaged
//! file fails its trailer or checksum check and is refused with an error
//! that names it.
//!
//! Which file is live is the store's to say (the snapshot metadata it
//! holds). At start every other file is removed: `*.part` files of writes
//! or transfers that a crash cut short, files newer than the store's record
//! (a crash between the rename and the store's write) and older ones (a crash before the old
//! file was removed). While running, the driver removes the previous file
//! once a newer `Persist::Snapshot` is durable, and a received file that
//! raft-core did not take.

use raft_core::{LogIndex, SnapshotMeta, Term};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// The snapshot directory's name inside the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Bytes of the trailer after a snapshot's data.
pub const TRAILER_BYTES: usize = 40;
const TRAILER_MAGIC: [u8; 8] = *b"RTSNAP01";
/// The write buffer of a snapshot being written by the application.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// The read buffer when a whole file is checked.
const CHECK_BUFFER_BYTES: usize = 1 << 20;

/// What is wrong with a snapshot file.
#[derive(Debug, Clone)]
pub enum SnapshotFileProblem {
    /// The file the store's snapshot record names is not there.
    Missing,
    /// The file is shorter than its trailer: it was cut short.
    Short {
        /// Its length.
        len: u64,
    },
    /// The trailer's magic string or checksum is wrong: the file was cut
    /// short, or damaged, or is not a snapshot file.
    BadTrailer,
    /// The trailer names another snapshot than the file's name does.
    WrongSnapshot {
        /// The index the trailer gives.
        index: LogIndex,
        /// The term the trailer gives.
        term: Term,
    },
    /// The data is not as long as the trailer says.
    Length {
        /// The length the trailer gives.
        stated: u64,
        /// The data's length.
        actual: u64,
    },
    /// The data's checksum is not the one the trailer gives.
    Checksum {
        /// The checksum in the trailer.
        stored: u32,
        /// The checksum of the data as read.
        computed: u32,
    },
    /// Reading, writing or renaming it failed.
    Io(Arc<std::io::Error>),
}

impl fmt::Display for SnapshotFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotFileProblem::Missing => write!(f, "is missing"),
            SnapshotFileProblem::Short { len } => write!(f, "is torn: {len} bytes, shorter than its trailer"),
            SnapshotFileProblem::BadTrailer => write!(f, "is torn or corrupt: its trailer does not check"),
            SnapshotFileProblem::WrongSnapshot { index, term } => {
                write!(f, "holds snapshot {index}@{term}, not the one its name says")
            }
            SnapshotFileProblem::Length { stated, actual } => {
                write!(f, "is torn: its trailer says {stated} bytes of data, it holds {actual}")
            }
            SnapshotFileProblem::Checksum { stored, computed } => {
                write!(f, "is corrupt: checksum {computed:#010x}, its trailer says {stored:#010x}")
            }
            SnapshotFileProblem::Io(e) => write!(f, "cannot be read or written: {e}"),
        }
    }
}

/// A snapshot file that cannot be used, with its path.
#[derive(Debug, Clone)]
pub(crate) struct FileError {
    pub path: PathBuf,
    pub problem: SnapshotFileProblem,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot file {} {}", self.path.display(), self.problem)
    }
}

impl FileError {
    fn io(path: &Path, e: std::io::Error) -> FileError {
        FileError { path: path.to_path_buf(), problem: SnapshotFileProblem::Io(Arc::new(e)) }
    }
}

/// The trailer of a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub index: LogIndex,
    pub term: Term,
    /// Bytes of data before the trailer.
    pub len: u64,
    /// CRC-32 (IEEE) of the data.
    pub crc: u32,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_BYTES] {
        let mut out = [0u8; TRAILER_BYTES];
        out[0..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..16].copy_from_slice(&self.index.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.term.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
        out[32..36].copy_from_slice(&self.crc.to_le_bytes());
        let own = crc32fast::hash(&out[0..36]);
        out[36..40].copy_from_slice(&own.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; TRAILER_BYTES]) -> Option<Trailer> {
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("eight bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("four bytes"));
        if bytes[0..8] != TRAILER_MAGIC || crc32fast::hash(&bytes[0..36]) != u32_at(36) {
            return None;
        }
        Some(Trailer { index: LogIndex(u64_at(8)), term: Term(u64_at(16)), len: u64_at(24), crc: u32_at(32) })
    }
}

/// The directory of a node's snapshot files.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotStore {
    dir: PathBuf,
    /// An in-memory node's private directory, removed when the node stops.
    temporary: bool,
}

impl SnapshotStore {
    /// The store of a disk node, `<data_dir>/snapshots`, created if needed.
    pub fn open(data_dir: &Path) -> Result<SnapshotStore, FileError> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| FileError::io(&dir, e))?;
        Ok(SnapshotStore { dir, temporary: false })
    }

    /// A private directory for an in-memory node, which can take and
    /// receive snapshots but forgets them when it stops, as it forgets
    /// everything else.
    pub fn temporary(node: u64) -> Result<SnapshotStore, FileError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("raft-tokio-snapshots-{}-n{node}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| FileError::io(&dir, e))?;
        Ok(SnapshotStore { dir, temporary: true })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of snapshot (index, term).
    pub fn path(&self, index: LogIndex, term: Term) -> PathBuf {
        self.dir.join(format!("snap-{}-{}.snap", index.0, term.0))
    }

    /// The temporary file a transfer of (index, term) is received into.
    pub fn incoming_path(&self, index: LogIndex, term: Term) -> PathBuf {
        self.dir.join(format!("incoming-{}-{}.part", index.0, term.0))
    }

    /// A fresh temporary file name for a snapshot the application writes.
    fn taken_path(&self, index: LogIndex) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.join(format!("taken-{}-{}-{n}.part", index.0, std::process::id()))
    }

    /// (index, term) of a snapshot file's name.
    fn parse_name(name: &str) -> Option<(LogIndex, Term)> {
        let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
        let (index, term) = rest.split_once('-')?;
        Some((LogIndex(index.parse().ok()?), Term(term.parse().ok()?)))
    }

    /// At start: removes every file but `current`'s (see the module
    /// documentation), then checks `current`'s file whole. Blocking.
    pub fn clean_and_check(&self, current: Option<&SnapshotMeta>) -> Result<(), FileError> {
        let listing = std::fs::read_dir(&self.dir).map_err(|e| FileError::io(&self.dir, e))?;
        let keep = current.map(|m| (m.index, m.term));
        for item in listing {
            let item = item.map_err(|e| FileError::io(&self.dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let named = SnapshotStore::parse_name(&name);
            let stale = name.ends_with(".part") || (named.is_some() && named != keep);
            if !stale {
                continue;
            }
            let path = item.path();
            let why = match (named, keep) {
                (Some((i, _)), Some((k, _))) if i > k => "newer than the snapshot the store records",
                (Some(_), _) => "not the snapshot the store records",
                (None, _) => "an unfinished write or transfer",
            };
            info!("removing snapshot file {} ({why})", path.display());
            std::fs::remove_file(&path).map_err(|e| FileError::io(&path, e))?;
        }
        if let Some(meta) = current {
            self.check(meta.index, meta.term)?;
        }
        sync_dir(&self.dir).map_err(|e| FileError::io(&self.dir, e))
    }

    /// Reads and checks the trailer of snapshot (index, term)'s file;
    /// leaves `file` at the start of the data.
    fn trailer_of(&self, file: &mut File, path: &Path, index: LogIndex, term: Term) -> Result<Trailer, FileError> {
        let fail = |problem| FileError { path: path.to_path_buf(), problem };
        let len = file.metadata().map_err(|e| FileError::io(path, e))?.len();
        if len < TRAILER_BYTES as u64 {
            return Err(fail(SnapshotFileProblem::Short { len }));
        }
        let mut bytes = [0u8; TRAILER_BYTES];
        file.seek(SeekFrom::Start(len - TRAILER_BYTES as u64)).map_err(|e| FileError::io(path, e))?;
        file.read_exact(&mut bytes).map_err(|e| FileError::io(path, e))?;
        let trailer = Trailer::decode(&bytes).ok_or_else(|| fail(SnapshotFileProblem::BadTrailer))?;
        if (trailer.index, trailer.term) != (index, term) {
            return Err(fail(SnapshotFileProblem::WrongSnapshot { index: trailer.index, term: trailer.term }));
        }
        let actual = len - TRAILER_BYTES as u64;
        if trailer.len != actual {
            return Err(fail(SnapshotFileProblem::Length { stated: trailer.len, actual }));
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| FileError::io(path, e))?;
        Ok(trailer)
    }

    /// Opens snapshot (index, term)'s file and checks its trailer (not its
    /// data). Blocking.
    pub fn open_file(&self, index: LogIndex, term: Term) -> Result<(File, Trailer, PathBuf), FileError> {
        let path = self.path(index, term);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FileError { path, problem: SnapshotFileProblem::Missing })
            }
            Err(e) => return Err(FileError::io(&path, e)),
        };
        let trailer = self.trailer_of(&mut file, &path, index, term)?;
        Ok((file, trailer, path))
    }

    /// Checks snapshot (index, term)'s file whole: trailer and checksum.
    /// Blocking.
    pub fn check(&self, index: LogIndex, term: Term) -> Result<Trailer, FileError> {
        let (file, trailer, path) = self.open_file(index, term)?;
        let mut data = file.take(trailer.len);
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; CHECK_BUFFER_BYTES];
        let mut read = 0u64;
        // Bound: the file is `trailer.len` bytes long (checked above) and
        // every pass reads at least one byte.
        loop {
            let n = data.read(&mut buf).map_err(|e| FileError::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
        }
        let computed = hasher.finalize();
        if read != trailer.len {
            return Err(FileError { path, problem: SnapshotFileProblem::Length { stated: trailer.len, actual: read } });
        }
        if computed != trailer.crc {
            return Err(FileError { path, problem: SnapshotFileProblem::Checksum { stored: trailer.crc, computed } });
        }
        Ok(trailer)
    }

    /// A reader over the data of `meta`'s file (trailer checked; the data's
    /// checksum is checked as it is read). Blocking, briefly.
    pub fn reader(&self, meta: &SnapshotMeta) -> Result<SnapshotReader, FileError> {
        let (file, trailer, path) = self.open_file(meta.index, meta.term)?;
        Ok(SnapshotReader {
            meta: meta.clone(),
            path,
            data: std::io::BufReader::with_capacity(WRITE_BUFFER_BYTES, file).take(trailer.len),
            trailer,
            hasher: crc32fast::Hasher::new(),
            read: 0,
        })
    }

    /// Creates the temporary file of a snapshot the application writes.
    pub fn create_taken(&self, index: LogIndex) -> Result<FileWriter, FileError> {
        let path = self.taken_path(index);
        let file = File::create(&path).map_err(|e| FileError::io(&path, e))?;
        Ok(FileWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            path,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    /// Removes snapshot (index, term)'s file, if there; never fails (a file
    /// left behind is removed at the next start). Blocking.
    pub fn remove(&self, index: LogIndex, term: Term) {
        let path = self.path(index, term);
        match std::fs::remove_file(&path) {
            Ok(()) => info!("removed snapshot file {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove snapshot file {}: {e}", path.display()),
        }
    }

    /// Removes the directory of an in-memory node. Blocking.
    pub fn remove_temporary(&self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// fsyncs a directory, so that a rename or removal in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Ends a snapshot file: appends `trailer`, fsyncs the file, renames it from
/// `temp` to `path` and fsyncs the directory. Blocking.
pub(crate) fn seal(mut file: File, temp: &Path, trailer: Trailer, path: &Path) -> Result<(), FileError> {
    file.write_all(&trailer.encode()).map_err(|e| FileError::io(temp, e))?;
    file.sync_all().map_err(|e| FileError::io(temp, e))?;
    drop(file);
    std::fs::rename(temp, path).map_err(|e| FileError::io(path, e))?;
    let dir = path.parent().expect("a snapshot file is in the snapshot directory");
    sync_dir(dir).map_err(|e| FileError::io(dir, e))
}

/// A snapshot file being written by the application (see
/// [`crate::SnapshotWriter`]): buffered, its checksum computed as it goes.
pub(crate) struct FileWriter {
    /// `None` once sealed.
    file: Option<BufWriter<File>>,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl FileWriter {
    /// The temporary file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals it as snapshot (index, term) of `store`. Blocking.
    pub fn seal(mut self, store: &SnapshotStore, index: LogIndex, term: Term) -> Result<(), FileError> {
        let writer = self.file.take().expect("sealed once");
        let file = writer.into_inner().map_err(|e| FileError::io(&self.path, e.into_error()))?;
        let trailer = Trailer { index, term, len: self.len, crc: self.hasher.clone().finalize() };
        let result = seal(file, &self.path, trailer, &store.path(index, term));
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.as_mut().expect("not sealed").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not sealed").flush()
    }
}

impl Drop for FileWriter {
    /// A snapshot abandoned before it was sealed leaves no file behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The data of an installed snapshot, for the application to restore its
/// state from (see [`crate::Event::Restore`]).
///
/// It reads exactly the bytes the application wrote when it took the
/// snapshot (here or on the leader). Reads are blocking file reads: read a
/// large snapshot inside `tokio::task::spawn_blocking` (the reader is
/// `Send + 'static`) or `block_in_place`. Reading to the end checks the
/// data's checksum: a mismatch, or a file shorter than its trailer says, is
/// an error of kind `InvalidData` whose message names the file.
pub struct SnapshotReader {
    meta: SnapshotMeta,
    path: PathBuf,
    data: std::io::Take<std::io::BufReader<File>>,
    trailer: Trailer,
    hasher: crc32fast::Hasher,
    read: u64,
}

impl SnapshotReader {
    /// The snapshot's metadata: the last index and term it covers, and the
    /// membership at that index.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The last log index the snapshot covers; entries after it follow.
    pub fn index(&self) -> LogIndex {
        self.meta.index
    }

    /// The term of the entry at [`Self::index`].
    pub fn term(&self) -> Term {
        self.meta.term
    }

    /// Bytes of application data.
    pub fn len(&self) -> u64 {
        self.trailer.len
    }

    /// Whether the application wrote no bytes.
    pub fn is_empty(&self) -> bool {
        self.trailer.len == 0
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotReader({:?}, {} bytes, {})", self.meta, self.trailer.len, self.path.display())
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if n == 0 && !buf.is_empty() {
            let problem = if self.read != self.trailer.len {
                Some(SnapshotFileProblem::Length { stated: self.trailer.len, actual: self.read })
            } else {
                let computed = self.hasher.clone().finalize();
                (computed != self.trailer.crc)
                    .then_some(SnapshotFileProblem::Checksum { stored: self.trailer.crc, computed })
            };
            if let Some(problem) = problem {
                let e = FileError { path: self.path.clone(), problem };
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Membership, NodeId};

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta { index: LogIndex(index), term: Term(term), membership: Membership::new([NodeId(1)]).unwrap() }
    }

    fn take(store: &SnapshotStore, index: u64, term: u64, data: &[u8]) {
        let mut w = store.create_taken(LogIndex(index)).unwrap();
        w.write_all(data).unwrap();
        w.seal(store, LogIndex(index), Term(term)).unwrap();
    }

    #[test]
    fn a_sealed_snapshot_reads_back_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        take(&store, 7, 2, b"state at seven");
        assert_eq!(store.check(LogIndex(7), Term(2)).unwrap().len, 14);
        let mut data = Vec::new();
        store.reader(&meta(7, 2)).unwrap().read_to_end(&mut data).unwrap();
        assert_eq!(data, b"state at seven");
    }

    #[test]
    fn a_flipped_byte_or_a_cut_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        take(&store, 7, 2, &[5u8; 1000]);
        let path = store.path(LogIndex(7), Term(2));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[500] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = store.check(LogIndex(7), Term(2)).unwrap_err();
        assert!(matches!(e.problem, SnapshotFileProblem::Checksum { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()));
        let mut data = Vec::new();
        let read = store.reader(&meta(7, 2)).unwrap().read_to_end(&mut data).unwrap_err();
        assert!(read.to_string().contains(&path.display().to_string()), "{read}");
        std::fs::write(&path, &bytes[..900]).unwrap();
        let e = store.check(LogIndex(7), Term(2)).unwrap_err();
        assert!(matches!(e.problem, SnapshotFileProblem::BadTrailer), "{e}");
    }

    #[test]
    fn start_removes_every_file_but_the_recorded_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        take(&store, 5, 1, b"old");
        take(&store, 9, 2, b"current");
        take(&store, 12, 2, b"orphan");
        std::fs::write(store.dir().join("incoming-20-3.part"), b"half").unwrap();
        let _abandoned = store.create_taken(LogIndex(30)).unwrap();
        std::mem::forget(_abandoned); // a crash: the temp file stays
        store.clean_and_check(Some(&meta(9, 2))).unwrap();
        let left: Vec<String> =
            std::fs::read_dir(store.dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, vec!["snap-9-2.snap".to_string()]);
    }

    #[test]
    fn a_dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let mut w = store.create_taken(LogIndex(3)).unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
