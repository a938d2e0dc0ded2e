//! Tests of `handoffd.yaml` reading: defaults, every validation error on one line naming its
//! key, type and syntax errors with their place, secrets kept out of Debug output.

use super::*;

const MIN: &str = "ami:\n  username: handoffd\n  secret: s3cret\n";

#[test]
fn defaults_fill_in() {
    let c = Config::parse(MIN, "t.yaml").unwrap();
    assert_eq!(c.pbx, Pbx::Asterisk);
    assert_eq!(c.ami.as_ref().unwrap().address(), "127.0.0.1:5038");
    assert_eq!(c.link().address, "127.0.0.1:5038");
    assert_eq!(c.far.endpoint, "far");
    assert_eq!(c.conference.name_prefix, "handoff-");
    assert!(!format!("{c:?}").contains("s3cret"), "the secret never shows in Debug");
}

#[test]
fn errors_name_file_key_and_problem_on_one_line() {
    let cases = [
        ("ami:\n  username: h\n  secret: s\n  port: 0\n", "t.yaml: ami.port: must be 1..=65535, got 0"),
        ("ami:\n  username: h\n", "t.yaml: ami.secret: set ami.secret or ami.secret_file"),
        (
            "ami:\n  username: h\n  secret: s\nlog:\n  level: loud\n",
            "t.yaml: log.level: 'loud' must be one of error, warn, info, debug, trace",
        ),
        (
            "ami:\n  username: h\n  secret: s\nfar:\n  endpoint: \"a b\"\n",
            "t.yaml: far.endpoint: 'a b' must be letters, digits, _ . - (no spaces)",
        ),
        (
            "ami:\n  username: h\n  secret: s\n  reconnect_initial_ms: 5000\n  reconnect_max_ms: 100\n",
            "t.yaml: ami.reconnect_initial_ms: 5000 is larger than ami.reconnect_max_ms (100)",
        ),
        (
            "ami:\n  username: h\n  secret: s\ncluster:\n  node: ast1\n",
            "t.yaml: cluster.node: a cluster needs the shared store: set store.backend: postgres",
        ),
        (
            "ami:\n  username: h\n  secret: s\nstore:\n  backend: postgres\n  url: \"mysql://u:pw@h/d\"\n",
            "t.yaml: store.url: 'mysql://u@h/d' is not a PostgreSQL URL (postgres://user:password@host:port/database); backend postgres needs one",
        ),
        (
            "ami:\n  username: h\n  secret: s\nstore:\n  backend: postgres\n  url: postgres://h/d\ncluster:\n  node: \"a b\"\n",
            "t.yaml: cluster.node: 'a b' is not a node name (1 to 64 of A-Z a-z 0-9 - _ .)",
        ),
    ];
    for (text, want) in cases {
        let e = Config::parse(text, "t.yaml").unwrap_err().to_string();
        assert_eq!(e, want);
    }
}

#[test]
fn the_device_registry_is_checked() {
    let base = "ami:\n  username: h\n  secret: s\ndevices:\n";
    let ok = format!("{base}  - {{id: a, user: alice, endpoint: alice-app, number: \"+15550001\"}}\n");
    let c = Config::parse(&ok, "t.yaml").unwrap();
    assert_eq!(c.session_rules().1[0].number.as_deref(), Some("+15550001"));
    let cases = [
        (
            "  - {id: a, user: alice, number: \"555\"}\n",
            "t.yaml: devices[0].number: '555' is not an E.164 number (+ and 4 to 15 digits)",
        ),
        ("  - {id: a, user: alice}\n", "t.yaml: devices[0].endpoint: device 'a' needs an endpoint, a number or both"),
        (
            "  - {id: a, user: alice, endpoint: x}\n  - {id: b, user: bob, endpoint: x}\n",
            "t.yaml: devices[1].endpoint: endpoint 'x' already belongs to device 'a'",
        ),
    ];
    for (devs, want) in cases {
        assert_eq!(Config::parse(&format!("{base}{devs}"), "t.yaml").unwrap_err().to_string(), want);
    }
}

#[test]
fn unknown_keys_and_bad_yaml_are_one_line_with_a_place() {
    let e = Config::parse("ami:\n  username: h\n  secret: s\n  prot: 1\n", "t.yaml").unwrap_err().to_string();
    assert!(e.starts_with("t.yaml") && e.contains("prot") && !e.contains('\n'), "{e}");
    let e = Config::parse("ami: [unclosed\n", "t.yaml").unwrap_err().to_string();
    assert!(e.starts_with("t.yaml") && !e.contains('\n'), "{e}");
    assert!(!Config::parse("ami:\n  username: h\n  secret: zzz\n  port: x\n", "t.yaml")
        .unwrap_err()
        .to_string()
        .contains("zzz"));
}

