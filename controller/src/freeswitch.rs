//! The FreeSWITCH driver (sans-I/O): the event socket ([`crate::esl`]) under the same
//! [`Driver`] interface as the Asterisk driver, with `mod_conference` in place of ConfBridge.
//!
//! FreeSWITCH has no `res_handoff.so` inside, so three things the module does on Asterisk are
//! done here, from events:
//!
//! - **Arrival.** `dialplans/freeswitch/handoff.xml` sets `handoff_far`, `handoff_path` and
//!   `handoff_token` and parks the channel; its `CHANNEL_PARK` event is the leg's arrival.
//! - **Join.** An assigned leg is transferred (inline dial plan) into the session's conference
//!   `<bridge>@<esl.conference_profile>`, *muted*; its `add-member` event is the join.
//! - **The leg switch.** Only one leg of a device feeds the mix: the driver unmutes one member
//!   per device group (the preferred path's leg when it is there) and keeps the others muted.
//!   When the feeding leg hangs up, whatever the reason (FreeSWITCH's `media_timeout`, set in
//!   the dial plan, hangs a leg up whose RTP stopped), the next leg is unmuted at once and the
//!   session machine is told with `LegSwitched`. The gap the far party hears is therefore the
//!   media timeout plus one event and one `api` round trip, where `res_handoff.so` switches
//!   within a frame (see the README).
//!
//! ```text
//!  connected ─▶ Handshake (auth) ─▶ Channels: `event json ...`, `api show channels as json`
//!            ─▶ Conferences: `api conference <name> json_list` for every handoff conference
//!            ─▶ Ready (Snapshot out, events held meanwhile released in Event-Sequence order)
//! ```
//!
//! Hang-ups are classified by [`crate::hangup_cause`] (by cause *name*: FreeSWITCH reports its
//! own causes, `MEDIA_TIMEOUT` among them, as Q.850 16) before the session machine hears of
//! them, and already at `CHANNEL_HANGUP`: a feeding leg that the user hung up hands the mix to
//! no one (the call ends), a lost one hands it to the device's other leg. Legs handoffd is
//! hanging up itself are never unmuted. Two legs of one device do not hear each other:
//! `conference <bridge> relate <a> <b> nohear` both ways when the second one joins.
//!
//! Commands: `Assign` → `uuid_transfer <uuid> answer,conference:<bridge>@<profile>+flags{mute}
//! inline`; `Refuse` → `uuid_setvar <uuid> handoff_reason ...` then `uuid_transfer` to
//! `esl.refused_extension`; `OriginateFar` → `bgapi originate {origination_uuid=<session>-far,
//! ...}sofia/gateway/<far.endpoint>/<number> &conference(<bridge>@<profile>)`; `Hangup` →
//! `uuid_kill <uuid> <CAUSE>` (names FreeSWITCH knows: [`crate::hangup_cause::freeswitch_kill_cause`]).
//! On shutdown the driver says `exit` and reads FreeSWITCH's goodbye ([`Driver::goodbye`]).
//!
//! Files: this one (the driver's state, the link's outputs and events); `freeswitch/arrival.rs`
//! (a parked leg read or refused), `inputs.rs` (connection, bytes, time, session commands,
//! the resync steps), `mix.rs` (the leg switch: one unmuted member per device), `causes.rs`
//! (FreeSWITCH's cause names), `gap.rs` (the failover gap from the media timeout), `pin.rs`
//! (a move leg without a PIN), `tests.rs`.

use crate::config::{Config, Esl};
use crate::esl::{
    parse_conference_json_list, parse_show_channels_json, ChannelRow, Client, ClientConfig, ClientError, CommandId,
    Event, EventFormat, Failure, Output, ReplyStatus,
};
use crate::hangup_cause::{classify, LegEnd, Overrides, Pbx as CausePbx};
use crate::pbx::{Driver, DriverEvent, DriverInput, LinkError, LinkUp, Pbx, PbxChannel};
use crate::session::{Input, Millis, Path};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tracing::{debug, warn};

mod arrival;
mod causes;
mod gap;
mod inputs;
mod mix;
mod pin;

use mix::choose_feeder;

pub use causes::{cause_code, cause_name, CAUSES};

/// The most events held while the snapshot is read; past it the link is dropped and the
/// snapshot read again after the reconnect (a peer flooding events cannot grow handoffd).
pub const MAX_HELD_DURING_SNAPSHOT: usize = 100_000;

/// The most bytes of events held while the snapshot is read (an ESL event may carry up to the
/// codec's 1 MiB body): the same drop and fresh snapshot past it.
pub const MAX_HELD_BYTES_DURING_SNAPSHOT: usize = 16 << 20;

