//! A leg's arrival on FreeSWITCH: the `CHANNEL_PARK` of a channel the dial plan marked
//! (`handoff_far`, `handoff_path`, `handoff_token`) read into a session input, or the leg
//! refused (sent to `esl.refused_extension` with `handoff_reason`).

use super::{clean, pin, user_of, FreeSwitchDriver, EMPTY_PIN_REASON};
use crate::esl::Event;
use crate::session::{Input, LegArrival, Millis, Path};
use tracing::warn;

impl FreeSwitchDriver {
    pub(super) fn on_park(&mut self, e: &Event, now: Millis) {
        let Some(far) = e.header("variable_handoff_far").map(str::trim).filter(|f| !f.is_empty()) else { return };
        let uuid = e.unique_id().unwrap_or("").to_string();
        if uuid.is_empty() || self.legs.contains_key(&uuid) || self.arrivals.contains_key(&uuid) {
            return;
        }
        let path_text = e.header("variable_handoff_path").unwrap_or("data");
        let Some(path) = Path::parse(path_text) else {
            let reason = format!("the dial plan set handoff_path to '{}': must be data or carrier", clean(path_text));
            warn!("FreeSWITCH channel {uuid}: {reason}");
            return self.refuse(&uuid, &reason, now);
        };
        let channel = e.header("Channel-Name").unwrap_or("").to_string();
        let endpoint = e
            .header("variable_user_name")
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| user_of(&channel).to_string());
        let token: String = e
            .header("variable_handoff_token")
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(80)
            .collect();
        if pin::is_empty_pin(&token) {
            // No PIN at all (the prompt returned no digits): refused here, never checked, so
            // it does not count towards the lockout.
            warn!("{}", pin::empty_pin_log(&uuid, e));
            self.api(format!("uuid_setvar {uuid} handoff_token"), now);
            return self.refuse(&uuid, EMPTY_PIN_REASON, now);
        }
        if token.starts_with("pin-") {
            // A PIN keyed in for a move: read once, then gone from the channel's variables.
            self.api(format!("uuid_setvar {uuid} handoff_token"), now);
        }
        self.arrivals.insert(uuid.clone(), path);
        self.input(Input::LegArrived(LegArrival {
            uniqueid: uuid,
            channel,
            caller: e.header("Caller-Caller-ID-Number").unwrap_or("").to_string(),
            endpoint,
            path,
            far: far.to_string(),
            token,
        }));
    }

    pub(super) fn refuse(&mut self, uuid: &str, reason: &str, now: Millis) {
        self.api(format!("uuid_setvar {uuid} handoff_reason {}", clean(reason)), now);
        self.api(format!("uuid_setvar {uuid} handoff_status REFUSED"), now);
        let (ext, ctx) = (self.esl.refused_extension.clone(), self.esl.context.clone());
        self.api(format!("uuid_transfer {uuid} {ext} XML {ctx}"), now);
    }
}
