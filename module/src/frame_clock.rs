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
//! - every leg of the device silent at once is the PBX pausing (Asterisk not reading, the host
//!   busy), not a network loss: a standby leg whose own silence began within
//!   [`PAUSE_TOLERANCE_NS`] of the active leg's takes nothing over when it resumes, unless the
//!   active leg is still silent a whole stall threshold later (then the active leg's silence is
//!   its own). Such pauses are counted ([`Group::pauses`]), never switched on.
//! - each leg's stall threshold follows its measured arrival jitter (an RFC 3550-style running
//!   mean of |inter-arrival − 20 ms|): `stall_threshold + 3 × jitter`, at most
//!   `stall_threshold_max`. A leg that jitters by 15 ms needs 85 ms of silence to count as stalled.
//!
//! Nothing reads the clock here: times are passed in (ns on the monotonic clock), so tests
//! drive it deterministically. The ticker calls [`Group::tick`] to learn what to report.
//! The write hook asks [`Group::mix`] which leg feeds the mix (its downlink is every leg's, see
//! `downlink.rs`) and [`Group::on_mixed`] whether a frame the bridge wrote just after a switch
//! may still hold the other leg's voice.
//!
//! A path may have more than one leg at a time: a phone that re-dials over data while its old
//! data leg is still up (or stalled) has two data legs in its group. Every hook carries its own
//! [`LegId`]; a path counts its attached hooks (it is in use until the last one is gone) and
//! follows its newest leg: frames of a leg it has superseded are dropped and do not move the
//! path's clock. When the newest leg goes, an older one still attached takes the path over on
//! its next frame.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Which network a leg comes over; the index into a group's legs.
pub use handoff_vocab::Path;

/// The most frames of one member the bridge holds unmixed: bridge_softmix flushes a member's
/// buffer that holds more than 4 mixing intervals before adding a frame.
const BRIDGE_BUFFER_FRAMES: u32 = 5;
/// The bridge's mixing interval (`mixing_interval = 20` in confbridge_handoff.conf).
const MIX_INTERVAL_NS: u64 = 20_000_000;
/// The voice frame interval the jitter is measured against.
const FRAME_NS: u64 = 20_000_000;
/// Legs whose silence began this close together (two frames) stalled at once: a PBX pause.
pub const PAUSE_TOLERANCE_NS: u64 = 2 * FRAME_NS;
/// The jitter estimate moves by 1/16 of each new deviation (RFC 3550, 6.4.1).
const JITTER_SHIFT: u32 = 4;

/// How late, beyond one frame and three times its jitter, the leg feeding the mix must be before
/// a standby frame conceals its missing frame ([`Group::may_conceal`]).
const CONCEAL_MARGIN_NS: u64 = 10_000_000;

/// Two frames the bridge wrote to the feeding leg less than this apart are one mixing tick (a
/// write counted twice at a switch, or a burst of a lagging thread): counting too few ticks only
/// makes the downlink's seam longer, never lets the old leg's voice through.
const MIN_TICK_NS: u64 = 10_000_000;

const NONE: u8 = u8::MAX;
/// `active` while a switch writes its record: nobody else switches, the ticker waits.
const BUSY: u8 = u8::MAX - 1;

/// One leg's hook in a group (unique per module load; never 0).
pub type LegId = u64;

/// What the hook does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Into the mix.
    Pass,
    /// Dropped (this leg is the standby, or a leg its path has superseded).
    Drop,
}

/// Who feeds the mix, as the write hook asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// No leg of the device has fed the mix yet.
    Empty,
    /// This path's driving leg feeds it.
    Fed(Path),
    /// A switch is being written this instant.
    Switching,
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

/// What the ticker reports (as AMI events); `leg` is the hook the report is about (0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A leg got no voice frame for longer than the stall threshold.
    Stalled { path: Path, leg: LegId, last_frame_ns: u64, now_ns: u64 },
    /// A stalled leg delivers frames again.
    Recovered { path: Path, leg: LegId, first_frame_ns: u64 },
    /// The leg feeding the mix changed; `gap_ns` is how long the mix had no frame from the old
    /// leg when the new one took over (0 for the first leg).
    Switched { from: Option<Path>, to: Path, leg: LegId, at_ns: u64, gap_ns: u64, reason: SwitchReason },
}

impl Report {
    /// The leg the report is about.
    pub fn leg(&self) -> LegId {
        match self {
            Report::Stalled { leg, .. } | Report::Recovered { leg, .. } | Report::Switched { leg, .. } => *leg,
        }
    }
}

#[derive(Debug, Default)]
struct LegClock {
    /// Hooks attached on this path (two while a re-dialled leg overlaps the old one).
    hooks: AtomicU32,
    /// The leg whose frames drive this path: the newest attached (0: none right now).
    current: AtomicU64,
    /// Arrival of the last voice frame (0: none yet).
    last_ns: AtomicU64,
    /// Start of the current run of frames without a stall.
    flowing_since_ns: AtomicU64,
    /// Arrival of the last frame before the current run began (0: the run is the leg's first):
    /// when this leg's last silence began.
    silent_from_ns: AtomicU64,
    /// Running mean of |inter-arrival − one frame|, in ns × 16 (written by this leg's hook only).
    jitter_x16_ns: AtomicU64,
    /// The ticker has reported this leg stalled and not yet recovered.
    stalled: AtomicBool,
    /// Frames of this path passed into the mix that the bridge may not have mixed yet.
    unmixed: AtomicU32,
    /// When the last frame of this path passed into the mix (0: none yet).
    last_pass_ns: AtomicU64,
}

impl LegClock {
    fn attached(&self) -> bool {
        self.hooks.load(Ordering::Acquire) > 0
    }
}

/// Tunables of the switch (from handoff.conf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Silence on the active leg after which a standby frame takes over.
    pub stall_ns: u64,
    /// How long the preferred leg must flow before it takes the mix back.
    pub recover_ns: u64,
    /// The most a leg's jitter may raise its stall threshold to (never below `stall_ns`).
    pub stall_max_ns: u64,
}

/// The last switch, written only by the switcher that holds `active` at [`BUSY`].
#[derive(Debug, Default)]
struct SwitchRecord {
    /// Bumped after each record is complete.
    seq: AtomicU64,
    at_ns: AtomicU64,
    to: AtomicU8,
    from: AtomicU8,
    leg: AtomicU64,
    reason: AtomicU8,
    gap_ns: AtomicU64,
}

