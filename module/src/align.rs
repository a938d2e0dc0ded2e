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
//! - **Low latency** (`alignment = low-latency`): the same rings, lag and content numbers, but
//!   the preferred leg keeps driving with its own timing (no handover to the later leg). A
//!   failover onto the later leg finds its first frames [`Emit::Behind`] what the mix had: they
//!   carry concealment ([`Aligner::conceal`], `conceal.rs`) instead of a repeat; the take-back
//!   onto the earlier leg is the "driver comes back" case above (held back, caught up in a pause).
//!
//! Frames the module cannot keep (not 20 ms of G.711) leave a group unaligned: it switches as
//! before, and the reason is reported. Nothing here decides *when* a leg is dead: that is the
//! frame clock's business.
//!
//! Files: `align.rs` (rings, the estimate, the aligner), `align/tracker.rs` (when to measure and
//! what a measurement changes), `align/tests.rs`.

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
/// The best lag must beat every lag a frame or more away by this much (else: ambiguous).
pub const AMBIGUITY_MARGIN: f32 = 0.15;
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
    /// They match about as well at lags a frame or more apart (a steady tone, music with a
    /// short period): no one offset can be told.
    Ambiguous { score: f32, runner_up: f32 },
}

impl Unaligned {
    /// A short reason for events and logs.
    pub fn reason(&self) -> String {
        match self {
            Self::NotEnoughAudio => "not-enough-g711-audio".into(),
            Self::Silent => "silence".into(),
            Self::NoMatch { score } => format!("no-match (best score {score:.2})"),
            Self::TooFar { delay_ns } => format!("offset {} ms beyond align_max", delay_ns / 1_000_000),
            Self::Ambiguous { score, runner_up } => {
                format!("ambiguous (score {score:.2}, {runner_up:.2} a frame or more away)")
            }
        }
    }
}

/// Dot product in eight lanes (the compiler keeps them in vector registers; a single running
/// sum would be a chain of dependent additions).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The lag in `lags` at which `win` correlates best with `span` (`span[lag..]`), its normalised
/// cross-correlation, and the best lag more than `apart` from it (the runner-up). The
/// window's energy is computed once and the span's slides with the lag (recomputed every 64
/// lags, so rounding does not build up).
fn best_lag(
    win: &[f32],
    span: &[f32],
    lags: std::ops::RangeInclusive<usize>,
    apart: usize,
) -> (usize, f32, Option<usize>) {
    let n = win.len();
    let xx = dot(win, win);
    let start = *lags.start();
    if xx <= 0.0 {
        return (start, f32::MIN, None);
    }
    let mut scores = Vec::with_capacity(lags.end().saturating_sub(start) + 1);
    let mut yy = 0f32;
    for lag in lags {
        if (lag - start) % 64 == 0 || yy <= 0.0 {
            yy = dot(&span[lag..lag + n], &span[lag..lag + n]);
        }
        scores.push(if yy > 0.0 { dot(win, &span[lag..lag + n]) / (xx.sqrt() * yy.sqrt()) } else { 0.0 });
        // The energy of the next lag's slice: one sample out, one in.
        if lag + n < span.len() {
            yy += span[lag + n] * span[lag + n] - span[lag] * span[lag];
        }
    }
    let (best, score) = scores.iter().enumerate().fold((0, f32::MIN), |b, (i, r)| if *r > b.1 { (i, *r) } else { b });
    let runner_up = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| i.abs_diff(best) > apart)
        .fold(None, |b: Option<(usize, f32)>, (i, r)| if b.is_none_or(|b| *r > b.1) { Some((i, *r)) } else { b });
    (start + best, score, runner_up.map(|(i, _)| start + i))
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
    let coarse = best_lag(&wd, &sd, 0..=sd.len() - wd.len(), FRAME / DECIMATE);
    // Fine: the full rate around it.
    let around = |coarse_lag: usize| {
        let centre = coarse_lag * DECIMATE;
        centre.saturating_sub(DECIMATE * 2)..=(centre + DECIMATE * 2).min(span.len() - win.len())
    };
    let (lag, score, _) = best_lag(&win, &span, around(coarse.0), usize::MAX);
    if score < MIN_SCORE {
        return Err(Unaligned::NoMatch { score });
    }
    // The best lag a frame or more away, at the full rate too (decimation blurs what tells
    // neighbouring frames apart).
    if let Some(other) = coarse.2 {
        let (_, runner_up, _) = best_lag(&win, &span, around(other), usize::MAX);
        if runner_up > score - AMBIGUITY_MARGIN {
            return Err(Unaligned::Ambiguous { score, runner_up });
        }
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
    /// The mix already had this frame's content (the frame is behind what was played: the
    /// first frames of the later leg after a failover onto it). Dropped, or concealed.
    Behind,
    /// Nothing to pass this time (another hook passed a frame this instant): drop the frame.
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
    /// The frame the mix had last, as `path << 63 | seq` in that path's ring (0: none), and the
    /// frames concealed since (see [`Aligner::conceal`]).
    last_mixed: AtomicU64,
    concealed_run: AtomicU32,
    /// Frames concealed (`conceal.rs`).
    pub concealed: AtomicU64,
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
            last_mixed: AtomicU64::new(0),
            concealed_run: AtomicU32::new(0),
            concealed: AtomicU64::new(0),
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
            self.mixed(path, seq);
            return Emit::Own;
        };
        let Some(own) = self.content(path, seq, k) else { return Emit::Own };
        let next = self.next.load(Ordering::Acquire);
        let mut want = if next == 0 || next + MAX_LAG < own || next > own + MAX_LAG {
            own // nothing passed yet, or too far off: resynchronise on this frame
        } else if next > own {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Emit::Behind; // the mix already had this content (from the other leg)
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
                    self.mixed(path, seq);
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
                        self.mixed(p, s);
                        return Emit::Filled { from_other: p != path };
                    }
                }
            }
            if want >= own {
                self.mixed(path, seq);
                return Emit::Own;
            }
            // Lost on both legs: on to the next content (the mix wants the one after).
            want += 1;
            self.next.store(want + 1, Ordering::Release);
        }
    }

    /// Frame `seq` of `path`'s ring went into the mix: the source of a concealment, should the
    /// next frames be missing.
    fn mixed(&self, path: Path, seq: u64) {
        self.last_mixed.store((path as u64) << 63 | seq, Ordering::Release);
        self.concealed_run.store(0, Ordering::Release);
    }

    /// Writes the next frame of a concealment into `out` (`format`): the frame the mix had last,
    /// repeated and faded (`conceal.rs`). False when there is nothing to conceal with (no frame
    /// mixed yet, the ring no longer holds it, the run is over, a format not G.711).
    pub fn conceal(&self, format: Format, out: &mut [u8]) -> bool {
        let last = self.last_mixed.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let path = if last >> 63 == 1 { Path::Carrier } else { Path::Data };
        let mut buf = [0u8; FRAME];
        let Some(kept) = self.rings[path as usize].read(last & !(1 << 63), &mut buf) else { return false };
        let run = self.concealed_run.fetch_add(1, Ordering::AcqRel) + 1;
        let done = crate::conceal::fill(kept, &buf, run, format, out);
        if done {
            self.concealed.fetch_add(1, Ordering::Relaxed);
        }
        done
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
mod tracker;
pub use tracker::{Change, Standing, Tracker, CHECK_EVERY_NS, MEASURE_EVERY_NS};

#[cfg(test)]
mod tests;
