//! handoffd's HTTP API (loopback by default, `api.listen`): moves for the users' apps and
//! administration for `handoffctl`. HTTP/1.1, one request per connection, JSON bodies.
//!
//! | method | path                          | who            | what |
//! |--------|-------------------------------|----------------|------|
//! | POST   | `/v1/moves`                   | device B's app | `{"user","device","pin"[,"session"]}` → 201 `{"ticket","expires","session","from_device"}` |
//! | GET    | `/v1/admin/users`, `/devices`, `/sessions`, `/tickets`, `/moves`, `/audit?tail=N` | handoffctl | lists |
//! | POST   | `/v1/admin/users`             | handoffctl     | `{"name"}` |
//! | POST   | `/v1/admin/devices`           | handoffctl     | `{"id","user"[,"name","endpoint","number"]}` |
//! | DELETE | `/v1/admin/devices/<id>`      | handoffctl     | |
//! | POST   | `/v1/admin/credentials`       | handoffctl     | `{"user","pin"}` |
//! | POST   | `/v1/admin/unlock`            | handoffctl     | `{"user"}` |
//!
//! Admin requests carry `Authorization: Bearer <api.admin_token_file>`, compared in constant
//! time. Refusals are JSON `{"error":"<code>","reason":"<one line>"}`: 400 malformed, 401
//! wrong PIN or admin token, 403 refused move, 404, 405, 413 body over `api.max_body_bytes`,
//! 429 too many requests from one address or user locked out. Bodies and PINs are never
//! logged.

use crate::credentials::Passcode;
use crate::moves::Reason;
use crate::service::{MoveService, Refusal};
use crate::store::{AuditAction, AuditRecord, Device, Outcome, UnixMs};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

/// Largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API tells the daemon's link loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Devices were added or removed: reload the registry.
    DevicesChanged,
}

/// Everything a request handler needs.
pub struct Api {
    pub service: MoveService,
    /// `None` when the admin token file is missing: admin endpoints answer 401.
    pub admin_token: Option<Zeroizing<String>>,
    pub max_body: usize,
    pub per_minute: u32,
    pub notify: tokio::sync::mpsc::UnboundedSender<Notice>,
    pub metrics: Arc<crate::metrics::Metrics>,
    rate: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// A response: status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

fn reply(status: u16, body: serde_json::Value) -> Reply {
    Reply { status, body }
}

fn error(status: u16, code: &str, reason: impl std::fmt::Display) -> Reply {
    reply(status, json!({ "error": code, "reason": reason.to_string() }))
}

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
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

/// Parses a request head (everything before the blank line). Sans-I/O, for tests and fuzzing.
pub fn parse_head(head: &[u8]) -> Result<(Request, usize), BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| bad(400, "malformed", "request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "malformed", "request line is not METHOD PATH HTTP/1.x"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(400, "malformed", format!("unsupported protocol {version:?}")));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: None,
        body: Vec::new(),
    };
    let mut length = 0usize;
    for h in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = h.split_once(':') else {
            return Err(bad(400, "malformed", "header line without a colon"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad(400, "malformed", "Content-Length is not a number"))?;
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(400, "malformed", "chunked bodies are not accepted; send Content-Length"));
        }
    }
    Ok((req, length))
}

