//! The wire format between nodes.
//!
//! A connection carries frames. Each frame is a 4-byte big-endian length and
//! then that many bytes of body; the body is one version byte
//! ([`WIRE_VERSION`]) followed by a [`Frame`] encoded with postcard. The
//! length is checked against a limit before any body byte is read or any
//! memory is reserved for it, so a peer cannot make a node allocate more than
//! the limit. The first frame on a connection is a [`Hello`] naming the
//! cluster and both ends; every later frame is a [`Frame::Message`], except
//! on a snapshot transfer's connection (below).
//!
//! ## Snapshot transfers
//!
//! A leader sends a snapshot's data on a connection of its own, so that a
//! large transfer never delays the heartbeats on the message connection.
//! After the handshake the sender sends [`Frame::SnapshotOffer`] (the
//! `InstallSnapshot` message, the data's length and CRC-32); the receiver
//! answers [`Frame::SnapshotAccept`] with the offset to start from (0, or
//! how much it kept of an earlier broken transfer of the same snapshot, or
//! the whole length when it holds the file already) or
//! [`Frame::SnapshotRefused`]; the sender streams [`Frame::SnapshotChunk`]s
//! of at most [`SNAPSHOT_CHUNK_BYTES_MAX`] bytes, each with its offset and
//! its own CRC-32; the receiver answers [`Frame::SnapshotDone`] once the
//! file is durably installed (or with the reason it failed). Chunk frames
//! are allowed up to [`SNAPSHOT_FRAME_BYTES_MAX`] only on such a connection,
//! after its offer.
//!
//! Decoding is total: any byte string gives a frame or a [`FrameError`],
//! never a panic (property-tested below).

use raft_core::{InstallSnapshot, Message, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version byte at the start of every frame body. A node refuses
/// frames of any other version rather than guess at their meaning.
/// Version 2: forwarded proposals' and reads' results carry the refusal's
/// reason (`Result` where version 1 had `Option`). Version 3: raft-core's
/// snapshot messages (`InstallSnapshot`) and the snapshot transfer frames.
pub const WIRE_VERSION: u8 = 3;

/// Most data bytes in one [`SnapshotChunk`]: big enough that a transfer
/// costs few frames and system calls, small enough that either side holds
/// only a few of them in memory (the sender reads one chunk from the file at
/// a time, the receiver writes one at a time).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;

/// The largest frame body on a snapshot transfer's connection: one chunk and
/// its header.
pub const SNAPSHOT_FRAME_BYTES_MAX: usize = SNAPSHOT_CHUNK_BYTES_MAX + 64;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The most body bytes a [`Hello`] frame takes: the version byte, the
/// variant tag and three u64 varints of at most 10 bytes each (32 in all),
/// with room to spare. A connection's first frame is refused past it, so an
/// unauthenticated peer is never read more than this before its handshake
/// passes.
pub const HELLO_BYTES_MAX: usize = 64;

/// The first frame each side of a connection sends: who it is, who it
/// thinks it is talking to, and which cluster it belongs to. Two clusters
/// on the same ports never mix because their cluster ids differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster both ends must belong to.
    pub cluster_id: u64,
    /// The sender.
    pub from: NodeId,
    /// The node the sender means to reach.
    pub to: NodeId,
}

/// One frame on a node-to-node connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The handshake; only as the first frame of a connection.
    Hello(Hello),
    /// A Raft message from the connection's sender.
    Message(Message),
    /// Sender to receiver, first after the handshake: a snapshot transfer.
    SnapshotOffer(SnapshotOffer),
    /// Receiver to sender: where to start (see the module documentation).
    SnapshotAccept {
        /// The first data byte to send.
        offset: u64,
    },
    /// Receiver to sender: it will not take this transfer now.
    SnapshotRefused(TransferRefusal),
    /// Sender to receiver: the next piece of the data.
    SnapshotChunk(SnapshotChunk),
    /// Receiver to sender: the snapshot is installed, or why not.
    SnapshotDone(Result<(), TransferRefusal>),
}

/// The start of a snapshot transfer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOffer {
    /// The message the receiver hands its raft-core once the data is
    /// installed; its metadata names the snapshot.
    pub message: InstallSnapshot,
    /// Bytes of data.
    pub len: u64,
    /// CRC-32 (IEEE) of the whole data.
    pub crc: u32,
}

impl fmt::Debug for SnapshotOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        write!(f, "SnapshotOffer(term {}, {:?}, {} bytes, crc {:#010x})", m.term, m.snapshot, self.len, self.crc)
    }
}

