//! What a timeline's entries say, read once in order into what the picture draws: a lane per
//! device and path with its legs' intervals (up, feeding, stalled) and ends, the switches, the
//! far party, music on hold, the move steps and the end; and the summary line under the title.

use super::MAX_LEG_LANES;
use crate::store::LegPath;
use crate::timeline::{move_step, Entry, Mark, Timeline};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One lane: the legs of one device over one path.
pub(super) struct Lane {
    pub(super) label: String,
    pub(super) path: LegPath,
    pub(super) legs: Vec<String>,
    pub(super) up: Vec<(u64, u64)>,
    pub(super) feeding: Vec<(u64, u64)>,
    pub(super) stalls: Vec<(u64, u64)>,
    pub(super) downs: Vec<(u64, String)>,
}

impl Lane {
    pub(super) fn sublabel(&self) -> String {
        match self.legs.as_slice() {
            [one] => one.clone(),
            many => format!("{} legs, last {}", many.len(), many.last().map(String::as_str).unwrap_or("")),
        }
    }
}

pub(super) struct Switch {
    pub(super) at: u64,
    pub(super) gap_ms: Option<u64>,
}

/// A leg as the walk through the entries knows it.
pub(super) struct LegNow {
    pub(super) lane: usize,
    pub(super) up_since: Option<u64>,
    pub(super) stalled_since: Option<u64>,
}

/// What the entries say, as intervals and points per lane.
#[derive(Default)]
pub(super) struct Story {
    pub(super) lanes: Vec<Lane>,
    pub(super) legs: BTreeMap<String, LegNow>,
    pub(super) feeder: Option<(String, u64)>,
    pub(super) switches: Vec<Switch>,
    pub(super) stall_count: usize,
    pub(super) ringing_since: Option<u64>,
    pub(super) answered_since: Option<u64>,
    pub(super) ringing: Vec<(u64, u64)>,
    pub(super) answered: Vec<(u64, u64)>,
    pub(super) far_failed: Vec<(u64, String)>,
    pub(super) far_gone: Vec<(u64, String)>,
    pub(super) far_number: String,
    pub(super) hold_since: Option<u64>,
    pub(super) hold: Vec<(u64, u64)>,
    pub(super) moves: Vec<(u64, String)>,
    pub(super) end: Option<(u64, String)>,
    pub(super) device: String,
}

impl Story {
    pub(super) fn read(t: &Timeline, until: u64) -> Self {
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
                let (what, _) = move_step(*action, *outcome);
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

    pub(super) fn summary(&self) -> String {
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

pub(super) fn path_str(p: LegPath) -> &'static str {
    match p {
        LegPath::Data => "data",
        LegPath::Carrier => "carrier",
    }
}
