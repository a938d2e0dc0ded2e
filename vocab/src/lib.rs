//! handoff's AMI vocabulary: the one place where the names `res_handoff.so` (`module/`) and
//! `handoffd` (`controller/`) share on Asterisk's manager interface are written: handoff's own
//! actions ([`action`]), events ([`event`]), their headers ([`header`]) and the header values
//! both sides read ([`value`]) with the `Path` and `Alignment` values as types ([`Path`],
//! [`Alignment`]), plus the far party's uniqueid (`<session>-far`, [`FAR_SUFFIX`])
//! and the device group key (`<session>/<device>`, [`GroupKey`]).
//!
//! `docs/ami.md` is the reference for users and must say the same: a name changed here is
//! changed there (and in `CHANGELOG.md`, since AMI clients other than handoffd may read them).
//! Asterisk's own actions, events and headers (`Originate`, `Hangup`, `Cause`, ...) are not
//! handoff's and are not listed here.
//!
//! No dependencies, `no_std`: plain `&str` constants (usable as `match` patterns), the action
//! names also as `&CStr` for `ast_manager_register2`.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// `pub const NAME: &str` for each name; with `cstr`, also `pub mod c { pub const NAME: &CStr }`
/// from the same literal.
macro_rules! names {
    (cstr; $($(#[$doc:meta])* $name:ident = $text:literal;)*) => {
        names!($($(#[$doc])* $name = $text;)*);
        /// The same names as C strings (for Asterisk's registration calls).
        pub mod c {
            use core::ffi::CStr;
            $(
                #[doc = concat!("`", $text, "` as a C string.")]
                pub const $name: &CStr = match CStr::from_bytes_with_nul(concat!($text, "\0").as_bytes()) {
                    Ok(c) => c,
                    Err(_) => panic!("a name holds a NUL byte"),
                };
            )*
        }
    };
    ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = $text;)*
    };
}

/// The AMI actions `res_handoff.so` registers and handoffd sends (`docs/ami.md`, "Actions").
pub mod action {
    names! { cstr;
        /// A nonce for the next [`HELLO`]'s `Key`.
        CHALLENGE = "HandoffChallenge";
        /// handoffd's heartbeat, proving the controller account.
        HELLO = "HandoffHello";
        /// Places a waiting leg into a session's bridge.
        ASSIGN = "HandoffAssign";
        /// Refuses a waiting leg.
        REFUSE = "HandoffRefuse";
        /// Fetches (once) the PIN or ticket of a move leg.
        SECRET = "HandoffSecret";
    }
}

/// The AMI events `res_handoff.so` raises (`docs/ami.md`, "Events").
pub mod event {
    names! {
        /// A channel entered `Handoff()` and waits for a decision.
        LEG_ARRIVED = "HandoffLegArrived";
        /// The wait ended without a decision.
        LEG_ABANDONED = "HandoffLegAbandoned";
        /// handoffd refused the leg.
        LEG_REFUSED = "HandoffLegRefused";
        /// A watched leg got no voice frame for longer than its stall threshold.
        LEG_STALLED = "HandoffLegStalled";
        /// A stalled leg delivers frames again.
        LEG_RECOVERED = "HandoffLegRecovered";
        /// The leg feeding the mix changed.
        LEG_SWITCHED = "HandoffLegSwitched";
        /// The device's legs were lined up in time, or the alignment was given up.
        ALIGNMENT = "HandoffAlignment";
        /// Every leg of the device fell silent: the far party hears the reconnecting tone (or it
        /// stopped).
        RECONNECT_TONE = "HandoffReconnectTone";
    }
}

/// The headers of handoff's actions, responses and events.
pub mod header {
    names! {
        CHALLENGE = "Challenge";
        CONTROLLER = "Controller";
        KEY = "Key";
        UNIQUEID = "Uniqueid";
        CHANNEL = "Channel";
        SESSION = "Session";
        BRIDGE = "Bridge";
        GROUP = "Group";
        PREFERRED = "Preferred";
        REASON = "Reason";
        CALLER_ID_NUM = "CallerIDNum";
        ENDPOINT = "Endpoint";
        PATH = "Path";
        FAR = "Far";
        TOKEN = "Token";
        SECRET = "Secret";
        LAST_FRAME_MS = "LastFrameMs";
        DETECTED_MS = "DetectedMs";
        SILENT_MS = "SilentMs";
        FIRST_FRAME_MS = "FirstFrameMs";
        FROM = "From";
        TO = "To";
        AT_MS = "AtMs";
        GAP_MS = "GapMs";
        STATUS = "Status";
        OFFSET_MS = "OffsetMs";
        LATER = "Later";
        RESIDUAL_MS = "ResidualMs";
        SCORE = "Score";
        LASTED_MS = "LastedMs";
        /// `HandoffAssign`: the session rule's [`Alignment`](crate::Alignment) (handoffd.yaml's
        /// `sessions.alignment`); absent, `alignment` in handoff.conf decides.
        ALIGNMENT = "Alignment";
    }
}

/// Header values both sides read.
pub mod value {
    names! {
        /// `HandoffLegSwitched` `Reason`: the first frames of the device's first leg.
        SWITCH_FIRST_FRAMES = "first-frames";
        /// `HandoffLegSwitched` `Reason`: the feeding leg stalled (a failover).
        SWITCH_STALL = "stall";
        /// `HandoffLegSwitched` `Reason`: the preferred path recovered.
        SWITCH_PREFERRED_RECOVERED = "preferred-recovered";
        /// `HandoffAlignment` `Status`: the legs are lined up.
        ALIGNED = "aligned";
        /// `HandoffAlignment` `Status`: the alignment was given up.
        SWITCHING = "switching";
        /// `HandoffReconnectTone` `Status`: the tone began.
        TONE_STARTED = "started";
        /// `HandoffReconnectTone` `Status`: a leg is back, the tone ended.
        TONE_STOPPED = "stopped";
        /// `HandoffLegArrived` `Secret`: the leg presented a PIN.
        SECRET_PIN = "pin";
        /// `HandoffLegArrived` `Secret`: the leg presented a ticket.
        SECRET_TICKET = "ticket";
        /// How `HandoffSecret`'s `Message` starts for a PIN (`pin-<digits>`).
        PIN_PREFIX = "pin-";
        /// How `HandoffSecret`'s `Message` starts for a ticket (`ticket-<hex>`).
        TICKET_PREFIX = "ticket-";
    }
}

/// Which network a client leg comes over: the `Path` header's values (`data`, `carrier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Path {
    /// SIP from the phone's app over Wi-Fi or mobile data.
    Data = 0,
    /// The carrier network (cellular/PSTN) over a SIP trunk.
    Carrier = 1,
}

impl Path {
    /// The path a `Path` header names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "carrier" => Some(Self::Carrier),
            _ => None,
        }
    }

    /// The `Path` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Carrier => "carrier",
        }
    }

    /// The path of index `i` (`Path as u8`), if it is one.
    pub fn from_index(i: u8) -> Option<Self> {
        match i {
            0 => Some(Self::Data),
            1 => Some(Self::Carrier),
            _ => None,
        }
    }

    /// The other path.
    pub fn other(self) -> Self {
        match self {
            Self::Data => Self::Carrier,
            Self::Carrier => Self::Data,
        }
    }
}

