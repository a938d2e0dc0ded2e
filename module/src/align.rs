//! Time alignment of a device's two legs (pure: no Asterisk, no clock; lock-free in the frame
//! path, no allocation after [`Aligner::new`]).
//!
//! The phone sends the same voice on both legs, the later one `D` ms behind (the carrier network
//! is slower than the data path, or the other way round). Switching between unaligned legs
//! repeats `D` of speech at a failover onto the later leg and skips `D` at the take-back. Here the
//! legs are aligned instead:
//!
//! - **What goes with what.** Every voice frame of each leg is kept in its leg's [`LegRing`]
//!   under its RTP sequence number (unwrapped). The legs' RTP numbers are unrelated, so which
//!   frame of one leg carries the same audio as a frame of the other is measured from the audio
//!   itself: [`estimate`] cross-correlates the decoded G.711 of the last half second of one leg
//!   against the last 1.3 s of the other (first at a quarter of the rate over every lag, then at
//!   the full rate around the best one) and returns `k`, the carrier sequence number minus the
//!   data sequence number of the same audio, the sub-frame residue, a score (normalised
//!   correlation) and `D` (from the frames' arrival times). The ticker runs it off the frame path:
//!   about 2 ms each, once a second until the legs are aligned, then every 30 s.
//! - **Content numbers.** A frame's *content* number is its carrier sequence number: a carrier
//!   frame `s` carries content `s`, a data frame `s` content `s + k`.
//! - **One driver, each slot from the best leg.** Only one leg — the *driver*, the later one —
//!   passes frames into the conference, so the bridge never mixes the two legs in one tick. For
//!   every frame it passes, [`Aligner::emit`] picks the content the mix wants next and fills the
//!   driver's frame, in place, with that content from the preferred leg if that leg had it (it
//!   came `D` earlier), else from the driver's own ring. The earlier leg is thereby held back by
//!   `D`: a cut, a burst or a lost packet on the earlier leg costs nothing, since the driver
//!   carries the same content in the same slot; a lost driver packet is filled from the earlier
//!   leg one slot later.
//! - **When the driver dies** the frame clock ([`crate::frame_clock`]) hands the mix to the other
//!   leg after its stall threshold; that leg then emits from the content the mix wants next, one
//!   per frame, out of its ring (nothing repeated, nothing skipped; the listener's delay grows by
//!   the detection time), and catches up over the next pause in speech (silence is what is
//!   skipped). The same holds when the driver comes back.
//!
//! Frames the module cannot keep (not 20 ms of G.711) leave a group unaligned: it switches as
//! before, and the reason is reported. Nothing here decides *when* a leg is dead: that is the
//! frame clock's business.

use crate::downlink::{alaw_decode, convert, ulaw_decode, Format};
use crate::frame_clock::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Samples in one kept frame: 20 ms at 8 kHz.
pub const FRAME: usize = 160;
/// Frames kept per leg (1.28 s).
pub const RING: usize = 64;
const WORDS: usize = FRAME / 8;
/// A frame whose mean |sample| is below this is a pause (about −45 dBFS).
pub const QUIET_LEVEL: u16 = 100;
/// Carrier frames correlated: frames `newest − WINDOW_END − WINDOW .. newest − WINDOW_END`, so
/// that a data leg up to `WINDOW_END` frames *behind* the carrier is still found.
const WINDOW: u64 = 26;
const WINDOW_END: u64 = 10;
/// Decimation of the coarse search.
const DECIMATE: usize = 4;
/// Normalised correlation below which the legs are not taken to carry the same audio.
pub const MIN_SCORE: f32 = 0.5;
/// Content numbers start here, so that "before the first" never underflows.
const SEQ_BASE: u64 = 1 << 32;

/// One kept frame, under a sequence lock.
struct Slot {
    /// Odd while the writer is in the slot.
    version: AtomicU64,
    /// The unwrapped sequence number held (0: none).
    seq: AtomicU64,
    arrival_ns: AtomicU64,
    /// 1: μ-law, 2: A-law.
    format: AtomicU8,
    /// Mean |sample|.
    level: AtomicU32,
    data: [AtomicU64; WORDS],
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            version: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            arrival_ns: AtomicU64::new(0),
            format: AtomicU8::new(0),
            level: AtomicU32::new(0),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The last [`RING`] frames of one leg, by sequence number. Written by that leg's read hook
/// only; read by the other leg's hook and the ticker.
pub struct LegRing {
    slots: Box<[Slot; RING]>,
    /// The newest sequence number kept (0: none).
    newest: AtomicU64,
    /// The leg (hook id) whose frames these are: a new leg on the path starts a new ring.
    owner: AtomicU64,
    /// The last sequence number this leg passed into the mix as its own content (0: none).
    passed: AtomicU64,
}

impl Default for LegRing {
    fn default() -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| Slot::default())),
            newest: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        }
    }
}

