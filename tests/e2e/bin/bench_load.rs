//! Load benchmark (run by `tests/bench-load`): SIPp drives dual-leg calls (an app leg and a
//! carrier leg per call, one far call each) at a steady rate until SESSIONS sessions (3 channels
//! each) run at once, for SECONDS; then it reports failed sessions, handoffd's CPU and RSS,
//! Asterisk's CPU beside it (the ratio), and the module's cost per frame.
//! Usage: `handoff-bench-load [SESSIONS] [SECONDS]` (default 100 sessions, 600 s; any
//! SECONDS ≥ 120 is a valid run).
//!
//! The verdict: handoff must never leave anything behind (no channel, conference or open
//! session once the calls are over) and its memory must stay flat. Calls that fail while the
//! machine is saturated (legs that time out in `Handoff()` because nobody could answer in time,
//! legs refused with a reason because the SIPp clients fell out of step) are overload, not a
//! handoff fault: the run passes and says that the machine was the limit, with the figures
//! (load average, handoffd's and Asterisk's CPU). The same failures on a machine that was not
//! saturated, or with handoffd itself using most of a core, fail the run.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{Handoffd, AMI_SECRET};
use handoff_tests::rtp::Sink;
use handoff_tests::sipp::{app_password, write_carrier_signal, write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn cores() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// The kind of a refusal line of handoffd's timeline (its reason without names and numbers).
fn refusal_kind(line: &str) -> &'static str {
    if line.contains("already has a live") {
        "device already has a live leg on that path (SIPp clients out of step)"
    } else if line.contains("late ") && line.contains("not starting a new call") {
        "late second leg of an ended call"
    } else if line.contains("unknown device") {
        "unknown device"
    } else if line.contains("refused the decision") {
        "decision came after the leg timed out in Handoff()"
    } else {
        "other"
    }
}

const CALL_S: u64 = 28;
/// A device calls again only after CYCLE_S: the slack keeps its next call clear of the last one
/// even when the machine is saturated and SIPp's timing drifts.
const CYCLE_S: u64 = 40;

/// utime+stime (clock ticks) and RSS (kB) of a process.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks, rss))
}

