//! The panic guard around every `extern "C"` entry point: a panic must never unwind into
//! Asterisk (undefined behaviour) nor abort it. A caught panic is logged through `ast_log`,
//! counted, and the entry returns its decline/error value.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many panics the guard has caught since load (shown by `handoff show status`).
pub static PANICS_CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Runs `f`; if it panics, logs which entry point failed and returns `on_panic`.
pub fn guard<R>(entry: &'static str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            PANICS_CAUGHT.fetch_add(1, Ordering::Relaxed);
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Logging itself must not panic again: ast_log is given a fixed format string.
            let _ = catch_unwind(|| {
                crate::asterisk::log(
                    crate::asterisk::Level::Error,
                    &format!(
                        "internal error in {entry}: {what}; the call goes on without handoff (please report this)"
                    ),
                )
            });
            on_panic
        }
    }
}

/// The default panic hook prints to Asterisk's stderr; the guard reports instead.
pub fn install_quiet_panic_hook() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Gives the process its default hook back when the module unloads.
pub fn remove_panic_hook() {
    let _ = std::panic::take_hook();
}
