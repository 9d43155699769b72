//! The liquidity mutations: deposits into and withdrawals from asset and peer liquidity, and
//! the posting or voiding of a pending withdrawal (`rafiki-admin-api.md` §7.1–§7.3).

use async_graphql::{Context, Error, InputObject, Object, SimpleObject};
use tally_payments::{
    Deposit, LiquidityCommand, LiquidityError, LiquidityOwner, Mutation, PaymentsError, Success,
    Uuid, Withdrawal, WithdrawalResolve,
};

use crate::assets::unexpected;
use crate::common::{idempotency, uuid, uuid_v4};
use crate::core_handle::CoreHandle;
use crate::errors::{error, payments_error, unavailable, Code};
use crate::scalars::UInt64;

/// What a liquidity mutation returns (`success` is true whenever no error is thrown).
#[derive(SimpleObject)]
pub struct LiquidityMutationResponse {
    success: bool,
}

/// `depositAssetLiquidity`'s input.
#[derive(InputObject, Debug)]
pub struct DepositAssetLiquidityInput {
    asset_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
}

/// `depositPeerLiquidity`'s input.
#[derive(InputObject, Debug)]
pub struct DepositPeerLiquidityInput {
    peer_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
}

/// `createAssetLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub struct CreateAssetLiquidityWithdrawalInput {
    asset_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `createPeerLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub struct CreatePeerLiquidityWithdrawalInput {
    peer_id: String,
    amount: UInt64,
    id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `postLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub struct PostLiquidityWithdrawalInput {
    withdrawal_id: String,
    idempotency_key: String,
}

/// `voidLiquidityWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub struct VoidLiquidityWithdrawalInput {
    withdrawal_id: String,
    idempotency_key: String,
}

/// The liquidity mutations.
#[derive(Default)]
pub struct LiquidityMutation;

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
        let deposit = Deposit {
            owner: LiquidityOwner::Asset(uuid(&input.asset_id)),
            transfer_id: uuid_v4(&input.id),
            amount: input.amount.0,
        };
        liquidity(
            context,
            key,
            LiquidityCommand::Deposit(deposit),
            Peer::Liquidity,
        )
        .await
    }

    /// Add peer liquidity.
    async fn deposit_peer_liquidity(
        &self,
        context: &Context<'_>,
        input: DepositPeerLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(Some(&input.idempotency_key), "depositPeerLiquidity", &input);
        let deposit = Deposit {
            owner: LiquidityOwner::Peer(uuid(&input.peer_id)),
            transfer_id: uuid_v4(&input.id),
            amount: input.amount.0,
        };
        // Rafiki's peer service names an unknown peer in its own words here.
        liquidity(
            context,
            key,
            LiquidityCommand::Deposit(deposit),
            Peer::Service,
        )
        .await
    }

    /// Withdraw asset liquidity.
    async fn create_asset_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreateAssetLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "createAssetLiquidityWithdrawal",
            &input,
        );
        let withdrawal = Withdrawal {
            owner: LiquidityOwner::Asset(uuid(&input.asset_id)),
            transfer_id: uuid_v4(&input.id),
            amount: input.amount.0,
            timeout_seconds: timeout_seconds(input.timeout_seconds),
        };
        liquidity(
            context,
            key,
            LiquidityCommand::Withdraw(withdrawal),
            Peer::Liquidity,
        )
        .await
    }

    /// Withdraw peer liquidity.
    async fn create_peer_liquidity_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreatePeerLiquidityWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "createPeerLiquidityWithdrawal",
            &input,
        );
        let withdrawal = Withdrawal {
            owner: LiquidityOwner::Peer(uuid(&input.peer_id)),
            transfer_id: uuid_v4(&input.id),
            amount: input.amount.0,
            timeout_seconds: timeout_seconds(input.timeout_seconds),
        };
        liquidity(
            context,
            key,
            LiquidityCommand::Withdraw(withdrawal),
            Peer::Liquidity,
        )
        .await
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
        let resolve = WithdrawalResolve {
            withdrawal_id: uuid_v4(&input.withdrawal_id),
            transfer_id: Uuid::new_v4(),
        };
        liquidity(
            context,
            key,
            LiquidityCommand::Post(resolve),
            Peer::Liquidity,
        )
        .await
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
        let resolve = WithdrawalResolve {
            withdrawal_id: uuid_v4(&input.withdrawal_id),
            transfer_id: Uuid::new_v4(),
        };
        liquidity(
            context,
            key,
            LiquidityCommand::Void(resolve),
            Peer::Liquidity,
        )
        .await
    }
}

/// Which table names an unknown peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// `LiquidityError.UnknownPeer`: "Unknown peer".
    Liquidity,
    /// `PeerError.UnknownPeer`: "unknown peer".
    Service,
}

/// A timeout past `u64` seconds cannot be a ledger timeout: it becomes one the domain refuses.
fn timeout_seconds(timeout: UInt64) -> u64 {
    u64::try_from(timeout.0).unwrap_or(u64::MAX)
}

async fn liquidity(
    context: &Context<'_>,
    key: Option<tally_payments::IdempotencyKey>,
    command: LiquidityCommand,
    peer: Peer,
) -> Result<Option<LiquidityMutationResponse>, Error> {
    let core = context.data_unchecked::<CoreHandle>();
    let command = tally_payments::Command {
        idempotency: key,
        mutation: Mutation::Liquidity(command),
    };
    match core.execute(&command).await.map_err(unavailable)? {
        Ok(Success::Liquidity) => Ok(Some(LiquidityMutationResponse { success: true })),
        Ok(other) => Err(unexpected(&other)),
        Err(PaymentsError::Liquidity(LiquidityError::UnknownPeer)) if peer == Peer::Service => {
            Err(error(Code::NotFound, "unknown peer"))
        }
        Err(domain) => Err(payments_error(&domain)),
    }
}
