//! A real `handoffd` process for tests that attack it from outside: loopback only, ports picked
//! free, a scratch store and config, a descriptor limit (`ulimit -n 1024`), its log in a file;
//! RSS and descriptors read from /proc; raw HTTP requests to its listeners.

// Clock, tokio and sockets are allowed here: a test that drives real processes and sockets (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FD_LIMIT: usize = 1024;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("test harness").local_addr().expect("test harness").port()
}

pub struct Daemon {
    pub child: Child,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub token: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(ami_port: u16) -> Self {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    /// A size field of /proc/PID/status (`VmRSS:`, `VmHWM:` the peak RSS), in kB.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("test harness");
        let line = status.lines().find(|l| l.starts_with(field)).expect("test harness");
        line.split_whitespace().nth(1).expect("test harness").parse().expect("test harness")
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("test harness").count()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends raw bytes, returns the whole answer ("" if the connection was closed without one).
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).expect("test harness");
    c.set_read_timeout(Some(Duration::from_secs(10))).expect("test harness");
    let _ = c.write_all(raw);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
    )
}

/// A value from `GET /metrics` (`None` if it is not there or the listener did not answer).
pub fn metric(d: &Daemon, name: &str) -> Option<u64> {
    let text = request(d.metrics, "GET", "/metrics", None, "");
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}
