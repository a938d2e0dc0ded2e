//! handoffd.yaml is the source of truth for the devices it lists (issue 12, item 11): an
//! endpoint edited there after the store holds the device is applied at the next start, with
//! a line saying what changed, and `handoffd --check` reports the difference beforehand.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{testbed_config, with_state, Handoffd, AMI_SECRET};
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::{target_dir, wait_for};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn an_endpoint_edited_in_the_yaml_is_used_after_the_next_start_and_check_reports_it() {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    let ami = AmiClient::connect();
    let edited = testbed_config(5038, AMI_SECRET);
    // First the device is registered with an old endpoint: the store keeps that.
    let old = edited.replace("endpoint: alice-app\n", "endpoint: alice-old-app\n");
    assert_ne!(old, edited);
    let first = Handoffd::spawn(&old);
    assert!(first.wait_log("logged in to AMI", 10 * SEC).is_some(), "{:#?}", first.log());
    drop(first);

    // The admin edits the endpoint; --check names the difference before anything changes.
    let path = std::env::temp_dir().join(format!("handoffd-devices-{}.yaml", std::process::id()));
    // (`--check` refuses the samples' placeholder secret, which the testbed's AMI account uses)
    std::fs::write(&path, with_state(&edited.replace(AMI_SECRET, "an-administrators-own-secret"))).unwrap();
    let out = std::process::Command::new(target_dir().join("release/handoffd"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("device 'alice-phone' differs from the store (endpoint 'alice-old-app' → 'alice-app', store → config); the config wins at the next start"),
        "{text}"
    );
    let _ = std::fs::remove_file(&path);

    // At start the YAML wins, loudly, and a call from the edited endpoint is accepted.
    let handoffd = Handoffd::spawn(&edited);
    assert!(handoffd.wait_log("logged in to AMI", 10 * SEC).is_some(), "{:#?}", handoffd.log());
    let line = handoffd.wait_log("handoffd.yaml differs from the store", SEC).unwrap_or_default();
    assert!(line.contains("WARN") && line.contains("endpoint 'alice-old-app' → 'alice-app'"), "{:#?}", handoffd.log());
    let connected =
        wait_for(10 * SEC, || ast.cli("handoff show status").contains("Controller:          connected").then_some(()));
    assert!(connected.is_some());
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let phone_rec = Recorder::bind("127.0.0.1");
    let mut phone = Sipp::phone_leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", phone_rec.port, 1500);
    phone
        .wait(30 * SEC)
        .unwrap_or_else(|e| panic!("the call from the edited endpoint was refused: {e}\n{:#?}", handoffd.log()));
    far.wait(30 * SEC).expect("far party released");
    handoffd.assert_nothing_left(&ast, &ami);
}