fn format_code(f: Format) -> Option<u8> {
    match f {
        Format::Ulaw => Some(1),
        Format::Alaw => Some(2),
        Format::Slin(_) => None,
    }
}

fn format_of(code: u8) -> Option<Format> {
    match code {
        1 => Some(Format::Ulaw),
        2 => Some(Format::Alaw),
        _ => None,
    }
}

fn decode(format: Format, b: u8) -> i16 {
    if format == Format::Alaw {
        alaw_decode(b)
    } else {
        ulaw_decode(b)
    }
}

impl LegRing {
    /// The newest sequence number kept.
    pub fn newest(&self) -> Option<u64> {
        Some(self.newest.load(Ordering::Acquire)).filter(|s| *s != 0)
    }

    /// The sequence number `raw` (16 bits, as RTP carries it) unwrapped against the newest kept.
    fn unwrap(&self, raw: u16) -> u64 {
        let newest = self.newest.load(Ordering::Relaxed);
        if newest == 0 {
            return SEQ_BASE + u64::from(raw);
        }
        let delta = raw.wrapping_sub(newest as u16) as i16;
        newest.wrapping_add_signed(i64::from(delta))
    }

    /// Keeps frame `raw_seq` of leg `leg` (20 ms of G.711 in `payload`); returns its unwrapped
    /// sequence number, or None if it cannot be kept (another format or length). A leg other than
    /// the ring's owner empties the ring first (its numbers are another stream's).
    pub fn store(&self, leg: u64, raw_seq: u16, format: Format, payload: &[u8], now_ns: u64) -> Option<u64> {
        let code = format_code(format)?;
        if payload.len() != FRAME {
            return None;
        }
        if self.owner.swap(leg, Ordering::AcqRel) != leg {
            self.clear();
        }
        let seq = self.unwrap(raw_seq);
        let level = (payload.iter().map(|b| u32::from(decode(format, *b).unsigned_abs())).sum::<u32>() / FRAME as u32)
            .min(u32::from(u16::MAX));
        let slot = &self.slots[(seq % RING as u64) as usize];
        let v = slot.version.load(Ordering::Relaxed);
        slot.version.store(v.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        slot.seq.store(seq, Ordering::Relaxed);
        slot.arrival_ns.store(now_ns, Ordering::Relaxed);
        slot.format.store(code, Ordering::Relaxed);
        slot.level.store(level, Ordering::Relaxed);
        for (word, chunk) in slot.data.iter().zip(payload.chunks_exact(8)) {
            word.store(u64::from_ne_bytes(chunk.try_into().unwrap_or_default()), Ordering::Relaxed);
        }
        slot.version.store(v.wrapping_add(2), Ordering::Release);
        if seq > self.newest.load(Ordering::Relaxed) {
            self.newest.store(seq, Ordering::Release);
        }
        Some(seq)
    }

    fn clear(&self) {
        self.newest.store(0, Ordering::Release);
        self.passed.store(0, Ordering::Release);
        for s in self.slots.iter() {
            s.seq.store(0, Ordering::Release);
        }
    }

    /// Frame `seq` into `out`, if the ring still holds it (and it was not being rewritten).
    pub fn read(&self, seq: u64, out: &mut [u8; FRAME]) -> Option<Format> {
        let slot = &self.slots[(seq % RING as u64) as usize];
        for _ in 0..4 {
            let v = slot.version.load(Ordering::Acquire);
            if v % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            if slot.seq.load(Ordering::Relaxed) != seq {
                return None;
            }
            let kept = format_of(slot.format.load(Ordering::Relaxed))?;
            for (word, chunk) in slot.data.iter().zip(out.chunks_exact_mut(8)) {
                chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
            }
            fence(Ordering::Acquire);
            if slot.version.load(Ordering::Relaxed) == v {
                return Some(kept);
            }
        }
        None
    }

    /// The level of frame `seq` (None: not held).
    fn level(&self, seq: u64) -> Option<u16> {
        let slot = &self.slots[(seq % RING as u64) as usize];
        (slot.seq.load(Ordering::Acquire) == seq).then(|| slot.level.load(Ordering::Relaxed) as u16)
    }

    /// Frames `from .. from + n` decoded to signed linear (a frame not held: zeros), with how
    /// many were held.
    fn samples(&self, from: u64, n: u64) -> (Vec<f32>, usize) {
        let mut out = vec![0f32; n as usize * FRAME];
        let mut held = 0;
        let mut buf = [0u8; FRAME];
        for i in 0..n {
            if let Some(format) = self.read(from + i, &mut buf) {
                held += 1;
                let dst = &mut out[i as usize * FRAME..(i as usize + 1) * FRAME];
                for (d, b) in dst.iter_mut().zip(buf) {
                    *d = f32::from(decode(format, b));
                }
            }
        }
        (out, held)
    }
}

/// What [`estimate`] found: how the legs line up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Carrier sequence number minus data sequence number of the same audio.
    pub k: i64,
    /// What is left within the frame: the data leg's audio lies this many samples (8 kHz) later
    /// in its frame than the carrier's in the matching one (−80..=80).
    pub residual_samples: i32,
    /// Normalised correlation of the two legs' audio at that lag (1: identical).
    pub score: f32,
    /// How much later the carrier leg's frames arrive than the data leg's frames of the same
    /// audio (negative: the carrier leg is the earlier one), ns.
    pub delay_ns: i64,
}

