//! The Rafiki domain as deterministic state over the ledger.
//!
//! `Payments` holds Rafiki's objects (assets, fees, peers, wallet addresses and their keys,
//! idempotency keys) and changes only through `Payments::execute`, one `Command` at a time, on
//! the core thread. Money lives in the ledger alone: every liquidity figure is read from a ledger
//! account (invariant 7 of `design.md`), and the domain reaches the ledger through `LedgerPort`.
//!
//! Like `tally-ledger`, this crate promises no clock, randomness, I/O or hash-map iteration
//! order: a command carries everything non-deterministic (new ids, the caller's choices), the
//! core supplies the timestamp, and replaying the journal rebuilds the same state byte for byte.

mod accounts;
mod amount;
mod assets;
mod command;
mod error;
mod fees;
mod idempotency;
mod incoming_payments;
mod liquidity;
mod outgoing_payments;
mod page;
mod peers;
mod port;
mod quotes;
mod state;
mod wallet_address_keys;
mod wallet_addresses;
mod webhook_events;

pub use crate::accounts::{
    asset_liquidity_account_id, liquidity_of, settlement_account_id, AccountCode, TransferCode,
};
pub use crate::amount::{Amount, AmountInput};
pub use crate::assets::{Asset, AssetCommand, CreateAsset, DeleteAsset, UpdateAsset};
pub use crate::command::{Command, Mutation, Outcome, Success, TIMESTAMPS_PER_COMMAND};
pub use crate::error::{
    AssetError, AutoPeeringError, FeeError, IncomingPaymentError, LedgerStatus, LiquidityError,
    OutgoingPaymentError, PaymentsError, PeerError, QuoteError, WalletAddressError,
    WalletAddressKeyError,
};
pub use crate::fees::{Fee, FeeType, SetFee, BASIS_POINTS_MAX};
pub use crate::idempotency::{Fingerprint, IdempotencyKey, IDEMPOTENCY_KEY_LIFETIME_NS};
pub use crate::incoming_payments::{
    CreateIncomingPayment, CreateReceiver, IncomingPayment, IncomingPaymentCommand,
    IncomingPaymentState, IncomingPaymentView, DEACTIVATION_GRACE_PERIOD_NS,
    INCOMING_PAYMENT_COMPLETED, INCOMING_PAYMENT_CREATED, INCOMING_PAYMENT_EXPIRED,
    INCOMING_PAYMENT_EXPIRY_MAX_NS,
};
pub use crate::liquidity::{
    Deposit, LiquidityCommand, LiquidityOwner, Withdrawal, WithdrawalResolve,
};
pub use crate::outgoing_payments::{
    OutgoingPayment, OutgoingPaymentCommand, OutgoingPaymentState, OutgoingPaymentView,
    ASSET_LIQUIDITY_LOW, OUTGOING_PAYMENT_COMPLETED, OUTGOING_PAYMENT_CREATED,
    OUTGOING_PAYMENT_FAILED,
};
pub use crate::page::{Page, PageRequest, SortOrder};
pub use crate::peers::{
    is_valid_http_url, is_valid_ilp_address, CreateOrUpdatePeerByUrl, CreatePeer, DeletePeer,
    HttpOutgoing, Peer, PeerCommand, PeerHttp, UpdatePeer, ILP_ADDRESS_LENGTH_MAX,
};
pub use crate::port::{LedgerPort, LedgerRead};
pub use crate::quotes::{CreateQuote, ExchangeRate, Quote, QuoteView, Rates, QUOTE_LIFESPAN_NS};
pub use crate::state::{DecodeError, Payments};
pub use crate::wallet_address_keys::{
    Alg, CreateWalletAddressKey, Crv, Jwk, Kty, RevokeWalletAddressKey, WalletAddressKey,
};
pub use crate::wallet_addresses::{
    wallet_address_url_valid, AdditionalProperty, CreateWalletAddress,
    CreateWalletAddressWithdrawal, TriggerWalletAddressEvents, UpdateWalletAddress, WalletAddress,
    WalletAddressCommand, WalletAddressStatus, FORBIDDEN_PATHS,
};
pub use crate::webhook_events::{
    event_id, EventData, WebhookDeliveryResult, WebhookEvent, WebhookWithdrawal,
    WALLET_ADDRESS_WEB_MONETIZATION,
};
pub use uuid::Uuid;
