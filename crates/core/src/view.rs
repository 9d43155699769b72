//! What a read sees: the state after the turn's record, on the core thread. Reads never
//! change anything and never block; the front copies out what it needs.

use tally_journal::Journal;
use tally_ledger::{Account, Ledger, Transfer};
use tally_payments::Payments;

use crate::state::State;
use crate::storage::JournalBytes;

/// Read access to the state, handed to a `Read` on the core thread.
pub struct StateView<'a> {
    state: &'a State,
    log: JournalBytes<'a>,
}

impl<'a> StateView<'a> {
    pub(crate) fn new(state: &'a State, journal: &'a Journal) -> StateView<'a> {
        StateView {
            state,
            log: JournalBytes(journal),
        }
    }

    /// The payments domain.
    pub fn payments(&self) -> &Payments {
        &self.state.payments
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.state.ledger
    }

    /// The account with this id.
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.state.ledger.account(id)
    }

    /// The transfer with this id.
    pub fn transfer(&self, id: u128) -> Option<Transfer> {
        let store = self.state.transfers(&self.log);
        self.state
            .ledger
            .transfer_handle(&store, id)
            .map(|handle| self.state.ledger.transfer_at(&store, handle))
    }

    /// Up to `limit` transfers of an account, debits and credits, oldest first.
    pub fn account_transfers(&self, account: u128, limit: u32) -> Vec<Transfer> {
        let filter = tally_ledger::AccountFilter {
            account_id: account,
            limit,
            flags: tally_ledger::AccountFilterFlags(
                tally_ledger::AccountFilterFlags::DEBITS
                    | tally_ledger::AccountFilterFlags::CREDITS,
            ),
            ..tally_ledger::AccountFilter::zeroed()
        };
        let mut found = Vec::new();
        self.state.ledger.get_account_transfers(
            &self.state.transfers(&self.log),
            &filter,
            limit,
            &mut found,
        );
        found
    }

    /// The core timestamp of the last applied entry (ns since the Unix epoch).
    pub fn timestamp(&self) -> u64 {
        self.state.timestamp
    }
}
