//! The alignment's unit tests: rings, the estimate on synthetic legs, emit and the tracker.

use super::*;
use crate::downlink::ulaw_encode;

/// A frame of content `n`: two tones that change from frame to frame, μ-law.
fn frame(n: u64) -> [u8; FRAME] {
    let f1 = 400.0 + 100.0 * (n % 16) as f64;
    let f2 = 2000.0 + 100.0 * ((n / 16) % 16) as f64;
    std::array::from_fn(|i| {
        let t = (n as usize * FRAME + i) as f64 / 8000.0;
        let v = 4500.0 * ((2.0 * std::f64::consts::PI * f1 * t).sin() + (2.0 * std::f64::consts::PI * f2 * t).sin());
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
        a.ring(Path::Carrier).store(2, c_base.wrapping_add(n as u16), Format::Ulaw, &frame(n), t + d_ms * 1_000_000);
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
    assert!(matches!(estimate(b.ring(Path::Data), b.ring(Path::Carrier), 300_000_000), Err(Unaligned::NoMatch { .. })));

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
            Emit::Drop | Emit::Behind => {}
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
    let keep = |path: Path, n: u64| a.ring(path).store(path as u64 + 1, n as u16, Format::Ulaw, &body(n), 0).unwrap();
    let drive = |path: Path, n: u64| {
        let s = keep(path, n);
        let mut out = body(n);
        (!matches!(a.emit(path, s, Format::Ulaw, &mut out), Emit::Drop | Emit::Behind)).then(|| content_of(&out))
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

/// Low latency: the earlier (data) leg drives with its own frames; when it dies the later leg's
/// first frames hold what the mix already had: they carry concealment (the last frame, faded)
/// instead, and the later leg's fresh content follows, nothing heard twice, nothing skipped. Back
/// on the earlier leg, the mix carries on from where it was (held back) and catches up in a pause.
#[test]
fn low_latency_conceals_the_failover_and_catches_the_take_back_up_in_a_pause() {
    let a = Aligner::new(Path::Data);
    a.lock(0, None); // the same numbering on both legs, for readability
    let body = |n: u64| if (50..58).contains(&n) { silent() } else { frame(n) };
    let keep = |path: Path, n: u64| a.ring(path).store(path as u64 + 1, n as u16, Format::Ulaw, &body(n), 0).unwrap();
    // What the mix got from each frame the driver passed: Some(content) or a concealed frame.
    #[derive(Debug, PartialEq)]
    enum Got {
        Content(u64),
        Concealed,
    }
    let drive = |path: Path, n: u64| {
        let s = keep(path, n);
        let mut out = body(n);
        match a.emit(path, s, Format::Ulaw, &mut out) {
            Emit::Drop => None,
            Emit::Behind => a.conceal(Format::Ulaw, &mut out).then_some(Got::Concealed),
            _ => content_of(&out).map(Got::Content),
        }
    };
    // The data leg drives, its own content; the carrier, 4 frames behind, is kept only.
    for n in 0..20u64 {
        assert_eq!(drive(Path::Data, n), Some(Got::Content(n)));
        if n >= 4 {
            keep(Path::Carrier, n - 4);
        }
    }
    // The data leg dies after content 19; two carrier frames (16, 17) come during the stall
    // detection, then the carrier drives from its frame 18: 18 and 19 were played already.
    keep(Path::Carrier, 16);
    keep(Path::Carrier, 17);
    let got: Vec<Option<Got>> = (18..30u64).map(|n| drive(Path::Carrier, n)).collect();
    assert_eq!(got[0], Some(Got::Concealed), "{got:?}");
    assert_eq!(got[1], Some(Got::Concealed), "{got:?}");
    let after: Vec<u64> = got[2..]
        .iter()
        .map(|g| match g {
            Some(Got::Content(c)) => *c,
            other => panic!("fresh content after the concealment, got {other:?} in {got:?}"),
        })
        .collect();
    assert_eq!(after, (20..30).collect::<Vec<_>>(), "nothing repeated, nothing skipped");
    assert_eq!(a.concealed.load(Ordering::Relaxed), 2);
    // The data leg is back 4 frames ahead (its 34 with the carrier's 30) and takes the mix back:
    // it carries on from content 30 (held back) and catches up over the pause 50..58.
    for n in 30..34u64 {
        keep(Path::Carrier, n);
    }
    let back: Vec<u64> = (34..70u64)
        .filter_map(|n| match drive(Path::Data, n) {
            Some(Got::Content(c)) => Some(c),
            None => None, // a frame of the pause, or nothing passed
            Some(Got::Concealed) => panic!("nothing concealed on the take-back, at {n}"),
        })
        .collect();
    assert_eq!(back.first(), Some(&30), "{back:?}");
    assert!(back.windows(2).all(|w| w[1] > w[0]), "never backwards: {back:?}");
    let skipped: Vec<u64> = (30..70).filter(|c| !back.contains(c) && !(50..58).contains(c)).collect();
    assert!(skipped.is_empty(), "no speech skipped: {skipped:?}");
    assert_eq!(back.last(), Some(&69), "caught up over the pause: {back:?}");
}

#[test]
fn a_concealment_run_ends_and_starts_again_after_a_mixed_frame() {
    let a = Aligner::new(Path::Data);
    let mut out = frame(1);
    assert!(!a.conceal(Format::Ulaw, &mut out), "nothing mixed yet: nothing to conceal with");
    let s = a.ring(Path::Data).store(1, 1, Format::Ulaw, &frame(1), 0).unwrap();
    assert_eq!(a.emit(Path::Data, s, Format::Ulaw, &mut out), Emit::Own);
    let n = (0..10).filter(|_| a.conceal(Format::Ulaw, &mut out)).count();
    assert_eq!(n, crate::conceal::MAX_FRAMES as usize);
    let s = a.ring(Path::Data).store(1, 2, Format::Ulaw, &frame(2), 0).unwrap();
    a.emit(Path::Data, s, Format::Ulaw, &mut out);
    assert!(a.conceal(Format::Ulaw, &mut out), "a new run after a mixed frame");
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

/// The normalised cross-correlation at one lag, written the obvious way.
fn ncc_reference(win: &[f32], span: &[f32], lag: usize) -> f32 {
    let s = &span[lag..lag + win.len()];
    let xy: f64 = win.iter().zip(s).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let xx: f64 = win.iter().map(|x| f64::from(*x).powi(2)).sum();
    let yy: f64 = s.iter().map(|y| f64::from(*y).powi(2)).sum();
    if xx <= 0.0 || yy <= 0.0 {
        0.0
    } else {
        (xy / (xx.sqrt() * yy.sqrt())) as f32
    }
}

#[test]
fn the_fast_search_finds_the_lag_and_score_of_the_obvious_one() {
    // Speech-like: two tones that change every frame, with silences in between.
    let audio: Vec<f32> = (0..RING as u64)
        .flat_map(|n| {
            let f = frame(n);
            let quiet = n % 9 == 4;
            f.map(move |b| if quiet { 0.0 } else { f32::from(crate::downlink::ulaw_decode(b)) })
        })
        .collect();
    for (offset, len) in [(0usize, 1040usize), (777, 1040), (3000, 4160), (5999, 4160)] {
        let win = &audio[offset..offset + len];
        let lags = 0..=audio.len() - len;
        let (lag, score, _) = best_lag(win, &audio, lags.clone(), usize::MAX);
        let reference = lags.map(|l| (l, ncc_reference(win, &audio, l))).fold((0, f32::MIN), |best, (l, r)| {
            if r > best.1 {
                (l, r)
            } else {
                best
            }
        });
        assert_eq!(lag, reference.0, "window at {offset}");
        assert_eq!(lag, offset, "the window is found where it was taken");
        assert!((score - reference.1).abs() < 1e-3, "score {score} vs {}", reference.1);
    }
}

#[test]
fn a_steady_tone_on_both_legs_is_ambiguous_not_aligned() {
    let a = Aligner::new(Path::Data);
    let tone: [u8; FRAME] = std::array::from_fn(|i| {
        ulaw_encode((4000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16)
    });
    for n in 0..120u64 {
        let t = 1_000_000_000 + n * 20_000_000;
        a.ring(Path::Data).store(1, 1000 + n as u16, Format::Ulaw, &tone, t);
        a.ring(Path::Carrier).store(2, 5000 + n as u16, Format::Ulaw, &tone, t + 80_000_000);
    }
    let e = estimate(a.ring(Path::Data), a.ring(Path::Carrier), 300_000_000);
    assert!(matches!(e, Err(Unaligned::Ambiguous { .. })), "{e:?}");
}

#[test]
fn legs_that_never_align_are_measured_less_and_less_often() {
    let a = Aligner::new(Path::Data);
    let mut t = Tracker::new(300_000_000, 0);
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        while !t.due(now) {
            now += 100_000_000;
        }
        let before = now;
        t.record(&a, Err(Unaligned::Ambiguous { score: 1.0, runner_up: 0.99 }), Some(Path::Data), now);
        while !t.due(now) {
            now += 100_000_000;
        }
        waits.push((now - before) / 1_000_000_000);
    }
    assert_eq!(waits, vec![2, 4, 8, 16, 30, 30, 30, 30], "doubling up to CHECK_EVERY");
    // audio that is merely not there yet keeps the one-second pace
    let mut t = Tracker::new(300_000_000, 0);
    t.record(&a, Err(Unaligned::NotEnoughAudio), None, 0);
    assert!(t.due(MEASURE_EVERY_NS));
}
