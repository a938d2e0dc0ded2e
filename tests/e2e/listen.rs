//! What a listener hears at a switch: the frame-numbered test signal the phone sends on both legs
//! ([`Script`]), and its analysis from the RTP the far party received ([`hear`], [`analyse`]).
//!
//! Every 20 ms frame of the signal carries its own number: two tones at once, one of 16 "row"
//! tones (2000, 2100, ... 3500 Hz) and one of 16 "column" tones (400, 500, ... 1900 Hz), so that
//! 256 frames (5.12 s) pass before a code comes back. The column runs back and forth (a reflected
//! code), so neighbouring frames differ in one tone only and a received packet that straddles two
//! frames still reads as one frame. The signal can be continuous or come as talk spurts with
//! pauses of silence between them (speech-like); pauses are still sent (silent frames), as a
//! phone without DTX does. Every tone is a whole number of cycles in 160 samples, so the tones of
//! one frame are orthogonal under the Goertzel filter.
//!
//! [`analyse`] takes the heard packets of one window (a failover or a take-back) and counts what a
//! listener notices: silence where voice was due (ms), frames repeated (the sequence goes back;
//! the frame just heard coming again faded is concealment, counted apart),
//! frames of speech skipped (it jumps ahead further than the time that passed; frames of a pause
//! are not speech), packets with both legs at once (two frame codes mixed), and how far the
//! listener's delay moved (a switch between legs that are D ms apart moves it by D).

use crate::audio::{tone_share, ulaw_decode, ulaw_encode};
use crate::rtp::Packet;
use std::time::{Duration, Instant};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// One frame, in ms.
pub const FRAME_MS: f64 = 20.0;
/// Tones per digit.
const DIGITS: usize = 16;
/// Frames before a code comes back (5.12 s).
pub const CYCLE: usize = DIGITS * DIGITS;
/// Amplitude of each of a frame's two tones (together about -12 dBFS at the peak).
const AMPLITUDE: f64 = 4500.0;
/// A tone is present when it holds this share of the packet's energy.
const PRESENT: f64 = 0.10;
/// A packet quieter than this (RMS) is silence.
const SILENT_RMS: f64 = 200.0;
/// A frame heard again at this share of its level or less is concealment, not a repeat.
pub const CONCEALED_BELOW: f64 = 0.95;

fn column_hz(d: usize) -> f64 {
    400.0 + 100.0 * d as f64
}

fn row_hz(d: usize) -> f64 {
    2000.0 + 100.0 * d as f64
}

/// The (row, column) tones of frame `n`: the column runs up on even rows and down on odd ones.
fn digits(n: usize) -> (usize, usize) {
    let n = n % CYCLE;
    let (row, col) = (n / DIGITS, n % DIGITS);
    (row, if row % 2 == 0 { col } else { DIGITS - 1 - col })
}

/// The frame code (mod [`CYCLE`]) of a (row, column) pair.
fn code_of(row: usize, col: usize) -> usize {
    row * DIGITS + if row % 2 == 0 { col } else { DIGITS - 1 - col }
}

/// How the phone talks: all the time, or in spurts with pauses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Talk {
    /// Every frame is voiced.
    Continuous,
    /// Spurts of 0.4–1.2 s with pauses of 0.2–0.6 s, from a seed.
    Spurts { seed: u64 },
}

/// The reference signal: which frames are voiced, and each frame's audio.
#[derive(Clone, Debug)]
pub struct Script {
    voiced: Vec<bool>,
}

/// A small deterministic generator (splitmix64) for test schedules: no dependency, same runs
/// from the same seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

impl Script {
    /// `seconds` of signal (bounded: at most an hour).
    pub fn new(talk: Talk, seconds: f64) -> Self {
        let frames = (seconds.clamp(0.0, 3600.0) * 1000.0 / FRAME_MS) as usize;
        let voiced = match talk {
            Talk::Continuous => vec![true; frames],
            Talk::Spurts { seed } => {
                let mut rng = Rng::new(seed);
                let mut v = Vec::with_capacity(frames);
                while v.len() < frames {
                    let spurt = rng.between(20, 60);
                    let pause = rng.between(10, 30);
                    v.extend(std::iter::repeat_n(true, spurt));
                    v.extend(std::iter::repeat_n(false, pause));
                }
                v.truncate(frames);
                v
            }
        };
        Self { voiced }
    }

