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

use super::{clock, Entry, Mark, Timeline};
use crate::store::{AuditAction, LegPath, Outcome, UnixMs};
use std::collections::BTreeMap;
use std::fmt::Write as _;

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

struct Scale {
    t0: u64,
    span: u64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        let rel = t.saturating_sub(self.t0).min(self.span) as f64;
        PLOT_X + rel / self.span as f64 * PLOT_W
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Switch,
    Diamond,
    Cross,
    Tick,
}

/// Intervals as bars, merged when closer than [`MERGE_PX`]; at most one bar per
/// [`MERGE_PX`] of width.
fn bars(s: &mut String, scale: &Scale, spans: &[(u64, u64)], y: f64, h: f64, fill: &str, what: &str) {
    let mut merged: Vec<(f64, f64, u64, u64, usize)> = Vec::new();
    for &(a, b) in spans {
        let (x0, x1) = (scale.x(a), scale.x(b.max(a)));
        let x1 = x1.max(x0 + 1.0);
        match merged.last_mut() {
            Some(last) if x0 <= last.1 + MERGE_PX => {
                last.1 = last.1.max(x1);
                last.3 = last.3.max(b);
                last.4 += 1;
            }
            _ => merged.push((x0, x1, a, b, 1)),
        }
    }
    for (x0, x1, a, b, n) in merged {
        let times = if n > 1 { format!(" ({n} spans)") } else { String::new() };
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{h}" fill="{fill}"><title>{} {}–{}{times}</title></rect>"#,
            x1 - x0,
            esc(what),
            clock(UnixMs(a)),
            clock(UnixMs(b))
        );
    }
}

