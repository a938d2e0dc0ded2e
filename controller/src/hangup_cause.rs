//! The one rule for "the user hung up" versus "the leg was lost", per PBX, by cause name and
//! Q.850 number; the Q.850 numbers handoffd sends, named; and FreeSWITCH's names for them.
//!
//! A client leg that ends because its user hung up ends the call. A leg that is *lost* (its
//! RTP stopped, the network or the carrier dropped it) does not: the call goes on over the
//! device's other leg, or the far party is held for `sessions.grace_s`. The drivers classify
//! every hang-up with [`classify`] before the session machine sees it
//! ([`crate::session::Input::LegEnded`]).
//!
//! **Why the name must decide.** FreeSWITCH reports every cause of its own (numbers above
//! 127: `MEDIA_TIMEOUT` 604, `MANAGER_REQUEST` 503, `ORIGINATOR_CANCEL` 487, ...) as Q.850 16
//! in `variable_hangup_cause_q850` (`switch_channel_cause_q850()`): recording 24 has a leg
//! whose RTP stopped ending with `Hangup-Cause: MEDIA_TIMEOUT` and `hangup_cause_q850: 16`,
//! exactly the number of a phone's BYE. So on FreeSWITCH the name decides and the number is
//! read only when the name is unknown. Asterisk's AMI `Hangup` event carries the number and a
//! text (`Cause-txt: Normal Clearing`); there the number decides.
//!
//! | PBX        | cause (name / Q.850)                                   | means         |
//! |------------|--------------------------------------------------------|---------------|
//! | FreeSWITCH | `NORMAL_CLEARING` 16 (the phone's BYE, `recv_bye`)     | user hung up  |
//! | FreeSWITCH | `ORIGINATOR_CANCEL` (q850 16: the phone cancelled)     | user hung up  |
//! | FreeSWITCH | `MEDIA_TIMEOUT` (q850 16: no RTP for `media_timeout`)  | lost          |
//! | FreeSWITCH | `MANAGER_REQUEST` (q850 16: `uuid_kill`/`hupall` by an API client: handoffd or an operator) | lost |
//! | FreeSWITCH | `RECOVERY_ON_TIMER_EXPIRE` 102, `NETWORK_OUT_OF_ORDER` 38, `DESTINATION_OUT_OF_ORDER` 27, `NORMAL_TEMPORARY_FAILURE` 41, `SRTP_READ_ERROR`, `GATEWAY_DOWN`, `CRASH`, `SYSTEM_SHUTDOWN` | lost |
//! | FreeSWITCH | any other name: by its Q.850 number as on Asterisk     |               |
//! | Asterisk   | 16 Normal Clearing (the phone's BYE)                   | user hung up  |
//! | Asterisk   | 44 Requested channel not available: what recent chan_pjsip sets on `rtp_timeout` (`Disconnecting channel ... for lack of RTP activity`; older versions set none: 0) — from Asterisk's source, not measured here | lost |
//! | Asterisk   | 102 Recovery on timer expiry (SIP transaction or session timer), 38, 27, 41, 0 (no cause) | lost |
//! | Asterisk   | any other number                                       | lost          |
//!
//! **Override.** Some carriers clear a call they dropped (radio loss) with a normal 16, which
//! the table reads as the user hanging up. `sessions.normal_clearing_is_lost: [carrier]` (or
//! `[data]`, or both) makes a normal clearing on legs of those paths count as lost: the call
//! then survives a drop on that path, at the price that the user hanging up that leg leaves
//! the far party on hold for `grace_s` (or the call on the other leg) instead of ending it.
//!
//! Legs handoffd hangs up itself are never the user: the session machine knows them.

use crate::session::Path;

