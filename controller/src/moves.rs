//! Moving a live call to another of the user's devices (sans-I/O).
//!
//! A user on a call on device A authenticates on device B and asks for the call. The
//! decisions here take what the store knows (the "facts"), the request and `now`, and return
//! an outcome plus the [`Write`]s to record — audit records included — which the caller
//! applies with [`Store::apply`](crate::store::Store::apply) (one atomic, flushed batch)
//! *before* acting on the outcome. They read no clock, no random source, no store.
//!
//! ```text
//!   B: request_move(PIN ok) ──▶ Granted{ticket, 30 s} ──▶ B: redeem(ticket) ──▶ Restore
//!         │ refused                                          │ refused          │
//!         ▼                                                  ▼                  ▼
//!   Refused(reason)                                   Refused(reason)   A barred from the
//!                                                                       session for 300 s:
//!                                                                       admit_rejoin(A) and
//!                                                                       request_move(to A)
//!                                                                       → Refused(Barred)
//! ```
//!
//! The daemon's part, per request (the [`read`] helpers do the store reads):
//! 1. check the PIN with [`crate::credentials::Verifier`] (off the executor, rate-limited);
//! 2. `facts = MoveFacts::read(&store, &req, now)?`; `d = request_move(&rules, &req, &facts,
//!    Ticket::generate()?, now)`; `store.apply(&d.writes)?`; then hand B the ticket;
//! 3. on presentation: `facts = RedeemFacts::take(&store, &p, now)?` (spends the ticket
//!    atomically); `d = redeem(&rules, &p, &facts, now)`; `store.apply(&d.writes)?`; then move
//!    the call and update the session snapshot (`device = to_device`);
//! 4. on every leg of a device joining a session: [`admit_rejoin`].
//!
//! Files: [`ticket`] (the 128-bit secret, its hash, constant-time match), [`lockout`] (the
//! failed-PIN policy), [`read`] (fact reads from the store: the only part that does I/O).
//!
//! # Tickets by hash
//! The store keys tickets by SHA-256 of the ticket. Looking a presented ticket up by its hash
//! walks the B-tree with ordinary (variable-time) comparisons, but those only reveal how a
//! *hash* compares with stored hashes, and a hash gives nothing towards a ticket that produces
//! it, so timing cannot be used to guess a ticket byte by byte. The record found is then
//! compared with the presented ticket's hash in constant time ([`Ticket::matches`], `subtle`),
//! which also guards against the store handing back the wrong record.
//!
//! # A ticket is spent by its first presentation
//! Whatever the decision — right device or not, in time or not — presenting a ticket spends it
//! ([`Store::take_ticket`](crate::store::Store::take_ticket) is atomic): a ticket seen by the
//! wrong device is taken to have leaked, and B asks again.

pub mod lockout;
pub mod read;
pub mod ticket;

pub use lockout::LockoutPolicy;
pub use read::{MoveFacts, RedeemFacts};
pub use ticket::{Ticket, TicketError};

use crate::store::{AuditAction, AuditRecord, Bar, Device, Outcome, SessionSnapshot, TicketRecord, UnixMs, Write};
use std::fmt;

/// How moves are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveRules {
    /// How long a ticket may be presented after it is issued.
    pub ticket_ttl_ms: u64,
    /// How long the device a call moved away from is barred from the session.
    pub bar_ms: u64,
}

impl Default for MoveRules {
    /// Tickets live 30 s; the old device is barred for 300 s.
    fn default() -> Self {
        Self { ticket_ttl_ms: 30_000, bar_ms: 300_000 }
    }
}

