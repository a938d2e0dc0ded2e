//! Dialplan applications: an [`Application`] registered with Asterisk runs, guarded, on the
//! channel's own thread with the [`Channel`] it was called on.

use super::channel::Channel;
use super::ffi;
use super::{from_c, Module};
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
