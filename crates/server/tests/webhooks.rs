//! Webhook delivery end to end (issue 8): a real `tally start` child and, in the test, a small
//! HTTP receiver playing the account servicing entity, as Rafiki's mock ASE does: it funds an
//! outgoing payment when told `outgoing_payment.created` and withdraws an incoming payment when
//! told `incoming_payment.completed`. Deliveries are signed, only HTTP 200 counts, failures are
//! retried, and what is owed survives a SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "webhook-secret";
/// Generous: a deadline that only stops a hung test, never a measurement.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// A `tally start` child delivering webhooks to `webhook_url`.
struct Tally {
    child: Child,
    graphql: String,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tally {
    fn start(data_dir: &Path, webhook_url: &str) -> Tally {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["start", "--addresses", "127.0.0.1:0"])
            .args(["--graphql-address", "127.0.0.1:0"])
            .args(["--auto-peering-address", "off"])
            .args(["--webhook-url", webhook_url])
            .args(["--webhook-secret", SECRET])
            .args(["--webhook-retry-delay", "100"])
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

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

fn post(graphql: &str, query: &str, variables: Value) -> Value {
    let response = ureq::post(graphql).send_json(json!({ "query": query, "variables": variables }));
    match response {
        Ok(response) => response.into_json().expect("JSON body"),
        Err(ureq::Error::Status(_, response)) => response.into_json().expect("JSON body"),
        Err(error) => panic!("HTTP failed: {error}"),
    }
}

fn ok(graphql: &str, query: &str, field: &str, input: Value) -> Value {
    let response = post(graphql, query, json!({ "input": input }));
    assert!(response["errors"].is_null(), "{field} failed: {response}");
    response["data"][field].clone()
}

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
struct Delivery {
    signature: String,
    body: String,
    answered: u16,
}

/// The receiver's shared state.
#[derive(Default)]
struct Ase {
    /// The Admin API to call back (set once tally is up).
    graphql: Option<String>,
    /// Answer 500 to this many more deliveries.
    failures_left: u32,
    deliveries: Vec<Delivery>,
}

/// Starts the receiver; returns its URL and state.
fn receiver() -> (String, Arc<Mutex<Ase>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/webhooks", listener.local_addr().expect("addr"));
    let ase = Arc::new(Mutex::new(Ase::default()));
    let shared = ase.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let ase = shared.clone();
            std::thread::spawn(move || serve(stream, &ase));
        }
    });
    (url, ase)
}

