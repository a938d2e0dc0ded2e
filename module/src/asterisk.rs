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

/// Whether the loader counts `module` as running (false after a forced unload). It takes and
/// drops a reference without the loader's list lock, so any thread may ask.
pub fn module_running(module: *mut ffi::ast_module) -> bool {
    // SAFETY: module is the loader's handle for this module, which the loader keeps allocated
    // while the library is mapped (it is freed by ast_module_unregister from .fini_array only).
    unsafe {
        let r = ffi::__ast_module_running_ref(module, c"asterisk.rs".as_ptr(), 0, c"module_running".as_ptr());
        if r.is_null() {
            return false;
        }
        ffi::__ast_module_unref(r, c"asterisk.rs".as_ptr(), 0, c"module_running".as_ptr());
        true
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

/// The payload of a voice frame handed to a frame hook: its format's name (`ulaw`, `slin16`, ...),
/// its sample count and its bytes, which the hook may overwrite in place.
pub struct Voice<'a> {
    pub format: &'a [u8],
    pub samples: usize,
    /// The RTP sequence number the frame came with (a frame read from an RTP leg).
    pub seqno: u16,
    pub data: &'a mut [u8],
}

/// The payload of `frame`; None when it has no format or no data.
///
/// # Safety
/// `frame` is a live voice frame (`AST_FRAME_VOICE`) handed to a frame hook callback, whose
/// payload nobody else touches during the callback (the channel is locked; a frame written by a
/// bridge is the channel's own copy); the returned borrow ends before the callback returns.
pub unsafe fn voice<'a>(frame: *mut ffi::ast_frame) -> Option<Voice<'a>> {
    let base = frame.cast::<u8>();
    // SAFETY: the offsets are those of struct ast_frame in the headers (build.rs), each field
    // of the type read here; the frame is live (caller's contract).
    let (format, datalen, samples, data, seqno) = unsafe {
        (
            *base.add(ffi::AST_FRAME_FORMAT_OFFSET).cast::<*const ffi::ast_format>(),
            *base.add(ffi::AST_FRAME_DATALEN_OFFSET).cast::<c_int>(),
            *base.add(ffi::AST_FRAME_SAMPLES_OFFSET).cast::<c_int>(),
            *base.add(ffi::AST_FRAME_DATA_OFFSET).cast::<*mut u8>(),
            *base.add(ffi::AST_FRAME_SEQNO_OFFSET).cast::<c_int>(),
        )
    };
    if format.is_null() || data.is_null() || datalen <= 0 || samples <= 0 {
        return None;
    }
    // SAFETY: a voice frame's format is a live ast_format, which owns its NUL-terminated name.
    let name = unsafe { ffi::ast_format_get_name(format) };
    let format = if name.is_null() {
        &b""[..]
    } else {
        // SAFETY: non-NULL and NUL-terminated, alive as long as the format (the frame holds it).
        unsafe { CStr::from_ptr(name) }.to_bytes()
    };
    // SAFETY: data points to datalen bytes of the frame's payload, exclusively ours during the
    // callback (caller's contract).
    let data = unsafe { std::slice::from_raw_parts_mut(data, datalen as usize) };
    Some(Voice { format, samples: samples as usize, seqno: seqno as u16, data })
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

/// What the module keeps on a manager session: the pending challenge and whether the session
/// proved it is the controller account. Plain C data, allocated with `calloc` and freed by
/// libc's `free` when Asterisk ends the session: nothing in it points into the module, so a
/// session may outlive an unload.
#[repr(C)]
pub struct SessionProof {
    nonce: [u8; 32],
    nonce_len: u8,
    proven: u8,
}

/// A session's [`SessionProof`], read and written through its pointer (no Rust reference to
/// the C memory outlives a call).
pub struct Proof<'a>(std::ptr::NonNull<SessionProof>, std::marker::PhantomData<&'a AmiSession>);

impl Proof<'_> {
    fn with<R>(&self, f: impl FnOnce(&mut SessionProof) -> R) -> R {
        // SAFETY: the pointer is the session's calloc'ed SessionProof, alive while the session
        // (and so this action call, which borrows it) lasts; only this thread touches it, and the
        // &mut lives only for `f`.
        f(unsafe { &mut *self.0.as_ptr() })
    }

    /// Stores a fresh challenge (any earlier one is forgotten).
    pub fn set_nonce(&self, nonce: &str) {
        self.with(|p| {
            let n = nonce.len().min(p.nonce.len());
            p.nonce[..n].copy_from_slice(&nonce.as_bytes()[..n]);
            p.nonce_len = n as u8;
        })
    }

    /// Takes the pending challenge: each is used at most once.
    pub fn take_nonce(&self) -> Option<String> {
        self.with(|p| {
            let n = usize::from(std::mem::take(&mut p.nonce_len));
            (n > 0).then(|| String::from_utf8_lossy(&p.nonce[..n]).into_owned())
        })
    }

    pub fn proven(&self) -> bool {
        self.with(|p| p.proven != 0)
    }

    pub fn set_proven(&self, yes: bool) {
        self.with(|p| p.proven = u8::from(yes))
    }
}

