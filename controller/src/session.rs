//! Sessions: one conversation between a user's phone and a far party (sans-I/O).
//!
//! The core takes typed inputs (a leg arrived in `Handoff()`, the far party answered, a channel
//! hung up, the clock ticked) with the time they happened, and returns typed outputs: commands
//! for the PBX driver and timeline records for the log. It owns no socket, clock or store, so
//! tests drive it deterministically.
//!
//! ```text
//!                 leg arrives: assign it, originate the far party
//!   (none) ─────────────────────────────────────────────▶ AwaitingFarAnswer
//!                                                             │        │
//!                  far answers ◀─────────────────────────────┘        │ far fails / hangs up,
//!                       │                                               │ or every client leg
//!                       ▼                                               │ hangs up
//!                   Connected ── far hangs up, or every client ──▶ Ending ◀┘
//!                                leg hangs up: hang up the rest     │
//!                                                                   │ every channel gone
//!                                                                   ▼   (or linger timer)
//!                                                                 removed
//! ```
//!
//! | state               | input                   | next                | commands                  |
//! |---------------------|-------------------------|---------------------|---------------------------|
//! | (none)              | `LegArrived`            | `AwaitingFarAnswer` | `Assign`, `OriginateFar`  |
//! | `AwaitingFarAnswer` | `FarAnswered`           | `Connected`         | —                         |
//! | `AwaitingFarAnswer` | `FarFailed`, far hangup | `Ending`            | `Hangup` client legs      |
//! | any live state      | last client leg hangup  | `Ending`            | `Hangup` far              |
//! | `Connected`         | far hangup              | `Ending`            | `Hangup` client legs      |
//! | `Ending`            | last channel gone       | removed             | —                         |
//! | `Ending`            | `Tick` after linger     | removed             | —                         |

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Milliseconds on the daemon's monotonic clock.
pub type Millis = u64;

/// How long an ending session waits for its channels' hangup events before it is dropped.
pub const ENDING_LINGER_MS: Millis = 10_000;

/// Which network a client leg comes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// SIP from the phone's app over Wi-Fi or mobile data.
    Data,
    /// The carrier network (cellular/PSTN) over a SIP trunk.
    Carrier,
}

impl Path {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "carrier" => Some(Self::Carrier),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Carrier => "carrier",
        }
    }
}

/// A session's identifier; its conference is named `<name_prefix><id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client leg that entered `Handoff()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegArrival {
    pub uniqueid: String,
    pub channel: String,
    pub caller: String,
    pub endpoint: String,
    pub path: Path,
    pub far: String,
    pub token: String,
}

/// What the core is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A client leg waits in `Handoff()` for a decision.
    LegArrived(LegArrival),
    /// The far party answered (its originate succeeded).
    FarAnswered { uniqueid: String },
    /// The far call could not be placed (busy, no answer, congestion, unknown endpoint).
    FarFailed { uniqueid: String, reason: String },
    /// A channel hung up.
    Hangup { uniqueid: String, cause: u32, cause_txt: String },
    /// Time passed (drives the timers).
    Tick,
}

/// What the core asks the PBX driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Let the leg waiting in `Handoff()` join the session's conference.
    Assign { uniqueid: String, session: SessionId, bridge: String },
    /// Refuse the leg waiting in `Handoff()`.
    Refuse { uniqueid: String, reason: String },
    /// Call the far party into the session's conference; its channel gets `uniqueid`.
    OriginateFar { session: SessionId, uniqueid: String, number: String, bridge: String, caller_id: String },
    /// Hang up a channel with a Q.850 cause.
    Hangup { uniqueid: String, cause: u32 },
}

/// A line of a session's timeline (logged by the daemon, printed by the demo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at: Millis,
    pub session: SessionId,
    pub what: String,
}

/// Everything one input produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub commands: Vec<Command>,
    pub records: Vec<Record>,
}

/// The states a session goes through (see the module diagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The far call is ringing; client legs sit in the conference.
    AwaitingFarAnswer,
    /// The far party answered; the conversation runs.
    Connected,
    /// Hangups were sent; waiting for the channels to be gone (or the linger timer).
    Ending { since: Millis, reason: String },
}

#[derive(Clone, Debug)]
struct ClientLeg {
    channel: String,
    path: Path,
    live: bool,
}

