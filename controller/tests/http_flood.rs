//! handoffd's HTTP listeners under abuse, against the real `handoffd` process (loopback only,
//! ports picked free, a scratch store): a bounded flood of idle connections, forged audit
//! input, duplicate `Content-Length`.
//!
//! The daemon runs with `ulimit -n 1024` so that the flood (3000 connections) would exhaust its
//! descriptors without a cap; a local stand-in for the PBX's AMI port accepts and drops the
//! daemon's link, so that its reconnects show whether descriptors are left for the PBX link.

// Clock, tokio and sockets are allowed here: a test that drives real processes and sockets (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod daemon_support;

use daemon_support::{exchange, metric, request, Daemon, FD_LIMIT};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FLOOD: usize = 3000;

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
