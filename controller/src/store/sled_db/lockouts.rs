//! Device bars and per-user failure counters (lockouts) on sled, flushed: a failure is read,
//! updated and written in one compare-and-swap loop, so concurrent failures all count.

use super::{bar_key, SledStore};
use crate::store::records::{Bar, Failures};
use crate::store::{decode, encode, StoreError, UnixMs, Write};

impl SledStore {
    // ---- bars and lockouts

    /// Bars `device` from `session` until `until` (flushed). A later bar replaces an earlier one.
    pub fn put_bar(&self, bar: &Bar) -> Result<(), StoreError> {
        self.apply(&[Write::PutBar(bar.clone())])
    }

    /// Until when `device` is barred from `session`, if a bar is recorded (it may have ended:
    /// compare with now).
    pub fn bar(&self, session: &str, device: &str) -> Result<Option<UnixMs>, StoreError> {
        let bar: Option<Bar> = self.get(&self.inner.bars, "bars", &bar_key(session, device))?;
        Ok(bar.map(|b| b.until))
    }

    pub fn list_bars(&self) -> Result<Vec<Bar>, StoreError> {
        self.scan(&self.inner.bars, "bars")
    }

    /// Records a failed credential check (flushed): `update` turns the user's previous
    /// failures into the new ones (the lockout policy, [`crate::moves::LockoutPolicy::on_failure`]),
    /// atomically with respect to concurrent failures. Returns the new record.
    pub fn record_failure(
        &self,
        user: &str,
        update: impl Fn(Option<Failures>) -> Failures + Send + 'static,
    ) -> Result<Failures, StoreError> {
        let mut undecodable = None;
        let after = self
            .inner
            .failures
            .update_and_fetch(user, |old| match old.map(decode::<Failures>).transpose() {
                Ok(prev) => Some(encode(&update(prev))),
                Err(p) => {
                    undecodable = Some(p);
                    old.map(<[u8]>::to_vec)
                }
            })
            .map_err(|e| self.io("failures", e))?;
        if let Some(p) = undecodable {
            return Err(self.corrupt("failures", user.as_bytes(), p));
        }
        self.flush()?;
        match after {
            Some(bytes) => decode(&bytes).map_err(|p| self.corrupt("failures", user.as_bytes(), p)),
            None => Ok(Failures::default()),
        }
    }

    pub fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        self.get(&self.inner.failures, "failures", user.as_bytes())
    }

    /// Forgets a user's failures and lockout (flushed); returns whether there were any.
    pub fn clear_failures(&self, user: &str) -> Result<bool, StoreError> {
        let had = self.inner.failures.remove(user).map_err(|e| self.io("failures", e))?.is_some();
        if had {
            self.flush()?;
        }
        Ok(had)
    }
}
