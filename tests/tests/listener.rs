//! What a listener hears at each switch, measured at the far end on the real Asterisk 22: the
//! test phone's two legs are driven from one clock (`pump`: the carrier leg 100 ms behind the
//! data leg with ±10 ms of jitter, the data path steady) with the frame-numbered signal of
//! `listen`; the data path is cut three times by nftables and healed, at random phases; the far
//! party's received RTP is analysed per failover and per take-back (`failover::run_handoff`).
//!
//! The same instrument runs twice. With `alignment = switching` it must see the seam: each
//! failover moves the listener's delay later by the legs' offset (silence and repeated frames)
//! and each take-back moves it back (skipped frames) — proof that it can see the claim fail.
//! With `alignment = aligned` (the default) the module measures the offset from the audio and
//! the same cuts are not heard at all: no silence, nothing repeated, nothing skipped, no two legs
//! at once, the delay unmoved. With `alignment = low-latency` (no added delay) each failover is a
//! short gap filled by concealment (the last frame faded), nothing played twice, and the
//! take-back skips no speech. That mode is set as a session rule (handoffd.yaml), so the run
//! also proves the rule reaches the module.
//!
//! With every leg of the phone cut off at once (a tunnel), the far party hears the module's
//! reconnecting tone from `reconnect_tone_after` (1 s) on instead of silence, and the voice the
//! moment a leg is back, with no tone over it.

use handoff_tests::failover::{run_handoff, run_outage, CutFigures, Outcome, Plan};
use handoff_tests::listen::Talk;
use handoff_tests::pump::Timing;

const OFFSET_MS: f64 = 100.0;
const JITTER_MS: f64 = 10.0;

fn run(alignment: &'static str) -> Outcome {
    let plan = Plan {
        cuts: 3,
        timing: Timing { offset_ms: OFFSET_MS, jitter_ms: JITTER_MS, data_jitter_ms: 0.0, seed: 14 },
        talk: Talk::Continuous,
        down_ms: 1000,
        up_ms: 1600,
        phase_ms: 400,
        seed: 14,
        alignment: Some(alignment),
        cut_carrier: false,
    };
    let out = run_handoff(&plan).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{alignment}: own voice back on the legs: data {} / carrier {} of {} packets; switches {:?}; aligned {:?}; unaligned {:?}",
        out.own_voice.0, out.own_voice.1, out.leg_packets, out.switches, out.aligned, out.unaligned
    );
    assert_eq!(out.cuts.len(), 3);
    for (i, c) in out.cuts.iter().enumerate() {
        let back = c.take_back.as_ref().expect("a take-back after each heal");
        println!(
            "{alignment} cut {i}: detect {:.0} ms; failover: silence {:.0} ms, repeated {}, skipped {}, two legs {}, delay {:+.0} ms; \
             take-back: silence {:.0} ms, repeated {}, skipped {}, two legs {}, delay {:+.0} ms\n  {}",
            c.detect_ms,
            c.failover.silence_ms,
            c.failover.repeated,
            c.failover.skipped,
            c.failover.two_legs,
            c.failover.delay_shift_ms,
            back.silence_ms,
            back.repeated,
            back.skipped,
            back.two_legs,
            back.delay_shift_ms,
            c.trace
        );
        assert!(c.failover.voiced_packets >= 40 && back.voiced_packets >= 40, "the voice went on: {c:?}");
    }
    out
}

fn take_back(c: &CutFigures) -> &handoff_tests::listen::Switch {
    c.take_back.as_ref().expect("a take-back after each heal")
}

#[test]
fn switching_is_heard_at_every_cut_and_the_analysis_counts_it() {
    let out = run("switching");
    assert!(out.switches.0 >= 3 && out.switches.1 >= 3, "switches reported by the module: {:?}", out.switches);
    assert_eq!(out.aligned, None, "alignment = switching measures nothing");
    // The seam must be seen: the delay moves by at least the offset less a tolerance of the
    // jitter and two frames of the mixing clock. It may move further (seen: +140 ms for a 100 ms
    // offset when the detection straddled two mixing ticks, and -161 ms at a take-back whose
    // mixing ticks came late): a bigger move is a bigger seam, not a hidden one.
    let tolerance = JITTER_MS + 50.0;
    for (i, c) in out.cuts.iter().enumerate() {
        let back = take_back(c);
        assert!(
            c.failover.delay_shift_ms >= OFFSET_MS - tolerance,
            "cut {i}: the failover onto the later leg moves the listener's delay by the offset: {c:?}"
        );
        assert!(c.failover.repeated > 0 || c.failover.silence_ms > 0.0, "cut {i}: the failover is heard: {c:?}");
        assert!(
            back.delay_shift_ms <= -(OFFSET_MS - tolerance),
            "cut {i}: the take-back onto the earlier leg moves the delay back: {c:?}"
        );
        assert!(back.skipped > 0, "cut {i}: the take-back jumps ahead: {c:?}");
        assert!(c.failover.silence_ms <= 200.0 && back.silence_ms <= 200.0, "cut {i}: {c:?}");
    }
}

