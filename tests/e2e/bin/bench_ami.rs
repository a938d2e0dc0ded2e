//! AMI event-path benchmark (run by `tests/bench-ami`): a local AMI peer on loopback floods the
//! events of real Asterisk 22 calls (the recorded transcript `tests/data/ami/asterisk22_call.s2c.bin`,
//! every call re-numbered with fresh uniqueids, channel names, session and bridge ids) and
//! each consumer in the same run reads them: handoffd's codec alone (bytes → typed events),
//! handoffd's whole event path (codec + correlation + `AsteriskDriver` + the session machine,
//! driven the way the daemon's `daemon/link.rs` drives them), and peer clients for the ratio (panoramisk from
//! PyPI, the `asterisk-rs-ami` crate when built with `--features rust-peer`). Prints a table of
//! events/s, CPU % (getrusage of the consumer thread or process) and events per CPU-second,
//! then one JSON line. Usage: `handoff-bench-ami [EVENTS] [PEER_EVENTS]`.

use handoff::ami::{Action, AmiDecoder, AmiMessage};
use handoff::asterisk::AsteriskDriver;
use handoff::config::Config;
use handoff::pbx::{Driver, DriverEvent};
use handoff::session::{Input, Sessions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

const TRANSCRIPT: &[u8] = include_bytes!("../../data/ami/asterisk22_call.s2c.bin");
/// The uniqueid of the event that ends every flood.
const END: &str = "bench-end";
const SENTINEL: &[u8] = b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/bench-end\r\nUniqueid: bench-end\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n";
/// The session id prefix of the path consumer; the far channel of call k is then `bench-k-far`,
/// exactly the id the session machine gives the k-th session's far leg.
const SESSION_PREFIX: &str = "bench-";
const READ_BUF: usize = 256 * 1024;

/// How many calls are in flight at once, each from its own device (`a0-app` … `a99-app`).
const DEVICES: u64 = 100;

/// One piece of the call template: literal bytes or an id re-numbered per call.
#[derive(Debug, Clone)]
enum Seg {
    Lit(Vec<u8>),
    DataUid,
    DataChan,
    Endpoint,
    FarChan,
    Session,
    Bridge,
    /// The ActionID of the `OriginateResponse`: the one of the client's `Originate`.
    OriginateId,
}

/// The events of one recorded call, with the places where its ids go: part A up to the far
/// call's `OriginateResponse`, part B from there on.
struct Template {
    a: Vec<Seg>,
    b: Vec<Seg>,
    events: u64,
}

fn segments(text: &str) -> Vec<Seg> {
    const TOKENS: [&str; 7] = [
        "6a462488-6208-430b-a243-8d2e1e279eff",
        "PJSIP/alice-app-00000000",
        "PJSIP/far-00000001",
        "towf4p-1",
        "1795342491.0\r\n",
        "ActionID: handoffd-4\r\n",
        "alice-app",
    ];
    let seg = |n: usize| {
        [Seg::Bridge, Seg::DataChan, Seg::FarChan, Seg::Session, Seg::DataUid, Seg::OriginateId, Seg::Endpoint][n]
            .clone()
    };
    let mut segs = Vec::new();
    let mut lit = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    'scan: while i < bytes.len() {
        for (n, tok) in TOKENS.iter().enumerate() {
            if bytes[i..].starts_with(tok.as_bytes()) {
                segs.push(Seg::Lit(std::mem::take(&mut lit)));
                if n == 5 {
                    lit.extend_from_slice(b"ActionID: ");
                }
                segs.push(seg(n));
                if tok.ends_with("\r\n") {
                    lit.extend_from_slice(b"\r\n");
                }
                i += tok.len();
                continue 'scan;
            }
        }
        lit.push(bytes[i]);
        i += 1;
    }
    segs.push(Seg::Lit(lit));
    segs
}

