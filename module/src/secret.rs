//! The secrets a leg presents to take a call over — the PIN its user keys in after `*86`, the
//! ticket in its `X-Handoff-Ticket` SIP header — collected inside the module so that none of
//! Asterisk's own traces carries them: no dial plan argument (`Executing [...] Handoff(...)` at
//! verbose 3, the `Newexten` event's `AppData`), no channel variable (`VarSet`), no `Read()`
//! ("User entered '...'") and no broadcast AMI event.
//!
//! ```text
//!   Handoff(move,data,pin)     reads the digits itself (ast_app_getdata, no prompt, `#` ends)
//!   Handoff(move,data,ticket)  reads PJSIP_HEADER(read,X-Handoff-Ticket) itself
//!        │ holds the value here, keyed by the channel's Uniqueid
//!        ▼
//!   HandoffLegArrived ... Secret: pin|ticket      (broadcast: names the kind only)
//!   handoffd ──HandoffSecret Uniqueid──▶ response Message: pin-<digits> | ticket-<hex>
//!                                        (to the requesting AMI session only; single use)
//! ```
//!
//! A held secret is spent by its first `HandoffSecret` and forgotten when the leg leaves
//! `Handoff()`, whatever the outcome; at most one is held per channel inside `Handoff()`.

use handoff_vocab::value;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// The far "number" of a leg that asks to take its user's call over (`Handoff(move,...)`).
pub const MOVE_FAR: &str = "move";
/// Most PIN digits read (as the shipped dial plan's `Read()` did).
pub const PIN_MAX_DIGITS: usize = 12;
/// How long the PIN read waits for a digit, in ms (as the shipped dial plan's `Read()` did).
pub const PIN_DIGIT_TIMEOUT_MS: i32 = 10_000;
/// The header a ticket arrives in, read with Asterisk's `PJSIP_HEADER()`.
pub const TICKET_HEADER_FUNCTION: &str = "PJSIP_HEADER(read,X-Handoff-Ticket)";

/// Which secret a move leg presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Digits keyed on the phone after `*86`.
    Pin,
    /// A ticket from handoffd's API, in the `X-Handoff-Ticket` header.
    Ticket,
}

impl Kind {
    /// The secret `Handoff(far,path,token)` asks the module to collect: only for `far` = `move`
    /// and `token` = `pin` or `ticket`; any other token is a pairing token, passed as is.
    pub fn requested(far: &str, token: &str) -> Option<Kind> {
        match (far, token) {
            (MOVE_FAR, "pin") => Some(Kind::Pin),
            (MOVE_FAR, "ticket") => Some(Kind::Ticket),
            _ => None,
        }
    }

    /// The value of the `Secret` header of `HandoffLegArrived`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pin => value::SECRET_PIN,
            Kind::Ticket => value::SECRET_TICKET,
        }
    }

    /// What handoffd receives from `HandoffSecret`: `pin-<digits>` or `ticket-<hex>`, with
    /// everything else in `raw` dropped (handoffd checks length and value and says what is
    /// wrong).
    pub fn value(self, raw: &str) -> String {
        let (prefix, keep): (&str, fn(&char) -> bool) = match self {
            Kind::Pin => (value::PIN_PREFIX, |c| c.is_ascii_digit()),
            Kind::Ticket => (value::TICKET_PREFIX, |c| c.is_ascii_hexdigit()),
        };
        let mut v = String::from(prefix);
        v.extend(raw.chars().filter(keep).take(64));
        v
    }
}

/// Secrets held for legs inside `Handoff()`, by Uniqueid.
static HELD: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn held() -> std::sync::MutexGuard<'static, HashMap<String, String>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds `value` for the leg `uniqueid` until handoffd fetches it or the leg leaves.
pub fn hold(uniqueid: &str, value: String) {
    held().insert(uniqueid.to_string(), value);
}

/// Hands out the secret of `uniqueid` once.
pub fn take(uniqueid: &str) -> Option<String> {
    held().remove(uniqueid)
}

