//! `accountingTransfers`: the ledger transfers that touch one account, as Rafiki's accounting
//! layer reports them (`rafiki-admin-api.md` §9.4): a pending transfer is `PENDING`, a void is
//! `VOIDED`, everything else `POSTED` (so a posted two-phase transfer shows twice: the pending
//! transfer and its post).

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};
use tally_ledger::{Transfer, TransferFlags, NS_PER_S};
use tally_payments::{settlement_account_id, TransferCode, Uuid};

use crate::common::{core, iso8601};
use crate::errors::{error_plain, unavailable};
use crate::scalars::{UInt64, UInt8};

/// Rafiki's default `limit`.
pub(crate) const ACCOUNTING_TRANSFERS_DEFAULT: i32 = 20;

/// Rafiki's `TransferType`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferType {
    /// Settlement → liquidity.
    #[graphql(name = "DEPOSIT")]
    Deposit,
    /// Liquidity → settlement.
    #[graphql(name = "WITHDRAWAL")]
    Withdrawal,
    /// Between liquidity accounts.
    #[graphql(name = "TRANSFER")]
    Transfer,
}

/// Rafiki's `TransferState`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferState {
    /// Pending (two-phase, not yet posted or voided).
    #[graphql(name = "PENDING")]
    Pending,
    /// Posted.
    #[graphql(name = "POSTED")]
    Posted,
    /// Voided.
    #[graphql(name = "VOIDED")]
    Voided,
}

/// One ledger transfer.
#[derive(SimpleObject)]
pub(crate) struct AccountingTransfer {
    // `owned`: the `Model` interface resolves these by value.
    #[graphql(owned)]
    pub(crate) id: ID,
    debit_account_id: ID,
    credit_account_id: ID,
    amount: UInt64,
    transfer_type: TransferType,
    ledger: UInt8,
    #[graphql(owned)]
    pub(crate) created_at: String,
    state: TransferState,
    expires_at: Option<String>,
}

impl AccountingTransfer {
    fn of(transfer: &Transfer) -> Result<AccountingTransfer, Error> {
        let flags = transfer.flags;
        let state = if flags.contains(TransferFlags::PENDING) {
            TransferState::Pending
        } else if flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
            TransferState::Voided
        } else {
            TransferState::Posted
        };
        let transfer_type = match transfer.code {
            code if code == TransferCode::Deposit as u16 => TransferType::Deposit,
            code if code == TransferCode::Withdrawal as u16 => TransferType::Withdrawal,
            _ => TransferType::Transfer,
        };
        let ledger = u8::try_from(transfer.ledger)
            .map_err(|_| error_plain(format!("ledger {} is not a UInt8", transfer.ledger)))?;
        let expires_at = (state == TransferState::Pending && transfer.timeout > 0)
            .then(|| iso8601(transfer.timestamp + u64::from(transfer.timeout) * NS_PER_S));
        Ok(AccountingTransfer {
            id: ID(Uuid::from_u128(transfer.id).to_string()),
            debit_account_id: ID(Uuid::from_u128(transfer.debit_account_id).to_string()),
            credit_account_id: ID(Uuid::from_u128(transfer.credit_account_id).to_string()),
            amount: UInt64(transfer.amount),
            transfer_type,
            ledger: UInt8(ledger),
            created_at: iso8601(transfer.timestamp),
            state,
            expires_at,
        })
    }
}

/// The transfers of one account, by side.
#[derive(SimpleObject)]
pub(crate) struct AccountingTransferConnection {
    debits: Vec<AccountingTransfer>,
    credits: Vec<AccountingTransfer>,
}

/// The accounting query.
#[derive(Default)]
pub(crate) struct AccountingQuery;

#[Object]
impl AccountingQuery {
    /// The ledger transfers of an account: a UUID names a liquidity account, a number an
    /// asset's settlement account by its ledger number (as Rafiki's TigerBeetle ids do).
    async fn accounting_transfers(
        &self,
        context: &Context<'_>,
        id: String,
        limit: Option<i32>,
    ) -> Result<AccountingTransferConnection, Error> {
        let limit = u32::try_from(limit.unwrap_or(ACCOUNTING_TRANSFERS_DEFAULT))
            .map_err(|_| error_plain("limit must not be negative".into()))?;
        let (debits, credits) = core(context)
            .read(move |view| {
                let account = match id.parse::<u32>() {
                    Ok(ledger) => view
                        .payments()
                        .asset_by_ledger(ledger)
                        .map(|asset| settlement_account_id(asset.id)),
                    Err(_) => Uuid::parse_str(&id).ok().map(|id| id.as_u128()),
                };
                match account {
                    // An account that does not exist has no transfers (as TigerBeetle answers).
                    None => (Vec::new(), Vec::new()),
                    Some(account) => (
                        view.account_transfers(account, true, limit),
                        view.account_transfers(account, false, limit),
                    ),
                }
            })
            .await
            .map_err(unavailable)?;
        Ok(AccountingTransferConnection {
            debits: debits
                .iter()
                .map(AccountingTransfer::of)
                .collect::<Result<_, _>>()?,
            credits: credits
                .iter()
                .map(AccountingTransfer::of)
                .collect::<Result<_, _>>()?,
        })
    }
}
