//! The one HTTP/1.1 server behind both of handoffd's listeners: the API ([`crate::api`]) and
//! `GET /metrics` ([`crate::metrics`]). One request per connection, `Connection: close`.
//!
//! What a client can make it hold is bounded:
//!
//! | what | bound | past it |
//! |------|-------|---------|
//! | open connections per listener | [`Limits::max_connections`], and never more than the descriptor limit minus [`FD_RESERVE`] (shared by both listeners) | the connection is closed at once, counted in `handoff_http_connections_refused_total`, one WARN line per 10 s |
//! | time to send the request | [`Limits::read_timeout`] for head and body together | `408 Request Timeout`, closed |
//! | time to take the answer | [`WRITE_TIMEOUT`] | closed |
//! | request head | [`MAX_HEAD_BYTES`] | `431`, closed |
//! | request body | [`Limits::max_body`] (`api.max_body_bytes`) | `413`, closed |
//! | refusal log lines | one per [`LOG_EVERY`] per listener, with the count of those left out | counted, not logged |
//!
//! Heads are strict: no control characters, one `Content-Length` at most, no
//! `Transfer-Encoding` (a request a proxy could read differently is refused with 400).

// Clock, tokio and sockets are allowed here: the HTTP server: sockets, deadlines (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tracing::{error, info, warn};

/// Largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to read the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Descriptors kept free for everything but HTTP clients: the PBX link and its reconnects,
/// the store's files, the journal.
pub const FD_RESERVE: usize = 128;
/// At most one refusal WARN line per listener in this time.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one listener accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (before the descriptor clamp, see [`connection_cap`]).
    pub max_connections: usize,
    /// Time for the whole request (head and body) to arrive.
    pub read_timeout: Duration,
    /// Largest body.
    pub max_body: usize,
}

/// A parsed request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// An answer: status, content type and body.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string() }
    }
}

/// Why a request could not be read: answered with this status, then the connection closes.
#[derive(Debug, PartialEq)]
pub struct BadRequest {
    pub status: u16,
    pub code: &'static str,
    pub reason: String,
}

fn bad(status: u16, code: &'static str, reason: impl Into<String>) -> BadRequest {
    BadRequest { status, code, reason: reason.into() }
}

impl BadRequest {
    /// The JSON refusal (`{"error","reason"}`) sent for it.
    pub fn response(&self) -> Response {
        Response::json(self.status, &json!({ "error": self.code, "reason": self.reason }))
    }
}

/// The first control character in `s` (tab allowed), if any.
fn control_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control() && *c != '\t')
}

/// Parses a request head (everything before the blank line) and returns it with its
/// Content-Length. Sans-I/O, for tests and fuzzing.
pub fn parse_head(head: &[u8]) -> Result<(Request, usize), BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| bad(400, "malformed", "request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    if let Some(c) = control_char(line) {
        return Err(bad(400, "malformed", format!("request line contains the control character U+{:04X}", c as u32)));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "malformed", "request line is not METHOD PATH HTTP/1.x"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(400, "malformed", format!("unsupported protocol {version:?}")));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request { method: method.into(), path: path.into(), query: query.into(), ..Request::default() };
    let mut length: Option<usize> = None;
    for h in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = h.split_once(':') else {
            return Err(bad(400, "malformed", "header line without a colon"));
        };
        if let Some(c) = control_char(h) {
            return Err(bad(
                400,
                "malformed",
                format!("header {:?} contains the control character U+{:04X}", name.trim(), c as u32),
            ));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(bad(400, "malformed", "more than one Content-Length header"));
            }
            length = Some(value.parse().map_err(|_| bad(400, "malformed", "Content-Length is not a number"))?);
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(400, "malformed", "chunked bodies are not accepted; send Content-Length"));
        }
    }
    Ok((req, length.unwrap_or(0)))
}

