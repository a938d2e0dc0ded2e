//! Failover benchmark (run by `tests/bench-failover`): what the far party hears at each switch
//! when a phone's data path is really cut (nftables on loopback) and healed, over N cuts at
//! random phases — for each of handoff's modes (`alignment` = aligned, low-latency, switching:
//! res_handoff.so chooses each leg's frames inside Asterisk) and, in the same run, for the
//! stock-Asterisk way (both legs in a ConfBridge, the
//! carrier leg muted, unmuted by a controller once pjsip's `rtp_timeout=1` has hung up the dead
//! data leg). Both legs of the test phone come from one clock (`pump`), the carrier leg a set
//! offset behind with jitter; the far end's RTP is analysed by `listen` (silence where voice was
//! due, frames repeated, frames concealed, speech skipped, packets with both legs at once), for
//! failover and
//! take-back; also carrier-path cuts and random uplink loss. Prints tables, the distribution of
//! stock detection, and one JSON line per mode.
//!
//! Usage: `handoff-bench-failover [CUTS] [--offset MS] [--jitter MS] [--data-jitter MS] [--seed N]`
//! (defaults: 20 cuts, the carrier leg 80 ms behind with ±20 ms of jitter, the data leg steady;
//! `--data-jitter` gives the data leg jitter too). `HANDOFF_BENCH_STOCK_ONLY=1` skips
//! handoff, `HANDOFF_BENCH_HANDOFF_ONLY=1` skips stock, `HANDOFF_BENCH_LOSS_ONLY=1` runs the random-loss
//! calls only, `HANDOFF_BENCH_VERBOSE=1` prints each cut.

use handoff_tests::failover::{run_handoff, run_loss, run_stock, CutFigures, LossFigures, Outcome, Plan, TAKE_BACK_MS};
use handoff_tests::listen::{Switch, Talk};
use handoff_tests::pump::Timing;
use std::process::ExitCode;

/// handoff's modes measured (`alignment` in handoff.conf).
const MODES: [&str; 3] = ["aligned", "low-latency", "switching"];

/// How long each random-loss run loses packets, s.
const LOSS_SECS: u64 = 15;

struct Args {
    cuts: usize,
    offset_ms: f64,
    jitter_ms: f64,
    data_jitter_ms: f64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { cuts: 20, offset_ms: 80.0, jitter_ms: 20.0, data_jitter_ms: 0.0, seed: 14 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--offset" => a.offset_ms = num(&value("--offset")?, "--offset", 0.0, 1000.0)?,
            "--jitter" => a.jitter_ms = num(&value("--jitter")?, "--jitter", 0.0, 100.0)?,
            "--data-jitter" => a.data_jitter_ms = num(&value("--data-jitter")?, "--data-jitter", 0.0, 100.0)?,
            "--seed" => a.seed = value("--seed")?.parse().map_err(|_| "--seed: not a whole number".to_string())?,
            n => a.cuts = num(n, "CUTS", 1.0, 500.0)? as usize,
        }
    }
    Ok(a)
}

fn num(v: &str, name: &str, lo: f64, hi: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if (lo..=hi).contains(&x) => Ok(x),
        _ => Err(format!("{name}: expected a number from {lo} to {hi}, got {v:?}")),
    }
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

fn range(v: impl Iterator<Item = usize>) -> String {
    let v: Vec<usize> = v.collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("{lo}"),
        (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
        _ => "-".into(),
    }
}

fn count_nonzero(v: &[&Switch], f: impl Fn(&Switch) -> usize) -> usize {
    v.iter().filter(|s| f(s) > 0).count()
}

