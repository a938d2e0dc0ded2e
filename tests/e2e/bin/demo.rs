//! The demonstration call (run by `tests/demo`): the testbed Asterisk with res_handoff.so,
//! handoffd, a SIPp phone leg calling 2000 and a SIPp far party. Prints what happened: the
//! AMI events, handoffd's session timeline, and the audio each end received.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let sec = Duration::from_secs(1);
    println!("== handoff demo: one call through Handoff(), handoffd and a ConfBridge on Asterisk 22");
    let ast = Asterisk::start();
    println!("Asterisk: {}", ast.cli("core show version").trim());
    println!("{}", ast.cli("module show like handoff").lines().nth(1).unwrap_or("").trim());
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
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
    println!("\n$ asterisk -rx 'handoff show status'\n{}", ast.cli("handoff show status").trim_end());

    println!("\n== call: phone app alice-app (127.0.0.1) dials 2000; the far party answers at 127.0.0.3; the phone hangs up after 4 s");
    let t0 = Instant::now();
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let phone_rec = Recorder::bind("127.0.0.1");
    let mut phone = Sipp::phone_leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", phone_rec.port, 4000);
    let ok = phone.wait(30 * sec).and_then(|_| far.wait(30 * sec));
    let _ = wait_for(5 * sec, || handoffd.log().iter().any(|l| l.contains("session(s) open")).then_some(()));

    println!("\n== AMI events (as handoffd sees them)");
    for e in ami.events() {
        let interesting = [
            "HandoffLegArrived",
            "OriginateResponse",
            "ConfbridgeStart",
            "ConfbridgeJoin",
            "ConfbridgeLeave",
            "ConfbridgeEnd",
            "Hangup",
        ];
        if interesting.contains(&e.name.as_str()) {
            let pick = |k: &str| e.headers.get(k).map(|v| format!(" {k}={v}")).unwrap_or_default();
            println!(
                "  {:<18}{}{}{}{}{}",
                e.name,
                pick("Channel"),
                pick("Conference"),
                pick("Far"),
                pick("Response"),
                pick("Cause-txt")
            );
        }
    }
    println!("\n== handoffd session timeline");
    for l in handoffd.log().iter().filter(|l| l.contains("handoff::timeline")) {
        println!("  {}", l.split("handoff::timeline: ").nth(1).unwrap_or(l));
    }
    let at_far = far_rec.packets_with_tone(440.0);
    let at_phone = phone_rec.packets_with_tone(1000.0);
    println!("\n== media through Asterisk (20 ms RTP packets)");
    println!("  far party received {:>4} packets, {:>4} carrying the phone's 440 Hz", far_rec.packets().len(), at_far);
    println!(
        "  phone received     {:>4} packets, {:>4} carrying the far party's 1 kHz",
        phone_rec.packets().len(),
        at_phone
    );
    let channels = ami.channels().len();
    println!("\n== after the call ({:.1} s): {channels} channel(s) left in Asterisk", t0.elapsed().as_secs_f64());
    println!("{}", ast.cli("handoff show status").trim_end());
    match ok {
        Ok(()) if at_far >= 100 && at_phone >= 100 && channels == 0 => {
            println!("\nRESULT: the call was joined, carried audio both ways and was torn down cleanly.");
            ExitCode::SUCCESS
        }
        other => {
            println!("\nRESULT: FAILED ({other:?})");
            ExitCode::FAILURE
        }
    }
}
