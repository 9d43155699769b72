//! The body of a journal record: the commands of one core batch, as they will be replayed.
//!
//! A record holds one or more *entries*. Each entry is a 32-byte `EntryHeader` followed by a
//! compact request (`EntryKind::RequestCompact`: the 48 bytes of the request's header that
//! replay reads, then the body with its trailer padded to 16 bytes; see `command.rs`), the
//! client's request message exactly as received (`EntryKind::Request`: 256-byte header and body;
//! written for registers and by versions before the compact kind), or nothing for a pulse;
//! entries are padded to 16 bytes so that every request's events stay 16-byte aligned in the log
//! (the ledger reads `Transfer`s in place). The entry header carries the only inputs that
//! were not in the client's bytes: the op number and the base timestamp the core chose from its
//! clock. Everything else (per-batch timestamps, handles, results, replies) is derived again on
//! replay by the same code (`State::apply_record`). An admin entry holds an Admin API command,
//! encoded by `command::admin_encode`.

/// The journal record kind of a core batch.
pub const RECORD_KIND_BATCH: u16 = 1;

/// Bytes of an entry header.
pub(crate) const ENTRY_HEADER_SIZE: usize = 32;
/// Entries start at multiples of this, so that logged events stay aligned for in-place reads.
pub(crate) const ENTRY_ALIGNMENT: usize = 16;

/// What an entry holds. Values are on disk: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A TigerBeetle client request message.
    Request = 1,
    /// A pulse (no message).
    Pulse = 2,
    /// An Admin API command (since format 2 of the server state).
    Admin = 3,
    /// A TigerBeetle client request without the header bytes replay does not read, and with
    /// its body's trailer padded to 16 bytes instead of the event size (`Request::compact`).
    RequestCompact = 4,
}

/// The fixed part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    /// What follows.
    pub kind: EntryKind,
    /// `T_base` (wire spec §6): `max(last timestamp + 1, wall clock)` when the core took it.
    pub timestamp: u64,
    /// The entry's op: one per entry, dense.
    pub op: u64,
    /// Bytes that follow the header (the request, message or compact; 0 for a pulse).
    pub message_size: u32,
}

/// A record body whose entries do not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// The body ends inside an entry.
    #[error("entry at byte {offset} is truncated")]
    Truncated {
        /// Offset of the entry in the body.
        offset: usize,
    },
    /// An unknown kind byte.
    #[error("entry at byte {offset} has unknown kind {kind}")]
    Kind {
        /// Offset of the entry in the body.
        offset: usize,
        /// The kind found.
        kind: u8,
    },
    /// Reserved bytes are not zero.
    #[error("entry at byte {offset} has non-zero reserved bytes")]
    Reserved {
        /// Offset of the entry in the body.
        offset: usize,
    },
}

impl EntryHeader {
    /// The header's 32 bytes: kind, 7 zero bytes, timestamp, op, message size, 4 zero bytes.
    fn to_bytes(self) -> [u8; ENTRY_HEADER_SIZE] {
        let mut bytes = [0; ENTRY_HEADER_SIZE];
        bytes[0] = self.kind as u8;
        bytes[8..16].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.op.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.message_size.to_le_bytes());
        bytes
    }

    /// Reads the header at `offset` of a record body.
    pub(crate) fn decode(bytes: &[u8], offset: usize) -> Result<EntryHeader, EntryError> {
        let header = bytes
            .get(offset..offset + ENTRY_HEADER_SIZE)
            .ok_or(EntryError::Truncated { offset })?;
        let kind = match header[0] {
            1 => EntryKind::Request,
            2 => EntryKind::Pulse,
            3 => EntryKind::Admin,
            4 => EntryKind::RequestCompact,
            kind => return Err(EntryError::Kind { offset, kind }),
        };
        if header[1..8]
            .iter()
            .chain(&header[28..32])
            .any(|&byte| byte != 0)
        {
            return Err(EntryError::Reserved { offset });
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let message_size = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
        Ok(EntryHeader {
            kind,
            timestamp: u64_at(8),
            op: u64_at(16),
            message_size,
        })
    }

    /// Bytes from this entry's header to the next entry's.
    pub(crate) fn entry_size(&self) -> usize {
        (ENTRY_HEADER_SIZE + self.message_size as usize).next_multiple_of(ENTRY_ALIGNMENT)
    }
}

/// Appends one entry (header, message, padding) to a record body (tests build bodies with it;
/// the core thread writes messages in place with `entry_append_with`).
#[cfg(test)]
pub(crate) fn entry_append(out: &mut Vec<u8>, header: &EntryHeader, message: &[u8]) {
    assert_eq!(header.message_size as usize, message.len());
    let written = entry_append_with(out, header.kind, header.timestamp, header.op, |out| {
        out.extend_from_slice(message);
        true
    });
    assert!(written);
}

/// Appends one entry whose message `write` appends straight into the record body (a batch
/// request's compact form, without a copy of its megabyte in between). If `write` returns
/// `false` it must have appended nothing, and the body is left as it was.
pub(crate) fn entry_append_with(
    out: &mut Vec<u8>,
    kind: EntryKind,
    timestamp: u64,
    op: u64,
    write: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    assert_eq!(out.len() % ENTRY_ALIGNMENT, 0);
    let start = out.len();
    // The header's place, filled once the message's size is known.
    out.resize(start + ENTRY_HEADER_SIZE, 0);
    if !write(out) {
        assert_eq!(
            out.len(),
            start + ENTRY_HEADER_SIZE,
            "a refused write appends nothing"
        );
        out.truncate(start);
        return false;
    }
    let message_size = out.len() - start - ENTRY_HEADER_SIZE;
    let header = EntryHeader {
        kind,
        timestamp,
        op,
        message_size: u32::try_from(message_size).expect("messages are bounded"),
    };
    out[start..start + ENTRY_HEADER_SIZE].copy_from_slice(&header.to_bytes());
    out.resize(out.len().next_multiple_of(ENTRY_ALIGNMENT), 0);
    true
}

/// The offsets of the entries of a record body, checked for shape.
pub(crate) fn entry_offsets(body: &[u8]) -> Result<Vec<(usize, EntryHeader)>, EntryError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < body.len() {
        let header = EntryHeader::decode(body, offset)?;
        if offset + header.entry_size() > body.len() {
            return Err(EntryError::Truncated { offset });
        }
        entries.push((offset, header));
        offset += header.entry_size();
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_aligned() {
        let mut body = Vec::new();
        let first = EntryHeader {
            kind: EntryKind::Request,
            timestamp: 7,
            op: 1,
            message_size: 300,
        };
        entry_append(&mut body, &first, &[9; 300]);
        let second = EntryHeader {
            kind: EntryKind::Pulse,
            timestamp: 8,
            op: 2,
            message_size: 0,
        };
        entry_append(&mut body, &second, &[]);
        let entries = entry_offsets(&body).unwrap();
        assert_eq!(entries, vec![(0, first), (first.entry_size(), second)]);
        assert_eq!(first.entry_size() % ENTRY_ALIGNMENT, 0);
        body[1] = 1;
        assert_eq!(
            entry_offsets(&body),
            Err(EntryError::Reserved { offset: 0 })
        );
    }
}
