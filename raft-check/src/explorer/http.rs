//! The explorer's requests: the page and its files, the JSON over the model,
//! and stateright's explorer behind `/stateright/`.

use super::view;
use crate::model::RaftModel;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, StatusCode};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");

/// How long a forwarded request may wait for stateright's explorer. Its
/// `/.states/...` answers walk one path and expand one state: milliseconds.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes read back from stateright's explorer for one request (its
/// largest answer, the states after one step with their sequence diagrams,
/// is tens of kilobytes).
const UPSTREAM_RESPONSE_BYTES_MAX: u64 = 64 << 20;

/// What every handler thread reads.
pub(super) struct Shared {
    /// The model the page shows.
    pub model: RaftModel,
    /// Where stateright's explorer listens.
    pub upstream: SocketAddr,
}

/// Answers requests from `server` until it fails.
pub(super) fn serve(server: &tiny_http::Server, shared: &Shared) {
    while let Ok(request) = server.recv() {
        // A bug in a view must not take a handler thread down with it.
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(&request, shared)));
        let response = routed.unwrap_or_else(|_| {
            text(
                StatusCode(500),
                "the explorer failed on this request (a bug: its message is on the explorer's stderr)",
            )
        });
        let _ = request.respond(response);
    }
}

type Answer = Response<std::io::Cursor<Vec<u8>>>;

fn route(request: &Request, shared: &Shared) -> Answer {
    let url = request.url();
    let path = url.split(['?', '#']).next().unwrap_or("/");
    match (request.method(), path) {
        (Method::Get, "/" | "/index.html") => file(PAGE_HTML, "text/html; charset=utf-8"),
        (Method::Get, "/explorer.js") => file(PAGE_JS, "text/javascript; charset=utf-8"),
        (Method::Get, "/explorer.css") => file(PAGE_CSS, "text/css; charset=utf-8"),
        (Method::Get, "/api/model") => json(StatusCode(200), &view::model_view(&shared.model)),
        (Method::Get, p) if p.starts_with("/api/state") => state(&shared.model, &p["/api/state".len()..]),
        (Method::Get, "/stateright") => redirect("/stateright/"),
        (method, p) if p.starts_with("/stateright/") => forward(shared.upstream, method, &url["/stateright".len()..]),
        (method, p) if p == "/.status" || p == "/.runtocompletion" || p.starts_with("/.states") => {
            forward(shared.upstream, method, url)
        }
        _ => text(
            StatusCode(404),
            &format!("no page {path} here: the Raft explorer is at /, stateright's at /stateright/"),
        ),
    }
}

fn state(model: &RaftModel, path: &str) -> Answer {
    let walked = view::parse_path(path).and_then(|path| view::walk(model, &path));
    match walked {
        Ok(walk) => json(StatusCode(200), &view::state_view(model, &walk)),
        Err(e) => json(StatusCode(404), &serde_json::json!({ "error": e.to_string() })),
    }
}

fn file(body: &str, content_type: &str) -> Answer {
    Response::from_data(body.as_bytes().to_vec()).with_header(header("Content-Type", content_type))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    let body = serde_json::to_vec(value).expect("views serialize");
    Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
}

fn text(status: StatusCode, body: &str) -> Answer {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn redirect(to: &str) -> Answer {
    Response::from_data(Vec::new()).with_status_code(StatusCode(301)).with_header(header("Location", to))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Forwards one request (its body is always empty: stateright's endpoints
/// take none) to stateright's explorer and hands back its answer, with a
/// content type for its files (it sends none).
fn forward(upstream: SocketAddr, method: &Method, target: &str) -> Answer {
    match fetch(upstream, method, target) {
        Ok((status, body)) => {
            let path = target.split(['?', '#']).next().unwrap_or("/");
            let content_type = match path.rsplit('.').next() {
                _ if path == "/" => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("htm" | "html") => "text/html; charset=utf-8",
                _ if path.starts_with("/.") => "application/json",
                _ => "application/octet-stream",
            };
            Response::from_data(body)
                .with_status_code(StatusCode(status))
                .with_header(header("Content-Type", content_type))
        }
        Err(e) => text(StatusCode(502), &format!("stateright's explorer did not answer: {e}")),
    }
}

/// One HTTP/1.0 exchange (so that the answer is never chunked and ends when
/// the connection closes): the status code and the body.
fn fetch(upstream: SocketAddr, method: &Method, target: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    write!(stream, "{method} {target} HTTP/1.0\r\nHost: {upstream}\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.take(UPSTREAM_RESPONSE_BYTES_MAX).read_to_end(&mut raw)?;
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| invalid("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("headers not UTF-8"))?;
    let status =
        head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| invalid("no status code"))?;
    Ok((status, raw[end + 4..].to_vec()))
}
