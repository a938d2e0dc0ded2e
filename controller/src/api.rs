//! handoffd's HTTP API (loopback by default, `api.listen`): moves for the users' apps and
//! administration for `handoffctl`. HTTP/1.1, one request per connection, JSON bodies, served by
//! [`crate::http`] (connection cap, time limits, strict heads).
//!
//! | method | path                          | who            | what |
//! |--------|-------------------------------|----------------|------|
//! | POST   | `/v1/moves`                   | device B's app | `{"user","device","pin"[,"session"]}` → 201 `{"ticket","expires","session","from_device"}` |
//! | GET    | `/v1/admin/users`, `/devices`, `/sessions`, `/tickets`, `/moves`, `/audit?tail=N` | handoffctl | lists |
//! | POST   | `/v1/admin/users`             | handoffctl     | `{"name"}` |
//! | POST   | `/v1/admin/devices`           | handoffctl     | `{"id","user"[,"name","endpoint","number"]}` |
//! | DELETE | `/v1/admin/devices/<id>`      | handoffctl     | |
//! | GET    | `/v1/admin/timeline/<session>` | handoffctl    | `{"session","text","timeline"}`: the stored timeline with its moves ([`crate::timeline`]); 404 if none |
//! | POST   | `/v1/admin/credentials`       | handoffctl     | `{"user","pin"}` |
//! | POST   | `/v1/admin/unlock`            | handoffctl     | `{"user"}` |
//! | GET    | `/status`                     | a browser      | the status page (HTML, [`crate::status`]) |
//! | GET    | `/status/sessions/<id>/timeline.svg` | a browser | a session's timeline picture |
//!
//! The status pages need the admin token only when `api.listen` is not a loopback address
//! (a browser on the host itself reads them as they are; through an SSH tunnel, say).
//!
//! Admin requests carry `Authorization: Bearer <api.admin_token_file>`, compared in constant
//! time. Refusals are JSON `{"error":"<code>","reason":"<one line>"}`: 400 malformed (bad
//! JSON, a duplicate key, a control character in a name, a duplicate `Content-Length`), 401
//! wrong PIN or admin token, 403 refused move, 404, 405, 413 body over `api.max_body_bytes`,
//! 408 request not sent within 5 s, 429 too many requests from one address or user locked
//! out, 431 head over 8 KiB. Bodies and PINs are never
//! logged.

// Clock, tokio and sockets are allowed here: the HTTP API: I/O layer (sockets, per-address rate clock) (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

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
use tracing::{info, warn};
use zeroize::Zeroizing;

/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the API serves at once (fewer if the descriptor limit is low, see
/// [`crate::http::connection_cap`]); past it, new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Client addresses the per-minute rate limit remembers; past it, requests from addresses it
/// does not know yet are answered 429 until the oldest entries are a minute old.
pub const MAX_RATE_ENTRIES: usize = 10_000;

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
    /// What the daemon tells the status page (the link, feeding legs, switches).
    pub board: Arc<Mutex<crate::status::Board>>,
    /// `api.listen` is not loopback: the status pages need the admin token too.
    pub status_needs_token: bool,
    rate: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    rate_log: crate::http::LogLimiter,
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

pub use crate::http::Request;

/// Starts serving on `listen` (through [`crate::http::serve`]); a bind failure is logged and
/// handoffd runs on without the API.
pub async fn serve(listen: String, api: Arc<Api>) {
    let limits = crate::http::Limits {
        max_connections: crate::http::connection_cap(MAX_CONNECTIONS, crate::http::open_files_limit(), 2),
        read_timeout: READ_TIMEOUT,
        max_body: api.max_body,
    };
    let counters = api.metrics.api_http.clone();
    crate::http::serve("api", &listen, limits, counters, move |req, peer| {
        let api = api.clone();
        async move {
            let r = if api.limited(peer.ip()) {
                if let Some(n) = api.rate_log.allow(Instant::now()) {
                    warn!(
                        "api: {peer}: over {} requests per minute ({n} more refused since the last such line)",
                        api.per_minute
                    );
                }
                error(429, "rate_limited", format!("over {} requests per minute", api.per_minute))
            } else if req.path == "/status" || req.path.starts_with("/status/") {
                let r = api.status(&req, &peer.ip().to_string()).await;
                info!("api: {peer} {} {} -> {}", req.method, req.path, r.status);
                return r;
            } else {
                let r = api.handle(&req, &peer.ip().to_string()).await;
                info!("api: {peer} {} {} -> {}", req.method, req.path, r.status);
                r
            };
            crate::http::Response::json(r.status, &r.body)
        }
    })
    .await;
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
            Category::Data if text.starts_with("duplicate field") => {
                text.split(" at line").next().unwrap_or("").replacen("duplicate field", "duplicate key", 1)
            }
            Category::Data => "a field has the wrong type (strings expected)".into(),
            Category::Syntax => "not valid JSON".into(),
            Category::Eof => "ends before the JSON does".into(),
            Category::Io => "cannot be read".into(),
        };
        error(400, "malformed", format!("{what} body: {kind} at line {} column {}", e.line(), e.column()))
    })
}

