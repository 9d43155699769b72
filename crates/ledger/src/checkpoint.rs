//! The ledger's state as bytes, for checkpoints: `encode` writes it, `decode` reads it back and
//! checks it before anything is trusted. Transfer bodies are not in it (they stay in the store);
//! the id indexes are, slot for slot, so a restart does not read every transfer id back.
//!
//! Layout: `MAGIC`, then sections in a fixed order, each integer little-endian, each list
//! prefixed by its u64 length. The caller (the journal) checksums the whole blob.

use std::collections::{BTreeMap, BTreeSet};

use crate::id_table::IdIndex;
use crate::ledger::{BalanceSnapshot, Ledger};
use crate::types::{Account, Record};

const MAGIC: &[u8; 8] = b"TLYLDG01";

/// Why `Ledger::decode_checkpoint` refused a blob. Any of these means the bytes cannot be
/// trusted as a ledger state: the caller must not serve from them.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// The blob does not start with `MAGIC` (not a ledger checkpoint, or another format version).
    BadMagic,
    /// The blob ends early, or a list length claims more than the bytes that remain.
    Truncated {
        /// Byte offset of the read that ran out.
        offset: usize,
    },
    /// Every field parsed, but the parts contradict each other; the text names the check.
    Inconsistent(&'static str),
}

impl core::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a ledger checkpoint (bad magic)"),
            Self::Truncated { offset } => write!(f, "ledger checkpoint truncated at byte {offset}"),
            Self::Inconsistent(what) => write!(f, "ledger checkpoint inconsistent: {what}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self
            .offset
            .checked_add(size)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(CheckpointError::Truncated {
            offset: self.offset,
        })?;
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u128(&mut self) -> Result<u128, CheckpointError> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    /// A list length, bounded by what the remaining bytes could hold at `item_size` each (so a
    /// corrupt length cannot make us allocate without limit).
    fn len(&mut self, item_size: usize) -> Result<usize, CheckpointError> {
        let len = self.u64()?;
        let remaining = (self.bytes.len() - self.offset) as u64;
        if len.saturating_mul(item_size.max(1) as u64) > remaining {
            return Err(CheckpointError::Truncated {
                offset: self.offset,
            });
        }
        Ok(len as usize)
    }
}

