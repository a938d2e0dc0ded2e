//! The failover driver shared by `tests/tests/listener.rs` (a few cuts, in CI) and
//! `handoff-bench-failover` (many): a test phone whose two legs are driven from one clock by
//! [`crate::pump`] (the carrier leg a controlled offset behind, with jitter) sends the
//! frame-numbered signal of [`crate::listen`]; the data path is cut by nftables ([`crate::netcut`])
//! and healed, again and again, at random phases; the far party's received RTP is analysed per
//! switch (failover at the cut, take-back after the heal).
//!
//! Two ways of carrying the phone's legs are driven:
//! - [`run_handoff`]: res_handoff.so and handoffd, one call, every cut in it;
//! - [`run_stock`]: the stock-Asterisk way (both legs in a plain ConfBridge, the carrier leg
//!   muted and unmuted by a "controller" once pjsip's `rtp_timeout=1` has hung up the dead data
//!   leg); one fresh Asterisk and call per cut, since the data leg is gone after each. Stock has no
//!   take-back: the data leg was hung up.

use crate::ami::AmiClient;
use crate::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use crate::listen::{analyse, hear, trace, with_signal, Rng, Script, Switch, Talk};
use crate::netcut::Cut;
use crate::pump::{forget_media_address, media_address, LegSocket, Pump, Timing};
use crate::rtp::Recorder;
use crate::sipp::{write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use crate::testbed::Asterisk;
use crate::wait_for;
use handoff::ami::{Action, Event};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
/// SIPp's own RTP ports for pump legs: it sends no media, but must not take the pump's ports.
const SIPP_DATA_PORTS: (u16, u16) = (33000, 33499);
const SIPP_CARRIER_PORTS: (u16, u16) = (33500, 33999);
const DATA_MEDIA: &str = "pump_data.media";
const CARRIER_MEDIA: &str = "pump_carrier.media";

/// What to do.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub cuts: usize,
    pub timing: Timing,
    pub talk: Talk,
    /// How long each cut lasts, ms.
    pub down_ms: u64,
    /// How long the path stays up after a heal before the next cut, ms (the module takes the
    /// data leg back about 500 ms after it recovers).
    pub up_ms: u64,
    /// Each cut comes after a further random 0..`phase_ms` (cuts at random phases of the frame
    /// clock, of the talk spurts and of pjsip's whole-second `rtp_timeout`).
    pub phase_ms: u64,
    pub seed: u64,
    /// handoff.conf's `alignment` for the run (`aligned`, `low-latency`, `switching`; `rule:MODE`:
    /// handoffd.yaml's `sessions.alignment` instead); None: as shipped.
    pub alignment: Option<&'static str>,
    /// Cut the carrier path instead of the data path (handoff only).
    pub cut_carrier: bool,
}

/// The take-back window after a heal, ms: the module takes the data leg back 500 ms after it
/// recovers (its `recover_time`), plus detection and margin.
pub const TAKE_BACK_MS: u64 = 1200;

/// What one cut did.
#[derive(Clone, Debug)]
pub struct CutFigures {
    /// What the far party heard from the cut to the heal.
    pub failover: Switch,
    /// What it heard from the heal to [`TAKE_BACK_MS`] after it (none in stock: the data leg was
    /// hung up).
    pub take_back: Option<Switch>,
    /// What it heard from then to the next cut: no cut, so any switch there is a spurious one
    /// (none in stock).
    pub between: Option<Switch>,
    /// From the data leg's last frame to its stall being reported (handoff), or from the cut
    /// to pjsip hanging the data leg up (stock), ms.
    pub detect_ms: f64,
    /// The frames heard around the cut and the heal, as runs ([`crate::listen::trace`]).
    pub trace: String,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub cuts: Vec<CutFigures>,
    /// Packets Asterisk sent the data leg / the carrier leg that carried the phone's own signal.
    pub own_voice: (usize, usize),
    /// Packets Asterisk sent the two legs in all.
    pub leg_packets: usize,
    /// `HandoffLegSwitched` events reported (handoff only), to the carrier / to the data leg.
    pub switches: (usize, usize),
    /// The offset between the legs the module measured (`HandoffAlignment`, Status aligned: the
    /// last one), ms, and the leg it found later; None if the legs were never aligned.
    pub aligned: Option<(f64, String)>,
    /// `HandoffAlignment` events with Status switching (the reasons).
    pub unaligned: Vec<String>,
    /// handoffd's metrics at the end of the call (handoff only).
    pub metrics: String,
}

