//! One keep-alive HTTP/1.1 connection to the Admin API, as lean as a load generator can be:
//! on a 2-core machine the client shares the CPU with the server it measures, so every
//! microsecond it spends is one the server does not get.
//!
//! A request is one `write` of a prepared head and the body; a response is read into a buffer
//! that is kept, its head parsed by `httparse` (the parser hyper itself uses) and its body
//! taken by `Content-Length`. No task per connection, no header maps, no copies beyond the read
//! buffer. hyper's client connection, which this replaces, spent about half the client's CPU
//! on its connection task, its header map and the hand-offs between the two tasks.
//!
//! The server it talks to is ours: it answers every request with a `Content-Length` body and
//! never pipelines. Anything else (chunked bodies, a closed connection, a head over the
//! bound) is an error the run reports, not something this client works around.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most header lines a response may have.
const RESPONSE_HEADERS_MAX: usize = 32;
/// Largest response head read (bytes): ours are under 300.
const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest response body read (bytes): the longest page of a verify pass is far below it.
const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The read buffer's initial size, and how much room each read asks for at least.
const READ_BYTES_MIN: usize = 8 * 1024;

/// What a response must say besides "no errors" (`payments` uses `None` and reads the answer).
#[derive(Clone, Copy)]
pub(crate) enum Check {
    /// Nothing more.
    None,
    /// `data.FIELD.success == true`.
    Success(&'static str),
    /// `data.asset.liquidity` is a string.
    Liquidity,
}

/// One keep-alive connection, one request in flight.
pub(crate) struct Connection {
    stream: TcpStream,
    /// `POST /graphql` up to the `Content-Length` value, which each request appends.
    head: Vec<u8>,
    /// The request being written: `head`, its length, the body.
    request: Vec<u8>,
    /// What was read of the response.
    response: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(address: SocketAddr) -> Connection {
        let stream = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             content-length: "
        )
        .into_bytes();
        Connection {
            stream,
            head,
            request: Vec::with_capacity(READ_BYTES_MIN),
            response: Vec::with_capacity(READ_BYTES_MIN),
        }
    }

    /// POSTs one GraphQL request and checks the answer; returns the response's JSON, or what
    /// was wrong with it.
    pub(crate) async fn post(&mut self, body: &str, check: Check) -> Result<Value, String> {
        self.request.clear();
        self.request.extend_from_slice(&self.head);
        self.request
            .extend_from_slice(body.len().to_string().as_bytes());
        self.request.extend_from_slice(b"\r\n\r\n");
        self.request.extend_from_slice(body.as_bytes());
        self.stream
            .write_all(&self.request)
            .await
            .map_err(|e| format!("HTTP request failed: {e}"))?;
        let (status, body_range) = self.response_read().await?;
        let bytes = &self.response[body_range];
        let text = || String::from_utf8_lossy(bytes).into_owned();
        if status != 200 {
            return Err(format!("HTTP {status} for {body}: {}", text()));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("not JSON ({e}) for {body}: {}", text()))?;
        let ok = value.get("errors").is_none()
            && match check {
                Check::None => true,
                Check::Success(field) => value["data"][field]["success"] == Value::Bool(true),
                Check::Liquidity => value["data"]["asset"]["liquidity"].is_string(),
            };
        if ok {
            Ok(value)
        } else {
            Err(format!("{body} answered {value}"))
        }
    }

    /// Reads one whole response into `self.response`; returns its status and where its body
    /// lies. One request is in flight, so nothing follows the body.
    async fn response_read(&mut self) -> Result<(u16, std::ops::Range<usize>), String> {
        self.response.clear();
        let (status, head_bytes, body_bytes) = loop {
            self.read_more().await?;
            let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.response) {
                Ok(httparse::Status::Complete(head_bytes)) => {
                    let status = response.code.ok_or("a response without a status")?;
                    let body_bytes = content_length(response.headers)?;
                    break (status, head_bytes, body_bytes);
                }
                Ok(httparse::Status::Partial) if self.response.len() < RESPONSE_HEAD_BYTES_MAX => {}
                Ok(httparse::Status::Partial) => {
                    return Err(format!(
                        "a response head over {RESPONSE_HEAD_BYTES_MAX} bytes"
                    ))
                }
                Err(error) => return Err(format!("a malformed response head: {error}")),
            }
        };
        let end = head_bytes + body_bytes;
        while self.response.len() < end {
            self.read_more().await?;
        }
        if self.response.len() > end {
            return Err(format!(
                "{} bytes after the response, with no request for them",
                self.response.len() - end
            ));
        }
        Ok((status, head_bytes..end))
    }

    /// One read of whatever the socket holds, appended to `self.response`.
    async fn read_more(&mut self) -> Result<(), String> {
        self.response.reserve(READ_BYTES_MIN);
        let read = self
            .stream
            .read_buf(&mut self.response)
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?;
        if read == 0 {
            return Err("connection lost: the server closed it".to_string());
        }
        Ok(())
    }
}

/// The body's length from the head: this client reads `Content-Length` bodies only.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, String> {
    let header = headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .ok_or("a response without Content-Length (chunked bodies are not read here)")?;
    let length = std::str::from_utf8(header.value)
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .ok_or("a malformed Content-Length")?;
    if length > RESPONSE_BODY_BYTES_MAX {
        return Err(format!(
            "a response body of {length} bytes, over {RESPONSE_BODY_BYTES_MAX}"
        ));
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads one request and answers with `parts`, written one at a time.
    async fn answer_with(parts: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 4096];
            let _ = stream.read(&mut request).await.expect("request");
            for part in parts {
                stream.write_all(part).await.expect("answer");
                stream.flush().await.expect("flush");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        address
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn reads_a_response_split_across_reads() {
        runtime().block_on(async {
            let body = br#"{"data":{"x":{"success":true}}}"#;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let head: &'static [u8] = Box::leak(head.into_bytes().into_boxed_slice());
            let address = answer_with(vec![&head[..10], &head[10..], &body[..7], &body[7..]]).await;
            let mut connection = Connection::open(address).await;
            let value = connection
                .post("{}", Check::Success("x"))
                .await
                .expect("a whole answer");
            assert_eq!(value["data"]["x"]["success"], Value::Bool(true));
        });
    }

    /// What `post` says when the server answers with `parts`.
    async fn post_error(parts: Vec<&'static [u8]>) -> String {
        let address = answer_with(parts).await;
        let mut connection = Connection::open(address).await;
        connection
            .post("{}", Check::None)
            .await
            .expect_err("not an answer this client takes")
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        runtime().block_on(async {
            let chunked: &'static [u8] =
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
            let error = post_error(vec![chunked]).await;
            assert!(error.contains("Content-Length"), "{error}");
            let refused: &'static [u8] =
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops";
            let error = post_error(vec![refused]).await;
            assert!(error.starts_with("HTTP 500"), "{error}");
            let error = post_error(vec![]).await;
            assert!(error.contains("closed"), "{error}");
        });
    }
}