impl Estimate {
    /// The leg whose audio comes later: the driver.
    pub fn later(&self) -> Path {
        if self.delay_ns >= 0 {
            Path::Carrier
        } else {
            Path::Data
        }
    }
}

/// Why the legs could not be aligned (reported, and the group switches as before).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unaligned {
    /// Not enough frames of both legs yet, or a leg's frames are not 20 ms of G.711.
    NotEnoughAudio,
    /// The compared audio is silence: nothing to line up by.
    Silent,
    /// The legs' audio does not match at any lag (they do not carry the same voice).
    NoMatch { score: f32 },
    /// They match, but further apart than `align_max`.
    TooFar { delay_ns: i64 },
}

impl Unaligned {
    /// A short reason for events and logs.
    pub fn reason(&self) -> String {
        match self {
            Self::NotEnoughAudio => "not-enough-g711-audio".into(),
            Self::Silent => "silence".into(),
            Self::NoMatch { score } => format!("no-match (best score {score:.2})"),
            Self::TooFar { delay_ns } => format!("offset {} ms beyond align_max", delay_ns / 1_000_000),
        }
    }
}

/// Normalised cross-correlation of `win` against `span` at lag `lag` (`span[lag..]`).
fn ncc(win: &[f32], span: &[f32], lag: usize) -> f32 {
    let s = &span[lag..lag + win.len()];
    let (mut xy, mut yy) = (0f32, 0f32);
    for (x, y) in win.iter().zip(s) {
        xy += x * y;
        yy += y * y;
    }
    let xx: f32 = win.iter().map(|x| x * x).sum();
    if xx <= 0.0 || yy <= 0.0 {
        0.0
    } else {
        xy / (xx.sqrt() * yy.sqrt())
    }
}

fn decimated(x: &[f32]) -> Vec<f32> {
    x.chunks(DECIMATE).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect()
}

