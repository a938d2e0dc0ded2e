//! The move flow, start to finish: a leg that dialled in to take a call over (`Handoff(move,...)`,
//! [`MOVE_FAR`](crate::session::MOVE_FAR)) ends with the call moved to it or the leg refused.
//!
//! 1. [`Core::start_move`], on the link loop, no I/O: which registered device calls, with a
//!    ticket (`ticket-…`) or a PIN (`pin-…`); refused at once without either.
//! 2. [`check`], a task off the link loop: the move service ([`crate::service`]) checks the
//!    ticket or PIN against the store and writes what it grants before it answers.
//! 3. [`Core::finish_move`], back on the link loop (through [`super::Inbox::MoveChecked`]), no
//!    I/O: the session core moves the call to the leg, or the leg is refused.

use super::controller::{Core, Now, Step};
use crate::credentials::Passcode;
use crate::moves::{Restore, Ticket};
use crate::service::{MoveService, Refusal};
use crate::session::{Command, Device, LegArrival, Millis, SessionId};
use crate::store::{AuditAction, AuditRecord, Outcome};
use tracing::{info, warn};

/// What a move leg presented.
pub enum Proof {
    Ticket(Ticket),
    Pin(Passcode),
}

/// A move leg to check (step 2).
pub struct MoveAsk {
    leg: LegArrival,
    device: Device,
    /// Who asks, for the audit log.
    actor: String,
    proof: Proof,
    /// When the leg arrived (monotonic), for the log line of the move.
    asked: Millis,
}

impl std::fmt::Debug for MoveAsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proof = match self.proof {
            Proof::Ticket(_) => "ticket",
            Proof::Pin(_) => "pin",
        };
        f.debug_struct("MoveAsk")
            .field("leg", &self.leg.uniqueid)
            .field("device", &self.device.id)
            .field("proof", &proof)
            .finish()
    }
}

/// A move leg's checked ticket or PIN (step 3's input).
#[derive(Debug)]
pub struct MoveChecked {
    leg: LegArrival,
    device: Device,
    result: Result<Restore, Refusal>,
    asked: Millis,
}

impl Core {
    /// Step 1: a leg asking to take a call over. Its ticket or PIN goes to [`check`] (the
    /// step's `check`), or the leg is refused and the refusal audited.
    pub fn start_move(&mut self, leg: LegArrival, now: Now) -> Step {
        let Some(device) = self.sessions.device_of_leg(&leg).cloned() else {
            let who = if leg.endpoint.is_empty() { leg.caller.clone() } else { leg.endpoint.clone() };
            let reason = format!("move refused: no registered device is '{who}'");
            let audit = AuditRecord::new(now.unix, format!("sip:{who}"), AuditAction::MoveRequest, Outcome::Refused)
                .reason(&reason);
            self.metrics.count(&self.metrics.moves_refused);
            return refused(leg, reason, audit);
        };
        let actor = format!("sip:device:{}", device.id);
        let proof = if let Some(hex) = leg.token.strip_prefix("ticket-") {
            match Ticket::parse(hex) {
                Ok(t) => Proof::Ticket(t),
                Err(e) => {
                    let reason = format!("move refused: {e}");
                    let audit = AuditRecord::new(now.unix, &actor, AuditAction::TicketRedeem, Outcome::Refused)
                        .device(&device.id)
                        .reason(&reason);
                    self.metrics.count(&self.metrics.moves_refused);
                    return refused(leg, reason, audit);
                }
            }
        } else if let Some(pin) = leg.token.strip_prefix("pin-") {
            Proof::Pin(Passcode::presented(pin))
        } else {
            let reason = "move refused: no ticket (X-Handoff-Ticket) and no PIN given".to_string();
            let audit = AuditRecord::new(now.unix, &actor, AuditAction::MoveRequest, Outcome::Refused)
                .device(&device.id)
                .reason(&reason);
            return refused(leg, reason, audit);
        };
        let check = MoveAsk { leg, device, actor, proof, asked: now.mono };
        Step { check: Some(check), ..Step::default() }
    }

