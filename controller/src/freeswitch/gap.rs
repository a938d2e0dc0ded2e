//! The failover gap on FreeSWITCH, from FreeSWITCH's own event timestamps.
//!
//! A data leg whose RTP stops is hung up by FreeSWITCH `media_timeout` ms after its last
//! packet (`Hangup-Cause: MEDIA_TIMEOUT`; the `CHANNEL_HANGUP` event carries
//! `variable_media_timeout` and `Event-Date-Timestamp`). The driver then unmutes the device's
//! other leg, and mod_conference confirms with an `unmute-member` event, stamped by the same
//! clock. So the far party heard no voice from the device for at least
//!
//! ```text
//!   gap = media_timeout + (unmute-member's Event-Date-Timestamp − CHANNEL_HANGUP's)
//! ```
//!
//! This is a lower bound: FreeSWITCH notices the timeout some tens of ms after `media_timeout`
//! (41–62 ms in recordings 23–25: cut → hangup 341–362 ms with `media_timeout=300`), and that
//! lag is in no event. `Event-Date-Timestamp` also moves in ~20 ms steps on the lab host.

use crate::esl::{CommandId, Event};
use std::collections::HashMap;

/// A data leg hung up by `media_timeout`: its failover does not wait out the event reorder
/// window (it saves the window's 20 ms; the order of events is kept).
pub fn is_media_timeout(e: &Event) -> bool {
    e.header("Event-Name") == Some("CHANNEL_HANGUP") && e.header("Hangup-Cause") == Some("MEDIA_TIMEOUT")
}

/// A failover waiting for its `unmute-member` event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// The unmute command, to give up if FreeSWITCH refuses it.
    command: Option<CommandId>,
    /// `Event-Date-Timestamp` (µs) of the lost leg's CHANNEL_HANGUP.
    hangup_us: u64,
    media_timeout_ms: u64,
}

/// Failovers being measured, by (conference, member id) of the leg unmuted.
#[derive(Debug, Default)]
pub struct GapMeter {
    pending: HashMap<(String, u64), Pending>,
}

/// What a lost leg's CHANNEL_HANGUP tells about the silence: its timestamp and the
/// `media_timeout` that ended it; `None` when the leg did not end by a media timeout.
pub fn silence_start(hangup: &Event) -> Option<(u64, u64)> {
    if hangup.header("Hangup-Cause") != Some("MEDIA_TIMEOUT") {
        return None;
    }
    let ts = hangup.header("Event-Date-Timestamp")?.parse().ok()?;
    let timeout = hangup.header("variable_media_timeout")?.parse().ok()?;
    Some((ts, timeout))
}

impl GapMeter {
    /// The leg `member` of `conference` was unmuted (by `command`) to replace a leg whose
    /// silence began as `silence_start` says.
    pub fn started(&mut self, conference: &str, member: u64, command: Option<CommandId>, start: (u64, u64)) {
        let p = Pending { command, hangup_us: start.0, media_timeout_ms: start.1 };
        self.pending.insert((conference.to_string(), member), p);
    }

    /// An `unmute-member` event: the gap in ms if it ends a failover being measured.
    pub fn unmuted(&mut self, e: &Event) -> Option<u64> {
        let conference = e.header("Conference-Name")?;
        let member: u64 = e.header("Member-ID")?.parse().ok()?;
        let ts: u64 = e.header("Event-Date-Timestamp")?.parse().ok()?;
        let p = self.pending.remove(&(conference.to_string(), member))?;
        Some(p.media_timeout_ms + ts.saturating_sub(p.hangup_us) / 1000)
    }

    /// A command failed: true if it was a measured unmute (the failover is then counted
    /// without a gap).
    pub fn failed(&mut self, command: CommandId) -> bool {
        let before = self.pending.len();
        self.pending.retain(|_, p| p.command != Some(command));
        before != self.pending.len()
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
