//! Bad input around dual-leg calls on the real Asterisk 22: an unknown device, a third leg for an
//! already-paired device, a busy far party, a leg that arrives after the session ended. Each
//! ends cleanly with a clear reason in handoffd's log and an AMI event, and leaves no channel,
//! conference or session behind.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn ready() -> (Asterisk, AmiClient, Handoffd) {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    let ami = AmiClient::connect();
    let h = Handoffd::connected(&ast);
    (ast, ami, h)
}

#[test]
fn an_unknown_device_is_refused_with_the_reason() {
    let (ast, ami, h) = ready();
    let mut carol = Sipp::phone_leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "carol-app", "2000", 40000, 0);
    carol.wait(15 * SEC).expect("carol's leg is refused");
    let refused = ami.wait_event(5 * SEC, |e| e.name == "HandoffLegRefused").expect("AMI event");
    assert_eq!(refused.headers.get("Reason"), Some("unknown device: no registered device has endpoint 'carol-app'"));
    assert!(h.log().iter().any(|l| l.contains("refused data leg") && l.contains("unknown device")));
    assert!(!ami.events().iter().any(|e| e.name == "OriginateResponse"), "no far call for an unknown device");
    h.assert_nothing_left(&ast, &ami);
}

#[test]
fn a_third_leg_for_a_paired_device_is_refused_and_the_call_goes_on() {
    let (ast, ami, h) = ready();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (r1, r2) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let mut data = Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", r1.port, 6000, DATA_RTP);
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", r2.port, 0, CARRIER_RTP);
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .expect("joined");
    // A second carrier call from the same phone number while the first is alive.
    let mut third =
        Sipp::leg("carrier_leg_uac_refused.xml", "127.0.0.2", 5073, "+15550001", "2000", 40001, 0, (33000, 33999));
    third.wait(15 * SEC).expect("the third leg is refused");
    let refused = ami.wait_event(5 * SEC, |e| e.name == "HandoffLegRefused").expect("AMI event");
    assert!(refused.headers.get("Reason").unwrap().contains("already has a live carrier leg"), "{refused:?}");
    data.wait(30 * SEC).expect("the call went on");
    carrier.wait(30 * SEC).expect("carrier leg");
    far.wait(30 * SEC).expect("far party");
    h.assert_nothing_left(&ast, &ami);
}

#[test]
fn the_same_pairing_token_from_another_device_is_refused() {
    let (ast, ami, h) = ready();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let rec = Recorder::bind("127.0.0.1");
    let port = rec.port.to_string();
    let token_leg = |user: &str, sip_port: &str, scenario: &str, rtp: (&str, &str)| {
        Sipp::spawn(
            user,
            scenario,
            &[
                "127.0.0.1:5060",
                "-i",
                "127.0.0.1",
                "-p",
                sip_port,
                "-mi",
                "127.0.0.1",
                "-min_rtp_port",
                rtp.0,
                "-max_rtp_port",
                rtp.1,
                "-key",
                "user",
                user,
                "-s",
                "2000",
                "-key",
                "rec_port",
                &port,
                "-key",
                "token",
                "4711",
                "-d",
                "5000",
                "-timeout",
                "60s",
                "-timeout_error",
            ],
        )
    };
    let mut alice = token_leg("alice-app", "5071", "data_leg_uac_token.xml", ("30000", "30999"));
    ami.wait_event(10 * SEC, |e| e.name == "HandoffLegArrived" && e.headers.get("Token") == Some("4711"))
        .expect("token passed");
    let mut bob = token_leg("bob-app", "5073", "data_leg_uac_token_refused.xml", ("33000", "33999"));
    bob.wait(15 * SEC).expect("bob's leg with alice's token is refused");
    let refused = ami.wait_event(5 * SEC, |e| e.name == "HandoffLegRefused").expect("AMI event");
    assert_eq!(refused.headers.get("Reason"), Some("pairing token already used by device 'alice-phone'"));
    alice.wait(30 * SEC).expect("alice's call went on");
    far.wait(30 * SEC).expect("far party");
    h.assert_nothing_left(&ast, &ami);
}

#[test]
fn a_busy_far_party_ends_the_phone_leg_with_busy() {
    let (ast, ami, h) = ready();
    let mut far = Sipp::far_party("far_uas_busy.xml", 40002, None);
    let mut data = Sipp::phone_leg("data_leg_uac_any_end.xml", "127.0.0.1", 5071, "alice-app", "2000", 40003, 0);
    far.wait(15 * SEC).expect("far party says busy");
    data.wait(15 * SEC).expect("the phone leg is hung up");
    let hangup = ami
        .wait_event(5 * SEC, |e| {
            e.name == "Hangup" && e.headers.get("Channel").is_some_and(|c| c.contains("alice-app"))
        })
        .expect("phone leg hangup");
    assert_eq!(hangup.headers.get("Cause"), Some("17"), "busy passed on: {hangup:?}");
    assert!(
        h.log().iter().any(|l| l.contains("far call failed: busy") || l.contains("far call ended before answer")),
        "{:#?}",
        h.log()
    );
    h.assert_nothing_left(&ast, &ami);
}
