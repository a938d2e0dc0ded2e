//! res_handoff.so in the real Asterisk 22: load, unload and reload cleanly, read handoff.conf
//! (bad values are reported with file, line and key, and the old value is kept), and refuse to
//! unload while a channel is inside Handoff(). A clean unload leaves nothing of the module
//! mapped in Asterisk's memory.

use handoff::ami::Action;
use handoff_tests::ami::AmiClient;
use handoff_tests::handoffd::AMI_SECRET;
use handoff_tests::sipp::Sipp;
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn loads_unloads_and_reloads_cleanly() {
    let ast = Asterisk::start();
    assert!(ast.cli("module show like res_handoff").contains("Running"));
    assert!(ast.cli("core show application Handoff").contains("Handoff(far[,path[,token]])"));
    assert!(ast.cli("manager show command HandoffAssign").contains("HandoffAssign"));
    for _ in 0..3 {
        assert!(ast.cli("module unload res_handoff.so").contains("Unloaded res_handoff.so"));
        let shown = ast.cli("module show like res_handoff");
        assert!(!shown.lines().any(|l| l.contains(" Running ") && !l.contains("Not Running")), "{shown}");
        // Really gone: no part of the .so stays mapped in Asterisk (nothing pins it).
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", ast.pid())).unwrap();
        assert!(!maps.contains("res_handoff.so"), "res_handoff.so is still mapped after unload");
        assert!(!ast.cli("core show applications like Handoff").contains("Handoff:"));
        assert!(ast.cli("module load res_handoff.so").contains("Loaded res_handoff.so"));
        assert!(ast.cli("module reload res_handoff.so").contains("reloaded successfully"));
    }
    assert!(ast.cli("handoff show status").contains("Panics caught:       0"));
    let log = ast.messages_log();
    assert_eq!(log.matches("res_handoff unloaded").count(), 3);
    let errors: Vec<_> = log.lines().filter(|l| l.contains("ERROR") && l.contains("res_handoff")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn bad_handoff_conf_values_are_reported_and_the_old_ones_kept() {
    let ast = Asterisk::start();
    let conf = ast.instance_dir().join("etc/handoff.conf");
    std::fs::write(&conf, "[general]\nassign_timeout = 2500\nstall_threshold = fast\ncolour = red\n").unwrap();
    assert!(ast.cli("module reload res_handoff.so").contains("reloaded"));
    let log = ast.messages_log();
    assert!(log.contains("handoff.conf line 3: stall_threshold = 'fast': not a whole number of milliseconds; keeping the previous value"), "{log}");
    assert!(log.contains("handoff.conf line 4: colour = 'red': unknown setting"));
    let status = ast.cli("handoff show status");
    assert!(status.contains("assign_timeout=2500 ms") && status.contains("stall_threshold=40 ms"), "{status}");
}

#[test]
fn unload_is_refused_while_a_channel_waits_in_handoff() {
    let ast = Asterisk::start();
    // Say hello like handoffd (its account, its proof), but never decide: the leg waits for
    // assign_timeout (5 s).
    let ami = AmiClient::connect_as("handoffd", AMI_SECRET);
    let hello = ami.prove_controller(AMI_SECRET);
    assert_eq!(hello.headers.get("Response"), Some("Success"), "{hello:?}");
    let mut phone = Sipp::phone_leg("data_leg_uac_refused.xml", "127.0.0.1", 5071, "alice-app", "2000", 40000, 0);
    assert!(ami.wait_event(10 * SEC, |e| e.name == "HandoffLegArrived").is_some());
    // Asterisk's loader (the running application holds a reference) or the module itself
    // refuses: either way the module stays and the channel is untouched.
    let out = ast.cli("module unload res_handoff.so");
    assert!(!out.contains("Unloaded"), "{out}");
    assert!(ast.cli("module show like res_handoff").contains(" Running"));
    // A decision for an unknown channel is an error naming it; the waiting leg then times out.
    let (r, _) = ami.action(
        Action::new("HandoffAssign").header("Uniqueid", "no.such").header("Session", "s").header("Bridge", "b"),
    );
    assert_eq!(r.headers.get("Response"), Some("Error"));
    assert!(r.message.as_deref().unwrap_or("").contains("Uniqueid no.such is not waiting in Handoff()"), "{r:?}");
    let abandoned = ami.wait_event(10 * SEC, |e| e.name == "HandoffLegAbandoned").expect("timeout event");
    assert_eq!(abandoned.headers.get("Reason"), Some("timeout"));
    phone.wait(15 * SEC).expect("the leg is refused after the timeout");
    assert!(wait_for(5 * SEC, || ami.channels().is_empty().then_some(())).is_some());
    assert!(ast.cli("module unload res_handoff.so").contains("Unloaded"), "unloads once nothing waits");
}
