//! Peers (`rafiki-admin-api.md` §7.2).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::Outcome;
use crate::port::LedgerPort;
use crate::state::Payments;

/// The peer mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerCommand {}

impl Payments {
    pub(crate) fn execute_peer<P: LedgerPort>(
        &mut self,
        _port: &mut P,
        command: &PeerCommand,
        _timestamp: u64,
    ) -> Outcome {
        match *command {}
    }

    /// A peer's liquidity account id, and its asset's id and ledger.
    pub(crate) fn peer_liquidity_account(&self, _id: Uuid) -> Option<(u128, (Uuid, u32))> {
        None
    }
}