async fn read_request(conn: &mut TcpStream, max_body: usize) -> Result<Request, BadRequest> {
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

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

async fn write_reply(conn: &mut TcpStream, r: &Reply) {
    let body = r.body.to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        status_text(r.status),
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
}

/// Starts serving on `listen`; a bind failure is logged and handoffd runs on without the API.
pub async fn serve(listen: String, api: Arc<Api>) {
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            error!("api: cannot listen on {listen}: {e}; running without the HTTP API (api.listen in handoffd.yaml)");
            return;
        }
    };
    info!("HTTP API on http://{listen}/v1/");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, peer)) = listener.accept().await else { continue };
            let api = api.clone();
            tokio::spawn(async move {
                let r = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut conn, api.max_body)).await {
                    Err(_) => error(408, "timeout", "request not received within 5 s"),
                    Ok(Err(b)) => {
                        warn!("api: {peer}: refused a request: {}", b.reason);
                        error(b.status, b.code, b.reason)
                    }
                    Ok(Ok(req)) => {
                        if api.limited(peer.ip()) {
                            warn!("api: {peer}: over {} requests per minute", api.per_minute);
                            error(429, "rate_limited", format!("over {} requests per minute", api.per_minute))
                        } else {
                            let r = api.handle(&req, &peer.ip().to_string()).await;
                            info!("api: {peer} {} {} -> {}", req.method, req.path, r.status);
                            r
                        }
                    }
                };
                write_reply(&mut conn, &r).await;
            });
        }
    });
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    user: String,
    device: String,
    pin: Zeroizing<String>,
    #[serde(default)]
    session: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    id: String,
    user: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    number: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBody {
    user: String,
    pin: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    user: String,
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, Reply> {
    use serde_json::error::Category;
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's own message may quote the value (a PIN): keep only what names a field.
        let text = e.to_string();
        let kind = match e.classify() {
            Category::Data if text.starts_with("unknown field") || text.starts_with("missing field") => {
                text.split(" at line").next().unwrap_or("bad field").to_string()
            }
            Category::Data => "a field has the wrong type (strings expected)".into(),
            Category::Syntax => "not valid JSON".into(),
            Category::Eof => "ends before the JSON does".into(),
            Category::Io => "cannot be read".into(),
        };
        error(400, "malformed", format!("{what} body: {kind} at line {} column {}", e.line(), e.column()))
    })
}

fn refusal_reply(r: &Refusal) -> Reply {
    let status = match r {
        Refusal::Refused(Reason::WrongCredential) => 401,
        Refusal::Refused(Reason::LockedOut { .. }) | Refusal::Busy => 429,
        Refusal::Refused(_) => 403,
        Refusal::Internal(_) => 500,
    };
    error(status, r.code(), r)
}

fn store_error(e: impl std::fmt::Display) -> Reply {
    let text = e.to_string();
    let status = if text.contains("already") {
        409
    } else if text.contains("no user") {
        404
    } else {
        400
    };
    error(status, "store", text)
}

impl Api {
    pub fn new(
        service: MoveService,
        admin_token: Option<Zeroizing<String>>,
        cfg: &crate::config::ApiConfig,
        notify: tokio::sync::mpsc::UnboundedSender<Notice>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            service,
            admin_token,
            max_body: cfg.max_body_bytes,
            per_minute: cfg.requests_per_minute,
            notify,
            metrics,
            rate: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `ip`; true when it is over the per-minute limit.
    fn limited(&self, ip: IpAddr) -> bool {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        rate.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let (_, n) = rate.entry(ip).or_insert((now, 0));
        *n += 1;
        *n > self.per_minute
    }

    fn admin_ok(&self, req: &Request) -> bool {
        use subtle::ConstantTimeEq;
        let (Some(token), Some(auth)) = (&self.admin_token, &req.authorization) else { return false };
        let Some(given) = auth.strip_prefix("Bearer ") else { return false };
        let (a, b) = (given.trim().as_bytes(), token.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Request, peer: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/moves") => self.post_move(req, peer).await,
            (_, "/v1/moves") => error(405, "method", "use POST /v1/moves"),
            (_, p) if p.starts_with("/v1/admin/") => {
                if !self.admin_ok(req) {
                    let audit =
                        AuditRecord::new(UnixMs::now(), format!("api:{peer}"), AuditAction::Unlock, Outcome::Refused)
                            .reason(format_args!(
                                "admin request {} {} without a valid admin token",
                                req.method, req.path
                            ));
                    let store = self.service.store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.audit(&audit)).await;
                    return error(
                        401,
                        "admin_token",
                        "admin requests need Authorization: Bearer <api.admin_token_file>",
                    );
                }
                self.admin(req).await
            }
            _ => error(404, "not_found", format!("no endpoint {}", req.path)),
        }
    }

