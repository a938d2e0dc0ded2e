//! An RTP recorder: binds where a SIPp peer's SDP says media should go and keeps every packet.

use crate::audio::{tone_share, ulaw_decode};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One received RTP packet.
#[derive(Clone, Debug)]
pub struct Packet {
    pub at: Instant,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

pub struct Recorder {
    pub port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Binds `ip:0` and starts recording.
    pub fn bind(ip: &str) -> Self {
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind an RTP recorder on {ip}: {e}"));
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
        let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (packets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if n < 12 || buf[0] >> 6 != 2 {
                    continue; // not RTP (RTCP arrives on port + 1, never here)
                }
                let cc = usize::from(buf[0] & 0x0f);
                let start = 12 + 4 * cc;
                if n < start {
                    continue;
                }
                let pkt = Packet {
                    at: Instant::now(),
                    payload_type: buf[1] & 0x7f,
                    seq: u16::from_be_bytes([buf[2], buf[3]]),
                    timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                    ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                    payload: buf[start..n].to_vec(),
                };
                p.lock().unwrap_or_else(|e| e.into_inner()).push(pkt);
            }
        });
        Self { port, packets, stop, thread: Some(thread) }
    }

    /// A copy of what arrived so far.
    pub fn packets(&self) -> Vec<Packet> {
        self.packets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many PCMU packets arrived whose audio is mostly the tone `hz`.
    pub fn packets_with_tone(&self, hz: f64) -> usize {
        self.packets()
            .iter()
            .filter(|p| p.payload_type == 0)
            .filter(|p| {
                let s: Vec<i16> = p.payload.iter().copied().map(ulaw_decode).collect();
                tone_share(&s, hz) > 0.5
            })
            .count()
    }
}

/// A sink for RTP nobody analyses (the load benchmark): counts packets, keeps none.
pub struct Sink {
    pub port: u16,
    packets: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn bind(ip: &str) -> Self {
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind an RTP sink on {ip}: {e}"));
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
        let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
        let packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (packets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    p.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { port, packets, stop, thread: Some(thread) }
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
