//! What the domain executes: one `Command` per Admin API mutation, with everything the front
//! chose for it (new ids, the idempotency key), and what comes back.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assets::{Asset, AssetCommand};
use crate::error::PaymentsError;
use crate::fees::{Fee, SetFee};
use crate::idempotency::IdempotencyKey;
use crate::incoming_payments::{IncomingPaymentCommand, IncomingPaymentView};
use crate::liquidity::LiquidityCommand;
use crate::outgoing_payments::{OutgoingPaymentCommand, OutgoingPaymentView};
use crate::peers::{Peer, PeerCommand};
use crate::quotes::{CreateQuote, QuoteView};
use crate::wallet_address_keys::WalletAddressKey;
use crate::wallet_addresses::{WalletAddress, WalletAddressCommand};
use crate::webhook_events::WebhookDeliveryResult;

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
    // New variants go last: logged commands name variants by position.
    /// Incoming payments and receivers.
    IncomingPayment(IncomingPaymentCommand),
    /// `createQuote`.
    Quote(CreateQuote),
    /// Outgoing payments, their funding and withdrawals, and the deprecated event liquidity.
    OutgoingPayment(OutgoingPaymentCommand),
    /// The delivery worker's report of one webhook POST.
    WebhookDelivery(WebhookDeliveryResult),
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
    /// The wallet address created or updated (boxed, as `Peer`, to keep outcomes small).
    WalletAddress(Box<WalletAddress>),
    /// The wallet address key created or revoked.
    WalletAddressKey(WalletAddressKey),
    /// `createWalletAddressWithdrawal`: the withdrawal (pending when it has a timeout).
    WalletAddressWithdrawal {
        /// The withdrawal's (and its transfer's) id.
        id: Uuid,
        /// The whole balance withdrawn.
        amount: u128,
        /// The address, as it is.
        wallet_address: Box<WalletAddress>,
    },
    /// `triggerWalletAddressEvents`: how many addresses were processed.
    WalletAddressEvents {
        /// Addresses processed, with or without an event.
        count: u32,
    },
    // New variants go last: stored outcomes name variants by position.
    /// The incoming payment created or changed.
    IncomingPayment(Box<IncomingPaymentView>),
    /// `createReceiver`: the incoming payment behind the receiver.
    Receiver(Box<IncomingPaymentView>),
    /// The quote created.
    Quote(Box<QuoteView>),
    /// The outgoing payment created or cancelled.
    OutgoingPayment(Box<OutgoingPaymentView>),
    /// A webhook delivery was recorded.
    WebhookDelivery,
}

/// A command's result, stored for idempotent retries.
pub type Outcome = Result<Success, PaymentsError>;
