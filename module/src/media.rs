//! Watching every leg frame by frame inside Asterisk: one frame hook per leg that, in the READ
//! direction, asks its device group ([`crate::frame_clock::Group`]) whether the frame feeds the
//! mix and, in the WRITE direction, gives every leg of the group the same downlink — what the
//! bridge writes to the feeding leg, without the phone's own voice ([`crate::downlink`] says
//! why and how); plus a ticker thread that reports stalls, recoveries and switches as AMI events
//! (the read hook alone never runs when RTP stops).
//!
//! The frame hook touches atomics only; the group registry's mutex is taken by the
//! application thread (attach), a hook's destroy callback and the ticker, never in a frame
//! callback. Each hook has its own [`LegId`], so two legs of one path in one group (a phone that
//! re-dialled while its old leg is still up) are told apart, and each event names the leg it is
//! about. Events:
//! `HandoffLegStalled`, `HandoffLegRecovered`, `HandoffLegSwitched` (see docs/ami.md).
//!
//! In the WRITE direction `ast_write` keeps the frame it was given (its caller frees it): the
//! hook changes a standby leg's frame in place, and where it cannot (a codec it cannot write) it
//! returns the static `ast_null_frame` and frees nothing.

use crate::align::{Aligner, Change, Emit, Standing, Tracker};
use crate::asterisk::{self, EventClass, Level};
use crate::downlink::{Cursor, Downlink, Fill, Format};
use crate::ffi;
use crate::frame_clock::{Group, LegId, Mix, Path, Report, SwitchReason, Timing, Verdict};
use crate::guard::guard;
use handoff_vocab::{event, header, value};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The longest wait for a pause before the later of two aligned legs takes the mix over anyway.
const HANDOVER_WAIT_NS: u64 = 2_000_000_000;

/// How often the ticker looks at every leg's clock.
pub const TICK: Duration = Duration::from_millis(5);

/// Frame hooks currently attached, or being attached (the module must not unload while any is).
pub static HOOKS_ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// Set by unload while it checks that nothing is watched: no new hook is attached meanwhile.
pub static CLOSING: AtomicBool = AtomicBool::new(false);

/// The next hook's id (ids are never 0).
static NEXT_LEG: AtomicU64 = AtomicU64::new(1);

/// Voice frames the hooks decided on, and the time spent deciding (ns): the module's cost per
/// frame, shown by `handoff show status`.
pub static FRAMES: AtomicU64 = AtomicU64::new(0);
pub static FRAME_NS: AtomicU64 = AtomicU64::new(0);

/// Voice frames the bridge wrote to watched legs, and the time the write hook spent on them (ns).
pub static WRITES: AtomicU64 = AtomicU64::new(0);
pub static WRITE_NS: AtomicU64 = AtomicU64::new(0);
/// What the write hook did with frames written to standby legs (see [`Fill`]).
pub static FILL_COPIED: AtomicU64 = AtomicU64::new(0);
pub static FILL_REPEATED: AtomicU64 = AtomicU64::new(0);
pub static FILL_SILENCE: AtomicU64 = AtomicU64::new(0);
pub static FILL_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Frames written to feeding legs just after a switch, silenced (see [`Group::on_mixed`]).
pub static SEAM_SILENCED: AtomicU64 = AtomicU64::new(0);

/// Monotonic clock in ns (CLOCK_MONOTONIC, the clock handoffd and the tests also read).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

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
    /// after [`HANDOVER_WAIT_NS`]: (the later leg, since when, frames of the offset).
    handover: Option<(Path, u64, u64)>,
    session: String,
    /// The Uniqueid of each attached leg, by hook id.
    uniqueids: HashMap<LegId, String>,
    /// PBX pauses of this group already logged.
    pauses_logged: u64,
}

impl Entry {
    fn uniqueid(&self, leg: LegId) -> String {
        self.uniqueids.get(&leg).cloned().unwrap_or_default()
    }
}

static GROUPS: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn groups() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a leg's hook carries (owned by Asterisk's framehook until its destroy callback).
struct HookData {
    group: Arc<Group>,
    downlink: Arc<Downlink>,
    /// Set when the group is aligned (`alignment = aligned`).
    aligner: Option<Arc<Aligner>>,
    /// Where this leg is in the downlink while it is a standby.
    cursor: Cursor,
    key: String,
    path: Path,
    leg: LegId,
}

