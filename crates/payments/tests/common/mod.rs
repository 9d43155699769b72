//! Shared by the integration tests: a `LedgerPort` over a plain in-memory `Ledger` and
//! `MemoryStore`, and a `Harness` that stamps each command the way the core does (the command's
//! own timestamp, then its reserved ledger timestamps), so tests drive `Payments::execute` with
//! a real ledger underneath and read balances back from it.
#![allow(dead_code)]

use tally_ledger::{
    Account, CreateAccountResult, CreateTransferResult, Ledger, MemoryStore, Transfer,
};
use tally_payments::{
    Asset, AssetCommand, Command, CreateAsset, LedgerPort, LedgerRead, Mutation, Outcome, Payments,
    Success, Uuid, TIMESTAMPS_PER_COMMAND,
};

/// A UUID v4 made from a small number (`n < 2^60`), so that tests name their ids.
pub(crate) fn uuid(n: u128) -> Uuid {
    assert!(n < 1 << 60);
    let version_4 = 0x4 << 76;
    let variant_rfc = 0x8 << 60;
    let low = n & ((1 << 60) - 1);
    let high = (n >> 60) << 80;
    Uuid::from_u128(high | version_4 | variant_rfc | low)
}

/// The ledger and its transfer bodies, both in memory.
pub(crate) struct MemoryPort {
    /// The ledger.
    pub(crate) ledger: Ledger,
    /// Every transfer event submitted.
    pub(crate) store: MemoryStore,
    /// The timestamp the next ledger event gets.
    timestamp_next: u64,
}

impl Default for MemoryPort {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPort {
    /// An empty ledger.
    pub(crate) fn new() -> Self {
        Self {
            ledger: Ledger::new(),
            store: MemoryStore::new(),
            timestamp_next: 1,
        }
    }

    /// The next ledger event is stamped `timestamp` (above every earlier one).
    pub(crate) fn stamp_from(&mut self, timestamp: u64) {
        assert!(timestamp > self.ledger.timestamp_last());
        self.timestamp_next = timestamp;
    }

    /// The timestamp the next ledger event would get.
    pub(crate) fn timestamp_next(&self) -> u64 {
        self.timestamp_next
    }

    /// Reserves `count` event timestamps; returns the batch's (the highest).
    fn stamp(&mut self, count: usize) -> u64 {
        let count = count.max(1) as u64;
        self.timestamp_next += count;
        self.timestamp_next - 1
    }

    /// What a failed command must leave as it was: every account and the transfer count.
    pub(crate) fn snapshot(&self) -> (Vec<Account>, u64) {
        (
            self.ledger.accounts().to_vec(),
            self.ledger.transfer_count(),
        )
    }
}

impl LedgerRead for MemoryPort {
    fn account(&self, id: u128) -> Option<Account> {
        self.ledger.account(id).copied()
    }
}

impl LedgerPort for MemoryPort {
    fn transfer(&self, id: u128) -> Option<Transfer> {
        self.ledger.transfer(&self.store, id)
    }

    fn create_accounts(&mut self, accounts: &[Account], results: &mut Vec<CreateAccountResult>) {
        let timestamp = self.stamp(accounts.len());
        self.ledger
            .create_accounts(&self.store, timestamp, accounts, results);
    }

    fn create_transfers(
        &mut self,
        transfers: &[Transfer],
        results: &mut Vec<CreateTransferResult>,
    ) {
        let timestamp = self.stamp(transfers.len());
        let first = self.store.append_batch(timestamp, transfers);
        self.ledger
            .create_transfers(&self.store, timestamp, first, transfers, results);
    }
}

/// `Payments` over a `MemoryPort`, with a clock.
pub(crate) struct Harness {
    /// The domain state.
    pub(crate) payments: Payments,
    /// The ledger underneath.
    pub(crate) port: MemoryPort,
    /// The timestamp of the last command.
    pub(crate) now: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Empty state and ledger.
    pub(crate) fn new() -> Self {
        Self {
            payments: Payments::default(),
            port: MemoryPort::new(),
            now: 1_000_000_000,
        }
    }

    /// Executes a mutation without an idempotency key.
    pub(crate) fn execute(&mut self, mutation: Mutation) -> Outcome {
        self.execute_command(&Command {
            idempotency: None,
            mutation,
        })
    }

    /// Executes a command as the core would: its own timestamp, then up to
    /// `TIMESTAMPS_PER_COMMAND - 1` ledger events after it.
    pub(crate) fn execute_command(&mut self, command: &Command) -> Outcome {
        self.now += TIMESTAMPS_PER_COMMAND;
        let timestamp = self.now;
        self.port.stamp_from(timestamp + 1);
        let outcome = self.payments.execute(&mut self.port, command, timestamp);
        assert!(self.port.timestamp_next() <= timestamp + TIMESTAMPS_PER_COMMAND);
        outcome
    }

    /// Creates an asset with id `uuid(n)`.
    pub(crate) fn create_asset(&mut self, n: u128, code: &str, scale: u8) -> Asset {
        let outcome = self.execute(Mutation::Asset(AssetCommand::Create(CreateAsset {
            id: uuid(n),
            code: code.to_owned(),
            scale,
            withdrawal_threshold: None,
            liquidity_threshold: None,
        })));
        match outcome {
            Ok(Success::Asset(asset)) => asset,
            other => panic!("createAsset: {other:?}"),
        }
    }

    /// The liquidity of an account, `None` if it does not exist. Computed here from the
    /// balances (`credits_posted − debits_posted − debits_pending`), apart from the domain.
    pub(crate) fn liquidity(&self, account: u128) -> Option<u128> {
        let account = self.port.account(account)?;
        let debits = account.debits_posted + account.debits_pending;
        let liquidity = account.credits_posted.checked_sub(debits);
        Some(liquidity.expect("a liquidity account never goes below zero"))
    }

    /// The domain state and the ledger's accounts and transfer count, to compare before and
    /// after a command that must change nothing.
    pub(crate) fn snapshot(&self) -> (Payments, (Vec<Account>, u64)) {
        (self.payments.clone(), self.port.snapshot())
    }
}
