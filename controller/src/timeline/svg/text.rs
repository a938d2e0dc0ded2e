//! The picture's words: the legend, the time axis's steps and labels, the date and duration of
//! the title, and labels clipped to fit.

use super::{ANSWERED, CARRIER_FEED, CARRIER_UP, DATA_FEED, DATA_UP, END, HOLD, MOVE, RINGING, STALL};
use crate::store::UnixMs;
use crate::timeline::clock;
use std::fmt::Write as _;

pub(super) fn legend(s: &mut String, y: f64) {
    let items: [(&str, &str, &str); 13] = [
        ("bar", DATA_UP, "data leg up"),
        ("bar", DATA_FEED, "data leg feeds the conference"),
        ("bar", CARRIER_UP, "carrier leg up"),
        ("bar", CARRIER_FEED, "carrier leg feeds the conference"),
        ("bar", STALL, "stall: no voice frames"),
        ("tick", END, "leg down (cause in tooltip)"),
        ("switch", END, "switch (label: silence the far party heard)"),
        ("bar", RINGING, "far party ringing"),
        ("bar", ANSWERED, "far party answered"),
        ("bar", HOLD, "music on hold (grace)"),
        ("diamond", MOVE, "move step (+n: n more in one spot)"),
        ("end", END, "end of the call, with its cause"),
        ("both", "", "both paths fed (switches closer than the picture shows)"),
    ];
    let _ = writeln!(s, r#"<text x="10" y="{:.1}" font-weight="bold">Legend</text>"#, y + 12.0);
    for (i, (kind, colour, text)) in items.iter().enumerate() {
        let (col, row) = (i % 4, i / 4);
        let x = 80.0 + col as f64 * 280.0;
        let yy = y + row as f64 * 22.0;
        let sw = match *kind {
            "bar" => format!(r#"<rect x="{x}" y="{yy}" width="22" height="12" fill="{colour}"/>"#),
            "tick" => format!(r#"<path d="M{:.1},{yy} v12" stroke="{colour}" stroke-width="2"/>"#, x + 11.0),
            "switch" => format!(r#"<path d="M{:.1},{:.1} l4,-6 h-8 z" fill="{colour}"/>"#, x + 11.0, yy + 10.0),
            "both" => format!(r#"<rect x="{x}" y="{yy}" width="22" height="12" fill="url(#both)"/>"#),
            "diamond" => format!(r#"<path d="M{:.1},{yy} l6,6 l-6,6 l-6,-6 z" fill="{colour}"/>"#, x + 11.0),
            _ => format!(
                r#"<path d="M{:.1},{yy} v12" stroke="{colour}" stroke-width="2" stroke-dasharray="3,2"/>"#,
                x + 11.0
            ),
        };
        let _ = writeln!(s, r#"{sw}<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#, x + 28.0, yy + 10.5, text);
    }
}

/// The grid step (ms) giving at most about ten ticks, and whether labels need tenths.
pub(super) fn tick_step(span: u64) -> (u64, bool) {
    const STEPS: [u64; 18] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000, 21_600_000,
    ];
    let step = STEPS.iter().copied().find(|s| span / s <= 10).unwrap_or(86_400_000);
    (step, step < 1000)
}

pub(super) fn tick_label(t: UnixMs, fine: bool) -> String {
    let c = clock(t);
    if fine {
        c[..10].to_string()
    } else {
        c[..8].to_string()
    }
}

pub(super) fn date(t: UnixMs) -> String {
    t.to_string().chars().take(10).collect()
}

pub(super) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{}.{} s", s, ms % 1000 / 100)
    }
}

/// At most `n` characters (an ellipsis marks a cut).
pub(super) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}