/// Point marks, one per bin of [`BIN_PX`] (with the count when several share it); the mark's
/// text (or the count) is written beside it, on the first of the label rows (offsets from `y`)
/// where it overlaps no label before it.
fn points(s: &mut String, scale: &Scale, marks: &[(u64, String)], y: f64, shape: Shape, fill: &str, rows: &[f64]) {
    let mut bins: BTreeMap<i64, (u64, Vec<&str>, usize)> = BTreeMap::new();
    for (at, what) in marks {
        let bin = ((scale.x(*at) - PLOT_X) / BIN_PX).floor() as i64;
        let e = bins.entry(bin).or_insert((*at, Vec::new(), 0));
        e.2 += 1;
        if e.1.len() < 5 {
            e.1.push(what.as_str());
        }
    }
    let mut free_from = vec![f64::MIN; rows.len()];
    for (_, (at, whats, n)) in bins {
        let x = scale.x(at);
        let mut tip = format!("{}: {}", clock(UnixMs(at)), whats.join("; "));
        if n > whats.len() {
            tip.push_str(&format!(" … {n} in all"));
        }
        let shape_svg = match shape {
            Shape::Switch => format!(r#"<path d="M{:.1},{:.1} l4,-6 h-8 z" fill="{fill}"/>"#, x, y),
            Shape::Diamond => format!(r#"<path d="M{x:.1},{:.1} l6,6 l-6,6 l-6,-6 z" fill="{fill}"/>"#, y - 6.0),
            Shape::Cross => format!(
                r#"<path d="M{:.1},{:.1} l10,10 m0,-10 l-10,10" stroke="{fill}" stroke-width="3"/>"#,
                x - 5.0,
                y - 5.0
            ),
            Shape::Tick => format!(r#"<path d="M{x:.1},{:.1} v-{BAR_H}" stroke="{fill}" stroke-width="2"/>"#, y),
        };
        let _ = writeln!(s, r#"<g>{shape_svg}<title>{}</title></g>"#, esc(&tip));
        if !rows.is_empty() {
            // Moves name their first step (`ticket issued +2`); switches show their count.
            let first = whats.first().copied().unwrap_or("");
            let label = match (n, shape) {
                (1, _) => clip(first, 28),
                (_, Shape::Diamond) => format!("{} +{}", clip(first, 22), n - 1),
                _ => format!("×{n}"),
            };
            let width = label.chars().count() as f64 * 6.0 + 6.0;
            let row = (0..rows.len()).find(|r| x + 7.0 >= free_from[*r]);
            if let (false, Some(row), true) = (label.is_empty(), row, x + 7.0 + width <= WIDTH) {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333333">{}</text>"##,
                    x + 7.0,
                    y + rows[row],
                    esc(&label)
                );
                free_from[row] = x + 7.0 + width;
            }
        }
    }
}

fn legend(s: &mut String, y: f64) {
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

/// The mix lane's bar: for each column of [`MERGE_PX`], the path that fed the conference most
/// of its time, or both (hatched) when the column holds two switches or more; drawn as runs.
fn mix_bar(s: &mut String, scale: &Scale, story: &Story, y: f64, h: f64) {
    #[derive(Clone, Copy, PartialEq)]
    enum Fed {
        None,
        Only(LegPath),
        Both,
    }
    let cols = (PLOT_W / MERGE_PX).ceil() as usize;
    let col_of = |t: u64| -> usize {
        let rel = u128::from(t.saturating_sub(scale.t0).min(scale.span));
        ((rel * cols as u128 / u128::from(scale.span)) as usize).min(cols - 1)
    };
    let col_start = |c: usize| -> u64 { scale.t0 + (u128::from(scale.span) * c as u128 / cols as u128) as u64 };
    let mut fed = vec![[0u64; 2]; cols];
    for lane in &story.lanes {
        let k = usize::from(lane.path == LegPath::Carrier);
        for &(a, b) in &lane.feeding {
            for (c, col) in fed.iter_mut().enumerate().take(col_of(b) + 1).skip(col_of(a)) {
                let (c0, c1) = (col_start(c), col_start(c + 1));
                col[k] += b.min(c1).saturating_sub(a.max(c0));
            }
        }
    }
    let mut switches = vec![0u32; cols];
    for w in &story.switches {
        let c = col_of(w.at);
        switches[c] = switches[c].saturating_add(1);
    }
    let kinds: Vec<Fed> = fed
        .iter()
        .zip(&switches)
        .map(|([d, c], n)| match (*d > 0, *c > 0) {
            (false, false) => Fed::None,
            (true, true) if *n >= 2 => Fed::Both,
            _ if d >= c => Fed::Only(LegPath::Data),
            _ => Fed::Only(LegPath::Carrier),
        })
        .collect();
    let mut c = 0;
    while c < cols {
        let kind = kinds[c];
        let run = kinds[c..].iter().take_while(|k| **k == kind).count();
        let (fill, what) = match kind {
            Fed::None => ("", ""),
            Fed::Only(p) => (colours(p).1, if p == LegPath::Data { "data leg feeds" } else { "carrier leg feeds" }),
            Fed::Both => ("url(#both)", "both paths fed, switching"),
        };
        if !fill.is_empty() {
            let (a, b) = (col_start(c), col_start(c + run));
            let x0 = PLOT_X + c as f64 * PLOT_W / cols as f64;
            let w = run as f64 * PLOT_W / cols as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h}" fill="{fill}"><title>{what} {}–{}</title></rect>"#,
                clock(UnixMs(a)),
                clock(UnixMs(b))
            );
        }
        c += run;
    }
}

fn colours(p: LegPath) -> (&'static str, &'static str) {
    match p {
        LegPath::Data => (DATA_UP, DATA_FEED),
        LegPath::Carrier => (CARRIER_UP, CARRIER_FEED),
    }
}

fn path_str(p: LegPath) -> &'static str {
    match p {
        LegPath::Data => "data",
        LegPath::Carrier => "carrier",
    }
}

/// The grid step (ms) giving at most about ten ticks, and whether labels need tenths.
fn tick_step(span: u64) -> (u64, bool) {
    const STEPS: [u64; 18] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000, 21_600_000,
    ];
    let step = STEPS.iter().copied().find(|s| span / s <= 10).unwrap_or(86_400_000);
    (step, step < 1000)
}

fn tick_label(t: UnixMs, fine: bool) -> String {
    let c = clock(t);
    if fine {
        c[..10].to_string()
    } else {
        c[..8].to_string()
    }
}

fn date(t: UnixMs) -> String {
    t.to_string().chars().take(10).collect()
}

