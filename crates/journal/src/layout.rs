//! The byte layouts the journal writes: the record header, the format marker and the checkpoint
//! header. Each is 128 bytes, little-endian, and encoded field by field rather than transmuted from
//! a `#[repr(C)]` struct: the layout is then the same on every target, and reading a header out of
//! a mapped file needs no `unsafe` and no alignment argument. `docs/journal.md` has the tables.

use tally_checksum::checksum;

use crate::error::Damage;

/// Every header (record, format marker, checkpoint) is this long.
pub const HEADER_SIZE_BYTES: u64 = 128;
/// Every record starts at a multiple of this, so recovery can look for headers at a fixed stride
/// and a header never straddles a page.
pub const RECORD_ALIGNMENT_BYTES: u64 = 128;

pub(crate) type HeaderBytes = [u8; HEADER_SIZE_BYTES as usize];

const _: () = assert!(RECORD_ALIGNMENT_BYTES == HEADER_SIZE_BYTES);
const _: () = assert!(RECORD_ALIGNMENT_BYTES.is_power_of_two());
const _: () = assert!(4096 % RECORD_ALIGNMENT_BYTES == 0);

/// A checksum covers the header after its own 16 bytes, as in TigerBeetle.
const CHECKSUM_COVERED_FROM: usize = 16;

/// The bytes one record occupies in its segment: header, body, zero padding to the alignment.
pub(crate) fn record_size_bytes(body_size: u32) -> u64 {
    let size = HEADER_SIZE_BYTES + u64::from(body_size);
    size.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES
}

pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    const ZERO: [u8; 4096] = [0; 4096];
    bytes
        .chunks(ZERO.len())
        .all(|chunk| chunk == &ZERO[..chunk.len()])
}

pub(crate) fn header_bytes(bytes: &[u8]) -> &HeaderBytes {
    bytes
        .first_chunk::<{ HEADER_SIZE_BYTES as usize }>()
        .expect("a header slice is at least 128 bytes")
}

fn seal(bytes: &mut HeaderBytes) -> u128 {
    let sum = checksum(&bytes[CHECKSUM_COVERED_FROM..]);
    write_u128(bytes, 0, sum);
    sum
}

fn checksum_verifies(bytes: &HeaderBytes) -> bool {
    read_u128(bytes, 0) == checksum(&bytes[CHECKSUM_COVERED_FROM..])
}

fn read_u128(bytes: &[u8], offset: usize) -> u128 {
    let mut field = [0u8; 16];
    field.copy_from_slice(&bytes[offset..offset + 16]);
    u128::from_le_bytes(field)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    let mut field = [0u8; 2];
    field.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(field)
}

fn write_u128(bytes: &mut [u8], offset: usize, value: u128) {
    bytes[offset..offset + 16].copy_from_slice(&value.to_le_bytes());
}

fn write_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

/// Byte offsets of the record header's fields.
mod record {
    pub(crate) const CHECKSUM_BODY: usize = 16;
    pub(crate) const PARENT: usize = 32;
    pub(crate) const OP: usize = 48;
    pub(crate) const OP_SYNCED: usize = 56;
    pub(crate) const TIMESTAMP: usize = 64;
    pub(crate) const BODY_SIZE: usize = 72;
    pub(crate) const KIND: usize = 76;
    pub(crate) const RESERVED: usize = 78;
}

/// The header in front of every record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// Checksum of header bytes [16, 128).
    pub checksum: u128,
    pub checksum_body: u128,
    /// The previous record's `checksum`; for op 1, the format marker's checksum.
    pub parent: u128,
    pub op: u64,
    /// The highest op whose sync had completed when this record was appended. Recovery uses it as
    /// proof that a damaged earlier record was durable (acknowledged), hence corrupt, not torn.
    pub op_synced: u64,
    pub timestamp: u64,
    pub body_size: u32,
    pub kind: u16,
}

