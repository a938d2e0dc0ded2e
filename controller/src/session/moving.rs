//! Moves of a call between a user's devices and the bars they leave: the new device's leg
//! joins, the old device's legs go once it is in the conference, and the old device is barred
//! from rejoining for a while. A move whose new leg goes before it joins, or whose session
//! leaves `Connected` first, is undone.

use super::state::{ClientLeg, Moving, Phase};
use super::{
    Command, Device, LegArrival, Millis, MoveRefused, Outputs, SessionId, Sessions, MOVED_AWAY_CAUSE, MOVE_FAR,
};
use crate::timeline::Mark;

impl Sessions {
    /// The live session of `user` on a device other than `not_on`, most recent first: what
    /// a feature-code move pulls.
    pub fn live_session_of_user(&self, user: &str, not_on: &str) -> Option<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.phase.is_live() && s.user == user && s.device != not_on)
            .max_by_key(|(_, s)| s.opened_at)
            .map(|(id, _)| id.clone())
    }

    /// Bars `device` from rejoining session `id` until `until` (restored from the store after
    /// a restart; a move bars the old device itself).
    pub fn bar(&mut self, id: &SessionId, device: &str, until: Millis) {
        if let Some(s) = self.sessions.get_mut(id) {
            let t = s.barred.entry(device.to_string()).or_insert(until);
            *t = (*t).max(until);
        }
    }

    /// The session a leg of `device` would rejoin although the device is barred from it: a
    /// live session it was moved away from, reached by its pairing token or by calling the
    /// same far number. Returns (session, bar end, device the call is on now).
    pub(super) fn barred_session(
        &self,
        device: &str,
        leg: &LegArrival,
        now: Millis,
    ) -> Option<(SessionId, Millis, String)> {
        self.sessions.iter().find_map(|(id, s)| {
            let until = *s.barred.get(device)?;
            let same_call = (!leg.token.is_empty() && leg.token == s.token)
                || (!s.far_number.is_empty() && leg.far == s.far_number)
                || leg.far == MOVE_FAR;
            (until > now && s.phase.is_live() && same_call).then(|| (id.clone(), until, s.device.clone()))
        })
    }

    /// Moves session `id` to `to` (a ticket or PIN was accepted): `leg`, waiting in
    /// `Handoff()`, joins the conference in its own device group; every leg of the old device
    /// is hung up (not taken as the user hanging up), and the old device is barred from the
    /// session until `bar_until`. Refused (with the reason) if the session is not live or
    /// the leg is already in a session; the caller refuses the leg then.
    pub fn move_to(
        &mut self,
        id: &SessionId,
        to: &Device,
        leg: &LegArrival,
        bar_until: Millis,
        now: Millis,
    ) -> Result<Outputs, MoveRefused> {
        let mut out = Outputs::default();
        if self.by_channel.contains_key(&leg.uniqueid) {
            return Err(MoveRefused::LegInASession { channel: leg.channel.clone() });
        }
        let Some(s) = self.sessions.get_mut(id) else { return Err(MoveRefused::Ended { session: id.clone() }) };
        if !s.phase.answered() {
            return Err(MoveRefused::NotConnected { session: id.clone() });
        }
        let from = std::mem::replace(&mut s.device, to.id.clone());
        s.user = to.user.clone();
        s.token = leg.token.clone();
        let t = s.barred.entry(from.clone()).or_insert(bar_until);
        *t = (*t).max(bar_until);
        s.barred.remove(&to.id);
        if matches!(s.phase, Phase::Grace) {
            s.connect();
        }
        s.legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel.clone(), leg.path));
        let mut old = Vec::new();
        for (uid, l) in s.legs.iter_mut().filter(|(u, l)| l.live && **u != leg.uniqueid) {
            l.hung_up_by_us = true;
            old.push(uid.clone());
        }
        let n_old = old.len();
        if let Phase::Connected { moving } = &mut s.phase {
            *moving = Some(Moving { leg: leg.uniqueid.clone(), from_device: from.clone(), old_legs: old });
        }
        self.by_channel.insert(leg.uniqueid.clone(), id.clone());
        let Some(s) = self.sessions.get(id) else { return Err(MoveRefused::Ended { session: id.clone() }) };
        out.commands.push(self.assign(id, s, &leg.uniqueid));
        let mark = Mark::Moved {
            from: from.clone(),
            to: to.id.clone(),
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
        };
        Self::mark(
            &mut out,
            now,
            id,
            mark,
            format!(
                "moved from device {from} to device {}: {} leg {} ({}) joins, then {n_old} leg(s) of {from} are hung up; {from} barred for {} s",
                to.id,
                leg.path.as_str(),
                leg.channel,
                leg.uniqueid,
                bar_until.saturating_sub(now) / 1000
            ),
        );
        Ok(out)
    }

    /// The new device's leg of a move is in the conference: the old device's legs go now.
    pub(super) fn recv_joined(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let Some(m) = s.take_move_of(uniqueid) else { return };
        let live: Vec<&String> = m.old_legs.iter().filter(|u| s.legs.get(*u).is_some_and(|l| l.live)).collect();
        for uid in &live {
            out.commands.push(Command::Hangup { uniqueid: (*uid).clone(), cause: MOVED_AWAY_CAUSE });
        }
        let n = live.len();
        Self::record(
            out,
            now,
            &id,
            format!("the new device's leg is in the conference: {n} leg(s) of {} hung up", m.from_device),
        );
    }

    /// Undoes a move that is off (`why`) in session `id` and records it.
    pub(super) fn abandon_move(
        &mut self,
        id: &SessionId,
        m: Option<Moving>,
        why: &str,
        now: Millis,
        out: &mut Outputs,
    ) {
        let (Some(m), Some(s)) = (m, self.sessions.get_mut(id)) else { return };
        s.undo_move(&m);
        Self::record(out, now, id, format!("move abandoned: {why}; staying on {}", m.from_device));
    }
}