/// Refuses text fields with control characters (a newline or an escape would forge lines
/// and terminal output where the value is shown: the audit log, `handoffctl`).
fn printable(what: &str, fields: &[(&str, Option<&str>)]) -> Result<(), Reply> {
    for (name, value) in fields {
        if let Some(c) = value.and_then(|v| v.chars().find(|c| c.is_control())) {
            return Err(error(
                400,
                "malformed",
                format!("{what} body: field `{name}` contains the control character U+{:04X}", c as u32),
            ));
        }
    }
    Ok(())
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
            board: Arc::default(),
            status_needs_token: !crate::status::listen_is_loopback(&cfg.listen),
            rate: Mutex::new(HashMap::new()),
            rate_log: crate::http::LogLimiter::default(),
        }
    }

    /// Counts a request from `ip`; true when it is over the per-minute limit.
    fn limited(&self, ip: IpAddr) -> bool {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        rate.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        if rate.len() >= MAX_RATE_ENTRIES && !rate.contains_key(&ip) {
            return true;
        }
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

    /// Audits a request refused for want of the admin token (off the executor).
    async fn audit_no_token(&self, req: &Request, peer: &str) {
        let audit = AuditRecord::new(UnixMs::now(), format!("api:{peer}"), AuditAction::Unlock, Outcome::Refused)
            .reason(format_args!("admin request {} {} without a valid admin token", req.method, req.path));
        let store = self.service.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.audit(&audit)).await;
    }

    /// The status pages (`/status`, `/status/sessions/<id>/timeline.svg`): HTML, read-only.
    pub async fn status(&self, req: &Request, peer: &str) -> crate::http::Response {
        use crate::http::Response;
        let text = |status: u16, body: &str| Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        };
        if req.method != "GET" {
            return text(405, "the status pages are read-only: use GET");
        }
        if self.status_needs_token && !self.admin_ok(req) {
            self.audit_no_token(req, peer).await;
            return text(
                401,
                "api.listen is not loopback: the status pages need Authorization: Bearer <api.admin_token_file>",
            );
        }
        if req.path != "/status" {
            let Some(id) = crate::status::timeline_session(&req.path) else {
                return text(404, &format!("no status page {}", req.path));
            };
            // The session's picture, drawn from the store (a running session's lanes reach now).
            let store = self.service.store.clone();
            let read =
                tokio::task::spawn_blocking(move || store.timeline_at(&id, UnixMs::now()).map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
            return match read {
                Ok(Some(t)) => {
                    Response { status: 200, content_type: "image/svg+xml", body: crate::timeline::render(&t) }
                }
                Ok(None) => text(404, "no timeline for this session (unknown, or purged)"),
                Err(e) => text(503, &format!("the store could not be read: {e}")),
            };
        }
        let store = self.service.store.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            Ok((store.list_sessions()?, store.audit_tail(crate::status::AUDIT_TAIL)?))
        })
        .await;
        let (sessions, audit, store_error) = match read {
            Ok(Ok((s, a))) => (s, a, None),
            Ok(Err(e)) => (Vec::new(), Vec::new(), Some(e.to_string())),
            Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
        };
        let board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        let body = crate::status::render(&crate::status::Page {
            now: UnixMs::now(),
            version: env!("CARGO_PKG_VERSION"),
            board: &board,
            sessions: &sessions,
            audit: &audit,
            store_error,
        });
        Response { status: 200, content_type: "text/html; charset=utf-8", body }
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Request, peer: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/moves") => self.post_move(req, peer).await,
            (_, "/v1/moves") => error(405, "method", "use POST /v1/moves"),
            (_, p) if p.starts_with("/v1/admin/") => {
                if !self.admin_ok(req) {
                    self.audit_no_token(req, peer).await;
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
        let fields =
            [("user", Some(body.user.as_str())), ("device", Some(&body.device)), ("session", body.session.as_deref())];
        if let Err(r) = printable("move request", &fields) {
            return r;
        }
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
                    let param = |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(k)).map(str::to_string);
                    // --since (a duration or a UTC time) and --session narrow what is read.
                    let since = match param("since=").map(|t| UnixMs::parse_since(&query_value(&t), now)) {
                        Some(Err(e)) => return error(400, "bad_since", format!("since: {e}")),
                        Some(Ok(t)) => Some(t),
                        None => None,
                    };
                    let session = param("session=").map(|s| query_value(&s));
                    let filtered = moves_only || since.is_some() || session.is_some();
                    let keep = |r: &AuditRecord| {
                        (!moves_only || r.action.is_move())
                            && since.is_none_or(|t| r.at >= t)
                            && session.as_deref().is_none_or(|s| r.session.as_deref() == Some(s))
                    };
                    let records = store.audit_tail(if filtered { 100_000 } else { tail }).map(|v| {
                        let mut v: Vec<_> = v.into_iter().filter(|(_, r)| keep(r)).collect();
                        let skip = v.len().saturating_sub(tail);
                        v.drain(..skip);
                        v.into_iter()
                            .map(|(seq, r)| json!({ "seq": seq, "line": r.to_string(), "record": r }))
                            .collect()
                    });
                    list(to_json(records))
                }
                ("GET", p) if p.starts_with("timeline/") => {
                    let id = &p["timeline/".len()..];
                    match store.timeline_at(id, now) {
                        Ok(Some(t)) => {
                            reply(200, json!({ "session": id, "text": crate::timeline::text(&t), "timeline": t }))
                        }
                        Ok(None) => {
                            error(404, "not_found", format!("no timeline for session {id} (unknown, or purged)"))
                        }
                        Err(e) => store_error(e),
                    }
                }
                ("POST", "users") => {
                    let b: UserBody = match parse_body(&body, "user") {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    if let Err(r) = printable("user", &[("name", Some(&b.name))]) {
                        return r;
                    }
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
                    let fields = [
                        ("id", Some(b.id.as_str())),
                        ("user", Some(&b.user)),
                        ("name", b.name.as_deref()),
                        ("endpoint", b.endpoint.as_deref()),
                        ("number", b.number.as_deref()),
                    ];
                    if let Err(r) = printable("device", &fields) {
                        return r;
                    }
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
                    if let Err(r) = printable("credential", &[("user", Some(&b.user))]) {
                        return r;
                    }
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
                    if let Err(r) = printable("unlock", &[("user", Some(&b.user))]) {
                        return r;
                    }
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

/// A query value with its `%XX` sequences decoded (`+` stays: handoffctl encodes spaces as
/// `%20`); a value with a broken sequence is kept as it came.
fn query_value(s: &str) -> String {
    crate::markup::percent_decode(s).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e =
            parse_body::<MoveBody>(br#"{"user":"a","user":"b","device":"b","pin":"1"}"#, "move request").err().unwrap();
        let reason = e.body["reason"].as_str().unwrap();
        assert!(reason.starts_with("move request body: duplicate key `user` at line 1"), "{reason}");
    }

    #[test]
    fn control_characters_in_names_are_refused_naming_the_field() {
        let forged = "x\n2026-12-02T10:00:00Z handoffd ticket_redeem granted\x1b[2J";
        let r = printable("move request", &[("user", Some("alice")), ("device", Some(forged))]).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body["reason"].as_str(),
            Some("move request body: field `device` contains the control character U+000A")
        );
        let r = printable("device", &[("id", Some("a")), ("name", None), ("endpoint", Some("e\u{9b}"))]).unwrap_err();
        assert!(r.body["reason"].as_str().unwrap().contains("`endpoint` contains the control character U+009B"));
        assert!(printable("move request", &[("user", Some("Zoë Ünal")), ("session", None)]).is_ok());
    }
}
