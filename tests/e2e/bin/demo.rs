//! The demonstration call (run by `tests/demo`): the testbed Asterisk with res_handoff.so and
//! handoffd; Alice's phone calls 2000 twice for one conversation, over the carrier trunk and over
//! its app; the far party answers; mid-call the app's Wi-Fi path is really cut (nftables) and
//! restored. Both legs of the phone send one frame-numbered test signal from one clock, the
//! carrier leg 80 ms behind (`pump`). Prints the AMI events, handoffd's session timeline, and what
//! the far party heard at the failover and at the take-back (`listen`): silence where voice was
//! due, frames heard twice, frames skipped, packets with both legs at once.
//! The session's timeline picture (drawn by `handoffctl timeline SESSION --svg`) is written to
//! `target/demo/timeline.svg`.

use handoff_tests::ami::AmiClient;
use handoff_tests::failover::{phone, Plan};
use handoff_tests::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::listen::{analyse, hear, trace, Script, Switch, Talk};
use handoff_tests::netcut::Cut;
use handoff_tests::pump::Timing;
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, Sipp, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::{target_dir, wait_for};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let sec = Duration::from_secs(1);
    println!("== handoff demo: a dual-leg call that survives a Wi-Fi cut, on Asterisk 22");
    let ast = Asterisk::start();
    println!("{}", ast.cli("core show version").trim());
    println!("{}", ast.cli("module show like handoff").lines().nth(1).unwrap_or("").trim());
    write_signals(&ast, &[0xff; 1600], &[0xff; 16000]); // the far party listens (silence)
    let ami = AmiClient::connect();
    let handoffd = Handoffd::spawn(&testbed_config(5038, AMI_SECRET));
    if handoffd.wait_log("logged in to AMI", 10 * sec).is_none()
        || wait_for(10 * sec, || {
            ast.cli("handoff show status").contains("Controller:          connected").then_some(())
        })
        .is_none()
    {
        eprintln!("handoffd did not connect:\n{}", handoffd.log().join("\n"));
        return ExitCode::FAILURE;
    }

    println!("\n== call: alice-phone dials 2000 over its app (alice-app, data path) and over the carrier trunk");
    println!("   (127.0.0.2, caller ID +15550001, audio 80 ms behind); the far party answers at 127.0.0.3");
    let t0 = Instant::now();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let plan = Plan {
        cuts: 1,
        timing: Timing { offset_ms: 80.0, jitter_ms: 0.0, data_jitter_ms: 0.0, seed: 1 },
        talk: Talk::Continuous,
        down_ms: 3000,
        up_ms: 2000,
        phase_ms: 0,
        seed: 1,
        alignment: None,
        cut_carrier: false,
    };
    let (mut data, mut carrier, pump) =
        match phone(&ast, &plan, 30.0, "pump_app_uac.xml", "alice-app", "127.0.0.2", 14_000) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("the phone's legs did not come up: {e}\n{}", handoffd.log().join("\n"));
                return ExitCode::FAILURE;
            }
        };
    if wait_for(10 * sec, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .is_none()
    {
        eprintln!("the legs did not join:\n{}", handoffd.log().join("\n"));
        return ExitCode::FAILURE;
    }
    // The module measures the legs' offset from their audio and lets the later leg (the carrier)
    // feed the mix, in a pause of the data leg or 2 s later (alignment = aligned, as shipped).
    let aligned = wait_for(15 * sec, || {
        let status = ast.cli("handoff show status");
        (status.contains("align=aligned") && status.contains("active=carrier")).then_some(())
    });
    if aligned.is_none() {
        eprintln!("the legs were not aligned:\n{}", ast.cli("handoff show status"));
        return ExitCode::FAILURE;
    }
    // Taking the mix over, the later leg first drops the frames the mix already had from the
    // earlier one (the offset, once: silence stretched in a pause, if there was one): the window
    // "both legs up" below starts after that.
    std::thread::sleep(2 * sec + sec / 2);
    println!("\n$ asterisk -rx 'handoff show status'   (both legs up)\n{}", ast.cli("handoff show status").trim_end());
    println!(
        "\n== {:.1} s: Wi-Fi lost: nftables drops the app's RTP (ports {}-{})",
        t0.elapsed().as_secs_f64(),
        DATA_RTP.0,
        DATA_RTP.1
    );
    let cut_at = Instant::now();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    std::thread::sleep(3 * sec);
    println!("== {:.1} s: Wi-Fi back", t0.elapsed().as_secs_f64());
    let healed_at = Instant::now();
    cut.heal();
    std::thread::sleep(2 * sec);
    let took_back_at = Instant::now();
    let ok = data.wait(30 * sec).and_then(|_| carrier.wait(30 * sec)).and_then(|_| far.wait(30 * sec));
    let _ = wait_for(5 * sec, || handoffd.log().iter().any(|l| l.contains("session(s) open")).then_some(()));

    println!("\n== AMI events");
    for e in ami.events() {
        let shown = [
            "HandoffLegArrived",
            "OriginateResponse",
            "ConfbridgeJoin",
            "HandoffLegStalled",
            "HandoffLegSwitched",
            "HandoffLegRecovered",
            "HandoffAlignment",
            "Hangup",
        ];
        if shown.contains(&e.name.as_str()) {
            let pick = |k: &str| e.headers.get(k).map(|v| format!(" {k}={v}")).unwrap_or_default();
            println!(
                "  {:<20}{}{}{}{}{}{}{}{}{}",
                e.name,
                pick("Channel"),
                pick("Path"),
                pick("To"),
                pick("Reason"),
                pick("SilentMs"),
                pick("Status"),
                pick("OffsetMs"),
                pick("Response"),
                pick("Cause-txt")
            );
        }
    }
    println!("\n== handoffd session timeline");
    for l in handoffd.log().iter().filter(|l| l.contains("handoff::timeline")) {
        println!("  {}", l.split("handoff::timeline: ").nth(1).unwrap_or(l));
    }
    let picture = draw_timeline(&handoffd, &ami);
    let t0 = pump.t0;
    drop(pump);
    let heard = hear(&far_rec.packets());
    let script = Script::new(plan.talk, 30.0);
    let margin = Duration::from_millis(200);
    let before = analyse(&heard, &script, t0, cut_at - 2 * sec, cut_at - margin);
    let failover = analyse(&heard, &script, t0, cut_at - margin, healed_at);
    let take_back = analyse(&heard, &script, t0, healed_at, took_back_at);
    let detect = ami.events().into_iter().find(|e| e.name == "HandoffLegStalled").and_then(|e| {
        Some(e.headers.get("DetectedMs")?.parse::<u64>().ok()? - e.headers.get("LastFrameMs")?.parse::<u64>().ok()?)
    });
    println!("\n== what the far party heard (20 ms RTP packets of the frame-numbered test signal)");
    let show = |name: &str, s: &Switch| {
        println!(
            "  {name:<26} {:>3} packets with the voice; silence {:>3.0} ms; {} frame(s) heard twice, {} skipped; {} packet(s) with both legs; delay {:+.0} ms",
            s.voiced_packets, s.silence_ms, s.repeated, s.skipped, s.two_legs, s.delay_shift_ms
        )
    };
    show("both legs up (2 s):", &before);
    show("failover (cut → heal):", &failover);
    show("take-back (heal + 2 s):", &take_back);
    println!("  frames heard around the cut:  {}", trace(&heard, t0, cut_at - margin, cut_at + sec));
    println!("  frames heard around the heal: {}", trace(&heard, t0, healed_at, took_back_at));
    println!(
        "  stall of the data leg detected {} ms after its last frame",
        detect.map(|d| d.to_string()).unwrap_or("?".into())
    );
    match &picture {
        Ok(path) => println!("\n== timeline picture: {path}  (handoffctl timeline SESSION --svg FILE)"),
        Err(e) => println!("\n== timeline picture: not drawn: {e}"),
    }
    let channels = ami.channels().len();
    println!("\n== after the call: {channels} channel(s) left in Asterisk");
    println!("{}", ast.cli("handoff show status").trim_end());
    let went_on = failover.voiced_packets >= 100 && take_back.voiced_packets >= 80;
    let clean_before = before.repeated + before.skipped + before.two_legs == 0;
    match ok {
        Ok(()) if went_on && clean_before && channels == 0 && picture.is_ok() => {
            let offset = ami
                .events()
                .into_iter()
                .rfind(|e| e.name == "HandoffAlignment" && e.headers.get("Status") == Some("aligned"))
                .and_then(|e| e.headers.get("OffsetMs").map(str::to_string))
                .unwrap_or("?".into());
            println!(
                "\nRESULT: the module measured the carrier leg {offset} ms behind the data leg and let it feed the mix, each 20 ms \
                 from the data leg where it had it: the Wi-Fi cut was bridged inside Asterisk. At the failover the far party heard \
                 {:.0} ms of silence, {} frame(s) twice and {} skipped; at the take-back {:.0} ms of silence, {} twice, {} skipped.",
                failover.silence_ms, failover.repeated, failover.skipped, take_back.silence_ms, take_back.repeated, take_back.skipped
            );
            ExitCode::SUCCESS
        }
        other => {
            println!("\nRESULT: FAILED ({other:?}; voice went on: {went_on}; clean with both legs up: {clean_before}; channels left: {channels})");
            ExitCode::FAILURE
        }
    }
}

