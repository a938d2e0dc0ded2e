//! Asterisk and handoffd's link loop around the real Asterisk driver and controller core, in
//! process, without sockets: the AMI bytes Asterisk sends for dual-leg calls
//! (HandoffLegArrived, OriginateResponse, ConfbridgeJoin, HandoffLegSwitched,
//! HandoffAlignment, Hangup, a response to every action) go into the driver, what it reports
//! goes through the core, and each step is carried out as `daemon::link::carry_out` does
//! (timeline entries, session snapshots and audit records into the store, a move leg's ticket
//! or PIN checked by the move service, commands back into the driver, the status board).
//! Used by `memory_flat.rs` (memory under thousands of calls) and `store_ops.rs` (store calls
//! per call and per move).

// Clock, tokio and sockets are allowed here: a test harness standing in for the link loop (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(dead_code)]

use handoff::asterisk::AsteriskDriver;
use handoff::config::Config;
use handoff::daemon::controller::{Core, Now, Step};
use handoff::daemon::{move_flow, persist};
use handoff::pbx::DriverEvent;
use handoff::service::MoveService;
use handoff::session::{Input, Millis};
use handoff::store::{Device, Store, UnixMs};
use std::collections::{HashMap, VecDeque};

/// How long a call lasts, ms (bench-load: 28 s).
pub const CALL_MS: Millis = 28_000;

/// `n` devices for calls: `load-{i:03}` of user `user-{i / per_user:03}`, its app registering
/// as `load-app-{i:03}`, its number `+1555200{i:04}`.
pub fn devices(n: usize, per_user: usize) -> Vec<Device> {
    (0..n)
        .map(|i| Device {
            id: format!("load-{i:03}"),
            user: format!("user-{:03}", i / per_user),
            name: format!("load device {i}"),
            data_endpoint: Some(format!("load-app-{i:03}")),
            carrier_number: Some(format!("+1555200{i:04}")),
        })
        .collect()
}

/// One AMI frame as `Key: Value` pairs.
fn frame(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The move service and a runtime to run its checks on (the daemon runs them as tasks).
pub struct Moves {
    pub service: MoveService,
    pub runtime: tokio::runtime::Runtime,
}

/// Asterisk and the link loop around the driver and the core, without sockets or tokio.
pub struct Load {
    pub driver: AsteriskDriver,
    pub core: Core,
    pub store: Option<Store>,
    /// Checks move legs (required once a move leg arrives).
    pub moves: Option<Moves>,
    /// The devices that call, in order.
    pub devices: usize,
    /// The sessions' monotonic clock.
    pub now: Millis,
    /// Bytes Asterisk sends next.
    to_driver: VecDeque<String>,
    /// Originates handoffd sent: (ActionID, far uniqueid), answered at the next [`Load::answer`].
    originated: Vec<(String, String)>,
    /// The secrets (`pin-…`, `ticket-…`) of move legs, by uniqueid, for `HandoffSecret`.
    secrets: HashMap<String, String>,
    /// Calls placed so far.
    pub calls: u64,
}

/// Who a leg is, as `HandoffLegArrived` says.
struct Arrival<'a> {
    channel: &'a str,
    caller: &'a str,
    endpoint: &'a str,
    path: &'a str,
}

const BASE_UNIX: u64 = 1_764_748_800_000;

impl Load {
    /// `devices` call (the core's registry), recording into `store` if any.
    pub fn new(store: Option<Store>, devices: Vec<Device>) -> Self {
        let cfg = Config::parse(
            "ami:\n  username: handoffd\n  secret: s3cret\nfar:\n  endpoint: far\nsessions:\n  grace_s: 5\n  leg_dead_after_s: 4\n",
            "load.yaml",
        )
        .expect("config");
        let ami = cfg.ami.clone().expect("ami");
        let mut core = Core::new(&cfg, "m".into());
        let n = devices.len();
        core.set_registry(devices);
        let mut load = Load {
            driver: AsteriskDriver::new(cfg, ami),
            core,
            store,
            moves: None,
            devices: n,
            now: 0,
            to_driver: VecDeque::new(),
            originated: Vec::new(),
            secrets: HashMap::new(),
            calls: 0,
        };
        load.driver.connected(0);
        load.send("Asterisk Call Manager/11.0.0\r\n".into());
        load.run();
        load
    }

