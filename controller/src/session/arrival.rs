//! How sessions come to be and legs join them: a client leg arriving in `Handoff()` (opening a
//! session, pairing, rejoining, replacing a stalled leg, or refused), and a session found
//! running in the PBX after a restart (adopted).

use super::late::far_channel_of;
use super::state::{ClientLeg, Phase, Session};
use super::timers::TimerTable;
use super::{Command, Device, Found, LegArrival, Millis, Outputs, Path, SessionId, Sessions, NO_SESSION};
use crate::hangup_cause::q850;
use crate::timeline::Mark;
use handoff_vocab::GroupKey;
use std::collections::BTreeMap;

impl Sessions {
    /// The device whose channel this is: a data leg by its app's endpoint, a carrier leg by
    /// its caller ID (as for an arriving leg).
    pub fn device_of_channel(&self, endpoint: &str, caller: &str) -> Option<(&Device, Path)> {
        if let Some(d) = self.by_endpoint(endpoint) {
            return Some((d, Path::Data));
        }
        self.by_number(caller).map(|d| (d, Path::Carrier))
    }

    /// The device an arriving leg comes from (its app's endpoint, or its carrier caller ID).
    pub fn device_of_leg(&self, leg: &LegArrival) -> Option<&Device> {
        match leg.path {
            Path::Data => self.by_endpoint(&leg.endpoint),
            Path::Carrier => self.by_number(&leg.caller),
        }
    }

