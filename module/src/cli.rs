//! CLI: `handoff show status`.

use crate::asterisk::cli_print;
use crate::ffi;
use crate::guard::{guard, PANICS_CAUGHT};
use crate::legs;
use crate::registration::{config, module_self};
use std::ffi::{c_char, c_int};
use std::ptr::{addr_of_mut, null, null_mut};
use std::sync::atomic::Ordering;
use std::time::Instant;

const USAGE: &std::ffi::CStr = c"Usage: handoff show status\n       Shows whether handoffd is connected, the channels waiting in Handoff() and totals since load.\n";
const COMMAND: &std::ffi::CStr = c"handoff show status";
const SUMMARY: &std::ffi::CStr = c"Show handoff module status";

/// Asterisk links registered entries into its own list, so the entry lives in a `static mut`
/// touched only through raw pointers by register/unregister (load and unload are serialised by
/// the loader).
static mut SHOW_STATUS: ffi::ast_cli_entry = ffi::ast_cli_entry {
    cmda: [null(); ffi::AST_MAX_CMD_LEN as usize],
    summary: SUMMARY.as_ptr(),
    usage: null(),
    inuse: 0,
    module: null_mut(),
    _full_cmd: null_mut(),
    cmdlen: 0,
    args: 0,
    command: null_mut(),
    handler: Some(show_status),
    list: ffi::ast_cli_list_entry { next: null_mut() },
};

pub fn register() -> Result<(), ()> {
    // SAFETY: the static entry outlives its registration (unregistered on unload).
    let rc = unsafe { ffi::__ast_cli_register(addr_of_mut!(SHOW_STATUS), module_self()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(())
    }
}

pub fn unregister() {
    // SAFETY: the entry registered above (unregistering one that is not registered is harmless).
    unsafe { ffi::ast_cli_unregister(addr_of_mut!(SHOW_STATUS)) };
}

/// The text `handoff show status` prints.
pub fn status_text() -> String {
    let cfg = config();
    let reg = legs::registry();
    let controller = match reg.controller(Instant::now(), cfg.controller_timeout()) {
        Some((name, ago)) => format!("connected ({name}, last hello {:.1} s ago)", ago.as_secs_f64()),
        None => "NOT connected (Handoff() calls get HANDOFF_STATUS=NOCONTROLLER)".into(),
    };
    let c = reg.counters;
    let groups = crate::media::status_lines();
    format!(
        "handoff {version}\n\
         Controller:          {controller}\n\
         Waiting in Handoff(): {waiting}\n\
         Legs since load:     {arrived} arrived, {assigned} assigned, {refused} refused, {timed_out} timed out, {hung_up} hung up while waiting, {noctl} without controller\n\
         Settings:            assign_timeout={assign} ms, controller_timeout={ctl} s, stall_threshold={stall} ms, stall_threshold_max={stall_max} ms, recover_time={recover} ms, controller_account={account}, alignment={alignment}, align_max={align_max} ms\n\
         Watched legs:        {hooks}\n\
         Frames watched:      {frames} ({per_frame} ns per frame in the hook)\n\
         Downlink:            {writes} frames written to watched legs ({per_write} ns per frame in the hook); standby legs got {copied} of the feeding leg's frames, {repeated} repeated, {silenced} silenced, {dropped} dropped; {seam} silenced just after a switch\n\
         Device groups:       {ngroups}\n{groups}\
         Panics caught:       {panics}\n",
        version = env!("CARGO_PKG_VERSION"),
        waiting = reg.waiting(),
        arrived = c.arrived,
        assigned = c.assigned,
        refused = c.refused,
        timed_out = c.timed_out,
        hung_up = c.hung_up,
        noctl = c.no_controller,
        assign = cfg.assign_timeout_ms,
        ctl = cfg.controller_timeout_s,
        panics = PANICS_CAUGHT.load(Ordering::Relaxed),
        stall = cfg.stall_threshold_ms,
        stall_max = cfg.stall_threshold_max_ms,
        alignment = if cfg.aligned { "aligned" } else { "switching" },
        align_max = cfg.align_max_ms,
        recover = cfg.recover_time_ms,
        account = cfg.controller_account,
        hooks = crate::media::HOOKS_ATTACHED.load(Ordering::Relaxed),
        frames = crate::media::FRAMES.load(Ordering::Relaxed),
        per_frame = crate::media::FRAME_NS.load(Ordering::Relaxed) / crate::media::FRAMES.load(Ordering::Relaxed).max(1),
        writes = crate::media::WRITES.load(Ordering::Relaxed),
        per_write = crate::media::WRITE_NS.load(Ordering::Relaxed) / crate::media::WRITES.load(Ordering::Relaxed).max(1),
        copied = crate::media::FILL_COPIED.load(Ordering::Relaxed),
        repeated = crate::media::FILL_REPEATED.load(Ordering::Relaxed),
        silenced = crate::media::FILL_SILENCE.load(Ordering::Relaxed),
        dropped = crate::media::FILL_DROPPED.load(Ordering::Relaxed),
        seam = crate::media::SEAM_SILENCED.load(Ordering::Relaxed),
        ngroups = groups.len(),
        groups = groups.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
}

extern "C" fn show_status(e: *mut ffi::ast_cli_entry, cmd: c_int, a: *mut ffi::ast_cli_args) -> *mut c_char {
    guard("handoff show status", null_mut(), || {
        if cmd == ffi::CLI_INIT {
            // SAFETY: on CLI_INIT Asterisk passes our own entry; command and usage point to statics.
            unsafe {
                (*e).command = COMMAND.as_ptr() as *mut c_char;
                (*e).usage = USAGE.as_ptr();
            }
            return null_mut();
        }
        if cmd == ffi::CLI_GENERATE || a.is_null() {
            return null_mut();
        }
        // SAFETY: for an execution Asterisk passes valid args.
        let (fd, argc) = unsafe { ((*a).fd, (*a).argc) };
        if argc != 3 {
            return ffi::RESULT_SHOWUSAGE as usize as *mut c_char;
        }
        cli_print(fd, &status_text());
        ffi::RESULT_SUCCESS as usize as *mut c_char
    })
}
