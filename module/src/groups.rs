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
use crate::asterisk::{self, now_ns, Level};
use crate::downlink::Downlink;
use crate::events::{self, Event, GroupLabel};
use crate::frame_clock::{Group, LegId, Path, Timing};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// The longest wait for a pause before the later of two aligned legs takes the mix over anyway.
const HANDOVER_WAIT_NS: u64 = 2_000_000_000;

/// Offset measurements made since load, and the time they took (ns): the alignment's share of
/// the module's cost, shown by `handoff show status`.
pub static ESTIMATES: AtomicU64 = AtomicU64::new(0);
pub static ESTIMATE_NS: AtomicU64 = AtomicU64::new(0);

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
    /// Aligned, the later leg is to feed the mix; it takes over in a pause of the leg feeding it
    /// now (the one-time move of the listener's delay is then silence stretched, not heard), or
    /// after [`HANDOVER_WAIT_NS`].
    handover: Option<Handover>,
    session: String,
    /// The Uniqueid of each attached leg, by leg id.
    uniqueids: HashMap<LegId, String>,
    /// PBX pauses of this group already logged.
    pauses_logged: u64,
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
        self.uniqueids.get(&leg).cloned().unwrap_or_default()
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
    /// `align_max` when the group's legs are to be aligned (`alignment = aligned`).
    pub align_max_ns: Option<u64>,
}

/// What a leg holds of its group once it joined.
pub struct Membership {
    pub leg: LegId,
    pub group: Arc<Group>,
    pub downlink: Arc<Downlink>,
    /// Set when the group is aligned (`alignment = aligned`).
    pub aligner: Option<Arc<Aligner>>,
}

/// A leg (`uniqueid`, on `path`) joins group `key` of `session`; a new group is run as
/// `settings` say.
pub fn join(key: &str, session: &str, uniqueid: &str, path: Path, settings: GroupSettings) -> Membership {
    let GroupSettings { preferred, timing, align_max_ns } = settings;
    let leg = NEXT_LEG.fetch_add(1, Ordering::Relaxed);
    let mut all = groups();
    let entry = all.entry(key.to_string()).or_insert_with(|| Entry {
        group: Arc::new(Group::new(preferred, timing)),
        downlink: Arc::new(Downlink::new()),
        aligner: Arc::new(Aligner::new(preferred)),
        tracker: align_max_ns.map(|max| Tracker::new(max, now_ns())),
        handover: None,
        session: session.to_string(),
        uniqueids: HashMap::new(),
        pauses_logged: 0,
    });
    entry.uniqueids.insert(leg, uniqueid.to_string());
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
    let mut all = groups();
    group.detach(path, leg);
    if let Some(e) = all.get_mut(key) {
        e.uniqueids.remove(&leg);
    }
}

/// The ticker's work (every few ms): see the file's top.
pub fn tick() {
    let now = now_ns();
    let mut events: Vec<Event> = Vec::new();
    let mut notices = Vec::new();
    let mut to_measure = Vec::new();
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
                // The later leg drives: each slot then comes from the preferred leg, which had it
                // first. It takes over in the next pause of the leg feeding the mix now.
                let frames = est.delay_ns.unsigned_abs().div_ceil(20_000_000);
                e.handover = Some(Handover { later: est.later(), since_ns: now, frames });
                events.push(events::aligned(&e.label(&key), &est));
                notices.push(format!(
                    "device group {key}: legs aligned, the {} leg {:.0} ms later (score {:.2}); each 20 ms from the {} leg where it has it",
                    est.later().as_str(),
                    est.delay_ns.unsigned_abs() as f64 / 1e6,
                    est.score,
                    e.aligner.preferred().as_str()
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
    // Raised outside the registry lock.
    for n in notices {
        asterisk::log(Level::Notice, &n);
    }
    for event in events {
        event.raise();
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
                    "aligned offset_ms={:.1} later={} score={:.2} from_other={} from_own={} caught_up={}",
                    est.delay_ns as f64 / 1e6,
                    est.later().as_str(),
                    est.score,
                    e.aligner.filled_other.load(Ordering::Relaxed),
                    e.aligner.filled_own.load(Ordering::Relaxed),
                    e.aligner.caught_up.load(Ordering::Relaxed)
                ),
            };
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
