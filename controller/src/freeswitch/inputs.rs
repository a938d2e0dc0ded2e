//! The FreeSWITCH driver's inputs: a connection opened or closed, bytes, time, session
//! commands (`uuid_transfer`, `bgapi originate`, `uuid_kill`) and the resync steps (the sessions
//! taken over, then the events held during the snapshot released).

use super::choose_feeder;
use super::{clean, dialable, gap, Client, ClientConfig, FreeSwitchDriver, Group, MixLeg, Phase, REORDER_WINDOW_MS};
use crate::hangup_cause::freeswitch_kill_cause;
use crate::session::{Command, Found, Input, Millis, Path};

/// The driver's inputs ([`DriverInput`]), callable one by one (the replay tests drive it so).
impl FreeSwitchDriver {
    /// A new connection is open; any earlier connection's state is dropped.
    pub fn connected(&mut self, now: Millis) {
        let config = ClientConfig {
            handshake_timeout_ms: self.esl.command_timeout_ms,
            reply_timeout_ms: self.esl.command_timeout_ms,
            api_timeout_ms: self.esl.command_timeout_ms,
            job_timeout_ms: Some(u64::from(self.cfg.far.answer_timeout_s) * 1000 + self.esl.command_timeout_ms),
            reorder_window_ms: REORDER_WINDOW_MS,
            urgent: Some(gap::is_media_timeout),
        };
        self.client = Some(Client::inbound(self.esl.password.expose(), config, now));
        self.phase = Phase::Handshake;
        self.held.clear();
        self.held_bytes = 0;
        self.members.clear();
        self.far_jobs.clear();
        self.gaps.clear();
        self.gone_paths.clear();
        self.going.clear();
        self.events.clear();
    }

    /// Bytes FreeSWITCH sent.
    pub fn receive(&mut self, bytes: &[u8], now: Millis) {
        let Some(client) = self.client.as_mut() else { return };
        let r = client.handle_bytes(bytes, now);
        self.drain(now);
        if let Err(e) = r {
            self.client_error(e);
        }
    }

    /// FreeSWITCH closed the connection.
    pub fn closed(&mut self, now: Millis) {
        if let Some(c) = self.client.as_mut() {
            c.handle_eof(now);
        }
        self.drain(now);
        if self.client.is_some() {
            self.lost("FreeSWITCH closed the connection");
        }
    }

    /// Carries out a session command.
    pub fn command(&mut self, cmd: &Command, now: Millis) {
        let profile = self.esl.conference_profile.clone();
        match cmd {
            // `alignment` is res_handoff.so's (Asterisk): FreeSWITCH has no module, its mix
            // moves whole from leg to leg (unmuting one member), so the rule is ignored here.
            Command::Assign { uniqueid, bridge, group, preferred, .. } => {
                let path = self.arrivals.remove(uniqueid).unwrap_or(Path::Data);
                self.legs.insert(
                    uniqueid.clone(),
                    MixLeg { group: group.clone(), bridge: bridge.clone(), path, member: None },
                );
                self.groups.entry(group.clone()).or_insert(Group { preferred: *preferred, feeder: None });
                self.api(
                    format!("uuid_transfer {uniqueid} answer,conference:{bridge}@{profile}+flags{{mute}} inline"),
                    now,
                );
            }
            Command::Refuse { uniqueid, reason } => {
                self.arrivals.remove(uniqueid);
                self.refuse(uniqueid, reason, now);
            }
            Command::OriginateFar { session, uniqueid, number, bridge, caller_id } => {
                if !dialable(number) {
                    let reason = format!("far number '{}' has characters a dial string cannot carry", clean(number));
                    return self.input(Input::FarFailed { uniqueid: uniqueid.clone(), reason, no_channel: true });
                }
                let mut vars = vec![
                    format!("origination_uuid={uniqueid}"),
                    format!("originate_timeout={}", self.cfg.far.answer_timeout_s),
                    format!("handoff_session={session}"),
                ];
                if dialable(caller_id) {
                    vars.push(format!("origination_caller_id_number={caller_id}"));
                }
                let line = format!(
                    "originate {{{}}}sofia/gateway/{}/{number} &conference({bridge}@{profile})",
                    vars.join(","),
                    self.cfg.far.endpoint
                );
                if let Some(id) = self.send(crate::esl::Command::bgapi(line), now) {
                    self.far_jobs.insert(id, uniqueid.clone());
                    self.far_pending.insert(uniqueid.clone(), false);
                }
            }
            Command::Hangup { uniqueid, cause } => {
                if self.legs.contains_key(uniqueid) {
                    self.going.insert(uniqueid.clone());
                }
                self.api(format!("uuid_kill {uniqueid} {}", freeswitch_kill_cause(*cause)), now);
            }
        }
    }

    /// The daemon took over a session found in the snapshot: its legs join the mix, one voice
    /// per device.
    pub fn adopted(&mut self, found: &Found, now: Millis) {
        let group = handoff_vocab::GroupKey { session: &found.session.0, device: &found.device }.to_string();
        let preferred = self.preferred;
        let mut speaking = Vec::new();
        for (uuid, _, path) in &found.legs {
            let member = self.members.get(uuid).copied();
            if member.is_some_and(|(_, speaks)| speaks) {
                speaking.push(uuid.clone());
            }
            let leg =
                MixLeg { group: group.clone(), bridge: found.bridge.clone(), path: *path, member: member.map(|m| m.0) };
            self.legs.insert(uuid.clone(), leg);
        }
        // One voice per device: keep the preferred path's leg (or one already speaking) and
        // mute any other leg that speaks.
        let joined = found.legs.iter().filter(|l| self.members.contains_key(&l.0)).map(|(u, _, p)| (u.as_str(), *p));
        let want = choose_feeder(joined, preferred, speaking.first().map(String::as_str)).map(str::to_string);
        for uuid in speaking.iter().filter(|u| Some(*u) != want.as_ref()) {
            if let Some((m, _)) = self.members.get(uuid).copied() {
                self.api(format!("conference {} mute {m}", found.bridge), now);
            }
        }
        if let Some(w) = want.as_ref().filter(|w| !speaking.contains(w)) {
            if let Some((m, _)) = self.members.get(w).copied() {
                self.api(format!("conference {} unmute {m}", found.bridge), now);
            }
        }
        self.groups.insert(group, Group { preferred, feeder: want });
    }

    /// The daemon finished rebuilding its sessions: the events held meanwhile go out.
    pub fn resynced(&mut self, now: Millis) {
        if !std::mem::take(&mut self.release_at_resynced) {
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        held.sort_by_key(|e| e.sequence().unwrap_or(u64::MAX));
        for e in held {
            self.on_event(&e, now);
        }
        self.drain(now);
    }

    /// Time has come (at or after [`Driver::poll_timeout`]).
    pub fn timeout(&mut self, now: Millis) {
        let Some(client) = self.client.as_mut() else { return };
        let r = client.handle_timeout(now);
        self.drain(now);
        if let Err(e) = r {
            self.client_error(e);
        }
    }
}