#[test]
fn aligned_legs_make_the_same_cuts_inaudible() {
    let out = run("aligned");
    let (offset, later) = out.aligned.clone().expect("the module reported the legs aligned");
    assert_eq!(later, "carrier");
    assert!((offset - OFFSET_MS).abs() <= JITTER_MS + 10.0, "measured offset {offset} ms, sent {OFFSET_MS} ms");
    assert_eq!(out.own_voice, (0, 0), "never the phone's own voice back on a leg");
    assert!(
        out.metrics.contains("handoff_alignments_total{status=\"aligned\"} 1\n")
            && out.metrics.contains("handoff_leg_offset_ms_count 1\n"),
        "handoffd counts the alignment:\n{}",
        out.metrics
    );
    for (i, c) in out.cuts.iter().enumerate() {
        for (what, s) in [("failover", &c.failover), ("take-back", take_back(c))] {
            assert_eq!(
                (s.repeated, s.skipped, s.two_legs),
                (0, 0, 0),
                "cut {i}, {what}: nothing repeated, skipped or mixed twice: {c:?}"
            );
            assert!(s.silence_ms <= 20.0, "cut {i}, {what}: at most one frame of silence: {c:?}");
            assert!(s.delay_shift_ms.abs() <= 20.0, "cut {i}, {what}: the listener's delay does not move: {c:?}");
        }
    }
}

#[test]
fn low_latency_conceals_each_failover_and_skips_no_speech_at_the_take_back() {
    // set as a session rule (handoffd.yaml's sessions.alignment, sent with HandoffAssign) over
    // handoff.conf's shipped `aligned`: the run waits for `align=low-latency` in the status
    let out = run("rule:low-latency");
    let (offset, later) = out.aligned.clone().expect("the module measured the legs' offset");
    assert_eq!(later, "carrier");
    assert!((offset - OFFSET_MS).abs() <= JITTER_MS + 10.0, "measured offset {offset} ms, sent {OFFSET_MS} ms");
    assert_eq!(out.own_voice, (0, 0), "never the phone's own voice back on a leg");
    for (i, c) in out.cuts.iter().enumerate() {
        let back = take_back(c);
        assert_eq!(c.failover.repeated, 0, "cut {i}: what the data leg played is not played again: {c:?}");
        assert_eq!(c.failover.skipped, 0, "cut {i}: {c:?}");
        assert_eq!(
            (back.skipped, back.repeated, back.two_legs),
            (0, 0, 0),
            "cut {i}: the take-back skips no speech and never mixes both legs: {c:?}"
        );
        // the target for low latency: silence p95 ≤ 60 ms (a jitter of the carrier leg
        // just after it took over is heard as one frame of silence)
        assert!(c.failover.silence_ms <= 60.0 && back.silence_ms <= 60.0, "cut {i}: {c:?}");
    }
    // Where the carrier leg's first frames hold speech the far party already heard, they carry
    // concealment instead (how many depends on how much of the offset the bridge's buffer hid).
    let concealed: usize = out.cuts.iter().map(|c| c.failover.concealed).sum();
    assert!(concealed >= 1, "the gap is filled by concealment: {:?}", out.cuts);
}

#[test]
fn with_every_leg_cut_off_the_far_party_hears_the_reconnecting_tone_then_the_voice_at_once() {
    let plan = Plan {
        cuts: 1,
        timing: Timing { offset_ms: OFFSET_MS, jitter_ms: JITTER_MS, data_jitter_ms: 0.0, seed: 9 },
        talk: Talk::Continuous,
        down_ms: 3000,
        up_ms: 0,
        phase_ms: 0,
        seed: 9,
        alignment: Some("aligned"),
        cut_carrier: false,
    };
    let o = run_outage(&plan, plan.down_ms).unwrap_or_else(|e| panic!("{e}"));
    println!("every leg cut off for {} ms: {o:?}", plan.down_ms);
    assert_eq!(o.voice_while_cut, 0, "the phone was cut off: nothing of its voice is heard meanwhile");
    let from = o.tone_from_ms.expect("the far party heard the reconnecting tone");
    assert!(
        (1000.0..=1400.0).contains(&from),
        "the tone starts reconnect_tone_after (1000 ms) after the last frame, not before: {o:?}"
    );
    // 425 Hz for 200 ms in every second: 20 frames in the 2 s before the heal
    assert!(o.tone_packets >= 15, "the tone sounds while the legs are silent: {o:?}");
    let back = o.voice_back_ms.expect("the voice came back");
    assert!(back <= 100.0, "the voice is back at once after the heal: {o:?}");
    assert_eq!(o.tone_after_voice, 0, "no tone over the voice: {o:?}");
    assert_eq!(o.events, (1, 1), "one HandoffReconnectTone started, one stopped: {o:?}");
}
