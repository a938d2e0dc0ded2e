//! The Debian packages, installed the way an administrator would: `packaging/build-debs` builds
//! handoff-asterisk and handoffd, dpkg installs them into the testbed's Debian sid root (the
//! module's dependency on Debian's asterisk-abi-<sum> must be met), lintian checks them, Asterisk
//! boots with the installed res_handoff.so, the installed handoffd runs as its system user with
//! the installed config, a dual-leg call goes through, and `dpkg --purge` leaves nothing behind.
//! Two builds of the same tree give the same bytes; the unit is enabled on install even where
//! systemd does not run (an image or chroot) and its enable link goes on purge.
//!
//! The systemd side is checked without a running systemd (the root has none as PID 1):
//! `systemd-analyze verify` on the installed unit, its hardening scored by
//! `systemd-analyze security --offline`, and a real systemd-journald started in the root, with
//! handoffd given `JOURNAL_STREAM` as systemd gives it: its log must be journal entries with
//! priorities and `HANDOFF_` fields that `journalctl HANDOFF_SESSION=<id>` finds, never secrets.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::{repo_root, wait_for};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

/// The AMI secret of the installed config (its placeholder, which `handoffd --check` refuses but
/// the testbed's AMI account uses; handoffd is started here without the unit's check): it must
/// never reach the journal.
const AMI_SECRET: &str = "change-me-handoffd-secret";

/// systemd-journald running inside the testbed root, stopped (and its files removed) on drop.
struct Journald {
    child: Child,
    root: std::path::PathBuf,
}

impl Journald {
    fn start(root: &Path) -> Journald {
        let _ = std::fs::remove_dir_all(root.join("run/log/journal"));
        let socket = root.join("run/systemd/journal/socket");
        let _ = std::fs::remove_file(&socket);
        std::fs::create_dir_all(root.join("run/systemd/journal")).unwrap();
        let child = Command::new(repo_root().join("tests/testbed/testbed"))
            .args(["chroot", "/usr/lib/systemd/systemd-journald"])
            .spawn()
            .expect("start systemd-journald in the root");
        let journald = Journald { child, root: root.to_path_buf() };
        assert!(wait_for(10 * SEC, || socket.exists().then_some(())).is_some(), "journald's socket did not appear");
        journald
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.root.join("run/log/journal"));
        let _ = std::fs::remove_dir_all(self.root.join("run/systemd/journal"));
    }
}

