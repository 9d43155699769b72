//! Reading the log: the validating walk that recovery and `inspect` share, the classification of
//! whatever follows the last valid record, and the iterator over verified records.
//!
//! Positions inside the scanner are global byte addresses, `segment * segment_size + offset`: all
//! segments have one size, so a record that ends exactly at a segment's end is followed by the next
//! segment's first byte with no special case.

use tally_checksum::checksum;

use crate::error::{Damage, Evidence};
use crate::layout::{
    header_bytes, is_zero, record_size_bytes, HeaderBytes, RecordHeader, HEADER_SIZE_BYTES,
    RECORD_ALIGNMENT_BYTES,
};
use crate::segment::DataRuns;

/// The sparse op index keeps the address of every op `1 + k * INDEX_STRIDE_OPS`; finding any other
/// op walks at most `INDEX_STRIDE_OPS - 1` headers (no syscalls), for 1/64 of the memory.
pub(crate) const INDEX_STRIDE_OPS: u64 = 64;

/// Scanning for zeros goes this many bytes at a time.
const CHUNK_SIZE_BYTES: u64 = 64 * 1024;

/// The segments as byte slices, whatever owns them (writable maps for the journal, read-only maps
/// for `inspect`).
pub(crate) struct Log<'a, S> {
    pub segments: &'a [S],
    pub segment_size_bytes: u64,
    /// Per segment, where nonzero bytes may be, taken before the scan (see `data_runs`). Only
    /// recovery asks; the journal's log after recovery carries none.
    pub runs: &'a [DataRuns],
}

impl<S> Clone for Log<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Log<'_, S> {}

impl<'a, S: AsRef<[u8]>> Log<'a, S> {
    pub(crate) fn address_max(&self) -> u64 {
        self.segments.len() as u64 * self.segment_size_bytes
    }

    pub(crate) fn split(&self, address: u64) -> (u32, u64) {
        let segment = address / self.segment_size_bytes;
        (
            u32::try_from(segment).expect("segment count is bounded"),
            address % self.segment_size_bytes,
        )
    }

    /// Bytes within one segment.
    pub(crate) fn bytes(&self, address: u64, size_bytes: u64) -> &'a [u8] {
        let (segment, offset) = self.split(address);
        assert!(
            offset + size_bytes <= self.segment_size_bytes,
            "range crosses a segment end"
        );
        let bytes = self.segments[segment as usize].as_ref();
        &bytes[offset as usize..(offset + size_bytes) as usize]
    }

    /// The first run at or after `address` that may hold nonzero bytes, within one segment;
    /// everything outside the runs reads as zero (see `data_runs`).
    pub(crate) fn data_run(&self, address: u64) -> Option<(u64, u64)> {
        assert_eq!(self.runs.len(), self.segments.len());
        let mut address = address;
        while address < self.address_max() {
            let (segment, offset) = self.split(address);
            let base = address - offset;
            let runs = &self.runs[segment as usize];
            if let Some((start, end)) = runs.iter().find(|(_, end)| *end > offset) {
                return Some((base + offset.max(*start), base + end));
            }
            address = base + self.segment_size_bytes;
        }
        None
    }

    /// Whether [address_start, address_end) holds only zeros.
    fn range_is_zero(&self, address_start: u64, address_end: u64) -> bool {
        let mut address = address_start;
        while let Some((start, end)) = self.data_run(address) {
            if start >= address_end {
                return true;
            }
            let end = end.min(address_end);
            if !chunks_are_zero(*self, start, end) {
                return false;
            }
            address = end;
        }
        true
    }

    pub(crate) fn header(&self, address: u64) -> &'a HeaderBytes {
        assert!(address % RECORD_ALIGNMENT_BYTES == 0);
        header_bytes(self.bytes(address, HEADER_SIZE_BYTES))
    }

    /// The start of the segment after the one holding `address`, if that segment exists and
    /// `address` is not a segment start itself: the other place the record after `address` can be.
    fn segment_next(&self, address: u64) -> Option<u64> {
        let (_, offset) = self.split(address);
        let segment_next = address - offset + self.segment_size_bytes;
        if offset > 0 && segment_next < self.address_max() {
            Some(segment_next)
        } else {
            None
        }
    }

    /// The header at `address` if it verifies and carries `op`.
    fn header_of(&self, address: u64, op: u64) -> Option<RecordHeader> {
        RecordHeader::verify(self.header(address))
            .ok()
            .filter(|header| header.op == op)
    }

    /// Where record `op`, following a record that ends at `address`, starts. A record never spans
    /// segments: when it did not fit in the rest of this one, it starts the next. The rest is left
    /// zero, but no checksum covers it, so the record is found by its header, not by the zeros.
    /// The zeros only say where to report damage when neither place holds the record.
    fn record_locate(&self, address: u64, op: u64, parent: u128) -> u64 {
        let Some(segment_next) = self.segment_next(address) else {
            return address;
        };
        if self
            .header_of(address, op)
            .is_some_and(|header| header.parent == parent)
        {
            return address;
        }
        if let Some(header) = self.header_of(segment_next, op) {
            if header.parent == parent && !self.record_fits(address, header.body_size) {
                return segment_next;
            }
        }
        if self.range_is_zero(address, segment_next) {
            segment_next
        } else {
            address
        }
    }

    /// Whether a record of `body_size` starting at `address` would stay inside its segment.
    fn record_fits(&self, address: u64, body_size: u32) -> bool {
        let (_, offset) = self.split(address);
        HEADER_SIZE_BYTES + u64::from(body_size) <= self.segment_size_bytes - offset
    }

    fn record_verify(&self, address: u64, op: u64, parent: u128) -> Result<RecordHeader, Damage> {
        let header = RecordHeader::verify(self.header(address))?;
        if header.op != op {
            return Err(Damage::OpMismatch {
                op_found: header.op,
            });
        }
        if header.parent != parent {
            return Err(Damage::ParentMismatch);
        }
        if !self.record_fits(address, header.body_size) {
            return Err(Damage::BodySizeInvalid {
                body_size: header.body_size,
            });
        }
        let body = self.bytes(address + HEADER_SIZE_BYTES, u64::from(header.body_size));
        if checksum(body) != header.checksum_body {
            return Err(Damage::BodyChecksum);
        }
        Ok(header)
    }
}