/// Reads one request from `conn`: the head (at most [`MAX_HEAD_BYTES`]), then the body (at
/// most `max_body`).
pub async fn read_request(conn: &mut (impl AsyncRead + Unpin), max_body: usize) -> Result<Request, BadRequest> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad(431, "head_too_large", format!("request head over {MAX_HEAD_BYTES} bytes")));
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(bad(400, "malformed", "connection closed before the request ended")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (mut req, length) = parse_head(&buf[..head_end])?;
    if length > max_body {
        return Err(bad(413, "body_too_large", format!("body of {length} bytes is over the limit of {max_body}")));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(bad(400, "malformed", "connection closed before the body ended")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if body.len() > length {
        return Err(bad(400, "malformed", "more bytes than Content-Length"));
    }
    req.body = body;
    Ok(req)
}

/// The reason phrase of a status this server sends.
pub fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// The bytes of an answer: status line, headers, body.
pub fn encode(r: &Response) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        status_text(r.status),
        r.content_type,
        r.body.len()
    )
    .into_bytes();
    out.extend_from_slice(r.body.as_bytes());
    out
}

/// The soft descriptor limit of this process (`/proc/self/limits`), if it can be read.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

/// How many connections a listener may hold: `wanted`, but never so many that the HTTP
/// clients of `listeners` listeners together could take the descriptors kept in reserve.
pub fn connection_cap(wanted: usize, fd_limit: Option<usize>, listeners: usize) -> usize {
    match fd_limit {
        Some(limit) => wanted.min(limit.saturating_sub(FD_RESERVE) / listeners.max(1)).max(1),
        None => wanted,
    }
}

/// At most one line per [`LOG_EVERY`]; counts the ones it holds back.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Mutex<Option<Instant>>,
    held: AtomicU64,
}

impl LogLimiter {
    /// `Some(n)` when a line may be logged now (`n` lines were held back since the last one).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.held.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.held.swap(0, Ordering::Relaxed))
            }
        }
    }
}

/// Counters a listener keeps (shown in `/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections being served now.
    pub open: AtomicU64,
    /// Connections closed at once because the listener was at its cap.
    pub refused: AtomicU64,
}

/// A connection's place: its semaphore permit and its count in [`Counters::open`], both given
/// back when the connection's task ends, however it ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn held(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last such line)")
    }
}

