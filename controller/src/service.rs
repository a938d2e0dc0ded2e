//! The move service: the I/O around the move decisions of [`crate::moves`].
//!
//! Each operation reads the facts from the store, decides with the pure functions of
//! [`crate::moves`], applies the decision's writes (one atomic, flushed batch, audit records
//! included) and only then returns the outcome, so that whatever the caller does next (hand a
//! ticket out, move the call) is already on disk. Store work runs on tokio's blocking pool;
//! PIN checks go through the [`Verifier`] (capped, one per user at a time, lockout).
//!
//! | operation   | asked by                                   | returns            |
//! |-------------|--------------------------------------------|--------------------|
//! | [`request`](MoveService::request) | device B's app over the API, with the user's PIN | a ticket for B |
//! | [`redeem`](MoveService::redeem)   | device B calling in with the ticket (SIP header) | the [`Restore`] to carry out |
//! | [`pull`](MoveService::pull)       | device B dialling the feature code and the PIN   | the [`Restore`] (a ticket issued and spent at once) |

// Clock, tokio and sockets are allowed here: calls the store on the blocking pool: I/O layer (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::credentials::{Passcode, Verdict, Verifier};
use crate::moves::{
    redeem, request_move, Granted, MoveFacts, MoveRequest, MoveRules, Presentation, Reason, RedeemFacts, Restore,
    Ticket,
};
use crate::store::{SessionState, Store, UnixMs};
use std::fmt;

/// Why an operation did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A decision refused it (audited).
    Refused(Reason),
    /// Another PIN check for this user is running (audited; not counted as a failure).
    Busy,
    /// The store, the random source or the hashing failed: nothing was granted.
    Internal(String),
}

impl Refusal {
    /// A stable snake_case name for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.code(),
            Self::Busy => "busy",
            Self::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => r.fmt(f),
            Self::Busy => f.write_str("another PIN check for this user is running; try again"),
            Self::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

fn internal(e: impl fmt::Display) -> Refusal {
    Refusal::Internal(e.to_string())
}

/// A granted API request: the ticket and what it is for.
#[derive(Debug)]
pub struct Issued {
    pub granted: Granted,
    pub session: String,
    pub from_device: String,
}

/// Moves, with the store, the PIN verifier and the rules. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MoveService {
    pub store: Store,
    pub verifier: Verifier,
    pub rules: MoveRules,
}

/// The session of `user` a move to `to_device` would take: the one named, or else the user's
/// most recently updated live session on another device.
pub fn session_to_move(
    store: &Store,
    user: &str,
    to_device: &str,
    named: Option<&str>,
) -> Result<Option<(String, String)>, String> {
    if let Some(id) = named {
        return Ok(store.get_session(id).map_err(|e| e.to_string())?.map(|s| (s.id, s.device)));
    }
    let sessions = store.list_sessions().map_err(|e| e.to_string())?;
    Ok(sessions
        .into_iter()
        .filter(|s| s.user == user && s.device != to_device && !s.state.is_ended() && s.state != SessionState::Ended)
        .max_by_key(|s| s.updated)
        .map(|s| (s.id, s.device)))
}

impl MoveService {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, Refusal> + Send + 'static,
    ) -> Result<T, Refusal> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store)).await.map_err(internal)?
    }

    /// Checks the PIN; `Ok(true)` if it is right.
    async fn check_pin(&self, actor: &str, user: &str, pin: Passcode) -> Result<bool, Refusal> {
        match self.verifier.check(actor, user, pin, UnixMs::now()).await.map_err(internal)? {
            Verdict::Accepted => Ok(true),
            Verdict::Busy => Err(Refusal::Busy),
            // Wrong, locked out or no PIN: the decision refuses it (and says which).
            _ => Ok(false),
        }
    }

    /// Device `to_device` of `user` asks, with the user's PIN, for the session `session` (or
    /// the user's live call on another device): a ticket for `to_device` if every check passes.
    pub async fn request(
        &self,
        actor: &str,
        user: &str,
        to_device: &str,
        session: Option<&str>,
        pin: Passcode,
    ) -> Result<Issued, Refusal> {
        let credential_ok = self.check_pin(actor, user, pin).await?;
        let (actor, user, to_device) = (actor.to_string(), user.to_string(), to_device.to_string());
        let named = session.map(str::to_string);
        let rules = self.rules;
        self.blocking(move |store| {
            let now = UnixMs::now();
            let found = session_to_move(&store, &user, &to_device, named.as_deref()).map_err(Refusal::Internal)?;
            let none = found.is_none();
            let (session, from_device) =
                found.unwrap_or_else(|| (named.clone().unwrap_or_else(|| "-".into()), String::new()));
            let req = MoveRequest {
                actor: &actor,
                user: &user,
                from_device: &from_device,
                to_device: &to_device,
                session: &session,
                credential_ok,
            };
            let facts = MoveFacts::read(&store, &req, now).map_err(internal)?;
            let fresh = Ticket::generate().map_err(internal)?;
            let locked = facts.locked_until.is_some_and(|u| u > now);
            let d = if none && credential_ok && !locked && named.is_none() {
                crate::moves::no_call(&req, now)
            } else {
                request_move(&rules, &req, &facts, fresh, now)
            };
            store.apply(&d.writes).map_err(internal)?;
            let granted = d.outcome.map_err(Refusal::Refused)?;
            Ok(Issued { granted, session, from_device })
        })
        .await
    }

    /// `device` presents `ticket`: spends it, and on success bars the old device (flushed)
    /// and returns the move to carry out.
    pub async fn redeem(&self, actor: &str, device: &str, ticket: Ticket) -> Result<Restore, Refusal> {
        let (actor, device) = (actor.to_string(), device.to_string());
        let rules = self.rules;
        self.blocking(move |store| {
            let now = UnixMs::now();
            let p = Presentation { actor: &actor, ticket: &ticket, device: &device, session_hint: None };
            let facts = RedeemFacts::take(&store, &p, now).map_err(internal)?;
            let d = redeem(&rules, &p, &facts, now);
            store.apply(&d.writes).map_err(internal)?;
            d.outcome.map_err(Refusal::Refused)
        })
        .await
    }

    /// Device `to_device` of `user` pulls the user's call (feature code and PIN): a ticket is
    /// issued and presented at once, both audited.
    pub async fn pull(&self, actor: &str, user: &str, to_device: &str, pin: Passcode) -> Result<Restore, Refusal> {
        let issued = self.request(actor, user, to_device, None, pin).await?;
        self.redeem(actor, to_device, issued.granted.ticket).await
    }
}
