//! The per-leg frame clock and the leg switch, without Asterisk (pure, lock-free).
//!
//! A device in a session may have two legs, one per path (data, carrier), carrying the same
//! voice at different delays. Only one of them may feed the conference (two copies would echo).
//! Each leg's read hook calls [`Group::on_frame`] for every voice frame; the answer is whether
//! the frame passes into the mix or is dropped. The hook never blocks: it touches atomics only.
//!
//! - the first leg with frames becomes active;
//! - a standby leg takes over on its first frame after the active leg has been silent for
//!   longer than the stall threshold (within one frame: no controller round trip);
//! - the preferred path takes the mix back once it has flowed without a stall for the recovery
//!   time (hysteresis, so a flapping link does not flap the audio);
//! - DTX/silence suppression only makes the other leg carry the mix for a while; declaring a
//!   leg dead is the controller's business, in seconds, from the events the ticker raises.
//!
//! Nothing reads the clock here: times are passed in (ns on the monotonic clock), so tests
//! drive it deterministically. The ticker calls [`Group::tick`] to learn what to report.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Which network a leg comes over; the index into a group's legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    Data = 0,
    Carrier = 1,
}

impl Path {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "carrier" => Some(Self::Carrier),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Carrier => "carrier",
        }
    }
    fn from_index(i: u8) -> Option<Self> {
        match i {
            0 => Some(Self::Data),
            1 => Some(Self::Carrier),
            _ => None,
        }
    }
    fn other(self) -> Self {
        match self {
            Self::Data => Self::Carrier,
            Self::Carrier => Self::Data,
        }
    }
}

const NONE: u8 = u8::MAX;

/// What the hook does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Into the mix.
    Pass,
    /// Dropped (this leg is the standby).
    Drop,
}

/// Why the active leg changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// The first leg with frames took the mix.
    First,
    /// The active leg stalled.
    Stall,
    /// The preferred leg was healthy for the recovery time.
    PreferredBack,
}

/// What the ticker reports (as AMI events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A leg got no voice frame for longer than the stall threshold.
    Stalled { path: Path, last_frame_ns: u64, now_ns: u64 },
    /// A stalled leg delivers frames again.
    Recovered { path: Path, first_frame_ns: u64 },
    /// The leg feeding the mix changed; `gap_ns` is how long the mix had no frame from the old
    /// leg when the new one took over (0 for the first leg).
    Switched { from: Option<Path>, to: Path, at_ns: u64, gap_ns: u64, reason: SwitchReason },
}

#[derive(Debug, Default)]
struct LegClock {
    attached: AtomicBool,
    /// Arrival of the last voice frame (0: none yet).
    last_ns: AtomicU64,
    /// Start of the current run of frames without a stall.
    flowing_since_ns: AtomicU64,
    /// The ticker has reported this leg stalled and not yet recovered.
    stalled: AtomicBool,
}

/// Tunables of the switch (from handoff.conf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Silence on the active leg after which a standby frame takes over.
    pub stall_ns: u64,
    /// How long the preferred leg must flow before it takes the mix back.
    pub recover_ns: u64,
}

/// One device's legs in one session.
#[derive(Debug)]
pub struct Group {
    legs: [LegClock; 2],
    active: AtomicU8,
    preferred: Path,
    timing: Timing,
    /// Last switch: sequence number (bumped by the switcher), time, target and reason.
    switch_seq: AtomicU64,
    switch_at_ns: AtomicU64,
    switch_to: AtomicU8,
    switch_from: AtomicU8,
    switch_reason: AtomicU8,
    switch_gap_ns: AtomicU64,
    /// The ticker's bookkeeping of the switches it reported.
    reported_seq: AtomicU64,
}