impl Template {
    /// The unsolicited call events of the transcript (no banner, no responses, no list events).
    fn from_transcript() -> Self {
        let text = String::from_utf8_lossy(TRANSCRIPT);
        let (mut a, mut b) = (String::new(), String::new());
        let mut events = 0;
        for block in text.split("\r\n\r\n") {
            let block = block.trim_start_matches("\r\n");
            if !block.starts_with("Event: ") || block.starts_with("Event: FullyBooted") {
                continue;
            }
            if block.contains("\r\nActionID: rec-") {
                continue; // the CoreShowChannels list of the recording
            }
            let part = if b.is_empty() && !block.starts_with("Event: OriginateResponse") { &mut a } else { &mut b };
            part.push_str(block);
            part.push_str("\r\n\r\n");
            events += 1;
        }
        Self { a: segments(&a), b: segments(&b), events }
    }

    /// Appends part A or B of call `k` (1-based) to `out`.
    fn write(&self, part_b: bool, k: u64, originate_id: &str, out: &mut Vec<u8>) {
        let d = k % DEVICES;
        for s in if part_b { &self.b } else { &self.a } {
            let _ = match s {
                Seg::Lit(b) => {
                    out.extend_from_slice(b);
                    Ok(())
                }
                Seg::DataUid => write!(out, "1795342491.{k}"),
                Seg::DataChan => write!(out, "PJSIP/a{d}-app-{k:08x}"),
                Seg::Endpoint => write!(out, "a{d}-app"),
                Seg::FarChan => write!(out, "PJSIP/far-{k:08x}"),
                Seg::Session => write!(out, "{SESSION_PREFIX}{k}"),
                Seg::Bridge => write!(out, "6a462488-6208-430b-a243-{k:012x}"),
                Seg::OriginateId => write!(out, "{originate_id}"),
            };
        }
    }

    /// Appends the whole call `k` to `out` (for clients that originate nothing).
    fn write_call(&self, k: u64, out: &mut Vec<u8>) {
        self.write(false, k, "handoffd-4", out);
        self.write(true, k, "handoffd-4", out);
    }
}

/// How the peer floods.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Whole calls, one after the other, once the client sent this action (its login).
    Replay(&'static str),
    /// As Asterisk would: up to [`DEVICES`] calls at once, each call's `OriginateResponse` and
    /// what follows it only after the client's `Originate` for it, with that ActionID.
    Live,
}

enum Msg {
    Reply(Vec<u8>),
    Start,
    /// Call k's far channel was originated with this ActionID (or refused: `None`).
    Originated(u64, Option<String>),
}

/// The calls an action is about: `ChannelId: bench-K-far` or `Uniqueid: 1795342491.K`.
fn call_of(h: &handoff::ami::Headers, key: &str, prefix: &str, suffix: &str) -> Option<u64> {
    h.get(key)?.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// Reads the client's actions and answers each (a `CoreShowChannels` with an empty list).
fn respond(mut reader: TcpStream, tx: mpsc::Sender<Msg>, mode: Mode) {
    let mut dec = AmiDecoder::without_banner();
    let mut buf = vec![0u8; 64 * 1024];
    let trigger = match mode {
        Mode::Replay(t) => t,
        Mode::Live => "HandoffHello",
    };
    let mut started = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.feed(&buf[..n]);
        while let Ok(Some(msg)) = dec.next_message() {
            let AmiMessage::Unknown(h) = msg else { continue };
            let (Some(action), id) = (h.get("Action"), h.get("ActionID").unwrap_or("")) else { continue };
            let reply = if action.eq_ignore_ascii_case("CoreShowChannels") {
                format!("Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\nEvent: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n")
            } else if action.eq_ignore_ascii_case("Challenge") {
                format!("Response: Error\r\nActionID: {id}\r\nMessage: Must specify AuthType\r\n\r\n")
            } else if action.eq_ignore_ascii_case("Originate") {
                format!("Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n")
            } else {
                format!("Response: Success\r\nActionID: {id}\r\nMessage: {action} done\r\n\r\n")
            };
            let mut msgs = vec![Msg::Reply(reply.into_bytes())];
            if !started && action.eq_ignore_ascii_case(trigger) {
                started = true;
                msgs.push(Msg::Start);
            }
            if mode == Mode::Live && action.eq_ignore_ascii_case("Originate") {
                if let Some(k) = call_of(&h, "ChannelId", SESSION_PREFIX, "-far") {
                    msgs.push(Msg::Originated(k, Some(id.to_string())));
                }
            }
            if mode == Mode::Live && action.eq_ignore_ascii_case("HandoffRefuse") {
                if let Some(k) = call_of(&h, "Uniqueid", "1795342491.", "") {
                    msgs.push(Msg::Originated(k, None));
                }
            }
            for m in msgs {
                if tx.send(m).is_err() {
                    return;
                }
            }
        }
    }
}

