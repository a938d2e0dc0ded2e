//! AMI actions the controller sends to the module:
//!
//! | Action          | Headers                      | Effect                                         |
//! |-----------------|------------------------------|------------------------------------------------|
//! | `HandoffHello`  | `Controller`                 | marks handoffd connected (heartbeat)          |
//! | `HandoffAssign` | `Uniqueid`, `Session`, `Bridge`, [`Group`, `Preferred`] | the leg waiting in Handoff() joins `Bridge`; its frames are watched in device group `Group` |
//! | `HandoffRefuse` | `Uniqueid`, `Reason`         | the leg waiting in Handoff() is refused       |
//!
//! Errors are one line naming the header and the problem, e.g.
//! `HandoffAssign: Uniqueid 1700.5 is not waiting in Handoff() (gone, timed out or never there)`.

use crate::asterisk::{self, cstring};
use crate::ffi;
use crate::guard::guard;
use crate::legs::{self, DecideError, Decision};
use crate::registration::module_self;
use std::ffi::{c_int, CStr};
use std::time::Instant;

type Handler = fn(&Request) -> Result<String, String>;

const ACTIONS: &[(&CStr, c_int, ffi::ManagerAction, &CStr)] = &[
    (c"HandoffHello", ffi::EVENT_FLAG_SYSTEM, hello, c"handoffd heartbeat: marks the controller connected"),
    (c"HandoffAssign", ffi::EVENT_FLAG_CALL, assign, c"Place a leg waiting in Handoff() into a session's bridge"),
    (c"HandoffRefuse", ffi::EVENT_FLAG_CALL, refuse, c"Refuse a leg waiting in Handoff()"),
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
    m: *const ffi::message,
}

impl Request {
    fn header(&self, key: &str) -> String {
        let k = cstring(key);
        // SAFETY: m is the live message of this action call; astman_get_header does not write
        // through the key despite its non-const prototype, and returns "" when absent.
        unsafe { asterisk::from_c(ffi::astman_get_header(self.m, k.as_ptr() as *mut _)) }
    }

    fn required(&self, action: &str, key: &str) -> Result<String, String> {
        let v = self.header(key);
        if v.trim().is_empty() {
            Err(format!("{action}: missing header {key}"))
        } else {
            Ok(v.trim().to_string())
        }
    }
}

fn respond(s: *mut ffi::mansession, m: *const ffi::message, handler: Handler) -> c_int {
    let result = handler(&Request { m });
    // SAFETY: s and m are this action call's live session and message.
    unsafe {
        match result {
            Ok(msg) => ffi::astman_send_ack(s, m, cstring(&msg).as_ptr() as *mut _),
            Err(err) => ffi::astman_send_error(s, m, cstring(&err).as_ptr() as *mut _),
        }
    }
    0
}

extern "C" fn hello(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard("HandoffHello", 0, || {
        respond(s, m, |r| {
            let name = r.header("Controller");
            let name = if name.is_empty() { "unnamed controller".to_string() } else { name };
            let mut reg = legs::registry();
            reg.recv_hello(&name, Instant::now());
            Ok(format!("handoff {}; waiting={}", env!("CARGO_PKG_VERSION"), reg.waiting()))
        })
    })
}

fn decide(action: &str, uniqueid: &str, decision: Decision) -> Result<String, String> {
    match legs::registry().decide(uniqueid, decision) {
        Ok(()) => Ok(format!("{action}: delivered to {uniqueid}")),
        Err(DecideError::NotWaiting) => {
            Err(format!("{action}: Uniqueid {uniqueid} is not waiting in Handoff() (gone, timed out or never there)"))
        }
        Err(DecideError::AlreadyDecided) => Err(format!("{action}: Uniqueid {uniqueid} already has a decision")),
    }
}

extern "C" fn assign(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard("HandoffAssign", 0, || {
        respond(s, m, |r| {
            let uniqueid = r.required("HandoffAssign", "Uniqueid")?;
            let session = r.required("HandoffAssign", "Session")?;
            let bridge = r.required("HandoffAssign", "Bridge")?;
            if !bridge.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(format!("HandoffAssign: Bridge '{bridge}' must be letters, digits, _ . -"));
            }
            let group = r.header("Group");
            let group = if group.trim().is_empty() { session.clone() } else { group.trim().to_string() };
            let preferred = r.header("Preferred");
            let preferred = match preferred.trim() {
                "" => "data".to_string(),
                p @ ("data" | "carrier") => p.to_string(),
                other => return Err(format!("HandoffAssign: Preferred '{other}' must be data or carrier")),
            };
            decide("HandoffAssign", &uniqueid, Decision::Assigned { session, bridge, group, preferred })
        })
    })
}

extern "C" fn refuse(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard("HandoffRefuse", 0, || {
        respond(s, m, |r| {
            let uniqueid = r.required("HandoffRefuse", "Uniqueid")?;
            let reason = r.header("Reason");
            let reason = if reason.is_empty() { "refused by handoffd".to_string() } else { reason };
            decide("HandoffRefuse", &uniqueid, Decision::Refused { reason })
        })
    })
}