/// Lines up the two legs from their kept audio (see the module doc); `max_delay_ns` is
/// `align_max`. Costs about a millisecond of one core: run it off the frame path.
pub fn estimate(data: &LegRing, carrier: &LegRing, max_delay_ns: u64) -> Result<Estimate, Unaligned> {
    let (Some(dn), Some(cn)) = (data.newest(), carrier.newest()) else { return Err(Unaligned::NotEnoughAudio) };
    if cn < SEQ_BASE + WINDOW + WINDOW_END || dn < SEQ_BASE + RING as u64 {
        return Err(Unaligned::NotEnoughAudio);
    }
    let c0 = cn - WINDOW_END - WINDOW;
    let d0 = dn + 1 - RING as u64;
    let (win, win_held) = carrier.samples(c0, WINDOW);
    let (span, span_held) = data.samples(d0, RING as u64);
    if win_held < (WINDOW as usize * 3) / 4 || span_held < RING * 3 / 4 {
        return Err(Unaligned::NotEnoughAudio);
    }
    let mean_abs = win.iter().map(|x| x.abs()).sum::<f32>() / win.len() as f32;
    if mean_abs < f32::from(QUIET_LEVEL) {
        return Err(Unaligned::Silent);
    }
    // Coarse: every lag at a quarter of the rate.
    let (wd, sd) = (decimated(&win), decimated(&span));
    let mut best = (0usize, f32::MIN);
    for lag in 0..=sd.len() - wd.len() {
        let r = ncc(&wd, &sd, lag);
        if r > best.1 {
            best = (lag, r);
        }
    }
    // Fine: the full rate around it.
    let centre = best.0 * DECIMATE;
    let lo = centre.saturating_sub(DECIMATE * 2);
    let hi = (centre + DECIMATE * 2).min(span.len() - win.len());
    let mut fine = (centre, f32::MIN);
    for lag in lo..=hi {
        let r = ncc(&win, &span, lag);
        if r > fine.1 {
            fine = (lag, r);
        }
    }
    let (lag, score) = fine;
    if score < MIN_SCORE {
        return Err(Unaligned::NoMatch { score });
    }
    // Carrier sample n (frame c0 + n/160) is data sample lag + n (frame d0 + (lag + n)/160).
    let q = (lag as i64 + FRAME as i64 / 2).div_euclid(FRAME as i64);
    let residual_samples = (lag as i64 - q * FRAME as i64) as i32;
    let k = c0 as i64 - d0 as i64 - q;
    // D: arrival of each carrier frame minus that of the data frame of the same audio.
    let mut delays: Vec<i64> = (c0..c0 + WINDOW)
        .filter_map(|s| {
            let c = carrier.slot_arrival(s)?;
            let d = data.slot_arrival(s.checked_add_signed(-k)?)?;
            Some(c as i64 - d as i64)
        })
        .collect();
    if delays.is_empty() {
        return Err(Unaligned::NotEnoughAudio);
    }
    delays.sort_unstable();
    let delay_ns = delays[delays.len() / 2];
    if delay_ns.unsigned_abs() > max_delay_ns {
        return Err(Unaligned::TooFar { delay_ns });
    }
    Ok(Estimate { k, residual_samples, score, delay_ns })
}

impl LegRing {
    fn slot_arrival(&self, seq: u64) -> Option<u64> {
        let slot = &self.slots[(seq % RING as u64) as usize];
        (slot.seq.load(Ordering::Acquire) == seq).then(|| slot.arrival_ns.load(Ordering::Relaxed))
    }
}

/// What the driver's hook does with its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The frame passes as it came (its own content, the preferred leg had none better).
    Own,
    /// The frame's payload was overwritten with the content the mix wants next.
    Filled {
        /// From the other leg's ring (else the driver's own, an earlier frame).
        from_other: bool,
    },
    /// Nothing to pass this time (the mix already had this content): drop the frame.
    Drop,
}

/// A device group's alignment: the legs' rings, the lag between them, the next content.
pub struct Aligner {
    rings: [LegRing; 2],
    /// Carrier seq − data seq of the same audio (valid while `locked`).
    k: AtomicI64,
    locked: AtomicBool,
    /// The content number the mix wants next (0: none passed yet in aligned mode).
    next: AtomicU64,
    /// The leg whose frames are preferred where both have the content.
    preferred: Path,
    /// Frames filled from the other leg / the driver's own ring / skipped over a pause / dropped.
    pub filled_other: AtomicU64,
    pub filled_own: AtomicU64,
    pub caught_up: AtomicU64,
    pub dropped: AtomicU64,
}

/// How far the content the mix wants may lag the driver's own before the driver skips ahead
/// regardless of speech (frames, 300 ms): each failover onto the earlier leg adds its detection
/// time to the listener's delay until a pause takes it back; in speech without a pause this
/// bounds the delay (measured: 15 carrier cuts in continuous voice had added 780 ms with 40).
pub const MAX_LAG: u64 = 15;