    async fn post_move(&self, req: &Request, peer: &str) -> Reply {
        let body: MoveBody = match parse_body(&req.body, "move request") {
            Ok(b) => b,
            Err(r) => return r,
        };
        let actor = format!("api:{peer}:device:{}", body.device);
        let m = &self.metrics;
        let out = self
            .service
            .request(&actor, &body.user, &body.device, body.session.as_deref(), Passcode::presented(&body.pin))
            .await;
        match out {
            Ok(issued) => {
                m.count(&m.moves_granted);
                reply(
                    201,
                    json!({
                        "ticket": issued.granted.ticket.expose().as_str(),
                        "expires": issued.granted.expires.to_string(),
                        "session": issued.session,
                        "from_device": issued.from_device,
                        "restore": "call extension 'move' with the SIP header X-Handoff-Ticket: <ticket>",
                    }),
                )
            }
            Err(r) => {
                m.count(&m.moves_refused);
                refusal_reply(&r)
            }
        }
    }

    async fn admin(&self, req: &Request) -> Reply {
        let store = self.service.store.clone();
        let method = req.method.clone();
        let path = req.path.trim_start_matches("/v1/admin/").to_string();
        let query = req.query.clone();
        let body = req.body.clone();
        let hasher_service = self.service.clone();
        let r = tokio::task::spawn_blocking(move || -> Reply {
            let now = UnixMs::now();
            let audit = |action, what: String| {
                let rec = AuditRecord::new(now, "handoffctl", action, Outcome::Done).reason(what);
                store.audit(&rec).map(drop)
            };
            let list = |v: Result<serde_json::Value, crate::store::StoreError>| match v {
                Ok(v) => reply(200, v),
                Err(e) => store_error(e),
            };
            let to_json = |v: Result<Vec<_>, _>| v.map(|v: Vec<serde_json::Value>| serde_json::Value::Array(v));
            match (method.as_str(), path.as_str()) {
                ("GET", "users") => list(store.list_users().map(|v| json!(v))),
                ("GET", "devices") => list(store.list_devices().map(|v| json!(v))),
                ("GET", "sessions") => list(store.list_sessions().map(|v| json!(v))),
                ("GET", "tickets") => list(store.list_tickets().map(|v| {
                    // Only the short id: the hash is not the ticket, but there is no need for it.
                    json!(v
                        .iter()
                        .map(|t| json!({
                            "ticket": t.hash.short_id(), "user": t.user, "session": t.session,
                            "from_device": t.from_device, "to_device": t.to_device,
                            "issued": t.issued.to_string(), "expires": t.expires.to_string(),
                            "presented": t.presented.map(|p| p.to_string()),
                        }))
                        .collect::<Vec<_>>())
                })),
                ("GET", "audit") | ("GET", "moves") => {
                    let tail = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("tail="))
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(100)
                        .min(100_000);
                    let moves_only = path == "moves";
                    let records = store.audit_tail(if moves_only { 100_000 } else { tail }).map(|v| {
                        let mut v: Vec<_> = v.into_iter().filter(|(_, r)| !moves_only || r.action.is_move()).collect();
                        let skip = v.len().saturating_sub(tail);
                        v.drain(..skip);
                        v.into_iter()
                            .map(|(seq, r)| json!({ "seq": seq, "line": r.to_string(), "record": r }))
                            .collect()
                    });
                    list(to_json(records))
                }
                ("POST", "users") => {
                    let b: UserBody = match parse_body(&body, "user") {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    match store.add_user(&b.name, now) {
                        Ok(u) => {
                            let _ = audit(AuditAction::UserAdd, format!("user {} added", u.name));
                            reply(201, json!(u))
                        }
                        Err(e) => store_error(e),
                    }
                }
                ("POST", "devices") => {
                    let b: DeviceBody = match parse_body(&body, "device") {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    let d = Device {
                        name: b.name.unwrap_or_else(|| b.id.clone()),
                        id: b.id,
                        user: b.user,
                        data_endpoint: b.endpoint,
                        carrier_number: b.number,
                    };
                    match store.add_device(&d) {
                        Ok(()) => {
                            let _ = audit(AuditAction::DeviceAdd, format!("device {} of {} added", d.id, d.user));
                            reply(201, json!(d))
                        }
                        Err(e) => store_error(e),
                    }
                }
                ("DELETE", p) if p.starts_with("devices/") => {
                    let id = &p["devices/".len()..];
                    match store.remove_device(id) {
                        Ok(Some(d)) => {
                            let _ = audit(AuditAction::DeviceRemove, format!("device {} of {} removed", d.id, d.user));
                            reply(200, json!(d))
                        }
                        Ok(None) => error(404, "not_found", format!("no device {id}")),
                        Err(e) => store_error(e),
                    }
                }
                ("POST", "credentials") => {
                    let b: CredentialBody = match parse_body(&body, "credential") {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    let code = match Passcode::parse(&b.pin) {
                        Ok(c) => c,
                        Err(e) => return error(400, "weak_pin", e),
                    };
                    let hash = match hasher_service.verifier.hasher().hash(&code) {
                        Ok(h) => h,
                        Err(e) => return error(500, "hash", e),
                    };
                    match store.set_credential(&b.user, &hash) {
                        Ok(()) => {
                            let _ = audit(AuditAction::CredentialSet, format!("PIN of {} set", b.user));
                            reply(200, json!({ "user": b.user }))
                        }
                        Err(e) => store_error(e),
                    }
                }
                ("POST", "unlock") => {
                    let b: UnlockBody = match parse_body(&body, "unlock") {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    match store.clear_failures(&b.user) {
                        Ok(had) => {
                            let _ = audit(AuditAction::Unlock, format!("failures of {} cleared", b.user));
                            reply(200, json!({ "user": b.user, "had_failures": had }))
                        }
                        Err(e) => store_error(e),
                    }
                }
                (_, p) => error(404, "not_found", format!("no admin endpoint {method} /v1/admin/{p}")),
            }
        })
        .await
        .unwrap_or_else(|e| error(500, "internal", e));
        if r.status == 201 || (r.status == 200 && req.method == "DELETE") {
            let _ = self.notify.send(Notice::DevicesChanged);
        }
        r
    }
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
        ] {
            let e = parse_head(head).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.reason.contains(why), "{:?}: {}", String::from_utf8_lossy(head), e.reason);
        }
    }

