//! The journal seen as one address space of log bytes, for the state's `LogBytes`.
//!
//! A global log position is `segment × segment size + offset`; records never span segments, so
//! every range the state asks for lies within one segment.

use tally_journal::{Journal, RecordPosition};

/// Read access to bytes already appended to the log, by global position.
pub trait LogBytes {
    /// `size` bytes at `position`; the range lies within one appended record.
    fn bytes(&self, position: u64, size: usize) -> &[u8];
}

/// The journal's memory map as `LogBytes`.
pub struct JournalBytes<'a>(pub &'a Journal);

impl LogBytes for JournalBytes<'_> {
    fn bytes(&self, position: u64, size: usize) -> &[u8] {
        let segment_size_bytes = self.0.segment_size_bytes();
        let segment = u32::try_from(position / segment_size_bytes).expect("segment count fits u32");
        self.0
            .bytes_at(segment, position % segment_size_bytes, size as u64)
    }
}

/// The global position of a record's body.
pub(crate) fn body_position(journal: &Journal, position: &RecordPosition) -> u64 {
    u64::from(position.segment) * journal.segment_size_bytes() + position.body_offset()
}
