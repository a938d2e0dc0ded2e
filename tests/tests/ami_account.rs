//! Only the controller's AMI account drives res_handoff.so (issue 12, item 14), on the real
//! Asterisk 22: the testbed's `tester` account (write = all) is refused for every handoff action,
//! even with a Key made from its own secret; the `handoffd` account (controller_account in
//! handoff.conf) proves itself and is accepted; header values with control bytes are refused
//! and never echoed into responses or the CLI.

use handoff::ami::Action;
use handoff_tests::ami::AmiClient;
use handoff_tests::handoffd::AMI_SECRET;
use handoff_tests::sipp::Sipp;
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn error_of(r: &handoff::ami::Response) -> String {
    assert_eq!(r.headers.get("Response"), Some("Error"), "{r:?}");
    r.message.clone().unwrap_or_default()
}

#[test]
fn only_the_controller_account_may_drive_the_module() {
    let ast = Asterisk::start();
    let tester = AmiClient::connect(); // write = all
    let refused = "refused: only the controller's AMI account 'handoffd' (controller_account in handoff.conf)";

    // A plain hello, as any account with write=system could send before.
    let (r, _) = tester.action(Action::new("HandoffHello").header("Controller", "z"));
    assert!(error_of(&r).starts_with(&format!("HandoffHello: {refused}")), "{r:?}");
    // A proof made with tester's own secret does not prove the controller account.
    let r = tester.prove_controller("tester");
    assert_eq!(
        error_of(&r),
        "HandoffHello: Key does not prove the secret of AMI account 'handoffd' (controller_account in handoff.conf); refused"
    );
    // A Key without a challenge, or a replayed one, is refused too.
    let (r, _) = tester.action(Action::new("HandoffHello").header("Key", "00"));
    assert!(error_of(&r).contains("no challenge pending on this AMI session"), "{r:?}");
    assert!(ast.cli("handoff show status").contains("Controller:          NOT connected"));

    // The controller account proves itself and is accepted.
    let ctl = AmiClient::connect_as("handoffd", AMI_SECRET);
    let r = ctl.prove_controller(AMI_SECRET);
    assert_eq!(r.headers.get("Response"), Some("Success"), "{r:?}");
    assert!(ast.cli("handoff show status").contains("Controller:          connected (test"));

    // A leg waits in Handoff(): tester may neither assign nor refuse it; the controller may.
    let mut phone = Sipp::phone_leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "alice-app", "2000", 40000, 0);
    let arrived = tester.wait_event(10 * SEC, |e| e.name == "HandoffLegArrived").expect("HandoffLegArrived");
    let uniqueid = arrived.headers.get("Uniqueid").unwrap_or_default().to_string();
    let (r, _) = tester.action(
        Action::new("HandoffAssign").header("Uniqueid", &uniqueid).header("Session", "s").header("Bridge", "evil"),
    );
    assert!(error_of(&r).starts_with(&format!("HandoffAssign: {refused}")), "{r:?}");
    let (r, _) = tester.action(Action::new("HandoffRefuse").header("Uniqueid", &uniqueid).header("Reason", "spoofed"));
    assert!(error_of(&r).starts_with(&format!("HandoffRefuse: {refused}")), "{r:?}");
    let (r, _) = tester.action(Action::new("HandoffSecret").header("Uniqueid", &uniqueid));
    assert!(error_of(&r).starts_with(&format!("HandoffSecret: {refused}")), "{r:?}");
    // Control bytes in a value: refused, named by header, never echoed.
    let (r, _) =
        ctl.action(Action::new("HandoffRefuse").header("Uniqueid", &uniqueid).header("Reason", "x\u{1b}[2J\u{7}"));
    let e = error_of(&r);
    assert_eq!(e, "HandoffRefuse: header Reason contains a control character (U+001B); refused");
    let (r, _) =
        ctl.action(Action::new("HandoffRefuse").header("Uniqueid", &uniqueid).header("Reason", "controller says no"));
    assert_eq!(r.headers.get("Response"), Some("Success"), "{r:?}");
    let refused_ev = tester.wait_event(10 * SEC, |e| e.name == "HandoffLegRefused").expect("HandoffLegRefused");
    assert_eq!(refused_ev.headers.get("Reason"), Some("controller says no"));
    phone.wait(15 * SEC).expect("the leg is refused by the controller");

    // A controller name with control bytes never reaches the CLI.
    let (r, _) = ctl.action(Action::new("HandoffHello").header("Controller", "evil\u{1b}[2J"));
    assert!(error_of(&r).contains("header Controller contains a control character"), "{r:?}");
    let status = ast.cli("handoff show status");
    assert!(!status.contains('\u{1b}') && status.contains("connected (test"), "{status}");
    // Nothing of tester's attempts was applied, and the log says why, once a second at most.
    assert!(wait_for(5 * SEC, || ast.messages_log().contains(refused).then_some(())).is_some());
    assert!(!ast.messages_log().contains('\u{1b}'));
    assert!(wait_for(5 * SEC, || tester.channels().is_empty().then_some(())).is_some());
    assert!(tester.conferences().is_empty(), "conferences left: {:#?}", tester.conferences());
    let status = ast.cli("handoff show status");
    assert!(status.contains("Waiting in Handoff(): 0") && status.contains("Watched legs:        0"), "{status}");
}

#[test]
fn another_configured_account_takes_over_and_handoffd_is_refused() {
    let ast = Asterisk::start();
    let conf = ast.instance_dir().join("etc/handoff.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace("controller_account = handoffd", "controller_account = tester")).unwrap();
    assert!(ast.cli("module reload res_handoff.so").contains("reloaded"));
    let status = ast.cli("handoff show status");
    assert!(status.contains("controller_account=tester"), "{status}");
    let ctl = AmiClient::connect_as("handoffd", AMI_SECRET);
    let r = ctl.prove_controller(AMI_SECRET);
    assert!(error_of(&r).contains("AMI account 'tester'"), "{r:?}");
    let tester = AmiClient::connect();
    let r = tester.prove_controller("tester");
    assert_eq!(r.headers.get("Response"), Some("Success"), "{r:?}");
}
