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

/// A test that fails half-way must not leave its server running.
impl Drop for Tally {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tally {
    fn start(data_dir: &Path) -> Tally {
        Tally::start_with(data_dir, &["--auto-peering-address", "off"]).0
    }

    /// Starts with `extra` flags; returns the auto-peering URL too when it is served.
    fn start_with(data_dir: &Path, extra: &[&str]) -> (Tally, Option<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args([
                "start",
                "--addresses",
                "127.0.0.1:0",
                "--graphql-address",
                "127.0.0.1:0",
            ])
            .args(extra)
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
        let mut auto_peering = None;
        let graphql = loop {
            let line = lines
                .next()
                .expect("tally printed its listeners")
                .expect("stdout is text");
            if let Some(address) = line.strip_prefix("auto-peering listening on ") {
                auto_peering = Some(format!("http://{address}/"));
            }
            if let Some(address) = line.strip_prefix("graphql listening on ") {
                break format!("http://{address}/graphql");
            }
        };
        // The auto-peering line comes after the GraphQL one.
        if !extra.contains(&"off") {
            let line = lines.next().expect("auto-peering line").expect("text");
            auto_peering = line
                .strip_prefix("auto-peering listening on ")
                .map(|address| format!("http://{address}/"));
        }
        (Tally { child, graphql }, auto_peering)
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

/// Posts a GraphQL request to `url`; `Err` when no HTTP response came (the server is down).
fn post(url: &str, query: &str, variables: Value) -> Result<Value, String> {
    let body = json!({ "query": query, "variables": variables });
    match ureq::post(url).send_json(body) {
        Ok(response) => Ok(response.into_json().expect("JSON body")),
        Err(ureq::Error::Status(_, response)) => Ok(response.into_json().expect("JSON body")),
        Err(error) => Err(error.to_string()),
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

    let introspection = tally.post("{ __schema { queryType { name } } }", json!({}));
    assert_eq!(
        introspection["data"]["__schema"]["queryType"]["name"], "Query",
        "introspection is on by default"
    );
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

const CREATE_PEER: &str = "mutation($input: CreatePeerInput!) { createPeer(input: $input) { peer { id name staticIlpAddress liquidity maxPacketAmount http { outgoing { authToken endpoint } } asset { id code } } } }";

fn peer_input(asset: &str, address: &str, token: &str) -> Value {
    json!({ "input": {
        "assetId": asset,
        "staticIlpAddress": address,
        "http": { "incoming": { "authTokens": [token] }, "outgoing": { "authToken": "out", "endpoint": "http://peer.example:3002" } },
        "name": "Peer",
        "maxPacketAmount": "1000",
        "initialLiquidity": "100"
    } })
}

#[test]
fn peers_with_rafiki_errors() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());
    let usd = create_asset(&tally, "USD", 2);

    let mut bad_endpoint = peer_input(&usd, "test.peer", "t0");
    bad_endpoint["input"]["http"]["outgoing"]["endpoint"] = json!("not a url");
    let cases = [
        (
            peer_input(&usd, "nope.peer", "t0"),
            "BAD_USER_INPUT",
            "invalid ILP address",
        ),
        (bad_endpoint, "BAD_USER_INPUT", "invalid HTTP endpoint"),
        (
            peer_input(&uuid(), "test.peer", "t0"),
            "NOT_FOUND",
            "unknown asset",
        ),
    ];
    for (input, code, message) in cases {
        let response = tally.post(CREATE_PEER, input);
        assert_eq!(
            error_of(&response),
            (code.to_owned(), message.to_owned()),
            "{response}"
        );
    }

    let created = tally.post(CREATE_PEER, peer_input(&usd, "test.peer", "t1"));
    let peer = &created["data"]["createPeer"]["peer"];
    assert_eq!(peer["liquidity"], "100", "{created}");
    assert_eq!(peer["maxPacketAmount"], "1000");
    assert_eq!(peer["asset"]["id"], usd.as_str());
    assert_eq!(
        peer["http"]["outgoing"]["endpoint"],
        "http://peer.example:3002"
    );
    let id = peer["id"].as_str().unwrap().to_owned();

    let duplicate = tally.post(CREATE_PEER, peer_input(&usd, "test.peer", "t2"));
    assert_eq!(
        error_of(&duplicate),
        (
            "DUPLICATE".into(),
            "duplicate peer found for same ILP address and asset".into()
        )
    );
    let token = tally.post(CREATE_PEER, peer_input(&usd, "test.other", "t1"));
    assert_eq!(
        error_of(&token),
        ("DUPLICATE".into(), "duplicate incoming token".into())
    );

    let deposit_peer = "mutation($input: DepositPeerLiquidityInput!) { depositPeerLiquidity(input: $input) { success } }";
    let unknown = tally.post(deposit_peer, json!({ "input": { "peerId": uuid(), "amount": "5", "id": uuid(), "idempotencyKey": uuid() } }));
    assert_eq!(
        error_of(&unknown),
        ("NOT_FOUND".into(), "unknown peer".into())
    );
    let withdraw_peer = "mutation($input: CreatePeerLiquidityWithdrawalInput!) { createPeerLiquidityWithdrawal(input: $input) { success } }";
    let unknown = tally.post(withdraw_peer, json!({ "input": { "peerId": uuid(), "amount": "5", "id": uuid(), "idempotencyKey": uuid(), "timeoutSeconds": 0 } }));
    assert_eq!(
        error_of(&unknown),
        ("NOT_FOUND".into(), "Unknown peer".into())
    );
    let deposited = tally.post(deposit_peer, json!({ "input": { "peerId": id, "amount": "50", "id": uuid(), "idempotencyKey": uuid() } }));
    assert_eq!(
        deposited["data"]["depositPeerLiquidity"]["success"], true,
        "{deposited}"
    );
    let withdrawn = tally.post(withdraw_peer, json!({ "input": { "peerId": id, "amount": "30", "id": uuid(), "idempotencyKey": uuid(), "timeoutSeconds": 0 } }));
    assert_eq!(
        withdrawn["data"]["createPeerLiquidityWithdrawal"]["success"], true,
        "{withdrawn}"
    );

    let update = tally.post(
        "mutation($input: UpdatePeerInput!) { updatePeer(input: $input) { peer { name liquidity maxPacketAmount } } }",
        json!({ "input": { "id": id, "name": "Renamed", "maxPacketAmount": null } }),
    );
    let peer = &update["data"]["updatePeer"]["peer"];
    assert_eq!(peer["name"], "Renamed", "{update}");
    assert_eq!(peer["liquidity"], "120");
    assert!(peer["maxPacketAmount"].is_null());

    let by_address = tally.post(
        "query($address: String!, $asset: String!) { peerByAddressAndAsset(staticIlpAddress: $address, assetId: $asset) { id } }",
        json!({ "address": "test.peer.alice", "asset": usd }),
    );
    assert_eq!(
        by_address["data"]["peerByAddressAndAsset"]["id"],
        id.as_str(),
        "{by_address}"
    );
    let peers = tally.post("{ peers { edges { node { id } } } }", json!({}));
    assert_eq!(
        peers["data"]["peers"]["edges"].as_array().map(Vec::len),
        Some(1)
    );

    let delete_asset = tally.post(
        "mutation($input: DeleteAssetInput!) { deleteAsset(input: $input) { asset { id } } }",
        json!({ "input": { "id": usd } }),
    );
    assert_eq!(
        error_of(&delete_asset),
        ("FORBIDDEN".into(), "Cannot delete! Asset in use.".into())
    );
    let delete = "mutation($input: DeletePeerInput!) { deletePeer(input: $input) { success } }";
    let deleted = tally.post(delete, json!({ "input": { "id": id } }));
    assert_eq!(deleted["data"]["deletePeer"]["success"], true, "{deleted}");
    let again = tally.post(delete, json!({ "input": { "id": id } }));
    assert_eq!(
        error_of(&again),
        ("NOT_FOUND".into(), "unknown peer".into())
    );
    let gone = tally.post(
        "query($id: String!) { peer(id: $id) { id } }",
        json!({ "id": id }),
    );
    assert_eq!(error_of(&gone), ("NOT_FOUND".into(), "unknown peer".into()));
    tally.stop();
}

#[test]
fn wallet_addresses_and_keys_with_rafiki_errors() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());
    let usd = create_asset(&tally, "USD", 2);
    let create = "mutation($input: CreateWalletAddressInput!) { createWalletAddress(input: $input) { walletAddress { id url publicName status liquidity asset { id } additionalProperties { key value visibleInOpenPayments } } } }";
    let input = |asset: &str, url: &str| json!({ "input": { "assetId": asset, "url": url, "publicName": "Alice", "additionalProperties": [{ "key": " k ", "value": "v", "visibleInOpenPayments": true }] } });