    /// How many frames the script has.
    pub fn frames(&self) -> usize {
        self.voiced.len()
    }

    /// Whether frame `n` carries voice (frames outside the script do not).
    pub fn voiced(&self, n: i64) -> bool {
        usize::try_from(n).ok().and_then(|n| self.voiced.get(n).copied()).unwrap_or(false)
    }

    /// Frame `n`'s 160 μ-law samples: its two tones when voiced, digital silence in a pause.
    pub fn frame(&self, n: usize) -> [u8; FRAME_SAMPLES] {
        let mut out = [0xffu8; FRAME_SAMPLES];
        if self.voiced(n as i64) {
            let (row, col) = digits(n);
            let (fr, fc) = (row_hz(row), column_hz(col));
            for (i, s) in out.iter_mut().enumerate() {
                let t = i as f64 / 8000.0;
                let v = AMPLITUDE
                    * ((2.0 * std::f64::consts::PI * fr * t).sin() + (2.0 * std::f64::consts::PI * fc * t).sin());
                *s = ulaw_encode(v as i16);
            }
        }
        out
    }
}

/// What one received 20 ms packet carried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sound {
    /// No frame code (silence, or audio without the test signal).
    Silent,
    /// One frame code (mod [`CYCLE`]), possibly straddling it and its neighbour.
    Frame(usize),
    /// Two frame codes that are not neighbours: both legs at once. `codes` lists every code the
    /// tones present could form (the analysis picks the one that continues the sequence).
    TwoLegs { codes: [Option<usize>; 4] },
}

/// One received packet, decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heard {
    pub at: Instant,
    pub sound: Sound,
    /// The packet's level (RMS of its samples).
    pub rms: f64,
}

/// The tones present in a set (indices, strongest first; at most 3 considered).
fn present(shares: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..shares.len()).filter(|&i| shares[i] > PRESENT).collect();
    idx.sort_by(|a, b| shares[*b].total_cmp(&shares[*a]));
    idx.truncate(3);
    idx
}

/// Decodes 160 (or so) samples.
pub fn decode(samples: &[i16]) -> Sound {
    if samples.is_empty() {
        return Sound::Silent;
    }
    if rms(samples) < SILENT_RMS {
        return Sound::Silent;
    }
    let cols: Vec<f64> = (0..DIGITS).map(|d| tone_share(samples, column_hz(d))).collect();
    let rows: Vec<f64> = (0..DIGITS).map(|d| tone_share(samples, row_hz(d))).collect();
    let (pc, pr) = (present(&cols), present(&rows));
    if pc.is_empty() || pr.is_empty() {
        return Sound::Silent;
    }
    let adjacent = |a: usize, b: usize| a.abs_diff(b) == 1;
    // rows wrap: the last row's last frame is followed by frame 0 of the next cycle
    let adjacent_rows = |a: usize, b: usize| a.abs_diff(b) == 1 || a.abs_diff(b) == DIGITS - 1;
    // Two neighbouring frames differ in one tone by one step, one after the other: in one half of
    // the packet (the half without the frame boundary) only one of the two tones sounds. Both
    // legs at once (frames whose tones happen to look like neighbours) sound together throughout.
    let in_turn = |fa: f64, fb: f64| {
        let (h1, h2) = samples.split_at(samples.len() / 2);
        [h1, h2].iter().any(|h| {
            let (a, b) = (tone_share(h, fa), tone_share(h, fb));
            a.min(b) < 0.2 * a.max(b)
        })
    };
    match (pc.as_slice(), pr.as_slice()) {
        ([c], [r]) => Sound::Frame(code_of(*r, *c)),
        ([c, c2], [r]) if adjacent(*c, *c2) && in_turn(column_hz(*c), column_hz(*c2)) => Sound::Frame(code_of(*r, *c)),
        ([c], [r, r2]) if adjacent_rows(*r, *r2) && in_turn(row_hz(*r), row_hz(*r2)) => Sound::Frame(code_of(*r, *c)),
        _ => {
            let mut codes = [None; 4];
            let mut k = 0;
            for r in pr.iter().take(2) {
                for c in pc.iter().take(2) {
                    codes[k] = Some(code_of(*r, *c));
                    k += 1;
                }
            }
            Sound::TwoLegs { codes }
        }
    }
}