pub use pin::{EMPTY_PIN_REASON, PIN_PROMPT};

/// How long events are held to be released in `Event-Sequence` order (the wire order is not
/// the sequence order; see `crate::esl::client`).
pub const REORDER_WINDOW_MS: u64 = 20;

/// The events the driver subscribes to (`event json ...`).
pub const EVENTS: &[&str] = &[
    "CHANNEL_CREATE",
    "CHANNEL_PARK",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "CUSTOM",
    "conference::maintenance",
];

#[derive(Debug)]
enum Phase {
    Down,
    Handshake,
    /// Subscribed; `show channels as json` sent.
    Channels(CommandId),
    /// One `json_list` per handoff conference sent.
    Conferences {
        pending: BTreeSet<CommandId>,
        rows: Vec<ChannelRow>,
    },
    Ready,
}

/// A client leg in a conference, as far as the mix is concerned.
#[derive(Debug, Clone)]
struct MixLeg {
    group: String,
    bridge: String,
    path: Path,
    /// The conference member id, once it joined.
    member: Option<u64>,
}

#[derive(Debug, Clone)]
struct Group {
    preferred: Path,
    /// The leg whose voice the conference hears.
    feeder: Option<String>,
}

/// The FreeSWITCH driver.
pub struct FreeSwitchDriver {
    cfg: Config,
    esl: Esl,
    /// `sessions.preferred_path`: the leg that feeds when a device has both in the conference.
    preferred: Path,
    client: Option<Client>,
    phase: Phase,
    /// Events that came while the snapshot was read.
    held: Vec<Event>,
    /// The held events' size in bytes, roughly.
    held_bytes: usize,
    /// Conference member ids and whether they speak, read at resync (uuid → (id, speaks)).
    members: HashMap<String, (u64, bool)>,
    /// Paths of legs that arrived and wait for a decision.
    arrivals: HashMap<String, Path>,
    legs: HashMap<String, MixLeg>,
    groups: BTreeMap<String, Group>,
    /// Originate jobs → the far channel's uuid.
    far_jobs: HashMap<CommandId, String>,
    /// Far channels being called → whether FreeSWITCH created the channel yet.
    far_pending: HashMap<String, bool>,
    /// The snapshot is out; held events go once the daemon has adopted what it found.
    release_at_resynced: bool,
    /// `sessions.normal_clearing_is_lost`.
    overrides: Overrides,
    /// Client legs handoffd is hanging up: never unmuted, their leaving switches nothing.
    going: BTreeSet<String>,
    /// Paths of client legs that hung up, until their CHANNEL_HANGUP_COMPLETE.
    gone_paths: HashMap<String, Path>,
    /// Failovers whose gap is being measured.
    gaps: gap::GapMeter,
    /// `nohear` relations sent: (conference, member, member it does not hear).
    related: BTreeSet<(String, u64, u64)>,
    events: std::collections::VecDeque<DriverEvent>,
}

impl FreeSwitchDriver {
    /// A driver for the event socket `esl`; `cfg` supplies the far gateway and the prefix.
    pub fn new(cfg: Config, esl: Esl) -> Self {
        Self {
            preferred: cfg.preferred_path(),
            overrides: cfg.hangup_overrides(),
            cfg,
            esl,
            client: None,
            phase: Phase::Down,
            held: Vec::new(),
            held_bytes: 0,
            members: HashMap::new(),
            arrivals: HashMap::new(),
            legs: HashMap::new(),
            groups: BTreeMap::new(),
            far_jobs: HashMap::new(),
            far_pending: HashMap::new(),
            release_at_resynced: false,
            going: BTreeSet::new(),
            gone_paths: HashMap::new(),
            gaps: gap::GapMeter::default(),
            related: BTreeSet::new(),
            events: Default::default(),
        }
    }

    fn down(&mut self, e: LinkError) {
        self.phase = Phase::Down;
        self.client = None;
        self.events.push_back(DriverEvent::Down(e));
    }

    fn lost(&mut self, why: impl Into<String>) {
        let addr = self.esl.address();
        self.down(LinkError::Lost { link: "ESL", addr, why: why.into() });
    }

    fn client_error(&mut self, e: ClientError) {
        match e {
            ClientError::AuthFailed { reply_text } => {
                let why = format!(
                    "ESL auth at {} refused: {reply_text} (check esl.password in handoffd.yaml against event_socket.conf.xml)",
                    self.esl.address()
                );
                self.down(LinkError::Refused(why))
            }
            ClientError::Rejected { text } => {
                let why = format!(
                    "FreeSWITCH's event socket at {} rejected handoffd: {} (its apply-inbound-acl in event_socket.conf.xml)",
                    self.esl.address(),
                    text.trim()
                );
                self.down(LinkError::Refused(why))
            }
            other => self.lost(other.to_string()),
        }
    }

