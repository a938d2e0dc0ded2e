//! The lockout policy: how many wrong PINs in how long lock a user out, and for how long.
//! Pure: the store applies [`LockoutPolicy::on_failure`] atomically
//! ([`crate::store::Store::record_failure`]).

use crate::store::{Failures, UnixMs};

/// Lock a user out for `lock_ms` after `max_failures` wrong PINs within `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the user out; 0 never locks.
    pub max_failures: u32,
    pub window_ms: u64,
    pub lock_ms: u64,
}

impl Default for LockoutPolicy {
    /// 5 failures in 15 minutes lock the user out for 15 minutes.
    fn default() -> Self {
        Self { max_failures: 5, window_ms: 15 * 60_000, lock_ms: 15 * 60_000 }
    }
}

impl LockoutPolicy {
    /// The user's failures after one more at `now`. A lockout that has ended is forgotten;
    /// failures older than the window are dropped; reaching `max_failures` sets
    /// `locked_until = now + lock_ms` and starts the count afresh.
    pub fn on_failure(&self, prev: Option<Failures>, now: UnixMs) -> Failures {
        let mut f = prev.unwrap_or_default();
        f.locked_until = f.locked_at(now);
        let since = UnixMs(now.0.saturating_sub(self.window_ms));
        f.recent.retain(|t| *t > since && *t <= now);
        f.recent.push(now);
        if self.max_failures > 0 && f.recent.len() >= self.max_failures as usize {
            let until = now.plus_ms(self.lock_ms);
            f.locked_until = Some(f.locked_until.map_or(until, |u| u.max(until)));
            f.recent.clear();
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_in_the_window_lock_then_the_lock_ends() {
        let p = LockoutPolicy::default();
        let mut f = None;
        for i in 0..4 {
            let next = p.on_failure(f, UnixMs(1_000 + i * 60_000));
            assert_eq!(next.locked_until, None);
            f = Some(next);
        }
        let locked = p.on_failure(f, UnixMs(300_000));
        assert_eq!(locked.locked_at(UnixMs(300_001)), Some(UnixMs(300_000 + 900_000)));
        assert_eq!(locked.locked_at(UnixMs(1_200_000)), None);
        // After the lock, one failure does not lock again.
        let after = p.on_failure(Some(locked), UnixMs(1_300_000));
        assert_eq!(after.locked_until, None);
        assert_eq!(after.recent.len(), 1);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = LockoutPolicy { max_failures: 3, window_ms: 1_000, lock_ms: 10 };
        let mut f = None;
        for t in [0, 1_500, 3_000, 4_500] {
            f = Some(p.on_failure(f, UnixMs(t)));
        }
        let f = f.unwrap();
        assert_eq!(f.locked_until, None);
        assert_eq!(f.recent, vec![UnixMs(4_500)]);
    }

    #[test]
    fn zero_never_locks() {
        let p = LockoutPolicy { max_failures: 0, ..LockoutPolicy::default() };
        let mut f = None;
        for t in 0..50 {
            f = Some(p.on_failure(f, UnixMs(t)));
        }
        assert_eq!(f.unwrap().locked_until, None);
    }
}