/// One device's legs in one session.
#[derive(Debug)]
pub struct Group {
    legs: [LegClock; 2],
    active: AtomicU8,
    /// The path that takes the mix back when it flows (a [`Path`] as u8; the aligned legs' later
    /// one once they are aligned, see `align.rs`).
    preferred: AtomicU8,
    timing: Timing,
    last_switch: SwitchRecord,
    /// The ticker's bookkeeping of the switches it reported.
    reported_seq: AtomicU64,
    /// When [`Group::on_mixed`] last counted a mixing tick.
    last_tick_ns: AtomicU64,
    /// When the mix last moved from one leg to another (0: never).
    moved_at_ns: AtomicU64,
    /// PBX pauses seen: a standby leg resumed together with the silent active leg, no switch.
    pauses: AtomicU64,
    /// The `silent_from_ns` of the standby leg whose pause was last counted (counted once).
    pause_counted: AtomicU64,
}

impl Group {
    pub fn new(preferred: Path, timing: Timing) -> Self {
        Self {
            legs: Default::default(),
            active: AtomicU8::new(NONE),
            preferred: AtomicU8::new(preferred as u8),
            timing,
            last_switch: SwitchRecord { to: AtomicU8::new(NONE), from: AtomicU8::new(NONE), ..Default::default() },
            reported_seq: AtomicU64::new(0),
            last_tick_ns: AtomicU64::new(0),
            moved_at_ns: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            pause_counted: AtomicU64::new(0),
        }
    }

    /// Leg `leg`'s hook is attached on `path`; it becomes the leg that drives the path.
    pub fn attach(&self, path: Path, leg: LegId) {
        let clock = &self.legs[path as usize];
        clock.last_ns.store(0, Ordering::Relaxed);
        clock.silent_from_ns.store(0, Ordering::Relaxed);
        clock.jitter_x16_ns.store(0, Ordering::Relaxed);
        clock.stalled.store(false, Ordering::Relaxed);
        clock.current.store(leg, Ordering::Release);
        clock.hooks.fetch_add(1, Ordering::AcqRel);
    }

    /// Leg `leg`'s hook on `path` is gone (hangup). If it drove the path, an older leg still
    /// attached there takes over on its next frame; with none left, the other path takes the
    /// mix on its next frame.
    pub fn detach(&self, path: Path, leg: LegId) {
        let clock = &self.legs[path as usize];
        let _ = clock.current.compare_exchange(leg, 0, Ordering::AcqRel, Ordering::Acquire);
        let _ = clock.hooks.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether any hook is still attached.
    pub fn in_use(&self) -> bool {
        self.legs.iter().any(LegClock::attached)
    }

    /// How many hooks are attached on `path`.
    pub fn hooks(&self, path: Path) -> u32 {
        self.legs[path as usize].hooks.load(Ordering::Acquire)
    }

    /// The leg driving `path` right now, if any.
    pub fn current_leg(&self, path: Path) -> Option<LegId> {
        Some(self.legs[path as usize].current.load(Ordering::Acquire)).filter(|l| *l != 0)
    }

    /// Makes `path` the one that takes the mix back when it flows.
    pub fn set_preferred(&self, path: Path) {
        self.preferred.store(path as u8, Ordering::Release);
    }

    /// The leg feeding the mix.
    pub fn active(&self) -> Option<Path> {
        Path::from_index(self.active.load(Ordering::Acquire))
    }

    /// Who feeds the mix right now.
    pub fn mix(&self) -> Mix {
        match self.active.load(Ordering::Acquire) {
            NONE => Mix::Empty,
            BUSY => Mix::Switching,
            i => Path::from_index(i).map_or(Mix::Empty, Mix::Fed),
        }
    }

    /// How many times the active leg changed.
    pub fn switches(&self) -> u64 {
        self.last_switch.seq.load(Ordering::Acquire)
    }

    /// How long every leg of the group has been silent at `now` (ns since the newest frame of any
    /// leg); None before the first frame.
    pub fn silent_for(&self, now: u64) -> Option<u64> {
        let newest = self.legs.iter().map(|l| l.last_ns.load(Ordering::Acquire)).max().unwrap_or(0);
        (newest != 0).then(|| now.saturating_sub(newest))
    }

    /// How many PBX pauses (every leg silent at once) were ridden out without a switch.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Acquire)
    }

    /// `path`'s measured arrival jitter (ns).
    pub fn jitter_ns(&self, path: Path) -> u64 {
        self.legs[path as usize].jitter_x16_ns.load(Ordering::Relaxed) >> JITTER_SHIFT
    }

    /// `path`'s stall threshold: the configured one raised by its jitter, within the bound.
    pub fn stall_ns(&self, path: Path) -> u64 {
        let t = &self.timing;
        (t.stall_ns + 3 * self.jitter_ns(path)).min(t.stall_max_ns.max(t.stall_ns))
    }

    fn silent_longer_than_stall(&self, path: Path, now: u64) -> bool {
        let clock = &self.legs[path as usize];
        if !clock.attached() {
            return true;
        }
        let last = clock.last_ns.load(Ordering::Acquire);
        last == 0 || now.saturating_sub(last) > self.stall_ns(path)
    }

    /// Whether `to` may take the mix over from the stalled `from` at `now`: not while `to` is
    /// only resuming from a silence that began with `from`'s (a PBX pause, counted once), unless
    /// `to` has flowed again for a stall threshold and `from` is still silent.
    fn takeover_allowed(&self, from: Path, to: Path, now: u64) -> bool {
        let (old, new) = (&self.legs[from as usize], &self.legs[to as usize]);
        if !old.attached() {
            return true; // hung up: nothing will resume
        }
        let old_last = old.last_ns.load(Ordering::Acquire);
        let resumed = new.flowing_since_ns.load(Ordering::Relaxed);
        let silent_from = new.silent_from_ns.load(Ordering::Relaxed);
        let paused_together = old_last != 0
            && silent_from != 0
            && resumed > old_last
            && silent_from.abs_diff(old_last) <= PAUSE_TOLERANCE_NS
            && now.saturating_sub(resumed) <= self.stall_ns(to);
        if paused_together && self.pause_counted.swap(silent_from, Ordering::AcqRel) != silent_from {
            self.pauses.fetch_add(1, Ordering::AcqRel);
        }
        !paused_together
    }

