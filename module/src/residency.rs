//! Keeping `res_handoff.so` mapped when Asterisk would unmap it under live code pointers.
//!
//! A forced unload (`module unload -h res_handoff.so`) goes on even when the module's unload
//! refuses: the loader then `dlclose`s the library while frame hooks on live channels, the
//! ticker thread, the `Handoff()` application and the AMI actions still point into its code,
//! and Asterisk jumps into unmapped memory within a frame. So whenever unload refuses because
//! something of the module is still in use, the module first pins itself: it `dlopen`s its own
//! file again with `RTLD_NOLOAD | RTLD_NODELETE` (found through `dladdr` of one of its own
//! symbols). glibc then never unmaps it, whatever `dlclose` the loader does; the calls keep
//! their failover and Asterisk stays up. A clean unload (nothing in use) does not pin, so the
//! library is really gone afterwards (tests/tests/module.rs checks /proc/PID/maps).

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the module pinned itself since it was mapped (statics live as long as the mapping).
static PINNED: AtomicBool = AtomicBool::new(false);

/// Whether [`pin`] succeeded before.
pub fn pinned() -> bool {
    PINNED.load(Ordering::Acquire)
}

/// Pins this library in memory for the rest of the process; the path it pinned, or why not.
pub fn pin() -> Result<String, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let anchor = pin as fn() -> Result<String, String> as *const libc::c_void;
    // SAFETY: anchor is an address inside this library; info is a valid Dl_info to fill.
    if unsafe { libc::dladdr(anchor, &mut info) } == 0 || info.dli_fname.is_null() {
        return Err("dladdr found no library for the module's own code".into());
    }
    // SAFETY: dladdr succeeded, so dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) };
    // SAFETY: path is a valid C string; RTLD_NOLOAD only looks up the already loaded object.
    // The handle is kept open on purpose (a reference of our own besides RTLD_NODELETE).
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) };
    let shown = path.to_string_lossy().into_owned();
    if handle.is_null() {
        return Err(format!("dlopen({shown}, RTLD_NOLOAD|RTLD_NODELETE) failed"));
    }
    PINNED.store(true, Ordering::Release);
    Ok(shown)
}
