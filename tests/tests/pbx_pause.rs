//! The PBX pausing is not a network loss (#14 item 5), on the real Asterisk 22: during a
//! dual-leg call (data and carrier legs sending the same coded signal, the carrier's 80 ms later)
//! the whole Asterisk process is stopped (SIGSTOP) for 150–300 ms, several times, as a host too
//! busy to schedule it would. Both legs go silent at the same instant and come back together
//! with a burst of queued frames. Nothing may move: the module aligns the legs (as shipped) and
//! the later leg, the carrier, feeds the mix; no `HandoffLegSwitched` after that, and the far
//! party hears the voice once.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const CARRIER_DELAY_MS: usize = 80;
/// How long each stop lasts (ms), in turn.
const PAUSES_MS: [u64; 8] = [150, 300, 200, 250, 180, 300, 220, 160];

/// Sends `sig` ("STOP", "CONT") to process `pid`; panics if it cannot.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
}

/// Continues the stopped Asterisk whatever happens to the test.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}

#[test]
fn asterisk_pausing_both_legs_at_once_switches_nothing() {
    let ast = Asterisk::start();
    write_signals(&ast, &coded_signal(40.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal(40.0, CARRIER_DELAY_MS));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let data_rec = Recorder::bind("127.0.0.1");
    let carrier_rec = Recorder::bind("127.0.0.2");
    let mut data =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, 16_000, DATA_RTP);
    let mut carrier = Sipp::leg(
        "carrier_leg_uac_wait.xml",
        "127.0.0.2",
        5072,
        "+15550001",
        "2000",
        carrier_rec.port,
        16_000,
        CARRIER_RTP,
    );
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .expect("data, carrier and far party in one conference");
    let aligned = wait_for(10 * SEC, || {
        ami.events().into_iter().find(|e| e.name == "HandoffAlignment" && e.headers.get("Status") == Some("aligned"))
    })
    .expect("the legs are aligned");
    println!("aligned: {:?}", aligned.headers);
    // the later leg takes the mix over in a pause of the earlier one, or 2 s later
    wait_for(10 * SEC, || ast.cli("handoff show status").contains("active=carrier").then_some(()))
        .expect("the carrier leg feeds the mix");
    std::thread::sleep(SEC);
    let switched = |from: usize| -> Vec<String> {
        ami.events()
            .into_iter()
            .skip(from)
            .filter(|e| e.name == "HandoffLegSwitched")
            .map(|e| {
                format!(
                    "{} -> {} ({})",
                    e.headers.get("From").unwrap_or("?"),
                    e.headers.get("To").unwrap_or("?"),
                    e.headers.get("Reason").unwrap_or("?")
                )
            })
            .collect()
    };
    // whichever leg came first, the later leg (the carrier) has the mix by now
    let first = switched(0);
    assert!(first.last().is_some_and(|s| s.contains("-> carrier")), "before the pauses: {first:?}");
    let before = ami.events().len();
    let from = Instant::now();
    let pid = ast.pid();
    for ms in PAUSES_MS {
        signal(pid, "STOP");
        let stopped = Stopped(pid);
        std::thread::sleep(Duration::from_millis(ms));
        signal(pid, "CONT");
        drop(stopped);
        // longer than recover_time, so a spurious switch would also be switched back
        std::thread::sleep(Duration::from_millis(900));
    }
    let until = Instant::now();
    let status = ast.cli("handoff show status");
    let stalls = ami.events().into_iter().skip(before).filter(|e| e.name == "HandoffLegStalled").count();
    let moved = switched(before);
    println!(
        "{} pauses of Asterisk: {stalls} HandoffLegStalled, {} HandoffLegSwitched {moved:?}",
        PAUSES_MS.len(),
        moved.len()
    );
    println!("{status}");
    assert!(stalls >= 1, "the pauses stalled the legs: {stalls} stall events");
    assert!(moved.is_empty(), "the PBX pausing moved the mix {} times: {moved:?}", moved.len());
    assert!(status.contains("active=carrier") && status.contains("align=aligned"), "{status}");

    data.wait(30 * SEC).expect("data leg scenario");
    carrier.wait(30 * SEC).expect("the carrier leg is hung up when the user hangs up the app leg");
    far.wait(30 * SEC).expect("the far party gets its BYE");
    let heard = hear(&far_rec.packets());
    let r = report(&heard, from, until);
    println!("far end during the pauses: {r:?}");
    assert!(r.doubled * 20 <= r.with_signal, "heard twice: {r:?}");
    handoffd.assert_nothing_left(&ast, &ami);
}
