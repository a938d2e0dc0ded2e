//! The registry of device groups: for each group (the legs of one phone) its frame clock
//! ([`Group`]), downlink ([`Downlink`]), alignment ([`Aligner`], [`Tracker`]) and the labels its
//! events carry; legs join it when their hook is attached and leave it when the hook goes.
//! [`tick`] is the ticker's work: it reads every group's clock, hands the later of two aligned
//! legs the mix in a pause, measures the legs' offset when due, and raises what happened as AMI
//! events ([`crate::events`]) after the registry lock is released.
//!
//! The registry's mutex is taken by the application thread (join), a hook's detach and the
//! ticker, never in a frame callback: the hooks hold `Arc`s of what they need.

use crate::align::{estimate, Aligner, Change, Standing, Tracker};
use crate::asterisk::{self, now_ns, ChannelRef, Level};
use crate::config::Alignment;
use crate::downlink::Downlink;
use crate::events::{self, Event, GroupLabel};
use crate::frame_clock::{Group, LegId, Path, Timing};
use crate::tone;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// The longest wait for a pause before the later of two aligned legs takes the mix over anyway.
const HANDOVER_WAIT_NS: u64 = 2_000_000_000;

/// Offset measurements made since load, and the time they took (ns): the alignment's share of
/// the module's cost, shown by `handoff show status`.
pub static ESTIMATES: AtomicU64 = AtomicU64::new(0);
pub static ESTIMATE_NS: AtomicU64 = AtomicU64::new(0);

/// Reconnecting-tone frames queued since load, and those Asterisk refused (a channel hanging
/// up).
pub static TONE_FRAMES: AtomicU64 = AtomicU64::new(0);
pub static TONE_REFUSED: AtomicU64 = AtomicU64::new(0);

/// The most tone frames queued at once for one group when the ticker fell behind.
const TONE_CATCH_UP: u64 = 3;

/// The next leg's id (ids are never 0).
static NEXT_LEG: AtomicU64 = AtomicU64::new(1);

/// A device group and the labels its events carry.
struct Entry {
    group: Arc<Group>,
    /// What the bridge wrote to the feeding leg lately (allocated once, with the group).
    downlink: Arc<Downlink>,
    /// The legs' time alignment (also when `tracker` is None: then it only keeps track of what
    /// passed) and the ticker's bookkeeping of it (None: `alignment = switching`).
    aligner: Arc<Aligner>,
    tracker: Option<Tracker>,
    /// How the legs share the mix (`alignment`).
    alignment: Alignment,
    /// `alignment = aligned`: once aligned, the later leg is to feed the mix; it takes over in a
    /// pause of the leg feeding it now (the one-time move of the listener's delay is then silence
    /// stretched, not heard), or after [`HANDOVER_WAIT_NS`]. (Low latency keeps the preferred
    /// leg feeding the mix: no added delay.)
    handover: Option<Handover>,
    session: String,
    /// Each attached leg's Uniqueid and channel, by leg id.
    legs: HashMap<LegId, Leg>,
    /// PBX pauses of this group already logged.
    pauses_logged: u64,
    /// `reconnect_tone_after`, when the tone is on.
    tone_after_ns: Option<u64>,
    /// The reconnecting tone, while every leg is silent.
    tone: Option<Tone>,
}

struct Leg {
    uniqueid: String,
    channel: Arc<ChannelRef>,
}

/// The reconnecting tone of a group: since when, and how many of its frames are due so far.
struct Tone {
    since_ns: u64,
    frames: u64,
}

/// A pending handover of the mix to the later of two aligned legs.
#[derive(Clone, Copy)]
struct Handover {
    later: Path,
    since_ns: u64,
    /// The offset in frames: the feeding leg's quiet tail must be this long for a pause.
    frames: u64,
}

impl Entry {
    fn uniqueid(&self, leg: LegId) -> String {
        self.legs.get(&leg).map(|l| l.uniqueid.clone()).unwrap_or_default()
    }

    fn label<'a>(&'a self, key: &'a str) -> GroupLabel<'a> {
        GroupLabel { session: &self.session, key }
    }
}

static GROUPS: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn groups() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a device group is run, from the controller's assignment and `handoff.conf`.
pub struct GroupSettings {
    pub preferred: Path,
    pub timing: Timing,
    /// How the legs share the mix, and the largest offset aligned.
    pub alignment: Alignment,
    pub align_max_ns: u64,
    /// `reconnect_tone_after`, when the tone is on.
    pub tone_after_ns: Option<u64>,
}

/// What a leg holds of its group once it joined.
pub struct Membership {
    pub leg: LegId,
    pub group: Arc<Group>,
    pub downlink: Arc<Downlink>,
    /// Set unless `alignment = switching`.
    pub aligner: Option<Arc<Aligner>>,
}