impl Aligner {
    pub fn new(preferred: Path) -> Self {
        Self {
            rings: Default::default(),
            k: AtomicI64::new(0),
            locked: AtomicBool::new(false),
            next: AtomicU64::new(0),
            preferred,
            filled_other: AtomicU64::new(0),
            filled_own: AtomicU64::new(0),
            caught_up: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The leg whose frames are preferred where both legs have the content.
    pub fn preferred(&self) -> Path {
        self.preferred
    }

    pub fn ring(&self, path: Path) -> &LegRing {
        &self.rings[path as usize]
    }

    /// Keeps frame `raw_seq` of leg `leg` on `path` (see [`LegRing::store`]); a new leg on a path
    /// ends the alignment in force (its numbers are another stream's: measured anew).
    pub fn keep(&self, path: Path, leg: u64, raw_seq: u16, format: Format, payload: &[u8], now_ns: u64) -> Option<u64> {
        let ring = &self.rings[path as usize];
        let owner = ring.owner.load(Ordering::Acquire);
        if owner != 0 && owner != leg {
            self.unlock();
        }
        ring.store(leg, raw_seq, format, payload, now_ns)
    }

    /// The lag in force, if the legs are aligned.
    pub fn lag(&self) -> Option<i64> {
        self.locked.load(Ordering::Acquire).then(|| self.k.load(Ordering::Acquire))
    }

    /// Aligns the legs by `k`. The content the mix wants next carries on from what `driver`
    /// passed last, so the first aligned frame neither repeats nor skips.
    pub fn lock(&self, k: i64, driver: Option<Path>) {
        let next = driver
            .and_then(|p| {
                let s = self.rings[p as usize].passed.load(Ordering::Acquire);
                (s != 0).then(|| self.content(p, s, k))
            })
            .flatten()
            .map_or(0, |c| c + 1);
        self.k.store(k, Ordering::Release);
        self.next.store(next, Ordering::Release);
        self.locked.store(true, Ordering::Release);
    }

    /// Back to switching (a leg was replaced: its numbers are another stream's).
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
        self.next.store(0, Ordering::Release);
    }

    fn content(&self, path: Path, seq: u64, k: i64) -> Option<u64> {
        match path {
            Path::Carrier => Some(seq),
            Path::Data => seq.checked_add_signed(k),
        }
    }

    fn seq_of(&self, path: Path, content: u64, k: i64) -> Option<u64> {
        match path {
            Path::Carrier => Some(content),
            Path::Data => content.checked_add_signed(-k),
        }
    }

    /// Leg `path`'s frame `seq` (already kept in its ring by [`LegRing::store`]) passes into the
    /// mix: which content goes, written into `out` (the frame's payload, `format`). Only the
    /// driver calls this, for frames the frame clock lets pass. Unaligned, every frame is its own.
    pub fn emit(&self, path: Path, seq: u64, format: Format, out: &mut [u8]) -> Emit {
        let Some(k) = self.lag() else {
            self.rings[path as usize].passed.store(seq, Ordering::Release);
            return Emit::Own;
        };
        let Some(own) = self.content(path, seq, k) else { return Emit::Own };
        let next = self.next.load(Ordering::Acquire);
        let mut want = if next == 0 || next + MAX_LAG < own || next > own + MAX_LAG {
            own // nothing passed yet, or too far off: resynchronise on this frame
        } else if next > own {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Emit::Drop; // the mix already had this content (from the other leg)
        } else {
            next
        };
        // Lagging behind the own frame: skip ahead over a pause.
        while want < own && self.quiet(want, k) {
            want += 1;
            self.caught_up.fetch_add(1, Ordering::Relaxed);
        }
        if self.next.compare_exchange(next, want + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Emit::Drop; // another hook passed a frame this instant
        }
        self.rings[path as usize].passed.store(seq, Ordering::Release);
        let other = path.other();
        let order = if self.preferred == path { [path, other] } else { [other, path] };
        let mut buf = [0u8; FRAME];
        loop {
            for p in order {
                if p == path && want == own {
                    return Emit::Own; // the frame already holds it
                }
                let Some(s) = self.seq_of(p, want, k) else { continue };
                if let Some(kept) = self.rings[p as usize].read(s, &mut buf) {
                    if convert(kept, &buf, format, out, FRAME) {
                        if p == path {
                            self.filled_own.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.filled_other.fetch_add(1, Ordering::Relaxed);
                        }
                        return Emit::Filled { from_other: p != path };
                    }
                }
            }
            if want >= own {
                return Emit::Own;
            }
            // Lost on both legs: on to the next content (the mix wants the one after).
            want += 1;
            self.next.store(want + 1, Ordering::Release);
        }
    }

    /// Whether content `c` is a pause on every leg that holds it (and some leg does).
    fn quiet(&self, c: u64, k: i64) -> bool {
        let mut seen = false;
        for p in [Path::Data, Path::Carrier] {
            if let Some(level) = self.seq_of(p, c, k).and_then(|s| self.rings[p as usize].level(s)) {
                if level >= QUIET_LEVEL {
                    return false;
                }
                seen = true;
            }
        }
        seen
    }

    /// Whether the newest `n` frames kept of `path` are all there and all a pause.
    pub fn quiet_tail(&self, path: Path, n: u64) -> bool {
        let ring = &self.rings[path as usize];
        let Some(newest) = ring.newest() else { return false };
        (0..n).all(|i| ring.level(newest - i).is_some_and(|l| l < QUIET_LEVEL))
    }

    /// The content number of the next frame the mix wants (0: none yet).
    pub fn next(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }
}

/// How often the legs are measured until they are aligned, and then (drift, a changed path).
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
        self.next_at_ns = now_ns + if settled { CHECK_EVERY_NS } else { MEASURE_EVERY_NS };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downlink::ulaw_encode;

