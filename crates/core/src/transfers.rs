//! Where transfer bodies live, for the ledger's `TransferStore`: the events of a native
//! `create_transfers` request stay where they are in the mapped log; the transfers the payments
//! domain creates are kept in memory (they are derived again on replay, so they need no log
//! bytes of their own). One location per batch either way.

use std::ops::Range;

use tally_ledger::{
    Account, CreateAccountResult, CreateTransferResult, Ledger, Record, StoredEvent, Transfer,
    TransferStore,
};
use tally_payments::{LedgerPort, LedgerRead};

use crate::storage::LogBytes;

/// Set in `TransferBatch::position` when the batch's events are in `TransferLocations::domain`
/// (the rest of the position is then the index of its first event there).
const POSITION_DOMAIN: u64 = 1 << 63;

/// Where one batch's events are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransferBatch {
    pub(crate) first_handle: u64,
    /// Log position of the first event, or `POSITION_DOMAIN | index` into the domain's events.
    pub(crate) position: u64,
    pub(crate) count: u32,
    /// The batch's timestamp (its highest).
    pub(crate) timestamp: u64,
}

/// Handle → body location. A full native batch costs 32 bytes for 8,189 transfers.
#[derive(Default)]
pub(crate) struct TransferLocations {
    pub(crate) batches: Vec<TransferBatch>,
    /// Transfers the payments domain created, in handle order.
    pub(crate) domain: Vec<Transfer>,
}

impl TransferLocations {
    pub(crate) fn event_count(&self) -> u64 {
        self.batches
            .last()
            .map_or(0, |batch| batch.first_handle + u64::from(batch.count))
    }

    fn batch_of(&self, handle: u64) -> &TransferBatch {
        let index = self
            .batches
            .partition_point(|batch| batch.first_handle <= handle)
            - 1;
        let batch = &self.batches[index];
        assert!(handle < batch.first_handle + u64::from(batch.count));
        batch
    }

    /// Records a native batch whose events sit in the log at `position`.
    pub(crate) fn push_logged(
        &mut self,
        first_handle: u64,
        position: u64,
        count: u32,
        timestamp: u64,
    ) {
        assert_eq!(
            position & POSITION_DOMAIN,
            0,
            "log positions stay below 2^63"
        );
        self.push(TransferBatch {
            first_handle,
            position,
            count,
            timestamp,
        });
    }

    /// Records a batch of domain transfers, keeping their bodies.
    pub(crate) fn push_domain(&mut self, first_handle: u64, events: &[Transfer], timestamp: u64) {
        let position = POSITION_DOMAIN | self.domain.len() as u64;
        self.domain.extend_from_slice(events);
        self.push(TransferBatch {
            first_handle,
            position,
            count: u32::try_from(events.len()).expect("a domain batch is small"),
            timestamp,
        });
    }

    fn push(&mut self, batch: TransferBatch) {
        assert_eq!(batch.first_handle, self.event_count(), "handles are dense");
        assert!(batch.count > 0);
        assert!(self
            .batches
            .last()
            .is_none_or(|last| last.timestamp < batch.timestamp));
        self.batches.push(batch);
    }

    fn event_bytes<'a, L: LogBytes>(
        &'a self,
        log: &'a L,
        handle: u64,
    ) -> (&'a [u8], &'a TransferBatch) {
        let batch = self.batch_of(handle);
        let index = handle - batch.first_handle;
        if batch.position & POSITION_DOMAIN != 0 {
            let first = (batch.position & !POSITION_DOMAIN) as usize;
            let event = &self.domain[first + index as usize];
            (Transfer::slice_as_bytes(std::slice::from_ref(event)), batch)
        } else {
            let position = batch.position + index * Transfer::SIZE as u64;
            (log.bytes(position, Transfer::SIZE), batch)
        }
    }
}

/// The ledger's view of transfer bodies.
pub struct LogTransfers<'a, L: LogBytes> {
    pub(crate) log: &'a L,
    pub(crate) locations: &'a TransferLocations,
}

