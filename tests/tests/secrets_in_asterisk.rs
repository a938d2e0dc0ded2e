//! No PIN and no ticket in Asterisk's own log or in the AMI events other clients see, on the
//! real Asterisk 22 through the shipped dial plan, at verbose 5 and debug 5.
//!
//! Alice's phone (alice-app) is on a call; her tablet pulls it with `*86` and her 8-digit PIN
//! keyed as SIP INFO; then the phone takes it back with a ticket from handoffd's API in its
//! `X-Handoff-Ticket` header. Asterisk's full log (notice … verbose, debug, dtmf) and every AMI
//! event the `tester` account (read = all) received must contain neither the PIN nor the ticket;
//! handoffd's own log neither. What remains is printed: the dtmf log channel and the `DTMFEnd`
//! events carry single digits (README, "Moving a call").

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{api, Handoffd};
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, write_tablet_signal, Sipp, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
/// Long enough not to turn up by chance among the numbers of a debug log.
const PIN: &str = "97531864";

#[test]
fn neither_pin_nor_ticket_reach_asterisks_log_or_ami_events() {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_tablet_signal(&ast, &tone(660.0, 2.0));
    ast.cli("core set verbose 5");
    ast.cli("core set debug 5");
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected_with(&ast, "moves:\n  bar_s: 1\n");
    let add = ["device", "add", "alice-tablet", "--user", "alice", "--endpoint", "alice-tablet"];
    let (code, out) = handoffd.ctl(&add, "");
    assert!(code == 0 || out.contains("already exists"), "handoffctl device add: {out}");
    assert_eq!(handoffd.ctl(&["pin", "set", "alice"], &format!("{PIN}\n")).0, 0);

    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let phone_rec = Recorder::bind("127.0.0.1");
    let mut phone =
        Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", phone_rec.port, 0, DATA_RTP);
    let joins = || ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count();
    wait_for(10 * SEC, || (joins() == 2).then_some(())).expect("the phone's call is up");

    // *86 and the PIN from the tablet.
    let digits: Vec<(String, String)> =
        PIN.chars().enumerate().map(|(i, d)| (format!("p{}", i + 1), d.to_string())).collect();
    let keys: Vec<(&str, &str)> = digits.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let tab_rec = Recorder::bind("127.0.0.1");
    let mut tablet = Sipp::leg_with(
        "move_pin8_uac.xml",
        "127.0.0.1",
        5075,
        "alice-tablet",
        "*86",
        tab_rec.port,
        0,
        (34000, 34999),
        &keys,
    );
    phone
        .wait(30 * SEC)
        .unwrap_or_else(|e| panic!("the PIN move hangs up the phone: {e}\n{}", handoffd.log().join("\n")));
    assert!(handoffd.wait_log("call moved", 5 * SEC).is_some(), "{:#?}", handoffd.log());

    // The phone takes the call back with a ticket once the bar (1 s) is over.
    std::thread::sleep(2 * SEC);
    let (status, granted) =
        api("POST", "/v1/moves", &format!(r#"{{"user":"alice","device":"alice-phone","pin":"{PIN}"}}"#), None);
    assert_eq!(status, 201, "{granted}");
    let ticket = granted["ticket"].as_str().expect("ticket").to_string();
    let back_rec = Recorder::bind("127.0.0.1");
    let mut back = Sipp::leg_with(
        "move_ticket_uac.xml",
        "127.0.0.1",
        5076,
        "alice-app",
        "move",
        back_rec.port,
        3000,
        DATA_RTP,
        &[("ticket", &ticket)],
    );
    tablet.wait(30 * SEC).expect("the ticket move hangs up the tablet");
    back.wait(30 * SEC).expect("the phone's call with the ticket");
    far.wait(30 * SEC).expect("the far party gets its BYE");
    let moved = handoffd.log().iter().filter(|l| l.contains("call moved")).count();
    assert_eq!(moved, 2, "both moves happened: {:#?}", handoffd.log());

    let full = std::fs::read_to_string(ast.instance_dir().join("log/full.log")).expect("full.log");
    assert!(full.contains("Handoff(\"PJSIP/alice-tablet-"), "the log is at verbose level: {} bytes", full.len());
    assert!(full.contains("DEBUG["), "the log has debug lines");
    let leaks = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.contains(PIN) || l.contains(&ticket)).map(str::to_string).collect()
    };
    let in_log = leaks(&full);
    let in_events: Vec<String> = ami
        .events()
        .iter()
        .flat_map(|e| {
            let name = e.name.clone();
            e.headers.iter().map(move |(k, v)| format!("{name}: {k}: {v}"))
        })
        .filter(|l| l.contains(PIN) || l.contains(&ticket))
        .collect();
    let in_handoffd = leaks(&handoffd.log().join("\n"));
    assert!(in_log.is_empty(), "the PIN or ticket in Asterisk's log:\n{}", in_log.join("\n"));
    assert!(in_events.is_empty(), "the PIN or ticket in AMI events:\n{}", in_events.join("\n"));
    assert!(in_handoffd.is_empty(), "the PIN or ticket in handoffd's log:\n{}", in_handoffd.join("\n"));

    // The module asked for the secrets by kind; the values went to handoffd alone.
    let arrived: Vec<_> = ami.events().into_iter().filter(|e| e.name == "HandoffLegArrived").collect();
    let kinds: Vec<_> = arrived.iter().filter_map(|e| e.headers.get("Secret")).filter(|s| !s.is_empty()).collect();
    assert_eq!(kinds, ["pin", "ticket"], "{arrived:#?}");

    // What remains (documented): single digits in the dtmf log channel and DTMF events.
    let dtmf_lines = full.lines().filter(|l| l.contains("DTMF")).count();
    let dtmf_events = ami.events().iter().filter(|e| e.name.starts_with("DTMF")).count();
    println!("remains: {dtmf_lines} log lines mentioning DTMF, {dtmf_events} DTMF* AMI events (one digit each)");
    handoffd.assert_nothing_left(&ast, &ami);
}
