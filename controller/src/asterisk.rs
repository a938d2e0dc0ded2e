//! The Asterisk side of the session core (sans-I/O): AMI events become session inputs, session
//! commands become AMI actions. The AMI actions and events of `res_handoff.so` are listed in
//! `docs/ami.md`; the dial plan contexts named here are in `dialplans/extensions_handoff.conf`.
//!
//! Files: this one (the driver: login, snapshot, hello, the link's state); `asterisk/mapping.rs`
//! (events to inputs, commands to actions); `asterisk/late_tests.rs` (tests of late answers).

use crate::ami::{Action, ActionId, ActionTracker, AmiDecoder, AmiMessage, Event, ResponseStatus, Tracked};
use crate::config::Config;
use crate::pbx::{Driver, DriverEvent, DriverInput, LinkError, LinkUp, Pbx};
use crate::session::{is_far_channel, Command, Input, LegArrival, Millis, Path};
use handoff_vocab::{action, event, header, value};
use std::collections::{HashMap, VecDeque};
use tracing::{debug, error, info, warn};

/// Dial plan context and extension the far party's channel runs after it answers.
pub const FAR_CONTEXT: &str = "handoff-far";
pub const FAR_EXTEN: &str = "join";

mod mapping;

#[cfg(test)]
use mapping::endpoint_of;
pub use mapping::{action_for, channels_from_list, input_from_event, originate_outcome, EventError};

/// How often handoffd says hello to the module (its `controller_timeout` is 15 s by default).
pub const HELLO_INTERVAL_MS: Millis = 5_000;

/// How many events may arrive while the `CoreShowChannels` list is read (they are applied
/// after the snapshot). Past this the link is dropped and made again, with a fresh snapshot:
/// a busy PBX sends a few hundred in that time; a peer that floods is not followed into
/// unbounded memory.
pub const MAX_HELD_EVENTS: usize = 20_000;

/// The most bytes of events held while `CoreShowChannels` is read (events may be up to the
/// codec's 64 KiB each): the same drop and fresh snapshot past it.
pub const MAX_HELD_BYTES: usize = 16 << 20;

#[derive(Debug)]
enum Phase {
    /// Waiting for the `Asterisk Call Manager/x.y` banner.
    Greeting,
    /// `Login` sent.
    LoggingIn(ActionId),
    /// `CoreShowChannels` sent; events meanwhile are held (with their size in bytes).
    Listing(ActionId, Vec<Event>, usize),
    Ready,
    Down,
}

/// The Asterisk driver: AMI login, the channel snapshot, `HandoffHello` to `res_handoff.so`
/// every [`HELLO_INTERVAL_MS`], AMI events to session inputs and session commands to AMI
/// actions. The leg switch itself happens inside Asterisk, in the module.
pub struct AsteriskDriver {
    cfg: Config,
    ami: crate::config::Ami,
    decoder: AmiDecoder,
    tracker: ActionTracker,
    phase: Phase,
    /// Until when the current handshake step may take.
    deadline: Option<Millis>,
    hello_due: Millis,
    /// The pending `HandoffChallenge` (its answer's nonce goes into the next hello's Key).
    challenge: Option<ActionId>,
    hello: Option<ActionId>,
    module_missing_reported: bool,
    /// Originate ActionID → the far channel's uniqueid.
    originates: HashMap<String, String>,
    /// Client legs' paths (from `HandoffLegArrived`), to read their hang-up causes; removed on
    /// the leg's Hangup, and those not in the channel list after a reconnect.
    paths: HashMap<String, Path>,
    overrides: crate::hangup_cause::Overrides,
    /// HandoffAssign ActionID → the leg's uniqueid (a refused assign means the leg is gone).
    assigns: HashMap<String, String>,
    /// `HandoffSecret` ActionID → the move leg waiting for its PIN or ticket (bounded by the
    /// legs inside `Handoff()`; failed with the tracker's actions on expiry and reconnect).
    secrets: HashMap<String, LegArrival>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<DriverEvent>,
}

