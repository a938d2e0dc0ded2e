//! The ESL client as a sans-I/O state machine: bytes and `now` in; bytes to send, typed
//! outputs and the next timeout out. No sockets, no clocks.
//! What it does with each message it reads is in `client/receive.rs`.
//!
//! ```text
//!  inbound:  AwaitingAuthRequest --recv auth/request, send `auth`--> AwaitingAuthReply
//!            AwaitingAuthReply   --recv +OK accepted--> Ready
//!            AwaitingAuthReply   --recv -ERR invalid--> Closed (ClientError::AuthFailed)
//!  outbound: AwaitingChannelData (`connect` sent at once) --recv reply--> Ready
//!
//!  Ready     --recv disconnect-notice (linger)--> Lingering     (events keep coming)
//!  Ready | Lingering --recv disconnect-notice / EOF--> Closed
//!  any       --fatal codec error, reply timeout, rude rejection--> Closed (Err)
//! ```
//!
//! Commands given before `Ready` are held and sent, in order, once the client is `Ready`.
//!
//! **Correlation.** Replies carry no id: FreeSWITCH answers commands one by one, so each
//! `command/reply` or `api/response` belongs to the oldest command still waiting (a FIFO).
//! A reply with nothing waiting, or an `api/response` to a command that is not `api`, means
//! the two sides disagree about the conversation: that is fatal. `bgapi` is answered at once
//! (`+OK Job-UUID: ...`); its output arrives later as a `BACKGROUND_JOB` event with the same
//! `Job-UUID`, and only if the socket is subscribed to BACKGROUND_JOB (or ALL), otherwise
//! nothing comes (set [`ClientConfig::job_timeout_ms`] to be told).
//!
//! **Event order.** FreeSWITCH writes an `api/response` before the events the command caused,
//! and the wire order of events is not their `Event-Sequence` order either: in a recorded
//! loopback call one leg's `CHANNEL_STATE` 474 came after the other leg's 477, and the `API`
//! event 466 of an originate came after event 491. With [`ClientConfig::reorder_window_ms`]
//! above zero, events are held that long and released in `Event-Sequence` order; either way,
//! an event whose sequence is below one already released is marked `late`. Replies are never
//! held.
//!
//! **Timers** (checked in [`Client::handle_timeout`], the next one from
//! [`Client::poll_timeout`]):
//!
//! | timer | starts | on expiry |
//! | --- | --- | --- |
//! | handshake | connect / auth sent | `Err(Timeout)`, closed |
//! | reply | a command is sent | `Err(ReplyTimeout)`, closed: the FIFO can no longer be trusted |
//! | job | a bgapi is accepted | `Output::Failed(TimedOut)` for that job only |
//! | reorder | an event is held | the event is released |

use super::codec::{Decoder, EslError};
use super::command::{Command, CommandError};
use super::message::{ApiResponse, DisconnectNotice, EslMessage, Event, Headers, LogLine, Reply, ReplyStatus};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

mod receive;

/// Events held for reordering at most (a flood releases the oldest early).
const MAX_HELD_EVENTS: usize = 10_000;

/// Which side opened the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The client connected to FreeSWITCH's port 8021 and authenticates with a password.
    Inbound { password: String },
    /// FreeSWITCH's `socket` application connected to the client; the client starts with
    /// `connect`.
    Outbound,
}

/// Timeouts and ordering, in milliseconds of the caller's clock.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The longest wait for `auth/request`, the auth reply or the connect reply.
    pub handshake_timeout_ms: u64,
    /// The longest wait for the reply to a command other than `api`. In a non-async outbound
    /// socket, `sendmsg execute` is answered only when the application finishes.
    pub reply_timeout_ms: u64,
    /// The longest wait for an `api` response (`api originate` waits for the far end).
    pub api_timeout_ms: u64,
    /// The longest wait for a bgapi's BACKGROUND_JOB; `None` waits for ever.
    pub job_timeout_ms: Option<u64>,
    /// How long events are held to be released in `Event-Sequence` order; 0 releases them as
    /// they arrive.
    pub reorder_window_ms: u64,
    /// Events that must not wait out the window: one of them releases itself and every held
    /// event of a lower sequence at once (the order is kept; a lower one arriving later is
    /// `late`).
    pub urgent: Option<fn(&Event) -> bool>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: 5_000,
            reply_timeout_ms: 30_000,
            api_timeout_ms: 120_000,
            job_timeout_ms: None,
            reorder_window_ms: 0,
            urgent: None,
        }
    }
}

