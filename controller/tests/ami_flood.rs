//! handoffd's memory when its AMI peer floods it, against the real `handoffd` process: events
//! poured in while the channel list is read at login (small events up to the count bound, 60 kB
//! events up to the byte bound), an event list that never completes, and frames past the
//! codec's 64 KiB cap. The peer is hostile on purpose (a compromised or broken PBX, or whatever
//! answers on the AMI port); a real Asterisk cannot be made to send this.
//!
//! Each flood lasts several seconds and is repeated on every reconnect (the daemon's backoff is
//! 100–200 ms here); the daemon's peak RSS (`VmHWM`) must stay under 64 MB, its RSS must be back
//! near its baseline once the peer behaves, and it must say why it dropped the link.

// Clock, tokio and sockets are allowed here: a test that drives real processes and sockets (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod daemon_support;

use daemon_support::Daemon;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the peer does on each new connection.
const POLITE: u8 = 0;
/// Answers the login, starts the channel list, then floods unsolicited events.
const EVENTS_WHILE_LISTING: u8 = 1;
/// Answers the login, then sends list entries for the channel list forever.
const ENDLESS_LIST: u8 = 2;
/// Answers the login, then one header line that never ends.
const OVERSIZED_FRAME: u8 = 3;

const RSS_LIMIT_KB: u64 = 64 * 1024;
const FLOOD_FOR: Duration = Duration::from_secs(6);

struct Peer {
    port: u16,
    mode: Arc<AtomicU8>,
    connects: Arc<AtomicU64>,
    /// Bytes written by floods (all connections).
    flooded: Arc<AtomicU64>,
    /// The open connections, to drop them all at once.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Peer {
    /// Closes every open connection: the daemon reconnects (into the current mode).
    fn kick(&self) {
        for c in self.open.lock().expect("test harness").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn peer() -> Peer {
    let l = TcpListener::bind("127.0.0.1:0").expect("test harness");
    let port = l.local_addr().expect("test harness").port();
    let p = Peer {
        port,
        mode: Arc::new(AtomicU8::new(POLITE)),
        connects: Arc::new(AtomicU64::new(0)),
        flooded: Arc::new(AtomicU64::new(0)),
        open: Arc::new(Mutex::new(Vec::new())),
    };
    let (mode, connects, flooded, open) = (p.mode.clone(), p.connects.clone(), p.flooded.clone(), p.open.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let n = connects.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = conn.try_clone() {
                open.lock().expect("test harness").push(c);
            }
            let (mode, flooded) = (mode.load(Ordering::Relaxed), flooded.clone());
            std::thread::spawn(move || serve(conn, mode, n, &flooded));
        }
    });
    p
}

/// Reads one AMI action; returns (Action, ActionID), `None` when the daemon closed.
fn read_action(r: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let (mut action, mut id) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            if !action.is_empty() {
                return Some((action, id));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(": ") {
            match k {
                "Action" => action = v.to_string(),
                "ActionID" => id = v.to_string(),
                _ => {}
            }
        }
    }
}

fn newexten(n: u64, pad: usize) -> String {
    format!(
        "Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/alice-app-{n:08x}\r\nChannelState: 4\r\n\
         ChannelStateDesc: Ring\r\nCallerIDNum: alice-app\r\nCallerIDName: Alice\r\nConnectedLineNum: <unknown>\r\n\
         Language: en\r\nAccountCode: \r\nContext: handoff-app\r\nExten: 2000\r\nPriority: 2\r\n\
         Uniqueid: 1764700000.{n}\r\nLinkedid: 1764700000.{n}\r\nExtension: 2000\r\nApplication: Verbose\r\n\
         AppData: {}\r\n\r\n",
        "x".repeat(pad)
    )
}

fn list_entry(id: &str, n: u64) -> String {
    format!(
        "Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: PJSIP/alice-app-{n:08x}\r\nChannelState: 6\r\n\
         ChannelStateDesc: Up\r\nCallerIDNum: alice-app\r\nContext: handoff-app\r\nExten: 2000\r\nPriority: 3\r\n\
         Uniqueid: 1764700000.{n}\r\nLinkedid: 1764700000.{n}\r\nApplication: Handoff\r\nApplicationData: 2000,data\r\n\
         Duration: 00:00:{:02}\r\nBridgeId: \r\n\r\n",
        n % 60
    )
}

