//! The Debian install path as an administrator walks it: the README's section "Installing the
//! Debian packages", run literally in a pristine Debian sid root (`testbed fresh-root`, from
//! `pristine.tar`: debootstrap's sid with nothing of Asterisk or handoff). The commands are the
//! README's code blocks marked `<!-- debian-walk -->`, in order, each run with `sh -e` as root
//! from `/root`, where the two packages `packaging/build-debs` made lie: install (apt pulls
//! Asterisk 22 in), configure by the README alone, a call from Alice's app through the far
//! trunk the README defines, remove, purge. A step the README does not state fails the test:
//! a missing include, a transport, an AMI account, a loaded module, a secret.
//!
//! No systemd runs as PID 1 in a chroot, so this test is the service manager: for a README line
//! `systemctl enable|disable [--now] UNIT` it runs that line (the enable links are real), and
//! for `--now`, `start`, `stop` and `restart` it runs the unit the way its installed unit file
//! says (ExecStartPre, ExecStart, User, Group, WorkingDirectory, and READY=1 over
//! NOTIFY_SOCKET for Type=notify); `journalctl -u UNIT` prints what that unit wrote. A marker
//! may name text the block's output must show (`expect "…"`), as the README says it will.
//! Outside the README, the test only provides the machine: the root, its resolver, the `.deb`
//! files, the phones (SIPp from the testbed root), and at the end it checks what the packages
//! leave behind; and it reinstalls handoff-asterisk under the running Asterisk once to see the
//! module loaded and unloaded by the maintainer scripts.

use handoff_tests::audio::tone;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::Sipp;
use handoff_tests::{repo_root, target_dir, wait_for};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const ROOT_NAME: &str = "walk";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn testbed(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("tests/testbed/testbed")).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "testbed {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// One marked block of the README: its shell text and what its output must show.
struct Block {
    line: usize,
    expects: Vec<String>,
    script: String,
}

/// The README's blocks marked `<!-- debian-walk ... -->`, in order.
fn readme_blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(marker) = l.strip_prefix("<!-- debian-walk").and_then(|m| m.strip_suffix("-->")) {
            let expects = marker.split("expect \"").skip(1).map(|e| e.split('"').next().unwrap_or("").to_string());
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "README.md:{}: a marker precedes ```sh",
                i + 1
            );
            let start = i + 2;
            let end = (start..lines.len()).find(|&j| lines[j].trim() == "```").expect("the block is closed");
            blocks.push(Block { line: i + 1, expects: expects.collect(), script: lines[start..end].join("\n") });
            i = end;
        }
        i += 1;
    }
    blocks
}

/// A unit's `[Service]` as far as starting it goes.
struct Unit {
    exec_start_pre: Vec<String>,
    exec_start: String,
    user: Option<String>,
    group: Option<String>,
    working_directory: Option<String>,
    notify: bool,
}