impl Group {
    pub fn new(preferred: Path, timing: Timing) -> Self {
        Self {
            legs: Default::default(),
            active: AtomicU8::new(NONE),
            preferred,
            timing,
            switch_seq: AtomicU64::new(0),
            switch_at_ns: AtomicU64::new(0),
            switch_to: AtomicU8::new(NONE),
            switch_from: AtomicU8::new(NONE),
            switch_reason: AtomicU8::new(0),
            switch_gap_ns: AtomicU64::new(0),
            reported_seq: AtomicU64::new(0),
        }
    }

    /// A leg's hook is attached (or re-attached after the leg came back).
    pub fn attach(&self, path: Path) {
        let leg = &self.legs[path as usize];
        leg.last_ns.store(0, Ordering::Relaxed);
        leg.stalled.store(false, Ordering::Relaxed);
        leg.attached.store(true, Ordering::Release);
    }

    /// A leg's hook is gone (hangup); the other leg takes the mix on its next frame.
    pub fn detach(&self, path: Path) {
        self.legs[path as usize].attached.store(false, Ordering::Release);
    }

    /// Whether any leg is still attached.
    pub fn in_use(&self) -> bool {
        self.legs.iter().any(|l| l.attached.load(Ordering::Acquire))
    }

    /// The leg feeding the mix.
    pub fn active(&self) -> Option<Path> {
        Path::from_index(self.active.load(Ordering::Acquire))
    }

    /// How many times the active leg changed.
    pub fn switches(&self) -> u64 {
        self.switch_seq.load(Ordering::Relaxed)
    }

    fn silent_longer_than_stall(&self, path: Path, now: u64) -> bool {
        let leg = &self.legs[path as usize];
        if !leg.attached.load(Ordering::Acquire) {
            return true;
        }
        let last = leg.last_ns.load(Ordering::Acquire);
        last == 0 || now.saturating_sub(last) > self.timing.stall_ns
    }

    fn switch(&self, from: u8, to: Path, now: u64, reason: SwitchReason) -> bool {
        if self.active.compare_exchange(from, to as u8, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false; // the other hook or the ticker switched first
        }
        self.switch_at_ns.store(now, Ordering::Relaxed);
        let old_last =
            Path::from_index(from).map(|p| self.legs[p as usize].last_ns.load(Ordering::Acquire)).unwrap_or(0);
        let gap = if old_last == 0 { 0 } else { now.saturating_sub(old_last) };
        self.switch_gap_ns.store(gap, Ordering::Relaxed);
        self.switch_to.store(to as u8, Ordering::Relaxed);
        self.switch_from.store(from, Ordering::Relaxed);
        self.switch_reason.store(reason as u8, Ordering::Relaxed);
        self.switch_seq.fetch_add(1, Ordering::Release);
        true
    }

    /// A voice frame arrived on `path` at `now`: into the mix or not.
    pub fn on_frame(&self, path: Path, now: u64) -> Verdict {
        let leg = &self.legs[path as usize];
        let now = now.max(1); // 0 means "no frame yet"
        let prev = leg.last_ns.swap(now, Ordering::AcqRel);
        if prev == 0 || now.saturating_sub(prev) > self.timing.stall_ns {
            leg.flowing_since_ns.store(now, Ordering::Relaxed);
        }
        let active = self.active.load(Ordering::Acquire);
        if active == path as u8 {
            return Verdict::Pass;
        }
        if active == NONE {
            self.switch(NONE, path, now, SwitchReason::First);
            return Verdict::Pass;
        }
        let other = path.other();
        if self.silent_longer_than_stall(other, now) {
            self.switch(active, path, now, SwitchReason::Stall);
            return Verdict::Pass;
        }
        let flowing_for = now.saturating_sub(leg.flowing_since_ns.load(Ordering::Relaxed));
        if path == self.preferred && flowing_for >= self.timing.recover_ns {
            self.switch(active, path, now, SwitchReason::PreferredBack);
            return Verdict::Pass;
        }
        Verdict::Drop
    }

