//! Channels: the one an application runs on ([`Channel`], borrowed for the call) and a counted
//! reference that outlives it ([`ChannelRef`]), through which audio is queued to the channel
//! from another thread.

use super::{cstring, ffi, from_c};
use std::ffi::{c_char, c_int, CStr};

/// The live channel an application runs on, borrowed for the application call (only built by
/// the application trampoline, used on the channel's own thread).
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

    /// A counted reference to the channel, which may be kept past the application call.
    pub fn keep(&self) -> ChannelRef {
        // SAFETY: self.0 is live; ao2_ref +1 keeps the channel object allocated until the
        // reference is dropped.
        unsafe { ffi::__ao2_ref(self.0.cast(), 1, c"handoff".as_ptr(), c"channel.rs".as_ptr(), 0, c"keep".as_ptr()) };
        ChannelRef(self.0)
    }
}

/// A counted reference to a channel (`ast_channel_ref`): the channel object stays allocated
/// while it is held, even after the channel hung up. Dropping it may free the channel: never
/// drop one while holding a lock that a channel's hangup path takes.
pub struct ChannelRef(*mut ffi::ast_channel);

// SAFETY: ao2 reference counting is thread-safe, and every use below locks the channel or is
// documented as safe unlocked by Asterisk.
unsafe impl Send for ChannelRef {}
// SAFETY: as above.
unsafe impl Sync for ChannelRef {}

impl ChannelRef {
    /// Queues one voice frame of `samples` (signed linear, 8 kHz) on the channel's read queue;
    /// the frame's source is `src` (a frame hook tells it from the channel's own by
    /// [`super::ReadFrame::has_source`]). Asterisk passes it on as it is to a core that reads
    /// signed linear (a conference), whatever codec the channel's technology speaks. False if
    /// Asterisk refused it (the channel is hanging up).
    pub fn queue_slin(&self, samples: &[i16], src: &'static CStr) -> bool {
        // SAFETY: Asterisk's cached formats are created at startup and never freed.
        let format = unsafe { ffi::ast_format_slin };
        if format.is_null() || samples.is_empty() {
            return false;
        }
        let mut buf: Vec<u8> = samples.iter().flat_map(|s| s.to_ne_bytes()).collect();
        #[repr(C, align(8))]
        struct Raw([u8; ffi::AST_FRAME_SIZE]);
        let mut raw = Raw([0; ffi::AST_FRAME_SIZE]);
        let base = raw.0.as_mut_ptr();
        // SAFETY: the offsets and size are those of struct ast_frame in the headers (build.rs),
        // each written with the field's type; every other field stays zero (no flags, no
        // delivery time, not malloc'ed: ast_queue_frame copies the frame, its payload, its
        // format reference and its source string).
        let rc = unsafe {
            *base.add(ffi::AST_FRAME_FRAMETYPE_OFFSET).cast::<c_int>() = ffi::AST_FRAME_VOICE;
            *base.add(ffi::AST_FRAME_FORMAT_OFFSET).cast::<*mut ffi::ast_format>() = format;
            *base.add(ffi::AST_FRAME_DATALEN_OFFSET).cast::<c_int>() = buf.len() as c_int;
            *base.add(ffi::AST_FRAME_SAMPLES_OFFSET).cast::<c_int>() = samples.len() as c_int;
            *base.add(ffi::AST_FRAME_MALLOCD_OFFSET).cast::<c_int>() = 0;
            *base.add(ffi::AST_FRAME_OFFSET_OFFSET).cast::<c_int>() = 0;
            *base.add(ffi::AST_FRAME_SRC_OFFSET).cast::<*const c_char>() = src.as_ptr();
            *base.add(ffi::AST_FRAME_DATA_OFFSET).cast::<*mut u8>() = buf.as_mut_ptr();
            ffi::ast_queue_frame(self.0, base.cast())
        };
        rc == 0
    }
}

impl Drop for ChannelRef {
    fn drop(&mut self) {
        // SAFETY: the reference taken by Channel::keep, given back once.
        unsafe { ffi::__ao2_ref(self.0.cast(), -1, c"handoff".as_ptr(), c"channel.rs".as_ptr(), 0, c"drop".as_ptr()) };
    }
}