/// A leg (`uniqueid`, on `path`, its `channel`) joins group `key` of `session`; a new group is
/// run as `settings` say.
pub fn join(
    key: &str,
    session: &str,
    uniqueid: &str,
    channel: ChannelRef,
    path: Path,
    settings: GroupSettings,
) -> Membership {
    let GroupSettings { preferred, timing, alignment, align_max_ns, tone_after_ns } = settings;
    let leg = NEXT_LEG.fetch_add(1, Ordering::Relaxed);
    let mut all = groups();
    let entry = all.entry(key.to_string()).or_insert_with(|| Entry {
        group: Arc::new(Group::new(preferred, timing)),
        downlink: Arc::new(Downlink::new()),
        aligner: Arc::new(Aligner::new(preferred)),
        tracker: (alignment != Alignment::Switching).then(|| Tracker::new(align_max_ns, now_ns())),
        alignment,
        handover: None,
        session: session.to_string(),
        legs: HashMap::new(),
        pauses_logged: 0,
        tone_after_ns,
        tone: None,
    });
    entry.legs.insert(leg, Leg { uniqueid: uniqueid.to_string(), channel: Arc::new(channel) });
    // Under the registry lock: the ticker never sees this group without this leg in it.
    entry.group.attach(path, leg);
    Membership {
        leg,
        group: entry.group.clone(),
        downlink: entry.downlink.clone(),
        aligner: entry.tracker.is_some().then(|| entry.aligner.clone()),
    }
}

/// A leg's hook is gone: the leg leaves its group (the ticker drops a group no leg is in).
pub fn leave(key: &str, group: &Group, path: Path, leg: LegId) {
    let gone = {
        let mut all = groups();
        group.detach(path, leg);
        all.get_mut(key).and_then(|e| e.legs.remove(&leg))
    };
    // The channel reference goes after the registry lock (the channel is hanging up: this is not
    // its last reference, but nothing that may free a channel runs under the lock).
    drop(gone);
}

