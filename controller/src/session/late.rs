//! What reaches the session core after its moment: the late second leg of a call that has
//! ended, a far channel that appears (or answers) for a session that is gone or ending, and a
//! decision the module refused because its leg no longer waits in `Handoff()`.
//!
//! The rule for far channels: a far call never outlives its session. Its hangup may be sent
//! before the PBX has created the channel (the originate is asynchronous), so whenever the
//! channel shows itself (created, answered, listed in a snapshot) for a session that is not
//! live, it is hung up again, in whatever order the events come.

use super::state::{Phase, Session};
use super::{Command, Input, LegArrival, Millis, Outputs, Path, SessionId, Sessions, NO_SESSION};
use crate::hangup_cause::q850;
use handoff_vocab::{is_far_channel, FarUniqueid};

/// The uniqueid of session `id`'s far channel (`<session>-far`, handoff-vocab).
pub(super) fn far_channel_of(id: &SessionId) -> String {
    FarUniqueid(&id.0).to_string()
}

/// A device's call that ended within the pairing window of its opening.
#[derive(Clone, Debug)]
pub(super) struct EndedCall {
    pub(super) opened_at: Millis,
    pub(super) ended_at: Millis,
    pub(super) far_number: String,
    pub(super) token: String,
    /// The paths the call had legs on.
    pub(super) paths: Vec<Path>,
}

impl Sessions {
    /// Remembers an ended session for pairing its late second leg.
    pub(super) fn remember_ended(&mut self, s: &Session, now: Millis) {
        let mut paths: Vec<Path> = s.legs.values().map(|l| l.path).collect();
        paths.sort();
        paths.dedup();
        let call = EndedCall {
            opened_at: s.opened_at,
            ended_at: now,
            far_number: s.far_number.clone(),
            token: s.token.clone(),
            paths,
        };
        self.ended.insert(s.device.clone(), call);
    }

    /// Why `leg` is the late second leg of `device`'s call that has ended (so it must not
    /// start a new call), or `None` when it is a new call: a re-dial on a path the call had,
    /// another far number, another pairing token, or past the pairing window.
    pub(super) fn late_second_leg(&self, device: &str, leg: &LegArrival, now: Millis) -> Option<String> {
        let e = self.ended.get(device)?;
        let since_open = now.saturating_sub(e.opened_at);
        let other_token = !leg.token.is_empty() && !e.token.is_empty() && leg.token != e.token;
        if since_open >= self.rules.pair_window_ms
            || e.paths.contains(&leg.path)
            || leg.far != e.far_number
            || other_token
        {
            return None;
        }
        Some(format!(
            "late {} leg of device '{device}''s call to {}, which opened {since_open} ms ago and ended {} ms ago; not starting a new call",
            leg.path.as_str(),
            leg.far,
            now.saturating_sub(e.ended_at)
        ))
    }

