//! Admin API request signing end to end: a real `tally start --admin-api-secret …` child, real
//! HTTP, signatures made as Rafiki's `generateApiSignature` makes them (HMAC-SHA256 over
//! `<t>.<RFC 8785 canonical JSON of the body>`). Accepted, bad digest, missing, stale, replayed,
//! and replayed after a SIGTERM restart; GraphiQL stays open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "tally-test-secret";

/// A `tally start` child requiring signatures, both listeners on ephemeral ports.
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
    fn start(data_dir: &Path, ttl_seconds: u64) -> Tally {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args([
                "start",
                "--addresses",
                "127.0.0.1:0",
                "--graphql-address",
                "127.0.0.1:0",
                "--auto-peering-address",
                "off",
                "--admin-api-secret",
                SECRET,
            ])
            .arg("--admin-api-signature-ttl-seconds")
            .arg(ttl_seconds.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--segment-mib")
            .arg("4")
            .env_remove("TALLY_ADMIN_API_SIGNATURE_VERSION")
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
        // Timestamps up to the start plus the allowance for clocks ahead are refused (they
        // could have been accepted by an earlier process): sign only after that.
        std::thread::sleep(Duration::from_millis(
            tally_graphql::FUTURE_SKEW_MS_MAX + 100,
        ));
        Tally { child, graphql }
    }

    /// Posts `body` with `signature` (if any); returns the status and the body text.
    fn post(&self, body: &str, signature: Option<&str>) -> (u16, String) {
        let mut request = ureq::post(&self.graphql).set("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.set("signature", signature);
        }
        match request.send_string(body) {
            Ok(response) => (response.status(), response.into_string().expect("text")),
            Err(ureq::Error::Status(status, response)) => {
                (status, response.into_string().expect("text"))
            }
            Err(error) => panic!("HTTP failed: {error}"),
        }
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "tally exited {status}");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Rafiki's `generateApiSignature(secret, 1, body)` at `t`, with extra parts appended.
fn sign(secret: &str, t: u64, body: &str, extra: &str) -> String {
    let parsed: Value = serde_json::from_str(body).expect("JSON body");
    let canonical = serde_jcs::to_string(&parsed).expect("canonical JSON");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.{canonical}").as_bytes());
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={t}, v1={digest}{extra}")
}

/// A GraphQL request body, as a client would send it (not in canonical form).
fn body(code: &str) -> String {
    serde_json::to_string(&json!({
        "query": "mutation CreateAsset($input: CreateAssetInput!) { createAsset(input: $input) { asset { id code } } }",
        "variables": { "input": { "scale": 2, "code": code } },
        "operationName": "CreateAsset",
    }))
    .unwrap()
}

fn created(response: &(u16, String)) -> bool {
    let (status, text) = response;
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    *status == 200 && value["data"]["createAsset"]["asset"]["id"].is_string()
}

fn unauthorized() -> (u16, String) {
    (401, "Unauthorized".to_owned())
}

#[test]
fn signed_requests_only_once_across_restarts() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path(), 30);

    // GraphiQL needs no signature; other paths are still 404.
    let graphiql = ureq::get(&tally.graphql).call().expect("GraphiQL");
    assert_eq!(graphiql.status(), 200);
    let other = tally.graphql.replace("/graphql", "/other");
    match ureq::post(&other).send_string("{}") {
        Err(ureq::Error::Status(status, _)) => assert_eq!(status, 404),
        outcome => panic!("POST /other: {outcome:?}"),
    }

    // Accepted.
    let usd = body("USD");
    let signature = sign(SECRET, now_ms(), &usd, "");
    let accepted = tally.post(&usd, Some(&signature));
    assert!(created(&accepted), "{accepted:?}");

    // Replayed: the exact header string again.
    assert_eq!(tally.post(&usd, Some(&signature)), unauthorized());

    // Rafiki's k6 shape: a nonce part makes another header over the same body and t.
    let eur = body("EUR");
    let t = now_ms();
    let first = sign(SECRET, t, &eur, ", n=6f1c1c8e-52b5-4c1f-9a55-2b0c0d1f7a01");
    let second = sign(
        SECRET,
        t,
        &body("GBP"),
        ", n=2d5e8d77-0c1e-4b8a-8f5e-6a2f3c4d5e6f",
    );
    assert!(created(&tally.post(&eur, Some(&first))));
    assert!(created(&tally.post(&body("GBP"), Some(&second))));
    assert_eq!(tally.post(&eur, Some(&first)), unauthorized());

    // Bad digest: another secret, another body, a tampered timestamp.
    let jpy = body("JPY");
    assert_eq!(
        tally.post(&jpy, Some(&sign("other", now_ms(), &jpy, ""))),
        unauthorized()
    );
    let t = now_ms();
    assert_eq!(
        tally.post(&jpy, Some(&sign(SECRET, t, &body("CHF"), ""))),
        unauthorized()
    );
    let moved = sign(SECRET, t, &jpy, "").replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
    assert_eq!(tally.post(&jpy, Some(&moved)), unauthorized());
    assert_eq!(
        tally.post(&jpy, Some(&format!("t={t}, v2=00"))),
        unauthorized()
    );

    // Missing.
    assert_eq!(tally.post(&jpy, None), unauthorized());

    // Stale: beyond the allowance for clocks ahead, and older than the TTL.
    let ahead = now_ms() + tally_graphql::FUTURE_SKEW_MS_MAX + 5_000;
    assert_eq!(
        tally.post(&jpy, Some(&sign(SECRET, ahead, &jpy, ""))),
        unauthorized()
    );
    assert_eq!(
        tally.post(&jpy, Some(&sign(SECRET, now_ms() - 31_000, &jpy, ""))),
        unauthorized()
    );

    // A signature made now and not yet used, held across a restart, and the one used above:
    // after the restart both are still fresh, and neither is accepted.
    let held = sign(SECRET, now_ms(), &jpy, "");
    tally.stop();
    let tally = Tally::start(directory.path(), 30);
    assert_eq!(tally.post(&usd, Some(&signature)), unauthorized());
    assert_eq!(tally.post(&jpy, Some(&held)), unauthorized());

    // The restarted process serves fresh signatures.
    let accepted = tally.post(&jpy, Some(&sign(SECRET, now_ms(), &jpy, "")));
    assert!(created(&accepted), "{accepted:?}");
    tally.stop();
}

#[test]
fn stale_after_the_ttl() {
    let directory = tempfile::tempdir().expect("temp dir");
    let tally = Tally::start(directory.path(), 1);
    let usd = body("USD");
    let signature = sign(SECRET, now_ms(), &usd, "");
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(tally.post(&usd, Some(&signature)), unauthorized());
    let accepted = tally.post(&usd, Some(&sign(SECRET, now_ms(), &usd, "")));
    assert!(created(&accepted), "{accepted:?}");
    tally.stop();
}
