//! Layer 2: a small safe wrapper over [`crate::ffi`]. Everything above this file speaks Rust
//! strings and owned values; every raw pointer use here carries a `SAFETY:` note.

use crate::ffi;
use std::ffi::{c_char, c_int, CStr, CString};

/// Builds a C string, dropping interior NULs (text from outside is never trusted to be clean).
pub fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Reads a C string Asterisk gave us; NULL reads as "".
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the duration of the call.
pub unsafe fn from_c(p: *const c_char) -> String {
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

/// AMI event categories the module raises events in.
#[derive(Clone, Copy, Debug)]
pub enum EventClass {
    Call,
}

/// Raises an AMI event `name` whose headers are `headers` (each value cleaned of CR/LF).
pub fn manager_event(class: EventClass, name: &str, headers: &[(&str, &str)]) {
    let category = match class {
        EventClass::Call => ffi::EVENT_FLAG_CALL,
    };
    let mut body = String::new();
    for (k, v) in headers {
        body.push_str(k);
        body.push_str(": ");
        body.extend(v.chars().filter(|c| *c != '\r' && *c != '\n'));
        body.push_str("\r\n");
    }
    let name = cstring(name);
    let body = cstring(&body);
    // SAFETY: valid C strings; no channels (count 0, NULL array); fixed "%s" format.
    unsafe {
        ffi::__ast_manager_event_multichan(
            category,
            name.as_ptr(),
            0,
            std::ptr::null_mut(),
            c"res_handoff".as_ptr(),
            0,
            c"handoff".as_ptr(),
            c"%s".as_ptr(),
            body.as_ptr(),
        );
    }
}

/// Writes text to a CLI session.
pub fn cli_print(fd: c_int, text: &str) {
    let t = cstring(text);
    // SAFETY: fixed format string with one string argument.
    unsafe { ffi::ast_cli(fd, c"%s".as_ptr(), t.as_ptr()) }
}

/// A channel borrowed for the duration of a dialplan application call.
pub struct Channel(*mut ffi::ast_channel);

impl Channel {
    /// # Safety
    /// `chan` is the live channel Asterisk passed to an application, used only on that thread
    /// and only while the application runs.
    pub unsafe fn from_app(chan: *mut ffi::ast_channel) -> Option<Self> {
        (!chan.is_null()).then_some(Self(chan))
    }

    /// The raw channel, for the FFI calls of [`crate::media`].
    pub fn as_ptr(&self) -> *mut ffi::ast_channel {
        self.0
    }

    pub fn name(&self) -> String {
        // SAFETY: self.0 is live (constructor contract); Asterisk returns a string it owns.
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

/// What reading an Asterisk config file gave.
pub enum ConfigFile {
    /// The `(name, value, line)` variables of the requested section.
    Section(Vec<(String, String, c_int)>),
    /// The file does not exist.
    Missing,
    /// The file exists but Asterisk could not parse it.
    Invalid,
}

/// Reads section `category` of config file `file` through Asterisk's config loader.
pub fn read_config_section(file: &str, category: &str) -> ConfigFile {
    let (f, who, cat) = (cstring(file), cstring("res_handoff"), cstring(category));
    // SAFETY: valid C strings; flags 0 asks for a fresh load.
    let cfg = unsafe { ffi::ast_config_load2(f.as_ptr(), who.as_ptr(), ffi::ast_flags { flags: 0 }) };
    if cfg.is_null() {
        return ConfigFile::Missing;
    }
    if cfg == ffi::CONFIG_STATUS_FILEINVALID || cfg == ffi::CONFIG_STATUS_FILEUNCHANGED {
        return ConfigFile::Invalid;
    }
    let mut vars = Vec::new();
    // SAFETY: cfg is a real config; the variable list belongs to it and stays valid until
    // ast_config_destroy below; each node's strings are NUL-terminated.
    unsafe {
        let mut v = ffi::ast_variable_browse(cfg, cat.as_ptr());
        while !v.is_null() {
            vars.push((from_c((*v).name), from_c((*v).value), (*v).lineno));
            v = (*v).next;
        }
        ffi::ast_config_destroy(cfg);
    }
    ConfigFile::Section(vars)
}