    /// A far channel exists (created, answered or listed): hung up if its session is gone or
    /// ending. A far channel of a live session is left alone.
    pub(super) fn recv_far_seen(&mut self, uniqueid: &str, now: Millis, out: &mut Outputs) {
        if !is_far_channel(uniqueid) {
            return;
        }
        let session = self.by_channel.get(uniqueid).and_then(|id| Some((id.clone(), self.sessions.get(id)?)));
        match session {
            Some((_, s)) if s.phase.is_live() => {}
            Some((id, s)) => {
                let why = match &s.phase {
                    Phase::Ending { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                out.commands.push(Command::Hangup { uniqueid: uniqueid.to_string(), cause: q850::NORMAL_CLEARING });
                Self::record(
                    out,
                    now,
                    &id,
                    format!("far channel {uniqueid} is there although the session is ending ({why}); hanging it up"),
                );
            }
            None => {
                out.commands.push(Command::Hangup { uniqueid: uniqueid.to_string(), cause: q850::NORMAL_CLEARING });
                Self::record(
                    out,
                    now,
                    &SessionId(NO_SESSION.into()),
                    format!("far channel {uniqueid} belongs to no open session (it has ended); hanging it up"),
                );
            }
        }
    }

    /// The module refused a decision for `uniqueid`: the leg is no longer waiting, so it is
    /// gone (as if it had hung up; not the user clearing the call).
    pub(super) fn recv_assign_refused(&mut self, uniqueid: &str, why: &str, now: Millis, out: &mut Outputs) {
        let Some(id) = self.by_channel.get(uniqueid).cloned() else { return };
        let live = self.sessions.get(&id).and_then(|s| s.legs.get(uniqueid)).is_some_and(|l| l.live);
        if !live {
            return;
        }
        Self::record(out, now, &id, format!("the module refused the decision for leg {uniqueid}: {why}"));
        let input = Input::Hangup {
            uniqueid: uniqueid.to_string(),
            cause: q850::NONE,
            cause_txt: "no longer waiting in Handoff() when the decision came".into(),
        };
        let more = self.handle(input, now);
        out.commands.extend(more.commands);
        out.records.extend(more.records);
        out.barred.extend(more.barred);
        out.ended.extend(more.ended);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{alice, core_with, leg_to};
    use super::*;
    use crate::session::State;

    fn far_hangups(out: &Outputs) -> Vec<&str> {
        out.commands
            .iter()
            .filter_map(|c| match c {
                Command::Hangup { uniqueid, .. } if is_far_channel(uniqueid) => Some(uniqueid.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Issue 12 item 1: handoffd was stopped while a data leg timed out in `Handoff()`; on
    /// resuming it reads the leg's arrival, then its hangup (cause 38), then the far channel's
    /// creation, which comes after the hangup command that failed for want of a channel.
    #[test]
    fn a_late_leg_s_far_call_is_hung_up_when_it_appears_after_the_session_ended() {
        let mut c = core_with(Default::default(), vec![alice()]);
        let out = c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]));
        // The leg is gone (the module timed it out): the session ends, the far hangup is sent...
        let out = c.handle(
            Input::Hangup { uniqueid: "1.1".into(), cause: q850::NETWORK_OUT_OF_ORDER, cause_txt: "x".into() },
            5,
        );
        assert_eq!(far_hangups(&out), ["t1-far"]);
        // ... too early: the far channel is created afterwards, and answers later still.
        let out = c.handle(Input::FarSeen { uniqueid: "t1-far".into() }, 8);
        assert_eq!(far_hangups(&out), ["t1-far"], "{out:?}");
        let out = c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 9);
        assert_eq!(far_hangups(&out), ["t1-far"], "{out:?}");
        // The session lingers, then is dropped; a far channel that shows up after that is hung up too.
        c.handle(Input::Tick, super::super::ENDING_LINGER_MS + 10);
        assert!(c.is_empty());
        for input in [Input::FarSeen { uniqueid: "t1-far".into() }, Input::FarAnswered { uniqueid: "t1-far".into() }] {
            let out = c.handle(input, 20_000);
            assert_eq!(far_hangups(&out), ["t1-far"], "{out:?}");
        }
        // Its hangup finishes it; other channels are never touched.
        let out = c.handle(Input::FarSeen { uniqueid: "1700.9".into() }, 20_001);
        assert!(out.commands.is_empty());
    }

    #[test]
    fn a_far_channel_of_a_live_session_is_left_alone() {
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        let out = c.handle(Input::FarSeen { uniqueid: "t1-far".into() }, 3);
        assert!(out.commands.is_empty(), "{out:?}");
        let out = c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 4);
        assert!(out.commands.is_empty(), "{out:?}");
        assert_eq!(c.state(&SessionId("t1".into())), Some(State::Connected));
    }

    /// The decision came too late: the module answers that the leg is not waiting. The session
    /// takes the leg as gone and ends, hanging up its far call, before any hangup event.
    #[test]
    fn a_refused_decision_ends_a_session_whose_only_leg_it_was() {
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        let out = c.handle(Input::AssignRefused { uniqueid: "1.1".into(), why: "not waiting".into() }, 2);
        assert_eq!(far_hangups(&out), ["t1-far"], "{out:?}");
        assert!(out.records.iter().any(|r| r.what.contains("refused the decision")));
        assert!(!matches!(c.state(&SessionId("t1".into())), Some(s) if s.is_live()));
        // A refused decision for a leg that is not in a session changes nothing.
        let out = c.handle(Input::AssignRefused { uniqueid: "7.7".into(), why: "x".into() }, 3);
        assert!(out.commands.is_empty());
    }

    /// Issue 12 item 10: the user hangs up and calls again 4.4 s later: a new call.
    #[test]
    fn a_quick_redial_after_a_completed_call_is_a_new_call() {
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 300);
        c.handle(Input::Hangup { uniqueid: "1.1".into(), cause: q850::NORMAL_CLEARING, cause_txt: "x".into() }, 1_000);
        c.handle(
            Input::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING, cause_txt: "x".into() },
            1_010,
        );
        assert!(c.is_empty());
        let out = c.handle(leg_to("2.1", Path::Data, "2000"), 1_010 + 4_400);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]), "{out:?}");
        // Even at once, and to the same number: a re-dial on the path the call had.
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        c.handle(Input::Hangup { uniqueid: "1.1".into(), cause: q850::NORMAL_CLEARING, cause_txt: "x".into() }, 100);
        c.handle(Input::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING, cause_txt: "x".into() }, 110);
        let out = c.handle(leg_to("2.1", Path::Data, "2000"), 500);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]), "{out:?}");
    }

    /// The window still pairs: the carrier leg of a call that ended before it arrived (the far
    /// party was busy) is refused, not a second call to the far party; another number is a new call.
    #[test]
    fn the_late_second_leg_of_an_ended_call_is_refused_but_another_number_is_a_new_call() {
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "busy".into(), no_channel: true }, 200);
        c.handle(Input::Hangup { uniqueid: "1.1".into(), cause: q850::USER_BUSY, cause_txt: "busy".into() }, 210);
        assert!(c.is_empty());
        let out = c.handle(leg_to("1.2", Path::Carrier, "2000"), 900);
        assert!(
            matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason.contains("late carrier leg") && reason.contains("ended 690 ms ago")),
            "{out:?}"
        );
        let out = c.handle(leg_to("1.3", Path::Carrier, "3000"), 950);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]), "{out:?}");
        // Past the window, the same leg would be a new call.
        let mut c = core_with(Default::default(), vec![alice()]);
        c.handle(leg_to("1.1", Path::Data, "2000"), 0);
        c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "busy".into(), no_channel: true }, 200);
        c.handle(Input::Hangup { uniqueid: "1.1".into(), cause: q850::USER_BUSY, cause_txt: "busy".into() }, 210);
        let out = c.handle(leg_to("1.2", Path::Carrier, "2000"), 5_000);
        assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]), "{out:?}");
    }
}