/// handoffd's journal entries (`journalctl -o json`), with extra match arguments.
fn journal(ast: &Asterisk, matches: &[&str]) -> Vec<Value> {
    let mut args = vec!["journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=handoffd"];
    args.extend_from_slice(matches);
    let (_, out) = ast.in_root(&args);
    out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

/// Waits for a journal entry of handoffd whose message contains `needle`.
fn wait_journal(ast: &Asterisk, needle: &str, limit: Duration) -> Option<Value> {
    wait_for(limit, || journal(ast, &[]).into_iter().find(|e| field(e, "MESSAGE").contains(needle)))
}

#[test]
fn packages_install_run_a_dual_leg_call_and_purge_cleanly() {
    let ast = Asterisk::take_turn();
    // Reproducible: two builds of the same tree give the same bytes (no build time inside).
    // The time build-debs uses by default (the last commit's), read once for both builds.
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_else(|_| {
        let git = Command::new("git").args(["log", "-1", "--format=%ct"]).current_dir(repo_root()).output().unwrap();
        String::from_utf8_lossy(&git.stdout).trim().to_string()
    });
    let first = build_debs(&epoch);
    std::thread::sleep(Duration::from_millis(1_100));
    let second = build_debs(&epoch);
    assert_eq!(first, second, "two builds of the same tree differ: not reproducible");
    tar_entries_are_reproducible(&epoch);
    let root = ast.root();
    let staged = root.join("tmp/handoff-debs");
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir_all(&staged).unwrap();
    let mut debs = Vec::new();
    for entry in std::fs::read_dir(handoff_tests::target_dir().join("debian")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "deb") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&p, staged.join(&name)).unwrap();
            debs.push(format!("/tmp/handoff-debs/{name}"));
        }
    }
    assert_eq!(debs.len(), 2, "{debs:?}");
    let (ok, lint) = ast.in_root(&["lintian", "--tag-display-limit", "0", &debs[0], &debs[1]]);
    println!("lintian:\n{lint}");
    assert!(ok, "lintian failed:\n{lint}");
    // Clean means no error and no warning (informational tags and overrides are fine).
    assert!(!lint.lines().any(|l| l.starts_with("E: ") || l.starts_with("W: ")), "lintian errors or warnings:\n{lint}");

    let mut args = vec!["dpkg", "-i"];
    args.extend(debs.iter().map(String::as_str));
    let (ok, out) = ast.in_root(&args);
    assert!(ok, "dpkg -i: {out}");
    let (_, passwd) = ast.in_root(&["getent", "passwd", "handoff"]);
    assert!(passwd.starts_with("handoff:"), "the system user exists: {passwd}");
    let (_, mode) = ast.in_root(&["stat", "-c", "%U:%G %a", "/etc/handoff/handoffd.yaml"]);
    assert_eq!(mode.trim(), "root:handoff 640", "the config with the AMI secret is not world-readable");
    // Enabled as debhelper enables units, although no systemd runs in the root (an image install).
    let wants = root.join("etc/systemd/system/multi-user.target.wants/handoffd.service");
    assert!(wants.is_symlink(), "the unit is enabled on install without a running systemd");
    for doc in ["handoff-asterisk", "handoffd"] {
        assert!(root.join(format!("usr/share/doc/{doc}/README.md")).exists(), "{doc} ships the README");
    }
    for binary in ["/usr/bin/handoffd", "/usr/lib/x86_64-linux-gnu/asterisk/modules/res_handoff.so"] {
        let (ok, sections) = ast.in_root(&["readelf", "-S", "--wide", binary]);
        assert!(ok && sections.contains(".text"), "readelf {binary}: {sections}");
        assert!(!sections.contains(".comment"), "{binary} keeps a .comment section");
    }
    // A reconfigure keeps the administrator's choice of owner and mode for the config.
    let (ok, out) = ast.in_root(&["chmod", "0600", "/etc/handoff/handoffd.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = ast.in_root(&["dpkg-reconfigure", "handoffd"]);
    assert!(ok, "dpkg-reconfigure: {out}");
    let (_, mode) = ast.in_root(&["stat", "-c", "%a", "/etc/handoff/handoffd.yaml"]);
    assert_eq!(mode.trim(), "600", "a reconfigure reset the config's mode");
    let (ok, out) = ast.in_root(&["chmod", "0640", "/etc/handoff/handoffd.yaml"]);
    assert!(ok, "{out}");
    let (_, unit_text) = ast.in_root(&["cat", "/usr/lib/systemd/system/handoffd.service"]);
    assert!(
        unit_text.contains("StateDirectoryMode=0750"),
        "the unit's state directory mode matches the postinst's 0750"
    );
    let unit = "/usr/lib/systemd/system/handoffd.service";
    let (ok, out) = ast.in_root(&["systemd-analyze", "verify", "--man=no", unit]);
    assert!(ok, "systemd-analyze verify {unit}: {out}");
    // Exposure is scored 0–10 (printed), 0–100 for --threshold: 2.0 or lower keeps it "OK".
    let (ok, out) = ast.in_root(&["systemd-analyze", "security", "--offline=true", "--threshold=20", unit]);
    println!("{}", out.lines().last().unwrap_or(""));
    assert!(ok, "the unit's hardening got weaker:\n{out}");

    ast.start_installed();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    let ami = AmiClient::connect();
    let journald = Journald::start(&root);
    let mut cmd = Command::new(repo_root().join("tests/testbed/testbed"));
    cmd.args(["chroot", "setpriv", "--reuid=handoff", "--regid=handoff", "--init-groups", "/usr/bin/handoffd"]);
    // What systemd sets when the unit's stderr is the journal (device:inode of the stream).
    cmd.env("JOURNAL_STREAM", "0:0");
    let handoffd = Handoffd::from_command(cmd);
    let login = wait_journal(&ast, "logged in to AMI", 10 * SEC);
    assert!(login.is_some(), "stderr: {:#?}\njournal: {:#?}", handoffd.log(), journal(&ast, &[]));
    assert_eq!(field(&login.unwrap(), "PRIORITY"), "6", "info is priority 6");
    assert!(wait_for(10 * SEC, || ast
        .cli("handoff show status")
        .contains("Controller:          connected")
        .then_some(()))
    .is_some());
    // The installed config seeds no user or device: they are added the way the README says.
    for cmd in [
        &["handoffctl", "user", "add", "alice"][..],
        &[
            "handoffctl",
            "device",
            "add",
            "alice-phone",
            "--user",
            "alice",
            "--endpoint",
            "alice-app",
            "--number",
            "+15550001",
        ],
    ] {
        let (ok, out) = ast.in_root(cmd);
        assert!(ok, "{cmd:?}: {out}");
    }

    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (r1, r2) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let mut data = Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", r1.port, 4000, DATA_RTP);
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", r2.port, 0, CARRIER_RTP);
    data.wait(30 * SEC).expect("data leg");
    carrier.wait(30 * SEC).expect("carrier leg");
    far.wait(30 * SEC).expect("far party");
    assert!(far_rec.packets_with_tone(440.0) >= 100, "the far party heard the phone");
    // One call's timeline, by its session field, as the README tells administrators to ask.
    let paired = wait_journal(&ast, "paired after", 5 * SEC).expect("the pairing is in the journal");
    let session = field(&paired, "HANDOFF_SESSION").to_string();
    assert!(!session.is_empty(), "timeline entries carry HANDOFF_SESSION: {paired:#}");
    assert_eq!(field(&paired, "TARGET"), "handoff::timeline");
    let timeline = journal(&ast, &[&format!("HANDOFF_SESSION={session}")]);
    assert!(timeline.len() >= 3, "journalctl HANDOFF_SESSION={session} finds the call's timeline: {timeline:#?}");
    assert!(timeline.iter().all(|e| !field(e, "HANDOFF_AT_MS").is_empty()), "{timeline:#?}");
    assert!(
        !handoffd.log().iter().any(|l| l.contains("paired after")),
        "under the journal, nothing is logged twice on stderr: {:#?}",
        handoffd.log()
    );
    let (_, mode) = ast.in_root(&["stat", "-c", "%U:%G %a", "/etc/handoff/pepper", "/etc/handoff/admin-token"]);
    assert_eq!(mode.trim(), "handoff:handoff 600\nhandoff:handoff 600", "the pepper and the admin token are private");
    let (ok, devices) = ast.in_root(&["handoffctl", "device", "list"]);
    assert!(
        ok && devices.contains("alice-phone"),
        "the installed handoffctl talks to the installed handoffd: {devices}"
    );
    let audited = wait_for(5 * SEC, || {
        let (ok, audit) = ast.in_root(&["handoffctl", "audit"]);
        (ok && audit.contains("session_end")).then_some(())
    });
    assert!(audited.is_some(), "the call's end is audited: {}", ast.in_root(&["handoffctl", "audit"]).1);
    assert!(wait_for(5 * SEC, || ami.channels().is_empty().then_some(())).is_some());
    drop(handoffd);
    let everything = journal(&ast, &[]);
    println!("journal: {} entries of handoffd", everything.len());
    assert!(!everything.iter().any(|e| e.to_string().contains(AMI_SECRET)), "the AMI secret reached the journal");
    drop(journald);
    ast.stop();

    let (ok, out) = ast.in_root(&["dpkg", "--purge", "handoffd", "handoff-asterisk"]);
    assert!(ok, "dpkg --purge: {out}");
    for gone in
        ["/usr/bin/handoffd", "/usr/bin/handoffctl", "/etc/handoff", "/etc/asterisk/handoff.conf", "/var/lib/handoff"]
    {
        assert!(!root.join(gone.trim_start_matches('/')).exists(), "{gone} is left after purge");
    }
    let moddir = std::fs::read_dir(root.join("usr/lib/x86_64-linux-gnu/asterisk/modules")).unwrap();
    assert!(!moddir.flatten().any(|e| e.file_name() == "res_handoff.so"), "res_handoff.so is left after purge");
    let (_, passwd) = ast.in_root(&["getent", "passwd", "handoff"]);
    assert!(passwd.trim().is_empty(), "the system user is removed on purge");
    assert!(!wants.is_symlink(), "the unit's enable link is left after purge");
    let _ = std::fs::remove_dir_all(&staged);
}

/// Runs `packaging/build-debs` and returns the SHA-256 of each package, by file name.
fn build_debs(epoch: &str) -> Vec<(String, String)> {
    let out = Command::new(repo_root().join("packaging/build-debs")).env("SOURCE_DATE_EPOCH", epoch).output().unwrap();
    assert!(out.status.success(), "build-debs: {}", String::from_utf8_lossy(&out.stderr));
    let mut sums = Vec::new();
    for entry in std::fs::read_dir(handoff_tests::target_dir().join("debian")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "deb") {
            let sum = Command::new("sha256sum").arg(&p).output().unwrap();
            let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or("").to_string();
            sums.push((p.file_name().unwrap().to_string_lossy().into_owned(), sum));
        }
    }
    sums.sort();
    sums
}

/// Every data entry of each package: owner 0/0, the time `epoch` (SOURCE_DATE_EPOCH), in sorted
/// order.
fn tar_entries_are_reproducible(epoch: &str) {
    let when = Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d %H:%M:%S"]).output().unwrap();
    let when = String::from_utf8_lossy(&when.stdout).trim().to_string();
    for entry in std::fs::read_dir(handoff_tests::target_dir().join("debian")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        let script = format!("dpkg-deb --fsys-tarfile '{}' | TZ=UTC tar -tv --full-time --numeric-owner", p.display());
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && listing.lines().count() > 5, "{}: {listing}", p.display());
        let mut names = Vec::new();
        for line in listing.lines() {
            assert!(line.contains(" 0/0 ") && line.contains(&when), "{}: not owner 0/0 at {when}: {line}", p.display());
            names.push(line.rsplit(' ').next().unwrap_or("").to_string());
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{}: entries not in sorted order", p.display());
    }
}
