//! When a request can skip async-graphql's full validation, with the same answer.
//!
//! Validation (the GraphQL spec's rules, run by async-graphql's `ValidationMode::Strict`) was a
//! quarter of a mutation's instructions under `callgrind`, on the same few documents every time.
//! Its outcome depends on the document alone but for one rule: `ArgumentsOfCorrectType` also
//! checks the variables' values against the types where they are used. So a document that
//! passed every rule once (a request of it answered without any error, kept in
//! `DocumentCache`) passes them again with any variables that pass that one check, and for
//! those the schema built with `ValidationMode::Fast` answers exactly as the strict one: Fast
//! still computes depth, complexity and cache control and enforces the limits, and execution is
//! the same.
//!
//! The check is this module's `InputTypes::variables_valid`, a copy of async-graphql's
//! `is_valid_input_value` (validation/utils.rs, 7.2) over the input types of the schema's SDL,
//! the scalars' own `is_valid`, applied to each variable against its declared type (the rule
//! `VariablesInAllowedPosition`, already passed, makes the declared type as strict as every
//! position it is used in, except that a nullable variable with a default may fill a non-null
//! position: null and missing values are sent the strict way). Wherever it is unsure it says
//! no, and the request takes the strict schema: a one-of input object, an unknown type, a
//! missing or null variable, a document of several operations.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::{ScalarType, ValidationMode, Value, Variables, ID};

use crate::scalars::{JsonObject, UInt64, UInt8};
use crate::schema::AdminSchema;

/// The two schemas a request may meet, and the check that chooses between them.
pub(crate) struct Schemas {
    /// Full validation: for every request not known to pass it.
    pub(crate) strict: AdminSchema,
    /// The same schema validating only what `InputTypes::variables_valid` does not show
    /// (depth, complexity): for requests that strict validation is known to pass.
    pub(crate) known_valid: AdminSchema,
    /// The strict schema's input types.
    pub(crate) input_types: InputTypes,
}

impl Schemas {
    /// Both schemas from `build`, which gives the schema with a validation mode.
    pub(crate) fn new(build: impl Fn(ValidationMode) -> AdminSchema) -> Schemas {
        let strict = build(ValidationMode::Strict);
        let input_types = InputTypes::from_sdl(&strict.sdl());
        Schemas {
            strict,
            known_valid: build(ValidationMode::Fast),
            input_types,
        }
    }
}

/// A scalar's `ScalarType::is_valid`, what async-graphql's registry calls.
type ScalarCheck = fn(&Value) -> bool;

/// One input type, as validation sees it.
enum InputType {
    Scalar(ScalarCheck),
    Enum(HashSet<String>),
    Object(Vec<InputField>),
    /// A type this check does not follow (a one-of input object): never known valid.
    Unsupported,
}

struct InputField {
    name: String,
    ty: Type,
    has_default: bool,
}

/// The schema's input types by name.
pub(crate) struct InputTypes {
    types: HashMap<String, InputType>,
}

