//! `handoffctl`: administration of a running handoffd over its HTTP API (loopback), with the
//! admin token handoffd keeps in `api.admin_token_file`.
//!
//! ```text
//! handoffctl [--config PATH] COMMAND
//!   init                               make the pepper and the admin token if missing
//!   user add NAME | user list
//!   device add ID --user USER [--name TEXT] [--endpoint PJSIP-ENDPOINT] [--number +E164]
//!   device remove ID | device list
//!   pin set USER                       the PIN or passphrase is read from standard input
//!   unlock USER                        lift a lockout after wrong PINs
//!   sessions | tickets                 what the store holds now
//!   store migrate --to URL             copy the sled store (handoffd stopped) into an empty
//!                                      PostgreSQL database, then set store.backend: postgres
//!   moves [--tail N] | audit [--tail N] [--since 2h|2026-12-03T08:00:00Z] [--session ID]
//!   timeline SESSION [--svg FILE]      what happened to a call: text, or the picture as SVG
//! ```
//! Exit codes: 0 done, 1 refused by handoffd (the reason is printed), 64 usage, 69 handoffd
//! not reachable, 78 configuration.

// The controller is safe Rust: the compiler refuses any `unsafe` block (FFI lives in module/).
#![forbid(unsafe_code)]

use handoff::config::Config;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_CONFIG: &str = "/etc/handoff/handoffd.yaml";
const USAGE: &str = "usage: handoffctl [--config PATH] init | user add NAME | user list | device add ID --user USER [--name TEXT] [--endpoint EP] [--number +E164] | device remove ID | device list | pin set USER | unlock USER | sessions | tickets | moves [--tail N] | audit [--tail N] [--since DURATION|UTC-TIME] [--session ID] | timeline SESSION [--svg FILE] | store migrate --to postgres://USER:PASSWORD@HOST/DB";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    if let Some(i) = args.iter().position(|a| a == "--config" || a == "-c") {
        if i + 1 >= args.len() {
            return usage("--config needs a path");
        }
        config = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        println!("{USAGE}");
        return if args.is_empty() { ExitCode::from(64) } else { ExitCode::SUCCESS };
    }
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("handoffctl: {e}");
            return ExitCode::from(78);
        }
    };
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&cfg, &words) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => usage(&m),
        Err(Failure::Refused(m)) => {
            eprintln!("handoffctl: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("handoffctl: {m}");
            ExitCode::from(69)
        }
        Err(Failure::Config(m)) => {
            eprintln!("handoffctl: {m}");
            ExitCode::from(78)
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("handoffctl: {msg}\n{USAGE}");
    ExitCode::from(64)
}

enum Failure {
    Usage(String),
    Refused(String),
    Unreachable(String),
    Config(String),
}

/// The value after `--flag`, if given.
fn flag<'a>(words: &[&'a str], name: &str) -> Result<Option<&'a str>, Failure> {
    match words.iter().position(|w| *w == name) {
        None => Ok(None),
        Some(i) => words.get(i + 1).copied().map(Some).ok_or_else(|| Failure::Usage(format!("{name} needs a value"))),
    }
}

fn tail(words: &[&str]) -> Result<String, Failure> {
    match flag(words, "--tail")? {
        None => Ok(String::new()),
        Some(n) => n
            .parse::<usize>()
            .map(|n| format!("?tail={n}"))
            .map_err(|_| Failure::Usage(format!("--tail {n:?} is not a number"))),
    }
}

