//! handoffd killed with SIGKILL in the middle of a dual-leg call: the call goes on (media lives
//! in Asterisk; res_handoff.so even fails over a Wi-Fi cut on its own while no controller is
//! there), and a restarted handoffd takes the running session over from AMI within 2 s, so that
//! when the far party hangs up, the phone's legs are still torn down and nothing is left.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::Handoffd;
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

#[test]
fn a_killed_handoffd_drops_no_call_and_its_successor_takes_the_session_over() {
    let ast = Asterisk::start();
    write_signals(&ast, &coded_signal(40.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal(40.0, 80));
    let ami = AmiClient::connect();
    let first = Handoffd::connected(&ast);
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas_hangup.xml", far_rec.port, Some(9000));
    let (r1, r2) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let mut data = Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", r1.port, 0, DATA_RTP);
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", r2.port, 0, CARRIER_RTP);
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .expect("all three legs joined");
    std::thread::sleep(SEC);
    let t_call = Instant::now();
    drop(first); // SIGKILL
    std::thread::sleep(Duration::from_millis(500));

    // No controller now: the module still carries the call over a Wi-Fi cut by itself — by a
    // switch to the carrier leg, or, once the legs are aligned (as shipped), with the carrier leg
    // feeding the mix already and the data leg's stall reported.
    let before_cut = ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    let carried = wait_for(5 * SEC, || {
        let after: Vec<_> = ami.events().into_iter().skip(before_cut).collect();
        let switched = after.iter().any(|e| e.name == "HandoffLegSwitched" && e.headers.get("To") == Some("carrier"));
        let stalled = after.iter().any(|e| e.name == "HandoffLegStalled" && e.headers.get("Path") == Some("data"));
        (switched || (stalled && ast.cli("handoff show status").contains("active=carrier"))).then_some(())
    });
    assert!(carried.is_some(), "res_handoff.so carries the call over the cut without handoffd");
    std::thread::sleep(SEC);
    cut.heal();

    let started = Instant::now();
    let second = Handoffd::connected(&ast);
    let line = second.wait_log("resynchronised from Asterisk", 5 * SEC).expect("the new handoffd resynchronises");
    let took = started.elapsed();
    assert!(line.contains("1 running session(s) taken over"), "{line}");
    assert!(took <= 2 * SEC, "rebuilt its state in {took:?}");
    println!("handoffd restarted and took the session over in {} ms", took.as_millis());

    // The far party hangs up 9 s after answering: the new handoffd ends the phone's legs.
    far.wait(30 * SEC).expect("far party");
    data.wait(30 * SEC).expect("the data leg gets its BYE from the new handoffd");
    carrier.wait(30 * SEC).expect("the carrier leg gets its BYE from the new handoffd");
    assert!(second.log().iter().any(|l| l.contains("far party hung up")), "{:#?}", second.log());

    let heard = hear(&far_rec.packets());
    let during = report(&heard, t_call, t_call + 4 * SEC);
    assert!(
        during.longest_gap_ms <= 120.0 && during.with_signal >= 150,
        "the call went on while handoffd was down: {during:?}"
    );
    assert!(second.wait_log(" 0 session(s) open", 5 * SEC).is_some(), "{:#?}", second.log());
    second.assert_nothing_left(&ast, &ami);
}