/// Why a move, a ticket or a rejoin was refused. Display is one line, fit for a SIP
/// announcement log and a 403 API body; [`Reason::code`] is a stable machine name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The user is locked out after too many wrong PINs.
    LockedOut { until: UnixMs },
    /// The PIN or passphrase was wrong (or the user has none).
    WrongCredential,
    /// The device is not registered.
    UnknownDevice { device: String },
    /// The device is registered to another user.
    NotUsersDevice { device: String },
    /// The call is already on the requesting device.
    SameDevice { device: String },
    /// There is no such session.
    UnknownSession { session: String },
    /// The session is another user's.
    NotUsersSession { session: String },
    /// The session is not on the device named as its current one.
    NotOnDevice { session: String, device: String },
    /// The far party has not answered yet.
    NotConnected { session: String },
    /// The session is ending or over.
    SessionEnded { session: String },
    /// The device is barred from the session (the call moved away from it).
    Barred { session: String, device: String, until: UnixMs },
    /// No ticket with that value was issued (or it was purged).
    UnknownTicket,
    /// The ticket was presented before.
    TicketReplayed,
    /// The ticket's time ran out.
    TicketExpired,
    /// The ticket was issued to another device.
    TicketForAnotherDevice,
    /// The ticket was issued for another session.
    TicketForAnotherSession,
    /// The user has no call on another device to move.
    NoCall { user: String },
}

impl Reason {
    /// A stable snake_case name for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::LockedOut { .. } => "locked_out",
            Self::WrongCredential => "wrong_credential",
            Self::UnknownDevice { .. } => "unknown_device",
            Self::NotUsersDevice { .. } => "not_users_device",
            Self::SameDevice { .. } => "same_device",
            Self::UnknownSession { .. } => "unknown_session",
            Self::NotUsersSession { .. } => "not_users_session",
            Self::NotOnDevice { .. } => "not_on_device",
            Self::NotConnected { .. } => "not_connected",
            Self::SessionEnded { .. } => "session_ended",
            Self::Barred { .. } => "barred",
            Self::UnknownTicket => "unknown_ticket",
            Self::TicketReplayed => "ticket_replayed",
            Self::TicketExpired => "ticket_expired",
            Self::TicketForAnotherDevice => "ticket_for_another_device",
            Self::TicketForAnotherSession => "ticket_for_another_session",
            Self::NoCall { .. } => "no_call",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LockedOut { until } => write!(f, "locked out after too many wrong PINs until {until}"),
            Self::WrongCredential => f.write_str("wrong PIN or passphrase"),
            Self::UnknownDevice { device } => write!(f, "device {device} is not registered"),
            Self::NotUsersDevice { device } => write!(f, "device {device} belongs to another user"),
            Self::SameDevice { device } => write!(f, "the call is already on device {device}"),
            Self::UnknownSession { session } => write!(f, "no session {session}"),
            Self::NotUsersSession { session } => write!(f, "session {session} belongs to another user"),
            Self::NotOnDevice { session, device } => write!(f, "session {session} is not on device {device}"),
            Self::NotConnected { session } => write!(f, "session {session} is not connected yet"),
            Self::SessionEnded { session } => write!(f, "session {session} has ended"),
            Self::Barred { session, device, until } => {
                write!(f, "device {device} is barred from session {session} until {until}")
            }
            Self::UnknownTicket => f.write_str("unknown ticket"),
            Self::TicketReplayed => f.write_str("ticket already used"),
            Self::TicketExpired => f.write_str("ticket expired"),
            Self::TicketForAnotherDevice => f.write_str("ticket was issued to another device"),
            Self::TicketForAnotherSession => f.write_str("ticket was issued for another session"),
            Self::NoCall { user } => write!(f, "user {user} has no call on another device to move"),
        }
    }
}

/// A decision: its outcome, and what to record (audit records included) before acting on it.
#[derive(Debug)]
pub struct Decision<T> {
    pub outcome: Result<T, Reason>,
    /// Apply with `Store::apply` (atomic, flushed) before acting on `outcome`.
    pub writes: Vec<Write>,
}

impl<T> Decision<T> {
    /// The audit records among the writes.
    pub fn audit_records(&self) -> impl Iterator<Item = &AuditRecord> {
        self.writes.iter().filter_map(|w| match w {
            Write::Audit(r) => Some(r),
            _ => None,
        })
    }
}

/// Device B asks for the session running on device A.
#[derive(Clone, Debug)]
pub struct MoveRequest<'a> {
    /// Who asks, for the audit log (`device:B`, `api`, `dtmf`).
    pub actor: &'a str,
    pub user: &'a str,
    /// A: where the session is now.
    pub from_device: &'a str,
    /// B: where it should go (the requesting device).
    pub to_device: &'a str,
    pub session: &'a str,
    /// The PIN or passphrase checked out ([`crate::credentials::Verdict::Accepted`]).
    pub credential_ok: bool,
}