/// Random phases and the whole run's length, fixed in advance (the data leg hangs up at the end).
fn phases(plan: &Plan) -> Vec<u64> {
    let mut rng = Rng::new(plan.seed ^ 0x5eed);
    (0..plan.cuts).map(|_| rng.between(0, plan.phase_ms as usize) as u64).collect()
}

fn header_ms(e: &Event, k: &str) -> f64 {
    e.headers.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN)
}

/// The number of events seen so far, and the first one after them that matches.
fn next_event(ami: &AmiClient, skip: usize, limit: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
    wait_for(limit, || ami.events().into_iter().skip(skip).find(|e| pred(e)))
}

fn own_voice(pump: &Pump) -> ((usize, usize), usize) {
    let (d, c) = (pump.data_received(), pump.carrier_received());
    ((with_signal(&hear(&d)), with_signal(&hear(&c))), d.len() + c.len())
}

/// The far party answers with silence (its own voice is not under test) at 127.0.0.3.
fn far_party(ast: &Asterisk) -> (Recorder, Sipp) {
    write_signals(ast, &[0xff; 1600], &[0xffu8; 16000]);
    let rec = Recorder::bind("127.0.0.3");
    let far = Sipp::far_party("far_uas.xml", rec.port, None);
    (rec, far)
}

/// The phone's two legs: SIPp signalling from 127.0.0.1 (as `data_user`, scenario
/// `data_scenario`, hanging up after `call_ms` if it does) and from `carrier_ip` (caller ID
/// +15550001, waits for its BYE), both dialling 2000, with the pump's sockets for their media
/// (`plan`'s talk and timing, `script_s` seconds of signal). Returns the legs' SIPp and the pump,
/// started once both calls are answered.
pub fn phone(
    ast: &Asterisk,
    plan: &Plan,
    script_s: f64,
    data_scenario: &str,
    data_user: &str,
    carrier_ip: &str,
    call_ms: u64,
) -> Result<(Sipp, Sipp, Pump), String> {
    let data = LegSocket::bind("127.0.0.1", DATA_RTP);
    let carrier = LegSocket::bind(carrier_ip, CARRIER_RTP);
    forget_media_address(ast, DATA_MEDIA);
    forget_media_address(ast, CARRIER_MEDIA);
    let data_sipp = Sipp::leg_with(
        data_scenario,
        "127.0.0.1",
        5071,
        data_user,
        "2000",
        data.port,
        call_ms,
        SIPP_DATA_PORTS,
        &[("media_file", DATA_MEDIA)],
    );
    let carrier_sipp = Sipp::leg_with(
        "pump_carrier_uac_wait.xml",
        carrier_ip,
        5072,
        "+15550001",
        "2000",
        carrier.port,
        0,
        SIPP_CARRIER_PORTS,
        &[("media_file", CARRIER_MEDIA)],
    );
    let data_to = media_address(ast, DATA_MEDIA, 10 * SEC)?;
    let carrier_to = media_address(ast, CARRIER_MEDIA, 10 * SEC)?;
    let pump = Pump::start(data, data_to, carrier, carrier_to, Script::new(plan.talk, script_s), plan.timing);
    Ok((data_sipp, carrier_sipp, pump))
}

/// Where a plan's `alignment` is set: `rule:MODE` is handoffd.yaml's `sessions.alignment` (sent
/// with every HandoffAssign; handoff.conf as shipped), any other value handoff.conf's.
fn rule_alignment(plan: &Plan) -> Option<&'static str> {
    plan.alignment.and_then(|a| a.strip_prefix("rule:"))
}

/// The mode the module runs the plan's groups in (None: as shipped).
fn mode(plan: &Plan) -> Option<&'static str> {
    rule_alignment(plan).or(plan.alignment)
}