    pub fn at(&self) -> Now {
        Now { mono: self.now, unix: UnixMs(BASE_UNIX + self.now) }
    }

    /// Asterisk sends one message (a whole frame with its blank line, or the banner).
    fn send(&mut self, text: String) {
        self.to_driver.push_back(text);
    }

    pub fn event(&mut self, headers: &[(&str, &str)]) {
        let mut s = String::new();
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        self.send(s);
    }

    /// Everything moves until nobody has anything more to say: Asterisk's bytes into the
    /// driver, the driver's reports through the core, the steps carried out, the driver's
    /// actions answered as Asterisk answers them.
    pub fn run(&mut self) {
        loop {
            let mut idle = true;
            while let Some(bytes) = self.to_driver.pop_front() {
                idle = false;
                self.driver.receive(bytes.as_bytes(), self.now);
            }
            while let Some(ev) = handoff::pbx::Driver::poll_event(&mut self.driver) {
                idle = false;
                self.on_driver_event(ev);
            }
            while let Some(bytes) = handoff::pbx::Driver::poll_transmit(&mut self.driver) {
                idle = false;
                self.answer_actions(&String::from_utf8_lossy(&bytes));
            }
            if idle {
                let step = self.core.handle(Input::Tick, self.at());
                if step.commands.is_empty() && step.writes.is_empty() && step.timeline.is_empty() {
                    break;
                }
                self.carry_out(step);
            }
        }
        if handoff::pbx::Driver::poll_timeout(&self.driver).is_some_and(|t| t <= self.now) {
            self.driver.timeout(self.now);
        }
    }

    fn on_driver_event(&mut self, ev: DriverEvent) {
        match ev {
            DriverEvent::Input(input) => {
                if let Input::LegSwitched { uniqueid, to, reason, gap_ms } = &input {
                    let core = &self.core;
                    let at = self.at().unix;
                    match core.sessions.session_of(uniqueid) {
                        Some(id) => core.tell_board(|b| b.switched(&id.0, uniqueid, (*to).into(), reason, *gap_ms, at)),
                        None => core.tell_board(|b| b.switched_without_session()),
                    }
                }
                let step = self.core.on_input(input, self.at());
                self.carry_out(step);
            }
            DriverEvent::Failover { gap_ms } => {
                let at = self.at().unix;
                match gap_ms {
                    Some(gap) => self.core.metrics.observe_failover(gap),
                    None => self.core.metrics.count(&self.core.metrics.failovers),
                }
                self.core.tell_board(|b| b.failover(gap_ms, at));
            }
            DriverEvent::Alignment { offset_ms } => self.core.metrics.observe_alignment(offset_ms),
            DriverEvent::Up(_) | DriverEvent::Snapshot(_) => {}
            DriverEvent::Down(e) => panic!("the link went down: {e}"),
        }
    }

    /// As `daemon::link::carry_out`, synchronously: the move check runs to its end here, and
    /// its result goes back to the core at once (the daemon's inbox).
    fn carry_out(&mut self, step: Step) {
        let Step { commands, writes, audit, timeline, check } = step;
        if let Some(store) = &self.store {
            if !timeline.is_empty() {
                store.append_timeline(&timeline).expect("timeline");
            }
            let mut records = persist::apply(store, writes);
            records.extend(audit);
            for r in records {
                store.audit(&r).expect("audit");
            }
        }
        for cmd in &commands {
            self.driver.command(cmd, self.now);
        }
        if let Some(ask) = check {
            let moves = self.moves.as_ref().expect("a move leg needs the move service");
            let checked = moves.runtime.block_on(move_flow::check(moves.service.clone(), ask));
            let step = self.core.finish_move(checked, self.at());
            self.carry_out(step);
        }
    }