    let cases = [
        (
            input(&usd, "http://wallet.example/alice"),
            "BAD_USER_INPUT",
            "invalid url",
        ),
        (
            input(&usd, "https://wallet.example/alice/quotes"),
            "BAD_USER_INPUT",
            "invalid url",
        ),
        (
            input(&uuid(), "https://wallet.example/alice"),
            "BAD_USER_INPUT",
            "unknown asset",
        ),
    ];
    for (input, code, message) in cases {
        let response = tally.post(create, input);
        assert_eq!(
            error_of(&response),
            (code.to_owned(), message.to_owned()),
            "{response}"
        );
    }
    let created = tally.post(create, input(&usd, "https://Wallet.example/Alice"));
    let address = &created["data"]["createWalletAddress"]["walletAddress"];
    assert_eq!(address["url"], "https://wallet.example/alice", "{created}");
    assert_eq!(address["status"], "ACTIVE");
    assert!(address["liquidity"].is_null());
    assert_eq!(address["additionalProperties"][0]["key"], "k");
    let id = address["id"].as_str().unwrap().to_owned();
    let duplicate = tally.post(create, input(&usd, "https://wallet.example/alice"));
    assert_eq!(
        error_of(&duplicate),
        (
            "DUPLICATE".into(),
            "Duplicate wallet address found with the same url".into()
        )
    );
    let by_url = tally.post(
        "query($url: String!) { walletAddressByUrl(url: $url) { id } }",
        json!({ "url": "https://wallet.example/alice" }),
    );
    assert_eq!(
        by_url["data"]["walletAddressByUrl"]["id"],
        id.as_str(),
        "{by_url}"
    );
    let unknown = tally.post(
        "query($id: String!) { walletAddress(id: $id) { id } }",
        json!({ "id": uuid() }),
    );
    assert_eq!(
        error_of(&unknown),
        ("NOT_FOUND".into(), "unknown wallet address".into())
    );