    fn by_endpoint(&self, endpoint: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.endpoint.as_deref() == Some(endpoint))
    }

    fn by_number(&self, caller: &str) -> Option<&Device> {
        let caller = normalise_number(caller);
        self.devices.iter().find(|d| d.number.as_deref().map(normalise_number).as_deref() == Some(caller.as_str()))
    }

    /// Takes over a session that is already running in the PBX (found after a restart or a
    /// reconnect): its conference, its far channel if still there, and its client legs.
    /// A session without a far party is ended; one without client legs holds the far party.
    pub fn adopt(&mut self, found: Found, now: Millis) -> Outputs {
        let mut out = Outputs::default();
        let id = found.session.clone();
        if self.sessions.contains_key(&id) {
            return out;
        }
        let legs: BTreeMap<String, ClientLeg> = found
            .legs
            .iter()
            .map(|(uid, channel, path)| (uid.clone(), ClientLeg::joined(channel.clone(), *path)))
            .collect();
        let far_live = found.far.is_some();
        let user = self.device(&found.device).map(|d| d.user.clone()).unwrap_or_default();
        let mut session = Session {
            phase: Phase::Connected { moving: None },
            timers: TimerTable::default(),
            device: found.device.clone(),
            user,
            far_number: found.far_number.clone(),
            barred: BTreeMap::new(),
            token: String::new(),
            bridge: found.bridge.clone(),
            far_uniqueid: found.far.clone().unwrap_or_else(|| far_channel_of(&id)),
            far_live,
            legs,
            opened_at: now,
        };
        if session.legs.is_empty() {
            session.hold(now + self.rules.grace_ms);
        }
        for uid in session.legs.keys() {
            self.by_channel.insert(uid.clone(), id.clone());
        }
        if far_live {
            self.by_channel.insert(session.far_uniqueid.clone(), id.clone());
        }
        let n = session.legs.len();
        let mark = Mark::Adopted {
            device: found.device.clone(),
            legs: found.legs.iter().map(|(u, c, p)| (u.clone(), (*p).into(), c.clone())).collect(),
            far_present: far_live,
        };
        self.sessions.insert(id.clone(), session);
        Self::mark(
            &mut out,
            now,
            &id,
            mark,
            format!(
                "adopted from the PBX: device {}, {n} client leg(s), far party {}",
                found.device,
                if far_live { "present" } else { "gone" }
            ),
        );
        if !far_live {
            self.end(&id, "found without its far party".into(), q850::NORMAL_CLEARING, now, &mut out);
        }
        out
    }

    pub(super) fn refuse(out: &mut Outputs, now: Millis, leg: &LegArrival, reason: String) {
        Self::record(
            out,
            now,
            &SessionId(NO_SESSION.into()),
            format!("refused {} leg {} ({}): {reason}", leg.path.as_str(), leg.channel, leg.uniqueid),
        );
        out.commands.push(Command::Refuse { uniqueid: leg.uniqueid.clone(), reason });
    }

    pub(super) fn recv_leg(&mut self, leg: LegArrival, now: Millis, out: &mut Outputs) {
        if self.by_channel.contains_key(&leg.uniqueid) {
            return Self::refuse(out, now, &leg, "this channel is already in a session".into());
        }
        let Some(device) = self.device_of_leg(&leg).cloned() else {
            let who = match leg.path {
                Path::Data => format!("endpoint '{}'", leg.endpoint),
                Path::Carrier => format!("caller ID '{}'", leg.caller),
            };
            return Self::refuse(out, now, &leg, format!("unknown device: no registered device has {who}"));
        };
        if let Some((id, until, to)) = self.barred_session(&device.id, &leg, now) {
            let reason = format!(
                "device '{}' is barred from session {id} for {} s more (the call moved to device '{to}')",
                device.id,
                (until - now).div_ceil(1000)
            );
            out.barred.push((id, device.id.clone(), reason.clone()));
            return Self::refuse(out, now, &leg, reason);
        }
        if !leg.token.is_empty() {
            let clash =
                self.sessions.values().find(|s| s.phase.is_live() && s.token == leg.token && s.device != device.id);
            if let Some(other) = clash {
                let reason = format!("pairing token already used by device '{}'", other.device);
                return Self::refuse(out, now, &leg, reason);
            }
        }
        let live = self
            .sessions
            .iter()
            .filter(|(_, s)| s.phase.is_live() && s.device == device.id)
            .filter(|(_, s)| leg.token.is_empty() || s.token.is_empty() || s.token == leg.token)
            .map(|(id, _)| id.clone())
            .next();
        match live {
            Some(id) => self.join(&id, &device, leg, now, out),
            None => {
                if let Some(reason) = self.late_second_leg(&device.id, &leg, now) {
                    return Self::refuse(out, now, &leg, reason);
                }
                self.open(&device, leg, now, out)
            }
        }
    }

    pub(super) fn assign(&self, id: &SessionId, s: &Session, uniqueid: &str) -> Command {
        Command::Assign {
            uniqueid: uniqueid.to_string(),
            session: id.clone(),
            bridge: s.bridge.clone(),
            group: GroupKey { session: &id.0, device: &s.device }.to_string(),
            preferred: self.rules.preferred,
            alignment: self.rules.alignment,
        }
    }

    fn open(&mut self, device: &Device, leg: LegArrival, now: Millis, out: &mut Outputs) {
        let id = SessionId(format!("{}{}", self.id_prefix, self.next_id));
        self.next_id += 1;
        let bridge = format!("{}{}", self.rules.bridge_prefix, id);
        let far_uniqueid = far_channel_of(&id);
        let caller_id =
            device.caller_id.clone().or_else(|| device.number.clone()).filter(|c| !c.is_empty()).unwrap_or_else(|| {
                if leg.caller.is_empty() {
                    self.rules.default_caller_id.clone()
                } else {
                    leg.caller.clone()
                }
            });
        let mark = Mark::Opened {
            device: device.id.clone(),
            user: device.user.clone(),
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
        };
        Self::mark(
            out,
            now,
            &id,
            mark,
            format!(
                "opened for device {} of {}: {} leg {} ({}) calls {}",
                device.id,
                device.user,
                leg.path.as_str(),
                leg.channel,
                leg.uniqueid,
                leg.far
            ),
        );
        let mut legs = BTreeMap::new();
        legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel.clone(), leg.path));
        let session = Session {
            phase: Phase::AwaitingFarAnswer { far_failed: None },
            timers: TimerTable::default(),
            device: device.id.clone(),
            user: device.user.clone(),
            far_number: leg.far.clone(),
            barred: BTreeMap::new(),
            token: leg.token.clone(),
            bridge: bridge.clone(),
            far_uniqueid: far_uniqueid.clone(),
            far_live: true,
            legs,
            opened_at: now,
        };
        out.commands.push(self.assign(&id, &session, &leg.uniqueid));
        out.commands.push(Command::OriginateFar {
            session: id.clone(),
            uniqueid: far_uniqueid.clone(),
            number: leg.far.clone(),
            bridge,
            caller_id: caller_id.clone(),
        });
        Self::mark(
            out,
            now,
            &id,
            Mark::FarCalled { number: leg.far.clone() },
            format!("far party {} called as {far_uniqueid} with caller ID {caller_id}", leg.far),
        );
        self.by_channel.insert(leg.uniqueid, id.clone());
        self.by_channel.insert(far_uniqueid, id.clone());
        self.sessions.insert(id, session);
    }

    fn join(&mut self, id: &SessionId, device: &Device, leg: LegArrival, now: Millis, out: &mut Outputs) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        if let Some((old_uid, old)) = s.live_leg_on(leg.path) {
            if !s.is_stalled(old_uid) {
                let reason = format!(
                    "device '{}' already has a live {} leg ({}) in session {id}",
                    device.id,
                    leg.path.as_str(),
                    old.channel
                );
                return Self::refuse(out, now, &leg, reason);
            }
            // The app re-dialled after its old leg went silent: the new leg replaces it.
            let old_uid = old_uid.clone();
            Self::mark(
                out,
                now,
                id,
                Mark::LegDown { leg: old_uid.clone(), cause: "replaced by a new leg".into() },
                format!("{} leg {} replaces its stalled predecessor", leg.path.as_str(), leg.channel),
            );
            out.commands.push(Command::Hangup { uniqueid: old_uid.clone(), cause: q850::NORMAL_CLEARING });
            s.unstall(&old_uid);
            if let Some(o) = s.legs.get_mut(&old_uid) {
                o.live = false;
                o.hung_up_by_us = true;
            }
        }
        let mark = Mark::LegUp {
            leg: leg.uniqueid.clone(),
            path: leg.path.into(),
            channel: leg.channel.clone(),
            device: device.id.clone(),
        };
        let what = match s.phase {
            Phase::Grace => {
                s.connect();
                format!("{} leg {} rejoined; far party off hold", leg.path.as_str(), leg.channel)
            }
            _ if s.legs.values().any(|l| l.path == leg.path) => {
                format!("{} leg {} rejoined", leg.path.as_str(), leg.channel)
            }
            _ => format!(
                "{} leg {} paired after {} ms (far number {})",
                leg.path.as_str(),
                leg.channel,
                now.saturating_sub(s.opened_at),
                leg.far
            ),
        };
        if s.token.is_empty() {
            s.token = leg.token.clone();
        }
        s.legs.insert(leg.uniqueid.clone(), ClientLeg::joined(leg.channel, leg.path));
        self.by_channel.insert(leg.uniqueid.clone(), id.clone());
        let cmd = match self.sessions.get(id) {
            Some(s) => self.assign(id, s, &leg.uniqueid),
            None => return,
        };
        out.commands.push(cmd);
        Self::mark(out, now, id, mark, what);
    }
}

/// Caller IDs compare without spaces, dashes and a leading `00` for `+`.
pub(super) fn normalise_number(n: &str) -> String {
    let digits: String = n.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
    match digits.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => digits,
    }
}
