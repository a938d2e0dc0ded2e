//! `module unload -h res_handoff.so` (a forced unload) during joined calls on the real Asterisk
//! 22: Asterisk stays up, the calls go on and end cleanly, and the module loads again afterwards.
//! Before the fix, the loader unmapped the library under the live frame hooks and the ticker,
//! and Asterisk crashed within a second (issue 12, item 2).
//!
//! `HANDOFF_FORCED_UNLOAD_CALLS` (default 3) joined calls per try, `HANDOFF_FORCED_UNLOAD_TRIES`
//! (default 3) tries in one Asterisk.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{Handoffd, AMI_SECRET};
use handoff_tests::rtp::Sink;
use handoff_tests::sipp::{app_password, write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_forced_unload_during_joined_calls_leaves_asterisk_and_the_calls_up() {
    let calls = env_or("HANDOFF_FORCED_UNLOAD_CALLS", 3);
    let tries = env_or("HANDOFF_FORCED_UNLOAD_TRIES", 3);
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    // One app endpoint and one device per call.
    let etc = ast.instance_dir().join("etc");
    let (mut endpoints, mut csv, mut registry) =
        (String::new(), String::from("SEQUENTIAL\n"), String::from("devices:\n"));
    for i in 0..calls {
        let name = format!("unload-app-{i:03}");
        let password = app_password(&name);
        endpoints.push_str(&format!(
            "[{name}](handoff-app)\nauth = {name}\nrtp_symmetric = no\nforce_rport = no\n\
             [{name}](handoff-app-auth)\nusername = {name}\npassword = {password}\n\n"
        ));
        csv.push_str(&format!("{name};{password};\n"));
        registry.push_str(&format!("  - {{id: unload-{i:03}, user: unload-{i:03}, endpoint: unload-app-{i:03}}}\n"));
    }
    std::fs::write(etc.join("pjsip_unload.conf"), endpoints).unwrap();
    let pjsip = std::fs::read_to_string(etc.join("pjsip.conf")).unwrap();
    std::fs::write(etc.join("pjsip.conf"), format!("{pjsip}\n#include pjsip_unload.conf\n")).unwrap();
    ast.cli("module reload res_pjsip.so");
    std::fs::write(ast.instance_dir().join("sipp/unload_data.csv"), csv).unwrap();

    let ami = AmiClient::connect();
    let handoffd = Handoffd::spawn(&format!(
        "ami:\n  username: handoffd\n  secret: \"{AMI_SECRET}\"\n  reconnect_initial_ms: 200\n  reconnect_max_ms: 1000\nfar:\n  endpoint: far\nlog:\n  level: debug\nsessions:\n  pair_window_s: 0\n{registry}"
    ));
    let pid = ast.pid();
    let n = calls.to_string();
    for attempt in 1..=tries {
        let connected = wait_for(20 * SEC, || {
            ast.cli("handoff show status").contains("Controller:          connected").then_some(())
        });
        assert!(connected.is_some(), "try {attempt}: handoffd is not connected:\n{}", ast.cli("handoff show status"));
        let (far_sink, phone_sink) = (Sink::bind("127.0.0.3"), Sink::bind("127.0.0.1"));
        let (far_port, phone_port) = (far_sink.port.to_string(), phone_sink.port.to_string());
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
                &far_port,
                "-m",
                &n,
                "-l",
                &n,
                "-timeout",
                "120s",
                "-timeout_error",
            ],
        );
        let mut phones = Sipp::spawn(
            "phones",
            "load_data_uac.xml",
            &[
                "127.0.0.1:5060",
                "-i",
                "127.0.0.1",
                "-p",
                "5071",
                "-mi",
                "127.0.0.1",
                "-min_rtp_port",
                "36000",
                "-max_rtp_port",
                "39999",
                "-inf",
                "unload_data.csv",
                "-s",
                "2000",
                "-key",
                "rec_port",
                &phone_port,
                "-r",
                "20",
                "-m",
                &n,
                "-l",
                &n,
                "-d",
                "9000",
                "-timeout",
                "120s",
                "-timeout_error",
            ],
        );
        // Every call joined and watched by a frame hook.
        let watched = format!("Watched legs:        {calls}\n");
        let joined = wait_for(30 * SEC, || {
            let s = ast.cli("handoff show status");
            (s.contains(&watched) && ami.channels().len() == 2 * calls).then_some(())
        });
        assert!(joined.is_some(), "try {attempt}: calls not joined:\n{}", ast.cli("handoff show status"));
        std::thread::sleep(SEC); // RTP flows through the hooks

        let out = ast.cli("module unload -h res_handoff.so");
        let log_then = ast.messages_log();
        std::thread::sleep(2 * SEC);
        if !alive(pid) {
            let log_now = ast.messages_log();
            let tail: Vec<&str> = log_now.lines().rev().take(12).chain(log_then.lines().rev().take(3)).collect();
            let kernel = std::process::Command::new("dmesg")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let faults: Vec<&str> =
                kernel.lines().filter(|l| l.contains("segfault") || l.contains("general protection")).collect();
            panic!(
                "try {attempt}: Asterisk died after the forced unload ({out})\nits log: {tail:#?}\nkernel: {faults:#?}"
            );
        }
        assert_eq!(ast.pid(), pid);
        let up = ami.channels().len();
        assert_eq!(up, 2 * calls, "try {attempt}: the calls must survive the forced unload");
        // Nothing of the unloaded module stays reachable by name (Asterisk would cut off any
        // AMI session that sends an action of a module that is not running).
        let gone = wait_for(5 * SEC, || {
            (ast.messages_log().matches("res_handoff was unloaded by force").count() == attempt).then_some(())
        });
        assert!(gone.is_some(), "try {attempt}: the module did not withdraw its registrations");
        assert!(!ast.cli("core show applications like Handoff").contains("Handoff:"));
        // The calls end the normal way: each phone hangs up, handoffd hangs up the far party.
        let diag = || {
            let log = ast.messages_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let h = handoffd.log();
            format!("handoffd: {:#?}\nAsterisk: {:#?}", &h[h.len().saturating_sub(40)..], tail)
        };
        phones.wait(60 * SEC).unwrap_or_else(|e| panic!("try {attempt}: {e}\n{}", diag()));
        far.wait(60 * SEC).unwrap_or_else(|e| panic!("try {attempt}: {e}\n{}", diag()));
        assert!(
            wait_for(10 * SEC, || ami.channels().is_empty().then_some(())).is_some(),
            "try {attempt}: channels left"
        );
        assert!(alive(pid), "try {attempt}: Asterisk died when the calls ended");
        // The module loads again over what the forced unload left, with nothing watched.
        let loaded = ast.cli("module load res_handoff.so");
        assert!(loaded.contains("Loaded res_handoff.so"), "try {attempt}: {loaded}");
        assert!(ast.cli("module show like res_handoff").contains(" Running"));
        let status = ast.cli("handoff show status");
        assert!(status.contains("Watched legs:        0"), "try {attempt}: {status}");
    }
    let log = ast.messages_log();
    assert!(log.contains("Unloading resource anyway"), "the unloads were forced");
    assert!(log.contains("the module stays in memory"), "the module pinned itself");
    assert!(alive(pid));
    assert!(ast.cli("handoff show status").contains("Panics caught:       0"));
    handoffd.assert_nothing_left(&ast, &ami);
}