impl Ledger {
    /// Appends the whole state to `out` (accounts, per-account lists, id indexes, per-handle
    /// states, balancing amounts, expiries, retired ids). Deterministic: equal states encode to
    /// equal bytes. Transfer bodies are not included: a restore needs the same store.
    pub fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.0.extend_from_slice(MAGIC);
        w.u64(self.timestamp_last);
        w.u64(self.transfer_count);
        w.u64(self.transfer_timestamp_max);
        w.len(self.accounts.len());
        w.0.extend_from_slice(Account::slice_as_bytes(&self.accounts));
        for (transfers, history) in self.account_transfers.iter().zip(&self.account_history) {
            w.len(transfers.len());
            transfers.iter().for_each(|&handle| w.u64(handle));
            w.len(history.len());
            for row in history {
                for value in [
                    row.debits_pending,
                    row.debits_posted,
                    row.credits_pending,
                    row.credits_posted,
                ] {
                    w.u128(value);
                }
            }
        }
        for index in [&self.account_index, &self.transfer_index] {
            w.len(index.slots().len());
            index.slots().iter().for_each(|&slot| w.u64(slot));
        }
        w.len(self.transfer_state.len());
        w.0.extend_from_slice(&self.transfer_state);
        w.len(self.balancing_amounts.len());
        for (&handle, &amount) in &self.balancing_amounts {
            w.u64(handle);
            w.u128(amount);
        }
        w.len(self.expiries.len());
        for &(expires_at, handle) in &self.expiries {
            w.u64(expires_at);
            w.u64(handle);
        }
        w.len(self.orphan_ids.len());
        self.orphan_ids.iter().for_each(|&id| w.u128(id));
    }

    /// Reads back what `encode_checkpoint` wrote and checks its internal consistency before
    /// returning it. Never panics on corrupt input: every length is bounded by the bytes left.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Ledger, CheckpointError> {
        let mut r = Reader { bytes, offset: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(CheckpointError::BadMagic);
        }
        let mut ledger = Ledger::new();
        ledger.timestamp_last = r.u64()?;
        ledger.transfer_count = r.u64()?;
        ledger.transfer_timestamp_max = r.u64()?;
        let account_count = r.len(Account::SIZE)?;
        let account_bytes = r.take(account_count * Account::SIZE)?;
        ledger.accounts = account_bytes
            .chunks_exact(Account::SIZE)
            .map(Account::read_from)
            .collect();
        for _ in 0..account_count {
            let count = r.len(8)?;
            ledger
                .account_transfers
                .push((0..count).map(|_| r.u64()).collect::<Result<_, _>>()?);
            let count = r.len(64)?;
            let mut rows = Vec::with_capacity(count);
            for _ in 0..count {
                rows.push(BalanceSnapshot {
                    debits_pending: r.u128()?,
                    debits_posted: r.u128()?,
                    credits_pending: r.u128()?,
                    credits_posted: r.u128()?,
                });
            }
            ledger.account_history.push(rows);
        }
        let mut indexes = Vec::with_capacity(2);
        for _ in 0..2 {
            let count = r.len(8)?;
            let slots = (0..count).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            indexes.push(
                IdIndex::from_slots(slots)
                    .ok_or(CheckpointError::Inconsistent("id index shape"))?,
            );
        }
        ledger.transfer_index = indexes.pop().expect("two indexes");
        ledger.account_index = indexes.pop().expect("two indexes");
        let count = r.len(1)?;
        ledger.transfer_state = r.take(count)?.to_vec();
        let count = r.len(24)?;
        let mut balancing_amounts = BTreeMap::new();
        for _ in 0..count {
            balancing_amounts.insert(r.u64()?, r.u128()?);
        }
        ledger.balancing_amounts = balancing_amounts;
        let count = r.len(16)?;
        let mut expiries = BTreeSet::new();
        for _ in 0..count {
            expiries.insert((r.u64()?, r.u64()?));
        }
        ledger.expiries = expiries;
        let count = r.len(16)?;
        ledger.orphan_ids = (0..count).map(|_| r.u128()).collect::<Result<_, _>>()?;
        if r.offset != bytes.len() {
            return Err(CheckpointError::Inconsistent("trailing bytes"));
        }
        ledger.check_consistent()?;
        Ok(ledger)
    }

    /// The cross-checks a decoded state must pass before it is served (the read-back half of
    /// the assertions around the checkpoint).
    fn check_consistent(&self) -> Result<(), CheckpointError> {
        if self.account_index.len() != self.accounts.len() {
            return Err(CheckpointError::Inconsistent("account index count"));
        }
        if self.transfer_index.len() as u64 != self.transfer_count {
            return Err(CheckpointError::Inconsistent("transfer index count"));
        }
        let created = self
            .transfer_state
            .iter()
            .filter(|&&state| state & 0x80 != 0)
            .count() as u64;
        if created != self.transfer_count {
            return Err(CheckpointError::Inconsistent("transfer states"));
        }
        let handle_end = self.transfer_state.len() as u64;
        let in_range = |handle: &u64| *handle < handle_end;
        if !self.account_transfers.iter().flatten().all(in_range)
            || !self.expiries.iter().all(|(_, handle)| in_range(handle))
            || !self.balancing_amounts.keys().all(in_range)
        {
            return Err(CheckpointError::Inconsistent(
                "handle beyond the transfer states",
            ));
        }
        let sorted = self
            .accounts
            .windows(2)
            .all(|pair| pair[0].timestamp < pair[1].timestamp);
        if !sorted {
            return Err(CheckpointError::Inconsistent(
                "accounts out of timestamp order",
            ));
        }
        Ok(())
    }
}