/// Listens on `listen` and answers each request with `handler`. `name` prefixes log lines.
/// Returns the bound address, or `None` (logged) if it cannot listen: handoffd runs on without
/// this listener.
pub async fn serve<F, Fut>(
    name: &'static str,
    listen: &str,
    limits: Limits,
    counters: Arc<Counters>,
    handler: F,
) -> Option<SocketAddr>
where
    F: Fn(Request, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            error!("{name}: cannot listen on {listen}: {e}; running without it ({name}.listen in handoffd.yaml)");
            return None;
        }
    };
    let local = listener.local_addr().ok()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    info!("{name}: listening on http://{local}/ (at most {} connections at once)", limits.max_connections);
    let handler = Arc::new(handler);
    let over_cap = Arc::new(LogLimiter::default());
    let refusals = Arc::new(LogLimiter::default());
    let accept_errors = LogLimiter::default();
    tokio::spawn(async move {
        loop {
            let (mut conn, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning on the error.
                    if let Some(n) = accept_errors.allow(Instant::now()) {
                        warn!("{name}: accept failed: {e}{}", held(n));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                drop(conn);
                if let Some(n) = over_cap.allow(Instant::now()) {
                    warn!(
                        "{name}: {} connections open, the most it serves; closing new ones at once{}",
                        limits.max_connections,
                        held(n)
                    );
                }
                continue;
            };
            let (handler, refusals) = (handler.clone(), refusals.clone());
            counters.open.fetch_add(1, Ordering::Relaxed);
            let slot = Slot { _permit: permit, counters: counters.clone() };
            tokio::spawn(async move {
                let response =
                    match tokio::time::timeout(limits.read_timeout, read_request(&mut conn, limits.max_body)).await {
                        Err(_) => Some(bad(
                            408,
                            "timeout",
                            format!("request not received within {} s", limits.read_timeout.as_secs()),
                        )),
                        Ok(Err(b)) => Some(b),
                        Ok(Ok(req)) => {
                            let r = handler(req, peer).await;
                            let _ = tokio::time::timeout(WRITE_TIMEOUT, conn.write_all(&encode(&r))).await;
                            None
                        }
                    };
                if let Some(b) = response {
                    if let Some(n) = refusals.allow(Instant::now()) {
                        warn!("{name}: {peer}: refused a request: {}{}", b.reason, held(n));
                    }
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, conn.write_all(&encode(&b.response()))).await;
                }
                drop(slot);
            });
        }
    });
    Some(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_say_what_is_wrong() {
        let (r, len) =
            parse_head(b"POST /v1/moves?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nAuthorization: Bearer t")
                .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str(), len), ("POST", "/v1/moves", "x=1", 12));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t"));
        for (head, why) in [
            (&b"GARBAGE"[..], "request line"),
            (b"GET / SPDY/3", "unsupported protocol"),
            (b"GET / HTTP/1.1\r\nNoColon", "without a colon"),
            (b"GET / HTTP/1.1\r\nContent-Length: lots", "not a number"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", "chunked"),
            (b"\xff\xfe", "UTF-8"),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50", "more than one Content-Length"),
            (b"POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 5", "more than one Content-Length"),
            (b"DELETE /v1/admin/devices/a\x1b[2J HTTP/1.1", "control character U+001B"),
            (b"GET / HTTP/1.1\r\nAuthorization: Bearer x\x07", "header \"Authorization\""),
        ] {
            let e = parse_head(head).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.reason.contains(why), "{:?}: {}", String::from_utf8_lossy(head), e.reason);
        }
    }

    #[test]
    fn every_status_sent_has_its_own_reason_phrase() {
        for (status, text) in
            [(408, "Request Timeout"), (413, "Payload Too Large"), (431, "Request Header Fields Too Large")]
        {
            assert_eq!(status_text(status), text);
        }
        let r = encode(&bad(408, "timeout", "slow").response());
        assert!(r.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{}", String::from_utf8_lossy(&r));
    }

    #[test]
    fn the_cap_keeps_descriptors_in_reserve() {
        assert_eq!(connection_cap(512, Some(20_000), 2), 512);
        assert_eq!(connection_cap(512, Some(1024), 2), (1024 - FD_RESERVE) / 2);
        assert_eq!(connection_cap(512, Some(100), 2), 1);
        assert_eq!(connection_cap(512, None, 2), 512);
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn the_log_limiter_lets_one_line_through_per_period_and_counts_the_rest() {
        let l = LogLimiter::default();
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        for i in 1..1000 {
            assert_eq!(l.allow(t + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow(t + LOG_EVERY), Some(999));
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once_and_slow_ones_time_out() {
        let counters = Arc::new(Counters::default());
        let limits = Limits { max_connections: 4, read_timeout: Duration::from_millis(300), max_body: 64 };
        let addr = serve("test", "127.0.0.1:0", limits, counters.clone(), |req, _| async move {
            Response::json(200, &json!({ "path": req.path }))
        })
        .await
        .unwrap();
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(counters.open.load(Ordering::Relaxed), 4);
        // The fifth is closed without an answer, at once.
        let mut fifth = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(1), fifth.read_to_end(&mut got)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?} {got:?}");
        assert_eq!(counters.refused.load(Ordering::Relaxed), 1);
        // The idle ones get 408 once their time is up, and free their slots.
        let mut got = Vec::new();
        idle[0].read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{}", String::from_utf8_lossy(&got));
        drop(idle);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n") && got.ends_with(br#"{"path":"/x"}"#));
        assert_eq!(counters.open.load(Ordering::Relaxed), 0);
    }
}
