//! AMI events to session inputs and session commands to AMI actions, as plain functions: the
//! vocabulary of `res_handoff.so` (from `handoff_vocab`) and Asterisk's own (`Hangup`,
//! `Originate`, `OriginateResponse`, `CoreShowChannels`) read and written in one place.

use super::{FAR_CONTEXT, FAR_EXTEN};
use crate::ami::{Action, Event};
use crate::config::Config;
use crate::pbx::PbxChannel;
use crate::session::{Command, Input, LegArrival, Path};
use handoff_vocab::{action, event, header};

/// Why an event could not become an input: one line naming the event and the header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// A handoff event lacks a header it must carry.
    #[error("AMI event {event}: missing header {header}")]
    Missing { event: String, header: &'static str },
    /// A header's value is not one the module sends.
    #[error("AMI event {event}: header {header} has unexpected value '{value}'")]
    Invalid { event: String, header: &'static str, value: String },
}

fn required(ev: &Event, header: &'static str) -> Result<String, EventError> {
    match ev.headers.get(header) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(EventError::Missing { event: ev.name.clone(), header }),
    }
}

fn optional(ev: &Event, header: &str) -> String {
    ev.headers.get(header).unwrap_or("").trim().to_string()
}

/// A header naming a path (`data`/`carrier`).
fn path_in(ev: &Event, header: &'static str) -> Result<Path, EventError> {
    let value = optional(ev, header);
    Path::parse(&value).ok_or_else(|| EventError::Invalid { event: ev.name.clone(), header, value })
}

/// Turns an AMI event into a session input; `Ok(None)` for events the core does not need.
/// `OriginateResponse` is left to the caller, which knows which originate it answers.
pub fn input_from_event(ev: &Event) -> Result<Option<Input>, EventError> {
    match ev.name.as_str() {
        event::LEG_ARRIVED => {
            let path = path_in(ev, header::PATH)?;
            Ok(Some(Input::LegArrived(LegArrival {
                uniqueid: required(ev, header::UNIQUEID)?,
                channel: required(ev, header::CHANNEL)?,
                caller: optional(ev, header::CALLER_ID_NUM),
                endpoint: optional(ev, header::ENDPOINT),
                path,
                far: required(ev, header::FAR)?,
                token: optional(ev, header::TOKEN),
            })))
        }
        event::LEG_STALLED => Ok(Some(Input::LegStalled {
            uniqueid: required(ev, header::UNIQUEID)?,
            silent_ms: optional(ev, header::SILENT_MS).parse().unwrap_or(0),
        })),
        event::LEG_RECOVERED => Ok(Some(Input::LegRecovered { uniqueid: required(ev, header::UNIQUEID)? })),
        "ConfbridgeJoin" => Ok(Some(Input::LegJoined { uniqueid: required(ev, "Uniqueid")? })),
        event::LEG_SWITCHED => {
            let to = path_in(ev, header::TO)?;
            Ok(Some(Input::LegSwitched {
                uniqueid: required(ev, header::UNIQUEID)?,
                to,
                reason: optional(ev, header::REASON),
                gap_ms: ev.get(header::GAP_MS).and_then(|g| g.parse().ok()),
            }))
        }
        "Hangup" => {
            let cause_text = optional(ev, "Cause");
            Ok(Some(Input::Hangup {
                uniqueid: required(ev, "Uniqueid")?,
                cause: cause_text.parse().unwrap_or(0),
                cause_txt: optional(ev, "Cause-txt"),
            }))
        }
        _ => Ok(None),
    }
}

/// Reads an `OriginateResponse` for the far channel `uniqueid`: answered, or failed with a reason.
pub fn originate_outcome(ev: &Event, uniqueid: &str) -> Input {
    if ev.headers.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
        return Input::FarAnswered { uniqueid: uniqueid.to_string() };
    }
    // Reason is the AST_CONTROL code that ended the dial attempt.
    let reason = match ev.headers.get("Reason").unwrap_or("") {
        "1" => "hung up before answer",
        "3" => "no answer",
        "5" => "busy",
        "8" => "congestion",
        "0" => "no such endpoint or channel could not be created",
        _ => "failed",
    };
    // With a ChannelId the far channel exists once dialling started; its Hangup event then
    // follows with the real cause. No Uniqueid means no channel was ever made.
    let no_channel = ev.headers.get("Uniqueid").is_none_or(|u| u.is_empty() || u == "<null>");
    Input::FarFailed { uniqueid: uniqueid.to_string(), reason: reason.to_string(), no_channel }
}

