//! The ticker's bookkeeping of a group's alignment: when to measure, what an estimate changes
//! ([`Change`]), where the group stands ([`Standing`]).

use super::*;

pub const MEASURE_EVERY_NS: u64 = 1_000_000_000;
pub const CHECK_EVERY_NS: u64 = 30_000_000_000;
/// "Not enough audio" is not worth an event during the first seconds of a group.
const QUIET_START_NS: u64 = 5_000_000_000;
/// The offset moved by more than this: reported again.
const MOVED_NS: i64 = 20_000_000;

/// Where a group's alignment stands, as the ticker last found it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Standing {
    /// Not (yet) aligned; the last reason, if any was found.
    Switching(Option<Unaligned>),
    Aligned(Estimate),
}

/// What changed, for an event and a log line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    Aligned(Estimate),
    Unaligned(Unaligned),
}

/// The ticker's bookkeeping of one group's alignment: when to measure next, what was reported.
#[derive(Debug)]
pub struct Tracker {
    pub max_delay_ns: u64,
    started_ns: u64,
    next_at_ns: u64,
    pub standing: Standing,
    /// Consecutive checks that disagreed with the alignment in force.
    disagreed: u32,
    /// Consecutive measurements that found audio but no alignment (no match, ambiguous, too
    /// far): each doubles the wait before the next, up to [`CHECK_EVERY_NS`], so that legs that
    /// never align (a steady tone, different audio) cost a measurement every 30 s, not every
    /// second.
    failed: u32,
    reported: Option<Change>,
}

impl Tracker {
    pub fn new(max_delay_ns: u64, now_ns: u64) -> Self {
        Self {
            max_delay_ns,
            started_ns: now_ns,
            next_at_ns: now_ns + MEASURE_EVERY_NS,
            standing: Standing::Switching(None),
            disagreed: 0,
            failed: 0,
            reported: None,
        }
    }

    /// Whether the legs are due to be measured.
    pub fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_at_ns
    }

    /// Takes a measurement of `aligner`'s legs made at `now_ns` (the mix fed by `driver`):
    /// aligns, re-aligns or gives up as it says. Returns what is to be reported, if anything.
    pub fn record(
        &mut self,
        aligner: &Aligner,
        measured: Result<Estimate, Unaligned>,
        driver: Option<Path>,
        now_ns: u64,
    ) -> Option<Change> {
        if matches!(self.standing, Standing::Aligned(_)) && aligner.lag().is_none() {
            // a leg was replaced: its numbers are another stream's
            self.standing = Standing::Switching(None);
        }
        let change = match (self.standing, measured) {
            (Standing::Switching(_), Ok(e)) => {
                aligner.lock(e.k, driver);
                self.standing = Standing::Aligned(e);
                Some(Change::Aligned(e))
            }
            (Standing::Switching(_), Err(u)) => {
                self.standing = Standing::Switching(Some(u));
                let early = now_ns.saturating_sub(self.started_ns) < QUIET_START_NS;
                (!(early && u == Unaligned::NotEnoughAudio)).then_some(Change::Unaligned(u))
            }
            (Standing::Aligned(cur), Ok(e)) if e.k == cur.k => {
                self.disagreed = 0;
                self.standing = Standing::Aligned(e);
                ((e.delay_ns - cur.delay_ns).abs() > MOVED_NS).then_some(Change::Aligned(e))
            }
            // silence or a gap tells nothing against the alignment in force
            (Standing::Aligned(_), Err(Unaligned::Silent | Unaligned::NotEnoughAudio)) => None,
            (Standing::Aligned(_), other) => {
                self.disagreed += 1;
                if self.disagreed < 2 {
                    None
                } else {
                    self.disagreed = 0;
                    match other {
                        Ok(e) => {
                            aligner.lock(e.k, driver);
                            self.standing = Standing::Aligned(e);
                            Some(Change::Aligned(e))
                        }
                        Err(u) => {
                            aligner.unlock();
                            self.standing = Standing::Switching(Some(u));
                            Some(Change::Unaligned(u))
                        }
                    }
                }
            }
        };
        let settled = matches!(self.standing, Standing::Aligned(_)) && self.disagreed == 0;
        self.failed = match self.standing {
            Standing::Switching(Some(
                Unaligned::NoMatch { .. } | Unaligned::TooFar { .. } | Unaligned::Ambiguous { .. },
            )) => self.failed.saturating_add(1),
            _ => 0,
        };
        let backed_off = MEASURE_EVERY_NS.saturating_mul(1 << self.failed.min(5)).min(CHECK_EVERY_NS);
        self.next_at_ns = now_ns
            + if settled {
                CHECK_EVERY_NS
            } else if self.failed > 0 {
                backed_off
            } else {
                MEASURE_EVERY_NS
            };
        // each reason once, not every second
        let change = change.filter(|c| match (c, self.reported) {
            (Change::Unaligned(u), Some(Change::Unaligned(r))) => {
                std::mem::discriminant(u) != std::mem::discriminant(&r)
            }
            _ => true,
        });
        if change.is_some() {
            self.reported = change;
        }
        change
    }
}
