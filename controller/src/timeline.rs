//! A session's timeline: what happened to one call, in order, as typed marks (sans-I/O).
//!
//! The session core ([`crate::session`]) tags each timeline record with a [`Mark`] (a leg came
//! up or went, the mix switched legs and how long the far party heard nothing, a stall, the far
//! party ringing or answering, music on hold, a move, the end and its cause). The daemon stamps
//! them with wall-clock time ([`Entry`]) and the store keeps them per session, bounded
//! ([`crate::store::Store::timeline`]); the audit log's move records of the session are merged
//! in ([`Timeline::merge_audit`]). [`text`] prints a timeline as lines and [`svg::render`]
//! draws it as lanes on a time axis (`handoffctl timeline SESSION [--svg FILE]`,
//! `GET /v1/admin/timeline/<id>`). Nothing here reads a clock, a file or a socket.
//!
//! # Files
//! `timeline.rs` (this file): the marks, entries, bounds, the audit merge and the text;
//! `timeline/svg.rs`: the picture's layout, sizes and colours, with `timeline/svg/story.rs`
//! (the entries read into lanes), `timeline/svg/draw.rs` (bars and marks on the time axis) and
//! `timeline/svg/text.rs` (the legend and labels).

pub mod svg;

pub use svg::render;

use crate::store::{AuditAction, AuditRecord, LegPath, Outcome, UnixMs};
use serde::{Deserialize, Serialize};

/// Entries a session's stored timeline keeps: past it, the oldest entries after the first
/// [`TIMELINE_HEAD`] are dropped and counted in [`Dropped`].
pub const TIMELINE_MAX_ENTRIES: u64 = 2_000;

/// The first entries of a session (its opening, the far call, the answer) are never dropped.
pub const TIMELINE_HEAD: u64 = 200;

/// What one timeline record says, typed (its text says it in words).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mark {
    /// Anything the picture has no lane for (the text still says it).
    Note,
    /// The session opened with its first client leg.
    Opened { device: String, user: String, leg: String, path: LegPath, channel: String },
    /// Another client leg of the session's device joined (paired, rejoined, replaced a
    /// stalled one).
    LegUp { leg: String, path: LegPath, channel: String, device: String },
    /// A client leg ended (hung up, lost, replaced); `cause` in words.
    LegDown { leg: String, cause: String },
    /// The module saw no voice frame on the leg for `silent_ms`.
    LegStalled { leg: String, silent_ms: u64 },
    /// A stalled leg delivers frames again.
    LegRecovered { leg: String },
    /// The module moved the mix to `leg`; `gap_ms`: how long the mix had no frame (the
    /// silence the far party heard), when the PBX measured it.
    Switched { leg: String, to: LegPath, gap_ms: Option<u64>, reason: String },
    /// The far party is being called (ringing).
    FarCalled { number: String },
    /// The far party answered.
    FarAnswered,
    /// The far call could not be placed.
    FarFailed { reason: String },
    /// The far party's channel ended.
    FarGone { cause: String },
    /// Every client leg is gone: the far party hears music on hold for `grace_ms`.
    OnHold { grace_ms: u64 },
    /// The call moved to another device, whose `leg` joins.
    Moved { from: String, to: String, leg: String, path: LegPath, channel: String },
    /// Adopted from the PBX after handoffd (re)started: its legs as found.
    Adopted { device: String, legs: Vec<(String, LegPath, String)>, far_present: bool },
    /// A move step from the audit log (ticket issued, ticket redeemed, a barred device
    /// refused).
    Audit { action: AuditAction, outcome: Outcome, device: Option<String> },
    /// The session is ending, and why.
    Ending { reason: String },
    /// Every channel of the session is gone.
    Ended,
}

/// One timeline entry: when (wall clock), what (typed), and the record's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: UnixMs,
    pub mark: Mark,
    pub text: String,
}

/// Entries a bounded timeline dropped: how many, over which span, how many were switches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: u64,
    pub from: Option<UnixMs>,
    pub to: Option<UnixMs>,
    pub switches: u64,
    pub stalls: u64,
}

impl Dropped {
    /// Counts one dropped entry.
    pub fn add(&mut self, e: &Entry) {
        self.count += 1;
        self.from = Some(self.from.map_or(e.at, |f| f.min(e.at)));
        self.to = Some(self.to.map_or(e.at, |t| t.max(e.at)));
        match e.mark {
            Mark::Switched { .. } => self.switches += 1,
            Mark::LegStalled { .. } => self.stalls += 1,
            _ => {}
        }
    }
}

/// One session's timeline, oldest entry first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub session: String,
    pub entries: Vec<Entry>,
    /// What the store did not keep (see [`TIMELINE_MAX_ENTRIES`]).
    #[serde(default)]
    pub dropped: Dropped,
    /// For a session still running: the time the picture is drawn at (its open lanes run to
    /// it); `None` draws them to the last entry.
    #[serde(default)]
    pub until: Option<UnixMs>,
}

/// A move step in words, by the audit record's action and outcome: short (the picture's
/// label) and long (the text's line).
pub(crate) fn move_step(action: AuditAction, outcome: Outcome) -> (&'static str, &'static str) {
    match (action, outcome) {
        (AuditAction::MoveRequest, Outcome::Granted) => ("ticket issued", "move ticket issued"),
        (AuditAction::MoveRequest, _) => ("move refused", "move request refused"),
        (AuditAction::TicketRedeem, Outcome::Granted) => ("new device joins", "ticket redeemed: new device joins"),
        (AuditAction::TicketRedeem, _) => ("ticket refused", "ticket refused"),
        (AuditAction::Rejoin, _) => ("old device barred", "old device barred"),
        _ => ("move step", "move"),
    }
}

