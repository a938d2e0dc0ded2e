//! Which channels are waiting inside `Handoff()` for the controller's decision, and whether the
//! controller (`handoffd`) is there at all, and the decision a `HandoffAssign`'s headers carry
//! ([`read_assign`]). Pure Rust, no Asterisk calls: the application, the AMI actions and the CLI
//! share it through [`REGISTRY`]. Nothing here runs in a frame
//! callback, so a mutex held for a few instructions is fine.
//!
//! ```text
//!   Handoff() ──arrive──▶ Waiting ──HandoffAssign──▶ Assigned ──(app returns)──▶ gone
//!                            │ └────HandoffRefuse───▶ Refused  ──(app returns)──▶ gone
//!                            └──timeout / hangup──────────────────────────────▶ gone
//! ```

use handoff_vocab::{action, header, Alignment};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The controller's answer for one waiting leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Join the conference `bridge` of session `session`; the leg's frames are watched in
    /// device group `group` whose preferred path is `preferred` ("data" or "carrier") and whose
    /// legs share the mix as `alignment` says (the session rule; None: handoff.conf's).
    Assigned { session: String, bridge: String, group: String, preferred: String, alignment: Option<Alignment> },
    /// Do not join; `reason` is told to the dialplan and the log.
    Refused { reason: String },
}

/// The leg (`Uniqueid`) and decision of a `HandoffAssign` from its headers: `get` gives a
/// header's value ("" when absent) or refuses it (the AMI handler checks values with `ami_auth::check_value`). Every
/// error is one line naming the header.
pub fn read_assign(get: impl Fn(&str) -> Result<String, String>) -> Result<(String, Decision), String> {
    let required = |key: &str| -> Result<String, String> {
        let v = get(key)?;
        match v.trim() {
            "" => Err(format!("{}: missing header {key}", action::ASSIGN)),
            v => Ok(v.to_string()),
        }
    };
    let uniqueid = required(header::UNIQUEID)?;
    let session = required(header::SESSION)?;
    let bridge = required(header::BRIDGE)?;
    if !bridge.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!("HandoffAssign: Bridge '{bridge}' must be letters, digits, _ . -"));
    }
    let group = get(header::GROUP)?;
    let group = if group.trim().is_empty() { session.clone() } else { group.trim().to_string() };
    let preferred = match get(header::PREFERRED)?.trim() {
        "" => "data".to_string(),
        p @ ("data" | "carrier") => p.to_string(),
        other => return Err(format!("HandoffAssign: Preferred '{other}' must be data or carrier")),
    };
    // The session rule (handoffd.yaml's `sessions.alignment`); absent, handoff.conf's applies.
    let alignment = match get(header::ALIGNMENT)?.trim() {
        "" => None,
        a => Some(Alignment::parse(a).ok_or_else(|| {
            format!("HandoffAssign: Alignment '{a}' must be aligned, low-latency or switching (or absent: alignment in handoff.conf decides)")
        })?),
    };
    Ok((uniqueid, Decision::Assigned { session, bridge, group, preferred, alignment }))
}

/// Why a decision could not be delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum DecideError {
    /// No channel with that Uniqueid is waiting in Handoff() (gone, timed out or never there).
    NotWaiting,
    /// That channel already has a decision.
    AlreadyDecided,
}

/// How a wait in `Handoff()` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    TimedOut,
    HungUp,
}

/// Running totals shown by `handoff show status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub arrived: u64,
    pub assigned: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub hung_up: u64,
    pub no_controller: u64,
}

#[derive(Debug, Default)]
pub struct Registry {
    waiting: HashMap<String, Option<Decision>>,
    last_hello: Option<Instant>,
    controller_name: String,
    pub counters: Counters,
}

