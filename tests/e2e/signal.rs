//! The test signal both client legs send, as one microphone would, and its analysis at the far
//! end: every 20 ms frame carries one of [`CODES`] tones (400, 500, ... Hz), in sequence, so
//! that the far end can tell from what it received whether the voice went on through a cut
//! (no gap) and whether it was heard once (one code at a time) or twice at two delays (two
//! codes that are not neighbours in the sequence).

use crate::audio::{tone_share, ulaw_decode, ulaw_encode};
use crate::rtp::Packet;
use std::time::Instant;

/// How many distinct frame codes the sequence cycles through.
pub const CODES: usize = 30;
#[cfg(test)]
const FRAME: usize = 160;

fn code_hz(code: usize) -> f64 {
    400.0 + 100.0 * code as f64
}

/// `seconds` of the coded signal, μ-law, preceded by `lead_ms` of silence (a path's delay).
pub fn coded_signal(seconds: f64, lead_ms: usize) -> Vec<u8> {
    coded_signal_at(seconds, lead_ms, 6000.0)
}

/// [`coded_signal`] with the tones' peak at `amplitude` (of 32767): a quieter path.
pub fn coded_signal_at(seconds: f64, lead_ms: usize, amplitude: f64) -> Vec<u8> {
    coded_pcm(seconds, lead_ms, 8000, amplitude).into_iter().map(ulaw_encode).collect()
}

/// The coded signal as 16-bit linear samples at `rate` Hz (the same 20 ms codes), for sources
/// that take linear audio, such as a softphone's WAV microphone.
pub fn coded_pcm(seconds: f64, lead_ms: usize, rate: u32, amplitude: f64) -> Vec<i16> {
    let per_frame = rate as usize / 50;
    let mut out = vec![0i16; lead_ms * rate as usize / 1000];
    let frames = (seconds * 50.0) as usize;
    let mut phase = 0.0f64;
    for f in 0..frames {
        let hz = code_hz(f % CODES);
        for _ in 0..per_frame {
            phase += 2.0 * std::f64::consts::PI * hz / f64::from(rate);
            out.push((phase.sin() * amplitude) as i16);
        }
    }
    out
}

/// What one received packet carried.
#[derive(Clone, Debug, PartialEq)]
pub struct Heard {
    pub at: Instant,
    /// The strongest code, if any tone is there at all.
    pub code: Option<usize>,
    /// A second strong code that is not a neighbour of the first: the voice twice at two delays.
    pub doubled: bool,
}

/// Reads each PCMU packet.
pub fn hear(packets: &[Packet]) -> Vec<Heard> {
    packets
        .iter()
        .filter(|p| p.payload_type == 0 && !p.payload.is_empty())
        .map(|p| {
            let samples: Vec<i16> = p.payload.iter().copied().map(ulaw_decode).collect();
            let shares: Vec<f64> = (0..CODES).map(|c| tone_share(&samples, code_hz(c))).collect();
            let (best, best_share) =
                shares.iter().copied().enumerate().fold((0, 0.0), |a, (i, s)| if s > a.1 { (i, s) } else { a });
            let present = best_share > 0.25;
            let neighbour = |c: usize| {
                let d = (c + CODES - best) % CODES;
                d <= 1 || d == CODES - 1
            };
            let doubled = present && shares.iter().enumerate().any(|(c, s)| *s > 0.15 && !neighbour(c));
            Heard { at: p.at, code: present.then_some(best), doubled }
        })
        .collect()
}

/// Summary of what the far end heard between `from` and `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Packets with the signal.
    pub with_signal: usize,
    /// Packets with the signal twice (two non-neighbouring codes).
    pub doubled: usize,
    /// The longest time without the signal, in ms (packet arrival times).
    pub longest_gap_ms: f64,
}

pub fn report(heard: &[Heard], from: Instant, to: Instant) -> Report {
    let window: Vec<&Heard> = heard.iter().filter(|h| h.at >= from && h.at <= to).collect();
    let with: Vec<&&Heard> = window.iter().filter(|h| h.code.is_some()).collect();
    let mut longest = 0.0f64;
    for pair in with.windows(2) {
        // 20 ms between consecutive packets is no gap at all
        let dt = pair[1].at.duration_since(pair[0].at).as_secs_f64() * 1000.0 - 20.0;
        longest = longest.max(dt);
    }
    Report {
        with_signal: with.len(),
        doubled: with.iter().filter(|h| h.doubled).count(),
        longest_gap_ms: longest.max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn packets(audio: &[u8], t0: Instant, skip: Option<(usize, usize)>) -> Vec<Packet> {
        audio
            .chunks(FRAME)
            .enumerate()
            .filter(|(i, _)| !skip.is_some_and(|(a, b)| *i >= a && *i < b))
            .map(|(i, c)| Packet {
                at: t0 + Duration::from_millis(20 * i as u64),
                payload_type: 0,
                seq: i as u16,
                timestamp: 0,
                ssrc: 0,
                payload: c.to_vec(),
            })
            .collect()
    }

    fn mix(a: &[u8], b: &[u8]) -> Vec<u8> {
        a.iter()
            .zip(b)
            .map(|(x, y)| ulaw_encode(((ulaw_decode(*x) as i32 + ulaw_decode(*y) as i32) / 2) as i16))
            .collect()
    }

    #[test]
    fn one_voice_is_heard_once_and_without_gaps() {
        let t0 = Instant::now();
        let h = hear(&packets(&coded_signal(2.0, 0), t0, None));
        let r = report(&h, t0, t0 + Duration::from_secs(3));
        assert_eq!(r.with_signal, 100);
        assert_eq!(r.doubled, 0);
        assert!(r.longest_gap_ms < 1.0);
        // a frame straddling two codes (out of step with the sender) is still one voice
        let shifted = &coded_signal(2.0, 0)[80..];
        let h = hear(&packets(shifted, t0, None));
        assert_eq!(report(&h, t0, t0 + Duration::from_secs(3)).doubled, 0);
    }

    #[test]
    fn the_same_voice_at_two_delays_is_caught() {
        let t0 = Instant::now();
        let direct = coded_signal(2.0, 0);
        let late = coded_signal(2.0, 80);
        let h = hear(&packets(&mix(&direct, &late[..direct.len()]), t0, None));
        let r = report(&h, t0, t0 + Duration::from_secs(3));
        assert!(r.doubled > r.with_signal / 2, "{r:?}");
    }

    #[test]
    fn a_gap_is_measured() {
        let t0 = Instant::now();
        let h = hear(&packets(&coded_signal(2.0, 0), t0, Some((50, 53))));
        let r = report(&h, t0, t0 + Duration::from_secs(3));
        assert!((r.longest_gap_ms - 60.0).abs() < 1.0, "{r:?}");
    }
}
