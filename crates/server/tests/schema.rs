//! `tally schema` prints the Admin API's SDL; it must equal the committed `docs/schema.graphql`,
//! so that every change to the API's shape is a reviewed change to that file.

#[test]
fn schema_matches_the_committed_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("schema")
        .output()
        .expect("run tally schema");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("SDL is text");
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.graphql");
    let committed = std::fs::read_to_string(committed_path).expect("docs/schema.graphql");
    assert!(
        printed == committed,
        "tally schema differs from docs/schema.graphql: regenerate it with `tally schema > docs/schema.graphql` and review the change"
    );
}
