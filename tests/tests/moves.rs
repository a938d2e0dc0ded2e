//! Moving a live call to another of the user's devices, on the real Asterisk 22.
//!
//! Alice's phone (device alice-phone: app alice-app over the data path, +15550001 over the
//! carrier trunk) talks to the far party with a 440 Hz "voice"; her tablet (alice-tablet, added
//! with the real `handoffctl`) streams 660 Hz. The tablet takes the call over with a ticket
//! from handoffd's HTTP API (SIP header X-Handoff-Ticket) or with the feature code *86 and her
//! PIN keyed as SIP INFO. The test listens to what the far party really receives and checks
//! the store's audit log through `handoffctl`. Every attack is refused with a reason, audited,
//! and leaves the session where it was. After the ticket move handoffd is killed and restarted:
//! its successor still bars the phone (the bar is restored from the store).

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::{tone, ulaw_decode};
use handoff_tests::handoffd::{admin_token, api, Handoffd};
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_carrier_signal, write_signals, write_tablet_signal, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use serde_json::Value;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const PIN: &str = "2468";
const TABLET_RTP: (u16, u16) = (34000, 34999);

struct Call {
    ast: Asterisk,
    ami: AmiClient,
    handoffd: Handoffd,
    far_rec: Recorder,
    far: Sipp,
    data: Sipp,
    carrier: Sipp,
    _recs: Vec<Recorder>,
}

/// Alice's phone on a call over both paths, the tablet registered, her PIN set.
fn call_on_the_phone(extra_config: &str) -> Call {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    write_tablet_signal(&ast, &tone(660.0, 2.0));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected_with(&ast, extra_config);
    let add = ["device", "add", "alice-tablet", "--user", "alice", "--endpoint", "alice-tablet", "--name", "tablet"];
    let (code, out) = handoffd.ctl(&add, "");
    assert!(code == 0 || out.contains("already exists"), "handoffctl device add: {out}");
    let (code, out) = handoffd.ctl(&["pin", "set", "alice"], "12\n");
    assert_eq!(code, 1, "a 2-digit PIN is refused: {out}");
    assert!(out.contains("PIN"), "{out}");
    let (code, out) = handoffd.ctl(&["pin", "set", "alice"], &format!("{PIN}\n"));
    assert_eq!(code, 0, "handoffctl pin set: {out}");
    let (code, out) = handoffd.ctl(&["unlock", "alice"], "");
    assert_eq!(code, 0, "{out}");

    let far_rec = Recorder::bind("127.0.0.3");
    let far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (r1, r2) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let data = Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", r1.port, 0, DATA_RTP);
    let carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", r2.port, 0, CARRIER_RTP);
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .unwrap_or_else(|| panic!("three legs joined; handoffd log:\n{}", handoffd.log().join("\n")));
    std::thread::sleep(SEC);
    Call { ast, ami, handoffd, far_rec, far, data, carrier, _recs: vec![r1, r2] }
}

