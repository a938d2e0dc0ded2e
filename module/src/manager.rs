//! AMI actions the controller sends to the module:
//!
//! | Action             | Headers                      | Effect                                      |
//! |--------------------|------------------------------|---------------------------------------------|
//! | `HandoffChallenge` |                              | a fresh nonce for this session (`Challenge`) |
//! | `HandoffHello`     | `Controller`, `Key`          | proves the session is the controller account; marks handoffd connected (heartbeat) |
//! | `HandoffAssign`    | `Uniqueid`, `Session`, `Bridge`, [`Group`, `Preferred`] | the leg waiting in Handoff() joins `Bridge`; its frames are watched in device group `Group` |
//! | `HandoffRefuse`    | `Uniqueid`, `Reason`         | the leg waiting in Handoff() is refused     |
//!
//! Only a session that proved it is the controller's AMI account may send anything but
//! `HandoffChallenge` (see `ami_auth.rs`): every handler goes through [`authorized`]. Header
//! values with control characters are refused (never echoed). Errors are one line naming the
//! header and the problem, e.g.
//! `HandoffAssign: Uniqueid 1700.5 is not waiting in Handoff() (gone, timed out or never there)`.

use crate::ami_auth;
use crate::asterisk::{self, cstring, AmiSession, Level};
use crate::ffi;
use crate::guard::guard;
use crate::legs::{self, DecideError, Decision};
use crate::registration::{config, module_self};
use handoff_vocab::{action, header};
use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

type Handler = fn(&Request) -> Result<String, String>;

const ACTIONS: &[(&CStr, c_int, ffi::ManagerAction, &CStr)] = &[
    (
        action::c::CHALLENGE,
        ffi::EVENT_FLAG_SYSTEM,
        challenge,
        c"handoffd: a nonce to prove the controller account with",
    ),
    (action::c::HELLO, ffi::EVENT_FLAG_SYSTEM, hello, c"handoffd heartbeat: marks the controller connected"),
    (action::c::ASSIGN, ffi::EVENT_FLAG_CALL, assign, c"Place a leg waiting in Handoff() into a session's bridge"),
    (action::c::REFUSE, ffi::EVENT_FLAG_CALL, refuse, c"Refuse a leg waiting in Handoff()"),
];