/// The flooding AMI peer for one client.
fn serve(listener: TcpListener, template: std::sync::Arc<Template>, calls: u64, mode: Mode) {
    let Ok((stream, _)) = listener.accept() else { return };
    let _ = stream.set_nodelay(true);
    let Ok(reader) = stream.try_clone() else { return };
    let mut writer = stream;
    let (tx, rx) = mpsc::channel::<Msg>();
    let responder = std::thread::spawn(move || respond(reader, tx, mode));
    if writer.write_all(b"Asterisk Call Manager/11.0.0\r\n").is_err() {
        return;
    }
    // The handshake: replies only, until the trigger.
    loop {
        match rx.recv() {
            Ok(Msg::Reply(b)) => {
                if writer.write_all(&b).is_err() {
                    return;
                }
            }
            Ok(Msg::Start) => break,
            Ok(Msg::Originated(..)) => {}
            Err(_) => return,
        }
    }
    let mut chunk = Vec::with_capacity(READ_BUF + 64 * 1024);
    let (mut next, mut finished) = (1u64, 0u64);
    let mut ready: Vec<(u64, Option<String>)> = Vec::new();
    while finished < calls {
        chunk.clear();
        let take = |m: Msg, chunk: &mut Vec<u8>, ready: &mut Vec<(u64, Option<String>)>| match m {
            Msg::Reply(b) => chunk.extend_from_slice(&b),
            Msg::Originated(k, id) => ready.push((k, id)),
            Msg::Start => {}
        };
        while let Ok(m) = rx.try_recv() {
            take(m, &mut chunk, &mut ready);
        }
        for (k, id) in ready.drain(..) {
            template.write(true, k, id.as_deref().unwrap_or("refused"), &mut chunk);
            finished += 1;
        }
        while chunk.len() < READ_BUF && next <= calls {
            if mode == Mode::Live {
                if next - 1 - finished >= DEVICES {
                    break;
                }
                template.write(false, next, "", &mut chunk);
            } else {
                template.write_call(next, &mut chunk);
                finished += 1;
            }
            next += 1;
        }
        if chunk.is_empty() {
            match rx.recv() {
                Ok(m) => take(m, &mut chunk, &mut ready),
                Err(_) => return,
            }
            continue;
        }
        if writer.write_all(&chunk).is_err() {
            return;
        }
    }
    if writer.write_all(SENTINEL).is_err() {
        return;
    }
    while let Ok(msg) = rx.recv() {
        if let Msg::Reply(b) = msg {
            if writer.write_all(&b).is_err() {
                break;
            }
        }
    }
    let _ = responder.join();
}

/// Starts a flooding peer; returns its address.
fn peer(template: &std::sync::Arc<Template>, calls: u64, mode: Mode) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let t = template.clone();
    std::thread::spawn(move || serve(listener, t, calls, mode));
    addr
}

/// CPU time of the calling thread (getrusage RUSAGE_THREAD), in seconds.
fn thread_cpu() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given, which is valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One consumer's result.
#[derive(Debug, Clone)]
struct Run {
    name: String,
    events: u64,
    wall_s: f64,
    cpu_s: f64,
    note: String,
}

impl Run {
    fn per_s(&self) -> f64 {
        self.events as f64 / self.wall_s.max(1e-9)
    }
    fn per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }
}

/// Times `f` on this thread, wall and CPU.
struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Self {
        Self { wall: Instant::now(), cpu: thread_cpu() }
    }
    fn stop(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), thread_cpu() - self.cpu)
    }
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the flooding peer");
    let _ = s.set_nodelay(true);
    s
}

