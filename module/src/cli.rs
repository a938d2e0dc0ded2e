//! CLI: `handoff show status`.

use crate::asterisk::{CliCommand, CliOutcome};
use crate::config;
use crate::groups;
use crate::guard::PANICS_CAUGHT;
use crate::legs;
use crate::media;
use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// `handoff show status`.
pub struct ShowStatus;

impl CliCommand for ShowStatus {
    const COMMAND: &'static CStr = c"handoff show status";
    const SUMMARY: &'static CStr = c"Show handoff module status";
    const USAGE: &'static CStr = c"Usage: handoff show status\n       Shows whether handoffd is connected, the channels waiting in Handoff() and totals since load.\n";

    fn run(argc: usize) -> CliOutcome {
        if argc == 3 {
            CliOutcome::Print(status_text())
        } else {
            CliOutcome::ShowUsage
        }
    }
}

/// The text `handoff show status` prints.
pub fn status_text() -> String {
    let cfg = config::current();
    let reg = legs::registry();
    let controller = match reg.controller(Instant::now(), cfg.controller_timeout()) {
        Some((name, ago)) => format!("connected ({name}, last hello {:.1} s ago)", ago.as_secs_f64()),
        None => "NOT connected (Handoff() calls get HANDOFF_STATUS=NOCONTROLLER)".into(),
    };
    let c = reg.counters;
    let groups = groups::status_lines();
    format!(
        "handoff {version}\n\
         Controller:          {controller}\n\
         Waiting in Handoff(): {waiting}\n\
         Legs since load:     {arrived} arrived, {assigned} assigned, {refused} refused, {timed_out} timed out, {hung_up} hung up while waiting, {noctl} without controller\n\
         Settings:            assign_timeout={assign} ms, controller_timeout={ctl} s, stall_threshold={stall} ms, stall_threshold_max={stall_max} ms, recover_time={recover} ms, controller_account={account}, alignment={alignment}, align_max={align_max} ms, reconnect_tone_after={tone_after} ms\n\
         Watched legs:        {hooks}\n\
         Frames watched:      {frames} ({per_frame} ns per frame in the hook; median < {p50} ns, 99 % < {p99} ns)\n\
         Alignment work:      {estimates} offset measurements, {per_estimate} us each; with them {amortised} ns per frame\n\
         Downlink:            {writes} frames written to watched legs ({per_write} ns per frame in the hook); standby legs got {copied} of the feeding leg's frames, {repeated} repeated, {silenced} silenced, {dropped} dropped; {seam} silenced just after a switch\n\
         Concealment:         {concealed} frames carried the last frame faded instead of silence (a leg missed frames, or played what the mix had); {held_back} held back while the bridge held the other leg's frames; {standby_filled} standby frames filled a slot the feeding leg missed\n\
         Reconnecting tone:   {tone_frames} frames queued while every leg of a device was silent, {tone_refused} refused; {tone_mixed} into the mix, {tone_dropped} dropped (a leg was back)\n\
         Device groups:       {ngroups}\n{groups}\
         Panics caught:       {panics}\n",
        version = env!("CARGO_PKG_VERSION"),
        waiting = reg.waiting(),
        arrived = c.arrived,
        assigned = c.assigned,
        refused = c.refused,
        timed_out = c.timed_out,
        hung_up = c.hung_up,
        noctl = c.no_controller,
        assign = cfg.assign_timeout_ms,
        ctl = cfg.controller_timeout_s,
        panics = PANICS_CAUGHT.load(Ordering::Relaxed),
        stall = cfg.stall_threshold_ms,
        stall_max = cfg.stall_threshold_max_ms,
        alignment = cfg.alignment.as_str(),
        align_max = cfg.align_max_ms,
        tone_after = cfg.reconnect_tone_after_ms,
        recover = cfg.recover_time_ms,
        account = cfg.controller_account,
        hooks = media::HOOKS_ATTACHED.load(Ordering::Relaxed),
        frames = media::FRAMES.load(Ordering::Relaxed),
        per_frame = media::FRAME_NS.load(Ordering::Relaxed) / media::FRAMES.load(Ordering::Relaxed).max(1),
        p50 = media::frame_cost_quantile(0.5).unwrap_or(0),
        p99 = media::frame_cost_quantile(0.99).unwrap_or(0),
        estimates = groups::ESTIMATES.load(Ordering::Relaxed),
        per_estimate = groups::ESTIMATE_NS.load(Ordering::Relaxed) / 1000 / groups::ESTIMATES.load(Ordering::Relaxed).max(1),
        amortised = (media::FRAME_NS.load(Ordering::Relaxed) + groups::ESTIMATE_NS.load(Ordering::Relaxed))
            / media::FRAMES.load(Ordering::Relaxed).max(1),
        writes = media::WRITES.load(Ordering::Relaxed),
        per_write = media::WRITE_NS.load(Ordering::Relaxed) / media::WRITES.load(Ordering::Relaxed).max(1),
        copied = media::FILL_COPIED.load(Ordering::Relaxed),
        repeated = media::FILL_REPEATED.load(Ordering::Relaxed),
        silenced = media::FILL_SILENCE.load(Ordering::Relaxed),
        dropped = media::FILL_DROPPED.load(Ordering::Relaxed),
        seam = media::SEAM_SILENCED.load(Ordering::Relaxed),
        concealed = media::CONCEALED.load(Ordering::Relaxed),
        held_back = media::HELD_BACK.load(Ordering::Relaxed),
        standby_filled = media::STANDBY_FILLED.load(Ordering::Relaxed),
        tone_frames = groups::TONE_FRAMES.load(Ordering::Relaxed),
        tone_refused = groups::TONE_REFUSED.load(Ordering::Relaxed),
        tone_mixed = media::TONE_MIXED.load(Ordering::Relaxed),
        tone_dropped = media::TONE_DROPPED.load(Ordering::Relaxed),
        ngroups = groups.len(),
        groups = groups.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
}