fn run(cfg: &Config, words: &[&str]) -> Result<(), Failure> {
    match words {
        ["init"] => init(cfg),
        ["store", "migrate", rest @ ..] => {
            let url = flag(rest, "--to")?.ok_or_else(|| Failure::Usage("store migrate needs --to URL".into()))?;
            migrate(cfg, url)
        }
        ["user", "add", name] => show(admin(cfg, "POST", "users", Some(json!({ "name": name })))?),
        ["user", "list"] => list(admin(cfg, "GET", "users", None)?, |u| {
            format!("{}  (since {})", u["name"].as_str().unwrap_or(""), u["created"])
        }),
        ["device", "add", id, rest @ ..] => {
            let user = flag(rest, "--user")?.ok_or_else(|| Failure::Usage("device add needs --user USER".into()))?;
            let body = json!({
                "id": id, "user": user,
                "name": flag(rest, "--name")?, "endpoint": flag(rest, "--endpoint")?, "number": flag(rest, "--number")?,
            });
            show(admin(cfg, "POST", "devices", Some(body))?)
        }
        ["device", "remove", id] => show(admin(cfg, "DELETE", &format!("devices/{id}"), None)?),
        ["device", "list"] => list(admin(cfg, "GET", "devices", None)?, |d| {
            format!(
                "{}  user {}  endpoint {}  number {}  ({})",
                d["id"].as_str().unwrap_or(""),
                d["user"].as_str().unwrap_or(""),
                d["data_endpoint"].as_str().unwrap_or("-"),
                d["carrier_number"].as_str().unwrap_or("-"),
                d["name"].as_str().unwrap_or("")
            )
        }),
        ["pin", "set", user] => {
            let mut pin = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut pin)
                .map_err(|e| Failure::Usage(format!("reading the PIN from standard input: {e}")))?;
            let pin = zeroize::Zeroizing::new(pin.trim_end_matches(['\r', '\n']).to_string());
            admin(cfg, "POST", "credentials", Some(json!({ "user": user, "pin": pin.as_str() })))?;
            println!("PIN of {user} set");
            Ok(())
        }
        ["unlock", user] => show(admin(cfg, "POST", "unlock", Some(json!({ "user": user })))?),
        ["sessions"] => list(admin(cfg, "GET", "sessions", None)?, |s| {
            format!(
                "{}  {}  user {}  device {}  far {}  legs {}  barred {}",
                s["id"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
                s["user"].as_str().unwrap_or(""),
                s["device"].as_str().unwrap_or(""),
                s["far_number"].as_str().unwrap_or(""),
                s["legs"].as_array().map_or(0, Vec::len),
                s["barred"]
            )
        }),
        ["tickets"] => list(admin(cfg, "GET", "tickets", None)?, |t| {
            format!(
                "{}  user {}  session {}  {} -> {}  expires {}  presented {}",
                t["ticket"].as_str().unwrap_or(""),
                t["user"].as_str().unwrap_or(""),
                t["session"].as_str().unwrap_or(""),
                t["from_device"].as_str().unwrap_or(""),
                t["to_device"].as_str().unwrap_or(""),
                t["expires"].as_str().unwrap_or(""),
                t["presented"].as_str().unwrap_or("no")
            )
        }),
        ["moves", rest @ ..] => list(admin(cfg, "GET", &format!("moves{}", tail(rest)?), None)?, audit_line),
        ["audit", rest @ ..] => list(admin(cfg, "GET", &format!("audit{}", audit_query(rest)?), None)?, audit_line),
        ["timeline", session, rest @ ..] => timeline(cfg, session, rest),
        _ => Err(Failure::Usage(format!("unknown command '{}'", words.join(" ")))),
    }
}

/// `timeline SESSION [--svg FILE]`: the session's timeline as text, or its picture written to
/// FILE (`-`: standard output).
fn timeline(cfg: &Config, session: &str, rest: &[&str]) -> Result<(), Failure> {
    let svg = match rest {
        [] => None,
        ["--svg", file] => Some(*file),
        ["--svg"] => return Err(Failure::Usage("--svg needs a file (- for standard output)".into())),
        _ => return Err(Failure::Usage(format!("timeline: unexpected '{}'", escaped(&rest.join(" "))))),
    };
    if session.is_empty() || session.starts_with('-') || session.contains(['/', '?', '#', '%', ' ']) {
        return Err(Failure::Usage(format!("timeline: '{}' is not a session id", escaped(session))));
    }
    let v = admin(cfg, "GET", &format!("timeline/{session}"), None)?;
    let Some(file) = svg else {
        print!("{}", v["text"].as_str().map(escaped_lines).unwrap_or_default());
        return Ok(());
    };
    let t: handoff::timeline::Timeline = serde_json::from_value(v["timeline"].clone())
        .map_err(|e| Failure::Refused(format!("timeline of {session}: handoffd's answer is not a timeline: {e}")))?;
    let picture = handoff::timeline::render(&t);
    if file == "-" {
        print!("{picture}");
        return Ok(());
    }
    std::fs::write(file, picture.as_bytes())
        .map_err(|e| Failure::Config(format!("timeline: cannot write {file}: {e}")))?;
    println!("{file}: timeline of session {session} ({} entries)", t.entries.len());
    Ok(())
}

/// `?tail=…&since=…&session=…` from `audit`'s flags (handoffd checks the values).
fn audit_query(words: &[&str]) -> Result<String, Failure> {
    let mut q = tail(words)?;
    for (flag_name, key) in [("--since", "since"), ("--session", "session")] {
        if let Some(v) = flag(words, flag_name)? {
            let enc = handoff::markup::percent_encode(v);
            q.push_str(if q.is_empty() { "?" } else { "&" });
            q.push_str(&format!("{key}={enc}"));
        }
    }
    Ok(q)
}

/// Each line of `s` with its control characters escaped (the line breaks kept).
fn escaped_lines(s: &str) -> String {
    s.lines().map(|l| escaped(l) + "\n").collect()
}

fn audit_line(r: &Value) -> String {
    format!("{:>6}  {}", r["seq"], r["line"].as_str().unwrap_or(""))
}

