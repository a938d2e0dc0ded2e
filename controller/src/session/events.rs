//! What happens to a running session: the far party answering, failing or hanging up, client
//! legs hanging up (the user clearing the call, or a leg lost), stalling and recovering, its
//! timers firing at a `Tick`, and its end (hangups sent, then removed once every channel is
//! gone or the linger time has passed).

use super::state::Phase;
use super::timers::Timer;
use super::{Command, Millis, Outputs, SessionId, Sessions, ENDING_LINGER_MS, FAR_HANGUP_WAIT_MS};
use crate::hangup_cause::{q850, LegEnd};
use crate::timeline::Mark;

impl Sessions {
    pub(super) fn recv_far_answer(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        // A far party that answers for a session that is gone or ending is hung up at once.
        self.recv_far_seen(uniqueid, now, out);
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid == uniqueid && matches!(s.phase, Phase::AwaitingFarAnswer { .. }) {
            s.connect();
            let after = now.saturating_sub(s.opened_at);
            Self::mark(out, now, &id, Mark::FarAnswered, format!("far party answered after {after} ms; connected"));
        }
    }

    pub(super) fn recv_far_failed(
        &mut self,
        uniqueid: &str,
        reason: &str,
        no_channel: bool,
        now: Millis,
        out: &mut Outputs,
    ) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.far_uniqueid != uniqueid || !s.phase.is_live() {
            return;
        }
        let mark = Mark::FarFailed { reason: reason.to_string() };
        Self::mark(out, now, &id, mark, format!("far call failed: {reason}"));
        if !no_channel {
            // The far channel exists: its Hangup event follows with the real cause (busy, no
            // answer, ...), which the phone should hear; that event ends the session (or the
            // tick does, if the event never comes).
            s.await_far_hangup(reason, now + FAR_HANGUP_WAIT_MS);
            return;
        }
        // An originate that failed before a channel existed sends no hangup: the far leg is gone.
        s.far_live = false;
        self.by_channel.remove(uniqueid);
        self.end(&id, format!("far call failed: {reason}"), far_failure_cause(reason), now, out);
    }

    pub(super) fn recv_hangup(
        &mut self,
        uniqueid: &str,
        cause: u32,
        cause_txt: &str,
        end: LegEnd,
        now: Millis,
        out: &mut Outputs,
    ) {
        let Some(id) = self.by_channel.remove(uniqueid) else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        // The new device's leg went before it joined: the move is off, the call stays.
        if let Some(m) = s.take_move_of(uniqueid) {
            self.abandon_move(&id, Some(m), "the new leg went before it joined", now, out);
        }
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let live = s.phase.is_live();
        if s.far_uniqueid == uniqueid {
            s.far_live = false;
            let answered = s.phase.answered();
            let mark = Mark::FarGone { cause: format!("{cause} {cause_txt}") };
            Self::mark(out, now, &id, mark, format!("far party hung up (cause {cause} {cause_txt})"));
            if live {
                let why = if answered {
                    "far party hung up".to_string()
                } else {
                    format!("far call ended before answer: {cause_txt}")
                };
                // Pass the far side's cause (busy, no answer, ...) on to the phone.
                let to_clients = if answered { q850::NORMAL_CLEARING } else { cause };
                self.end(&id, why, to_clients, now, out);
            }
        } else if let Some(leg) = s.legs.get_mut(uniqueid) {
            let was_live = leg.live;
            leg.live = false;
            let (path, channel, by_us) = (leg.path, leg.channel.clone(), leg.hung_up_by_us);
            s.unstall(uniqueid);
            let remaining = s.live_clients();
            if was_live {
                let why = if by_us {
                    format!("{cause} {cause_txt}, hung up by handoffd")
                } else {
                    format!("{cause} {cause_txt}")
                };
                Self::mark(
                    out,
                    now,
                    &id,
                    Mark::LegDown { leg: uniqueid.to_string(), cause: why },
                    format!(
                        "{} leg {channel} hung up (cause {cause} {cause_txt}); {remaining} client leg(s) left",
                        path.as_str()
                    ),
                );
            }
            // The user hanging up ends the call; any other end of a leg (network failure, RTP
            // timeout, declared dead) is a lost leg (crate::hangup_cause has the table).
            let user_hung_up = end == LegEnd::ClearedByUser && !by_us;
            if live && was_live && user_hung_up {
                self.end(&id, format!("the phone hung up its {} leg", path.as_str()), q850::NORMAL_CLEARING, now, out);
            } else if live && remaining == 0 && was_live {
                if matches!(s.phase, Phase::Connected { .. }) {
                    let grace = self.rules.grace_ms;
                    let moving = s.hold(now + grace);
                    Self::mark(
                        out,
                        now,
                        &id,
                        Mark::OnHold { grace_ms: grace },
                        format!("every client leg is gone: far party on hold for {} s", grace / 1000),
                    );
                    self.abandon_move(&id, moving, "every client leg went before the new leg joined", now, out);
                } else {
                    let why = "the phone hung up before the far party answered";
                    self.end(&id, why.into(), q850::NORMAL_CLEARING, now, out);
                }
            } else if live && remaining > 0 && was_live {
                if let Some((_, other)) = s.legs.iter().find(|(_, l)| l.live) {
                    let other = other.path.as_str().to_string();
                    Self::record(out, now, &id, format!("continuing on the {other} leg"));
                }
            }
        }
        self.remove_if_gone(&id, now, out);
    }

    pub(super) fn recv_stall(&mut self, uniqueid: &str, silent_ms: u64, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let Some(leg) = s.legs.get(uniqueid) else { return };
        if !leg.live || s.is_stalled(uniqueid) {
            return;
        }
        let what = format!("{} leg {} stalled (silent {silent_ms} ms)", leg.path.as_str(), leg.channel);
        Self::mark(out, now, &id, Mark::LegStalled { leg: uniqueid.to_string(), silent_ms }, what);
        if s.phase.is_live() {
            s.stall(uniqueid, now.saturating_sub(silent_ms), self.rules.leg_dead_after_ms);
        }
    }

    pub(super) fn recv_recovery(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let live = s.legs.get(uniqueid).is_some_and(|l| l.live);
        if live && s.unstall(uniqueid) {
            if let Some(leg) = s.legs.get(uniqueid) {
                let what = format!("{} leg {} recovered", leg.path.as_str(), leg.channel);
                Self::mark(out, now, &id, Mark::LegRecovered { leg: uniqueid.to_string() }, what);
            }
        }
    }

    /// Fires the timers that are due, session by session, in each table's order.
    pub(super) fn recv_tick(&mut self, now: Millis, out: &mut Outputs) {
        let ids: Vec<SessionId> = self.sessions.keys().cloned().collect();
        for id in ids {
            let due = self.sessions.get(&id).map(|s| s.timers.expired(now)).unwrap_or_default();
            for timer in due {
                // An earlier timer may have ended or removed the session, stopping this one.
                let Some(s) = self.sessions.get_mut(&id) else { break };
                if !s.timers.is_expired(&timer, now) {
                    continue;
                }
                s.timers.stop(&timer);
                match timer {
                    Timer::Linger => {
                        Self::record(out, now, &id, "removed: channels did not report their hangup in time".into());
                        self.remove(&id, now, out);
                    }
                    Timer::Grace => {
                        let why = "no client leg came back within the grace period";
                        self.end(&id, why.into(), q850::NORMAL_CLEARING, now, out);
                    }
                    Timer::FarHangupWait => {
                        let reason = match &mut s.phase {
                            Phase::AwaitingFarAnswer { far_failed } => far_failed.take().unwrap_or_default(),
                            _ => String::new(),
                        };
                        let cause = far_failure_cause(&reason);
                        self.end(&id, format!("far call failed: {reason}"), cause, now, out);
                    }
                    Timer::LegDead(uid) => self.declare_dead(&id, &uid, now, out),
                }
            }
        }
    }

    /// A leg stalled longer than `leg_dead_after`: hung up (its hangup event finishes it).
    fn declare_dead(&mut self, id: &SessionId, uniqueid: &str, now: Millis, out: &mut Outputs) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        let Some(l) = s.legs.get_mut(uniqueid) else { return };
        l.hung_up_by_us = true;
        let what = format!(
            "{} leg {} declared dead after {} s of silence; hanging it up",
            l.path.as_str(),
            l.channel,
            self.rules.leg_dead_after_ms / 1000
        );
        out.commands.push(Command::Hangup { uniqueid: uniqueid.to_string(), cause: q850::NORMAL_CLEARING });
        Self::record(out, now, id, what);
    }

    /// Hangs up whatever still lives of the session and moves it to `Ending`.
    pub(super) fn end(&mut self, id: &SessionId, reason: String, cause: u32, now: Millis, out: &mut Outputs) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        let moving = s.take_move();
        self.abandon_move(id, moving, "the call ends before the new leg joined", now, out);
        let Some(s) = self.sessions.get_mut(id) else { return };
        if s.far_live {
            out.commands.push(Command::Hangup { uniqueid: s.far_uniqueid.clone(), cause });
        }
        for (uniqueid, leg) in &s.legs {
            if leg.live {
                out.commands.push(Command::Hangup { uniqueid: uniqueid.clone(), cause });
            }
        }
        Self::mark(out, now, id, Mark::Ending { reason: reason.clone() }, format!("ending: {reason}"));
        s.end(now, reason, now + ENDING_LINGER_MS);
        self.remove_if_gone(id, now, out);
    }

    pub(super) fn remove_if_gone(&mut self, id: &SessionId, now: Millis, out: &mut Outputs) {
        let gone = self.sessions.get(id).is_some_and(|s| !s.phase.is_live() && s.all_gone());
        if gone {
            let lasted = self.sessions.get(id).map(|s| now.saturating_sub(s.opened_at)).unwrap_or(0);
            self.remove(id, now, out);
            let what = format!("ended after {lasted} ms; {} session(s) open", self.sessions.len());
            Self::mark(out, now, id, Mark::Ended, what);
        }
    }

    fn remove(&mut self, id: &SessionId, now: Millis, out: &mut Outputs) {
        if let Some(s) = self.sessions.remove(id) {
            let reason = match &s.phase {
                Phase::Ending { reason, .. } => reason.clone(),
                _ => "every channel is gone".into(),
            };
            out.ended.push((id.clone(), reason));
            self.by_channel.remove(&s.far_uniqueid);
            for uniqueid in s.legs.keys() {
                self.by_channel.remove(uniqueid);
            }
            self.remember_ended(&s, now);
        }
        let window = self.rules.pair_window_ms;
        self.ended.retain(|_, e| now.saturating_sub(e.opened_at) < window);
    }
}

/// Maps an originate failure reason to the Q.850 cause the phone hears.
fn far_failure_cause(reason: &str) -> u32 {
    let r = reason.to_ascii_lowercase();
    if r.contains("busy") {
        q850::USER_BUSY
    } else if r.contains("no answer") || r.contains("timeout") {
        q850::NO_ANSWER
    } else if r.contains("congest") {
        q850::NORMAL_CIRCUIT_CONGESTION
    } else {
        q850::NORMAL_TEMPORARY_FAILURE
    }
}
