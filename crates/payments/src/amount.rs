//! Rafiki's `Amount` and `AmountInput`: a value in an asset's minor units, with the asset's code
//! and scale.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
    /// The JSON Rafiki's webhook data carries: `{value: "<string>", assetCode, assetScale}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "value": self.value.to_string(),
            "assetCode": self.asset_code,
            "assetScale": self.asset_scale,
        })
    }
}