fn sessions() -> Vec<Value> {
    let (status, v) = api("GET", "/v1/admin/sessions", "", Some(&admin_token()));
    assert_eq!(status, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

/// The one live session: (id, device, number of legs).
fn live_session() -> (String, String, usize) {
    let live: Vec<_> = sessions().into_iter().filter(|s| s["state"] != "ended").collect();
    assert_eq!(live.len(), 1, "{live:#?}");
    let s = &live[0];
    (
        s["id"].as_str().unwrap_or("").into(),
        s["device"].as_str().unwrap_or("").into(),
        s["legs"].as_array().map_or(0, Vec::len),
    )
}

fn move_request(device: &str, pin: &str) -> (u16, Value) {
    api("POST", "/v1/moves", &format!(r#"{{"user":"alice","device":"{device}","pin":"{pin}"}}"#), None)
}

fn refused(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(!got.1["reason"].as_str().unwrap_or("").is_empty(), "{}", got.1);
}

/// Mean absolute amplitude of a PCMU packet: voice or silence.
fn loud(p: &handoff_tests::rtp::Packet) -> bool {
    let sum: i64 = p.payload.iter().map(|b| i64::from(ulaw_decode(*b)).abs()).sum();
    p.payload_type == 0 && !p.payload.is_empty() && sum / p.payload.len() as i64 > 1000
}

/// The longest stretch without voice the far party heard in [from, to].
fn longest_silence_ms(rec: &Recorder, from: Instant, to: Instant) -> u128 {
    let mut last = from;
    let mut longest = 0;
    for p in rec.packets().iter().filter(|p| p.at >= from && p.at <= to && loud(p)) {
        longest = longest.max(p.at.duration_since(last).as_millis());
        last = p.at;
    }
    longest.max(to.duration_since(last).as_millis())
}

fn tablet(scenario: &str, port: u16, number: &str, hangup_after_ms: u64, keys: &[(&str, &str)]) -> Sipp {
    let rec = Recorder::bind("127.0.0.1");
    let s = Sipp::leg_with(
        scenario,
        "127.0.0.1",
        port,
        "alice-tablet",
        number,
        rec.port,
        hangup_after_ms,
        TABLET_RTP,
        keys,
    );
    std::mem::forget(rec); // keeps receiving until the test process ends
    s
}

fn audit(h: &Handoffd) -> String {
    let (code, out) = h.ctl(&["audit", "--tail", "200"], "");
    assert_eq!(code, 0, "{out}");
    out
}

#[test]
fn the_tablet_takes_the_call_with_an_api_ticket_and_the_phone_is_barred() {
    ticket_move("");
}

/// The same move with handoffd's records in the testbed's PostgreSQL (the cluster store)
/// instead of sled: every decision, refusal, bar and lockout goes through the database.
#[test]
fn the_ticket_move_works_the_same_on_the_postgres_store() {
    let url = handoff_tests::testbed::postgres_schema("moves");
    let d = handoff_tests::handoffd::state_dir();
    let d = d.display();
    ticket_move(&format!(
        "store:\n  backend: postgres\n  url: \"{url}\"\n  pepper_file: {d}/pepper\napi:\n  admin_token_file: {d}/admin-token\n"
    ));
}

fn ticket_move(extra_config: &str) {
    let mut c = call_on_the_phone(extra_config);
    let (session, device, legs) = live_session();
    assert_eq!((device.as_str(), legs), ("alice-phone", 2));

    // Attacks and mistakes before the move: refused, audited, the session untouched.
    refused(move_request("alice-tablet", "9999"), 401, "wrong_credential");
    refused(move_request("nope", PIN), 403, "unknown_device");
    refused(move_request("bob-phone", PIN), 403, "not_users_device");
    refused(move_request("alice-phone", PIN), 403, "no_call");
    refused(api("POST", "/v1/moves", "{\"user\":", None), 400, "malformed");
    refused(api("POST", "/v1/moves", r#"{"user":"alice","device":"alice-tablet","pin":2468}"#, None), 400, "malformed");
    refused(api("POST", "/v1/moves", &format!("{{\"pad\":\"{}\"}}", "x".repeat(8000)), None), 413, "body_too_large");
    refused(api("GET", "/v1/admin/sessions", "", Some("not-the-token")), 401, "admin_token");
    assert_eq!(live_session(), (session.clone(), "alice-phone".into(), 2), "attacks changed nothing");

    // A ticket presented by another device is spent and refused.
    let (status, other) = move_request("alice-tablet", PIN);
    assert_eq!(status, 201, "{other}");
    let other_ticket = other["ticket"].as_str().expect("ticket").to_string();
    let rec = Recorder::bind("127.0.0.1");
    let mut bob = Sipp::leg_with(
        "move_ticket_uac_refused.xml",
        "127.0.0.1",
        5077,
        "bob-app",
        "move",
        rec.port,
        0,
        (35000, 35999),
        &[("ticket", &other_ticket)],
    );
    bob.wait(20 * SEC).expect("bob's device presenting alice's ticket is refused");

    // The move.
    let (status, granted) = move_request("alice-tablet", PIN);
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["session"], session.as_str());
    assert_eq!(granted["from_device"], "alice-phone");
    let ticket = granted["ticket"].as_str().expect("ticket").to_string();
    assert_eq!(ticket.len(), 32, "128-bit ticket as hex");
    let t_move = Instant::now();
    let mut tab = tablet("move_ticket_uac.xml", 5075, "move", 20_000, &[("ticket", &ticket)]);
    c.data.wait(20 * SEC).expect("the phone's data leg is hung up by the move");
    c.carrier.wait(20 * SEC).expect("the phone's carrier leg is hung up by the move");
    let moved = c.handoffd.wait_log("call moved", 10 * SEC).expect("handoffd moved the call");
    assert!(moved.contains("alice-tablet"), "{moved}");
    std::thread::sleep(3 * SEC);
    let silence = longest_silence_ms(&c.far_rec, t_move - SEC, t_move + 3 * SEC);
    assert!(silence <= 100, "the far party heard {silence} ms of silence around the move");
    let heard_tablet = c.far_rec.packets().iter().filter(|p| p.at > t_move + SEC).count();
    assert!(c.far_rec.packets_with_tone(660.0) >= 80, "the far party hears the tablet ({heard_tablet} packets)");
    let (_, device, legs) = live_session();
    assert_eq!((device.as_str(), legs), ("alice-tablet", 1));

    // The ticket again: replayed.
    let mut again = tablet("move_ticket_uac_refused.xml", 5076, "move", 0, &[("ticket", &ticket)]);
    again.wait(20 * SEC).expect("a replayed ticket is refused");
    // The phone tries to come back: calling the far number again, and asking over the API.
    let rec = Recorder::bind("127.0.0.1");
    let mut back = Sipp::leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "alice-app", "2000", rec.port, 0, DATA_RTP);
    back.wait(20 * SEC).expect("the barred phone's new leg is refused");
    // handoffd is killed and restarted: its successor takes the call over from the PBX and the
    // bar from the store, for the rest of its time.
    c.handoffd.signal("KILL");
    c.handoffd.wait_exit(5 * SEC).expect("handoffd is gone");
    let first_log = c.handoffd.log().join("\n");
    c.handoffd = Handoffd::connected_with(&c.ast, extra_config);
    let line = c.handoffd.wait_log("resynchronised from", 5 * SEC).expect("the new handoffd resynchronises");
    assert!(line.contains("1 running session(s) taken over"), "{line}");
    let mut back = Sipp::leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "alice-app", "2000", rec.port, 0, DATA_RTP);
    back.wait(20 * SEC).expect("the phone's new leg is still refused after the restart");
    let barred = c.handoffd.wait_log("is barred from session", 5 * SEC);
    assert!(barred.is_some_and(|l| l.contains("(the call moved to device 'alice-tablet')")), "{:#?}", c.handoffd.log());
    refused(move_request("alice-phone", PIN), 403, "barred");
    // PIN brute force: the 5th wrong PIN in a row (right ones cleared the earlier failure)
    // locks Alice out, and then even the right PIN is refused.
    for _ in 0..4 {
        refused(move_request("alice-phone", "1111"), 401, "wrong_credential");
    }
    refused(move_request("alice-phone", "1112"), 429, "locked_out");
    refused(move_request("alice-phone", PIN), 429, "locked_out");
    assert_eq!(live_session(), (session.clone(), "alice-tablet".into(), 1), "refusals changed nothing");

    let log = audit(&c.handoffd);
    for needle in [
        "ticket_redeem granted",
        "ticket was issued to another device",
        "ticket already used",
        "rejoin refused",
        "barred from session",
        "wrong PIN",
        "lockout",
        "device nope is not registered",
        "device bob-phone belongs to another user",
    ] {
        assert!(log.contains(needle), "audit lacks {needle:?}:\n{log}");
    }
    let everything = format!("{log}\n{first_log}\n{}", c.handoffd.log().join("\n"));
    assert!(!everything.contains(&ticket) && !everything.contains(&other_ticket), "a ticket leaked into a log");
    assert!(!everything.contains("\"2468\"") && !everything.contains("pin-2468"), "the PIN leaked into a log");
    // The audit log narrowed to this call, and to a time: `audit --session`, `--since`.
    let (code, this_call) = c.handoffd.ctl(&["audit", "--session", &session], "");
    assert_eq!(code, 0, "{this_call}");
    assert!(this_call.contains("ticket_redeem granted"), "{this_call}");
    assert!(
        this_call.lines().all(|l| l.contains(&format!("session={session}"))),
        "audit --session shows only this session's records:\n{this_call}"
    );
    let (code, other) = c.handoffd.ctl(&["audit", "--session", "no-such-session"], "");
    assert_eq!((code, other.trim()), (0, ""), "another session's records are not shown");
    let (code, recent) = c.handoffd.ctl(&["audit", "--since", "10m", "--tail", "500"], "");
    assert_eq!(code, 0, "{recent}");
    assert!(recent.contains("ticket_redeem granted") && recent.contains("device nope is not registered"), "{recent}");
    let (code, none) = c.handoffd.ctl(&["audit", "--since", "2099-01-01T00:00:00Z"], "");
    assert_eq!((code, none.trim()), (0, ""), "nothing after 2099");
    let (code, bad) = c.handoffd.ctl(&["audit", "--since", "yesterday"], "");
    assert_eq!(code, 1, "{bad}");
    assert!(bad.contains("is neither a duration"), "{bad}");
    let (code, moves) = c.handoffd.ctl(&["moves"], "");
    assert_eq!(code, 0);
    assert!(moves.contains("move_request granted") && moves.contains("ticket_redeem granted"), "{moves}");

    // The tablet hangs up: the call ends.
    tab.wait(30 * SEC).expect("the tablet's call");
    c.far.wait(20 * SEC).expect("the far party gets its BYE");
    assert!(wait_for(10 * SEC, || c.ami.channels().is_empty().then_some(())).is_some());
    refused(
        api(
            "POST",
            "/v1/moves",
            &format!(r#"{{"user":"alice","device":"alice-phone","pin":"{PIN}","session":"{session}"}}"#),
            None,
        ),
        429,
        "locked_out",
    );
    let (code, _) = c.handoffd.ctl(&["unlock", "alice"], "");
    assert_eq!(code, 0);
    refused(
        api(
            "POST",
            "/v1/moves",
            &format!(r#"{{"user":"alice","device":"alice-phone","pin":"{PIN}","session":"{session}"}}"#),
            None,
        ),
        403,
        "session_ended",
    );
    c.handoffd.assert_nothing_left(&c.ast, &c.ami);

    // The session's timeline tells the move, with its steps from the audit log.
    let (code, text) = c.handoffd.ctl(&["timeline", &session], "");
    assert_eq!(code, 0, "{text}");
    for needle in [
        "move ticket issued",
        "moved from device alice-phone to device alice-tablet",
        "ticket redeemed: new device joins",
        "old device barred",
        "ending: ",
    ] {
        assert!(text.contains(needle), "timeline lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains(&ticket), "a ticket leaked into the timeline");
    let dir = handoff_tests::target_dir().join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("timeline-move.svg");
    let (code, out) = c.handoffd.ctl(&["timeline", &session, "--svg", file.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    let svg = std::fs::read_to_string(&file).unwrap();
    for needle in ["alice-phone · data", "alice-tablet · ", "moved alice-phone → alice-tablet", "ticket issued"] {
        assert!(svg.contains(needle), "the timeline picture lacks {needle:?}: {}", file.display());
    }
}

#[test]
fn the_feature_code_and_pin_pull_the_call_and_an_expired_ticket_is_refused() {
    let mut c = call_on_the_phone("moves:\n  ticket_ttl_s: 1\n  bar_s: 4\n");
    let (session, _, _) = live_session();

    // A wrong PIN: announcement, hang-up, the call stays on the phone.
    let mut wrong =
        tablet("move_pin_uac_refused.xml", 5075, "*86", 0, &[("p1", "1"), ("p2", "3"), ("p3", "5"), ("p4", "7")]);
    wrong.wait(30 * SEC).expect("a wrong PIN is refused with an announcement and a BYE");
    assert_eq!(live_session(), (session.clone(), "alice-phone".into(), 2));

    // The right PIN pulls the call.
    let t_move = Instant::now();
    let mut tab =
        tablet("move_pin_uac.xml", 5076, "*86", 14_000, &[("p1", "2"), ("p2", "4"), ("p3", "6"), ("p4", "8")]);
    c.data.wait(30 * SEC).expect("the phone's data leg is hung up by the move");
    c.carrier.wait(30 * SEC).expect("the phone's carrier leg is hung up by the move");
    std::thread::sleep(2 * SEC);
    assert_eq!(live_session(), (session.clone(), "alice-tablet".into(), 1));
    let heard = c.far_rec.packets().iter().filter(|p| p.at > t_move).count();
    assert!(c.far_rec.packets_with_tone(660.0) >= 50, "the far party hears the tablet ({heard} packets since)");

    // After the bar (4 s) the phone may ask for the call back; its ticket lives 1 s.
    std::thread::sleep(3 * SEC);
    let (status, granted) = move_request("alice-phone", PIN);
    assert_eq!(status, 201, "{granted}");
    let ticket = granted["ticket"].as_str().expect("ticket").to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let rec = Recorder::bind("127.0.0.1");
    let mut late = Sipp::leg_with(
        "move_ticket_uac_refused.xml",
        "127.0.0.1",
        5071,
        "alice-app",
        "move",
        rec.port,
        0,
        DATA_RTP,
        &[("ticket", &ticket)],
    );
    late.wait(20 * SEC).expect("an expired ticket is refused");
    assert_eq!(live_session(), (session.clone(), "alice-tablet".into(), 1));
    let log = audit(&c.handoffd);
    assert!(log.contains("ticket expired"), "{log}");
    assert!(log.contains("credential_check refused"), "{log}");

    tab.wait(30 * SEC).expect("the tablet's call");
    c.far.wait(20 * SEC).expect("the far party gets its BYE");
    c.handoffd.assert_nothing_left(&c.ast, &c.ami);
}