/// The AMI action that carries out a session command.
pub fn action_for(cmd: &Command, cfg: &Config) -> Action {
    match cmd {
        Command::Assign { uniqueid, session, bridge, group, preferred, alignment } => {
            let a = Action::new(action::ASSIGN)
                .header(header::UNIQUEID, uniqueid)
                .header(header::SESSION, &session.0)
                .header(header::BRIDGE, bridge)
                .header(header::GROUP, group)
                .header(header::PREFERRED, preferred.as_str());
            // Without the header the module's handoff.conf decides (`sessions.alignment` unset).
            match alignment {
                Some(al) => a.header(header::ALIGNMENT, al.as_str()),
                None => a,
            }
        }
        Command::Refuse { uniqueid, reason } => {
            Action::new(action::REFUSE).header(header::UNIQUEID, uniqueid).header(header::REASON, reason)
        }
        Command::OriginateFar { session, uniqueid, number, bridge, caller_id } => {
            let mut a = Action::new("Originate")
                .header("Channel", format!("PJSIP/{number}@{}", cfg.far.endpoint))
                .header("Context", FAR_CONTEXT)
                .header("Exten", FAR_EXTEN)
                .header("Priority", "1")
                .header("Timeout", (u64::from(cfg.far.answer_timeout_s) * 1000).to_string())
                .header("ChannelId", uniqueid)
                .header("Variable", format!("HANDOFF_BRIDGE={bridge}"))
                .header("Variable", format!("HANDOFF_SESSION={session}"))
                .header("Async", "true");
            if !caller_id.is_empty() {
                a = a.header("CallerID", caller_id);
            }
            a
        }
        Command::Hangup { uniqueid, cause } => {
            Action::new("Hangup").header("Channel", uniqueid).header("Cause", cause.to_string())
        }
    }
}

/// The endpoint part of a PJSIP channel name (`PJSIP/alice-app-0000001a` → `alice-app`).
pub(super) fn endpoint_of(channel: &str) -> &str {
    let rest = channel.strip_prefix("PJSIP/").unwrap_or(channel);
    rest.rsplit_once('-').map(|(e, _)| e).unwrap_or(rest)
}

/// The channels of a `CoreShowChannels` list in PBX-neutral terms: a channel running
/// `ConfBridge` is in the conference named by its first argument; the endpoint is the PJSIP
/// endpoint in its name.
pub fn channels_from_list(channels: &[Event]) -> Vec<PbxChannel> {
    channels
        .iter()
        .filter_map(|ch| {
            let (uniqueid, channel) = (ch.get("Uniqueid")?, ch.get("Channel")?);
            let conference = ch
                .get("Application")
                .filter(|a| a.eq_ignore_ascii_case("ConfBridge"))
                .and_then(|_| ch.get("ApplicationData"))
                .map(|d| d.split(',').next().unwrap_or("").trim().to_string())
                .filter(|b| !b.is_empty());
            Some(PbxChannel {
                uniqueid: uniqueid.to_string(),
                channel: channel.to_string(),
                conference,
                endpoint: endpoint_of(channel).to_string(),
                caller: ch.get("CallerIDNum").unwrap_or("").to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Alignment, SessionId};

    fn assign(alignment: Option<Alignment>) -> Command {
        Command::Assign {
            uniqueid: "1700.5".into(),
            session: SessionId("ab-1".into()),
            bridge: "handoff-ab-1".into(),
            group: "ab-1/alice".into(),
            preferred: Path::Carrier,
            alignment,
        }
    }

    #[test]
    fn an_assign_carries_the_alignment_header_only_when_the_rule_sets_it() {
        let cfg = Config::parse("ami:\n  username: handoffd\n  secret: s3cret\n", "t.yaml").unwrap();
        let a = action_for(&assign(None), &cfg);
        assert_eq!(a.name(), action::ASSIGN);
        assert_eq!((a.get(header::GROUP), a.get(header::PREFERRED)), (Some("ab-1/alice"), Some("carrier")));
        assert_eq!(a.get(header::ALIGNMENT), None);
        let text = String::from_utf8(a.encode().unwrap()).unwrap();
        assert!(!text.contains("Alignment:"), "{text}");
        for (al, want) in [
            (Alignment::Aligned, "aligned"),
            (Alignment::LowLatency, "low-latency"),
            (Alignment::Switching, "switching"),
        ] {
            let a = action_for(&assign(Some(al)), &cfg);
            assert_eq!(a.get(header::ALIGNMENT), Some(want));
            let text = String::from_utf8(a.encode().unwrap()).unwrap();
            assert!(text.contains(&format!("\r\nAlignment: {want}\r\n")), "{text}");
        }
    }
}