/// Sets handoff.conf's `alignment` (as shipped for None and for a session rule).
fn set_alignment(ast: &Asterisk, plan: &Plan) -> Result<(), String> {
    match plan.alignment {
        Some(mode) if rule_alignment(plan).is_none() => ast.set_alignment(mode),
        _ => Ok(()),
    }
}

/// handoffd for the plan: with `sessions.alignment` when the plan sets it as a session rule.
fn controller(ast: &Asterisk, plan: &Plan) -> Handoffd {
    match rule_alignment(plan) {
        Some(mode) => Handoffd::connected_with_config(
            ast,
            &testbed_config(5038, AMI_SECRET).replace("sessions:\n", &format!("sessions:\n  alignment: {mode}\n")),
        ),
        None => Handoffd::connected(ast),
    }
}

/// A call of the test phone through handoff: a fresh Asterisk (with `plan`'s alignment), handoffd,
/// the far party and the phone's two legs driven by the pump, all three joined.
struct PumpCall {
    ast: Asterisk,
    ami: AmiClient,
    handoffd: Handoffd,
    far_rec: Recorder,
    far: Sipp,
    data: Sipp,
    carrier: Sipp,
    pump: Pump,
}

impl PumpCall {
    /// The data leg hangs up after `call_ms`; the pump has `script_s` s of signal.
    fn start(plan: &Plan, call_ms: u64, script_s: f64) -> Result<Self, String> {
        let ast = Asterisk::start();
        set_alignment(&ast, plan)?;
        let ami = AmiClient::connect();
        let handoffd = controller(&ast, plan);
        let log = || format!("handoffd log:\n{}", handoffd.log().join("\n"));
        let (far_rec, far) = far_party(&ast);
        let (data, carrier, pump) = phone(&ast, plan, script_s, "pump_app_uac.xml", "alice-app", "127.0.0.2", call_ms)
            .map_err(|e| format!("{e}\n{}", log()))?;
        wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
            .ok_or_else(|| format!("the three legs did not join\n{}", log()))?;
        Ok(Self { ast, ami, handoffd, far_rec, far, data, carrier, pump })
    }
}

/// What random loss on the phone's uplink did to what the far party heard.
#[derive(Clone, Debug)]
pub struct LossFigures {
    /// Voiced frames heard at least once / voiced frames sent, over the lossy window.
    pub delivered: (usize, usize),
    /// The window's repeats, skips, two legs at once and silence.
    pub heard: Switch,
}

/// handoff: one call (`plan`'s timing and alignment), then `secs` s of random loss on the
/// phone's uplink as `loss` says (% of the data leg's packets, % of the carrier leg's, each at
/// random and independently).
pub fn run_loss(plan: &Plan, loss: (u32, u32), secs: u64) -> Result<LossFigures, String> {
    let call_ms = 6000 + secs * 1000;
    let script_s = call_ms as f64 / 1000.0 + 10.0;
    let PumpCall { ast, ami, handoffd, far_rec, mut far, mut data, mut carrier, pump } =
        PumpCall::start(plan, call_ms, script_s)?;
    // the module measures the legs' offset in the first seconds
    std::thread::sleep(3 * SEC);
    let from = Instant::now();
    let lossy = Cut::loss(&[(DATA_RTP, loss.0), (CARRIER_RTP, loss.1)]);
    std::thread::sleep(Duration::from_secs(secs));
    let to = Instant::now();
    lossy.heal();
    data.wait(Duration::from_millis(call_ms) + 30 * SEC)?;
    carrier.wait(30 * SEC)?;
    far.wait(30 * SEC)?;
    let t0 = pump.t0;
    drop(pump);
    handoffd.assert_nothing_left(&ast, &ami);
    let script = Script::new(plan.talk, script_s);
    let heard = hear(&far_rec.packets());
    // the far end hears a packet a few ms after it was sent: the window starts a little late
    let from = from + Duration::from_millis(300);
    Ok(LossFigures {
        delivered: crate::listen::delivered(&heard, &script, t0, from, to),
        heard: analyse(&heard, &script, t0, from, to),
    })
}

