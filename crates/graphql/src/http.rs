//! The front's outgoing HTTP: one request on a fresh HTTP/1.1 connection (hyper's own client
//! connection), for auto-peering requests, exchange rates and webhook deliveries. Plain `http`
//! only (peers, rates sources and the ASE on loopback or private networks); `https` URLs are
//! refused as unreachable until TLS is needed. Callers bound the time with a timeout.

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Why a request got no HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// Bad URL, unknown host or refused connection (Rafiki: `ENOTFOUND`, `ECONNREFUSED`).
    Unreachable,
    /// The connection broke, the answer was not HTTP, or its body was over the limit.
    Protocol,
}

/// Sends one request with `body` (JSON when not empty) and `headers`; returns the status and
/// up to `answer_bytes_max` bytes of the answer's body.
pub(crate) async fn request(
    method: Method,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
    answer_bytes_max: usize,
) -> Result<(StatusCode, Vec<u8>), HttpError> {
    let uri: axum::http::Uri = url.parse().map_err(|_| HttpError::Unreachable)?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpError::Unreachable);
    }
    let host = uri.host().ok_or(HttpError::Unreachable)?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|_| HttpError::Unreachable)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| HttpError::Protocol)?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let authority = uri
        .authority()
        .map_or(host.clone(), |authority| authority.to_string());
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|_| HttpError::Protocol)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| HttpError::Protocol)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), answer_bytes_max)
        .collect()
        .await
        .map_err(|_| HttpError::Protocol)?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}
