//! The records the store keeps: plain serde data, no I/O. Each is written inside a versioned
//! envelope (`{"v":1,"r":{..}}`, see [`super`]) so that a later handoff can read and migrate it.

// Clock, tokio and sockets are allowed here: records are stamped with the wall clock when written: store layer (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, on the wall clock: what the store keeps outlives a
/// restart, so it cannot be the daemon's monotonic clock. Display is RFC 3339 in UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMs(pub u64);

impl UnixMs {
    /// The wall clock now; only binaries call this, the cores take `now` as an input.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
    /// `ms` milliseconds later (saturating).
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn ms_since(self, earlier: UnixMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A `--since` that is neither a duration nor a UTC time ([`UnixMs::parse_since`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a duration (90s, 15m, 2h, 7d) nor a UTC time (2026-12-03T08:00:00Z)")]
pub struct BadSince(pub String);

impl UnixMs {
    /// What an operator writes after `--since`, at `now`: a duration back from now (`90s`,
    /// `15m`, `2h`, `7d`) or a UTC time as the audit log prints it (`2026-12-03T08:00:00Z`,
    /// milliseconds optional). The error names what was expected.
    pub fn parse_since(text: &str, now: UnixMs) -> Result<UnixMs, BadSince> {
        let bad = || BadSince(text.to_string());
        let t = text.trim();
        if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
            if let Ok(n) = t[..t.len() - 1].parse::<u64>() {
                let ms = match unit {
                    's' => 1_000,
                    'm' => 60_000,
                    'h' => 3_600_000,
                    _ => 86_400_000,
                };
                return Ok(UnixMs(now.0.saturating_sub(n.saturating_mul(ms))));
            }
        }
        // YYYY-MM-DDTHH:MM:SS[.mmm]Z
        let t = t.strip_suffix('Z').ok_or_else(bad)?;
        let (date, time) = t.split_once('T').ok_or_else(bad)?;
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let d: Vec<&str> = date.split('-').collect();
        let (secs, ms) = match time.split_once('.') {
            Some((s, m)) if m.len() == 3 => (s, num(m)?),
            Some(_) => return Err(bad()),
            None => (time, 0),
        };
        let h: Vec<&str> = secs.split(':').collect();
        if d.len() != 3 || h.len() != 3 {
            return Err(bad());
        }
        let (year, month, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
        let (hh, mm, ss) = (num(h[0])?, num(h[1])?, num(h[2])?);
        if !(1970..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hh > 23
            || mm > 59
            || ss > 60
        {
            return Err(bad());
        }
        // Howard Hinnant's days_from_civil (the inverse of Display's civil_from_days).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let total = ((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000 + ms).max(0);
        Ok(UnixMs(total as u64))
    }
}

impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
        let z = days as i64 + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(f, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// A user: the person whose devices a call may move between.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub created: UnixMs,
}

/// A registered device of a user, and how each path identifies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub user: String,
    /// A human name ("Alice's iPhone").
    pub name: String,
    /// The PJSIP endpoint/AOR of the device's app (its data path).
    pub data_endpoint: Option<String>,
    /// The device's E.164 number (`+4930...`): the caller ID of its carrier leg.
    pub carrier_number: Option<String>,
}

/// A user's PIN or passphrase hash: an Argon2id PHC string (`$argon2id$v=19$...`), keyed with
/// the server's pepper. Not a secret by itself, but kept out of Debug output all the same.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialHash(pub String);

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialHash(***)")
    }
}

/// Which network a client leg comes over (the store's copy of [`crate::session::Path`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegPath {
    Data,
    Carrier,
}

impl From<crate::session::Path> for LegPath {
    fn from(p: crate::session::Path) -> Self {
        match p {
            crate::session::Path::Data => Self::Data,
            crate::session::Path::Carrier => Self::Carrier,
        }
    }
}

impl From<LegPath> for crate::session::Path {
    fn from(p: LegPath) -> Self {
        match p {
            LegPath::Data => Self::Data,
            LegPath::Carrier => Self::Carrier,
        }
    }
}

/// Where a session stands, as far as moves care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The far call is ringing.
    AwaitingFarAnswer,
    /// The far party answered; the conversation runs.
    Connected,
    /// Every client leg is gone; the far party is held.
    Grace,
    /// Hangups were sent.
    Ending,
    /// Over.
    Ended,
}