/// Draws the call's timeline with the real `handoffctl timeline SESSION --svg` into
/// `target/demo/timeline.svg`; returns its path.
fn draw_timeline(handoffd: &Handoffd, ami: &AmiClient) -> Result<String, String> {
    let session = ami
        .events()
        .into_iter()
        .find_map(|e| (e.name == "HandoffLegSwitched").then(|| e.headers.get("Session").map(str::to_string)).flatten())
        .ok_or("no HandoffLegSwitched event named the session")?;
    let dir = target_dir().join("demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("timeline.svg");
    // The last entries reach the store off handoffd's loop: give them a moment.
    let drawn = wait_for(Duration::from_secs(5), || {
        let (code, out) = handoffd.ctl(&["timeline", &session, "--svg", &file.display().to_string()], "");
        let done = code == 0 && std::fs::read_to_string(&file).is_ok_and(|s| s.contains("end: "));
        if done {
            Some(Ok(()))
        } else if code != 0 && !out.contains("404") {
            Some(Err(out))
        } else {
            std::thread::sleep(Duration::from_millis(200));
            None
        }
    });
    match drawn {
        Some(Ok(())) => Ok(file.display().to_string()),
        Some(Err(out)) => Err(out.trim().to_string()),
        None => Err(format!("handoffctl timeline {session}: no complete timeline within 5 s")),
    }
}
