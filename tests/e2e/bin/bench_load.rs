//! Load benchmark (run by `tests/bench-load`): SIPp drives dual-leg calls (an app leg and a
//! carrier leg per call, one far call each) at a steady rate until SESSIONS sessions (3 channels
//! each) run at once, for SECONDS; then it reports failed sessions, handoffd's CPU and RSS,
//! Asterisk's CPU beside it (the ratio), and the module's cost per frame.
//! Usage: `handoff-bench-load [SESSIONS] [SECONDS]` (default 100 sessions, 600 s).

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{Handoffd, AMI_SECRET};
use handoff_tests::rtp::Sink;
use handoff_tests::sipp::{app_password, write_carrier_signal, write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
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
        "ami:\n  username: handoffd\n  secret: \"{AMI_SECRET}\"\nfar:\n  endpoint: far\nlog:\n  level: info\nsessions:\n  pair_window_s: 0\n{registry}"
    );
    let handoffd = Handoffd::spawn(&config);
    if handoffd.wait_log("logged in to AMI", Duration::from_secs(10)).is_none() {
        eprintln!("handoffd did not log in: {:#?}", handoffd.log());
        return ExitCode::FAILURE;
    }
    let hpid = pid_of("handoffd").expect("handoffd pid");
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
    let (mut rss_max, mut peak_channels) = (0u64, 0usize);
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5));
        if let Some((_, rss)) = usage(hpid) {
            rss_max = rss_max.max(rss);
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
    let (h1, _) = usage(hpid).unwrap_or((h0, 0));
    let (a1, _) = usage(apid).unwrap_or((a0, 0));
    let status = ast.cli("handoff show status");
    let data_ok = data.wait(Duration::from_secs(CALL_S + 120));
    let carrier_ok = carrier.wait(Duration::from_secs(60));
    let far_ok = far.wait(Duration::from_secs(60));
    let _ = wait_for(Duration::from_secs(15), || ami.channels().is_empty().then_some(()));
    let left = ami.channels().len();
    let refusals: Vec<String> = handoffd.log().into_iter().filter(|l| l.contains("refused")).collect();
    let refused = refusals.len();
    for l in refusals.iter().take(3) {
        println!("  {}", l.split("handoff::timeline: ").nth(1).unwrap_or(l));
    }
    let far_failed = handoffd.log().iter().filter(|l| l.contains("far call failed")).count();
    let hz = 100.0; // USER_HZ
    let h_cpu = (h1 - h0) as f64 / hz / elapsed * 100.0;
    let a_cpu = (a1 - a0) as f64 / hz / elapsed * 100.0;
    let per_frame = status.lines().find(|l| l.starts_with("Frames watched:")).unwrap_or("").to_string();
    println!("\n{:<28} {}", "sessions at once (peak)", peak_channels / 3);
    println!("{:<28} {}", "calls per path", total);
    println!(
        "{:<28} data {:?}, carrier {:?}, far {:?}",
        "SIPp result",
        data_ok.is_ok(),
        carrier_ok.is_ok(),
        far_ok.is_ok()
    );
    println!("{:<28} {refused} refused legs, {far_failed} failed far calls, {left} channels left", "failures");
    println!("{:<28} {h_cpu:.1} % of one core, RSS max {rss_max} kB", "handoffd");
    println!("{:<28} {a_cpu:.1} % of one core", "asterisk (peer)");
    println!("{:<28} {:.3}", "ratio handoffd / asterisk CPU", h_cpu / a_cpu.max(0.001));
    println!("{:<28} {}", "module", per_frame.trim_start_matches("Frames watched:").trim());
    println!(
        "RTP received: far {} / data {} / carrier {} packets",
        far_sink.packets(),
        data_sink.packets(),
        carrier_sink.packets()
    );
    if data_ok.is_ok() && carrier_ok.is_ok() && far_ok.is_ok() && refused == 0 && far_failed == 0 && left == 0 {
        println!("RESULT: no failed session");
        ExitCode::SUCCESS
    } else {
        println!("RESULT: FAILED ({data_ok:?} {carrier_ok:?} {far_ok:?})");
        ExitCode::FAILURE
    }
}
