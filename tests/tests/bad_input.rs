//! Bad input around the foundation, each on the real thing: a missing or invalid config, wrong
//! AMI credentials, an unreachable AMI port, Asterisk going away under handoffd, a `Handoff()`
//! call while handoffd is not connected, and a build without Asterisk headers. Each gets a clear
//! one-line error naming the cause and the fix; nothing panics; no channel is left.

use handoff_tests::ami::AmiClient;
use handoff_tests::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::sipp::Sipp;
use handoff_tests::testbed::Asterisk;
use handoff_tests::{repo_root, target_dir, wait_for};
use std::process::Command;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn handoffd_check(config: Option<&str>) -> (i32, String) {
    let path = std::env::temp_dir().join(format!("handoffd-check-{}.yaml", std::process::id()));
    let _ = std::fs::remove_file(&path);
    if let Some(text) = config {
        std::fs::write(&path, text).unwrap();
    }
    let out =
        Command::new(target_dir().join("release/handoffd")).arg("--check").arg("--config").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn config_errors_are_one_line_naming_file_and_key() {
    let (code, out) = handoffd_check(None);
    assert_eq!(code, 78);
    assert!(out.contains("cannot read") && out.contains("copy conf/handoffd.yaml.sample"), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");

    let (code, out) = handoffd_check(Some("ami:\n  username: handoffd\n  secret: x\n  port: 0\n"));
    assert_eq!(code, 78);
    assert!(out.contains(": ami.port: must be 1..=65535, got 0"), "{out}");

    let (code, out) = handoffd_check(Some("ami:\n  username: handoffd\n  secret: hunter2\n  porrt: 5038\n"));
    assert_eq!(code, 78);
    assert!(out.contains("porrt") && !out.contains("hunter2"), "names the key, never the secret: {out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");

    let (code, out) = handoffd_check(Some("ami: [\n"));
    assert_eq!(code, 78, "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");

    // The shipped samples (and the package's config) are valid once their placeholder secret
    // is replaced; as shipped, `--check` refuses the secret every reader of them knows.
    let samples = [
        ("conf/handoffd.yaml.sample", "change-me-handoffd-secret", "ami.secret"),
        ("conf/handoffd-freeswitch.yaml.sample", "change-me-esl-password", "esl.password"),
        ("packaging/handoffd/handoffd.yaml", "change-me-handoffd-secret", "ami.secret"),
    ];
    for (name, placeholder, key) in samples {
        let sample = std::fs::read_to_string(repo_root().join(name)).unwrap();
        let (code, out) = handoffd_check(Some(&sample));
        assert_eq!(code, 78, "{name}: {out}");
        assert!(out.contains(&format!(": {key}: still the sample's placeholder")), "{name}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "{out}");
        let (code, out) = handoffd_check(Some(&sample.replace(placeholder, "an-administrators-own-secret")));
        assert_eq!(code, 0, "{name}: {out}");
    }
}

#[test]
fn an_unreachable_ami_port_is_retried_with_a_clear_line() {
    // Nothing listens on 127.0.0.1:1 (no Asterisk is started for this test).
    let h = Handoffd::spawn(&testbed_config(1, AMI_SECRET));
    let line = h.wait_log("cannot reach Asterisk's AMI at 127.0.0.1:1", 5 * SEC).expect("a clear line");
    assert!(line.contains("retrying in") && line.contains("is Asterisk running"), "{line}");
    // It keeps trying (backoff), it does not exit.
    assert!(wait_for(3 * SEC, || (h.log().iter().filter(|l| l.contains("cannot reach")).count() >= 2).then_some(()))
        .is_some());
}

#[test]
fn wrong_ami_credentials_are_named_and_retried_without_the_secret() {
    let _ast = Asterisk::start();
    let mut h = Handoffd::spawn(&testbed_config(5038, "not-the-secret"));
    let line = wait_for(10 * SEC, || {
        h.log().into_iter().find(|l| l.contains("AMI login as 'handoffd'") && l.contains("logs in again"))
    })
    .unwrap_or_else(|| panic!("a clear line saying handoffd retries: {:#?}", h.log()));
    assert!(line.contains("refused") && line.contains("ami.secret"), "{line}");
    // A refused login no longer stops handoffd (a manager.conf reload may refuse it briefly).
    assert_eq!(h.wait_exit(3 * SEC), None, "handoffd keeps running: {:#?}", h.log());
    assert!(!h.log().iter().any(|l| l.contains("not-the-secret")), "the secret never reaches the log");
}

#[test]
fn handoff_without_controller_answers_at_once_and_leaves_nothing() {
    let ast = Asterisk::start();
    let ami = AmiClient::connect();
    let mut phone = Sipp::phone_leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "alice-app", "2000", 40000, 0);
    phone.wait(15 * SEC).expect("the call is refused (500) at once");
    assert!(ast.messages_log().contains("handoffd is not connected to Asterisk's AMI (no HandoffHello); start it"));
    assert!(ast.cli("handoff show status").contains("1 without controller"));
    assert!(ami.wait_event(5 * SEC, |e| e.name == "Hangup").is_some());
    assert!(wait_for(5 * SEC, || ami.channels().is_empty().then_some(())).is_some(), "{:?}", ami.channels());
}

#[test]
fn handoffd_reconnects_when_asterisk_restarts() {
    let ast = Asterisk::start();
    let h = Handoffd::spawn(&testbed_config(5038, AMI_SECRET));
    assert!(h.wait_log("logged in to AMI", 10 * SEC).is_some());
    ast.stop();
    assert!(h.wait_log("AMI link to 127.0.0.1:5038 lost", 10 * SEC).is_some(), "{:#?}", h.log());
    ast.restart();
    let logins = || h.log().iter().filter(|l| l.contains("logged in to AMI")).count();
    assert!(wait_for(15 * SEC, || (logins() >= 2).then_some(())).is_some(), "{:#?}", h.log());
    assert!(
        wait_for(10 * SEC, || ast.cli("handoff show status").contains("Controller:          connected").then_some(()))
            .is_some(),
        "the module sees handoffd again"
    );
}

#[test]
fn building_without_asterisk_headers_says_what_to_install() {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "res_handoff"])
        .env("ASTERISK_INCLUDE_DIR", "/nonexistent/include")
        .env("CARGO_TARGET_DIR", target_dir().join("no-headers"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Asterisk headers not found: /nonexistent/include/asterisk.h is missing; install asterisk-dev or set ASTERISK_INCLUDE_DIR"),
        "{err}"
    );
}
