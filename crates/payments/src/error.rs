//! The domain's errors: one enum per area, with Rafiki's names, gathered in `PaymentsError`.
//! They carry no messages: the GraphQL front maps each to Rafiki's `extensions.code` and message
//! in one place. Every error is a value that can be stored (an idempotent retry returns it).

use serde::{Deserialize, Serialize};
use tally_ledger::CreateTransferStatus;

/// Every way a command can fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PaymentsError {
    /// An asset command failed.
    #[error("asset: {0:?}")]
    Asset(AssetError),
    /// A deposit, withdrawal, post or void failed.
    #[error("liquidity: {0:?}")]
    Liquidity(LiquidityError),
    /// `setFee` failed.
    #[error("fee: {0:?}")]
    Fee(FeeError),
    /// `createPeer`, `updatePeer` or `deletePeer` failed.
    #[error("peer: {0:?}")]
    Peer(PeerError),
    /// `createOrUpdatePeerByUrl` failed.
    #[error("auto-peering: {0:?}")]
    AutoPeering(AutoPeeringError),
    /// A wallet address command failed.
    #[error("wallet address: {0:?}")]
    WalletAddress(WalletAddressError),
    /// `createWalletAddressKey` or `revokeWalletAddressKey` failed.
    #[error("wallet address key: {0:?}")]
    WalletAddressKey(WalletAddressKeyError),
    /// The idempotency key was used before with another mutation or other arguments.
    #[error("idempotency key {key} was used with different arguments")]
    IdempotencyKeyReused {
        /// The key as the client sent it.
        key: String,
    },
    // New variants go last: stored outcomes (idempotency keys in checkpoints) name variants
    // by position.
    /// Incoming payments and receivers.
    #[error("incoming payment: {0:?}")]
    IncomingPayment(IncomingPaymentError),
    /// Quotes.
    #[error("quote: {0:?}")]
    Quote(QuoteError),
    /// Outgoing payments.
    #[error("outgoing payment: {0:?}")]
    OutgoingPayment(OutgoingPaymentError),
}

/// Rafiki's `AssetError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssetError {
    /// No asset with that id (or it is deleted).
    UnknownAsset,
    /// An asset with that code and scale exists.
    DuplicateAsset,
    /// A peer or wallet address uses the asset.
    CannotDeleteInUseAsset,
}

/// Rafiki's `LiquidityError` and the accounting layer's `TransferError`, in one enum: a
/// liquidity mutation reports either, and where both tables name an error they give it the
/// same code and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiquidityError {
    /// The amount is zero.
    AmountZero,
    /// The transfer or withdrawal id is not a UUID v4.
    InvalidId,
    /// No such asset.
    UnknownAsset,
    /// No such peer.
    UnknownPeer,
    /// No such wallet address.
    UnknownWalletAddress,
    /// A transfer with that id exists (or failed before: its id is spent).
    TransferExists,
    /// The source account would go below zero.
    InsufficientBalance,
    /// A settlement account would hold more credits than debits.
    InsufficientDebitBalance,
    /// No pending transfer with that id.
    UnknownTransfer,
    /// The pending transfer was posted.
    AlreadyPosted,
    /// The pending transfer was voided.
    AlreadyVoided,
    /// The pending transfer timed out.
    TransferExpired,
    /// The timeout does not fit the ledger's seconds field.
    InvalidTimeout,
    /// Debit and credit accounts are the same.
    SameAccounts,
    /// The accounts are on different ledgers.
    DifferentAssets,
    /// The debit account does not exist.
    UnknownSourceAccount,
    /// The credit account does not exist.
    UnknownDestinationAccount,
    /// The ledger refused the transfer for a reason Rafiki has no name for. Rafiki answers 500
    /// or, for peer deposits, swallows it; Tally reports the ledger's status.
    Ledger(LedgerStatus),
}

/// A ledger status, kept as its wire value so that stored outcomes stay decodable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus(pub u32);

impl LedgerStatus {
    /// The status this value names, if any.
    pub fn status(self) -> Option<CreateTransferStatus> {
        CreateTransferStatus::from_u32(self.0)
    }
}

/// Rafiki's `FeeError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeError {
    /// No such asset.
    UnknownAsset,
    /// Basis points outside 0..=10000.
    InvalidBasisPointFee,
}

/// Rafiki's `PeerError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerError {
    /// An incoming token is used by another peer, or twice in the input.
    DuplicateIncomingToken,
    /// A peer of the asset has that static ILP address.
    DuplicatePeer,
    /// The static ILP address fails ilp-packet's rule.
    InvalidStaticIlpAddress,
    /// The outgoing endpoint is not an `http`/`https` URL with a proper hostname.
    #[allow(clippy::upper_case_acronyms)]
    InvalidHTTPEndpoint,
    /// No such asset (or it is deleted).
    UnknownAsset,
    /// No such peer.
    UnknownPeer,
    /// The initial deposit would fail.
    InvalidInitialLiquidity,
}

/// Rafiki's `AutoPeeringError`. The domain raises `UnknownAsset`,
/// `InvalidPeerIlpConfiguration`, `InvalidPeeringRequest` and `LiquidityError`; the front raises
/// the others from the peering request's HTTP outcome, before any command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoPeeringError {
    /// The other instance says this instance's ILP configuration is wrong.
    InvalidIlpConfiguration,
    /// The other instance's address or connector URL is invalid.
    InvalidPeerIlpConfiguration,
    /// No such asset.
    UnknownAsset,
    /// The other instance has no asset with this code and scale.
    PeerUnsupportedAsset,
    /// The peer URL does not resolve or refuses the connection.
    InvalidPeerUrl,
    /// Any other failure of the peering request, or of creating or updating the peer.
    InvalidPeeringRequest,
    /// The deposit of `liquidityToDeposit` would fail.
    LiquidityError,
}

