//! Assets and fees: the `Asset` and `Fee` types, their queries and their mutations.

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, ID};
use tally_payments::{
    AssetCommand, CreateAsset, DeleteAsset, FeeType as DomainFeeType, Mutation, SetFee, Success,
    UpdateAsset, Uuid,
};

use crate::common::{
    account_liquidity, core, execute, idempotency, iso8601, page_request, uuid, PageInfo, SortOrder,
};
use crate::errors::{error, error_plain, unavailable, Code};
use crate::scalars::{UInt64, UInt8};

/// An asset, as it was when read; liquidity and fees are read when asked for.
#[derive(Clone, Debug)]
pub(crate) struct Asset(pub tally_payments::Asset);

#[Object]
impl Asset {
    /// Asset id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Asset code (ISO 4217 where possible).
    async fn code(&self) -> &str {
        &self.0.code
    }
    /// Decimal scale.
    async fn scale(&self) -> UInt8 {
        UInt8(self.0.scale)
    }
    /// The asset's liquidity account balance, read from the ledger.
    async fn liquidity(&self, context: &Context<'_>) -> Result<Option<UInt64>, Error> {
        let liquidity = account_liquidity(context, self.0.id.as_u128()).await?;
        // Rafiki throws when an asset has no liquidity account; every asset here has one.
        liquidity
            .map(|liquidity| Some(UInt64(liquidity)))
            .ok_or_else(|| error_plain("No liquidity account found".into()))
    }
    /// Minimum Web Monetization receipts before a wallet address withdrawal event.
    async fn withdrawal_threshold(&self) -> Option<UInt64> {
        self.0.withdrawal_threshold.map(UInt64)
    }
    /// Liquidity at or below which `asset.liquidity_low` fires.
    async fn liquidity_threshold(&self) -> Option<UInt64> {
        self.0.liquidity_threshold.map(UInt64)
    }
    /// The receiving fee in force.
    async fn receiving_fee(&self, context: &Context<'_>) -> Result<Option<Fee>, Error> {
        fee_latest(context, self.0.id, DomainFeeType::Receiving).await
    }
    /// The sending fee in force.
    async fn sending_fee(&self, context: &Context<'_>) -> Result<Option<Fee>, Error> {
        fee_latest(context, self.0.id, DomainFeeType::Sending).await
    }
    /// The asset's fee history.
    async fn fees(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<Option<FeesConnection>, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let asset = self.0.id;
        let (fees, page) = core(context)
            .read(move |view| {
                let (fees, page) = view.payments().fees_page(asset, &request);
                (fees.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(Some(FeesConnection {
            page_info: PageInfo::of(&page),
            edges: fees
                .into_iter()
                .map(|fee| FeeEdge {
                    cursor: fee.id.to_string(),
                    node: Fee(fee),
                })
                .collect(),
        }))
    }
    /// When it was created.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
}

async fn fee_latest(
    context: &Context<'_>,
    asset: Uuid,
    fee_type: DomainFeeType,
) -> Result<Option<Fee>, Error> {
    core(context)
        .read(move |view| {
            view.payments()
                .fee_latest(asset, fee_type)
                .cloned()
                .map(Fee)
        })
        .await
        .map_err(unavailable)
}

/// Rafiki's `FeeType`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FeeType {
    /// Charged to the sender.
    #[graphql(name = "SENDING")]
    Sending,
    /// Charged to the receiver.
    #[graphql(name = "RECEIVING")]
    Receiving,
}

/// A fee row.
#[derive(Clone, Debug)]
pub(crate) struct Fee(pub tally_payments::Fee);

#[Object]
impl Fee {
    /// Fee id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The asset it applies to.
    async fn asset_id(&self) -> ID {
        ID(self.0.asset_id.to_string())
    }
    /// Sending or receiving.
    #[graphql(name = "type")]
    async fn fee_type(&self) -> FeeType {
        match self.0.fee_type {
            DomainFeeType::Sending => FeeType::Sending,
            DomainFeeType::Receiving => FeeType::Receiving,
        }
    }
    /// Flat amount in minor units.
    async fn fixed(&self) -> UInt64 {
        UInt64(self.0.fixed)
    }
    /// 0..=10000.
    async fn basis_points(&self) -> i32 {
        i32::from(self.0.basis_points)
    }
    /// When it was set.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
}

/// An edge of `AssetsConnection`.
#[derive(SimpleObject)]
pub(crate) struct AssetEdge {
    node: Asset,
    cursor: String,
}

/// A page of assets.
#[derive(SimpleObject)]
pub(crate) struct AssetsConnection {
    page_info: PageInfo,
    edges: Vec<AssetEdge>,
}

/// An edge of `FeesConnection`.
#[derive(SimpleObject)]
pub(crate) struct FeeEdge {
    node: Fee,
    cursor: String,
}

/// A page of fees.
#[derive(SimpleObject)]
pub(crate) struct FeesConnection {
    page_info: PageInfo,
    edges: Vec<FeeEdge>,
}

/// `createAsset`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateAssetInput {
    code: String,
    scale: UInt8,
    withdrawal_threshold: Option<UInt64>,
    liquidity_threshold: Option<UInt64>,
    idempotency_key: Option<String>,
}

/// `updateAsset`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct UpdateAssetInput {
    id: String,
    withdrawal_threshold: Option<UInt64>,
    liquidity_threshold: Option<UInt64>,
    idempotency_key: Option<String>,
}

/// `deleteAsset`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DeleteAssetInput {
    id: ID,
    idempotency_key: Option<String>,
}

/// `setFee`'s fee.
#[derive(InputObject, Debug)]
pub(crate) struct FeeDetails {
    fixed: UInt64,
    basis_points: i32,
}