/// (a) The codec alone: bytes from the socket → typed events, counted.
fn codec_run(template: &std::sync::Arc<Template>, calls: u64) -> Run {
    let addr = peer(template, calls, Mode::Replay("Login"));
    let mut s = connect(addr);
    let mut dec = AmiDecoder::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = 0u64;
    let mut clock = None;
    loop {
        let n = s.read(&mut buf).expect("read from the peer");
        assert!(n > 0, "the peer closed the connection before the end event");
        dec.feed(&buf[..n]);
        loop {
            match dec.next_message() {
                Ok(Some(AmiMessage::Banner(_))) => {
                    let login = Action::new("Login").with_action_id("b-1").header("Username", "bench");
                    s.write_all(&login.encode().expect("login action")).expect("send login");
                }
                Ok(Some(AmiMessage::Response(_))) if clock.is_none() => clock = Some(Clock::start()),
                Ok(Some(AmiMessage::Event(e))) => {
                    if e.name == "Hangup" && e.get("Uniqueid") == Some(END) {
                        let (wall_s, cpu_s) = clock.as_ref().expect("logged in").stop();
                        return Run {
                            name: "handoffd codec (bytes → typed events)".into(),
                            events,
                            wall_s,
                            cpu_s,
                            note: String::new(),
                        };
                    }
                    events += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!("the codec rejected the flood: {e}"),
            }
        }
    }
}

/// (b) The whole event path: `AsteriskDriver` (codec, correlation, events → inputs) and the
/// session machine, in the order the daemon's link loop (`daemon/link.rs`) runs them; commands go back as AMI
/// actions to the peer, which answers each.
fn path_run(template: &std::sync::Arc<Template>, calls: u64) -> Run {
    let addr = peer(template, calls, Mode::Live);
    let mut yaml = format!(
        "ami:\n  host: 127.0.0.1\n  port: {}\n  username: handoffd\n  secret: bench\nsessions:\n  pair_window_s: 0\ndevices:\n",
        addr.port()
    );
    for d in 0..DEVICES {
        yaml.push_str(&format!(
            "  - id: phone-{d}\n    user: user-{d}\n    endpoint: a{d}-app\n    number: \"+1555{d:07}\"\n"
        ));
    }
    let cfg = Config::parse(&yaml, "bench.yaml").expect("bench config");
    let ami = cfg.ami.clone().expect("ami section");
    let (rules, devices) = cfg.session_rules();
    let mut sessions = Sessions::new(rules, devices, SESSION_PREFIX);
    let mut driver = AsteriskDriver::new(cfg, ami);
    let epoch = Instant::now();
    let now = || epoch.elapsed().as_millis() as u64;
    let mut s = connect(addr);
    driver.connected(now());
    let mut buf = vec![0u8; READ_BUF];
    let mut clock = None;
    let (mut opened, mut inputs) = (0u64, 0u64);
    loop {
        loop {
            let mut idle = true;
            while let Some(bytes) = driver.poll_transmit() {
                idle = false;
                s.write_all(&bytes).expect("write to the peer");
            }
            while let Some(event) = driver.poll_event() {
                idle = false;
                match event {
                    DriverEvent::Snapshot(_) => clock = Some(Clock::start()),
                    DriverEvent::Input(Input::Hangup { uniqueid, .. } | Input::LegEnded { uniqueid, .. })
                        if uniqueid == END =>
                    {
                        let (wall_s, cpu_s) = clock.as_ref().expect("snapshot first").stop();
                        let note = format!(
                            "{inputs} session inputs, {opened} sessions opened, {} open at the end",
                            sessions.len()
                        );
                        let events = calls * template.events;
                        return Run {
                            name: "handoffd event path (codec + correlation + driver + sessions)".into(),
                            events,
                            wall_s,
                            cpu_s,
                            note,
                        };
                    }
                    DriverEvent::Input(input) => {
                        inputs += 1;
                        let out = sessions.handle(input, now());
                        for cmd in &out.commands {
                            if matches!(cmd, handoff::session::Command::OriginateFar { .. }) {
                                opened += 1;
                            }
                            driver.command(cmd, now());
                        }
                    }
                    DriverEvent::Down(e) => panic!("the AMI link went down: {e}"),
                    _ => {}
                }
            }
            if idle {
                break;
            }
        }
        if clock.is_some() {
            for cmd in &sessions.handle(Input::Tick, now()).commands {
                driver.command(cmd, now());
            }
        }
        let n = s.read(&mut buf).expect("read from the peer");
        if n == 0 {
            driver.handle(handoff::pbx::DriverInput::Closed, now());
        } else {
            driver.receive(&buf[..n], now());
        }
        // what the daemon's loop asks before every wait
        std::hint::black_box([driver.poll_timeout(), sessions.next_timeout()]);
        if driver.poll_timeout().is_some_and(|t| t <= now()) {
            driver.timeout(now());
        }
    }
}

/// The codec on bytes already in memory (no socket): the ceiling of (a).
fn codec_memory_run(template: &Template, calls: u64) -> Run {
    let mut bytes = Vec::new();
    for k in 1..=calls.min(20_000) {
        template.write_call(k, &mut bytes);
    }
    let per_pass = calls.min(20_000) * template.events;
    let passes = calls.div_ceil(20_000);
    let clock = Clock::start();
    let mut events = 0;
    for _ in 0..passes {
        let mut dec = AmiDecoder::without_banner();
        for chunk in bytes.chunks(READ_BUF) {
            dec.feed(chunk);
            while let Ok(Some(m)) = dec.next_message() {
                if let AmiMessage::Event(_) = m {
                    events += 1;
                }
            }
        }
    }
    let (wall_s, cpu_s) = clock.stop();
    assert_eq!(events, per_pass * passes, "the codec lost events");
    Run { name: "handoffd codec, bytes in memory (no socket)".into(), events, wall_s, cpu_s, note: String::new() }
}

/// panoramisk 1.4 (Python asyncio) counting events: the script is written by `tests/bench-ami`.
fn panoramisk_run(template: &std::sync::Arc<Template>, calls: u64) -> Result<Run, String> {
    let python = std::env::var("BENCH_AMI_PYTHON").map_err(|_| "BENCH_AMI_PYTHON not set (run tests/bench-ami)")?;
    let script = std::env::var("BENCH_AMI_PANORAMISK").map_err(|_| "BENCH_AMI_PANORAMISK not set")?;
    let addr = peer(template, calls, Mode::Replay("Login"));
    let out = std::process::Command::new(&python)
        .args([&script, "127.0.0.1", &addr.port().to_string()])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or_else(|| {
        format!("panoramisk printed no result: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""))
    })?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("panoramisk result {line:?}: {e}"))?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or(format!("panoramisk result lacks {k}"));
    let version = v.get("version").and_then(|x| x.as_str()).unwrap_or("?");
    Ok(Run {
        name: format!("panoramisk {version} (Python)"),
        events: num("events")? as u64,
        wall_s: num("wall_s")?,
        cpu_s: num("cpu_s")?,
        note: format!("getrusage of the Python process; {} of {} events", num("events")?, calls * template.events),
    })
}

#[cfg(feature = "rust-peer")]
fn rust_peer_run(template: &std::sync::Arc<Template>, calls: u64) -> Result<Run, String> {
    use asterisk_rs_ami::AmiClient;
    let addr = peer(template, calls, Mode::Replay("Login"));
    let expected = calls * template.events;
    // A current-thread runtime: the client's tasks run on this thread, so its getrusage is theirs.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let client = AmiClient::builder()
            .host("127.0.0.1")
            .port(addr.port())
            .credentials("bench", "bench")
            .require_challenge(false)
            .event_capacity(1 << 20)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .await
            .map_err(|e| format!("asterisk-rs-ami did not log in: {e}"))?;
        let mut sub = client.subscribe();
        let mut events = 0u64;
        let mut clock = None;
        while let Some(ev) = sub.recv().await {
            if clock.is_none() {
                clock = Some(Clock::start());
            }
            if ev.event_name() == "Hangup" && ev.unique_id() == Some(END) {
                let (wall_s, cpu_s) = clock.as_ref().map(Clock::stop).unwrap_or((1.0, 1.0));
                let note = if events < expected {
                    format!("{events} of {expected} events: its broadcast channel drops what a slow reader misses")
                } else {
                    String::new()
                };
                return Ok(Run { name: "asterisk-rs-ami 0.7 (Rust, tokio)".into(), events, wall_s, cpu_s, note });
            }
            events += 1;
        }
        Err(format!("asterisk-rs-ami: the event stream ended after {events} events without the end event"))
    })
}

