//! AMI: actions ([`Action`]) registered with Asterisk's manager and answered, guarded, from the
//! [`Request`] they came in; the manager session's proof record ([`AmiSession`], [`Proof`]);
//! events raised to every listener ([`manager_event`]); the secret of a manager account.

use super::config::{read_config_section, ConfigFile};
use super::ffi;
use super::{cstring, from_c, Module};
use crate::guard::guard;
use std::ffi::{c_int, CStr};
use std::marker::PhantomData;

/// Who may send an action / receive an event (manager.conf's read/write classes).
#[derive(Clone, Copy, Debug)]
pub enum Authority {
    System,
    Call,
}

impl Authority {
    fn flag(self) -> c_int {
        match self {
            Authority::System => ffi::EVENT_FLAG_SYSTEM,
            Authority::Call => ffi::EVENT_FLAG_CALL,
        }
    }
}

/// AMI event categories the module raises events in.
#[derive(Clone, Copy, Debug)]
pub enum EventClass {
    Call,
}

/// A successful answer to an action.
pub enum Reply {
    /// `Response: Success` with the text as its `Message`.
    Ack(String),
    /// `Response: Success` with these extra headers (values cleaned of control characters).
    Headers(Vec<(&'static str, String)>),
}

/// An AMI action.
pub trait Action {
    const NAME: &'static CStr;
    const AUTHORITY: Authority;
    const SYNOPSIS: &'static CStr;
    /// Answers one request; Err is sent as `Response: Error` with the text as its `Message`.
    fn handle(request: &Request) -> Result<Reply, String>;
}

/// Registers `A` as an AMI action of `module`.
pub fn register<A: Action>(module: Module) -> Result<(), ()> {
    // SAFETY: static C strings, a guarded handler, the loader's handle.
    let rc = unsafe {
        ffi::ast_manager_register2(
            A::NAME.as_ptr(),
            A::AUTHORITY.flag(),
            action::<A>,
            module.as_ptr(),
            A::SYNOPSIS.as_ptr(),
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(())
    }
}

pub fn unregister<A: Action>() {
    // SAFETY: static C string (unregistering an unknown action is harmless).
    unsafe { ffi::ast_manager_unregister(A::NAME.as_ptr()) };
}

extern "C" fn action<A: Action>(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    let name = A::NAME.to_str().unwrap_or("AMI action");
    guard(name, 0, || {
        let request = Request { name, session: AmiSession(s, PhantomData), m };
        let result = A::handle(&request);
        // SAFETY: s and m are this action call's live session and message; the strings are
        // valid C strings for the duration of the calls.
        unsafe {
            match result {
                Ok(Reply::Ack(msg)) => ffi::astman_send_ack(s, m, cstring(&msg).as_ptr() as *mut _),
                Ok(Reply::Headers(headers)) => request.send_success(&headers),
                Err(err) => ffi::astman_send_error(s, m, cstring(&err).as_ptr() as *mut _),
            }
        }
        0
    })
}

/// One AMI action call: its message and the session it came from (alive during the call only).
pub struct Request<'a> {
    name: &'static str,
    session: AmiSession<'a>,
    m: *const ffi::message,
}

impl Request<'_> {
    /// The action's name.
    pub fn action(&self) -> &'static str {
        self.name
    }

    /// A header's value as sent ("" when absent).
    pub fn header(&self, key: &str) -> String {
        let k = cstring(key);
        // SAFETY: m is the live message of this action call; astman_get_header does not write
        // through the key despite its non-const prototype, and returns "" when absent.
        unsafe { from_c(ffi::astman_get_header(self.m, k.as_ptr() as *mut _)) }
    }

    pub fn session(&self) -> &AmiSession<'_> {
        &self.session
    }

    /// Answers `Response: Success` with extra headers (values cleaned of control characters).
    fn send_success(&self, headers: &[(&str, String)]) {
        let clean = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
        let id = self.header("ActionID");
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
        unsafe { ffi::astman_append(self.session.0, c"%s".as_ptr(), t.as_ptr()) }
    }
}

/// What the module keeps on a manager session: the pending challenge and whether the session
/// proved it is the controller account. Plain C data, allocated with `calloc` and freed by
/// libc's `free` when Asterisk ends the session: nothing in it points into the module, so a
/// session may outlive an unload.
#[repr(C)]
struct SessionProof {
    nonce: [u8; 32],
    nonce_len: u8,
    proven: u8,
}

/// A session's proof record, read and written through its pointer (no Rust reference to the C
/// memory outlives a call).
pub struct Proof<'a>(std::ptr::NonNull<SessionProof>, PhantomData<&'a AmiSession<'a>>);

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

/// The manager session an AMI action came from (only built for the duration of the call).
pub struct AmiSession<'a>(*mut ffi::mansession, PhantomData<&'a ()>);

impl AmiSession<'_> {
    /// The module's proof record on this session, if it has one.
    pub fn proof(&self) -> Option<Proof<'_>> {
        // SAFETY: self.0 is live (see the type); a session's datastores are only touched by its
        // own thread, which is running this action; the info pointer is never freed.
        let ds = unsafe { ffi::astman_datastore_find(self.0, proof_info(), std::ptr::null()) };
        if ds.is_null() {
            return None;
        }
        // SAFETY: ds is our datastore; its data is the SessionProof we calloc'ed (never NULL).
        let data = unsafe { (*ds).data.cast::<SessionProof>() };
        std::ptr::NonNull::new(data).map(|p| Proof(p, PhantomData))
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

/// The `secret` of section `account` in manager.conf (with its includes), if there is one.
pub fn manager_secret(account: &str) -> Option<String> {
    match read_config_section("manager.conf", account) {
        ConfigFile::Section(vars) => {
            vars.into_iter().find(|(k, _, _)| k.trim().eq_ignore_ascii_case("secret")).map(|(_, v, _)| v)
        }
        _ => None,
    }
}
