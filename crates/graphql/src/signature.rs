//! Rafiki's Admin API request signing (`rafiki-admin-api.md` §1): with a secret configured,
//! every `POST /graphql` carries a header
//! `signature: t=<unix ms>, v<version>=<hex HMAC-SHA256(secret, "<t>.<JCS of the body>")>`, where
//! JCS is the RFC 8785 canonical JSON of the parsed request body. Anything else is answered
//! HTTP 401 `Unauthorized` before GraphQL sees it.
//!
//! Parsing is positional, as Rafiki's `getSignatureParts` (v1.2.1): the header is split on
//! `", "`, part 0 is `t=…`, part 1 is `v…=…`, further parts (Rafiki's k6 scripts send
//! `n=<uuid>`) are ignored for the digest but belong to the replay key, the whole header string.
//!
//! A signature is never accepted twice, restarts included, without keeping anything on disk:
//! * within a process, accepted headers are remembered until their timestamp can no longer pass
//!   the freshness check (a bounded set);
//! * across restarts, a timestamp must lie after the moment this process began to serve plus
//!   the allowance for clocks ahead of ours ([`FUTURE_SKEW_MS_MAX`]), so nothing an earlier
//!   process accepted (its timestamps were at most its own clock plus that allowance) passes.
//!
//! Both rest on the wall clock not stepping backwards; docs/graphql.md ("Signing") says so.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "signature";

/// The furthest a signature's timestamp may lie ahead of this server's clock (milliseconds;
/// at most the TTL). Rafiki accepts any future timestamp; Tally bounds it, because a restarted
/// process refuses every timestamp up to its start plus this allowance.
pub const FUTURE_SKEW_MS_MAX: u64 = 1_000;

/// Accepted signatures remembered at once; past this, new signatures are refused with 503 until
/// older ones expire (never forgotten early, which would allow a replay).
pub const SEEN_MAX: usize = 1 << 18;

/// The longest signature header considered (bytes); Rafiki's is about 120.
pub const SIGNATURE_BYTES_MAX: usize = 1024;

/// How `POST /graphql` must be signed.
#[derive(Clone)]
pub struct SignatureOptions {
    /// The shared secret (Rafiki's `API_SECRET`).
    pub secret: String,
    /// The version a signature must name, `v<version>=` (Rafiki's `API_SIGNATURE_VERSION`).
    pub version: u32,
    /// How old a signature may be (Rafiki's `ADMIN_API_SIGNATURE_TTL_SECONDS`).
    pub ttl: Duration,
}

impl std::fmt::Debug for SignatureOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SignatureOptions")
            .field("secret", &"<redacted>")
            .field("version", &self.version)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why a request was refused (logged, never sent: the client only sees `Unauthorized`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("no signature header")]
    Missing,
    #[error("signature header is not `t=<ms>, v<version>=<hex digest>[, …]`")]
    Malformed,
    #[error("signature names another version")]
    Version,
    #[error("signature timestamp is outside the accepted window")]
    Stale,
    #[error("signature timestamp is not after this process started serving")]
    BeforeStart,
    #[error("request body is not JSON")]
    Body,
    #[error("signature digest does not match")]
    Digest,
    #[error("signature was seen before")]
    Replayed,
    #[error("too many signatures remembered")]
    Full,
}

/// The positional parts of a signature header.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    /// `t=` as written (the digest covers this text).
    timestamp_text: &'a str,
    timestamp_ms: u64,
    version: u64,
    digest: [u8; 32],
}

