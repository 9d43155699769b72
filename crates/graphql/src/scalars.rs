//! Rafiki's scalars (`rafiki-admin-api.md` §3.1): `UInt8`, `UInt64` (a JSON string out; a
//! number or a string in; negative or non-integer refused) and `JSONObject`.

use async_graphql::{InputValueError, InputValueResult, Number, Scalar, ScalarType, Value};

/// `UInt64`: amounts. Carried as `u128` because the ledger's amounts are (Rafiki sets no upper
/// bound below that either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UInt64(pub u128);

#[Scalar(name = "UInt64")]
impl ScalarType for UInt64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        let parsed = match &value {
            Value::Number(number) => match number.as_u64() {
                Some(value) => Ok(u128::from(value)),
                None if number.as_f64().is_some_and(|value| value < 0.0) => {
                    Err("Input must be unsigned.")
                }
                None => Err("Value is not an integer."),
            },
            Value::String(text) => {
                let text = text.trim();
                if text.starts_with('-') {
                    Err("Input must be unsigned.")
                } else {
                    text.parse::<u128>().map_err(|_| "Value is not an integer.")
                }
            }
            _ => Err("Value is not an integer."),
        };
        parsed.map(UInt64).map_err(InputValueError::custom)
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `UInt8`: scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UInt8(pub u8);

#[Scalar(name = "UInt8")]
impl ScalarType for UInt8 {
    fn parse(value: Value) -> InputValueResult<Self> {
        let number = match &value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse::<u64>().ok(),
            _ => None,
        };
        number
            .and_then(|number| u8::try_from(number).ok())
            .map(UInt8)
            .ok_or_else(|| InputValueError::custom("Provided value is not a UInt8."))
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// `JSONObject`: any JSON object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

#[Scalar(name = "JSONObject")]
impl ScalarType for JsonObject {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value.into_json() {
            Ok(serde_json::Value::Object(object)) => Ok(JsonObject(object)),
            _ => Err(InputValueError::custom(
                "JSONObject cannot represent non-object value",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::from_json(serde_json::Value::Object(self.0.clone())).unwrap_or(Value::Null)
    }
}
