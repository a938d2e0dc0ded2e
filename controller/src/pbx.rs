//! The boundary between handoffd and the PBX underneath: one [`Driver`] interface, two
//! implementations ([`crate::asterisk::AsteriskDriver`] over AMI,
//! [`crate::freeswitch::FreeSwitchDriver`] over the event socket). The session machine, the
//! device registry and the move flow never learn which PBX they drive.
//!
//! A driver is sans-I/O: the daemon owns the socket and the clock, hands the driver the bytes
//! it read and the time, and writes the bytes the driver wants sent.
//!
//! What passes between them is plain data, both ways (str0m's `Input`/`Output` style):
//!
//! ```text
//!   daemon ──handle(DriverInput)──▶ Driver ──poll_transmit──▶ bytes to the PBX
//!          Connected, Received(bytes), Closed, Timeout, Command, Adopted, Resynced
//!   daemon ◀──── poll_event ─────── Driver: Up(LinkUp), Snapshot, Input, Failover, Alignment, Down
//! ```
//!
//! Nothing here is one PBX's: the drivers' own vocabulary (FreeSWITCH's cause names, AMI's
//! headers) stays in their files; which PBX a driver drives is the [`Pbx`] value it reports.
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

/// Which PBX a driver drives: the only PBX-specific data the daemon sees (for its log lines,
/// errors and the `pbx` label of `handoff_pbx_connects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbx {
    Asterisk,
    FreeSwitch,
}

impl Pbx {
    /// The PBX's name for the log (`Asterisk`, `FreeSWITCH`).
    pub fn name(self) -> &'static str {
        match self {
            Pbx::Asterisk => "Asterisk",
            Pbx::FreeSwitch => "FreeSWITCH",
        }
    }

    /// The metric label (`asterisk`, `freeswitch`).
    pub fn label(self) -> &'static str {
        match self {
            Pbx::Asterisk => "asterisk",
            Pbx::FreeSwitch => "freeswitch",
        }
    }

    /// What the connection is called in errors (`Asterisk's AMI`, `FreeSWITCH's event socket`).
    pub fn link(self) -> &'static str {
        match self {
            Pbx::Asterisk => "Asterisk's AMI",
            Pbx::FreeSwitch => "FreeSWITCH's event socket",
        }
    }

    /// What to check when the PBX cannot be reached.
    pub fn unreachable_hint(self) -> &'static str {
        match self {
            Pbx::Asterisk => "is Asterisk running, and manager.conf enabled = yes with this port?",
            Pbx::FreeSwitch => {
                "is FreeSWITCH running with mod_event_socket listening on this address (event_socket.conf.xml)?"
            }
        }
    }
}

impl std::fmt::Display for Pbx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A link that is up: the PBX, where, and the account it logged in as (if the protocol has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUp {
    pub pbx: Pbx,
    pub address: String,
    pub account: Option<String>,
}

impl std::fmt::Display for LinkUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pbx {
            Pbx::Asterisk => write!(f, "logged in to AMI at {}", self.address)?,
            Pbx::FreeSwitch => write!(f, "authenticated to FreeSWITCH's event socket at {}", self.address)?,
        }
        match &self.account {
            Some(account) => write!(f, " as {account}"),
            None => Ok(()),
        }
    }
}

/// What the daemon tells a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverInput<'a> {
    /// A new connection is open; any earlier connection's state is dropped.
    Connected,
    /// Bytes the PBX sent.
    Received(&'a [u8]),
    /// The PBX closed the connection.
    Closed,
    /// Time has come (at or after [`Driver::poll_timeout`]).
    Timeout,
    /// Carry out a session command.
    Command(&'a Command),
    /// The daemon took over a session found in the snapshot.
    Adopted(&'a Found),
    /// The daemon finished rebuilding its sessions from the snapshot.
    Resynced,
}

/// What a driver tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// Logged in.
    Up(LinkUp),
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
    /// Which PBX it drives.
    fn pbx(&self) -> Pbx;
    /// Something happened: bytes, a closed socket, time, a command, a resync step.
    fn handle(&mut self, input: DriverInput<'_>, now: Millis);
    /// When [`DriverInput::Timeout`] must be handled next.
    fn poll_timeout(&self) -> Option<Millis>;
    /// The next bytes to write to the PBX.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// The next thing that happened.
    fn poll_event(&mut self) -> Option<DriverEvent>;
    /// handoffd is stopping: queue the protocol's goodbye, if it has one (ESL `exit`). True when
    /// one was queued and its answer (the PBX's disconnect notice, then a [`DriverEvent::Down`])
    /// is worth reading before the socket is closed.
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
}