/// The longest valid prefix of the log, and what follows it.
pub(crate) struct Walk {
    pub op_last: u64,
    pub checksum_last: u128,
    /// `op_synced` of the last valid record: every op up to it is known durable.
    pub op_synced_last: u64,
    /// Just past the last valid record: where the next append goes (or the next segment).
    pub address_end: u64,
    /// Addresses of ops 1, 1 + INDEX_STRIDE_OPS, 1 + 2 * INDEX_STRIDE_OPS, …
    pub index: Vec<u64>,
    pub tail: Tail,
}

pub(crate) enum Tail {
    /// Only zeros follow the last valid record.
    Clean,
    Damaged(TailDamage),
}

/// Nonzero bytes follow the last valid record.
pub(crate) struct TailDamage {
    /// The op that should have been next.
    pub op: u64,
    pub address: u64,
    pub damage: Damage,
    /// The strongest evidence found past the damage; `None` means a torn tail.
    pub evidence: Option<Evidence>,
    /// Just past the last nonzero 128-byte block in the log.
    pub address_dirty_end: u64,
}

impl TailDamage {
    /// Adds what the checkpoints prove: one at or beyond the damaged op was written after the log
    /// through its op was synced, so the damaged record was durable. Proof from the log itself
    /// (`Synced`, `OutOfOrder`) stays.
    pub(crate) fn checkpoint_proof(&mut self, proof: Option<(u64, &'static str)>) {
        let Some((op, file)) = proof else {
            return;
        };
        if op < self.op {
            return;
        }
        match self.evidence {
            Some(Evidence::Synced { .. })
            | Some(Evidence::OutOfOrder { .. })
            | Some(Evidence::Checkpoint { .. }) => {}
            None | Some(Evidence::Unacknowledged { .. }) | Some(Evidence::Unproven { .. }) => {
                self.evidence = Some(Evidence::Checkpoint { op, file });
            }
        }
    }

    /// Whether `open` cuts the damage: on its own for a torn tail (no valid record after it) and
    /// for `Evidence::Unacknowledged`; for `Evidence::Unproven` only with the operator's consent;
    /// never with proof.
    pub(crate) fn is_cut(&self, cut_unproven_tail: bool) -> bool {
        match self.evidence {
            None => true,
            Some(evidence) => {
                evidence.is_unacknowledged() || (evidence.is_unproven() && cut_unproven_tail)
            }
        }
    }
}

/// Verifies the chain from op 1 (header, reserved bytes, op, parent, body) until it breaks.
pub(crate) fn walk<S: AsRef<[u8]>>(
    log: Log<'_, S>,
    genesis: u128,
    progress: &mut dyn FnMut(WalkProgress),
) -> Walk {
    let mut walk = Walk {
        op_last: 0,
        checksum_last: genesis,
        op_synced_last: 0,
        address_end: 0,
        index: Vec::new(),
        tail: Tail::Clean,
    };
    // Each valid record moves `address_end` forward by at least one header, so this ends.
    while walk.address_end < log.address_max() {
        let op = walk.op_last + 1;
        let address = log.record_locate(walk.address_end, op, walk.checksum_last);
        match log.record_verify(address, op, walk.checksum_last) {
            Ok(header) => {
                assert!(address >= walk.address_end);
                if (op - 1) % INDEX_STRIDE_OPS == 0 {
                    walk.index.push(address);
                }
                walk.op_last = op;
                walk.checksum_last = header.checksum;
                walk.op_synced_last = header.op_synced;
                walk.address_end = address + record_size_bytes(header.body_size);
                progress(WalkProgress {
                    address_end: walk.address_end,
                    address_max: log.address_max(),
                });
            }
            Err(damage) => {
                let expected = Expected {
                    address,
                    address_end: walk.address_end,
                    op,
                    parent: walk.checksum_last,
                };
                walk.tail = tail_classify(log, walk.address_end, expected, damage);
                break;
            }
        }
    }
    assert_eq!(
        walk.index.len() as u64,
        walk.op_last.div_ceil(INDEX_STRIDE_OPS)
    );
    walk
}

/// How far a walk has verified the log, after each valid record.
#[derive(Clone, Copy, Debug)]
pub struct WalkProgress {
    /// Just past the last record verified.
    pub address_end: u64,
    /// The bytes of every segment file: the log cannot reach past this.
    pub address_max: u64,
}

/// The record the walk expected where it found damage.
#[derive(Clone, Copy)]
struct Expected {
    /// `address_end`, or the next segment's start if the rest of this one is zero.
    address: u64,
    /// Just past the last valid record.
    address_end: u64,
    op: u64,
    /// The checksum of the last valid record (the format marker's for op 1).
    parent: u128,
}

/// Judges the bytes from `address_end` (the end of the valid prefix) on.
fn tail_classify<S: AsRef<[u8]>>(
    log: Log<'_, S>,
    address_end: u64,
    expected: Expected,
    damage: Damage,
) -> Tail {
    assert!(expected.address >= address_end);
    match dirty_end(log, address_end) {
        None => Tail::Clean,
        Some(address_dirty_end) => {
            assert!(address_dirty_end > expected.address);
            let evidence = evidence_find(log, expected, damage, address_dirty_end);
            Tail::Damaged(TailDamage {
                op: expected.op,
                address: expected.address,
                damage,
                evidence,
                address_dirty_end,
            })
        }
    }
}

/// Whether the damage where `expected` should be has the shape a power loss leaves. The slot held
/// zeros before the record was written, and a power loss leaves each byte zero or as written:
/// - a zero header (its page or sector never reached the disk): yes;
/// - a header that fails its checksum: if its bytes could be a partly written header of this op
///   and parent (`RecordHeader::could_be_torn`);
/// - a valid, chained header with a body that fails its checksum: yes (the body's intended bytes
///   are unknown, so a partly written body cannot be told from a damaged one; see the docs);
/// - a later op at the next segment's start, looked at because the rest of this segment reads as
///   zeros: yes, the record expected was lost from the rest of this segment (a failed or
///   unfinished fsync of this segment while the next one's completed);
/// - a header whose checksum verifies but that is invalid, or names another op or parent, or a body
///   crossing the segment's end: no, no writer of this journal sealed that header in this slot.
fn damage_could_be_torn<S: AsRef<[u8]>>(
    log: Log<'_, S>,
    expected: Expected,
    damage: Damage,
) -> bool {
    match damage {
        Damage::HeaderZero | Damage::BodyChecksum => true,
        Damage::OpMismatch { op_found }
            if op_found > expected.op && expected.address != expected.address_end =>
        {
            assert_eq!(log.split(expected.address).1, 0, "the next segment's start");
            true
        }
        Damage::HeaderChecksum => {
            RecordHeader::could_be_torn(log.header(expected.address), expected.op, expected.parent)
        }
        Damage::HeaderInvalid { .. }
        | Damage::OpMismatch { .. }
        | Damage::ParentMismatch
        | Damage::BodySizeInvalid { .. } => false,
    }
}

/// Whether the bytes of [start, end), within one segment, are all zero.
fn chunks_are_zero<S: AsRef<[u8]>>(log: Log<'_, S>, start: u64, end: u64) -> bool {
    let mut address = start;
    while address < end {
        let chunk_bytes = CHUNK_SIZE_BYTES.min(end - address);
        if !is_zero(log.bytes(address, chunk_bytes)) {
            return false;
        }
        address += chunk_bytes;
    }
    true
}

/// Just past the last nonzero 128-byte block at or after `address_start`, or `None` if all zero.
pub(crate) fn dirty_end<S: AsRef<[u8]>>(log: Log<'_, S>, address_start: u64) -> Option<u64> {
    let mut found = None;
    let mut address = address_start;
    while let Some((start, end)) = log.data_run(address) {
        let mut chunk_start = start;
        while chunk_start < end {
            let chunk_bytes = CHUNK_SIZE_BYTES.min(end - chunk_start);
            let chunk = log.bytes(chunk_start, chunk_bytes);
            if !is_zero(chunk) {
                let mut blocks = chunk.chunks(RECORD_ALIGNMENT_BYTES as usize);
                let block_last = blocks.rposition(|block| !is_zero(block)).expect("not zero");
                found = Some(chunk_start + (block_last as u64 + 1) * RECORD_ALIGNMENT_BYTES);
            }
            chunk_start += chunk_bytes;
        }
        address = end;
    }
    found
}

/// Looks past the damage for valid record headers, hopping over the bodies of those it finds (a
/// body is opaque and may hold anything). Proof wins over a mere later record; without proof, the
/// damage's shape decides between `Unacknowledged` (what a power loss leaves) and `Unproven`.
fn evidence_find<S: AsRef<[u8]>>(
    log: Log<'_, S>,
    expected: Expected,
    damage: Damage,
    address_dirty_end: u64,
) -> Option<Evidence> {
    let (address_damage, op_damage) = (expected.address, expected.op);
    // The first later record, and the highest op_synced of all later records.
    let mut later: Option<(u64, u32, u64)> = None;
    let mut op_synced_max = 0;
    let mut address = address_damage;
    let mut run_end = address;
    while address < address_dirty_end {
        if address >= run_end {
            // Skip what reads as zero without touching it.
            let Some((start, end)) = log.data_run(address) else {
                break;
            };
            (address, run_end) = (start, end);
            continue;
        }
        let Ok(header) = RecordHeader::verify(log.header(address)) else {
            address += RECORD_ALIGNMENT_BYTES;
            continue;
        };
        let (segment, offset) = log.split(address);
        let is_damaged_record = address == address_damage && header.op == op_damage;
        if is_damaged_record {
            // Its own header (its body is what is torn) proves nothing: op_synced < op always.
            assert!(header.op_synced < op_damage);
        } else if header.op < op_damage {
            return Some(Evidence::OutOfOrder {
                op: header.op,
                segment,
                offset,
            });
        } else if header.op_synced >= op_damage {
            let op_synced = header.op_synced;
            return Some(Evidence::Synced {
                op: header.op,
                segment,
                offset,
                op_synced,
            });
        } else {
            later.get_or_insert((header.op, segment, offset));
            op_synced_max = op_synced_max.max(header.op_synced);
        }
        if log.record_fits(address, header.body_size) {
            address += record_size_bytes(header.body_size);
        } else {
            address += RECORD_ALIGNMENT_BYTES;
        }
    }
    let (op, segment, offset) = later?;
    // The op itself when a valid copy of it lies at the next segment's start (see record_locate).
    assert!(op >= op_damage);
    assert!(op_synced_max < op_damage);
    if damage_could_be_torn(log, expected, damage) {
        Some(Evidence::Unacknowledged {
            op,
            segment,
            offset,
            op_synced: op_synced_max,
        })
    } else {
        Some(Evidence::Unproven {
            op,
            segment,
            offset,
        })
    }
}

/// Where a record lives, as returned by `append` and carried by every `RecordView`. Cheap to copy
/// and store: the ledger keeps these to read transfer bodies back out of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordPosition {
    /// The record's op: 1 for the first record, each next one plus 1.
    pub op: u64,
    /// The segment holding the record (a record never spans two).
    pub segment: u32,
    /// Offset of the record's header within its segment; the body follows the header.
    pub offset: u64,
    /// The body's size in bytes.
    pub body_size: u32,
}

