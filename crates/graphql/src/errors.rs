//! The one place a domain outcome becomes a GraphQL error: Rafiki's `extensions.code` and
//! message for every error (`rafiki-admin-api.md` §4.3). Resolvers never write error strings.

use async_graphql::{Error, ErrorExtensions};
use tally_payments::{
    AssetError, AutoPeeringError, FeeError, IncomingPaymentError, LiquidityError,
    OutgoingPaymentError, PaymentsError, PeerError, QuoteError, WalletAddressError,
    WalletAddressKeyError,
};

use crate::core_handle::CoreUnavailable;

/// Rafiki's `GraphQLErrorCode` values that Tally uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// `BAD_USER_INPUT`.
    BadUserInput,
    /// `DUPLICATE`.
    Duplicate,
    /// `FORBIDDEN`.
    Forbidden,
    /// `INTERNAL_SERVER_ERROR`.
    InternalServerError,
    /// `NOT_FOUND`.
    NotFound,
    /// `CONFLICT`.
    Conflict,
    /// `INACTIVE`.
    Inactive,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Duplicate => "DUPLICATE",
            Code::Forbidden => "FORBIDDEN",
            Code::InternalServerError => "INTERNAL_SERVER_ERROR",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::Inactive => "INACTIVE",
        }
    }
}

/// A GraphQL error with `extensions.code`.
pub(crate) fn error(code: Code, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, extensions| extensions.set("code", code.as_str()))
}

/// Rafiki's code and message for a domain error.
pub(crate) fn payments_error(error: &PaymentsError) -> Error {
    match error {
        PaymentsError::Asset(error) => asset_error(*error),
        PaymentsError::Liquidity(error) => liquidity_error(*error),
        PaymentsError::Fee(error) => fee_error(*error),
        PaymentsError::Peer(error) => peer_error(*error),
        PaymentsError::AutoPeering(error) => auto_peering_error(*error),
        PaymentsError::WalletAddress(error) => wallet_address_error(*error),
        PaymentsError::WalletAddressKey(error) => wallet_address_key_error(*error),
        PaymentsError::IdempotencyKeyReused { key } => error_plain(format!(
            "Incoming arguments are different than the original request for idempotencyKey: {key}"
        )),
        PaymentsError::IncomingPayment(error) => incoming_payment_error(*error),
        PaymentsError::Quote(error) => quote_error(error),
        PaymentsError::OutgoingPayment(error) => outgoing_payment_error(*error),
    }
}

/// An error without a code; Rafiki's clients see `INTERNAL_SERVER_ERROR`.
pub(crate) fn error_plain(message: String) -> Error {
    error(Code::InternalServerError, message)
}

fn asset_error(error: AssetError) -> Error {
    match error {
        AssetError::UnknownAsset => self::error(Code::NotFound, "Asset not found"),
        AssetError::DuplicateAsset => self::error(Code::Duplicate, "Asset already exists"),
        AssetError::CannotDeleteInUseAsset => {
            self::error(Code::Forbidden, "Cannot delete! Asset in use.")
        }
    }
}

fn liquidity_error(error: LiquidityError) -> Error {
    use Code::*;
    let (code, message): (Code, String) = match error {
        LiquidityError::AmountZero => (Forbidden, "Transfer amount is zero".into()),
        LiquidityError::InvalidId => (BadUserInput, "Invalid transfer id".into()),
        LiquidityError::UnknownAsset => (NotFound, "Unknown asset".into()),
        LiquidityError::UnknownPeer => (NotFound, "Unknown peer".into()),
        LiquidityError::UnknownWalletAddress => (NotFound, "Unknown wallet address".into()),
        LiquidityError::TransferExists => (Duplicate, "Transfer already exists".into()),
        LiquidityError::InsufficientBalance => (Forbidden, "Insufficient transfer balance".into()),
        LiquidityError::InsufficientDebitBalance => {
            (Forbidden, "Insufficient transfer debit balance".into())
        }
        LiquidityError::UnknownTransfer => (NotFound, "Unknown transfer".into()),
        LiquidityError::AlreadyPosted => (Conflict, "Transfer already posted".into()),
        LiquidityError::AlreadyVoided => (Conflict, "Transfer already voided".into()),
        LiquidityError::TransferExpired => (Forbidden, "Transfer already expired".into()),
        LiquidityError::InvalidTimeout => {
            (BadUserInput, "Invalid transfer timeout provided".into())
        }
        LiquidityError::SameAccounts => (Forbidden, "Transfer is between the same accounts".into()),
        LiquidityError::DifferentAssets => {
            (Forbidden, "Transfer accounts have different assets".into())
        }
        LiquidityError::UnknownSourceAccount => (NotFound, "Unknown source account".into()),
        LiquidityError::UnknownDestinationAccount => {
            (NotFound, "Unknown destination account".into())
        }
        // Rafiki answers "Internal server error" (or, for peer deposits, success); Tally says
        // what the ledger refused (docs/graphql.md, "Deviations").
        LiquidityError::Ledger(status) => (
            InternalServerError,
            match status.status() {
                Some(status) => {
                    format!("Internal server error: the ledger refused the transfer ({status:?})")
                }
                None => format!(
                    "Internal server error: the ledger refused the transfer (status {})",
                    status.0
                ),
            },
        ),
    };
    self::error(code, message)
}

