//! Move benchmark (run by `tests/bench-moves`): how long a call takes to move to another
//! device, server side, on the real Asterisk 22 — from the moment the new device's INVITE
//! with its ticket reaches Asterisk (its `Newchannel`) until the new leg is in the conference
//! (`ConfbridgeJoin`) and the old device's leg is gone (`Hangup`), by Asterisk's own event
//! timestamps. handoff: the ticket is spent and checked in the store, the old device barred
//! (both flushed to disk) before the leg is let in. Peer, in the same run: the stock-Asterisk
//! way with no authentication at all (the new leg joins the ConfBridge straight from the dial
//! plan; an AMI client hangs the old leg up when it sees the join).
//! Usage: `handoff-bench-moves [MOVES]` (default 50).

use handoff::ami::{Action, Event};
use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::handoffd::{api, Handoffd};
use handoff_tests::rtp::Recorder;
use handoff_tests::sipp::{write_signals, write_tablet_signal, Sipp};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::process::ExitCode;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const PIN: &str = "2468";

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

fn ts(e: &Event) -> f64 {
    e.headers.get("Timestamp").and_then(|t| t.parse().ok()).unwrap_or(f64::NAN)
}

fn uid(e: &Event) -> String {
    e.headers.get("Uniqueid").unwrap_or("").to_string()
}

/// One move as Asterisk saw it: (total ms, the new leg's arrival → join ms), and the new leg.
fn measure(ami: &AmiClient, skip: usize, endpoint: &str, old: &str) -> Result<(f64, f64, String), String> {
    let prefix = format!("PJSIP/{endpoint}-");
    let new = wait_for(10 * SEC, || {
        ami.events()
            .into_iter()
            .skip(skip)
            .find(|e| e.name == "Newchannel" && e.headers.get("Channel").is_some_and(|c| c.starts_with(&prefix)))
    })
    .ok_or(format!("no new channel of {endpoint}"))?;
    let new_uid = uid(&new);
    let joined = wait_for(10 * SEC, || {
        ami.events().into_iter().skip(skip).find(|e| e.name == "ConfbridgeJoin" && uid(e) == new_uid)
    })
    .ok_or(format!("{endpoint}'s leg never joined"))?;
    let gone = wait_for(10 * SEC, || ami.events().into_iter().skip(skip).find(|e| e.name == "Hangup" && uid(e) == old))
        .ok_or(format!("the old leg {old} was never hung up"))?;
    let total = (ts(&joined).max(ts(&gone)) - ts(&new)) * 1000.0;
    Ok((total, (ts(&joined) - ts(&new)) * 1000.0, new_uid))
}

fn far_party(rec_port: u16) -> Sipp {
    let port = rec_port.to_string();
    Sipp::spawn(
        "far party",
        "far_uas.xml",
        &["-i", "127.0.0.3", "-p", "5060", "-mi", "127.0.0.3", "-key", "rec_port", &port, "-timeout", "600s"],
    )
}

fn first_join(ami: &AmiClient, endpoint: &str) -> Result<String, String> {
    let prefix = format!("PJSIP/{endpoint}-");
    wait_for(15 * SEC, || {
        ami.events()
            .into_iter()
            .find(|e| e.name == "ConfbridgeJoin" && e.headers.get("Channel").is_some_and(|c| c.starts_with(&prefix)))
    })
    .map(|e| uid(&e))
    .ok_or(format!("{endpoint} never joined"))
}