impl InputTypes {
    /// From the schema's SDL (`Schema::sdl`), which names every input type, enum and scalar.
    pub(crate) fn from_sdl(sdl: &str) -> InputTypes {
        let mut types = HashMap::new();
        let builtin: [(&str, ScalarCheck); 5] = [
            ("String", <String as ScalarType>::is_valid),
            ("Int", <i32 as ScalarType>::is_valid),
            ("Float", <f64 as ScalarType>::is_valid),
            ("Boolean", <bool as ScalarType>::is_valid),
            ("ID", <ID as ScalarType>::is_valid),
        ];
        for (name, check) in builtin {
            types.insert(name.to_string(), InputType::Scalar(check));
        }
        // The SDL comes from the schema itself: a parse failure is a bug, and without the types
        // every request only goes the strict way.
        let Ok(document) = async_graphql::parser::parse_schema(sdl) else {
            return InputTypes { types };
        };
        for definition in document.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let definition = definition.node;
            let name = definition.name.node.to_string();
            let input = match definition.kind {
                TypeKind::Scalar => match name.as_str() {
                    "UInt64" => InputType::Scalar(<UInt64 as ScalarType>::is_valid),
                    "UInt8" => InputType::Scalar(<UInt8 as ScalarType>::is_valid),
                    "JSONObject" => InputType::Scalar(<JsonObject as ScalarType>::is_valid),
                    _ => InputType::Unsupported,
                },
                TypeKind::Enum(enumeration) => InputType::Enum(
                    enumeration
                        .values
                        .iter()
                        .map(|value| value.node.value.node.to_string())
                        .collect(),
                ),
                TypeKind::InputObject(_) if !definition.directives.is_empty() => {
                    InputType::Unsupported
                }
                TypeKind::InputObject(object) => InputType::Object(
                    object
                        .fields
                        .iter()
                        .map(|field| InputField {
                            name: field.node.name.node.to_string(),
                            ty: field.node.ty.node.clone(),
                            has_default: field.node.default_value.is_some(),
                        })
                        .collect(),
                ),
                _ => continue,
            };
            types.insert(name, input);
        }
        InputTypes { types }
    }

    /// Whether `ArgumentsOfCorrectType` finds nothing wrong with `variables` in `document`
    /// (a document with one operation), for sure.
    pub(crate) fn variables_valid(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
    ) -> bool {
        let operation = match &document.operations {
            DocumentOperations::Single(operation) => operation,
            DocumentOperations::Multiple(operations) if operations.len() == 1 => {
                match operations.values().next() {
                    Some(operation) => operation,
                    None => return false,
                }
            }
            DocumentOperations::Multiple(_) => return false,
        };
        operation
            .node
            .variable_definitions
            .iter()
            .all(|definition| {
                let name = &definition.node.name.node;
                match variables.get(name) {
                    None | Some(Value::Null) => false,
                    Some(value) => self.value_valid(&definition.node.var_type.node, value),
                }
            })
    }

    /// `is_valid_input_value(registry, ty, value)` is `None`.
    fn value_valid(&self, ty: &Type, value: &Value) -> bool {
        if let Value::Null = value {
            return ty.nullable;
        }
        match &ty.base {
            BaseType::List(element) => match value {
                Value::List(values) => values.iter().all(|value| self.value_valid(element, value)),
                value => self.value_valid(element, value),
            },
            BaseType::Named(name) => self.named_valid(name, value),
        }
    }

    fn named_valid(&self, name: &str, value: &Value) -> bool {
        match self.types.get(name) {
            None | Some(InputType::Unsupported) => false,
            Some(InputType::Scalar(check)) => check(value),
            Some(InputType::Enum(values)) => match value {
                Value::Enum(name) => values.contains(name.as_str()),
                Value::String(name) => values.contains(name.as_str()),
                _ => false,
            },
            Some(InputType::Object(fields)) => match value {
                Value::Object(given) => {
                    let known = given
                        .keys()
                        .all(|key| fields.iter().any(|field| field.name == key.as_str()));
                    known
                        && fields
                            .iter()
                            .all(|field| match given.get(field.name.as_str()) {
                                Some(value) => self.value_valid(&field.ty, value),
                                None => field.ty.nullable || field.has_default,
                            })
                }
                // async-graphql lets any other value through here (the executor refuses it).
                _ => true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> InputTypes {
        InputTypes::from_sdl(&crate::schema::sdl())
    }

    fn variables(json: serde_json::Value) -> Variables {
        Variables::from_json(json)
    }

    const DEPOSIT: &str = "mutation D($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) { success } }";

    #[test]
    fn knows_a_good_deposit_and_refuses_what_is_unsure_or_wrong() {
        let types = types();
        let document = async_graphql::parser::parse_query(DEPOSIT).unwrap();
        let good = serde_json::json!({"input": {
            "assetId": "0f291ead-1d7f-4cc4-a108-3e4161f19ea6", "amount": "5",
            "id": "0f291ead-1d7f-4cc4-a108-3e4161f19ea7", "idempotencyKey": "k"}});
        assert!(types.variables_valid(&document, &variables(good.clone())));
        let mut unknown_field = good.clone();
        unknown_field["input"]["bogus"] = serde_json::json!(1);
        // UInt64 has no validity check of its own: a negative amount passes validation, and
        // the executor's parse refuses it, with either schema.
        let mut negative = good.clone();
        negative["input"]["amount"] = serde_json::json!("-5");
        assert!(types.variables_valid(&document, &variables(negative)));
        let mut missing = good.clone();
        missing["input"].as_object_mut().unwrap().remove("assetId");
        for bad in [
            unknown_field,
            missing,
            serde_json::json!({}),
            serde_json::json!({"input": null}),
        ] {
            assert!(
                !types.variables_valid(&document, &variables(bad.clone())),
                "{bad}"
            );
        }
        let two = async_graphql::parser::parse_query(format!(
            "{DEPOSIT} query Q {{ assets {{ edges {{ cursor }} }} }}"
        ))
        .unwrap();
        assert!(!types.variables_valid(&two, &variables(good)));
    }
}
