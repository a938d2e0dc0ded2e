//! Which channels are waiting inside `Handoff()` for the controller's decision, and whether the
//! controller (`handoffd`) is there at all. Pure Rust, no Asterisk calls: the application,
//! the AMI actions and the CLI share it through [`REGISTRY`]. Nothing here runs in a frame
//! callback, so a mutex held for a few instructions is fine.
//!
//! ```text
//!   Handoff() ──arrive──▶ Waiting ──HandoffAssign──▶ Assigned ──(app returns)──▶ gone
//!                            │ └────HandoffRefuse───▶ Refused  ──(app returns)──▶ gone
//!                            └──timeout / hangup──────────────────────────────▶ gone
//! ```

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The controller's answer for one waiting leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Join the conference `bridge` of session `session`; the leg's frames are watched in
    /// device group `group` whose preferred path is `preferred` ("data" or "carrier").
    Assigned { session: String, bridge: String, group: String, preferred: String },
    /// Do not join; `reason` is told to the dialplan and the log.
    Refused { reason: String },
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
}
