//! A real browser for the end-to-end tests: Debian's headless Chromium, installed in the
//! testbed root by `tests/testbed/testbed build`, run inside that root (chroot) while the
//! testbed Asterisk holds its /proc and /dev mounts. Scripts stay on: `--dump-dom` and
//! `--screenshot` run script in the page themselves and give nothing with
//! `--blink-settings=scriptEnabled=false` (Chromium 156); the pages under test carry no script
//! and forbid any with their Content-Security-Policy.
//!
//! Chromium is started so that it cannot hang the test: its output goes to files (never to a
//! pipe nobody drains), it gets a fresh profile directory, no sandbox (it runs as root), no
//! /dev/shm (`--disable-dev-shm-usage`), no GPU, crash reporter or first-run dialogs; it runs
//! in its own process group under a deadline, and the whole group is killed when the deadline
//! passes or the run ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one Chromium run may take (a page load takes about 1 s on the lab host).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// What one run of Chromium left: its stdout (the DOM for `--dump-dom`) and how long it took.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub took: Duration,
}

/// Headless Chromium in the testbed root at `root`.
pub struct Browser {
    root: PathBuf,
    /// The scratch directory inside the root (`/tmp/handoff-browser-<pid>`), as seen from outside.
    scratch: PathBuf,
    runs: u32,
}

impl Browser {
    /// Chromium of the testbed root `root`; panics (naming the fix) if it is not installed.
    pub fn new(root: &Path) -> Self {
        let bin = root.join("usr/bin/chromium");
        assert!(
            bin.exists(),
            "{} is missing: the testbed root is built without Chromium; run tests/testbed/testbed build",
            bin.display()
        );
        assert!(root.join("proc/self").exists(), "the testbed root has no /proc: start the testbed Asterisk first");
        let scratch = root.join(format!("tmp/handoff-browser-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).expect("make the browser's scratch directory in the root");
        Self { root: root.to_path_buf(), scratch, runs: 0 }
    }

    /// The path inside the root of `p` (a path under the scratch directory).
    fn inside(&self, p: &Path) -> String {
        format!("/{}", p.strip_prefix(&self.root).expect("a path in the root").display())
    }

    /// Runs Chromium on `url` with `extra` arguments; panics with its log if it fails or
    /// overruns [`DEADLINE`].
    fn run(&mut self, url: &str, extra: &[String]) -> Run {
        self.runs += 1;
        let n = self.runs;
        let profile = self.scratch.join(format!("profile-{n}"));
        let (out_path, err_path) =
            (self.scratch.join(format!("out-{n}.txt")), self.scratch.join(format!("err-{n}.txt")));
        let out = std::fs::File::create(&out_path).expect("create Chromium's stdout file");
        let err = std::fs::File::create(&err_path).expect("create Chromium's stderr file");
        // Niced: its start takes the CPU from SIPp and Asterisk on a small host.
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "15", "chroot"])
            .arg(&self.root)
            .arg("chromium")
            .args([
                "--headless=new",
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
                "--timeout=10000",
            ])
            .arg(format!("--user-data-dir={}", self.inside(&profile)))
            .args(extra)
            .arg(url)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", self.inside(&self.scratch))
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start chroot chromium");
        let pgid = child.id() as i32;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for Chromium") {
                break Some(s);
            }
            if started.elapsed() > DEADLINE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = started.elapsed();
        // Whatever Chromium left running (its zygote, GPU and network processes) goes with it.
        // SAFETY: kill(2) with a negative pid signals the process group we created above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        let log = std::fs::read_to_string(&err_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        match status {
            None => panic!("Chromium did not finish {url} within {DEADLINE:?}; its log:\n{}", tail.join("\n")),
            Some(s) if !s.success() => panic!("Chromium failed on {url} ({s}); its log:\n{}", tail.join("\n")),
            Some(_) => {}
        }
        let _ = std::fs::remove_dir_all(&profile);
        Run { stdout: std::fs::read_to_string(&out_path).unwrap_or_default(), took }
    }

    /// How many times Chromium ran.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// The DOM of `url` after it loaded, as Chromium serialises it.
    pub fn dump_dom(&mut self, url: &str) -> Run {
        self.run(url, &["--dump-dom".to_string()])
    }

    /// A PNG screenshot of `url` (`width` × `height`), copied to `to`.
    pub fn screenshot(&mut self, url: &str, width: u32, height: u32, to: &Path) -> Run {
        let shot = self.scratch.join(format!("shot-{}.png", self.runs + 1));
        let run =
            self.run(url, &[format!("--screenshot={}", self.inside(&shot)), format!("--window-size={width},{height}")]);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("make the artefact directory");
        }
        std::fs::copy(&shot, to).unwrap_or_else(|e| panic!("Chromium wrote no screenshot {}: {e}", shot.display()));
        run
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
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
