//! Assets (`rafiki-admin-api.md` §7.1): a code and scale, a ledger number, and two ledger
//! accounts (liquidity and settlement) created together or not at all.

use serde::{Deserialize, Serialize};
use tally_ledger::{AccountFlags, CreateAccountStatus};
use uuid::Uuid;

use crate::accounts::{
    asset_liquidity_account_id, liquidity_account, settlement_account, AccountCode,
};
use crate::command::{Outcome, Success};
use crate::error::AssetError;
use crate::port::LedgerPort;
use crate::state::Payments;

/// Rafiki's largest ledger number (`smallserial`).
pub(crate) const LEDGER_MAX: u32 = 32767;

/// An asset as Rafiki has it. Its liquidity is not here: it is the ledger balance of the
/// account whose id is the asset's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Chosen by the front (UUID v4).
    pub id: Uuid,
    /// ISO 4217 where possible; not validated, as in Rafiki.
    pub code: String,
    /// Decimal scale.
    pub scale: u8,
    /// The ledger number of all the asset's accounts.
    pub ledger: u32,
    /// Web Monetization receipts a wallet address gathers before a withdrawal event.
    pub withdrawal_threshold: Option<u128>,
    /// Liquidity at or below which `asset.liquidity_low` fires.
    pub liquidity_threshold: Option<u128>,
    /// Core timestamp (ns since the Unix epoch).
    pub created_at: u64,
    /// Set by `deleteAsset` (soft delete).
    pub deleted_at: Option<u64>,
}

/// The asset mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssetCommand {
    /// `createAsset`.
    Create(CreateAsset),
    /// `updateAsset`.
    Update(UpdateAsset),
    /// `deleteAsset`.
    Delete(DeleteAsset),
}

/// `createAsset`'s input, with the id the front chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAsset {
    /// The new asset's id, if one is created.
    pub id: Uuid,
    /// Asset code.
    pub code: String,
    /// Asset scale.
    pub scale: u8,
    /// See `Asset::withdrawal_threshold`.
    pub withdrawal_threshold: Option<u128>,
    /// See `Asset::liquidity_threshold`.
    pub liquidity_threshold: Option<u128>,
}

/// `updateAsset`'s input: both thresholds are overwritten (an omitted one becomes `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAsset {
    /// The asset; `None` when the client's id is not a UUID (then it is unknown).
    pub id: Option<Uuid>,
    /// New withdrawal threshold.
    pub withdrawal_threshold: Option<u128>,
    /// New liquidity threshold.
    pub liquidity_threshold: Option<u128>,
}

/// `deleteAsset`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAsset {
    /// The asset; `None` when the client's id is not a UUID.
    pub id: Option<Uuid>,
}

impl Payments {
    pub(crate) fn execute_asset<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &AssetCommand,
        timestamp: u64,
    ) -> Outcome {
        match command {
            AssetCommand::Create(create) => self.execute_create_asset(port, create, timestamp),
            AssetCommand::Update(update) => self.execute_update_asset(update),
            AssetCommand::Delete(delete) => self.execute_delete_asset(delete, timestamp),
        }
    }

    fn execute_create_asset<P: LedgerPort>(
        &mut self,
        port: &mut P,
        create: &CreateAsset,
        timestamp: u64,
    ) -> Outcome {
        let code_scale = (create.code.clone(), create.scale);
        if let Some(&id) = self.assets_by_code.get(&code_scale) {
            let asset = self.assets.get_mut(&id).expect("index and assets agree");
            if asset.deleted_at.is_none() {
                return Err(AssetError::DuplicateAsset.into());
            }
            // Rafiki re-activates a soft-deleted asset as it was: same id, old thresholds,
            // no new accounts.
            asset.deleted_at = None;
            return Ok(Success::Asset(asset.clone()));
        }
        assert!(
            !self.assets.contains_key(&create.id),
            "the front chose a fresh id"
        );
        let ledger = self.ledger_last + 1;
        // Past Rafiki's `smallserial` range the ledger numbers run out, as Rafiki's would.
        if ledger > LEDGER_MAX {
            return Err(AssetError::DuplicateAsset.into());
        }
        let mut liquidity = liquidity_account(
            asset_liquidity_account_id(create.id),
            create.id,
            ledger,
            AccountCode::LiquidityAsset,
        );
        liquidity.flags =
            AccountFlags(liquidity.flags.0 | AccountFlags::LINKED | AccountFlags::HISTORY);
        let settlement = settlement_account(create.id, ledger);
        let mut results = Vec::with_capacity(2);
        port.create_accounts(&[liquidity, settlement], &mut results);
        // Both ids derive from a fresh UUID on a fresh ledger number: the pair cannot fail.
        assert!(results
            .iter()
            .all(|result| result.status == CreateAccountStatus::Created));
        self.ledger_last = ledger;
        let asset = Asset {
            id: create.id,
            code: create.code.clone(),
            scale: create.scale,
            ledger,
            withdrawal_threshold: create.withdrawal_threshold,
            liquidity_threshold: create.liquidity_threshold,
            created_at: timestamp,
            deleted_at: None,
        };
        self.assets_by_code.insert(code_scale, asset.id);
        self.assets_created.insert(timestamp, asset.id);
        self.assets.insert(asset.id, asset.clone());
        Ok(Success::Asset(asset))
    }

    fn execute_update_asset(&mut self, update: &UpdateAsset) -> Outcome {
        let asset = update
            .id
            .and_then(|id| self.assets.get_mut(&id))
            .filter(|asset| asset.deleted_at.is_none())
            .ok_or(AssetError::UnknownAsset)?;
        asset.withdrawal_threshold = update.withdrawal_threshold;
        asset.liquidity_threshold = update.liquidity_threshold;
        Ok(Success::Asset(asset.clone()))
    }

    fn execute_delete_asset(&mut self, delete: &DeleteAsset, timestamp: u64) -> Outcome {
        let id = delete
            .id
            .filter(|id| self.asset_active(*id).is_some())
            .ok_or(AssetError::UnknownAsset)?;
        if self.asset_in_use(id) {
            return Err(AssetError::CannotDeleteInUseAsset.into());
        }
        let asset = self.assets.get_mut(&id).expect("checked active above");
        asset.deleted_at = Some(timestamp);
        Ok(Success::Asset(asset.clone()))
    }

    /// The asset, unless it is unknown or deleted.
    pub fn asset_active(&self, id: Uuid) -> Option<&Asset> {
        self.assets
            .get(&id)
            .filter(|asset| asset.deleted_at.is_none())
    }

    /// The asset whose accounts are on `ledger`, deleted or not.
    pub fn asset_by_ledger(&self, ledger: u32) -> Option<&Asset> {
        self.assets.values().find(|asset| asset.ledger == ledger)
    }

    /// The asset with this code and scale, deleted or not (as Rafiki's `assetByCodeAndScale`).
    pub fn asset_by_code_and_scale(&self, code: &str, scale: u8) -> Option<&Asset> {
        self.assets_by_code
            .get(&(code.to_owned(), scale))
            .map(|id| &self.assets[id])
    }
}
