//! The Asterisk side of the session core (sans-I/O): AMI events become session inputs, session
//! commands become AMI actions. The AMI actions and events of `res_handoff.so` are listed in
//! `docs/ami.md`; the dial plan contexts named here are in `dialplans/extensions_handoff.conf`.

use crate::ami::{Action, Event};
use crate::config::Config;
use crate::session::{Command, Input, LegArrival, Path};

/// Dial plan context and extension the far party's channel runs after it answers.
pub const FAR_CONTEXT: &str = "handoff-far";
pub const FAR_EXTEN: &str = "join";

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

/// Turns an AMI event into a session input; `Ok(None)` for events the core does not need.
/// `OriginateResponse` is left to the caller, which knows which originate it answers.
pub fn input_from_event(ev: &Event) -> Result<Option<Input>, EventError> {
    match ev.name.as_str() {
        "HandoffLegArrived" => {
            let path_text = optional(ev, "Path");
            let path = Path::parse(&path_text).ok_or_else(|| EventError::Invalid {
                event: ev.name.clone(),
                header: "Path",
                value: path_text.clone(),
            })?;
            Ok(Some(Input::LegArrived(LegArrival {
                uniqueid: required(ev, "Uniqueid")?,
                channel: required(ev, "Channel")?,
                caller: optional(ev, "CallerIDNum"),
                endpoint: optional(ev, "Endpoint"),
                path,
                far: required(ev, "Far")?,
                token: optional(ev, "Token"),
            })))
        }
        "HandoffLegStalled" => Ok(Some(Input::LegStalled {
            uniqueid: required(ev, "Uniqueid")?,
            silent_ms: optional(ev, "SilentMs").parse().unwrap_or(0),
        })),
        "HandoffLegRecovered" => Ok(Some(Input::LegRecovered { uniqueid: required(ev, "Uniqueid")? })),
        "ConfbridgeJoin" => Ok(Some(Input::LegJoined { uniqueid: required(ev, "Uniqueid")? })),
        "HandoffLegSwitched" => {
            let to_text = optional(ev, "To");
            let to = Path::parse(&to_text).ok_or_else(|| EventError::Invalid {
                event: ev.name.clone(),
                header: "To",
                value: to_text.clone(),
            })?;
            Ok(Some(Input::LegSwitched { uniqueid: required(ev, "Uniqueid")?, to, reason: optional(ev, "Reason") }))
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
        Command::Assign { uniqueid, session, bridge, group, preferred } => Action::new("HandoffAssign")
            .header("Uniqueid", uniqueid)
            .header("Session", &session.0)
            .header("Bridge", bridge)
            .header("Group", group)
            .header("Preferred", preferred.as_str()),
        Command::Refuse { uniqueid, reason } => {
            Action::new("HandoffRefuse").header("Uniqueid", uniqueid).header("Reason", reason)
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
fn endpoint_of(channel: &str) -> &str {
    let rest = channel.strip_prefix("PJSIP/").unwrap_or(channel);
    rest.rsplit_once('-').map(|(e, _)| e).unwrap_or(rest)
}

/// Reads the sessions still running in Asterisk from a `CoreShowChannels` list: every channel in
/// a ConfBridge named `<prefix><session>`, the far party recognised by its `<session>-far`
/// Uniqueid, the client legs' devices and paths from the registry.
pub fn found_sessions(
    channels: &[Event],
    sessions: &crate::session::Sessions,
    prefix: &str,
) -> Vec<crate::session::Found> {
    use crate::session::{Found, SessionId};
    use std::collections::BTreeMap;
    let mut by_bridge: BTreeMap<String, Found> = BTreeMap::new();
    for ch in channels {
        if !ch.get("Application").is_some_and(|a| a.eq_ignore_ascii_case("ConfBridge")) {
            continue;
        }
        let data = ch.get("ApplicationData").unwrap_or("");
        let bridge = data.split(',').next().unwrap_or("").trim();
        let Some(sid) = bridge.strip_prefix(prefix).filter(|s| !s.is_empty()) else { continue };
        let (Some(uniqueid), Some(channel)) = (ch.get("Uniqueid"), ch.get("Channel")) else { continue };
        let found = by_bridge.entry(bridge.to_string()).or_insert_with(|| Found {
            session: SessionId(sid.to_string()),
            bridge: bridge.to_string(),
            device: String::new(),
            far: None,
            legs: Vec::new(),
            far_number: String::new(),
        });
        if uniqueid == format!("{sid}-far") {
            found.far = Some(uniqueid.to_string());
            continue;
        }
        let caller = ch.get("CallerIDNum").unwrap_or("");
        if let Some((device, path)) = sessions.device_of_channel(endpoint_of(channel), caller) {
            found.device = device.id.clone();
            found.legs.push((uniqueid.to_string(), channel.to_string(), path));
        }
    }
    by_bridge.into_values().filter(|f| !f.device.is_empty() || f.far.is_some()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::Headers;
    use crate::session::{Device, Path, Rules, Sessions};

    fn channel(uniqueid: &str, name: &str, app: &str, data: &str, cid: &str) -> Event {
        let mut h = Headers::new();
        for (k, v) in [
            ("Event", "CoreShowChannel"),
            ("Channel", name),
            ("Uniqueid", uniqueid),
            ("Application", app),
            ("ApplicationData", data),
            ("CallerIDNum", cid),
        ] {
            h.push(k, v);
        }
        Event { name: "CoreShowChannel".into(), headers: h }
    }

    #[test]
    fn running_sessions_are_read_back_from_the_channel_list() {
        let dev = Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            endpoint: Some("alice-app".into()),
            number: Some("+15550001".into()),
            caller_id: None,
        };
        let core = Sessions::new(Rules::default(), vec![dev], "n");
        let list = vec![
            channel(
                "1.1",
                "PJSIP/alice-app-00000000",
                "ConfBridge",
                "handoff-ab-1,handoff_bridge,handoff_user",
                "alice-app",
            ),
            channel(
                "ab-1-far",
                "PJSIP/far-00000001",
                "ConfBridge",
                "handoff-ab-1,handoff_bridge,handoff_far",
                "+15550001",
            ),
            channel(
                "1.3",
                "PJSIP/carrier-00000002",
                "ConfBridge",
                "handoff-ab-1,handoff_bridge,handoff_user",
                "+15550001",
            ),
            channel("2.1", "PJSIP/bob-00000003", "Dial", "PJSIP/200", "200"),
            channel("3.1", "PJSIP/x-00000004", "ConfBridge", "sales,default_bridge", "300"),
        ];
        let found = found_sessions(&list, &core, "handoff-");
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(
            (f.session.0.as_str(), f.bridge.as_str(), f.device.as_str()),
            ("ab-1", "handoff-ab-1", "alice-phone")
        );
        assert_eq!(f.far.as_deref(), Some("ab-1-far"));
        assert_eq!(
            f.legs.iter().map(|(u, _, p)| (u.as_str(), *p)).collect::<Vec<_>>(),
            vec![("1.1", Path::Data), ("1.3", Path::Carrier)]
        );
        assert_eq!(endpoint_of("PJSIP/alice-app-0000001a"), "alice-app");
    }
}
