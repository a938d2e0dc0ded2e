//! The boundary between handoffd and the PBX underneath: one [`Driver`] interface, two
//! implementations ([`crate::asterisk::AsteriskDriver`] over AMI,
//! [`crate::freeswitch::FreeSwitchDriver`] over the event socket). The session machine, the
//! device registry and the move flow never learn which PBX they drive.
//!
//! A driver is sans-I/O: the daemon owns the socket and the clock, hands the driver the bytes
//! it read and the time, and writes the bytes the driver wants sent.
//!
//! ```text
//!   daemon ──connected/receive/closed/timeout──▶ Driver ──poll_transmit──▶ bytes to the PBX
//!   daemon ◀──────────── poll_event ──────────── Driver: Up, Snapshot, Input, Failover, Down
//!   daemon ──command (session Command)──────────▶ Driver
//! ```
//!
//! After connecting, a driver logs in, subscribes to events and reads everything the PBX is
//! running into one [`DriverEvent::Snapshot`]; events that arrive meanwhile are held and
//! released after it, so the daemon rebuilds its sessions before it hears about changes.

use crate::session::{Command, Found, Input, Millis, SessionId, Sessions};
use std::collections::BTreeMap;

/// Why a link to the PBX failed or ended (one line, with what to check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// TCP connect failed or timed out.
    #[error("cannot reach {pbx} at {addr}: {why} ({hint})")]
    Unreachable { pbx: &'static str, addr: String, why: String, hint: &'static str },
    /// The PBX refused the login: the daemon waits `ami.login_retry_s` before it tries again
    /// (a quick retry would only trip the PBX's lockout).
    #[error("{0}")]
    Refused(String),
    /// The connection dropped, timed out or fell out of step.
    #[error("{link} link to {addr} lost: {why}")]
    Lost { link: &'static str, addr: String, why: String },
    /// The peer does not speak the PBX's protocol.
    #[error("{addr} did not greet like {pbx}: {why}")]
    NotThePbx { pbx: &'static str, addr: String, why: String },
}

impl LinkError {
    /// Whether the next try must wait the long login retry instead of the reconnect backoff.
    pub fn is_fatal(&self) -> bool {
        matches!(self, LinkError::Refused(_))
    }
}

/// A channel the PBX reports running, in PBX-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxChannel {
    pub uniqueid: String,
    /// The channel's name (`PJSIP/alice-app-0000001a`, `sofia/internal/alice-app@host`).
    pub channel: String,
    /// The conference it is in, if any.
    pub conference: Option<String>,
    /// The app endpoint or SIP user it came from (identifies a data leg).
    pub endpoint: String,
    /// Its caller ID number (identifies a carrier leg).
    pub caller: String,
}

/// What a driver tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// Logged in; `detail` says to whom, for the log.
    Up { detail: String },
    /// Every channel the PBX runs, read after (re)connecting.
    Snapshot(Vec<PbxChannel>),
    /// Something the session machine must hear.
    Input(Input),
    /// The mix moved to another leg because the feeding one failed; the gap if the PBX
    /// measured it.
    Failover { gap_ms: Option<u64> },
    /// The PBX lined a device's two legs up in time (`Some`: how far behind the later leg's audio
    /// is, ms) or gave the alignment up (`None`: the mix switches between the legs).
    Alignment { offset_ms: Option<u64> },
    /// The link cannot go on (the daemon reconnects, after the login retry if the error is fatal).
    Down(LinkError),
}

/// A PBX driver: protocol, event mapping and command mapping for one PBX, without I/O.
pub trait Driver: Send {
    /// The PBX's name for the log (`Asterisk`, `FreeSWITCH`).
    fn pbx(&self) -> &'static str;
    /// What the connection is called in errors (`Asterisk's AMI`, `FreeSWITCH's event socket`).
    fn endpoint_name(&self) -> &'static str;
    /// What to check when the PBX cannot be reached.
    fn unreachable_hint(&self) -> &'static str;
    /// A new connection is open; any earlier connection's state is dropped.
    fn connected(&mut self, now: Millis);
    /// Bytes the PBX sent.
    fn receive(&mut self, bytes: &[u8], now: Millis);
    /// The PBX closed the connection.
    fn closed(&mut self, now: Millis);
    /// Carries out a session command.
    fn command(&mut self, cmd: &Command, now: Millis);
    /// The daemon took over a session found in the snapshot.
    fn adopted(&mut self, _found: &Found, _now: Millis) {}
    /// The daemon finished rebuilding its sessions from the snapshot.
    fn resynced(&mut self, _now: Millis) {}
    /// Time has come to `now` (at or after [`Driver::poll_timeout`]).
    fn timeout(&mut self, now: Millis);
    /// When [`Driver::timeout`] must be called next.
    fn poll_timeout(&self) -> Option<Millis>;
    /// The next bytes to write to the PBX.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// The next thing that happened.
    fn poll_event(&mut self) -> Option<DriverEvent>;
    /// handoffd is stopping: queue the protocol's goodbye (ESL `exit`). True when one was
    /// queued and its answer (the PBX's disconnect notice, then a [`DriverEvent::Down`]) is worth
    /// reading before the socket is closed.
    fn goodbye(&mut self, _now: Millis) -> bool {
        false
    }
}

