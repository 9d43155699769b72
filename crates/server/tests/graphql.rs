//! The Admin API end to end: a real `tally start` child, real HTTP. Each test drives one flow
//! of Rafiki's Admin API and checks the payloads, the error codes and messages of
//! `rafiki-admin-api.md` §4.3, idempotent retries (also across a restart), and that liquidity
//! is read from the ledger.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// A `tally start` child with both listeners on ephemeral ports.
struct Tally {
    child: Child,
    graphql: String,
}

impl Tally {
    fn start(data_dir: &Path) -> Tally {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args([
                "start",
                "--addresses",
                "127.0.0.1:0",
                "--graphql-address",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--segment-mib")
            .arg("4")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tally");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let graphql = loop {
            let line = lines
                .next()
                .expect("tally printed its listeners")
                .expect("stdout is text");
            if let Some(address) = line.strip_prefix("graphql listening on ") {
                break format!("http://{address}/graphql");
            }
        };
        Tally { child, graphql }
    }

    /// Posts a GraphQL request; returns the whole JSON response.
    fn post(&self, query: &str, variables: Value) -> Value {
        let response =
            ureq::post(&self.graphql).send_json(json!({ "query": query, "variables": variables }));
        match response {
            Ok(response) => response.into_json().expect("JSON body"),
            Err(ureq::Error::Status(_, response)) => response.into_json().expect("JSON body"),
            Err(error) => panic!("HTTP failed: {error}"),
        }
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "tally exited {status}");
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

/// The first error's `extensions.code` and message.
fn error_of(response: &Value) -> (String, String) {
    let error = &response["errors"][0];
    (
        error["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        error["message"].as_str().unwrap_or("").to_owned(),
    )
}

const CREATE_ASSET: &str = "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id code scale liquidity withdrawalThreshold liquidityThreshold createdAt } } }";
const DEPOSIT: &str = "mutation($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) { success } }";
const WITHDRAW: &str = "mutation($input: CreateAssetLiquidityWithdrawalInput!) { createAssetLiquidityWithdrawal(input: $input) { success } }";
const POST: &str = "mutation($input: PostLiquidityWithdrawalInput!) { postLiquidityWithdrawal(input: $input) { success } }";
const VOID: &str = "mutation($input: VoidLiquidityWithdrawalInput!) { voidLiquidityWithdrawal(input: $input) { success } }";
const ASSET: &str = "query($id: String!) { asset(id: $id) { id code liquidity sendingFee { fixed basisPoints type } } }";

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn create_asset(tally: &Tally, code: &str, scale: u8) -> String {
    let response = tally.post(
        CREATE_ASSET,
        json!({ "input": { "code": code, "scale": scale } }),
    );
    response["data"]["createAsset"]["asset"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createAsset failed: {response}"))
        .to_owned()
}

fn liquidity(tally: &Tally, asset: &str) -> String {
    let response = tally.post(ASSET, json!({ "id": asset }));
    response["data"]["asset"]["liquidity"]
        .as_str()
        .unwrap_or_else(|| panic!("asset query failed: {response}"))
        .to_owned()
}

#[test]
fn assets_and_liquidity_with_rafiki_errors() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());

    let response = tally.post(
        CREATE_ASSET,
        json!({ "input": { "code": "USD", "scale": 2, "withdrawalThreshold": "100", "liquidityThreshold": 5 } }),
    );
    let asset = &response["data"]["createAsset"]["asset"];
    assert_eq!(asset["code"], "USD");
    assert_eq!(asset["scale"], 2);
    assert_eq!(asset["liquidity"], "0");
    assert_eq!(asset["withdrawalThreshold"], "100");
    assert_eq!(asset["liquidityThreshold"], "5");
    assert!(asset["createdAt"].as_str().unwrap().ends_with('Z'));
    let usd = asset["id"].as_str().unwrap().to_owned();

    let duplicate = tally.post(
        CREATE_ASSET,
        json!({ "input": { "code": "USD", "scale": 2 } }),
    );
    assert_eq!(
        error_of(&duplicate),
        ("DUPLICATE".into(), "Asset already exists".into())
    );
    assert!(duplicate["data"].is_null());

    let negative = tally.post(DEPOSIT, json!({ "input": { "assetId": usd, "amount": "-5", "id": uuid(), "idempotencyKey": uuid() } }));
    assert_eq!(error_of(&negative).0, "BAD_USER_INPUT");

    let deposit = |amount: &str, id: &str, key: &str| {
        tally.post(DEPOSIT, json!({ "input": { "assetId": usd, "amount": amount, "id": id, "idempotencyKey": key } }))
    };
    let first_id = uuid();
    let ok = deposit("1000", &first_id, &uuid());
    assert_eq!(ok["data"]["depositAssetLiquidity"]["success"], true, "{ok}");
    assert_eq!(liquidity(&tally, &usd), "1000");

    let cases = [
        (deposit("0", &uuid(), &uuid()), "FORBIDDEN", "Transfer amount is zero"),
        (deposit("5", "not-a-uuid", &uuid()), "BAD_USER_INPUT", "Invalid transfer id"),
        (deposit("5", &first_id, &uuid()), "DUPLICATE", "Transfer already exists"),
        (
            tally.post(DEPOSIT, json!({ "input": { "assetId": uuid(), "amount": "5", "id": uuid(), "idempotencyKey": uuid() } })),
            "NOT_FOUND",
            "Unknown asset",
        ),
        (
            tally.post(WITHDRAW, json!({ "input": { "assetId": usd, "amount": "5000", "id": uuid(), "idempotencyKey": uuid(), "timeoutSeconds": 0 } })),
            "FORBIDDEN",
            "Insufficient transfer balance",
        ),
        (
            tally.post(POST, json!({ "input": { "withdrawalId": uuid(), "idempotencyKey": uuid() } })),
            "NOT_FOUND",
            "Unknown transfer",
        ),
        (
            tally.post(ASSET, json!({ "id": uuid() })),
            "NOT_FOUND",
            "Asset not found",
        ),
    ];
    for (response, code, message) in cases {
        assert_eq!(
            error_of(&response),
            (code.to_owned(), message.to_owned()),
            "{response}"
        );
    }
    // Failed mutations moved nothing.
    assert_eq!(liquidity(&tally, &usd), "1000");

    // Two-phase withdrawal: pending reduces liquidity at once; void restores; post is final.
    let withdrawal = uuid();
    let pending = tally.post(WITHDRAW, json!({ "input": { "assetId": usd, "amount": "300", "id": withdrawal, "idempotencyKey": uuid(), "timeoutSeconds": "60" } }));
    assert_eq!(
        pending["data"]["createAssetLiquidityWithdrawal"]["success"], true,
        "{pending}"
    );
    assert_eq!(liquidity(&tally, &usd), "700");
    let voided = tally.post(
        VOID,
        json!({ "input": { "withdrawalId": withdrawal, "idempotencyKey": uuid() } }),
    );
    assert_eq!(
        voided["data"]["voidLiquidityWithdrawal"]["success"], true,
        "{voided}"
    );
    assert_eq!(liquidity(&tally, &usd), "1000");
    let again = tally.post(
        POST,
        json!({ "input": { "withdrawalId": withdrawal, "idempotencyKey": uuid() } }),
    );
    assert_eq!(
        error_of(&again),
        ("CONFLICT".into(), "Transfer already voided".into())
    );
    let second = uuid();
    tally.post(WITHDRAW, json!({ "input": { "assetId": usd, "amount": "250", "id": second, "idempotencyKey": uuid(), "timeoutSeconds": "60" } }));
    let posted = tally.post(
        POST,
        json!({ "input": { "withdrawalId": second, "idempotencyKey": uuid() } }),
    );
    assert_eq!(
        posted["data"]["postLiquidityWithdrawal"]["success"], true,
        "{posted}"
    );
    assert_eq!(liquidity(&tally, &usd), "750");

    // Fees: the newest row is in force.
    let set_fee = "mutation($input: SetFeeInput!) { setFee(input: $input) { fee { id assetId type fixed basisPoints } } }";
    let bad = tally.post(set_fee, json!({ "input": { "assetId": usd, "type": "SENDING", "fee": { "fixed": 1, "basisPoints": 10001 } } }));
    assert_eq!(
        error_of(&bad),
        (
            "BAD_USER_INPUT".into(),
            "Basis point fee must be between 0 and 10000".into()
        )
    );
    for points in [100, 250] {
        let fee = tally.post(set_fee, json!({ "input": { "assetId": usd, "type": "SENDING", "fee": { "fixed": "3", "basisPoints": points } } }));
        assert_eq!(fee["data"]["setFee"]["fee"]["basisPoints"], points, "{fee}");
    }
    let asset = tally.post(ASSET, json!({ "id": usd }));
    assert_eq!(asset["data"]["asset"]["sendingFee"]["basisPoints"], 250);

    // Delete, then create again: the same asset comes back.
    let delete = tally.post(
        "mutation($input: DeleteAssetInput!) { deleteAsset(input: $input) { asset { id } } }",
        json!({ "input": { "id": usd } }),
    );
    assert_eq!(delete["data"]["deleteAsset"]["asset"]["id"], usd.as_str());
    assert_eq!(
        error_of(&tally.post(ASSET, json!({ "id": usd }))).0,
        "NOT_FOUND"
    );
    assert_eq!(create_asset(&tally, "USD", 2), usd);
    tally.stop();
}

#[test]
fn pagination_follows_rafiki() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());
    let ids: Vec<String> = (0..5)
        .map(|scale| create_asset(&tally, "EUR", scale))
        .collect();
    let page = "query($after: String, $before: String, $first: Int, $last: Int, $sortOrder: SortOrder) { assets(after: $after, before: $before, first: $first, last: $last, sortOrder: $sortOrder) { pageInfo { startCursor endCursor hasNextPage hasPreviousPage } edges { cursor node { id } } } }";
    let ids_of = |response: &Value| -> Vec<String> {
        response["data"]["assets"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{response}"))
            .iter()
            .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = tally.post(page, json!({ "first": 2 }));
    assert_eq!(ids_of(&newest), [ids[4].clone(), ids[3].clone()]);
    assert_eq!(newest["data"]["assets"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        newest["data"]["assets"]["pageInfo"]["hasPreviousPage"],
        false
    );
    let next = tally.post(page, json!({ "first": 2, "after": ids[3] }));
    assert_eq!(ids_of(&next), [ids[2].clone(), ids[1].clone()]);
    let ascending = tally.post(
        page,
        json!({ "sortOrder": "ASC", "before": ids[3], "last": 2 }),
    );
    assert_eq!(ids_of(&ascending), [ids[1].clone(), ids[2].clone()]);
    let too_many = tally.post(page, json!({ "first": 101 }));
    assert_eq!(
        error_of(&too_many),
        (
            "INTERNAL_SERVER_ERROR".into(),
            "Pagination index error".into()
        )
    );
    let backwards = tally.post(page, json!({ "last": 2 }));
    assert_eq!(
        error_of(&backwards).1,
        "Can't paginate backwards from the start."
    );
    tally.stop();
}

#[test]
fn idempotent_retries_survive_a_crash() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());
    let usd = create_asset(&tally, "USD", 2);
    let key = uuid();
    let transfer = uuid();
    let input = json!({ "input": { "assetId": usd, "amount": "10", "id": transfer, "idempotencyKey": key } });
    let first = tally.post(DEPOSIT, input.clone());
    assert_eq!(
        first["data"]["depositAssetLiquidity"]["success"], true,
        "{first}"
    );
    // A failure is remembered too: the same key with the same failing arguments fails alike.
    let failing_key = uuid();
    let failing = json!({ "input": { "assetId": usd, "amount": "999", "id": uuid(), "idempotencyKey": failing_key, "timeoutSeconds": 0 } });
    assert_eq!(
        error_of(&tally.post(WITHDRAW, failing.clone())).0,
        "FORBIDDEN"
    );
    tally.kill();

    let tally = Tally::start(directory.path());
    let retry = tally.post(DEPOSIT, input);
    assert_eq!(
        retry["data"]["depositAssetLiquidity"]["success"], true,
        "{retry}"
    );
    assert_eq!(liquidity(&tally, &usd), "10", "the retry did not run again");
    // After a deposit makes the withdrawal possible, its retry still returns the first outcome.
    tally.post(DEPOSIT, json!({ "input": { "assetId": usd, "amount": "5000", "id": uuid(), "idempotencyKey": uuid() } }));
    assert_eq!(error_of(&tally.post(WITHDRAW, failing)).0, "FORBIDDEN");
    let other = tally.post(
        DEPOSIT,
        json!({ "input": { "assetId": usd, "amount": "11", "id": uuid(), "idempotencyKey": key } }),
    );
    assert_eq!(
        error_of(&other),
        (
            "INTERNAL_SERVER_ERROR".into(),
            format!("Incoming arguments are different than the original request for idempotencyKey: {key}")
        )
    );
    assert_eq!(liquidity(&tally, &usd), "5010");
    tally.stop();
}
