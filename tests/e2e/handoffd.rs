//! The real `handoffd` binary, run with a generated config; its log is collected line by line.

use crate::{target_dir, wait_for};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The testbed's AMI account (conf/manager_handoff.conf.sample).
pub const AMI_SECRET: &str = "change-me-handoffd-secret";

/// A config for the testbed; `extra` replaces keys of the ami section (`port`, `secret`, ...).
pub fn testbed_config(port: u16, secret: &str) -> String {
    format!(
        "ami:\n  host: 127.0.0.1\n  port: {port}\n  username: handoffd\n  secret: \"{secret}\"\n  reconnect_initial_ms: 200\n  reconnect_max_ms: 1000\n\
far:\n  endpoint: far\n  answer_timeout_s: 20\nconference:\n  name_prefix: handoff-\nlog:\n  level: debug\n\
sessions:\n  grace_s: 5\n  leg_dead_after_s: 4\n  pair_window_s: 2\n\
devices:\n  - id: alice-phone\n    user: alice\n    endpoint: alice-app\n    number: \"+15550001\"\n  - id: bob-phone\n    user: bob\n    endpoint: bob-app\n"
    )
}

/// The directory of this test process's store, pepper and admin token: every handoffd a
/// test process starts shares it (a restarted handoffd finds its predecessor's store).
pub fn state_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-test-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make the test state directory");
    dir
}

/// `config` with the store, pepper and admin token in [`state_dir`] unless it says otherwise.
pub fn with_state(config: &str) -> String {
    if config.contains("\nstore:") || config.starts_with("store:") {
        return config.to_string();
    }
    let dir = state_dir();
    let d = dir.display();
    let api =
        if config.contains("\napi:") { String::new() } else { format!("api:\n  admin_token_file: {d}/admin-token\n") };
    format!("{config}\nstore:\n  path: {d}/store\n  pepper_file: {d}/pepper\n{api}")
}

/// An HTTP request to handoffd's API at 127.0.0.1:9188: (status, JSON body).
pub fn api(method: &str, path: &str, body: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect("127.0.0.1:9188").expect("connect to handoffd's API");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).expect("send");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(payload).unwrap_or(serde_json::Value::Null))
}

/// The admin token handoffd made in [`state_dir`].
pub fn admin_token() -> String {
    std::fs::read_to_string(state_dir().join("admin-token")).expect("admin token").trim().to_string()
}

pub struct Handoffd {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    config: Option<PathBuf>,
}

impl Handoffd {
    /// Starts handoffd with `config` (YAML text).
    pub fn spawn(config: &str) -> Self {
        Self::spawn_with_args(config, &[])
    }

    pub fn spawn_with_args(config: &str, args: &[&str]) -> Self {
        let bin = target_dir().join("release/handoffd");
        assert!(
            bin.exists(),
            "{} is missing: build it with cargo build --release -p handoff (tests/run does)",
            bin.display()
        );
        let path = std::env::temp_dir().join(format!("handoffd-test-{}-{}.yaml", std::process::id(), rand_suffix()));
        std::fs::write(&path, with_state(config)).expect("write handoffd config");
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&path).args(args).env("RUST_LOG", "handoff=debug,handoffd=debug");
        let mut h = Self::from_command(cmd);
        h.config = Some(path);
        h
    }

    /// Runs handoffd as `cmd` says (e.g. the packaged binary inside the testbed root).
    pub fn from_command(mut cmd: Command) -> Self {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start handoffd");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("HANDOFF_TEST_ECHO").is_some() {
                        eprintln!("handoffd| {line}");
                    }
                    l.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Self { child, lines, config: None }
    }

    /// Starts handoffd with the testbed config and waits until it is logged in and the module
    /// has seen its hello (panics with its log otherwise).
    pub fn connected(ast: &crate::testbed::Asterisk) -> Self {
        Self::connected_with(ast, "")
    }

    /// [`Handoffd::connected`] with more YAML appended to the testbed config (new sections).
    pub fn connected_with(ast: &crate::testbed::Asterisk, extra_yaml: &str) -> Self {
        Self::connected_with_config(ast, &format!("{}{extra_yaml}", testbed_config(5038, AMI_SECRET)))
    }

    /// [`Handoffd::connected`] with `config` instead of the testbed config.
    pub fn connected_with_config(ast: &crate::testbed::Asterisk, config: &str) -> Self {
        let h = Self::spawn(config);
        assert!(
            h.wait_log("logged in to AMI", Duration::from_secs(10)).is_some(),
            "handoffd did not log in: {:#?}",
            h.log()
        );
        let connected = wait_for(Duration::from_secs(10), || {
            ast.cli("handoff show status").contains("Controller:          connected").then_some(())
        });
        assert!(connected.is_some(), "res_handoff never saw handoffd's hello:\n{}", ast.cli("handoff show status"));
        h
    }

    /// `GET /metrics` from handoffd's Prometheus endpoint (the testbed config's default address).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect("127.0.0.1:9187").expect("connect to the metrics endpoint");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        text
    }

    /// After a scenario, nothing may be left: no channel or ConfBridge in Asterisk, no leg
    /// waiting in or watched by `res_handoff.so`, no session open in handoffd
    /// (`handoff_sessions 0`), and no session record in its store that is not ended or still
    /// names legs.
    pub fn assert_nothing_left(&self, ast: &crate::testbed::Asterisk, ami: &crate::ami::AmiClient) {
        let limit = Duration::from_secs(10);
        assert!(
            wait_for(limit, || ami.channels().is_empty().then_some(())).is_some(),
            "channels left: {:#?}",
            ami.channels()
        );
        assert!(ami.conferences().is_empty(), "conferences left: {:#?}", ami.conferences());
        let idle = |s: &String| s.contains("Waiting in Handoff(): 0") && s.contains("Watched legs:        0");
        let status = wait_for(limit, || Some(ast.cli("handoff show status")).filter(idle));
        assert!(status.is_some(), "the module still holds legs:\n{}", ast.cli("handoff show status"));
        let closed = wait_for(limit, || self.metrics().contains("\nhandoff_sessions 0\n").then_some(()));
        assert!(closed.is_some(), "handoffd still holds a session: {:#?}", self.log());
        let (status, stored) = api("GET", "/v1/admin/sessions", "", Some(&admin_token()));
        assert_eq!(status, 200, "{stored}");
        let open: Vec<&serde_json::Value> = stored
            .as_array()
            .expect("a list of sessions")
            .iter()
            .filter(|s| s["state"] != "ended" || s["legs"].as_array().is_some_and(|l| !l.is_empty()))
            .collect();
        assert!(open.is_empty(), "store records of sessions not closed: {open:#?}");
    }

    /// Runs the real `handoffctl` against this handoffd: (exit code, stdout + stderr).
    pub fn ctl(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let bin = target_dir().join("release/handoffctl");
        let config = self.config.as_ref().expect("handoffd started from a config file");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start handoffctl");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("handoffctl output");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Everything handoffd logged so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        wait_for(limit, || self.log().into_iter().find(|l| l.contains(needle)))
    }

    /// Waits for handoffd to exit by itself; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_for(limit, || self.child.try_wait().ok().flatten()).map(|s| s.code().unwrap_or(-1))
    }

    /// The handoffd process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to handoffd, as `kill -SIGNAL` would.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} {} failed", self.pid());
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0)
}

impl Drop for Handoffd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
    }
}