fn fee_error(error: FeeError) -> Error {
    match error {
        FeeError::UnknownAsset => self::error(Code::NotFound, "Unknown asset"),
        FeeError::InvalidBasisPointFee => self::error(
            Code::BadUserInput,
            "Basis point fee must be between 0 and 10000",
        ),
    }
}

fn peer_error(error: PeerError) -> Error {
    use Code::*;
    let (code, message) = match error {
        PeerError::DuplicateIncomingToken => (Duplicate, "duplicate incoming token"),
        PeerError::DuplicatePeer => (
            Duplicate,
            "duplicate peer found for same ILP address and asset",
        ),
        PeerError::InvalidStaticIlpAddress => (BadUserInput, "invalid ILP address"),
        PeerError::InvalidHTTPEndpoint => (BadUserInput, "invalid HTTP endpoint"),
        PeerError::UnknownAsset => (NotFound, "unknown asset"),
        PeerError::UnknownPeer => (NotFound, "unknown peer"),
        PeerError::InvalidInitialLiquidity => (BadUserInput, "invalid initial liquidity for peer"),
    };
    self::error(code, message)
}

fn auto_peering_error(error: AutoPeeringError) -> Error {
    use Code::*;
    let (code, message) = match error {
        AutoPeeringError::InvalidIlpConfiguration => {
            (BadUserInput, "The ILP configuration is misconfigured")
        }
        AutoPeeringError::InvalidPeerIlpConfiguration => (
            InternalServerError,
            "Requested peer's ILP configuration is misconfigured",
        ),
        AutoPeeringError::UnknownAsset => (NotFound, "Unknown asset"),
        AutoPeeringError::PeerUnsupportedAsset => (BadUserInput, "Peer does not support asset"),
        AutoPeeringError::InvalidPeerUrl => (
            NotFound,
            "Peer URL is invalid or peer does not support auto-peering",
        ),
        AutoPeeringError::InvalidPeeringRequest => (BadUserInput, "Invalid peering request"),
        AutoPeeringError::LiquidityError => {
            (InternalServerError, "Could not deposit liquidity to peer")
        }
    };
    self::error(code, message)
}

fn wallet_address_error(error: WalletAddressError) -> Error {
    use Code::*;
    let (code, message) = match error {
        WalletAddressError::InvalidUrl => (BadUserInput, "invalid url"),
        // Rafiki gives an unknown asset here BAD_USER_INPUT, not NOT_FOUND.
        WalletAddressError::UnknownAsset => (BadUserInput, "unknown asset"),
        WalletAddressError::UnknownWalletAddress => (NotFound, "unknown wallet address"),
        WalletAddressError::DuplicateWalletAddress => (
            Duplicate,
            "Duplicate wallet address found with the same url",
        ),
        WalletAddressError::MissingLedgerAccount => (
            InternalServerError,
            "missing incoming payment wallet address",
        ),
    };
    self::error(code, message)
}

fn wallet_address_key_error(error: WalletAddressKeyError) -> Error {
    use Code::*;
    let (code, message) = match error {
        WalletAddressKeyError::DuplicateKey => (Duplicate, "Key already exists"),
        // Rafiki fails on a foreign key here (500); Tally names the cause.
        WalletAddressKeyError::UnknownWalletAddress => {
            (InternalServerError, "unknown wallet address")
        }
        WalletAddressKeyError::UnknownKey => (NotFound, "Wallet address key not found"),
    };
    self::error(code, message)
}

/// What Tally says where Rafiki would reach out to another instance (issue 8: receivers and
/// payments on other instances wait for interledger between instances).
pub(crate) const REMOTE_RECEIVERS_UNSUPPORTED: &str =
    "receivers on other instances are not supported yet: Tally pays only incoming payments of wallet addresses on this instance";

