//! Failover benchmark (run by `tests/bench-failover`): the audio gap the far party hears when a
//! phone's data path is really cut (nftables on loopback), and how fast the dead leg is
//! detected, over N cuts — for handoff (res_handoff.so switches legs inside Asterisk) and, in
//! the same run, for the stock-Asterisk way (both legs in a ConfBridge, the carrier leg muted,
//! unmuted by a controller once pjsip's `rtp_timeout=1` has hung up the dead data leg). Prints a
//! table with the ratio. Usage: `handoff-bench-failover [CUTS]` (default 20).

use handoff::ami::Action;
use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const CARRIER_DELAY_MS: usize = 80;

#[derive(Default)]
struct Results {
    gaps_ms: Vec<f64>,
    detect_ms: Vec<f64>,
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

fn signals(ast: &Asterisk) {
    write_signals(ast, &coded_signal(120.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(ast, &coded_signal(120.0, CARRIER_DELAY_MS));
}

/// handoff: one long dual-leg call, the data path cut and healed `cuts` times.
fn run_handoff(cuts: usize) -> Result<Results, String> {
    let ast = Asterisk::start();
    signals(&ast);
    let ami = AmiClient::connect();
    let handoffd = Handoffd::spawn(&testbed_config(5038, AMI_SECRET));
    handoffd.wait_log("logged in to AMI", 10 * SEC).ok_or("handoffd did not log in")?;
    wait_for(10 * SEC, || ast.cli("handoff show status").contains("Controller:          connected").then_some(()))
        .ok_or("module never saw handoffd")?;
    let far_rec = Recorder::bind("127.0.0.3");
    let _far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (data_rec, carrier_rec) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let call_ms = 4000 + cuts as u64 * 2600;
    let mut data =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, call_ms, DATA_RTP);
    let _carrier = Sipp::leg(
        "carrier_leg_uac.xml",
        "127.0.0.2",
        5072,
        "+15550001",
        "2000",
        carrier_rec.port,
        call_ms,
        CARRIER_RTP,
    );
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .ok_or("the three legs did not join")?;
    std::thread::sleep(2 * SEC);
    let mut windows = Vec::new();
    let mut res = Results::default();
    for i in 0..cuts {
        let seen = ami.events().iter().filter(|e| e.name == "HandoffLegStalled").count();
        let cut_at = Instant::now();
        let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
        let stalled = wait_for(5 * SEC, || {
            let s: Vec<_> = ami.events().into_iter().filter(|e| e.name == "HandoffLegStalled").collect();
            s.get(seen).cloned()
        })
        .ok_or(format!("cut {i}: no stall reported"))?;
        let get = |k: &str| stalled.headers.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
        res.detect_ms.push(get("DetectedMs") - get("LastFrameMs"));
        std::thread::sleep(Duration::from_millis(1000));
        cut.heal();
        windows.push((cut_at - Duration::from_millis(200), cut_at + Duration::from_millis(800)));
        std::thread::sleep(Duration::from_millis(1600)); // data back, preferred again after 500 ms
    }
    data.wait(90 * SEC)?;
    let heard = hear(&far_rec.packets());
    for (from, to) in windows {
        res.gaps_ms.push(report(&heard, from, to).longest_gap_ms);
    }
    Ok(res)
}

/// Stock Asterisk: per cut, a fresh Asterisk with the far party and a pair of legs in a plain
/// ConfBridge, the carrier leg muted until the dead data leg is gone.
fn run_stock(cuts: usize) -> Result<Results, String> {
    let mut res = Results::default();
    for i in 0..cuts {
        let (gap, detect) = stock_cut().map_err(|e| format!("stock cut {i}: {e}"))?;
        res.gaps_ms.push(gap);
        res.detect_ms.push(detect);
    }
    Ok(res)
}

fn stock_cut() -> Result<(f64, f64), String> {
    let ast = Asterisk::start();
    signals(&ast);
    let ami = AmiClient::connect();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let (r, _) = ami.action(
        Action::new("Originate")
            .header("Channel", "PJSIP/2000@far")
            .header("Context", "stock-far")
            .header("Exten", "join")
            .header("Priority", "1")
            .header("Async", "true"),
    );
    if r.headers.get("Response") != Some("Success") {
        return Err(format!("originate far: {r:?}"));
    }
    ami.wait_event(15 * SEC, |e| e.name == "OriginateResponse").ok_or("far party did not answer")?;
    let (data_rec, carrier_rec) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.4"));
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.4", 5072, "+15550001", "2000", carrier_rec.port, 0, CARRIER_RTP);
    let mut data =
        Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-stock", "2000", data_rec.port, 0, DATA_RTP);
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() >= 3).then_some(()))
        .ok_or("legs did not join")?;
    let carrier_channel = ami
        .events()
        .into_iter()
        .find(|e| e.name == "ConfbridgeJoin" && e.headers.get("Channel").is_some_and(|c| c.contains("carrier-stock")))
        .and_then(|e| e.headers.get("Channel").map(str::to_string))
        .ok_or("no carrier channel")?;
    std::thread::sleep(Duration::from_millis(1500));
    let cut_at = Instant::now();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    // pjsip's rtp_timeout hangs the silent data leg up; then the "controller" unmutes.
    ami.wait_event(10 * SEC, |e| {
        e.name == "Hangup" && e.headers.get("Channel").is_some_and(|c| c.contains("alice-stock"))
    })
    .ok_or("the dead data leg was never hung up")?;
    let detect = cut_at.elapsed().as_secs_f64() * 1000.0;
    let (r, _) = ami.action(
        Action::new("ConfbridgeUnmute").header("Conference", "stock").header("Channel", carrier_channel.as_str()),
    );
    if r.headers.get("Response") != Some("Success") {
        return Err(format!("unmute: {r:?}"));
    }
    let unmuted_at = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    cut.heal();
    ami.action(Action::new("Hangup").header("Channel", "/^PJSIP/"));
    data.wait(20 * SEC)?;
    carrier.wait(20 * SEC)?;
    far.wait(20 * SEC)?;
    let heard = hear(&far_rec.packets());
    let gap =
        report(&heard, cut_at - Duration::from_millis(200), unmuted_at + Duration::from_millis(500)).longest_gap_ms;
    Ok((gap, detect))
}

