//! Deposits, withdrawals and their two-phase resolution (`rafiki-admin-api.md` §7.1–§7.3, §9.3):
//! each is one ledger transfer between an owner's liquidity account and its asset's settlement
//! account. Checks run in Rafiki's order: amount, owner, transfer id, then the ledger.

use serde::{Deserialize, Serialize};
use tally_ledger::{CreateTransferStatus, Transfer, TransferFlags, AMOUNT_MAX};
use uuid::Uuid;

use crate::accounts::{settlement_account_id, TransferCode};
use crate::command::{Outcome, Success};
use crate::error::{LedgerStatus, LiquidityError};
use crate::port::LedgerPort;
use crate::state::Payments;

/// Whose liquidity account a deposit or withdrawal moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiquidityOwner {
    /// An asset's liquidity account; `None` when the id is not a UUID.
    Asset(Option<Uuid>),
    /// A peer's liquidity account; `None` when the id is not a UUID.
    Peer(Option<Uuid>),
}

/// A deposit: settlement → the owner's liquidity account, posted at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    /// Whose account is credited.
    pub owner: LiquidityOwner,
    /// The transfer id; `None` when the client's id is not a UUID v4.
    pub transfer_id: Option<Uuid>,
    /// Minor units.
    pub amount: u128,
}

/// A withdrawal: the owner's liquidity account → settlement; pending when `timeout_seconds > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Whose account is debited.
    pub owner: LiquidityOwner,
    /// The transfer (and withdrawal) id; `None` when not a UUID v4.
    pub transfer_id: Option<Uuid>,
    /// Minor units.
    pub amount: u128,
    /// 0: posted at once; otherwise pending, voided by the ledger when it times out.
    pub timeout_seconds: u64,
}

/// Posting or voiding a pending withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalResolve {
    /// The pending withdrawal; `None` when the client's id is not a UUID v4.
    pub withdrawal_id: Option<Uuid>,
    /// The id of the posting or voiding transfer, chosen by the front.
    pub transfer_id: Uuid,
}

/// The liquidity mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiquidityCommand {
    /// `depositAssetLiquidity`, `depositPeerLiquidity`.
    Deposit(Deposit),
    /// `createAssetLiquidityWithdrawal`, `createPeerLiquidityWithdrawal`.
    Withdraw(Withdrawal),
    /// `postLiquidityWithdrawal`.
    Post(WithdrawalResolve),
    /// `voidLiquidityWithdrawal`.
    Void(WithdrawalResolve),
}

/// Which way a resolution goes, for the ledger status it maps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    Post,
    Void,
}

impl Payments {
    pub(crate) fn execute_liquidity<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &LiquidityCommand,
    ) -> Outcome {
        match command {
            LiquidityCommand::Deposit(deposit) => self.execute_deposit(port, deposit),
            LiquidityCommand::Withdraw(withdrawal) => self.execute_withdrawal(port, withdrawal),
            LiquidityCommand::Post(resolve) => execute_resolve(port, resolve, Resolution::Post),
            LiquidityCommand::Void(resolve) => execute_resolve(port, resolve, Resolution::Void),
        }
    }

    fn execute_deposit<P: LedgerPort>(&mut self, port: &mut P, deposit: &Deposit) -> Outcome {
        if deposit.amount == 0 {
            return Err(LiquidityError::AmountZero.into());
        }
        let (account, asset) = self.liquidity_account_of(deposit.owner)?;
        let id = deposit.transfer_id.ok_or(LiquidityError::InvalidId)?;
        let transfer = Transfer {
            id: id.as_u128(),
            debit_account_id: settlement_account_id(asset.0),
            credit_account_id: account,
            amount: deposit.amount,
            ledger: asset.1,
            code: TransferCode::Deposit as u16,
            ..Transfer::default()
        };
        transfer_create(port, &transfer, Resolution::Post)
    }

    fn execute_withdrawal<P: LedgerPort>(
        &mut self,
        port: &mut P,
        withdrawal: &Withdrawal,
    ) -> Outcome {
        if withdrawal.amount == 0 {
            return Err(LiquidityError::AmountZero.into());
        }
        let (account, asset) = self.liquidity_account_of(withdrawal.owner)?;
        let id = withdrawal.transfer_id.ok_or(LiquidityError::InvalidId)?;
        let transfer = withdrawal_transfer(
            id,
            account,
            asset,
            withdrawal.amount,
            withdrawal.timeout_seconds,
        )?;
        transfer_create(port, &transfer, Resolution::Post)
    }

    /// The liquidity account of `owner`, and its asset's id and ledger.
    fn liquidity_account_of(
        &self,
        owner: LiquidityOwner,
    ) -> Result<(u128, (Uuid, u32)), LiquidityError> {
        match owner {
            LiquidityOwner::Asset(id) => {
                let asset = id
                    .and_then(|id| self.asset_active(id))
                    .ok_or(LiquidityError::UnknownAsset)?;
                Ok((asset.id.as_u128(), (asset.id, asset.ledger)))
            }
            LiquidityOwner::Peer(id) => {
                let peer = id
                    .and_then(|id| self.peer_liquidity_account(id))
                    .ok_or(LiquidityError::UnknownPeer)?;
                Ok(peer)
            }
        }
    }
}

