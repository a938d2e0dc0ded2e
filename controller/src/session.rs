//! Sessions: one conversation between a user's phone and a far party (sans-I/O).
//!
//! A phone may call in twice for one conversation: over the carrier network (carrier path) and
//! over its app (data path). The core pairs the legs of one device into one session, places
//! the far call as soon as the first leg arrives, and keeps the conversation while the far
//! party and at least one client leg live. Which leg feeds the mix is decided frame by frame
//! inside Asterisk (res_handoff.so); the core decides in seconds: which legs belong together,
//! when a stalled leg is dead, how long the far party is held when every client leg is gone.
//!
//! A client leg that the user clears (the phone's BYE: Q.850 16 on Asterisk, NORMAL_CLEARING
//! on FreeSWITCH; the table is `crate::hangup_cause`) is the user hanging up: the call ends. A
//! leg that ends any other way (RTP timeout, network failure, declared dead by handoffd) is a
//! lost leg: the call goes on over the other leg, or holds the far party.
//!
//! It takes typed inputs with the time they happened and returns typed outputs: commands for
//! the PBX driver and timeline records. It owns no socket, clock or store.
//!
//! ```text
//!                 first leg of a device: assign it, originate the far party
//!   (none) ───────────────────────────────────────────────▶ AwaitingFarAnswer
//!                                                                 │      │ far fails, far hangs
//!                                         far answers ◀──────────┘      │ up, or every client
//!                                              │                         │ leg hangs up
//!                                              ▼                         ▼
//!     another leg of the device joins ─▶ Connected ──far hangs up──▶ Ending ──every channel
//!     (pair / rejoin / replace a          │     ▲                      ▲       gone──▶ removed
//!      stalled leg of the same path)      │     │ a leg of the device  │
//!                    every client leg ────┘     │ rejoins              │ grace runs out,
//!                    is gone                    │                      │ far hangs up
//!                                  ▼            │                      │
//!                                Grace (far party on hold) ────────────┘
//! ```
//!
//! | state               | input                           | next                | commands                          |
//! |---------------------|---------------------------------|---------------------|-----------------------------------|
//! | (none)              | `LegArrived`, known device      | `AwaitingFarAnswer` | `Assign`, `OriginateFar`          |
//! | (none)              | `LegArrived`, unknown device, session just ended, token of another device | — | `Refuse` |
//! | live                | `LegArrived`, same device, path free | same (`Grace` → `Connected`) | `Assign`         |
//! | live                | `LegArrived`, path taken by a stalled leg | same      | `Hangup` old, `Assign` new        |
//! | live                | `LegArrived`, path taken by a live leg | same         | `Refuse` (third leg)              |
//! | `AwaitingFarAnswer` | `FarAnswered`                   | `Connected`         | —                                 |
//! | `AwaitingFarAnswer` | `FarFailed`, far hangup         | `Ending`            | `Hangup` client legs (far's cause)|
//! | `AwaitingFarAnswer` | last client leg gone            | `Ending`            | `Hangup` far                      |
//! | live                | a client leg cleared normally (cause 16) by the phone | `Ending` | `Hangup` the rest     |
//! | `Connected`         | a client leg lost, one left     | `Connected`         | — (recorded)                      |
//! | `Connected`         | last client leg lost            | `Grace`             | — (ConfBridge plays music on hold)|
//! | `Grace`             | `Tick` after `grace`            | `Ending`            | `Hangup` far                      |
//! | live                | far hangup                      | `Ending`            | `Hangup` client legs              |
//! | live                | `Tick`, a leg stalled longer than `leg_dead_after` | same | `Hangup` that leg         |
//! | `Ending`            | last channel gone / `Tick` after linger | removed     | —                                 |

use crate::hangup_cause::q850;
use crate::timeline::Mark;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

mod late;
pub use handoff_vocab::{is_far_channel, FAR_SUFFIX};
use handoff_vocab::{FarUniqueid, GroupKey};
use late::EndedCall;

/// Milliseconds on the daemon's monotonic clock.
pub type Millis = u64;

/// How long an ending session waits for its channels' hangup events before it is dropped.
pub const ENDING_LINGER_MS: Millis = 10_000;

/// How long a failed far call waits for its channel's Hangup (with the real cause) before the
/// session ends on the originate's reason alone.
pub const FAR_HANGUP_WAIT_MS: Millis = 2_000;

/// The far "number" of a leg that asks to take over a call rather than place one:
/// `Handoff(move,path,ticket-<hex>)` or `Handoff(move,path,pin-<digits>)`.
pub const MOVE_FAR: &str = "move";

/// The Q.850 cause the old device's legs are hung up with when the call moves away
/// (26: non-selected user clearing: the call was answered elsewhere).
pub const MOVED_AWAY_CAUSE: u32 = q850::NON_SELECTED_USER_CLEARING;

/// A session as it stands (see [`Sessions::view`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub id: SessionId,
    pub user: String,
    pub device: String,
    /// The far party's channel, while it is there.
    pub far: Option<String>,
    pub far_number: String,
    pub bridge: String,
    /// Live client legs: (uniqueid, path).
    pub legs: Vec<(String, Path)>,
    pub state: State,
    /// Devices barred from the session, and until when.
    pub barred: Vec<(String, Millis)>,
}

/// Which network a client leg comes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// A registered device: its user and how each path identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub user: String,
    /// The PJSIP endpoint of its app (data path).
    pub endpoint: Option<String>,
    /// Its E.164 number, the caller ID of its carrier leg.
    pub number: Option<String>,
    /// Caller ID for the far call (default: `number`).
    pub caller_id: Option<String>,
}

/// A session found running in the PBX (see [`Sessions::adopt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub session: SessionId,
    pub bridge: String,
    pub device: String,
    /// The far party's channel, if it is still there.
    pub far: Option<String>,
    /// Client legs: (uniqueid, channel, path).
    pub legs: Vec<(String, String, Path)>,
    /// The number the far party was called on, if known (a moved-away device calling it again
    /// is a rejoin).
    pub far_number: String,
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
    /// The far call could not be placed (busy, no answer, congestion, unknown endpoint);
    /// `no_channel` when no far channel was ever created (so no Hangup event will follow).
    FarFailed { uniqueid: String, reason: String, no_channel: bool },
    /// A channel hung up; a client leg's end is read from the Q.850 number alone
    /// ([`crate::hangup_cause::by_q850`]).
    Hangup { uniqueid: String, cause: u32, cause_txt: String },
    /// A channel hung up, and the driver read its cause ([`crate::hangup_cause::classify`]):
    /// whether a client leg's user hung up or the leg was lost.
    LegEnded { uniqueid: String, cause: u32, cause_txt: String, end: crate::hangup_cause::LegEnd },
    /// A channel entered the session's conference (it is in the mix now).
    LegJoined { uniqueid: String },
    /// The module saw no voice frame on a leg for longer than its stall threshold.
    LegStalled { uniqueid: String, silent_ms: u64 },
    /// A stalled leg delivers frames again.
    LegRecovered { uniqueid: String },
    /// The module moved the mix to another leg (recorded only: the switch already happened);
    /// `gap_ms`: how long the mix had no frame, when the PBX measured it.
    LegSwitched { uniqueid: String, to: Path, reason: String, gap_ms: Option<u64> },
    /// A far channel of handoff's naming (`<session>-far`) exists in the PBX (it was created,
    /// or a snapshot lists it): one whose session is gone or ending is hung up.
    FarSeen { uniqueid: String },
    /// The module refused a decision (`Assign`) because the leg no longer waits in
    /// `Handoff()` (it timed out or hung up while handoffd was slow): the leg is gone.
    AssignRefused { uniqueid: String, why: String },
    /// Time passed (drives the timers).
    Tick,
}