    let update = tally.post(
        "mutation($input: UpdateWalletAddressInput!) { updateWalletAddress(input: $input) { walletAddress { status publicName } } }",
        json!({ "input": { "id": id, "status": "INACTIVE" } }),
    );
    let updated = &update["data"]["updateWalletAddress"]["walletAddress"];
    assert_eq!(updated["status"], "INACTIVE", "{update}");
    assert_eq!(updated["publicName"], "Alice");

    let create_key = "mutation($input: CreateWalletAddressKeyInput!) { createWalletAddressKey(input: $input) { walletAddressKey { id revoked jwk { kid x alg kty crv } } } }";
    let jwk = json!({ "kid": "key-1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519" });
    let key = tally.post(
        create_key,
        json!({ "input": { "walletAddressId": id, "jwk": jwk } }),
    );
    let key_id = key["data"]["createWalletAddressKey"]["walletAddressKey"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{key}"))
        .to_owned();
    let duplicate = tally.post(
        create_key,
        json!({ "input": { "walletAddressId": id, "jwk": jwk } }),
    );
    assert_eq!(
        error_of(&duplicate),
        ("DUPLICATE".into(), "Key already exists".into())
    );
    let revoke = "mutation($input: RevokeWalletAddressKeyInput!) { revokeWalletAddressKey(input: $input) { walletAddressKey { id revoked } } }";
    let revoked = tally.post(revoke, json!({ "input": { "id": key_id } }));
    assert_eq!(
        revoked["data"]["revokeWalletAddressKey"]["walletAddressKey"]["revoked"], true,
        "{revoked}"
    );
    let unknown = tally.post(revoke, json!({ "input": { "id": uuid() } }));
    assert_eq!(
        error_of(&unknown),
        ("NOT_FOUND".into(), "Wallet address key not found".into())
    );
    let keys = tally.post("query($id: String!) { walletAddress(id: $id) { walletAddressKeys { edges { node { id revoked } } } } }", json!({ "id": id }));
    assert_eq!(
        keys["data"]["walletAddress"]["walletAddressKeys"]["edges"][0]["node"]["revoked"], true,
        "{keys}"
    );

    // No Web Monetization receipt yet: no ledger account to withdraw from.
    let withdrawal = tally.post(
        "mutation($input: CreateWalletAddressWithdrawalInput!) { createWalletAddressWithdrawal(input: $input) { withdrawal { id amount } } }",
        json!({ "input": { "walletAddressId": id, "id": uuid(), "idempotencyKey": uuid(), "timeoutSeconds": 0 } }),
    );
    assert_eq!(
        error_of(&withdrawal).0,
        "INTERNAL_SERVER_ERROR",
        "{withdrawal}"
    );
    let trigger = tally.post(
        "mutation($input: TriggerWalletAddressEventsInput!) { triggerWalletAddressEvents(input: $input) { count } }",
        json!({ "input": { "limit": 10 } }),
    );
    assert!(
        trigger["data"]["triggerWalletAddressEvents"]["count"].is_number(),
        "{trigger}"
    );
    let events = tally.post("{ webhookEvents(filter: { type: { in: [\"wallet_address.web_monetization\"] } }) { edges { node { id type data } } } }", json!({}));
    assert!(
        events["data"]["webhookEvents"]["edges"].is_array(),
        "{events}"
    );
    tally.stop();
}

#[test]
fn accounting_transfers_show_the_ledger() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path());
    let usd = create_asset(&tally, "USD", 2);
    let deposit_id = uuid();
    tally.post(DEPOSIT, json!({ "input": { "assetId": usd, "amount": "100", "id": deposit_id, "idempotencyKey": uuid() } }));
    let pending_id = uuid();
    tally.post(WITHDRAW, json!({ "input": { "assetId": usd, "amount": "40", "id": pending_id, "idempotencyKey": uuid(), "timeoutSeconds": "3600" } }));
    let query = "query($id: String!) { accountingTransfers(id: $id) { debits { id amount transferType state ledger expiresAt creditAccountId } credits { id amount transferType state debitAccountId } } }";
    let response = tally.post(query, json!({ "id": usd }));
    let transfers = &response["data"]["accountingTransfers"];
    assert_eq!(
        transfers["credits"][0]["id"],
        deposit_id.as_str(),
        "{response}"
    );
    assert_eq!(transfers["credits"][0]["transferType"], "DEPOSIT");
    assert_eq!(transfers["credits"][0]["state"], "POSTED");
    let pending = &transfers["debits"][0];
    assert_eq!(pending["id"], pending_id.as_str());
    assert_eq!(pending["transferType"], "WITHDRAWAL");
    assert_eq!(pending["state"], "PENDING");
    assert_eq!(pending["amount"], "40");
    assert_eq!(pending["ledger"], 1);
    assert!(pending["expiresAt"]
        .as_str()
        .is_some_and(|at| at.ends_with('Z')));
    // The settlement account, named by the asset's ledger number, sees the other sides.
    let settlement = tally.post(query, json!({ "id": "1" }));
    let transfers = &settlement["data"]["accountingTransfers"];
    assert_eq!(
        transfers["debits"][0]["id"],
        deposit_id.as_str(),
        "{settlement}"
    );
    assert_eq!(transfers["credits"][0]["id"], pending_id.as_str());
    let nothing = tally.post(query, json!({ "id": uuid() }));
    assert_eq!(nothing["data"]["accountingTransfers"]["debits"], json!([]));
    tally.stop();
}

