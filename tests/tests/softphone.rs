//! A real softphone as the phone's app: baresip (Debian's) calls in as `alice-app` in Opus with
//! the coded test signal as its microphone (a WAV file, its `aufile` source), while the carrier
//! leg (SIPp, G.711) sends the same signal 6 dB quieter, so that the far party's level tells
//! which leg it hears. Mid-call the softphone's network path is really cut (nftables drops its
//! RTP ports on loopback), then restored. Checked: the data leg is Opus, the far party hears the
//! phone, the mix fails over to the carrier with a short gap and comes back to the Opus leg when
//! the path heals. Printed: the level dip at the take-back (the standby Opus leg's decoder is fed
//! nothing while the carrier leg is active, so it starts cold).

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::{tone, ulaw_decode};
use handoff_tests::baresip::{wav, Baresip, Setup};
use handoff_tests::handoffd::Handoffd;
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::{Packet, Recorder};
use handoff_tests::signal::{coded_pcm, coded_signal_at, hear, report};
use handoff_tests::sipp::{app_password, write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
/// The softphone's microphone: the tones' peak (about -18 dBFS RMS).
const DATA_AMPLITUDE: f64 = 6000.0;
/// The carrier leg's: 6 dB quieter.
const CARRIER_AMPLITUDE: f64 = 3000.0;

/// A packet's level in dBFS (RMS of its μ-law audio); -100 for digital silence.
fn level_db(p: &Packet) -> f64 {
    let n = p.payload.len().max(1) as f64;
    let power = p.payload.iter().map(|&b| f64::from(ulaw_decode(b)).powi(2)).sum::<f64>() / n;
    if power < 1.0 {
        -100.0
    } else {
        10.0 * (power / (32768.0f64 * 32768.0)).log10()
    }
}

/// The median level of the far party's packets that arrived between `from` and `to`.
fn median_level(packets: &[Packet], from: Instant, to: Instant) -> (f64, usize) {
    let mut l: Vec<f64> = packets.iter().filter(|p| p.at >= from && p.at < to).map(level_db).collect();
    l.sort_by(f64::total_cmp);
    (l.get(l.len() / 2).copied().unwrap_or(-100.0), l.len())
}

/// A level dip around a switch: the lowest packet level (dB relative to `reference`) and how
/// long the level stayed more than `below` dB under `reference`, in ms of packets (20 ms each,
/// a packet lost in sequence counts as quiet), among the packets between `from` and `to`.
fn dip(packets: &[Packet], from: Instant, to: Instant, reference: f64, below: f64) -> (f64, u64) {
    let w: Vec<&Packet> = packets.iter().filter(|p| p.at >= from && p.at < to).collect();
    let lowest = w.iter().map(|p| level_db(p) - reference).fold(f64::INFINITY, f64::min);
    let quiet = w.iter().filter(|p| level_db(p) < reference - below).count() as u64;
    let lost: u64 = w.windows(2).map(|p| u64::from(p[1].seq.wrapping_sub(p[0].seq).saturating_sub(1).min(50))).sum();
    (lowest, (quiet + lost) * 20)
}

/// The levels of the packets that arrived between `from` and `to`, in dBFS.
fn trace(packets: &[Packet], from: Instant, to: Instant) -> String {
    packets
        .iter()
        .filter(|p| p.at >= from && p.at < to)
        .map(|p| format!("{:.0}", level_db(p)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_real_softphone_in_opus_fails_over_to_the_g711_carrier_leg_and_back() {
    let ast = Asterisk::start();
    // the softphone's microphone: the coded signal at 48 kHz, longer than the call (the call
    // ends when the file ends); the test hangs up first
    let mic = wav(&coded_pcm(40.0, 0, 48000, DATA_AMPLITUDE), 48000);
    write_signals(&ast, &coded_signal_at(1.0, 0, DATA_AMPLITUDE), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal_at(40.0, 80, CARRIER_AMPLITUDE));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let carrier_rec = Recorder::bind("127.0.0.2");
    let phone = Baresip::start(
        &ast,
        &Setup {
            user: "alice-app",
            password: &app_password("alice-app"),
            sip_port: 5081,
            rtp_ports: DATA_RTP,
            codecs: "opus/48000/1",
            // SILK, as a phone on mobile data codes speech (with CELT, `audio` at 32 kbit/s, the
            // take-back costs at most one 20 ms packet of silence)
            opus_bitrate: 16000,
            opus_application: "voip",
            source_wav: &mic,
        },
    );
    let context = |what: &str| {
        let asterisk = ast.messages_log();
        let tail: Vec<&str> = asterisk.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "{what}\nAMI events: {:?}\nhandoffd log:\n{}\nbaresip log:\n{}\nAsterisk's log (end):\n{}",
            ami.events().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            handoffd.log().join("\n"),
            phone.log(),
            tail.join("\n")
        )
    };
    // The phone calls on its app first, then on the carrier (within handoffd's pairing window).
    phone.command("dial", "sip:2000@127.0.0.1");
    wait_for(10 * SEC, || {
        ami.events()
            .iter()
            .any(|e| e.name == "HandoffLegArrived" && e.headers.get("Path") == Some("data"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{}", context("the softphone's call never arrived as a data leg")));
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", carrier_rec.port, 0, CARRIER_RTP);
    phone.wait_event("CALL_ESTABLISHED", 15 * SEC).unwrap_or_else(|e| panic!("{}", context(&e)));
    wait_for(15 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .unwrap_or_else(|| {
            panic!("{}", context("the softphone, the carrier leg and the far party never were all in the conference"))
        });

    // The data leg is the softphone, in Opus.
    let stats = wait_for(5 * SEC, || {
        let s = ast.cli("pjsip show channelstats");
        s.lines().any(|l| l.contains("alice-app") && l.contains("opus")).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!("{}", context(&format!("alice-app is not in Opus:\n{}", ast.cli("pjsip show channelstats"))))
    });
    println!("{stats}");

    // Both legs flow; the data leg feeds the mix. Then Wi-Fi goes away.
    std::thread::sleep(2 * SEC);
    let both_from = Instant::now() - 3 * SEC / 2;
    let cut_at = Instant::now();
    let before_cut = ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    let event_after = |skip: usize, name: &str, to: &str| {
        wait_for(10 * SEC, || {
            ami.events().into_iter().skip(skip).find(|e| e.name == name && e.headers.get("To") == Some(to))
        })
        .unwrap_or_else(|| panic!("{}", context(&format!("no {name} to {to}"))))
    };
    let failover = event_after(before_cut, "HandoffLegSwitched", "carrier");
    let failover_seen = Instant::now();
    assert_eq!(failover.headers.get("Reason"), Some("stall"), "{failover:?}");
    std::thread::sleep(2 * SEC);
    let healed_at = Instant::now();
    let before_heal = ami.events().len();
    cut.heal();
    let back = event_after(before_heal, "HandoffLegSwitched", "data");
    let back_seen = Instant::now();
    assert_eq!(back.headers.get("Reason"), Some("preferred-recovered"), "{back:?}");
    std::thread::sleep(2 * SEC);
    let end_at = Instant::now();

    // The user hangs up on the softphone: the carrier leg and the far party get their BYEs.
    phone.command("hangup", "");
    phone.wait_event("CALL_CLOSED", 10 * SEC).unwrap_or_else(|e| panic!("{}", context(&e)));
    carrier.wait(20 * SEC).unwrap_or_else(|e| panic!("{}", context(&format!("carrier leg: {e}"))));
    far.wait(20 * SEC).unwrap_or_else(|e| panic!("{}", context(&format!("far party: {e}"))));

    // The module's view (timestamps in Asterisk's clock).
    for e in ami.events().iter().filter(|e| e.name.starts_with("HandoffLeg")) {
        let h = |k: &str| e.headers.get(k).unwrap_or("-").to_string();
        println!(
            "{} {} path={} from={} to={} reason={} gap={} ms",
            h("Timestamp"),
            e.name,
            h("Path"),
            h("From"),
            h("To"),
            h("Reason"),
            h("GapMs")
        );
    }
    // What the far party heard.
    let packets = far_rec.packets();
    let heard = hear(&packets);
    let before = report(&heard, both_from, cut_at);
    assert!(before.with_signal >= 60, "{}", context(&format!("the far party hardly heard the phone: {before:?}")));
    assert!(before.doubled * 10 <= before.with_signal, "{}", context(&format!("heard twice: {before:?}")));
    let through = report(&heard, cut_at - SEC, end_at);
    assert!(through.with_signal >= 180, "{}", context(&format!("the signal did not go on: {through:?}")));
    assert!(through.longest_gap_ms <= 150.0, "{}", context(&format!("gap at the far end: {through:?}")));

    // The level tells the legs apart: the softphone's before the cut and after the take-back,
    // the carrier's (6 dB quieter) in between.
    let (data_db, n_data) = median_level(&packets, both_from, cut_at);
    let (carrier_db, n_carrier) = median_level(&packets, cut_at + SEC / 2, healed_at);
    let (back_db, n_back) = median_level(&packets, healed_at + SEC, end_at);
    println!(
        "far end levels: data leg {data_db:.1} dBFS ({n_data} packets), carrier leg {carrier_db:.1} dBFS \
         ({n_carrier}), after the take-back {back_db:.1} dBFS ({n_back})"
    );
    assert!(
        (3.0..=9.0).contains(&(data_db - carrier_db)),
        "{}",
        context(&format!("the far party did not move from the softphone ({data_db:.1} dBFS) to the carrier leg (expected about 6 dB lower: {carrier_db:.1} dBFS)"))
    );
    assert!(
        (back_db - data_db).abs() <= 2.0,
        "{}",
        context(&format!(
            "after the heal the far party's level ({back_db:.1} dBFS) is not the softphone's ({data_db:.1})"
        ))
    );

    // The seams: at the failover (onto the warm G.711 carrier leg) and at the take-back onto the
    // Opus leg, how deep the level fell below the leg taking over and for how long.
    // (The test sees each switch's event within a poll of 20 ms: the window is 300 ms either side.)
    let around = |t: Instant| (t - SEC * 3 / 10, t + SEC * 3 / 10);
    let (f0, f1) = around(failover_seen);
    let (b0, b1) = around(back_seen);
    let (fail_low, fail_ms) = dip(&packets, f0, f1, carrier_db, 10.0);
    let (back_low, back_ms) = dip(&packets, b0, b1, carrier_db, 10.0);
    let detect = |e: &handoff::ami::Event| e.headers.get("GapMs").unwrap_or("?").to_string();
    println!(
        "failover: gap {} ms (module), take-back: gap {} ms (module); failover: lowest {fail_low:.1} dB below the carrier leg's level, {fail_ms} ms more than 10 dB under it; \
         take-back onto Opus: lowest {back_low:.1} dB, {back_ms} ms more than 10 dB under the carrier leg's level",
        detect(&failover),
        detect(&back)
    );
    // Away from the two switches nothing should be quiet (the carrier leg is the quietest, at
    // its steady level).
    let elsewhere: Vec<String> = packets
        .iter()
        .filter(|p| p.at >= both_from && p.at < end_at)
        .filter(|p| !(p.at >= f0 && p.at < f1 || p.at >= b0 && p.at < b1))
        .filter(|p| level_db(p) < carrier_db - 10.0)
        .map(|p| {
            let ms = |a: Instant, b: Instant| a.saturating_duration_since(b).as_secs_f64() * 1000.0;
            format!("{:+.0}", ms(p.at, healed_at) - ms(healed_at, p.at))
        })
        .collect();
    println!("quiet packets away from the switches (ms from the heal): {elsewhere:?}");
    assert!(elsewhere.len() <= 1, "{}", context(&format!("quiet packets away from the switches: {elsewhere:?}")));
    println!("far end through the cut: before {before:?}, through {through:?}");
    println!(
        "levels (dBFS, 20 ms packets) at the failover: {}; at the take-back: {}",
        trace(&packets, f0, f1),
        trace(&packets, b0, b1)
    );
    // The detection gap (about 40 ms) costs one quiet packet; a standby Opus decoder that was
    // starved of its frames costs 60 ms of silence and a faded frame at the take-back.
    assert!(fail_ms <= 100, "{}", context(&format!("the failover left {fail_ms} ms quiet or missing")));
    assert!(
        back_ms <= 40,
        "{}",
        context(&format!("the take-back onto Opus left {back_ms} ms quiet or missing (a cold decoder?)"))
    );
    handoffd.assert_nothing_left(&ast, &ami);
}