#[cfg(not(feature = "rust-peer"))]
fn rust_peer_run(_: &std::sync::Arc<Template>, _: u64) -> Result<Run, String> {
    Err(std::env::var("BENCH_AMI_RUST_PEER_ERROR")
        .unwrap_or_else(|_| "not built (build with --features rust-peer, as tests/bench-ami does)".into()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> ExitCode {
    let arg = |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let events = arg(1, 3_000_000);
    let peer_events = arg(2, 300_000);
    let template = std::sync::Arc::new(Template::from_transcript());
    let calls = events.div_ceil(template.events);
    let peer_calls = peer_events.div_ceil(template.events);
    println!(
        "AMI event-path benchmark: {} events per call (recorded Asterisk 22 call), {calls} calls for handoffd, {peer_calls} for the peers; load average before: {}",
        template.events,
        load_average()
    );
    let run_thread = |f: Box<dyn FnOnce() -> Run + Send>| std::thread::spawn(f).join().expect("consumer thread");
    // For profiling one consumer alone (perf, callgrind): BENCH_AMI_ONLY=memory|codec|path.
    if let Ok(only) = std::env::var("BENCH_AMI_ONLY") {
        let t = template.clone();
        let r = match only.as_str() {
            "memory" => run_thread(Box::new(move || codec_memory_run(&t, calls))),
            "codec" => run_thread(Box::new(move || codec_run(&t, calls))),
            _ => run_thread(Box::new(move || path_run(&t, calls))),
        };
        println!(
            "{}: {} events, {:.0} events/s, {:.0} events per CPU-second",
            r.name,
            r.events,
            r.per_s(),
            r.per_cpu_s()
        );
        return ExitCode::SUCCESS;
    }
    let (t1, t2, t3) = (template.clone(), template.clone(), template.clone());
    let memory = run_thread(Box::new(move || codec_memory_run(&t1, calls)));
    let codec = run_thread(Box::new(move || codec_run(&t2, calls)));
    let path = run_thread(Box::new(move || path_run(&t3, calls)));
    let mut peers = Vec::new();
    let mut missing = Vec::new();
    match panoramisk_run(&template, peer_calls) {
        Ok(r) => peers.push(r),
        Err(e) => missing.push(format!("panoramisk: {e}")),
    }
    let t4 = template.clone();
    match std::thread::spawn(move || rust_peer_run(&t4, peer_calls)).join().expect("rust peer thread") {
        Ok(r) => peers.push(r),
        Err(e) => missing.push(format!("asterisk-rs-ami: {e}")),
    }
    let best = peers.iter().max_by(|a, b| a.per_s().total_cmp(&b.per_s())).cloned();
    let best_cpu = peers.iter().map(Run::per_cpu_s).fold(0.0, f64::max);
    println!();
    println!(
        "{:<64} {:>10} {:>12} {:>7} {:>14} {:>9} {:>9}",
        "consumer", "events", "events/s", "CPU %", "events/CPU-s", "× best", "× best/CPU"
    );
    for r in [&memory, &codec, &path].into_iter().chain(peers.iter()) {
        let ratio = best.as_ref().map_or(f64::NAN, |b| r.per_s() / b.per_s());
        let ratio_cpu = if best_cpu > 0.0 { r.per_cpu_s() / best_cpu } else { f64::NAN };
        println!(
            "{:<64} {:>10} {:>12.0} {:>7.0} {:>14.0} {:>9.1} {:>9.1}",
            r.name,
            r.events,
            r.per_s(),
            100.0 * r.cpu_s / r.wall_s.max(1e-9),
            r.per_cpu_s(),
            ratio,
            ratio_cpu
        );
        if !r.note.is_empty() {
            println!("    {}", r.note);
        }
    }
    for m in &missing {
        println!("not measured: {m}");
    }
    println!("load average after: {}", load_average());
    let (best_name, best_rate) = best.as_ref().map_or(("none".to_string(), 0.0), |b| (b.name.clone(), b.per_s()));
    println!(
        "{}",
        serde_json::json!({
            "codec_events_per_s": codec.per_s().round(),
            "path_events_per_s": path.per_s().round(),
            "best_peer": best_name,
            "best_peer_events_per_s": best_rate.round(),
        })
    );
    ExitCode::SUCCESS
}