/// How a device's two legs share the mix (`alignment` in handoff.conf, and the `Alignment`
/// header of `HandoffAssign` when a session rule sets it): the trade-off between added delay and
/// the seam a listener hears at a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// The legs are lined up in time from their audio, the later one feeds the mix and each
    /// 20 ms slot comes from the best leg: no seam, the legs' offset as added delay.
    Aligned,
    /// No added delay: the earlier leg feeds the mix; a failover fills the detection gap by
    /// concealment and drops what was already played, a take-back catches up in a pause.
    LowLatency,
    /// The whole mix moves from leg to leg (no measurement): repeats and skips the offset.
    Switching,
}

impl Alignment {
    /// The mode a setting or header names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aligned" => Some(Self::Aligned),
            "low-latency" => Some(Self::LowLatency),
            "switching" => Some(Self::Switching),
            _ => None,
        }
    }

    /// The name as written in handoff.conf and the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aligned => "aligned",
            Self::LowLatency => "low-latency",
            Self::Switching => "switching",
        }
    }
}

/// The suffix of the far channel's uniqueid (`<session>-far`, set with the originate's
/// `ChannelId` or FreeSWITCH's `origination_uuid`): how a far channel of handoff is told apart
/// from any other channel.
pub const FAR_SUFFIX: &str = "-far";

/// The far party's uniqueid of a session: displays as `<session>-far`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FarUniqueid<'a>(pub &'a str);

impl fmt::Display for FarUniqueid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{FAR_SUFFIX}", self.0)
    }
}

/// Whether `uniqueid` names a far channel handoff originated (any session's).
pub fn is_far_channel(uniqueid: &str) -> bool {
    uniqueid.len() > FAR_SUFFIX.len() && uniqueid.ends_with(FAR_SUFFIX)
}

/// Whether `uniqueid` is the far channel of session `session`.
pub fn is_far_channel_of(uniqueid: &str, session: &str) -> bool {
    uniqueid.strip_suffix(FAR_SUFFIX) == Some(session)
}

/// The key of a device group (the legs of one device in one session, whose frames the module
/// watches together): displays as `<session>/<device>`, sent as `HandoffAssign`'s `Group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupKey<'a> {
    pub session: &'a str,
    pub device: &'a str,
}

impl fmt::Display for GroupKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.session, self.device)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn c_names_match_the_str_names() {
        assert_eq!(action::c::HELLO.to_str(), Ok(action::HELLO));
        assert_eq!(action::c::SECRET.to_bytes(), b"HandoffSecret");
    }

    #[test]
    fn alignment_names_read_back() {
        for a in [Alignment::Aligned, Alignment::LowLatency, Alignment::Switching] {
            assert_eq!(Alignment::parse(a.as_str()), Some(a));
        }
        assert_eq!(Alignment::parse("low_latency"), None);
    }

    #[test]
    fn far_uniqueid_and_group_key() {
        assert_eq!(FarUniqueid("ab-1").to_string(), "ab-1-far");
        assert!(is_far_channel("ab-1-far") && !is_far_channel("-far") && !is_far_channel("ab-1"));
        assert!(is_far_channel_of("ab-1-far", "ab-1") && !is_far_channel_of("ab-12-far", "ab-1"));
        assert_eq!(GroupKey { session: "ab-1", device: "alice-phone" }.to_string(), "ab-1/alice-phone");
    }
}
