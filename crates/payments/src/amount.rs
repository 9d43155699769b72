//! Rafiki's `Amount` and `AmountInput`: a value in an asset's minor units, with the asset's code
//! and scale.

use serde::{Deserialize, Serialize};

use crate::webhook_events::DecimalText;

/// An amount as the client sends it (`AmountInput`); the domain checks code and scale against
/// the asset it must be in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountInput {
    /// Minor units.
    pub value: u128,
    /// The asset's code, as sent.
    pub asset_code: String,
    /// The asset's scale, as sent.
    pub asset_scale: u8,
}

/// An amount as Rafiki returns it (`Amount`).
pub type Amount = AmountInput;

impl AmountInput {
    /// What Rafiki's webhook data carries: `{assetCode, assetScale, value: "<string>"}`.
    pub(crate) fn data(&self) -> AmountData<'_> {
        self.data_of(self.value)
    }

    /// `value` in this amount's asset, as webhook data carries it.
    pub(crate) fn data_of(&self, value: u128) -> AmountData<'_> {
        AmountData {
            asset_code: &self.asset_code,
            asset_scale: self.asset_scale,
            value: DecimalText(value),
        }
    }
}

/// An amount in webhook event data. Its fields are in the byte order of their names, the order
/// in which the event data was first written (through serde_json's sorted map): the data is
/// state, and replaying an old log must give the same bytes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmountData<'a> {
    asset_code: &'a str,
    asset_scale: u8,
    value: DecimalText,
}
