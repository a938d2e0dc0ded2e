//! Dual-leg calls on the real Asterisk 22: the phone calls in over the carrier trunk (SIPp at
//! 127.0.0.2, caller ID +15550001) and over its app (SIPp alice-app), both sending the same
//! coded signal as one microphone would, the carrier's 80 ms later (this kernel has no netem, so
//! the carrier path's extra delay is applied at the source). handoffd pairs both legs into one
//! session with one far call. Mid-call the data leg's network path is really cut (nftables drops
//! its RTP on loopback), then restored. The test analyses the RTP the far party actually
//! received: the signal goes on through the cut, and while both legs live it is heard once.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const CARRIER_DELAY_MS: usize = 80;

struct Call {
    ast: Asterisk,
    ami: AmiClient,
    handoffd: Handoffd,
    far_rec: Recorder,
    far: Sipp,
    data: Sipp,
    carrier: Sipp,
    _data_rec: Recorder,
    _carrier_rec: Recorder,
}

/// A dual-leg call; `alignment` is handoff.conf's (None: as shipped, `aligned`).
fn dual_call(data_scenario: &str, carrier_scenario: &str, call_ms: u64, alignment: Option<&str>) -> Call {
    let ast = Asterisk::start();
    if let Some(mode) = alignment {
        ast.set_alignment(mode).unwrap_or_else(|e| panic!("{e}"));
    }
    write_signals(&ast, &coded_signal(40.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal(40.0, CARRIER_DELAY_MS));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let data_rec = Recorder::bind("127.0.0.1");
    let carrier_rec = Recorder::bind("127.0.0.2");
    let data = Sipp::leg(data_scenario, "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, call_ms, DATA_RTP);
    let carrier =
        Sipp::leg(carrier_scenario, "127.0.0.2", 5072, "+15550001", "2000", carrier_rec.port, call_ms, CARRIER_RTP);
    Call { ast, ami, handoffd, far_rec, far, data, carrier, _data_rec: data_rec, _carrier_rec: carrier_rec }
}

/// The first matching event among those after the first `skip` events.
fn event_after(c: &Call, skip: usize, name: &str, pred: impl Fn(&handoff::ami::Event) -> bool) -> handoff::ami::Event {
    wait_for(10 * SEC, || c.ami.events().into_iter().skip(skip).find(|e| e.name == name && pred(e)))
        .unwrap_or_else(|| panic!("no {name} event; handoffd log:\n{}", c.handoffd.log().join("\n")))
}

#[test]
fn wifi_cut_mid_call_the_far_party_hears_the_voice_go_on_once() {
    // The user hangs up on the app after 9 s; the carrier leg then gets its BYE from Asterisk.
    // The switch itself is under test here (its events, the controller's failover metrics):
    // aligned legs need no switch for a cut of the earlier leg (tests/tests/listener.rs).
    let mut c = dual_call("data_leg_uac.xml", "carrier_leg_uac_wait.xml", 9000, Some("switching"));
    let arrivals: Vec<_> = wait_for(10 * SEC, || {
        let a: Vec<_> = c.ami.events().into_iter().filter(|e| e.name == "HandoffLegArrived").collect();
        (a.len() == 2).then_some(a)
    })
    .expect("both legs arrive");
    assert!(arrivals
        .iter()
        .any(|e| e.headers.get("Path") == Some("carrier") && e.headers.get("CallerIDNum") == Some("+15550001")));
    let joins = wait_for(10 * SEC, || {
        let j: Vec<_> = c.ami.events().into_iter().filter(|e| e.name == "ConfbridgeJoin").collect();
        (j.len() == 3).then_some(j)
    })
    .expect("data, carrier and far party in one conference");
    assert!(joins.iter().all(|j| j.headers.get("Conference") == joins[0].headers.get("Conference")));
    let far_join =
        joins.iter().find(|j| j.headers.get("Channel").is_some_and(|ch| ch.starts_with("PJSIP/far-"))).unwrap();
    assert_eq!(far_join.headers.get("CallerIDNum"), Some("+15550001"), "the far call carries the user's caller ID");
    let originates = c.ami.events().iter().filter(|e| e.name == "OriginateResponse").count();
    assert_eq!(originates, 1, "one far call for two legs");
    assert!(
        c.handoffd.log().iter().any(|l| l.contains("leg") && l.contains("paired after")),
        "{:#?}",
        c.handoffd.log()
    );

    // Both legs flow: the data leg (preferred) feeds the mix. Then Wi-Fi goes away.
    std::thread::sleep(2 * SEC);
    let both_from = Instant::now() - SEC;
    let cut_at = Instant::now();
    let before_cut = c.ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    let stalled = event_after(&c, before_cut, "HandoffLegStalled", |e| e.headers.get("Path") == Some("data"));
    let last: u64 = stalled.headers.get("LastFrameMs").unwrap().parse().unwrap();
    let detected: u64 = stalled.headers.get("DetectedMs").unwrap().parse().unwrap();
    assert!(detected - last <= 60, "stall detected {} ms after the last frame", detected - last);
    let switched = event_after(&c, before_cut, "HandoffLegSwitched", |e| e.headers.get("To") == Some("carrier"));
    assert_eq!(switched.headers.get("Reason"), Some("stall"));
    std::thread::sleep(2 * SEC);
    let healed_at = Instant::now();
    let before_heal = c.ami.events().len();
    cut.heal();
    event_after(&c, before_heal, "HandoffLegRecovered", |e| e.headers.get("Path") == Some("data"));
    let back = event_after(&c, before_heal, "HandoffLegSwitched", |e| e.headers.get("To") == Some("data"));
    let gap: u64 = switched.headers.get("GapMs").unwrap().parse().unwrap();
    assert!(gap <= 60, "the mix lacked frames for {gap} ms at the switch");
    let metrics = c.handoffd.metrics();
    for line in [
        "handoff_failovers_total 1",
        "handoff_sessions 1",
        "handoff_legs_total{path=\"carrier\"} 1",
        "handoff_failover_gap_ms_bucket{le=\"60\"} 1",
    ] {
        assert!(metrics.contains(line), "metrics lack {line:?}:\n{metrics}");
    }
    assert_eq!(back.headers.get("Reason"), Some("preferred-recovered"));

    c.data.wait(30 * SEC).expect("data leg scenario");
    c.carrier.wait(30 * SEC).expect("the carrier leg is hung up when the user hangs up the app leg");
    c.far.wait(30 * SEC).expect("the far party gets its BYE when the phone hangs up");

    // What the far party heard.
    let heard = hear(&c.far_rec.packets());
    let before = report(&heard, both_from, cut_at);
    assert!(before.with_signal >= 40, "{before:?}");
    assert!(before.doubled * 20 <= before.with_signal, "heard twice while both legs were alive: {before:?}");
    let through = report(&heard, cut_at - SEC, healed_at + SEC);
    assert!(through.with_signal >= 150, "the signal went on through the cut: {through:?}");
    assert!(through.longest_gap_ms <= 120.0, "gap at the far end: {through:?}");
    println!("far end: before the cut {before:?}; through the cut {through:?}");
    assert!(c.handoffd.log().iter().any(|l| l.contains("data leg") && l.contains("stalled")));
    c.handoffd.assert_nothing_left(&c.ast, &c.ami);
}

#[test]
fn a_data_leg_that_stays_cut_is_declared_dead_and_the_call_goes_on_over_the_carrier() {
    // The data leg waits for its BYE: handoffd hangs it up once it is declared dead (4 s here).
    // As shipped (aligned): the carrier leg feeds the mix once the legs are aligned, so the cut
    // needs no switch; whichever leg fed it, the call goes on over the carrier.
    let mut c = dual_call("data_leg_uac_wait.xml", "carrier_leg_uac.xml", 9000, None);
    wait_for(10 * SEC, || (c.ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .expect("all three legs joined");
    std::thread::sleep(SEC);
    let before_cut = c.ami.events().len();
    let _cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    event_after(&c, before_cut, "HandoffLegStalled", |e| e.headers.get("Path") == Some("data"));
    assert!(c.handoffd.wait_log("declared dead", 10 * SEC).is_some(), "{:#?}", c.handoffd.log());
    c.data.wait(15 * SEC).expect("the dead data leg is hung up by handoffd");
    assert!(c.handoffd.wait_log("continuing on the carrier leg", 5 * SEC).is_some(), "{:#?}", c.handoffd.log());
    // The carrier leg carries the call to its end (the phone hangs up after 9 s).
    c.carrier.wait(30 * SEC).expect("carrier leg scenario");
    c.far.wait(30 * SEC).expect("far party gets its BYE");
    let heard = hear(&c.far_rec.packets());
    let all = report(&heard, Instant::now() - 60 * SEC, Instant::now());
    assert!(all.longest_gap_ms <= 120.0, "{all:?}");
    c.handoffd.assert_nothing_left(&c.ast, &c.ami);
}
