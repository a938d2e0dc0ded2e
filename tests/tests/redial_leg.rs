//! Two data legs of one phone in one device group, on the real Asterisk 22 (issue 12, item 13):
//! the phone re-dials over data while its old data leg is still up; the old leg then hangs up.
//! The group must go on tracking the new leg: no flip-flopping between data and carrier (before
//! the fix, the old leg's hangup marked the whole data path detached and the mix switched on
//! every frame), the group still watched with one leg per path, the new leg's Uniqueid in the
//! events. The controller's decisions are sent by the test itself over the controller account.

use handoff::ami::{Action, Event};
use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::AMI_SECRET;
use handoff_tests::rtp::Sink;
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const GROUP: &str = "redial-g";

fn switches(ami: &AmiClient) -> Vec<Event> {
    ami.events()
        .into_iter()
        .filter(|e| e.name == "HandoffLegSwitched" && e.headers.get("Group") == Some(GROUP))
        .collect()
}

#[test]
fn a_redialled_data_leg_keeps_its_group_watched_without_flip_flopping() {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    let ami = AmiClient::connect();
    let ctl = AmiClient::connect_as("handoffd", AMI_SECRET);
    let hello = ctl.prove_controller(AMI_SECRET);
    assert_eq!(hello.headers.get("Response"), Some("Success"), "{hello:?}");
    let mut seen: Vec<String> = Vec::new();
    let mut next_leg = |path: &str| -> String {
        let ev = ami
            .wait_event(10 * SEC, |e| {
                e.name == "HandoffLegArrived"
                    && e.headers.get("Path") == Some(path)
                    && !seen.iter().any(|u| Some(u.as_str()) == e.headers.get("Uniqueid"))
            })
            .unwrap_or_else(|| panic!("a {path} leg arrives"));
        let uid = ev.headers.get("Uniqueid").unwrap_or_default().to_string();
        let (r, _) = ctl.action(
            Action::new("HandoffAssign")
                .header("Uniqueid", &uid)
                .header("Session", "redial")
                .header("Bridge", "handoff-redial")
                .header("Group", GROUP)
                .header("Preferred", "data"),
        );
        assert_eq!(r.headers.get("Response"), Some("Success"), "{r:?}");
        seen.push(uid.clone());
        uid
    };
    let sinks = [Sink::bind("127.0.0.2"), Sink::bind("127.0.0.1"), Sink::bind("127.0.0.1")];
    let mut carrier =
        Sipp::leg("carrier_leg_uac.xml", "127.0.0.2", 5072, "+15550001", "2000", sinks[0].port, 16_000, CARRIER_RTP);
    next_leg("carrier");
    let mut old =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", sinks[1].port, 6_000, (30000, 30499));
    let old_uid = next_leg("data");
    std::thread::sleep(2 * SEC);
    // The phone re-dials over data while its old data leg is still up.
    let mut new =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5073, "alice-app", "2000", sinks[2].port, 10_000, (30500, 30999));
    let new_uid = next_leg("data");
    let status = wait_for(10 * SEC, || {
        Some(ast.cli("handoff show status")).filter(|s| s.contains("data_legs=2 carrier_legs=1"))
    });
    assert!(status.is_some(), "both data legs in the group:\n{}", ast.cli("handoff show status"));

    // The old leg hangs up; the new one and the carrier leg go on for 4 s more at least.
    old.wait(20 * SEC).expect("the old data leg hangs up");
    let before = switches(&ami).len();
    std::thread::sleep(4 * SEC);
    let after = switches(&ami);
    let flips = after.len() - before;
    assert!(flips <= 2, "{flips} HandoffLegSwitched in 4 s after the old leg left: {:#?}", &after[before..]);
    let status = ast.cli("handoff show status");
    assert!(status.contains(&format!("  {GROUP}: active=data")), "the new data leg feeds the mix:\n{status}");
    assert!(status.contains("data_legs=1 carrier_legs=1"), "the group is still watched:\n{status}");
    // Switches to data after the old leg left name the new leg, never the one that left.
    for e in &after[before..] {
        if e.headers.get("To") == Some("data") {
            assert_eq!(e.headers.get("Uniqueid"), Some(new_uid.as_str()), "{e:?} (old leg {old_uid})");
        }
    }

    new.wait(30 * SEC).expect("the new data leg hangs up");
    carrier.wait(30 * SEC).expect("the carrier leg hangs up");
    assert!(wait_for(10 * SEC, || ami.channels().is_empty().then_some(())).is_some(), "{:#?}", ami.channels());
    assert!(ami.conferences().is_empty(), "conferences left: {:#?}", ami.conferences());
    let status = ast.cli("handoff show status");
    assert!(status.contains("Watched legs:        0") && status.contains("Device groups:       0"), "{status}");
    assert!(status.contains("Panics caught:       0"), "{status}");
}