/// How a device group is run, from the controller's assignment and `handoff.conf`.
pub struct GroupSettings {
    pub preferred: Path,
    pub timing: Timing,
    /// `align_max` when the group's legs are to be aligned (`alignment = aligned`).
    pub align_max_ns: Option<u64>,
}

/// Attaches the read hook to `chan` for `path` in group `key` of `session` (a new group is run
/// as `settings` say).
///
/// # Safety
/// `chan` is the live channel of the calling application thread.
pub unsafe fn attach(
    chan: *mut ffi::ast_channel,
    key: &str,
    session: &str,
    uniqueid: &str,
    path: Path,
    settings: GroupSettings,
) -> Result<(), String> {
    let GroupSettings { preferred, timing, align_max_ns } = settings;
    // Counted before the unload's check can miss it (see registration.rs): either unload sees
    // this hook, or this attach sees the unload.
    HOOKS_ATTACHED.fetch_add(1, Ordering::SeqCst);
    if CLOSING.load(Ordering::SeqCst) {
        HOOKS_ATTACHED.fetch_sub(1, Ordering::SeqCst);
        return Err("the module is unloading".into());
    }
    let leg = NEXT_LEG.fetch_add(1, Ordering::Relaxed);
    let (group, downlink, aligner) = {
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
        let aligner = entry.tracker.is_some().then(|| entry.aligner.clone());
        (entry.group.clone(), entry.downlink.clone(), aligner)
    };
    let data = Box::into_raw(Box::new(HookData {
        group: group.clone(),
        downlink,
        aligner,
        cursor: Cursor::default(),
        key: key.to_string(),
        path,
        leg,
    }));
    let mut iface = ffi::ast_framehook_interface {
        version: ffi::AST_FRAMEHOOK_INTERFACE_VERSION as u16,
        event_cb: Some(on_event),
        destroy_cb: Some(on_destroy),
        consume_cb: Some(consumes),
        chan_fixup_cb: None,
        chan_breakdown_cb: None,
        disable_inheritance: 1,
        data: data.cast(),
    };
    // SAFETY: chan is live (caller's contract); the framehook API requires the channel lock,
    // taken and released here around the attach; Asterisk copies the interface.
    let id = unsafe {
        ffi::__ao2_lock(
            chan.cast(),
            ffi::AO2_LOCK_REQ_MUTEX,
            c"media.rs".as_ptr(),
            c"attach".as_ptr(),
            0,
            c"chan".as_ptr(),
        );
        let id = ffi::ast_framehook_attach(chan, &mut iface);
        ffi::__ao2_unlock(chan.cast(), c"media.rs".as_ptr(), c"attach".as_ptr(), 0, c"chan".as_ptr());
        id
    };
    if id < 0 {
        // SAFETY: Asterisk did not take the data: it is still ours to free.
        forget_leg(unsafe { Box::from_raw(data) });
        return Err("ast_framehook_attach failed".into());
    }
    Ok(())
}

extern "C" fn consumes(_data: *mut c_void, frame_type: c_int) -> c_int {
    c_int::from(frame_type == ffi::AST_FRAME_VOICE)
}

extern "C" fn on_event(
    chan: *mut ffi::ast_channel,
    frame: *mut ffi::ast_frame,
    event: c_int,
    data: *mut c_void,
) -> *mut ffi::ast_frame {
    // On a panic the frame passes unchanged: the call goes on as if the module were not there.
    guard("frame hook", frame, || {
        if frame.is_null() || data.is_null() {
            return frame;
        }
        // SAFETY: frame is a live frame Asterisk hands us with the channel locked; frametype is
        // an int at the offset the headers give (checked at build time).
        let frametype = unsafe { *(frame.cast::<u8>().add(ffi::AST_FRAME_FRAMETYPE_OFFSET).cast::<c_int>()) };
        if frametype != ffi::AST_FRAME_VOICE {
            return frame;
        }
        // SAFETY: data is the HookData we boxed in attach(); it lives until on_destroy.
        let hook = unsafe { &*(data as *const HookData) };
        match event {
            ffi::AST_FRAMEHOOK_EVENT_READ => on_read(chan, hook, frame),
            ffi::AST_FRAMEHOOK_EVENT_WRITE => on_write(hook, frame),
            _ => frame,
        }
    })
}