    /// A frame of content `n`: two tones that change from frame to frame, μ-law.
    fn frame(n: u64) -> [u8; FRAME] {
        let f1 = 400.0 + 100.0 * (n % 16) as f64;
        let f2 = 2000.0 + 100.0 * ((n / 16) % 16) as f64;
        std::array::from_fn(|i| {
            let t = (n as usize * FRAME + i) as f64 / 8000.0;
            let v =
                4500.0 * ((2.0 * std::f64::consts::PI * f1 * t).sin() + (2.0 * std::f64::consts::PI * f2 * t).sin());
            ulaw_encode(v as i16)
        })
    }

    fn silent() -> [u8; FRAME] {
        [0xff; FRAME]
    }

    /// Fills both rings with `frames` frames of content: the carrier leg's sequence numbers start
    /// at `c_base`, the data leg's at `d_base`; the data leg's frames arrive `d_ms` earlier.
    fn fill(a: &Aligner, frames: u64, c_base: u16, d_base: u16, d_ms: u64) {
        for n in 0..frames {
            let t = 1_000_000_000 + n * 20_000_000;
            a.ring(Path::Data).store(1, d_base.wrapping_add(n as u16), Format::Ulaw, &frame(n), t);
            a.ring(Path::Carrier).store(
                2,
                c_base.wrapping_add(n as u16),
                Format::Ulaw,
                &frame(n),
                t + d_ms * 1_000_000,
            );
        }
    }

    #[test]
    fn the_lag_between_the_legs_is_found_from_their_audio() {
        let a = Aligner::new(Path::Data);
        fill(&a, 120, 65_500, 1000, 80);
        let e = estimate(a.ring(Path::Data), a.ring(Path::Carrier), 300_000_000).expect("aligned");
        // carrier 65 500 + n and data 1000 + n carry the same audio (unwrapped past 65 535)
        let cs = a.ring(Path::Carrier).newest().unwrap();
        let ds = a.ring(Path::Data).newest().unwrap();
        assert_eq!(cs as i64 - ds as i64, e.k, "{e:?}");
        assert_eq!(e.residual_samples, 0);
        assert!(e.score > 0.95, "{e:?}");
        assert_eq!(e.delay_ns, 80_000_000);
        assert_eq!(e.later(), Path::Carrier);
    }

    #[test]
    fn a_data_leg_behind_the_carrier_is_found_too() {
        let a = Aligner::new(Path::Data);
        // the data leg's audio comes 60 ms later: its frame n + 3 arrives with carrier frame n
        for n in 0..120u64 {
            let t = 1_000_000_000 + n * 20_000_000;
            a.ring(Path::Carrier).store(2, 500 + n as u16, Format::Ulaw, &frame(n), t);
            a.ring(Path::Data).store(1, 9000 + n as u16, Format::Ulaw, &frame(n), t + 60_000_000);
        }
        let e = estimate(a.ring(Path::Data), a.ring(Path::Carrier), 300_000_000).expect("aligned");
        assert_eq!(e.k, 500 - 9000);
        assert_eq!(e.delay_ns, -60_000_000);
        assert_eq!(e.later(), Path::Data);
    }

