//! The timeline picture: one call as lanes on a real time axis, as a standalone SVG (sans-I/O).
//!
//! Lanes, top to bottom: one per client leg kind (device × data/carrier; each leg of it a bar
//! from when it came up to when it went, darker while it fed the conference, red while it
//! stalled), the mix (which path fed the conference, each switch with the silence the far
//! party heard), the far party (ringing, answered), music on hold (grace), moves (ticket
//! issued, new device joined, old device barred) and the end with its cause. A legend and
//! UTC times under the axis; no script, no font or image outside the file.
//!
//! However long the call, the picture stays readable and bounded: bars closer than
//! [`MERGE_PX`] merge, point marks share a bin of [`BIN_PX`] and show their count (`×37`), and
//! at most [`MAX_LEG_LANES`] leg lanes are drawn (the rest share the last one).
//!
//! # Files
//! This file lays the picture out (lanes, axis, title) and holds its sizes and colours;
//! `svg/story.rs` reads the entries into intervals and points per lane, `svg/draw.rs` draws them
//! on the time axis (bars, point marks, the mix bar) and `svg/text.rs` writes the legend, the
//! axis labels and the other words.

mod draw;
mod story;
mod text;

use super::{clock, Timeline};
use crate::markup::escape as esc;
use crate::store::UnixMs;
use draw::{bars, colours, mix_bar, points, Scale, Shape};
use std::fmt::Write as _;
use story::Story;
use text::{clip, date, duration, legend, tick_label, tick_step};

const WIDTH: f64 = 1200.0;
const PLOT_X: f64 = 250.0;
const PLOT_W: f64 = 910.0;
const TOP: f64 = 64.0;
const LANE_H: f64 = 30.0;
const BAR_H: f64 = 14.0;
/// Bars closer than this (pixels) are drawn as one.
pub const MERGE_PX: f64 = 2.0;
/// Point marks (switches, stalls, moves) in one bin of this many pixels are drawn as one,
/// with their count.
pub const BIN_PX: f64 = 8.0;
/// Leg lanes drawn; legs of further device/path pairs share the last lane.
pub const MAX_LEG_LANES: usize = 8;

const DATA_UP: &str = "#a6cee3";
const DATA_FEED: &str = "#1f5fa8";
const CARRIER_UP: &str = "#b2df8a";
const CARRIER_FEED: &str = "#2b8a2b";
const STALL: &str = "#e31a1c";
const RINGING: &str = "#fdd49e";
const ANSWERED: &str = "#9e9ac8";
const HOLD: &str = "#fd8d3c";
const MOVE: &str = "#6a3d9a";
const END: &str = "#222222";