/// A voice frame read from the leg: into the mix or dropped. A dropped frame still goes through
/// the leg's own decoder (its read translation path), whose output is thrown away: a standby
/// leg's decoder then stays warm. Starved, a stateful decoder (Opus in SILK mode) starts cold at
/// the take-back: 60 ms of silence and a 20 ms fade-in at the far end (tests/tests/softphone.rs).
fn on_read(chan: *mut ffi::ast_channel, hook: &HookData, frame: *mut ffi::ast_frame) -> *mut ffi::ast_frame {
    let start = now_ns();
    let mut verdict = hook.group.on_frame(hook.path, hook.leg, start);
    if let Some(aligner) = &hook.aligner {
        verdict = align_frame(aligner, hook, frame, verdict, start);
    }
    FRAMES.fetch_add(1, Ordering::Relaxed);
    FRAME_NS.fetch_add(now_ns().saturating_sub(start), Ordering::Relaxed);
    match verdict {
        Verdict::Pass => frame,
        Verdict::Drop => {
            // SAFETY: in the read direction, returning another frame makes us responsible for
            // freeing this one, exactly as Asterisk's own suppress hook does; ast_null_frame is
            // static.
            unsafe {
                warm_decoder(chan, frame);
                ffi::ast_frame_free(frame, 1);
                std::ptr::addr_of_mut!(ffi::ast_null_frame)
            }
        }
    }
}

/// Keeps the frame in its leg's ring (the path's current leg only: a superseded leg's numbers are
/// another stream's) and, if it passes into the mix, fills it in place with the content the mix
/// wants next (`align.rs`).
fn align_frame(aligner: &Aligner, hook: &HookData, frame: *mut ffi::ast_frame, verdict: Verdict, now: u64) -> Verdict {
    if hook.group.current_leg(hook.path) != Some(hook.leg) {
        return verdict;
    }
    // SAFETY: a live voice frame read from the leg, ours during the callback.
    let Some(v) = (unsafe { asterisk::voice(frame) }) else { return verdict };
    let Some(format) = Format::from_name(v.format) else { return verdict };
    let Some(seq) = aligner.keep(hook.path, hook.leg, v.seqno, format, v.data, now) else { return verdict };
    match verdict {
        Verdict::Pass if aligner.emit(hook.path, seq, format, v.data) == Emit::Drop => Verdict::Drop,
        v => v,
    }
}

/// Feeds a dropped voice frame to the leg's read translation path (if it has one) and frees what
/// comes out, so that the decoder has heard everything when the leg feeds the mix again.
///
/// # Safety
/// Called from the read hook: `chan` is locked (as `ast_read` holds it around both the hooks
/// and its own translation) and `frame` is a live voice frame in the channel's native format,
/// which `ast_translate` (consume 0) only reads.
unsafe fn warm_decoder(chan: *mut ffi::ast_channel, frame: *mut ffi::ast_frame) {
    if chan.is_null() {
        return;
    }
    // SAFETY: see above.
    unsafe {
        let path = ffi::ast_channel_readtrans(chan);
        if path.is_null() {
            return;
        }
        let out = ffi::ast_translate(path, frame, 0);
        if !out.is_null() && out != std::ptr::addr_of_mut!(ffi::ast_null_frame) {
            ffi::ast_frame_free(out, 1);
        }
    }
}