impl AsteriskDriver {
    /// A driver for the AMI account `ami`; `cfg` supplies the far trunk and conference profiles.
    pub fn new(cfg: Config, ami: crate::config::Ami) -> Self {
        Self {
            overrides: cfg.hangup_overrides(),
            cfg,
            ami,
            decoder: AmiDecoder::new(),
            tracker: ActionTracker::new("handoffd"),
            phase: Phase::Down,
            deadline: None,
            hello_due: 0,
            challenge: None,
            hello: None,
            module_missing_reported: false,
            originates: HashMap::new(),
            paths: HashMap::new(),
            assigns: HashMap::new(),
            secrets: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn lost(&mut self, why: impl Into<String>) {
        self.phase = Phase::Down;
        self.deadline = None;
        self.events.push_back(DriverEvent::Down(LinkError::Lost {
            link: "AMI",
            addr: self.ami.address(),
            why: why.into(),
        }));
    }

    fn send(&mut self, action: Action, now: Millis) -> ActionId {
        let (id, action) = self.tracker.start(action, now);
        match action.encode() {
            Ok(bytes) => {
                debug!(action = action.name(), id = %id, "AMI send");
                self.transmit.push_back(bytes);
            }
            // A command built from bad data is refused here; the link stays up.
            Err(e) => error!("not sending AMI action {}: {e}", action.name()),
        }
        id
    }

    fn on_message(&mut self, msg: AmiMessage, now: Millis) {
        if let (Phase::Greeting, AmiMessage::Banner(b)) = (&self.phase, &msg) {
            debug!("AMI banner: {b}");
            let login = Action::new("Login")
                .header("Username", &self.ami.username)
                .header("Secret", self.ami.secret.expose())
                .header("Events", "system,call");
            let id = self.send(login, now);
            self.phase = Phase::LoggingIn(id);
            self.deadline = Some(now + self.ami.action_timeout_ms);
            return;
        }
        if let Phase::Greeting = self.phase {
            let why = format!("expected a banner, got {msg:?}");
            self.phase = Phase::Down;
            self.events.push_back(DriverEvent::Down(LinkError::NotThePbx {
                pbx: "Asterisk's AMI",
                addr: self.ami.address(),
                why,
            }));
            return;
        }
        match self.tracker.on_message(msg) {
            Tracked::Completed(id, outcome) => self.on_completed(id, outcome, now),
            Tracked::Pending => {}
            Tracked::Unsolicited(AmiMessage::Event(ev)) => match &mut self.phase {
                Phase::Listing(_, _, bytes) if *bytes >= MAX_HELD_BYTES => {
                    let why = format!(
                        "more than {} MiB of events arrived while the channel list was read; reconnecting to take a fresh snapshot",
                        MAX_HELD_BYTES >> 20
                    );
                    error!("AMI link to {}: {why}", self.ami.address());
                    self.lost(why)
                }
                Phase::Listing(_, held, _) if held.len() >= MAX_HELD_EVENTS => {
                    let why = format!(
                        "more than {MAX_HELD_EVENTS} events arrived while the channel list was read; reconnecting to take a fresh snapshot"
                    );
                    error!("AMI link to {}: {why}", self.ami.address());
                    self.lost(why)
                }
                Phase::Listing(_, held, bytes) => {
                    *bytes += ev.name.len() + ev.headers.byte_size();
                    held.push(ev)
                }
                Phase::Ready => self.on_event(ev, now),
                _ => {}
            },
            Tracked::Unsolicited(AmiMessage::Response(r)) if r.status == ResponseStatus::Goodbye => {
                self.lost("Asterisk said goodbye")
            }
            // Not the whole message: a late HandoffSecret response carries a secret.
            Tracked::Unsolicited(AmiMessage::Response(r)) => {
                debug!("unsolicited AMI response {:?} (ActionID {:?})", r.status, r.action_id)
            }
            Tracked::Unsolicited(other) => debug!("unsolicited AMI message: {other:?}"),
        }
    }

    fn on_completed(&mut self, id: ActionId, outcome: crate::ami::Outcome, now: Millis) {
        match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::LoggingIn(login) if login == id => {
                if outcome.response.status != ResponseStatus::Success {
                    self.events.push_back(DriverEvent::Down(LinkError::Refused(format!(
                        "AMI login as '{}' at {} refused: {} (check ami.username and ami.secret in handoffd.yaml against manager_handoff.conf)",
                        self.ami.username,
                        self.ami.address(),
                        outcome.response.message.as_deref().unwrap_or("no reason given")
                    ))));
                    return;
                }
                self.events.push_back(DriverEvent::Up(LinkUp {
                    pbx: Pbx::Asterisk,
                    address: self.ami.address(),
                    account: Some(self.ami.username.clone()),
                }));
                let list = self.send(Action::new("CoreShowChannels"), now);
                self.phase = Phase::Listing(list, Vec::new(), 0);
                self.deadline = Some(now + self.ami.action_timeout_ms);
            }
            Phase::Listing(list, held, _) if list == id => {
                self.phase = Phase::Ready;
                self.deadline = None;
                let channels = channels_from_list(&outcome.events);
                // A leg that hung up while the link was down sends no Hangup this driver reads
                // (the resync hangs it up in the core): its path is forgotten here.
                let present: std::collections::HashSet<&str> = channels.iter().map(|c| c.uniqueid.as_str()).collect();
                self.paths.retain(|uniqueid, _| present.contains(uniqueid.as_str()));
                self.events.push_back(DriverEvent::Snapshot(channels));
                for ev in held {
                    self.on_event(ev, now);
                }
                self.hello_due = now;
                self.say_hello(now);
            }
            phase => {
                self.phase = phase;
                if let Some(leg) = self.secrets.remove(&id.0) {
                    return self.secret_fetched(leg, &outcome.response);
                }
                if Some(&id) == self.challenge.as_ref() {
                    self.challenge = None;
                    // res_handoff.so accepts handoff actions only from the AMI session that proves
                    // it holds the secret of its controller_account (docs/ami.md). A module
                    // without HandoffChallenge gets a plain hello.
                    let nonce = outcome
                        .response
                        .headers
                        .get(header::CHALLENGE)
                        .filter(|_| outcome.response.status == ResponseStatus::Success);
                    self.send_hello(nonce.map(|n| hello_key(n, self.ami.secret.expose())), now);
                } else if Some(&id) == self.hello.as_ref() {
                    if outcome.response.status == ResponseStatus::Success {
                        if self.module_missing_reported {
                            info!("res_handoff.so answered HandoffHello again");
                            self.module_missing_reported = false;
                        }
                    } else if !self.module_missing_reported {
                        error!(
                            "res_handoff.so does not answer HandoffHello (AMI says: {}); load it: asterisk -rx 'module load res_handoff.so'",
                            outcome.response.message.as_deref().unwrap_or("no message")
                        );
                        self.module_missing_reported = true;
                    }
                } else if outcome.response.status != ResponseStatus::Success {
                    self.originates.remove(&id.0);
                    let why = outcome.response.message.as_deref().unwrap_or("no message").to_string();
                    warn!("AMI action {id} failed: {why}");
                    // A decision the module refused: its leg no longer waits (it timed out).
                    if let Some(uniqueid) = self.assigns.remove(&id.0) {
                        self.events.push_back(DriverEvent::Input(Input::AssignRefused { uniqueid, why }));
                    }
                } else {
                    self.assigns.remove(&id.0);
                }
            }
        }
    }

    fn say_hello(&mut self, now: Millis) {
        if !matches!(self.phase, Phase::Ready) || now < self.hello_due {
            return;
        }
        self.challenge = Some(self.send(Action::new(action::CHALLENGE), now));
        self.hello_due = now + HELLO_INTERVAL_MS;
    }

    fn send_hello(&mut self, key: Option<String>, now: Millis) {
        let mut hello =
            Action::new(action::HELLO).header(header::CONTROLLER, concat!("handoffd/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = key {
            hello = hello.header(header::KEY, &key);
        }
        self.hello = Some(self.send(hello, now));
    }

    /// A move leg's PIN or ticket stays inside Asterisk until asked for: `HandoffLegArrived`
    /// (seen by every AMI client with read=call) names only its kind (`Secret: pin|ticket`),
    /// and the value comes back in the response to `HandoffSecret`, which only this session
    /// sees. The leg reaches the session core once the value is here.
    fn fetch_secret(&mut self, leg: LegArrival, kind: &str, now: Millis) {
        debug!(uniqueid = %leg.uniqueid, kind, "fetching the leg's secret");
        let id = self.send(Action::new(action::SECRET).header(header::UNIQUEID, &leg.uniqueid), now);
        self.secrets.insert(id.0, leg);
    }

    fn secret_fetched(&mut self, mut leg: LegArrival, response: &crate::ami::Response) {
        let value = response.message.as_deref().unwrap_or("").trim();
        if response.status == ResponseStatus::Success
            && (value.starts_with(value::PIN_PREFIX) || value.starts_with(value::TICKET_PREFIX))
        {
            leg.token = value.to_string();
        } else {
            // Never log the message of a success: it is the secret.
            let why = if response.status == ResponseStatus::Success {
                "an answer that is neither pin-… nor ticket-…"
            } else {
                response.message.as_deref().unwrap_or("no message")
            };
            warn!(uniqueid = %leg.uniqueid, "HandoffSecret for {}: {why}; the move is refused", leg.channel);
            leg.token.clear();
        }
        self.events.push_back(DriverEvent::Input(Input::LegArrived(leg)));
    }

    fn on_event(&mut self, ev: Event, now: Millis) {
        if ev.name == event::LEG_SWITCHED && ev.get(header::REASON) == Some(value::SWITCH_STALL) {
            let gap = ev.get(header::GAP_MS).and_then(|g| g.parse().ok()).unwrap_or(0);
            self.events.push_back(DriverEvent::Failover { gap_ms: Some(gap) });
        }
        if ev.name == event::ALIGNMENT {
            let offset_ms = match ev.get(header::STATUS) {
                Some(value::ALIGNED) => {
                    ev.get(header::OFFSET_MS).and_then(|o| o.parse::<f64>().ok()).map(|o| o.abs().round() as u64)
                }
                _ => None,
            };
            self.events.push_back(DriverEvent::Alignment { offset_ms });
        }
        let input = if ev.name == "OriginateResponse" {
            let Some(far) = ev.headers.get("ActionID").and_then(|id| self.originates.remove(id)) else {
                // An answer to an originate handoffd no longer follows (its action timed out,
                // or the link was made again): a far channel that is up must still find its session.
                let uniqueid = ev.get("Uniqueid").unwrap_or("");
                let answered = ev.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success"));
                if answered && is_far_channel(uniqueid) {
                    self.events.push_back(DriverEvent::Input(Input::FarSeen { uniqueid: uniqueid.to_string() }));
                }
                return;
            };
            Some(originate_outcome(&ev, &far))
        } else if ev.name == "Newchannel" {
            // A far channel is created after its originate was sent, possibly after its session
            // ended (and its hangup found no channel): the session core hangs it up then.
            let uniqueid = ev.get("Uniqueid").unwrap_or("");
            is_far_channel(uniqueid).then(|| Input::FarSeen { uniqueid: uniqueid.to_string() })
        } else {
            match input_from_event(&ev) {
                Ok(Some(Input::LegArrived(leg)))
                    if matches!(ev.get(header::SECRET), Some(value::SECRET_PIN | value::SECRET_TICKET)) =>
                {
                    let kind = ev.get(header::SECRET).unwrap_or_default().to_string();
                    return self.fetch_secret(leg, &kind, now);
                }
                Ok(i) => i,
                Err(e) => {
                    warn!("{e}; event ignored");
                    None
                }
            }
        };
        // A hang-up is read here, by the one table (crate::hangup_cause), with the leg's path.
        let input = match input {
            Some(Input::LegArrived(leg)) => {
                if self.paths.len() < 10_000 {
                    self.paths.insert(leg.uniqueid.clone(), leg.path);
                }
                Some(Input::LegArrived(leg))
            }
            Some(Input::Hangup { uniqueid, cause, cause_txt }) => {
                let path = self.paths.remove(&uniqueid);
                let end = crate::hangup_cause::classify(
                    crate::hangup_cause::Pbx::Asterisk,
                    &cause_txt,
                    cause,
                    path,
                    &self.overrides,
                );
                Some(Input::LegEnded { uniqueid, cause, cause_txt, end })
            }
            other => other,
        };
        if let Some(input) = input {
            self.events.push_back(DriverEvent::Input(input));
        }
    }
}

/// The proof `HandoffHello` carries: hex SHA-256 of the module's challenge followed by the AMI
/// secret (the module checks it against its controller_account's secret in manager.conf).
fn hello_key(challenge: &str, secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(challenge.as_bytes()).chain_update(secret.as_bytes()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Driver for AsteriskDriver {
    fn pbx(&self) -> Pbx {
        Pbx::Asterisk
    }

    fn handle(&mut self, input: DriverInput<'_>, now: Millis) {
        match input {
            DriverInput::Connected => self.connected(now),
            DriverInput::Received(bytes) => self.receive(bytes, now),
            DriverInput::Closed if !matches!(self.phase, Phase::Down) => self.lost("Asterisk closed the connection"),
            DriverInput::Closed => {}
            DriverInput::Timeout => self.timeout(now),
            DriverInput::Command(cmd) => self.command(cmd, now),
            // The legs' paths, to read their hang-up causes.
            DriverInput::Adopted(found) => {
                self.paths.extend(found.legs.iter().map(|(uuid, _, path)| (uuid.clone(), *path)));
            }
            // The module holds the mix; nothing was held back for the resync.
            DriverInput::Resynced => {}
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.deadline;
        if matches!(self.phase, Phase::Ready) {
            next = Some(next.map_or(self.hello_due, |d| d.min(self.hello_due)));
        }
        if let Some(t) = self.tracker.next_timeout() {
            let t = t + self.ami.action_timeout_ms;
            next = Some(next.map_or(t, |d| d.min(t)));
        }
        next
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }
}

/// The driver's inputs ([`DriverInput`]), callable one by one (the tests and bench-ami drive it so).
impl AsteriskDriver {
    /// A new connection is open; any earlier connection's state is dropped.
    pub fn connected(&mut self, now: Millis) {
        self.decoder = AmiDecoder::new();
        for id in self.tracker.fail_all() {
            self.originates.remove(&id.0);
            self.assigns.remove(&id.0);
            self.secrets.remove(&id.0);
        }
        self.phase = Phase::Greeting;
        self.deadline = Some(now + self.ami.action_timeout_ms);
        self.hello = None;
        self.challenge = None;
        self.transmit.clear();
        self.events.clear();
    }

    /// Bytes Asterisk sent.
    pub fn receive(&mut self, bytes: &[u8], now: Millis) {
        self.decoder.feed(bytes);
        loop {
            if matches!(self.phase, Phase::Down) {
                return;
            }
            match self.decoder.next_message() {
                Ok(Some(m)) => self.on_message(m, now),
                Ok(None) => return,
                // The decoder resynchronises on the next message boundary; nothing else is lost.
                Err(e) => warn!("bad AMI input from {}: {e}", self.ami.address()),
            }
        }
    }

    /// Carries out a session command.
    pub fn command(&mut self, cmd: &Command, now: Millis) {
        let action = action_for(cmd, &self.cfg);
        let id = self.send(action, now);
        match cmd {
            Command::OriginateFar { uniqueid, .. } => {
                self.originates.insert(id.0, uniqueid.clone());
            }
            Command::Assign { uniqueid, .. } => {
                self.assigns.insert(id.0, uniqueid.clone());
            }
            _ => {}
        }
    }

    /// Time has come (at or after [`Driver::poll_timeout`]).
    pub fn timeout(&mut self, now: Millis) {
        if self.deadline.is_some_and(|d| now >= d) {
            let waited = self.ami.action_timeout_ms;
            return self.lost(format!("no answer within {waited} ms"));
        }
        for expired in self.tracker.expire(now, self.ami.action_timeout_ms) {
            self.originates.remove(&expired.0);
            self.assigns.remove(&expired.0);
            if let Some(leg) = self.secrets.remove(&expired.0) {
                let no_answer = crate::ami::Response {
                    status: ResponseStatus::Error,
                    action_id: None,
                    message: Some("no response".into()),
                    headers: Default::default(),
                };
                self.secret_fetched(leg, &no_answer);
            }
            warn!("AMI action {expired} got no response within {} ms", self.ami.action_timeout_ms);
        }
        self.say_hello(now);
    }
}

#[cfg(test)]
mod late_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::Headers;

    fn channel(uniqueid: &str, name: &str, app: &str, data: &str, cid: &str) -> Event {
        let mut h = Headers::new();
        for (k, v) in [
            ("Event", "CoreShowChannel"),
            ("Channel", name),
            ("Uniqueid", uniqueid),
            ("Application", app),
            ("ApplicationData", data),
            ("CallerIDNum", cid),
        ] {
            h.push(k, v);
        }
        Event { name: "CoreShowChannel".into(), headers: h }
    }

    #[test]
    fn the_channel_list_says_who_is_in_which_conference() {
        let list = vec![
            channel("1.1", "PJSIP/alice-app-00000000", "ConfBridge", "handoff-ab-1,handoff_bridge,handoff_user", "x"),
            channel("2.1", "PJSIP/bob-00000003", "Dial", "PJSIP/200", "200"),
        ];
        let got = channels_from_list(&list);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].conference.as_deref(), Some("handoff-ab-1"));
        assert_eq!((got[0].endpoint.as_str(), got[0].caller.as_str()), ("alice-app", "x"));
        assert_eq!(got[1].conference, None);
        assert_eq!(endpoint_of("PJSIP/alice-app-0000001a"), "alice-app");
    }

    pub(super) fn driver() -> AsteriskDriver {
        let cfg = Config::parse("ami:\n  username: handoffd\n  secret: s3cret\n", "t.yaml").unwrap();
        let ami = cfg.ami.clone().unwrap();
        AsteriskDriver::new(cfg, ami)
    }

    pub(super) fn sent(d: &mut AsteriskDriver) -> String {
        let mut s = String::new();
        while let Some(b) = d.poll_transmit() {
            s.push_str(&String::from_utf8_lossy(&b));
        }
        s
    }

    pub(super) fn events(d: &mut AsteriskDriver) -> Vec<DriverEvent> {
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    #[test]
    fn the_module_aligning_or_unaligning_a_device_is_reported_for_the_metrics() {
        let mut d = ready_driver();
        d.receive(
            b"Event: HandoffAlignment\r\nSession: s-1\r\nGroup: s-1/alice-phone\r\nStatus: aligned\r\nOffsetMs: -87.6\r\nLater: data\r\n\r\n\
              Event: HandoffAlignment\r\nSession: s-1\r\nGroup: s-1/alice-phone\r\nStatus: switching\r\nReason: silence\r\n\r\n",
            4,
        );
        let ev = events(&mut d);
        assert!(
            matches!(
                ev[..],
                [DriverEvent::Alignment { offset_ms: Some(88) }, DriverEvent::Alignment { offset_ms: None }]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn login_snapshot_then_events_held_meanwhile() {
        let mut d = driver();
        d.connected(0);
        d.receive(b"Asterisk Call Manager/11.0.0\r\n", 1);
        let login = sent(&mut d);
        assert!(login.contains("Action: Login\r\n") && login.contains("Secret: s3cret\r\n"), "{login}");
        d.receive(b"Response: Success\r\nActionID: handoffd-1\r\nMessage: Authentication accepted\r\n\r\n", 2);
        assert!(matches!(events(&mut d)[..], [DriverEvent::Up { .. }]));
        assert!(sent(&mut d).contains("Action: CoreShowChannels\r\n"));
        // A hangup arrives while the list is being read: it comes after the snapshot.
        d.receive(
            b"Response: Success\r\nActionID: handoffd-2\r\nEventList: start\r\n\r\n\
              Event: Hangup\r\nUniqueid: 9.9\r\nCause: 16\r\n\r\n\
              Event: CoreShowChannel\r\nActionID: handoffd-2\r\nChannel: PJSIP/alice-app-1\r\nUniqueid: 1.1\r\nApplication: ConfBridge\r\nApplicationData: handoff-s-1\r\n\r\n\
              Event: CoreShowChannelsComplete\r\nActionID: handoffd-2\r\nEventList: Complete\r\n\r\n",
            3,
        );
        let ev = events(&mut d);
        assert!(matches!(&ev[0], DriverEvent::Snapshot(c) if c.len() == 1 && c[0].uniqueid == "1.1"), "{ev:?}");
        assert!(matches!(&ev[1], DriverEvent::Input(Input::LegEnded { uniqueid, cause: 16, .. }) if uniqueid == "9.9"));
        assert!(sent(&mut d).contains("Action: HandoffChallenge\r\n"), "challenge once ready");
        assert_eq!(d.poll_timeout(), Some(3 + HELLO_INTERVAL_MS));
        d.receive(b"Response: Success\r\nActionID: handoffd-3\r\nChallenge: 0123abcd\r\n\r\n", 4);
        let hello = sent(&mut d);
        // echo -n 0123abcds3cret | sha256sum
        let key = "970dc2de00c11167676a9e363e9835ed89c9c8ed2829f059f2c684b251d71369";
        assert!(hello.contains("Action: HandoffHello\r\n") && hello.contains(&format!("Key: {key}\r\n")), "{hello}");
        assert!(!hello.contains("s3cret"));
    }

    #[test]
    fn a_refused_login_is_fatal_and_silence_is_a_lost_link() {
        let mut d = driver();
        d.connected(0);
        d.receive(b"Asterisk Call Manager/11.0.0\r\n", 1);
        d.receive(b"Response: Error\r\nActionID: handoffd-1\r\nMessage: Authentication failed\r\n\r\n", 2);
        let ev = events(&mut d);
        assert!(
            matches!(&ev[..], [DriverEvent::Down(e)] if e.is_fatal() && e.to_string().contains("AMI login as 'handoffd' at 127.0.0.1:5038 refused: Authentication failed")),
            "{ev:?}"
        );
        assert!(!format!("{ev:?}").contains("s3cret"));
        let mut d = driver();
        d.connected(0);
        d.timeout(5_000);
        let ev = events(&mut d);
        assert!(
            matches!(&ev[..], [DriverEvent::Down(e)] if !e.is_fatal() && e.to_string() == "AMI link to 127.0.0.1:5038 lost: no answer within 5000 ms"),
            "{ev:?}"
        );
    }

    /// A driver logged in, with an empty channel list, its hello sent.
    fn ready_driver() -> AsteriskDriver {
        let mut d = driver();
        d.connected(0);
        d.receive(b"Asterisk Call Manager/11.0.0\r\n", 1);
        d.receive(b"Response: Success\r\nActionID: handoffd-1\r\nMessage: Authentication accepted\r\n\r\n", 2);
        d.receive(
            b"Response: Success\r\nActionID: handoffd-2\r\nEventList: start\r\n\r\n\
              Event: CoreShowChannelsComplete\r\nActionID: handoffd-2\r\nEventList: Complete\r\n\r\n",
            3,
        );
        sent(&mut d);
        events(&mut d);
        d
    }

    const MOVE_LEG: &[u8] = b"Event: HandoffLegArrived\r\nChannel: PJSIP/alice-tablet-1\r\nUniqueid: 7.1\r\n\
        CallerIDNum: alice-tablet\r\nEndpoint: alice-tablet\r\nPath: data\r\nFar: move\r\nToken: \r\nSecret: pin\r\n\r\n";

    #[test]
    fn a_move_legs_secret_is_fetched_by_action_before_the_leg_goes_on() {
        let mut d = ready_driver();
        d.receive(MOVE_LEG, 10);
        assert!(events(&mut d).is_empty(), "the leg waits for its secret");
        let out = sent(&mut d);
        assert!(out.contains("Action: HandoffSecret\r\n") && out.contains("Uniqueid: 7.1\r\n"), "{out}");
        let id = out.lines().find_map(|l| l.strip_prefix("ActionID: ")).unwrap().to_string();
        d.receive(format!("Response: Success\r\nActionID: {id}\r\nMessage: pin-2468\r\n\r\n").as_bytes(), 11);
        let ev = events(&mut d);
        assert!(
            matches!(&ev[..], [DriverEvent::Input(Input::LegArrived(l))] if l.token == "pin-2468" && l.far == "move" && l.endpoint == "alice-tablet"),
            "{ev:?}"
        );
    }

    #[test]
    fn a_secret_that_cannot_be_fetched_leaves_the_leg_without_one() {
        let mut d = ready_driver();
        d.receive(MOVE_LEG, 10);
        let out = sent(&mut d);
        let id = out.lines().find_map(|l| l.strip_prefix("ActionID: ")).unwrap().to_string();
        d.receive(
            format!(
                "Response: Error\r\nActionID: {id}\r\nMessage: HandoffSecret: Uniqueid 7.1 holds no secret\r\n\r\n"
            )
            .as_bytes(),
            11,
        );
        let ev = events(&mut d);
        assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegArrived(l))] if l.token.is_empty()), "{ev:?}");
        // No answer at all: the same, once the action times out.
        d.receive(MOVE_LEG, 20);
        sent(&mut d);
        d.timeout(20 + 5_000);
        let ev = events(&mut d);
        assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegArrived(l))] if l.token.is_empty()), "{ev:?}");
    }

    #[test]
    fn a_leg_without_a_secret_goes_on_at_once_with_its_token() {
        let mut d = ready_driver();
        d.receive(
            b"Event: HandoffLegArrived\r\nChannel: PJSIP/alice-app-1\r\nUniqueid: 8.1\r\nEndpoint: alice-app\r\n\
              Path: data\r\nFar: 2000\r\nToken: 4711\r\nSecret: \r\n\r\n",
            10,
        );
        let ev = events(&mut d);
        assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegArrived(l))] if l.token == "4711"), "{ev:?}");
        assert!(!sent(&mut d).contains("HandoffSecret"));
    }
}