    #[test]
    fn silence_different_audio_and_too_far_are_refused() {
        let a = Aligner::new(Path::Data);
        for n in 0..120u64 {
            a.ring(Path::Data).store(1, n as u16, Format::Ulaw, &silent(), n * 20_000_000);
            a.ring(Path::Carrier).store(2, n as u16, Format::Ulaw, &silent(), n * 20_000_000);
        }
        assert_eq!(estimate(a.ring(Path::Data), a.ring(Path::Carrier), 300_000_000), Err(Unaligned::Silent));

        let b = Aligner::new(Path::Data);
        for n in 0..120u64 {
            b.ring(Path::Data).store(1, n as u16, Format::Ulaw, &frame(n), n * 20_000_000);
            // a noise-like carrier leg: another voice altogether
            let noise: [u8; FRAME] = std::array::from_fn(|i| ((n as usize * 7919 + i * 104_729) % 251) as u8);
            b.ring(Path::Carrier).store(2, n as u16, Format::Ulaw, &noise, n * 20_000_000);
        }
        assert!(matches!(
            estimate(b.ring(Path::Data), b.ring(Path::Carrier), 300_000_000),
            Err(Unaligned::NoMatch { .. })
        ));

        let c = Aligner::new(Path::Data);
        fill(&c, 120, 100, 200, 200);
        assert_eq!(
            estimate(c.ring(Path::Data), c.ring(Path::Carrier), 150_000_000),
            Err(Unaligned::TooFar { delay_ns: 200_000_000 })
        );
        let d = Aligner::new(Path::Data);
        fill(&d, 20, 100, 200, 80);
        assert_eq!(estimate(d.ring(Path::Data), d.ring(Path::Carrier), 300_000_000), Err(Unaligned::NotEnoughAudio));
    }

    #[test]
    fn a_sub_frame_offset_is_found_as_a_residue() {
        let a = Aligner::new(Path::Data);
        // the carrier leg's audio starts 40 samples (5 ms) later within its frames
        let audio = |s: i64| -> [u8; FRAME] {
            std::array::from_fn(|i| {
                let t = (s * FRAME as i64 + i as i64) as f64 / 8000.0;
                let f = 300.0 + 37.0 * ((s * FRAME as i64 + i as i64) / 800) as f64;
                ulaw_encode((6000.0 * (2.0 * std::f64::consts::PI * f * t).sin()) as i16)
            })
        };
        for n in 0..120i64 {
            let shifted: [u8; FRAME] = {
                let (a0, a1) = (audio(n - 1), audio(n));
                std::array::from_fn(|i| if i < 40 { a0[i + 120] } else { a1[i - 40] })
            };
            a.ring(Path::Data).store(1, 3000 + n as u16, Format::Ulaw, &audio(n), n as u64 * 20_000_000);
            a.ring(Path::Carrier).store(2, 7000 + n as u16, Format::Ulaw, &shifted, n as u64 * 20_000_000 + 80_000_000);
        }
        let e = estimate(a.ring(Path::Data), a.ring(Path::Carrier), 300_000_000).expect("aligned");
        assert_eq!(e.k, 7000 - 3000);
        assert_eq!(e.residual_samples, -40, "{e:?}");
    }

    /// A listener's view of one slot: which content the mix got.
    fn content_of(out: &[u8; FRAME]) -> Option<u64> {
        (0..256).find(|n| frame(*n) == *out)
    }

    #[test]
    fn the_driver_fills_each_slot_from_the_preferred_leg_and_a_cut_costs_nothing() {
        let a = Aligner::new(Path::Data);
        let k = 5000 - 100; // carrier 5000 + n = data 100 + n
        a.lock(k, None);
        let mut heard = Vec::new();
        let data_seq = |n: u64| 100u16 + n as u16;
        for n in 0..60u64 {
            // the data leg is 4 frames ahead: frame n + 4 arrives with carrier frame n
            // (and the data path is cut for frames 20..30)
            if !(20..30).contains(&(n + 4)) {
                a.ring(Path::Data).store(1, data_seq(n + 4), Format::Ulaw, &frame(n + 4), n);
            }
            let mut out = frame(n);
            let s = a.ring(Path::Carrier).store(2, 5000 + n as u16, Format::Ulaw, &out, n).unwrap();
            match a.emit(Path::Carrier, s, Format::Ulaw, &mut out) {
                Emit::Drop => {}
                e => {
                    let from_other = matches!(e, Emit::Filled { from_other: true });
                    heard.push((content_of(&out).unwrap(), from_other))
                }
            }
        }
        let contents: Vec<u64> = heard.iter().map(|h| h.0).collect();
        assert_eq!(contents, (0..60).collect::<Vec<_>>(), "every content once, in order");
        // from the data leg wherever it had the frame (it always came first), else the carrier's
        for (c, from_data) in &heard {
            assert_eq!(*from_data, *c >= 4 && !(20..30).contains(c), "content {c}");
        }
    }