#[derive(Clone, Debug)]
struct Session {
    state: State,
    bridge: String,
    far_uniqueid: String,
    far_live: bool,
    legs: BTreeMap<String, ClientLeg>,
    opened_at: Millis,
}

impl Session {
    fn live_clients(&self) -> usize {
        self.legs.values().filter(|l| l.live).count()
    }
    fn all_gone(&self) -> bool {
        !self.far_live && self.live_clients() == 0
    }
}

/// Settings the core needs (from `handoffd.yaml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Conference names are `<bridge_prefix><session id>`.
    pub bridge_prefix: String,
    /// Caller ID for the far call when the leg has none.
    pub default_caller_id: String,
}

/// All sessions of one PBX.
#[derive(Debug)]
pub struct Sessions {
    rules: Rules,
    id_prefix: String,
    next_id: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// Which session each known channel belongs to.
    by_channel: HashMap<String, SessionId>,
}

impl Sessions {
    /// `id_prefix` makes ids unique across daemon restarts (the daemon passes its start time).
    pub fn new(rules: Rules, id_prefix: impl Into<String>) -> Self {
        Self { rules, id_prefix: id_prefix.into(), next_id: 1, sessions: BTreeMap::new(), by_channel: HashMap::new() }
    }

    /// How many sessions exist (including ending ones).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A session's state, for status output and tests.
    pub fn state(&self, id: &SessionId) -> Option<&State> {
        self.sessions.get(id).map(|s| &s.state)
    }

    /// The conference a session's legs meet in.
    pub fn bridge(&self, id: &SessionId) -> Option<&str> {
        self.sessions.get(id).map(|s| s.bridge.as_str())
    }

    /// The session a channel belongs to.
    pub fn session_of(&self, uniqueid: &str) -> Option<&SessionId> {
        self.by_channel.get(uniqueid)
    }

    /// Ids of all sessions.
    pub fn ids(&self) -> impl Iterator<Item = &SessionId> {
        self.sessions.keys()
    }

