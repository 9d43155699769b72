//! Wallet addresses and their keys (`rafiki-admin-api.md` §7.4).

use serde::{Deserialize, Serialize};

use crate::command::Outcome;
use crate::port::LedgerPort;
use crate::state::Payments;

/// The wallet address mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletAddressCommand {}

impl Payments {
    pub(crate) fn execute_wallet_address<P: LedgerPort>(
        &mut self,
        _port: &mut P,
        command: &WalletAddressCommand,
        _timestamp: u64,
    ) -> Outcome {
        match *command {}
    }
}