/// The one registry of the loaded module.
pub static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// Locks the registry; a poisoned lock (a panic while held, caught by the guard) is recovered,
/// since every update below leaves the registry consistent.
pub fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// `HandoffHello` from the controller.
    pub fn recv_hello(&mut self, name: &str, now: Instant) {
        self.last_hello = Some(now);
        self.controller_name = name.to_string();
    }

    /// Whether a controller said hello within `timeout`; its name and how long ago if so.
    pub fn controller(&self, now: Instant, timeout: Duration) -> Option<(&str, Duration)> {
        let ago = now.saturating_duration_since(self.last_hello?);
        (ago <= timeout).then_some((self.controller_name.as_str(), ago))
    }

    /// Forget the controller (module reload, or it said goodbye).
    pub fn forget_controller(&mut self) {
        self.last_hello = None;
    }

    /// A channel entered `Handoff()`; false if that Uniqueid is already waiting.
    pub fn arrive(&mut self, uniqueid: &str) -> bool {
        if self.waiting.contains_key(uniqueid) {
            return false;
        }
        self.waiting.insert(uniqueid.to_string(), None);
        self.counters.arrived += 1;
        true
    }

    /// The controller decided for a waiting channel.
    pub fn decide(&mut self, uniqueid: &str, decision: Decision) -> Result<(), DecideError> {
        match self.waiting.get_mut(uniqueid) {
            None => Err(DecideError::NotWaiting),
            Some(Some(_)) => Err(DecideError::AlreadyDecided),
            Some(slot) => {
                *slot = Some(decision);
                Ok(())
            }
        }
    }

    /// The waiting application takes its decision, if one came; the channel stops waiting.
    pub fn take_decision(&mut self, uniqueid: &str) -> Option<Decision> {
        let decision = self.waiting.get(uniqueid)?.clone()?;
        self.waiting.remove(uniqueid);
        match decision {
            Decision::Assigned { .. } => self.counters.assigned += 1,
            Decision::Refused { .. } => self.counters.refused += 1,
        }
        Some(decision)
    }

    /// The wait ended without a decision.
    pub fn abandon(&mut self, uniqueid: &str, why: WaitEnd) {
        if self.waiting.remove(uniqueid).is_some() {
            match why {
                WaitEnd::TimedOut => self.counters.timed_out += 1,
                WaitEnd::HungUp => self.counters.hung_up += 1,
            }
        }
    }

    /// How many channels are inside `Handoff()` right now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned() -> Decision {
        Decision::Assigned {
            session: "s1".into(),
            bridge: "handoff-s1".into(),
            group: "s1".into(),
            preferred: "data".into(),
            alignment: None,
        }
    }

    #[test]
    fn decision_reaches_the_waiting_leg_once() {
        let mut r = Registry::default();
        assert!(r.arrive("1.1"));
        assert!(!r.arrive("1.1"), "a Uniqueid waits once");
        assert_eq!(r.take_decision("1.1"), None);
        r.decide("1.1", assigned()).unwrap();
        assert_eq!(r.decide("1.1", assigned()), Err(DecideError::AlreadyDecided));
        assert_eq!(r.take_decision("1.1"), Some(assigned()));
        assert_eq!(r.waiting(), 0);
        assert_eq!(r.decide("1.1", assigned()), Err(DecideError::NotWaiting));
        assert_eq!(r.counters.assigned, 1);
    }

    #[test]
    fn abandoned_legs_are_counted_and_forgotten() {
        let mut r = Registry::default();
        r.arrive("a");
        r.arrive("b");
        r.abandon("a", WaitEnd::TimedOut);
        r.abandon("b", WaitEnd::HungUp);
        r.abandon("b", WaitEnd::HungUp);
        assert_eq!((r.counters.timed_out, r.counters.hung_up, r.waiting()), (1, 1, 0));
        assert_eq!(r.decide("a", assigned()), Err(DecideError::NotWaiting));
    }

    #[test]
    fn controller_is_connected_only_within_the_timeout() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        assert!(r.controller(t0, Duration::from_secs(15)).is_none());
        r.recv_hello("handoffd/0.1.0", t0);
        assert_eq!(
            r.controller(t0 + Duration::from_secs(3), Duration::from_secs(15)).map(|c| c.0),
            Some("handoffd/0.1.0")
        );
        assert!(r.controller(t0 + Duration::from_secs(16), Duration::from_secs(15)).is_none());
        r.forget_controller();
        assert!(r.controller(t0, Duration::from_secs(15)).is_none());
    }

    /// A getter over `headers` that checks values as the AMI handler (`manager.rs`) does.
    fn headers<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Result<String, String> + 'a {
        move |key| {
            let v = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map_or("", |(_, v)| v);
            crate::ami_auth::check_value(action::ASSIGN, key, v)?;
            Ok(v.to_string())
        }
    }

    const BASE: [(&str, &str); 4] =
        [("Uniqueid", "1700.5"), ("Session", "ab-1"), ("Bridge", "handoff-ab-1"), ("Group", "ab-1/alice")];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<(String, Decision), String> {
        let all: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
        read_assign(headers(&all))
    }

    fn alignment_of(got: Result<(String, Decision), String>) -> Option<Alignment> {
        match got {
            Ok((_, Decision::Assigned { alignment, .. })) => alignment,
            other => panic!("not an assign: {other:?}"),
        }
    }

    #[test]
    fn an_assign_without_alignment_leaves_it_to_handoff_conf() {
        let (uniqueid, decision) = with(&[]).unwrap();
        assert_eq!(uniqueid, "1700.5");
        assert_eq!(
            decision,
            Decision::Assigned {
                session: "ab-1".into(),
                bridge: "handoff-ab-1".into(),
                group: "ab-1/alice".into(),
                preferred: "data".into(),
                alignment: None,
            }
        );
        assert_eq!(alignment_of(with(&[("Alignment", "  ")])), None, "blank is absent");
    }

    #[test]
    fn an_assign_carries_the_session_rule_alignment() {
        assert_eq!(alignment_of(with(&[("Alignment", "aligned")])), Some(Alignment::Aligned));
        assert_eq!(alignment_of(with(&[("Alignment", " low-latency ")])), Some(Alignment::LowLatency));
        assert_eq!(
            alignment_of(with(&[("Preferred", "carrier"), ("Alignment", "switching")])),
            Some(Alignment::Switching)
        );
    }

    #[test]
    fn a_bad_header_is_refused_naming_it() {
        let cases = [
            (
                vec![("Alignment", "tight")],
                "HandoffAssign: Alignment 'tight' must be aligned, low-latency or switching (or absent: alignment in handoff.conf decides)",
            ),
            (vec![("Alignment", "a\rb")], "HandoffAssign: header Alignment contains a control character (U+000D); refused"),
            (vec![("Preferred", "wifi")], "HandoffAssign: Preferred 'wifi' must be data or carrier"),
        ];
        for (extra, want) in cases {
            assert_eq!(with(&extra).unwrap_err(), want);
        }
        assert_eq!(read_assign(headers(&BASE[1..])).unwrap_err(), "HandoffAssign: missing header Uniqueid");
        let bad_bridge = [("Uniqueid", "1"), ("Session", "s"), ("Bridge", "a b")];
        assert_eq!(
            read_assign(headers(&bad_bridge)).unwrap_err(),
            "HandoffAssign: Bridge 'a b' must be letters, digits, _ . -"
        );
    }
}
