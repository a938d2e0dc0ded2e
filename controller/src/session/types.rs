//! The session core's vocabulary: what it is told ([`Input`], with the legs, devices and
//! sessions found in the PBX it names), what it answers ([`Command`], [`Record`], [`Outputs`]),
//! how a session looks from outside ([`View`], [`State`]), its settings ([`Rules`]) and why a
//! move is refused ([`MoveRefused`]).

use super::Millis;
use crate::timeline::Mark;
use std::fmt;

/// A session as it stands (see [`super::Sessions::view`]).
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

/// Which network a client leg comes over (the `Path` header's values, from handoff-vocab).
pub use handoff_vocab::Path;

/// How a device's two legs share the mix in res_handoff.so (the `Alignment` header's values,
/// from handoff-vocab).
pub use handoff_vocab::Alignment;

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

/// A session found running in the PBX (see [`super::Sessions::adopt`]).
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
    /// watched in device group `group`, whose preferred path is `preferred` and whose legs share
    /// the mix as `alignment` says (None: as the PBX's own setting says).
    Assign {
        uniqueid: String,
        session: SessionId,
        bridge: String,
        group: String,
        preferred: Path,
        alignment: Option<Alignment>,
    },
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
    /// Whether the session still carries a call (any state but `Ending`).
    pub fn is_live(&self) -> bool {
        !matches!(self, State::Ending { .. })
    }
}

/// Why [`super::Sessions::move_to`] refused a move (the caller refuses the waiting leg with it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveRefused {
    #[error("channel {channel} is already in a session")]
    LegInASession { channel: String },
    #[error("session {session} has ended")]
    Ended { session: SessionId },
    #[error("session {session} is not connected")]
    NotConnected { session: SessionId },
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
    /// How a device's two legs share the mix (`sessions.alignment`), sent with every assign;
    /// None leaves it to the module's handoff.conf.
    pub alignment: Option<Alignment>,
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
            alignment: None,
        }
    }
}