impl RecordPosition {
    /// Offset of the record's body within its segment, just past the header.
    pub fn body_offset(&self) -> u64 {
        self.offset + HEADER_SIZE_BYTES
    }
}

/// One verified record: its header fields and a slice of its body in the mapping.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Where the record is.
    pub position: RecordPosition,
    /// The header's checksum, which the next record carries as its `parent`.
    pub checksum: u128,
    /// The previous record's checksum; for op 1, the format marker's.
    pub parent: u128,
    /// As passed to `append` (the core's clock, in nanoseconds).
    pub timestamp: u64,
    /// As passed to `append`: what the body holds, never 0.
    pub kind: u16,
    /// The body, verified against the header's body checksum.
    pub body: &'a [u8],
}

/// Iterates over verified records in op order, up to the op that was last when it was created.
pub(crate) struct Records<'a, S> {
    log: Log<'a, S>,
    address: u64,
    op_next: u64,
    op_last: u64,
}

/// Records `op_first..=op_last` of a log whose records were all verified (by recovery or append).
pub(crate) fn records_from<'a, S: AsRef<[u8]>>(
    log: Log<'a, S>,
    index: &[u64],
    op_first: u64,
    op_last: u64,
) -> Records<'a, S> {
    assert!(op_first >= 1);
    assert!(
        op_first <= op_last + 1,
        "op {op_first} is beyond the log's end, op {op_last}"
    );
    assert_eq!(index.len() as u64, op_last.div_ceil(INDEX_STRIDE_OPS));
    if op_first > op_last {
        return Records {
            log,
            address: 0,
            op_next: op_first,
            op_last,
        };
    }
    let slot = (op_first - 1) / INDEX_STRIDE_OPS;
    let mut records = Records {
        log,
        address: index[slot as usize],
        op_next: slot * INDEX_STRIDE_OPS + 1,
        op_last,
    };
    while records.op_next < op_first {
        records.next().expect("op_first is at most op_last");
    }
    records
}

impl<'a, S: AsRef<[u8]>> Iterator for Records<'a, S> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.op_next > self.op_last {
            return None;
        }
        let mut address = self.address;
        if self.log.header_of(address, self.op_next).is_none() {
            // The record did not fit in the rest of this segment (the log was verified whole, so
            // this is the only other place it can be).
            address = self
                .log
                .segment_next(address)
                .expect("a verified record follows");
        }
        let bytes = self.log.header(address);
        let header = RecordHeader::decode(bytes);
        // Pair assertion: the header was verified when it was written or recovered.
        assert_eq!(RecordHeader::verify(bytes), Ok(header));
        assert_eq!(header.op, self.op_next);
        let (segment, offset) = self.log.split(address);
        let position = RecordPosition {
            op: header.op,
            segment,
            offset,
            body_size: header.body_size,
        };
        let body = self
            .log
            .bytes(address + HEADER_SIZE_BYTES, u64::from(header.body_size));
        self.address = address + record_size_bytes(header.body_size);
        self.op_next += 1;
        Some(RecordView {
            position,
            checksum: header.checksum,
            parent: header.parent,
            timestamp: header.timestamp,
            kind: header.kind,
            body,
        })
    }
}