/// handoff: one call moved back and forth between Alice's phone and tablet.
fn run_handoff(moves: usize) -> Result<Vec<(f64, f64)>, String> {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    write_tablet_signal(&ast, &tone(660.0, 2.0));
    let ami = AmiClient::connect();
    let handoffd = Handoffd::connected_with(&ast, "moves:\n  bar_s: 1\n");
    let add = ["device", "add", "alice-tablet", "--user", "alice", "--endpoint", "alice-tablet"];
    let (code, out) = handoffd.ctl(&add, "");
    if code != 0 && !out.contains("already exists") {
        return Err(format!("handoffctl device add: {out}"));
    }
    let (code, out) = handoffd.ctl(&["pin", "set", "alice"], &format!("{PIN}\n"));
    if code != 0 {
        return Err(format!("handoffctl pin set: {out}"));
    }
    let far_rec = Recorder::bind("127.0.0.3");
    let _far = far_party(far_rec.port);
    let rec = Recorder::bind("127.0.0.1");
    let _phone =
        Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-app", "2000", rec.port, 0, (30000, 30099));
    let mut old = first_join(&ami, "alice-app")?;
    std::thread::sleep(SEC);
    let mut legs = Vec::new();
    let mut results = Vec::new();
    for i in 0..moves {
        let (device, endpoint) =
            if i % 2 == 0 { ("alice-tablet", "alice-tablet") } else { ("alice-phone", "alice-app") };
        let (status, granted) =
            api("POST", "/v1/moves", &format!(r#"{{"user":"alice","device":"{device}","pin":"{PIN}"}}"#), None);
        if status != 201 {
            return Err(format!("move {i}: ticket refused: {status} {granted}"));
        }
        let ticket = granted["ticket"].as_str().unwrap_or("").to_string();
        let skip = ami.events().len();
        let lo = 36000 + (i as u16 % 40) * 50;
        legs.push(Sipp::leg_with(
            "move_ticket_uac_wait.xml",
            "127.0.0.1",
            5100 + (i as u16 % 200),
            endpoint,
            "move",
            rec.port,
            0,
            (lo, lo + 49),
            &[("ticket", &ticket)],
        ));
        let (total, join, new) = measure(&ami, skip, endpoint, &old).map_err(|e| {
            format!(
                "move {i}: {e}; handoffd log tail:\n{}",
                handoffd.log().iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n")
            )
        })?;
        results.push((total, join));
        old = new;
        // The device the call left is barred for 1 s.
        std::thread::sleep(Duration::from_millis(1100));
        if legs.len() > 4 {
            legs.remove(0);
        }
    }
    ami.action(Action::new("Hangup").header("Channel", "/^PJSIP/"));
    Ok(results)
}

/// Stock Asterisk: the same call in a plain ConfBridge; the new leg joins straight from the dial
/// plan and this client hangs the old one up as soon as it sees the join.
fn run_stock(moves: usize) -> Result<Vec<(f64, f64)>, String> {
    let ast = Asterisk::start();
    write_signals(&ast, &tone(440.0, 2.0), &tone(1000.0, 2.0));
    let ami = AmiClient::connect();
    let far_rec = Recorder::bind("127.0.0.3");
    let _far = far_party(far_rec.port);
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
    let rec = Recorder::bind("127.0.0.1");
    let _a = Sipp::leg("data_leg_uac_wait.xml", "127.0.0.1", 5071, "alice-stock", "2000", rec.port, 0, (30000, 30099));
    let mut old = first_join(&ami, "alice-stock")?;
    std::thread::sleep(SEC);
    let mut legs = Vec::new();
    let mut results = Vec::new();
    for i in 0..moves {
        let skip = ami.events().len();
        let lo = 36000 + (i as u16 % 40) * 50;
        legs.push(Sipp::leg(
            "data_leg_uac_wait.xml",
            "127.0.0.1",
            5100 + (i as u16 % 200),
            "alice-stock",
            "2000",
            rec.port,
            0,
            (lo, lo + 49),
        ));
        let joined = wait_for(10 * SEC, || {
            ami.events().into_iter().skip(skip).find(|e| {
                e.name == "ConfbridgeJoin"
                    && e.headers.get("Channel").is_some_and(|c| c.starts_with("PJSIP/alice-stock-"))
                    && uid(e) != old
            })
        })
        .ok_or(format!("stock move {i}: the new leg never joined"))?;
        let old_channel = ami
            .events()
            .into_iter()
            .find(|e| e.name == "Newchannel" && uid(e) == old)
            .and_then(|e| e.headers.get("Channel").map(str::to_string))
            .ok_or("old channel name")?;
        ami.action(Action::new("Hangup").header("Channel", &old_channel).header("Cause", "26"));
        let (total, join, new) = measure(&ami, skip, "alice-stock", &old)?;
        debug_assert_eq!(new, uid(&joined));
        results.push((total, join));
        old = new;
        std::thread::sleep(Duration::from_millis(300));
        if legs.len() > 4 {
            legs.remove(0);
        }
    }
    ami.action(Action::new("Hangup").header("Channel", "/^PJSIP/"));
    Ok(results)
}

fn main() -> ExitCode {
    let moves: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    println!("move benchmark: {moves} moves per mode on one call; latency = from the new device's INVITE reaching");
    println!("Asterisk (Newchannel) to its leg in the conference (ConfbridgeJoin) and the old leg gone (Hangup),");
    println!("by Asterisk's event timestamps (server side)\n");
    let handoff = match run_handoff(moves) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("handoff mode failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stock = match run_stock(moves) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stock mode failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<58} {:>5} {:>9} {:>9} {:>9} {:>13}", "mode", "moves", "p50", "p95", "max", "join p95");
    for (name, r) in [
        ("handoff (ticket checked + spent in sled, old device barred)", &handoff),
        ("stock (ConfBridge from the dial plan, no auth; AMI hangup)", &stock),
    ] {
        let total: Vec<f64> = r.iter().map(|x| x.0).collect();
        let join: Vec<f64> = r.iter().map(|x| x.1).collect();
        println!(
            "{name:<58} {:>5} {:>6.0} ms {:>6.0} ms {:>6.0} ms {:>10.0} ms",
            r.len(),
            pct(&total, 0.5),
            pct(&total, 0.95),
            pct(&total, 1.0),
            pct(&join, 0.95)
        );
    }
    let h95 = pct(&handoff.iter().map(|x| x.0).collect::<Vec<_>>(), 0.95);
    let s95 = pct(&stock.iter().map(|x| x.0).collect::<Vec<_>>(), 0.95);
    println!(
        "\nratio handoff / stock p95: {:.2}x; target p95 <= 150 ms: {}",
        h95 / s95.max(1.0),
        if h95 <= 150.0 { "met" } else { "NOT met" }
    );
    if h95 <= 150.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
