//! A real browser for the end-to-end tests: Debian's headless Chromium, installed in the
//! testbed root by `tests/testbed/testbed build`, run inside that root (chroot), driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on its fd 3, answers
//! and events on its fd 4, one JSON message per NUL-terminated chunk). One Chromium serves a
//! whole test: a page load is `Page.navigate` and the `load` lifecycle event of that
//! navigation, the DOM comes from `DOM.getOuterHTML`, a screenshot from
//! `Page.captureScreenshot`. Scripts are off (`Emulation.setScriptExecutionDisabled`): the
//! pages under test must work without them. (`--dump-dom` and `--screenshot` cannot do that:
//! with `--blink-settings=scriptEnabled=false` Chromium 156 gives an empty DOM and no picture.)
//!
//! What makes Chromium hang or fail when a test starts it, found by experiment: a page whose
//! server sends no `Content-Length` and keeps the connection open never finishes loading
//! (handoffd's HTTP sends `Content-Length` and `Connection: close`); a DOM over 64 KiB written
//! to a stdout pipe nobody reads blocks Chromium for good; as root without `--no-sandbox` it
//! exits at once. So its stdout and stderr go to files, it gets a fresh profile directory, no
//! sandbox, no /dev/shm (`--disable-dev-shm-usage`), no GPU, crash reporter or first-run
//! dialogs; it is niced (its start takes the CPU from SIPp and Asterisk on a small host, and a
//! leg may stall for real then); every answer is awaited under [`DEADLINE`]; and its whole
//! process group is killed when the browser is dropped.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest one step (start, a page load, a screenshot) may take.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Largest DevTools message read (a screenshot of a tall page is some MB of base64).
const MAX_MESSAGE: usize = 64 << 20;

/// What one step left: its text (the DOM for [`Browser::dump_dom`]) and how long it took.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub took: Duration,
}

/// Headless Chromium in the testbed root, with one page open.
pub struct Browser {
    child: Child,
    to_chrome: std::fs::File,
    from_chrome: Receiver<serde_json::Value>,
    /// The page's DevTools session.
    session: String,
    next_id: u64,
    /// The scratch directory inside the root (`/tmp/handoff-browser-<pid>`), as seen from outside.
    scratch: PathBuf,
    loads: u32,
    /// How long Chromium took to start and open its page.
    pub started_in: Duration,
}