impl SessionState {
    /// A session that can still be moved: the far party is on the line.
    pub fn is_movable(self) -> bool {
        matches!(self, Self::Connected | Self::Grace)
    }
    /// The session is over or going.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Ending | Self::Ended)
    }
}

/// What the store remembers of a running session, so that a move and a restarted handoffd
/// can find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub id: String,
    pub user: String,
    /// The device the session is on now.
    pub device: String,
    /// The far party's channel uniqueid, if any.
    pub far: Option<String>,
    /// The conference bridge.
    pub bridge: String,
    /// Client legs: (uniqueid, path).
    pub legs: Vec<(String, LegPath)>,
    pub state: SessionState,
    pub updated: UnixMs,
    /// The number the far party was called on.
    #[serde(default)]
    pub far_number: String,
    /// Devices barred from the session (the call moved away from them), and until when.
    #[serde(default)]
    pub barred: Vec<(String, UnixMs)>,
    /// The PBX node the session runs on (`cluster.node`); empty on a single box.
    #[serde(default)]
    pub node: String,
}

/// The SHA-256 of a ticket: how the store knows a ticket without holding it. Debug and
/// Display show only the short id (its first 8 hex digits), the form audit records use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketHash(pub [u8; 32]);

impl TicketHash {
    /// The first 8 hex digits: enough to tell tickets apart in logs, useless to redeem one.
    pub fn short_id(&self) -> String {
        hex(&self.0[..4])
    }
    /// All 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = unhex(s)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for TicketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketHash({})", self.short_id())
    }
}

impl fmt::Display for TicketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short_id())
    }
}

impl Serialize for TicketHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TicketHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("ticket hash: expected 64 hex digits"))
    }
}

/// A ticket as the store keeps it: by hash, with what it is good for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub hash: TicketHash,
    pub user: String,
    pub session: String,
    /// The device the session was on when the ticket was issued.
    pub from_device: String,
    /// The only device that may present it.
    pub to_device: String,
    pub issued: UnixMs,
    /// It may be presented strictly before this instant.
    pub expires: UnixMs,
    /// When it was presented (it is spent from then on, whatever the outcome).
    pub presented: Option<UnixMs>,
}

/// A device barred from a session until a given instant (the device a call moved away from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub session: String,
    pub device: String,
    pub until: UnixMs,
}

/// A user's recent wrong PINs and lockout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// When the recent failures happened (within the policy's window).
    pub recent: Vec<UnixMs>,
    /// Locked out until this instant, if a lockout was set.
    pub locked_until: Option<UnixMs>,
}

impl Failures {
    /// The end of the lockout in force at `now`, if any.
    pub fn locked_at(&self, now: UnixMs) -> Option<UnixMs> {
        self.locked_until.filter(|until| *until > now)
    }
}

/// What an audit record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    UserAdd,
    DeviceAdd,
    DeviceRemove,
    CredentialSet,
    /// A PIN or passphrase was checked.
    CredentialCheck,
    /// A user was locked out after failed checks.
    Lockout,
    /// An operator lifted a lockout.
    Unlock,
    /// A device asked for a session to move to it.
    MoveRequest,
    /// A device presented a ticket.
    TicketRedeem,
    /// A device tried to rejoin a session.
    Rejoin,
    PepperInit,
    /// A session ended (with why), or was closed because its channels were gone.
    SessionEnd,
}

impl AuditAction {
    /// The actions that make up a move (what `handoffctl moves` shows).
    pub fn is_move(self) -> bool {
        matches!(self, Self::MoveRequest | Self::TicketRedeem | Self::Rejoin)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserAdd => "user_add",
            Self::DeviceAdd => "device_add",
            Self::DeviceRemove => "device_remove",
            Self::CredentialSet => "credential_set",
            Self::CredentialCheck => "credential_check",
            Self::Lockout => "lockout",
            Self::Unlock => "unlock",
            Self::MoveRequest => "move_request",
            Self::TicketRedeem => "ticket_redeem",
            Self::Rejoin => "rejoin",
            Self::PepperInit => "pepper_init",
            Self::SessionEnd => "session_end",
        }
    }
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Granted,
    Refused,
    /// An administrative change was made.
    Done,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Refused => "refused",
            Self::Done => "done",
        }
    }
}

