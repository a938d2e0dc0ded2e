//! The facts a decision needs, read from the store just before deciding. This is the only
//! part of [`super`] that does I/O (blocking store reads; `take` also spends the ticket); the
//! decisions themselves take these structs and never see the store.

use super::{MoveRequest, Presentation};
use crate::store::{Device, SessionSnapshot, Store, StoreError, TicketRecord, UnixMs};

/// What [`super::request_move`] needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveFacts {
    /// The device named as the session's current one (A).
    pub from: Option<Device>,
    /// The requesting device (B).
    pub to: Option<Device>,
    pub session: Option<SessionSnapshot>,
    /// B's bar from the session, if one is recorded.
    pub to_barred_until: Option<UnixMs>,
    /// The user's lockout in force, if any.
    pub locked_until: Option<UnixMs>,
}

impl MoveFacts {
    /// Reads the facts for `req` from the store.
    pub fn read(store: &Store, req: &MoveRequest<'_>, now: UnixMs) -> Result<Self, StoreError> {
        Ok(Self {
            from: store.device(req.from_device)?,
            to: store.device(req.to_device)?,
            session: store.get_session(req.session)?,
            to_barred_until: store.bar(req.session, req.to_device)?,
            locked_until: store.locked_until(req.user, now)?,
        })
    }
}

/// What [`super::redeem`] needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedeemFacts {
    /// The ticket's record as it was before this presentation spent it.
    pub ticket: Option<TicketRecord>,
    /// The presenting device.
    pub device: Option<Device>,
    /// The ticket's session.
    pub session: Option<SessionSnapshot>,
    /// The presenting device's bar from the ticket's session, if one is recorded.
    pub barred_until: Option<UnixMs>,
    /// The ticket's user's lockout in force, if any.
    pub locked_until: Option<UnixMs>,
}

impl RedeemFacts {
    /// Spends the presented ticket (atomically, flushed: see `Store::take_ticket`) and reads
    /// the rest of the facts for its session.
    pub fn take(store: &Store, p: &Presentation<'_>, now: UnixMs) -> Result<Self, StoreError> {
        let ticket = store.take_ticket(&p.ticket.hash(), now)?;
        let device = store.device(p.device)?;
        let Some(t) = &ticket else {
            return Ok(Self { ticket, device, ..Self::default() });
        };
        Ok(Self {
            session: store.get_session(&t.session)?,
            barred_until: store.bar(&t.session, p.device)?,
            locked_until: store.locked_until(&t.user, now)?,
            device,
            ticket,
        })
    }
}
