//! The domain's view of the ledger: the core implements it over the real `Ledger`, tests over a
//! plain one. Every call is a ledger operation applied at once, in order, inside the command's
//! reserved timestamps.

use tally_ledger::{Account, CreateAccountResult, CreateTransferResult, Transfer};

/// What the domain's reads need of the ledger: the front's queries run on the core thread
/// through this, as commands do through `LedgerPort`.
pub trait LedgerRead {
    /// The account with this id, if it exists.
    fn account(&self, id: u128) -> Option<Account>;
}

/// What the domain may ask of the ledger.
pub trait LedgerPort: LedgerRead {
    /// The transfer with this id, if it exists.
    fn transfer(&self, id: u128) -> Option<Transfer>;
    /// Applies a `create_accounts` batch; appends one result per account, in order.
    fn create_accounts(&mut self, accounts: &[Account], results: &mut Vec<CreateAccountResult>);
    /// Applies a `create_transfers` batch; appends one result per transfer, in order.
    fn create_transfers(&mut self, transfers: &[Transfer], results: &mut Vec<CreateTransferResult>);
}