/// Decodes each PCMU packet (other payload types are skipped).
pub fn hear(packets: &[Packet]) -> Vec<Heard> {
    packets
        .iter()
        .filter(|p| p.payload_type == 0 && !p.payload.is_empty())
        .map(|p| {
            let samples: Vec<i16> = p.payload.iter().copied().map(ulaw_decode).collect();
            Heard { at: p.at, sound: decode(&samples), rms: rms(&samples) }
        })
        .collect()
}

/// The RMS level of some samples (0 for none).
pub fn rms(samples: &[i16]) -> f64 {
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / samples.len().max(1) as f64).sqrt()
}

/// How many packets carry the test signal at all (one code or two): on a phone leg, these are
/// the phone's own voice coming back to it.
pub fn with_signal(heard: &[Heard]) -> usize {
    heard.iter().filter(|h| h.sound != Sound::Silent).count()
}

/// What a listener noticed in one window (a failover or a take-back).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Switch {
    /// Packets with the signal in the window.
    pub voiced_packets: usize,
    /// The longest silence where voice was due, ms (a pause in the talk is not silence).
    pub silence_ms: f64,
    /// Frames heard a second time (the sequence went back).
    pub repeated: usize,
    /// Frames concealed: the frame just heard, again, quieter ([`CONCEALED_BELOW`] of its level
    /// or less; a module's packet loss concealment fades the last frame out). A repeat at full
    /// level is speech heard twice, counted in `repeated`.
    pub concealed: usize,
    /// Voiced frames never heard: the sequence jumped ahead further than the time that passed
    /// (frames of a pause are not counted).
    pub skipped: usize,
    /// Packets with two frame codes at once (both legs in the mix).
    pub two_legs: usize,
    /// How far the listener's delay moved across the window, ms (positive: later).
    pub delay_shift_ms: f64,
}

/// The absolute frame number of a code heard at `at`: the one nearest to where the sender's
/// clock was then (a path adds delay, never removes it; the window of 5.12 s allows ±2.5 s).
fn unwrap(code: usize, at: Instant, t0: Instant) -> i64 {
    let sent = at.saturating_duration_since(t0).as_secs_f64() * 1000.0 / FRAME_MS - 5.0;
    let base = (sent / CYCLE as f64).floor() as i64 * CYCLE as i64 + code as i64;
    [base - CYCLE as i64, base, base + CYCLE as i64]
        .into_iter()
        .min_by(|a, b| (*a as f64 - sent).abs().total_cmp(&(*b as f64 - sent).abs()))
        .unwrap_or(base)
}

