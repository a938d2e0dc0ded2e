//! One joined call end to end on the real Asterisk 22: a SIPp phone leg dials a number that the
//! dial plan routes into `Handoff()`, handoffd originates the far party (a SIPp UAS) into the
//! session's ConfBridge, RTP flows both ways through Asterisk, and when either side hangs up
//! everything is torn down: no channel, conference, waiting leg or session is left.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const CALLER_HZ: f64 = 440.0;
const FAR_HZ: f64 = 1000.0;
const SEC: Duration = Duration::from_secs(1);

fn ready() -> (Asterisk, AmiClient, Handoffd) {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(CALLER_HZ, 2.0), &tone(FAR_HZ, 2.0));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    (ast, ami, handoffd)
}

fn event_named<'a>(name: &'a str) -> impl Fn(&handoff::ami::Event) -> bool + 'a {
    move |e| e.name == name
}

#[test]
fn joined_call_carries_rtp_both_ways_and_the_phone_hangs_up() {
    let (ast, ami, handoffd) = ready();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let phone_rec = Recorder::bind("127.0.0.1");
    let mut phone = Sipp::phone_leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", phone_rec.port, 4000);

    let arrived = ami.wait_event(10 * SEC, event_named("HandoffLegArrived")).expect("HandoffLegArrived");
    assert_eq!(arrived.headers.get("Far"), Some("2000"));
    assert_eq!(arrived.headers.get("Path"), Some("data"));
    assert_eq!(arrived.headers.get("Endpoint"), Some("alice-app"));
    let answered = ami.wait_event(10 * SEC, event_named("OriginateResponse")).expect("OriginateResponse");
    assert_eq!(answered.headers.get("Response"), Some("Success"), "{answered:?}");
    let joined = wait_for(10 * SEC, || {
        let j: Vec<_> = ami.events().into_iter().filter(|e| e.name == "ConfbridgeJoin").collect();
        (j.len() == 2).then_some(j)
    })
    .expect("both legs join the conference");
    let conference = joined[0].headers.get("Conference").unwrap_or_default().to_string();
    assert!(conference.starts_with("handoff-"), "conference named after the session: {conference}");
    assert_eq!(joined[1].headers.get("Conference"), Some(conference.as_str()));

    phone.wait(30 * SEC).expect("phone scenario");
    far.wait(30 * SEC).expect("far party gets the BYE once the phone hangs up");

    // Each end heard the other's signal, carried through Asterisk's conference.
    let at_far = far_rec.packets_with_tone(CALLER_HZ);
    let at_phone = phone_rec.packets_with_tone(FAR_HZ);
    assert!(
        at_far >= 100,
        "the far party received {at_far} packets of the phone's 440 Hz (of {})",
        far_rec.packets().len()
    );
    assert!(
        at_phone >= 100,
        "the phone received {at_phone} packets of the far party's 1 kHz (of {})",
        phone_rec.packets().len()
    );
    assert_eq!(far_rec.packets_with_tone(FAR_HZ), 0, "the far party must not hear itself");

    let hangups = wait_for(5 * SEC, || {
        let h: Vec<_> = ami.events().into_iter().filter(|e| e.name == "Hangup").collect();
        (h.len() >= 2).then_some(h)
    });
    assert!(hangups.is_some(), "both channels hang up");
    assert!(handoffd.log().iter().any(|l| l.contains("far party answered")), "{:#?}", handoffd.log());
    handoffd.assert_nothing_left(&ast, &ami);
}

#[test]
fn far_party_hangup_ends_the_phone_leg() {
    let (ast, ami, handoffd) = ready();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas_hangup.xml", far_rec.port, Some(3000));
    let phone_rec = Recorder::bind("127.0.0.1");
    let mut phone = Sipp::phone_leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", phone_rec.port, 0);

    far.wait(30 * SEC).expect("far party scenario");
    phone.wait(30 * SEC).expect("the phone gets a BYE when the far party hangs up");
    assert!(phone_rec.packets_with_tone(FAR_HZ) >= 50, "media flowed before the hangup");
    assert!(handoffd.log().iter().any(|l| l.contains("far party hung up")), "{:#?}", handoffd.log());
    handoffd.assert_nothing_left(&ast, &ami);
}
