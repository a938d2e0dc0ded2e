//! Watching every leg frame by frame inside Asterisk: one frame hook per leg ([`LegHook`]) that,
//! in the READ direction, asks its device group ([`crate::frame_clock::Group`]) whether the frame
//! feeds the mix (aligned, filled with the content the mix wants next: [`crate::align`]) and, in
//! the WRITE direction, gives every leg of the group the same downlink — what the bridge writes
//! to the feeding leg, without the phone's own voice ([`crate::downlink`] says why and how).
//!
//! The hook touches atomics only (the group registry, [`crate::groups`], is locked when a leg
//! joins or leaves, never in a frame callback). Each hook has its own [`LegId`], so two legs of
//! one path in one group (a phone that re-dialled while its old leg is still up) are told apart.
//! What the hooks did is counted here for `handoff show status`. The module's own reconnecting
//! tone ([`crate::tone`]), queued on a leg while every leg is silent, passes its hook untouched.

use crate::align::{Aligner, Emit};
use crate::asterisk::{self, now_ns, Channel, FrameHook, Level, Pass, ReadFrame, WrittenFrame};
use crate::downlink::{Cursor, Downlink, Fill, Format};
use crate::frame_clock::{Group, LegId, Mix, Path, Verdict};
use crate::groups::{self, GroupSettings, Membership};
use crate::tone;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Frame hooks currently attached, or being attached (the module must not unload while any is).
pub static HOOKS_ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// Set by unload while it checks that nothing is watched: no new hook is attached meanwhile.
pub static CLOSING: AtomicBool = AtomicBool::new(false);

/// Voice frames the hooks decided on, and the time spent deciding (ns): the module's cost per
/// frame, shown by `handoff show status`.
pub static FRAMES: AtomicU64 = AtomicU64::new(0);
pub static FRAME_NS: AtomicU64 = AtomicU64::new(0);
/// How long the read hook took per frame, in buckets of [`COST_BUCKET_NS`] (the last one holds
/// everything longer): a mean is moved by the rare frame whose thread was preempted mid-hook,
/// a median is not.
pub static FRAME_COST: [AtomicU64; COST_BUCKETS] = [const { AtomicU64::new(0) }; COST_BUCKETS];
pub const COST_BUCKET_NS: u64 = 100;
pub const COST_BUCKETS: usize = 64;

/// Voice frames the bridge wrote to watched legs, and the time the write hook spent on them (ns).
pub static WRITES: AtomicU64 = AtomicU64::new(0);
pub static WRITE_NS: AtomicU64 = AtomicU64::new(0);
/// What the write hook did with frames written to standby legs (see [`Fill`]).
pub static FILL_COPIED: AtomicU64 = AtomicU64::new(0);
pub static FILL_REPEATED: AtomicU64 = AtomicU64::new(0);
pub static FILL_SILENCE: AtomicU64 = AtomicU64::new(0);
pub static FILL_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Reconnecting-tone frames the read hook passed into the mix, and those it dropped because a
/// leg's audio was back.
pub static TONE_MIXED: AtomicU64 = AtomicU64::new(0);
pub static TONE_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Frames that carried concealment into the mix instead of silence (`conceal.rs`).
pub static CONCEALED: AtomicU64 = AtomicU64::new(0);
/// Frames of aligned legs held back while the bridge still held the other leg's frames.
pub static HELD_BACK: AtomicU64 = AtomicU64::new(0);
/// Standby frames that filled a slot the feeding leg missed with the content the mix wanted.
pub static STANDBY_FILLED: AtomicU64 = AtomicU64::new(0);
/// How long after taking the mix over a leg's frames that hold speech the far party already
/// heard carry concealment (the legs' offset, at most `align_max`, 500 ms); later, such a
/// frame is a late one whose slot another leg filled: dropped.
const TOOK_OVER_NS: u64 = 500_000_000;
/// Frames written to feeding legs just after a switch, silenced (see [`Group::on_mixed`]).
pub static SEAM_SILENCED: AtomicU64 = AtomicU64::new(0);

/// What a leg's hook carries (owned by Asterisk's framehook until it is detached).
struct LegHook {
    group: Arc<Group>,
    downlink: Arc<Downlink>,
    /// Set when the group is aligned (`alignment = aligned`).
    aligner: Option<Arc<Aligner>>,
    /// Where this leg is in the downlink while it is a standby.
    cursor: Cursor,
    key: String,
    path: Path,
    leg: LegId,
    /// `reconnect_tone_after` of the group, when the tone is on (its frames pass as they are).
    tone_after_ns: Option<u64>,
}

