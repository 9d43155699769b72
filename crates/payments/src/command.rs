//! What the domain executes: one `Command` per Admin API mutation, with everything the front
//! chose for it (new ids, the idempotency key), and what comes back.

use serde::{Deserialize, Serialize};

use crate::assets::{Asset, AssetCommand};
use crate::error::PaymentsError;
use crate::fees::{Fee, SetFee};
use crate::idempotency::IdempotencyKey;
use crate::liquidity::LiquidityCommand;
use crate::peers::{Peer, PeerCommand};
use crate::wallet_addresses::WalletAddressCommand;

/// Timestamps one command reserves: the ledger events it may create (each takes one), with
/// room to spare. The core reserves exactly this many whatever the command does, so that the
/// timestamps of later entries never depend on a command's outcome.
pub const TIMESTAMPS_PER_COMMAND: u64 = 16;

/// One Admin API mutation, as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Present when the client sent an `idempotencyKey`.
    pub idempotency: Option<IdempotencyKey>,
    /// What to do.
    pub mutation: Mutation,
}

/// The mutations, by area; each area's module executes its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    /// Assets.
    Asset(AssetCommand),
    /// `setFee`.
    Fee(SetFee),
    /// Deposits, withdrawals and their resolution.
    Liquidity(LiquidityCommand),
    /// Peers.
    Peer(PeerCommand),
    /// Wallet addresses and their keys.
    WalletAddress(WalletAddressCommand),
}

/// What a successful command returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Success {
    /// The asset created, updated, deleted or re-activated.
    Asset(Asset),
    /// The fee row inserted.
    Fee(Fee),
    /// A liquidity mutation succeeded.
    Liquidity,
    /// The peer created or updated (`createPeer`, `updatePeer`, `createOrUpdatePeerByUrl`);
    /// boxed, as the largest success, so that every stored outcome stays small.
    Peer(Box<Peer>),
    /// `deletePeer` succeeded.
    PeerDeleted,
}

/// A command's result, stored for idempotent retries.
pub type Outcome = Result<Success, PaymentsError>;