/// Waits until the legs are aligned: with `alignment = aligned`, until the later leg feeds the
/// mix (it takes over in a pause of the earlier one, or after 2 s), and a second more: the later
/// leg first drops the frames the mix already had from the earlier one (the offset, once), which
/// is the handover, not a cut. With `low-latency`, until the offset is measured (the data leg
/// keeps feeding the mix).
fn wait_for_handover(plan: &Plan, ast: &Asterisk) -> Result<(), String> {
    std::thread::sleep(2 * SEC);
    let (mode, feeding) = match mode(plan) {
        Some("switching") => return Ok(()),
        Some("low-latency") => ("low-latency", "data"),
        _ => ("aligned", if plan.timing.offset_ms >= 0.0 { "carrier" } else { "data" }),
    };
    wait_for(15 * SEC, || {
        let status = ast.cli("handoff show status");
        (status.contains(&format!("align={mode} ")) && status.contains(&format!("active={feeding}"))).then_some(())
    })
    .ok_or_else(|| format!("the legs were not aligned: {}", ast.cli("handoff show status")))?;
    std::thread::sleep(SEC);
    Ok(())
}

/// What the far party heard while every leg of the phone was cut off, and after.
#[derive(Clone, Debug)]
pub struct OutageFigures {
    /// From the cut to the first packet of the reconnecting tone, ms (None: no tone).
    pub tone_from_ms: Option<f64>,
    /// Packets of the tone heard before the heal.
    pub tone_packets: usize,
    /// From the heal to the first packet with the test signal, ms (None: the voice never came
    /// back).
    pub voice_back_ms: Option<f64>,
    /// Packets of the tone heard once the voice was back.
    pub tone_after_voice: usize,
    /// Packets with the test signal heard between the cut and the heal (the phone was cut off).
    pub voice_while_cut: usize,
    /// The module's `HandoffReconnectTone` events: started, stopped.
    pub events: (usize, usize),
    /// `handoff show status` just before the heal.
    pub status: String,
}

/// A packet of the reconnecting tone (425 Hz holding most of its energy).
fn is_tone(payload: &[u8]) -> bool {
    let samples: Vec<i16> = payload.iter().copied().map(crate::audio::ulaw_decode).collect();
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    rms > 500.0 && crate::audio::tone_share(&samples, 425.0) > 0.5
}

/// handoff: one call, then every leg of the phone cut off for `down_ms` and healed once.
pub fn run_outage(plan: &Plan, down_ms: u64) -> Result<OutageFigures, String> {
    let call_ms = 8000 + down_ms + 3000;
    let script_s = call_ms as f64 / 1000.0 + 10.0;
    let PumpCall { ast, ami, handoffd, far_rec, mut far, mut data, mut carrier, pump } =
        PumpCall::start(plan, call_ms, script_s)?;
    wait_for_handover(plan, &ast)?;
    let cut_at = Instant::now();
    let cut = Cut::udp_port_ranges(&[DATA_RTP, CARRIER_RTP]);
    std::thread::sleep(Duration::from_millis(down_ms));
    let status = ast.cli("handoff show status");
    let heal_at = Instant::now();
    cut.heal();
    data.wait(Duration::from_millis(call_ms) + 30 * SEC)?;
    carrier.wait(30 * SEC)?;
    far.wait(30 * SEC)?;
    drop(pump);
    handoffd.assert_nothing_left(&ast, &ami);
    let packets: Vec<_> = far_rec.packets().into_iter().filter(|p| p.payload_type == 0).collect();
    let heard = hear(&packets);
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
    let tone: Vec<Instant> = packets.iter().filter(|p| p.at > cut_at && is_tone(&p.payload)).map(|p| p.at).collect();
    let voice = |h: &&crate::listen::Heard| h.sound != crate::listen::Sound::Silent;
    let voice_back = heard.iter().filter(|h| h.at > heal_at).find(voice).map(|h| h.at);
    // the far end hears the last packets sent before the cut a few ms after it
    let settled = cut_at + Duration::from_millis(200);
    let started = |s: &str| {
        ami.events().iter().filter(|e| e.name == "HandoffReconnectTone" && e.headers.get("Status") == Some(s)).count()
    };
    Ok(OutageFigures {
        tone_from_ms: tone.first().map(|t| ms(cut_at, *t)),
        tone_packets: tone.iter().filter(|t| **t < heal_at).count(),
        voice_back_ms: voice_back.map(|t| ms(heal_at, t)),
        tone_after_voice: voice_back.map_or(0, |v| tone.iter().filter(|t| **t > v).count()),
        voice_while_cut: heard.iter().filter(|h| h.at > settled && h.at < heal_at).filter(voice).count(),
        events: (started("started"), started("stopped")),
        status,
    })
}