/// A voice frame the bridge writes to the leg: kept as the group's downlink if the leg feeds the
/// mix, replaced by that downlink if it is a standby.
fn on_write(hook: &HookData, frame: *mut ffi::ast_frame) -> *mut ffi::ast_frame {
    let start = now_ns();
    let feeding = match hook.group.mix() {
        Mix::Empty => return frame, // no leg of the device feeds the mix yet: no own voice in it
        // A switch is being written: every leg is served as a standby this once.
        Mix::Switching => false,
        Mix::Fed(path) => path == hook.path && hook.group.current_leg(path) == Some(hook.leg),
    };
    // SAFETY: a live voice frame handed to this hook; written by ast_write's caller, who keeps it
    // (and so its payload) for us alone until ast_write returns.
    let voice = unsafe { asterisk::voice(frame) };
    let format = voice.as_ref().and_then(|v| Format::from_name(v.format));
    let fill = match voice {
        None => Fill::Unwritable,
        Some(v) if feeding => {
            if hook.group.on_mixed(hook.path, start) {
                // Just after a switch the bridge may still mix the old leg's frames into this
                // one: the phone would hear itself on every leg. Silence instead.
                SEAM_SILENCED.fetch_add(1, Ordering::Relaxed);
                match format {
                    Some(f) => v.data.fill(f.silence_byte()),
                    None => return drop_written(start),
                }
            }
            if let Some(f) = format.filter(|_| hook.group.hooks(Path::Data) + hook.group.hooks(Path::Carrier) > 1) {
                hook.downlink.store(f, v.samples, v.data, start);
            }
            WRITES.fetch_add(1, Ordering::Relaxed);
            WRITE_NS.fetch_add(now_ns().saturating_sub(start), Ordering::Relaxed);
            return frame;
        }
        Some(v) => hook.downlink.fill(&hook.cursor, format, v.samples, v.data, start),
    };
    let counter = match fill {
        Fill::Copied => &FILL_COPIED,
        Fill::Repeated => &FILL_REPEATED,
        Fill::Silence => &FILL_SILENCE,
        Fill::Unwritable => return drop_written(start),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    WRITES.fetch_add(1, Ordering::Relaxed);
    WRITE_NS.fetch_add(now_ns().saturating_sub(start), Ordering::Relaxed);
    frame
}

/// A frame written to a leg is not sent: never the phone's own voice. ast_write's caller still
/// owns and frees the original; ast_null_frame is static (nothing to free).
fn drop_written(start: u64) -> *mut ffi::ast_frame {
    FILL_DROPPED.fetch_add(1, Ordering::Relaxed);
    WRITES.fetch_add(1, Ordering::Relaxed);
    WRITE_NS.fetch_add(now_ns().saturating_sub(start), Ordering::Relaxed);
    std::ptr::addr_of_mut!(ffi::ast_null_frame)
}

extern "C" fn on_destroy(data: *mut c_void) {
    guard("frame hook destroy", (), || {
        if data.is_null() {
            return;
        }
        // SAFETY: data is the HookData boxed in attach(), handed back exactly once.
        forget_leg(unsafe { Box::from_raw(data as *mut HookData) });
    })
}

/// A leg's hook is gone: out of its group, its data dropped, and only then uncounted (an unload
/// that sees the count at 0 finds nothing of the hook left to run).
fn forget_leg(hook: Box<HookData>) {
    {
        let mut all = groups();
        hook.group.detach(hook.path, hook.leg);
        if let Some(e) = all.get_mut(&hook.key) {
            e.uniqueids.remove(&hook.leg);
        }
    }
    drop(hook);
    HOOKS_ATTACHED.fetch_sub(1, Ordering::SeqCst);
}

/// The ticker thread: started on load, stopped (and joined) on unload.
///
/// It is a plain pthread, not `std::thread`: spawning through std registers thread-local
/// destructors in the *calling* Asterisk thread (which lives on), and glibc then keeps the
/// module mapped after `module unload`. The ticker's own body uses no thread-locals that need
/// destructors, so once it is joined nothing pins the module.
struct Ticker {
    thread: libc::pthread_t,
}

static TICKER: Mutex<Option<Ticker>> = Mutex::new(None);
static TICKER_STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn ticker_main(_arg: *mut c_void) -> *mut c_void {
    let mut ticks: u32 = 0;
    while !TICKER_STOP.load(Ordering::Acquire) {
        guard("ticker", (), tick_all);
        ticks = ticks.wrapping_add(1);
        if ticks % 200 == 0 {
            guard("ticker", (), crate::registration::after_forced_unload);
        }
        let ts = libc::timespec { tv_sec: 0, tv_nsec: TICK.as_nanos() as libc::c_long };
        // SAFETY: ts is a valid timespec; the remainder pointer may be NULL.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
    std::ptr::null_mut()
}

pub fn start_ticker() -> Result<(), String> {
    TICKER_STOP.store(false, Ordering::Release);
    // SAFETY: zeroed pthread_t is overwritten by pthread_create; default attributes (NULL);
    // ticker_main is a valid start routine that ignores its argument.
    let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), ticker_main, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("cannot start the ticker thread (pthread_create: {rc})"));
    }
    *TICKER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ticker { thread });
    Ok(())
}

pub fn stop_ticker() {
    let ticker = TICKER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = ticker {
        TICKER_STOP.store(true, Ordering::Release);
        // SAFETY: the thread was created by start_ticker and is joined exactly once.
        unsafe { libc::pthread_join(t.thread, std::ptr::null_mut()) };
    }
}

