//! What each leg of a dual-leg phone hears (issue 14 item 8): both legs must carry the same
//! downlink, the conference without the phone's own voice, so that the phone can play either leg
//! or switch between them without hearing itself.
//!
//! The phone sends its frame-coded test signal (`signal.rs`, 400…3300 Hz) on both legs, the
//! carrier's 80 ms later, as one microphone would. The far party sends 1.5 s of silence, then 1 s
//! of a 350 Hz tone, in a loop: 350 Hz is no code of the phone's signal (a whole number of cycles
//! per 20 ms frame, orthogonal to every code), so every packet a phone leg receives tells apart
//! the far party (350 Hz) and the phone's own voice (a code). RTP recorders stand where each leg's
//! SDP points and keep what Asterisk really sent to that leg. Mid-call the data leg's uplink is
//! cut (nftables drops the phone's RTP from the data leg's ports; what Asterisk sends to the
//! recorder still arrives), so the carrier leg feeds the conference for a while and the data leg
//! is the standby; then the cut heals and the data leg takes the mix back. Both roles of both legs
//! are measured.
//!
//! The instrument can see failure: with the module of before (each leg a plain conference
//! member), the standby leg received the active leg's voice in most of its packets. Figures are
//! printed (`cargo test ... --test downlink -- --nocapture`).

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::{tone, tone_share, ulaw_decode};
use handoff_tests::handoffd::Handoffd;
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::{Packet, Recorder};
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const CARRIER_DELAY_MS: usize = 80;
/// The far party's tone: 7 cycles per 20 ms frame, orthogonal to each code of the phone's signal.
const FAR_HZ: f64 = 350.0;
/// How long each leg feeds the conference in turn (the testbed declares a leg dead after 4 s).
const PHASE: Duration = Duration::from_millis(2500);

/// 1.5 s of silence, then 1 s of the far party's tone (SIPp loops it): any 2.5 s hold 1 s of it.
fn far_signal() -> Vec<u8> {
    let mut s = vec![0xffu8; 12_000];
    s.extend(tone(FAR_HZ, 1.0));
    s
}

/// What one phone leg received.
#[derive(Debug, Default)]
struct Downlink {
    /// PCMU packets received.
    packets: usize,
    /// Packets that carry the phone's own signal (any code of it).
    own: usize,
    /// Of those, the ones received while the far party was silent.
    own_far_silent: usize,
    /// Packets that carry the far party's tone (with or without the phone's voice).
    far: usize,
    /// Packets with neither (the far party's pauses).
    quiet: usize,
}

fn far_share(p: &Packet) -> f64 {
    let s: Vec<i16> = p.payload.iter().copied().map(ulaw_decode).collect();
    tone_share(&s, FAR_HZ)
}

/// Analyses what a leg received between `from` and `to`.
fn downlink(packets: &[Packet], from: Instant, to: Instant) -> Downlink {
    let packets: Vec<Packet> =
        packets.iter().filter(|p| p.payload_type == 0 && p.at >= from && p.at <= to).cloned().collect();
    let heard = hear(&packets);
    let mut d = Downlink { packets: packets.len(), ..Default::default() };
    for (p, h) in packets.iter().zip(&heard) {
        let far = far_share(p) > 0.25;
        let own = h.code.is_some();
        d.own += usize::from(own);
        d.own_far_silent += usize::from(own && !far);
        d.far += usize::from(far);
        d.quiet += usize::from(!own && !far);
    }
    d
}

/// An instant on the monotonic clock, in ms (the clock of the module's AtMs headers).
fn mono_ms(at: Instant) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000;
    now - Instant::now().duration_since(at).as_millis() as i64
}

/// The first matching event after the first `skip` events.
fn event_after(
    ami: &AmiClient,
    handoffd: &Handoffd,
    skip: usize,
    name: &str,
    pred: impl Fn(&handoff::ami::Event) -> bool,
) -> handoff::ami::Event {
    wait_for(10 * SEC, || ami.events().into_iter().skip(skip).find(|e| e.name == name && pred(e)))
        .unwrap_or_else(|| panic!("no {name} event; handoffd log:\n{}", handoffd.log().join("\n")))
}

