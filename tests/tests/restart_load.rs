//! A controller restart no caller notices, under load: 50 dual-leg sessions (150 channels) run
//! on the real Asterisk 22 when handoffd is killed with SIGKILL. Its successor rebuilds its state
//! from the store and AMI within 2 s, takes every session over, keeps enforcing the tickets and
//! lockouts the store holds, and ends every call normally when the phones hang up: SIPp sees no
//! failed call.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{api, testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::rtp::{Recorder, Sink};
use handoff_tests::sipp::{app_password, write_carrier_signal, write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const SESSIONS: usize = 50;
const CALL_MS: u64 = 40_000;

#[allow(clippy::too_many_arguments)]
fn spawn_load(
    name: &str,
    scenario: &str,
    ip: &str,
    port: &str,
    rtp: (&str, &str),
    csv: &str,
    sink: u16,
    d: Option<&str>,
) -> Sipp {
    let sink = sink.to_string();
    let m = SESSIONS.to_string();
    let mut args = vec![
        "127.0.0.1:5060",
        "-i",
        ip,
        "-p",
        port,
        "-mi",
        ip,
        "-min_rtp_port",
        rtp.0,
        "-max_rtp_port",
        rtp.1,
        "-inf",
        csv,
        "-s",
        "2000",
        "-key",
        "rec_port",
        &sink,
        "-r",
        "10",
        "-m",
        &m,
        "-l",
        &m,
        "-timeout",
        "180s",
        "-timeout_error",
    ];
    if let Some(d) = d {
        args.extend(["-d", d]);
    }
    Sipp::spawn(name, scenario, &args)
}

#[test]
fn a_killed_handoffd_under_50_sessions_drops_no_call_and_keeps_enforcing_tickets_and_lockouts() {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    let etc = ast.instance_dir().join("etc");
    let (mut endpoints, mut data_csv, mut carrier_csv) =
        (String::new(), String::from("SEQUENTIAL\n"), String::from("SEQUENTIAL\n"));
    let mut registry = String::new();
    for i in 0..SESSIONS {
        endpoints.push_str(&format!(
            "[load-app-{i:03}](handoff-app)\nauth = load-app-{i:03}\nrtp_symmetric = no\nforce_rport = no\nrewrite_contact = no\n\
             [load-app-{i:03}](handoff-app-auth)\nusername = load-app-{i:03}\npassword = {}\n\n",
            app_password(&format!("load-app-{i:03}"))
        ));
        data_csv.push_str(&format!("load-app-{i:03};{};\n", app_password(&format!("load-app-{i:03}"))));
        carrier_csv.push_str(&format!("+1555200{i:04};\n"));
        registry.push_str(&format!(
            "  - {{id: load-{i:03}, user: user-{i:03}, endpoint: load-app-{i:03}, number: \"+1555200{i:04}\"}}\n"
        ));
    }
    std::fs::write(etc.join("pjsip_load.conf"), endpoints).unwrap();
    let pjsip = std::fs::read_to_string(etc.join("pjsip.conf")).unwrap();
    std::fs::write(etc.join("pjsip.conf"), format!("{pjsip}\n#include pjsip_load.conf\n")).unwrap();
    ast.cli("module reload res_pjsip.so");
    let sipp_dir = ast.instance_dir().join("sipp");
    std::fs::write(sipp_dir.join("load_data.csv"), data_csv).unwrap();
    std::fs::write(sipp_dir.join("load_carrier.csv"), carrier_csv).unwrap();
    // The testbed registry plus the 50 load devices (appended to its devices list).
    let config = format!("{}{registry}", testbed_config(5038, AMI_SECRET));

    let ami = AmiClient::connect();
    let first = Handoffd::spawn(&config);
    assert!(first.wait_log("logged in to AMI", 20 * SEC).is_some(), "{:#?}", first.log());
    wait_for(10 * SEC, || ast.cli("handoff show status").contains("Controller:          connected").then_some(()))
        .expect("the module sees handoffd");

    // What the store must keep across the kill: a ticket and a lockout.
    assert_eq!(first.ctl(&["pin", "set", "user-000"], "2468\n").0, 0);
    assert_eq!(first.ctl(&["pin", "set", "user-001"], "1357\n").0, 0);
    let add = ["device", "add", "load-000-tablet", "--user", "user-000", "--endpoint", "alice-tablet"];
    assert_eq!(first.ctl(&add, "").0, 0);

    let (far_sink, data_sink, carrier_sink) =
        (Sink::bind("127.0.0.3"), Sink::bind("127.0.0.1"), Sink::bind("127.0.0.2"));
    let (m, fs) = (SESSIONS.to_string(), far_sink.port.to_string());
    let mut far = Sipp::spawn(
        "far parties",
        "far_uas.xml",
        &[
            "-i",
            "127.0.0.3",
            "-p",
            "5060",
            "-mi",
            "127.0.0.3",
            "-min_rtp_port",
            "40000",
            "-max_rtp_port",
            "49999",
            "-key",
            "rec_port",
            &fs,
            "-m",
            &m,
            "-l",
            &m,
            "-timeout",
            "180s",
            "-timeout_error",
        ],
    );
    let d = CALL_MS.to_string();
    let mut carrier = spawn_load(
        "carrier legs",
        "load_carrier_uac.xml",
        "127.0.0.2",
        "5072",
        ("32000", "35999"),
        "load_carrier.csv",
        carrier_sink.port,
        None,
    );
    let mut data = spawn_load(
        "data legs",
        "load_data_uac.xml",
        "127.0.0.1",
        "5071",
        ("36000", "39999"),
        "load_data.csv",
        data_sink.port,
        Some(&d),
    );
    let joined = wait_for(30 * SEC, || {
        let n = ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count();
        (n >= SESSIONS * 3).then_some(n)
    });
    assert!(
        joined.is_some(),
        "150 channels joined; handoffd:\n{}",
        first.log().iter().rev().take(30).cloned().collect::<Vec<_>>().join("\n")
    );

    let (status, granted) =
        api("POST", "/v1/moves", r#"{"user":"user-000","device":"load-000-tablet","pin":"2468"}"#, None);
    assert_eq!(status, 201, "{granted}");
    let ticket = granted["ticket"].as_str().unwrap().to_string();
    for _ in 0..5 {
        api("POST", "/v1/moves", r#"{"user":"user-001","device":"load-001","pin":"0000"}"#, None);
    }
    let (status, v) = api("POST", "/v1/moves", r#"{"user":"user-001","device":"load-001","pin":"1357"}"#, None);
    assert_eq!((status, v["error"].as_str()), (429, Some("locked_out")), "{v}");

    drop(first); // SIGKILL
    std::thread::sleep(SEC);
    let started = Instant::now();
    let second = Handoffd::spawn(&config);
    let line = second.wait_log("resynchronised from Asterisk", 10 * SEC).expect("the new handoffd resynchronises");
    let took = started.elapsed();
    println!("{line}\nrestarted handoffd rebuilt {SESSIONS} sessions in {} ms", took.as_millis());
    assert!(line.contains(&format!("{SESSIONS} running session(s) taken over")), "{line}");
    assert!(took <= 2 * SEC, "rebuilt its state in {took:?}");

    // The lockout and the ticket survived the kill.
    let (status, v) = api("POST", "/v1/moves", r#"{"user":"user-001","device":"load-001","pin":"1357"}"#, None);
    assert_eq!((status, v["error"].as_str()), (429, Some("locked_out")), "{v}");
    let rec = Recorder::bind("127.0.0.1");
    let mut wrong = Sipp::leg_with(
        "move_ticket_uac_refused.xml",
        "127.0.0.1",
        5077,
        "bob-app",
        "move",
        rec.port,
        0,
        (35000, 35999),
        &[("ticket", &ticket)],
    );
    wrong.wait(20 * SEC).expect("the ticket presented by another device is refused");
    let (_, audit) = second.ctl(&["moves", "--tail", "20"], "");
    assert!(audit.contains("ticket was issued to another device"), "the ticket survived the kill: {audit}");

    // Every call ends normally: the phones hang up their app legs, the new handoffd ends the rest.
    data.wait(120 * SEC).expect("every data leg's call succeeded");
    carrier.wait(60 * SEC).expect("every carrier leg got its BYE");
    far.wait(60 * SEC).expect("every far party got its BYE");
    assert!(wait_for(20 * SEC, || ami.channels().is_empty().then_some(())).is_some(), "{:#?}", ami.channels());
    let ended = wait_for(10 * SEC, || {
        let (_, audit) = second.ctl(&["audit", "--tail", "500"], "");
        (audit.matches("session_end").count() >= SESSIONS).then_some(())
    });
    assert!(ended.is_some(), "every session's end is audited");
    second.assert_nothing_left(&ast, &ami);
}
