//! Two handoffd for one Asterisk node, sharing the testbed's PostgreSQL store: the first takes
//! the node's lease and drives it, the second waits as a standby without touching the PBX.
//! The first is killed with SIGKILL in the middle of a dual-leg call; the standby takes the node
//! when the lease runs out, logs in, adopts the running session from Asterisk and the store, and
//! when the far party hangs up it ends the phone's legs: nothing is left.

use handoff_tests::ami::AmiClient;
use handoff_tests::handoffd::{admin_token, api, state_dir, testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::{coded_signal, hear, report};
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::{postgres_schema, Asterisk};
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const LEASE_MS: u64 = 1_500;

/// A controller of node `ast1` on the shared store; `listen` moves its API and metrics.
fn controller_config(url: &str, listen: Option<(&str, &str)>) -> String {
    let d = state_dir();
    let d = d.display();
    let mut c = format!(
        "{}store:\n  backend: postgres\n  url: \"{url}\"\n  pepper_file: {d}/pepper\n\
cluster:\n  node: ast1\n  lease_ms: {LEASE_MS}\napi:\n  admin_token_file: {d}/admin-token\n",
        testbed_config(5038, AMI_SECRET)
    );
    if let Some((api, metrics)) = listen {
        c.push_str(&format!("  listen: {api}\nmetrics:\n  listen: {metrics}\n"));
    }
    c
}

#[test]
fn a_standby_takes_a_dead_controllers_node_and_its_call_over() {
    let ast = Asterisk::start();
    write_signals(&ast, &coded_signal(40.0, 0), &coded_signal(2.0, 0));
    write_carrier_signal(&ast, &coded_signal(40.0, 80));
    let ami = AmiClient::connect();
    let url = postgres_schema("takeover");

    // The first controller drives the node (its API and metrics elsewhere, so that the
    // standby's are the testbed's usual ones).
    let first = Handoffd::spawn(&controller_config(&url, Some(("127.0.0.1:9288", "127.0.0.1:9287"))));
    let drives = first.wait_log("node ast1: this handoffd", 10 * SEC);
    assert!(drives.is_some(), "the first handoffd took the node: {:#?}", first.log());
    assert!(first.wait_log("logged in to AMI", 10 * SEC).is_some(), "{:#?}", first.log());
    let standby = Handoffd::spawn(&controller_config(&url, None));
    let waits = standby.wait_log("standby: node ast1 is driven by", 10 * SEC);
    assert!(waits.is_some(), "the second handoffd waits as a standby: {:#?}", standby.log());
    assert!(!standby.log().iter().any(|l| l.contains("logged in to AMI")), "a standby never logs in");

    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas_hangup.xml", far_rec.port, Some(12_000));
    let (r1, r2) = (Recorder::bind("127.0.0.1"), Recorder::bind("127.0.0.2"));
    let mut data = Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", r1.port, 0, DATA_RTP);
    let mut carrier =
        Sipp::leg("carrier_leg_uac_wait.xml", "127.0.0.2", 5072, "+15550001", "2000", r2.port, 0, CARRIER_RTP);
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .unwrap_or_else(|| panic!("all three legs joined; first handoffd:\n{}", first.log().join("\n")));
    std::thread::sleep(SEC);
    assert!(!standby.log().iter().any(|l| l.contains("logged in to AMI")), "the standby stayed off the PBX");

    let t_kill = Instant::now();
    drop(first); // SIGKILL: no goodbye, the lease runs out by itself
    let took = standby.wait_log("node ast1: this handoffd", 10 * SEC).map(|_| t_kill.elapsed());
    let took = took.unwrap_or_else(|| panic!("the standby took the node: {:#?}", standby.log()));
    let line = standby.wait_log("resynchronised from Asterisk", 10 * SEC).expect("the standby resynchronises");
    let adopted = t_kill.elapsed();
    assert!(line.contains("1 running session(s) taken over"), "{line}");
    println!(
        "lease {LEASE_MS} ms: the standby held the node {} ms after the kill and had adopted the call at {} ms",
        took.as_millis(),
        adopted.as_millis()
    );
    assert!(adopted <= Duration::from_millis(LEASE_MS) + 2 * SEC, "adopted the call {adopted:?} after the kill");
    // The session's record in the shared store says which node runs it.
    let (status, stored) = api("GET", "/v1/admin/sessions", "", Some(&admin_token()));
    assert_eq!(status, 200, "{stored}");
    let live: Vec<&serde_json::Value> =
        stored.as_array().into_iter().flatten().filter(|s| s["state"] != "ended").collect();
    assert_eq!(live.len(), 1, "{stored}");
    assert_eq!(live[0]["node"], "ast1", "{stored}");

    // The far party hangs up 12 s after answering: the new controller ends the phone's legs.
    far.wait(30 * SEC).expect("far party");
    data.wait(30 * SEC).expect("the data leg gets its BYE from the standby");
    carrier.wait(30 * SEC).expect("the carrier leg gets its BYE from the standby");
    assert!(standby.log().iter().any(|l| l.contains("far party hung up")), "{:#?}", standby.log());
    let heard = hear(&far_rec.packets());
    let during = report(&heard, t_kill, t_kill + 3 * SEC);
    assert!(during.longest_gap_ms <= 120.0, "the call went on while no controller drove the node: {during:?}");
    assert!(standby.wait_log(" 0 session(s) open", 5 * SEC).is_some(), "{:#?}", standby.log());
    standby.assert_nothing_left(&ast, &ami);
}