fn duration(ms: u64) -> String {
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
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

use crate::markup::escape as esc;

/// One lane: the legs of one device over one path.
struct Lane {
    label: String,
    path: LegPath,
    legs: Vec<String>,
    up: Vec<(u64, u64)>,
    feeding: Vec<(u64, u64)>,
    stalls: Vec<(u64, u64)>,
    downs: Vec<(u64, String)>,
}

impl Lane {
    fn sublabel(&self) -> String {
        match self.legs.as_slice() {
            [one] => one.clone(),
            many => format!("{} legs, last {}", many.len(), many.last().map(String::as_str).unwrap_or("")),
        }
    }
}

struct Switch {
    at: u64,
    gap_ms: Option<u64>,
}

/// A leg as the walk through the entries knows it.
struct LegNow {
    lane: usize,
    up_since: Option<u64>,
    stalled_since: Option<u64>,
}

/// What the entries say, as intervals and points per lane.
#[derive(Default)]
struct Story {
    lanes: Vec<Lane>,
    legs: BTreeMap<String, LegNow>,
    feeder: Option<(String, u64)>,
    switches: Vec<Switch>,
    stall_count: usize,
    ringing_since: Option<u64>,
    answered_since: Option<u64>,
    ringing: Vec<(u64, u64)>,
    answered: Vec<(u64, u64)>,
    far_failed: Vec<(u64, String)>,
    far_gone: Vec<(u64, String)>,
    far_number: String,
    hold_since: Option<u64>,
    hold: Vec<(u64, u64)>,
    moves: Vec<(u64, String)>,
    end: Option<(u64, String)>,
    device: String,
}

impl Story {
    fn read(t: &Timeline, until: u64) -> Self {
        let mut st = Story::default();
        for e in &t.entries {
            st.entry(e);
        }
        st.close_all(until);
        st
    }

    fn entry(&mut self, e: &Entry) {
        let at = e.at.0;
        match &e.mark {
            Mark::Note => {}
            Mark::Opened { device, leg, path, channel, .. } => {
                self.device = device.clone();
                self.leg_up(at, leg, *path, channel, device);
            }
            Mark::LegUp { leg, path, channel, device } => {
                self.leg_up(at, leg, *path, channel, device);
                self.hold_over(at);
            }
            Mark::Moved { from, to, leg, path, channel } => {
                self.moves.push((at, format!("moved {from} → {to}")));
                self.device = to.clone();
                self.leg_up(at, leg, *path, channel, to);
                self.hold_over(at);
            }
            Mark::Adopted { device, legs, far_present } => {
                self.device = device.clone();
                self.moves.push((at, "adopted by a restarted handoffd".into()));
                // Legs the PBX no longer had went while handoffd was away.
                let gone: Vec<String> = self
                    .legs
                    .iter()
                    .filter(|(id, l)| l.up_since.is_some() && !legs.iter().any(|(u, _, _)| u == *id))
                    .map(|(id, _)| id.clone())
                    .collect();
                for leg in gone {
                    self.leg_down(at, &leg, "gone while handoffd was away");
                }
                for (leg, path, channel) in legs {
                    self.leg_up(at, leg, *path, channel, device);
                }
                if *far_present && self.answered_since.is_none() {
                    self.answered_since = Some(at);
                }
            }
            Mark::LegDown { leg, cause } => self.leg_down(at, leg, cause),
            Mark::LegStalled { leg, silent_ms } => {
                self.stall_count += 1;
                if let Some(l) = self.legs.get_mut(leg) {
                    if l.stalled_since.is_none() {
                        let since = at.saturating_sub(*silent_ms).max(l.up_since.unwrap_or(0));
                        l.stalled_since = Some(since);
                    }
                }
            }
            Mark::LegRecovered { leg } => {
                if let Some(l) = self.legs.get_mut(leg) {
                    if let Some(since) = l.stalled_since.take() {
                        self.lanes[l.lane].stalls.push((since, at));
                    }
                }
            }
            Mark::Switched { leg, gap_ms, reason, .. } => {
                self.feed_over(at);
                if self.legs.get(leg).is_some_and(|l| l.up_since.is_some()) {
                    self.feeder = Some((leg.clone(), at));
                }
                if reason != "first-frames" {
                    self.switches.push(Switch { at, gap_ms: *gap_ms });
                }
            }
            Mark::FarCalled { number } => {
                self.far_number = number.clone();
                self.ringing_since.get_or_insert(at);
            }
            Mark::FarAnswered => {
                if let Some(r) = self.ringing_since.take() {
                    self.ringing.push((r, at));
                }
                self.answered_since.get_or_insert(at);
            }
            Mark::FarFailed { reason } => {
                if let Some(r) = self.ringing_since.take() {
                    self.ringing.push((r, at));
                }
                self.far_failed.push((at, format!("far call failed: {reason}")));
            }
            Mark::FarGone { cause } => {
                self.far_over(at);
                self.far_gone.push((at, format!("far party gone: {cause}")));
            }
            Mark::OnHold { .. } => {
                self.hold_since.get_or_insert(at);
            }
            Mark::Audit { action, outcome, device } => {
                let what = match (action, outcome) {
                    (AuditAction::MoveRequest, Outcome::Granted) => "ticket issued",
                    (AuditAction::MoveRequest, _) => "move refused",
                    (AuditAction::TicketRedeem, Outcome::Granted) => "new device joins",
                    (AuditAction::TicketRedeem, _) => "ticket refused",
                    (AuditAction::Rejoin, _) => "old device barred",
                    _ => "move step",
                };
                let who = device.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                self.moves.push((at, format!("{what}{who}")));
            }
            Mark::Ending { reason } => {
                self.end.get_or_insert((at, reason.clone()));
                self.hold_over(at);
            }
            Mark::Ended => {
                self.end.get_or_insert((at, "every channel gone".into()));
            }
        }
    }

    fn lane_for(&mut self, device: &str, path: LegPath) -> usize {
        let label = format!("{device} · {}", path_str(path));
        if let Some(i) = self.lanes.iter().position(|l| l.label == label) {
            return i;
        }
        if self.lanes.len() >= MAX_LEG_LANES {
            // The last lane takes every further device/path pair.
            let last = self.lanes.len() - 1;
            self.lanes[last].label = "other legs".into();
            return last;
        }
        self.lanes.push(Lane {
            label,
            path,
            legs: Vec::new(),
            up: Vec::new(),
            feeding: Vec::new(),
            stalls: Vec::new(),
            downs: Vec::new(),
        });
        self.lanes.len() - 1
    }

    fn leg_up(&mut self, at: u64, leg: &str, path: LegPath, channel: &str, device: &str) {
        if self.legs.get(leg).is_some_and(|l| l.up_since.is_some()) {
            return;
        }
        let lane = self.lane_for(device, path);
        if self.lanes[lane].legs.len() < 1000 {
            self.lanes[lane].legs.push(channel.to_string());
        }
        self.legs.insert(leg.to_string(), LegNow { lane, up_since: Some(at), stalled_since: None });
    }

    fn leg_down(&mut self, at: u64, leg: &str, cause: &str) {
        if self.feeder.as_ref().is_some_and(|(f, _)| f == leg) {
            self.feed_over(at);
        }
        let Some(l) = self.legs.get_mut(leg) else { return };
        let lane = &mut self.lanes[l.lane];
        if let Some(since) = l.up_since.take() {
            lane.up.push((since, at));
            lane.downs.push((at, cause.to_string()));
        }
        if let Some(since) = l.stalled_since.take() {
            lane.stalls.push((since, at));
        }
    }

    fn feed_over(&mut self, at: u64) {
        if let Some((leg, since)) = self.feeder.take() {
            if let Some(l) = self.legs.get(&leg) {
                self.lanes[l.lane].feeding.push((since, at));
            }
        }
    }

    fn far_over(&mut self, at: u64) {
        if let Some(r) = self.ringing_since.take() {
            self.ringing.push((r, at));
        }
        if let Some(a) = self.answered_since.take() {
            self.answered.push((a, at));
        }
    }

    fn hold_over(&mut self, at: u64) {
        if let Some(h) = self.hold_since.take() {
            self.hold.push((h, at));
        }
    }

    fn close_all(&mut self, until: u64) {
        self.feed_over(until);
        let open: Vec<String> =
            self.legs.iter().filter(|(_, l)| l.up_since.is_some()).map(|(k, _)| k.clone()).collect();
        for leg in open {
            if let Some(l) = self.legs.get_mut(&leg) {
                let lane = &mut self.lanes[l.lane];
                if let Some(since) = l.up_since.take() {
                    lane.up.push((since, until));
                }
                if let Some(since) = l.stalled_since.take() {
                    lane.stalls.push((since, until));
                }
            }
        }
        self.far_over(until);
        self.hold_over(until);
        for lane in &mut self.lanes {
            lane.up.sort_unstable();
            lane.feeding.sort_unstable();
            lane.stalls.sort_unstable();
        }
        self.moves.sort_by_key(|m| m.0);
    }

    fn summary(&self) -> String {
        let legs: usize = self.lanes.iter().map(|l| l.legs.len()).sum();
        let longest = self.switches.iter().filter_map(|s| s.gap_ms).max();
        let mut s = format!("device {} · {legs} client leg(s) · {} switch(es)", self.device, self.switches.len());
        if let Some(g) = longest {
            let _ = write!(s, " (longest silence {g} ms)");
        }
        let _ = write!(s, " · {} stall(s) · {} move step(s)", self.stall_count, self.moves.len());
        match &self.end {
            Some((_, why)) => {
                let _ = write!(s, " · ended: {why}");
            }
            None => s.push_str(" · still running at the last entry"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Dropped, Entry, Mark, Timeline};

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
