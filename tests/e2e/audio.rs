//! G.711 μ-law and tone detection for checking what the far end really heard.

/// Encodes one 16-bit linear sample as G.711 μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one G.711 μ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let v = magnitude - 0x84;
    (if sign != 0 { -v } else { v }) as i16
}

/// `seconds` of a sine tone at `hz`, 8 kHz μ-law, at about -12 dBFS.
pub fn tone(hz: f64, seconds: f64) -> Vec<u8> {
    let n = (seconds * 8000.0) as usize;
    (0..n)
        .map(|i| {
            let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 8000.0;
            ulaw_encode(v as i16)
        })
        .collect()
}

/// Relative power of frequency `hz` in `samples` (Goertzel), normalised by the block's energy:
/// near 1.0 when the block is that tone, near 0 when it is silence or another tone.
pub fn tone_share(samples: &[i16], hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let k = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy < 1.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    (2.0 * power / (samples.len() as f64 * energy)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_within_its_quantisation() {
        for s in [-30000i16, -1000, -1, 0, 1, 100, 1000, 8000, 30000] {
            let back = ulaw_decode(ulaw_encode(s));
            assert!((i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 8, "{s} -> {back}");
        }
    }

    #[test]
    fn goertzel_tells_tones_apart() {
        let t: Vec<i16> = tone(440.0, 0.1).into_iter().map(ulaw_decode).collect();
        assert!(tone_share(&t, 440.0) > 0.8);
        assert!(tone_share(&t, 1000.0) < 0.05);
        assert_eq!(tone_share(&[0; 160], 440.0), 0.0);
    }
}