    /// Step 3: carries out (or refuses) a checked move.
    pub fn finish_move(&mut self, checked: MoveChecked, now: Now) -> Step {
        let MoveChecked { leg, device, result, asked } = checked;
        let restore = match result {
            Ok(r) => r,
            Err(refusal) => {
                self.metrics.count(&self.metrics.moves_refused);
                warn!(target: "handoff::moves", device = %device.id, "move refused: {refusal}");
                let reason = format!("move refused: {refusal}");
                return Step::commands(vec![Command::Refuse { uniqueid: leg.uniqueid, reason }]);
            }
        };
        let bar_until = now.mono_of(restore.from_barred_until);
        match self.sessions.move_to(&SessionId(restore.session.clone()), &device, &leg, bar_until, now.mono) {
            Ok(out) => {
                self.metrics.count(&self.metrics.moves_done);
                info!(
                    target: "handoff::moves",
                    session = %restore.session,
                    from = %restore.from_device,
                    to = %restore.to_device,
                    check_ms = now.mono.saturating_sub(asked),
                    "call moved"
                );
                self.step(out, now)
            }
            Err(why) => {
                self.metrics.count(&self.metrics.moves_refused);
                let reason = format!("move not carried out: {why}");
                let audit = AuditRecord::new(
                    now.unix,
                    format!("sip:device:{}", device.id),
                    AuditAction::TicketRedeem,
                    Outcome::Refused,
                )
                .device(&device.id)
                .session(&restore.session)
                .reason(&reason);
                refused(leg, reason, audit)
            }
        }
    }
}

/// The leg refused, the refusal audited.
fn refused(leg: LegArrival, reason: String, audit: AuditRecord) -> Step {
    Step { commands: vec![Command::Refuse { uniqueid: leg.uniqueid, reason }], audit: vec![audit], ..Step::default() }
}

/// Step 2: the move service checks the ticket or PIN (it reads and writes the store off the
/// executor, and what it grants is written before it answers).
pub async fn check(service: MoveService, ask: MoveAsk) -> MoveChecked {
    let MoveAsk { leg, device, actor, proof, asked } = ask;
    let result = match proof {
        Proof::Ticket(ticket) => service.redeem(&actor, &device.id, ticket).await,
        Proof::Pin(pin) => service.pull(&actor, &device.user, &device.id, pin).await,
    };
    MoveChecked { leg, device, result, asked }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::controller::tests::{core, leg, now};
    use crate::session::{Input, MOVE_FAR};

    fn arrival(token: &str) -> LegArrival {
        let Input::LegArrived(l) = leg("9.1", MOVE_FAR, token) else { unreachable!() };
        l
    }

    fn refusal(step: &Step) -> &str {
        match step.commands.as_slice() {
            [Command::Refuse { reason, .. }] => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_move_leg_with_a_pin_or_a_ticket_is_checked_off_the_loop() {
        let mut c = core();
        let step = c.on_input(leg("9.1", MOVE_FAR, "pin-1234"), now(5));
        let ask = step.check.expect("checked");
        assert!(step.commands.is_empty() && step.audit.is_empty() && step.writes.is_empty());
        assert!(matches!(ask.proof, Proof::Pin(_)));
        assert_eq!(
            (ask.device.id.as_str(), ask.actor.as_str(), ask.asked),
            ("alice-phone", "sip:device:alice-phone", 5)
        );
    }

    #[test]
    fn a_move_leg_without_a_device_ticket_or_pin_is_refused_and_audited() {
        let mut c = core();
        let mut stranger = arrival("pin-1234");
        stranger.endpoint = "mallory-app".into();
        let step = c.start_move(stranger, now(1));
        assert_eq!(refusal(&step), "move refused: no registered device is 'mallory-app'");
        assert_eq!(step.audit[0].action, AuditAction::MoveRequest);

        let step = c.start_move(arrival("ticket-zz"), now(1));
        assert!(refusal(&step).starts_with("move refused: "), "{step:?}");
        assert_eq!(step.audit[0].action, AuditAction::TicketRedeem);

        let step = c.start_move(arrival(""), now(1));
        assert_eq!(refusal(&step), "move refused: no ticket (X-Handoff-Ticket) and no PIN given");
        // Only the first two count as refused moves (as before the split).
        assert_eq!(c.metrics.moves_refused.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_refused_check_refuses_the_leg() {
        let mut c = core();
        let device = c.sessions.device("alice-phone").cloned().unwrap();
        let checked = MoveChecked { leg: arrival("pin-1"), device, result: Err(Refusal::Busy), asked: 0 };
        let step = c.finish_move(checked, now(10));
        assert!(refusal(&step).starts_with("move refused: another PIN check"), "{step:?}");
        assert!(step.audit.is_empty(), "the service audited it");
    }
}
