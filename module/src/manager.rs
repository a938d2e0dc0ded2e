//! AMI actions the controller sends to the module:
//!
//! | Action             | Headers                      | Effect                                      |
//! |--------------------|------------------------------|---------------------------------------------|
//! | `HandoffChallenge` |                              | a fresh nonce for this session (`Challenge`) |
//! | `HandoffHello`     | `Controller`, `Key`          | proves the session is the controller account; marks handoffd connected (heartbeat) |
//! | `HandoffAssign`    | `Uniqueid`, `Session`, `Bridge`, [`Group`, `Preferred`, `Alignment`] | the leg waiting in Handoff() joins `Bridge`; its frames are watched in device group `Group` (`Alignment`: the session's rule over handoff.conf's `alignment`) |
//! | `HandoffRefuse`    | `Uniqueid`, `Reason`         | the leg waiting in Handoff() is refused     |
//!
//! Only a session that proved it is the controller's AMI account may send anything but
//! `HandoffChallenge` (see `ami_auth.rs`): every handler goes through [`authorized`]. Header
//! values with control characters are refused (never echoed). Errors are one line naming the
//! header and the problem, e.g.
//! `HandoffAssign: Uniqueid 1700.5 is not waiting in Handoff() (gone, timed out or never there)`.

use crate::ami_auth;
use crate::asterisk::{self, Action, Authority, Level, Module, Reply, Request};
use crate::config;
use crate::legs::{self, DecideError, Decision};
use handoff_vocab::{action, header};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Registers the module's AMI actions (`HandoffSecret` is registered by `secret.rs`).
pub fn register(module: Module) -> Result<(), ()> {
    asterisk::manager::register::<Challenge>(module)?;
    asterisk::manager::register::<Hello>(module)?;
    asterisk::manager::register::<Assign>(module)?;
    asterisk::manager::register::<Refuse>(module)
}

pub fn unregister() {
    asterisk::manager::unregister::<Challenge>();
    asterisk::manager::unregister::<Hello>();
    asterisk::manager::unregister::<Assign>();
    asterisk::manager::unregister::<Refuse>();
}

/// A header's value ("" when absent); values with control characters are refused.
fn header(r: &Request, key: &str) -> Result<String, String> {
    let v = r.header(key);
    ami_auth::check_value(r.action(), key, &v)?;
    Ok(v)
}

/// A header that must be there, trimmed.
fn required(r: &Request, key: &str) -> Result<String, String> {
    let v = header(r, key)?;
    if v.trim().is_empty() {
        Err(format!("{}: missing header {key}", r.action()))
    } else {
        Ok(v.trim().to_string())
    }
}

/// When a refusal was last logged (ms since load): at most one log line a second.
static LAST_REFUSAL_LOG: AtomicU64 = AtomicU64::new(0);

/// The one gate of every handoff action but `HandoffChallenge` (`HandoffSecret` in `secret.rs`
/// too): the session must have proved it is the controller account.
pub(crate) fn authorized(r: &Request) -> Result<(), String> {
    if r.session().proof().is_some_and(|p| p.proven()) {
        return Ok(());
    }
    let why = ami_auth::refusal(r.action(), &config::current().controller_account);
    log_refusal(&why);
    Err(why)
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

/// `HandoffChallenge`: a fresh nonce for this session (`Challenge`).
struct Challenge;

impl Action for Challenge {
    const NAME: &'static CStr = action::c::CHALLENGE;
    const AUTHORITY: Authority = Authority::System;
    const SYNOPSIS: &'static CStr = c"handoffd: a nonce to prove the controller account with";

    fn handle(r: &Request) -> Result<Reply, String> {
        let fresh = asterisk::random_hex16().and_then(|nonce| {
            let proof = r.session().proof_or_new()?;
            proof.set_nonce(&nonce);
            Some(nonce)
        });
        match fresh {
            Some(nonce) => Ok(Reply::Headers(vec![(header::CHALLENGE, nonce)])),
            None => Err("HandoffChallenge: no randomness or memory for a nonce".into()),
        }
    }
}

/// Checks `Key` against the session's pending challenge and the controller account's secret.
fn prove(r: &Request, key: &str) -> Result<(), String> {
    let account = config::current().controller_account;
    let Some(proof) = r.session().proof_or_new() else {
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

/// `HandoffHello`: proves the session is the controller account; marks handoffd connected.
struct Hello;

impl Action for Hello {
    const NAME: &'static CStr = action::c::HELLO;
    const AUTHORITY: Authority = Authority::System;
    const SYNOPSIS: &'static CStr = c"handoffd heartbeat: marks the controller connected";

    fn handle(r: &Request) -> Result<Reply, String> {
        let key = header(r, header::KEY)?;
        if key.is_empty() {
            authorized(r)?;
        } else {
            prove(r, key.trim())?;
        }
        let name = header(r, header::CONTROLLER)?;
        let name = if name.trim().is_empty() { "unnamed controller".to_string() } else { name.trim().to_string() };
        let mut reg = legs::registry();
        reg.recv_hello(&name, Instant::now());
        Ok(Reply::Ack(format!("handoff {}; waiting={}", env!("CARGO_PKG_VERSION"), reg.waiting())))
    }
}

fn decide(action: &str, uniqueid: &str, decision: Decision) -> Result<Reply, String> {
    let result = legs::registry().decide(uniqueid, decision);
    match result {
        Ok(()) => Ok(Reply::Ack(format!("{action}: delivered to {uniqueid}"))),
        Err(DecideError::NotWaiting) => {
            Err(format!("{action}: Uniqueid {uniqueid} is not waiting in Handoff() (gone, timed out or never there)"))
        }
        Err(DecideError::AlreadyDecided) => Err(format!("{action}: Uniqueid {uniqueid} already has a decision")),
    }
}

/// `HandoffAssign`: the leg waiting in Handoff() joins `Bridge`, watched in group `Group`.
struct Assign;

impl Action for Assign {
    const NAME: &'static CStr = action::c::ASSIGN;
    const AUTHORITY: Authority = Authority::Call;
    const SYNOPSIS: &'static CStr = c"Place a leg waiting in Handoff() into a session's bridge";

    fn handle(r: &Request) -> Result<Reply, String> {
        authorized(r)?;
        let (uniqueid, decision) = legs::read_assign(|key| header(r, key))?;
        decide(action::ASSIGN, &uniqueid, decision)
    }
}

/// `HandoffRefuse`: the leg waiting in Handoff() is refused.
struct Refuse;

impl Action for Refuse {
    const NAME: &'static CStr = action::c::REFUSE;
    const AUTHORITY: Authority = Authority::Call;
    const SYNOPSIS: &'static CStr = c"Refuse a leg waiting in Handoff()";

    fn handle(r: &Request) -> Result<Reply, String> {
        authorized(r)?;
        let uniqueid = required(r, header::UNIQUEID)?;
        let reason = header(r, header::REASON)?;
        let reason = if reason.trim().is_empty() { "refused by handoffd".to_string() } else { reason };
        decide(action::REFUSE, &uniqueid, Decision::Refused { reason })
    }
}