/// Where the client is (states are named after what they wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingAuthRequest,
    AwaitingAuthReply,
    AwaitingChannelData,
    Ready,
    /// The controlled channel hung up; the socket stays open for the last events.
    Lingering,
    Closed,
}

/// The id the client gave a command, echoed in every output about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// FreeSWITCH answered `-ERR ...` (or `-USAGE: ...`); the text as sent.
    Refused(String),
    /// The connection ended before the answer.
    Disconnected,
    /// A bgapi's BACKGROUND_JOB did not come within the job timeout.
    TimedOut,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(text) => write!(f, "refused: {text}"),
            Failure::Disconnected => f.write_str("connection closed before the answer"),
            Failure::TimedOut => f.write_str("no result within the job timeout"),
        }
    }
}

/// What the client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Inbound: the password was accepted.
    Authenticated,
    /// Outbound: the reply to `connect`, the channel's data (CHANNEL_DATA headers).
    Connected {
        channel: Headers,
    },
    /// A command's reply (`+OK ...`).
    Replied {
        id: CommandId,
        command: String,
        reply: Reply,
    },
    /// An `api` command's output.
    ApiResult {
        id: CommandId,
        command: String,
        response: ApiResponse,
    },
    /// A command failed; `command` names it (first line, password masked).
    Failed {
        id: CommandId,
        command: String,
        failure: Failure,
    },
    /// A bgapi was accepted as job `job_uuid`.
    JobAccepted {
        id: CommandId,
        command: String,
        job_uuid: String,
    },
    /// A bgapi's BACKGROUND_JOB arrived: `output` is its body (`+OK ...`, `-ERR ...`).
    JobDone {
        id: CommandId,
        command: String,
        job_uuid: String,
        status: ReplyStatus,
        output: String,
        event: Event,
    },
    /// An event; `late` when its sequence is below one already released.
    Event {
        event: Event,
        late: bool,
    },
    Log(LogLine),
    /// A disconnect notice or EOF. `linger`: the channel is gone but the socket stays open.
    Disconnected {
        linger: bool,
        notice: Option<DisconnectNotice>,
    },
    /// A message of a type the client does not handle (kept whole).
    Unhandled(EslMessage),
    /// A frame that was skipped (an event body that does not parse, or cut off by EOF).
    Skipped(EslError),
}

/// Why the client stopped (the connection must be closed), or why a command was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The password was refused (`-ERR invalid`).
    #[error("ESL auth refused: {reply_text}")]
    AuthFailed { reply_text: String },
    /// The outbound `connect` was not answered `+OK`.
    #[error("ESL connect refused: {reply_text}")]
    ConnectFailed { reply_text: String },
    /// FreeSWITCH's ACL refused the client (`text/rude-rejection`).
    #[error("ESL connection rejected by FreeSWITCH: {text}")]
    Rejected { text: String },
    /// The byte stream cannot be decoded further.
    #[error(transparent)]
    Protocol(#[from] EslError),
    /// A message that makes no sense in this state (a reply with no command waiting, ...).
    #[error("ESL {what} while {state:?}; the conversation is out of step")]
    Unexpected { what: String, state: State },
    /// A command got no reply in time; later replies could not be matched any more.
    #[error("ESL command {command:?} got no reply within {waited_ms} ms")]
    ReplyTimeout { command: String, waited_ms: u64 },
    /// The handshake did not finish in time.
    #[error("ESL handshake: no {waiting_for} within {waited_ms} ms")]
    Timeout { waiting_for: &'static str, waited_ms: u64 },
    /// The command cannot be encoded (a caller mistake; nothing was sent).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The connection is closed; nothing more can be sent.
    #[error("ESL connection is closed")]
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Api,
    Bgapi,
    Connect,
    Plain,
}

#[derive(Debug)]
struct Pending {
    id: CommandId,
    label: String,
    kind: Kind,
    sent_ms: u64,
}

#[derive(Debug)]
struct Job {
    id: CommandId,
    label: String,
    accepted_ms: u64,
}

/// One ESL connection's protocol state.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    password: Option<String>,
    decoder: Decoder,
    next_id: u64,
    /// Commands given before `Ready`, encoded, in order.
    held: VecDeque<(Pending, Vec<u8>)>,
    /// Commands sent and not answered, oldest first.
    pending: VecDeque<Pending>,
    /// Accepted bgapi jobs by Job-UUID.
    jobs: HashMap<String, Job>,
    /// BACKGROUND_JOB events that came before their bgapi's reply.
    early_jobs: HashMap<String, Event>,
    /// Events held for reordering: (sequence, arrival counter) -> (event, arrival time).
    reorder: BTreeMap<(u64, u64), (Event, u64)>,
    arrivals: u64,
    highest_released: Option<u64>,
    transmit: VecDeque<Vec<u8>>,
    outputs: VecDeque<Output>,
    /// When the current handshake state began.
    since_ms: u64,
}