fn row(name: &str, switches: &[&Switch], detect: Option<&[f64]>) {
    let silence: Vec<f64> = switches.iter().map(|s| s.silence_ms).collect();
    let shift: Vec<f64> = switches.iter().map(|s| s.delay_shift_ms).collect();
    let n = switches.len();
    println!(
        "{:<30} {:>4} {:>5.0} {:>5.0} {:>5.0} ms  {:>6} ({:>2}/{n:<2}) {:>6} ({:>2}/{n:<2}) {:>6} ({:>2}/{n:<2}) {:>5} ({:>2}/{n:<2})  {:>+5.0} ms  {}",
        name,
        n,
        pct(&silence, 0.5),
        pct(&silence, 0.95),
        pct(&silence, 1.0),
        range(switches.iter().map(|s| s.repeated)),
        count_nonzero(switches, |s| s.repeated),
        range(switches.iter().map(|s| s.concealed)),
        count_nonzero(switches, |s| s.concealed),
        range(switches.iter().map(|s| s.skipped)),
        count_nonzero(switches, |s| s.skipped),
        range(switches.iter().map(|s| s.two_legs)),
        count_nonzero(switches, |s| s.two_legs),
        pct(&shift, 0.5),
        detect.map(|d| format!("{:.0} / {:.0} / {:.0} ms", pct(d, 0.5), pct(d, 0.95), pct(d, 1.0))).unwrap_or_default()
    );
}

fn header(title: &str) {
    println!("\n{title}");
    println!(
        "{:<30} {:>4} {:>20}  {:>13} {:>13} {:>13} {:>12}  {:>8}  detection p50/p95/max",
        "mode", "cuts", "silence p50/p95/max", "repeated", "concealed", "skipped", "two legs", "delay"
    );
}

fn detects(o: &Outcome) -> Vec<f64> {
    o.cuts.iter().map(|c| c.detect_ms).collect()
}

fn failovers(o: &Outcome) -> Vec<&Switch> {
    o.cuts.iter().map(|c| &c.failover).collect()
}

fn take_backs(o: &Outcome) -> Vec<&Switch> {
    o.cuts.iter().filter_map(|c| c.take_back.as_ref()).collect()
}

fn betweens(o: &Outcome) -> Vec<&Switch> {
    o.cuts.iter().filter_map(|c| c.between.as_ref()).collect()
}

/// One JSON line: failover and take-back together.
fn json(mode: &str, runs: &[&Outcome], delivered_under_loss: Option<f64>) -> String {
    let all: Vec<&Switch> = runs.iter().flat_map(|o| failovers(o).into_iter().chain(take_backs(o))).collect();
    let silence: Vec<f64> = all.iter().map(|s| s.silence_ms).collect();
    let max = |f: fn(&Switch) -> usize| all.iter().map(|s| f(s)).max().unwrap_or(0);
    let own: usize = runs.iter().map(|o| o.own_voice.0 + o.own_voice.1).sum();
    serde_json::json!({
        "mode": mode,
        "cuts": runs.iter().map(|o| o.cuts.len()).sum::<usize>(),
        "silence_p95_ms": pct(&silence, 0.95).round(),
        "repeated_max": max(|s| s.repeated),
        "concealed_max": max(|s| s.concealed),
        "skipped_max": max(|s| s.skipped),
        "two_legs_max": max(|s| s.two_legs),
        "delivered_under_loss": delivered_under_loss.map(|d| (d * 10_000.0).round() / 10_000.0),
        "own_voice_packets": own,
    })
    .to_string()
}