/// Splits a header as Rafiki's `getSignatureParts`: on `", "`, part 0 `t=<ms>`, part 1
/// `v<version>=<digest>`, the rest ignored. Stricter where Rafiki would let `Number()` or a
/// string comparison fail later: the timestamp and version are decimal digits, the digest 64
/// lowercase hex digits (Node's `digest('hex')`).
fn parts(header: &str) -> Result<Parts<'_>, Refusal> {
    let mut split = header.split(", ");
    let timestamp_text = split
        .next()
        .and_then(|part| part.strip_prefix("t="))
        .filter(|text| is_decimal(text))
        .ok_or(Refusal::Malformed)?;
    let timestamp_ms = timestamp_text.parse().map_err(|_| Refusal::Malformed)?;
    let (version, digest) = split
        .next()
        .and_then(|part| part.strip_prefix('v'))
        .and_then(|part| part.split_once('='))
        .ok_or(Refusal::Malformed)?;
    if !is_decimal(version) {
        return Err(Refusal::Malformed);
    }
    // Rafiki compares `Number(version)`, so `v01` is version 1; an overlong one is no version.
    let version = version.parse().unwrap_or(u64::MAX);
    Ok(Parts {
        timestamp_text,
        timestamp_ms,
        version,
        digest: hex_digest(digest).ok_or(Refusal::Malformed)?,
    })
}

fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let nibble = |byte: u8| match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    };
    let mut digest = [0; 32];
    for (out, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        *out = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

/// The text Rafiki signs: `<t>.<RFC 8785 canonical JSON of the parsed body>`.
fn payload(timestamp_text: &str, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| Refusal::Body)?;
    let canonical = serde_jcs::to_vec(&value).map_err(|_| Refusal::Body)?;
    let mut payload = Vec::with_capacity(timestamp_text.len() + 1 + canonical.len());
    payload.extend_from_slice(timestamp_text.as_bytes());
    payload.push(b'.');
    payload.extend_from_slice(&canonical);
    Ok(payload)
}

/// Accepted headers until they expire (the moment their timestamp is past the TTL).
#[derive(Default)]
struct Seen {
    headers: HashSet<Arc<str>>,
    expiries: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl Seen {
    /// Remembers `header` until `expires_ms`, unless it is remembered already or the set is full.
    fn insert(
        &mut self,
        header: &str,
        expires_ms: u64,
        now_ms: u64,
        max: usize,
    ) -> Result<(), Refusal> {
        while let Some(Reverse((expiry, _))) = self.expiries.peek() {
            if *expiry >= now_ms {
                break;
            }
            if let Some(Reverse((_, expired))) = self.expiries.pop() {
                self.headers.remove(&expired);
            }
        }
        if self.headers.contains(header) {
            return Err(Refusal::Replayed);
        }
        if self.headers.len() >= max {
            return Err(Refusal::Full);
        }
        let header: Arc<str> = Arc::from(header);
        self.headers.insert(Arc::clone(&header));
        self.expiries.push(Reverse((expires_ms, header)));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.headers.len()
    }
}

/// Checks signatures for one process.
pub(crate) struct Verifier {
    mac: Hmac<Sha256>,
    version: u64,
    ttl_ms: u64,
    future_ms: u64,
    /// Timestamps up to here are refused: this process's start plus `future_ms`.
    not_after_ms: u64,
    seen: Mutex<Seen>,
    seen_max: usize,
}

impl Verifier {
    /// A verifier for a process that began to serve at `started_ms` (Unix ms).
    pub(crate) fn new(options: &SignatureOptions, started_ms: u64) -> Verifier {
        let ttl_ms = u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX);
        let future_ms = FUTURE_SKEW_MS_MAX.min(ttl_ms);
        Verifier {
            mac: Hmac::new_from_slice(options.secret.as_bytes()).expect("HMAC takes any key"),
            version: u64::from(options.version),
            ttl_ms,
            future_ms,
            not_after_ms: started_ms.saturating_add(future_ms),
            seen: Mutex::new(Seen::default()),
            seen_max: SEEN_MAX,
        }
    }