/// The datastore type of [`SessionProof`], made once per mapping of the module and never freed
/// (it must stay valid for sessions that outlive an unload). After the module is loaded anew,
/// older sessions' proofs are of another type and no longer count: they prove themselves again.
fn proof_info() -> *const ffi::ast_datastore_info {
    static INFO: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *INFO.get_or_init(|| {
        let type_ = Box::leak(c"res_handoff controller proof".to_owned().into_boxed_c_str()).as_ptr();
        let free: unsafe extern "C" fn(*mut std::ffi::c_void) = libc::free;
        let info = Box::leak(Box::new(ffi::ast_datastore_info {
            type_,
            duplicate: None,
            destroy: Some(free),
            chan_fixup: None,
            chan_breakdown: None,
        }));
        info as *const ffi::ast_datastore_info as usize
    }) as *const ffi::ast_datastore_info
}

/// The manager session an AMI action came from.
pub struct AmiSession(*mut ffi::mansession);

impl AmiSession {
    /// # Safety
    /// `s` is the live session Asterisk passed to an action callback, used only during it.
    pub unsafe fn from_action(s: *mut ffi::mansession) -> Self {
        Self(s)
    }

    /// The module's proof record on this session, if it has one.
    pub fn proof(&self) -> Option<Proof<'_>> {
        // SAFETY: self.0 is live (constructor contract); a session's datastores are only touched
        // by its own thread, which is running this action; the info pointer is never freed.
        let ds = unsafe { ffi::astman_datastore_find(self.0, proof_info(), std::ptr::null()) };
        if ds.is_null() {
            return None;
        }
        // SAFETY: ds is our datastore; its data is the SessionProof we calloc'ed (never NULL).
        let data = unsafe { (*ds).data.cast::<SessionProof>() };
        std::ptr::NonNull::new(data).map(|p| Proof(p, std::marker::PhantomData))
    }

    /// The proof record, created on first use; None only when memory ran out.
    pub fn proof_or_new(&self) -> Option<Proof<'_>> {
        if self.proof().is_none() {
            // SAFETY: calloc returns zeroed memory or NULL; a zeroed SessionProof is valid.
            let data = unsafe { libc::calloc(1, std::mem::size_of::<SessionProof>()) };
            if data.is_null() {
                return None;
            }
            // SAFETY: info stays valid for the process; NULL uid and NULL module (the session
            // must not hold the module loaded); fixed C strings for the allocation tag.
            let ds = unsafe {
                ffi::__ast_datastore_alloc(
                    proof_info(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    c"manager.rs".as_ptr(),
                    0,
                    c"proof".as_ptr(),
                )
            };
            if ds.is_null() {
                // SAFETY: data came from calloc above and is not referenced anywhere.
                unsafe { libc::free(data) };
                return None;
            }
            // SAFETY: ds is a fresh datastore we own until it is added to the session, which
            // then frees it (and data, through the info's destroy) when the session ends.
            unsafe {
                (*ds).data = data;
                ffi::astman_datastore_add(self.0, ds);
            }
        }
        self.proof()
    }

    /// Answers `Response: Success` with extra headers (values cleaned of control characters).
    pub fn send_success(&self, m: *const ffi::message, headers: &[(&str, &str)]) {
        let clean = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
        let k = cstring("ActionID");
        // SAFETY: m is the live message of this action; astman_get_header does not write through
        // the key and returns "" when absent.
        let id = unsafe { from_c(ffi::astman_get_header(m, k.as_ptr() as *mut _)) };
        let mut text = String::from("Response: Success\r\n");
        if !id.is_empty() {
            text.push_str(&format!("ActionID: {}\r\n", clean(&id)));
        }
        for (name, value) in headers {
            text.push_str(&format!("{name}: {}\r\n", clean(value)));
        }
        text.push_str("\r\n");
        let t = cstring(&text);
        // SAFETY: live session; fixed "%s" format with one C string.
        unsafe { ffi::astman_append(self.0, c"%s".as_ptr(), t.as_ptr()) }
    }
}

/// A 16-byte random nonce in hex (from the kernel's getrandom); None if it failed.
pub fn random_hex16() -> Option<String> {
    let mut buf = [0u8; 16];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n == buf.len() as isize).then(|| crate::ami_auth::hex(&buf))
}

/// The `secret` of section `account` in manager.conf (with its includes), if there is one.
pub fn manager_secret(account: &str) -> Option<String> {
    match read_config_section("manager.conf", account) {
        ConfigFile::Section(vars) => {
            vars.into_iter().find(|(k, _, _)| k.trim().eq_ignore_ascii_case("secret")).map(|(_, v, _)| v)
        }
        _ => None,
    }
}
