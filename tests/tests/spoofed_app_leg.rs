//! Nobody can call as a user's app, on the real Asterisk 22 with the shipped PJSIP templates.
//!
//! Alice's app (endpoint alice-app, digest password of its own) is on a call with the far party.
//! Then an attacker on the same network sends INVITEs as From user alice-app: without
//! credentials, with a wrong password, and with Bob's valid credentials (username bob-app or
//! username alice-app with Bob's password). Every one must be refused by Asterisk before it
//! reaches the dial plan: no `HandoffLegArrived`, no channel, nothing joins Alice's conference.
//! An app endpoint defined from the template without an auth section of its own refuses every
//! call (the template fails closed). Last, Bob's valid credentials with a From user that names no endpoint: Asterisk identifies the
//! request by its credentials' username, so the leg is Bob's (`Endpoint: bob-app`), whatever
//! the From user says, and handoffd treats it as Bob's device, never Alice's.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{app_password, write_signals, Sipp, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

/// One spoofing attempt: what it is, its scenario, and the credentials it answers with.
type Attempt<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

/// An attacker's INVITE as From user `user` dialling `number`, answering the challenge (if the
/// scenario does) with `creds`.
fn attacker(scenario: &str, sip_port: u16, user: &str, number: &str, creds: Option<(&str, &str)>) -> Sipp {
    let port = sip_port.to_string();
    let mut args = vec![
        "127.0.0.1:5060",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-mi",
        "127.0.0.1",
        "-min_rtp_port",
        "35000",
        "-max_rtp_port",
        "35999",
        "-key",
        "user",
        user,
        "-s",
        number,
        "-key",
        "rec_port",
        "40000",
        "-timeout",
        "20s",
        "-timeout_error",
    ];
    // Without credentials of its own, the attacker knows no password at all.
    let (auth_user, auth_pass) = creds.unwrap_or(("nobody", "nothing"));
    args.extend(["-key", "auth_user", auth_user, "-key", "auth_pass", auth_pass]);
    Sipp::spawn(&format!("attacker as {user}"), scenario, &args)
}

#[test]
fn spoofed_app_legs_are_refused_and_the_authenticated_endpoint_is_what_handoffd_sees() {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    // An app endpoint whose administrator forgot its auth section: the template fails closed.
    let etc = ast.instance_dir().join("etc");
    let endpoints = std::fs::read_to_string(etc.join("pjsip_endpoints.conf")).unwrap();
    std::fs::write(etc.join("pjsip_endpoints.conf"), format!("{endpoints}\n[dave-app](handoff-app)\n")).unwrap();
    ast.cli("module reload res_pjsip.so");
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let alice_rec = Recorder::bind("127.0.0.1");
    // Alice's real app: authenticates with its own password (tests/e2e/sipp.rs).
    let mut alice =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", alice_rec.port, 15_000, DATA_RTP);
    let joins = || ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count();
    wait_for(10 * SEC, || (joins() == 2).then_some(()))
        .unwrap_or_else(|| panic!("alice's authenticated leg joins; handoffd log:\n{}", handoffd.log().join("\n")));
    let arrivals = || ami.events().into_iter().filter(|e| e.name == "HandoffLegArrived").collect::<Vec<_>>();
    assert_eq!(arrivals().len(), 1);
    let channels_before = ami.channels().len();

    let bob_pw = app_password("bob-app");
    let attempts: [Attempt; 4] = [
        ("no credentials", "app_leg_unauthenticated.xml", None),
        ("alice-app with a wrong password", "app_leg_bad_credentials.xml", Some(("alice-app", "2468"))),
        ("bob's username and password", "app_leg_bad_credentials.xml", Some(("bob-app", &bob_pw))),
        ("alice-app with bob's password", "app_leg_bad_credentials.xml", Some(("alice-app", &bob_pw))),
    ];
    for (i, (what, scenario, creds)) in attempts.iter().enumerate() {
        let mut spoof = attacker(scenario, 5080 + i as u16, "alice-app", "2000", *creds);
        spoof.wait(20 * SEC).unwrap_or_else(|e| panic!("spoofed leg ({what}) must be challenged and refused: {e}"));
        std::thread::sleep(SEC / 2);
        assert_eq!(arrivals().len(), 1, "a spoofed leg ({what}) reached Handoff(): {:#?}", arrivals());
        assert_eq!(joins(), 2, "a spoofed leg ({what}) joined alice's conference");
        assert_eq!(ami.channels().len(), channels_before, "a spoofed leg ({what}) got a channel");
    }
    let log = ast.messages_log();
    assert!(log.contains("Failed to authenticate"), "Asterisk logs the failed digest checks");
    let mut dave = attacker("app_leg_no_auth_configured.xml", 5089, "dave-app", "2000", None);
    dave.wait(20 * SEC).expect("an app endpoint without its own auth section refuses every call");
    assert_eq!(arrivals().len(), 1, "dave-app reached Handoff()");
    assert!(ast.messages_log().contains("Couldn't find auth 'handoff-app-needs-its-own-auth'"));

    // Bob's credentials with a From user that names no endpoint: identified by the username of
    // its credentials, the leg is bob-app's; the From user is only its caller ID.
    let mut bob = attacker("data_leg_uac_refused.xml", 5090, "alice", "move", Some(("bob-app", &bob_pw)));
    bob.wait(20 * SEC).expect("bob's leg (no ticket, no PIN) is refused");
    let arrived = wait_for(5 * SEC, || arrivals().get(1).cloned()).expect("bob's leg reached Handoff()");
    assert_eq!(arrived.headers.get("Endpoint"), Some("bob-app"), "{arrived:?}");
    assert!(arrived.headers.get("Channel").is_some_and(|c| c.starts_with("PJSIP/bob-app-")), "{arrived:?}");
    let refused = ami.wait_event(5 * SEC, |e| e.name == "HandoffLegRefused").expect("HandoffLegRefused");
    assert!(!refused.headers.get("Reason").unwrap_or("").contains("alice"), "{refused:?}");
    assert_eq!(joins(), 2, "bob's leg must not join alice's conference");

    alice.wait(30 * SEC).expect("alice's call goes on undisturbed and she hangs up");
    far.wait(30 * SEC).expect("the far party gets the BYE");
    assert!(far_rec.packets_with_tone(440.0) >= 100, "the far party heard alice");
    handoffd.assert_nothing_left(&ast, &ami);
}
