//! The AMI events the module raises, and what each carries (names from `handoff-vocab`;
//! docs/ami.md is the users' reference): a leg arriving in, refused by or leaving `Handoff()`, a leg stalling, recovering
//! or taking over the mix, a device group's legs aligned or not. Built as data ([`Event`]) under
//! the registry's lock and raised after it is released.

use crate::align::{Estimate, Unaligned};
use crate::asterisk::{manager_event, EventClass};
use crate::frame_clock::{Path, Report, SwitchReason};
use handoff_vocab::{event, header, value};

/// One AMI event: its name and headers.
#[derive(Debug)]
pub struct Event {
    pub name: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Event {
    fn new(name: &'static str, headers: Vec<(&'static str, String)>) -> Self {
        Self { name, headers }
    }

    /// Sends it to every AMI listener of the `call` class.
    pub fn raise(&self) {
        let h: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        manager_event(EventClass::Call, self.name, &h);
    }
}

fn ms(ns: u64) -> String {
    (ns / 1_000_000).to_string()
}

/// What a leg waiting in `Handoff()` tells the controller about itself.
pub struct Arrival<'a> {
    pub channel: &'a str,
    pub uniqueid: &'a str,
    pub caller: &'a str,
    pub endpoint: &'a str,
    pub path: &'a str,
    pub far: &'a str,
    pub token: &'a str,
    /// The kind of secret the leg presented (`pin`, `ticket`, or "").
    pub secret: &'a str,
}

/// `HandoffLegArrived`: a leg waits in `Handoff()` for the controller's decision.
pub fn leg_arrived(a: &Arrival<'_>) -> Event {
    Event::new(
        event::LEG_ARRIVED,
        vec![
            (header::CHANNEL, a.channel.into()),
            (header::UNIQUEID, a.uniqueid.into()),
            (header::CALLER_ID_NUM, a.caller.into()),
            (header::ENDPOINT, a.endpoint.into()),
            (header::PATH, a.path.into()),
            (header::FAR, a.far.into()),
            (header::TOKEN, a.token.into()),
            (header::SECRET, a.secret.into()),
        ],
    )
}

/// `HandoffLegRefused`: the controller refused a waiting leg.
pub fn leg_refused(channel: &str, uniqueid: &str, reason: &str) -> Event {
    Event::new(
        event::LEG_REFUSED,
        vec![(header::CHANNEL, channel.into()), (header::UNIQUEID, uniqueid.into()), (header::REASON, reason.into())],
    )
}

/// `HandoffLegAbandoned`: a leg left `Handoff()` undecided (`timeout` or `hangup`).
pub fn leg_abandoned(channel: &str, uniqueid: &str, label: &str) -> Event {
    Event::new(
        event::LEG_ABANDONED,
        vec![(header::CHANNEL, channel.into()), (header::UNIQUEID, uniqueid.into()), (header::REASON, label.into())],
    )
}

/// The device group an event of the frame clock is about.
pub struct GroupLabel<'a> {
    pub session: &'a str,
    pub key: &'a str,
}

impl GroupLabel<'_> {
    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![(header::SESSION, self.session.to_string()), (header::GROUP, self.key.to_string())]
    }
}

/// `HandoffLegStalled`, `HandoffLegRecovered` or `HandoffLegSwitched` for a frame clock report
/// about the leg whose Uniqueid is `uniqueid`.
pub fn report(group: &GroupLabel<'_>, report: Report, uniqueid: String) -> Event {
    let mut h = group.headers();
    match report {
        Report::Stalled { path, last_frame_ns, now_ns, .. } => {
            h.push((header::PATH, path.as_str().into()));
            h.push((header::UNIQUEID, uniqueid));
            h.push((header::LAST_FRAME_MS, ms(last_frame_ns)));
            h.push((header::DETECTED_MS, ms(now_ns)));
            h.push((header::SILENT_MS, ms(now_ns - last_frame_ns)));
            Event::new(event::LEG_STALLED, h)
        }
        Report::Recovered { path, first_frame_ns, .. } => {
            h.push((header::PATH, path.as_str().into()));
            h.push((header::UNIQUEID, uniqueid));
            h.push((header::FIRST_FRAME_MS, ms(first_frame_ns)));
            Event::new(event::LEG_RECOVERED, h)
        }
        Report::Switched { from, to, at_ns, gap_ns, reason, .. } => {
            let reason = match reason {
                SwitchReason::First => value::SWITCH_FIRST_FRAMES,
                SwitchReason::Stall => value::SWITCH_STALL,
                SwitchReason::PreferredBack => value::SWITCH_PREFERRED_RECOVERED,
            };
            h.push((header::FROM, from.map(Path::as_str).unwrap_or("none").into()));
            h.push((header::TO, to.as_str().into()));
            h.push((header::UNIQUEID, uniqueid));
            h.push((header::AT_MS, ms(at_ns)));
            h.push((header::GAP_MS, ms(gap_ns)));
            h.push((header::REASON, reason.into()));
            Event::new(event::LEG_SWITCHED, h)
        }
    }
}

/// `HandoffAlignment` with `Status: aligned`: the offset between the group's legs was measured.
pub fn aligned(group: &GroupLabel<'_>, est: &Estimate) -> Event {
    let mut h = group.headers();
    h.push((header::STATUS, value::ALIGNED.into()));
    h.push((header::OFFSET_MS, format!("{:.1}", est.delay_ns as f64 / 1e6)));
    h.push((header::LATER, est.later().as_str().into()));
    h.push((header::RESIDUAL_MS, format!("{:.3}", f64::from(est.residual_samples) / 8.0)));
    h.push((header::SCORE, format!("{:.2}", est.score)));
    Event::new(event::ALIGNMENT, h)
}

/// `HandoffAlignment` with `Status: switching`: the legs are not aligned, and why.
pub fn unaligned(group: &GroupLabel<'_>, why: &Unaligned) -> Event {
    let mut h = group.headers();
    h.push((header::STATUS, value::SWITCHING.into()));
    h.push((header::REASON, why.reason()));
    Event::new(event::ALIGNMENT, h)
}

/// `HandoffReconnectTone`: every leg of the group fell silent and the far party hears the
/// reconnecting tone (`Status: started`, `SilentMs`), or a leg delivers again and the tone
/// stopped (`Status: stopped`, `SilentMs` 0.., `LastedMs`).
pub fn reconnect_tone(group: &GroupLabel<'_>, started: bool, silent_ns: u64, lasted_ns: u64) -> Event {
    let mut h = group.headers();
    h.push((header::STATUS, if started { value::TONE_STARTED } else { value::TONE_STOPPED }.into()));
    h.push((header::SILENT_MS, ms(silent_ns)));
    if !started {
        h.push((header::LASTED_MS, ms(lasted_ns)));
    }
    Event::new(event::RECONNECT_TONE, h)
}
