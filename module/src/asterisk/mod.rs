//! Layer 2: the safe wrapper over the raw declarations of [`ffi`] (private to it), and the only
//! code besides `residency.rs` and `ticker.rs` allowed `unsafe` (the crate denies it everywhere else).
//! Everything above it speaks Rust strings, owned values and traits; every raw pointer use here
//! carries a `SAFETY:` note, and every `extern "C"` callback it hands Asterisk runs inside
//! [`crate::guard::guard`].
//!
//! - [`ffi`]: the raw declarations, whose layouts and prototypes `build.rs` checks against the
//!   headers.
//! - `mod.rs`: C strings, logging, the clock, randomness.
//! - [`module`]: the `ast_module_info` the loader reads ([`declare_module!`]) and the module
//!   handle ([`Module`]).
//! - [`application`]: dialplan applications ([`Application`]).
//! - [`channel`]: the channel an application runs on ([`Channel`]) and counted references to
//!   channels ([`ChannelRef`]) that queue audio to them.
//! - [`manager`]: AMI actions ([`Action`]), the session an action came from, events.
//! - [`cli`]: CLI commands ([`CliCommand`]).
//! - [`framehook`]: frame hooks on a channel ([`FrameHook`]) and the voice frames they see.
//! - [`config`]: reading a config file through Asterisk's config loader.

pub mod application;
pub mod channel;
pub mod cli;
pub mod config;
mod ffi;
pub mod framehook;
pub mod manager;
pub mod module;

pub use application::Application;
pub use channel::{Channel, ChannelRef};
pub use cli::{CliCommand, CliOutcome};
pub use config::{read_config_section, ConfigFile};
pub use framehook::{FrameHook, Pass, ReadFrame, WrittenFrame};
pub use manager::{manager_event, manager_secret, Action, Authority, EventClass, Reply, Request};
pub use module::Module;

use std::ffi::{c_char, CStr, CString};

/// Builds a C string, dropping interior NULs (text from outside is never trusted to be clean).
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Reads a C string Asterisk gave us; NULL reads as "".
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the duration of the call.
unsafe fn from_c(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL and NUL-terminated per the caller's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Asterisk log levels the module uses.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Notice,
    Warning,
    Error,
}

/// Logs one line through `ast_log` with a fixed format string (`%s`), never the text itself.
pub fn log(level: Level, msg: &str) {
    let lvl = match level {
        Level::Notice => ffi::LOG_NOTICE,
        Level::Warning => ffi::LOG_WARNING,
        Level::Error => ffi::LOG_ERROR,
    };
    let text = cstring(msg);
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call, and the
    // format string consumes exactly one `char *` argument.
    unsafe {
        ffi::ast_log(lvl, c"res_handoff".as_ptr(), 0, c"handoff".as_ptr(), c"%s\n".as_ptr(), text.as_ptr());
    }
}

/// Monotonic clock in ns (CLOCK_MONOTONIC, the clock handoffd and the tests also read).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A 16-byte random nonce in hex (from the kernel's getrandom); None if it failed.
pub fn random_hex16() -> Option<String> {
    let mut buf = [0u8; 16];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n == buf.len() as isize).then(|| crate::ami_auth::hex(&buf))
}
