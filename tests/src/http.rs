//! A raw HTTP/1.1 client that sends exactly the bytes OpenIM's Go client sends.
//!
//! OpenIM posts with Go's `net/http`: header names canonicalised (`Operationid`), `User-Agent:
//! Go-http-client/1.1`, `Accept-Encoding: gzip`, a `Content-Length` body. A general-purpose
//! client would lowercase header names, merge doubled slashes or refuse a non-UTF-8 body, so
//! this one writes the request line and headers itself over a `TcpStream`, byte for byte as
//! the test builds them. It reads `Content-Length`, chunked and close-delimited answers. It
//! does not decompress: the gateway is expected to answer plain JSON.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one exchange (connect, write, read the whole answer) may take. OpenIM's own cap
/// is 15 s; nothing the gateway does may take longer.
pub const EXCHANGE_BOUND: Duration = Duration::from_secs(20);

/// The operation id the harness's OpenIM-like requests carry unless a test sets another.
pub const DEFAULT_OPERATION_ID: &str = "1732550400999000001";

/// An HTTP request, written to the wire exactly as held here (plus `Host` and, unless the
/// test set one, `Content-Length`).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target: path and query, e.g. `/callbackExample/callbackX?key=abc`.
    pub target: String,
    /// Header names and values, in wire order and case.
    pub headers: Vec<(String, String)>,
    /// The body bytes, sent as is (they need not be UTF-8).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// What OpenIM sends for `command` with webhook base URL path `base` (e.g.
    /// `/callbackExample`, or `""` for a bare `/{command}`): `POST {base}/{command}` with Go's
    /// headers and the `Operationid` header.
    pub fn openim(base: &str, command: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::post(&format!("{base}/{command}"), body)
    }

    /// A POST to `target` with OpenIM's headers (including `Operationid`).
    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".to_owned(),
            target: target.to_owned(),
            headers: vec![
                ("User-Agent".to_owned(), "Go-http-client/1.1".to_owned()),
                (
                    "Content-Type".to_owned(),
                    "application/json; charset=utf-8".to_owned(),
                ),
                ("Operationid".to_owned(), DEFAULT_OPERATION_ID.to_owned()),
                ("Accept-Encoding".to_owned(), "gzip".to_owned()),
            ],
            body: body.into(),
        }
    }

    /// A GET to `target` with Go's headers and no body.
    pub fn get(target: &str) -> Self {
        Self {
            method: "GET".to_owned(),
            target: target.to_owned(),
            headers: vec![
                ("User-Agent".to_owned(), "Go-http-client/1.1".to_owned()),
                ("Accept-Encoding".to_owned(), "gzip".to_owned()),
            ],
            body: Vec::new(),
        }
    }

    /// Sets header `name` (replacing any header of that name, compared case-insensitively),
    /// written with exactly this spelling.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let position = self
            .headers
            .iter()
            .position(|(existing, _)| existing.eq_ignore_ascii_case(name));
        match position {
            Some(index) => self.headers[index] = (name.to_owned(), value.to_owned()),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// Removes header `name` (compared case-insensitively).
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the method.
    pub fn method(mut self, method: &str) -> Self {
        method.clone_into(&mut self.method);
        self
    }

    /// The bytes written to the wire for `host`.
    pub fn to_wire(&self, host: &str) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        let has_length = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        // Go writes User-Agent, then Content-Length, then the other headers.
        let mut rest = self.headers.iter().peekable();
        if let Some((name, value)) = rest.next_if(|(name, _)| name == "User-Agent") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has_length && (self.method != "GET" || !self.body.is_empty()) {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        for (name, value) in rest {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&self.body);
        wire
    }
}

impl fmt::Display for HttpRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "{} {}", self.method, self.target)?;
        write_headers_and_body(formatter, &self.headers, &self.body)
    }
}

/// The part of a failure report both directions share: headers, then the body's preview.
fn write_headers_and_body(
    formatter: &mut fmt::Formatter<'_>,
    headers: &[(String, String)],
    body: &[u8],
) -> fmt::Result {
    for (name, value) in headers {
        writeln!(formatter, "{name}: {value}")?;
    }
    write!(formatter, "body ({} bytes): {}", body.len(), preview(body))
}

/// An HTTP answer as read off the wire.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names and values as sent.
    pub headers: Vec<(String, String)>,
    /// The body bytes (de-chunked).
    pub body: Vec<u8>,
    /// From just before connecting to the last body byte.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first header named `name`, compared case-insensitively as HTTP requires.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `X-Decision-Source`.
    pub fn source(&self) -> Option<&str> {
        self.header(openim_gateway_proto::headers::DECISION_SOURCE)
    }

    /// `X-Request-Id`.
    pub fn request_id(&self) -> Option<&str> {
        self.header(openim_gateway_proto::headers::REQUEST_ID)
    }

    /// The body parsed as JSON, or an error naming the body.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|error| format!("the body is not JSON ({error}): {}", preview(&self.body)))
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Display for HttpResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "status {} after {:?}", self.status, self.elapsed)?;
        write_headers_and_body(formatter, &self.headers, &self.body)
    }
}

