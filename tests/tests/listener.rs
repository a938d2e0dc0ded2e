//! What a listener hears at each switch, measured at the far end on the real Asterisk 22: the
//! test phone's two legs are driven from one clock (`pump`: the carrier leg 100 ms behind the
//! data leg with ±10 ms of jitter, the data path steady) with the frame-numbered signal of `listen`; the data path is cut three
//! times by nftables and healed, at random phases; the far party's received RTP is analysed per
//! failover and per take-back (`failover::run_handoff`).
//!
//! What is asserted is that the instrument sees every switch: with the module's switching as it
//! is (no time alignment), each failover moves the listener's delay later by the legs' offset
//! (heard as silence and repeated frames) and each take-back moves it back (heard as skipped
//! frames). When aligned switching lands, these assertions change to "no repeat, no skip, no move
//! of the delay" — the same figures, the other way round. The figures are printed either way.

use handoff_tests::failover::{run_handoff, Plan};
use handoff_tests::listen::Talk;
use handoff_tests::pump::Timing;

const OFFSET_MS: f64 = 100.0;
const JITTER_MS: f64 = 10.0;

#[test]
fn the_far_party_hears_every_failover_and_take_back_and_the_analysis_counts_them() {
    let plan = Plan {
        cuts: 3,
        timing: Timing { offset_ms: OFFSET_MS, jitter_ms: JITTER_MS, data_jitter_ms: 0.0, seed: 14 },
        talk: Talk::Continuous,
        down_ms: 1000,
        up_ms: 1600,
        phase_ms: 400,
        seed: 14,
    };
    let out = run_handoff(&plan).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "own voice back on the legs: data {} / carrier {} of {} packets",
        out.own_voice.0, out.own_voice.1, out.leg_packets
    );
    assert_eq!(out.cuts.len(), 3);
    assert!(out.switches.0 >= 3 && out.switches.1 >= 3, "switches reported by the module: {:?}", out.switches);
    // a tolerance of the jitter both ways and a frame of the mixing clock
    let tolerance = JITTER_MS + 30.0;
    for (i, c) in out.cuts.iter().enumerate() {
        let back = c.take_back.as_ref().expect("a take-back after each heal");
        println!(
            "cut {i}: detect {:.0} ms; failover: silence {:.0} ms, repeated {}, skipped {}, two legs {}, delay {:+.0} ms; \
             take-back: silence {:.0} ms, repeated {}, skipped {}, two legs {}, delay {:+.0} ms",
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
            back.delay_shift_ms
        );
        assert!(c.failover.voiced_packets >= 40 && back.voiced_packets >= 40, "the voice went on: {c:?}");
        assert!(
            (c.failover.delay_shift_ms - OFFSET_MS).abs() <= tolerance,
            "cut {i}: the failover onto the later leg moves the listener's delay by the offset: {c:?}"
        );
        assert!(
            c.failover.repeated > 0 || c.failover.silence_ms > 0.0,
            "cut {i}: the failover is heard (the leg's offset is not hidden by alignment yet): {c:?}"
        );
        assert!(
            (back.delay_shift_ms + OFFSET_MS).abs() <= tolerance,
            "cut {i}: the take-back onto the earlier leg moves the delay back: {c:?}"
        );
        assert!(back.skipped > 0, "cut {i}: the take-back jumps ahead (no alignment yet): {c:?}");
        assert!(c.failover.silence_ms <= 200.0 && back.silence_ms <= 200.0, "cut {i}: {c:?}");
    }
}