/// The ticker's work (every few ms): see the file's top.
pub fn tick() {
    let now = now_ns();
    let mut events: Vec<Event> = Vec::new();
    let mut notices = Vec::new();
    let mut to_measure = Vec::new();
    let mut tones: Vec<(Arc<ChannelRef>, u64)> = Vec::new();
    {
        let mut all = groups();
        all.retain(|key, e| {
            let pauses = e.group.pauses();
            if pauses != e.pauses_logged {
                e.pauses_logged = pauses;
                notices.push(format!(
                    "device group {key}: every leg went silent at once (the PBX paused, not the network): no switch ({pauses} so far)"
                ));
            }
            for report in e.group.tick(now) {
                let uniqueid = e.uniqueid(report.leg());
                events.push(events::report(&e.label(key), report, uniqueid));
            }
            if let Some(h) = e.handover {
                let feeding = e.group.active().filter(|p| *p != h.later);
                if feeding.is_none_or(|p| e.aligner.quiet_tail(p, h.frames + 1))
                    || now.saturating_sub(h.since_ns) >= HANDOVER_WAIT_NS
                {
                    e.group.set_preferred(h.later);
                    e.handover = None;
                }
            }
            if let Some(after) = e.tone_after_ns {
                reconnect_tone(key, e, after, now, &mut tones, &mut events, &mut notices);
            }
            if let Some(t) = &e.tracker {
                if t.due(now) && e.group.hooks(Path::Data) > 0 && e.group.hooks(Path::Carrier) > 0 {
                    to_measure.push((key.clone(), e.aligner.clone(), t.max_delay_ns));
                }
            }
            e.group.in_use()
        });
    }
    // The legs' audio is correlated outside the registry lock (about a millisecond each).
    for (key, aligner, max) in to_measure {
        let started = now_ns();
        let measured = estimate(aligner.ring(Path::Data), aligner.ring(Path::Carrier), max);
        ESTIMATES.fetch_add(1, Ordering::Relaxed);
        ESTIMATE_NS.fetch_add(now_ns().saturating_sub(started), Ordering::Relaxed);
        let mut all = groups();
        let Some(e) = all.get_mut(&key) else { continue };
        let Some(change) = e.tracker.as_mut().and_then(|t| t.record(&e.aligner, measured, e.group.active(), now))
        else {
            continue;
        };
        match change {
            Change::Aligned(est) => {
                // Aligned, the later leg drives: each slot then comes from the preferred leg,
                // which had it first. It takes over in the next pause of the leg feeding the mix.
                if e.alignment == Alignment::Aligned {
                    let frames = est.delay_ns.unsigned_abs().div_ceil(20_000_000);
                    e.handover = Some(Handover { later: est.later(), since_ns: now, frames });
                }
                events.push(events::aligned(&e.label(&key), &est));
                let how = match e.alignment {
                    Alignment::Aligned => {
                        format!("each 20 ms from the {} leg where it has it", e.aligner.preferred().as_str())
                    }
                    _ => "low latency: a failover plays nothing twice, a take-back catches up in a pause".to_string(),
                };
                notices.push(format!(
                    "device group {key}: legs aligned, the {} leg {:.0} ms later (score {:.2}); {how}",
                    est.later().as_str(),
                    est.delay_ns.unsigned_abs() as f64 / 1e6,
                    est.score,
                ));
            }
            Change::Unaligned(why) => {
                e.handover = None;
                e.group.set_preferred(e.aligner.preferred());
                events.push(events::unaligned(&e.label(&key), &why));
                notices.push(format!(
                    "device group {key}: legs not aligned ({}): the mix switches between them",
                    why.reason()
                ));
            }
        }
    }
    // Queued outside the registry lock (queueing locks the channel, whose hangup takes the
    // registry lock).
    for (channel, n) in tones {
        let Some(frame) = tone::frame(n) else { continue };
        let counter = if channel.queue_slin(&frame, tone::SOURCE) { &TONE_FRAMES } else { &TONE_REFUSED };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    // Raised outside the registry lock.
    for n in notices {
        asterisk::log(Level::Notice, &n);
    }
    for event in events {
        event.raise();
    }
}

/// The reconnecting tone of group `key`: started once every leg has been silent for `after`,
/// its frames due so far handed to `tones` (the channel of the leg that fed the mix last, the
/// frame's number), stopped as soon as a leg delivers again.
fn reconnect_tone(
    key: &str,
    e: &mut Entry,
    after: u64,
    now: u64,
    tones: &mut Vec<(Arc<ChannelRef>, u64)>,
    events: &mut Vec<Event>,
    notices: &mut Vec<String>,
) {
    let silent = e.group.silent_for(now).unwrap_or(0);
    if silent < after {
        if let Some(t) = e.tone.take() {
            events.push(events::reconnect_tone(&e.label(key), false, silent, now.saturating_sub(t.since_ns)));
        }
        return;
    }
    let Some(path) = e.group.active() else { return };
    let Some(channel) = e.group.current_leg(path).and_then(|leg| e.legs.get(&leg)).map(|l| l.channel.clone()) else {
        return;
    };
    if e.tone.is_none() {
        events.push(events::reconnect_tone(&e.label(key), true, silent, 0));
        notices.push(format!(
            "device group {key}: every leg silent for {} ms: the far party hears the reconnecting tone",
            silent / 1_000_000
        ));
        e.tone = Some(Tone { since_ns: now, frames: 0 });
    }
    let Some(tone) = e.tone.as_mut() else { return };
    let due = now.saturating_sub(tone.since_ns) / 20_000_000 + 1;
    // After a stall of the ticker, only the last few frames are sent (late tone is no tone).
    tone.frames = tone.frames.max(due.saturating_sub(TONE_CATCH_UP));
    while tone.frames < due {
        tones.push((channel.clone(), tone.frames));
        tone.frames += 1;
    }
}

/// For `handoff show status`: groups and which leg feeds each.
pub fn status_lines() -> Vec<String> {
    groups()
        .iter()
        .map(|(key, e)| {
            let align = match e.tracker.as_ref().map(|t| t.standing) {
                None => "off".to_string(),
                Some(Standing::Switching(None)) => "measuring".to_string(),
                Some(Standing::Switching(Some(why))) => format!("switching ({})", why.reason()),
                Some(Standing::Aligned(est)) => format!(
                    "{} offset_ms={:.1} later={} score={:.2} from_other={} from_own={} caught_up={}",
                    e.alignment.as_str(),
                    est.delay_ns as f64 / 1e6,
                    est.later().as_str(),
                    est.score,
                    e.aligner.filled_other.load(Ordering::Relaxed),
                    e.aligner.filled_own.load(Ordering::Relaxed),
                    e.aligner.caught_up.load(Ordering::Relaxed)
                ),
            };
            let align = format!("{align} concealed={}", e.aligner.concealed.load(Ordering::Relaxed));
            format!(
                "  {key}: active={} switches={} pauses={} data_legs={} carrier_legs={} stall_ms={}/{} align={align}",
                e.group.active().map(Path::as_str).unwrap_or("none"),
                e.group.switches(),
                e.group.pauses(),
                e.group.hooks(Path::Data),
                e.group.hooks(Path::Carrier),
                e.group.stall_ns(Path::Data) / 1_000_000,
                e.group.stall_ns(Path::Carrier) / 1_000_000
            )
        })
        .collect()
}