#[test]
fn neither_leg_of_the_phone_hears_its_own_voice_whichever_leg_feeds_the_conference() {
    let ast = Asterisk::start();
    // Switching, so that each leg feeds the conference in turn (aligned, the later leg feeds it
    // throughout; tests/tests/listener.rs checks the legs' downlink in that mode).
    ast.set_alignment("switching").unwrap_or_else(|e| panic!("{e}"));
    write_signals(&ast, &coded_signal(40.0, 0), &far_signal());
    write_carrier_signal(&ast, &coded_signal(40.0, CARRIER_DELAY_MS));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let data_rec = Recorder::bind("127.0.0.1");
    let carrier_rec = Recorder::bind("127.0.0.2");
    // The user hangs up on the app after 12 s; the carrier leg then gets its BYE from Asterisk.
    let mut data =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, 12_000, DATA_RTP);
    let mut carrier = Sipp::leg(
        "carrier_leg_uac_wait.xml",
        "127.0.0.2",
        5072,
        "+15550001",
        "2000",
        carrier_rec.port,
        12_000,
        CARRIER_RTP,
    );
    wait_for(20 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() >= 3).then_some(()))
        .unwrap_or_else(|| {
            panic!(
                "data, carrier and far party are not in one conference; handoffd log:\n{}",
                handoffd.log().join("\n")
            )
        });
    event_after(&ami, &handoffd, 0, "HandoffLegSwitched", |e| e.headers.get("To") == Some("data"));

    // Data feeds the conference, the carrier leg is the standby.
    std::thread::sleep(SEC);
    let data_active_from = Instant::now();
    std::thread::sleep(PHASE);
    let data_active_to = Instant::now();

    // Wi-Fi uplink gone: the carrier leg feeds, the data leg is the standby.
    let before_cut = ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    event_after(&ami, &handoffd, before_cut, "HandoffLegSwitched", |e| e.headers.get("To") == Some("carrier"));
    let carrier_active_from = Instant::now();
    std::thread::sleep(PHASE);
    let carrier_active_to = Instant::now();
    let before_heal = ami.events().len();
    cut.heal();
    event_after(&ami, &handoffd, before_heal, "HandoffLegSwitched", |e| e.headers.get("To") == Some("data"));
    let back_at = Instant::now();

    data.wait(30 * SEC).expect("data leg scenario");
    carrier.wait(30 * SEC).expect("the carrier leg is hung up when the user hangs up the app leg");
    far.wait(30 * SEC).expect("the far party gets its BYE when the phone hangs up");

    // The module's own account: cost per frame, and what the standby legs got.
    let status = ast.cli("handoff show status");
    for line in status.lines().filter(|l| l.contains("Frames watched") || l.contains("Downlink")) {
        println!("{}", line.trim());
    }
    let copied: u64 = status
        .split("standby legs got ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no downlink line in handoff show status:\n{status}"));
    assert!(copied >= 200, "the standby legs got {copied} of the feeding leg's frames:\n{status}");
    let (d, c) = (data_rec.packets(), carrier_rec.packets());
    // Where the phone's own voice was heard, against the switches (AtMs: the module's clock).
    let switches: Vec<(String, i64)> = ami
        .events()
        .iter()
        .filter(|e| e.name == "HandoffLegSwitched")
        .map(|e| {
            (e.headers.get("To").unwrap_or("?").to_string(), e.headers.get("AtMs").unwrap_or("0").parse().unwrap_or(0))
        })
        .collect();
    for (leg, packets) in [("data", &d), ("carrier", &c)] {
        let heard = hear(packets.iter().filter(|p| p.payload_type == 0).cloned().collect::<Vec<_>>().as_slice());
        for h in heard.iter().filter(|h| h.code.is_some()) {
            let at = mono_ms(h.at);
            let near = switches.iter().min_by_key(|(_, s)| (at - s).abs());
            println!(
                "own voice on the {leg} leg at {at} ms: {} ms from the switch to {:?}",
                near.map_or(0, |n| at - n.1),
                near.map(|n| &n.0)
            );
        }
    }
    let phases = [
        ("data feeds", data_active_from, data_active_to),
        ("carrier feeds", carrier_active_from, carrier_active_to),
        // from before the first switch to after the take-back: every switch of the call
        ("whole call", data_active_from - 3 * SEC, back_at + 2 * SEC),
    ];
    let mut failures = Vec::new();
    for (phase, from, to) in phases {
        let (dl, cl) = (downlink(&d, from, to), downlink(&c, from, to));
        println!("{phase}: data leg received {dl:?}; carrier leg received {cl:?}");
        for (leg, got) in [("data", &dl), ("carrier", &cl)] {
            if got.own > 0 {
                failures.push(format!(
                    "{phase}: the {leg} leg received {} of {} packets with the phone's own voice ({} while the far party was silent)",
                    got.own, got.packets, got.own_far_silent
                ));
            }
        }
        if phase != "whole call" {
            // 2.5 s at 50 packets a second; the far party talks 1 s of any 2.5 s.
            for (leg, got) in [("data", &dl), ("carrier", &cl)] {
                if got.packets < 100 || got.far < 30 {
                    failures.push(format!("{phase}: the far party's voice did not reach the {leg} leg: {got:?}"));
                }
            }
        }
    }
    // The uplink is untouched: the far party heard the phone, once.
    let far_heard = report(&hear(&far_rec.packets()), data_active_from, back_at);
    println!("far end: {far_heard:?}");
    assert!(far_heard.with_signal >= 200, "the far party heard too little of the phone: {far_heard:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    handoffd.assert_nothing_left(&ast, &ami);
}
