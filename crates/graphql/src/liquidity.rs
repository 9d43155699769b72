//! The liquidity mutations: deposits into and withdrawals from asset and peer liquidity, and
//! the posting or voiding of a pending withdrawal (`rafiki-admin-api.md` §7.1–§7.3).

use async_graphql::{Context, Error, InputObject, Object, SimpleObject};
use tally_payments::{
    Deposit, LiquidityCommand, LiquidityError, LiquidityOwner, Mutation, PaymentsError, Success,
    Uuid, Withdrawal, WithdrawalResolve,
};

use crate::assets::unexpected;
use crate::common::{idempotency, outcome, uuid, uuid_v4};
use crate::errors::{error, payments_error, Code};
use crate::scalars::UInt64;

/// What a liquidity mutation returns (`success` is true whenever no error is thrown).
#[derive(SimpleObject)]
pub(crate) struct LiquidityMutationResponse {
    success: bool,
}

impl LiquidityMutationResponse {
    /// What every liquidity mutation that throws no error returns.
    pub(crate) fn succeeded() -> LiquidityMutationResponse {
        LiquidityMutationResponse { success: true }
    }
}

/// `depositAssetLiquidity`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DepositAssetLiquidityInput {
    asset_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
}

/// `depositPeerLiquidity`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DepositPeerLiquidityInput {
    peer_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
}

/// `createAssetLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateAssetLiquidityWithdrawalInput {
    asset_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `createPeerLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreatePeerLiquidityWithdrawalInput {
    peer_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `postLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct PostLiquidityWithdrawalInput {
    withdrawal_id: String,
    idempotency_key: String,
}

/// `voidLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct VoidLiquidityWithdrawalInput {
    withdrawal_id: String,
    idempotency_key: String,
}

/// The liquidity mutations.
#[derive(Default)]
pub(crate) struct LiquidityMutation;

#[Object]
impl LiquidityMutation {
    /// Add asset liquidity.
    async fn deposit_asset_liquidity(
        &self,
        context: &Context<'_>,
        input: DepositAssetLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "depositAssetLiquidity",
            &input,
        );
        let owner = LiquidityOwner::Asset(uuid(&input.asset_id));
        let command = deposit(owner, &input.id, input.amount);
        liquidity(context, key, command, UnknownPeer::Liquidity).await
    }

    /// Add peer liquidity.
    async fn deposit_peer_liquidity(
        &self,
        context: &Context<'_>,
        input: DepositPeerLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(Some(&input.idempotency_key), "depositPeerLiquidity", &input);
        let owner = LiquidityOwner::Peer(uuid(&input.peer_id));
        let command = deposit(owner, &input.id, input.amount);
        // Rafiki's peer service names an unknown peer in its own words here.
        liquidity(context, key, command, UnknownPeer::PeerService).await
    }

    /// Withdraw asset liquidity.
    async fn create_asset_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreateAssetLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let name = "createAssetLiquidityWithdrawal";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let owner = LiquidityOwner::Asset(uuid(&input.asset_id));
        let command = withdrawal(owner, &input.id, input.amount, input.timeout_seconds);
        liquidity(context, key, command, UnknownPeer::Liquidity).await
    }

    /// Withdraw peer liquidity.
    async fn create_peer_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreatePeerLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let name = "createPeerLiquidityWithdrawal";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let owner = LiquidityOwner::Peer(uuid(&input.peer_id));
        let command = withdrawal(owner, &input.id, input.amount, input.timeout_seconds);
        liquidity(context, key, command, UnknownPeer::Liquidity).await
    }

    /// Post a pending liquidity withdrawal (the full amount).
    async fn post_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: PostLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "postLiquidityWithdrawal",
            &input,
        );
        let command = LiquidityCommand::Post(resolve(&input.withdrawal_id));
        liquidity(context, key, command, UnknownPeer::Liquidity).await
    }

    /// Void a pending liquidity withdrawal.
    async fn void_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: VoidLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "voidLiquidityWithdrawal",
            &input,
        );
        let command = LiquidityCommand::Void(resolve(&input.withdrawal_id));
        liquidity(context, key, command, UnknownPeer::Liquidity).await
    }
}

/// Which table names an unknown peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UnknownPeer {
    /// `LiquidityError.UnknownPeer`: "Unknown peer".
    Liquidity,
    /// `PeerError.UnknownPeer`: "unknown peer".
    PeerService,
}

fn deposit(owner: LiquidityOwner, id: &str, amount: UInt64) -> LiquidityCommand {
    LiquidityCommand::Deposit(Deposit {
        owner,
        transfer_id: uuid_v4(id),
        amount: amount.0,
    })
}

fn withdrawal(
    owner: LiquidityOwner,
    id: &str,
    amount: UInt64,
    timeout: UInt64,
) -> LiquidityCommand {
    LiquidityCommand::Withdraw(Withdrawal {
        owner,
        transfer_id: uuid_v4(id),
        amount: amount.0,
        // A timeout past `u64` seconds cannot be a ledger timeout: it becomes one the domain
        // refuses.
        timeout_seconds: u64::try_from(timeout.0).unwrap_or(u64::MAX),
    })
}

/// A post or void of `withdrawal_id`, by a new transfer.
fn resolve(withdrawal_id: &str) -> WithdrawalResolve {
    WithdrawalResolve {
        withdrawal_id: uuid_v4(withdrawal_id),
        transfer_id: Uuid::new_v4(),
    }
}

async fn liquidity(
    context: &Context<'_>,
    key: Option<tally_payments::IdempotencyKey>,
    command: LiquidityCommand,
    unknown_peer: UnknownPeer,
) -> Result<Option<LiquidityMutationResponse>, Error> {
    match outcome(context, key, Mutation::Liquidity(command)).await? {
        Ok(Success::Liquidity) => Ok(Some(LiquidityMutationResponse { success: true })),
        Ok(other) => Err(unexpected(&other)),
        Err(PaymentsError::Liquidity(LiquidityError::UnknownPeer))
            if unknown_peer == UnknownPeer::PeerService =>
        {
            Err(error(Code::NotFound, "unknown peer"))
        }
        Err(domain) => Err(payments_error(&domain)),
    }
}