/// Analyses the packets heard in `[from, to)`. `t0` is when the sender's frame 0 was due (the
/// pump's clock); `script` tells which frames are voiced.
pub fn analyse(heard: &[Heard], script: &Script, t0: Instant, from: Instant, to: Instant) -> Switch {
    let mut out = Switch::default();
    let mut prev: Option<(Instant, i64)> = None;
    let mut prev_rms = 0.0;
    let mut first: Option<(Instant, i64)> = None;
    for h in heard.iter().filter(|h| h.at >= from && h.at < to) {
        let frame = match h.sound {
            Sound::Silent => continue,
            Sound::Frame(code) => unwrap(code, h.at, t0),
            Sound::TwoLegs { codes } => {
                out.two_legs += 1;
                // the code that continues the sequence best
                let expect = prev.map(|(at, f)| {
                    f + (h.at.saturating_duration_since(at).as_secs_f64() * 1000.0 / FRAME_MS).round() as i64
                });
                let all = codes.iter().flatten().map(|c| unwrap(*c, h.at, t0));
                match expect {
                    Some(e) => all.min_by_key(|f| (f - e).abs()).unwrap_or(e),
                    None => all.max().unwrap_or(0),
                }
            }
        };
        out.voiced_packets += 1;
        first.get_or_insert((h.at, frame));
        if let Some((at, f)) = prev {
            let dt_ms = h.at.saturating_duration_since(at).as_secs_f64() * 1000.0;
            let d = frame - f;
            // frames of time that passed with nothing heard (jitter under 15 ms is not silence)
            let gap = (((dt_ms - FRAME_MS) / FRAME_MS) - 0.25).round().max(0.0) as i64;
            if d == 0 && h.rms <= CONCEALED_BELOW * prev_rms {
                out.concealed += 1;
            } else if d <= 0 {
                out.repeated += (1 - d) as usize;
            }
            if gap > 0 {
                // slot k of the gap is silence where voice was due when the frame due then is
                // voiced both on the timeline before the gap (f + k) and on the one after it (a
                // pause that only grew or shrank at a switch is no silence)
                let due =
                    (1..=gap).filter(|k| script.voiced(f + k) && script.voiced(frame - (gap + 1 - k))).count() as f64;
                out.silence_ms = out.silence_ms.max((dt_ms - FRAME_MS) * due / gap as f64);
            }
            let ahead = d - 1 - gap;
            if ahead > 0 {
                // the jump beyond the time that passed: the frames just before this one
                out.skipped += (1..=ahead).filter(|k| script.voiced(frame - k)).count();
            }
        }
        prev = Some((h.at, frame));
        prev_rms = h.rms;
    }
    if let (Some((a0, f0)), Some((a1, f1))) = (first, prev) {
        let delay = |at: Instant, f: i64| at.saturating_duration_since(t0).as_secs_f64() * 1000.0 - f as f64 * FRAME_MS;
        out.delay_shift_ms = delay(a1, f1) - delay(a0, f0);
    }
    out
}

/// Of the voiced frames the sender sent in `[from, to)` (by the frame numbers heard first and
/// last in it), how many the listener heard at least once: (heard, due).
pub fn delivered(heard: &[Heard], script: &Script, t0: Instant, from: Instant, to: Instant) -> (usize, usize) {
    let mut frames = std::collections::BTreeSet::new();
    for h in heard.iter().filter(|h| h.at >= from && h.at < to) {
        match h.sound {
            Sound::Silent => {}
            Sound::Frame(code) => {
                frames.insert(unwrap(code, h.at, t0));
            }
            Sound::TwoLegs { codes } => frames.extend(codes.iter().flatten().map(|c| unwrap(*c, h.at, t0))),
        }
    }
    let (Some(first), Some(last)) = (frames.first().copied(), frames.last().copied()) else { return (0, 0) };
    let due: Vec<i64> = (first..=last).filter(|f| script.voiced(*f)).collect();
    (due.iter().filter(|f| frames.contains(f)).count(), due.len())
}

/// The frames heard in `[from, to)` as runs, for reading by eye: `100-149 | 2 silent | 146-300`
/// (`x` marks a packet with both legs; times in ms from `from` at each break).
pub fn trace(heard: &[Heard], t0: Instant, from: Instant, to: Instant) -> String {
    let mut out = Vec::new();
    let mut run: Option<(i64, i64, f64)> = None; // first, last, at
    let mut silent = 0usize;
    let ms = |at: Instant| at.saturating_duration_since(from).as_secs_f64() * 1000.0;
    let flush = |run: &mut Option<(i64, i64, f64)>, out: &mut Vec<String>| {
        if let Some((a, b, at)) = run.take() {
            out.push(if a == b { format!("@{at:.0} {a}") } else { format!("@{at:.0} {a}-{b}") });
        }
    };
    for h in heard.iter().filter(|h| h.at >= from && h.at < to) {
        let (f, mixed) = match h.sound {
            Sound::Silent => {
                silent += 1;
                continue;
            }
            Sound::Frame(c) => (unwrap(c, h.at, t0), false),
            Sound::TwoLegs { codes } => (codes[0].map(|c| unwrap(c, h.at, t0)).unwrap_or(-1), true),
        };
        if silent > 0 {
            flush(&mut run, &mut out);
            out.push(format!("{silent} silent"));
            silent = 0;
        }
        match run {
            Some((a, b, at)) if f == b + 1 && !mixed => run = Some((a, f, at)),
            _ => {
                flush(&mut run, &mut out);
                if mixed {
                    out.push(format!("@{:.0} x{f}", ms(h.at)));
                } else {
                    run = Some((f, f, ms(h.at)));
                }
            }
        }
    }
    flush(&mut run, &mut out);
    if silent > 0 {
        out.push(format!("{silent} silent"));
    }
    out.join(" | ")
}