/// The leg left `Handoff()`: its secret, if still held, is dropped.
pub fn forget(uniqueid: &str) {
    held().remove(uniqueid);
}

#[cfg(not(test))]
pub(crate) use ami::{collect, Fetch};

/// The Asterisk side: reading the secret on the channel, and the `HandoffSecret` action.
#[cfg(not(test))]
mod ami {
    use super::{hold, take, Kind, PIN_DIGIT_TIMEOUT_MS, PIN_MAX_DIGITS, TICKET_HEADER_FUNCTION};
    use crate::asterisk::{Action, Authority, Channel, Reply, Request};
    use handoff_vocab::{action, header};
    use std::ffi::CStr;

    /// Collects the secret of kind `kind` on `chan` and holds it for handoffd; `Err(())` when the
    /// channel hung up while the PIN was keyed.
    pub(crate) fn collect(chan: &Channel, uniqueid: &str, kind: Kind) -> Result<(), ()> {
        let raw = match kind {
            Kind::Pin => chan.read_digits(PIN_MAX_DIGITS, PIN_DIGIT_TIMEOUT_MS).ok_or(())?,
            Kind::Ticket => chan.func(TICKET_HEADER_FUNCTION),
        };
        hold(uniqueid, kind.value(&raw));
        Ok(())
    }

    /// `HandoffSecret` with `Uniqueid`: answers `Response: Success` with the secret as its
    /// `Message`, to this AMI session only (an action's response is never broadcast), and
    /// forgets it.
    pub(crate) struct Fetch;

    impl Action for Fetch {
        const NAME: &'static CStr = action::c::SECRET;
        const AUTHORITY: Authority = Authority::System;
        const SYNOPSIS: &'static CStr =
            c"Fetch (once) the PIN or ticket a leg waiting in Handoff() presented; answered to the requester only";

        fn handle(r: &Request) -> Result<Reply, String> {
            // Only the session that proved it is the controller account may fetch a secret.
            crate::manager::authorized(r)?;
            let uniqueid = r.header(header::UNIQUEID);
            let uniqueid = uniqueid.trim();
            if uniqueid.is_empty() {
                Err("HandoffSecret: missing header Uniqueid".to_string())
            } else if !uniqueid.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                Err("HandoffSecret: Uniqueid must be letters, digits, . _ -".to_string())
            } else {
                take(uniqueid).map(Reply::Ack).ok_or_else(|| {
                    format!(
                        "HandoffSecret: Uniqueid {uniqueid} holds no secret (already fetched, left Handoff(), or presented none)"
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_move_legs_ask_for_a_secret() {
        assert_eq!(Kind::requested("move", "pin"), Some(Kind::Pin));
        assert_eq!(Kind::requested("move", "ticket"), Some(Kind::Ticket));
        assert_eq!(Kind::requested("2000", "pin"), None, "a pairing token named pin");
        assert_eq!(Kind::requested("move", "pin-2468"), None, "the old form is passed on as before");
        assert_eq!(Kind::requested("move", ""), None);
    }

    #[test]
    fn values_keep_only_what_the_kind_allows() {
        assert_eq!(Kind::Pin.value("2468"), "pin-2468");
        assert_eq!(Kind::Pin.value("24*6#8"), "pin-2468");
        assert_eq!(Kind::Pin.value(""), "pin-");
        assert_eq!(
            Kind::Ticket.value(" 0123456789abcdefABCDEF0123456789\r\n"),
            "ticket-0123456789abcdefABCDEF0123456789"
        );
        assert_eq!(Kind::Ticket.value("zz;x"), "ticket-");
        assert_eq!(Kind::Ticket.value(&"a".repeat(500)).len(), "ticket-".len() + 64);
    }

    #[test]
    fn a_secret_is_handed_out_once_and_forgotten_with_its_leg() {
        hold("t.1", "pin-2468".into());
        hold("t.2", "ticket-ab".into());
        assert_eq!(take("t.1").as_deref(), Some("pin-2468"));
        assert_eq!(take("t.1"), None, "single use");
        forget("t.2");
        assert_eq!(take("t.2"), None);
    }
}