/// What the core asks the PBX driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Let the leg waiting in `Handoff()` join the session's conference; its frames are
    /// watched in device group `group`, whose preferred path is `preferred`.
    Assign { uniqueid: String, session: SessionId, bridge: String, group: String, preferred: Path },
    /// Refuse the leg waiting in `Handoff()`.
    Refuse { uniqueid: String, reason: String },
    /// Call the far party into the session's conference; its channel gets `uniqueid`.
    OriginateFar { session: SessionId, uniqueid: String, number: String, bridge: String, caller_id: String },
    /// Hang up a channel with a Q.850 cause.
    Hangup { uniqueid: String, cause: u32 },
}

/// A line of a session's timeline (logged and stored by the daemon, printed by the demo), with
/// what it says typed for the picture ([`crate::timeline`]). Refusals that belong to no session
/// carry the session id `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at: Millis,
    pub session: SessionId,
    pub what: String,
    pub mark: Mark,
}

/// Everything one input produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub commands: Vec<Command>,
    pub records: Vec<Record>,
    /// Legs refused because their device is barred from a session (the call moved away from
    /// it): (session, device, reason). The daemon audits them.
    pub barred: Vec<(SessionId, String, String)>,
    /// Sessions that ended with this input, and why.
    pub ended: Vec<(SessionId, String)>,
}

/// The states a session goes through (see the module diagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The far call is ringing; client legs sit in the conference.
    AwaitingFarAnswer,
    /// The far party answered; the conversation runs.
    Connected,
    /// Every client leg is gone; the far party hears music on hold until `until`.
    Grace { until: Millis },
    /// Hangups were sent; waiting for the channels to be gone (or the linger timer).
    Ending { since: Millis, reason: String },
}

impl State {
    fn is_live(&self) -> bool {
        !matches!(self, State::Ending { .. })
    }
}

/// Why [`Sessions::move_to`] refused a move (the caller refuses the waiting leg with it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveRefused {
    #[error("channel {channel} is already in a session")]
    LegInASession { channel: String },
    #[error("session {session} has ended")]
    Ended { session: SessionId },
    #[error("session {session} is not connected")]
    NotConnected { session: SessionId },
}

#[derive(Clone, Debug)]
struct ClientLeg {
    channel: String,
    path: Path,
    live: bool,
    stalled_since: Option<Millis>,
    /// handoffd itself hung this leg up (replaced or declared dead).
    hung_up_by_us: bool,
}

impl ClientLeg {
    /// A leg that just joined: live, not stalled, not hung up.
    fn joined(channel: String, path: Path) -> Self {
        Self { channel, path, live: true, stalled_since: None, hung_up_by_us: false }
    }
}

#[derive(Clone, Debug)]
struct Moving {
    leg: String,
    from_device: String,
    old_legs: Vec<String>,
}

#[derive(Clone, Debug)]
struct Session {
    state: State,
    device: String,
    user: String,
    /// The number the far party was called on.
    far_number: String,
    /// Devices the call moved away from, barred from rejoining until the given time.
    barred: BTreeMap<String, Millis>,
    /// A move under way: the new device's leg, and the old device's legs that are hung up
    /// once it is in the conference (so that the far party never hears nobody).
    moving: Option<Moving>,
    token: String,
    bridge: String,
    far_uniqueid: String,
    far_live: bool,
    /// The far call failed but its channel's Hangup has not come yet: (when, reason).
    far_failed: Option<(Millis, String)>,
    legs: BTreeMap<String, ClientLeg>,
    opened_at: Millis,
}

impl Session {
    fn live_clients(&self) -> usize {
        self.legs.values().filter(|l| l.live).count()
    }
    fn live_leg_on(&self, path: Path) -> Option<(&String, &ClientLeg)> {
        self.legs.iter().find(|(_, l)| l.live && l.path == path)
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
    /// Caller ID for the far call when neither the device nor the leg gives one.
    pub default_caller_id: String,
    /// The path whose leg feeds the mix when both are healthy.
    pub preferred: Path,
    /// How long the far party is held when every client leg is gone.
    pub grace_ms: Millis,
    /// How long a stalled leg may stay silent before it is declared dead and hung up.
    pub leg_dead_after_ms: Millis,
    /// The legs of one call arrive within this of each other: a leg of a device whose session
    /// opened less than this ago and has ended, on a path that session did not have, for the
    /// same far number, is the late second leg of that call and is refused. Any other leg
    /// (a re-dial on a path the call had, another number) is a new call.
    pub pair_window_ms: Millis,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            bridge_prefix: "handoff-".into(),
            default_caller_id: String::new(),
            preferred: Path::Data,
            grace_ms: 30_000,
            leg_dead_after_ms: 10_000,
            pair_window_ms: 5_000,
        }
    }
}

/// All sessions of one PBX.
#[derive(Debug)]
pub struct Sessions {
    rules: Rules,
    devices: Vec<Device>,
    id_prefix: String,
    next_id: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// Which session each known channel belongs to.
    by_channel: HashMap<String, SessionId>,
    /// Devices whose session ended within the pairing window of its opening: what a late
    /// second leg of that call is matched against.
    ended: HashMap<String, EndedCall>,
}

const NO_SESSION: &str = "-";