    /// Called by the ticker: what to report since the last tick.
    pub fn tick(&self, now: u64) -> Vec<Report> {
        let mut out = Vec::new();
        for path in [Path::Data, Path::Carrier] {
            let leg = &self.legs[path as usize];
            if !leg.attached.load(Ordering::Acquire) {
                continue;
            }
            let last = leg.last_ns.load(Ordering::Acquire);
            if last == 0 {
                continue;
            }
            let silent = now.saturating_sub(last) > self.timing.stall_ns;
            let reported = leg.stalled.load(Ordering::Relaxed);
            if silent && !reported {
                leg.stalled.store(true, Ordering::Relaxed);
                out.push(Report::Stalled { path, last_frame_ns: last, now_ns: now });
                // No frame will come to switch for us if the standby is the only one flowing
                // and it sent nothing since: the ticker moves the mix over itself.
                let active = self.active.load(Ordering::Acquire);
                if active == path as u8 && !self.silent_longer_than_stall(path.other(), now) {
                    self.switch(active, path.other(), now, SwitchReason::Stall);
                }
            } else if !silent && reported {
                leg.stalled.store(false, Ordering::Relaxed);
                out.push(Report::Recovered { path, first_frame_ns: leg.flowing_since_ns.load(Ordering::Relaxed) });
            }
        }
        let seq = self.switch_seq.load(Ordering::Acquire);
        if seq != self.reported_seq.swap(seq, Ordering::AcqRel) {
            if let Some(to) = Path::from_index(self.switch_to.load(Ordering::Relaxed)) {
                let reason = match self.switch_reason.load(Ordering::Relaxed) {
                    r if r == SwitchReason::PreferredBack as u8 => SwitchReason::PreferredBack,
                    r if r == SwitchReason::First as u8 => SwitchReason::First,
                    _ => SwitchReason::Stall,
                };
                out.push(Report::Switched {
                    from: Path::from_index(self.switch_from.load(Ordering::Relaxed)),
                    to,
                    at_ns: self.switch_at_ns.load(Ordering::Relaxed),
                    gap_ns: self.switch_gap_ns.load(Ordering::Relaxed),
                    reason,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TIMING: Timing = Timing { stall_ns: 40 * MS, recover_ns: 500 * MS };

    fn dual() -> Group {
        let g = Group::new(Path::Data, TIMING);
        g.attach(Path::Data);
        g.attach(Path::Carrier);
        g
    }

    /// Feeds 20 ms frames arriving on both legs from `from` to `to` (ms), the carrier's 10 ms
    /// out of phase with the data leg's (its content is later, which the switch does not
    /// look at), with the data leg cut during `cut` (ms); returns the frames that passed.
    fn run(g: &Group, from: u64, to: u64, cut: Option<(u64, u64)>) -> Vec<(u64, Path)> {
        let mut frames = Vec::new();
        let mut t = from;
        while t < to {
            if !cut.is_some_and(|(a, b)| t >= a && t < b) {
                frames.push((t, Path::Data));
            }
            frames.push((t + 10, Path::Carrier));
            t += 20;
        }
        // in arrival order, as the hooks see them
        frames.sort_by_key(|(t, p)| (*t, *p as u8));
        frames.into_iter().filter(|(t, p)| g.on_frame(*p, *t * MS) == Verdict::Pass).collect()
    }

    #[test]
    fn only_one_leg_feeds_the_mix_while_both_flow() {
        let g = dual();
        let passed = run(&g, 0, 2000, None);
        assert!(passed.iter().all(|(_, p)| *p == Path::Data), "carrier must be dropped: {passed:?}");
        assert_eq!(passed.len(), 100);
        assert_eq!(g.active(), Some(Path::Data));
    }

    #[test]
    fn a_cut_data_leg_is_replaced_within_one_frame_and_comes_back_after_recovery() {
        let g = dual();
        let passed = run(&g, 0, 4000, Some((1000, 2000)));
        // The last data frame is at 980 ms; the carrier takes over on its first frame more than
        // 40 ms later: at most one frame interval after the threshold.
        let takeover = passed.iter().find(|(_, p)| *p == Path::Carrier).map(|(t, _)| *t).expect("carrier took over");
        assert!(takeover > 980 + 40 && takeover <= 980 + 40 + 20, "takeover at {takeover} ms");
        // While cut, the carrier carries everything; no frame is passed twice per interval.
        let during: Vec<_> = passed.iter().filter(|(t, _)| *t > takeover && *t < 2000).collect();
        assert!(during.iter().all(|(_, p)| *p == Path::Carrier));
        // Data is back at 2000 ms and takes over again after 500 ms of clean flow.
        let back =
            passed.iter().find(|(t, p)| *p == Path::Data && *t >= 2000).map(|(t, _)| *t).expect("data came back");
        assert_eq!(back, 2500);
        assert_eq!(g.switches(), 3, "initial, to carrier, back to data");
    }

    #[test]
    fn a_flapping_preferred_leg_does_not_flap_the_mix() {
        let g = dual();
        run(&g, 0, 1000, None);
        // data stalls 60 ms every 300 ms: never 500 ms of clean flow
        let mut t = 1000;
        while t < 4000 {
            run(&g, t, t + 240, None);
            run(&g, t + 240, t + 300, Some((t + 240, t + 300)));
            t += 300;
        }
        assert_eq!(g.active(), Some(Path::Carrier));
        assert_eq!(g.switches(), 2, "one switch to carrier, none back");
    }

    #[test]
    fn the_ticker_reports_stall_recovery_and_switches_once_each() {
        let g = dual();
        run(&g, 0, 1000, None);
        let r = g.tick(1000 * MS);
        assert!(
            matches!(&r[..], [Report::Switched { from: None, to: Path::Data, reason: SwitchReason::First, .. }]),
            "{r:?}"
        );
        run(&g, 1000, 1100, Some((1000, 1100)));
        let r = g.tick(1100 * MS);
        assert!(
            r.iter().any(
                |x| matches!(x, Report::Stalled { path: Path::Data, last_frame_ns, .. } if *last_frame_ns == 980 * MS)
            ),
            "{r:?}"
        );
        assert!(r.iter().any(|x| matches!(x, Report::Switched { to: Path::Carrier, reason: SwitchReason::Stall, gap_ns, .. } if *gap_ns > 40 * MS && *gap_ns <= 60 * MS)), "{r:?}");
        assert!(g.tick(1110 * MS).is_empty(), "reported once");
        run(&g, 1100, 1200, None);
        let r = g.tick(1200 * MS);
        assert!(
            r.iter().any(
                |x| matches!(x, Report::Recovered { path: Path::Data, first_frame_ns } if *first_frame_ns == 1100 * MS)
            ),
            "{r:?}"
        );
    }

    #[test]
    fn the_ticker_switches_when_no_standby_frame_comes_to_do_it() {
        let g = dual();
        g.on_frame(Path::Data, 0);
        g.on_frame(Path::Carrier, 10 * MS);
        g.on_frame(Path::Carrier, 30 * MS);
        // data silent since 0, carrier's last frame at 30 ms, tick at 45 ms
        g.tick(45 * MS);
        assert_eq!(g.active(), Some(Path::Carrier));
    }

    #[test]
    fn a_hung_up_active_leg_hands_over_on_the_next_standby_frame() {
        let g = dual();
        run(&g, 0, 200, None);
        g.detach(Path::Data);
        assert_eq!(g.on_frame(Path::Carrier, 300 * MS), Verdict::Pass);
        assert_eq!(g.active(), Some(Path::Carrier));
        g.detach(Path::Carrier);
        assert!(!g.in_use());
    }

    #[test]
    fn a_single_leg_always_passes() {
        let g = Group::new(Path::Data, TIMING);
        g.attach(Path::Carrier);
        for t in 0..50 {
            assert_eq!(g.on_frame(Path::Carrier, t * 200 * MS), Verdict::Pass);
        }
    }
}
