//! What a read sees: the state after the turn's record, on the core thread. Reads never
//! change anything and never block; the front copies out what it needs.

use tally_journal::Journal;
use tally_ledger::{Account, AccountFilter, AccountFilterFlags, Transfer};
use tally_payments::{LedgerRead, Payments};

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

    /// The account with this id.
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.state.ledger.account(id)
    }

    /// Up to `limit` transfers that debit (`debits`) or credit `account`, oldest first.
    pub fn account_transfers(&self, account: u128, debits: bool, limit: u32) -> Vec<Transfer> {
        let side = if debits {
            AccountFilterFlags::DEBITS
        } else {
            AccountFilterFlags::CREDITS
        };
        let filter = AccountFilter {
            account_id: account,
            limit,
            flags: AccountFilterFlags(side),
            ..AccountFilter::zeroed()
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
}

// The domain's views (an incoming payment with its received amount, ...) read accounts
// through this.
impl LedgerRead for StateView<'_> {
    fn account(&self, id: u128) -> Option<Account> {
        self.state.ledger.account(id).copied()
    }
}
