//! The format of each value the disk store writes: one version byte, a
//! CRC-32C of the body (little-endian), then the body encoded with postcard.
//!
//! The store file frames each record with its length (see
//! the `storage` module); this checksum catches a record damaged on disk
//! after it was written, or torn by a crash, so that it is reported (or
//! dropped, for a torn last write) and never used.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// The version byte of every record.
pub const RECORD_VERSION: u8 = 1;
const HEADER_BYTES: usize = 5;

/// Why a stored record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header.
    Short(usize),
    /// A version byte this build does not know.
    UnknownVersion(u8),
    /// The body's checksum does not match the header.
    Checksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the body as read.
        computed: u32,
    },
    /// The checksum matches but the body does not decode (a bug, or a
    /// record of another type under this key).
    Malformed,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short(n) => write!(f, "record of {n} bytes is shorter than its header"),
            RecordError::UnknownVersion(v) => write!(f, "record version {v} is unknown (expected {RECORD_VERSION})"),
            RecordError::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            RecordError::Malformed => write!(f, "record body does not decode"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Encodes `value` as a record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION, 0, 0, 0, 0];
    out = postcard::to_extend(value, out).expect("stored types always serialise");
    let crc = crc32c(&out[HEADER_BYTES..]);
    out[1..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record, checking version, checksum and that the body is
/// exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::Short(bytes.len()));
    }
    if bytes[0] != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(bytes[0]));
    }
    let stored = u32::from_le_bytes(bytes[1..HEADER_BYTES].try_into().expect("four bytes"));
    let body = &bytes[HEADER_BYTES..];
    let computed = crc32c(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        _ => Err(RecordError::Malformed),
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise with a
/// table built at compile time. Records are small, so this is plenty fast.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft_core::{Entry, HardState, NodeId, Term};

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The check value of CRC-32C for the ASCII digits 1..9 (RFC 3720).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    fn hard_state() -> impl Strategy<Value = HardState> {
        (any::<u64>(), proptest::option::of(any::<u64>()))
            .prop_map(|(t, v)| HardState { term: Term(t), voted_for: v.map(NodeId) })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Entry>(&bytes);
            let _ = decode::<HardState>(&bytes);
        }

        #[test]
        fn encode_then_decode_is_identity(e in crate::wire::tests::entry(), h in hard_state()) {
            prop_assert_eq!(decode::<Entry>(&encode(&e)), Ok(e));
            prop_assert_eq!(decode::<HardState>(&encode(&h)), Ok(h));
        }

        #[test]
        fn any_flipped_bit_is_detected(e in crate::wire::tests::entry(), bit in any::<prop::sample::Index>()) {
            let mut bytes = encode(&e);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode::<Entry>(&bytes).is_err());
        }
    }
}