impl RecordHeader {
    /// Encodes the header with its checksum; `self.checksum` is ignored and returned sealed.
    pub(crate) fn sealed(mut self) -> (RecordHeader, HeaderBytes) {
        assert!(self.op > 0);
        assert!(self.op_synced < self.op);
        assert!(self.kind != 0);
        let mut bytes = [0u8; HEADER_SIZE_BYTES as usize];
        write_u128(&mut bytes, record::CHECKSUM_BODY, self.checksum_body);
        write_u128(&mut bytes, record::PARENT, self.parent);
        write_u64(&mut bytes, record::OP, self.op);
        write_u64(&mut bytes, record::OP_SYNCED, self.op_synced);
        write_u64(&mut bytes, record::TIMESTAMP, self.timestamp);
        write_u32(&mut bytes, record::BODY_SIZE, self.body_size);
        write_u16(&mut bytes, record::KIND, self.kind);
        self.checksum = seal(&mut bytes);
        (self, bytes)
    }

    /// Reads the fields without judging them: only for bytes verified before.
    pub(crate) fn decode(bytes: &HeaderBytes) -> RecordHeader {
        RecordHeader {
            checksum: read_u128(bytes, 0),
            checksum_body: read_u128(bytes, record::CHECKSUM_BODY),
            parent: read_u128(bytes, record::PARENT),
            op: read_u64(bytes, record::OP),
            op_synced: read_u64(bytes, record::OP_SYNCED),
            timestamp: read_u64(bytes, record::TIMESTAMP),
            body_size: read_u32(bytes, record::BODY_SIZE),
            kind: read_u16(bytes, record::KIND),
        }
    }

    /// Checks everything a header can say about itself (not its place in the chain).
    pub(crate) fn verify(bytes: &HeaderBytes) -> Result<RecordHeader, Damage> {
        if is_zero(bytes) {
            return Err(Damage::HeaderZero);
        }
        if !checksum_verifies(bytes) {
            return Err(Damage::HeaderChecksum);
        }
        if !is_zero(&bytes[record::RESERVED..]) {
            return Err(Damage::HeaderInvalid {
                reason: "reserved bytes are not zero",
            });
        }
        let header = RecordHeader::decode(bytes);
        if header.op == 0 {
            return Err(Damage::HeaderInvalid { reason: "op is 0" });
        }
        if header.op_synced >= header.op {
            return Err(Damage::HeaderInvalid {
                reason: "op_synced is not below op",
            });
        }
        if header.kind == 0 {
            return Err(Damage::HeaderInvalid {
                reason: "kind is 0",
            });
        }
        Ok(header)
    }

    /// Whether a power loss could have left `bytes` in the slot where the header of `op` (with
    /// `parent`) was being written, given that the slot held zeros before (segments are
    /// preallocated with zeros and a cut zeroes what it removes, durably, before appending again).
    /// A power loss leaves each byte either zero or as written, never a byte the writer did not
    /// write. So the bytes are ruled out when: the checksum verifies (the header is whole, so
    /// anything wrong with it was sealed by no writer of this journal); a reserved byte is not
    /// zero; a byte of `op` or `parent` is neither zero nor the expected byte; or flipping one bit
    /// gives a valid header of `op` and `parent` while the flipped byte is not zero (a bit set, or a
    /// byte changed, that no write put there).
    pub(crate) fn could_be_torn(bytes: &HeaderBytes, op: u64, parent: u128) -> bool {
        if checksum_verifies(bytes) || !is_zero(&bytes[record::RESERVED..]) {
            return false;
        }
        let fields: [(usize, &[u8]); 2] = [
            (record::OP, &op.to_le_bytes()),
            (record::PARENT, &parent.to_le_bytes()),
        ];
        for (offset, expected) in fields {
            let found = &bytes[offset..offset + expected.len()];
            let foreign = found
                .iter()
                .zip(expected)
                .any(|(found, expected)| *found != 0 && found != expected);
            if foreign {
                return false;
            }
        }
        let mut flipped = *bytes;
        for bit in 0..HEADER_SIZE_BYTES as usize * 8 {
            let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
            flipped[byte] ^= mask;
            let rebuilt = RecordHeader::verify(&flipped)
                .is_ok_and(|header| header.op == op && header.parent == parent);
            flipped[byte] ^= mask;
            if rebuilt && bytes[byte] != 0 {
                return false;
            }
        }
        true
    }

    /// Reads only the op, for the cheap check that a caller's position names a real record.
    pub(crate) fn op_of(bytes: &HeaderBytes) -> u64 {
        read_u64(bytes, record::OP)
    }
}