    /// Asterisk's answers to what handoffd sent: a response to every action (a move leg's
    /// secret to `HandoffSecret`); a hung-up channel's Hangup event; originates are remembered
    /// for [`Load::answer`].
    fn answer_actions(&mut self, sent: &str) {
        for text in sent.split("\r\n\r\n").filter(|t| !t.trim().is_empty()) {
            let f = frame(text);
            let (Some(action), Some(id)) = (get(&f, "Action"), get(&f, "ActionID")) else { continue };
            let (action, id) = (action.to_string(), id.to_string());
            match action.as_str() {
                "Login" => self
                    .send(format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")),
                "CoreShowChannels" => self.send(format!(
                    "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\r\n\
                     Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                )),
                "HandoffChallenge" => {
                    self.send(format!("Response: Success\r\nActionID: {id}\r\nChallenge: 0123abcd\r\n\r\n"))
                }
                "HandoffSecret" => {
                    let uid = get(&f, "Uniqueid").expect("Uniqueid");
                    let secret = self.secrets.remove(uid).expect("a move leg's secret");
                    self.send(format!("Response: Success\r\nActionID: {id}\r\nMessage: {secret}\r\n\r\n"));
                }
                "Originate" => {
                    self.send(format!(
                        "Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n"
                    ));
                    let far = get(&f, "ChannelId").expect("ChannelId").to_string();
                    self.event(&[("Event", "Newchannel"), ("Channel", "PJSIP/far-0001"), ("Uniqueid", &far)]);
                    self.originated.push((id, far));
                }
                "Hangup" => {
                    self.send(format!("Response: Success\r\nActionID: {id}\r\nMessage: Channel Hungup\r\n\r\n"));
                    let channel = get(&f, "Channel").expect("Channel").to_string();
                    let cause = get(&f, "Cause").unwrap_or("16").to_string();
                    self.event(&[
                        ("Event", "Hangup"),
                        ("Uniqueid", &channel),
                        ("Cause", &cause),
                        ("Cause-txt", "Normal Clearing"),
                    ]);
                }
                _ => self.send(format!("Response: Success\r\nActionID: {id}\r\n\r\n")),
            }
        }
    }

    pub fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.run();
    }

    /// The far parties called since the last answer answer.
    fn answer(&mut self) {
        for (id, far) in std::mem::take(&mut self.originated) {
            self.event(&[
                ("Event", "OriginateResponse"),
                ("ActionID", &id),
                ("Response", "Success"),
                ("Channel", "PJSIP/far-0001"),
                ("Uniqueid", &far),
                ("Reason", "4"),
            ]);
            self.event(&[("Event", "ConfbridgeJoin"), ("Uniqueid", &far)]);
        }
    }

    /// A leg reaches `Handoff(far,path)` (`secret`: a move leg's kind, `pin` or `ticket`).
    fn leg_arrives(&mut self, uniqueid: &str, leg: Arrival<'_>, far: &str, secret: &str) {
        self.event(&[
            ("Event", "HandoffLegArrived"),
            ("Channel", leg.channel),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", leg.caller),
            ("Endpoint", leg.endpoint),
            ("Path", leg.path),
            ("Far", far),
            ("Token", ""),
            ("Secret", secret),
        ]);
    }

    /// `n` dual-leg calls start, the next devices in turn: each device's app leg arrives, the
    /// far party answers, the carrier leg pairs, the mix starts on the app leg and aligns.
    /// Returns (call, device index) of each; the app leg is `{call}.1`, the carrier leg `{call}.2`.
    pub fn start_calls(&mut self, n: usize) -> Vec<(u64, usize)> {
        let first = self.calls;
        let legs: Vec<(u64, usize)> =
            (0..n as u64).map(|k| (first + k, ((first + k) as usize) % self.devices)).collect();
        self.calls += n as u64;
        for &(call, d) in &legs {
            let ep = format!("load-app-{d:03}");
            let leg = Arrival { channel: &format!("PJSIP/{ep}-{call:08x}"), caller: &ep, endpoint: &ep, path: "data" };
            self.leg_arrives(&format!("{call}.1"), leg, "2000", "");
        }
        self.advance(300);
        self.answer();
        self.advance(200);
        for &(call, d) in &legs {
            let (channel, number) = (format!("PJSIP/carrier-{call:08x}"), format!("+1555200{d:04}"));
            let leg = Arrival { channel: &channel, caller: &number, endpoint: "carrier", path: "carrier" };
            self.leg_arrives(&format!("{call}.2"), leg, "2000", "");
        }
        self.advance(100);
        for &(call, _) in &legs {
            let (data, carrier) = (format!("{call}.1"), format!("{call}.2"));
            self.event(&[("Event", "ConfbridgeJoin"), ("Uniqueid", &data)]);
            self.event(&[("Event", "ConfbridgeJoin"), ("Uniqueid", &carrier)]);
            self.event(&[
                ("Event", "HandoffLegSwitched"),
                ("Uniqueid", &data),
                ("From", "carrier"),
                ("To", "data"),
                ("Reason", "first-frames"),
                ("GapMs", "0"),
            ]);
            let session = self.core.sessions.session_of(&data).map(|s| s.0.clone()).unwrap_or_default();
            self.event(&[
                ("Event", "HandoffAlignment"),
                ("Session", &session),
                ("Status", "aligned"),
                ("OffsetMs", "-87.6"),
                ("Later", "data"),
            ]);
        }
        self.run();
        legs
    }

    /// The calls go on for `ms`: hellos, ticks.
    pub fn talk(&mut self, ms: Millis) {
        for _ in 0..(ms / 5_000) {
            self.advance(5_000);
        }
    }

    /// The phone hangs up leg `uniqueid` (handoffd hangs up the rest of its call).
    pub fn hang_up(&mut self, uniqueid: &str) {
        self.event(&[("Event", "Hangup"), ("Uniqueid", uniqueid), ("Cause", "16"), ("Cause-txt", "Normal Clearing")]);
        self.run();
    }

    /// Past the ending linger and the pairing window: whatever lingers is gone.
    pub fn settle(&mut self) {
        self.advance(100);
        self.advance(12_000);
    }

    /// `n` dual-leg calls, start to end: [`Load::start_calls`], [`CALL_MS`] of talk, and the
    /// phone hangs up its app leg (handoffd hangs up the rest).
    pub fn wave(&mut self, n: usize) {
        let legs = self.start_calls(n);
        self.talk(CALL_MS);
        for &(call, _) in &legs {
            self.hang_up(&format!("{call}.1"));
        }
        self.settle();
        assert_eq!(self.core.sessions.len(), 0, "every session ended");
    }

    /// Device `device`'s app dials in to take its user's call over with `secret`
    /// (`ticket-<hex>` or `pin-<digits>`) as leg `uniqueid`; once the check is done and the
    /// leg assigned, Asterisk puts it in the conference. Returns whether the move was carried
    /// out (the leg is in a session).
    pub fn move_leg(&mut self, device: usize, uniqueid: &str, secret: &str) -> bool {
        let kind = secret.split('-').next().unwrap_or("");
        self.secrets.insert(uniqueid.to_string(), secret.to_string());
        let ep = format!("load-app-{device:03}");
        let leg = Arrival { channel: &format!("PJSIP/{ep}-m{uniqueid}"), caller: &ep, endpoint: &ep, path: "data" };
        self.leg_arrives(uniqueid, leg, handoff::session::MOVE_FAR, kind);
        self.advance(100);
        if self.core.sessions.session_of(uniqueid).is_none() {
            return false;
        }
        self.event(&[("Event", "ConfbridgeJoin"), ("Uniqueid", uniqueid)]);
        self.advance(100);
        true
    }
}