/// Writes `chunk` until the daemon closes or the flood time is up.
fn flood(w: &mut TcpStream, chunk: &[u8], flooded: &AtomicU64) {
    let start = std::time::Instant::now();
    while start.elapsed() < FLOOD_FOR {
        if w.write_all(chunk).is_err() {
            return;
        }
        flooded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, mode: u8, n: u64, flooded: &AtomicU64) {
    let mut w = conn.try_clone().expect("test harness");
    let mut r = BufReader::new(conn);
    let _ = w.write_all(b"Asterisk Call Manager/11.0.0\r\n");
    while let Some((action, id)) = read_action(&mut r) {
        let answer = match action.as_str() {
            "Login" => format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"),
            "CoreShowChannels" => {
                let start = format!(
                    "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
                );
                let _ = w.write_all(start.as_bytes());
                match mode {
                    EVENTS_WHILE_LISTING => {
                        // Alternate connections: small events (the count bound is reached first)
                        // and 60 kB events (the byte bound is).
                        let (pad, count) = if n % 2 == 0 { (0, 2000) } else { (60_000, 16) };
                        let chunk: String = (0..count).map(|i| newexten(i, pad)).collect();
                        return flood(&mut w, chunk.as_bytes(), flooded);
                    }
                    ENDLESS_LIST => {
                        let chunk: String = (0..2000).map(|i| list_entry(&id, i)).collect();
                        return flood(&mut w, chunk.as_bytes(), flooded);
                    }
                    OVERSIZED_FRAME => {
                        let _ = w.write_all(b"Event: Newexten\r\nAppData: ");
                        return flood(&mut w, &[b'y'; 1 << 20], flooded);
                    }
                    _ => format!(
                        "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                    ),
                }
            }
            _ => format!("Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n"),
        };
        if w.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs one flood mode for `FLOOD_FOR` plus reconnects, then lets the peer behave; returns
/// (baseline RSS, peak RSS, RSS after, connects during the flood, MiB flooded).
fn run(mode: u8) -> (Daemon, u64, u64, u64, u64, u64) {
    let p = peer();
    let d = Daemon::start(p.port);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.log_text().contains("logged in to AMI"), "no login to the polite peer:\n{}", d.log_text());
    let rss0 = d.rss_kb();
    let connects0 = p.connects.load(Ordering::Relaxed);
    // Drop the polite link: the daemon reconnects into the flood.
    p.mode.store(mode, Ordering::Relaxed);
    p.kick();
    std::thread::sleep(FLOOD_FOR + Duration::from_secs(2));
    p.mode.store(POLITE, Ordering::Relaxed);
    let connects = p.connects.load(Ordering::Relaxed) - connects0;
    let mib = p.flooded.load(Ordering::Relaxed) >> 20;
    // Back to a polite peer: the daemon logs in again and settles.
    std::thread::sleep(FLOOD_FOR + Duration::from_secs(3));
    let (peak, after) = (d.status_kb("VmHWM:"), d.rss_kb());
    eprintln!(
        "mode {mode}: RSS {rss0} kB before, peak {peak} kB, {after} kB after; {connects} connects, {mib} MiB flooded"
    );
    (d, rss0, peak, after, connects, mib)
}

fn assert_bounded(mode: u8, why: &str) {
    let (d, rss0, peak, after, connects, mib) = run(mode);
    let log = d.log_text();
    assert!(mib >= 16, "the peer flooded only {mib} MiB: the test did not reach the bounds");
    assert!(connects >= 1, "the daemon never reconnected into the flood");
    assert!(peak <= RSS_LIMIT_KB, "peak RSS {peak} kB over {RSS_LIMIT_KB} kB (baseline {rss0} kB)");
    assert!(after <= rss0 + 8 * 1024, "RSS {rss0} kB -> {after} kB after the flood");
    assert!(log.contains(why), "the daemon did not say '{why}':\n{}", &log[log.len().saturating_sub(4000)..]);
    let logins = log.matches("logged in to AMI").count();
    assert!(logins >= 2, "the daemon did not log in again after the flood ({logins} logins)");
}

#[test]
fn events_flooded_while_the_channel_list_is_read_are_bounded() {
    assert_bounded(EVENTS_WHILE_LISTING, "arrived while the channel list was read");
}

#[test]
fn an_event_list_that_never_completes_is_bounded() {
    // The list is given up at its bound; its further entries are held as events that arrived
    // while the list was read, up to that bound.
    assert_bounded(ENDLESS_LIST, "arrived while the channel list was read");
}

#[test]
fn a_frame_past_the_codec_cap_is_refused() {
    assert_bounded(OVERSIZED_FRAME, "exceeds 65536 bytes");
}
