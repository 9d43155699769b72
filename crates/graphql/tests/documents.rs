//! Client documents against the schema this crate serves (docs/graphql.md, "Client documents").
//!
//! `tests/documents/*.graphql` are Tally's own documents, written in the shape Rafiki's clients
//! send (the same operations, variables and selection depth); each must parse and validate
//! against `tally_graphql::sdl()`, and together they must use every `Query` and `Mutation` field.
//! `TALLY_CLIENT_DOCUMENTS=<dir>` also validates every `*.graphql` under `<dir>` (for example
//! documents extracted from Rafiki's Bruno collection or Admin UI, which are not committed here).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use apollo_compiler::ast::{self, Definition, OperationType, Selection};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};

fn schema() -> Valid<Schema> {
    match Schema::parse_and_validate(tally_graphql::sdl(), "schema.graphql") {
        Ok(schema) => schema,
        Err(invalid) => panic!("the served SDL is not a valid schema:\n{}", invalid.errors),
    }
}

/// The `*.graphql` files under `dir` (recursively), sorted.
fn graphql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "graphql")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// `Err` with every diagnostic when `source` does not parse or does not validate.
fn validate(schema: &Valid<Schema>, source: &str, path: &Path) -> Result<(), String> {
    ExecutableDocument::parse_and_validate(schema, source, path)
        .map(drop)
        .map_err(|invalid| invalid.errors.to_string())
}

/// Every field name selected anywhere in `document`, and the root fields of its operations
/// as `("query" | "mutation", name)`.
fn fields(document: &ast::Document) -> (BTreeSet<String>, BTreeSet<(&'static str, String)>) {
    fn walk(selections: &[Selection], names: &mut BTreeSet<String>) {
        for selection in selections {
            match selection {
                Selection::Field(field) => {
                    names.insert(field.name.to_string());
                    walk(&field.selection_set, names);
                }
                Selection::InlineFragment(fragment) => walk(&fragment.selection_set, names),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    let mut names = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for definition in &document.definitions {
        match definition {
            Definition::OperationDefinition(operation) => {
                walk(&operation.selection_set, &mut names);
                for selection in &operation.selection_set {
                    if let Selection::Field(field) = selection {
                        roots.insert((operation.operation_type.name(), field.name.to_string()));
                    }
                }
            }
            Definition::FragmentDefinition(fragment) => walk(&fragment.selection_set, &mut names),
            _ => {}
        }
    }
    (names, roots)
}

fn parse(source: &str, path: &Path) -> ast::Document {
    ast::Document::parse(source, path)
        .unwrap_or_else(|invalid| panic!("{} does not parse:\n{}", path.display(), invalid.errors))
}

#[test]
fn tallys_documents_validate_and_cover_every_root_field() {
    let schema = schema();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents");
    let files = graphql_files(&dir);
    assert!(!files.is_empty(), "no documents in {}", dir.display());
    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    for path in &files {
        let source = read(path);
        if let Err(errors) = validate(&schema, &source, path) {
            failures.push(format!("{}:\n{errors}", path.display()));
        }
        used.extend(fields(&parse(&source, path)).1);
    }
    assert!(
        failures.is_empty(),
        "invalid documents:\n{}",
        failures.join("\n")
    );

    let mut unused = Vec::new();
    for operation_type in [OperationType::Query, OperationType::Mutation] {
        let root = schema
            .root_operation(operation_type)
            .expect("a root operation type");
        let object = schema.get_object(root).expect("the root is an object type");
        for name in object.fields.keys() {
            if !used.contains(&(operation_type.name(), name.to_string())) {
                unused.push(format!("{root}.{name}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "served root fields that no document in tests/documents uses: {unused:?}"
    );
}

/// The validation this file relies on rejects what a client would get wrong.
#[test]
fn a_misspelled_field_or_a_wrong_argument_type_fails() {
    let schema = schema();
    for (source, expected) in [
        (
            "query GetAsset($id: String!) { asset(id: $id) { id cod } }",
            "cod",
        ),
        (
            "query GetAsset($id: ID!) { asset(id: $id) { id code } }",
            "$id",
        ),
        (
            "mutation { createAsset(input: { code: \"USD\" }) { asset { id } } }",
            "scale",
        ),
    ] {
        let errors = validate(&schema, source, Path::new("wrong.graphql"))
            .expect_err("an invalid document validated");
        assert!(errors.contains(expected), "{expected} not in:\n{errors}");
    }
}

#[test]
fn client_documents_from_tally_client_documents_validate() {
    let Some(dir) = std::env::var_os("TALLY_CLIENT_DOCUMENTS") else {
        eprintln!("TALLY_CLIENT_DOCUMENTS is not set: no client documents checked");
        return;
    };
    let schema = schema();
    let files = graphql_files(Path::new(&dir));
    assert!(
        !files.is_empty(),
        "no *.graphql under {}",
        Path::new(&dir).display()
    );
    let (mut valid, mut failures) = (0, Vec::new());
    for path in &files {
        match validate(&schema, &read(path), path) {
            Ok(()) => valid += 1,
            Err(errors) => failures.push(format!("{}:\n{errors}", path.display())),
        }
    }
    eprintln!(
        "{} client documents: {valid} valid, {} invalid",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "invalid client documents:\n{}",
        failures.join("\n")
    );
}

/// Rafiki v1.2.1's interfaces and the types that implement them, in its SDL's order.
#[test]
fn rafikis_interfaces_are_implemented_as_v1_2_1_declares() {
    let schema = schema();
    let model = [
        "AccountingTransfer",
        "Asset",
        "Fee",
        "IncomingPayment",
        "OutgoingPayment",
        "Payment",
        "Peer",
        "WalletAddress",
        "WalletAddressKey",
        "WebhookEvent",
    ];
    let base_payment = ["IncomingPayment", "OutgoingPayment", "Payment"];
    for (interface, fields) in [
        ("Model", &["id", "createdAt"][..]),
        (
            "BasePayment",
            &["id", "walletAddressId", "metadata", "createdAt", "client"][..],
        ),
    ] {
        let declared = schema
            .get_interface(interface)
            .unwrap_or_else(|| panic!("no interface {interface}"));
        let names: Vec<&str> = declared.fields.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, fields, "{interface}'s fields");
    }
    for (name, object) in &schema.types {
        let apollo_compiler::schema::ExtendedType::Object(object) = object else {
            continue;
        };
        let implements: Vec<&str> = object
            .implements_interfaces
            .iter()
            .map(|interface| interface.as_str())
            .collect();
        let mut expected = Vec::new();
        if base_payment.contains(&name.as_str()) {
            expected.push("BasePayment");
        }
        if model.contains(&name.as_str()) {
            expected.push("Model");
        }
        assert_eq!(implements, expected, "what {name} implements");
    }
    let through_interfaces = "query($id: String!) { incomingPayment(id: $id) { \
        ... on BasePayment { id walletAddressId metadata client } ... on Model { createdAt } } }";
    validate(&schema, through_interfaces, Path::new("interfaces.graphql"))
        .expect("a selection through the interfaces validates");
}