    /// Sends an ESL command; a command that cannot be encoded is logged and dropped.
    fn send(&mut self, cmd: crate::esl::Command, now: Millis) -> Option<CommandId> {
        let client = self.client.as_mut()?;
        match client.send(cmd, now) {
            Ok(id) => Some(id),
            Err(ClientError::Command(e)) => {
                warn!("not sending an ESL command: {e}");
                None
            }
            Err(e) => {
                self.client_error(e);
                None
            }
        }
    }

    fn api(&mut self, line: String, now: Millis) -> Option<CommandId> {
        debug!(command = %line.split(' ').take(2).collect::<Vec<_>>().join(" "), "ESL api");
        self.send(crate::esl::Command::api(line), now)
    }

    fn drain(&mut self, now: Millis) {
        while let Some(out) = self.client.as_mut().and_then(Client::poll_output) {
            self.on_output(out, now);
        }
    }

    fn on_output(&mut self, out: Output, now: Millis) {
        match out {
            Output::Authenticated => {
                self.events.push_back(DriverEvent::Up(LinkUp {
                    pbx: Pbx::FreeSwitch,
                    address: self.esl.address(),
                    account: None,
                }));
                let names = EVENTS.iter().map(|s| s.to_string()).collect();
                self.send(crate::esl::Command::Event { format: EventFormat::Json, names }, now);
                if let Some(id) = self.api("show channels as json".into(), now) {
                    self.phase = Phase::Channels(id);
                }
            }
            Output::ApiResult { id, command, response } => {
                let text = response.text().into_owned();
                self.on_api_result(id, &command, &text, now)
            }
            Output::Failed { id, command, failure } => {
                if let Some(far) = self.far_jobs.remove(&id) {
                    return self.far_failed(&far, &failure.to_string());
                }
                let resync_step = match &self.phase {
                    Phase::Channels(c) => *c == id,
                    Phase::Conferences { pending, .. } => pending.contains(&id),
                    _ => false,
                };
                if resync_step {
                    // A conference that ended between the two reads answers -ERR: skip it.
                    if let (Phase::Conferences { pending, .. }, Failure::Refused(_)) = (&mut self.phase, &failure) {
                        pending.remove(&id);
                        if pending.is_empty() {
                            self.finish_resync();
                        }
                        return;
                    }
                    return self.lost(format!("resynchronising: {command} failed: {failure}"));
                }
                if self.gaps.failed(id) {
                    self.events.push_back(DriverEvent::Failover { gap_ms: None });
                }
                warn!("FreeSWITCH: {command} failed: {failure}");
            }
            Output::JobDone { id, status, output, .. } => {
                let Some(far) = self.far_jobs.remove(&id) else { return };
                if status == ReplyStatus::Ok {
                    self.far_answered(far);
                } else {
                    self.far_failed(&far, output.trim());
                }
            }
            Output::Event { event, late } => {
                if late {
                    debug!(seq = ?event.sequence(), "ESL event older than one already handled");
                }
                if matches!(self.phase, Phase::Ready) && !self.release_at_resynced {
                    self.on_event(&event, now);
                } else if self.held.len() >= MAX_HELD_DURING_SNAPSHOT
                    || self.held_bytes >= MAX_HELD_BYTES_DURING_SNAPSHOT
                {
                    let what = if self.held.len() >= MAX_HELD_DURING_SNAPSHOT {
                        format!("over {MAX_HELD_DURING_SNAPSHOT} events")
                    } else {
                        format!("over {} MiB of events", MAX_HELD_BYTES_DURING_SNAPSHOT >> 20)
                    };
                    self.held = Vec::new();
                    self.held_bytes = 0;
                    self.lost(format!(
                        "{what} came while the channel snapshot was read; reconnecting to read it again"
                    ));
                } else {
                    self.held_bytes += event.byte_size();
                    self.held.push(event);
                }
            }
            Output::Disconnected { notice, .. } => {
                let notice =
                    notice.map(|n| n.text().lines().next().unwrap_or("").trim().to_string()).filter(|t| !t.is_empty());
                self.lost(match notice {
                    Some(text) => format!("FreeSWITCH disconnected: {text}"),
                    None => "FreeSWITCH closed the connection".into(),
                });
            }
            Output::Skipped(e) => warn!("bad ESL input from {}: {e}", self.esl.address()),
            Output::Replied { .. } | Output::JobAccepted { .. } | Output::Connected { .. } | Output::Log(_) => {}
            Output::Unhandled(m) => debug!("unhandled ESL message: {m:?}"),
        }
    }