fn read_unit(root: &Path, name: &str) -> Unit {
    let file = ["usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"]
        .iter()
        .map(|d| root.join(d).join(format!("{name}.service")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no unit {name}.service in the root"));
    let text = std::fs::read_to_string(&file).unwrap();
    let mut unit = Unit {
        exec_start_pre: Vec::new(),
        exec_start: String::new(),
        user: None,
        group: None,
        working_directory: None,
        notify: false,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim().trim_start_matches(['-', '@', '+', '!']).to_string();
        match key.trim() {
            "ExecStartPre" => unit.exec_start_pre.push(value),
            "ExecStart" => unit.exec_start = value,
            "User" => unit.user = Some(value),
            "Group" => unit.group = Some(value),
            "WorkingDirectory" => unit.working_directory = Some(value),
            "Type" => unit.notify = value == "notify",
            _ => {}
        }
    }
    assert!(!unit.exec_start.is_empty(), "{}: no ExecStart", file.display());
    unit
}

/// A running unit: its main process (what it writes goes to [`Services::logs`]).
struct Service {
    child: Child,
}

/// The service manager of the root (see the file's comment). Holds the testbed's instance lock
/// from its first start (the walk's Asterisk takes the testbed's ports), stops what it started
/// on drop.
struct Services {
    root: PathBuf,
    running: BTreeMap<String, Service>,
    logs: BTreeMap<String, Arc<Mutex<Vec<String>>>>,
    lock: Option<std::fs::File>,
}

impl Services {
    fn new(root: &Path) -> Self {
        Services { root: root.to_path_buf(), running: BTreeMap::new(), logs: BTreeMap::new(), lock: None }
    }

    /// `chroot ROOT env -i ... [setpriv ...] CMD` for `unit`'s process `cmd`.
    fn command(&self, unit: &Unit, cmd: &str, extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.root).args(["env", "-i"]);
        if let Some(dir) = &unit.working_directory {
            c.args(["-C", dir]);
        }
        c.args([format!("PATH={PATH}"), "LANG=C.UTF-8".to_string()]);
        for (k, v) in extra_env {
            c.arg(format!("{k}={v}"));
        }
        if let Some(user) = &unit.user {
            let group = unit.group.as_deref().unwrap_or(user);
            c.args(["setpriv", &format!("--reuid={user}"), &format!("--regid={group}"), "--init-groups"]);
        }
        c.args(cmd.split_whitespace());
        c
    }

    fn take_lock(&mut self) {
        if self.lock.is_some() {
            return;
        }
        let waited = Instant::now();
        let file = std::fs::File::create("/var/cache/handoff-testbed/.instance.lock").unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns; blocks until the lock is free.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock the testbed's instance lock");
        println!("waited {:.1} s for the testbed's instance lock", waited.elapsed().as_secs_f64());
        self.lock = Some(file);
    }

    fn start(&mut self, name: &str) {
        if self.running.contains_key(name) {
            return; // starting an active unit does nothing
        }
        self.take_lock();
        let unit = read_unit(&self.root, name);
        for pre in &unit.exec_start_pre {
            let out = self.command(&unit, pre, &[]).output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            self.logs.entry(name.to_string()).or_default().lock().unwrap().extend(text.lines().map(String::from));
            assert!(out.status.success(), "{name}: ExecStartPre={pre} failed, the unit does not start: {text}");
        }
        let socket_path = self.root.join(format!("run/handoff-walk-{name}.notify"));
        let _ = std::fs::remove_file(&socket_path);
        let socket = unit.notify.then(|| {
            let s = UnixDatagram::bind(&socket_path).unwrap();
            std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777)).unwrap();
            s.set_read_timeout(Some(SEC)).unwrap();
            s
        });
        let notify = format!("/run/handoff-walk-{name}.notify");
        let env: Vec<(&str, &str)> = if unit.notify { vec![("NOTIFY_SOCKET", &notify)] } else { vec![] };
        let mut child = self
            .command(&unit, &unit.exec_start, &env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = self.logs.entry(name.to_string()).or_default().clone();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        if let Some(socket) = socket {
            let end = Instant::now() + 60 * SEC;
            let mut buf = [0u8; 4096];
            loop {
                if let Ok(n) = socket.recv(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
                        break;
                    }
                }
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{name} exited before READY=1: {:#?}",
                    log.lock().unwrap()
                );
                assert!(Instant::now() < end, "{name} sent no READY=1 within 60 s");
            }
            let _ = std::fs::remove_file(&socket_path);
        }
        self.running.insert(name.to_string(), Service { child });
    }

    fn stop(&mut self, name: &str) {
        let Some(mut s) = self.running.remove(name) else { return };
        // SAFETY: kill(2) on the pid of a child this struct spawned and has not reaped.
        unsafe { libc::kill(s.child.id() as libc::pid_t, libc::SIGTERM) };
        if wait_for(15 * SEC, || s.child.try_wait().ok().flatten()).is_none() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    fn journal(&self, name: &str) -> String {
        self.logs.get(name).map(|l| l.lock().unwrap().join("\n")).unwrap_or_default()
    }

    /// Runs a README line `systemctl ...` or `journalctl ...`; returns its output.
    fn manage(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let unit = |w: &str| w.trim_end_matches(".service").to_string();
        match words.as_slice() {
            ["journalctl", rest @ ..] => {
                let u = rest.windows(2).find(|w| w[0] == "-u").map(|w| unit(w[1])).expect("journalctl -u UNIT");
                self.journal(&u)
            }
            ["systemctl", verb @ ("enable" | "disable"), rest @ ..] => {
                let out = run_in_root(&self.root, line);
                let now = rest.contains(&"--now");
                let u = unit(rest.iter().find(|w| !w.starts_with("--")).expect("a unit"));
                match (*verb, now) {
                    ("enable", true) => self.start(&u),
                    ("disable", true) => self.stop(&u),
                    _ => {}
                }
                out
            }
            ["systemctl", "start", u] => {
                self.start(&unit(u));
                String::new()
            }
            ["systemctl", "stop", u] => {
                self.stop(&unit(u));
                String::new()
            }
            ["systemctl", "restart", u] => {
                self.stop(&unit(u));
                self.start(&unit(u));
                String::new()
            }
            _ => panic!("the walk does not know how to run `{line}`"),
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
    }
}

/// Runs shell text as root inside `root` from `/root` with `sh -e`; panics when it fails.
fn run_in_root(root: &Path, script: &str) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(["env", "-i", &format!("PATH={PATH}"), "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"])
        .args(["/bin/sh", "-ec", &format!("cd /root\n{script}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "this README step failed in the root:\n{script}\n--- output:\n{text}");
    text
}

/// A command's output inside `root`, whatever its status.
fn in_root(root: &Path, cmd: &[&str]) -> String {
    let out = Command::new("chroot").arg(root).args(cmd).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs one README block: its shell lines in segments, each `systemctl`/`journalctl` line
/// through the service manager; then waits (20 s) for what the marker expects.
fn run_block(root: &Path, services: &mut Services, block: &Block) {
    let started = Instant::now();
    let mut output = String::new();
    let mut segment = String::new();
    let mut journals = Vec::new();
    for line in block.script.lines() {
        let t = line.trim_start();
        if t.starts_with("systemctl ") || t.starts_with("journalctl ") {
            if !segment.trim().is_empty() {
                output += &run_in_root(root, &segment);
            }
            segment.clear();
            if t.starts_with("journalctl ") {
                journals.push(t.to_string());
            }
            output += &services.manage(t);
        } else {
            segment += line;
            segment.push('\n');
        }
    }
    if !segment.trim().is_empty() {
        output += &run_in_root(root, &segment);
    }
    for want in &block.expects {
        // a journal grows: read it again, as an administrator would, for a while
        let seen = wait_for(20 * SEC, || {
            let now = journals.iter().map(|j| services.manage(j)).collect::<Vec<_>>().join("\n");
            (output.contains(want.as_str()) || now.contains(want.as_str())).then_some(())
        });
        assert!(seen.is_some(), "README.md:{}: the output does not show \"{want}\":\n{output}", block.line);
    }
    println!("README.md:{}: {:.1} s", block.line, started.elapsed().as_secs_f64());
}

/// The value of `key = value` in the README's blocks (the example the phones must match).
fn readme_value(blocks: &[Block], key: &str) -> String {
    blocks
        .iter()
        .flat_map(|b| b.script.lines())
        .find_map(|l| {
            l.trim().strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')).map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no `{key} =` in the README's blocks"))
}

/// The walk's root, dropped (processes killed, mounts undone) at the end.
struct WalkRoot(PathBuf);

impl Drop for WalkRoot {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/testbed/testbed")).args(["drop-root", ROOT_NAME]).status();
    }
}

fn module_loaded(root: &Path) -> bool {
    in_root(root, &["asterisk", "-rx", "module show like res_handoff"]).contains("res_handoff.so")
}

#[test]
fn the_readmes_debian_section_installs_configures_calls_and_purges_in_a_pristine_root() {
    let t0 = Instant::now();
    let blocks = readme_blocks();
    assert!(blocks.len() >= 6, "the README's Debian section has its marked blocks: {}", blocks.len());
    let out = Command::new(repo_root().join("packaging/build-debs")).output().unwrap();
    assert!(out.status.success(), "build-debs: {}", String::from_utf8_lossy(&out.stderr));
    let t_build = t0.elapsed();

    let walk = WalkRoot(PathBuf::from(testbed(&["fresh-root", ROOT_NAME]).trim()));
    let root = walk.0.clone();
    for entry in std::fs::read_dir(target_dir().join("debian")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "deb") {
            std::fs::copy(&p, root.join("root").join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut services = Services::new(&root);
    let remove_at = blocks.iter().position(|b| b.script.contains("apt-get remove")).expect("a removal block");
    assert!(blocks[remove_at + 1..].iter().any(|b| b.script.contains("apt-get purge")), "a purge block after it");

    assert!(blocks[0].script.contains("apt-get install"), "the first block installs");
    run_block(&root, &mut services, &blocks[0]);
    // What the README says of the fresh install: the unit is enabled although no systemd runs,
    // and the shipped config's placeholder secret is refused until the administrator sets one.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/handoffd.service");
    assert!(wants.is_symlink(), "handoffd.service is enabled on installation");
    let check = Command::new("chroot").arg(&root).args(["handoffd", "--check"]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(78), "--check on the installed config: {said}");
    assert!(said.contains("ami.secret: still the sample's placeholder"), "{said}");
    let devices = std::fs::read_to_string(root.join("etc/handoff/handoffd.yaml")).unwrap();
    assert!(devices.contains("\ndevices: []\n") && !devices.to_lowercase().contains("freeswitch"), "{devices}");
    for block in &blocks[1..remove_at] {
        run_block(&root, &mut services, block);
    }
    let t_configured = t0.elapsed();
    // What the README promised about the files it had the administrator write.
    let modes = in_root(
        &root,
        &[
            "stat",
            "-c",
            "%n %U:%G %a",
            "/etc/asterisk/manager.d/handoffd.conf",
            "/etc/asterisk/pjsip_handoff_endpoints.conf",
            "/etc/handoff/handoffd.yaml",
        ],
    );
    for want in [
        "/etc/asterisk/manager.d/handoffd.conf root:asterisk 640",
        "/etc/asterisk/pjsip_handoff_endpoints.conf root:asterisk 640",
        "/etc/handoff/handoffd.yaml root:handoff 640",
    ] {
        assert!(modes.contains(want), "{want}:\n{modes}");
    }
    assert!(services.running.contains_key("handoffd"), "the README started handoffd");

    // A call from Alice's app, as the README configured it, to the far trunk it defined.
    let password = readme_value(&blocks, "password");
    let contact = readme_value(&blocks, "contact");
    let (far_ip, far_port) = contact.trim_start_matches("sip:").split_once(':').expect("contact = sip:IP:PORT");
    let sipp_dir = PathBuf::from(testbed(&["root"]).trim()).join("opt/handoff-testbed/sipp");
    std::fs::create_dir_all(&sipp_dir).unwrap();
    for entry in std::fs::read_dir(repo_root().join("tests/sipp")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, sipp_dir.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(sipp_dir.join("caller.ulaw"), tone(440.0, 2.0)).unwrap();
    std::fs::write(sipp_dir.join("far.ulaw"), tone(1000.0, 2.0)).unwrap();
    let far_rec = Recorder::bind(far_ip);
    let rec_port = far_rec.port.to_string();
    let mut far = Sipp::spawn(
        "far party",
        "far_uas.xml",
        &["-i", far_ip, "-p", far_port, "-mi", far_ip, "-min_rtp_port", "31000", "-max_rtp_port", "31999"]
            .into_iter()
            .chain(["-key", "rec_port", &rec_port, "-d", "0", "-timeout", "60s", "-timeout_error"])
            .collect::<Vec<_>>(),
    );
    let app_rec = Recorder::bind("127.0.0.1");
    let app_port = app_rec.port.to_string();
    let args = [
        "127.0.0.1:5060",
        "-i",
        "127.0.0.1",
        "-p",
        "5071",
        "-mi",
        "127.0.0.1",
        "-min_rtp_port",
        "30000",
        "-max_rtp_port",
        "30999",
        "-key",
        "user",
        "alice-app",
        "-key",
        "auth_pass",
        &password,
        "-s",
        "2000",
        "-key",
        "rec_port",
        &app_port,
        "-d",
        "4000",
        "-timeout",
        "60s",
        "-timeout_error",
    ];
    let mut app = Sipp::spawn("alice-app", "data_leg_uac.xml", &args);
    let called = app.wait(60 * SEC);
    let far_done = far.wait(60 * SEC);
    assert!(
        called.is_ok() && far_done.is_ok(),
        "the call: app {called:?}, far {far_done:?}\nhandoffd: {}",
        services.journal("handoffd")
    );
    assert!(far_rec.packets_with_tone(440.0) >= 100, "the far party heard Alice's app");
    let audited = wait_for(10 * SEC, || in_root(&root, &["handoffctl", "audit"]).contains("session_end").then_some(()));
    assert!(audited.is_some(), "handoffctl audit shows the call: {}", in_root(&root, &["handoffctl", "audit"]));
    let t_call = t0.elapsed();

    // Remove: binaries and module go, the configuration and the state stay.
    run_block(&root, &mut services, &blocks[remove_at]);
    assert!(!services.running.contains_key("handoffd"));
    for gone in ["usr/bin/handoffd", "usr/bin/handoffctl", "usr/lib/x86_64-linux-gnu/asterisk/modules/res_handoff.so"] {
        assert!(!root.join(gone).exists(), "{gone} is left after remove");
    }
    for kept in
        ["etc/handoff/handoffd.yaml", "etc/handoff/pepper", "var/lib/handoff/store", "etc/asterisk/handoff.conf"]
    {
        assert!(root.join(kept).exists(), "{kept} is gone after remove (only purge removes it)");
    }
    assert!(!module_loaded(&root), "the running Asterisk unloaded the module on remove");

    // Purge and the README's clean-up: nothing of handoff is left.
    for block in &blocks[remove_at + 1..] {
        run_block(&root, &mut services, block);
    }
    for gone in [
        "etc/handoff",
        "var/lib/handoff",
        "etc/asterisk/handoff.conf",
        "etc/systemd/system/multi-user.target.wants/handoffd.service",
    ] {
        assert!(!root.join(gone).exists() && !root.join(gone).is_symlink(), "{gone} is left after purge");
    }
    assert!(in_root(&root, &["getent", "passwd", "handoff"]).trim().is_empty(), "the user handoff is left");
    let status = in_root(&root, &["dpkg-query", "-W", "-f", "${Package} ${Status}\n", "handoffd", "handoff-asterisk"]);
    assert!(!status.contains("install") && !status.contains("config-files"), "dpkg still knows them: {status}");
    let leftovers = in_root(&root, &["grep", "-rli", "handoff", "/etc/asterisk"]);
    assert!(leftovers.trim().is_empty(), "the README's clean-up leaves handoff in /etc/asterisk: {leftovers}");
    assert!(services.running.contains_key("asterisk"), "Asterisk keeps running without handoff");

    // The maintainer scripts under a running Asterisk: the module is loaded on install and
    // unloaded on removal, without a restart.
    let deb = std::fs::read_dir(root.join("root"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("handoff-asterisk_"))
        .unwrap();
    let out = run_in_root(&root, &format!("dpkg -i {deb}"));
    assert!(out.contains("res_handoff.so loaded into the running Asterisk"), "{out}");
    assert!(module_loaded(&root), "the postinst loaded the module: {out}");
    run_in_root(&root, "dpkg --purge handoff-asterisk");
    assert!(!module_loaded(&root), "the prerm unloaded the module");
    drop(services);
    println!(
        "debian walk: build-debs {:.0} s, installed and configured at {:.0} s, call at {:.0} s, all {:.0} s",
        t_build.as_secs_f64(),
        t_configured.as_secs_f64(),
        t_call.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(walk);
}