/// A withdrawal transfer: `account` → its asset's settlement account, pending when
/// `timeout_seconds > 0`; `(asset, ledger)` name the asset.
pub(crate) fn withdrawal_transfer(
    id: Uuid,
    account: u128,
    (asset, ledger): (Uuid, u32),
    amount: u128,
    timeout_seconds: u64,
) -> Result<Transfer, LiquidityError> {
    let timeout = u32::try_from(timeout_seconds).map_err(|_| LiquidityError::InvalidTimeout)?;
    let flags = if timeout > 0 {
        TransferFlags::PENDING
    } else {
        0
    };
    Ok(Transfer {
        id: id.as_u128(),
        debit_account_id: account,
        credit_account_id: settlement_account_id(asset),
        amount,
        timeout,
        ledger,
        code: TransferCode::Withdrawal as u16,
        flags: TransferFlags(flags),
        ..Transfer::default()
    })
}

fn execute_resolve<P: LedgerPort>(
    port: &mut P,
    resolve: &WithdrawalResolve,
    resolution: Resolution,
) -> Outcome {
    let pending_id = resolve.withdrawal_id.ok_or(LiquidityError::InvalidId)?;
    // Accounts, ledger and code 0 inherit the pending transfer's; a post of AMOUNT_MAX posts
    // the whole pending amount (Rafiki never posts part of a withdrawal).
    let (amount, flags) = match resolution {
        Resolution::Post => (AMOUNT_MAX, TransferFlags::POST_PENDING_TRANSFER),
        Resolution::Void => (0, TransferFlags::VOID_PENDING_TRANSFER),
    };
    let transfer = Transfer {
        id: resolve.transfer_id.as_u128(),
        pending_id: pending_id.as_u128(),
        amount,
        flags: TransferFlags(flags),
        ..Transfer::default()
    };
    transfer_create(port, &transfer, resolution)
}

/// Creates one transfer; maps a refusal to Rafiki's `TransferError` (§9.3).
pub(crate) fn transfer_create<P: LedgerPort>(
    port: &mut P,
    transfer: &Transfer,
    resolution: Resolution,
) -> Outcome {
    let mut results = Vec::with_capacity(1);
    port.create_transfers(std::slice::from_ref(transfer), &mut results);
    assert_eq!(results.len(), 1);
    match results[0].status {
        CreateTransferStatus::Created => Ok(Success::Liquidity),
        status => Err(transfer_error(status, resolution).into()),
    }
}

fn transfer_error(status: CreateTransferStatus, resolution: Resolution) -> LiquidityError {
    use CreateTransferStatus as S;
    match status {
        S::Exists
        | S::IdAlreadyFailed
        | S::ExistsWithDifferentFlags
        | S::ExistsWithDifferentPendingId
        | S::ExistsWithDifferentTimeout
        | S::ExistsWithDifferentDebitAccountId
        | S::ExistsWithDifferentCreditAccountId
        | S::ExistsWithDifferentAmount
        | S::ExistsWithDifferentUserData128
        | S::ExistsWithDifferentUserData64
        | S::ExistsWithDifferentUserData32
        | S::ExistsWithDifferentLedger
        | S::ExistsWithDifferentCode => LiquidityError::TransferExists,
        S::AccountsMustBeDifferent => LiquidityError::SameAccounts,
        S::DebitAccountNotFound => LiquidityError::UnknownSourceAccount,
        S::CreditAccountNotFound => LiquidityError::UnknownDestinationAccount,
        S::ExceedsCredits => LiquidityError::InsufficientBalance,
        S::ExceedsDebits => LiquidityError::InsufficientDebitBalance,
        S::AccountsMustHaveTheSameLedger => LiquidityError::DifferentAssets,
        S::PendingTransferNotFound => LiquidityError::UnknownTransfer,
        S::PendingTransferExpired => LiquidityError::TransferExpired,
        S::PendingTransferAlreadyPosted => LiquidityError::AlreadyPosted,
        S::PendingTransferAlreadyVoided => LiquidityError::AlreadyVoided,
        S::PendingTransferNotPending => match resolution {
            Resolution::Post => LiquidityError::AlreadyPosted,
            Resolution::Void => LiquidityError::AlreadyVoided,
        },
        other => LiquidityError::Ledger(LedgerStatus(other as u32)),
    }
}