    /// When the core next needs a `Tick`.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.sessions
            .values()
            .filter_map(|s| match s.state {
                State::Ending { since, .. } => Some(since + ENDING_LINGER_MS),
                _ => None,
            })
            .min()
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, input: Input, now: Millis) -> Outputs {
        let mut out = Outputs::default();
        match input {
            Input::LegArrived(leg) => self.recv_leg(leg, now, &mut out),
            Input::FarAnswered { uniqueid } => self.recv_far_answer(&uniqueid, now, &mut out),
            Input::FarFailed { uniqueid, reason } => self.recv_far_failed(&uniqueid, &reason, now, &mut out),
            Input::Hangup { uniqueid, cause, cause_txt } => {
                self.recv_hangup(&uniqueid, cause, &cause_txt, now, &mut out)
            }
            Input::Tick => self.recv_tick(now, &mut out),
        }
        out
    }

    fn record(out: &mut Outputs, at: Millis, session: &SessionId, what: String) {
        out.records.push(Record { at, session: session.clone(), what });
    }

    fn recv_leg(&mut self, leg: LegArrival, now: Millis, out: &mut Outputs) {
        if self.by_channel.contains_key(&leg.uniqueid) {
            out.commands.push(Command::Refuse {
                uniqueid: leg.uniqueid,
                reason: "this channel is already in a session".into(),
            });
            return;
        }
        let id = SessionId(format!("{}{}", self.id_prefix, self.next_id));
        self.next_id += 1;
        let bridge = format!("{}{}", self.rules.bridge_prefix, id);
        let far_uniqueid = format!("{id}-far");
        let caller_id = if leg.caller.is_empty() { self.rules.default_caller_id.clone() } else { leg.caller.clone() };
        Self::record(
            out,
            now,
            &id,
            format!(
                "opened: {} leg {} ({}) from {} calls {}",
                leg.path.as_str(),
                leg.channel,
                leg.uniqueid,
                leg.caller,
                leg.far
            ),
        );
        out.commands.push(Command::Assign {
            uniqueid: leg.uniqueid.clone(),
            session: id.clone(),
            bridge: bridge.clone(),
        });
        out.commands.push(Command::OriginateFar {
            session: id.clone(),
            uniqueid: far_uniqueid.clone(),
            number: leg.far.clone(),
            bridge: bridge.clone(),
            caller_id,
        });
        Self::record(out, now, &id, format!("far party {} called as {far_uniqueid}", leg.far));
        let mut legs = BTreeMap::new();
        self.by_channel.insert(leg.uniqueid.clone(), id.clone());
        self.by_channel.insert(far_uniqueid.clone(), id.clone());
        legs.insert(leg.uniqueid, ClientLeg { channel: leg.channel, path: leg.path, live: true });
        self.sessions.insert(
            id,
            Session { state: State::AwaitingFarAnswer, bridge, far_uniqueid, far_live: true, legs, opened_at: now },
        );
    }

    fn recv_far_answer(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid == uniqueid && s.state == State::AwaitingFarAnswer {
            s.state = State::Connected;
            let after = now.saturating_sub(s.opened_at);
            Self::record(out, now, &id, format!("far party answered after {after} ms; connected"));
        }
    }

    fn recv_far_failed(&mut self, uniqueid: &str, reason: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid != uniqueid || matches!(s.state, State::Ending { .. }) {
            return;
        }
        // An originate that failed before a channel existed sends no hangup: the far leg is gone.
        s.far_live = false;
        self.by_channel.remove(uniqueid);
        Self::record(out, now, &id, format!("far call failed: {reason}"));
        self.end(&id, format!("far call failed: {reason}"), far_failure_cause(reason), now, out);
    }

    fn recv_hangup(&mut self, uniqueid: &str, cause: u32, cause_txt: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.remove(uniqueid) else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let ending = matches!(s.state, State::Ending { .. });
        if s.far_uniqueid == uniqueid {
            s.far_live = false;
            let answered = s.state == State::Connected;
            Self::record(out, now, &id, format!("far party hung up (cause {cause} {cause_txt})"));
            if !ending {
                let why = if answered {
                    "far party hung up".to_string()
                } else {
                    format!("far call ended before answer: {cause_txt}")
                };
                // Pass the far side's cause (busy, no answer, ...) on to the phone.
                let to_clients = if answered { 16 } else { cause };
                self.end(&id, why, to_clients, now, out);
            }
        } else if let Some(leg) = s.legs.get_mut(uniqueid) {
            leg.live = false;
            let (path, channel) = (leg.path, leg.channel.clone());
            let remaining = s.live_clients();
            Self::record(
                out,
                now,
                &id,
                format!(
                    "{} leg {channel} hung up (cause {cause} {cause_txt}); {remaining} client leg(s) left",
                    path.as_str()
                ),
            );
            if !ending && remaining == 0 {
                self.end(&id, "the phone hung up".into(), 16, now, out);
            }
        }
        self.remove_if_gone(&id, now, out);
    }

    fn recv_tick(&mut self, now: Millis, out: &mut Outputs) {
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Ending { since, .. } if now >= since + ENDING_LINGER_MS))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            Self::record(out, now, &id, "removed: channels did not report their hangup in time".into());
            self.remove(&id);
        }
    }

    /// Hangs up whatever still lives of the session and moves it to `Ending`.
    fn end(&mut self, id: &SessionId, reason: String, cause: u32, now: Millis, out: &mut Outputs) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        if s.far_live {
            out.commands.push(Command::Hangup { uniqueid: s.far_uniqueid.clone(), cause });
        }
        for (uniqueid, leg) in &s.legs {
            if leg.live {
                out.commands.push(Command::Hangup { uniqueid: uniqueid.clone(), cause });
            }
        }
        Self::record(out, now, id, format!("ending: {reason}"));
        s.state = State::Ending { since: now, reason };
        self.remove_if_gone(id, now, out);
    }

    fn remove_if_gone(&mut self, id: &SessionId, now: Millis, out: &mut Outputs) {
        let gone = self.sessions.get(id).is_some_and(|s| matches!(s.state, State::Ending { .. }) && s.all_gone());
        if gone {
            let lasted = self.sessions.get(id).map(|s| now.saturating_sub(s.opened_at)).unwrap_or(0);
            self.remove(id);
            Self::record(out, now, id, format!("ended after {lasted} ms; {} session(s) open", self.sessions.len()));
        }
    }

    fn remove(&mut self, id: &SessionId) {
        if let Some(s) = self.sessions.remove(id) {
            self.by_channel.remove(&s.far_uniqueid);
            for uniqueid in s.legs.keys() {
                self.by_channel.remove(uniqueid);
            }
        }
    }
}

