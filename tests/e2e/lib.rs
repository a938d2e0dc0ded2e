//! The harness for handoff's end-to-end tests: a real Asterisk 22 in the testbed
//! (`tests/testbed/testbed`), the real `res_handoff.so` and `handoffd`, SIPp for SIP and RTP, and
//! RTP recorders that receive what Asterisk actually sends.
//!
//! - [`testbed`]: start/stop the testbed Asterisk (one at a time: a lock serialises tests).
//! - [`handoffd`]: run the real controller binary with a generated config and read its log.
//! - [`sipp`]: run SIPp scenarios from `tests/sipp/` inside the testbed root.
//! - [`rtp`]: bind an RTP recorder and analyse what arrived ([`audio`] holds the G.711 maths).
//! - [`signal`]: the coded test signal both client legs send, and its analysis at the far end.
//! - [`listen`]: the frame-numbered test signal (continuous or talk spurts) and what a listener
//!   hears at a switch: silence, frames repeated or skipped, both legs at once, the delay's move.
//! - [`pump`]: both legs' RTP of the test phone from one clock, with a set offset and jitter.
//! - [`failover`]: the cut-and-heal driver shared by the listener test and `bench-failover`.
//! - [`baresip`]: a real softphone (Debian's baresip) as the phone's app, in the testbed root.
//! - [`netcut`]: real network faults (nftables drops on loopback).
//! - [`browser`]: headless Chromium from the testbed root, to load handoffd's pages.
//! - [`ami`]: a plain AMI client (the project's codec over a std socket) to watch events and
//!   check that nothing is left over.
//!
//! Everything needs root (chroot, mount) and the release artifacts built by `tests/run`.

pub mod ami;
pub mod audio;
pub mod baresip;
pub mod browser;
pub mod failover;
pub mod handoffd;
pub mod listen;
pub mod netcut;
pub mod pump;
pub mod rtp;
pub mod signal;
pub mod sipp;
pub mod testbed;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// Where release artifacts are (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// Polls `f` until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