impl Client {
    /// An inbound client: waits for `auth/request`, then authenticates with `password`.
    pub fn inbound(password: impl Into<String>, config: ClientConfig, now_ms: u64) -> Self {
        Self::new(Mode::Inbound { password: password.into() }, config, now_ms)
    }

    /// An outbound client: `connect` is the first thing to send.
    pub fn outbound(config: ClientConfig, now_ms: u64) -> Self {
        Self::new(Mode::Outbound, config, now_ms)
    }

    pub fn new(mode: Mode, config: ClientConfig, now_ms: u64) -> Self {
        let mut c = Self {
            config,
            state: State::AwaitingAuthRequest,
            password: None,
            decoder: Decoder::new(),
            next_id: 1,
            held: VecDeque::new(),
            pending: VecDeque::new(),
            jobs: HashMap::new(),
            early_jobs: HashMap::new(),
            reorder: BTreeMap::new(),
            arrivals: 0,
            highest_released: None,
            transmit: VecDeque::new(),
            outputs: VecDeque::new(),
            since_ms: now_ms,
        };
        match mode {
            Mode::Inbound { password } => c.password = Some(password),
            Mode::Outbound => {
                c.state = State::AwaitingChannelData;
                let id = c.fresh_id();
                c.transmit.push_back(b"connect\n\n".to_vec());
                c.pending.push_back(Pending { id, label: "connect".into(), kind: Kind::Connect, sent_ms: now_ms });
            }
        }
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Commands sent or held that have no answer yet.
    pub fn pending_commands(&self) -> usize {
        self.pending.len() + self.held.len()
    }

    /// Accepted bgapi jobs whose BACKGROUND_JOB has not come.
    pub fn pending_jobs(&self) -> usize {
        self.jobs.len()
    }

    fn fresh_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Queues a command. It is sent at once when the client is ready, else once it is.
    pub fn send(&mut self, command: Command, now_ms: u64) -> Result<CommandId, ClientError> {
        if self.state == State::Closed {
            return Err(ClientError::Closed);
        }
        let bytes = command.encode()?;
        let kind = match command {
            Command::Api { .. } => Kind::Api,
            Command::Bgapi { .. } => Kind::Bgapi,
            Command::Connect => Kind::Connect,
            _ => Kind::Plain,
        };
        let id = self.fresh_id();
        let pending = Pending { id, label: command.to_string(), kind, sent_ms: now_ms };
        if matches!(self.state, State::Ready | State::Lingering) {
            self.transmit.push_back(bytes);
            self.pending.push_back(pending);
        } else {
            self.held.push_back((pending, bytes));
        }
        Ok(id)
    }

    /// The next bytes to write to the socket (one command per call).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next output for the owner.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Bytes read from the socket. An `Err` means the connection must be closed; outputs
    /// decoded before it are still queued.
    pub fn handle_bytes(&mut self, bytes: &[u8], now_ms: u64) -> Result<(), ClientError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.decoder.feed(bytes);
        while self.state != State::Closed {
            match self.decoder.next_message() {
                Ok(Some(m)) => {
                    if let Err(e) = self.recv_message(m, now_ms) {
                        self.close(false, None);
                        return Err(e);
                    }
                }
                Ok(None) => break,
                Err(e) if !e.is_fatal() => self.outputs.push_back(Output::Skipped(e)),
                Err(e) => {
                    self.close(false, None);
                    return Err(e.into());
                }
            }
        }
        self.release_events(now_ms, false);
        Ok(())
    }