/// Maps an originate failure reason to the Q.850 cause the phone hears.
fn far_failure_cause(reason: &str) -> u32 {
    let r = reason.to_ascii_lowercase();
    if r.contains("busy") {
        17
    } else if r.contains("no answer") || r.contains("timeout") {
        19
    } else if r.contains("congest") {
        34
    } else {
        41
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Sessions {
        Sessions::new(Rules { bridge_prefix: "handoff-".into(), default_caller_id: String::new() }, "t")
    }

    fn leg(uniqueid: &str) -> Input {
        Input::LegArrived(LegArrival {
            uniqueid: uniqueid.into(),
            channel: format!("PJSIP/alice-app-{uniqueid}"),
            caller: "1001".into(),
            endpoint: "alice-app".into(),
            path: Path::Data,
            far: "2000".into(),
            token: String::new(),
        })
    }

    fn hangup(uniqueid: &str) -> Input {
        Input::Hangup { uniqueid: uniqueid.into(), cause: 16, cause_txt: "Normal Clearing".into() }
    }

    #[test]
    fn a_leg_opens_a_session_and_calls_the_far_party_at_once() {
        let mut c = core();
        let out = c.handle(leg("1.1"), 0);
        let id = SessionId("t1".into());
        assert_eq!(
            out.commands,
            vec![
                Command::Assign { uniqueid: "1.1".into(), session: id.clone(), bridge: "handoff-t1".into() },
                Command::OriginateFar {
                    session: id.clone(),
                    uniqueid: "t1-far".into(),
                    number: "2000".into(),
                    bridge: "handoff-t1".into(),
                    caller_id: "1001".into()
                },
            ]
        );
        assert_eq!(c.state(&id), Some(&State::AwaitingFarAnswer));
        assert_eq!(c.bridge(&id), Some("handoff-t1"));
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
        assert_eq!(c.state(&id), Some(&State::Connected));
    }

    #[test]
    fn far_hangup_ends_the_client_legs_and_the_session_goes_when_all_are_gone() {
        let mut c = core();
        c.handle(leg("1.1"), 0);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 10);
        let out = c.handle(hangup("t1-far"), 5000);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 16 }]);
        assert_eq!(c.len(), 1, "waits for the client's own hangup event");
        let out = c.handle(hangup("1.1"), 5010);
        assert!(out.commands.is_empty());
        assert!(c.is_empty());
        assert!(c.session_of("1.1").is_none());
    }

    #[test]
    fn client_hangup_ends_the_far_leg() {
        let mut c = core();
        c.handle(leg("1.1"), 0);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 10);
        let out = c.handle(hangup("1.1"), 100);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "t1-far".into(), cause: 16 }]);
        c.handle(hangup("t1-far"), 120);
        assert!(c.is_empty());
    }

    #[test]
    fn a_busy_far_party_ends_the_call_with_busy() {
        let mut c = core();
        c.handle(leg("1.1"), 0);
        let out = c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "Busy".into() }, 50);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 17 }]);
        c.handle(hangup("1.1"), 60);
        assert!(c.is_empty());
    }

    #[test]
    fn an_unanswered_far_call_passes_its_cause_on() {
        let mut c = core();
        c.handle(leg("1.1"), 0);
        let out =
            c.handle(Input::Hangup { uniqueid: "t1-far".into(), cause: 19, cause_txt: "No answer".into() }, 30_000);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 19 }]);
    }

    #[test]
    fn ending_sessions_are_dropped_after_the_linger_time_if_hangups_never_come() {
        let mut c = core();
        c.handle(leg("1.1"), 0);
        c.handle(hangup("1.1"), 100);
        assert_eq!(c.next_timeout(), Some(100 + ENDING_LINGER_MS));
        c.handle(Input::Tick, 100 + ENDING_LINGER_MS - 1);
        assert_eq!(c.len(), 1);
        c.handle(Input::Tick, 100 + ENDING_LINGER_MS);
        assert!(c.is_empty());
        assert_eq!(c.next_timeout(), None);
    }

    #[test]
    fn unknown_channels_and_duplicate_legs_change_nothing() {
        let mut c = core();
        assert_eq!(c.handle(hangup("9.9"), 0), Outputs::default());
        c.handle(leg("1.1"), 0);
        let out = c.handle(leg("1.1"), 1);
        assert!(matches!(&out.commands[..], [Command::Refuse { .. }]));
        assert_eq!(c.len(), 1);
    }
}