/// A piece of a snapshot's data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The offset of its first byte in the data.
    pub offset: u64,
    /// CRC-32 (IEEE) of `data`.
    pub crc: u32,
    /// The bytes.
    pub data: Bytes,
}

impl fmt::Debug for SnapshotChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotChunk({} bytes at {}, crc {:#010x})", self.data.0.len(), self.offset, self.crc)
    }
}

/// Why a receiver refused or failed a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferRefusal {
    /// It is receiving another snapshot.
    Busy,
    /// A chunk's offset, length or checksum was wrong, or the whole data's
    /// checksum was.
    BadData,
    /// Writing or installing the file failed on the receiver.
    Storage,
}

/// Bytes encoded as one length and the raw bytes (postcard's byte string),
/// not as a sequence of numbers: a chunk is copied, not walked byte by byte.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// Why a frame was refused. Every variant is the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more bytes than the limit allows.
    TooLarge {
        /// The announced body length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is empty, so it has no version byte.
    Empty,
    /// The version byte is not one this node speaks.
    UnknownVersion(u8),
    /// The body does not decode as a frame of this version.
    Malformed,
    /// The body decodes but has bytes left over after the frame.
    TrailingBytes(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, limit } => write!(f, "frame of {len} bytes is over the {limit}-byte limit"),
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::UnknownVersion(v) => write!(f, "unknown wire version {v} (this node speaks {WIRE_VERSION})"),
            FrameError::Malformed => write!(f, "frame body does not decode"),
            FrameError::TrailingBytes(n) => write!(f, "{n} stray bytes after the frame"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one frame (prefix and body) to `buf`. Returns the body length,
/// or the error for a frame over `limit` (then `buf` is left as it was).
pub fn encode_frame(frame: &Frame, buf: &mut Vec<u8>, limit: usize) -> Result<usize, FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    buf.push(WIRE_VERSION);
    // Serialising into a Vec cannot fail for these types (no maps with
    // non-string keys, no unsized sequences); a failure would be our bug.
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(frame, taken).expect("every Frame serialises");
    let len = buf.len() - start - LENGTH_PREFIX_BYTES;
    if len > limit {
        buf.truncate(start);
        return Err(FrameError::TooLarge { len, limit });
    }
    buf[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(len)
}

/// Decodes one frame body (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let (&version, rest) = body.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnknownVersion(version));
    }
    let (frame, left) = postcard::take_from_bytes::<Frame>(rest).map_err(|_| FrameError::Malformed)?;
    if !left.is_empty() {
        return Err(FrameError::TrailingBytes(left.len()));
    }
    Ok(frame)
}