/// Q.850 cause numbers handoffd reads or sends, by name.
pub mod q850 {
    /// No cause given (a channel gone while the link was down; an AMI event without one).
    pub const NONE: u32 = 0;
    pub const NORMAL_CLEARING: u32 = 16;
    pub const USER_BUSY: u32 = 17;
    pub const NO_USER_RESPONSE: u32 = 18;
    pub const NO_ANSWER: u32 = 19;
    pub const CALL_REJECTED: u32 = 21;
    /// The call was answered elsewhere (Asterisk knows it; FreeSWITCH does not).
    pub const NON_SELECTED_USER_CLEARING: u32 = 26;
    pub const DESTINATION_OUT_OF_ORDER: u32 = 27;
    pub const NORMAL_CIRCUIT_CONGESTION: u32 = 34;
    pub const NETWORK_OUT_OF_ORDER: u32 = 38;
    pub const NORMAL_TEMPORARY_FAILURE: u32 = 41;
    pub const SWITCH_CONGESTION: u32 = 42;
    /// chan_pjsip's `rtp_timeout`/`rtp_timeout_hold` hang-up in recent Asterisk (older: none).
    pub const REQUESTED_CHAN_UNAVAIL: u32 = 44;
    pub const RECOVERY_ON_TIMER_EXPIRE: u32 = 102;
}

/// The PBX that reported a hang-up.
pub use crate::pbx::Pbx;

/// How a leg ended, as far as the session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEnd {
    /// The user hung up (the phone cleared the call): the call ends.
    ClearedByUser,
    /// The leg was lost (RTP timeout, network, killed by someone else): the call goes on.
    Lost,
}

/// FreeSWITCH cause names and what they mean for a client leg (see the module table).
pub const FREESWITCH_NAMES: &[(&str, LegEnd)] = &[
    ("NORMAL_CLEARING", LegEnd::ClearedByUser),
    ("ORIGINATOR_CANCEL", LegEnd::ClearedByUser),
    ("MEDIA_TIMEOUT", LegEnd::Lost),
    ("MANAGER_REQUEST", LegEnd::Lost),
    ("RECOVERY_ON_TIMER_EXPIRE", LegEnd::Lost),
    ("NETWORK_OUT_OF_ORDER", LegEnd::Lost),
    ("DESTINATION_OUT_OF_ORDER", LegEnd::Lost),
    ("NORMAL_TEMPORARY_FAILURE", LegEnd::Lost),
    ("SRTP_READ_ERROR", LegEnd::Lost),
    ("GATEWAY_DOWN", LegEnd::Lost),
    ("CRASH", LegEnd::Lost),
    ("SYSTEM_SHUTDOWN", LegEnd::Lost),
];

/// Q.850 numbers that mean the user hung up (every other number is a lost leg).
pub const USER_CLEARING_Q850: &[u32] = &[q850::NORMAL_CLEARING];

/// Per-path overrides (`sessions.normal_clearing_is_lost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// A normal clearing on a data leg counts as lost.
    pub data_normal_is_lost: bool,
    /// A normal clearing on a carrier leg counts as lost.
    pub carrier_normal_is_lost: bool,
}

impl Overrides {
    /// From the config's list of paths.
    pub fn from_paths(paths: &[Path]) -> Self {
        Self {
            data_normal_is_lost: paths.contains(&Path::Data),
            carrier_normal_is_lost: paths.contains(&Path::Carrier),
        }
    }

    fn normal_is_lost(&self, path: Option<Path>) -> bool {
        match path {
            Some(Path::Data) => self.data_normal_is_lost,
            Some(Path::Carrier) => self.carrier_normal_is_lost,
            None => false,
        }
    }
}

/// The meaning of a Q.850 number alone (Asterisk; FreeSWITCH names not in the table).
pub fn by_q850(cause: u32) -> LegEnd {
    if USER_CLEARING_Q850.contains(&cause) {
        LegEnd::ClearedByUser
    } else {
        LegEnd::Lost
    }
}