impl Sessions {
    /// `id_prefix` makes ids unique across daemon restarts (the daemon passes its start time).
    pub fn new(rules: Rules, devices: Vec<Device>, id_prefix: impl Into<String>) -> Self {
        Self {
            rules,
            devices,
            id_prefix: id_prefix.into(),
            next_id: 1,
            sessions: BTreeMap::new(),
            by_channel: HashMap::new(),
            ended: HashMap::new(),
        }
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

    /// The device whose channel this is: a data leg by its app's endpoint, a carrier leg by
    /// its caller ID (as for an arriving leg).
    pub fn device_of_channel(&self, endpoint: &str, caller: &str) -> Option<(&Device, Path)> {
        if let Some(d) = self.devices.iter().find(|d| d.endpoint.as_deref() == Some(endpoint)) {
            return Some((d, Path::Data));
        }
        let caller = normalise_number(caller);
        self.devices
            .iter()
            .find(|d| d.number.as_deref().map(normalise_number).as_deref() == Some(caller.as_str()))
            .map(|d| (d, Path::Carrier))
    }

    /// Takes over a session that is already running in the PBX (found after a restart or a
    /// reconnect): its conference, its far channel if still there, and its client legs.
    /// A session without a far party is ended; one without client legs holds the far party.
    pub fn adopt(&mut self, found: Found, now: Millis) -> Outputs {
        let mut out = Outputs::default();
        let id = found.session.clone();
        if self.sessions.contains_key(&id) {
            return out;
        }
        let legs: BTreeMap<String, ClientLeg> = found
            .legs
            .iter()
            .map(|(uid, channel, path)| {
                let leg = ClientLeg::joined(channel.clone(), *path);
                (uid.clone(), leg)
            })
            .collect();
        let far_live = found.far.is_some();
        let state = if legs.is_empty() { State::Grace { until: now + self.rules.grace_ms } } else { State::Connected };
        let user = self.devices.iter().find(|d| d.id == found.device).map(|d| d.user.clone()).unwrap_or_default();
        let session = Session {
            state,
            device: found.device.clone(),
            user,
            far_number: found.far_number.clone(),
            barred: BTreeMap::new(),
            moving: None,
            token: String::new(),
            bridge: found.bridge.clone(),
            far_uniqueid: found.far.clone().unwrap_or_else(|| FarUniqueid(&id.0).to_string()),
            far_live,
            far_failed: None,
            legs,
            opened_at: now,
        };
        for uid in session.legs.keys() {
            self.by_channel.insert(uid.clone(), id.clone());
        }
        if far_live {
            self.by_channel.insert(session.far_uniqueid.clone(), id.clone());
        }
        let n = session.legs.len();
        let mark = Mark::Adopted {
            device: found.device.clone(),
            legs: found.legs.iter().map(|(u, c, p)| (u.clone(), (*p).into(), c.clone())).collect(),
            far_present: far_live,
        };
        self.sessions.insert(id.clone(), session);
        Self::mark(
            &mut out,
            now,
            &id,
            mark,
            format!(
                "adopted from the PBX: device {}, {n} client leg(s), far party {}",
                found.device,
                if far_live { "present" } else { "gone" }
            ),
        );
        if !far_live {
            self.end(&id, "found without its far party".into(), q850::NORMAL_CLEARING, now, &mut out);
        }
        out
    }

    /// Replaces the device registry (after an administrator added or removed a device).
    pub fn set_devices(&mut self, devices: Vec<Device>) {
        self.devices = devices;
    }

    /// The registered device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The device an arriving leg comes from (its app's endpoint, or its carrier caller ID).
    pub fn device_of_leg(&self, leg: &LegArrival) -> Option<&Device> {
        self.device_for(leg)
    }

    /// What a session looks like now (for the store's snapshot and status output).
    pub fn view(&self, id: &SessionId) -> Option<View> {
        let s = self.sessions.get(id)?;
        Some(View {
            id: id.clone(),
            user: s.user.clone(),
            device: s.device.clone(),
            far: s.far_live.then(|| s.far_uniqueid.clone()),
            far_number: s.far_number.clone(),
            bridge: s.bridge.clone(),
            legs: s.legs.iter().filter(|(_, l)| l.live).map(|(u, l)| (u.clone(), l.path)).collect(),
            state: s.state.clone(),
            barred: s.barred.iter().map(|(d, t)| (d.clone(), *t)).collect(),
        })
    }

    /// The live session of `user` on a device other than `not_on`, most recent first: what
    /// a feature-code move pulls.
    pub fn live_session_of_user(&self, user: &str, not_on: &str) -> Option<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.state.is_live() && s.user == user && s.device != not_on)
            .max_by_key(|(_, s)| s.opened_at)
            .map(|(id, _)| id.clone())
    }

    /// Bars `device` from rejoining session `id` until `until` (restored from the store after
    /// a restart; a move bars the old device itself).
    pub fn bar(&mut self, id: &SessionId, device: &str, until: Millis) {
        if let Some(s) = self.sessions.get_mut(id) {
            let t = s.barred.entry(device.to_string()).or_insert(until);
            *t = (*t).max(until);
        }
    }

    /// The session a leg of `device` would rejoin although the device is barred from it: a
    /// live session it was moved away from, reached by its pairing token or by calling the
    /// same far number. Returns (session, bar end, device the call is on now).
    fn barred_session(&self, device: &str, leg: &LegArrival, now: Millis) -> Option<(SessionId, Millis, String)> {
        self.sessions.iter().find_map(|(id, s)| {
            let until = *s.barred.get(device)?;
            let same_call = (!leg.token.is_empty() && leg.token == s.token)
                || (!s.far_number.is_empty() && leg.far == s.far_number)
                || leg.far == MOVE_FAR;
            (until > now && s.state.is_live() && same_call).then(|| (id.clone(), until, s.device.clone()))
        })
    }

    /// Moves session `id` to `to` (a ticket or PIN was accepted): `leg`, waiting in
    /// `Handoff()`, joins the conference in its own device group; every leg of the old device
    /// is hung up (not taken as the user hanging up), and the old device is barred from the
    /// session until `bar_until`. Refused (with the reason) if the session is not live or
    /// the leg is already in a session; the caller refuses the leg then.
    pub fn move_to(
        &mut self,
        id: &SessionId,
        to: &Device,
        leg: &LegArrival,
        bar_until: Millis,
        now: Millis,
    ) -> Result<Outputs, MoveRefused> {
        let mut out = Outputs::default();
        if self.by_channel.contains_key(&leg.uniqueid) {
            return Err(MoveRefused::LegInASession { channel: leg.channel.clone() });
        }
        let Some(s) = self.sessions.get_mut(id) else { return Err(MoveRefused::Ended { session: id.clone() }) };
        if !matches!(s.state, State::Connected | State::Grace { .. }) {
            return Err(MoveRefused::NotConnected { session: id.clone() });
        }
        let from = std::mem::replace(&mut s.device, to.id.clone());
        s.user = to.user.clone();
        s.token = leg.token.clone();
        let t = s.barred.entry(from.clone()).or_insert(bar_until);
        *t = (*t).max(bar_until);
        s.barred.remove(&to.id);
        if matches!(s.state, State::Grace { .. }) {
            s.state = State::Connected;
        }
        s.legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel.clone(), leg.path));
        let mut old = Vec::new();
        for (uid, l) in s.legs.iter_mut().filter(|(u, l)| l.live && **u != leg.uniqueid) {
            l.hung_up_by_us = true;
            old.push(uid.clone());
        }
        s.moving = Some(Moving { leg: leg.uniqueid.clone(), from_device: from.clone(), old_legs: old.clone() });
        self.by_channel.insert(leg.uniqueid.clone(), id.clone());
        let Some(s) = self.sessions.get(id) else { return Err(MoveRefused::Ended { session: id.clone() }) };
        out.commands.push(self.assign(id, s, &leg.uniqueid));
        let mark = Mark::Moved {
            from: from.clone(),
            to: to.id.clone(),
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
        };
        Self::mark(
            &mut out,
            now,
            id,
            mark,
            format!(
                "moved from device {from} to device {}: {} leg {} ({}) joins, then {} leg(s) of {from} are hung up; {from} barred for {} s",
                to.id,
                leg.path.as_str(),
                leg.channel,
                leg.uniqueid,
                old.len(),
                bar_until.saturating_sub(now) / 1000
            ),
        );
        Ok(out)
    }

    /// Every channel the sessions know (client legs and far parties).
    pub fn channels(&self) -> Vec<String> {
        self.by_channel.keys().cloned().collect()
    }

    /// Live client legs of a session, as (uniqueid, path).
    pub fn live_legs(&self, id: &SessionId) -> Vec<(String, Path)> {
        self.sessions
            .get(id)
            .map(|s| s.legs.iter().filter(|(_, l)| l.live).map(|(u, l)| (u.clone(), l.path)).collect())
            .unwrap_or_default()
    }

    /// When the core next needs a `Tick`.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.sessions
            .values()
            .flat_map(|s| {
                let state_timer = match s.state {
                    State::Ending { since, .. } => Some(since + ENDING_LINGER_MS),
                    State::Grace { until } => Some(until),
                    _ => s.far_failed.as_ref().map(|(t, _)| t + FAR_HANGUP_WAIT_MS),
                };
                let dead_timers = s
                    .legs
                    .values()
                    .filter(|l| l.live)
                    .filter_map(|l| l.stalled_since.map(|t| t + self.rules.leg_dead_after_ms));
                state_timer.into_iter().chain(dead_timers)
            })
            .min()
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, input: Input, now: Millis) -> Outputs {
        let mut out = Outputs::default();
        match input {
            Input::LegArrived(leg) => self.recv_leg(leg, now, &mut out),
            Input::FarAnswered { uniqueid } => self.recv_far_answer(&uniqueid, now, &mut out),
            Input::FarFailed { uniqueid, reason, no_channel } => {
                self.recv_far_failed(&uniqueid, &reason, no_channel, now, &mut out)
            }
            Input::Hangup { uniqueid, cause, cause_txt } => {
                let end = crate::hangup_cause::by_q850(cause);
                self.recv_hangup(&uniqueid, cause, &cause_txt, end, now, &mut out)
            }
            Input::LegEnded { uniqueid, cause, cause_txt, end } => {
                self.recv_hangup(&uniqueid, cause, &cause_txt, end, now, &mut out)
            }
            Input::LegStalled { uniqueid, silent_ms } => self.recv_stall(&uniqueid, silent_ms, now, &mut out),
            Input::LegRecovered { uniqueid } => self.recv_recovery(&uniqueid, now, &mut out),
            Input::LegJoined { uniqueid } => self.recv_joined(&uniqueid, now, &mut out),
            Input::LegSwitched { uniqueid, to, reason, gap_ms } => {
                if let Some(id) = self.by_channel.get(&uniqueid).cloned() {
                    let gap = gap_ms.map(|g| format!(", {g} ms without a frame")).unwrap_or_default();
                    let what = format!("mix switched to the {} leg ({reason}{gap})", to.as_str());
                    let mark = Mark::Switched { leg: uniqueid, to: to.into(), gap_ms, reason };
                    Self::mark(&mut out, now, &id, mark, what);
                }
            }
            Input::FarSeen { uniqueid } => self.recv_far_seen(&uniqueid, now, &mut out),
            Input::AssignRefused { uniqueid, why } => self.recv_assign_refused(&uniqueid, &why, now, &mut out),
            Input::Tick => self.recv_tick(now, &mut out),
        }
        out
    }

    fn record(out: &mut Outputs, at: Millis, session: &SessionId, what: String) {
        Self::mark(out, at, session, Mark::Note, what);
    }

    fn mark(out: &mut Outputs, at: Millis, session: &SessionId, mark: Mark, what: String) {
        out.records.push(Record { at, session: session.clone(), what, mark });
    }

    fn refuse(out: &mut Outputs, now: Millis, leg: &LegArrival, reason: String) {
        Self::record(
            out,
            now,
            &SessionId(NO_SESSION.into()),
            format!("refused {} leg {} ({}): {reason}", leg.path.as_str(), leg.channel, leg.uniqueid),
        );
        out.commands.push(Command::Refuse { uniqueid: leg.uniqueid.clone(), reason });
    }

    fn device_for(&self, leg: &LegArrival) -> Option<&Device> {
        match leg.path {
            Path::Data => self.devices.iter().find(|d| d.endpoint.as_deref() == Some(leg.endpoint.as_str())),
            Path::Carrier => {
                let caller = normalise_number(&leg.caller);
                self.devices
                    .iter()
                    .find(|d| d.number.as_deref().map(normalise_number).as_deref() == Some(caller.as_str()))
            }
        }
    }

    fn recv_leg(&mut self, leg: LegArrival, now: Millis, out: &mut Outputs) {
        if self.by_channel.contains_key(&leg.uniqueid) {
            return Self::refuse(out, now, &leg, "this channel is already in a session".into());
        }
        let Some(device) = self.device_for(&leg).cloned() else {
            let who = match leg.path {
                Path::Data => format!("endpoint '{}'", leg.endpoint),
                Path::Carrier => format!("caller ID '{}'", leg.caller),
            };
            return Self::refuse(out, now, &leg, format!("unknown device: no registered device has {who}"));
        };
        if let Some((id, until, to)) = self.barred_session(&device.id, &leg, now) {
            let reason = format!(
                "device '{}' is barred from session {id} for {} s more (the call moved to device '{to}')",
                device.id,
                (until - now).div_ceil(1000)
            );
            out.barred.push((id, device.id.clone(), reason.clone()));
            return Self::refuse(out, now, &leg, reason);
        }
        if !leg.token.is_empty() {
            let clash =
                self.sessions.values().find(|s| s.state.is_live() && s.token == leg.token && s.device != device.id);
            if let Some(other) = clash {
                let reason = format!("pairing token already used by device '{}'", other.device);
                return Self::refuse(out, now, &leg, reason);
            }
        }
        let live = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state.is_live() && s.device == device.id)
            .filter(|(_, s)| leg.token.is_empty() || s.token.is_empty() || s.token == leg.token)
            .map(|(id, _)| id.clone())
            .next();
        match live {
            Some(id) => self.join(&id, &device, leg, now, out),
            None => {
                if let Some(reason) = self.late_second_leg(&device.id, &leg, now) {
                    return Self::refuse(out, now, &leg, reason);
                }
                self.open(&device, leg, now, out)
            }
        }
    }

    fn assign(&self, id: &SessionId, s: &Session, uniqueid: &str) -> Command {
        Command::Assign {
            uniqueid: uniqueid.to_string(),
            session: id.clone(),
            bridge: s.bridge.clone(),
            group: GroupKey { session: &id.0, device: &s.device }.to_string(),
            preferred: self.rules.preferred,
        }
    }

    fn open(&mut self, device: &Device, leg: LegArrival, now: Millis, out: &mut Outputs) {
        let id = SessionId(format!("{}{}", self.id_prefix, self.next_id));
        self.next_id += 1;
        let bridge = format!("{}{}", self.rules.bridge_prefix, id);
        let far_uniqueid = FarUniqueid(&id.0).to_string();
        let caller_id =
            device.caller_id.clone().or_else(|| device.number.clone()).filter(|c| !c.is_empty()).unwrap_or_else(|| {
                if leg.caller.is_empty() {
                    self.rules.default_caller_id.clone()
                } else {
                    leg.caller.clone()
                }
            });
        let mark = Mark::Opened {
            device: device.id.clone(),
            user: device.user.clone(),
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
        };
        Self::mark(
            out,
            now,
            &id,
            mark,
            format!(
                "opened for device {} of {}: {} leg {} ({}) calls {}",
                device.id,
                device.user,
                leg.path.as_str(),
                leg.channel,
                leg.uniqueid,
                leg.far
            ),
        );
        let mut legs = BTreeMap::new();
        legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel.clone(), leg.path));
        let session = Session {
            state: State::AwaitingFarAnswer,
            device: device.id.clone(),
            user: device.user.clone(),
            far_number: leg.far.clone(),
            barred: BTreeMap::new(),
            moving: None,
            token: leg.token.clone(),
            bridge: bridge.clone(),
            far_uniqueid: far_uniqueid.clone(),
            far_live: true,
            far_failed: None,
            legs,
            opened_at: now,
        };
        out.commands.push(self.assign(&id, &session, &leg.uniqueid));
        out.commands.push(Command::OriginateFar {
            session: id.clone(),
            uniqueid: far_uniqueid.clone(),
            number: leg.far.clone(),
            bridge,
            caller_id: caller_id.clone(),
        });
        Self::mark(
            out,
            now,
            &id,
            Mark::FarCalled { number: leg.far.clone() },
            format!("far party {} called as {far_uniqueid} with caller ID {caller_id}", leg.far),
        );
        self.by_channel.insert(leg.uniqueid, id.clone());
        self.by_channel.insert(far_uniqueid, id.clone());
        self.sessions.insert(id, session);
    }

    fn join(&mut self, id: &SessionId, device: &Device, leg: LegArrival, now: Millis, out: &mut Outputs) {
        let Some(s) = self.sessions.get(id) else { return };
        if let Some((old_uid, old)) = s.live_leg_on(leg.path) {
            if old.stalled_since.is_none() {
                let reason = format!(
                    "device '{}' already has a live {} leg ({}) in session {id}",
                    device.id,
                    leg.path.as_str(),
                    old.channel
                );
                return Self::refuse(out, now, &leg, reason);
            }
            // The app re-dialled after its old leg went silent: the new leg replaces it.
            let old_uid = old_uid.clone();
            Self::mark(
                out,
                now,
                id,
                Mark::LegDown { leg: old_uid.clone(), cause: "replaced by a new leg".into() },
                format!("{} leg {} replaces its stalled predecessor", leg.path.as_str(), leg.channel),
            );
            out.commands.push(Command::Hangup { uniqueid: old_uid.clone(), cause: q850::NORMAL_CLEARING });
            if let Some(s) = self.sessions.get_mut(id) {
                if let Some(o) = s.legs.get_mut(&old_uid) {
                    o.live = false;
                    o.hung_up_by_us = true;
                }
            }
        }
        let Some(s) = self.sessions.get_mut(id) else { return };
        let mark = Mark::LegUp {
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
            device: device.id.clone(),
        };
        let what = match s.state {
            State::Grace { .. } => {
                s.state = State::Connected;
                format!("{} leg {} rejoined; far party off hold", leg.path.as_str(), leg.channel)
            }
            _ if s.legs.values().any(|l| l.path == leg.path) => {
                format!("{} leg {} rejoined", leg.path.as_str(), leg.channel)
            }
            _ => format!(
                "{} leg {} paired after {} ms (far number {})",
                leg.path.as_str(),
                leg.channel,
                now.saturating_sub(s.opened_at),
                leg.far
            ),
        };
        if s.token.is_empty() {
            s.token = leg.token.clone();
        }
        s.legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel, leg.path));
        self.by_channel.insert(leg.uniqueid.clone(), id.clone());
        let cmd = match self.sessions.get(id) {
            Some(s) => self.assign(id, s, &leg.uniqueid),
            None => return,
        };
        out.commands.push(cmd);
        Self::mark(out, now, id, mark, what);
    }

    fn recv_far_answer(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        // A far party that answers for a session that is gone or ending is hung up at once.
        self.recv_far_seen(uniqueid, now, out);
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid == uniqueid && s.state == State::AwaitingFarAnswer {
            s.state = State::Connected;
            let after = now.saturating_sub(s.opened_at);
            Self::mark(out, now, &id, Mark::FarAnswered, format!("far party answered after {after} ms; connected"));
        }
    }

    fn recv_far_failed(&mut self, uniqueid: &str, reason: &str, no_channel: bool, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid != uniqueid || !s.state.is_live() {
            return;
        }
        let mark = Mark::FarFailed { reason: reason.to_string() };
        Self::mark(out, now, &id, mark, format!("far call failed: {reason}"));
        if !no_channel {
            // The far channel exists: its Hangup event follows with the real cause (busy, no
            // answer, ...), which the phone should hear; that event ends the session (or the
            // tick does, if the event never comes).
            s.far_failed = Some((now, reason.to_string()));
            return;
        }
        // An originate that failed before a channel existed sends no hangup: the far leg is gone.
        s.far_live = false;
        self.by_channel.remove(uniqueid);
        self.end(&id, format!("far call failed: {reason}"), far_failure_cause(reason), now, out);
    }

    fn recv_hangup(
        &mut self,
        uniqueid: &str,
        cause: u32,
        cause_txt: &str,
        end: crate::hangup_cause::LegEnd,
        now: Millis,
        out: &mut Outputs,
    ) {
        let Some(id) = self.by_channel.remove(uniqueid) else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.moving.as_ref().is_some_and(|m| m.leg == uniqueid) {
            // The new device's leg went before it joined: the move is off, the call stays.
            if let Some(m) = s.moving.take() {
                for uid in &m.old_legs {
                    if let Some(l) = s.legs.get_mut(uid) {
                        l.hung_up_by_us = false;
                    }
                }
                s.barred.remove(&m.from_device);
                s.device = m.from_device.clone();
                if let Some(l) = s.legs.get_mut(uniqueid) {
                    l.hung_up_by_us = true;
                }
                Self::record(
                    out,
                    now,
                    &id,
                    format!("move abandoned: the new leg went before it joined; staying on {}", m.from_device),
                );
            }
        }
        let live = s.state.is_live();
        if s.far_uniqueid == uniqueid {
            s.far_live = false;
            let answered = matches!(s.state, State::Connected | State::Grace { .. });
            let mark = Mark::FarGone { cause: format!("{cause} {cause_txt}") };
            Self::mark(out, now, &id, mark, format!("far party hung up (cause {cause} {cause_txt})"));
            if live {
                let why = if answered {
                    "far party hung up".to_string()
                } else {
                    format!("far call ended before answer: {cause_txt}")
                };
                // Pass the far side's cause (busy, no answer, ...) on to the phone.
                let to_clients = if answered { q850::NORMAL_CLEARING } else { cause };
                self.end(&id, why, to_clients, now, out);
            }
        } else if let Some(leg) = s.legs.get_mut(uniqueid) {
            let was_live = leg.live;
            leg.live = false;
            let (path, channel, by_us) = (leg.path, leg.channel.clone(), leg.hung_up_by_us);
            let remaining = s.live_clients();
            if was_live {
                let why = if by_us {
                    format!("{cause} {cause_txt}, hung up by handoffd")
                } else {
                    format!("{cause} {cause_txt}")
                };
                Self::mark(
                    out,
                    now,
                    &id,
                    Mark::LegDown { leg: uniqueid.to_string(), cause: why },
                    format!(
                        "{} leg {channel} hung up (cause {cause} {cause_txt}); {remaining} client leg(s) left",
                        path.as_str()
                    ),
                );
            }
            // The user hanging up ends the call; any other end of a leg (network failure, RTP
            // timeout, declared dead) is a lost leg (crate::hangup_cause has the table).
            let user_hung_up = end == crate::hangup_cause::LegEnd::ClearedByUser && !by_us;
            if live && was_live && user_hung_up {
                self.end(&id, format!("the phone hung up its {} leg", path.as_str()), q850::NORMAL_CLEARING, now, out);
            } else if live && remaining == 0 && was_live {
                match s.state {
                    State::Connected => {
                        let until = now + self.rules.grace_ms;
                        s.state = State::Grace { until };
                        Self::mark(
                            out,
                            now,
                            &id,
                            Mark::OnHold { grace_ms: self.rules.grace_ms },
                            format!("every client leg is gone: far party on hold for {} s", self.rules.grace_ms / 1000),
                        );
                    }
                    _ => self.end(
                        &id,
                        "the phone hung up before the far party answered".into(),
                        q850::NORMAL_CLEARING,
                        now,
                        out,
                    ),
                }
            } else if live && remaining > 0 && was_live {
                if let Some((_, other)) = s.legs.iter().find(|(_, l)| l.live) {
                    let other = other.path.as_str().to_string();
                    Self::record(out, now, &id, format!("continuing on the {other} leg"));
                }
            }
        }
        self.remove_if_gone(&id, now, out);
    }

    fn recv_stall(&mut self, uniqueid: &str, silent_ms: u64, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if let Some(leg) = s.legs.get_mut(uniqueid) {
            if leg.live && leg.stalled_since.is_none() {
                leg.stalled_since = Some(now.saturating_sub(silent_ms));
                let what = format!("{} leg {} stalled (silent {silent_ms} ms)", leg.path.as_str(), leg.channel);
                Self::mark(out, now, &id, Mark::LegStalled { leg: uniqueid.to_string(), silent_ms }, what);
            }
        }
    }

    /// The new device's leg of a move is in the conference: the old device's legs go now.
    fn recv_joined(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.moving.as_ref().is_some_and(|m| m.leg == uniqueid) {
            let Some(m) = s.moving.take() else { return };
            let live: Vec<&String> = m.old_legs.iter().filter(|u| s.legs.get(*u).is_some_and(|l| l.live)).collect();
            for uid in &live {
                out.commands.push(Command::Hangup { uniqueid: (*uid).clone(), cause: MOVED_AWAY_CAUSE });
            }
            let n = live.len();
            Self::record(
                out,
                now,
                &id,
                format!("the new device's leg is in the conference: {n} leg(s) of {} hung up", m.from_device),
            );
        }
    }

    fn recv_recovery(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if let Some(leg) = s.legs.get_mut(uniqueid) {
            if leg.live && leg.stalled_since.take().is_some() {
                let what = format!("{} leg {} recovered", leg.path.as_str(), leg.channel);
                Self::mark(out, now, &id, Mark::LegRecovered { leg: uniqueid.to_string() }, what);
            }
        }
    }

    fn recv_tick(&mut self, now: Millis, out: &mut Outputs) {
        let ids: Vec<SessionId> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else { continue };
            match s.state {
                State::Ending { since, .. } if now >= since + ENDING_LINGER_MS => {
                    Self::record(out, now, &id, "removed: channels did not report their hangup in time".into());
                    self.remove(&id, now, out);
                    continue;
                }
                State::Grace { until } if now >= until => {
                    self.end(
                        &id,
                        "no client leg came back within the grace period".into(),
                        q850::NORMAL_CLEARING,
                        now,
                        out,
                    );
                    continue;
                }
                State::AwaitingFarAnswer
                    if s.far_failed.as_ref().is_some_and(|(t, _)| now >= t + FAR_HANGUP_WAIT_MS) =>
                {
                    let reason = s.far_failed.take().map(|(_, r)| r).unwrap_or_default();
                    self.end(&id, format!("far call failed: {reason}"), far_failure_cause(&reason), now, out);
                    continue;
                }
                _ => {}
            }
            if !s.state.is_live() {
                continue;
            }
            let dead_after = self.rules.leg_dead_after_ms;
            let dead: Vec<(String, String, Path)> = s
                .legs
                .iter()
                .filter(|(_, l)| l.live && l.stalled_since.is_some_and(|t| now >= t + dead_after))
                .map(|(u, l)| (u.clone(), l.channel.clone(), l.path))
                .collect();
            for (uid, channel, path) in dead {
                if let Some(l) = s.legs.get_mut(&uid) {
                    l.stalled_since = None; // declared once; its hangup event finishes it
                    l.hung_up_by_us = true;
                }
                out.commands.push(Command::Hangup { uniqueid: uid, cause: q850::NORMAL_CLEARING });
                Self::record(
                    out,
                    now,
                    &id,
                    format!(
                        "{} leg {channel} declared dead after {} s of silence; hanging it up",
                        path.as_str(),
                        dead_after / 1000
                    ),
                );
            }
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
        Self::mark(out, now, id, Mark::Ending { reason: reason.clone() }, format!("ending: {reason}"));
        s.state = State::Ending { since: now, reason };
        self.remove_if_gone(id, now, out);
    }

    fn remove_if_gone(&mut self, id: &SessionId, now: Millis, out: &mut Outputs) {
        let gone = self.sessions.get(id).is_some_and(|s| !s.state.is_live() && s.all_gone());
        if gone {
            let lasted = self.sessions.get(id).map(|s| now.saturating_sub(s.opened_at)).unwrap_or(0);
            self.remove(id, now, out);
            let what = format!("ended after {lasted} ms; {} session(s) open", self.sessions.len());
            Self::mark(out, now, id, Mark::Ended, what);
        }
    }

    fn remove(&mut self, id: &SessionId, now: Millis, out: &mut Outputs) {
        if let Some(s) = self.sessions.remove(id) {
            let reason = match &s.state {
                State::Ending { reason, .. } => reason.clone(),
                _ => "every channel is gone".into(),
            };
            out.ended.push((id.clone(), reason));
            self.by_channel.remove(&s.far_uniqueid);
            for uniqueid in s.legs.keys() {
                self.by_channel.remove(uniqueid);
            }
            self.remember_ended(&s, now);
        }
        let window = self.rules.pair_window_ms;
        self.ended.retain(|_, e| now.saturating_sub(e.opened_at) < window);
    }
}

