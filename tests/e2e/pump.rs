//! The test phone's RTP: one clock drives both legs (the data leg and the carrier leg), so the
//! offset between them is what the test says (the carrier `offset_ms` behind, each of its packets
//! moved by up to ±`jitter_ms`; the data leg's by ±`data_jitter_ms`), not what two separate SIPp
//! media streams happen to start with. SIPp does
//! the signalling only (`tests/sipp/pump_*.xml`: the SDP points at the pump's sockets, and the
//! scenario writes where Asterisk wants the leg's RTP into a file, [`Pump::media_address`]).
//!
//! Each leg has one UDP socket that sends the leg's RTP and receives what Asterisk sends the leg
//! (kept for the analysis: the phone's own voice coming back). A data leg socket is bound within
//! the data path's ports, so a cut of that path (`netcut`) drops both directions.

use crate::listen::{due, Script, FRAME_SAMPLES};
use crate::rtp::Packet;
use crate::testbed::Asterisk;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Packets kept per leg (10 minutes of 20 ms packets); later ones are counted, not kept.
const KEEP: usize = 30_000;

/// How the two legs are timed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// The carrier leg's audio runs this far behind the data leg's.
    pub offset_ms: f64,
    /// Each carrier packet is sent up to this much early or late (never before the one before
    /// it): the carrier path's delay varies by ± this.
    pub jitter_ms: f64,
    /// The same for the data leg's packets (0: the data path is steady).
    pub data_jitter_ms: f64,
    /// Seed of the jitter.
    pub seed: u64,
}

/// One leg's socket, bound before the call so that its SDP can name the port.
pub struct LegSocket {
    sock: UdpSocket,
    pub port: u16,
}

impl LegSocket {
    /// Binds a port of `ip` within `ports` (the path a cut can drop).
    pub fn bind(ip: &str, ports: (u16, u16)) -> Self {
        for port in ports.0..=ports.1 {
            if let Ok(sock) = UdpSocket::bind((ip, port)) {
                let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
                return Self { sock, port };
            }
        }
        panic!("no free UDP port on {ip} in {}-{}", ports.0, ports.1);
    }
}

/// Where Asterisk wants a leg's RTP: the file a `pump_*.xml` scenario wrote (`IP PORT`).
pub fn media_address(ast: &Asterisk, file: &str, limit: Duration) -> Result<SocketAddr, String> {
    let path = ast.instance_dir().join("sipp").join(file);
    let text = crate::wait_for(limit, || std::fs::read_to_string(&path).ok()).ok_or_else(|| {
        format!("{}: not written within {} s (was the call answered?)", path.display(), limit.as_secs())
    })?;
    let mut it = text.split_whitespace();
    match (it.next(), it.next().and_then(|p| p.parse::<u16>().ok())) {
        (Some(ip), Some(port)) => {
            format!("{ip}:{port}").parse().map_err(|e| format!("{}: bad address {text:?}: {e}", path.display()))
        }
        _ => Err(format!("{}: expected \"IP PORT\", got {text:?}", path.display())),
    }
}

/// Removes a media address file left from an earlier call.
pub fn forget_media_address(ast: &Asterisk, file: &str) {
    let _ = std::fs::remove_file(ast.instance_dir().join("sipp").join(file));
}

/// The running pump.
pub struct Pump {
    /// When frame 0 was due on the data leg (the carrier's frame n is due `offset_ms` later).
    pub t0: Instant,
    received: [Arc<Mutex<Vec<Packet>>>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The RTP header of packet `seq` of a stream.
fn rtp(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(if marker { 0x80 } else { 0 }); // PT 0: PCMU
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn receive(sock: UdpSocket, keep: Arc<Mutex<Vec<Packet>>>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if n < 12 || buf[0] >> 6 != 2 {
            continue;
        }
        let start = 12 + 4 * usize::from(buf[0] & 0x0f);
        if n < start {
            continue;
        }
        let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
        if k.len() < KEEP {
            k.push(Packet {
                at: Instant::now(),
                payload_type: buf[1] & 0x7f,
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                payload: buf[start..n].to_vec(),
            });
        }
    }
}

impl Pump {
    /// Starts both legs now: the data leg from `data` to `data_to`, the carrier leg from
    /// `carrier` to `carrier_to`, the script's frames on one clock.
    pub fn start(
        data: LegSocket,
        data_to: SocketAddr,
        carrier: LegSocket,
        carrier_to: SocketAddr,
        script: Script,
        timing: Timing,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let received = [Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new()))];
        let mut threads = Vec::new();
        let mut senders = Vec::new();
        for (i, (leg, to)) in [(data, data_to), (carrier, carrier_to)].into_iter().enumerate() {
            let rx = leg.sock.try_clone().unwrap_or_else(|e| panic!("clone the pump's socket: {e}"));
            let (keep, s) = (received[i].clone(), stop.clone());
            threads.push(std::thread::spawn(move || receive(rx, keep, s)));
            senders.push((leg.sock, to));
        }
        let t0 = Instant::now() + Duration::from_millis(20);
        let s = stop.clone();
        threads.push(std::thread::spawn(move || send(senders, script, timing, t0, s)));
        Self { t0, received, stop, threads }
    }

    /// What Asterisk sent the data leg so far.
    pub fn data_received(&self) -> Vec<Packet> {
        self.received[0].lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What Asterisk sent the carrier leg so far.
    pub fn carrier_received(&self) -> Vec<Packet> {
        self.received[1].lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The one clock: frame n of the data leg is due at t0 + 20 n, the carrier's at that plus the
/// offset; each moved by the jitter, never before the leg's previous packet.
fn send(legs: Vec<(UdpSocket, SocketAddr)>, script: Script, timing: Timing, t0: Instant, stop: Arc<AtomicBool>) {
    let mut rng = crate::listen::Rng::new(timing.seed);
    let offset = [0.0, timing.offset_ms];
    let jitter = [timing.data_jitter_ms, timing.jitter_ms];
    let mut next = [0usize; 2];
    let mut last = [t0; 2];

    let ssrc = [0x0da7_a000u32, 0x0ca2_2000u32];
    let schedule = |leg: usize, n: usize, last: Instant, rng: &mut crate::listen::Rng| {
        let j = rng.uniform(-jitter[leg], jitter[leg]);
        let ms = offset[leg] + j;
        let d = Duration::from_secs_f64(ms.abs() / 1000.0);
        let t = if ms >= 0.0 { due(t0, n) + d } else { due(t0, n).checked_sub(d).unwrap_or(t0) };
        t.max(last)
    };
    let mut at = [schedule(0, 0, t0, &mut rng), schedule(1, 0, t0, &mut rng)];
    while !stop.load(Ordering::Relaxed) {
        let leg = if at[0] <= at[1] { 0 } else { 1 };
        let n = next[leg];
        if n >= script.frames() {
            if next[1 - leg] >= script.frames() {
                return;
            }
            at[leg] += Duration::from_secs(3600);
            continue;
        }
        let now = Instant::now();
        if at[leg] > now {
            std::thread::sleep((at[leg] - now).min(Duration::from_millis(20)));
            continue;
        }
        let frame: [u8; FRAME_SAMPLES] = script.frame(n);
        let p = rtp(n as u16, (n * FRAME_SAMPLES) as u32, ssrc[leg], n == 0, &frame);
        let _ = legs[leg].0.send_to(&p, legs[leg].1);
        last[leg] = at[leg];
        next[leg] = n + 1;
        at[leg] = schedule(leg, n + 1, last[leg], &mut rng);
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