/// One line of the audit log. Never holds a secret: tickets appear only by short id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: UnixMs,
    /// Who acted: `device:<id>`, `handoffd`, `handoffctl:<login>`.
    pub actor: String,
    pub action: AuditAction,
    pub user: Option<String>,
    pub device: Option<String>,
    pub session: Option<String>,
    /// The ticket's short id ([`TicketHash::short_id`]).
    pub ticket: Option<String>,
    pub outcome: Outcome,
    /// Why, in one line (the refusal's Display).
    pub reason: Option<String>,
}

impl AuditRecord {
    /// A record with no subject yet; add them with the builder methods.
    pub fn new(at: UnixMs, actor: impl Into<String>, action: AuditAction, outcome: Outcome) -> Self {
        Self {
            at,
            actor: actor.into(),
            action,
            user: None,
            device: None,
            session: None,
            ticket: None,
            outcome,
            reason: None,
        }
    }
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }
    pub fn ticket(mut self, ticket: &TicketHash) -> Self {
        self.ticket = Some(ticket.short_id());
        self
    }
    pub fn reason(mut self, reason: impl fmt::Display) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
}

impl fmt::Display for AuditRecord {
    /// One line: `<time> <actor> <action> <outcome> user=.. device=.. session=.. ticket=.. reason=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.at, self.actor, self.action.as_str(), self.outcome.as_str())?;
        for (k, v) in
            [("user", &self.user), ("device", &self.device), ("session", &self.session), ("ticket", &self.ticket)]
        {
            if let Some(v) = v {
                write!(f, " {k}={v}")?;
            }
        }
        if let Some(r) = &self.reason {
            write!(f, " reason={r:?}")?;
        }
        Ok(())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_takes_a_duration_or_the_time_the_log_prints() {
        let now = UnixMs(1_764_750_000_000);
        assert_eq!(UnixMs::parse_since("90s", now), Ok(UnixMs(now.0 - 90_000)));
        assert_eq!(UnixMs::parse_since("2h", now), Ok(UnixMs(now.0 - 7_200_000)));
        assert_eq!(UnixMs::parse_since("7d", now), Ok(UnixMs(now.0 - 7 * 86_400_000)));
        // round trip with Display
        for t in [UnixMs(0), UnixMs(951_782_400_123), now, UnixMs(4_102_444_799_999)] {
            assert_eq!(UnixMs::parse_since(&t.to_string(), now), Ok(t), "{t}");
        }
        assert_eq!(UnixMs::parse_since("2026-12-03T08:00:00Z", now), Ok(UnixMs(1_796_284_800_000)));
        for bad in ["", "h", "2x", "yesterday", "2026-12-03", "2026-13-03T08:00:00Z", "2026-12-03T08:00:00", "-5m"] {
            let e = UnixMs::parse_since(bad, now).unwrap_err();
            assert!(e.to_string().contains("neither a duration"), "{bad}: {e}");
        }
    }

    use super::*;

    #[test]
    fn unix_ms_displays_as_rfc3339() {
        assert_eq!(UnixMs(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(UnixMs(951_782_400_123).to_string(), "2000-02-29T00:00:00.123Z");
        assert_eq!(UnixMs(1_774_051_199_999).to_string(), "2026-03-20T23:59:59.999Z");
    }

    #[test]
    fn ticket_hash_round_trips_and_shows_only_its_short_id() {
        let h = TicketHash([0xab; 32]);
        assert_eq!(TicketHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(format!("{h:?}"), "TicketHash(abababab)");
        assert_eq!(TicketHash::from_hex("zz"), None);
        assert_eq!(TicketHash::from_hex("abc"), None);
    }

    #[test]
    fn audit_record_is_one_line() {
        let r = AuditRecord::new(UnixMs(0), "device:b", AuditAction::MoveRequest, Outcome::Refused)
            .user("alice")
            .reason("wrong PIN\nor passphrase");
        let line = r.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("move_request refused user=alice"), "{line}");
    }
}