fn verbose(name: &str, cuts: &[CutFigures]) {
    for (i, c) in cuts.iter().enumerate() {
        println!(
            "  {name} cut {i}: detect {:.0} ms; failover {:?}; take-back {:?}; then {:?}",
            c.detect_ms, c.failover, c.take_back, c.between
        );
        println!("    heard: {}", c.trace);
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("handoff-bench-failover: {e}\nusage: handoff-bench-failover [CUTS] [--offset MS] [--jitter MS] [--data-jitter MS] [--seed N]");
            return ExitCode::from(2);
        }
    };
    let timing = Timing {
        offset_ms: args.offset_ms,
        jitter_ms: args.jitter_ms,
        data_jitter_ms: args.data_jitter_ms,
        seed: args.seed,
    };
    let plan = |talk: Talk, phase_ms: u64, alignment: &'static str| Plan {
        cuts: args.cuts,
        timing,
        talk,
        down_ms: 1000,
        up_ms: 1600,
        phase_ms,
        seed: args.seed,
        alignment: Some(alignment),
        cut_carrier: false,
    };
    println!(
        "failover benchmark: {} cuts per run, the data path cut by nftables (RTP dropped both ways) for 1 s, then healed;",
        args.cuts
    );
    println!(
        "both legs from one clock, the carrier leg {:.0} ms behind ±{:.0} ms jitter, the data leg ±{:.0} ms; cuts at random phases (seed {}).",
        args.offset_ms, args.jitter_ms, args.data_jitter_ms, args.seed
    );
    println!(
        "At the far party, per switch: silence where voice was due; frames (20 ms) repeated; frames of speech skipped;"
    );
    println!(
        "packets with both legs at once (max per switch, and in how many switches); the move of the listener's delay."
    );
    let spurts = Talk::Spurts { seed: args.seed };
    // data-path cuts, by mode: (name, mode, outcome)
    let mut data_cuts: Vec<(String, &str, Outcome)> = Vec::new();
    let mut carrier_cuts: Vec<(String, &str, Outcome)> = Vec::new();
    let mut losses: Vec<(String, &str, LossFigures)> = Vec::new();
    let mut failed = false;
    // each run tried twice: the testbed is shared, and a handoffd or a stop of another test can
    // reach this run's Asterisk
    let twice = |name: &str, p: Plan| {
        run_handoff(&p).or_else(|e| {
            eprintln!("handoff ({name}) failed, trying again: {e}");
            run_handoff(&p)
        })
    };
    let loss_only = std::env::var_os("HANDOFF_BENCH_LOSS_ONLY").is_some();
    if std::env::var_os("HANDOFF_BENCH_STOCK_ONLY").is_none() && !loss_only {
        for mode in MODES {
            let runs = [
                ("continuous", Talk::Continuous, false),
                ("talk spurts", spurts, false),
                ("carrier cut", Talk::Continuous, true),
            ];
            for (what, talk, cut_carrier) in runs {
                let name = format!("{mode}, {what}");
                match twice(&name, Plan { cut_carrier, ..plan(talk, 1000, mode) }) {
                    Ok(o) if cut_carrier => carrier_cuts.push((name, mode, o)),
                    Ok(o) => data_cuts.push((name, mode, o)),
                    Err(e) => {
                        eprintln!("handoff ({name}) failed: {e}");
                        failed = true;
                    }
                }
            }
        }
    }
    if std::env::var_os("HANDOFF_BENCH_STOCK_ONLY").is_none() {
        for mode in MODES {
            for (talk, talk_name) in [(Talk::Continuous, "continuous"), (spurts, "talk spurts")] {
                for loss in [(10, 0), (5, 5)] {
                    let name = format!("{mode}, {talk_name}, loss {}% data / {}% carrier", loss.0, loss.1);
                    match run_loss(&plan(talk, 0, mode), loss, LOSS_SECS) {
                        Ok(f) => losses.push((name, mode, f)),
                        Err(e) => {
                            eprintln!("handoff ({name}) failed: {e}");
                            failed = true;
                        }
                    }
                }
            }
        }
    }
    let stock = if std::env::var_os("HANDOFF_BENCH_HANDOFF_ONLY").is_none() && !loss_only {
        match run_stock(&plan(Talk::Continuous, 1000, "switching")) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("stock mode failed: {e}");
                failed = true;
                None
            }
        }
    } else {
        None
    };

    header("failover (data path cut)");
    for (name, _, o) in &data_cuts {
        row(name, &failovers(o), Some(&detects(o)));
    }
    if let Some(o) = &stock {
        row("stock, continuous", &failovers(o), Some(&detects(o)));
    }
    header(&format!(
        "take-back (the {:.1} s after the heal; the module takes the data leg back 500 ms after it recovers)",
        TAKE_BACK_MS as f64 / 1000.0
    ));
    for (name, _, o) in &data_cuts {
        row(name, &take_backs(o), None);
    }
    if stock.is_some() {
        println!(
            "{:<28} none: pjsip hung the data leg up; stock has no take-back (the phone would call again)",
            "stock"
        );
    }
    if !data_cuts.is_empty() {
        header(&format!(
            "no cut (from {:.1} s after a heal to 0.2 s before the next cut): anything here is a switch nobody asked for",
            TAKE_BACK_MS as f64 / 1000.0
        ));
        for (name, _, o) in &data_cuts {
            row(name, &betweens(o), None);
        }
    }
    if !carrier_cuts.is_empty() {
        header("carrier path cut (aligned: the leg that feeds the mix dies): failover onto the data leg");
        for (name, _, o) in &carrier_cuts {
            row(name, &failovers(o), Some(&detects(o)));
        }
        header("carrier path healed: take-back");
        for (name, _, o) in &carrier_cuts {
            row(name, &take_backs(o), None);
        }
    }
    if !losses.is_empty() {
        println!(
            "\nrandom loss on the phone's uplink ({LOSS_SECS} s, nftables numgen random, each leg independently):"
        );
        println!(
            "{:<55} {:>10} {:>9}  {:>8} {:>9} {:>8} {:>9} {:>8}",
            "mode", "delivered", "of", "repeated", "concealed", "skipped", "two legs", "silence"
        );
        for (name, _, f) in &losses {
            println!(
                "{:<55} {:>9.2}% {:>9}  {:>8} {:>9} {:>8} {:>9} {:>5.0} ms",
                name,
                100.0 * f.delivered.0 as f64 / f.delivered.1.max(1) as f64,
                f.delivered.1,
                f.heard.repeated,
                f.heard.concealed,
                f.heard.skipped,
                f.heard.two_legs,
                f.heard.silence_ms
            );
        }
    }
    println!("\ndetection: handoff = DetectedMs − LastFrameMs of HandoffLegStalled; stock = cut → pjsip hangs the data leg up");
    if let Some(o) = &stock {
        let mut d = detects(o);
        d.sort_by(|a, b| a.total_cmp(b));
        println!("stock detection, sorted (ms): {}", d.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" "));
        let mut buckets = [0usize; 9];
        for x in &d {
            buckets[((x / 250.0) as usize).min(8)] += 1;
        }
        let hist: Vec<String> = buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| if i == 8 { format!(">=2000: {n}") } else { format!("{}-{}: {n}", i * 250, i * 250 + 250) })
            .collect();
        println!("stock detection by 250 ms: {}", hist.join(", "));
    }
    for (name, _, o) in data_cuts.iter().chain(&carrier_cuts) {
        if let Some((offset, later)) = &o.aligned {
            println!("{name}: the module measured the offset between the legs: {offset:.1} ms, the {later} leg later");
        }
        if !o.unaligned.is_empty() {
            println!("{name}: not aligned: {}", o.unaligned.join("; "));
        }
        println!(
            "{name}: the module reported {} switches to the carrier and {} to the data leg for {} cuts",
            o.switches.0,
            o.switches.1,
            o.cuts.len()
        );
    }
    println!("\nthe phone's own voice sent back to its legs (packets with its signal / all packets sent to the legs):");
    for (name, _, o) in data_cuts.iter().chain(&carrier_cuts) {
        println!("  {name}: data leg {}, carrier leg {} of {}", o.own_voice.0, o.own_voice.1, o.leg_packets);
    }
    if let Some(o) = &stock {
        println!("  stock: data leg {}, carrier leg {} of {}", o.own_voice.0, o.own_voice.1, o.leg_packets);
    }
    if std::env::var_os("HANDOFF_BENCH_VERBOSE").is_some() {
        println!();
        for (name, _, o) in data_cuts.iter().chain(&carrier_cuts) {
            verbose(name, &o.cuts);
        }
        if let Some(o) = &stock {
            verbose("stock", &o.cuts);
        }
    }
    println!("\nJSON: data-path cuts (failover and take-back together); delivered_under_loss: the worst loss run of the mode");
    for mode in MODES {
        let outcomes: Vec<&Outcome> = data_cuts.iter().filter(|(_, m, _)| *m == mode).map(|(_, _, o)| o).collect();
        if !outcomes.is_empty() {
            let delivered = losses
                .iter()
                .filter(|(_, m, _)| *m == mode)
                .map(|(_, _, f)| f.delivered.0 as f64 / f.delivered.1.max(1) as f64)
                .min_by(|a, b| a.total_cmp(b));
            println!("{}", json(mode, &outcomes, delivered));
        }
    }
    if let Some(o) = &stock {
        println!("{}", json("stock", &[o], None));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
