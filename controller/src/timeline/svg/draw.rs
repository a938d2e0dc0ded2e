//! Drawing on the time axis: the [`Scale`] from times to pixels, and the marks — bars merged
//! below [`MERGE_PX`], point marks binned by [`BIN_PX`] with their labels placed apart, and the
//! mix lane's bar of which path fed the conference.

use super::story::Story;
use super::text::clip;
use super::{esc, BAR_H, BIN_PX, CARRIER_FEED, CARRIER_UP, DATA_FEED, DATA_UP, MERGE_PX, PLOT_W, PLOT_X, WIDTH};
use crate::store::{LegPath, UnixMs};
use crate::timeline::clock;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub(super) struct Scale {
    pub(super) t0: u64,
    pub(super) span: u64,
}

impl Scale {
    pub(super) fn x(&self, t: u64) -> f64 {
        let rel = t.saturating_sub(self.t0).min(self.span) as f64;
        PLOT_X + rel / self.span as f64 * PLOT_W
    }
}

#[derive(Clone, Copy)]
pub(super) enum Shape {
    Switch,
    Diamond,
    Cross,
    Tick,
}

/// Intervals as bars, merged when closer than [`MERGE_PX`]; at most one bar per
/// [`MERGE_PX`] of width.
pub(super) fn bars(s: &mut String, scale: &Scale, spans: &[(u64, u64)], y: f64, h: f64, fill: &str, what: &str) {
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
pub(super) fn points(
    s: &mut String,
    scale: &Scale,
    marks: &[(u64, String)],
    y: f64,
    shape: Shape,
    fill: &str,
    rows: &[f64],
) {
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

/// The mix lane's bar: for each column of [`MERGE_PX`], the path that fed the conference most
/// of its time, or both (hatched) when the column holds two switches or more; drawn as runs.
pub(super) fn mix_bar(s: &mut String, scale: &Scale, story: &Story, y: f64, h: f64) {
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

pub(super) fn colours(p: LegPath) -> (&'static str, &'static str) {
    match p {
        LegPath::Data => (DATA_UP, DATA_FEED),
        LegPath::Carrier => (CARRIER_UP, CARRIER_FEED),
    }
}
