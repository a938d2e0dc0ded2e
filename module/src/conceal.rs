//! Concealment of lost voice frames (pure, no allocation): the last frame the mix had, repeated
//! and faded, in the spirit of ITU-T G.711 Appendix I (which repeats the last pitch period and
//! attenuates it to silence over 60 ms).
//!
//! Used where the mix would otherwise get silence for a few frames although a leg of the device
//! is still flowing: while the leg feeding the mix has missed frames but is not yet declared
//! stalled (the standby leg's frame carries the concealment), and after a failover onto the later
//! leg, whose first frames carry speech the mix already had (played again, they would be heard
//! twice: they carry the concealment instead, `align.rs`). A run of concealment lasts at most
//! [`MAX_FRAMES`]; past it the gap is silence, as a long loss should be.
//!
//! The fade starts below full level (90 %), so a concealed frame is always quieter than the
//! frame it repeats: the listener analysis of the tests (`tests/e2e/listen.rs`) tells a faded
//! repeat (concealment) from speech heard twice at full level (a repeat) that way.

use crate::downlink::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, Format};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// The longest run of concealed frames (100 ms); past it, silence.
pub const MAX_FRAMES: u32 = 5;
/// Gain at the start of a run, in 1/4096.
const START_Q12: i64 = 3686; // 0.9
/// Samples from the start of a run to silence.
const FADE_SAMPLES: i64 = MAX_FRAMES as i64 * FRAME as i64;

/// The gain (1/4096) of sample `i` of a concealment run: 0.9 falling linearly to 0 at the end
/// of [`MAX_FRAMES`].
fn gain_q12(i: i64) -> i64 {
    (START_Q12 * (FADE_SAMPLES - i) / FADE_SAMPLES).max(0)
}

/// Writes frame `run` (1 = the first) of a concealment of `src` (one 20 ms frame of G.711 in
/// `src_format`) into `out` (one frame in `out_format`). False, with `out` untouched, when there
/// is nothing to write: the run is past [`MAX_FRAMES`], or a format is not 20 ms of G.711.
pub fn fill(src_format: Format, src: &[u8; FRAME], run: u32, out_format: Format, out: &mut [u8]) -> bool {
    if run == 0 || run > MAX_FRAMES || out.len() != FRAME {
        return false;
    }
    let decode = match src_format {
        Format::Ulaw => ulaw_decode,
        Format::Alaw => alaw_decode,
        Format::Slin(_) => return false,
    };
    let encode = match out_format {
        Format::Ulaw => ulaw_encode,
        Format::Alaw => alaw_encode,
        Format::Slin(_) => return false,
    };
    let first = i64::from(run - 1) * FRAME as i64;
    for (i, (o, s)) in out.iter_mut().zip(src).enumerate() {
        let v = i64::from(decode(*s)) * gain_q12(first + i as i64) / 4096;
        *o = encode(v as i16);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f64) -> [u8; FRAME] {
        std::array::from_fn(|i| ulaw_encode((amplitude * (i as f64 * 0.3).sin()) as i16))
    }

    fn rms(frame: &[u8]) -> f64 {
        (frame.iter().map(|b| f64::from(ulaw_decode(*b)).powi(2)).sum::<f64>() / frame.len() as f64).sqrt()
    }

    #[test]
    fn each_concealed_frame_is_quieter_than_the_one_before_and_the_run_ends_in_silence() {
        let src = tone(8000.0);
        let mut level = rms(&src);
        for run in 1..=MAX_FRAMES {
            let mut out = [0u8; FRAME];
            assert!(fill(Format::Ulaw, &src, run, Format::Ulaw, &mut out));
            let l = rms(&out);
            assert!(l < 0.9 * level, "frame {run}: {l:.0} after {level:.0}");
            assert!(l > 0.0);
            level = l;
        }
        let mut out = [7u8; FRAME];
        assert!(!fill(Format::Ulaw, &src, MAX_FRAMES + 1, Format::Ulaw, &mut out));
        assert!(!fill(Format::Ulaw, &src, 0, Format::Ulaw, &mut out));
        assert_eq!(out, [7u8; FRAME], "nothing written past the run");
    }

    #[test]
    fn the_first_frame_repeats_the_source_at_nine_tenths_at_most() {
        let src = tone(8000.0);
        let mut out = [0u8; FRAME];
        assert!(fill(Format::Ulaw, &src, 1, Format::Alaw, &mut out));
        for (o, s) in out.iter().zip(&src) {
            let (o, s) = (f64::from(alaw_decode(*o)), f64::from(ulaw_decode(*s)));
            assert!(o.abs() <= 0.9 * s.abs() + 0.04 * s.abs() + 16.0, "{o} from {s}");
            assert!(o * s >= 0.0, "same sign: {o} from {s}");
        }
    }

    #[test]
    fn only_whole_g711_frames_are_concealed() {
        let src = tone(1000.0);
        let mut short = [0u8; 80];
        assert!(!fill(Format::Ulaw, &src, 1, Format::Ulaw, &mut short));
        let mut out = [0u8; FRAME];
        assert!(!fill(Format::Slin(8000), &src, 1, Format::Ulaw, &mut out));
        assert!(!fill(Format::Ulaw, &src, 1, Format::Slin(8000), &mut out));
    }
}
