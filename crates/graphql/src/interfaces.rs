//! Rafiki's two interfaces, `Model` and `BasePayment`, and the `LiquidityError` enum: no field
//! returns them, but they are part of v1.2.1's schema, so a client may select through them
//! (`... on Model { id }`) or read them by introspection. Each is registered with the schema
//! (`schema_builder`); each variant resolves a field with its own object's resolver.

use async_graphql::{Enum, Interface, ID};

use crate::accounting::AccountingTransfer;
use crate::assets::{Asset, Fee};
use crate::payments::{IncomingPayment, OutgoingPayment, Payment};
use crate::peers::Peer;
use crate::scalars::JsonObject;
use crate::wallet_addresses::{WalletAddress, WalletAddressKey, WebhookEvent};

/// An entity with an id and a creation time.
#[derive(Interface)]
#[graphql(
    field(name = "id", ty = "ID", desc = "Unique identifier for the entity."),
    field(
        name = "created_at",
        ty = "String",
        desc = "The date and time that the entity was created."
    )
)]
pub(crate) enum Model {
    Asset(Asset),
    Peer(Peer),
    WalletAddress(WalletAddress),
    IncomingPayment(IncomingPayment),
    OutgoingPayment(OutgoingPayment),
    Payment(Payment),
    AccountingTransfer(AccountingTransfer),
    WalletAddressKey(WalletAddressKey),
    WebhookEvent(WebhookEvent),
    Fee(Fee),
}

/// What incoming and outgoing payments share.
// Two fields of one type read to clippy as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface)]
#[graphql(
    field(name = "id", ty = "ID", desc = "Unique identifier for the payment."),
    field(
        name = "wallet_address_id",
        ty = "ID",
        desc = "Unique identifier of the wallet address under which the payment was created."
    ),
    field(
        name = "metadata",
        ty = "Option<JsonObject>",
        desc = "Additional metadata associated with the payment."
    ),
    field(
        name = "created_at",
        ty = "String",
        desc = "The date and time that the payment was created."
    ),
    field(
        name = "client",
        ty = "Option<String>",
        desc = "Information about the wallet address of the Open Payments client that created the payment."
    )
)]
pub(crate) enum BasePayment {
    IncomingPayment(IncomingPayment),
    OutgoingPayment(OutgoingPayment),
    Payment(Payment),
}

/// Rafiki's liquidity transfer errors, as v1.2.1 declares them (no field returns the enum).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(rename_items = "PascalCase")]
pub(crate) enum LiquidityError {
    /// The transfer has already been posted.
    AlreadyPosted,
    /// The transfer has already been voided.
    AlreadyVoided,
    /// The amount specified for the transfer is zero.
    AmountZero,
    /// Insufficient balance to complete the transfer.
    InsufficientBalance,
    /// The provided ID for the transfer is invalid.
    InvalidId,
    /// A transfer with the same ID already exists.
    TransferExists,
    /// The specified asset could not be found.
    UnknownAsset,
    /// The specified incoming payment could not be found.
    UnknownIncomingPayment,
    /// The specified payment could not be found.
    UnknownPayment,
    /// The specified wallet address could not be found.
    UnknownWalletAddress,
    /// The specified peer could not be found.
    UnknownPeer,
    /// The specified transfer could not be found.
    UnknownTransfer,
}
