//! What the front tells an operator about each `POST /graphql` (issue 9): the labels of
//! `tally_graphql_operations_total` and `tally_graphql_operation_duration_seconds`, and the
//! request id of its log span.
//!
//! Both labels come from fixed sets, so a client cannot grow the number of series: the operation
//! is the first root field the request selects when the schema has it (`createAsset`, `assets`,
//! ...), `introspection` for `__schema` and the like, else `other`; the code is the first error's
//! `extensions.code` when it is one Tally sends, `ok` without errors, else `other`. The client's
//! own `operationName` is not used: it is free text.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, TypeKind, TypeSystemDefinition,
};

/// The label of an operation whose first root field is not in the schema.
pub(crate) const OPERATION_OTHER: &str = "other";
/// The label of an error code Tally does not send.
const CODE_OTHER: &str = "other";
/// The code label of a response without errors.
pub(crate) const CODE_OK: &str = "ok";
/// The error codes Tally sends (`errors::Code`, and `errors::codes_complete`'s own).
const CODES: [&str; 8] = [
    "BAD_USER_INPUT",
    "DUPLICATE",
    "FORBIDDEN",
    "INTERNAL_SERVER_ERROR",
    "NOT_FOUND",
    "CONFLICT",
    "INACTIVE",
    "GRAPHQL_VALIDATION_FAILED",
];

/// The Query and Mutation root fields of the schema, read from its SDL once per process (the
/// names live as long as the process: a bounded set, a few dozen short strings).
fn root_fields() -> &'static HashSet<&'static str> {
    static FIELDS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let sdl = crate::schema::sdl();
        let document = async_graphql::parser::parse_schema(&sdl).expect("the schema's SDL parses");
        let mut fields = HashSet::new();
        for definition in document.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let definition = definition.node;
            if !matches!(definition.name.node.as_str(), "Query" | "Mutation") {
                continue;
            }
            if let TypeKind::Object(object) = definition.kind {
                for field in object.fields {
                    let name: &'static str = String::leak(field.node.name.node.to_string());
                    fields.insert(name);
                }
            }
        }
        fields
    })
}

/// The operation label of a parsed request: the first root field it selects.
pub(crate) fn operation_label(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> &'static str {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) => operations.values().next(),
    };
    let Some(operation) = operation else {
        return OPERATION_OTHER;
    };
    let Some(first) = operation.node.selection_set.node.items.first() else {
        return OPERATION_OTHER;
    };
    let Selection::Field(field) = &first.node else {
        return OPERATION_OTHER;
    };
    let name = field.node.name.node.as_str();
    if name.starts_with("__") {
        return "introspection";
    }
    root_fields().get(name).copied().unwrap_or(OPERATION_OTHER)
}

/// The code label of a response: its first error's code.
pub(crate) fn code_label(response: &async_graphql::Response) -> &'static str {
    let Some(error) = response.errors.first() else {
        return CODE_OK;
    };
    let code = error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"));
    match code {
        Some(async_graphql::Value::String(code)) => CODES
            .iter()
            .find(|known| *known == code)
            .copied()
            .unwrap_or(CODE_OTHER),
        _ => CODE_OTHER,
    }
}

/// A new request id: unique within the process, in the order requests arrived.
pub(crate) fn request_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(query: &str, name: Option<&str>) -> &'static str {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        operation_label(&document, name)
    }

    #[test]
    fn operations_are_labelled_by_a_known_root_field_only() {
        assert_eq!(
            label(
                "mutation { createAsset(input: {code: \"USD\", scale: 2}) { asset { id } } }",
                None
            ),
            "createAsset"
        );
        assert_eq!(
            label("query Mine { assets { edges { cursor } } }", None),
            "assets"
        );
        assert_eq!(
            label(
                "query A { assets { edges { cursor } } } query B { peers { edges { cursor } } }",
                Some("B")
            ),
            "peers"
        );
        assert_eq!(label("{ nonsense }", None), OPERATION_OTHER);
        assert_eq!(
            label("{ __schema { types { name } } }", None),
            "introspection"
        );
        assert_eq!(
            label(
                "{ ...F } fragment F on Query { assets { edges { cursor } } }",
                None
            ),
            OPERATION_OTHER
        );
    }

    #[test]
    fn codes_are_labelled_from_a_fixed_set() {
        let mut response = async_graphql::Response::new(async_graphql::Value::Null);
        assert_eq!(code_label(&response), CODE_OK);
        let mut error = async_graphql::ServerError::new("no", None);
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "NOT_FOUND");
        response.errors.push(error);
        assert_eq!(code_label(&response), "NOT_FOUND");
        response.errors[0]
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "made up by a resolver");
        assert_eq!(code_label(&response), CODE_OTHER);
    }
}