/// Caller IDs compare without spaces, dashes and a leading `00` for `+`.
fn normalise_number(n: &str) -> String {
    let digits: String = n.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
    match digits.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => digits,
    }
}

/// Maps an originate failure reason to the Q.850 cause the phone hears.
fn far_failure_cause(reason: &str) -> u32 {
    let r = reason.to_ascii_lowercase();
    if r.contains("busy") {
        q850::USER_BUSY
    } else if r.contains("no answer") || r.contains("timeout") {
        q850::NO_ANSWER
    } else if r.contains("congest") {
        q850::NORMAL_CIRCUIT_CONGESTION
    } else {
        q850::NORMAL_TEMPORARY_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn alice() -> Device {
        Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            endpoint: Some("alice-app".into()),
            number: Some("+15550001".into()),
            caller_id: None,
        }
    }

    fn core() -> Sessions {
        Sessions::new(Rules::default(), vec![alice(), alice_tablet()], "t")
    }

    pub(crate) fn core_with(rules: Rules, devices: Vec<Device>) -> Sessions {
        Sessions::new(rules, devices, "t")
    }

    /// Alice's leg on `path` calling `far`.
    pub(crate) fn leg_to(uniqueid: &str, path: Path, far: &str) -> Input {
        let mut l = leg(uniqueid, path);
        if let Input::LegArrived(a) = &mut l {
            a.far = far.into();
        }
        l
    }

    fn alice_tablet() -> Device {
        Device {
            id: "alice-tablet".into(),
            user: "alice".into(),
            endpoint: Some("alice-tablet".into()),
            number: None,
            caller_id: None,
        }
    }

    fn tablet_leg(uniqueid: &str, far: &str, token: &str) -> LegArrival {
        LegArrival {
            uniqueid: uniqueid.into(),
            channel: format!("PJSIP/alice-tablet-{uniqueid}"),
            caller: "alice-tablet".into(),
            endpoint: "alice-tablet".into(),
            path: Path::Data,
            far: far.into(),
            token: token.into(),
        }
    }

    /// Alice's phone on a connected call over both paths.
    fn connected_on_both_paths() -> Sessions {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(leg("1.2", Path::Carrier), 10);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
        c
    }

    #[test]
    fn a_move_joins_the_new_device_hangs_up_every_old_leg_and_bars_the_old_device() {
        let mut c = connected_on_both_paths();
        let tablet = alice_tablet();
        let b = tablet_leg("2.1", MOVE_FAR, "ticket-x");
        let out = c.move_to(&sid(), &tablet, &b, 300_000, 5_000).unwrap();
        assert_eq!(
            out.commands,
            vec![Command::Assign {
                uniqueid: "2.1".into(),
                session: sid(),
                bridge: "handoff-t1".into(),
                group: "t1/alice-tablet".into(),
                preferred: Path::Data,
            }]
        );
        // The old legs go only once the new one is in the conference.
        let out = c.handle(Input::LegJoined { uniqueid: "1.1".into() }, 5_001);
        assert!(out.commands.is_empty());
        let out = c.handle(Input::LegJoined { uniqueid: "2.1".into() }, 5_002);
        assert_eq!(
            out.commands,
            vec![
                Command::Hangup { uniqueid: "1.1".into(), cause: MOVED_AWAY_CAUSE },
                Command::Hangup { uniqueid: "1.2".into(), cause: MOVED_AWAY_CAUSE },
            ]
        );
        let v = c.view(&sid()).unwrap();
        assert_eq!((v.device.as_str(), v.user.as_str()), ("alice-tablet", "alice"));
        assert_eq!(v.barred, vec![("alice-phone".into(), 300_000)]);
        // The old legs' hangups (cause 16 from the phone, as Asterisk reports our own hangup
        // too) are not the user hanging up: the call goes on, on the tablet.
        c.handle(hangup("1.1"), 5_010);
        c.handle(hangup("1.2"), 5_011);
        assert_eq!(c.state(&sid()), Some(&State::Connected));
        assert_eq!(c.live_legs(&sid()), vec![("2.1".into(), Path::Data)]);
        // The phone calling the far number again during the bar is refused and reported.
        let out = c.handle(leg("1.3", Path::Data), 6_000);
        assert!(matches!(&out.commands[..], [Command::Refuse { uniqueid, .. }] if uniqueid == "1.3"));
        assert_eq!(out.barred.len(), 1);
        assert!(out.barred[0].2.contains("barred from session t1"), "{}", out.barred[0].2);
        assert_eq!(c.live_legs(&sid()).len(), 1, "the refusal changes nothing");
        // After the bar, the phone may call that number again: a new call.
        let out = c.handle(leg("1.4", Path::Data), 300_001);
        assert!(out.commands.iter().any(|c| matches!(c, Command::OriginateFar { .. })));
        // Hanging up on the tablet ends the call.
        let out = c.handle(hangup("2.1"), 400_000);
        assert!(out.commands.contains(&Command::Hangup { uniqueid: "t1-far".into(), cause: 16 }));
    }

    #[test]
    fn a_move_of_a_session_that_is_not_connected_or_gone_is_refused_and_changes_nothing() {
        let mut c = core();
        let tablet = alice_tablet();
        c.handle(leg("1.1", Path::Data), 0);
        let err = c.move_to(&sid(), &tablet, &tablet_leg("2.1", MOVE_FAR, ""), 1_000, 10).unwrap_err();
        assert_eq!(err.to_string(), "session t1 is not connected");
        assert_eq!(c.view(&sid()).unwrap().device, "alice-phone");
        let err = c.move_to(&SessionId("nope".into()), &tablet, &tablet_leg("2.1", MOVE_FAR, ""), 1_000, 10);
        assert_eq!(err.unwrap_err(), MoveRefused::Ended { session: SessionId("nope".into()) });
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
        let err = c.move_to(&sid(), &tablet, &tablet_leg("1.1", MOVE_FAR, ""), 1_000, 1_000).unwrap_err();
        assert!(matches!(err, MoveRefused::LegInASession { .. }), "{err}");
        assert_eq!(c.live_legs(&sid()), vec![("1.1".into(), Path::Data)]);
    }

    #[test]
    fn a_move_whose_new_leg_goes_before_joining_leaves_the_call_on_the_old_device() {
        let mut c = connected_on_both_paths();
        c.move_to(&sid(), &alice_tablet(), &tablet_leg("2.1", MOVE_FAR, ""), 300_000, 5_000).unwrap();
        let out = c.handle(hangup("2.1"), 5_100);
        assert!(out.commands.is_empty(), "{:?}", out.commands);
        let v = c.view(&sid()).unwrap();
        assert_eq!((v.device.as_str(), v.barred.len(), v.legs.len()), ("alice-phone", 0, 2));
        assert_eq!(c.state(&sid()), Some(&State::Connected));
        // The phone's legs are the user's again: hanging one up ends the call.
        let out = c.handle(hangup("1.1"), 6_000);
        assert!(out.commands.contains(&Command::Hangup { uniqueid: "t1-far".into(), cause: 16 }));
    }

    #[test]
    fn the_live_session_of_a_user_is_found_on_another_device_only() {
        let c = connected_on_both_paths();
        assert_eq!(c.live_session_of_user("alice", "alice-tablet"), Some(sid()));
        assert_eq!(c.live_session_of_user("alice", "alice-phone"), None);
        assert_eq!(c.live_session_of_user("bob", "bob-phone"), None);
    }

    #[test]
    fn ended_sessions_are_reported_with_their_reason() {
        let mut c = connected_on_both_paths();
        c.handle(hangup("1.1"), 1_000);
        c.handle(lost("1.2"), 1_001);
        let out = c.handle(hangup("t1-far"), 1_002);
        assert_eq!(out.ended, vec![(sid(), "the phone hung up its data leg".to_string())]);
    }

    fn leg(uniqueid: &str, path: Path) -> Input {
        Input::LegArrived(LegArrival {
            uniqueid: uniqueid.into(),
            channel: format!("PJSIP/{}-{uniqueid}", path.as_str()),
            caller: if path == Path::Carrier { "+1 555 0001".into() } else { "alice-app".into() },
            endpoint: if path == Path::Data { "alice-app".into() } else { "carrier".into() },
            path,
            far: "2000".into(),
            token: String::new(),
        })
    }

    fn hangup(uniqueid: &str) -> Input {
        Input::Hangup { uniqueid: uniqueid.into(), cause: 16, cause_txt: "Normal Clearing".into() }
    }

    /// A leg lost to the network (not the user hanging up).
    fn lost(uniqueid: &str) -> Input {
        Input::Hangup { uniqueid: uniqueid.into(), cause: 41, cause_txt: "Temporary failure".into() }
    }

    fn sid() -> SessionId {
        SessionId("t1".into())
    }

    fn assign(uniqueid: &str) -> Command {
        Command::Assign {
            uniqueid: uniqueid.into(),
            session: sid(),
            bridge: "handoff-t1".into(),
            group: "t1/alice-phone".into(),
            preferred: Path::Data,
        }
    }

    #[test]
    fn the_first_leg_opens_a_session_and_calls_the_far_party_at_once_with_the_users_caller_id() {
        let mut c = core();
        let out = c.handle(leg("1.1", Path::Data), 0);
        assert_eq!(
            out.commands,
            vec![
                assign("1.1"),
                Command::OriginateFar {
                    session: sid(),
                    uniqueid: "t1-far".into(),
                    number: "2000".into(),
                    bridge: "handoff-t1".into(),
                    caller_id: "+15550001".into()
                },
            ]
        );
        assert_eq!(c.state(&sid()), Some(&State::AwaitingFarAnswer));
        assert_eq!(c.bridge(&sid()), Some("handoff-t1"));
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
        assert_eq!(c.state(&sid()), Some(&State::Connected));
    }

    #[test]
    fn the_carrier_leg_pairs_by_caller_id_into_the_same_session() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        let out = c.handle(leg("1.2", Path::Carrier), 300);
        assert_eq!(out.commands, vec![assign("1.2")], "no second far call");
        assert_eq!(c.live_legs(&sid()).len(), 2);
        assert!(out.records[0].what.contains("paired after 300 ms"));
    }

    #[test]
    fn one_leg_dying_continues_on_the_other_then_grace_then_rejoin() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(leg("1.2", Path::Carrier), 10);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
        let out = c.handle(lost("1.1"), 1000);
        assert!(out.commands.is_empty());
        assert_eq!(c.state(&sid()), Some(&State::Connected));
        c.handle(lost("1.2"), 2000);
        assert_eq!(c.state(&sid()), Some(&State::Grace { until: 32_000 }));
        let out = c.handle(leg("1.3", Path::Data), 5000);
        assert_eq!(out.commands, vec![assign("1.3")]);
        assert_eq!(c.state(&sid()), Some(&State::Connected));
    }

    #[test]
    fn the_user_hanging_up_one_leg_ends_the_whole_call() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(leg("1.2", Path::Carrier), 10);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
        let out = c.handle(hangup("1.2"), 5000);
        assert_eq!(
            out.commands,
            vec![
                Command::Hangup { uniqueid: "t1-far".into(), cause: 16 },
                Command::Hangup { uniqueid: "1.1".into(), cause: 16 }
            ]
        );
        c.handle(hangup("1.1"), 5010);
        c.handle(hangup("t1-far"), 5020);
        assert!(c.is_empty());
    }

    #[test]
    fn grace_runs_out_and_the_far_party_is_released() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
        c.handle(lost("1.1"), 100);
        assert_eq!(c.next_timeout(), Some(30_100));
        let out = c.handle(Input::Tick, 30_100);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "t1-far".into(), cause: 16 }]);
        c.handle(hangup("t1-far"), 30_200);
        assert!(c.is_empty());
    }

    #[test]
    fn a_stalled_leg_is_declared_dead_after_seconds_and_a_redial_replaces_it() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(leg("1.2", Path::Carrier), 10);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
        c.handle(Input::LegStalled { uniqueid: "1.1".into(), silent_ms: 40 }, 1000);
        assert_eq!(c.next_timeout(), Some(960 + 10_000));
        // The app re-dials over the returning Wi-Fi before the old leg is declared dead.
        let out = c.handle(leg("1.3", Path::Data), 3000);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 16 }, assign("1.3")]);
        assert!(c.handle(hangup("1.1"), 3010).commands.is_empty(), "our own hangup of the old leg ends nothing");
        assert_eq!(c.state(&sid()), Some(&State::Connected));
        // A carrier leg that stalls and never recovers is hung up after leg_dead_after.
        c.handle(Input::LegStalled { uniqueid: "1.2".into(), silent_ms: 40 }, 4000);
        c.handle(Input::LegRecovered { uniqueid: "1.2".into() }, 4500);
        assert!(c.handle(Input::Tick, 20_000).commands.is_empty(), "recovered: not dead");
        c.handle(Input::LegStalled { uniqueid: "1.2".into(), silent_ms: 40 }, 21_000);
        let out = c.handle(Input::Tick, 21_000 - 40 + 10_000);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.2".into(), cause: 16 }]);
    }

    #[test]
    fn bad_legs_are_refused_with_a_reason_and_change_nothing() {
        let mut c = core();
        // unknown device
        let mut stranger = leg("9.1", Path::Data);
        if let Input::LegArrived(l) = &mut stranger {
            l.endpoint = "mallory-app".into();
        }
        let out = c.handle(stranger, 0);
        assert!(
            matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason == "unknown device: no registered device has endpoint 'mallory-app'")
        );
        assert!(c.is_empty());
        // a third leg for an already-paired device
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(leg("1.2", Path::Carrier), 10);
        let out = c.handle(leg("1.3", Path::Carrier), 20);
        assert!(
            matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason.contains("already has a live carrier leg"))
        );
        assert_eq!(c.live_legs(&sid()).len(), 2);
        // a re-dial just after the session ended is a new call (the late second leg of an
        // ended call is refused: see session/late.rs)
        c.handle(hangup("t1-far"), 100);
        c.handle(hangup("1.1"), 110);
        c.handle(hangup("1.2"), 120);
        assert!(c.is_empty());
        let out = c.handle(leg("1.4", Path::Data), 1000);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]));
    }

    #[test]
    fn a_token_used_by_another_device_is_refused() {
        let bob = Device {
            id: "bob-phone".into(),
            user: "bob".into(),
            endpoint: Some("bob-app".into()),
            number: None,
            caller_id: None,
        };
        let mut c = Sessions::new(Rules::default(), vec![alice(), bob], "t");
        let with_token = |uid: &str, endpoint: &str| {
            Input::LegArrived(LegArrival {
                uniqueid: uid.into(),
                channel: format!("PJSIP/{endpoint}"),
                caller: String::new(),
                endpoint: endpoint.into(),
                path: Path::Data,
                far: "2000".into(),
                token: "t0k3n".into(),
            })
        };
        c.handle(with_token("1.1", "alice-app"), 0);
        let out = c.handle(with_token("2.1", "bob-app"), 5);
        assert!(
            matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason == "pairing token already used by device 'alice-phone'")
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn far_failures_end_the_legs_with_the_far_cause() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        let out = c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "busy".into(), no_channel: true }, 50);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 17 }]);
        c.handle(hangup("1.1"), 60);
        assert!(c.is_empty());
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        let out =
            c.handle(Input::Hangup { uniqueid: "t1-far".into(), cause: 19, cause_txt: "No answer".into() }, 30_000);
        assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: 19 }]);
    }

    #[test]
    fn ending_sessions_are_dropped_after_the_linger_time_if_hangups_never_come() {
        let mut c = core();
        c.handle(leg("1.1", Path::Data), 0);
        c.handle(hangup("1.1"), 100);
        assert_eq!(c.next_timeout(), Some(100 + ENDING_LINGER_MS));
        c.handle(Input::Tick, 100 + ENDING_LINGER_MS);
        assert!(c.is_empty());
        assert_eq!(c.next_timeout(), None);
    }

    #[test]
    fn a_running_session_is_adopted_and_then_followed() {
        let mut c = core();
        let found = Found {
            session: SessionId("old-7".into()),
            bridge: "handoff-old-7".into(),
            device: "alice-phone".into(),
            far: Some("old-7-far".into()),
            legs: vec![
                ("9.1".into(), "PJSIP/alice-app-1".into(), Path::Data),
                ("9.2".into(), "PJSIP/carrier-2".into(), Path::Carrier),
            ],
            far_number: "2000".into(),
        };
        c.adopt(found.clone(), 0);
        let id = SessionId("old-7".into());
        assert_eq!(c.state(&id), Some(&State::Connected));
        assert!(c.adopt(found, 1).records.is_empty(), "adopting twice changes nothing");
        let out = c.handle(hangup("old-7-far"), 100);
        assert_eq!(
            out.commands,
            vec![
                Command::Hangup { uniqueid: "9.1".into(), cause: 16 },
                Command::Hangup { uniqueid: "9.2".into(), cause: 16 }
            ]
        );
        // a new leg of the same device is a third leg while both are alive
        c.handle(lost("9.1"), 110);
        c.handle(lost("9.2"), 120);
        assert!(c.is_empty());
        assert_eq!(
            c.device_of_channel("alice-app", "").map(|(d, p)| (d.id.as_str(), p)),
            Some(("alice-phone", Path::Data))
        );
        assert_eq!(c.device_of_channel("carrier", "+15550001").map(|(_, p)| p), Some(Path::Carrier));
    }

    #[test]
    fn numbers_compare_without_formatting() {
        assert_eq!(normalise_number("+1 555-0001"), "+15550001");
        assert_eq!(normalise_number("0015550001"), "+15550001");
    }
}