    /// The checks that need no body: shape, version, freshness, start.
    fn header<'a>(&self, header: &'a str, now_ms: u64) -> Result<Parts<'a>, Refusal> {
        if header.len() > SIGNATURE_BYTES_MAX {
            return Err(Refusal::Malformed);
        }
        let parts = parts(header)?;
        if parts.version != self.version {
            return Err(Refusal::Version);
        }
        let t = parts.timestamp_ms;
        if t < now_ms.saturating_sub(self.ttl_ms) || t > now_ms.saturating_add(self.future_ms) {
            return Err(Refusal::Stale);
        }
        if t <= self.not_after_ms {
            return Err(Refusal::BeforeStart);
        }
        Ok(parts)
    }

    /// Verifies `header` for `body` at `now_ms` and, when it passes, remembers it.
    pub(crate) fn verify(&self, header: &str, body: &[u8], now_ms: u64) -> Result<(), Refusal> {
        let parts = self.header(header, now_ms)?;
        let mut mac = self.mac.clone();
        mac.update(&payload(parts.timestamp_text, body)?);
        mac.verify_slice(&parts.digest)
            .map_err(|_| Refusal::Digest)?;
        // Only signatures made with the secret are remembered, so forged headers cannot fill
        // the set. Rafiki remembers every header, then checks the digest.
        let expires_ms = parts.timestamp_ms.saturating_add(self.ttl_ms);
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(header, expires_ms, now_ms, self.seen_max)
    }
}

/// Wraps `router`'s routes: every request but `GET`/`HEAD` (GraphiQL) must be signed.
pub(crate) fn protect<S>(router: Router<S>, options: &SignatureOptions) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let verifier = Arc::new(Verifier::new(options, now_ms()));
    router.route_layer(axum::middleware::from_fn_with_state(verifier, check))
}

async fn check(State(verifier): State<Arc<Verifier>>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // Node joins repeated headers with ", ", which Rafiki then splits positionally.
    let mut values = parts.headers.get_all(SIGNATURE_HEADER).iter().peekable();
    if values.peek().is_none() {
        return refuse(Refusal::Missing);
    }
    let header = match values
        .map(|value| value.to_str())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(values) => values.join(", "),
        Err(_) => return refuse(Refusal::Malformed),
    };
    // The cheap checks before reading the body.
    if let Err(refusal) = verifier.header(&header, now_ms()) {
        return refuse(refusal);
    }
    let Ok(bytes) = axum::body::to_bytes(body, crate::REQUEST_BODY_BYTES_MAX).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    match verifier.verify(&header, &bytes, now_ms()) {
        Ok(()) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Refusal::Full) => {
            tracing::warn!(remembered = SEEN_MAX, "admin api: signature set full");
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        }
        Err(refusal) => refuse(refusal),
    }
}

/// Rafiki's answer: Koa's `ctx.throw(401, 'Unauthorized')`.
fn refuse(refusal: Refusal) -> Response {
    tracing::info!(%refusal, "admin api: request refused");
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Unauthorized",
    )
        .into_response()
}

