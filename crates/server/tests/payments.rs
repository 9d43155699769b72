//! Payments end to end (issue 8): a real `tally start` child, real HTTP, the documents of
//! `crates/graphql/tests/documents` (validated against the served schema there). The local
//! flows of Rafiki's integration suite — same asset with a sending fee, cross currency,
//! several outgoing payments into one incoming payment — each end COMPLETED with the exact
//! sent, received and fee amounts in the ledger; then cancel, expiry, withdrawals, the
//! documented errors, a remote receiver, and an idempotent retry after a SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

const OPEN_PAYMENTS_URL: &str = "http://127.0.0.1:3003";

macro_rules! document {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../graphql/tests/documents/",
            $name,
            ".graphql"
        ))
    };
}

/// A `tally start` child with its Admin API on an ephemeral port.
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
    fn start(data_dir: &Path, rates_file: &Path) -> Tally {
        Tally::start_with(data_dir, rates_file, &["start"])
    }

    fn start_with(data_dir: &Path, rates_file: &Path, extra: &[&str]) -> Tally {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(extra)
            .args(["--addresses", "127.0.0.1:0"])
            .args(["--graphql-address", "127.0.0.1:0"])
            .args(["--auto-peering-address", "off"])
            .args(["--open-payments-url", OPEN_PAYMENTS_URL])
            .arg("--exchange-rates-file")
            .arg(rates_file)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--segment-mib", "4"])
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

    fn post(&self, query: &str, variables: Value) -> Value {
        let response =
            ureq::post(&self.graphql).send_json(json!({ "query": query, "variables": variables }));
        match response {
            Ok(response) => response.into_json().expect("JSON body"),
            Err(ureq::Error::Status(_, response)) => response.into_json().expect("JSON body"),
            Err(error) => panic!("HTTP failed: {error}"),
        }
    }

    /// Runs a mutation and returns `data.<field>`, failing the test on any error.
    fn ok(&self, query: &str, field: &str, input: Value) -> Value {
        let response = self.post(query, json!({ "input": input }));
        assert!(
            response["errors"].is_null(),
            "{field} failed: {response}\ninput: {input}"
        );
        response["data"][field].clone()
    }

    /// Runs a mutation that must fail; returns `(extensions.code, message)`.
    fn fails(&self, query: &str, input: Value) -> (String, String) {
        let response = self.post(query, json!({ "input": input }));
        let error = &response["errors"][0];
        assert!(!error.is_null(), "expected an error: {response}");
        (
            error["extensions"]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            error["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn amount(value: u64, code: &str, scale: u8) -> Value {
    json!({ "value": value.to_string(), "assetCode": code, "assetScale": scale })
}

/// An asset with liquidity, and a wallet address on it.
struct Account {
    asset: String,
    wallet_address: String,
    url: String,
}

/// An asset with liquidity.
fn asset(tally: &Tally, code: &str, scale: u8) -> String {
    let asset = tally.ok(
        "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }",
        "createAsset",
        json!({ "code": code, "scale": scale }),
    )["asset"]["id"]
        .as_str()
        .expect("asset id")
        .to_owned();
    tally.ok(
        document!("deposit_asset_liquidity"),
        "depositAssetLiquidity",
        json!({ "assetId": asset, "amount": "1000000", "id": uuid(), "idempotencyKey": uuid() }),
    );
    asset
}

/// A wallet address on `asset`.
fn setup(tally: &Tally, asset: &str, name: &str) -> Account {
    let asset = asset.to_owned();
    let url = format!("https://tally.test/{name}");
    let wallet_address = tally.ok(
        document!("create_wallet_address"),
        "createWalletAddress",
        json!({ "assetId": asset, "url": url, "publicName": name }),
    )["walletAddress"]["id"]
        .as_str()
        .expect("wallet address id")
        .to_owned();
    Account {
        asset,
        wallet_address,
        url,
    }
}

fn asset_liquidity(tally: &Tally, asset: &str) -> String {
    let response = tally.post(
        "query($id: String!) { asset(id: $id) { liquidity } }",
        json!({ "id": asset }),
    );
    response["data"]["asset"]["liquidity"]
        .as_str()
        .expect("liquidity")
        .to_owned()
}

fn incoming_payment(tally: &Tally, to: &Account, value: Option<u64>, code: &str) -> Value {
    let mut input =
        json!({ "walletAddressId": to.wallet_address, "metadata": { "description": "test" } });
    if let Some(value) = value {
        input["incomingAmount"] = amount(value, code, 2);
    }
    tally.ok(
        document!("create_incoming_payment"),
        "createIncomingPayment",
        input,
    )["payment"]
        .clone()
}

fn receiver_url(payment: &Value) -> String {
    format!(
        "{OPEN_PAYMENTS_URL}/incoming-payments/{}",
        payment["id"].as_str().expect("payment id")
    )
}

/// Quote, pay, fund: returns the outgoing payment as read back after funding.
fn pay(tally: &Tally, from: &Account, receiver: &str, quote_amounts: Value) -> (Value, Value) {
    let mut input = json!({ "walletAddressId": from.wallet_address, "receiver": receiver });
    for (key, value) in quote_amounts.as_object().expect("amounts") {
        input[key] = value.clone();
    }
    let quote = tally.ok(document!("create_quote"), "createQuote", input)["quote"].clone();
    let payment = tally.ok(
        document!("create_outgoing_payment"),
        "createOutgoingPayment",
        json!({ "walletAddressId": from.wallet_address, "quoteId": quote["id"] }),
    )["payment"]
        .clone();
    assert_eq!(payment["state"], "FUNDING");
    assert_eq!(payment["id"], quote["id"], "a payment's id is its quote's");
    fund(tally, &payment);
    (quote, outgoing(tally, &payment))
}

fn fund(tally: &Tally, payment: &Value) {
    let funded = tally.ok(
        document!("deposit_outgoing_payment_liquidity"),
        "depositOutgoingPaymentLiquidity",
        json!({ "outgoingPaymentId": payment["id"], "idempotencyKey": uuid() }),
    );
    assert_eq!(funded["success"], true);
}

fn outgoing(tally: &Tally, payment: &Value) -> Value {
    let response = tally.post(
        document!("outgoing_payment"),
        json!({ "id": payment["id"] }),
    );
    response["data"]["outgoingPayment"].clone()
}

fn incoming(tally: &Tally, payment: &Value) -> Value {
    let response = tally.post(
        document!("incoming_payment"),
        json!({ "id": payment["id"] }),
    );
    response["data"]["incomingPayment"].clone()
}

fn events(tally: &Tally, event_type: &str) -> Vec<Value> {
    let response = tally.post(
        document!("webhook_events"),
        json!({ "first": 100, "filter": { "type": { "in": [event_type] } } }),
    );
    response["data"]["webhookEvents"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("webhookEvents failed: {response}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn rates_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rates.json");
    std::fs::write(&path, r#"{"USD": {"EUR": 0.5}, "EUR": {"USD": 2.0}}"#).expect("rates file");
    path
}

#[test]
fn local_flows_complete_with_exact_amounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = Tally::start(&dir.path().join("data"), &rates_file(dir.path()));
    let usd = asset(&tally, "USD", 2);
    let alice = setup(&tally, &usd, "alice");
    let bob = setup(&tally, &usd, "bob");
    let euro = setup(&tally, &asset(&tally, "EUR", 2), "eve");
    // A sending fee on USD: 1% + 2.
    tally.ok(
        document!("set_fee"),
        "setFee",
        json!({ "assetId": alice.asset, "type": "SENDING", "fee": { "fixed": "2", "basisPoints": 100 } }),
    );

    // Peer to peer, fixed receive (the incoming amount): 500 arrives, the fee rides on top.
    let into_bob = incoming_payment(&tally, &bob, Some(500), "USD");
    assert_eq!(into_bob["state"], "PENDING");
    assert!(into_bob["liquidity"].is_null());
    let (quote, paid) = pay(&tally, &alice, &receiver_url(&into_bob), json!({}));
    assert_eq!(quote["receiveAmount"]["value"], "500");
    assert_eq!(
        quote["debitAmount"]["value"], "507",
        "500 + ceil(500 × 1%) + 2"
    );
    assert_eq!(paid["state"], "COMPLETED", "{paid}");
    assert_eq!(paid["sentAmount"]["value"], "500");
    assert_eq!(
        paid["liquidity"], "7",
        "the fee stays on the payment's account"
    );
    let received = incoming(&tally, &into_bob);
    assert_eq!(received["state"], "COMPLETED");
    assert_eq!(received["receivedAmount"]["value"], "500");
    assert_eq!(received["liquidity"], "500");

    // Rafiki's `BasePayment` and `Model` interfaces: a client may select through them.
    let through_interfaces = tally.post(
        "query($id: String!) { incomingPayment(id: $id) { __typename \
           ... on BasePayment { id walletAddressId metadata client } \
           ... on Model { createdAt } } \
         payments(first: 1) { edges { node { ... on Model { id } } } } }",
        json!({ "id": into_bob["id"] }),
    );
    let node = &through_interfaces["data"]["incomingPayment"];
    assert_eq!(
        node["__typename"], "IncomingPayment",
        "{through_interfaces}"
    );
    assert_eq!(node["id"], into_bob["id"]);
    assert_eq!(node["walletAddressId"], received["walletAddressId"]);
    assert_eq!(node["createdAt"], received["createdAt"]);
    assert!(
        through_interfaces["data"]["payments"]["edges"][0]["node"]["id"].is_string(),
        "{through_interfaces}"
    );

    // Fixed send, same asset: 100 debited, 100 − ceil(1) − 2 = 97 arrives.
    let open = incoming_payment(&tally, &bob, None, "USD");
    let (quote, paid) = pay(
        &tally,
        &alice,
        &receiver_url(&open),
        json!({ "debitAmount": amount(100, "USD", 2) }),
    );
    assert_eq!(quote["debitAmount"]["value"], "100");
    assert_eq!(quote["receiveAmount"]["value"], "97");
    assert_eq!(paid["state"], "COMPLETED");
    assert_eq!(paid["sentAmount"]["value"], "97");
    let received = incoming(&tally, &open);
    assert_eq!(
        received["state"], "PROCESSING",
        "no incomingAmount: open until it expires"
    );
    assert_eq!(received["receivedAmount"]["value"], "97");

    // Cross currency: 200 USD cents at 0.5 → 98 EUR cents after the fee (200 − 2 − 2 = 196).
    let usd_before = asset_liquidity(&tally, &alice.asset);
    let eur_before = asset_liquidity(&tally, &euro.asset);
    let into_eve = incoming_payment(&tally, &euro, None, "EUR");
    let (quote, paid) = pay(
        &tally,
        &alice,
        &receiver_url(&into_eve),
        json!({ "debitAmount": amount(200, "USD", 2) }),
    );
    assert_eq!(quote["receiveAmount"]["value"], "98");
    assert_eq!(quote["estimatedExchangeRate"], 0.5);
    assert_eq!(paid["state"], "COMPLETED", "{paid}");
    assert_eq!(paid["sentAmount"]["value"], "196");
    assert_eq!(paid["liquidity"], "4");
    assert_eq!(incoming(&tally, &into_eve)["receivedAmount"]["value"], "98");
    let usd_after: u64 = asset_liquidity(&tally, &alice.asset).parse().unwrap();
    let eur_after: u64 = asset_liquidity(&tally, &euro.asset).parse().unwrap();
    assert_eq!(usd_after, usd_before.parse::<u64>().unwrap() + 196);
    assert_eq!(eur_after, eur_before.parse::<u64>().unwrap() - 98);

    // Several outgoing payments into one incoming payment: it completes on the last.
    let shared = incoming_payment(&tally, &bob, Some(300), "USD");
    for part in [100, 200] {
        let (_, paid) = pay(
            &tally,
            &alice,
            &receiver_url(&shared),
            json!({ "receiveAmount": amount(part, "USD", 2) }),
        );
        assert_eq!(paid["state"], "COMPLETED");
    }
    let received = incoming(&tally, &shared);
    assert_eq!(received["state"], "COMPLETED");
    assert_eq!(received["receivedAmount"]["value"], "300");

    // Events: one completion per completed incoming payment, with its withdrawal; the ASE
    // withdraws with the event's id, once.
    let completed = events(&tally, "incoming_payment.completed");
    assert_eq!(completed.len(), 2, "{completed:?}");
    tally.ok(
        document!("create_incoming_payment_withdrawal"),
        "createIncomingPaymentWithdrawal",
        json!({ "incomingPaymentId": into_bob["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
    );
    assert_eq!(
        tally.fails(
            document!("create_incoming_payment_withdrawal"),
            json!({ "incomingPaymentId": into_bob["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
        ),
        ("DUPLICATE".into(), "Transfer already exists".into())
    );
    assert_eq!(incoming(&tally, &into_bob)["liquidity"], "0");
    assert_eq!(events(&tally, "outgoing_payment.completed").len(), 5);
    // The fee left on the first payment goes back to settlement.
    let first = &events(&tally, "outgoing_payment.completed")
        .into_iter()
        .find(|event| event["data"]["balance"] == "7")
        .expect("the first payment's completion");
    let first_payment = json!({ "id": first["data"]["id"] });
    tally.ok(
        document!("create_outgoing_payment_withdrawal"),
        "createOutgoingPaymentWithdrawal",
        json!({ "outgoingPaymentId": first_payment["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
    );
    assert_eq!(outgoing(&tally, &first_payment)["liquidity"], "0");

    // The lists see what was made.
    let listed = tally.post(
        document!("wallet_address_payments"),
        json!({ "id": alice.wallet_address }),
    );
    let address = &listed["data"]["walletAddress"];
    assert_eq!(
        address["outgoingPayments"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(address["quotes"]["edges"].as_array().unwrap().len(), 5);
    let all = tally.post(document!("payments"), json!({ "first": 100 }));
    assert_eq!(
        all["data"]["payments"]["edges"].as_array().unwrap().len(),
        9
    );
    let sending = tally.post(
        document!("outgoing_payments"),
        json!({ "first": 100, "filter": { "state": { "in": ["COMPLETED"] } } }),
    );
    assert_eq!(
        sending["data"]["outgoingPayments"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn payment_errors_cancel_expiry_and_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rates = rates_file(dir.path());
    let tally = Tally::start(&data, &rates);
    let usd = asset(&tally, "USD", 2);
    let alice = setup(&tally, &usd, "alice");
    let bob = setup(&tally, &usd, "bob");
    let mxn = setup(&tally, &asset(&tally, "MXN", 2), "maria");

    // Incoming payment errors, in Rafiki's words.
    let create = document!("create_incoming_payment");
    let cases = [
        (
            json!({ "walletAddressId": uuid() }),
            "NOT_FOUND",
            "unknown wallet address",
        ),
        (
            json!({ "walletAddressId": bob.wallet_address, "incomingAmount": amount(0, "USD", 2) }),
            "BAD_USER_INPUT",
            "invalid amount",
        ),
        (
            json!({ "walletAddressId": bob.wallet_address, "incomingAmount": amount(5, "EUR", 2) }),
            "BAD_USER_INPUT",
            "invalid amount",
        ),
        (
            json!({ "walletAddressId": bob.wallet_address, "expiresAt": "2001-01-01T00:00:00.000Z" }),
            "BAD_USER_INPUT",
            "invalid expiresAt",
        ),
        (
            json!({ "walletAddressId": bob.wallet_address, "expiresAt": "2999-01-01T00:00:00.000Z" }),
            "BAD_USER_INPUT",
            "invalid expiresAt",
        ),
    ];
    for (input, code, message) in cases {
        assert_eq!(
            tally.fails(create, input.clone()),
            (code.into(), message.into()),
            "{input}"
        );
    }

    // A receiver on this instance, and one on another: the limitation is named.
    let receiver = tally.ok(
        document!("create_receiver"),
        "createReceiver",
        json!({ "walletAddressUrl": bob.url, "incomingAmount": amount(50, "USD", 2) }),
    )["receiver"]
        .clone();
    assert!(receiver["id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{OPEN_PAYMENTS_URL}/incoming-payments/")));
    assert_eq!(receiver["walletAddressUrl"], bob.url);
    let read = tally.post(document!("receiver"), json!({ "id": receiver["id"] }));
    assert_eq!(read["data"]["receiver"]["completed"], false, "{read}");
    let (code, message) = tally.fails(
        document!("create_receiver"),
        json!({ "walletAddressUrl": "https://elsewhere.test/carol" }),
    );
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("not supported yet"), "{message}");
    let (code, message) = tally.fails(
        document!("create_quote"),
        json!({
            "walletAddressId": alice.wallet_address,
            "receiver": "https://elsewhere.test/incoming-payments/00000000-0000-4000-8000-000000000000",
            "debitAmount": amount(10, "USD", 2),
        }),
    );
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("not supported yet"), "{message}");

    // Quote errors.
    let url = receiver["id"].as_str().unwrap().to_owned();
    let quote = document!("create_quote");
    let quote_cases = [
        (
            json!({ "walletAddressId": alice.wallet_address, "receiver": url, "debitAmount": amount(10, "USD", 2), "receiveAmount": amount(10, "USD", 2) }),
            "BAD_USER_INPUT",
            "invalid amount",
        ),
        (
            json!({ "walletAddressId": uuid(), "receiver": url }),
            "NOT_FOUND",
            "unknown wallet address",
        ),
        (
            json!({ "walletAddressId": alice.wallet_address, "receiver": url, "receiveAmount": amount(51, "USD", 2) }),
            "BAD_USER_INPUT",
            "invalid amount",
        ),
        (
            json!({ "walletAddressId": alice.wallet_address, "receiver": format!("{OPEN_PAYMENTS_URL}/incoming-payments/{}", uuid()) }),
            "BAD_USER_INPUT",
            "invalid receiver",
        ),
        (
            json!({ "walletAddressId": mxn.wallet_address, "receiver": url }),
            "INTERNAL_SERVER_ERROR",
            "could not convert between assets",
        ),
    ];
    for (input, code, message) in quote_cases {
        assert_eq!(
            tally.fails(quote, input.clone()),
            (code.into(), message.into()),
            "{input}"
        );
    }

    // Cancel: only while FUNDING; the reason lands in the metadata.
    let quoted = tally.ok(
        quote,
        "createQuote",
        json!({ "walletAddressId": alice.wallet_address, "receiver": url }),
    )["quote"]
        .clone();
    let create_payment = document!("create_outgoing_payment");
    let payment = tally.ok(
        create_payment,
        "createOutgoingPayment",
        json!({ "walletAddressId": alice.wallet_address, "quoteId": quoted["id"] }),
    )["payment"]
        .clone();
    assert_eq!(
        tally.fails(
            create_payment,
            json!({ "walletAddressId": alice.wallet_address, "quoteId": quoted["id"] }),
        ),
        ("BAD_USER_INPUT".into(), "invalid quote".into()),
        "one payment per quote"
    );
    let cancelled = tally.ok(
        document!("cancel_outgoing_payment"),
        "cancelOutgoingPayment",
        json!({ "id": payment["id"], "reason": "no funds" }),
    )["payment"]
        .clone();
    assert_eq!(cancelled["state"], "CANCELLED");
    assert_eq!(cancelled["metadata"]["cancellationReason"], "no funds");
    assert_eq!(
        tally.fails(
            document!("cancel_outgoing_payment"),
            json!({ "id": payment["id"] })
        ),
        ("CONFLICT".into(), "wrong state".into())
    );
    assert_eq!(
        tally.fails(
            document!("deposit_outgoing_payment_liquidity"),
            json!({ "outgoingPaymentId": payment["id"], "idempotencyKey": uuid() }),
        ),
        ("CONFLICT".into(), "wrong state".into())
    );
    assert_eq!(
        tally.fails(
            document!("deposit_outgoing_payment_liquidity"),
            json!({ "outgoingPaymentId": uuid(), "idempotencyKey": uuid() }),
        ),
        ("BAD_USER_INPUT".into(), "Invalid transfer id".into())
    );

    // Expiry by the core's pulse: a payment that received nothing disappears; one that
    // received something expires with its event.
    let soon = |seconds: u64| {
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // Milliseconds since the epoch as ISO 8601, by way of the server's own echo.
        ms
    };
    let iso = |ms: u64| {
        let secs = ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            ms % 1000
        )
    };
    let expires_at = iso(soon(2));
    let empty = tally.ok(
        create,
        "createIncomingPayment",
        json!({ "walletAddressId": bob.wallet_address, "expiresAt": expires_at }),
    )["payment"]
        .clone();
    assert_eq!(empty["expiresAt"], expires_at);
    let partial = tally.ok(
        create,
        "createIncomingPayment",
        json!({ "walletAddressId": bob.wallet_address, "expiresAt": expires_at, "incomingAmount": amount(100, "USD", 2) }),
    )["payment"]
        .clone();
    let (_, paid) = pay(
        &tally,
        &alice,
        &receiver_url(&partial),
        json!({ "receiveAmount": amount(40, "USD", 2) }),
    );
    assert_eq!(paid["state"], "COMPLETED");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let gone = tally.post(document!("incoming_payment"), json!({ "id": empty["id"] }));
    assert_eq!(
        gone["errors"][0]["message"], "payment does not exist",
        "{gone}"
    );
    let expired = incoming(&tally, &partial);
    assert_eq!(expired["state"], "EXPIRED", "{expired}");
    let expiry_events = events(&tally, "incoming_payment.expired");
    assert_eq!(expiry_events.len(), 1);
    assert_eq!(expiry_events[0]["data"]["receivedAmount"]["value"], "40");

    // An idempotent retry after a SIGKILL returns the first outcome without paying twice.
    let into_bob = incoming_payment(&tally, &bob, Some(70), "USD");
    let key = uuid();
    let input = json!({ "walletAddressId": alice.wallet_address, "receiver": receiver_url(&into_bob), "idempotencyKey": key });
    let first = tally.ok(quote, "createQuote", input.clone())["quote"].clone();
    tally.kill();
    let tally = Tally::start(&data, &rates);
    let again = tally.ok(quote, "createQuote", input)["quote"].clone();
    assert_eq!(first, again);
    let payment = tally.ok(
        create_payment,
        "createOutgoingPayment",
        json!({ "walletAddressId": alice.wallet_address, "quoteId": first["id"] }),
    )["payment"]
        .clone();
    let deposit = json!({ "outgoingPaymentId": payment["id"], "idempotencyKey": uuid() });
    tally.ok(
        document!("deposit_outgoing_payment_liquidity"),
        "depositOutgoingPaymentLiquidity",
        deposit.clone(),
    );
    tally.ok(
        document!("deposit_outgoing_payment_liquidity"),
        "depositOutgoingPaymentLiquidity",
        deposit,
    );
    assert_eq!(outgoing(&tally, &payment)["sentAmount"]["value"], "70");
    assert_eq!(incoming(&tally, &into_bob)["receivedAmount"]["value"], "70");
}

/// A flow a load thread ran: its payments, and whether the funding was acknowledged.
struct Flow {
    incoming: Value,
    outgoing: Value,
    deposit: Value,
    funded: bool,
}

/// One flow up to (not including) funding; `None` once the server is gone.
fn flow_prepared(graphql: &str, from: &str, to: &str) -> Option<(Value, Value)> {
    let call = |query: &str, field: &str, input: Value| -> Option<Value> {
        let body = json!({ "query": query, "variables": { "input": input } });
        let response: Value = match ureq::post(graphql).send_json(body) {
            Ok(response) => response.into_json().ok()?,
            Err(ureq::Error::Status(_, response)) => response.into_json().ok()?,
            Err(_) => return None,
        };
        assert!(response["errors"].is_null(), "{field}: {response}");
        Some(response["data"][field].clone())
    };
    let incoming = call(
        document!("create_incoming_payment"),
        "createIncomingPayment",
        json!({ "walletAddressId": to, "incomingAmount": amount(25, "USD", 2) }),
    )?["payment"]
        .clone();
    let quote = call(
        document!("create_quote"),
        "createQuote",
        json!({ "walletAddressId": from, "receiver": receiver_url(&incoming) }),
    )?["quote"]
        .clone();
    let outgoing = call(
        document!("create_outgoing_payment"),
        "createOutgoingPayment",
        json!({ "walletAddressId": from, "quoteId": quote["id"] }),
    )?["payment"]
        .clone();
    Some((incoming, outgoing))
}

/// SIGKILL while clients fund payments, several times: a funded payment is COMPLETED with its
/// amounts or still FUNDING, never half-paid; retrying every funding after the restart (same
/// idempotency key) pays each exactly once; every completion has its events.
#[test]
fn sigkill_between_funding_and_completion_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rates = rates_file(dir.path());
    let mut tally = Tally::start(&data, &rates);
    let usd = asset(&tally, "USD", 2);
    let alice = setup(&tally, &usd, "alice");
    let bob = setup(&tally, &usd, "bob");
    let mut flows: Vec<Flow> = Vec::new();
    for cycle in 0..3u64 {
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Flow>::new()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (graphql, done) = (tally.graphql.clone(), done.clone());
                let (from, to) = (alice.wallet_address.clone(), bob.wallet_address.clone());
                std::thread::spawn(move || loop {
                    let Some((incoming, outgoing)) = flow_prepared(&graphql, &from, &to) else {
                        return;
                    };
                    let deposit = json!({ "outgoingPaymentId": outgoing["id"], "idempotencyKey": uuid() });
                    let body = json!({ "query": document!("deposit_outgoing_payment_liquidity"), "variables": { "input": deposit } });
                    let funded = match ureq::post(&graphql).send_json(body) {
                        Ok(response) => {
                            let response: Value = response.into_json().expect("JSON");
                            assert!(response["errors"].is_null(), "{response}");
                            true
                        }
                        Err(_) => false,
                    };
                    done.lock().unwrap().push(Flow { incoming, outgoing, deposit, funded });
                    if !funded {
                        return;
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500 + 250 * cycle));
        tally.kill();
        for thread in threads {
            thread.join().expect("load thread");
        }
        flows.extend(std::mem::take(&mut *done.lock().unwrap()));
        tally = Tally::start(&data, &rates);
        for flow in &flows {
            let state = outgoing(&tally, &flow.outgoing)["state"].clone();
            if flow.funded {
                assert_eq!(state, "COMPLETED", "an acknowledged funding was lost");
            } else {
                assert!(state == "COMPLETED" || state == "FUNDING", "{state}");
            }
        }
        for flow in &flows {
            // The retry of an acknowledged funding returns its first outcome; an unacknowledged
            // one funds now, or finds the payment already paid.
            let response = tally.post(
                document!("deposit_outgoing_payment_liquidity"),
                json!({ "input": flow.deposit }),
            );
            let error = &response["errors"][0];
            assert!(
                error.is_null() || error["message"] == "wrong state",
                "{response}"
            );
            let paid = outgoing(&tally, &flow.outgoing);
            assert_eq!(paid["state"], "COMPLETED");
            assert_eq!(paid["sentAmount"]["value"], "25");
            let received = incoming(&tally, &flow.incoming);
            assert_eq!(received["receivedAmount"]["value"], "25", "paid once");
            assert_eq!(received["state"], "COMPLETED");
        }
    }
    assert!(flows.iter().any(|flow| flow.funded));
    let completed = events(&tally, "outgoing_payment.completed").len();
    assert!(
        completed >= flows.len().min(100),
        "{completed} events for {} flows",
        flows.len()
    );
}

/// A rates source that answers garbage, an error, or nothing in time gives Rafiki's quote
/// error within the timeout; a good one gives the rate.
#[test]
fn a_bad_rates_source_gives_the_quote_error() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let rates_url = format!("http://{}/rates", listener.local_addr().unwrap());
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
    let queue = answers.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = queue.lock().unwrap().remove(0);
            // One thread per request: a hanging answer must not hold up the next one.
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                match answer {
                    "hang" => std::thread::sleep(std::time::Duration::from_secs(8)),
                    "500" => {
                        let _ = stream.write_all(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n");
                    }
                    body => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["start", "--addresses", "127.0.0.1:0"])
        .args(["--graphql-address", "127.0.0.1:0"])
        .args(["--auto-peering-address", "off"])
        .args(["--exchange-rates-url", &rates_url])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--segment-mib", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tally");
    let stdout = child.stdout.take().expect("piped");
    let graphql = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("graphql listening on ")
                .map(|address| format!("http://{address}/graphql"))
        })
        .expect("graphql line");
    let tally = Tally { child, graphql };
    let alice = setup(&tally, &asset(&tally, "USD", 2), "alice");
    let eve = setup(&tally, &asset(&tally, "EUR", 2), "eve");
    let into_eve = incoming_payment(&tally, &eve, None, "EUR");
    let quote = json!({
        "walletAddressId": alice.wallet_address,
        "receiver": receiver_url(&into_eve),
        "debitAmount": amount(100, "USD", 2),
    });
    for answer in ["not json", "500", "hang"] {
        answers.lock().unwrap().push(answer);
        let started = std::time::Instant::now();
        assert_eq!(
            tally.fails(document!("create_quote"), quote.clone()),
            (
                "INTERNAL_SERVER_ERROR".into(),
                "could not convert between assets".into()
            ),
            "{answer}"
        );
        // Bounded by the rates timeout (5 s), not by the source.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(7),
            "{answer}"
        );
    }
    answers
        .lock()
        .unwrap()
        .push(r#"{"base":"USD","rates":{"EUR":0.9}}"#);
    let quoted = tally.ok(document!("create_quote"), "createQuote", quote)["quote"].clone();
    assert_eq!(quoted["receiveAmount"]["value"], "90");
    // Rates that lack the receiving code (from the cache: no request is made).
    let gina = setup(&tally, &asset(&tally, "GBP", 2), "gina");
    let into_gina = incoming_payment(&tally, &gina, None, "GBP");
    assert_eq!(
        tally.fails(
            document!("create_quote"),
            json!({
                "walletAddressId": alice.wallet_address,
                "receiver": receiver_url(&into_gina),
                "debitAmount": amount(100, "USD", 2),
            }),
        ),
        (
            "INTERNAL_SERVER_ERROR".into(),
            "could not convert between assets".into()
        )
    );
    assert!(answers.lock().unwrap().is_empty());
}

/// The rest of the documented errors: approve and cancel of incoming payments, updates,
/// withdrawals without their events, the deprecated event liquidity, inactive addresses, and a
/// quote that expires before it is paid or funded.
#[test]
fn more_documented_errors_and_quote_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = Tally::start_with(
        &dir.path().join("data"),
        &rates_file(dir.path()),
        &["start", "--quote-lifespan", "1500"],
    );
    let usd = asset(&tally, "USD", 2);
    let alice = setup(&tally, &usd, "alice");
    let bob = setup(&tally, &usd, "bob");

    // Approve and cancel: PENDING only, once.
    let pending = incoming_payment(&tally, &bob, Some(10), "USD");
    let approved = tally.ok(
        document!("approve_incoming_payment"),
        "approveIncomingPayment",
        json!({ "id": pending["id"] }),
    );
    assert_eq!(approved["payment"]["state"], "PENDING");
    assert_eq!(
        tally.fails(
            document!("cancel_incoming_payment"),
            json!({ "id": pending["id"] })
        ),
        ("FORBIDDEN".into(), "action already performed".into())
    );
    assert_eq!(
        tally.fails(
            document!("approve_incoming_payment"),
            json!({ "id": uuid() })
        ),
        ("NOT_FOUND".into(), "unknown payment".into())
    );
    let updated = tally.ok(
        document!("update_incoming_payment"),
        "updateIncomingPayment",
        json!({ "id": pending["id"], "metadata": { "note": "new" } }),
    );
    assert_eq!(updated["payment"]["metadata"], json!({ "note": "new" }));
    assert_eq!(
        tally.fails(
            document!("update_incoming_payment"),
            json!({ "id": uuid(), "metadata": {} })
        ),
        ("NOT_FOUND".into(), "unknown payment".into())
    );

    // Withdrawals need their completion events; event liquidity needs the right event.
    let invalid_id = (
        "BAD_USER_INPUT".to_owned(),
        "Invalid transfer id".to_owned(),
    );
    assert_eq!(
        tally.fails(
            document!("create_incoming_payment_withdrawal"),
            json!({ "incomingPaymentId": pending["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
        ),
        invalid_id
    );
    assert_eq!(
        tally.fails(
            document!("create_outgoing_payment_withdrawal"),
            json!({ "outgoingPaymentId": uuid(), "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
        ),
        invalid_id
    );
    let created_event = &events(&tally, "incoming_payment.created")[0];
    assert_eq!(
        tally.fails(
            document!("deposit_event_liquidity"),
            json!({ "eventId": created_event["id"], "idempotencyKey": uuid() }),
        ),
        invalid_id,
        "not an outgoing_payment.created event"
    );
    assert_eq!(
        tally.fails(
            document!("withdraw_event_liquidity"),
            json!({ "eventId": created_event["id"], "idempotencyKey": uuid() }),
        ),
        invalid_id,
        "an event without a withdrawal"
    );

    // The deprecated path funds too, by the created event's id; withdrawEventLiquidity then
    // takes what the completion event names.
    let into_bob = incoming_payment(&tally, &bob, Some(30), "USD");
    let quote = tally.ok(
        document!("create_quote"),
        "createQuote",
        json!({ "walletAddressId": alice.wallet_address, "receiver": receiver_url(&into_bob) }),
    )["quote"]
        .clone();
    let payment = tally.ok(
        document!("create_outgoing_payment"),
        "createOutgoingPayment",
        json!({ "walletAddressId": alice.wallet_address, "quoteId": quote["id"] }),
    )["payment"]
        .clone();
    let created = events(&tally, "outgoing_payment.created");
    let created = created
        .iter()
        .find(|event| event["data"]["id"] == payment["id"])
        .expect("the created event");
    assert_eq!(created["data"]["debitAmount"]["value"], "30");
    tally.ok(
        document!("deposit_event_liquidity"),
        "depositEventLiquidity",
        json!({ "eventId": created["id"], "idempotencyKey": uuid() }),
    );
    assert_eq!(outgoing(&tally, &payment)["state"], "COMPLETED");
    let completed = &events(&tally, "incoming_payment.completed")[0];
    tally.ok(
        document!("withdraw_event_liquidity"),
        "withdrawEventLiquidity",
        json!({ "eventId": completed["id"], "idempotencyKey": uuid() }),
    );
    assert_eq!(incoming(&tally, &into_bob)["liquidity"], "0");
    assert_eq!(
        tally.fails(
            document!("create_outgoing_payment_withdrawal"),
            json!({ "outgoingPaymentId": payment["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
        ),
        ("FORBIDDEN".into(), "Insufficient transfer balance".into()),
        "no fee: nothing left on the payment"
    );

    // A quote that expires before it is used: no payment from it.
    let later = incoming_payment(&tally, &bob, Some(10), "USD");
    let quote = tally.ok(
        document!("create_quote"),
        "createQuote",
        json!({ "walletAddressId": alice.wallet_address, "receiver": receiver_url(&later) }),
    )["quote"]
        .clone();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    assert_eq!(
        tally.fails(
            document!("create_outgoing_payment"),
            json!({ "walletAddressId": alice.wallet_address, "quoteId": quote["id"] }),
        ),
        ("BAD_USER_INPUT".into(), "invalid quote".into())
    );
    // One that expires between the payment and its funding: FAILED, the money waits.
    let quote = tally.ok(
        document!("create_quote"),
        "createQuote",
        json!({ "walletAddressId": alice.wallet_address, "receiver": receiver_url(&later) }),
    )["quote"]
        .clone();
    let payment = tally.ok(
        document!("create_outgoing_payment"),
        "createOutgoingPayment",
        json!({ "walletAddressId": alice.wallet_address, "quoteId": quote["id"] }),
    )["payment"]
        .clone();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    fund(&tally, &payment);
    let failed = outgoing(&tally, &payment);
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["error"], "QuoteExpired");
    assert_eq!(failed["liquidity"], "10");
    tally.ok(
        document!("create_outgoing_payment_withdrawal"),
        "createOutgoingPaymentWithdrawal",
        json!({ "outgoingPaymentId": payment["id"], "idempotencyKey": uuid(), "timeoutSeconds": 0 }),
    );

    // Inactive wallet addresses can neither receive nor quote.
    tally.ok(
        document!("update_wallet_address"),
        "updateWalletAddress",
        json!({ "id": bob.wallet_address, "status": "INACTIVE" }),
    );
    assert_eq!(
        tally.fails(
            document!("create_incoming_payment"),
            json!({ "walletAddressId": bob.wallet_address })
        ),
        ("INACTIVE".into(), "inactive wallet address".into())
    );
    tally.ok(
        document!("update_wallet_address"),
        "updateWalletAddress",
        json!({ "id": alice.wallet_address, "status": "INACTIVE" }),
    );
    assert_eq!(
        tally.fails(
            document!("create_quote"),
            json!({ "walletAddressId": alice.wallet_address, "receiver": receiver_url(&later) }),
        ),
        ("INACTIVE".into(), "inactive wallet address".into())
    );
}
