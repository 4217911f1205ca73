//! The snapshot format of the raft-kv state machine: the map, the table of
//! client sessions (so that a retry that arrives after a restore is still
//! applied once) and the last index applied.
//!
//! A snapshot is a stream, written and read in frames, so neither side holds
//! more than one frame of it in memory beyond the machine itself:
//!
//! ```text
//! magic "RAFTKVSN" | version (1 byte) | frame*
//! frame = body length (u32 LE) | CRC-32C of the body (u32 LE) | body
//! body  = kind (1 byte) | items, each postcard-encoded
//! ```
//!
//! The frames come in this order: one `HEADER` (the applied index), any
//! number of `SESSIONS` (session records, clients in ascending order), any
//! number of `KEYS` (key-value pairs, keys in ascending order), one `END`
//! (how many sessions and keys came before). Nothing may follow `END`.
//! Every check the reader makes answers a broken snapshot (truncated,
//! damaged, foreign, out of order) with a [`RestoreError`], never a panic.

use super::machine::{KvMachine, Outcome, SESSIONS_MAX};
use crate::record::crc32c;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

/// The first bytes of every raft-kv snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"RAFTKVSN";
/// The format version written after the magic.
pub const SNAPSHOT_VERSION: u8 = 1;
/// A frame is flushed once its body reaches this many bytes. One frame is
/// all a reader or writer buffers; a quarter of a MiB keeps the checksums
/// and length headers negligible.
const FRAME_BYTES_TARGET: usize = 256 * 1024;
/// The largest body a reader accepts: the target plus one item of the
/// largest key and value, with room to spare. A larger length is damage,
/// and refusing it keeps a garbage length from allocating gigabytes.
pub const FRAME_BYTES_MAX: usize = 1024 * 1024;

const KIND_HEADER: u8 = 1;
const KIND_SESSIONS: u8 = 2;
const KIND_KEYS: u8 = 3;
const KIND_END: u8 = 4;

/// Why a snapshot could not be read. Every variant but `Io` means the bytes
/// are not a whole, well-formed raft-kv snapshot of a known version.
#[derive(Debug)]
pub enum RestoreError {
    /// Reading the underlying stream failed.
    Io(io::Error),
    /// The stream does not begin with [`SNAPSHOT_MAGIC`].
    NotASnapshot,
    /// A format version this build does not know.
    Version(u8),
    /// The stream ended before the `END` frame.
    Truncated,
    /// A frame's length is over [`FRAME_BYTES_MAX`], or zero.
    FrameLength(u32),
    /// A frame's body does not match its checksum.
    Checksum {
        /// The checksum in the frame's header.
        stored: u32,
        /// The checksum of the body as read.
        computed: u32,
    },
    /// A frame passed its checksum but its content is wrong: an unknown
    /// kind, an item that does not decode, frames or keys out of order, a
    /// count that does not match, bytes after the end. The text says which.
    Malformed(&'static str),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Io(e) => write!(f, "cannot read the snapshot: {e}"),
            RestoreError::NotASnapshot => write!(f, "not a raft-kv snapshot (wrong magic bytes)"),
            RestoreError::Version(v) => {
                write!(f, "raft-kv snapshot version {v} is unknown (this build reads {SNAPSHOT_VERSION})")
            }
            RestoreError::Truncated => write!(f, "the snapshot is truncated"),
            RestoreError::FrameLength(n) => write!(f, "a snapshot frame claims {n} bytes (at most {FRAME_BYTES_MAX})"),
            RestoreError::Checksum { stored, computed } => {
                write!(f, "snapshot frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            RestoreError::Malformed(what) => write!(f, "malformed snapshot: {what}"),
        }
    }
}

impl std::error::Error for RestoreError {}

impl From<io::Error> for RestoreError {
    fn from(e: io::Error) -> RestoreError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            RestoreError::Truncated
        } else {
            RestoreError::Io(e)
        }
    }
}

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The last log index the machine had applied.
    pub applied: u64,
    /// Keys in the map.
    pub keys: u64,
    /// Client sessions remembered.
    pub sessions: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// One client's session as stored: the fields of the machine's table.
#[derive(Serialize, serde::Deserialize)]
struct SessionRecord {
    client: u64,
    seq: u64,
    outcome: Outcome,
    at: u64,
}