/// Byte offsets of the format marker's fields.
mod format {
    pub(crate) const MAGIC: usize = 16;
    pub(crate) const CLUSTER: usize = 32;
    pub(crate) const SEGMENT_SIZE: usize = 48;
    pub(crate) const VERSION: usize = 56;
    pub(crate) const RESERVED: usize = 60;
}

const FORMAT_MAGIC: [u8; 16] = *b"tally-journal\0\0\0";
/// The format version this binary writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest format version this binary reads.
pub const FORMAT_VERSION_MIN: u32 = 1;

const _: () = assert!(FORMAT_VERSION_MIN <= FORMAT_VERSION);

fn format_version_readable(version: u32) -> bool {
    (FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version)
}

/// Why a format marker or checkpoint header was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    Invalid(&'static str),
    /// Intact, but of a format version this binary does not read.
    Version(u32),
}

/// The `DIR/format` file, written last at format time: its presence means format finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FormatMarker {
    /// Also the parent of op 1, which ties the chain to this cluster and format.
    pub checksum: u128,
    pub cluster: u128,
    pub segment_size_bytes: u64,
}

impl FormatMarker {
    pub(crate) fn sealed(cluster: u128, segment_size_bytes: u64) -> (FormatMarker, HeaderBytes) {
        assert!(segment_size_bytes % RECORD_ALIGNMENT_BYTES == 0);
        let mut bytes = [0u8; HEADER_SIZE_BYTES as usize];
        bytes[format::MAGIC..format::MAGIC + 16].copy_from_slice(&FORMAT_MAGIC);
        write_u128(&mut bytes, format::CLUSTER, cluster);
        write_u64(&mut bytes, format::SEGMENT_SIZE, segment_size_bytes);
        write_u32(&mut bytes, format::VERSION, FORMAT_VERSION);
        let checksum = seal(&mut bytes);
        (
            FormatMarker {
                checksum,
                cluster,
                segment_size_bytes,
            },
            bytes,
        )
    }

    pub(crate) fn verify(bytes: &[u8]) -> Result<FormatMarker, HeaderProblem> {
        if bytes.len() as u64 != HEADER_SIZE_BYTES {
            return Err(HeaderProblem::Invalid("the marker is not 128 bytes long"));
        }
        let bytes = header_bytes(bytes);
        if !checksum_verifies(bytes) {
            return Err(HeaderProblem::Invalid("checksum mismatch"));
        }
        if bytes[format::MAGIC..format::MAGIC + 16] != FORMAT_MAGIC {
            return Err(HeaderProblem::Invalid(
                "not a Tally journal (magic mismatch)",
            ));
        }
        let version = read_u32(bytes, format::VERSION);
        if !format_version_readable(version) {
            return Err(HeaderProblem::Version(version));
        }
        if !is_zero(&bytes[format::RESERVED..]) {
            return Err(HeaderProblem::Invalid("reserved bytes are not zero"));
        }
        Ok(FormatMarker {
            checksum: read_u128(bytes, 0),
            cluster: read_u128(bytes, format::CLUSTER),
            segment_size_bytes: read_u64(bytes, format::SEGMENT_SIZE),
        })
    }
}

/// Byte offsets of the checkpoint header's fields.
mod checkpoint {
    pub(crate) const CHECKSUM_STATE: usize = 16;
    pub(crate) const CHECKSUM_RECORD: usize = 32;
    pub(crate) const MAGIC: usize = 48;
    pub(crate) const CLUSTER: usize = 64;
    pub(crate) const OP: usize = 80;
    pub(crate) const STATE_SIZE: usize = 88;
    pub(crate) const VERSION: usize = 96;
    pub(crate) const RESERVED: usize = 100;
}

const CHECKPOINT_MAGIC: [u8; 16] = *b"tally-checkpoint";

/// The header in front of a checkpoint's state blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointHeader {
    pub checksum: u128,
    pub checksum_state: u128,
    /// The checksum of record `op` (the format marker's for op 0): ties the state to the chain.
    pub checksum_record: u128,
    pub cluster: u128,
    pub op: u64,
    pub state_size_bytes: u64,
}