    /// The peer closed the socket (a frame left unfinished is reported as `Skipped`).
    pub fn handle_eof(&mut self, _now_ms: u64) {
        if self.state != State::Closed {
            if let Err(e) = self.decoder.finish() {
                self.outputs.push_back(Output::Skipped(e));
            }
            self.close(true, None);
        }
    }

    /// When [`Client::handle_timeout`] should be called next, if any timer runs.
    pub fn poll_timeout(&self) -> Option<u64> {
        let c = &self.config;
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        match self.state {
            State::Closed => return None,
            State::AwaitingAuthRequest | State::AwaitingAuthReply => {
                at(self.since_ms.saturating_add(c.handshake_timeout_ms))
            }
            _ => {}
        }
        if let Some(p) = self.pending.front() {
            at(p.sent_ms.saturating_add(self.timeout_of(&p.kind)));
        }
        if let Some(limit) = c.job_timeout_ms {
            for j in self.jobs.values() {
                at(j.accepted_ms.saturating_add(limit));
            }
        }
        if let Some((_, (_, arrived))) = self.reorder.iter().next() {
            at(arrived.saturating_add(c.reorder_window_ms));
        }
        next
    }

    fn timeout_of(&self, kind: &Kind) -> u64 {
        match kind {
            Kind::Api => self.config.api_timeout_ms,
            Kind::Connect => self.config.handshake_timeout_ms,
            Kind::Bgapi | Kind::Plain => self.config.reply_timeout_ms,
        }
    }