/// A granted move: the ticket to hand to the target device, once.
#[derive(Clone, Debug)]
pub struct Granted {
    pub ticket: Ticket,
    pub expires: UnixMs,
}

/// Decides a move request. `fresh` is the ticket to issue if it is granted
/// ([`Ticket::generate`]). Checks, in order: lockout, credential, both devices registered to
/// the user and distinct, the session exists, is the user's, is on A and is connected, and B
/// is not barred from it.
pub fn request_move(
    rules: &MoveRules,
    req: &MoveRequest<'_>,
    facts: &MoveFacts,
    fresh: Ticket,
    now: UnixMs,
) -> Decision<Granted> {
    let audit = AuditRecord::new(now, req.actor, AuditAction::MoveRequest, Outcome::Refused)
        .user(req.user)
        .device(req.to_device)
        .session(req.session);
    match check_request(req, facts, now) {
        Err(reason) => refused(audit.reason(&reason), reason),
        Ok(()) => {
            let hash = fresh.hash();
            let expires = now.plus_ms(rules.ticket_ttl_ms);
            let record = TicketRecord {
                hash,
                user: req.user.into(),
                session: req.session.into(),
                from_device: req.from_device.into(),
                to_device: req.to_device.into(),
                issued: now,
                expires,
                presented: None,
            };
            let audit = AuditRecord { outcome: Outcome::Granted, ..audit }
                .ticket(&hash)
                .reason(format_args!("ticket for {} from {} until {expires}", req.to_device, req.from_device));
            Decision {
                outcome: Ok(Granted { ticket: fresh, expires }),
                writes: vec![Write::PutTicket(record), Write::Audit(audit)],
            }
        }
    }
}

fn check_request(req: &MoveRequest<'_>, facts: &MoveFacts, now: UnixMs) -> Result<(), Reason> {
    if let Some(until) = facts.locked_until.filter(|u| *u > now) {
        return Err(Reason::LockedOut { until });
    }
    if !req.credential_ok {
        return Err(Reason::WrongCredential);
    }
    check_device(req.user, req.to_device, facts.to.as_ref())?;
    check_device(req.user, req.from_device, facts.from.as_ref())?;
    if req.from_device == req.to_device {
        return Err(Reason::SameDevice { device: req.to_device.into() });
    }
    check_session(req.user, req.session, req.from_device, facts.session.as_ref())?;
    check_bar(req.session, req.to_device, facts.to_barred_until, now)
}

fn check_device(user: &str, id: &str, device: Option<&Device>) -> Result<(), Reason> {
    match device {
        Some(d) if d.id == id && d.user == user => Ok(()),
        Some(d) if d.id == id => Err(Reason::NotUsersDevice { device: id.into() }),
        _ => Err(Reason::UnknownDevice { device: id.into() }),
    }
}

fn check_session(user: &str, id: &str, on_device: &str, session: Option<&SessionSnapshot>) -> Result<(), Reason> {
    let session = match session {
        Some(s) if s.id == id => s,
        _ => return Err(Reason::UnknownSession { session: id.into() }),
    };
    if session.user != user {
        return Err(Reason::NotUsersSession { session: id.into() });
    }
    if session.state.is_ended() {
        return Err(Reason::SessionEnded { session: id.into() });
    }
    if session.device != on_device {
        return Err(Reason::NotOnDevice { session: id.into(), device: on_device.into() });
    }
    if !session.state.is_movable() {
        return Err(Reason::NotConnected { session: id.into() });
    }
    Ok(())
}

fn check_bar(session: &str, device: &str, until: Option<UnixMs>, now: UnixMs) -> Result<(), Reason> {
    match until.filter(|u| *u > now) {
        Some(until) => Err(Reason::Barred { session: session.into(), device: device.into(), until }),
        None => Ok(()),
    }
}