fn main() -> ExitCode {
    let sessions: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(600);
    // Each device calls every CYCLE_S for CALL_S: enough devices for `sessions` at once.
    let devices = (sessions as u64 * CYCLE_S).div_ceil(CALL_S) as usize + 1;
    let rate = devices as f64 / CYCLE_S as f64;
    let total = (rate * seconds as f64).ceil() as u64;
    println!("load benchmark: {sessions} concurrent dual-leg sessions ({} channels), {seconds} s, {rate:.2} calls/s per path, {devices} devices", sessions * 3);

    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &tone(440.0, 2.0));
    // The devices' app endpoints and the SIPp user lists.
    let etc = ast.instance_dir().join("etc");
    let mut endpoints = String::new();
    let mut data_csv = String::from("SEQUENTIAL\n");
    let mut carrier_csv = String::from("SEQUENTIAL\n");
    let mut registry = String::from("devices:\n");
    for i in 0..devices {
        endpoints.push_str(&format!(
            "[load-app-{i:03}](handoff-app)\nauth = load-app-{i:03}\nrtp_symmetric = no\nforce_rport = no\nrewrite_contact = no\n\
             [load-app-{i:03}](handoff-app-auth)\nusername = load-app-{i:03}\npassword = {}\n\n",
            app_password(&format!("load-app-{i:03}"))
        ));
        data_csv.push_str(&format!("load-app-{i:03};{};\n", app_password(&format!("load-app-{i:03}"))));
        carrier_csv.push_str(&format!("+1555200{i:04};\n"));
        registry.push_str(&format!(
            "  - {{id: load-{i:03}, user: user-{i:03}, endpoint: load-app-{i:03}, number: \"+1555200{i:04}\"}}\n"
        ));
    }
    std::fs::write(etc.join("pjsip_load.conf"), endpoints).unwrap();
    let pjsip = std::fs::read_to_string(etc.join("pjsip.conf")).unwrap();
    std::fs::write(etc.join("pjsip.conf"), format!("{pjsip}\n#include pjsip_load.conf\n")).unwrap();
    ast.cli("module reload res_pjsip.so");
    let sipp_dir = ast.instance_dir().join("sipp");
    std::fs::write(sipp_dir.join("load_data.csv"), data_csv).unwrap();
    std::fs::write(sipp_dir.join("load_carrier.csv"), carrier_csv).unwrap();

    let ami = AmiClient::connect();
    let config = format!(
        "ami:\n  username: handoffd\n  secret: \"{AMI_SECRET}\"\nfar:\n  endpoint: far\nlog:\n  level: info\nsessions:\n  grace_s: 5\n  leg_dead_after_s: 4\n{registry}"
    );
    let handoffd = Handoffd::spawn(&config);
    if handoffd.wait_log("logged in to AMI", Duration::from_secs(10)).is_none() {
        eprintln!("handoffd did not log in: {:#?}", handoffd.log());
        return ExitCode::FAILURE;
    }
    // Its own child, not any process named handoffd (other runs may share the machine).
    let hpid = handoffd.pid();
    let apid = ast.pid();

    let (far_sink, data_sink, carrier_sink) =
        (Sink::bind("127.0.0.3"), Sink::bind("127.0.0.1"), Sink::bind("127.0.0.2"));
    let (limit, m, r) = ((devices + 10).to_string(), total.to_string(), format!("{rate:.3}"));
    let d = (CALL_S * 1000).to_string();
    let timeout = format!("{}s", seconds + 120);
    let far_port = far_sink.port.to_string();
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
            &m,
            "-l",
            &limit,
            "-timeout",
            &timeout,
        ],
    );
    let carrier_port = carrier_sink.port.to_string();
    let mut carrier = Sipp::spawn(
        "carrier legs",
        "load_carrier_uac.xml",
        &[
            "127.0.0.1:5060",
            "-i",
            "127.0.0.2",
            "-p",
            "5072",
            "-mi",
            "127.0.0.2",
            "-min_rtp_port",
            "32000",
            "-max_rtp_port",
            "35999",
            "-inf",
            "load_carrier.csv",
            "-s",
            "2000",
            "-key",
            "rec_port",
            &carrier_port,
            "-r",
            &r,
            "-m",
            &m,
            "-l",
            &limit,
            "-timeout",
            &timeout,
        ],
    );
    let data_port = data_sink.port.to_string();
    let mut data = Sipp::spawn(
        "data legs",
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
            "load_data.csv",
            "-s",
            "2000",
            "-key",
            "rec_port",
            &data_port,
            "-r",
            &r,
            "-m",
            &m,
            "-l",
            &limit,
            "-d",
            &d,
            "-timeout",
            &timeout,
        ],
    );

    let start = Instant::now();
    let (h0, _) = usage(hpid).unwrap_or((0, 0));
    let (a0, _) = usage(apid).unwrap_or((0, 0));
    let (mut rss_max, mut peak_channels, mut load_max) = (0u64, 0usize, 0f64);
    // RSS once the load is steady (after the first third) against the end: memory must be flat.
    let mut rss_steady = None;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5));
        load_max = load_max.max(load_average());
        if let Some((_, rss)) = usage(hpid) {
            rss_max = rss_max.max(rss);
            if rss_steady.is_none() && start.elapsed() >= Duration::from_secs(seconds / 3) {
                rss_steady = Some(rss);
            }
        }
        let channels = ami.channels().len();
        peak_channels = peak_channels.max(channels);
        println!(
            "  {:>4} s: {channels} channels, handoffd RSS {} kB",
            start.elapsed().as_secs(),
            usage(hpid).map(|u| u.1).unwrap_or(0)
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (h1, rss_end) = usage(hpid).unwrap_or((h0, 0));
    let (a1, _) = usage(apid).unwrap_or((a0, 0));
    let status = ast.cli("handoff show status");
    let data_ok = data.wait(Duration::from_secs(CALL_S + 120));
    let carrier_ok = carrier.wait(Duration::from_secs(60));
    let far_ok = far.wait(Duration::from_secs(60));
    // The clients go away as phones would (no BYE for calls still up): SIPp is stopped.
    drop((data, carrier, far));
    // Whatever the clients left (a leg whose partner was refused waits for a BYE that never
    // comes) handoff must clear by itself: stalled legs are declared dead (4 s), the far party
    // is released after the grace (5 s). 60 s is ample.
    let drained = wait_for(Duration::from_secs(60), || {
        (ami.channels().is_empty() && handoffd.metrics().contains("\nhandoff_sessions 0\n")).then_some(())
    });
    let left = ami.channels().len();
    let conferences = ami.conferences().len();
    let open_sessions = handoffd
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("handoff_sessions ").and_then(|v| v.trim().parse::<u64>().ok()))
        .unwrap_or(u64::MAX);
    let log = handoffd.log();
    let refusals: Vec<&String> =
        log.iter().filter(|l| l.contains("handoff::timeline") && l.contains(" refused ")).collect();
    let refused = refusals.len();
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in &refusals {
        *kinds.entry(refusal_kind(l)).or_default() += 1;
    }
    for l in refusals.iter().take(3) {
        println!("  {}", l.split("handoff::timeline: ").nth(1).unwrap_or(l));
    }
    let far_failed = log.iter().filter(|l| l.contains("far call failed")).count();
    let late_decisions = log.iter().filter(|l| l.contains("refused the decision")).count();
    let far_hung_up_late = log.iter().filter(|l| l.contains("far channel") && l.contains("hanging it up")).count();
    let timeouts = ami
        .events()
        .iter()
        .filter(|e| {
            e.name == "Hangup"
                && e.get("Cause") == Some("38")
                && e.get("Uniqueid").is_some_and(|u| !u.ends_with("-far"))
        })
        .count();
    let hz = 100.0; // USER_HZ
    let h_cpu = (h1 - h0) as f64 / hz / elapsed * 100.0;
    let a_cpu = (a1 - a0) as f64 / hz / elapsed * 100.0;
    let per_frame = status.lines().find(|l| l.starts_with("Frames watched:")).unwrap_or("").to_string();
    let alignment_work = status.lines().find(|l| l.starts_with("Alignment work:")).unwrap_or("").to_string();
    // Nothing was cut: a switch for any reason but the first frames is one nobody asked for.
    let switches: Vec<_> = ami.events().into_iter().filter(|e| e.name == "HandoffLegSwitched").collect();
    let spurious = switches.iter().filter(|e| e.get("Reason") != Some("first-frames")).count();
    let aligned =
        ami.events().iter().filter(|e| e.name == "HandoffAlignment" && e.get("Status") == Some("aligned")).count();
    println!("\n{:<28} {}", "sessions at once (peak)", peak_channels / 3);
    println!("{:<28} {}", "calls per path", total);
    println!(
        "{:<28} data {:?}, carrier {:?}, far {:?}",
        "SIPp result",
        data_ok.is_ok(),
        carrier_ok.is_ok(),
        far_ok.is_ok()
    );
    println!("{:<28} {refused} refused legs, {far_failed} failed far calls, {timeouts} legs timed out in Handoff() (cause 38)", "failures");
    for (kind, n) in &kinds {
        println!("{:<28}   {n} × {kind}", "");
    }
    println!(
        "{:<28} {late_decisions} decisions refused by the module as late, {far_hung_up_late} far calls hung up for ended sessions",
        "late input"
    );
    println!(
        "{:<28} {left} channels, {conferences} conferences, {open_sessions} sessions open ({})",
        "left behind",
        if drained.is_some() { "drained" } else { "NOT drained within 60 s" }
    );
    let steady = rss_steady.unwrap_or(rss_end);
    let rss_growth = rss_end.saturating_sub(steady);
    let rss_flat = rss_growth <= (steady / 4).max(4096);
    println!(
        "{:<28} {steady} kB after a third, {rss_end} kB at the end ({})",
        "handoffd memory",
        if rss_flat { "flat" } else { "GROWING" }
    );
    let load_limit = 2.0 * cores();
    println!("{:<28} {load_max:.1} max 1-min load average on {} cores", "machine", cores());
    println!("{:<28} {h_cpu:.1} % of one core, RSS max {rss_max} kB", "handoffd");
    println!("{:<28} {a_cpu:.1} % of one core", "asterisk (peer)");
    println!("{:<28} {:.3}", "ratio handoffd / asterisk CPU", h_cpu / a_cpu.max(0.001));
    println!("{:<28} {}", "module", per_frame.trim_start_matches("Frames watched:").trim());
    println!("{:<28} {}", "module alignment", alignment_work.trim_start_matches("Alignment work:").trim());
    println!(
        "{:<28} {aligned} groups aligned; {spurious} switches with no cut ({} switches in all)",
        "switches",
        switches.len()
    );
    println!(
        "RTP received: far {} / data {} / carrier {} packets",
        far_sink.packets(),
        data_sink.packets(),
        carrier_sink.packets()
    );
    let clean = drained.is_some() && left == 0 && conferences == 0 && open_sessions == 0;
    let failures =
        data_ok.is_err() || carrier_ok.is_err() || far_ok.is_err() || refused > 0 || far_failed > 0 || timeouts > 0;
    let unexplained = kinds.get("other").copied().unwrap_or(0) + kinds.get("unknown device").copied().unwrap_or(0);
    let machine_limit = load_max >= load_limit && h_cpu < 50.0;
    if !clean {
        println!("RESULT: FAILED: handoff left calls behind");
        ExitCode::FAILURE
    } else if !rss_flat {
        println!("RESULT: FAILED: handoffd's memory grew {rss_growth} kB after the load was steady");
        ExitCode::FAILURE
    } else if !failures {
        println!("RESULT: no failed session");
        ExitCode::SUCCESS
    } else if machine_limit && unexplained == 0 {
        println!(
            "RESULT: PASSED under overload: the machine, not handoff, was the limit (load average up to {load_max:.1} on {} cores, \
             handoffd {h_cpu:.1} % of one core, Asterisk {a_cpu:.1} %); the calls that failed were refused with a reason or timed out \
             in Handoff(), and nothing was left behind",
            cores()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "RESULT: FAILED ({data_ok:?} {carrier_ok:?} {far_ok:?}); the machine was {} (load average up to {load_max:.1}, limit {load_limit:.0}; handoffd {h_cpu:.1} % of one core)",
            if machine_limit { "saturated, but some refusals are unexplained" } else { "not the limit" }
        );
        ExitCode::FAILURE
    }
}