impl CheckpointHeader {
    pub(crate) fn sealed(mut self) -> (CheckpointHeader, HeaderBytes) {
        let mut bytes = [0u8; HEADER_SIZE_BYTES as usize];
        write_u128(&mut bytes, checkpoint::CHECKSUM_STATE, self.checksum_state);
        write_u128(
            &mut bytes,
            checkpoint::CHECKSUM_RECORD,
            self.checksum_record,
        );
        bytes[checkpoint::MAGIC..checkpoint::MAGIC + 16].copy_from_slice(&CHECKPOINT_MAGIC);
        write_u128(&mut bytes, checkpoint::CLUSTER, self.cluster);
        write_u64(&mut bytes, checkpoint::OP, self.op);
        write_u64(&mut bytes, checkpoint::STATE_SIZE, self.state_size_bytes);
        write_u32(&mut bytes, checkpoint::VERSION, FORMAT_VERSION);
        self.checksum = seal(&mut bytes);
        (self, bytes)
    }

    /// Verifies the header alone; the caller checks the state against `checksum_state`.
    pub(crate) fn verify(bytes: &HeaderBytes) -> Result<CheckpointHeader, HeaderProblem> {
        if !checksum_verifies(bytes) {
            return Err(HeaderProblem::Invalid("header checksum mismatch"));
        }
        if bytes[checkpoint::MAGIC..checkpoint::MAGIC + 16] != CHECKPOINT_MAGIC {
            return Err(HeaderProblem::Invalid("magic mismatch"));
        }
        let version = read_u32(bytes, checkpoint::VERSION);
        if !format_version_readable(version) {
            return Err(HeaderProblem::Version(version));
        }
        if !is_zero(&bytes[checkpoint::RESERVED..]) {
            return Err(HeaderProblem::Invalid("reserved bytes are not zero"));
        }
        Ok(CheckpointHeader {
            checksum: read_u128(bytes, 0),
            checksum_state: read_u128(bytes, checkpoint::CHECKSUM_STATE),
            checksum_record: read_u128(bytes, checkpoint::CHECKSUM_RECORD),
            cluster: read_u128(bytes, checkpoint::CLUSTER),
            op: read_u64(bytes, checkpoint::OP),
            state_size_bytes: read_u64(bytes, checkpoint::STATE_SIZE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_example() -> RecordHeader {
        RecordHeader {
            checksum: 0,
            checksum_body: 0x1111,
            parent: 0x2222,
            op: 7,
            op_synced: 5,
            timestamp: 1_700_000_000_000_000_000,
            body_size: 300,
            kind: 3,
        }
    }

    #[test]
    fn record_header_round_trips_and_detects_every_bit_flip() {
        let (sealed, bytes) = header_example().sealed();
        assert_eq!(RecordHeader::verify(&bytes), Ok(sealed));
        for bit in 0..HEADER_SIZE_BYTES as usize * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecordHeader::verify(&flipped).is_err(),
                "bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn record_header_rejects_zero_and_invalid_fields() {
        assert_eq!(RecordHeader::verify(&[0; 128]), Err(Damage::HeaderZero));
        let mut reserved = header_example().sealed().1;
        reserved[127] = 1;
        let sum = checksum(&reserved[16..]);
        write_u128(&mut reserved, 0, sum);
        assert!(matches!(
            RecordHeader::verify(&reserved),
            Err(Damage::HeaderInvalid { .. })
        ));
    }

    #[test]
    fn record_size_is_aligned() {
        assert_eq!(record_size_bytes(0), 128);
        assert_eq!(record_size_bytes(1), 256);
        assert_eq!(record_size_bytes(128), 256);
        assert_eq!(record_size_bytes(129), 384);
    }

    #[test]
    fn format_marker_round_trips() {
        let (marker, bytes) = FormatMarker::sealed(42, 1 << 20);
        assert_eq!(FormatMarker::verify(&bytes), Ok(marker));
        assert!(FormatMarker::verify(&bytes[..127]).is_err());
        let mut flipped = bytes;
        flipped[40] ^= 1;
        assert!(FormatMarker::verify(&flipped).is_err());
    }

    #[test]
    fn checkpoint_header_round_trips() {
        let header = CheckpointHeader {
            checksum: 0,
            checksum_state: 1,
            checksum_record: 2,
            cluster: 3,
            op: 4,
            state_size_bytes: 5,
        };
        let (sealed, bytes) = header.sealed();
        assert_eq!(CheckpointHeader::verify(&bytes), Ok(sealed));
        let mut flipped = bytes;
        flipped[85] ^= 0x80;
        assert!(CheckpointHeader::verify(&flipped).is_err());
    }
}
