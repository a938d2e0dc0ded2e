//! handoffd's HTTP listeners under abuse, against the real `handoffd` process (loopback only,
//! ports picked free, a scratch store): a bounded flood of idle connections, forged audit
//! input, duplicate `Content-Length`.
//!
//! The daemon runs with `ulimit -n 1024` so that the flood (3000 connections) would exhaust its
//! descriptors without a cap; a local stand-in for the PBX's AMI port accepts and drops the
//! daemon's link, so that its reconnects show whether descriptors are left for the PBX link.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOOD: usize = 3000;
const FD_LIMIT: usize = 1024;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("test harness").local_addr().expect("test harness").port()
}

struct Daemon {
    child: Child,
    api: SocketAddr,
    metrics: SocketAddr,
    token: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(ami_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("test harness");
        let (api, metrics) = (free_port(), free_port());
        let d = dir.path().display();
        let config = format!(
            "ami:\n  port: {ami_port}\n  username: h\n  secret: s\n  reconnect_initial_ms: 100\n  reconnect_max_ms: 200\n\
             metrics:\n  listen: 127.0.0.1:{metrics}\n\
             store:\n  path: {d}/store\n  pepper_file: {d}/pepper\n\
             api:\n  listen: 127.0.0.1:{api}\n  admin_token_file: {d}/admin-token\n  requests_per_minute: 100000\n\
             log:\n  level: info\n"
        );
        let cfg = dir.path().join("handoffd.yaml");
        std::fs::write(&cfg, config).expect("test harness");
        let log = dir.path().join("handoffd.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" --config \"$1\" 2>\"$2\""))
            .arg(env!("CARGO_BIN_EXE_handoffd"))
            .arg(&cfg)
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("test harness");
        let api: SocketAddr = format!("127.0.0.1:{api}").parse().expect("test harness");
        let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().expect("test harness");
        let start = Instant::now();
        let token = loop {
            let up = TcpStream::connect(api).is_ok() && TcpStream::connect(metrics).is_ok();
            match std::fs::read_to_string(dir.path().join("admin-token")) {
                Ok(t) if up && !t.is_empty() => break t.trim().to_string(),
                _ if start.elapsed() > Duration::from_secs(20) => {
                    panic!("handoffd did not come up: {}", std::fs::read_to_string(&log).unwrap_or_default())
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        Daemon { child, api, metrics, token, log, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("test harness");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("test harness");
        line.split_whitespace().nth(1).expect("test harness").parse().expect("test harness")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("test harness").count()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends raw bytes, returns the whole answer ("" if the connection was closed without one).
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).expect("test harness");
    c.set_read_timeout(Some(Duration::from_secs(10))).expect("test harness");
    let _ = c.write_all(raw);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
    )
}

/// A value from `GET /metrics` (`None` if it is not there or the listener did not answer).
fn metric(d: &Daemon, name: &str) -> Option<u64> {
    let text = request(d.metrics, "GET", "/metrics", None, "");
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// A stand-in for the AMI port: counts the daemon's connects and drops each at once.
fn ami_stand_in() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("test harness");
    let port = l.local_addr().expect("test harness").port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if conn.is_ok() {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (port, count)
}

#[test]
fn control_characters_never_reach_the_audit_log() {
    let (ami, _) = ami_stand_in();
    let d = Daemon::start(ami);
    let forged_user = "nobody\n     9  2026-12-02T10:00:00.000Z handoffd ticket_redeem granted user=alice";
    let forged_device = "phone\u{1b}]0;owned\u{7}\u{1b}[2J";
    for (user, device, field) in [(forged_user, "phone", "user"), ("nobody", forged_device, "device")] {
        let body = serde_json::json!({ "user": user, "device": device, "pin": "9999" }).to_string();
        let r = request(d.api, "POST", "/v1/moves", None, &body);
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        assert!(r.contains(&format!("field `{field}` contains the control character U+00")), "{r}");
    }
    // The same request without control characters is audited, so the check above is not vacuous.
    let body = serde_json::json!({ "user": "nobody", "device": "phone", "pin": "9999" }).to_string();
    assert!(request(d.api, "POST", "/v1/moves", None, &body).starts_with("HTTP/1.1 401 "));
    let audit = request(d.api, "GET", "/v1/admin/audit?tail=1000", Some(&d.token), "");
    assert!(audit.starts_with("HTTP/1.1 200 OK\r\n"), "{audit}");
    let json: serde_json::Value = serde_json::from_str(audit.split_once("\r\n\r\n").unwrap().1).unwrap();
    let lines: Vec<&str> = json.as_array().unwrap().iter().filter_map(|r| r["line"].as_str()).collect();
    assert!(lines.iter().any(|l| l.contains("user=nobody")), "{lines:?}");
    for l in &lines {
        assert!(!l.chars().any(char::is_control), "a record holds a control character: {l:?}");
        assert!(!l.contains("ticket_redeem"), "a forged record: {l:?}");
    }
    // A control character in the path (the admin DELETE names a device there) is refused too.
    let r = exchange(d.api, b"DELETE /v1/admin/devices/a\x1b[2J HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 ") && r.contains("control character U+001B"), "{r}");
}

#[test]
fn duplicate_content_length_and_slow_requests_are_refused_with_the_right_status() {
    let (ami, _) = ami_stand_in();
    let d = Daemon::start(ami);
    let r = exchange(d.api, b"POST /v1/moves HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}");
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n") && r.contains("more than one Content-Length"), "{r}");
    let body = r#"{"user":"a","user":"b","device":"c","pin":"1"}"#;
    let r = request(d.api, "POST", "/v1/moves", None, body);
    assert!(r.starts_with("HTTP/1.1 400 ") && r.contains("duplicate key `user`"), "{r}");
    let mut slow = TcpStream::connect(d.api).unwrap();
    slow.write_all(b"POST /v1/moves HTTP/1.1\r\n").unwrap();
    let mut out = String::new();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = slow.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
}

#[test]
fn a_flood_of_idle_connections_is_capped_and_leaves_the_pbx_link_its_descriptors() {
    let (ami, ami_connects) = ami_stand_in();
    let d = Daemon::start(ami);
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, fds0) = (d.rss_kb(), d.fds());
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        if let Ok(c) = TcpStream::connect(d.api) {
            flood.push(c);
        }
    }
    let flood_len = flood.len();
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, fds1) = (d.rss_kb(), d.fds());
    // While the flood holds its connections, the PBX link still reconnects (each connect needs
    // a descriptor) and the metrics listener still answers.
    let before = ami_connects.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let reconnects = ami_connects.load(Ordering::Relaxed) - before;
    let refused = metric(&d, "handoff_http_connections_refused_total{listener=\"api\"}");
    let open = metric(&d, "handoff_http_connections{listener=\"api\"}");
    let (rss2, fds2) = (d.rss_kb(), d.fds());
    drop(flood);
    // Every connection is released within the read deadline (5 s).
    std::thread::sleep(Duration::from_secs(6));
    let (rss3, fds3) = (d.rss_kb(), d.fds());
    let after = request(d.api, "GET", "/v1/admin/users", Some(&d.token), "");
    let warns = d.log_text().lines().filter(|l| l.contains("WARN") && l.contains("api:")).count();
    eprintln!(
        "flood of {flood_len}: fds {fds0} -> {fds1} -> {fds2} -> {fds3}; RSS kB {rss0} -> {rss1} -> {rss2} -> {rss3}; \
         open {open:?}, refused {refused:?}, AMI reconnects in 1.5 s {reconnects}, api WARN lines {warns}"
    );
    let cap = (FD_LIMIT - 128) / 2;
    assert!(fds1.max(fds2) <= fds0 + cap + 8, "descriptors {fds0} -> {fds1}/{fds2}");
    assert!(fds1.max(fds2) < FD_LIMIT - 64, "descriptors {fds1}/{fds2} near the limit {FD_LIMIT}");
    assert!(reconnects >= 2, "the PBX link could not reconnect during the flood ({reconnects} connects)");
    let (open, refused) = (open.expect("the metrics listener answers"), refused.expect("refusals are counted"));
    assert!(open as usize <= cap, "{open} open connections, cap {cap}");
    assert!(refused >= 500, "{refused} of {} refused", flood_len);
    assert!(rss1.max(rss2) <= 64 * 1024, "RSS {rss1}/{rss2} kB");
    assert!(rss3 <= rss0 + 8 * 1024, "RSS {rss0} -> {rss3} kB after the flood");
    assert!(fds3 <= fds0 + 2, "descriptors {fds0} -> {fds3} after the flood");
    assert!(after.starts_with("HTTP/1.1 200 OK\r\n"), "the API does not answer after the flood: {after}");
    assert!(warns <= 10, "{warns} WARN lines from the api listener:\n{}", d.log_text());
}