/// Looks for one whole frame at the start of `buf`. `Ok(None)`: more bytes
/// are needed. `Ok(Some((frame, used)))`: a frame and the bytes it took.
/// The length is checked against `limit` as soon as the prefix is complete.
pub fn split_frame(buf: &[u8], limit: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else { return Ok(None) };
    let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let Some(body) = buf.get(LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len) else { return Ok(None) };
    Ok(Some((decode_body(body)?, LENGTH_PREFIX_BYTES + len)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft_core::{
        AppendEntries, AppendEntriesResponse, AppendResult, Entry, Forward, ForwardResponse, LeadershipCheck,
        LeadershipCheckResponse, LogIndex, Payload, ProposalId, ReadId, ReadIndexRequest, ReadIndexResponse, Rejection,
        RequestVote, RequestVoteResponse, Term,
    };

    const LIMIT: usize = 1 << 16;

    fn term() -> impl Strategy<Value = Term> {
        any::<u64>().prop_map(Term)
    }
    fn index() -> impl Strategy<Value = LogIndex> {
        any::<u64>().prop_map(LogIndex)
    }
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }
    fn rejection() -> impl Strategy<Value = Rejection> {
        prop_oneof![
            Just(Rejection::QueueFull),
            Just(Rejection::TooLarge),
            proptest::option::of(any::<u64>().prop_map(NodeId))
                .prop_map(|leader_hint| Rejection::NotLeader { leader_hint }),
        ]
    }
    pub(crate) fn entry() -> impl Strategy<Value = Entry> {
        let payload = prop_oneof![Just(Payload::Noop), bytes().prop_map(Payload::Command)];
        (term(), payload).prop_map(|(term, payload)| Entry { term, payload })
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        let hint = proptest::option::of(any::<u64>().prop_map(NodeId));
        prop_oneof![
            (term(), index(), term(), any::<bool>()).prop_map(|(term, last_log_index, last_log_term, transfer)| {
                Message::RequestVote(RequestVote { term, last_log_index, last_log_term, transfer })
            }),
            (term(), index(), term()).prop_map(|(term, last_log_index, last_log_term)| {
                Message::PreVote(raft_core::PreVote { term, last_log_index, last_log_term })
            }),
            (term(), any::<bool>())
                .prop_map(|(term, granted)| { Message::PreVoteResponse(raft_core::PreVoteResponse { term, granted }) }),
            term().prop_map(|term| Message::TimeoutNow(raft_core::TimeoutNow { term })),
            (term(), any::<bool>())
                .prop_map(|(term, granted)| Message::RequestVoteResponse(RequestVoteResponse { term, granted })),
            (term(), index(), term(), proptest::collection::vec(entry(), 0..8), index()).prop_map(
                |(term, prev_log_index, prev_log_term, entries, leader_commit)| {
                    Message::AppendEntries(AppendEntries {
                        term,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                    })
                }
            ),
            (term(), index()).prop_map(|(term, match_index)| {
                Message::AppendEntriesResponse(AppendEntriesResponse {
                    term,
                    result: AppendResult::Success { match_index },
                })
            }),
            (term(), index(), index(), proptest::option::of((term(), index()))).prop_map(
                |(term, rejected_index, last_index, conflict)| {
                    Message::AppendEntriesResponse(AppendEntriesResponse {
                        term,
                        result: AppendResult::Conflict { rejected_index, last_index, conflict },
                    })
                }
            ),
            (term(), proptest::collection::vec((any::<u64>().prop_map(ProposalId), bytes()), 0..8))
                .prop_map(|(term, proposals)| Message::Forward(Forward { term, proposals })),
            (
                term(),
                hint,
                proptest::collection::vec(
                    (
                        any::<u64>().prop_map(ProposalId),
                        prop_oneof![(term(), index()).prop_map(Ok), rejection().prop_map(Err)]
                    ),
                    0..8
                )
            )
                .prop_map(|(term, leader_hint, results)| {
                    Message::ForwardResponse(ForwardResponse { term, leader_hint, results })
                }),
            (term(), any::<u64>()).prop_map(|(term, round)| Message::LeadershipCheck(LeadershipCheck { term, round })),
            (term(), any::<u64>()).prop_map(|(term, round)| {
                Message::LeadershipCheckResponse(LeadershipCheckResponse { term, round })
            }),
            (term(), proptest::collection::vec(any::<u64>().prop_map(ReadId), 0..8))
                .prop_map(|(term, ids)| Message::ReadIndexRequest(ReadIndexRequest { term, ids })),
            (
                term(),
                proptest::option::of(any::<u64>().prop_map(NodeId)),
                proptest::collection::vec(
                    (any::<u64>().prop_map(ReadId), prop_oneof![index().prop_map(Ok), rejection().prop_map(Err)]),
                    0..8
                )
            )
                .prop_map(|(term, leader_hint, results)| {
                    Message::ReadIndexResponse(ReadIndexResponse { term, leader_hint, results })
                }),
            install().prop_map(|(term, snapshot)| Message::InstallSnapshot(InstallSnapshot { term, snapshot })),
        ]
    }

    /// An InstallSnapshot's term and metadata (raft-core's `InstallSnapshot`
    /// has no `Debug`, which proptest needs of a strategy's values).
    fn install() -> impl Strategy<Value = (Term, raft_core::SnapshotMeta)> {
        let voters = proptest::collection::btree_set(any::<u64>().prop_map(NodeId), 1..5);
        (term(), index(), term(), voters).prop_map(|(term, index, snapshot_term, voters)| {
            let membership = raft_core::Membership::new(voters).expect("one voter at least");
            (term, raft_core::SnapshotMeta { index, term: snapshot_term, membership })
        })
    }

    fn refusal() -> impl Strategy<Value = TransferRefusal> {
        prop_oneof![Just(TransferRefusal::Busy), Just(TransferRefusal::BadData), Just(TransferRefusal::Storage)]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let hello = (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(c, f, t)| Frame::Hello(Hello { cluster_id: c, from: NodeId(f), to: NodeId(t) }));
        prop_oneof![
            hello,
            message().prop_map(Frame::Message),
            (install(), any::<u64>(), any::<u32>()).prop_map(|((term, snapshot), len, crc)| {
                Frame::SnapshotOffer(SnapshotOffer { message: InstallSnapshot { term, snapshot }, len, crc })
            }),
            any::<u64>().prop_map(|offset| Frame::SnapshotAccept { offset }),
            refusal().prop_map(Frame::SnapshotRefused),
            (any::<u64>(), any::<u32>(), bytes()).prop_map(|(offset, crc, data)| Frame::SnapshotChunk(SnapshotChunk {
                offset,
                crc,
                data: Bytes(data)
            })),
            proptest::option::of(refusal()).prop_map(|r| Frame::SnapshotDone(r.map_or(Ok(()), Err))),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_body(&bytes);
            let _ = split_frame(&bytes, LIMIT);
            // With a valid version byte in front, the postcard decoder itself
            // sees the arbitrary bytes.
            let mut versioned = vec![WIRE_VERSION];
            versioned.extend_from_slice(&bytes);
            let _ = decode_body(&versioned);
        }

        #[test]
        fn encode_then_decode_is_identity(frames in proptest::collection::vec(frame(), 1..6)) {
            let mut buf = Vec::new();
            for f in &frames {
                encode_frame(f, &mut buf, LIMIT).unwrap();
            }
            let mut rest = &buf[..];
            for f in &frames {
                let (decoded, used) = split_frame(rest, LIMIT).unwrap().expect("a whole frame");
                prop_assert_eq!(&decoded, f);
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn a_cut_frame_asks_for_more(f in frame(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode_frame(&f, &mut buf, LIMIT).unwrap();
            let cut = cut.index(buf.len());
            prop_assert_eq!(split_frame(&buf[..cut], LIMIT), Ok(None));
        }
    }

    #[test]
    fn a_full_chunk_fits_its_frame_limit_and_is_encoded_as_raw_bytes() {
        let data = vec![0xabu8; SNAPSHOT_CHUNK_BYTES_MAX];
        let chunk = Frame::SnapshotChunk(SnapshotChunk { offset: u64::MAX, crc: u32::MAX, data: Bytes(data.clone()) });
        let mut buf = Vec::new();
        let body = encode_frame(&chunk, &mut buf, SNAPSHOT_FRAME_BYTES_MAX).unwrap();
        // The bytes are one run: a length, then the data as is.
        assert!(body <= SNAPSHOT_CHUNK_BYTES_MAX + 32, "{body}");
        assert!(buf.windows(data.len()).any(|w| w == data.as_slice()));
        assert_eq!(split_frame(&buf, SNAPSHOT_FRAME_BYTES_MAX).unwrap().map(|(f, _)| f), Some(chunk));
    }

    #[test]
    fn the_largest_hello_fits_the_handshake_limit() {
        let hello = Frame::Hello(Hello { cluster_id: u64::MAX, from: NodeId(u64::MAX), to: NodeId(u64::MAX) });
        let mut buf = Vec::new();
        let body = encode_frame(&hello, &mut buf, HELLO_BYTES_MAX).unwrap();
        assert!(body <= 32, "{body}");
        assert_eq!(split_frame(&buf, HELLO_BYTES_MAX).unwrap().map(|(f, _)| f), Some(hello));
    }

    #[test]
    fn oversized_frames_are_refused_before_reading_the_body() {
        let prefix = u32::MAX.to_be_bytes();
        assert_eq!(split_frame(&prefix, LIMIT), Err(FrameError::TooLarge { len: u32::MAX as usize, limit: LIMIT }));
        let big =
            Frame::Message(Message::Forward(Forward { term: Term(1), proposals: vec![(ProposalId(1), vec![0; 100])] }));
        let mut buf = vec![7];
        assert!(matches!(encode_frame(&big, &mut buf, 50), Err(FrameError::TooLarge { .. })));
        assert_eq!(buf, vec![7], "a refused frame leaves the buffer as it was");
    }

    #[test]
    fn wrong_version_and_trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        let hello = Frame::Hello(Hello { cluster_id: 9, from: NodeId(1), to: NodeId(2) });
        encode_frame(&hello, &mut buf, LIMIT).unwrap();
        let mut body = buf[LENGTH_PREFIX_BYTES..].to_vec();
        body[0] = WIRE_VERSION + 1;
        assert_eq!(decode_body(&body), Err(FrameError::UnknownVersion(WIRE_VERSION + 1)));
        body[0] = WIRE_VERSION;
        body.push(0);
        assert_eq!(decode_body(&body), Err(FrameError::TrailingBytes(1)));
        assert_eq!(decode_body(&[]), Err(FrameError::Empty));
    }
}