/// handoff: one call, the data path (or the carrier path) cut and healed `plan.cuts` times.
pub fn run_handoff(plan: &Plan) -> Result<Outcome, String> {
    let phases = phases(plan);
    let run_ms: u64 = phases.iter().map(|p| p + plan.down_ms + plan.up_ms).sum();
    let call_ms = 4000 + run_ms + 1000;
    let script_s = call_ms as f64 / 1000.0 + 10.0;
    let PumpCall { ast, ami, handoffd, far_rec, mut far, mut data, mut carrier, pump } =
        PumpCall::start(plan, call_ms, script_s)?;
    let log = || format!("handoffd log:\n{}", handoffd.log().join("\n"));
    wait_for_handover(plan, &ast).map_err(|e| format!("{e}\n{}", log()))?;
    let mut marks = Vec::new(); // (cut, heal, stall)
    for (i, phase) in phases.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(*phase));
        let seen = ami.events().len();
        let cut_at = Instant::now();
        let (ports, path) = if plan.cut_carrier { (CARRIER_RTP, "carrier") } else { (DATA_RTP, "data") };
        let cut = Cut::udp_ports(ports.0, ports.1);
        let stalled =
            next_event(&ami, seen, 5 * SEC, |e| e.name == "HandoffLegStalled" && e.headers.get("Path") == Some(path))
                .ok_or_else(|| format!("cut {i}: no stall of the {path} leg reported"))?;
        std::thread::sleep(Duration::from_millis(plan.down_ms).saturating_sub(cut_at.elapsed()));
        let heal_at = Instant::now();
        cut.heal();
        std::thread::sleep(Duration::from_millis(plan.up_ms));
        marks.push((cut_at, heal_at, header_ms(&stalled, "DetectedMs") - header_ms(&stalled, "LastFrameMs")));
    }
    data.wait(Duration::from_millis(call_ms) + 30 * SEC)?;
    carrier.wait(30 * SEC)?;
    far.wait(30 * SEC)?;
    let (own, leg_packets) = own_voice(&pump);
    let t0 = pump.t0;
    drop(pump);
    handoffd.assert_nothing_left(&ast, &ami);
    let metrics = handoffd.metrics();
    let events = ami.events();
    let switched =
        |to: &str| events.iter().filter(|e| e.name == "HandoffLegSwitched" && e.headers.get("To") == Some(to)).count();
    let script = Script::new(plan.talk, script_s);
    let heard = hear(&far_rec.packets());
    let mut cuts = Vec::new();
    for (i, (cut_at, heal_at, detect_ms)) in marks.iter().enumerate() {
        let next = marks.get(i + 1).map(|m| m.0).unwrap_or(*heal_at + Duration::from_millis(plan.up_ms));
        let margin = Duration::from_millis(200);
        let back_end = *heal_at + Duration::from_millis(TAKE_BACK_MS);
        let next = next.checked_sub(margin).unwrap_or(next).max(back_end);
        cuts.push(CutFigures {
            failover: analyse(&heard, &script, t0, *cut_at - margin, *heal_at),
            take_back: Some(analyse(&heard, &script, t0, *heal_at, back_end)),
            between: Some(analyse(&heard, &script, t0, back_end, next)),
            detect_ms: *detect_ms,
            trace: format!(
                "cut: {} || heal: {} || then: {}",
                trace(&heard, t0, *cut_at - margin, *heal_at),
                trace(&heard, t0, *heal_at, back_end),
                trace(&heard, t0, back_end, next)
            ),
        });
    }
    let alignment = |status: &str| {
        events
            .iter()
            .filter(|e| e.name == "HandoffAlignment" && e.headers.get("Status") == Some(status))
            .cloned()
            .collect::<Vec<_>>()
    };
    let aligned = alignment("aligned")
        .last()
        .map(|e| (header_ms(e, "OffsetMs"), e.headers.get("Later").unwrap_or("").to_string()));
    let unaligned = alignment("switching").iter().map(|e| e.headers.get("Reason").unwrap_or("").to_string()).collect();
    Ok(Outcome {
        cuts,
        own_voice: own,
        leg_packets,
        switches: (switched("carrier"), switched("data")),
        aligned,
        unaligned,
        metrics,
    })
}