/// Draws the timeline as a standalone SVG document (see the module doc). Never panics; an
/// empty timeline gives a picture that says so.
pub fn render(t: &Timeline) -> String {
    let Some((start, end)) = t.span() else {
        return empty(&t.session);
    };
    let scale = Scale { t0: start.0, span: end.0.saturating_sub(start.0).max(1000) };
    let story = Story::read(t, end.0);
    let lanes_n = story.lanes.len() + 4;
    let axis_y = TOP + lanes_n as f64 * LANE_H + 8.0;
    let legend_y = axis_y + 44.0;
    let height = legend_y + 96.0;
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">
<title>handoff session {} timeline</title>
<defs><pattern id="notkept" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#cccccc"/></pattern><pattern id="both" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="4" height="8" fill="{DATA_FEED}"/><rect x="4" width="4" height="8" fill="{CARRIER_FEED}"/></pattern></defs>
<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>
"##,
        esc(&t.session)
    );
    // Title and summary.
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">Session {} · {} · {} to {} UTC ({})</text>"#,
        esc(&t.session),
        date(start),
        clock(start),
        clock(end),
        duration(end.0 - start.0)
    );
    let _ = writeln!(s, r##"<text x="10" y="40" fill="#444444">{}</text>"##, esc(&story.summary()));
    // Lane backgrounds and labels.
    let mut labels: Vec<(String, String)> =
        story.lanes.iter().map(|l| (l.label.clone(), l.sublabel())).collect::<Vec<_>>();
    labels.push(("mix (feeds the conference)".into(), format!("{} switch(es)", story.switches.len())));
    labels.push(("far party".into(), story.far_number.clone()));
    labels.push(("music on hold (grace)".into(), String::new()));
    labels.push(("moves".into(), format!("{} step(s)", story.moves.len())));
    for (i, (label, sub)) in labels.iter().enumerate() {
        let y = lane_y(i);
        let fill = if i % 2 == 0 { "#f4f4f4" } else { "#ffffff" };
        let _ = writeln!(s, r#"<rect x="0" y="{y}" width="{WIDTH}" height="{LANE_H}" fill="{fill}"/>"#);
        let _ = writeln!(s, r#"<text x="10" y="{:.1}">{}</text>"#, y + 13.0, esc(&clip(label, 36)));
        if !sub.is_empty() {
            let _ = writeln!(
                s,
                r##"<text x="10" y="{:.1}" font-size="10" fill="#666666">{}</text>"##,
                y + 25.0,
                esc(&clip(sub, 42))
            );
        }
    }
    // Time grid and axis.
    let (step, fine) = tick_step(scale.span);
    let first_tick = start.0.div_ceil(step) * step;
    let mut tick = first_tick;
    while tick <= end.0 {
        let x = scale.x(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{axis_y}" stroke="#dddddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
            axis_y + 14.0,
            tick_label(UnixMs(tick), fine)
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{PLOT_X}" y1="{axis_y}" x2="{:.1}" y2="{axis_y}" stroke="#000000"/><text x="{PLOT_X}" y="{:.1}" font-size="11" fill="#444444">time (UTC)</text>"##,
        PLOT_X + PLOT_W,
        axis_y + 30.0
    );
    // Not kept: a hatched band.
    if let (Some(from), Some(to)) = (t.dropped.from, t.dropped.to) {
        let (x0, x1) = (scale.x(from.0), scale.x(to.0).max(scale.x(from.0) + 2.0));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="url(#notkept)" opacity="0.8"><title>{} entries not kept</title></rect><text x="{x0:.1}" y="{:.1}" font-size="10" fill="#666666">{} entries not kept ({} switches, {} stalls)</text>"##,
            x1 - x0,
            axis_y - TOP,
            t.dropped.count,
            TOP - 4.0,
            t.dropped.count,
            t.dropped.switches,
            t.dropped.stalls
        );
    }
    // Leg lanes.
    for (i, lane) in story.lanes.iter().enumerate() {
        let y = lane_y(i) + (LANE_H - BAR_H) / 2.0 - 3.0;
        let (up, feed) = colours(lane.path);
        bars(&mut s, &scale, &lane.up, y, BAR_H, up, "leg up");
        bars(&mut s, &scale, &lane.feeding, y, BAR_H, feed, "feeds the conference");
        bars(&mut s, &scale, &lane.stalls, y + BAR_H - 5.0, 5.0, STALL, "stalled (no voice frames)");
        let ends: Vec<(u64, String)> = lane.downs.iter().map(|(t, c)| (*t, format!("leg down: {c}"))).collect();
        points(&mut s, &scale, &ends, y + BAR_H + 5.0, Shape::Tick, END, &[]);
    }
    // Mix lane: the switches' labels, the switches, and which path fed (low in the lane).
    let mix = story.lanes.len();
    let y = lane_y(mix) + 18.0;
    mix_bar(&mut s, &scale, &story, y, 10.0);
    let switch_marks: Vec<(u64, String)> = story
        .switches
        .iter()
        .map(|w| {
            let gap = w.gap_ms.map(|g| format!("{g} ms")).unwrap_or_default();
            (w.at, gap)
        })
        .collect();
    points(&mut s, &scale, &switch_marks, y - 1.0, Shape::Switch, END, &[-8.0]);
    // Far party.
    let y = lane_y(mix + 1) + (LANE_H - BAR_H) / 2.0 - 3.0;
    bars(&mut s, &scale, &story.ringing, y, BAR_H, RINGING, "far party ringing");
    bars(&mut s, &scale, &story.answered, y, BAR_H, ANSWERED, "far party answered");
    points(&mut s, &scale, &story.far_failed, y + BAR_H / 2.0, Shape::Cross, STALL, &[4.0]);
    points(&mut s, &scale, &story.far_gone, y + BAR_H + 2.0, Shape::Tick, END, &[]);
    // Hold.
    let y = lane_y(mix + 2) + (LANE_H - BAR_H) / 2.0 - 3.0;
    bars(&mut s, &scale, &story.hold, y, BAR_H, HOLD, "far party hears music on hold");
    // Moves.
    let y = lane_y(mix + 3) + LANE_H / 2.0 - 3.0;
    points(&mut s, &scale, &story.moves, y, Shape::Diamond, MOVE, &[4.0, 15.0]);
    // The end.
    if let Some((at, why)) = &story.end {
        let x = scale.x(*at);
        let anchor = if x > PLOT_X + PLOT_W * 0.6 { "end" } else { "start" };
        let dx = if anchor == "end" { -4.0 } else { 4.0 };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{axis_y}" stroke="{END}" stroke-width="2" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" font-weight="bold">end: {}</text>"##,
            TOP - 14.0,
            x + dx,
            TOP - 4.0,
            esc(&clip(why, 70))
        );
    }
    legend(&mut s, legend_y);
    s.push_str("</svg>\n");
    s
}

fn empty(session: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="60" viewBox="0 0 600 60" font-family="DejaVu Sans, Verdana, sans-serif" font-size="13"><rect width="600" height="60" fill="#ffffff"/><text x="10" y="34">Session {}: no timeline entries</text></svg>
"##,
        esc(session)
    )
}