/// Writes frames of one kind, flushing each when it reaches the target.
struct FrameWriter<W: Write> {
    out: W,
    body: Vec<u8>,
    bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    fn new(out: W) -> FrameWriter<W> {
        FrameWriter { out, body: Vec::with_capacity(FRAME_BYTES_TARGET + 1024), bytes: 0 }
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Appends an item to the current frame of `kind`, starting one if none
    /// is open.
    fn item<T: Serialize + ?Sized>(&mut self, kind: u8, item: &T) -> io::Result<()> {
        if self.body.is_empty() {
            self.body.push(kind);
        }
        debug_assert_eq!(self.body[0], kind, "a frame holds one kind of item");
        let body = std::mem::take(&mut self.body);
        self.body = postcard::to_extend(item, body).expect("snapshot items always encode");
        if self.body.len() >= FRAME_BYTES_TARGET {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> io::Result<()> {
        if self.body.is_empty() {
            return Ok(());
        }
        assert!(self.body.len() <= FRAME_BYTES_MAX, "one item is far below the frame limit");
        let header = [(self.body.len() as u32).to_le_bytes(), crc32c(&self.body).to_le_bytes()].concat();
        self.raw(&header)?;
        let body = std::mem::take(&mut self.body);
        self.raw(&body)?;
        self.body = body;
        self.body.clear();
        Ok(())
    }
}

/// Writes `machine` as a snapshot to `out`, frame by frame (see the module
/// documentation), and flushes `out`. The caller makes it durable.
pub fn write_snapshot<W: Write>(machine: &KvMachine, out: W) -> io::Result<SnapshotSummary> {
    let mut w = FrameWriter::new(out);
    w.raw(SNAPSHOT_MAGIC)?;
    w.raw(&[SNAPSHOT_VERSION])?;
    w.item(KIND_HEADER, &machine.applied())?;
    w.flush_frame()?;
    let mut sessions = 0u64;
    for (client, seq, outcome, at) in machine.sessions() {
        // Borrowing the outcome would need a second record type; outcomes
        // are small (a NotSwapped value is at most one value).
        w.item(KIND_SESSIONS, &SessionRecord { client, seq, outcome: outcome.clone(), at })?;
        sessions += 1;
    }
    w.flush_frame()?;
    let mut keys = 0u64;
    for (key, value) in machine.entries() {
        w.item(KIND_KEYS, &(key, value))?;
        keys += 1;
    }
    w.flush_frame()?;
    w.item(KIND_END, &(sessions, keys))?;
    w.flush_frame()?;
    w.out.flush()?;
    Ok(SnapshotSummary { applied: machine.applied(), keys, sessions, bytes: w.bytes })
}

/// Reads frames and hands out their kind and items.
struct FrameReader<R: Read> {
    input: R,
    body: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// The next frame's kind, its body kept for [`Self::items`]; `None` at a
    /// clean end of the stream (between frames).
    fn next(&mut self) -> Result<Option<u8>, RestoreError> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match self.input.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(RestoreError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("four bytes"));
        let stored = u32::from_le_bytes(header[4..].try_into().expect("four bytes"));
        if len == 0 || len as usize > FRAME_BYTES_MAX {
            return Err(RestoreError::FrameLength(len));
        }
        self.body.resize(len as usize, 0);
        self.input.read_exact(&mut self.body)?;
        let computed = crc32c(&self.body);
        if computed != stored {
            return Err(RestoreError::Checksum { stored, computed });
        }
        Ok(Some(self.body[0]))
    }

    /// Decodes every item of the current frame, in order, into `each`.
    fn items<T: DeserializeOwned>(
        &self,
        mut each: impl FnMut(T) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let mut rest = &self.body[1..];
        while !rest.is_empty() {
            let (item, after) =
                postcard::take_from_bytes::<T>(rest).map_err(|_| RestoreError::Malformed("an item does not decode"))?;
            each(item)?;
            rest = after;
        }
        Ok(())
    }

    /// The single item of the current frame.
    fn only<T: DeserializeOwned>(&self) -> Result<T, RestoreError> {
        let mut found = None;
        self.items(|item: T| match found.replace(item) {
            None => Ok(()),
            Some(_) => Err(RestoreError::Malformed("a frame that holds one item holds more")),
        })?;
        found.ok_or(RestoreError::Malformed("a frame that holds one item is empty"))
    }
}

/// Reads a snapshot written by [`write_snapshot`] into a new machine. The
/// whole stream is read; anything broken is an error (see
/// [`RestoreError`]), never a panic.
pub fn read_snapshot<R: Read>(mut input: R) -> Result<KvMachine, RestoreError> {
    let mut magic = [0u8; 9];
    input.read_exact(&mut magic).map_err(|e| match RestoreError::from(e) {
        // A stream too short for the magic is no snapshot at all.
        RestoreError::Truncated => RestoreError::NotASnapshot,
        other => other,
    })?;
    if &magic[..8] != SNAPSHOT_MAGIC {
        return Err(RestoreError::NotASnapshot);
    }
    if magic[8] != SNAPSHOT_VERSION {
        return Err(RestoreError::Version(magic[8]));
    }
    let mut frames = FrameReader { input, body: Vec::new() };
    match frames.next()? {
        Some(KIND_HEADER) => {}
        Some(_) => return Err(RestoreError::Malformed("the first frame is not the header")),
        None => return Err(RestoreError::Truncated),
    }
    let applied: u64 = frames.only()?;
    let machine = read_body(&mut frames, applied)?;
    let mut probe = [0u8; 1];
    loop {
        match frames.input.read(&mut probe) {
            Ok(0) => return Ok(machine),
            Ok(_) => return Err(RestoreError::Malformed("bytes after the end frame")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The frames after the header, through the end frame.
fn read_body<R: Read>(frames: &mut FrameReader<R>, applied: u64) -> Result<KvMachine, RestoreError> {
    let mut sessions: BTreeMap<u64, (u64, Outcome, u64)> = BTreeMap::new();
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // Sessions frames may come until the first keys frame, not after.
    let mut keys_begun = false;
    loop {
        match frames.next()? {
            None => return Err(RestoreError::Truncated),
            Some(KIND_SESSIONS) if !keys_begun => frames.items(|s: SessionRecord| {
                if sessions.last_key_value().is_some_and(|(&last, _)| last >= s.client) {
                    return Err(RestoreError::Malformed("session clients out of order"));
                }
                if sessions.len() >= SESSIONS_MAX || s.at > applied {
                    return Err(RestoreError::Malformed("a session beyond the table's bounds"));
                }
                sessions.insert(s.client, (s.seq, s.outcome, s.at));
                Ok(())
            })?,
            Some(KIND_SESSIONS) => return Err(RestoreError::Malformed("sessions after keys")),
            Some(KIND_KEYS) => {
                keys_begun = true;
                frames.items(|(key, value): (Vec<u8>, Vec<u8>)| {
                    if map.last_key_value().is_some_and(|(last, _)| *last >= key) {
                        return Err(RestoreError::Malformed("keys out of order"));
                    }
                    map.insert(key, value);
                    Ok(())
                })?
            }
            Some(KIND_END) => {
                let (s, k): (u64, u64) = frames.only()?;
                if s != sessions.len() as u64 || k != map.len() as u64 {
                    return Err(RestoreError::Malformed("the end frame's counts do not match"));
                }
                return Ok(KvMachine::from_parts(map, sessions, applied));
            }
            Some(_) => return Err(RestoreError::Malformed("an unknown or repeated frame kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::machine::{Command, Op, NO_SESSION};
    use proptest::prelude::*;

    fn put(client: u64, seq: u64, k: &[u8], v: &[u8]) -> Vec<u8> {
        Command { client, seq, op: Op::Put { key: k.to_vec(), value: v.to_vec() } }.encode()
    }

    fn cas(client: u64, seq: u64, k: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Vec<u8> {
        let op = Op::Cas { key: k.to_vec(), expected: expected.map(<[u8]>::to_vec), new: new.map(<[u8]>::to_vec) };
        Command { client, seq, op }.encode()
    }

    fn snapshot(m: &KvMachine) -> Vec<u8> {
        let mut out = Vec::new();
        write_snapshot(m, &mut out).unwrap();
        out
    }

    /// Puts, a delete, swapped and refused compare-and-sets, sessions of
    /// every outcome and a write outside any session.
    fn a_machine() -> KvMachine {
        let mut m = KvMachine::new();
        m.apply(1, &put(7, 1, b"a", b"1")).unwrap();
        m.apply(2, &put(8, 1, b"b", b"2")).unwrap();
        m.apply(3, &cas(9, 4, b"a", Some(b"1"), Some(b"3"))).unwrap();
        m.apply(4, &cas(10, 1, b"a", Some(b"0"), None)).unwrap();
        m.apply(5, &cas(11, 1, b"c", Some(b"0"), None)).unwrap();
        m.apply(6, &put(NO_SESSION, 99, b"d", &[0, 255, 10])).unwrap();
        m.apply(7, &Command { client: 8, seq: 2, op: Op::Delete { key: b"b".to_vec() } }.encode()).unwrap();
        m.apply(9, &[42]).unwrap_err();
        m
    }

    #[test]
    fn restore_of_a_snapshot_is_the_machine() {
        let m = a_machine();
        assert_eq!(m.sessions().count(), 5);
        let restored = read_snapshot(snapshot(&m).as_slice()).unwrap();
        assert_eq!(restored, m);
        assert_eq!(restored.applied(), 9);
        let empty = KvMachine::new();
        assert_eq!(read_snapshot(snapshot(&empty).as_slice()).unwrap(), empty);
    }

    #[test]
    fn a_retry_after_restore_is_applied_once() {
        let mut m = read_snapshot(snapshot(&a_machine()).as_slice()).unwrap();
        // Client 7's first put is retried after client 9's CAS changed "a":
        // applying it again would undo that change.
        assert_eq!(m.apply(10, &put(7, 1, b"a", b"1")).unwrap().2, Outcome::Written);
        assert_eq!(m.get(b"a"), Some(&b"3".to_vec()));
        // A retried CAS answers with its first outcome, swapped or not.
        let again = m.apply(11, &cas(9, 4, b"a", Some(b"1"), Some(b"3"))).unwrap();
        assert_eq!(again.2, Outcome::Swapped);
        let again = m.apply(12, &cas(10, 1, b"a", Some(b"0"), None)).unwrap();
        assert_eq!(again.2, Outcome::NotSwapped(Some(b"3".to_vec())), "the value it saw then");
        // A new request of a known client is applied.
        m.apply(13, &put(7, 2, b"a", b"4")).unwrap();
        assert_eq!(m.get(b"a"), Some(&b"4".to_vec()));
    }

    #[test]
    fn a_large_map_is_written_in_many_bounded_frames() {
        let mut m = KvMachine::new();
        let value = vec![7u8; 1000];
        for i in 0..3000u64 {
            m.apply(i + 1, &put(i % 50 + 1, i + 1, format!("key-{i:05}").as_bytes(), &value)).unwrap();
        }
        let bytes = snapshot(&m);
        assert!(bytes.len() > 3_000_000, "{} bytes", bytes.len());
        let frames = frame_lengths(&bytes);
        assert!(frames.len() >= 12, "{} frames", frames.len());
        assert!(frames.iter().all(|&n| n <= FRAME_BYTES_TARGET + 2048), "{frames:?}");
        assert_eq!(read_snapshot(bytes.as_slice()).unwrap(), m);
    }

    /// The body length of every frame in a snapshot.
    fn frame_lengths(bytes: &[u8]) -> Vec<usize> {
        let mut at = SNAPSHOT_MAGIC.len() + 1;
        let mut lengths = Vec::new();
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            lengths.push(len);
            at += 8 + len;
        }
        lengths
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = snapshot(&a_machine());
        for len in 0..bytes.len() {
            let e = read_snapshot(&bytes[..len]).unwrap_err();
            match e {
                RestoreError::NotASnapshot if len < 9 => {}
                RestoreError::Truncated => {}
                other => panic!("a snapshot cut at {len} of {} bytes gave {other:?}", bytes.len()),
            }
        }
    }

    #[test]
    fn every_flipped_bit_is_an_error() {
        let bytes = snapshot(&a_machine());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(read_snapshot(damaged.as_slice()).is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn foreign_versions_and_trailing_bytes_are_refused() {
        let bytes = snapshot(&a_machine());
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(matches!(read_snapshot(v2.as_slice()), Err(RestoreError::Version(2))));
        assert!(matches!(read_snapshot(&b"{\"a\": 1}\n"[..]), Err(RestoreError::NotASnapshot)));
        for extra in [&[0u8][..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] {
            let mut longer = bytes.clone();
            longer.extend_from_slice(extra);
            assert!(matches!(read_snapshot(longer.as_slice()), Err(RestoreError::Malformed(_))));
        }
        let mut huge = bytes[..9].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(matches!(read_snapshot(huge.as_slice()), Err(RestoreError::FrameLength(u32::MAX))));
    }

    /// A frame's kind and its items, encoded.
    type Frame = (u8, Vec<u8>);

    /// A stream of frames, each with a good checksum, for the content checks.
    fn framed(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out);
        w.raw(SNAPSHOT_MAGIC).unwrap();
        w.raw(&[SNAPSHOT_VERSION]).unwrap();
        for (kind, items) in frames {
            w.body.push(*kind);
            w.body.extend_from_slice(items);
            w.flush_frame().unwrap();
        }
        out
    }

    fn enc<T: Serialize>(items: &[T]) -> Vec<u8> {
        items.iter().flat_map(|i| postcard::to_stdvec(i).unwrap()).collect()
    }

    #[test]
    fn well_checksummed_nonsense_is_refused() {
        let header = (KIND_HEADER, enc(&[5u64]));
        let keys =
            |ks: &[&str]| (KIND_KEYS, enc(&ks.iter().map(|k| (k.as_bytes(), b"v".as_slice())).collect::<Vec<_>>()));
        let end = |s: u64, k: u64| (KIND_END, enc(&[(s, k)]));
        let session = |client: u64, at: u64| SessionRecord { client, seq: 1, outcome: Outcome::Written, at };
        let good = framed(&[header.clone(), keys(&["a", "b"]), end(0, 2)]);
        assert_eq!(read_snapshot(good.as_slice()).unwrap().len(), 2);
        let cases: Vec<(&str, Vec<Frame>)> = vec![
            ("no header", vec![keys(&["a"]), end(0, 1)]),
            ("keys out of order", vec![header.clone(), keys(&["b", "a"]), end(0, 2)]),
            ("a repeated key across frames", vec![header.clone(), keys(&["a"]), keys(&["a"]), end(0, 2)]),
            ("wrong counts", vec![header.clone(), keys(&["a"]), end(0, 2)]),
            (
                "sessions after keys",
                vec![header.clone(), keys(&["a"]), (KIND_SESSIONS, enc(&[session(1, 1)])), end(1, 1)],
            ),
            (
                "clients out of order",
                vec![header.clone(), (KIND_SESSIONS, enc(&[session(2, 1), session(1, 1)])), end(2, 0)],
            ),
            (
                "a session applied after the snapshot",
                vec![header.clone(), (KIND_SESSIONS, enc(&[session(1, 6)])), end(1, 0)],
            ),
            ("an unknown kind", vec![header.clone(), (9, Vec::new()), end(0, 0)]),
            ("two headers", vec![header.clone(), header.clone(), end(0, 0)]),
            ("an item cut short", vec![header.clone(), (KIND_KEYS, vec![3, b'a']), end(0, 0)]),
            ("frames after the end", vec![header.clone(), end(0, 0), end(0, 0)]),
        ];
        for (what, frames) in cases {
            let e = read_snapshot(framed(&frames).as_slice()).unwrap_err();
            assert!(matches!(e, RestoreError::Malformed(_)), "{what}: {e:?}");
        }
    }

    fn command() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let value = proptest::option::of(prop::sample::select(vec![b"1".to_vec(), b"2".to_vec()]));
        (0u64..4, 1u64..4, key, value.clone(), value, 0u8..3).prop_map(|(client, seq, key, expected, new, kind)| {
            let op = match kind {
                0 => Op::Put { key, value: new.unwrap_or_default() },
                1 => Op::Delete { key },
                _ => Op::Cas { key, expected, new },
            };
            Command { client, seq, op }.encode()
        })
    }

    proptest! {
        /// Restoring at any point, then applying the same suffix (retries
        /// included), gives the same machine and the same answers.
        #[test]
        fn a_restored_machine_goes_on_as_the_original(
            before in proptest::collection::vec(command(), 0..40),
            after in proptest::collection::vec(command(), 0..40),
        ) {
            let mut m = KvMachine::new();
            for (i, c) in before.iter().enumerate() {
                m.apply(i as u64 + 1, c).unwrap();
            }
            let mut restored = read_snapshot(snapshot(&m).as_slice()).unwrap();
            prop_assert_eq!(&restored, &m);
            for (i, c) in after.iter().enumerate() {
                let index = (before.len() + i) as u64 + 1;
                prop_assert_eq!(restored.apply(index, c), m.apply(index, c));
            }
            prop_assert_eq!(restored, m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), keep_magic in any::<bool>()) {
            let mut bytes = bytes;
            if keep_magic && bytes.len() >= 9 {
                bytes[..8].copy_from_slice(SNAPSHOT_MAGIC);
                bytes[8] = SNAPSHOT_VERSION;
            }
            prop_assert!(read_snapshot(bytes.as_slice()).is_err());
        }
    }
}