impl<L: LogBytes> TransferStore for LogTransfers<'_, L> {
    fn event_count(&self) -> u64 {
        self.locations.event_count()
    }

    fn event(&self, handle: u64) -> StoredEvent {
        let (bytes, batch) = self.locations.event_bytes(self.log, handle);
        let event = Transfer::read_from(bytes);
        let timestamp = tally_ledger::event_timestamp(
            &event,
            batch.timestamp,
            batch.count as usize,
            (handle - batch.first_handle) as usize,
        );
        StoredEvent { event, timestamp }
    }

    fn prefetch(&self, handle: u64) {
        // A guessed handle may not exist yet, so check first.
        if handle < self.locations.event_count() {
            let (bytes, _) = self.locations.event_bytes(self.log, handle);
            tally_ledger::prefetch_address(bytes.as_ptr());
        }
    }

    fn event_id(&self, handle: u64) -> u128 {
        let (bytes, _) = self.locations.event_bytes(self.log, handle);
        u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes"))
    }

    fn event_ids_for_each(&self, handles: Range<u64>, mut visit: impl FnMut(u64, u128)) {
        let batches = &self.locations.batches;
        let first = batches
            .partition_point(|batch| batch.first_handle + u64::from(batch.count) <= handles.start);
        for batch in &batches[first..] {
            if batch.first_handle >= handles.end {
                break;
            }
            let start = handles.start.max(batch.first_handle);
            let end = handles.end.min(batch.first_handle + u64::from(batch.count));
            let skip = (start - batch.first_handle) as usize;
            let count = (end - start) as usize;
            // One batch is one run of events: in the log (a batch never spans records) or among
            // the domain's transfers.
            if batch.position & POSITION_DOMAIN != 0 {
                let at = (batch.position & !POSITION_DOMAIN) as usize + skip;
                for (offset, event) in self.locations.domain[at..at + count].iter().enumerate() {
                    visit(start + offset as u64, event.id);
                }
            } else {
                let position = batch.position + (skip * Transfer::SIZE) as u64;
                let bytes = self.log.bytes(position, count * Transfer::SIZE);
                for (offset, event) in bytes.chunks_exact(Transfer::SIZE).enumerate() {
                    let id = u128::from_le_bytes(event[..16].try_into().expect("16 bytes"));
                    visit(start + offset as u64, id);
                }
            }
        }
    }
}

/// The payments domain's ledger: the real ledger, with each call stamped from the command's
/// reserved timestamps (`timestamp_next..=timestamp_max`).
pub(crate) struct DomainLedger<'a, L: LogBytes> {
    pub(crate) ledger: &'a mut Ledger,
    pub(crate) locations: &'a mut TransferLocations,
    pub(crate) log: &'a L,
    /// The last timestamp taken.
    pub(crate) timestamp: u64,
    pub(crate) timestamp_max: u64,
}

impl<L: LogBytes> DomainLedger<'_, L> {
    /// Takes `count` timestamps; returns the batch timestamp (the highest).
    fn timestamps_take(&mut self, count: usize) -> u64 {
        self.timestamp += count as u64;
        assert!(
            self.timestamp <= self.timestamp_max,
            "a command creates at most TIMESTAMPS_PER_COMMAND ledger events"
        );
        self.timestamp
    }
}

impl<L: LogBytes> LedgerRead for DomainLedger<'_, L> {
    fn account(&self, id: u128) -> Option<Account> {
        self.ledger.account(id).copied()
    }
}

impl<L: LogBytes> LedgerPort for DomainLedger<'_, L> {
    fn transfer(&self, id: u128) -> Option<Transfer> {
        let store = LogTransfers {
            log: self.log,
            locations: self.locations,
        };
        self.ledger
            .transfer_handle(&store, id)
            .map(|handle| self.ledger.transfer_at(&store, handle))
    }

    fn create_accounts(&mut self, accounts: &[Account], results: &mut Vec<CreateAccountResult>) {
        let timestamp = self.timestamps_take(accounts.len());
        let store = LogTransfers {
            log: self.log,
            locations: self.locations,
        };
        self.ledger
            .create_accounts(&store, timestamp, accounts, results);
    }

    fn create_transfers(
        &mut self,
        transfers: &[Transfer],
        results: &mut Vec<CreateTransferResult>,
    ) {
        let timestamp = self.timestamps_take(transfers.len());
        let first_handle = self.ledger.transfer_handle_next();
        self.locations
            .push_domain(first_handle, transfers, timestamp);
        let store = LogTransfers {
            log: self.log,
            locations: self.locations,
        };
        self.ledger
            .create_transfers(&store, timestamp, first_handle, transfers, results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);

    impl LogBytes for Bytes {
        fn bytes(&self, position: u64, size: usize) -> &[u8] {
            &self.0[position as usize..][..size]
        }
    }

    fn transfer(id: u128) -> Transfer {
        Transfer {
            id,
            ..Transfer::default()
        }
    }

    /// The sweep reads the ids that `event_id` reads one by one, over every sub-range, across
    /// logged and domain batches.
    #[test]
    fn ids_in_one_sweep_are_the_ids_one_by_one() {
        let logged: Vec<Transfer> = (100..105).map(transfer).collect();
        let mut log = vec![0u8; 256];
        let position = log.len() as u64;
        log.extend_from_slice(Transfer::slice_as_bytes(&logged));
        let log = Bytes(log);
        let mut locations = TransferLocations::default();
        locations.push_logged(0, position, 3, 10);
        locations.push_domain(3, &[transfer(200), transfer(201)], 20);
        locations.push_logged(5, position + 3 * Transfer::SIZE as u64, 2, 30);
        let store = LogTransfers {
            log: &log,
            locations: &locations,
        };
        let count = store.event_count();
        assert_eq!(count, 7);
        for start in 0..=count {
            for end in start..=count {
                let mut swept = Vec::new();
                store.event_ids_for_each(start..end, |handle, id| swept.push((handle, id)));
                let one_by_one: Vec<(u64, u128)> = (start..end)
                    .map(|handle| (handle, store.event_id(handle)))
                    .collect();
                assert_eq!(swept, one_by_one, "{start}..{end}");
            }
        }
    }
}
