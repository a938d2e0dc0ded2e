//! The testbed Asterisk, started fresh for each test and stopped when the handle drops.

use crate::repo_root;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Tests in one binary take turns (cargo runs test binaries one after another).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn script() -> PathBuf {
    repo_root().join("tests/testbed/testbed")
}

/// Runs the testbed script; panics with its output when it fails.
pub fn testbed(args: &[&str]) -> String {
    testbed_with_module(args, &crate::target_dir().join("release/libres_handoff.so").to_string_lossy())
}

/// Runs the testbed script with `HANDOFF_MODULE=module` ("installed": the packaged module).
pub fn testbed_with_module(args: &[&str], module: &str) -> String {
    let out = Command::new(script())
        .args(args)
        .env("HANDOFF_MODULE", module)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "testbed {args:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the testbed's PostgreSQL (if it is not running) and makes a new empty schema in its
/// `handoff` database: the URL whose connections use that schema, so that a test's store sees
/// no other test's rows.
pub fn postgres_schema(name: &str) -> String {
    let out = testbed(&["postgres", "start"]);
    let base = out.lines().last().unwrap_or_default().trim().to_string();
    let schema = format!("{name}_{}", std::process::id());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to the testbed PostgreSQL at {base}: {e}"));
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
        .unwrap_or_else(|e| panic!("create schema {schema}: {e}"));
    format!("{base}?options=-c%20search_path%3D{schema}")
}

/// A running testbed Asterisk.
pub struct Asterisk {
    _turn: MutexGuard<'static, ()>,
}

impl Asterisk {
    /// Boots a fresh Asterisk with the project's conf/, dialplans/ and res_handoff.so.
    pub fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        testbed(&["start"]);
        Self { _turn: turn }
    }

    /// Takes the testbed without booting Asterisk (to install packages into the root first).
    pub fn take_turn() -> Self {
        Self { _turn: ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Boots Asterisk with the res_handoff.so a package installed into the root.
    pub fn start_installed(&self) {
        testbed_with_module(&["start"], "installed");
    }

    /// Runs a command inside the testbed root; its output (stdout and stderr) and success.
    pub fn in_root(&self, cmd: &[&str]) -> (bool, String) {
        let out = Command::new(script()).arg("chroot").args(cmd).output().expect("run the testbed script");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// Stops Asterisk (keeping the turn), e.g. to test what handoffd does when it goes away.
    pub fn stop(&self) {
        testbed(&["stop"]);
    }

    /// Boots Asterisk again after [`Asterisk::stop`].
    pub fn restart(&self) {
        testbed(&["start"]);
    }

    /// Sets `alignment` in the instance's handoff.conf (`aligned`, `switching`) and reloads the
    /// module; Err if the module did not take it.
    pub fn set_alignment(&self, mode: &str) -> Result<(), String> {
        let conf = self.instance_dir().join("etc/handoff.conf");
        let text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        std::fs::write(&conf, format!("{text}\nalignment = {mode}\n")).map_err(|e| e.to_string())?;
        let out = self.cli("module reload res_handoff.so");
        if !self.cli("handoff show status").contains(&format!("alignment={mode}")) {
            return Err(format!("handoff.conf alignment = {mode} was not taken: {out}"));
        }
        Ok(())
    }

    /// Runs an Asterisk CLI command and returns its output.
    pub fn cli(&self, cmd: &str) -> String {
        testbed(&["cli", cmd])
    }

    /// The Debian sid root the testbed runs in.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(testbed(&["root"]).trim())
    }

    /// The instance directory inside the root (etc, log, sipp, ...).
    pub fn instance_dir(&self) -> PathBuf {
        self.root().join("opt/handoff-testbed")
    }

    /// Asterisk's process id.
    pub fn pid(&self) -> u32 {
        let f = self.instance_dir().join("run/asterisk.pid");
        std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", f.display()))
    }

    /// Asterisk's own log of this run.
    pub fn messages_log(&self) -> String {
        std::fs::read_to_string(self.instance_dir().join("log/messages.log")).unwrap_or_default()
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").status();
    }
}
