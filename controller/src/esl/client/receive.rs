//! What the ESL client does with each message it reads: the auth request answered, replies
//! and `api/response`s matched to the oldest waiting command (a FIFO), events held and released
//! in `Event-Sequence` order, `bgapi` jobs finished by their `BACKGROUND_JOB`, the disconnect
//! notice, and closing.

use super::*;

impl Client {
    pub(super) fn recv_message(&mut self, m: EslMessage, now_ms: u64) -> Result<(), ClientError> {
        match m {
            EslMessage::AuthRequest => self.recv_auth_request(now_ms),
            EslMessage::CommandReply(reply) => self.recv_reply(reply, now_ms),
            EslMessage::ApiResponse(response) => self.recv_api_response(response),
            EslMessage::Event(event) => {
                self.recv_event(event, now_ms);
                Ok(())
            }
            EslMessage::Log(line) => {
                self.outputs.push_back(Output::Log(line));
                Ok(())
            }
            EslMessage::DisconnectNotice(notice) => {
                self.recv_disconnect_notice(notice, now_ms);
                Ok(())
            }
            EslMessage::RudeRejection { body, .. } => {
                Err(ClientError::Rejected { text: String::from_utf8_lossy(&body).trim_end().to_string() })
            }
            other @ EslMessage::Unknown { .. } => {
                self.outputs.push_back(Output::Unhandled(other));
                Ok(())
            }
        }
    }

    pub(super) fn recv_auth_request(&mut self, now_ms: u64) -> Result<(), ClientError> {
        if self.state != State::AwaitingAuthRequest {
            return Err(self.unexpected("auth/request"));
        }
        let password = self.password.take().unwrap_or_default();
        let bytes = Command::Auth { password }.encode()?;
        self.transmit.push_back(bytes);
        self.state = State::AwaitingAuthReply;
        self.since_ms = now_ms;
        Ok(())
    }

    pub(super) fn recv_reply(&mut self, reply: Reply, now_ms: u64) -> Result<(), ClientError> {
        match self.state {
            State::AwaitingAuthReply => {
                if reply.status() == ReplyStatus::Ok {
                    self.since_ms = now_ms;
                    self.outputs.push_back(Output::Authenticated);
                    self.become_ready();
                    return Ok(());
                }
                return Err(ClientError::AuthFailed { reply_text: reply.text().to_string() });
            }
            State::AwaitingAuthRequest => return Err(self.unexpected("command/reply")),
            _ => {}
        }
        let Some(p) = self.pending.pop_front() else {
            return Err(self.unexpected(format!("command/reply {:?} with no command waiting", reply.text())));
        };
        let status = reply.status();
        match p.kind {
            Kind::Connect => {
                if status != ReplyStatus::Ok {
                    return Err(ClientError::ConnectFailed { reply_text: reply.text().to_string() });
                }
                self.since_ms = now_ms;
                self.outputs.push_back(Output::Connected { channel: reply.headers });
                if self.state == State::AwaitingChannelData {
                    self.become_ready();
                }
            }
            _ if status == ReplyStatus::Err => {
                let failure = Failure::Refused(reply.text().to_string());
                self.outputs.push_back(Output::Failed { id: p.id, command: p.label, failure });
            }
            Kind::Bgapi => {
                let job_uuid = reply
                    .job_uuid()
                    .or_else(|| reply.text().strip_prefix("+OK Job-UUID:").map(str::trim))
                    .map(str::to_string);
                let Some(job_uuid) = job_uuid else {
                    self.outputs.push_back(Output::Replied { id: p.id, command: p.label, reply });
                    return Ok(());
                };
                let (id, command) = (p.id, p.label);
                self.outputs.push_back(Output::JobAccepted {
                    id,
                    command: command.clone(),
                    job_uuid: job_uuid.clone(),
                });
                match self.early_jobs.remove(&job_uuid) {
                    Some(event) => self.job_done(id, command, job_uuid, event),
                    None => {
                        self.jobs.insert(job_uuid, Job { id, label: command, accepted_ms: now_ms });
                    }
                }
            }
            Kind::Api | Kind::Plain => self.outputs.push_back(Output::Replied { id: p.id, command: p.label, reply }),
        }
        Ok(())
    }