/// `setFee`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct SetFeeInput {
    asset_id: ID,
    #[graphql(name = "type")]
    fee_type: FeeType,
    fee: FeeDetails,
    idempotency_key: Option<String>,
}

/// What asset mutations return.
#[derive(SimpleObject)]
pub(crate) struct AssetMutationResponse {
    asset: Option<Asset>,
}

/// What `deleteAsset` returns.
#[derive(SimpleObject)]
pub(crate) struct DeleteAssetMutationResponse {
    asset: Option<Asset>,
}

/// What `setFee` returns.
#[derive(SimpleObject)]
pub(crate) struct SetFeeResponse {
    fee: Option<Fee>,
}

/// The asset queries.
#[derive(Default)]
pub(crate) struct AssetQuery;

#[Object]
impl AssetQuery {
    /// Fetch an asset.
    async fn asset(&self, context: &Context<'_>, id: String) -> Result<Option<Asset>, Error> {
        let Some(id) = uuid(&id) else {
            return Err(error(Code::NotFound, "Asset not found"));
        };
        core(context)
            .read(move |view| view.payments().asset(id).cloned())
            .await
            .map_err(unavailable)?
            .map(|asset| Some(Asset(asset)))
            .ok_or_else(|| error(Code::NotFound, "Asset not found"))
    }

    /// Get an asset by code and scale (soft-deleted ones too, as in Rafiki).
    async fn asset_by_code_and_scale(
        &self,
        context: &Context<'_>,
        code: String,
        scale: UInt8,
    ) -> Result<Option<Asset>, Error> {
        Ok(core(context)
            .read(move |view| {
                view.payments()
                    .asset_by_code_and_scale(&code, scale.0)
                    .cloned()
            })
            .await
            .map_err(unavailable)?
            .map(Asset))
    }

    /// Fetch a page of assets.
    async fn assets(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<AssetsConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let (assets, page) = core(context)
            .read(move |view| {
                let (assets, page) = view.payments().assets_page(&request);
                (assets.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(AssetsConnection {
            page_info: PageInfo::of(&page),
            edges: assets
                .into_iter()
                .map(|asset| AssetEdge {
                    cursor: asset.id.to_string(),
                    node: Asset(asset),
                })
                .collect(),
        })
    }
}

/// The asset and fee mutations.
#[derive(Default)]
pub(crate) struct AssetMutation;

#[Object]
impl AssetMutation {
    /// Create an asset.
    async fn create_asset(
        &self,
        context: &Context<'_>,
        input: CreateAssetInput,
    ) -> Result<AssetMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "createAsset", &input);
        let create = CreateAsset {
            id: Uuid::new_v4(),
            code: input.code,
            scale: input.scale.0,
            withdrawal_threshold: input.withdrawal_threshold.map(|amount| amount.0),
            liquidity_threshold: input.liquidity_threshold.map(|amount| amount.0),
        };
        let success = execute(context, key, Mutation::Asset(AssetCommand::Create(create))).await?;
        Ok(AssetMutationResponse {
            asset: Some(asset_of(success)?),
        })
    }

    /// Update an asset (both thresholds are overwritten).
    async fn update_asset(
        &self,
        context: &Context<'_>,
        input: UpdateAssetInput,
    ) -> Result<AssetMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "updateAsset", &input);
        let update = UpdateAsset {
            id: uuid(&input.id),
            withdrawal_threshold: input.withdrawal_threshold.map(|amount| amount.0),
            liquidity_threshold: input.liquidity_threshold.map(|amount| amount.0),
        };
        let success = execute(context, key, Mutation::Asset(AssetCommand::Update(update))).await?;
        Ok(AssetMutationResponse {
            asset: Some(asset_of(success)?),
        })
    }

    /// Delete an asset (soft delete).
    async fn delete_asset(
        &self,
        context: &Context<'_>,
        input: DeleteAssetInput,
    ) -> Result<DeleteAssetMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "deleteAsset", &input);
        let delete = DeleteAsset {
            id: uuid(&input.id),
        };
        let success = execute(context, key, Mutation::Asset(AssetCommand::Delete(delete))).await?;
        Ok(DeleteAssetMutationResponse {
            asset: Some(asset_of(success)?),
        })
    }

    /// Set the fee of an asset (a new row; the newest is in force).
    async fn set_fee(
        &self,
        context: &Context<'_>,
        input: SetFeeInput,
    ) -> Result<SetFeeResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "setFee", &input);
        let set = SetFee {
            id: Uuid::new_v4(),
            asset_id: uuid(&input.asset_id),
            fee_type: match input.fee_type {
                FeeType::Sending => DomainFeeType::Sending,
                FeeType::Receiving => DomainFeeType::Receiving,
            },
            fixed: input.fee.fixed.0,
            basis_points: input.fee.basis_points,
        };
        match execute(context, key, Mutation::Fee(set)).await? {
            Success::Fee(fee) => Ok(SetFeeResponse {
                fee: Some(Fee(fee)),
            }),
            other => Err(unexpected(&other)),
        }
    }
}

/// The asset of a peer or wallet address (never deleted while they use it).
pub(crate) async fn asset_by_id(context: &Context<'_>, id: Uuid) -> Result<Asset, Error> {
    core(context)
        .read(move |view| view.payments().asset(id).cloned())
        .await
        .map_err(unavailable)?
        .map(Asset)
        .ok_or_else(|| error_plain(format!("asset {id} not found")))
}

fn asset_of(success: Success) -> Result<Asset, Error> {
    match success {
        Success::Asset(asset) => Ok(Asset(asset)),
        other => Err(unexpected(&other)),
    }
}

/// A success of the wrong kind for the mutation: the domain broke its contract.
pub(crate) fn unexpected(success: &Success) -> Error {
    error_plain(format!("unexpected outcome {success:?}"))
}
