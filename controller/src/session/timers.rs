//! A session's timers: one table of deadlines keyed by [`Timer`] (after quinn-proto's
//! `TimerTable`), from which both [`super::Sessions::next_timeout`] and the `Tick` handling
//! read, so that a deadline is worked out once, when it is set.
//!
//! Each timer belongs to one state: `FarHangupWait` to `AwaitingFarAnswer`, `Grace` to
//! `Grace`, `Linger` to `Ending`, a leg's `LegDead` to a live session whose leg is stalled
//! (the table is the leg's stall mark: set when it stalls, stopped when it recovers, is
//! declared dead, goes, or the session ends). The transitions in [`super::state`] set and stop
//! them; nothing else computes a deadline.

use super::Millis;
use std::collections::BTreeMap;

/// What a deadline is for. The order is the order in which timers expiring at one `Tick` are
/// handled: the session's own timer first, then its legs' by uniqueid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The far call failed with a channel: its Hangup (with the real cause) is awaited until
    /// then, after which the session ends on the originate's reason alone.
    FarHangupWait,
    /// Every client leg is gone: the far party is held until then.
    Grace,
    /// The session is ending: its channels' hangup events are awaited until then.
    Linger,
    /// The client leg with this uniqueid is stalled: it is declared dead then.
    LegDead(String),
}

/// Deadlines by timer. Legs make the set of timers open-ended, so the table is a small ordered
/// map rather than quinn's fixed array.
#[derive(Clone, Debug, Default)]
pub(super) struct TimerTable {
    deadlines: BTreeMap<Timer, Millis>,
}

impl TimerTable {
    /// Sets (or moves) `timer` to fire at `at`.
    pub(super) fn set(&mut self, timer: Timer, at: Millis) {
        self.deadlines.insert(timer, at);
    }

    /// When `timer` fires, if it is set.
    pub(super) fn get(&self, timer: &Timer) -> Option<Millis> {
        self.deadlines.get(timer).copied()
    }

    /// Stops `timer`; returns whether it was set.
    pub(super) fn stop(&mut self, timer: &Timer) -> bool {
        self.deadlines.remove(timer).is_some()
    }

    /// Stops every leg's timer.
    pub(super) fn stop_legs(&mut self) {
        self.deadlines.retain(|t, _| !matches!(t, Timer::LegDead(_)));
    }

    /// Whether `timer` is set and due at `now`.
    pub(super) fn is_expired(&self, timer: &Timer, now: Millis) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The timers due at `now`, in handling order.
    pub(super) fn expired(&self, now: Millis) -> Vec<Timer> {
        self.deadlines.iter().filter(|(_, at)| **at <= now).map(|(t, _)| t.clone()).collect()
    }

    /// The earliest deadline.
    pub(super) fn next_timeout(&self) -> Option<Millis> {
        self.deadlines.values().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_one_deadline_per_timer_and_expires_them_in_order() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::LegDead("b".into()), 50);
        t.set(Timer::LegDead("a".into()), 70);
        t.set(Timer::Grace, 60);
        t.set(Timer::Grace, 40);
        assert_eq!(t.next_timeout(), Some(40));
        assert_eq!(t.expired(39), vec![]);
        assert_eq!(t.expired(60), vec![Timer::Grace, Timer::LegDead("b".into())]);
        assert!(t.is_expired(&Timer::Grace, 40) && !t.is_expired(&Timer::Linger, 1_000));
        assert!(t.stop(&Timer::Grace) && !t.stop(&Timer::Grace));
        t.stop_legs();
        assert_eq!(t.next_timeout(), None);
    }
}