    #[test]
    fn refusals_map_to_statuses() {
        assert_eq!(refusal_reply(&Refusal::Refused(Reason::WrongCredential)).status, 401);
        assert_eq!(refusal_reply(&Refusal::Refused(Reason::LockedOut { until: UnixMs(1) })).status, 429);
        assert_eq!(refusal_reply(&Refusal::Refused(Reason::TicketReplayed)).status, 403);
        let r = refusal_reply(&Refusal::Refused(Reason::Barred {
            session: "s".into(),
            device: "a".into(),
            until: UnixMs(0),
        }));
        assert_eq!((r.status, r.body["error"].as_str()), (403, Some("barred")));
    }

    #[test]
    fn move_bodies_are_strict_and_errors_do_not_echo_the_pin() {
        let e = parse_body::<MoveBody>(br#"{"user":"a","device":"b","pin":"1234","evil":1}"#, "move request")
            .err()
            .unwrap();
        assert!(e.body["reason"].as_str().unwrap().contains("unknown field `evil`"), "{}", e.body);
        let e = parse_body::<MoveBody>(br#"{"user":"a","device":"b","pin":98765}"#, "move request").err().unwrap();
        assert!(!e.body.to_string().contains("98765"), "{}", e.body);
        assert!(parse_body::<MoveBody>(b"not json", "move request").is_err());
    }
}
