//! The dialplan application `Handoff(far[,path[,token]])`.
//!
//! It announces the channel to the controller with the AMI event `HandoffLegArrived`, then
//! services the channel (reading and dropping its frames) until the controller answers with
//! `HandoffAssign` or `HandoffRefuse`, the caller hangs up, or `assign_timeout` passes. It never
//! joins anything itself: it sets channel variables and returns, and the dialplan goes on:
//!
//! - `HANDOFF_STATUS`: `ASSIGNED` (then `ConfBridge(${HANDOFF_BRIDGE},...)`), `REFUSED`,
//!   `TIMEOUT`, `NOCONTROLLER` (handoffd is not connected), `INVALID` (bad arguments)
//! - `HANDOFF_SESSION`, `HANDOFF_BRIDGE`: set when assigned
//! - `HANDOFF_REASON`: a one-line reason for anything but `ASSIGNED`

use crate::app_args::parse_args;
use crate::asterisk::{self, Application, Channel, Level};
use crate::config;
use crate::events::{self, Arrival};
use crate::frame_clock::Path;
use crate::groups::GroupSettings;
use crate::legs::{self, Decision, WaitEnd};
use crate::media;
use crate::secret;
use std::ffi::c_int;
use std::time::{Duration, Instant};

/// How often the waiting application looks for the controller's decision.
const POLL: Duration = Duration::from_millis(20);

/// The `Handoff()` application.
pub struct Handoff;

impl Application for Handoff {
    const NAME: &'static std::ffi::CStr = c"Handoff";
    const SYNOPSIS: &'static std::ffi::CStr = c"Hand the channel to the handoff controller (dual-leg sessions, moves)";
    const DESCRIPTION: &'static std::ffi::CStr =
        c"Handoff(far[,path[,token]]): announce this leg to handoffd and wait for its decision.\n\
far: the number of the far party; path: data (default) or carrier; token: optional pairing token.\n\
Handoff(move,path,pin) reads the PIN digits (ended by #) and Handoff(move,path,ticket) the\n\
X-Handoff-Ticket header itself, so that no dial plan argument carries them.\n\
Sets HANDOFF_STATUS (ASSIGNED, REFUSED, TIMEOUT, NOCONTROLLER, INVALID), HANDOFF_SESSION,\n\
HANDOFF_BRIDGE and HANDOFF_REASON, then returns; follow it with\n\
ConfBridge(${HANDOFF_BRIDGE},handoff_bridge,handoff_user) when ASSIGNED.";

    fn exec(chan: &Channel, data: &str) -> i32 {
        let rc = run(chan, data);
        // A PIN or ticket never outlives the wait, whatever its outcome.
        secret::forget(&chan.uniqueid());
        rc
    }
}

fn finish(chan: &Channel, status: &str, reason: &str) -> c_int {
    chan.set_var("HANDOFF_STATUS", status);
    chan.set_var("HANDOFF_REASON", reason);
    0
}

fn run(chan: &Channel, data: &str) -> c_int {
    let name = chan.name();
    let args = match parse_args(data) {
        Ok(a) => a,
        Err(why) => {
            asterisk::log(Level::Error, &format!("Handoff({data}) on {name}: {why}"));
            return finish(chan, "INVALID", &why);
        }
    };
    let cfg = config::current();
    let uniqueid = chan.uniqueid();
    // A move leg's PIN or ticket is read here, not by the dial plan (secret.rs says why).
    let secret = secret::Kind::requested(&args.far, &args.token);
    if let Some(kind) = secret {
        if secret::collect(chan, &uniqueid, kind).is_err() {
            return -1; // hung up while keying the PIN
        }
    }
    {
        let mut reg = legs::registry();
        if reg.controller(Instant::now(), cfg.controller_timeout()).is_none() {
            reg.counters.no_controller += 1;
            drop(reg);
            let why =
                "handoffd is not connected to Asterisk's AMI (no HandoffHello); start it: systemctl start handoffd";
            asterisk::log(Level::Error, &format!("Handoff() on {name}: {why}"));
            return finish(chan, "NOCONTROLLER", why);
        }
        if media::CLOSING.load(std::sync::atomic::Ordering::SeqCst) {
            drop(reg);
            return finish(chan, "NOCONTROLLER", "res_handoff is unloading");
        }
        if !reg.arrive(&uniqueid) {
            return finish(chan, "INVALID", "this channel is already inside Handoff()");
        }
    }
    let caller = chan.func("CALLERID(num)");
    let endpoint = chan.func("CHANNEL(endpoint)");
    events::leg_arrived(&Arrival {
        channel: &name,
        uniqueid: &uniqueid,
        caller: &caller,
        endpoint: &endpoint,
        path: args.path,
        far: &args.far,
        token: if secret.is_some() { "" } else { &args.token },
        secret: secret.map_or("", secret::Kind::as_str),
    })
    .raise();
    let deadline = Instant::now() + Duration::from_millis(cfg.assign_timeout_ms.into());
    loop {
        // The registry lock is released here, before any channel work below.
        let decision = legs::registry().take_decision(&uniqueid);
        if let Some(decision) = decision {
            return match decision {
                Decision::Assigned { session, bridge, group, preferred, alignment } => {
                    chan.set_var("HANDOFF_SESSION", &session);
                    chan.set_var("HANDOFF_BRIDGE", &bridge);
                    let path = Path::parse(args.path).unwrap_or(Path::Data);
                    let preferred = Path::parse(&preferred).unwrap_or(Path::Data);
                    let settings = GroupSettings {
                        preferred,
                        timing: cfg.timing(),
                        // The session rule (handoffd.yaml) over handoff.conf's; only the
                        // group's first leg creates it, and both legs carry the same rule.
                        alignment: alignment.unwrap_or(cfg.alignment),
                        align_max_ns: cfg.align_max_ns(),
                        tone_after_ns: cfg.reconnect_tone_after_ns(),
                    };
                    media::attach(chan, &group, &session, &uniqueid, path, settings);
                    finish(chan, "ASSIGNED", "")
                }
                Decision::Refused { reason } => {
                    asterisk::log(Level::Notice, &format!("Handoff() on {name}: refused by handoffd: {reason}"));
                    events::leg_refused(&name, &uniqueid, &reason).raise();
                    finish(chan, "REFUSED", &reason)
                }
            };
        }
        let end = if Instant::now() >= deadline {
            Some(WaitEnd::TimedOut)
        } else if !chan.sleep(POLL.as_millis() as i32) {
            Some(WaitEnd::HungUp)
        } else {
            None
        };
        if let Some(end) = end {
            legs::registry().abandon(&uniqueid, end);
            let (reason, label) = match end {
                WaitEnd::TimedOut => ("handoffd did not place the leg within assign_timeout", "timeout"),
                WaitEnd::HungUp => ("the caller hung up while waiting", "hangup"),
            };
            events::leg_abandoned(&name, &uniqueid, label).raise();
            return match end {
                WaitEnd::TimedOut => {
                    asterisk::log(
                        Level::Warning,
                        &format!("Handoff() on {name}: {reason} ({} ms)", cfg.assign_timeout_ms),
                    );
                    finish(chan, "TIMEOUT", reason)
                }
                WaitEnd::HungUp => -1,
            };
        }
    }
}