fn main() -> ExitCode {
    let cuts: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    println!("failover benchmark: {cuts} cuts per mode; the data path is cut by nftables (RTP dropped both ways),");
    println!("the carrier leg's audio runs {CARRIER_DELAY_MS} ms behind; gap = longest silence the far party receives around a cut\n");
    let handoff = match if std::env::var_os("HANDOFF_BENCH_STOCK_ONLY").is_some() {
        Ok(Results::default())
    } else {
        run_handoff(cuts)
    } {
        Ok(r) => r,
        Err(e) => {
            eprintln!("handoff mode failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stock = match run_stock(cuts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stock mode failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<40} {:>5} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11}",
        "mode", "cuts", "gap p50", "gap p95", "gap max", "detect p50", "detect p95", "detect max"
    );
    for (name, r) in
        [("handoff (res_handoff.so switch)", &handoff), ("stock (ConfBridge mute + rtp_timeout=1)", &stock)]
    {
        println!(
            "{:<40} {:>5} {:>6.0} ms {:>6.0} ms {:>6.0} ms {:>8.0} ms {:>8.0} ms {:>8.0} ms",
            name,
            r.gaps_ms.len(),
            pct(&r.gaps_ms, 0.5),
            pct(&r.gaps_ms, 0.95),
            pct(&r.gaps_ms, 1.0),
            pct(&r.detect_ms, 0.5),
            pct(&r.detect_ms, 0.95),
            pct(&r.detect_ms, 1.0)
        );
    }
    if std::env::var_os("HANDOFF_BENCH_VERBOSE").is_some() {
        println!("\nper cut: handoff gaps {:?} detect {:?}", handoff.gaps_ms, handoff.detect_ms);
        println!("per cut: stock gaps {:?} detect {:?}", stock.gaps_ms, stock.detect_ms);
    }
    let gap_ratio = pct(&stock.gaps_ms, 0.95) / pct(&handoff.gaps_ms, 0.95).max(1.0);
    let detect_ratio = pct(&stock.detect_ms, 0.95) / pct(&handoff.detect_ms, 0.95).max(1.0);
    println!("\nratio stock / handoff: gap p95 {gap_ratio:.1}x, detection p95 {detect_ratio:.1}x");
    let gap_ok = pct(&handoff.gaps_ms, 0.95) <= 60.0;
    let detect_ok = pct(&handoff.detect_ms, 1.0) <= 60.0;
    println!(
        "targets: gap p95 <= 60 ms: {}; detection <= 60 ms: {}",
        if gap_ok { "met" } else { "MISSED" },
        if detect_ok { "met" } else { "MISSED" }
    );
    ExitCode::SUCCESS
}