/// Reads one HTTP/1.1 request, acts as the ASE, answers, closes.
fn serve(mut stream: TcpStream, ase: &Mutex<Ase>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut signature = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "rafiki-signature" => signature = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8(body).expect("UTF-8 body");
    let (fail, graphql) = {
        let mut ase = ase.lock().expect("lock");
        let fail = ase.failures_left > 0;
        if fail {
            ase.failures_left -= 1;
        }
        (fail, ase.graphql.clone())
    };
    if !fail {
        if let Some(graphql) = graphql {
            act(&graphql, &body);
        }
    }
    let status = if fail { 500 } else { 200 };
    ase.lock().expect("lock").deliveries.push(Delivery {
        signature,
        body,
        answered: status,
    });
    let reason = if fail { "Internal Server Error" } else { "OK" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// The mock ASE's webhook handler (Rafiki's `localenv/mock-account-servicing-entity`).
fn act(graphql: &str, body: &str) {
    let event: Value = serde_json::from_str(body).expect("JSON event");
    match event["type"].as_str() {
        Some("outgoing_payment.created") => {
            ok(
                graphql,
                "mutation($input: DepositOutgoingPaymentLiquidityInput!) { depositOutgoingPaymentLiquidity(input: $input) { success } }",
                "depositOutgoingPaymentLiquidity",
                json!({ "outgoingPaymentId": event["data"]["id"], "idempotencyKey": event["id"] }),
            );
        }
        Some("incoming_payment.completed") => {
            ok(
                graphql,
                "mutation($input: CreateIncomingPaymentWithdrawalInput!) { createIncomingPaymentWithdrawal(input: $input) { success } }",
                "createIncomingPaymentWithdrawal",
                json!({ "incomingPaymentId": event["data"]["id"], "idempotencyKey": event["id"], "timeoutSeconds": 0 }),
            );
        }
        _ => {}
    }
}

/// Checks Rafiki's signature over the body.
fn signature_valid(delivery: &Delivery) -> bool {
    let Some((timestamp, signature)) = delivery.signature.split_once(", ") else {
        return false;
    };
    let (Some(timestamp), Some(signature)) =
        (timestamp.strip_prefix("t="), signature.strip_prefix("v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{}", delivery.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    expected == signature
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT_MAX, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An asset with liquidity and two wallet addresses on it.
fn setup(graphql: &str) -> (String, String) {
    let asset = ok(
        graphql,
        "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }",
        "createAsset",
        json!({ "code": "USD", "scale": 2 }),
    )["asset"]["id"]
        .as_str()
        .expect("asset")
        .to_owned();
    let address = |name: &str| {
        ok(
            graphql,
            "mutation($input: CreateWalletAddressInput!) { createWalletAddress(input: $input) { walletAddress { id } } }",
            "createWalletAddress",
            json!({ "assetId": asset, "url": format!("https://tally.test/{name}") }),
        )["walletAddress"]["id"]
            .as_str()
            .expect("wallet address")
            .to_owned()
    };
    (address("alice"), address("bob"))
}

const INCOMING_PAYMENT: &str =
    "query($id: String!) { incomingPayment(id: $id) { state liquidity receivedAmount { value } } }";

#[test]
fn the_ase_funds_and_withdraws_through_signed_retried_webhooks() {
    let (url, ase) = receiver();
    ase.lock().unwrap().failures_left = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = Tally::start(&dir.path().join("data"), &url);
    ase.lock().unwrap().graphql = Some(tally.graphql.clone());
    let graphql = tally.graphql.clone();
    let (alice, bob) = setup(&graphql);

    let incoming = ok(
        &graphql,
        "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment(input: $input) { payment { id } } }",
        "createIncomingPayment",
        json!({ "walletAddressId": bob, "incomingAmount": { "value": "250", "assetCode": "USD", "assetScale": 2 } }),
    )["payment"]["id"]
        .as_str()
        .expect("incoming payment")
        .to_owned();
    let receiver_url = format!("http://127.0.0.1:3003/incoming-payments/{incoming}");
    let quote = ok(
        &graphql,
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id } } }",
        "createQuote",
        json!({ "walletAddressId": alice, "receiver": receiver_url }),
    )["quote"]["id"]
        .clone();
    ok(
        &graphql,
        "mutation($input: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $input) { payment { id } } }",
        "createOutgoingPayment",
        json!({ "walletAddressId": alice, "quoteId": quote }),
    );

    // The ASE funds on `outgoing_payment.created`, the payment completes the incoming payment,
    // and the ASE withdraws on `incoming_payment.completed`.
    wait_until("the incoming payment to be withdrawn", || {
        let payment = post(&graphql, INCOMING_PAYMENT, json!({ "id": incoming }));
        payment["data"]["incomingPayment"]["liquidity"] == "0"
    });
    let payment = post(&graphql, INCOMING_PAYMENT, json!({ "id": incoming }));
    assert_eq!(payment["data"]["incomingPayment"]["state"], "COMPLETED");
    assert_eq!(
        payment["data"]["incomingPayment"]["receivedAmount"]["value"],
        "250"
    );

    let deliveries = ase.lock().unwrap().deliveries.clone();
    assert!(deliveries.iter().all(signature_valid), "{deliveries:?}");
    let failed = deliveries.iter().filter(|d| d.answered == 500).count();
    assert_eq!(failed, 2, "the first two deliveries were refused");
    let types: Vec<String> = deliveries
        .iter()
        .filter(|d| d.answered == 200)
        .map(|d| {
            serde_json::from_str::<Value>(&d.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for expected in [
        "incoming_payment.created",
        "outgoing_payment.created",
        "incoming_payment.completed",
        "outgoing_payment.completed",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} not delivered: {types:?}"
        );
    }
}

#[test]
fn owed_events_survive_a_sigkill() {
    let (url, ase) = receiver();
    ase.lock().unwrap().failures_left = u32::MAX;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tally = Tally::start(&data, &url);
    let (_, bob) = setup(&tally.graphql);
    let incoming = ok(
        &tally.graphql,
        "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment(input: $input) { payment { id } } }",
        "createIncomingPayment",
        json!({ "walletAddressId": bob }),
    )["payment"]["id"]
        .as_str()
        .expect("incoming payment")
        .to_owned();
    wait_until("a refused delivery", || {
        ase.lock()
            .unwrap()
            .deliveries
            .iter()
            .any(|d| d.answered == 500)
    });
    tally.kill();

    ase.lock().unwrap().failures_left = 0;
    let tally = Tally::start(&data, &url);
    let delivered = |ase: &Mutex<Ase>| {
        ase.lock()
            .unwrap()
            .deliveries
            .iter()
            .filter(|d| d.answered == 200 && d.body.contains(&incoming))
            .count()
    };
    wait_until("the owed event after the restart", || delivered(&ase) > 0);
    // Delivered once it counted: no more attempts for it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(delivered(&ase), 1);
    let events = post(
        &tally.graphql,
        "query { webhookEvents(first: 10) { edges { node { id type } } } }",
        json!({}),
    );
    assert_eq!(
        events["data"]["webhookEvents"]["edges"][0]["node"]["type"],
        "incoming_payment.created"
    );
}