/// The first 2000 bytes, lossily decoded, with a note when cut.
pub fn preview(bytes: &[u8]) -> String {
    const SHOWN: usize = 2000;
    let shown = &bytes[..bytes.len().min(SHOWN)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if bytes.len() > SHOWN {
        text.push_str(&format!(" ... ({} more bytes)", bytes.len() - SHOWN));
    }
    text
}

/// One keep-alive connection: requests are sent one after another on it, as Go's client
/// reuses an idle connection.
#[derive(Debug)]
pub struct HttpConnection {
    address: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl HttpConnection {
    /// Connects (bounded).
    pub async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = tokio::time::timeout(EXCHANGE_BOUND, TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} took over {EXCHANGE_BOUND:?}"))?
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            address,
            stream: BufReader::new(stream),
        })
    }

    /// Sends `request` and reads the whole answer (bounded by [`EXCHANGE_BOUND`]).
    pub async fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let start = Instant::now();
        let exchange = self.exchange(request, start);
        tokio::time::timeout(EXCHANGE_BOUND, exchange)
            .await
            .map_err(|_| format!("no complete answer within {EXCHANGE_BOUND:?}"))?
    }

    /// Writes the head of `request` (announcing its whole body in `Content-Length`) and only
    /// the first `sent` body bytes, then reads the answer: a client stalling mid-upload.
    pub async fn send_partial(
        &mut self,
        request: &HttpRequest,
        sent: usize,
    ) -> Result<HttpResponse, String> {
        let start = Instant::now();
        let exchange = self.exchange_bytes(request, start, Some(sent));
        tokio::time::timeout(EXCHANGE_BOUND, exchange)
            .await
            .map_err(|_| format!("no complete answer within {EXCHANGE_BOUND:?}"))?
    }

    /// Waits (at most `bound`) for the server to close the connection, sending nothing;
    /// how long it took, or an error when bytes arrived or it stayed open.
    pub async fn wait_closed(&mut self, bound: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut byte = [0_u8; 1];
        match tokio::time::timeout(bound, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(start.elapsed()),
            Ok(Ok(_)) => Err(format!("the server sent {:?} unasked", byte[0] as char)),
            Err(_) => Err(format!("still open after {bound:?}")),
        }
    }

    async fn exchange(
        &mut self,
        request: &HttpRequest,
        start: Instant,
    ) -> Result<HttpResponse, String> {
        self.exchange_bytes(request, start, None).await
    }

    async fn exchange_bytes(
        &mut self,
        request: &HttpRequest,
        start: Instant,
        body_bytes_sent: Option<usize>,
    ) -> Result<HttpResponse, String> {
        let mut wire = request.to_wire(&self.address.to_string());
        if let Some(sent) = body_bytes_sent {
            wire.truncate(wire.len() - request.body.len() + sent.min(request.body.len()));
        }
        // The server may answer (413) and close before reading the whole body; the answer is
        // still readable, so a failed write is only reported if reading fails too.
        let write_error = self.stream.get_mut().write_all(&wire).await.err();
        match read_response(&mut self.stream, &request.method).await {
            Ok((status, headers, body)) => Ok(HttpResponse {
                status,
                headers,
                body,
                elapsed: start.elapsed(),
            }),
            Err(read_error) => {
                Err(match write_error {
                    Some(write_error) => {
                        format!("writing the request failed ({write_error}), then reading: {read_error}")
                    }
                    None => format!("reading the answer: {read_error}"),
                })
            }
        }
    }
}

/// Sends `request` to `address` on a fresh connection.
pub async fn send(address: SocketAddr, request: &HttpRequest) -> Result<HttpResponse, String> {
    let start = Instant::now();
    let mut connection = HttpConnection::open(address).await?;
    let mut response = connection.send(request).await?;
    response.elapsed = start.elapsed();
    Ok(response)
}

/// `GET path` on a fresh connection; panics on a transport failure (it is the gateway's
/// plain routes, which must always answer).
pub async fn get(address: SocketAddr, path: &str) -> HttpResponse {
    send(address, &HttpRequest::get(path))
        .await
        .unwrap_or_else(|error| panic!("GET {path} on {address}: {error}"))
}

type Head = (u16, Vec<(String, String)>, Vec<u8>);

async fn read_response(stream: &mut BufReader<TcpStream>, method: &str) -> Result<Head, String> {
    loop {
        let status_line = read_line(stream).await?;
        if status_line.is_empty() {
            return Err("the connection closed before an answer".to_owned());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(stream).await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let find = |wanted: &str| {
            headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.clone())
        };
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
            read_chunked(stream).await?
        } else if let Some(length) = find("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("bad Content-Length {length:?}"))?;
            let mut body = vec![0; length];
            stream
                .read_exact(&mut body)
                .await
                .map_err(|error| format!("reading {length} body bytes: {error}"))?;
            body
        } else {
            let mut body = Vec::new();
            stream
                .read_to_end(&mut body)
                .await
                .map_err(|error| format!("reading a close-delimited body: {error}"))?;
            body
        };
        return Ok((status, headers, body));
    }
}

/// One CRLF-terminated line without its terminator; empty at end of file.
async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = Vec::new();
    stream
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| format!("reading the answer head: {error}"))?;
    while line
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn read_chunked(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(stream).await?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(stream).await?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream
            .read_exact(&mut body[start..])
            .await
            .map_err(|error| format!("reading a {size}-byte chunk: {error}"))?;
        read_line(stream).await?;
    }
}