fn ms(ns: u64) -> String {
    (ns / 1_000_000).to_string()
}

fn tick_all() {
    let now = now_ns();
    let mut events: Vec<(&'static str, Vec<(&'static str, String)>)> = Vec::new();
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
                let base = |path: Path, leg: LegId| {
                    vec![
                        (header::SESSION, e.session.clone()),
                        (header::GROUP, key.clone()),
                        (header::PATH, path.as_str().to_string()),
                        (header::UNIQUEID, e.uniqueid(leg)),
                    ]
                };
                match report {
                    Report::Stalled { path, leg, last_frame_ns, now_ns } => {
                        let mut h = base(path, leg);
                        h.push((header::LAST_FRAME_MS, ms(last_frame_ns)));
                        h.push((header::DETECTED_MS, ms(now_ns)));
                        h.push((header::SILENT_MS, ms(now_ns - last_frame_ns)));
                        events.push((event::LEG_STALLED, h));
                    }
                    Report::Recovered { path, leg, first_frame_ns } => {
                        let mut h = base(path, leg);
                        h.push((header::FIRST_FRAME_MS, ms(first_frame_ns)));
                        events.push((event::LEG_RECOVERED, h));
                    }
                    Report::Switched { from, to, leg, at_ns, gap_ns, reason } => {
                        let reason = match reason {
                            SwitchReason::First => value::SWITCH_FIRST_FRAMES,
                            SwitchReason::Stall => value::SWITCH_STALL,
                            SwitchReason::PreferredBack => value::SWITCH_PREFERRED_RECOVERED,
                        };
                        events.push((
                            event::LEG_SWITCHED,
                            vec![
                                (header::SESSION, e.session.clone()),
                                (header::GROUP, key.clone()),
                                (header::FROM, from.map(Path::as_str).unwrap_or("none").to_string()),
                                (header::TO, to.as_str().to_string()),
                                (header::UNIQUEID, e.uniqueid(leg)),
                                (header::AT_MS, ms(at_ns)),
                                (header::GAP_MS, ms(gap_ns)),
                                (header::REASON, reason.to_string()),
                            ],
                        ));
                    }
                }
            }
            if let Some((later, since, frames)) = e.handover {
                let feeding = e.group.active().filter(|p| *p != later);
                if feeding.is_none_or(|p| e.aligner.quiet_tail(p, frames + 1))
                    || now.saturating_sub(since) >= HANDOVER_WAIT_NS
                {
                    e.group.set_preferred(later);
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
        let measured = crate::align::estimate(aligner.ring(Path::Data), aligner.ring(Path::Carrier), max);
        let mut all = groups();
        let Some(e) = all.get_mut(&key) else { continue };
        let Some(change) = e.tracker.as_mut().and_then(|t| t.record(&e.aligner, measured, e.group.active(), now))
        else {
            continue;
        };
        let mut h = vec![(header::SESSION, e.session.clone()), (header::GROUP, key.clone())];
        match change {
            Change::Aligned(est) => {
                // The later leg drives: each slot then comes from the preferred leg, which had it
                // first. It takes over in the next pause of the leg feeding the mix now.
                let frames = est.delay_ns.unsigned_abs().div_ceil(20_000_000);
                e.handover = Some((est.later(), now, frames));
                h.push((header::STATUS, value::ALIGNED.into()));
                h.push((header::OFFSET_MS, format!("{:.1}", est.delay_ns as f64 / 1e6)));
                h.push((header::LATER, est.later().as_str().into()));
                h.push((header::RESIDUAL_MS, format!("{:.3}", f64::from(est.residual_samples) / 8.0)));
                h.push((header::SCORE, format!("{:.2}", est.score)));
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
                h.push((header::STATUS, value::SWITCHING.into()));
                h.push((header::REASON, why.reason()));
                notices.push(format!(
                    "device group {key}: legs not aligned ({}): the mix switches between them",
                    why.reason()
                ));
            }
        }
        events.push((event::ALIGNMENT, h));
    }
    // Raised outside the registry lock.
    for n in notices {
        asterisk::log(Level::Notice, &n);
    }
    for (name, headers) in events {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        asterisk::manager_event(EventClass::Call, name, &h);
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

/// Logs why a hook could not be attached; the call goes on unwatched.
pub fn attach_failed(channel: &str, why: &str) {
    asterisk::log(Level::Warning, &format!("cannot watch {channel}: {why}; the call goes on without failover"));
}
