//! The ticker thread: runs the module's periodic work every [`TICK`] (the frame hooks alone never
//! run when a leg's RTP stops), started on load, stopped and joined on unload.
//!
//! It is a plain pthread, not `std::thread`: spawning through std registers thread-local
//! destructors in the *calling* Asterisk thread (which lives on), and glibc then keeps the module
//! mapped after `module unload`. The ticker's own body uses no thread-locals that need
//! destructors, so once it is joined nothing pins the module.

use crate::guard::guard;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often the ticker runs its work.
pub const TICK: Duration = Duration::from_millis(5);
/// Every how many ticks the slow work runs (about once a second).
const SLOW_EVERY: u32 = 200;

/// What the ticker runs: every tick, and about once a second.
#[derive(Clone, Copy)]
pub struct Work {
    pub every_tick: fn(),
    pub every_second: fn(),
}

struct Running {
    thread: libc::pthread_t,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);
static WORK: Mutex<Option<Work>> = Mutex::new(None);
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn ticker_main(_arg: *mut c_void) -> *mut c_void {
    let Some(work) = *WORK.lock().unwrap_or_else(|e| e.into_inner()) else { return std::ptr::null_mut() };
    let mut ticks: u32 = 0;
    while !STOP.load(Ordering::Acquire) {
        guard("ticker", (), work.every_tick);
        ticks = ticks.wrapping_add(1);
        if ticks % SLOW_EVERY == 0 {
            guard("ticker", (), work.every_second);
        }
        let ts = libc::timespec { tv_sec: 0, tv_nsec: TICK.as_nanos() as libc::c_long };
        // SAFETY: ts is a valid timespec; the remainder pointer may be NULL.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
    std::ptr::null_mut()
}

/// Starts the ticker running `work`.
pub fn start(work: Work) -> Result<(), String> {
    STOP.store(false, Ordering::Release);
    *WORK.lock().unwrap_or_else(|e| e.into_inner()) = Some(work);
    // SAFETY: a zeroed pthread_t is overwritten by pthread_create.
    let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
    // SAFETY: default attributes (NULL); ticker_main is a valid start routine that ignores its
    // argument.
    let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), ticker_main, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("cannot start the ticker thread (pthread_create: {rc})"));
    }
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running { thread });
    Ok(())
}

/// Stops the ticker and waits for its thread to end (nothing if it is not running).
pub fn stop() {
    let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = running {
        STOP.store(true, Ordering::Release);
        // SAFETY: the thread was created by start() and is joined exactly once.
        unsafe { libc::pthread_join(t.thread, std::ptr::null_mut()) };
    }
}