/// Watches `chan` as the `path` leg of group `key` of `session` (a new group is run as
/// `settings` say). On failure the call goes on unwatched (the reason is logged).
pub fn attach(chan: &Channel, key: &str, session: &str, uniqueid: &str, path: Path, settings: GroupSettings) {
    // Counted before the unload's check can miss it (see registration.rs): either unload sees
    // this hook, or this attach sees the unload.
    HOOKS_ATTACHED.fetch_add(1, Ordering::SeqCst);
    let attached = if CLOSING.load(Ordering::SeqCst) {
        HOOKS_ATTACHED.fetch_sub(1, Ordering::SeqCst);
        Err("the module is unloading".to_string())
    } else {
        let tone_after_ns = settings.tone_after_ns;
        let Membership { leg, group, downlink, aligner } =
            groups::join(key, session, uniqueid, chan.keep(), path, settings);
        let hook = LegHook {
            group,
            downlink,
            aligner,
            cursor: Cursor::default(),
            key: key.to_string(),
            path,
            leg,
            tone_after_ns,
        };
        chan.attach_hook(hook)
    };
    if let Err(why) = attached {
        asterisk::log(
            Level::Warning,
            &format!("cannot watch {}: {why}; the call goes on without failover", chan.name()),
        );
    }
}

impl FrameHook for LegHook {
    /// A voice frame read from the leg: into the mix or dropped. A dropped frame still goes
    /// through the leg's own decoder, whose output is thrown away: a standby leg's decoder then
    /// stays warm. Starved, a stateful decoder (Opus in SILK mode) starts cold at the take-back:
    /// 60 ms of silence and a 20 ms fade-in at the far end (tests/tests/softphone.rs).
    fn read(&self, frame: &mut ReadFrame<'_>) -> Pass {
        let start = now_ns();
        if let Some(after) = self.tone_after_ns.filter(|_| frame.has_source(tone::SOURCE)) {
            // The module's own reconnecting tone (groups.rs): into the mix while every leg is
            // still silent, never once a leg's audio is back (no tone over the voice).
            let (counter, pass) = match self.group.silent_for(start) {
                Some(silent) if silent >= after => (&TONE_MIXED, Pass::Keep),
                _ => (&TONE_DROPPED, Pass::Drop),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return pass;
        }
        let mut verdict = self.group.on_frame(self.path, self.leg, start);
        if let Some(aligner) = &self.aligner {
            verdict = self.align(aligner, frame, verdict, start);
        }
        let spent = now_ns().saturating_sub(start);
        FRAMES.fetch_add(1, Ordering::Relaxed);
        FRAME_NS.fetch_add(spent, Ordering::Relaxed);
        FRAME_COST[((spent / COST_BUCKET_NS) as usize).min(COST_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        match verdict {
            Verdict::Pass => Pass::Keep,
            Verdict::Drop => {
                frame.feed_decoder();
                Pass::Drop
            }
        }
    }

    /// A voice frame the bridge writes to the leg: kept as the group's downlink if the leg feeds
    /// the mix, replaced by that downlink if it is a standby.
    fn write(&self, frame: &mut WrittenFrame<'_>) -> Pass {
        let start = now_ns();
        let feeding = match self.group.mix() {
            Mix::Empty => return Pass::Keep, // no leg of the device feeds the mix yet: no own voice in it
            // A switch is being written: every leg is served as a standby this once.
            Mix::Switching => false,
            Mix::Fed(path) => path == self.path && self.group.current_leg(path) == Some(self.leg),
        };
        let voice = frame.voice();
        let format = voice.as_ref().and_then(|v| Format::from_name(v.format));
        let fill = match voice {
            None => Fill::Unwritable,
            Some(v) if feeding => {
                if self.group.on_mixed(self.path, start) {
                    // Just after a switch the bridge may still mix the old leg's frames into this
                    // one: the phone would hear itself on every leg. Silence instead.
                    SEAM_SILENCED.fetch_add(1, Ordering::Relaxed);
                    match format {
                        Some(f) => v.data.fill(f.silence_byte()),
                        None => return written(start, Pass::Drop),
                    }
                }
                if let Some(f) = format.filter(|_| self.group.hooks(Path::Data) + self.group.hooks(Path::Carrier) > 1) {
                    self.downlink.store(f, v.samples, v.data, start);
                }
                return written(start, Pass::Keep);
            }
            Some(v) => self.downlink.fill(&self.cursor, format, v.samples, v.data, start),
        };
        let counter = match fill {
            Fill::Copied => &FILL_COPIED,
            Fill::Repeated => &FILL_REPEATED,
            Fill::Silence => &FILL_SILENCE,
            // Not sent: never the phone's own voice.
            Fill::Unwritable => return written(start, Pass::Drop),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        written(start, Pass::Keep)
    }

    /// The leg leaves its group, its data is dropped, and only then is the hook uncounted (an
    /// unload that sees the count at 0 finds nothing of the hook left to run).
    fn detach(self: Box<Self>) {
        groups::leave(&self.key, &self.group, self.path, self.leg);
        drop(self);
        HOOKS_ATTACHED.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LegHook {
    /// Keeps the frame in its leg's ring (the path's current leg only: a superseded leg's numbers
    /// are another stream's) and, if it passes into the mix, fills it in place with the content
    /// the mix wants next (`align.rs`). Where the mix would get nothing from a flowing leg — the
    /// frame's content was played already (just after a failover onto the later leg), or the
    /// leg feeding the mix missed a frame and this standby leg's frame came instead — the frame
    /// carries concealment (`conceal.rs`).
    fn align(&self, aligner: &Aligner, frame: &mut ReadFrame<'_>, verdict: Verdict, now: u64) -> Verdict {
        if self.group.current_leg(self.path) != Some(self.leg) {
            return verdict;
        }
        let Some(v) = frame.voice() else { return verdict };
        let Some(format) = Format::from_name(v.format) else { return verdict };
        let Some(seq) = aligner.keep(self.path, self.leg, v.seqno, format, v.data, now) else { return verdict };
        let concealed = match verdict {
            Verdict::Pass if self.group.held_back(self.path, now) => {
                // Just after the mix moved to this leg the bridge still holds the other leg's
                // last frames: this frame's content follows theirs, later (not lost).
                self.group.unpassed(self.path);
                HELD_BACK.fetch_add(1, Ordering::Relaxed);
                return Verdict::Drop;
            }
            Verdict::Pass => match aligner.emit(self.path, seq, format, v.data) {
                Emit::Drop => return Verdict::Drop,
                // Just after a failover onto this leg: speech the far party already heard.
                Emit::Behind if self.group.took_over_within(self.path, now, TOOK_OVER_NS) => {
                    aligner.conceal(format, v.data)
                }
                // A late frame whose slot another leg's frame already filled.
                Emit::Behind => return Verdict::Drop,
                Emit::Own | Emit::Filled { .. } => return Verdict::Pass,
            },
            Verdict::Drop if self.group.may_conceal(self.path, self.leg, now) => {
                // The leg feeding the mix missed a frame: this standby frame fills the slot, with
                // the content the mix wants next where this leg's ring has it (aligned legs),
                // else with concealment.
                let filled = aligner.lag().is_some()
                    && matches!(aligner.emit(self.path, seq, format, v.data), Emit::Own | Emit::Filled { .. });
                if filled {
                    self.group.passed(self.path, now);
                    STANDBY_FILLED.fetch_add(1, Ordering::Relaxed);
                    return Verdict::Pass;
                }
                aligner.conceal(format, v.data) && {
                    self.group.passed(self.path, now);
                    true
                }
            }
            Verdict::Drop => false,
        };
        if concealed {
            CONCEALED.fetch_add(1, Ordering::Relaxed);
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

/// Counts a written frame and the time the write hook spent on it.
fn written(start: u64, pass: Pass) -> Pass {
    if pass == Pass::Drop {
        FILL_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    WRITES.fetch_add(1, Ordering::Relaxed);
    WRITE_NS.fetch_add(now_ns().saturating_sub(start), Ordering::Relaxed);
    pass
}

/// The read hook's time per frame at quantile `q` (0..1), as the upper end of its bucket (ns);
/// None before the first frame.
pub fn frame_cost_quantile(q: f64) -> Option<u64> {
    let counts: Vec<u64> = FRAME_COST.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    let target = (total as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    counts
        .iter()
        .position(|c| {
            seen += c;
            seen >= target
        })
        .filter(|_| total > 0)
        .map(|i| (i as u64 + 1) * COST_BUCKET_NS)
}
