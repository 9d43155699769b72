//! The state's checkpoint encoding. Format 1 (`TLYSRV01`) predates the Admin API and still
//! opens; format 2 (`TLYSRV02`) adds the payments domain and the transfers it created. A newer
//! format is refused with both versions named.

use tally_ledger::{Ledger, Record, Transfer};
use tally_payments::Payments;
use tally_wire::{SessionConfig, SessionTable};

use crate::state::State;
use crate::transfers::{TransferBatch, TransferLocations};

/// The magic of every server checkpoint; two ASCII digits of format version follow.
const CHECKPOINT_MAGIC_PREFIX: &[u8; 6] = b"TLYSRV";
/// The format this binary writes.
pub const CHECKPOINT_FORMAT: u32 = 2;
/// The oldest format this binary reads.
pub const CHECKPOINT_FORMAT_MIN: u32 = 1;

/// A checkpoint that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a server checkpoint.
    #[error("not a server checkpoint (magic {magic:?})")]
    Magic {
        /// The first bytes found.
        magic: Vec<u8>,
    },
    /// A format this binary does not read.
    #[error(
        "checkpoint format {found}; this binary reads formats {CHECKPOINT_FORMAT_MIN}..={CHECKPOINT_FORMAT}"
    )]
    Format {
        /// The format found.
        found: u32,
    },
    /// The bytes end early.
    #[error("checkpoint truncated at byte {offset}")]
    Truncated {
        /// Where the read ran out.
        offset: usize,
    },
    /// The parts contradict each other.
    #[error("checkpoint inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The session table does not decode.
    #[error("checkpoint sessions: {0}")]
    Sessions(tally_wire::DecodeError),
    /// The payments domain does not decode.
    #[error("checkpoint payments: {0}")]
    Payments(#[from] tally_payments::DecodeError),
    /// The ledger does not decode.
    #[error("checkpoint ledger: {0}")]
    Ledger(tally_ledger::CheckpointError),
}

impl State {
    /// Appends the checkpoint encoding (format `CHECKPOINT_FORMAT`).
    pub fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(CHECKPOINT_MAGIC_PREFIX);
        out.extend_from_slice(format!("{CHECKPOINT_FORMAT:02}").as_bytes());
        out.extend_from_slice(&self.cluster.to_le_bytes());
        out.extend_from_slice(&self.op.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&(self.locations.batches.len() as u64).to_le_bytes());
        for batch in &self.locations.batches {
            out.extend_from_slice(&batch.first_handle.to_le_bytes());
            out.extend_from_slice(&batch.position.to_le_bytes());
            out.extend_from_slice(&u64::from(batch.count).to_le_bytes());
            out.extend_from_slice(&batch.timestamp.to_le_bytes());
        }
        let mut sessions = Vec::new();
        self.sessions.encode(&mut sessions);
        out.extend_from_slice(&(sessions.len() as u64).to_le_bytes());
        out.extend_from_slice(&sessions);
        out.extend_from_slice(&(self.locations.domain.len() as u64).to_le_bytes());
        out.extend_from_slice(Transfer::slice_as_bytes(&self.locations.domain));
        self.payments.encode_checkpoint(out);
        self.ledger.encode_checkpoint(out);
    }

    /// Decodes a checkpoint of any format from `CHECKPOINT_FORMAT_MIN` on.
    pub fn decode_checkpoint(
        bytes: &[u8],
        session_config: SessionConfig,
    ) -> Result<State, CheckpointError> {
        let mut reader = Reader { bytes, offset: 0 };
        let magic = reader.take(8)?;
        let format = checkpoint_format(magic)?;
        let cluster = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
        let op = reader.u64()?;
        let timestamp = reader.u64()?;
        let batch_count = usize::try_from(reader.u64()?).map_err(|_| reader.truncated())?;
        let mut locations = TransferLocations::default();
        for _ in 0..batch_count.min(bytes.len() / 32) {
            let batch = TransferBatch {
                first_handle: reader.u64()?,
                position: reader.u64()?,
                count: u32::try_from(reader.u64()?)
                    .map_err(|_| CheckpointError::Inconsistent("batch count"))?,
                timestamp: reader.u64()?,
            };
            if batch.first_handle != locations.event_count() {
                return Err(CheckpointError::Inconsistent(
                    "transfer batches out of order",
                ));
            }
            locations.batches.push(batch);
        }
        if locations.batches.len() != batch_count {
            return Err(reader.truncated());
        }
        let sessions_size = usize::try_from(reader.u64()?).map_err(|_| reader.truncated())?;
        let sessions = SessionTable::decode(reader.take(sessions_size)?, session_config)
            .map_err(CheckpointError::Sessions)?;
        let payments = if format >= 2 {
            let domain_count = usize::try_from(reader.u64()?).map_err(|_| reader.truncated())?;
            let domain_bytes = reader.take(
                domain_count
                    .checked_mul(Transfer::SIZE)
                    .ok_or(CheckpointError::Inconsistent("domain transfer count"))?,
            )?;
            locations.domain = domain_bytes
                .chunks_exact(Transfer::SIZE)
                .map(Transfer::read_from)
                .collect();
            let (payments, size) = Payments::decode_checkpoint(&bytes[reader.offset..])?;
            reader.offset += size;
            payments
        } else {
            Payments::default()
        };
        let ledger =
            Ledger::decode_checkpoint(&bytes[reader.offset..]).map_err(CheckpointError::Ledger)?;
        if ledger.transfer_handle_next() < locations.event_count() {
            return Err(CheckpointError::Inconsistent(
                "transfer locations beyond the ledger's handles",
            ));
        }
        Ok(State {
            cluster,
            ledger,
            sessions,
            payments,
            op,
            timestamp,
            locations,
        })
    }
}

/// The format a checkpoint's magic names.
fn checkpoint_format(magic: &[u8]) -> Result<u32, CheckpointError> {
    let refuse = || CheckpointError::Magic {
        magic: magic.to_vec(),
    };
    if &magic[..6] != CHECKPOINT_MAGIC_PREFIX {
        return Err(refuse());
    }
    let found: u32 = std::str::from_utf8(&magic[6..8])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(refuse)?;
    if !(CHECKPOINT_FORMAT_MIN..=CHECKPOINT_FORMAT).contains(&found) {
        return Err(CheckpointError::Format { found });
    }
    Ok(found)
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], CheckpointError> {
        let taken = self
            .bytes
            .get(self.offset..self.offset.saturating_add(size))
            .ok_or(CheckpointError::Truncated {
                offset: self.offset,
            })?;
        self.offset += size;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn truncated(&self) -> CheckpointError {
        CheckpointError::Truncated {
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named() {
        assert_eq!(checkpoint_format(b"TLYSRV01").unwrap(), 1);
        assert_eq!(checkpoint_format(b"TLYSRV02").unwrap(), 2);
        let newer = checkpoint_format(b"TLYSRV07").unwrap_err();
        assert_eq!(
            newer.to_string(),
            "checkpoint format 7; this binary reads formats 1..=2"
        );
        assert!(matches!(
            checkpoint_format(b"NOTTALLY"),
            Err(CheckpointError::Magic { .. })
        ));
    }
}