/// A request that found no call of the user to move (after the PIN was accepted).
pub fn no_call(req: &MoveRequest<'_>, now: UnixMs) -> Decision<Granted> {
    let reason = Reason::NoCall { user: req.user.into() };
    let audit = AuditRecord::new(now, req.actor, AuditAction::MoveRequest, Outcome::Refused)
        .user(req.user)
        .device(req.to_device)
        .reason(&reason);
    refused(audit, reason)
}

fn refused<T>(audit: AuditRecord, reason: Reason) -> Decision<T> {
    Decision { outcome: Err(reason), writes: vec![Write::Audit(audit)] }
}

/// A device presents a ticket.
#[derive(Clone, Debug)]
pub struct Presentation<'a> {
    /// Who presents, for the audit log.
    pub actor: &'a str,
    pub ticket: &'a Ticket,
    /// The presenting device.
    pub device: &'a str,
    /// The session the device expects, if it says.
    pub session_hint: Option<&'a str>,
}

/// A redeemed ticket: move `session` from `from_device` to `to_device`. The decision's writes
/// already bar `from_device` from the session until `from_barred_until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    pub session: String,
    pub user: String,
    pub from_device: String,
    pub to_device: String,
    pub from_barred_until: UnixMs,
}

/// Decides a ticket presentation. `facts.ticket` is the record as
/// [`Store::take_ticket`](crate::store::Store::take_ticket) returned it (before it was spent).
pub fn redeem(rules: &MoveRules, p: &Presentation<'_>, facts: &RedeemFacts, now: UnixMs) -> Decision<Restore> {
    let hash = p.ticket.hash();
    let mut audit =
        AuditRecord::new(now, p.actor, AuditAction::TicketRedeem, Outcome::Refused).device(p.device).ticket(&hash);
    if let Some(t) = &facts.ticket {
        audit = audit.user(&t.user).session(&t.session);
    }
    match check_redeem(p, facts, now) {
        Err(reason) => refused(audit.reason(&reason), reason),
        Ok(t) => {
            let until = now.plus_ms(rules.bar_ms);
            let restore = Restore {
                session: t.session.clone(),
                user: t.user.clone(),
                from_device: t.from_device.clone(),
                to_device: t.to_device.clone(),
                from_barred_until: until,
            };
            let audit = AuditRecord { outcome: Outcome::Granted, ..audit }.reason(format_args!(
                "session moves from {} to {}; {} barred until {until}",
                t.from_device, t.to_device, t.from_device
            ));
            let bar = Bar { session: t.session.clone(), device: t.from_device.clone(), until };
            Decision { outcome: Ok(restore), writes: vec![Write::PutBar(bar), Write::Audit(audit)] }
        }
    }
}

fn check_redeem<'f>(p: &Presentation<'_>, facts: &'f RedeemFacts, now: UnixMs) -> Result<&'f TicketRecord, Reason> {
    let t = match &facts.ticket {
        Some(t) if p.ticket.matches(&t.hash) => t,
        _ => return Err(Reason::UnknownTicket),
    };
    if t.presented.is_some() {
        return Err(Reason::TicketReplayed);
    }
    if now >= t.expires {
        return Err(Reason::TicketExpired);
    }
    if p.device != t.to_device {
        return Err(Reason::TicketForAnotherDevice);
    }
    if p.session_hint.is_some_and(|s| s != t.session) {
        return Err(Reason::TicketForAnotherSession);
    }
    if let Some(until) = facts.locked_until.filter(|u| *u > now) {
        return Err(Reason::LockedOut { until });
    }
    check_device(&t.user, p.device, facts.device.as_ref())?;
    check_session(&t.user, &t.session, &t.from_device, facts.session.as_ref())?;
    check_bar(&t.session, p.device, facts.barred_until, now)?;
    Ok(t)
}

/// A leg of `device` asks to join `session` (a rejoin, or pulling the call back).
#[derive(Clone, Debug)]
pub struct Rejoin<'a> {
    pub actor: &'a str,
    pub device: &'a str,
    pub session: &'a str,
}