/// When frame `n` of a sender started at `t0` is due.
pub fn due(t0: Instant, n: usize) -> Instant {
    t0 + Duration::from_secs_f64(n as f64 * FRAME_MS / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A far end: frame numbers (None = a silent packet) arriving every 20 ms from `at0`.
    fn stream(script: &Script, frames: &[Option<i64>], at0: Instant) -> Vec<Heard> {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut pcm = [0xffu8; FRAME_SAMPLES];
                if let Some(f) = f {
                    pcm = script.frame(*f as usize);
                }
                let samples: Vec<i16> = pcm.iter().copied().map(ulaw_decode).collect();
                Heard { at: at0 + Duration::from_millis(20 * i as u64), sound: decode(&samples), rms: rms(&samples) }
            })
            .collect()
    }

    /// A clean path 40 ms long: frame n arrives at t0 + 40 ms + 20 n.
    fn setup(talk: Talk) -> (Script, Instant, Instant) {
        let t0 = Instant::now();
        (Script::new(talk, 30.0), t0, t0 + Duration::from_millis(40))
    }

    fn all(heard: &[Heard], script: &Script, t0: Instant) -> Switch {
        analyse(heard, script, t0, t0, t0 + Duration::from_secs(3600))
    }

    #[test]
    fn every_code_of_the_cycle_reads_back_and_neighbours_differ_in_one_tone() {
        let s = Script::new(Talk::Continuous, 10.0);
        for n in 0..CYCLE {
            let samples: Vec<i16> = s.frame(n).iter().copied().map(ulaw_decode).collect();
            assert_eq!(decode(&samples), Sound::Frame(n), "frame {n}");
            let (a, b) = (digits(n), digits(n + 1));
            let diff = usize::from(a.0 != b.0) + usize::from(a.1 != b.1);
            assert_eq!(diff, 1, "frames {n} and {}", n + 1);
        }
    }

    #[test]
    fn a_packet_straddling_two_frames_is_one_voice() {
        let s = Script::new(Talk::Continuous, 10.0);
        for n in [3usize, 15, 16, 31, 100, 255] {
            for cut in [20usize, 60, 80, 100, 140] {
                let mut pcm: Vec<u8> = s.frame(n)[cut..].to_vec();
                pcm.extend_from_slice(&s.frame(n + 1)[..cut]);
                let samples: Vec<i16> = pcm.iter().copied().map(ulaw_decode).collect();
                match decode(&samples) {
                    Sound::Frame(c) => assert!(c == n % CYCLE || c == (n + 1) % CYCLE, "{n}/{cut}: {c}"),
                    other => panic!("frame {n} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_clean_stream_shows_nothing() {
        for talk in [Talk::Continuous, Talk::Spurts { seed: 7 }] {
            let (s, t0, at0) = setup(talk);
            let frames: Vec<Option<i64>> = (0..600).map(Some).collect();
            let r = all(&stream(&s, &frames, at0), &s, t0);
            assert_eq!((r.silence_ms, r.repeated, r.skipped, r.two_legs), (0.0, 0, 0, 0), "{talk:?}: {r:?}");
            assert!(r.delay_shift_ms.abs() < 1.0, "{r:?}");
        }
    }

    #[test]
    fn a_failover_onto_a_later_leg_shows_silence_and_a_repeat() {
        // frames 0..=99 from the data leg, 2 frames of silence, then the carrier 80 ms (4 frames)
        // behind: the next frame heard is 99 + 3 - 4 = 98, so 98 and 99 are heard again
        let (s, t0, at0) = setup(Talk::Continuous);
        let mut frames: Vec<Option<i64>> = (0..100).map(Some).collect();
        frames.extend([None, None]);
        frames.extend((98..300).map(Some));
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert_eq!(r.repeated, 2, "{r:?}");
        assert!((r.silence_ms - 40.0).abs() < 1.0, "{r:?}");
        assert_eq!((r.skipped, r.two_legs), (0, 0), "{r:?}");
        assert!((r.delay_shift_ms - 80.0).abs() < 1.0, "the listener's delay grows by the offset: {r:?}");
    }

    #[test]
    fn the_last_frame_faded_is_concealment_and_at_full_level_a_repeat() {
        // frames 0..=99, then frame 99 again at `gains` (concealment fills the gap), then 100..
        let (s, t0, at0) = setup(Talk::Continuous);
        let heard = |gains: &[f64]| {
            let mut out = stream(&s, &(0..100).map(Some).collect::<Vec<_>>(), at0);
            for (i, g) in gains.iter().enumerate() {
                let samples: Vec<i16> = s.frame(99).iter().map(|b| (f64::from(ulaw_decode(*b)) * g) as i16).collect();
                let at = at0 + Duration::from_millis(20 * (100 + i) as u64);
                out.push(Heard { at, sound: decode(&samples), rms: rms(&samples) });
            }
            let later = at0 + Duration::from_millis(20 * (100 + gains.len()) as u64);
            out.extend(stream(&s, &(100..200).map(Some).collect::<Vec<_>>(), later));
            all(&out, &s, t0)
        };
        let r = heard(&[0.8, 0.6, 0.4]);
        assert_eq!((r.concealed, r.repeated, r.skipped, r.two_legs), (3, 0, 0, 0), "{r:?}");
        assert_eq!(r.silence_ms, 0.0, "concealment is not silence: {r:?}");
        let r = heard(&[1.0, 1.0]);
        assert_eq!((r.concealed, r.repeated), (0, 2), "at full level it is speech heard twice: {r:?}");
        let r = heard(&[0.8, 1.0]);
        assert_eq!((r.concealed, r.repeated), (1, 1), "louder again is a repeat: {r:?}");
    }

    #[test]
    fn a_take_back_onto_an_earlier_leg_shows_a_skip() {
        // the carrier leg (4 frames behind) until frame 99, then the data leg: 104 follows 99
        let (s, t0, at0) = setup(Talk::Continuous);
        let mut frames: Vec<Option<i64>> = (0..100).map(Some).collect();
        frames.extend((104..300).map(Some));
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert_eq!((r.skipped, r.repeated, r.two_legs), (4, 0, 0), "{r:?}");
        assert_eq!(r.silence_ms, 0.0);
        assert!((r.delay_shift_ms + 80.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn a_jump_within_a_pause_skips_no_speech_and_a_pause_is_not_silence() {
        let (s, t0, at0) = setup(Talk::Spurts { seed: 11 });
        // find the first pause of at least 10 frames after frame 100
        let start = (100..).find(|&n| !s.voiced(n) && (n..n + 10).all(|k| !s.voiced(k))).unwrap();
        let mut frames: Vec<Option<i64>> = (0..start + 5).map(Some).collect();
        frames.extend((start + 9..start + 400).map(Some)); // 4 frames jumped, all in the pause
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert_eq!((r.skipped, r.silence_ms, r.repeated), (0, 0.0, 0), "{r:?}");
        assert!((r.delay_shift_ms + 80.0).abs() < 1.0, "the jump is still seen as a move of the delay: {r:?}");
        // the same jump inside a spurt skips speech
        let voiced = (100..).find(|&n| (n..n + 12).all(|k| s.voiced(k))).unwrap();
        let mut frames: Vec<Option<i64>> = (0..voiced + 2).map(Some).collect();
        frames.extend((voiced + 6..voiced + 400).map(Some));
        assert_eq!(all(&stream(&s, &frames, at0), &s, t0).skipped, 4);
    }

    #[test]
    fn a_pause_that_grows_at_a_switch_is_no_silence() {
        let (s, t0, at0) = setup(Talk::Spurts { seed: 11 });
        let start = (100..).find(|&n| !s.voiced(n) && (n..n + 10).all(|k| !s.voiced(k))).unwrap();
        let end = (start..).find(|&n| s.voiced(n)).unwrap();
        // the listener's delay grows by two frames within the pause: the spurt after it comes late
        let mut frames: Vec<Option<i64>> = (0..start + 2).map(Some).collect();
        frames.extend(std::iter::repeat_n(None, (end - start - 2 + 2) as usize));
        frames.extend((end..end + 300).map(Some));
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert_eq!((r.silence_ms, r.repeated, r.skipped), (0.0, 0, 0), "{r:?}");
        assert!((r.delay_shift_ms - 40.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn silence_where_voice_was_due_is_measured_and_a_pause_is_not() {
        let (s, t0, at0) = setup(Talk::Continuous);
        let frames: Vec<Option<i64>> = (0..300).map(|n| if (150..155).contains(&n) { None } else { Some(n) }).collect();
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert!((r.silence_ms - 100.0).abs() < 1.0, "{r:?}");
        assert_eq!((r.skipped, r.repeated), (0, 0), "lost frames are silence, not a skip: {r:?}");
    }

    #[test]
    fn both_legs_in_one_packet_are_caught() {
        let s = Script::new(Talk::Continuous, 10.0);
        for (n, behind) in [(50usize, 3usize), (100, 4), (130, 5), (200, 7), (33, 4)] {
            let (a, b) = (s.frame(n), s.frame(n - behind));
            let samples: Vec<i16> = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| (i32::from(ulaw_decode(*x)) + i32::from(ulaw_decode(*y))).clamp(-32768, 32767) as i16)
                .collect();
            match decode(&samples) {
                Sound::TwoLegs { codes } => {
                    assert!(codes.contains(&Some(n)) && codes.contains(&Some(n - behind)), "{n}-{behind}: {codes:?}")
                }
                other => panic!("frame {n} with frame {} read as {other:?}", n - behind),
            }
        }
        // in a stream, counted, and the sequence goes on through them
        let (s, t0, at0) = setup(Talk::Continuous);
        let frames: Vec<Option<i64>> = (0..200).map(Some).collect();
        let mut heard = stream(&s, &frames, at0);
        for i in [80usize, 81] {
            let mixed: Vec<i16> = s
                .frame(i)
                .iter()
                .zip(s.frame(i - 4).iter())
                .map(|(x, y)| ulaw_decode(*x) / 2 + ulaw_decode(*y) / 2)
                .collect();
            heard[i].sound = decode(&mixed);
        }
        let r = all(&heard, &s, t0);
        assert_eq!((r.two_legs, r.repeated, r.skipped), (2, 0, 0), "{r:?}");
    }

    #[test]
    fn the_far_partys_own_tone_or_noise_is_no_code() {
        let t: Vec<i16> = crate::audio::tone(1000.0, 0.02).into_iter().map(ulaw_decode).collect();
        assert_eq!(decode(&t), Sound::Silent);
        assert_eq!(decode(&[0i16; 160]), Sound::Silent);
        let mut rng = Rng::new(3);
        let noise: Vec<i16> = (0..160).map(|_| rng.uniform(-8000.0, 8000.0) as i16).collect();
        assert_eq!(decode(&noise), Sound::Silent, "white noise spreads over all tones");
    }

    #[test]
    fn codes_unwrap_across_cycles() {
        let (s, t0, at0) = setup(Talk::Continuous);
        let frames: Vec<Option<i64>> = (0..(3 * CYCLE as i64 + 20)).map(Some).collect();
        let r = all(&stream(&s, &frames, at0), &s, t0);
        assert_eq!((r.repeated, r.skipped, r.voiced_packets), (0, 0, 3 * CYCLE + 20), "{r:?}");
    }
}
