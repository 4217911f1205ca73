//! A minimal HTTP/1.1 client over one TCP connection per request, for the
//! `raft-kv` command-line client, leader forwarding and the tests. It sends
//! `Connection: close` and reads the answer to the end, so it needs no
//! connection pool and no extra dependency.

use std::fmt::Display;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// The most bytes of an answer read (a value is at most 64 KiB; status and
/// errors are small).
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request failed without an HTTP answer.
#[derive(Debug)]
pub enum HttpError {
    /// The connection could not be made: the request was not sent.
    Connect(std::io::Error),
    /// Sending or receiving failed after connecting: the request may have
    /// been received and acted on.
    Io(std::io::Error),
    /// No complete answer within the timeout.
    Timeout,
    /// The answer is not HTTP/1.1 as this client understands it.
    Malformed(&'static str),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Timeout => write!(f, "no answer in time"),
            HttpError::Malformed(what) => write!(f, "malformed answer: {what}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Sends one request and returns the answer, all within `timeout`. `addr`
/// is a socket address or a `host:port` string; a host name is resolved
/// for this request (a failure to resolve is [`HttpError::Connect`]).
pub async fn request(
    addr: impl ToSocketAddrs + Display,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(addr, method, path, headers, body)).await.map_err(|_| HttpError::Timeout)?
}

async fn exchange(
    addr: impl ToSocketAddrs + Display,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let mut stream = TcpStream::connect(addr).await.map_err(HttpError::Connect)?;
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.map_err(HttpError::Io)?;
    stream.write_all(body).await.map_err(HttpError::Io)?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(RESPONSE_BYTES_MAX as u64);
    limited.read_to_end(&mut raw).await.map_err(HttpError::Io)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Response, HttpError> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(HttpError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| HttpError::Malformed("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(HttpError::Malformed("no status line"))?;
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(HttpError::Malformed("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    Ok(Response { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or(HttpError::Malformed("chunk size"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| HttpError::Malformed("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| HttpError::Malformed("chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(HttpError::Malformed("truncated chunk"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Percent-encodes bytes for a URL path segment (unreserved characters stay).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment into bytes; `None` for a broken
/// escape.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_round_trips_any_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(percent_decode(&percent_encode(&all)), Some(all));
        assert_eq!(percent_decode("a%2Fb"), Some(b"a/b".to_vec()));
        assert_eq!(percent_decode("bad%G1"), None);
        assert_eq!(percent_decode("short%4"), None);
    }

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
        let r = parse(plain).unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("content-type")), (200, &b"hi"[..], Some("text/plain")));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().body, b"abcde");
        assert!(parse(b"garbage").is_err());
    }
}
