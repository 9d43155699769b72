//! `inspect`: verify a data directory and summarise it, read-only. It maps the segments read-only
//! under a shared lock, so it can never write, and a journal open for writing makes it refuse.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{checkpoint_choose, checkpoint_proof, checkpoint_read, CheckpointProblem};
use crate::directory::{self, format_read, LockMode, CHECKPOINT_FILES, SEGMENTS_DIRECTORY};
use crate::error::{Damage, Evidence, JournalError};
use crate::scan::{self, Log, Tail, WalkProgress};
use memmap2::Mmap;

use crate::segment::{segment_name, segment_open_read_only, segments_list};

/// What `inspect` found.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The data directory inspected.
    pub directory: PathBuf,
    /// The cluster id it was formatted for (from the format marker).
    pub cluster: u128,
    /// The size of every segment file (from the format marker).
    pub segment_size_bytes: u64,
    /// Segment files present, including preallocated ones no record reaches yet.
    pub segment_count: u32,
    /// Records run from op 1 to `op_last` without gaps, so this is also the record count.
    pub op_last: u64,
    /// Bytes from the first segment's start to the end of the last valid record.
    pub log_size_bytes: u64,
    /// The bodies alone, summed over every valid record (headers excluded).
    pub body_size_bytes_total: u64,
    /// Op 1's timestamp, as the appender gave it (the core's clock, in nanoseconds); `None` for
    /// an empty log.
    pub timestamp_first: Option<u64>,
    /// The last valid record's timestamp; `None` for an empty log.
    pub timestamp_last: Option<u64>,
    /// The first op whose timestamp is not above its predecessor's (the core clock is meant to be
    /// strictly increasing; the journal itself does not require it).
    pub timestamp_regression_op: Option<u64>,
    /// Records and body bytes per record kind, over the valid records.
    pub kinds: BTreeMap<u16, KindSummary>,
    /// Each slot, in the order of the files `checkpoint-a`, `checkpoint-b`.
    pub checkpoints: [CheckpointStatus; 2],
    /// The checkpoint `open` would pick: its op and state size.
    pub checkpoint_chosen: Option<(u64, u64)>,
    /// What `open` would do at the end of the log.
    pub tail: TailSummary,
}

/// The records of one kind (the kinds are the core's: the journal only requires them nonzero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindSummary {
    /// How many valid records carry the kind.
    pub records: u64,
    /// Their bodies' bytes, summed (headers excluded).
    pub body_size_bytes: u64,
}

/// One checkpoint slot, as `open` would judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// No file: no checkpoint was ever written to this slot.
    Missing,
    /// Verified and in the log's chain; `open` may recover from it.
    Usable {
        /// The last op its state reflects.
        op: u64,
    },
    /// Present but passed over, and why.
    Rejected(CheckpointProblem),
}

/// The end of the log, as `open` would judge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailSummary {
    /// The last valid record is followed by zeros only: nothing to cut or refuse.
    Clean,
    /// Damage `open` cuts on its own, `bytes` bytes from here: a torn tail (`evidence` is `None`)
    /// or a later record that survived a power loss without this one
    /// (`Evidence::Unacknowledged`).
    Torn {
        /// The first op `open` would cut.
        op: u64,
        /// Where the damaged record is.
        segment: u32,
        /// Where the damaged record is, in bytes from its segment's start.
        offset: u64,
        /// From the damage to the end of the last nonzero 128-byte block (counted across
        /// segments): what `open` zeroes.
        bytes: u64,
        /// What is wrong with the record at `op`.
        damage: Damage,
        /// `None` for a torn tail, else `Evidence::Unacknowledged`.
        evidence: Option<Evidence>,
    },
    /// Damage `open` refuses (with `Evidence::Unproven`, unless told to cut).
    Corrupt {
        /// The op recovery expected at the damage.
        op: u64,
        /// Where the damaged record is.
        segment: u32,
        /// Where the damaged record is, in bytes from its segment's start.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
        /// Why `open` may not cut it.
        evidence: Evidence,
    },
}