    /// Moves the mix from `from` to `to`; false if someone else switched first. The record is
    /// written while `active` is [`BUSY`], so two switches never mix their records.
    fn switch(&self, from: u8, to: Path, leg: LegId, now: u64, reason: SwitchReason) -> bool {
        if self.active.compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false; // the other hook or the ticker switched first
        }
        let old_last =
            Path::from_index(from).map(|p| self.legs[p as usize].last_ns.load(Ordering::Acquire)).unwrap_or(0);
        let gap = if old_last == 0 { 0 } else { now.saturating_sub(old_last) };
        if from != NONE {
            self.moved_at_ns.store(now, Ordering::Release);
        }
        let r = &self.last_switch;
        r.at_ns.store(now, Ordering::Relaxed);
        r.gap_ns.store(gap, Ordering::Relaxed);
        r.to.store(to as u8, Ordering::Relaxed);
        r.from.store(from, Ordering::Relaxed);
        r.leg.store(leg, Ordering::Relaxed);
        r.reason.store(reason as u8, Ordering::Relaxed);
        r.seq.fetch_add(1, Ordering::AcqRel);
        self.active.store(to as u8, Ordering::Release);
        true
    }

    /// A voice frame of leg `leg` arrived on `path` at `now`: into the mix or not.
    pub fn on_frame(&self, path: Path, leg: LegId, now: u64) -> Verdict {
        let clock = &self.legs[path as usize];
        let current = clock.current.load(Ordering::Acquire);
        if current != leg
            && (current != 0 || clock.current.compare_exchange(0, leg, Ordering::AcqRel, Ordering::Acquire).is_err())
        {
            // A newer leg drives this path: this one's frames never reach the mix.
            return Verdict::Drop;
        }
        let now = now.max(1); // 0 means "no frame yet"
        let prev = clock.last_ns.swap(now, Ordering::AcqRel);
        let gap = now.saturating_sub(prev);
        if prev == 0 || gap > self.stall_ns(path) {
            clock.silent_from_ns.store(prev, Ordering::Relaxed);
            clock.flowing_since_ns.store(now, Ordering::Relaxed);
        } else {
            // Only this leg's hook writes its jitter (a superseded leg returned above).
            let j = clock.jitter_x16_ns.load(Ordering::Relaxed);
            let d = gap.abs_diff(FRAME_NS);
            clock.jitter_x16_ns.store(j + d - (j >> JITTER_SHIFT), Ordering::Relaxed);
        }
        let verdict = self.decide(path, leg, now);
        if verdict == Verdict::Pass {
            self.passed(path, now);
        }
        verdict
    }

    /// A frame of `path` went into the mix at `now` (passed by [`Group::on_frame`], or a standby
    /// frame carrying concealment): what the bridge holds of the path, for [`Group::on_mixed`].
    pub fn passed(&self, path: Path, now: u64) {
        let clock = &self.legs[path as usize];
        clock.last_pass_ns.store(now, Ordering::Release);
        // What the bridge does with the frame: flush a buffer of more than 4 frames, then add.
        let _ = clock.unmixed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(if n >= BRIDGE_BUFFER_FRAMES { 1 } else { n + 1 })
        });
    }

    /// Whether frames the other path passed may still wait in the bridge's buffer at `now` (not
    /// mixed yet; at most [`BRIDGE_BUFFER_FRAMES`] mixing intervals after its last pass). A leg
    /// whose frames follow on from theirs (aligned legs: `align.rs`) then passes nothing, so the
    /// bridge never mixes the two legs in one tick; its content is not lost, only held back.
    pub fn held_back(&self, path: Path, now: u64) -> bool {
        let other = &self.legs[path.other() as usize];
        other.unmixed.load(Ordering::Acquire) > 0
            && now.saturating_sub(other.last_pass_ns.load(Ordering::Acquire))
                < u64::from(BRIDGE_BUFFER_FRAMES) * MIX_INTERVAL_NS
    }

    /// Whether `path` feeds the mix and took it over from the other path less than `within_ns`
    /// before `now`.
    pub fn took_over_within(&self, path: Path, now: u64, within_ns: u64) -> bool {
        let moved = self.moved_at_ns.load(Ordering::Acquire);
        self.active() == Some(path) && moved != 0 && now.saturating_sub(moved) < within_ns
    }

    /// A frame [`Group::on_frame`] passed on `path` was dropped after all: not in the bridge.
    pub fn unpassed(&self, path: Path) {
        let _ =
            self.legs[path as usize].unmixed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether the standby leg `leg` on `path`, whose frame at `now` the frame clock dropped, may
    /// carry concealment into the mix instead (`conceal.rs`): the leg feeding the mix has missed
    /// a frame — silent longer than a frame, [`CONCEAL_MARGIN_NS`] and three times its jitter —
    /// but is not stalled yet, and the bridge holds none of its frames unmixed, while this leg has
    /// flowed since before that silence began (a PBX pause stops both legs: nothing is concealed
    /// then).
    pub fn may_conceal(&self, path: Path, leg: LegId, now: u64) -> bool {
        let (own, feeding) = (&self.legs[path as usize], &self.legs[path.other() as usize]);
        if self.active.load(Ordering::Acquire) != path.other() as u8 || own.current.load(Ordering::Acquire) != leg {
            return false;
        }
        let last = feeding.last_ns.load(Ordering::Acquire);
        let missed = FRAME_NS + CONCEAL_MARGIN_NS + 3 * self.jitter_ns(path.other());
        last != 0
            && now.saturating_sub(last) > missed
            && own.flowing_since_ns.load(Ordering::Relaxed) < last
            && !self.held_back(path, now)
    }

    fn decide(&self, path: Path, leg: LegId, now: u64) -> Verdict {
        let clock = &self.legs[path as usize];
        let active = self.active.load(Ordering::Acquire);
        if active == path as u8 {
            return Verdict::Pass;
        }
        if active == BUSY {
            return Verdict::Drop; // a switch is being written this instant
        }
        if active == NONE {
            return if self.switch(NONE, path, leg, now, SwitchReason::First) { Verdict::Pass } else { Verdict::Drop };
        }
        let other = path.other();
        if self.silent_longer_than_stall(other, now) {
            if !self.takeover_allowed(other, path, now) {
                return Verdict::Drop; // the PBX paused both legs: the active one resumes too
            }
            return if self.switch(active, path, leg, now, SwitchReason::Stall) {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
        }
        let flowing_for = now.saturating_sub(clock.flowing_since_ns.load(Ordering::Relaxed));
        if path as u8 == self.preferred.load(Ordering::Acquire) && flowing_for >= self.timing.recover_ns {
            return if self.switch(active, path, leg, now, SwitchReason::PreferredBack) {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
        }
        Verdict::Drop
    }

    /// The bridge wrote a frame to the feeding leg on `path` at `now`: one mixing tick, which
    /// took a frame out of each leg's buffer in the bridge. True when that mix may hold the voice
    /// of the device's *other* path, so the frame must not reach the phone: the bridge sends each
    /// member everything but that member, and just after a switch it still holds frames the old
    /// leg passed before (one normally; up to [`BRIDGE_BUFFER_FRAMES`] after a burst), which it
    /// mixes into what it writes to the new feeding leg — the downlink of every leg.
    ///
    /// The count of frames passed minus ticks seen follows the bridge's buffer, but a tick is
    /// seen only when its write is handled, a little after the bridge mixed (the mixing thread
    /// queues the frame, the leg's own thread writes it): a frame passed in between is counted
    /// as mixed one tick early, and a frame mixed before a switch may be written after it, when
    /// this leg already counts as feeding. So any frame the other path passed, and any switch,
    /// within the last two mixing intervals counts as residue too.
    pub fn on_mixed(&self, path: Path, now: u64) -> bool {
        let other = &self.legs[path.other() as usize];
        let recent = |at: u64| at != 0 && now.saturating_sub(at) < 2 * MIX_INTERVAL_NS;
        let residue = other.unmixed.load(Ordering::Acquire) > 0
            || recent(other.last_pass_ns.load(Ordering::Acquire))
            || recent(self.moved_at_ns.load(Ordering::Acquire));
        let last = self.last_tick_ns.load(Ordering::Acquire);
        if now.saturating_sub(last) >= MIN_TICK_NS
            && self.last_tick_ns.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            for clock in &self.legs {
                let _ = clock.unmixed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
        residue
    }

    /// Reads the last switch record whole (never half of one switch and half of another).
    fn read_switch(&self) -> Option<(u64, Report)> {
        let r = &self.last_switch;
        for _ in 0..10_000 {
            let seq = r.seq.load(Ordering::Acquire);
            let (at_ns, gap_ns, to, from, leg, reason) = (
                r.at_ns.load(Ordering::Relaxed),
                r.gap_ns.load(Ordering::Relaxed),
                r.to.load(Ordering::Relaxed),
                r.from.load(Ordering::Relaxed),
                r.leg.load(Ordering::Relaxed),
                r.reason.load(Ordering::Relaxed),
            );
            let busy = self.active.load(Ordering::Acquire) == BUSY;
            if busy || r.seq.load(Ordering::Acquire) != seq {
                std::hint::spin_loop();
                continue;
            }
            let to = Path::from_index(to)?;
            let reason = match reason {
                r if r == SwitchReason::PreferredBack as u8 => SwitchReason::PreferredBack,
                r if r == SwitchReason::First as u8 => SwitchReason::First,
                _ => SwitchReason::Stall,
            };
            return Some((seq, Report::Switched { from: Path::from_index(from), to, leg, at_ns, gap_ns, reason }));
        }
        None // switches kept coming for 10 000 reads: reported on the next tick
    }

    /// Called by the ticker: what to report since the last tick.
    pub fn tick(&self, now: u64) -> Vec<Report> {
        let mut out = Vec::new();
        for path in [Path::Data, Path::Carrier] {
            let clock = &self.legs[path as usize];
            if !clock.attached() {
                continue;
            }
            let last = clock.last_ns.load(Ordering::Acquire);
            if last == 0 {
                continue;
            }
            let leg = clock.current.load(Ordering::Acquire);
            let silent = now.saturating_sub(last) > self.stall_ns(path);
            let reported = clock.stalled.load(Ordering::Relaxed);
            if silent && !reported {
                clock.stalled.store(true, Ordering::Relaxed);
                out.push(Report::Stalled { path, leg, last_frame_ns: last, now_ns: now });
                // No frame will come to switch for us if the standby is the only one flowing
                // and it sent nothing since: the ticker moves the mix over itself, if the
                // standby is on time (a standby late too may be the PBX pausing both legs:
                // its next frame decides, see `takeover_allowed`).
                let active = self.active.load(Ordering::Acquire);
                let other = path.other();
                let standby_last = self.legs[other as usize].last_ns.load(Ordering::Acquire);
                let standby_on_time =
                    standby_last != 0 && now.saturating_sub(standby_last) <= FRAME_NS + self.jitter_ns(other);
                if active == path as u8
                    && self.legs[other as usize].attached()
                    && standby_on_time
                    && self.takeover_allowed(path, other, now)
                {
                    let to_leg = self.legs[other as usize].current.load(Ordering::Acquire);
                    self.switch(active, other, to_leg, now, SwitchReason::Stall);
                }
            } else if !silent && reported {
                clock.stalled.store(false, Ordering::Relaxed);
                out.push(Report::Recovered {
                    path,
                    leg,
                    first_frame_ns: clock.flowing_since_ns.load(Ordering::Relaxed),
                });
            }
        }
        if self.last_switch.seq.load(Ordering::Acquire) != self.reported_seq.load(Ordering::Acquire) {
            if let Some((seq, report)) = self.read_switch() {
                self.reported_seq.store(seq, Ordering::Release);
                out.push(report);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TIMING: Timing = Timing { stall_ns: 40 * MS, recover_ns: 500 * MS, stall_max_ns: 120 * MS };

    /// The legs' hook ids in these tests: the first data and carrier legs, a re-dialled data leg.
    const DATA: LegId = 1;
    const CARRIER: LegId = 2;
    const DATA2: LegId = 3;

    fn leg(p: Path) -> LegId {
        match p {
            Path::Data => DATA,
            Path::Carrier => CARRIER,
        }
    }

    fn dual() -> Group {
        let g = Group::new(Path::Data, TIMING);
        g.attach(Path::Data, DATA);
        g.attach(Path::Carrier, CARRIER);
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
        frames.into_iter().filter(|(t, p)| g.on_frame(*p, leg(*p), *t * MS) == Verdict::Pass).collect()
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

    /// Like [`run`], with the bridge mixing every 20 ms (at 15 ms into each interval) and writing
    /// the mix to the feeding leg; the ticks whose mix may hold the other leg's voice, in ms.
    fn run_mixed(g: &Group, from: u64, to: u64, cut: Option<(u64, u64)>) -> Vec<u64> {
        let mut residue = Vec::new();
        let mut t = from;
        while t < to {
            run(g, t, t + 20, cut);
            let feeding = g.active().expect("a leg feeds");
            if g.on_mixed(feeding, (t + 15) * MS) {
                residue.push(t + 15);
            }
            t += 20;
        }
        residue
    }

    #[test]
    fn the_downlink_may_hold_the_other_legs_voice_only_just_after_a_switch() {
        let g = dual();
        assert!(run_mixed(&g, 0, 1000, None).is_empty(), "the first leg took an empty mix");
        // failover at 1030 ms: nothing of the data leg is left in the bridge, but the frames the
        // carrier's thread writes in the next two mixing intervals may have been mixed before
        let r = run_mixed(&g, 1000, 2000, Some((1000, 2000)));
        assert_eq!(g.active(), Some(Path::Carrier));
        assert_eq!(r, vec![1035, 1055]);
        // take-back at 2500 ms: the carrier's last frame (2490 ms) may still be in the bridge
        let r = run_mixed(&g, 2000, 3000, None);
        assert_eq!(g.active(), Some(Path::Data));
        assert_eq!(r, vec![2515, 2535]);
        // a burst of the old leg just before the take-back (a PBX pause) is covered whole
        let g = dual();
        run_mixed(&g, 0, 1000, Some((0, 1000)));
        run_mixed(&g, 1000, 1480, None);
        assert_eq!(g.active(), Some(Path::Carrier));
        for t in 0..4 {
            g.on_frame(Path::Carrier, CARRIER, (1481 + t) * MS);
        }
        let r = run_mixed(&g, 1480, 1700, None);
        assert_eq!(g.active(), Some(Path::Data));
        assert_eq!(
            r,
            vec![1515, 1535, 1555, 1575],
            "the carrier's 5 unmixed frames, one of them mixed before the switch"
        );
        // two writes within one tick (a switch, a lagging thread) count one tick: longer, never shorter
        let g = dual();
        run_mixed(&g, 0, 1000, Some((0, 1000)));
        g.on_frame(Path::Carrier, CARRIER, 1000 * MS);
        g.on_frame(Path::Carrier, CARRIER, 1001 * MS);
        // (the last tick was counted at 995 ms)
        assert!(g.on_mixed(Path::Data, 1010 * MS));
        assert!(g.on_mixed(Path::Data, 1012 * MS), "the same tick again: the carrier still holds a frame");
        assert!(g.on_mixed(Path::Data, 1030 * MS));
        assert!(!g.on_mixed(Path::Data, 1050 * MS));
    }

    /// Both legs every 20 ms from `from` to `to` (ms), the carrier 10 ms after the data leg,
    /// with nothing arriving during `pause` (ms), the frames held back then arriving as one
    /// burst when it ends (carrier's first if `carrier_first`), the ticker looking every 5 ms.
    fn paused(g: &Group, from: u64, to: u64, pause: (u64, u64), carrier_first: bool) -> Vec<Report> {
        let mut frames = Vec::new();
        let mut t = from;
        while t < to {
            for (p, at) in [(Path::Data, t), (Path::Carrier, t + 10)] {
                let held = at >= pause.0 && at < pause.1;
                let first = (p == Path::Carrier) == carrier_first;
                // a held frame arrives at the pause's end, in burst order
                frames.push(if held { (pause.1, !first, at, p) } else { (at, false, at, p) });
            }
            t += 20;
        }
        frames.sort_by_key(|(arrive, later, at, _)| (*arrive, *later, *at));
        let mut reports = Vec::new();
        let mut tick = from;
        for (arrive, _, _, p) in frames {
            while tick + 5 <= arrive {
                tick += 5;
                reports.extend(g.tick(tick * MS));
            }
            g.on_frame(p, leg(p), arrive * MS);
        }
        reports
    }

    #[test]
    fn a_standby_frame_conceals_once_the_feeding_leg_missed_a_frame_and_never_in_a_pbx_pause() {
        // Data feeds the mix; its last frame at 1000 ms, the carrier's at 1010, 1030, 1050 ...
        let g = dual();
        run(&g, 0, 1020, None);
        assert_eq!(g.active(), Some(Path::Data));
        assert!(g.held_back(Path::Carrier, 1035 * MS), "the bridge holds data frames: no concealment yet");
        for t in [1001, 1012, 1023, 1034, 1045] {
            g.on_mixed(Path::Data, t * MS); // the bridge mixed them
        }
        let conceal_at = |t: u64| {
            let v = g.on_frame(Path::Carrier, CARRIER, t * MS);
            (v, v == Verdict::Drop && g.may_conceal(Path::Carrier, CARRIER, t * MS))
        };
        assert_eq!(conceal_at(1010), (Verdict::Drop, false), "the data frame of 1020 is not due yet");
        assert_eq!(conceal_at(1030), (Verdict::Drop, false), "10 ms late is jitter");
        assert_eq!(conceal_at(1035), (Verdict::Drop, true), "a frame missed");
        assert!(!g.may_conceal(Path::Data, DATA, 1035 * MS), "the feeding leg never conceals");
        assert!(!g.may_conceal(Path::Carrier, DATA2, 1035 * MS), "nor a leg its path superseded");
        assert_eq!(conceal_at(1050), (Verdict::Pass, false), "stalled: the carrier takes the mix over");

        // Both legs held by the PBX from 2000 to 2200 ms; the carrier's burst comes first: the
        // data leg looks missed, but the carrier was silent with it: nothing concealed.
        let g = dual();
        run(&g, 0, 2000, None);
        assert_eq!(g.on_frame(Path::Carrier, CARRIER, 2200 * MS), Verdict::Drop);
        assert!(!g.may_conceal(Path::Carrier, CARRIER, 2200 * MS));
        assert_eq!(g.on_frame(Path::Data, DATA, 2201 * MS), Verdict::Pass);
    }

    #[test]
    fn a_leg_that_takes_the_mix_over_is_held_back_while_the_bridge_holds_the_other_legs_frames() {
        let g = dual();
        run(&g, 0, 1000, None); // data passes; the bridge mixed none of it (no write seen)
        assert!(g.held_back(Path::Carrier, 1001 * MS), "data frames wait in the bridge");
        assert!(!g.held_back(Path::Carrier, 1100 * MS), "not longer than the bridge's buffer");
        for t in [1001, 1021, 1041, 1061, 1081] {
            g.on_mixed(Path::Data, t * MS);
        }
        assert!(!g.held_back(Path::Carrier, 1085 * MS), "all mixed");
        assert!(!g.held_back(Path::Data, 1085 * MS), "the carrier passed nothing");
        // a pass taken back is not in the bridge
        assert_eq!(g.on_frame(Path::Data, DATA, 1100 * MS), Verdict::Pass);
        assert!(g.held_back(Path::Carrier, 1101 * MS));
        g.unpassed(Path::Data);
        assert!(!g.held_back(Path::Carrier, 1101 * MS));
    }

    #[test]
    fn both_legs_late_together_is_a_pbx_pause_and_moves_nothing() {
        for carrier_first in [true, false] {
            for pause_ms in [45, 60, 150, 300] {
                let g = dual();
                let r = paused(&g, 0, 2000, (1000, 1000 + pause_ms), carrier_first);
                let switched: Vec<_> =
                    r.iter().filter(|x| matches!(x, Report::Switched { from: Some(_), .. })).collect();
                assert!(switched.is_empty(), "pause {pause_ms} ms, carrier first {carrier_first}: {switched:?}");
                assert_eq!(g.active(), Some(Path::Data));
                assert_eq!(g.switches(), 1, "only the first leg's take");
                assert_eq!(g.pauses(), u64::from(carrier_first), "a pause is counted when the standby resumed first");
            }
        }
    }

    #[test]
    fn the_same_gap_switches_on_one_leg_and_not_on_both() {
        // 150 ms without frames: on both legs (a PBX pause) nothing moves; on the data leg alone
        // (a network cut) the carrier takes over and the data leg takes the mix back later.
        let g = dual();
        let r = paused(&g, 0, 2000, (1000, 1150), true);
        assert!(!r.iter().any(|x| matches!(x, Report::Switched { from: Some(_), .. })), "{r:?}");
        let g = dual();
        let passed = run(&g, 0, 2000, Some((1000, 1150)));
        assert!(passed.iter().any(|(_, p)| *p == Path::Carrier), "one leg late: the carrier takes over");
        assert_eq!(g.switches(), 3, "to carrier, back to data");
    }

    #[test]
    fn one_leg_late_still_switches_within_a_frame() {
        let g = dual();
        let passed = run(&g, 0, 2000, Some((1000, 1100)));
        let takeover = passed.iter().find(|(_, p)| *p == Path::Carrier).map(|(t, _)| *t).expect("carrier took over");
        assert!(takeover > 1020 && takeover <= 1040 + 20, "takeover at {takeover} ms");
        assert_eq!(g.pauses(), 0);
    }

    #[test]
    fn a_real_cut_during_a_pbx_pause_switches_one_threshold_after_the_resume() {
        // Both legs pause at 1000 ms for 100 ms; the data leg does not come back (cut meanwhile).
        let g = dual();
        run(&g, 0, 1000, None);
        let mut first_carrier_pass = None;
        for t in (1110..1400).step_by(20) {
            if g.on_frame(Path::Carrier, CARRIER, t * MS) == Verdict::Pass && first_carrier_pass.is_none() {
                first_carrier_pass = Some(t);
            }
        }
        let at = first_carrier_pass.expect("the carrier took over");
        assert!(at > 1110 + 40 && at <= 1110 + 40 + 20, "took over at {at} ms, the carrier resumed at 1110 ms");
        assert_eq!(g.active(), Some(Path::Carrier));
    }

    #[test]
    fn the_stall_threshold_follows_each_legs_jitter_within_its_bounds() {
        let g = dual();
        run(&g, 0, 1000, None);
        assert_eq!((g.stall_ns(Path::Data), g.stall_ns(Path::Carrier)), (40 * MS, 40 * MS), "no jitter: the setting");
        // the carrier's frames arrive 20 ± 12 ms apart
        let mut t = 1000;
        for i in 0..400 {
            g.on_frame(Path::Data, DATA, t * MS);
            g.on_frame(Path::Carrier, CARRIER, (t + 10 + if i % 2 == 0 { 12 } else { 0 }) * MS);
            t += 20;
        }
        let carrier = g.stall_ns(Path::Carrier) / MS;
        assert!((40 + 3 * 10..=40 + 3 * 14).contains(&carrier), "carrier threshold {carrier} ms");
        assert_eq!(g.stall_ns(Path::Data), 40 * MS, "the steady leg keeps the setting");
        // a 60 ms gap of the jittery carrier is no stall any more: data keeps the mix
        assert_eq!(g.on_frame(Path::Data, DATA, t * MS), Verdict::Pass);
        // a leg that jitters wildly is bounded by stall_threshold_max
        let g = Group::new(Path::Data, Timing { stall_max_ns: 80 * MS, ..TIMING });
        g.attach(Path::Carrier, CARRIER);
        let mut t = 0;
        for i in 0..400 {
            g.on_frame(Path::Carrier, CARRIER, t * MS);
            t += if i % 2 == 0 { 2 } else { 38 };
        }
        assert_eq!(g.stall_ns(Path::Carrier), 80 * MS);
        let bounded = Group::new(Path::Data, Timing { stall_max_ns: 10 * MS, ..TIMING });
        assert_eq!(bounded.stall_ns(Path::Data), 40 * MS, "a bound below the setting never lowers it");
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
                |x| matches!(x, Report::Stalled { path: Path::Data, leg: DATA, last_frame_ns, .. } if *last_frame_ns == 980 * MS)
            ),
            "{r:?}"
        );
        assert!(r.iter().any(|x| matches!(x, Report::Switched { to: Path::Carrier, reason: SwitchReason::Stall, gap_ns, .. } if *gap_ns > 40 * MS && *gap_ns <= 60 * MS)), "{r:?}");
        assert!(g.tick(1110 * MS).is_empty(), "reported once");
        run(&g, 1100, 1200, None);
        let r = g.tick(1200 * MS);
        assert!(
            r.iter().any(
                |x| matches!(x, Report::Recovered { path: Path::Data, leg: DATA, first_frame_ns } if *first_frame_ns == 1100 * MS)
            ),
            "{r:?}"
        );
    }

    #[test]
    fn the_ticker_switches_when_no_standby_frame_comes_to_do_it() {
        let g = dual();
        g.on_frame(Path::Data, DATA, 0);
        g.on_frame(Path::Carrier, CARRIER, 10 * MS);
        g.on_frame(Path::Carrier, CARRIER, 30 * MS);
        // data silent since 0, carrier's last frame at 30 ms, tick at 45 ms
        g.tick(45 * MS);
        assert_eq!(g.active(), Some(Path::Carrier));
    }

    #[test]
    fn a_hung_up_active_leg_hands_over_on_the_next_standby_frame() {
        let g = dual();
        run(&g, 0, 200, None);
        g.detach(Path::Data, DATA);
        assert_eq!(g.on_frame(Path::Carrier, CARRIER, 300 * MS), Verdict::Pass);
        assert_eq!(g.active(), Some(Path::Carrier));
        g.detach(Path::Carrier, CARRIER);
        assert!(!g.in_use());
    }

    #[test]
    fn a_single_leg_always_passes() {
        let g = Group::new(Path::Data, TIMING);
        g.attach(Path::Carrier, CARRIER);
        for t in 0..50 {
            assert_eq!(g.on_frame(Path::Carrier, CARRIER, t * 200 * MS), Verdict::Pass);
        }
    }

    /// Frames of `legs` every 20 ms from `from` to `to` (ms), each leg offset by its index
    /// times 7 ms, the ticker looking after each round; how many switches happened meanwhile
    /// and what the ticker reported.
    fn flow(g: &Group, legs: &[(Path, LegId)], from: u64, to: u64) -> (u64, Vec<Report>) {
        let before = g.switches();
        let mut reports = Vec::new();
        let mut t = from;
        while t < to {
            for (i, (p, l)) in legs.iter().enumerate() {
                g.on_frame(*p, *l, (t + i as u64 * 7) * MS);
            }
            reports.extend(g.tick((t + 19) * MS));
            t += 20;
        }
        (g.switches() - before, reports)
    }

    #[test]
    fn an_old_leg_hung_up_after_a_redial_leaves_the_new_leg_on_its_path_watched() {
        let g = dual();
        run(&g, 0, 1000, None);
        // The phone re-dials over data while its old data leg is still up.
        g.attach(Path::Data, DATA2);
        assert_eq!(g.hooks(Path::Data), 2);
        let _ = flow(&g, &[(Path::Data, DATA), (Path::Data, DATA2), (Path::Carrier, CARRIER)], 1000, 1200);
        // The old leg's hook goes: the path still has the new leg.
        g.detach(Path::Data, DATA);
        assert!(g.in_use());
        assert_eq!((g.hooks(Path::Data), g.current_leg(Path::Data)), (1, Some(DATA2)));
        // Both remaining legs flow for 3 s: no flip-flopping, data (preferred) keeps the mix.
        let (switches, _) = flow(&g, &[(Path::Data, DATA2), (Path::Carrier, CARRIER)], 1200, 4200);
        assert!(switches <= 2, "{switches} switches while both legs flowed");
        assert_eq!(g.active(), Some(Path::Data));
        // The new leg is still watched: its stall is reported, under its own id.
        let (_, r) = flow(&g, &[(Path::Carrier, CARRIER)], 4200, 4300);
        assert_eq!(g.active(), Some(Path::Carrier), "carrier took over when the new data leg stalled");
        assert!(r.iter().any(|x| matches!(x, Report::Stalled { path: Path::Data, leg: DATA2, .. })), "{r:?}");
        g.detach(Path::Data, DATA2);
        g.detach(Path::Carrier, CARRIER);
        assert!(!g.in_use(), "the group ends with its last hook");
    }

    #[test]
    fn a_stalled_new_leg_is_reported_even_while_its_superseded_leg_keeps_sending() {
        let g = dual();
        run(&g, 0, 1000, None);
        g.attach(Path::Data, DATA2);
        let _ = flow(&g, &[(Path::Data, DATA2), (Path::Carrier, CARRIER), (Path::Data, DATA)], 1000, 2000);
        assert_eq!(g.active(), Some(Path::Data));
        // The new leg stalls; the old one still sends, but its frames are not the path's.
        let mut reports = Vec::new();
        let mut t = 2000;
        while t < 2200 {
            assert_eq!(g.on_frame(Path::Data, DATA, t * MS), Verdict::Drop, "superseded frames never reach the mix");
            g.on_frame(Path::Carrier, CARRIER, (t + 7) * MS);
            reports.extend(g.tick((t + 19) * MS));
            t += 20;
        }
        assert!(
            reports.iter().any(|r| matches!(r, Report::Stalled { path: Path::Data, leg: DATA2, .. })),
            "{reports:?}"
        );
        assert!(
            reports.iter().any(|r| matches!(r, Report::Switched { to: Path::Carrier, leg: CARRIER, .. })),
            "{reports:?}"
        );
        assert_eq!(g.active(), Some(Path::Carrier));
    }

    #[test]
    fn an_older_leg_takes_its_path_over_when_the_newer_one_goes() {
        let g = Group::new(Path::Data, TIMING);
        g.attach(Path::Data, DATA);
        g.attach(Path::Data, DATA2);
        assert_eq!(g.on_frame(Path::Data, DATA2, MS), Verdict::Pass);
        assert_eq!(g.on_frame(Path::Data, DATA, 2 * MS), Verdict::Drop);
        g.detach(Path::Data, DATA2);
        assert!(g.in_use());
        assert_eq!(g.on_frame(Path::Data, DATA, 21 * MS), Verdict::Pass);
        assert_eq!(g.current_leg(Path::Data), Some(DATA));
        g.detach(Path::Data, DATA);
        assert!(!g.in_use());
        g.detach(Path::Data, DATA);
        assert_eq!(g.hooks(Path::Data), 0, "a stray detach never wraps the count");
    }

    #[test]
    fn concurrent_switches_are_reported_whole() {
        use std::sync::Arc;
        // Two hooks and the ticker race to switch; every reported switch must be one switch's
        // own record: `to` names the leg it reports, `from` is the other path.
        let g = Arc::new(Group::new(Path::Data, Timing { stall_ns: 0, recover_ns: 0, stall_max_ns: 0 }));
        g.attach(Path::Data, DATA);
        g.attach(Path::Carrier, CARRIER);
        let hooks: Vec<_> = [(Path::Data, DATA), (Path::Carrier, CARRIER)]
            .into_iter()
            .map(|(p, l)| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for t in 1..200_000u64 {
                        g.on_frame(p, l, t * 2 + p as u64);
                    }
                })
            })
            .collect();
        let mut seen = 0;
        let mut t = 0u64;
        loop {
            let done = hooks.iter().all(|h| h.is_finished());
            t += 1;
            for r in g.tick(t) {
                if let Report::Switched { from, to, leg: l, .. } = r {
                    seen += 1;
                    assert_eq!(l, leg(to), "leg of another switch: {r:?}");
                    if let Some(from) = from {
                        assert_ne!(from, to, "torn record: {r:?}");
                    }
                }
            }
            if done {
                break;
            }
        }
        for h in hooks {
            h.join().unwrap();
        }
        assert!(seen > 0);
    }

    #[test]
    fn a_switch_being_written_is_not_reported_half_done() {
        let g = dual();
        assert_eq!(g.mix(), Mix::Empty);
        g.on_frame(Path::Data, DATA, MS);
        assert_eq!(g.mix(), Mix::Fed(Path::Data));
        // Another switch is writing its record right now (it holds `active` at BUSY): the
        // ticker must not report a mix of the two records; it reports on a later tick.
        let was = g.active.swap(BUSY, Ordering::AcqRel);
        assert_eq!(g.mix(), Mix::Switching, "the write hook serves every leg as a standby meanwhile");
        g.last_switch.to.store(Path::Carrier as u8, Ordering::Relaxed); // half written
        assert!(g.tick(2 * MS).iter().all(|r| !matches!(r, Report::Switched { .. })));
        g.last_switch.to.store(Path::Data as u8, Ordering::Relaxed);
        g.active.store(was, Ordering::Release);
        let r = g.tick(3 * MS);
        assert!(matches!(&r[..], [Report::Switched { to: Path::Data, leg: DATA, .. }]), "{r:?}");
        assert_eq!(g.on_frame(Path::Carrier, CARRIER, 4 * MS), Verdict::Drop);
    }

    mod model {
        //! The path bookkeeping against a plain reference model: any order of attaches,
        //! detaches and frames of up to four legs on two paths.
        use super::super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Attach(Path, LegId),
            Detach(usize),
            Frame(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            let path = prop_oneof![Just(Path::Data), Just(Path::Carrier)];
            prop_oneof![
                (path, 1u64..5).prop_map(|(p, l)| Op::Attach(p, l)),
                (0usize..8).prop_map(Op::Detach),
                (0usize..8).prop_map(Op::Frame),
            ]
        }

        proptest! {
            #[test]
            fn counts_and_the_driving_leg_follow_the_model(ops in proptest::collection::vec(op(), 1..80)) {
                let g = Group::new(Path::Data, Timing { stall_ns: 40_000_000, recover_ns: 500_000_000, stall_max_ns: 120_000_000 });
                // model: attached hooks in attach order, (path, leg); the driving leg per path
                let mut attached: Vec<(Path, LegId)> = Vec::new();
                let mut driving: [Option<LegId>; 2] = [None, None];
                let mut now = 0u64;
                for op in ops {
                    now += 1_000_000;
                    match op {
                        Op::Attach(p, l) => {
                            if attached.iter().any(|(_, x)| *x == l) {
                                continue; // a hook id is attached once
                            }
                            g.attach(p, l);
                            attached.push((p, l));
                            driving[p as usize] = Some(l);
                        }
                        Op::Detach(i) => {
                            if attached.is_empty() { continue; }
                            let (p, l) = attached.remove(i % attached.len());
                            g.detach(p, l);
                            if driving[p as usize] == Some(l) {
                                driving[p as usize] = None;
                            }
                        }
                        Op::Frame(i) => {
                            if attached.is_empty() { continue; }
                            let (p, l) = attached[i % attached.len()];
                            if driving[p as usize].is_none() {
                                driving[p as usize] = Some(l); // an older leg takes the path over
                            }
                            let v = g.on_frame(p, l, now);
                            if driving[p as usize] != Some(l) {
                                prop_assert_eq!(v, Verdict::Drop, "a superseded leg fed the mix");
                            }
                            if v == Verdict::Pass {
                                prop_assert_eq!(g.active(), Some(p));
                            }
                        }
                    }
                    for p in [Path::Data, Path::Carrier] {
                        let n = attached.iter().filter(|(q, _)| *q == p).count() as u32;
                        prop_assert_eq!(g.hooks(p), n);
                        prop_assert_eq!(g.current_leg(p), driving[p as usize]);
                    }
                    prop_assert_eq!(g.in_use(), !attached.is_empty());
                    let _ = g.tick(now);
                }
            }
        }
    }

    #[test]
    fn silent_for_counts_from_the_newest_frame_of_any_leg() {
        let g = dual();
        assert_eq!(g.silent_for(MS), None, "no frame yet");
        g.on_frame(Path::Data, DATA, 100 * MS);
        g.on_frame(Path::Carrier, CARRIER, 130 * MS);
        assert_eq!(g.silent_for(1130 * MS), Some(1000 * MS));
        g.on_frame(Path::Data, DATA, 1200 * MS);
        assert_eq!(g.silent_for(1210 * MS), Some(10 * MS));
    }
}