    fn on_api_result(&mut self, id: CommandId, command: &str, text: &str, now: Millis) {
        match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::Channels(c) if c == id => {
                let rows = match parse_show_channels_json(text) {
                    Ok(r) => r,
                    Err(e) => return self.lost(format!("show channels as json: {e}")),
                };
                let conferences: BTreeSet<String> = rows
                    .iter()
                    .filter(|r| r.application == "conference")
                    .map(|r| conference_of(&r.application_data).to_string())
                    .filter(|c| c.starts_with(&self.cfg.conference.name_prefix))
                    .collect();
                self.phase = Phase::Conferences { pending: BTreeSet::new(), rows };
                let mut sent = BTreeSet::new();
                for name in conferences {
                    if let Some(id) = self.api(format!("conference {name} json_list"), now) {
                        sent.insert(id);
                    }
                }
                if let Phase::Conferences { pending, .. } = &mut self.phase {
                    *pending = sent;
                    if pending.is_empty() {
                        self.finish_resync();
                    }
                }
            }
            Phase::Conferences { mut pending, rows } if pending.contains(&id) => {
                pending.remove(&id);
                match parse_conference_json_list(text) {
                    Ok(confs) => {
                        for m in confs.into_iter().flat_map(|c| c.members) {
                            self.members.insert(m.uuid, (m.id, m.flags.can_speak));
                        }
                    }
                    // The conference ended between the two reads: its channels are gone too.
                    Err(e) => debug!("{command}: {e}"),
                }
                let done = pending.is_empty();
                self.phase = Phase::Conferences { pending, rows };
                if done {
                    self.finish_resync();
                }
            }
            phase => {
                self.phase = phase;
                let t = text.trim();
                if t.starts_with("-ERR") || t.starts_with("-USAGE") {
                    warn!("FreeSWITCH refused `{command}`: {t}");
                }
            }
        }
    }

    fn finish_resync(&mut self) {
        let Phase::Conferences { rows, .. } = std::mem::replace(&mut self.phase, Phase::Ready) else { return };
        let channels = rows
            .iter()
            .map(|r| PbxChannel {
                uniqueid: r.uuid.clone(),
                channel: r.name.clone(),
                conference: (r.application == "conference").then(|| conference_of(&r.application_data).to_string()),
                endpoint: user_of(&r.name).to_string(),
                caller: r.cid_num.clone(),
            })
            .collect();
        self.events.push_back(DriverEvent::Snapshot(channels));
        // The events held meanwhile wait for `resynced`, so that they meet the adopted legs.
        self.release_at_resynced = true;
    }

    fn input(&mut self, input: Input) {
        self.events.push_back(DriverEvent::Input(input));
    }

    /// The far party answered (its CHANNEL_ANSWER, or its originate job's `+OK`: whichever
    /// comes first).
    fn far_answered(&mut self, far: String) {
        if self.far_pending.remove(&far).is_some() {
            self.input(Input::FarAnswered { uniqueid: far });
        }
    }

    fn far_failed(&mut self, far: &str, text: &str) {
        let Some(created) = self.far_pending.remove(far) else { return };
        let cause = text.trim().trim_start_matches("-ERR").trim();
        let reason = match cause_code(cause) {
            17 => "busy".to_string(),
            18 | 19 => "no answer".to_string(),
            34 | 42 => "congestion".to_string(),
            _ if cause.is_empty() => "failed".to_string(),
            _ => cause.to_ascii_lowercase().replace('_', " "),
        };
        self.input(Input::FarFailed { uniqueid: far.to_string(), reason, no_channel: !created });
    }

    fn on_event(&mut self, e: &Event, now: Millis) {
        let name = e.header("Event-Name").unwrap_or("");
        let uuid = e.unique_id().unwrap_or("").to_string();
        match name {
            "CHANNEL_CREATE" => {
                if let Some(created) = self.far_pending.get_mut(&uuid) {
                    *created = true;
                }
            }
            "CHANNEL_PARK" => self.on_park(e, now),
            "CHANNEL_ANSWER" => self.far_answered(uuid),
            // CHANNEL_HANGUP comes first: the mix moves on at once. CHANNEL_HANGUP_COMPLETE
            // carries the Q.850 cause: the session machine hears of the hangup then.
            // A lost feeding leg hands the mix over here; a leg the user hung up does not (the
            // call ends: never unmute a leg about to be hung up).
            "CHANNEL_HANGUP" => {
                let cause_txt = e.header("Hangup-Cause").unwrap_or("");
                let path = self.legs.get(&uuid).map(|l| l.path);
                let end = classify(CausePbx::FreeSwitch, cause_txt, cause_code(cause_txt), path, &self.overrides);
                self.leg_gone(&uuid, cause_txt, end == LegEnd::Lost, gap::silence_start(e), now);
            }
            "CHANNEL_HANGUP_COMPLETE" if !uuid.is_empty() => {
                let cause_txt = e.header("Hangup-Cause").unwrap_or("").to_string();
                let cause = e
                    .header("variable_hangup_cause_q850")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_else(|| cause_code(&cause_txt));
                let path = self.legs.get(&uuid).map(|l| l.path).or_else(|| self.gone_paths.remove(&uuid));
                let path = path.or_else(|| self.arrivals.remove(&uuid));
                self.far_pending.remove(&uuid);
                let end = classify(CausePbx::FreeSwitch, &cause_txt, cause, path, &self.overrides);
                self.leg_gone(&uuid, &cause_txt, end == LegEnd::Lost, None, now);
                self.gone_paths.remove(&uuid);
                self.going.remove(&uuid);
                self.input(Input::LegEnded { uniqueid: uuid, cause, cause_txt, end });
            }
            "CUSTOM" if e.header("Event-Subclass") == Some("conference::maintenance") => {
                match e.header("Action").unwrap_or("") {
                    "add-member" => {
                        let member = e.header("Member-ID").and_then(|m| m.parse().ok());
                        if let (Some(leg), Some(m)) = (self.legs.get_mut(&uuid), member) {
                            leg.member = Some(m);
                            let group = leg.group.clone();
                            let leg = leg.clone();
                            let why = format!("the {} leg joined", leg.path.as_str());
                            self.input(Input::LegJoined { uniqueid: uuid.clone() });
                            self.mix(&group, &why, false, None, now);
                            self.relate(&uuid, now);
                        } else if !uuid.is_empty() {
                            self.input(Input::LegJoined { uniqueid: uuid });
                        }
                    }
                    "del-member" => {
                        if let Some(leg) = self.legs.get_mut(&uuid) {
                            leg.member = None;
                            let group = leg.group.clone();
                            let leg = leg.clone();
                            let feeding = self.groups.get(&group).is_some_and(|g| g.feeder.as_deref() == Some(&uuid));
                            if feeding && !self.going.contains(&uuid) {
                                let why = format!("the {} leg left the conference", leg.path.as_str());
                                self.mix(&group, &why, true, None, now);
                            }
                        }
                    }
                    "unmute-member" => {
                        if let Some(gap_ms) = self.gaps.unmuted(e) {
                            self.events.push_back(DriverEvent::Failover { gap_ms: Some(gap_ms) });
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The conference name in `conference` application data (`handoff-x@handoff+flags{mute}`).
fn conference_of(data: &str) -> &str {
    data.split(['@', '+']).next().unwrap_or("").trim()
}

/// The SIP user in a sofia channel name (`sofia/internal/alice-app@10.0.0.1:5060` → `alice-app`).
fn user_of(channel: &str) -> &str {
    let rest = channel.splitn(3, '/').nth(2).unwrap_or(channel);
    rest.split('@').next().unwrap_or(rest)
}

/// A value safe on one ESL command line: control characters become spaces.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Whether `s` may go into a dial string unquoted.
fn dialable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+*#._-".contains(c))
}

impl Driver for FreeSwitchDriver {
    fn pbx(&self) -> Pbx {
        Pbx::FreeSwitch
    }

    fn handle(&mut self, input: DriverInput<'_>, now: Millis) {
        match input {
            DriverInput::Connected => self.connected(now),
            DriverInput::Received(bytes) => self.receive(bytes, now),
            DriverInput::Closed => self.closed(now),
            DriverInput::Timeout => self.timeout(now),
            DriverInput::Command(cmd) => self.command(cmd, now),
            DriverInput::Adopted(found) => self.adopted(found, now),
            DriverInput::Resynced => self.resynced(now),
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.client.as_ref().and_then(Client::poll_timeout)
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.client.as_mut().and_then(Client::poll_transmit)
    }

    fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }

    fn goodbye(&mut self, now: Millis) -> bool {
        matches!(self.phase, Phase::Ready) && self.send(crate::esl::Command::Exit, now).is_some()
    }
}

#[cfg(test)]
mod tests;