fn incoming_payment_error(error: IncomingPaymentError) -> Error {
    use Code::*;
    let (code, message) = match error {
        IncomingPaymentError::UnknownWalletAddress => (NotFound, "unknown wallet address"),
        IncomingPaymentError::InvalidAmount => (BadUserInput, "invalid amount"),
        IncomingPaymentError::UnknownPayment => (NotFound, "unknown payment"),
        IncomingPaymentError::InvalidExpiry => (BadUserInput, "invalid expiresAt"),
        IncomingPaymentError::WrongState => (Conflict, "wrong state"),
        IncomingPaymentError::InactiveWalletAddress => (Inactive, "inactive wallet address"),
        IncomingPaymentError::AlreadyActioned => (Forbidden, "action already performed"),
        IncomingPaymentError::RemoteWalletAddress => (
            BadUserInput,
            "unknown wallet address on this instance; receivers on other instances are not supported yet",
        ),
    };
    self::error(code, message)
}

fn quote_error(error: &QuoteError) -> Error {
    use Code::*;
    let (code, message) = match error {
        QuoteError::UnknownWalletAddress => (NotFound, "unknown wallet address"),
        QuoteError::InvalidAmount => (BadUserInput, "invalid amount"),
        QuoteError::InvalidReceiver => (BadUserInput, "invalid receiver"),
        QuoteError::InactiveWalletAddress => (Inactive, "inactive wallet address"),
        QuoteError::NonPositiveReceiveAmount { min_send_amount } => {
            let error = self::error(BadUserInput, "non-positive receive amount");
            return match min_send_amount {
                None => error,
                Some(amount) => error.extend_with(|_, extensions| {
                    let mut min = async_graphql::indexmap::IndexMap::new();
                    min.insert(
                        async_graphql::Name::new("value"),
                        async_graphql::Value::String(amount.value.to_string()),
                    );
                    min.insert(
                        async_graphql::Name::new("assetCode"),
                        async_graphql::Value::String(amount.asset_code.clone()),
                    );
                    min.insert(
                        async_graphql::Name::new("assetScale"),
                        async_graphql::Value::from(amount.asset_scale),
                    );
                    let mut details = async_graphql::indexmap::IndexMap::new();
                    details.insert(
                        async_graphql::Name::new("minSendAmount"),
                        async_graphql::Value::Object(min),
                    );
                    extensions.set("details", async_graphql::Value::Object(details));
                }),
            };
        }
        QuoteError::CouldNotFetchRates => (InternalServerError, "could not convert between assets"),
    };
    self::error(code, message)
}

fn outgoing_payment_error(error: OutgoingPaymentError) -> Error {
    use Code::*;
    let (code, message) = match error {
        OutgoingPaymentError::UnknownWalletAddress => (NotFound, "unknown wallet address"),
        OutgoingPaymentError::UnknownPayment => (NotFound, "unknown payment"),
        OutgoingPaymentError::UnknownQuote => (NotFound, "unknown quote"),
        OutgoingPaymentError::WrongState => (Conflict, "wrong state"),
        OutgoingPaymentError::InvalidQuote => (BadUserInput, "invalid quote"),
        OutgoingPaymentError::InactiveWalletAddress => (Inactive, "inactive wallet address"),
        OutgoingPaymentError::InvalidAmount => (BadUserInput, "invalid amount"),
        OutgoingPaymentError::NegativeReceiveAmount => (BadUserInput, "negative receive amount"),
        OutgoingPaymentError::InvalidReceiver => (BadUserInput, "invalid receiver"),
        OutgoingPaymentError::CouldNotFetchRates => {
            (InternalServerError, "could not convert between assets")
        }
    };
    self::error(code, message)
}

/// The core did not answer.
pub(crate) fn unavailable(error: CoreUnavailable) -> Error {
    error_plain(error.to_string())
}

/// Gives every error of a response an `extensions.code`, as Apollo does: argument and
/// variable coercion failures are `BAD_USER_INPUT`; other errors without a code are
/// `GRAPHQL_VALIDATION_FAILED` when nothing ran, else `INTERNAL_SERVER_ERROR`.
pub(crate) fn codes_complete(response: &mut async_graphql::Response) {
    let nothing_ran = response.data == async_graphql::Value::Null;
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if has_code {
            continue;
        }
        let coercion = error.message.starts_with("Failed to parse")
            || error.message.starts_with("Invalid value for argument")
            || error.message.contains("Expected input type");
        let code = if coercion {
            "BAD_USER_INPUT"
        } else if nothing_ran && error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "INTERNAL_SERVER_ERROR"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}