/// One deposit a load thread sent: what a retry must resend, and whether it was acknowledged.
#[derive(Clone)]
struct Sent {
    input: Value,
    amount: u64,
    acknowledged: bool,
}

/// SIGKILL under concurrent mutations, several times: after each restart every deposit ever
/// sent is retried with its idempotency key. Acknowledged ones must not run again, the others
/// run at most once, and the liquidity is then exactly the sum of all deposits: nothing
/// acknowledged was lost and nothing was half-applied or applied twice.
#[test]
fn sigkill_under_graphql_load_loses_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut tally = Tally::start(directory.path());
    let usd = create_asset(&tally, "USD", 2);
    let mut all_sent: Vec<Sent> = Vec::new();
    for cycle in 0..3u64 {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Sent>::new()));
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let (url, usd, sent) = (tally.graphql.clone(), usd.clone(), sent.clone());
                std::thread::spawn(move || {
                    for call in 0..2_000u64 {
                        let amount = 1 + (cycle * 7 + thread * 13 + call) % 97;
                        let input = json!({ "input": { "assetId": usd, "amount": amount.to_string(), "id": uuid(), "idempotencyKey": uuid() } });
                        let index = {
                            let mut sent = sent.lock().unwrap();
                            sent.push(Sent { input: input.clone(), amount, acknowledged: false });
                            sent.len() - 1
                        };
                        match post(&url, DEPOSIT, input) {
                            Ok(response) => {
                                assert_eq!(response["data"]["depositAssetLiquidity"]["success"], true, "{response}");
                                sent.lock().unwrap()[index].acknowledged = true;
                            }
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(400 + 300 * cycle));
        tally.kill();
        for thread in threads {
            thread.join().expect("load thread");
        }
        let sent = std::mem::take(&mut *sent.lock().unwrap());
        assert!(
            sent.iter().any(|sent| sent.acknowledged),
            "no deposit was acknowledged before the kill"
        );
        all_sent.extend(sent);
        tally = Tally::start(directory.path());
        let acknowledged: u64 = all_sent
            .iter()
            .filter(|sent| sent.acknowledged)
            .map(|sent| sent.amount)
            .sum();
        let recovered: u64 = liquidity(&tally, &usd).parse().unwrap();
        assert!(
            recovered >= acknowledged,
            "cycle {cycle}: acknowledged {acknowledged}, liquidity {recovered}"
        );
        for sent in &all_sent {
            let retry = tally.post(DEPOSIT, sent.input.clone());
            assert_eq!(
                retry["data"]["depositAssetLiquidity"]["success"], true,
                "{retry}"
            );
        }
        let total: u64 = all_sent.iter().map(|sent| sent.amount).sum();
        assert_eq!(liquidity(&tally, &usd), total.to_string(), "cycle {cycle}");
    }
    tally.stop();
    let inspect = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["inspect", "--digest"])
        .arg(directory.path())
        .output()
        .expect("tally inspect");
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}