    pub(super) fn recv_api_response(&mut self, response: ApiResponse) -> Result<(), ClientError> {
        if self.pending.front().map(|p| &p.kind) != Some(&Kind::Api) {
            let waiting = self.pending.front().map_or("nothing".to_string(), |p| p.label.clone());
            return Err(self.unexpected(format!("api/response while waiting for {waiting}")));
        }
        let Some(p) = self.pending.pop_front() else { return Err(self.unexpected("api/response")) };
        if response.status() == ReplyStatus::Err {
            let failure = Failure::Refused(response.text().trim_end().to_string());
            self.outputs.push_back(Output::Failed { id: p.id, command: p.label, failure });
        } else {
            self.outputs.push_back(Output::ApiResult { id: p.id, command: p.label, response });
        }
        Ok(())
    }

    pub(super) fn recv_event(&mut self, event: Event, now_ms: u64) {
        match event.sequence() {
            Some(seq) if self.config.reorder_window_ms > 0 => {
                self.arrivals += 1;
                let urgent = self.config.urgent.is_some_and(|u| u(&event));
                self.reorder.insert((seq, self.arrivals), (event, now_ms));
                if urgent {
                    while let Some(entry) = self.reorder.first_entry() {
                        if entry.key().0 > seq {
                            break;
                        }
                        let (e, _) = entry.remove();
                        self.release(e);
                    }
                    return;
                }
                if self.reorder.len() > MAX_HELD_EVENTS {
                    if let Some((_, (e, _))) = self.reorder.pop_first() {
                        self.release(e);
                    }
                }
            }
            _ => self.release(event),
        }
    }

    /// Releases held events whose window has passed (all of them with `flush`), lowest
    /// sequence first; a held event blocks those above it until its own window passes.
    pub(super) fn release_events(&mut self, now_ms: u64, flush: bool) {
        while let Some(entry) = self.reorder.first_entry() {
            let (_, arrived) = entry.get();
            if !flush && now_ms < arrived.saturating_add(self.config.reorder_window_ms) {
                break;
            }
            let (event, _) = entry.remove();
            self.release(event);
        }
    }

    pub(super) fn release(&mut self, event: Event) {
        let seq = event.sequence();
        let late = matches!((seq, self.highest_released), (Some(s), Some(h)) if s < h);
        if let Some(s) = seq {
            self.highest_released = Some(self.highest_released.map_or(s, |h| h.max(s)));
        }
        if event.name().is("BACKGROUND_JOB") {
            if let Some(uuid) = event.job_uuid().map(str::to_string) {
                if let Some(job) = self.jobs.remove(&uuid) {
                    self.job_done(job.id, job.label, uuid, event);
                    return;
                }
                // the reply with this Job-UUID may still be on its way
                if self.pending.iter().any(|p| p.kind == Kind::Bgapi) && self.early_jobs.len() < MAX_HELD_EVENTS {
                    self.early_jobs.insert(uuid, event);
                    return;
                }
            }
        }
        self.outputs.push_back(Output::Event { event, late });
    }

    pub(super) fn job_done(&mut self, id: CommandId, command: String, job_uuid: String, event: Event) {
        let output = event.body().unwrap_or("").to_string();
        let status = ReplyStatus::of(&output);
        self.outputs.push_back(Output::JobDone { id, command, job_uuid, status, output, event });
    }

    pub(super) fn recv_disconnect_notice(&mut self, notice: DisconnectNotice, now_ms: u64) {
        if notice.is_linger() {
            self.release_events(now_ms, true);
            self.state = State::Lingering;
            self.outputs.push_back(Output::Disconnected { linger: true, notice: Some(notice) });
        } else {
            self.close(true, Some(notice));
        }
    }

    /// Ends the connection: held events are released, every command and job still waiting
    /// fails with `Disconnected`, and (when `announce`) a final `Disconnected` output.
    pub(super) fn close(&mut self, announce: bool, notice: Option<DisconnectNotice>) {
        self.release_events(0, true);
        for (_, event) in std::mem::take(&mut self.early_jobs) {
            self.outputs.push_back(Output::Event { event, late: false });
        }
        let waiting: Vec<Pending> = self.pending.drain(..).chain(self.held.drain(..).map(|(p, _)| p)).collect();
        for p in waiting {
            self.outputs.push_back(Output::Failed { id: p.id, command: p.label, failure: Failure::Disconnected });
        }
        let mut jobs: Vec<Job> = self.jobs.drain().map(|(_, j)| j).collect();
        jobs.sort_by_key(|j| j.id);
        for j in jobs {
            self.outputs.push_back(Output::Failed { id: j.id, command: j.label, failure: Failure::Disconnected });
        }
        self.transmit.clear();
        self.state = State::Closed;
        if announce {
            self.outputs.push_back(Output::Disconnected { linger: false, notice });
        }
    }
}