#[test]
fn type_errors_name_the_key_path() {
    let base = "ami:\n  username: h\n  secret: s\n";
    let cases = [
        (format!("{base}sessions:\n  grace_s: [1]\n"), "t.yaml:5:12: sessions.grace_s: "),
        (format!("{base}devices:\n  - {{id: a, user: [x], endpoint: e}}\n"), "t.yaml:5:19: devices[0].user: "),
        (format!("{base}  prot: 1\n"), "t.yaml:4:3: ami.prot: unknown field `prot`"),
        ("ami:\n  username: h\n  secret: s\n  port: x\n".to_string(), "t.yaml:4:9: ami.port: "),
        (
            format!("{base}devices:\n  - id: a\n    user: b\n    endpoint: {{x: 1}}\n"),
            "t.yaml:7:15: devices[0].endpoint: ",
        ),
    ];
    for (text, want) in cases {
        let e = Config::parse(&text, "t.yaml").unwrap_err().to_string();
        assert!(e.starts_with(want) && !e.contains('\n'), "{text:?}: got {e:?}, want {want:?}...");
    }
}

#[test]
fn freeswitch_needs_its_event_socket() {
    let c = Config::parse("pbx: freeswitch\nesl:\n  password: ClueCon\n", "t.yaml").unwrap();
    assert_eq!(c.pbx, Pbx::Freeswitch);
    assert!(c.ami.is_none());
    let esl = c.esl.as_ref().unwrap();
    assert_eq!((esl.address(), esl.conference_profile.as_str()), ("127.0.0.1:8021".into(), "handoff"));
    assert_eq!(c.link().address, "127.0.0.1:8021");
    assert!(!format!("{c:?}").contains("ClueCon"), "the password never shows in Debug");
    let cases = [
        ("pbx: freeswitch\n", "t.yaml: esl: missing: pbx is freeswitch, so handoffd needs FreeSWITCH's event socket"),
        ("esl:\n  password: x\n", "t.yaml: ami: missing: pbx is asterisk, so handoffd needs Asterisk's AMI account"),
        ("pbx: freeswitch\nesl:\n  port: 8021\n", "t.yaml: esl.password: set esl.password or esl.password_file"),
        (
            "pbx: freeswitch\nesl:\n  password: x\n  conference_profile: \"a b\"\n",
            "t.yaml: esl.conference_profile: 'a b' must be letters, digits, _ . - (no spaces)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Config::parse(text, "t.yaml").unwrap_err().to_string(), want);
    }
    let e = Config::parse("pbx: kamailio\n", "t.yaml").unwrap_err().to_string();
    assert!(e.starts_with("t.yaml") && e.contains("kamailio") && !e.contains('\n'), "{e}");
}

#[test]
fn the_samples_placeholder_secrets_are_named_and_any_other_passes() {
    let c = Config::parse("ami:\n  username: h\n  secret: change-me-handoffd-secret\n", "t.yaml").unwrap();
    let e = c.placeholder_secret("t.yaml").expect("the placeholder is refused").to_string();
    assert!(e.starts_with("t.yaml: ami.secret: still the sample's placeholder"), "{e}");
    let c = Config::parse(MIN, "t.yaml").unwrap();
    assert_eq!(c.placeholder_secret("t.yaml"), None);
    let esl = "pbx: freeswitch\nesl:\n  password: change-me-esl-password\n";
    let c = Config::parse(esl, "t.yaml").unwrap();
    assert!(c.placeholder_secret("t.yaml").unwrap().to_string().contains("esl.password:"));
}

#[test]
fn sessions_alignment_is_a_rule_for_the_module_or_absent() {
    let c = Config::parse(MIN, "t.yaml").unwrap();
    assert_eq!((c.sessions.alignment, c.session_rules().0.alignment), (None, None));
    assert!(c.alignment_note().unwrap().contains("not set (alignment in res_handoff's handoff.conf decides)"));
    for (text, want) in [
        ("aligned", crate::session::Alignment::Aligned),
        ("low-latency", crate::session::Alignment::LowLatency),
        ("switching", crate::session::Alignment::Switching),
    ] {
        let c = Config::parse(&format!("{MIN}sessions:\n  alignment: {text}\n"), "t.yaml").unwrap();
        assert_eq!((c.sessions.alignment, c.session_rules().0.alignment), (Some(want), Some(want)));
        assert_eq!(
            c.alignment_note().unwrap(),
            format!("sessions.alignment: {text} (sent with every HandoffAssign; alignment in res_handoff's handoff.conf does not apply)")
        );
    }
    let fs =
        Config::parse("pbx: freeswitch\nesl:\n  password: x\nsessions:\n  alignment: aligned\n", "t.yaml").unwrap();
    assert!(fs.alignment_note().unwrap().starts_with("sessions.alignment: aligned is ignored: FreeSWITCH"));
    let e = Config::parse(&format!("{MIN}sessions:\n  grace_s: 5\n  alignment: low_latency\n"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml:6:14: sessions.alignment: 'low_latency' must be aligned, low-latency or switching (or absent: the module's handoff.conf decides)"
    );
}

#[test]
fn the_samples_document_sessions_alignment_commented_out() {
    for sample in
        [include_str!("../../../conf/handoffd.yaml.sample"), include_str!("../../../packaging/handoffd/handoffd.yaml")]
    {
        assert_eq!(Config::parse(sample, "sample").unwrap().sessions.alignment, None, "absent by default");
        let set = sample.replace("  # alignment: aligned\n", "  alignment: low-latency\n");
        assert_ne!(set, sample, "the sample shows the key under sessions:");
        let c = Config::parse(&set, "sample").unwrap();
        assert_eq!(c.sessions.alignment, Some(crate::session::Alignment::LowLatency));
    }
}