fn lane_y(i: usize) -> f64 {
    TOP + i as f64 * LANE_H
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditAction, LegPath, Outcome};
    use crate::timeline::{Dropped, Entry, Mark};

    const T0: u64 = 1_764_000_000_000;

    fn e(at_s: f64, mark: Mark) -> Entry {
        Entry { at: UnixMs(T0 + (at_s * 1000.0) as u64), mark, text: String::new() }
    }

    fn up(leg: &str, path: LegPath, device: &str) -> Mark {
        Mark::LegUp { leg: leg.into(), path, channel: format!("PJSIP/{leg}"), device: device.into() }
    }

    fn switch(leg: &str, to: LegPath, gap: u64, reason: &str) -> Mark {
        Mark::Switched { leg: leg.into(), to, gap_ms: Some(gap), reason: reason.into() }
    }

    /// Every opened tag is closed, in order (a small check that the document is well formed).
    fn well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let tail = &rest[i + 1..];
            let j = tail.find('>').expect("an unclosed tag");
            let tag = &tail[..j];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &tail[j + 1..];
        }
        assert!(stack.is_empty(), "left open: {stack:?}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite numbers");
    }

    fn dual_leg_call() -> Timeline {
        let d = LegPath::Data;
        let c = LegPath::Carrier;
        Timeline {
            session: "abc-1".into(),
            entries: vec![
                e(
                    0.0,
                    Mark::Opened {
                        device: "alice-phone".into(),
                        user: "alice".into(),
                        leg: "1.1".into(),
                        path: d,
                        channel: "PJSIP/alice-app-1".into(),
                    },
                ),
                e(0.0, Mark::FarCalled { number: "+15550001".into() }),
                e(0.3, up("1.2", c, "alice-phone")),
                e(0.4, switch("1.1", d, 0, "first-frames")),
                e(2.0, Mark::FarAnswered),
                e(6.0, Mark::LegStalled { leg: "1.1".into(), silent_ms: 120 }),
                e(6.0, switch("1.2", c, 180, "stall")),
                e(16.0, Mark::LegDown { leg: "1.1".into(), cause: "declared dead".into() }),
                e(20.0, Mark::OnHold { grace_ms: 30_000 }),
                e(20.0, Mark::LegDown { leg: "1.2".into(), cause: "lost".into() }),
                e(24.0, up("1.3", d, "alice-phone")),
                e(30.0, Mark::Audit { action: AuditAction::MoveRequest, outcome: Outcome::Granted, device: None }),
                e(
                    31.0,
                    Mark::Moved {
                        from: "alice-phone".into(),
                        to: "alice-desk".into(),
                        leg: "1.4".into(),
                        path: d,
                        channel: "PJSIP/desk-1".into(),
                    },
                ),
                e(31.2, Mark::LegDown { leg: "1.3".into(), cause: "moved away".into() }),
                e(40.0, Mark::FarGone { cause: "16 Normal Clearing".into() }),
                e(40.0, Mark::Ending { reason: "far party hung up <&>".into() }),
                e(40.1, Mark::LegDown { leg: "1.4".into(), cause: "16".into() }),
                e(40.1, Mark::Ended),
            ],
            dropped: Dropped::default(),
            until: None,
        }
    }

    #[test]
    fn a_dual_leg_call_shows_its_lanes_switch_far_party_hold_moves_and_end() {
        let svg = render(&dual_leg_call());
        well_formed(&svg);
        for want in [
            "alice-phone · data",
            "alice-phone · carrier",
            "alice-desk · data",
            "mix (feeds the conference)",
            "180 ms",
            "far party answered",
            "far party ringing",
            "music on hold",
            "ticket issued",
            "moved alice-phone → alice-desk",
            "end: far party hung up &lt;&amp;&gt;",
            "1 switch(es) (longest silence 180 ms)",
            "Legend",
        ] {
            assert!(svg.contains(want), "missing {want:?}");
        }
        // The data leg fed from its first frames until the switch at 6 s; then the carrier.
        assert!(svg.contains(&format!(
            "feeds the conference {}–{}",
            clock(UnixMs(T0 + 400)),
            clock(UnixMs(T0 + 6000))
        )));
        assert!(svg.contains(&format!(
            "feeds the conference {}–{}",
            clock(UnixMs(T0 + 6000)),
            clock(UnixMs(T0 + 20000))
        )));
        // The stall began when the last frame came (6 s − 120 ms).
        assert!(svg.contains(&format!("stalled (no voice frames) {}", clock(UnixMs(T0 + 5880)))));
        assert!(!svg.contains("<script"));
    }

    fn long() -> Timeline {
        let mut entries = vec![
            e(0.0, Mark::FarCalled { number: "+1555".into() }),
            e(0.0, up("d", LegPath::Data, "p")),
            e(0.1, up("c", LegPath::Carrier, "p")),
            e(1.0, Mark::FarAnswered),
        ];
        let twelve_h = 12.0 * 3600.0;
        let n = 6_000;
        for i in 0..n {
            let at = 2.0 + i as f64 * (twelve_h - 10.0) / n as f64;
            let (leg, to) = if i % 2 == 0 { ("c", LegPath::Carrier) } else { ("d", LegPath::Data) };
            let other = if i % 2 == 0 { "d" } else { "c" };
            entries.push(e(at, Mark::LegStalled { leg: other.into(), silent_ms: 100 }));
            entries.push(e(at, switch(leg, to, 100 + i % 300, "stall")));
            entries.push(e(at + 1.0, Mark::LegRecovered { leg: other.into() }));
        }
        // Many re-dials from many devices: the lanes stay bounded.
        for k in 0..40 {
            entries.push(e(twelve_h - 5.0, up(&format!("x{k}"), LegPath::Data, &format!("dev{k}"))));
        }
        entries.push(e(twelve_h, Mark::Ending { reason: "far party hung up".into() }));
        Timeline {
            session: "long".into(),
            entries,
            dropped: Dropped {
                count: 900,
                from: Some(UnixMs(T0 + 3_600_000)),
                to: Some(UnixMs(T0 + 7_200_000)),
                switches: 300,
                stalls: 300,
            },
            until: None,
        }
    }

    #[test]
    fn a_twelve_hour_call_with_thousands_of_switches_stays_bounded_and_aggregated() {
        let svg = render(&long());
        well_formed(&svg);
        assert!(svg.len() < 400_000, "{} bytes", svg.len());
        assert!(svg.contains("×"), "aggregated marks show their count");
        assert!(svg.contains("6000 switch(es)"));
        assert!(svg.contains("other legs"));
        let lanes = svg.matches(r#"<rect x="0" y="#).count();
        assert_eq!(lanes, MAX_LEG_LANES + 4, "leg lanes capped");
        // At most one switch mark per bin across the plot.
        let marks = svg.matches("l4,-6 h-8 z").count();
        assert!(marks <= (PLOT_W / BIN_PX) as usize + 2, "{marks} switch marks");
    }

    #[test]
    fn an_adopted_session_closes_the_legs_that_went_while_handoffd_was_away() {
        let t = Timeline {
            session: "s".into(),
            entries: vec![
                e(0.0, up("a", LegPath::Data, "p")),
                e(0.0, up("b", LegPath::Carrier, "p")),
                e(
                    5.0,
                    Mark::Adopted {
                        device: "p".into(),
                        legs: vec![("b".into(), LegPath::Carrier, "PJSIP/b".into())],
                        far_present: true,
                    },
                ),
                e(9.0, Mark::Ended),
            ],
            ..Default::default()
        };
        let svg = render(&t);
        well_formed(&svg);
        assert!(svg.contains(&format!("leg up {}–{}", clock(UnixMs(T0)), clock(UnixMs(T0 + 5000)))), "{svg}");
        assert!(svg.contains(&format!("leg up {}–{}", clock(UnixMs(T0)), clock(UnixMs(T0 + 9000)))), "{svg}");
        assert!(svg.contains("gone while handoffd was away") && svg.contains("adopted by a restarted handoffd"));
    }

    #[test]
    fn odd_input_never_panics() {
        assert!(render(&Timeline::default()).contains("no timeline entries"));
        // Out of order, unknown legs, a recovery without a stall, a leg down twice, all at once.
        let t = Timeline {
            session: "<odd>".into(),
            entries: vec![
                e(5.0, Mark::LegDown { leg: "nope".into(), cause: String::new() }),
                e(1.0, switch("ghost", LegPath::Carrier, u64::MAX, "stall")),
                e(1.0, Mark::LegRecovered { leg: "ghost".into() }),
                e(2.0, Mark::LegStalled { leg: "a".into(), silent_ms: u64::MAX }),
                e(0.0, up("a", LegPath::Data, "\u{1b}[2Jd\nx")),
                e(0.0, Mark::LegDown { leg: "a".into(), cause: "x".into() }),
                e(0.0, Mark::LegDown { leg: "a".into(), cause: "x".into() }),
                e(0.0, Mark::Ended),
            ],
            dropped: Dropped {
                count: 7,
                from: Some(UnixMs(T0 + 10)),
                to: Some(UnixMs(T0 + 10)),
                switches: 7,
                stalls: 0,
            },
            until: Some(UnixMs(T0 + 3)),
        };
        let svg = render(&t);
        well_formed(&svg);
        assert!(svg.contains("Session &lt;odd&gt;"));
        assert!(svg.contains("7 entries not kept"));
        assert!(!svg.chars().any(|c| c.is_control() && c != '\n'));
    }
}