impl Timeline {
    /// Merges the session's move records from the audit log (ticket issued, ticket
    /// redeemed: the new device joins, a barred device refused), in time order. Records of
    /// other sessions and non-move actions are left out.
    pub fn merge_audit(&mut self, records: &[AuditRecord]) {
        for r in records {
            if r.session.as_deref() != Some(self.session.as_str()) || !r.action.is_move() {
                continue;
            }
            let (_, what) = move_step(r.action, r.outcome);
            let mut text = format!("{what} ({})", r.actor);
            if let Some(d) = &r.device {
                text.push_str(&format!(", device {d}"));
            }
            if let Some(why) = &r.reason {
                text.push_str(&format!(": {why}"));
            }
            let entry = Entry {
                at: r.at,
                mark: Mark::Audit { action: r.action, outcome: r.outcome, device: r.device.clone() },
                text,
            };
            // After every entry of the same millisecond: the audit record follows the decision.
            let i = self.entries.partition_point(|e| e.at <= entry.at);
            self.entries.insert(i, entry);
        }
    }

    /// When the timeline starts and ends (`until` if later than the last entry).
    pub fn span(&self) -> Option<(UnixMs, UnixMs)> {
        let first = self.entries.first()?.at;
        let last = self.entries.iter().map(|e| e.at).max().unwrap_or(first);
        Some((first, self.until.map_or(last, |u| u.max(last))))
    }
}

/// `HH:MM:SS.mmm` (UTC) of a wall-clock time.
pub fn clock(t: UnixMs) -> String {
    let s = t.0 / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s % 3600 / 60, s % 60, t.0 % 1000)
}

/// The timeline as text: a header, then one line per entry (`HH:MM:SS.mmm  +seconds  what`),
/// with control characters escaped.
pub fn text(t: &Timeline) -> String {
    let mut out = format!("session {}: {} entries", t.session, t.entries.len());
    if t.dropped.count > 0 {
        out.push_str(&format!(
            ", {} older entries not kept ({} switches, {} stalls, {} to {})",
            t.dropped.count,
            t.dropped.switches,
            t.dropped.stalls,
            t.dropped.from.map(clock).unwrap_or_default(),
            t.dropped.to.map(clock).unwrap_or_default()
        ));
    }
    out.push('\n');
    let start = t.entries.first().map(|e| e.at).unwrap_or_default();
    for e in &t.entries {
        let rel = e.at.ms_since(start);
        let line = format!("{} UTC  +{}.{:03} s  {}", clock(e.at), rel / 1000, rel % 1000, e.text);
        out.extend(line.chars().flat_map(|c| {
            let esc: Vec<char> = if c.is_control() { c.escape_default().collect() } else { vec![c] };
            esc
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, mark: Mark, text: &str) -> Entry {
        Entry { at: UnixMs(at), mark, text: text.into() }
    }

    #[test]
    fn audit_moves_of_the_session_merge_in_time_order() {
        let mut t = Timeline {
            session: "s1".into(),
            entries: vec![entry(1_000, Mark::FarAnswered, "answered"), entry(5_000, Mark::Ended, "ended")],
            ..Default::default()
        };
        let issued = AuditRecord::new(UnixMs(2_000), "api:x", AuditAction::MoveRequest, Outcome::Granted)
            .session("s1")
            .device("b");
        let other = AuditRecord::new(UnixMs(2_500), "api:x", AuditAction::MoveRequest, Outcome::Granted).session("s2");
        let not_a_move =
            AuditRecord::new(UnixMs(2_600), "handoffd", AuditAction::SessionEnd, Outcome::Done).session("s1");
        let barred = AuditRecord::new(UnixMs(3_000), "device:a", AuditAction::Rejoin, Outcome::Refused)
            .session("s1")
            .device("a")
            .reason("barred");
        t.merge_audit(&[barred, issued, other, not_a_move]);
        let texts: Vec<&str> = t.entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts[1].starts_with("move ticket issued") && texts[1].contains("device b"), "{texts:?}");
        assert!(texts[2].starts_with("old device barred") && texts[2].ends_with(": barred"), "{texts:?}");
        assert_eq!(t.span(), Some((UnixMs(1_000), UnixMs(5_000))));
    }

    #[test]
    fn text_lines_are_relative_and_escaped() {
        let t = Timeline {
            session: "s1".into(),
            entries: vec![
                entry(86_400_000 + 3_723_004, Mark::Note, "a"),
                entry(86_400_000 + 3_725_504, Mark::Note, "b\nc"),
            ],
            dropped: Dropped { count: 3, switches: 2, ..Default::default() },
            until: None,
        };
        let s = text(&t);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(lines[0].contains("3 older entries not kept (2 switches"), "{s}");
        assert_eq!(lines[1], "01:02:03.004 UTC  +0.000 s  a");
        assert_eq!(lines[2], r"01:02:05.504 UTC  +2.500 s  b\nc");
    }

    #[test]
    fn dropped_counts_span_and_kinds() {
        let mut d = Dropped::default();
        d.add(&entry(
            9,
            Mark::Switched { leg: "l".into(), to: LegPath::Data, gap_ms: None, reason: "stall".into() },
            "",
        ));
        d.add(&entry(4, Mark::LegStalled { leg: "l".into(), silent_ms: 1 }, ""));
        d.add(&entry(6, Mark::Note, ""));
        assert_eq!((d.count, d.switches, d.stalls, d.from, d.to), (3, 1, 1, Some(UnixMs(4)), Some(UnixMs(9))));
    }
}