impl Inspection {
    /// True when `open` would start without cutting or refusing and every checkpoint file present
    /// is usable.
    pub fn is_clean(&self) -> bool {
        let checkpoints_clean = self.checkpoints.iter().all(|status| match status {
            CheckpointStatus::Missing => true,
            CheckpointStatus::Usable { .. } => true,
            CheckpointStatus::Rejected(_) => false,
        });
        checkpoints_clean && self.tail == TailSummary::Clean
    }
}

/// Verifies the whole log (every header, chain link and body) and both checkpoint slots.
pub fn inspect(directory: &Path) -> Result<Inspection, JournalError> {
    inspect_with_progress(directory, &mut |_| {})
}

/// `inspect`, telling `progress` how far the verification of the log has come after each record
/// (a large journal takes a while: `tally inspect` draws a bar on a terminal).
pub fn inspect_with_progress(
    directory: &Path,
    progress: &mut dyn FnMut(WalkProgress),
) -> Result<Inspection, JournalError> {
    let lock = directory::lock(directory, LockMode::Shared)?;
    let marker = format_read(directory)?;
    let segments_directory = directory.join(SEGMENTS_DIRECTORY);
    let listing = segments_list(&segments_directory)?;
    let mut maps: Vec<Mmap> = Vec::with_capacity(listing.count as usize);
    let mut runs = Vec::with_capacity(listing.count as usize);
    for index in 0..listing.count {
        let path = segments_directory.join(segment_name(index));
        let (map, segment_runs) = segment_open_read_only(&path, marker.segment_size_bytes)?;
        maps.push(map);
        runs.push(segment_runs);
    }
    let log = Log {
        segments: &maps,
        segment_size_bytes: marker.segment_size_bytes,
        runs: &runs,
    };
    let mut walk = scan::walk(log, marker.checksum, progress);
    // No limit applies here: inspect maps the state, it does not allocate it.
    let slots = [
        checkpoint_read(directory, 0, marker.cluster, u64::MAX)?,
        checkpoint_read(directory, 1, marker.cluster, u64::MAX)?,
    ];
    if let Tail::Damaged(damage) = &mut walk.tail {
        damage.checkpoint_proof(checkpoint_proof(&slots));
    }
    let mut inspection = Inspection {
        directory: directory.to_path_buf(),
        cluster: marker.cluster,
        segment_size_bytes: marker.segment_size_bytes,
        segment_count: listing.count,
        op_last: walk.op_last,
        log_size_bytes: walk.address_end,
        body_size_bytes_total: 0,
        timestamp_first: None,
        timestamp_last: None,
        timestamp_regression_op: None,
        kinds: BTreeMap::new(),
        checkpoints: [CheckpointStatus::Missing, CheckpointStatus::Missing],
        checkpoint_chosen: None,
        tail: tail_summary(&walk.tail, log),
    };
    for record in scan::records_from(log, &walk.index, 1, walk.op_last) {
        inspection.record_count(
            record.position.op,
            record.timestamp,
            record.kind,
            record.body,
        );
    }
    let checksum_of = |op: u64| match op {
        0 => marker.checksum,
        _ => {
            scan::records_from(log, &walk.index, op, walk.op_last)
                .next()
                .expect("op")
                .checksum
        }
    };
    let choice = checkpoint_choose(slots, walk.op_last, checksum_of);
    for (slot, op) in choice.slot_ops.iter().enumerate() {
        if let Some(op) = op {
            inspection.checkpoints[slot] = CheckpointStatus::Usable { op: *op };
        }
    }
    for rejection in choice.rejections {
        let slot = CHECKPOINT_FILES
            .iter()
            .position(|file| *file == rejection.file)
            .expect("slot");
        inspection.checkpoints[slot] = CheckpointStatus::Rejected(rejection.problem);
    }
    inspection.checkpoint_chosen = choice.chosen.map(|c| (c.op, c.state().len() as u64));
    drop(lock);
    Ok(inspection)
}

