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
//!
//! | file          | owns |
//! |---------------|------|
//! | `types.rs`    | the vocabulary: inputs, commands, records, views, states, rules, refusals |
//! | `state.rs`    | one session's data: its phase (with the data of that state only), legs, timers, transitions |
//! | `timers.rs`   | the timer table every deadline comes from |
//! | `arrival.rs`  | legs arriving (open, pair, rejoin, replace, refuse) and sessions adopted from the PBX |
//! | `events.rs`   | the far party answering or failing, hangups, stalls, timers firing, the end of a session |
//! | `moving.rs`   | moves between devices and the bars they leave |
//! | `late.rs`     | what comes after its moment: late second legs, stray far channels, refused decisions |

use crate::hangup_cause::q850;
use crate::timeline::Mark;
use std::collections::{BTreeMap, HashMap};

mod arrival;
mod events;
mod late;
mod moving;
mod state;
#[cfg(test)]
mod tests;
mod timers;
mod types;

pub use handoff_vocab::{is_far_channel, FAR_SUFFIX};
use late::EndedCall;
use state::Session;
pub use types::{
    Alignment, Command, Device, Found, Input, LegArrival, MoveRefused, Outputs, Path, Record, Rules, SessionId, State,
    View,
};

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
    pub fn state(&self, id: &SessionId) -> Option<State> {
        self.sessions.get(id).map(Session::state)
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

    /// Replaces the device registry (after an administrator added or removed a device).
    pub fn set_devices(&mut self, devices: Vec<Device>) {
        self.devices = devices;
    }

    /// The registered device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
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
            state: s.state(),
            barred: s.barred.iter().map(|(d, t)| (d.clone(), *t)).collect(),
        })
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

    /// When the core next needs a `Tick`: the earliest deadline of the sessions' timer tables.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.sessions.values().filter_map(|s| s.timers.next_timeout()).min()
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
}