/// Rafiki's `WalletAddressError`, and the one plain error of `createWalletAddressWithdrawal`.
/// The withdrawal's other errors are `LiquidityError`s, as in Rafiki.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletAddressError {
    /// Not an https URL with a path, or its path names an Open Payments resource
    /// (BAD_USER_INPUT "invalid url").
    InvalidUrl,
    /// No such asset, or it is deleted (BAD_USER_INPUT "unknown asset", not NOT_FOUND).
    UnknownAsset,
    /// No such wallet address (NOT_FOUND "unknown wallet address").
    UnknownWalletAddress,
    /// Another address has this URL, compared lower-cased
    /// (DUPLICATE "Duplicate wallet address found with the same url").
    DuplicateWalletAddress,
    /// `createWalletAddressWithdrawal` on an address whose Web Monetization account was never
    /// created: Rafiki throws a plain error (INTERNAL_SERVER_ERROR
    /// "missing incoming payment wallet address").
    MissingLedgerAccount,
}

/// Rafiki's `WalletAddressKeyError`, and the key mutations' other failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletAddressKeyError {
    /// The address has a key with this `kid` that is not revoked (DUPLICATE "Key already exists").
    DuplicateKey,
    /// `createWalletAddressKey` for an unknown address: Rafiki's insert fails its foreign key
    /// and answers INTERNAL_SERVER_ERROR.
    UnknownWalletAddress,
    /// `revokeWalletAddressKey` of an unknown key (NOT_FOUND "Wallet address key not found").
    UnknownKey,
}

impl From<WalletAddressError> for PaymentsError {
    fn from(error: WalletAddressError) -> Self {
        PaymentsError::WalletAddress(error)
    }
}

impl From<WalletAddressKeyError> for PaymentsError {
    fn from(error: WalletAddressKeyError) -> Self {
        PaymentsError::WalletAddressKey(error)
    }
}

impl From<PeerError> for PaymentsError {
    fn from(error: PeerError) -> Self {
        PaymentsError::Peer(error)
    }
}

impl From<AutoPeeringError> for PaymentsError {
    fn from(error: AutoPeeringError) -> Self {
        PaymentsError::AutoPeering(error)
    }
}

impl From<AssetError> for PaymentsError {
    fn from(error: AssetError) -> Self {
        PaymentsError::Asset(error)
    }
}

impl From<LiquidityError> for PaymentsError {
    fn from(error: LiquidityError) -> Self {
        PaymentsError::Liquidity(error)
    }
}

impl From<FeeError> for PaymentsError {
    fn from(error: FeeError) -> Self {
        PaymentsError::Fee(error)
    }
}

/// Rafiki's `IncomingPaymentError`, and what Tally adds for receivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncomingPaymentError {
    /// No such wallet address.
    UnknownWalletAddress,
    /// `incomingAmount` zero or in another asset.
    InvalidAmount,
    /// No such incoming payment.
    UnknownPayment,
    /// `expiresAt` not in the future or beyond the maximum.
    InvalidExpiry,
    /// Not PENDING (approve, cancel).
    WrongState,
    /// The wallet address is deactivated.
    InactiveWalletAddress,
    /// Already approved or cancelled.
    AlreadyActioned,
    /// `createReceiver` for a wallet address URL this instance does not hold: Tally cannot
    /// create incoming payments on other instances yet.
    RemoteWalletAddress,
}

/// Rafiki's `QuoteErrorCode`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuoteError {
    /// No such wallet address.
    UnknownWalletAddress,
    /// An amount is zero, in the wrong asset, both given, or more than the receiver takes.
    InvalidAmount,
    /// The receiver is unknown, closed, or needs an amount it lacks.
    InvalidReceiver,
    /// The wallet address is deactivated.
    InactiveWalletAddress,
    /// Nothing would arrive; the smallest debit that would deliver something.
    NonPositiveReceiveAmount {
        /// Rafiki's `extensions.details.minSendAmount`.
        min_send_amount: Option<crate::amount::Amount>,
    },
    /// No rate between the two assets.
    CouldNotFetchRates,
}

/// Rafiki's `OutgoingPaymentError` (the ledger's errors while funding are `LiquidityError`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutgoingPaymentError {
    /// No such wallet address.
    UnknownWalletAddress,
    /// No such payment.
    UnknownPayment,
    /// No such quote.
    UnknownQuote,
    /// Not in the state the mutation needs.
    WrongState,
    /// The quote is expired, used, another address's, or its receiver closed.
    InvalidQuote,
    /// The wallet address is deactivated.
    InactiveWalletAddress,
    /// From the quote: an amount is invalid.
    InvalidAmount,
    /// From the quote: nothing would arrive.
    NegativeReceiveAmount,
    /// From the quote: the receiver is invalid.
    InvalidReceiver,
    /// From the quote: no rate between the assets.
    CouldNotFetchRates,
}

impl From<IncomingPaymentError> for PaymentsError {
    fn from(error: IncomingPaymentError) -> Self {
        PaymentsError::IncomingPayment(error)
    }
}

impl From<QuoteError> for PaymentsError {
    fn from(error: QuoteError) -> Self {
        PaymentsError::Quote(error)
    }
}

impl From<OutgoingPaymentError> for PaymentsError {
    fn from(error: OutgoingPaymentError) -> Self {
        PaymentsError::OutgoingPayment(error)
    }
}
