//! Dialplan applications: an [`Application`] registered with Asterisk runs, guarded, on the
//! channel's own thread with the [`Channel`] it was called on.

use super::ffi;
use super::{cstring, from_c, Module};
use crate::guard::guard;
use std::ffi::{c_char, c_int, CStr};

/// A dialplan application.
pub trait Application {
    const NAME: &'static CStr;
    const SYNOPSIS: &'static CStr;
    const DESCRIPTION: &'static CStr;
    /// Runs the application on `chan` with its argument string; 0 lets the dialplan go on, -1
    /// hangs the channel up. A panic counts as 0 (the call goes on without the module).
    fn exec(chan: &Channel, data: &str) -> i32;
}

/// Registers `A` as a dialplan application of `module`.
pub fn register<A: Application>(module: Module) -> Result<(), ()> {
    // SAFETY: static C strings; exec::<A> is a guarded extern "C" fn; module is the loader's
    // handle.
    let rc = unsafe {
        ffi::ast_register_application2(
            A::NAME.as_ptr(),
            exec::<A>,
            A::SYNOPSIS.as_ptr(),
            A::DESCRIPTION.as_ptr(),
            module.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(())
    }
}

pub fn unregister<A: Application>() {
    // SAFETY: static C string (unregistering an unknown name is harmless).
    unsafe { ffi::ast_unregister_application(A::NAME.as_ptr()) };
}

extern "C" fn exec<A: Application>(chan: *mut ffi::ast_channel, data: *const c_char) -> c_int {
    guard(A::NAME.to_str().unwrap_or("application"), 0, || {
        if chan.is_null() {
            return -1;
        }
        let chan = Channel(chan);
        // SAFETY: data is NULL or the application's NUL-terminated argument string.
        let data = unsafe { from_c(data) };
        A::exec(&chan, &data)
    })
}

/// The live channel an application runs on, borrowed for the application call (only built by
/// [`exec`], used on the channel's own thread).
pub struct Channel(pub(super) *mut ffi::ast_channel);

impl Channel {
    pub fn name(&self) -> String {
        // SAFETY: self.0 is live (see the type); Asterisk returns a string it owns.
        unsafe { from_c(ffi::ast_channel_name(self.0)) }
    }

    pub fn uniqueid(&self) -> String {
        // SAFETY: as above.
        unsafe { from_c(ffi::ast_channel_uniqueid(self.0)) }
    }

    /// Reads a dialplan function such as `CALLERID(num)`; "" when it fails.
    pub fn func(&self, expr: &str) -> String {
        let mut buf = vec![0 as c_char; 256];
        let e = cstring(expr);
        // SAFETY: buf is writable for buf.len() bytes and ast_func_read NUL-terminates it.
        let rc = unsafe { ffi::ast_func_read(self.0, e.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        if rc != 0 {
            return String::new();
        }
        // SAFETY: ast_func_read succeeded and wrote a NUL-terminated string into buf.
        unsafe { from_c(buf.as_ptr()) }
    }

    /// Reads up to `max` DTMF digits keyed on the channel, ended by `#` or by `timeout_ms`
    /// without a digit (no prompt: the caller may play one first); `None` when the channel hung
    /// up. Nothing is logged and no variable is set: the digits stay in the returned string.
    pub fn read_digits(&self, max: usize, timeout_ms: i32) -> Option<String> {
        let max = max.clamp(1, 64);
        let mut buf = vec![0 as c_char; max + 1];
        // SAFETY: live channel on its own application thread; buf holds max + 1 bytes, as
        // ast_app_getdata writes at most max digits and a NUL; the prompt is an empty C string.
        let rc = unsafe { ffi::ast_app_getdata(self.0, c"".as_ptr(), buf.as_mut_ptr(), max as c_int, timeout_ms) };
        if rc < 0 {
            return None;
        }
        // SAFETY: buf is NUL-terminated (ast_app_getdata clears it first and ends what it reads).
        let digits = unsafe { from_c(buf.as_ptr()) };
        buf.fill(0);
        Some(digits)
    }

    pub fn set_var(&self, name: &str, value: &str) {
        let (n, v) = (cstring(name), cstring(value));
        // SAFETY: live channel, valid C strings.
        unsafe {
            ffi::pbx_builtin_setvar_helper(self.0, n.as_ptr(), v.as_ptr());
        }
    }

    /// Services the channel for `ms` (reads and drops its frames); false when it hung up.
    pub fn sleep(&self, ms: i32) -> bool {
        // SAFETY: live channel, called from its own application thread.
        unsafe { ffi::ast_safe_sleep(self.0, ms) == 0 }
    }
}