/// Admits a device's leg to a session unless the device is barred from it. `barred_until` is
/// `Store::bar(session, device)`. Only a refusal is audited (joins are everyday traffic).
pub fn admit_rejoin(r: &Rejoin<'_>, barred_until: Option<UnixMs>, now: UnixMs) -> Decision<()> {
    match check_bar(r.session, r.device, barred_until, now) {
        Ok(()) => Decision { outcome: Ok(()), writes: Vec::new() },
        Err(reason) => {
            let audit = AuditRecord::new(now, r.actor, AuditAction::Rejoin, Outcome::Refused)
                .device(r.device)
                .session(r.session)
                .reason(&reason);
            refused(audit, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionState;

    fn device(id: &str, user: &str) -> Device {
        Device { id: id.into(), user: user.into(), name: id.into(), data_endpoint: None, carrier_number: None }
    }

    fn session(state: SessionState) -> SessionSnapshot {
        SessionSnapshot {
            id: "s1".into(),
            user: "alice".into(),
            device: "a".into(),
            far: Some("far-1".into()),
            bridge: "handoff-s1".into(),
            legs: vec![],
            state,
            updated: UnixMs(0),
            far_number: "2000".into(),
            barred: vec![],
            node: String::new(),
        }
    }

    fn facts() -> MoveFacts {
        MoveFacts {
            from: Some(device("a", "alice")),
            to: Some(device("b", "alice")),
            session: Some(session(SessionState::Connected)),
            to_barred_until: None,
            locked_until: None,
        }
    }

    fn req(credential_ok: bool) -> MoveRequest<'static> {
        MoveRequest { actor: "device:b", user: "alice", from_device: "a", to_device: "b", session: "s1", credential_ok }
    }

    const NOW: UnixMs = UnixMs(1_000_000);

    fn refusal(f: &MoveFacts, r: &MoveRequest<'_>) -> Reason {
        let d = request_move(&MoveRules::default(), r, f, Ticket::from_bytes([1; 16]), NOW);
        assert_eq!(d.writes.len(), 1, "a refusal writes only its audit record");
        let audit: Vec<_> = d.audit_records().cloned().collect();
        let reason = d.outcome.unwrap_err();
        assert_eq!(audit[0].outcome, Outcome::Refused);
        assert_eq!(audit[0].reason.as_deref(), Some(reason.to_string().as_str()));
        reason
    }

    #[test]
    fn grant_issues_a_ticket_bound_to_user_session_and_device() {
        let d = request_move(&MoveRules::default(), &req(true), &facts(), Ticket::from_bytes([7; 16]), NOW);
        let g = d.outcome.as_ref().unwrap();
        assert_eq!(g.expires, UnixMs(1_030_000));
        let Write::PutTicket(t) = &d.writes[0] else { panic!("{:?}", d.writes) };
        assert!(g.ticket.matches(&t.hash));
        assert_eq!((t.user.as_str(), t.session.as_str(), t.to_device.as_str()), ("alice", "s1", "b"));
        let audit: Vec<_> = d.audit_records().collect();
        assert_eq!(audit.len(), 1);
        let line = audit[0].to_string();
        assert!(!line.contains(&*g.ticket.expose()), "the audit holds no ticket: {line}");
        assert_eq!(audit[0].ticket.as_deref(), Some(t.hash.short_id().as_str()));
    }

    #[test]
    fn every_refusal_of_a_request() {
        let f = facts();
        assert_eq!(refusal(&f, &req(false)), Reason::WrongCredential);
        let locked = MoveFacts { locked_until: Some(UnixMs(2_000_000)), ..facts() };
        assert_eq!(refusal(&locked, &req(true)), Reason::LockedOut { until: UnixMs(2_000_000) });
        let ended_lock = MoveFacts { locked_until: Some(NOW), ..facts() };
        assert!(request_move(&MoveRules::default(), &req(true), &ended_lock, Ticket::from_bytes([1; 16]), NOW)
            .outcome
            .is_ok());
        let unknown = MoveFacts { to: None, ..facts() };
        assert_eq!(refusal(&unknown, &req(true)), Reason::UnknownDevice { device: "b".into() });
        let other = MoveFacts { to: Some(device("b", "mallory")), ..facts() };
        assert_eq!(refusal(&other, &req(true)), Reason::NotUsersDevice { device: "b".into() });
        let other_from = MoveFacts { from: Some(device("a", "mallory")), ..facts() };
        assert_eq!(refusal(&other_from, &req(true)), Reason::NotUsersDevice { device: "a".into() });
        let same = MoveRequest { to_device: "a", ..req(true) };
        let same_facts = MoveFacts { to: Some(device("a", "alice")), ..facts() };
        assert_eq!(refusal(&same_facts, &same), Reason::SameDevice { device: "a".into() });
        let none = MoveFacts { session: None, ..facts() };
        assert_eq!(refusal(&none, &req(true)), Reason::UnknownSession { session: "s1".into() });
        let theirs = MoveFacts {
            session: Some(SessionSnapshot { user: "mallory".into(), ..session(SessionState::Connected) }),
            ..facts()
        };
        assert_eq!(refusal(&theirs, &req(true)), Reason::NotUsersSession { session: "s1".into() });
        let elsewhere = MoveFacts {
            session: Some(SessionSnapshot { device: "c".into(), ..session(SessionState::Connected) }),
            ..facts()
        };
        assert_eq!(refusal(&elsewhere, &req(true)), Reason::NotOnDevice { session: "s1".into(), device: "a".into() });
        for (state, reason) in [
            (SessionState::AwaitingFarAnswer, Reason::NotConnected { session: "s1".into() }),
            (SessionState::Ending, Reason::SessionEnded { session: "s1".into() }),
            (SessionState::Ended, Reason::SessionEnded { session: "s1".into() }),
        ] {
            let f = MoveFacts { session: Some(session(state)), ..facts() };
            assert_eq!(refusal(&f, &req(true)), reason);
        }
        let grace = MoveFacts { session: Some(session(SessionState::Grace)), ..facts() };
        assert!(request_move(&MoveRules::default(), &req(true), &grace, Ticket::from_bytes([1; 16]), NOW)
            .outcome
            .is_ok());
        let barred = MoveFacts { to_barred_until: Some(UnixMs(1_000_001)), ..facts() };
        assert_eq!(
            refusal(&barred, &req(true)),
            Reason::Barred { session: "s1".into(), device: "b".into(), until: UnixMs(1_000_001) }
        );
    }

    fn issued(ticket: &Ticket) -> TicketRecord {
        TicketRecord {
            hash: ticket.hash(),
            user: "alice".into(),
            session: "s1".into(),
            from_device: "a".into(),
            to_device: "b".into(),
            issued: UnixMs(990_000),
            expires: UnixMs(1_020_000),
            presented: None,
        }
    }

    fn redeem_facts(ticket: &Ticket) -> RedeemFacts {
        RedeemFacts {
            ticket: Some(issued(ticket)),
            device: Some(device("b", "alice")),
            session: Some(session(SessionState::Connected)),
            barred_until: None,
            locked_until: None,
        }
    }

    fn present<'a>(t: &'a Ticket, device: &'a str, hint: Option<&'a str>) -> Presentation<'a> {
        Presentation { actor: "device:b", ticket: t, device, session_hint: hint }
    }

    #[test]
    fn redeem_restores_and_bars_the_old_device() {
        let t = Ticket::from_bytes([9; 16]);
        let d = redeem(&MoveRules::default(), &present(&t, "b", Some("s1")), &redeem_facts(&t), NOW);
        let r = d.outcome.as_ref().unwrap();
        assert_eq!((r.from_device.as_str(), r.to_device.as_str()), ("a", "b"));
        assert_eq!(r.from_barred_until, UnixMs(1_300_000));
        assert!(d.writes.contains(&Write::PutBar(Bar {
            session: "s1".into(),
            device: "a".into(),
            until: UnixMs(1_300_000)
        })));
        assert_eq!(d.audit_records().next().unwrap().outcome, Outcome::Granted);
    }

    #[test]
    fn every_refusal_of_a_ticket() {
        let t = Ticket::from_bytes([9; 16]);
        let other = Ticket::from_bytes([8; 16]);
        let rules = MoveRules::default();
        let check = |p: Presentation<'_>, f: RedeemFacts, now: UnixMs| {
            let d = redeem(&rules, &p, &f, now);
            assert_eq!(d.writes.len(), 1);
            d.outcome.unwrap_err()
        };
        assert_eq!(
            check(present(&t, "b", None), RedeemFacts { ticket: None, ..redeem_facts(&t) }, NOW),
            Reason::UnknownTicket
        );
        // A record that does not hash-match the presented ticket is not taken for it.
        assert_eq!(check(present(&other, "b", None), redeem_facts(&t), NOW), Reason::UnknownTicket);
        let spent =
            RedeemFacts { ticket: Some(TicketRecord { presented: Some(NOW), ..issued(&t) }), ..redeem_facts(&t) };
        assert_eq!(check(present(&t, "b", None), spent, NOW), Reason::TicketReplayed);
        assert_eq!(check(present(&t, "b", None), redeem_facts(&t), UnixMs(1_020_000)), Reason::TicketExpired);
        assert_eq!(check(present(&t, "c", None), redeem_facts(&t), NOW), Reason::TicketForAnotherDevice);
        assert_eq!(check(present(&t, "b", Some("s2")), redeem_facts(&t), NOW), Reason::TicketForAnotherSession);
        let gone = RedeemFacts { device: None, ..redeem_facts(&t) };
        assert_eq!(check(present(&t, "b", None), gone, NOW), Reason::UnknownDevice { device: "b".into() });
        let moved = RedeemFacts {
            session: Some(SessionSnapshot { device: "c".into(), ..session(SessionState::Connected) }),
            ..redeem_facts(&t)
        };
        assert_eq!(
            check(present(&t, "b", None), moved, NOW),
            Reason::NotOnDevice { session: "s1".into(), device: "a".into() }
        );
        let ended = RedeemFacts { session: Some(session(SessionState::Ended)), ..redeem_facts(&t) };
        assert_eq!(check(present(&t, "b", None), ended, NOW), Reason::SessionEnded { session: "s1".into() });
        let locked = RedeemFacts { locked_until: Some(UnixMs(2_000_000)), ..redeem_facts(&t) };
        assert_eq!(check(present(&t, "b", None), locked, NOW), Reason::LockedOut { until: UnixMs(2_000_000) });
    }

    #[test]
    fn a_barred_device_is_refused_until_the_bar_ends() {
        let r = Rejoin { actor: "device:a", device: "a", session: "s1" };
        let d = admit_rejoin(&r, Some(UnixMs(2_000)), UnixMs(1_999));
        assert_eq!(d.outcome, Err(Reason::Barred { session: "s1".into(), device: "a".into(), until: UnixMs(2_000) }));
        assert_eq!(d.audit_records().count(), 1);
        let d = admit_rejoin(&r, Some(UnixMs(2_000)), UnixMs(2_000));
        assert_eq!(d.outcome, Ok(()));
        assert!(d.writes.is_empty());
        assert_eq!(admit_rejoin(&r, None, UnixMs(0)).outcome, Ok(()));
    }

    #[test]
    fn reasons_are_one_line_with_stable_codes() {
        let all = [
            Reason::LockedOut { until: UnixMs(0) },
            Reason::WrongCredential,
            Reason::UnknownDevice { device: "d".into() },
            Reason::NotUsersDevice { device: "d".into() },
            Reason::SameDevice { device: "d".into() },
            Reason::UnknownSession { session: "s".into() },
            Reason::NotUsersSession { session: "s".into() },
            Reason::NotOnDevice { session: "s".into(), device: "d".into() },
            Reason::NotConnected { session: "s".into() },
            Reason::SessionEnded { session: "s".into() },
            Reason::Barred { session: "s".into(), device: "d".into(), until: UnixMs(0) },
            Reason::UnknownTicket,
            Reason::TicketReplayed,
            Reason::TicketExpired,
            Reason::TicketForAnotherDevice,
            Reason::TicketForAnotherSession,
        ];
        let mut codes = std::collections::HashSet::new();
        for r in &all {
            assert!(!r.to_string().contains('\n'));
            assert!(codes.insert(r.code()), "duplicate code {}", r.code());
        }
    }
}
