//! The timeline picture of a real call on the real Asterisk 22: alice-phone calls in over its
//! app (data) and the carrier trunk, the far party answers, the data leg's RTP is really cut
//! (nftables) and restored, the phone hangs up. `handoffctl timeline` prints the session's
//! timeline and draws it (`--svg`): the picture holds that call's legs, the switch at the cut
//! with the silence the module measured, the far party's answer and the end with its cause.
//! handoffd is then stopped and started again: the same timeline comes from its store. An
//! unknown session is one clear line and exit 1. The SVG is kept as a test artefact in
//! `target/test-artefacts/timeline.svg`.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{admin_token, api, Handoffd};
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::coded_signal;
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::{target_dir, wait_for};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn event_after(ami: &AmiClient, h: &Handoffd, skip: usize, name: &str, to: &str) -> handoff::ami::Event {
    wait_for(10 * SEC, || {
        ami.events().into_iter().skip(skip).find(|e| e.name == name && e.headers.get("To").is_none_or(|t| t == to))
    })
    .unwrap_or_else(|| panic!("no {name} event; handoffd log:\n{}", h.log().join("\n")))
}

#[test]
fn the_timeline_of_a_real_call_shows_its_legs_switch_answer_and_end_also_after_a_restart() {
    let ast = Asterisk::start();
    // Switching, so that the data cut moves the mix (the picture's mix lane follows the module's switches); aligned legs need
    // no switch for it (tests/tests/listener.rs).
    ast.set_alignment("switching").unwrap_or_else(|e| panic!("{e}"));
    write_signals(&ast, &coded_signal(40.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal(40.0, 80));
    let ami = AmiClient::connect();
    let mut handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (data_rec, carrier_rec) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let mut data = Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, 9000, DATA_RTP);
    let mut carrier = Sipp::leg(
        "carrier_leg_uac_wait.xml",
        "127.0.0.2",
        5072,
        "+15550001",
        "2000",
        carrier_rec.port,
        9000,
        CARRIER_RTP,
    );
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .expect("data, carrier and far party in one conference");
    std::thread::sleep(2 * SEC);
    let before_cut = ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    let to_carrier = event_after(&ami, &handoffd, before_cut, "HandoffLegSwitched", "carrier");
    std::thread::sleep(2 * SEC);
    let before_heal = ami.events().len();
    cut.heal();
    let to_data = event_after(&ami, &handoffd, before_heal, "HandoffLegSwitched", "data");
    data.wait(30 * SEC).expect("data leg scenario");
    carrier.wait(30 * SEC).expect("the carrier leg is hung up when the phone hangs up the app leg");
    far.wait(30 * SEC).expect("the far party gets its BYE");
    handoffd.assert_nothing_left(&ast, &ami);

    let session = to_carrier.headers.get("Session").expect("the switch names its session").to_string();
    let gap = |e: &handoff::ami::Event| -> u64 { e.headers.get("GapMs").unwrap().parse().unwrap() };
    // Every switch the module reported for this session (the cut and the heal, and any other a
    // loaded machine caused): the picture must count them all and name the longest silence.
    let switches: Vec<u64> = ami
        .events()
        .iter()
        .filter(|e| e.name == "HandoffLegSwitched" && e.headers.get("Session") == Some(session.as_str()))
        .map(gap)
        .collect();
    assert!(switches.len() >= 2, "the cut and the heal each switched: {switches:?}");
    let longest = switches.iter().copied().max().unwrap_or_default();

    // The text.
    // The last entries reach the store off handoffd's loop, within milliseconds.
    let (code, text) = wait_for(5 * SEC, || {
        let (code, text) = handoffd.ctl(&["timeline", &session], "");
        (code != 0 || text.contains("ended after")).then_some((code, text))
    })
    .unwrap_or_else(|| handoffd.ctl(&["timeline", &session], ""));
    assert_eq!(code, 0, "{text}");
    for want in [
        format!("session {session}: "),
        "opened for device alice-phone of alice".into(),
        "far party 2000 called".into(),
        "paired after".into(),
        "far party answered after".into(),
        format!("mix switched to the carrier leg (stall, {} ms without a frame)", gap(&to_carrier)),
        "data leg".into(),
        "stalled".into(),
        format!("mix switched to the data leg (preferred-recovered, {} ms without a frame)", gap(&to_data)),
        "ending: the phone hung up its data leg".into(),
        "ended after".into(),
    ] {
        assert!(text.contains(&want), "timeline text lacks {want:?}:\n{text}");
    }

    // The picture.
    let dir = target_dir().join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("timeline.svg");
    let _ = std::fs::remove_file(&file);
    let (code, out) = handoffd.ctl(&["timeline", &session, "--svg", file.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    let svg = std::fs::read_to_string(&file).expect("the SVG was written");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.ends_with("</svg>\n"));
    assert!(!svg.contains("<script"), "no script in the picture");
    for want in [
        format!("Session {session}"),
        "alice-phone · data".into(),
        "alice-phone · carrier".into(),
        "feeds the conference".into(),
        "stalled (no voice frames)".into(),
        // Both switches, and the longest silence the module measured.
        format!(">{} ms<", gap(&to_carrier)),
        "far party ringing".into(),
        "far party answered".into(),
        "end: the phone hung up its data leg".into(),
        "Legend".into(),
    ] {
        assert!(svg.contains(&want), "the SVG lacks {want:?}; artefact {}", file.display());
    }
    // "N switch(es) (longest silence G ms)": the cut's and the heal's switches at least, at most
    // what the module reported (a switch raised while the call is torn down may come after the
    // session ended), and the longest gap one the module measured.
    let summary = svg.split(" switch(es) (longest silence ").collect::<Vec<_>>();
    assert!(summary.len() >= 2, "the SVG lacks its switch summary; artefact {}", file.display());
    let n: usize = summary[0].rsplit(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse().unwrap_or(0);
    let g: u64 = summary[1].split(' ').next().unwrap_or("").parse().unwrap_or(u64::MAX);
    assert!((2..=switches.len()).contains(&n), "{n} switches drawn, the module reported {switches:?}");
    assert!(
        switches.contains(&g) && g >= gap(&to_carrier).max(gap(&to_data)),
        "longest silence {g} ms of {switches:?}"
    );
    assert!(longest >= g);
    println!("timeline picture of session {session}: {} ({} bytes)", file.display(), svg.len());

    // The admin API: the same, with its token only.
    let (status, body) = api("GET", &format!("/v1/admin/timeline/{session}"), "", Some(&admin_token()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"].as_str(), Some(text.as_str()));
    let (status, _) = api("GET", &format!("/v1/admin/timeline/{session}"), "", None);
    assert_eq!(status, 401);

    // handoffd stops and starts again: the timeline comes from the store.
    handoffd.signal("TERM");
    assert_eq!(handoffd.wait_exit(10 * SEC), Some(0), "{:#?}", handoffd.log());
    let again = Handoffd::connected(&ast);
    let (code, after) = again.ctl(&["timeline", &session], "");
    assert_eq!(code, 0, "{after}");
    assert_eq!(after, text, "the same timeline after a restart");
    let file2 = dir.join("timeline-after-restart.svg");
    let (code, out) = again.ctl(&["timeline", &session, "--svg", file2.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_to_string(&file2).unwrap(), svg, "the same picture after a restart");

    // Bad input: one line, exit 1 (refused) or 64 (usage).
    let (code, out) = again.ctl(&["timeline", "no-such-session"], "");
    assert_eq!((code, out.trim()), (1, "handoffctl: GET timeline/no-such-session: 404 no timeline for session no-such-session (unknown, or purged)"));
    let (code, out) = again.ctl(&["timeline", "../users"], "");
    assert_eq!(code, 64, "{out}");
    assert!(out.starts_with("handoffctl: timeline: '../users' is not a session id"), "{out}");
    let (code, out) = again.ctl(&["timeline", &session, "--svg"], "");
    assert_eq!(code, 64, "{out}");
    let (status, body) = api("GET", "/v1/admin/timeline/", "", Some(&admin_token()));
    assert_eq!(status, 404, "{body}");
    again.assert_nothing_left(&ast, &ami);
}