/// Classifies a hang-up: `name` is FreeSWITCH's `Hangup-Cause` (or Asterisk's `Cause-txt`,
/// which does not decide), `cause` the Q.850 number, `path` the leg's path if known.
pub fn classify(pbx: Pbx, name: &str, cause: u32, path: Option<Path>, overrides: &Overrides) -> LegEnd {
    let end = match pbx {
        Pbx::FreeSwitch => FREESWITCH_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, e)| *e)
            .unwrap_or_else(|| by_q850(cause)),
        Pbx::Asterisk => by_q850(cause),
    };
    if end == LegEnd::ClearedByUser && overrides.normal_is_lost(path) {
        return LegEnd::Lost;
    }
    end
}

/// The cause name FreeSWITCH is sent in `uuid_kill` for a Q.850 number handoffd hangs up
/// with. FreeSWITCH has no `NON_SELECTED_USER_CLEARING` (26): `switch_channel_str2cause()`
/// silently turns an unknown name into `NORMAL_CLEARING` (recording 26), which reads as the
/// user hanging up. A leg moved away is hung up with `MANAGER_REQUEST` instead: FreeSWITCH
/// knows it (recording 10: `hupall MANAGER_REQUEST`) and [`classify`] reads it as lost.
pub fn freeswitch_kill_cause(cause: u32) -> &'static str {
    if cause == q850::NON_SELECTED_USER_CLEARING {
        return "MANAGER_REQUEST";
    }
    crate::freeswitch::cause_name(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_decides_on_freeswitch_and_the_number_on_asterisk() {
        let none = Overrides::default();
        let fs = |n: &str, c: u32| classify(Pbx::FreeSwitch, n, c, Some(Path::Data), &none);
        // Recording 24: a media timeout comes with q850 16, like the phone's BYE.
        assert_eq!(fs("MEDIA_TIMEOUT", 16), LegEnd::Lost);
        assert_eq!(fs("NORMAL_CLEARING", 16), LegEnd::ClearedByUser);
        assert_eq!(fs("ORIGINATOR_CANCEL", 16), LegEnd::ClearedByUser);
        assert_eq!(fs("MANAGER_REQUEST", 16), LegEnd::Lost);
        assert_eq!(fs("USER_BUSY", 17), LegEnd::Lost);
        assert_eq!(fs("SOMETHING_NEW", 16), LegEnd::ClearedByUser, "unknown names: by number");
        let ast = |c: u32| classify(Pbx::Asterisk, "Normal Clearing", c, None, &none);
        assert_eq!(ast(q850::NORMAL_CLEARING), LegEnd::ClearedByUser);
        assert_eq!(ast(q850::REQUESTED_CHAN_UNAVAIL), LegEnd::Lost, "chan_pjsip rtp_timeout");
        assert_eq!(ast(q850::RECOVERY_ON_TIMER_EXPIRE), LegEnd::Lost);
        assert_eq!(ast(q850::NONE), LegEnd::Lost);
    }

    #[test]
    fn a_carrier_that_clears_drops_normally_can_be_overridden_per_path() {
        let carrier = Overrides::from_paths(&[Path::Carrier]);
        assert_eq!(classify(Pbx::Asterisk, "", q850::NORMAL_CLEARING, Some(Path::Carrier), &carrier), LegEnd::Lost);
        assert_eq!(
            classify(Pbx::Asterisk, "", q850::NORMAL_CLEARING, Some(Path::Data), &carrier),
            LegEnd::ClearedByUser
        );
        assert_eq!(classify(Pbx::FreeSwitch, "NORMAL_CLEARING", 16, Some(Path::Carrier), &carrier), LegEnd::Lost);
    }

    #[test]
    fn freeswitch_is_sent_only_names_it_knows() {
        assert_eq!(freeswitch_kill_cause(q850::NON_SELECTED_USER_CLEARING), "MANAGER_REQUEST");
        assert_eq!(freeswitch_kill_cause(q850::NORMAL_CLEARING), "NORMAL_CLEARING");
        assert_eq!(freeswitch_kill_cause(q850::CALL_REJECTED), "CALL_REJECTED");
    }
}
