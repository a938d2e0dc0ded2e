//! The reconnecting tone the far party hears while every leg of a device is silent (pure: no
//! Asterisk, no clock). 425 Hz (the CEPT call-progress frequency), 200 ms in every second, at
//! about −20 dBFS, phase-continuous from frame to frame, in 20 ms frames of signed linear 8 kHz
//! (the conference mixes signed linear, so the tone needs no codec of the leg's). When to play it
//! is the ticker's business (`groups.rs`), how it reaches the conference the safe layer's
//! (`ChannelRef::queue_slin`).

/// Samples per frame: 20 ms at 8 kHz.
pub const FRAME: usize = 160;
/// The tone's frequency (Hz).
pub const HZ: f64 = 425.0;
/// Frames in one period of the pattern (1 s) and the frames of it that sound (200 ms).
pub const PERIOD_FRAMES: u64 = 50;
pub const ON_FRAMES: u64 = 10;
/// Peak amplitude (−20 dBFS).
const AMPLITUDE: f64 = 3277.0;
/// The frame source the module's tone frames carry, so that the frame hook tells them apart.
pub const SOURCE: &std::ffi::CStr = c"handoff-reconnect-tone";

/// Frame `n` of the tone (counted from its start), or None in the pattern's quiet part.
pub fn frame(n: u64) -> Option<[i16; FRAME]> {
    if n % PERIOD_FRAMES >= ON_FRAMES {
        return None;
    }
    let w = 2.0 * std::f64::consts::PI * HZ / 8000.0;
    Some(std::array::from_fn(|i| {
        let t = (n * FRAME as u64 + i as u64) as f64;
        (AMPLITUDE * (w * t).sin()) as i16
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of the frame's energy at `hz` (Goertzel).
    fn share(samples: &[f64], hz: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in samples {
            let s0 = x + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - k * s1 * s2;
        let energy: f64 = samples.iter().map(|x| x * x).sum();
        2.0 * power / (energy * samples.len() as f64)
    }

    #[test]
    fn the_tone_sounds_200_ms_in_every_second_at_425_hz() {
        let sounding: Vec<u64> = (0..100).filter(|n| frame(*n).is_some()).collect();
        assert_eq!(sounding, (0..10).chain(50..60).collect::<Vec<_>>());
        let pcm: Vec<f64> = frame(3).expect("sounding").iter().map(|s| f64::from(*s)).collect();
        let rms = (pcm.iter().map(|x| x * x).sum::<f64>() / pcm.len() as f64).sqrt();
        assert!((2000.0..2600.0).contains(&rms), "about -20 dBFS peak: rms {rms}");
        assert!(share(&pcm, HZ) > 0.9, "425 Hz: {}", share(&pcm, HZ));
        assert!(share(&pcm, 1000.0) < 0.05);
    }

    #[test]
    fn frames_join_without_a_click() {
        // The last sample of one frame and the first of the next continue the sine.
        let a = frame(4).unwrap();
        let b = frame(5).unwrap();
        let step = (f64::from(b[0]) - f64::from(a[FRAME - 1])).abs();
        let max_step = AMPLITUDE * 2.0 * std::f64::consts::PI * HZ / 8000.0 * 1.01 + 1.0;
        assert!(step < max_step, "step {step} at the frame boundary");
    }
}