/// A pipe (read end, write end), both close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array it is given.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just made by pipe2 and belong to nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium of the testbed root `root` and opens a page with scripts off; panics
    /// (naming the fix) if it is not installed or does not answer.
    pub fn new(root: &Path) -> Self {
        let bin = root.join("usr/bin/chromium");
        assert!(
            bin.exists(),
            "{} is missing: the testbed root is built without Chromium; run tests/testbed/testbed build",
            bin.display()
        );
        let scratch = root.join(format!("tmp/handoff-browser-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).expect("make the browser's scratch directory in the root");
        let inside = format!("/{}", scratch.strip_prefix(root).unwrap().display());
        let out = std::fs::File::create(scratch.join("stdout.txt")).expect("create Chromium's stdout file");
        let err = std::fs::File::create(scratch.join("stderr.txt")).expect("create Chromium's stderr file");
        let (cmd_read, cmd_write) = pipe();
        let (ev_read, ev_write) = pipe();
        let (fd3, fd4) = (cmd_read.as_raw_fd(), ev_write.as_raw_fd());
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "15", "chroot"])
            .arg(root)
            .arg("chromium")
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={inside}/profile"))
            .arg("about:blank")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &inside)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, to) in [(fd3, 3), (fd4, 4)] {
                    if fd == to {
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    } else if libc::dup2(fd, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().expect("start chroot chromium");
        drop((cmd_read, ev_write));
        let (tx, from_chrome) = std::sync::mpsc::channel();
        let mut events = std::fs::File::from(ev_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = match events.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
                assert!(buf.len() <= MAX_MESSAGE, "a DevTools message over {MAX_MESSAGE} bytes");
            }
        });
        let mut b = Self {
            child,
            to_chrome: std::fs::File::from(cmd_write),
            from_chrome,
            session: String::new(),
            next_id: 0,
            scratch,
            loads: 0,
            started_in: Duration::ZERO,
        };
        let target = b.call(None, "Target.createTarget", serde_json::json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().expect("a target id").to_string();
        let attached =
            b.call(None, "Target.attachToTarget", serde_json::json!({ "targetId": target, "flatten": true }));
        b.session = attached["sessionId"].as_str().expect("a session id").to_string();
        let s = Some(b.session.clone());
        b.call(s.as_deref(), "Page.enable", serde_json::json!({}));
        b.call(s.as_deref(), "Page.setLifecycleEventsEnabled", serde_json::json!({ "enabled": true }));
        b.call(s.as_deref(), "Emulation.setScriptExecutionDisabled", serde_json::json!({ "value": true }));
        b.started_in = started.elapsed();
        b
    }

    /// Chromium's log so far (its last lines), for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.join("stderr.txt")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits for a message `pick` accepts (others are dropped); panics at the deadline.
    fn wait(&mut self, what: &str, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.from_chrome.recv_timeout(left) {
                Ok(m) if pick(&m) => return m,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("Chromium: no {what} within {DEADLINE:?}; its log:\n{}", self.log_tail())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait();
                    panic!("Chromium went away ({status:?}) waiting for {what}; its log:\n{}", self.log_tail())
                }
            }
        }
    }

    /// Sends one DevTools command (to the page's session, or the browser) and returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = s.into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        if let Err(e) = self.to_chrome.write_all(&bytes) {
            panic!("Chromium: sending {method}: {e}; its log:\n{}", self.log_tail());
        }
        let answer = self.wait(method, |m| m["id"] == id);
        if let Some(e) = answer.get("error") {
            panic!("Chromium refused {method}: {e}");
        }
        answer["result"].clone()
    }

    /// Loads `url` in the page and waits for the load event of that navigation (not of a
    /// refresh the page asked for itself).
    fn load(&mut self, url: &str) {
        self.loads += 1;
        let s = Some(self.session.clone());
        let nav = self.call(s.as_deref(), "Page.navigate", serde_json::json!({ "url": url }));
        if let Some(e) = nav.get("errorText") {
            panic!("Chromium could not load {url}: {e}");
        }
        let loader = nav["loaderId"].clone();
        self.wait("the page's load event", |m| {
            m["method"] == "Page.lifecycleEvent" && m["params"]["name"] == "load" && m["params"]["loaderId"] == loader
        });
    }

    /// How many pages were loaded.
    pub fn runs(&self) -> u32 {
        self.loads
    }

    /// Loads `url` and returns its DOM, as Chromium serialises it.
    pub fn dump_dom(&mut self, url: &str) -> Run {
        let started = Instant::now();
        self.load(url);
        let s = Some(self.session.clone());
        let doc = self.call(s.as_deref(), "DOM.getDocument", serde_json::json!({ "depth": 0 }));
        let node = doc["root"]["nodeId"].clone();
        let html = self.call(s.as_deref(), "DOM.getOuterHTML", serde_json::json!({ "nodeId": node }));
        Run { stdout: html["outerHTML"].as_str().unwrap_or("").to_string(), took: started.elapsed() }
    }

    /// Loads `url` in a `width` × `height` window and writes a PNG screenshot of it to `to`.
    pub fn screenshot(&mut self, url: &str, width: u32, height: u32, to: &Path) -> Run {
        let started = Instant::now();
        let s = Some(self.session.clone());
        let metrics = serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        self.call(s.as_deref(), "Emulation.setDeviceMetricsOverride", metrics);
        self.load(url);
        let shot = self.call(s.as_deref(), "Page.captureScreenshot", serde_json::json!({ "format": "png" }));
        let png = base64_decode(shot["data"].as_str().unwrap_or("")).expect("the screenshot is base64");
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("make the artefact directory");
        }
        std::fs::write(to, &png).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
        Run { stdout: String::new(), took: started.elapsed() }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Whatever Chromium left running (its zygote, GPU and network processes) goes with it.
        // SAFETY: kill(2) with a negative pid signals the process group made for Chromium.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Standard base64 (with padding) to bytes; `None` on a character outside the alphabet.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        acc = acc << 6 | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Width and height of a PNG (from its IHDR chunk), if `bytes` is one.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

/// Where the tests keep what a person may want to look at afterwards (screenshots).
pub fn artefact_dir(test: &str) -> PathBuf {
    crate::target_dir().join("test-artefacts").join(test)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::base64_decode("aGFuZG9mZg==").unwrap(), b"handoff");
        assert_eq!(super::base64_decode("aGFuZG9m").unwrap(), b"handof");
        assert_eq!(super::base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(super::base64_decode("a b"), None);
    }
}
