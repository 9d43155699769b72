//! Fees (`rafiki-admin-api.md` §7.10): every `setFee` inserts a row; the newest row per asset
//! and type is the one in force.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Outcome, Success};
use crate::error::FeeError;
use crate::state::Payments;

/// Basis points in a whole.
pub const BASIS_POINTS_MAX: i32 = 10_000;

/// Rafiki's `FeeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FeeType {
    /// Charged to the sender.
    Sending,
    /// Charged to the receiver.
    Receiving,
}

/// One fee row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    /// Chosen by the front.
    pub id: Uuid,
    /// The asset it applies to.
    pub asset_id: Uuid,
    /// Sending or receiving.
    pub fee_type: FeeType,
    /// Flat amount in the asset's minor units.
    pub fixed: u128,
    /// 0..=10000; 1 bp = 0.01 %.
    pub basis_points: u16,
    /// Core timestamp.
    pub created_at: u64,
}

/// `setFee`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFee {
    /// The new row's id.
    pub id: Uuid,
    /// The asset; `None` when the client's id is not a UUID.
    pub asset_id: Option<Uuid>,
    /// Sending or receiving.
    pub fee_type: FeeType,
    /// Flat part.
    pub fixed: u128,
    /// As the client sent it; checked here.
    pub basis_points: i32,
}

impl Payments {
    pub(crate) fn execute_set_fee(&mut self, set: &SetFee, timestamp: u64) -> Outcome {
        let basis_points = u16::try_from(set.basis_points)
            .ok()
            .filter(|&points| i32::from(points) <= BASIS_POINTS_MAX)
            .ok_or(FeeError::InvalidBasisPointFee)?;
        let asset_id = set
            .asset_id
            .filter(|id| self.asset_active(*id).is_some())
            .ok_or(FeeError::UnknownAsset)?;
        let fee = Fee {
            id: set.id,
            asset_id,
            fee_type: set.fee_type,
            fixed: set.fixed,
            basis_points,
            created_at: timestamp,
        };
        self.fees_created.insert((asset_id, timestamp), fee.id);
        self.fee_latest.insert((asset_id, set.fee_type), fee.id);
        self.fees.insert(fee.id, fee.clone());
        Ok(Success::Fee(fee))
    }

    /// The fee in force for this asset and type.
    pub fn fee_latest(&self, asset_id: Uuid, fee_type: FeeType) -> Option<&Fee> {
        self.fee_latest
            .get(&(asset_id, fee_type))
            .map(|id| &self.fees[id])
    }
}