pub fn register() -> Result<(), ()> {
    for (name, authority, func, synopsis) in ACTIONS {
        // SAFETY: static C strings, guarded handlers, module_self() set by the loader.
        let rc = unsafe {
            ffi::ast_manager_register2(
                name.as_ptr(),
                *authority,
                *func,
                module_self(),
                synopsis.as_ptr(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(());
        }
    }
    Ok(())
}

pub fn unregister() {
    for (name, ..) in ACTIONS {
        // SAFETY: static C string.
        unsafe { ffi::ast_manager_unregister(name.as_ptr()) };
    }
}

/// One AMI action as the handlers see it.
struct Request {
    action: &'static str,
    session: AmiSession,
    m: *const ffi::message,
}

impl Request {
    /// A header's value ("" when absent); values with control characters are refused.
    fn header(&self, key: &str) -> Result<String, String> {
        let k = cstring(key);
        // SAFETY: m is the live message of this action call; astman_get_header does not write
        // through the key despite its non-const prototype, and returns "" when absent.
        let v = unsafe { asterisk::from_c(ffi::astman_get_header(self.m, k.as_ptr() as *mut _)) };
        ami_auth::check_value(self.action, key, &v)?;
        Ok(v)
    }

    fn required(&self, key: &str) -> Result<String, String> {
        let v = self.header(key)?;
        if v.trim().is_empty() {
            Err(format!("{}: missing header {key}", self.action))
        } else {
            Ok(v.trim().to_string())
        }
    }
}

/// When a refusal was last logged (ms since load): at most one log line a second.
static LAST_REFUSAL_LOG: AtomicU64 = AtomicU64::new(0);

/// The one gate of every handoff action but `HandoffChallenge`: the session must have proved
/// it is the controller account.
fn authorized(r: &Request) -> Result<(), String> {
    if r.session.proof().is_some_and(|p| p.proven()) {
        return Ok(());
    }
    let why = ami_auth::refusal(r.action, &config().controller_account);
    log_refusal(&why);
    Err(why)
}

/// The same gate for an action registered outside this file (`HandoffSecret` in `secret.rs`).
pub(crate) fn authorize(action: &'static str, s: *mut ffi::mansession, m: *const ffi::message) -> Result<(), String> {
    // SAFETY: s is the live session of this action call, used only during it.
    let session = unsafe { AmiSession::from_action(s) };
    authorized(&Request { action, session, m })
}

fn log_refusal(why: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
    let last = LAST_REFUSAL_LOG.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= 1000;
    if due && LAST_REFUSAL_LOG.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        asterisk::log(Level::Warning, why);
    }
}

fn respond(action: &'static str, s: *mut ffi::mansession, m: *const ffi::message, handler: Handler) -> c_int {
    // SAFETY: s is the live session of this action call, used only during it.
    let session = unsafe { AmiSession::from_action(s) };
    let result = handler(&Request { action, session, m });
    // SAFETY: s and m are this action call's live session and message.
    unsafe {
        match result {
            Ok(msg) => ffi::astman_send_ack(s, m, cstring(&msg).as_ptr() as *mut _),
            Err(err) => ffi::astman_send_error(s, m, cstring(&err).as_ptr() as *mut _),
        }
    }
    0
}

extern "C" fn challenge(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard(action::CHALLENGE, 0, || {
        // SAFETY: s is the live session of this action call, used only during it.
        let session = unsafe { AmiSession::from_action(s) };
        let fresh = asterisk::random_hex16().and_then(|nonce| {
            let proof = session.proof_or_new()?;
            proof.set_nonce(&nonce);
            Some(nonce)
        });
        match fresh {
            Some(nonce) => session.send_success(m, &[(header::CHALLENGE, &nonce)]),
            // SAFETY: s and m are this action call's live session and message.
            None => unsafe {
                ffi::astman_send_error(
                    s,
                    m,
                    c"HandoffChallenge: no randomness or memory for a nonce".as_ptr() as *mut _,
                )
            },
        }
        0
    })
}

/// Checks `Key` against the session's pending challenge and the controller account's secret.
fn prove(r: &Request, key: &str) -> Result<(), String> {
    let account = config().controller_account;
    let Some(proof) = r.session.proof_or_new() else {
        return Err("HandoffHello: out of memory".into());
    };
    proof.set_proven(false);
    let Some(nonce) = proof.take_nonce() else {
        return Err("HandoffHello: no challenge pending on this AMI session: send HandoffChallenge first".into());
    };
    let Some(secret) = asterisk::manager_secret(&account) else {
        let why = format!(
            "HandoffHello: the controller account '{account}' (controller_account in handoff.conf) has no secret in manager.conf; refused"
        );
        log_refusal(&why);
        return Err(why);
    };
    if !ami_auth::keys_match(key, &ami_auth::expected_key(&nonce, &secret)) {
        let why = format!(
            "HandoffHello: Key does not prove the secret of AMI account '{account}' (controller_account in handoff.conf); refused"
        );
        log_refusal(&why);
        return Err(why);
    }
    proof.set_proven(true);
    Ok(())
}

extern "C" fn hello(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard(action::HELLO, 0, || {
        respond(action::HELLO, s, m, |r| {
            let key = r.header(header::KEY)?;
            if key.is_empty() {
                authorized(r)?;
            } else {
                prove(r, key.trim())?;
            }
            let name = r.header(header::CONTROLLER)?;
            let name = if name.trim().is_empty() { "unnamed controller".to_string() } else { name.trim().to_string() };
            let mut reg = legs::registry();
            reg.recv_hello(&name, Instant::now());
            Ok(format!("handoff {}; waiting={}", env!("CARGO_PKG_VERSION"), reg.waiting()))
        })
    })
}

fn decide(action: &str, uniqueid: &str, decision: Decision) -> Result<String, String> {
    let result = legs::registry().decide(uniqueid, decision);
    match result {
        Ok(()) => Ok(format!("{action}: delivered to {uniqueid}")),
        Err(DecideError::NotWaiting) => {
            Err(format!("{action}: Uniqueid {uniqueid} is not waiting in Handoff() (gone, timed out or never there)"))
        }
        Err(DecideError::AlreadyDecided) => Err(format!("{action}: Uniqueid {uniqueid} already has a decision")),
    }
}

extern "C" fn assign(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard(action::ASSIGN, 0, || {
        respond(action::ASSIGN, s, m, |r| {
            authorized(r)?;
            let uniqueid = r.required(header::UNIQUEID)?;
            let session = r.required(header::SESSION)?;
            let bridge = r.required(header::BRIDGE)?;
            if !bridge.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(format!("HandoffAssign: Bridge '{bridge}' must be letters, digits, _ . -"));
            }
            let group = r.header(header::GROUP)?;
            let group = if group.trim().is_empty() { session.clone() } else { group.trim().to_string() };
            let preferred = r.header(header::PREFERRED)?;
            let preferred = match preferred.trim() {
                "" => "data".to_string(),
                p @ ("data" | "carrier") => p.to_string(),
                other => return Err(format!("HandoffAssign: Preferred '{other}' must be data or carrier")),
            };
            decide(action::ASSIGN, &uniqueid, Decision::Assigned { session, bridge, group, preferred })
        })
    })
}

extern "C" fn refuse(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard(action::REFUSE, 0, || {
        respond(action::REFUSE, s, m, |r| {
            authorized(r)?;
            let uniqueid = r.required(header::UNIQUEID)?;
            let reason = r.header(header::REASON)?;
            let reason = if reason.trim().is_empty() { "refused by handoffd".to_string() } else { reason };
            decide(action::REFUSE, &uniqueid, Decision::Refused { reason })
        })
    })
}