    #[test]
    fn a_new_driver_carries_on_without_repeat_and_catches_up_over_a_pause() {
        let a = Aligner::new(Path::Data);
        a.lock(0, None); // the same numbering on both legs, for readability
        let body = |n: u64| if (40..48).contains(&n) { silent() } else { frame(n) };
        let keep =
            |path: Path, n: u64| a.ring(path).store(path as u64 + 1, n as u16, Format::Ulaw, &body(n), 0).unwrap();
        let drive = |path: Path, n: u64| {
            let s = keep(path, n);
            let mut out = body(n);
            (a.emit(path, s, Format::Ulaw, &mut out) != Emit::Drop).then(|| content_of(&out))
        };
        // The carrier leg drives (contents 0..20); the data leg, 4 frames ahead, is kept only.
        for n in 0..20u64 {
            keep(Path::Data, n + 4);
            assert_eq!(drive(Path::Carrier, n), Some(Some(n)));
        }
        // The carrier dies after content 19; during the stall detection the data leg's 24..27
        // arrive, then it drives: its own frames are 27.. but the mix wants 20.
        for n in 24..27u64 {
            keep(Path::Data, n);
        }
        let heard: Vec<Option<u64>> = (27..60u64).filter_map(|n| drive(Path::Data, n)).collect();
        let voiced: Vec<u64> = heard.iter().flatten().copied().collect();
        assert_eq!(voiced.first(), Some(&20), "{heard:?}");
        assert!(voiced.windows(2).all(|w| w[1] > w[0]), "never backwards: {voiced:?}");
        let skipped: Vec<u64> = (20..60).filter(|c| !voiced.contains(c) && !(40..48).contains(c)).collect();
        assert!(skipped.is_empty(), "no speech skipped: {skipped:?}");
        assert_eq!(voiced.last(), Some(&59), "caught up over the pause: {heard:?}");
        assert_eq!(a.caught_up.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_pause_at_the_end_of_a_ring_is_found() {
        let a = Aligner::new(Path::Data);
        for n in 0..10u64 {
            let body = if n >= 6 { silent() } else { frame(n) };
            a.ring(Path::Data).store(1, n as u16, Format::Ulaw, &body, 0);
        }
        assert!(a.quiet_tail(Path::Data, 4));
        assert!(!a.quiet_tail(Path::Data, 5));
        assert!(!a.quiet_tail(Path::Carrier, 1), "nothing kept is no pause");
    }

    #[test]
    fn a_replaced_leg_empties_its_ring() {
        let r = LegRing::default();
        r.store(1, 10, Format::Ulaw, &frame(1), 0);
        assert_eq!(r.newest(), Some(SEQ_BASE + 10));
        r.store(2, 40_000, Format::Ulaw, &frame(1), 0);
        assert_eq!(r.newest(), Some(SEQ_BASE + 40_000));
        let mut buf = [0; FRAME];
        assert!(r.read(SEQ_BASE + 10, &mut buf).is_none());
        assert!(r.store(2, 1, Format::Slin(8000), &[0; 320], 0).is_none(), "only G.711 is kept");
    }

    #[test]
    fn the_tracker_aligns_keeps_the_alignment_through_silence_and_gives_it_up_on_a_mismatch() {
        let a = Aligner::new(Path::Data);
        let mut t = Tracker::new(300_000_000, 0);
        let s = 1_000_000_000;
        assert!(!t.due(s / 2) && t.due(s));
        assert_eq!(t.record(&a, Err(Unaligned::NotEnoughAudio), None, s), None, "quiet at the start");
        let e = Estimate { k: 7, residual_samples: 0, score: 0.9, delay_ns: 80_000_000 };
        assert_eq!(t.record(&a, Ok(e), Some(Path::Data), 2 * s), Some(Change::Aligned(e)));
        assert_eq!(a.lag(), Some(7));
        assert!(!t.due(25 * s) && t.due(32 * s), "checked every 30 s once aligned");
        assert_eq!(t.record(&a, Err(Unaligned::Silent), None, 32 * s), None);
        let moved = Estimate { delay_ns: 130_000_000, ..e };
        assert_eq!(t.record(&a, Ok(moved), None, 62 * s), Some(Change::Aligned(moved)), "the offset moved");
        let nm = Unaligned::NoMatch { score: 0.1 };
        assert_eq!(t.record(&a, Err(nm), None, 92 * s), None, "one mismatch is not enough");
        assert!(t.due(93 * s), "re-measured a second later");
        assert_eq!(t.record(&a, Err(nm), None, 93 * s), Some(Change::Unaligned(nm)));
        assert_eq!(a.lag(), None);
        assert_eq!(t.record(&a, Err(Unaligned::NoMatch { score: 0.2 }), None, 94 * s), None, "each reason once");
    }
}
