//! The claim behind the known-valid fast path (`src/known_valid.rs`): whenever the check says
//! a request's variables are valid, the schema that skips validation answers exactly as the
//! strict one, and the strict one finds nothing wrong. Against a stopped core, so that
//! resolvers answer without running anything.

use proptest::prelude::*;
use tally_graphql::testing::BothSchemas;
use tally_graphql::CoreHandle;

const DEPOSIT: &str = "mutation D($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) { success } }";
const SET_FEE: &str = "mutation F($input: SetFeeInput!) { setFee(input: $input) { fee { id } } }";

fn leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(null)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!("SENDING")),
        Just(serde_json::json!("RECEIVING")),
        Just(serde_json::json!("x")),
        Just(serde_json::json!("-3")),
        Just(serde_json::json!("12")),
        Just(serde_json::json!(12)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(99_999_999_999_i64)),
        Just(serde_json::json!([1])),
        Just(serde_json::json!({"fixed": "1", "basisPoints": 2})),
        Just(serde_json::json!({"fixed": "1"})),
        Just(serde_json::json!({"fixed": 1, "basisPoints": "2", "x": 1})),
    ]
}

/// A valid input of the document, then up to three edits: a field set to a leaf, or removed
/// (`None`).
fn input(set_fee: bool) -> impl Strategy<Value = serde_json::Value> {
    let names = [
        "assetId",
        "amount",
        "id",
        "idempotencyKey",
        "type",
        "fee",
        "bogus",
    ];
    let edit = (
        proptest::sample::select(names.to_vec()),
        proptest::option::of(leaf()),
    );
    proptest::collection::vec(edit, 0..3).prop_map(move |edits| {
        let mut input = if set_fee {
            serde_json::json!({"assetId": "a", "type": "SENDING",
                "fee": {"fixed": "1", "basisPoints": 2}, "idempotencyKey": "k"})
        } else {
            serde_json::json!({"assetId": "a", "amount": "5", "id": "i",
                "idempotencyKey": "k"})
        };
        let object = input.as_object_mut().expect("an object");
        for (name, value) in edits {
            match value {
                Some(value) => object.insert(name.to_string(), value),
                None => object.remove(name),
            };
        }
        serde_json::json!({ "input": input })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn known_valid_requests_get_the_strict_answer(
        (set_fee, variables) in any::<bool>().prop_flat_map(|set_fee| (Just(set_fee), input(set_fee))),
    ) {
        let (submit, stopped) = tokio::sync::mpsc::channel(1);
        drop(stopped);
        let schemas = BothSchemas::new(CoreHandle::new(submit));
        let query = if set_fee { SET_FEE } else { DEPOSIT };
        if schemas.known_valid(query, &variables) {
            let answers = schemas.answer(query, &variables);
            prop_assert!(
                answers.strict_errors_have_paths,
                "strict validation refused: {}", answers.strict
            );
            prop_assert_eq!(answers.strict, answers.fast);
        }
    }
}

/// The property above is not vacuous: the unedited inputs are known valid.
#[test]
fn the_unedited_inputs_are_known_valid() {
    let (submit, _stopped) = tokio::sync::mpsc::channel(1);
    let schemas = BothSchemas::new(CoreHandle::new(submit));
    let deposit = serde_json::json!({"input": {"assetId": "a", "amount": "5", "id": "i", "idempotencyKey": "k"}});
    let fee = serde_json::json!({"input": {"assetId": "a", "type": "SENDING",
        "fee": {"fixed": "1", "basisPoints": 2}, "idempotencyKey": "k"}});
    assert!(schemas.known_valid(DEPOSIT, &deposit));
    assert!(schemas.known_valid(SET_FEE, &fee));
    assert!(!schemas.known_valid(DEPOSIT, &serde_json::json!({})));
}