/// Reads the sessions still running in the PBX from its channels: every channel in a
/// conference named `<prefix><session>`, the far party recognised by its `<session>-far`
/// uniqueid ([`handoff_vocab::FarUniqueid`]), client legs' devices and paths from the registry.
pub fn found_sessions(channels: &[PbxChannel], sessions: &Sessions, prefix: &str) -> Vec<Found> {
    let mut by_bridge: BTreeMap<String, Found> = BTreeMap::new();
    for ch in channels {
        let Some(bridge) = ch.conference.as_deref() else { continue };
        let Some(sid) = bridge.strip_prefix(prefix).filter(|s| !s.is_empty()) else { continue };
        let found = by_bridge.entry(bridge.to_string()).or_insert_with(|| Found {
            session: SessionId(sid.to_string()),
            bridge: bridge.to_string(),
            device: String::new(),
            far: None,
            legs: Vec::new(),
            far_number: String::new(),
        });
        if handoff_vocab::is_far_channel_of(&ch.uniqueid, sid) {
            found.far = Some(ch.uniqueid.clone());
            continue;
        }
        if let Some((device, path)) = sessions.device_of_channel(&ch.endpoint, &ch.caller) {
            found.device = device.id.clone();
            found.legs.push((ch.uniqueid.clone(), ch.channel.clone(), path));
        }
    }
    by_bridge.into_values().filter(|f| !f.device.is_empty() || f.far.is_some()).collect()
}

/// The Q.850 cause codes handoffd sends, with FreeSWITCH's names for them. FreeSWITCH has no
/// name for 26 (NON_SELECTED_USER_CLEARING): see [`crate::hangup_cause::freeswitch_kill_cause`].
pub const CAUSES: &[(u32, &str)] = &[
    (1, "UNALLOCATED_NUMBER"),
    (3, "NO_ROUTE_DESTINATION"),
    (16, "NORMAL_CLEARING"),
    (17, "USER_BUSY"),
    (18, "NO_USER_RESPONSE"),
    (19, "NO_ANSWER"),
    (20, "SUBSCRIBER_ABSENT"),
    (21, "CALL_REJECTED"),
    (27, "DESTINATION_OUT_OF_ORDER"),
    (28, "INVALID_NUMBER_FORMAT"),
    (31, "NORMAL_UNSPECIFIED"),
    (34, "NORMAL_CIRCUIT_CONGESTION"),
    (38, "NETWORK_OUT_OF_ORDER"),
    (41, "NORMAL_TEMPORARY_FAILURE"),
    (42, "SWITCH_CONGESTION"),
    (58, "BEARERCAPABILITY_NOTAVAIL"),
    (102, "RECOVERY_ON_TIMER_EXPIRE"),
];

/// FreeSWITCH causes outside Q.850 and the Q.850 code FreeSWITCH reports for them (as seen in
/// `variable_hangup_cause_q850` of the recordings).
const CAUSE_ALIASES: &[(&str, u32)] = &[("ORIGINATOR_CANCEL", 16), ("MANAGER_REQUEST", 16)];

/// A cause's name (`NORMAL_CLEARING` for codes not in [`CAUSES`]).
pub fn cause_name(code: u32) -> &'static str {
    CAUSES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n).unwrap_or("NORMAL_CLEARING")
}

/// A cause name's Q.850 code (0 when unknown).
pub fn cause_code(name: &str) -> u32 {
    CAUSES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c)
        .or_else(|| CAUSE_ALIASES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Device, Path, Rules};

    fn ch(uniqueid: &str, channel: &str, conference: Option<&str>, endpoint: &str, caller: &str) -> PbxChannel {
        PbxChannel {
            uniqueid: uniqueid.into(),
            channel: channel.into(),
            conference: conference.map(str::to_string),
            endpoint: endpoint.into(),
            caller: caller.into(),
        }
    }

    #[test]
    fn running_sessions_are_read_back_from_the_channel_list() {
        let dev = Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            endpoint: Some("alice-app".into()),
            number: Some("+15550001".into()),
            caller_id: None,
        };
        let core = Sessions::new(Rules::default(), vec![dev], "n");
        let list = vec![
            ch("1.1", "PJSIP/alice-app-00000000", Some("handoff-ab-1"), "alice-app", "alice-app"),
            ch("ab-1-far", "PJSIP/far-00000001", Some("handoff-ab-1"), "far", "+15550001"),
            ch("1.3", "PJSIP/carrier-00000002", Some("handoff-ab-1"), "carrier", "+15550001"),
            ch("2.1", "PJSIP/bob-00000003", None, "bob", "200"),
            ch("3.1", "PJSIP/x-00000004", Some("sales"), "x", "300"),
            ch("4.1", "PJSIP/mallory-00000005", Some("handoff-zz-9"), "mallory", "+15559999"),
        ];
        let found = found_sessions(&list, &core, "handoff-");
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(
            (f.session.0.as_str(), f.bridge.as_str(), f.device.as_str()),
            ("ab-1", "handoff-ab-1", "alice-phone")
        );
        assert_eq!(f.far.as_deref(), Some("ab-1-far"));
        assert_eq!(
            f.legs.iter().map(|(u, _, p)| (u.as_str(), *p)).collect::<Vec<_>>(),
            vec![("1.1", Path::Data), ("1.3", Path::Carrier)]
        );
    }

    #[test]
    fn causes_map_both_ways() {
        assert_eq!(cause_name(16), "NORMAL_CLEARING");
        assert_eq!(cause_name(26), "NORMAL_CLEARING", "FreeSWITCH has no name for 26");
        assert_eq!(cause_name(999), "NORMAL_CLEARING");
        assert_eq!(cause_code("user_busy"), 17);
        assert_eq!(cause_code("ORIGINATOR_CANCEL"), 16);
        assert_eq!(cause_code("NO_SUCH_THING"), 0);
    }
}