/// The wall clock in Unix milliseconds (the clock clients sign with).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";
    const START: u64 = 1_700_000_000_000;
    /// A moment the start rule no longer refuses.
    const NOW: u64 = START + 10_000;

    fn options() -> SignatureOptions {
        SignatureOptions {
            secret: SECRET.into(),
            version: 1,
            ttl: Duration::from_secs(30),
        }
    }

    fn sign(secret: &str, version: u32, t: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&payload(&t.to_string(), body).unwrap());
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("t={t}, v{version}={digest}")
    }

    fn canonical(json: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        serde_jcs::to_string(&value).unwrap()
    }

    #[test]
    fn canonical_json_is_rfc_8785() {
        // RFC 8785 §3.2.3's example; the expected text is json-canonicalize's (Rafiki's
        // library) output for the same input.
        let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]}"#;
        assert_eq!(
            canonical(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        // Numbers as JavaScript prints them; keys in UTF-16 order (json-canonicalize's output).
        let input = r#"[-0, 5e-324, 9007199254740993, 295147905179352830000, 1e23, 0.000001, 1e-7, 100,
            {"\u00e9":1,"z":2,"\ud83d\ude00":3,"\uff61":4}]"#;
        assert_eq!(
            canonical(input),
            r#"[0,5e-324,9007199254740992,295147905179352830000,1e+23,0.000001,1e-7,100,{"z":2,"é":1,"😀":3,"｡":4}]"#
        );
    }

    #[test]
    fn rafiki_vectors() {
        // Computed with Node: createHmac('sha256', 'test-secret')
        //   .update(`${t}.${canonicalize(JSON.parse(body))}`).digest('hex')
        // with json-canonicalize, as Rafiki's generateApiSignature and verifyApiSignature do.
        let verifier = Verifier::new(&options(), START - 60_000);
        let body = br#"{"test":"value"}"#;
        let header =
            "t=1700000000000, v1=0a6b2ad96ef9870950a687ddf434e06fe272838ec4b232d928c4c210e4873ffc";
        assert_eq!(verifier.verify(header, body, START), Ok(()));

        // A GraphQL request, {query, variables, operationName}, written in another key order
        // and spacing than the canonical form, with a number JavaScript rounds.
        let body = br#"{"query":"mutation CreateAsset($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }",
            "variables": {"input": {"code":"USD", "scale":2, "withdrawalThreshold":"100", "liquidityThreshold":1e3,
            "amount":12345678901234567891, "note":"\u20ac\u000f\n\"\/"}}, "operationName":"CreateAsset"}"#;
        assert_eq!(
            String::from_utf8(payload("1700000000000", body).unwrap()).unwrap(),
            r#"1700000000000.{"operationName":"CreateAsset","query":"mutation CreateAsset($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }","variables":{"input":{"amount":12345678901234567000,"code":"USD","liquidityThreshold":1000,"note":"€\u000f\n\"/","scale":2,"withdrawalThreshold":"100"}}}"#
        );
        let header =
            "t=1700000000000, v1=c2bf1f7ba27eab148d648ab2409e2f70e72abab2a738365ec4fe6415b5f3a484";
        let verifier = Verifier::new(&options(), START - 60_000);
        assert_eq!(verifier.verify(header, body, START + 29_000), Ok(()));
    }

    #[test]
    fn positional_parts() {
        let digest = "00".repeat(32);
        let header = format!("t=12, v3={digest}, n=0b8f9e4e-0000-4000-8000-000000000000");
        let parsed = parts(&header).unwrap();
        assert_eq!(parsed.timestamp_text, "12");
        assert_eq!(parsed.timestamp_ms, 12);
        assert_eq!(parsed.version, 3);
        assert_eq!(parsed.digest, [0; 32]);
        assert_eq!(parts(&format!("t=12, v01={digest}")).unwrap().version, 1);
        for bad in [
            String::new(),
            "t=12".into(),
            format!("t=12,v1={digest}"),
            format!("v1={digest}, t=12"),
            format!("t=, v1={digest}"),
            format!("t=-12, v1={digest}"),
            format!("t=1.5, v1={digest}"),
            format!("t=12, 1={digest}"),
            format!("t=12, v={digest}"),
            format!("t=12, vx={digest}"),
            "t=12, v1=00".into(),
            format!("t=12, v1={}", "AB".repeat(32)),
            format!("t=12, v1={digest}0"),
        ] {
            assert_eq!(parts(&bad), Err(Refusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn refusals() {
        let verifier = Verifier::new(&options(), START);
        let body = br#"{"query":"{ assets { edges { node { id } } } }"}"#;
        assert_eq!(verifier.verify("", body, NOW), Err(Refusal::Malformed));
        // Version, secret, body and timestamp all count.
        let wrong_version = sign(SECRET, 2, NOW, body);
        assert_eq!(
            verifier.verify(&wrong_version, body, NOW),
            Err(Refusal::Version)
        );
        let wrong_secret = sign("other", 1, NOW, body);
        assert_eq!(
            verifier.verify(&wrong_secret, body, NOW),
            Err(Refusal::Digest)
        );
        let signed = sign(SECRET, 1, NOW, body);
        let other_body = br#"{"query":"{ assets { edges { node { code } } } }"}"#;
        assert_eq!(
            verifier.verify(&signed, other_body, NOW),
            Err(Refusal::Digest)
        );
        assert_eq!(
            verifier.verify(&signed, b"not json", NOW),
            Err(Refusal::Body)
        );
        let moved = signed.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(verifier.verify(&moved, body, NOW), Err(Refusal::Digest));
        // Another spelling of the same JSON carries the same signature.
        let respaced = br#"{ "query" : "{ assets { edges { node { id } } } }" }"#;
        assert_eq!(verifier.verify(&signed, respaced, NOW), Ok(()));
        assert_eq!(verifier.verify(&signed, body, NOW), Err(Refusal::Replayed));
        // An extra part makes another header: Rafiki's k6 nonce.
        let with_nonce = format!("{signed}, n=1");
        assert_eq!(verifier.verify(&with_nonce, body, NOW), Ok(()));
        assert_eq!(
            verifier.verify(&with_nonce, body, NOW),
            Err(Refusal::Replayed)
        );
        // A refused header is not remembered: the same one passes once it is valid.
        let early = sign(SECRET, 1, NOW + 5_000, body);
        assert_eq!(verifier.verify(&early, body, NOW), Err(Refusal::Stale));
        assert_eq!(verifier.verify(&early, body, NOW + 4_000), Ok(()));
    }

    #[test]
    fn freshness_window() {
        let verifier = Verifier::new(&options(), START);
        let body = b"{}";
        let t = NOW;
        // Up to the TTL in the past, up to the skew allowance in the future.
        assert_eq!(
            verifier.verify(&sign(SECRET, 1, t, body), body, t + 30_001),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verifier.verify(&sign(SECRET, 1, t, body), body, t + 30_000),
            Ok(())
        );
        let ahead = t + 50;
        assert_eq!(
            verifier.verify(
                &sign(SECRET, 1, ahead + FUTURE_SKEW_MS_MAX, body),
                body,
                ahead - 1
            ),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verifier.verify(
                &sign(SECRET, 1, ahead + FUTURE_SKEW_MS_MAX, body),
                body,
                ahead
            ),
            Ok(())
        );
    }

    #[test]
    fn nothing_from_before_the_start() {
        // A process that started at START refuses what an earlier process could have accepted:
        // timestamps up to its start plus the allowance for clocks ahead.
        let verifier = Verifier::new(&options(), START);
        let body = b"{}";
        for t in [START - 1, START, START + FUTURE_SKEW_MS_MAX] {
            assert_eq!(
                verifier.verify(&sign(SECRET, 1, t, body), body, START + 100),
                Err(Refusal::BeforeStart),
                "t = start {:+}",
                t as i64 - START as i64
            );
        }
        let t = START + FUTURE_SKEW_MS_MAX + 1;
        assert_eq!(verifier.verify(&sign(SECRET, 1, t, body), body, t), Ok(()));
        // A short TTL bounds the allowance too.
        let short = SignatureOptions {
            ttl: Duration::from_millis(200),
            ..options()
        };
        let verifier = Verifier::new(&short, START);
        assert_eq!(
            verifier.verify(&sign(SECRET, 1, START + 201, body), body, START + 201),
            Ok(())
        );
    }

    #[test]
    fn seen_set_expires_and_is_bounded() {
        let mut seen = Seen::default();
        assert_eq!(seen.insert("a", 100, 0, 2), Ok(()));
        assert_eq!(seen.insert("b", 200, 0, 2), Ok(()));
        assert_eq!(seen.insert("a", 100, 50, 2), Err(Refusal::Replayed));
        assert_eq!(seen.insert("c", 300, 100, 2), Err(Refusal::Full));
        // At its expiry an entry is still there (its timestamp still passes); after, gone.
        assert_eq!(seen.insert("a", 100, 100, 2), Err(Refusal::Replayed));
        assert_eq!(seen.insert("c", 300, 101, 2), Ok(()));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.insert("a", 400, 101, 2), Err(Refusal::Full));
        assert_eq!(seen.insert("d", 500, 301, 2), Ok(()));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn secret_is_not_printed() {
        assert!(!format!("{:?}", options()).contains(SECRET));
    }
}