/// `s` with every control character escaped (`\n`, `\u{1b}`): what handoffd sends is shown
/// as one line of plain text, whatever a record holds (records stored before handoffd refused
/// control characters, or a store edited by hand), so a value can neither forge a line nor
/// drive the terminal.
fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn show(v: Value) -> Result<(), Failure> {
    // JSON text escapes control characters itself.
    println!("{v}");
    Ok(())
}

fn list(v: Value, line: impl Fn(&Value) -> String) -> Result<(), Failure> {
    for item in v.as_array().into_iter().flatten() {
        println!("{}", escaped(&line(item)));
    }
    Ok(())
}

/// Makes the pepper and the admin token (mode 0600) if they are missing; never replaces one.
/// `store migrate`: the sled store of `store.path` (handoffd must be stopped: sled's lock says
/// so) copied into an empty PostgreSQL database, in one transaction, then read back and compared.
fn migrate(cfg: &Config, url: &str) -> Result<(), Failure> {
    if cfg.store.backend != handoff::config::StoreBackend::Sled {
        return Err(Failure::Refused(
            "store migrate copies a sled store; this config's store is already postgres".into(),
        ));
    }
    let from = handoff::store::Store::open(&cfg.store.path).map_err(|e| Failure::Refused(e.to_string()))?;
    let dump = from.export().map_err(|e| Failure::Refused(e.to_string()))?.canonical();
    drop(from);
    let to = handoff::store::Store::open_postgres(url).map_err(|e| Failure::Refused(e.to_string()))?;
    to.import(&dump).map_err(|e| Failure::Refused(e.to_string()))?;
    let copied = to.export().map_err(|e| Failure::Refused(e.to_string()))?.canonical();
    if copied != dump {
        return Err(Failure::Refused(format!(
            "{}: the records read back differ from the sled store's ({} vs {})",
            to.path(),
            copied.summary(),
            dump.summary()
        )));
    }
    println!("copied {} from {} to {}", dump.summary(), cfg.store.path, to.path());
    println!("now set store.backend: postgres and store.url in handoffd.yaml, and start handoffd");
    Ok(())
}

fn init(cfg: &Config) -> Result<(), Failure> {
    let pepper = std::path::Path::new(&cfg.store.pepper_file);
    if pepper.exists() {
        println!("pepper {} exists (kept)", pepper.display());
    } else {
        handoff::credentials::Pepper::create(pepper).map_err(|e| Failure::Config(e.to_string()))?;
        println!("pepper {} created", pepper.display());
    }
    let token = std::path::Path::new(&cfg.api.admin_token_file);
    if token.exists() {
        println!("admin token {} exists (kept)", token.display());
        return Ok(());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| Failure::Config(format!("OS random source: {e}")))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = token.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(token)?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| Failure::Config(format!("admin token {}: {e}", token.display())))?;
    println!("admin token {} created", token.display());
    Ok(())
}

/// One admin request; the JSON answer, or the refusal's reason.
fn admin(cfg: &Config, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
    let token = std::fs::read_to_string(&cfg.api.admin_token_file).map_err(|e| {
        Failure::Config(format!("admin token {}: {e} (run as root, or handoffctl init)", cfg.api.admin_token_file))
    })?;
    let token = zeroize::Zeroizing::new(token.trim().to_string());
    if cfg.api.listen.is_empty() {
        return Err(Failure::Config("api.listen is empty: handoffd's API is off".into()));
    }
    let addr = &cfg.api.listen;
    let unreachable =
        |e: std::io::Error| Failure::Unreachable(format!("handoffd API at {addr}: {e} (is handoffd running?)"));
    let sock: std::net::SocketAddr =
        addr.parse().map_err(|_| Failure::Config(format!("api.listen '{addr}' is not an address:port")))?;
    let mut conn = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3)).map_err(unreachable)?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).map_err(unreachable)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} /v1/admin/{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.as_str(),
        body.len()
    );
    conn.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut response = String::new();
    conn.read_to_string(&mut response).map_err(unreachable)?;
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let reason = escaped(value["reason"].as_str().unwrap_or("no reason given"));
        Err(Failure::Refused(format!("{method} {path}: {status} {reason}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_print_control_characters_escaped() {
        let forged = "2026-12-02T10:00:00Z api:127.0.0.1:device:x move_request refused user evil\n     7  2026-12-02T10:00:01Z handoffd ticket_redeem granted\u{1b}[2J\u{9b}31m";
        let record = json!({ "seq": 6, "line": forged });
        let shown = escaped(&audit_line(&record));
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r"evil\n     7") && shown.contains(r"\u{1b}[2J\u{9b}31m"), "{shown}");
        assert_eq!(escaped("tab\there Zoë"), r"tab\there Zoë");
    }
}