/// Stock Asterisk: per cut a fresh Asterisk, the far party and the phone's legs in a plain
/// ConfBridge, the carrier leg muted until pjsip has hung up the dead data leg.
pub fn run_stock(plan: &Plan) -> Result<Outcome, String> {
    let phases = phases(plan);
    let mut out = Outcome {
        cuts: Vec::new(),
        own_voice: (0, 0),
        leg_packets: 0,
        switches: (0, 0),
        aligned: None,
        unaligned: Vec::new(),
        metrics: String::new(),
    };
    for (i, phase) in phases.iter().enumerate() {
        // A cut is tried up to three times: the testbed is shared, and another test's stop may
        // take this cut's Asterisk down under it (seen: "Asterisk is shutting down").
        let mut tries = 0;
        let (figures, own, packets) = loop {
            tries += 1;
            match stock_cut(plan, *phase) {
                Ok(r) => break r,
                Err(e) if tries < 3 => eprintln!("stock cut {i}, try {tries}: {e}; trying again"),
                Err(e) => return Err(format!("stock cut {i}: {e}")),
            }
        };
        out.cuts.push(figures);
        out.own_voice.0 += own.0;
        out.own_voice.1 += own.1;
        out.leg_packets += packets;
    }
    Ok(out)
}

fn stock_cut(plan: &Plan, phase: u64) -> Result<(CutFigures, (usize, usize), usize), String> {
    let ast = Asterisk::start();
    let ami = AmiClient::connect();
    let (far_rec, mut far) = far_party(&ast);
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
    let (mut data, mut carrier, pump) =
        phone(&ast, plan, 60.0, "pump_app_uac_wait.xml", "alice-stock", "127.0.0.4", 0)?;
    wait_for(10 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() >= 3).then_some(()))
        .ok_or("legs did not join")?;
    let carrier_channel = ami
        .events()
        .into_iter()
        .find(|e| e.name == "ConfbridgeJoin" && e.headers.get("Channel").is_some_and(|c| c.contains("carrier-stock")))
        .and_then(|e| e.headers.get("Channel").map(str::to_string))
        .ok_or("no carrier channel")?;
    std::thread::sleep(Duration::from_millis(1500 + phase));
    let cut_at = Instant::now();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    ami.wait_event(10 * SEC, |e| {
        e.name == "Hangup" && e.headers.get("Channel").is_some_and(|c| c.contains("alice-stock"))
    })
    .ok_or("the dead data leg was never hung up")?;
    let detect_ms = cut_at.elapsed().as_secs_f64() * 1000.0;
    let (r, _) = ami.action(
        Action::new("ConfbridgeUnmute").header("Conference", "stock").header("Channel", carrier_channel.as_str()),
    );
    if r.headers.get("Response") != Some("Success") {
        return Err(format!("unmute: {r:?}"));
    }
    std::thread::sleep(Duration::from_millis(800));
    let end = Instant::now();
    cut.heal();
    ami.action(Action::new("Hangup").header("Channel", "/^PJSIP/"));
    data.wait(20 * SEC)?;
    carrier.wait(20 * SEC)?;
    far.wait(20 * SEC)?;
    let (own, packets) = own_voice(&pump);
    let t0 = pump.t0;
    drop(pump);
    let heard = hear(&far_rec.packets());
    let script = Script::new(plan.talk, 60.0);
    let failover = analyse(&heard, &script, t0, cut_at - Duration::from_millis(200), end);
    let trace = trace(&heard, t0, cut_at - Duration::from_millis(200), end);
    Ok((CutFigures { failover, take_back: None, between: None, detect_ms, trace }, own, packets))
}