impl Inspection {
    fn record_count(&mut self, op: u64, timestamp: u64, kind: u16, body: &[u8]) {
        assert!(kind != 0);
        if let Some(timestamp_last) = self.timestamp_last {
            if timestamp <= timestamp_last && self.timestamp_regression_op.is_none() {
                self.timestamp_regression_op = Some(op);
            }
        }
        self.timestamp_first.get_or_insert(timestamp);
        self.timestamp_last = Some(timestamp);
        self.body_size_bytes_total += body.len() as u64;
        let summary = self.kinds.entry(kind).or_default();
        summary.records += 1;
        summary.body_size_bytes += body.len() as u64;
    }
}

fn tail_summary(tail: &Tail, log: Log<'_, Mmap>) -> TailSummary {
    let damage = match tail {
        Tail::Clean => return TailSummary::Clean,
        Tail::Damaged(damage) => damage,
    };
    let (segment, offset) = log.split(damage.address);
    // What `open` does without the operator's consent.
    if damage.is_cut(false) {
        return TailSummary::Torn {
            op: damage.op,
            segment,
            offset,
            bytes: damage.address_dirty_end - damage.address,
            damage: damage.damage,
            evidence: damage.evidence,
        };
    }
    TailSummary::Corrupt {
        op: damage.op,
        segment,
        offset,
        damage: damage.damage,
        evidence: damage.evidence.expect("a torn tail is always cut"),
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "journal {}", self.directory.display())?;
        writeln!(f, "  cluster     {:#034x}", self.cluster)?;
        writeln!(
            f,
            "  segments    {} x {} bytes",
            self.segment_count, self.segment_size_bytes
        )?;
        write!(f, "  records     {}", self.op_last)?;
        if self.op_last > 0 {
            write!(f, " (ops 1..={})", self.op_last)?;
        }
        writeln!(
            f,
            ", {} bytes of log, {} bytes of bodies",
            self.log_size_bytes, self.body_size_bytes_total
        )?;
        if let (Some(first), Some(last)) = (self.timestamp_first, self.timestamp_last) {
            write!(f, "  timestamps  first {first}, last {last}")?;
            match self.timestamp_regression_op {
                None => writeln!(f, ", strictly increasing")?,
                Some(op) => writeln!(f, ", NOT increasing at op {op}")?,
            }
        }
        for (kind, summary) in &self.kinds {
            let (records, bytes) = (summary.records, summary.body_size_bytes);
            writeln!(
                f,
                "  kind {kind:<6} {records} records, {bytes} bytes of bodies"
            )?;
        }
        self.fmt_recovery(f)
    }
}

impl Inspection {
    /// The checkpoint and tail lines of the summary: what `open` would do.
    fn fmt_recovery(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (file, status) in CHECKPOINT_FILES.iter().zip(&self.checkpoints) {
            match status {
                CheckpointStatus::Missing => writeln!(f, "  {file}  none")?,
                CheckpointStatus::Usable { op } => writeln!(f, "  {file}  op {op}")?,
                CheckpointStatus::Rejected(problem) => {
                    writeln!(f, "  {file}  UNUSABLE: {problem}")?
                }
            }
        }
        match self.checkpoint_chosen {
            Some((op, size)) => {
                writeln!(f, "  recovery    from checkpoint op {op} ({size} bytes)")?
            }
            None => writeln!(f, "  recovery    replays from op 1 (no usable checkpoint)")?,
        }
        match self.tail {
            TailSummary::Clean => writeln!(f, "  tail        clean"),
            TailSummary::Torn {
                op,
                segment,
                offset,
                bytes,
                damage,
                evidence,
            } => {
                write!(
                    f,
                    "  tail        torn at op {op} (segment {segment}, offset {offset}): {damage}; "
                )?;
                if let Some(evidence) = evidence {
                    write!(f, "{evidence}; ")?;
                }
                writeln!(f, "open cuts {bytes} bytes")
            }
            TailSummary::Corrupt {
                op,
                segment,
                offset,
                damage,
                evidence,
            } => writeln!(
                f,
                "  PROBLEM     corrupt at op {op} (segment {segment}, offset {offset}): {damage}; \
                 {evidence}; open refuses"
            ),
        }
    }
}