const PEER_BY_URL: &str = "mutation($input: CreateOrUpdatePeerByUrlInput!) { createOrUpdatePeerByUrl(input: $input) { peer { id name staticIlpAddress liquidity http { outgoing { endpoint authToken } } } } }";

/// Two instances on loopback peer by URL, as Rafiki's auto-peering does.
#[test]
fn two_instances_peer_by_url() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let identity = |name: &'static str, port: u16| {
        let args: Vec<String> = vec![
            "--auto-peering-address".into(),
            "127.0.0.1:0".into(),
            "--ilp-address".into(),
            format!("test.{}", name.to_lowercase()),
            "--ilp-connector-url".into(),
            format!("http://127.0.0.1:{port}"),
            "--instance-name".into(),
            name.into(),
        ];
        args
    };
    let alice_args = identity("Alice", 4001);
    let bob_args = identity("Bob", 4002);
    let (alice, _) = Tally::start_with(alice_dir.path(), &strs(&alice_args));
    let (bob, bob_url) = Tally::start_with(bob_dir.path(), &strs(&bob_args));
    let bob_url = bob_url.expect("bob serves auto-peering");
    let alice_usd = create_asset(&alice, "USD", 2);
    create_asset(&bob, "USD", 2);
    let alice_eur = create_asset(&alice, "EUR", 2);

    let peer_by_url = |asset: &str, url: &str| {
        alice.post(PEER_BY_URL, json!({ "input": { "assetId": asset, "peerUrl": url, "liquidityToDeposit": "1000", "maxPacketAmount": "500" } }))
    };
    let peered = peer_by_url(&alice_usd, &bob_url);
    let peer = &peered["data"]["createOrUpdatePeerByUrl"]["peer"];
    assert_eq!(peer["staticIlpAddress"], "test.bob", "{peered}");
    assert_eq!(peer["name"], "Bob");
    assert_eq!(peer["liquidity"], "1000");
    assert_eq!(
        peer["http"]["outgoing"]["endpoint"],
        "http://127.0.0.1:4002"
    );
    let peer_id = peer["id"].as_str().unwrap().to_owned();

    let bob_peers = bob.post("{ peers { edges { node { staticIlpAddress name liquidity http { outgoing { endpoint } } } } } }", json!({}));
    let bob_peer = &bob_peers["data"]["peers"]["edges"][0]["node"];
    assert_eq!(bob_peer["staticIlpAddress"], "test.alice", "{bob_peers}");
    assert_eq!(bob_peer["name"], "Alice");
    assert_eq!(bob_peer["liquidity"], ((1u64 << 53) - 1).to_string());
    assert_eq!(
        bob_peer["http"]["outgoing"]["endpoint"],
        "http://127.0.0.1:4001"
    );

    // Peering again updates the same peer and deposits again.
    let again = peer_by_url(&alice_usd, &bob_url);
    let peer = &again["data"]["createOrUpdatePeerByUrl"]["peer"];
    assert_eq!(peer["id"], peer_id.as_str(), "{again}");
    assert_eq!(peer["liquidity"], "2000");

    let cases = [
        (
            peer_by_url(&alice_eur, &bob_url),
            "BAD_USER_INPUT",
            "Peer does not support asset",
        ),
        (
            peer_by_url(&alice_usd, "http://127.0.0.1:1/"),
            "NOT_FOUND",
            "Peer URL is invalid or peer does not support auto-peering",
        ),
        (peer_by_url(&uuid(), &bob_url), "NOT_FOUND", "Unknown asset"),
    ];
    for (response, code, message) in cases {
        assert_eq!(
            error_of(&response),
            (code.to_owned(), message.to_owned()),
            "{response}"
        );
    }
    alice.stop();
    bob.stop();
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Bodies that are not GraphQL requests, requests past the limits, CORS, and introspection
/// turned off: clean refusals, never a crash, and the server keeps serving.
#[test]
fn bad_bodies_limits_cors_and_introspection() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (tally, _) = Tally::start_with(
        directory.path(),
        &[
            "--auto-peering-address",
            "off",
            "--admin-api-introspection",
            "false",
        ],
    );
    let status = |result: Result<ureq::Response, ureq::Error>| match result {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(error) => panic!("no HTTP answer: {error}"),
    };
    let raw = |body: &[u8]| {
        status(
            ureq::post(&tally.graphql)
                .set("content-type", "application/json")
                .send_bytes(body),
        )
    };
    assert_eq!(raw(b"not json at all"), 400);
    assert_eq!(raw(b"{\"query\": 5}"), 400);
    // A body over the limit is refused from its Content-Length, before it is read: send the
    // headers alone and read the answer.
    let address = tally
        .graphql
        .trim_start_matches("http://")
        .trim_end_matches("/graphql");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        3 << 20
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send headers");
    let mut status_line = String::new();
    BufReader::new(stream)
        .read_line(&mut status_line)
        .expect("answer");
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");

    // Depth 11 (Rafiki's limit is 10): refused before anything runs.
    let too_deep = "{ __type(name: \"Asset\") { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }";
    let answer = tally.post(too_deep, json!({}));
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{answer}"
    );
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{answer}"
    );
    let syntax = tally.post("{ assets {", json!({}));
    assert_eq!(
        syntax["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{syntax}"
    );

    let introspection = tally.post("{ __schema { types { name } } }", json!({}));
    assert!(
        introspection["data"]["__schema"].is_null(),
        "introspection is off: {introspection}"
    );

    let preflight = ureq::request("OPTIONS", &tally.graphql)
        .set("origin", "http://admin.example")
        .set("access-control-request-method", "POST")
        .set("access-control-request-headers", "content-type, signature")
        .call()
        .expect("preflight answered");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://admin.example")
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .is_some_and(|headers| headers.contains("signature")));
    // Still serving.
    create_asset(&tally, "USD", 2);
    tally.stop();
}
