//! One session's data: its [`Phase`] (the state, with the data that exists only in that state),
//! its legs, its timers, and the transitions between phases, which set and stop the timers
//! that belong to each phase.

use super::timers::{Timer, TimerTable};
use super::{Millis, Path, State};
use std::collections::BTreeMap;

/// Where a session stands, with what only that state has. The outside sees it as a [`State`].
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// The far call is ringing. `far_failed`: the far call failed but its channel's Hangup
    /// (with the real cause) has not come yet; the reason (timer `FarHangupWait`).
    AwaitingFarAnswer { far_failed: Option<String> },
    /// The far party answered. `moving`: a move under way.
    Connected { moving: Option<Moving> },
    /// Every client leg is gone; the far party is on hold (timer `Grace`).
    Grace,
    /// Hangups were sent; waiting for the channels to be gone (timer `Linger`).
    Ending { since: Millis, reason: String },
}

impl Phase {
    pub(super) fn is_live(&self) -> bool {
        !matches!(self, Phase::Ending { .. })
    }

    /// Whether the far party has answered (and the session is not ending).
    pub(super) fn answered(&self) -> bool {
        matches!(self, Phase::Connected { .. } | Phase::Grace)
    }
}

/// A client leg of a session. Whether it is stalled is its `LegDead` timer.
#[derive(Clone, Debug)]
pub(super) struct ClientLeg {
    pub(super) channel: String,
    pub(super) path: Path,
    pub(super) live: bool,
    /// handoffd itself hung this leg up (replaced, declared dead, or moved away from).
    pub(super) hung_up_by_us: bool,
}

impl ClientLeg {
    /// A leg that just joined: live, not hung up.
    pub(super) fn joined(channel: String, path: Path) -> Self {
        Self { channel, path, live: true, hung_up_by_us: false }
    }
}

/// A move under way: the new device's leg, and the old device's legs that are hung up once it
/// is in the conference (so that the far party never hears nobody).
#[derive(Clone, Debug)]
pub(super) struct Moving {
    pub(super) leg: String,
    pub(super) from_device: String,
    pub(super) old_legs: Vec<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) phase: Phase,
    pub(super) timers: TimerTable,
    pub(super) device: String,
    pub(super) user: String,
    /// The number the far party was called on.
    pub(super) far_number: String,
    /// Devices the call moved away from, barred from rejoining until the given time.
    pub(super) barred: BTreeMap<String, Millis>,
    pub(super) token: String,
    pub(super) bridge: String,
    pub(super) far_uniqueid: String,
    pub(super) far_live: bool,
    pub(super) legs: BTreeMap<String, ClientLeg>,
    pub(super) opened_at: Millis,
}

impl Session {
    /// The state as the outside sees it.
    pub(super) fn state(&self) -> State {
        match &self.phase {
            Phase::AwaitingFarAnswer { .. } => State::AwaitingFarAnswer,
            Phase::Connected { .. } => State::Connected,
            Phase::Grace => State::Grace { until: self.timers.get(&Timer::Grace).unwrap_or_default() },
            Phase::Ending { since, reason } => State::Ending { since: *since, reason: reason.clone() },
        }
    }

    pub(super) fn live_clients(&self) -> usize {
        self.legs.values().filter(|l| l.live).count()
    }

    pub(super) fn live_leg_on(&self, path: Path) -> Option<(&String, &ClientLeg)> {
        self.legs.iter().find(|(_, l)| l.live && l.path == path)
    }

    pub(super) fn all_gone(&self) -> bool {
        !self.far_live && self.live_clients() == 0
    }

    pub(super) fn is_stalled(&self, uniqueid: &str) -> bool {
        self.timers.get(&Timer::LegDead(uniqueid.to_string())).is_some()
    }

    /// A live leg stalled (silent since `since`): it is declared dead `dead_after` later.
    pub(super) fn stall(&mut self, uniqueid: &str, since: Millis, dead_after: Millis) {
        self.timers.set(Timer::LegDead(uniqueid.to_string()), since + dead_after);
    }

    /// A leg delivers frames again, is declared dead or goes: it is no longer stalled. Returns
    /// whether it was.
    pub(super) fn unstall(&mut self, uniqueid: &str) -> bool {
        self.timers.stop(&Timer::LegDead(uniqueid.to_string()))
    }

    /// → `Connected` (the far party answered, a leg rejoined or a move came in during grace).
    pub(super) fn connect(&mut self) {
        self.timers.stop(&Timer::FarHangupWait);
        self.timers.stop(&Timer::Grace);
        self.phase = Phase::Connected { moving: None };
    }

    /// The far call failed while its channel lives: its Hangup is awaited until `until`.
    pub(super) fn await_far_hangup(&mut self, reason: &str, until: Millis) {
        if let Phase::AwaitingFarAnswer { far_failed } = &mut self.phase {
            *far_failed = Some(reason.to_string());
            self.timers.set(Timer::FarHangupWait, until);
        }
    }

    /// `Connected` → `Grace` until `until`. Returns the move that was under way, if any.
    pub(super) fn hold(&mut self, until: Millis) -> Option<Moving> {
        let moving = self.take_move();
        self.phase = Phase::Grace;
        self.timers.set(Timer::Grace, until);
        moving
    }

    /// → `Ending` since `now`, lingering until `linger_until`; a leg of an ending session is
    /// never declared dead (its hangup has been sent). A move under way is dropped: the caller
    /// takes it out first ([`Session::take_move`]) to undo it.
    pub(super) fn end(&mut self, now: Millis, reason: String, linger_until: Millis) {
        self.timers.stop(&Timer::FarHangupWait);
        self.timers.stop(&Timer::Grace);
        self.timers.stop_legs();
        self.timers.set(Timer::Linger, linger_until);
        self.phase = Phase::Ending { since: now, reason };
    }

    /// The move under way, taken out of `Connected`.
    pub(super) fn take_move(&mut self) -> Option<Moving> {
        match &mut self.phase {
            Phase::Connected { moving } => moving.take(),
            _ => None,
        }
    }

    /// The move under way whose new leg is `uniqueid`, taken out of `Connected`.
    pub(super) fn take_move_of(&mut self, uniqueid: &str) -> Option<Moving> {
        match &mut self.phase {
            Phase::Connected { moving } if moving.as_ref().is_some_and(|m| m.leg == uniqueid) => moving.take(),
            _ => None,
        }
    }

    /// A move that is off: the old device's legs are the user's again, the old device is no
    /// longer barred and the call is its own again; the new leg counts as hung up by handoffd.
    pub(super) fn undo_move(&mut self, m: &Moving) {
        for uid in &m.old_legs {
            if let Some(l) = self.legs.get_mut(uid) {
                l.hung_up_by_us = false;
            }
        }
        self.barred.remove(&m.from_device);
        self.device = m.from_device.clone();
        if let Some(l) = self.legs.get_mut(&m.leg) {
            l.hung_up_by_us = true;
        }
    }
}