    /// Runs the timers due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ClientError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.release_events(now_ms, false);
        if matches!(self.state, State::AwaitingAuthRequest | State::AwaitingAuthReply)
            && now_ms >= self.since_ms.saturating_add(self.config.handshake_timeout_ms)
        {
            let waiting_for = if self.state == State::AwaitingAuthRequest { "auth/request" } else { "auth reply" };
            let waited_ms = now_ms.saturating_sub(self.since_ms);
            self.close(false, None);
            return Err(ClientError::Timeout { waiting_for, waited_ms });
        }
        if let Some(p) = self.pending.front() {
            let waited_ms = now_ms.saturating_sub(p.sent_ms);
            if waited_ms >= self.timeout_of(&p.kind) {
                let command = p.label.clone();
                self.close(false, None);
                return Err(ClientError::ReplyTimeout { command, waited_ms });
            }
        }
        if let Some(limit) = self.config.job_timeout_ms {
            let mut expired: Vec<(String, CommandId)> = self
                .jobs
                .iter()
                .filter(|(_, j)| now_ms >= j.accepted_ms.saturating_add(limit))
                .map(|(uuid, j)| (uuid.clone(), j.id))
                .collect();
            expired.sort_by_key(|(_, id)| *id);
            for (uuid, _) in expired {
                if let Some(j) = self.jobs.remove(&uuid) {
                    self.outputs.push_back(Output::Failed { id: j.id, command: j.label, failure: Failure::TimedOut });
                }
            }
        }
        Ok(())
    }

    fn become_ready(&mut self) {
        self.state = State::Ready;
        while let Some((mut p, bytes)) = self.held.pop_front() {
            // the reply timer starts when the command goes out
            p.sent_ms = p.sent_ms.max(self.since_ms);
            self.transmit.push_back(bytes);
            self.pending.push_back(p);
        }
    }

    fn unexpected(&self, what: impl Into<String>) -> ClientError {
        ClientError::Unexpected { what: what.into(), state: self.state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(c: &mut Client) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn sent(c: &mut Client) -> Vec<String> {
        std::iter::from_fn(|| c.poll_transmit()).map(|b| String::from_utf8(b).unwrap()).collect()
    }

    const AUTH_REQUEST: &[u8] = b"Content-Type: auth/request\n\n";
    const ACCEPTED: &[u8] = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n";

    fn ready() -> Client {
        let mut c = Client::inbound("ClueCon", ClientConfig::default(), 0);
        c.handle_bytes(AUTH_REQUEST, 0).unwrap();
        c.handle_bytes(ACCEPTED, 1).unwrap();
        sent(&mut c);
        assert_eq!(outputs(&mut c), vec![Output::Authenticated]);
        c
    }

    fn event(seq: u64, name: &str, extra: &str) -> Vec<u8> {
        let inner = format!("Event-Name: {name}\nEvent-Sequence: {seq}\n{extra}\n");
        format!("Content-Length: {}\nContent-Type: text/event-plain\n\n{inner}", inner.len()).into_bytes()
    }

    #[test]
    fn commands_wait_for_auth_and_replies_match_in_order() {
        let mut c = Client::inbound("ClueCon", ClientConfig::default(), 0);
        let a = c.send(Command::api("status"), 0).unwrap();
        let b = c.send(Command::Other { line: "bogus".into() }, 0).unwrap();
        assert!(sent(&mut c).is_empty(), "nothing before auth");
        c.handle_bytes(AUTH_REQUEST, 0).unwrap();
        assert_eq!(sent(&mut c), vec!["auth ClueCon\n\n"]);
        c.handle_bytes(ACCEPTED, 1).unwrap();
        assert_eq!(sent(&mut c), vec!["api status\n\n", "bogus\n\n"]);
        c.handle_bytes(b"Content-Type: api/response\nContent-Length: 3\n\nUP\nContent-Type: command/reply\nReply-Text: -ERR command not found\n\n", 2).unwrap();
        let out = outputs(&mut c);
        assert!(
            matches!(&out[1], Output::ApiResult { id, response, .. } if *id == a && response.body == b"UP\n"),
            "{out:?}"
        );
        assert_eq!(
            out[2],
            Output::Failed {
                id: b,
                command: "bogus".into(),
                failure: Failure::Refused("-ERR command not found".into())
            }
        );
        assert_eq!(c.pending_commands(), 0);
    }

    #[test]
    fn wrong_password() {
        let mut c = Client::inbound("nope", ClientConfig::default(), 0);
        c.send(Command::api("status"), 0).unwrap();
        c.handle_bytes(AUTH_REQUEST, 0).unwrap();
        let e = c.handle_bytes(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n", 1).unwrap_err();
        assert_eq!(e, ClientError::AuthFailed { reply_text: "-ERR invalid".into() });
        assert_eq!(c.state(), State::Closed);
        assert!(matches!(outputs(&mut c).as_slice(), [Output::Failed { failure: Failure::Disconnected, .. }]));
        assert_eq!(c.send(Command::Exit, 2), Err(ClientError::Closed));
    }

    #[test]
    fn a_reply_with_nothing_waiting_is_fatal() {
        let mut c = ready();
        let e = c.handle_bytes(b"Content-Type: command/reply\nReply-Text: +OK\n\n", 2).unwrap_err();
        assert!(matches!(e, ClientError::Unexpected { .. }), "{e}");
        let mut c = ready();
        c.send(Command::NoEvents, 2).unwrap();
        let e = c.handle_bytes(b"Content-Type: api/response\nContent-Length: 0\n\n", 3).unwrap_err();
        assert!(matches!(e, ClientError::Unexpected { .. }), "{e}");
    }

    #[test]
    fn bgapi_job_matched_even_when_the_event_comes_first() {
        let mut c = ready();
        let id = c.send(Command::bgapi("status"), 2).unwrap();
        c.handle_bytes(&event(10, "BACKGROUND_JOB", "Job-UUID: j1\nContent-Length: 4\n\n+OK\n"), 3).unwrap();
        assert!(outputs(&mut c).is_empty());
        c.handle_bytes(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j1\nJob-UUID: j1\n\n", 4).unwrap();
        let out = outputs(&mut c);
        assert!(matches!(&out[0], Output::JobAccepted { id: i, job_uuid, .. } if *i == id && job_uuid == "j1"));
        assert!(matches!(&out[1], Output::JobDone { status: ReplyStatus::Ok, output, .. } if output == "+OK\n"));
        assert_eq!(c.pending_jobs(), 0);
    }

    #[test]
    fn timers() {
        let config = ClientConfig { job_timeout_ms: Some(1000), reply_timeout_ms: 500, ..ClientConfig::default() };
        let mut c = Client::inbound("ClueCon", config, 0);
        assert_eq!(c.poll_timeout(), Some(5_000));
        c.handle_bytes(AUTH_REQUEST, 0).unwrap();
        c.handle_bytes(ACCEPTED, 10).unwrap();
        c.send(Command::bgapi("status"), 20).unwrap();
        assert_eq!(c.poll_timeout(), Some(520));
        c.handle_bytes(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j\nJob-UUID: j\n\n", 30).unwrap();
        assert_eq!(c.poll_timeout(), Some(1030));
        c.handle_timeout(1030).unwrap();
        assert!(outputs(&mut c).iter().any(|o| matches!(o, Output::Failed { failure: Failure::TimedOut, .. })));
        c.send(Command::NoEvents, 2000).unwrap();
        let e = c.handle_timeout(2500).unwrap_err();
        assert_eq!(e, ClientError::ReplyTimeout { command: "noevents".into(), waited_ms: 500 });
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn reorder_window_releases_by_sequence() {
        let config = ClientConfig { reorder_window_ms: 50, ..ClientConfig::default() };
        let mut c = Client::inbound("ClueCon", config, 0);
        c.handle_bytes(AUTH_REQUEST, 0).unwrap();
        c.handle_bytes(ACCEPTED, 0).unwrap();
        outputs(&mut c);
        c.handle_bytes(&event(477, "CHANNEL_STATE", ""), 100).unwrap();
        c.handle_bytes(&event(474, "CHANNEL_STATE", ""), 120).unwrap();
        assert!(outputs(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(170), "474 blocks 477 until its own window passes");
        c.handle_timeout(170).unwrap();
        let seqs: Vec<_> = outputs(&mut c)
            .into_iter()
            .map(|o| match o {
                Output::Event { event, late } => (event.sequence().unwrap(), late),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, vec![(474, false), (477, false)]);
        c.handle_bytes(&event(466, "API", ""), 300).unwrap();
        c.handle_timeout(350).unwrap();
        assert!(matches!(outputs(&mut c).as_slice(), [Output::Event { late: true, .. }]));
    }

    #[test]
    fn linger_then_disconnect() {
        let mut c = Client::outbound(ClientConfig::default(), 0);
        assert_eq!(sent(&mut c), vec!["connect\n\n"]);
        c.handle_bytes(b"Event-Name: CHANNEL_DATA\nUnique-ID: u1\nContent-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\n\n", 1).unwrap();
        let out = outputs(&mut c);
        assert!(matches!(&out[0], Output::Connected { channel } if channel.get("Unique-ID") == Some("u1")), "{out:?}");
        assert_eq!(c.state(), State::Ready);
        c.handle_bytes(b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\nLinger-Time: -1\nContent-Length: 0\n\n", 2).unwrap();
        assert_eq!(c.state(), State::Lingering);
        assert!(matches!(outputs(&mut c).as_slice(), [Output::Disconnected { linger: true, .. }]));
        c.send(Command::Exit, 3).unwrap();
        c.handle_bytes(b"Content-Type: command/reply\nReply-Text: +OK bye\n\nContent-Type: text/disconnect-notice\nContent-Disposition: disconnect\nContent-Length: 0\n\n", 4).unwrap();
        let out = outputs(&mut c);
        assert!(matches!(out.last(), Some(Output::Disconnected { linger: false, notice: Some(_) })), "{out:?}");
        c.handle_eof(5);
        assert!(outputs(&mut c).is_empty(), "EOF after the notice says nothing more");
    }

    #[test]
    fn eof_inside_a_frame_is_reported() {
        let mut c = ready();
        c.handle_bytes(b"Content-Type: api/response\nContent-Length: 10\n\nabc", 2).unwrap();
        c.handle_eof(3);
        let out = outputs(&mut c);
        assert!(matches!(&out[0], Output::Skipped(EslError::Truncated { buffered: 50, .. })), "{out:?}");
        assert!(matches!(&out[1], Output::Disconnected { linger: false, notice: None }));
    }

    #[test]
    fn eof_fails_what_is_waiting() {
        let mut c = ready();
        let id = c.send(Command::api("originate x"), 2).unwrap();
        c.handle_eof(3);
        assert_eq!(
            outputs(&mut c),
            vec![
                Output::Failed { id, command: "api originate x".into(), failure: Failure::Disconnected },
                Output::Disconnected { linger: false, notice: None }
            ]
        );
    }
}
