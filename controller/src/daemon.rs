//! The daemon: the only part of handoffd that does I/O.
//!
//! [`run`] keeps one AMI connection to Asterisk up (connect, log in, reconnect with backoff), says
//! `HandoffHello` to `res_handoff.so` every few seconds so that `Handoff()` knows a controller is
//! there, feeds AMI events to the session core ([`crate::session`]) through the Asterisk mapping
//! ([`crate::asterisk`]) and sends the commands the core returns as AMI actions. Sessions survive
//! a dropped AMI link: media lives in Asterisk.

use crate::ami::{Action, ActionTracker, AmiDecoder, AmiMessage, Event, ResponseStatus, Tracked};
use crate::asterisk::{action_for, found_sessions, input_from_event, originate_outcome};
use crate::config::Config;
use crate::session::{Command, Input, Millis, Outputs, Sessions};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, error, info, warn};

/// How often handoffd says hello to the module (its `controller_timeout` is 15 s by default).
pub const HELLO_INTERVAL: Duration = Duration::from_secs(5);

/// Why the daemon stopped or a link attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP connect failed or timed out.
    #[error("cannot reach Asterisk's AMI at {addr}: {why} (is Asterisk running, and manager.conf enabled = yes with this port?)")]
    Unreachable { addr: String, why: String },
    /// Asterisk refused the login: retrying would only trip its lockout, so this is fatal.
    #[error("AMI login as '{user}' at {addr} refused: {message} (check ami.username and ami.secret in handoffd.yaml against manager_handoff.conf)")]
    LoginRefused { user: String, addr: String, message: String },
    /// The connection dropped or timed out.
    #[error("AMI link to {addr} lost: {why}")]
    Lost { addr: String, why: String },
    /// The peer is not an Asterisk manager interface.
    #[error("{addr} did not greet like Asterisk's AMI: {why}")]
    NotAmi { addr: String, why: String },
}

impl LinkError {
    /// Whether retrying could help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, LinkError::LoginRefused { .. })
    }
}

/// The session core plus the bookkeeping that ties AMI replies back to it.
pub struct Controller {
    cfg: Config,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    epoch: Instant,
    pub sessions: Sessions,
    /// Originate ActionID → the far channel's uniqueid.
    originates: HashMap<String, String>,
}

impl Controller {
    pub fn new(cfg: Config) -> Self {
        let (rules, devices) = cfg.session_rules();
        // Session ids stay unique across restarts: prefix them with the start time.
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let sessions = Sessions::new(rules, devices, format!("{}-", radix36(start)));
        Self { cfg, metrics: Default::default(), epoch: Instant::now(), sessions, originates: HashMap::new() }
    }

    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    /// Feeds one input to the session core, keeping the metrics and the log.
    fn handle(&mut self, input: Input) -> Outputs {
        let m = &self.metrics;
        match &input {
            Input::LegArrived(l) => {
                m.count(if l.path == crate::session::Path::Data { &m.legs_data } else { &m.legs_carrier })
            }
            Input::FarFailed { .. } => m.count(&m.far_failures),
            _ => {}
        }
        let before = self.sessions.len() as u64;
        let out = self.sessions.handle(input, self.now());
        let opened = out.commands.iter().filter(|c| matches!(c, Command::OriginateFar { .. })).count() as u64;
        let refused = out.commands.iter().filter(|c| matches!(c, Command::Refuse { .. })).count() as u64;
        let after = self.sessions.len() as u64;
        let m = &self.metrics;
        use std::sync::atomic::Ordering::Relaxed;
        m.sessions_opened.fetch_add(opened, Relaxed);
        m.legs_refused.fetch_add(refused, Relaxed);
        m.sessions_ended.fetch_add((before + opened).saturating_sub(after), Relaxed);
        m.sessions_open.store(after, Relaxed);
        self.log(&out);
        out
    }

    fn log(&self, out: &Outputs) {
        for r in &out.records {
            info!(target: "handoff::timeline", session = %r.session, at_ms = r.at, "{}", r.what);
        }
    }
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Runs handoffd until `shutdown` resolves or a fatal error (refused login) occurs.
pub async fn run(cfg: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), LinkError> {
    let mut ctl = Controller::new(cfg);
    if !ctl.cfg.metrics.listen.is_empty() {
        serve_metrics(ctl.cfg.metrics.listen.clone(), ctl.metrics.clone()).await;
    }
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(ctl.cfg.ami.reconnect_initial_ms);
    let max_backoff = Duration::from_millis(ctl.cfg.ami.reconnect_max_ms);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = link(&mut ctl) => r,
            _ = &mut shutdown => {
                info!("shutting down; {} session(s) open stay up in Asterisk", ctl.sessions.len());
                return Ok(());
            }
        };
        let err = match result {
            Ok(()) => LinkError::Lost { addr: ctl.cfg.ami.address(), why: "Asterisk said goodbye".into() },
            Err(e) => e,
        };
        if err.is_fatal() {
            error!("{err}");
            return Err(err);
        }
        // A link that stayed up a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(ctl.cfg.ami.reconnect_initial_ms);
        }
        let jitter =
            Duration::from_millis(u64::from(started.elapsed().subsec_millis()) % (backoff.as_millis() as u64 / 4 + 1));
        let wait = backoff + jitter;
        warn!("{err}; retrying in {:.1} s", wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Serves `GET /metrics` (Prometheus text) on `listen`; a bind failure is logged and handoffd
/// runs on without metrics.
async fn serve_metrics(listen: String, metrics: std::sync::Arc<crate::metrics::Metrics>) {
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(
                "metrics: cannot listen on {listen}: {e}; running without metrics (metrics.listen in handoffd.yaml)"
            );
            return;
        }
    };
    info!("metrics on http://{listen}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = match tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let response = if request.starts_with("GET /metrics ") {
                    let body = metrics.render();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
}

/// One connected AMI session: returns when the link drops.
async fn link(ctl: &mut Controller) -> Result<(), LinkError> {
    let addr = ctl.cfg.ami.address();
    let connect =
        tokio::time::timeout(Duration::from_millis(ctl.cfg.ami.connect_timeout_ms), TcpStream::connect(&addr));
    let mut stream = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(LinkError::Unreachable { addr, why: e.to_string() }),
        Err(_) => return Err(LinkError::Unreachable { addr, why: "connect timed out".into() }),
    };
    let _ = stream.set_nodelay(true);
    let mut link = Link {
        addr: addr.clone(),
        decoder: AmiDecoder::new(),
        tracker: ActionTracker::new("handoffd"),
        buf: vec![0; 16384],
    };

    // Greeting and login happen before anything else is sent.
    let action_timeout = Duration::from_millis(ctl.cfg.ami.action_timeout_ms);
    match link.next(&mut stream, action_timeout).await? {
        AmiMessage::Banner(b) => debug!("AMI banner: {b}"),
        other => return Err(LinkError::NotAmi { addr, why: format!("expected a banner, got {other:?}") }),
    }
    let login = Action::new("Login")
        .header("Username", &ctl.cfg.ami.username)
        .header("Secret", ctl.cfg.ami.secret.expose())
        .header("Events", "system,call");
    let (login_id, login) = link.tracker.start(login, ctl.now());
    link.send(&mut stream, &login).await?;
    loop {
        let msg = link.next(&mut stream, action_timeout).await?;
        if let Tracked::Completed(id, outcome) = link.tracker.on_message(msg) {
            if id == login_id {
                if outcome.response.status != ResponseStatus::Success {
                    return Err(LinkError::LoginRefused {
                        user: ctl.cfg.ami.username.clone(),
                        addr,
                        message: outcome.response.message.unwrap_or_else(|| "no reason given".into()),
                    });
                }
                break;
            }
        }
    }
    info!("logged in to AMI at {addr} as {}", ctl.cfg.ami.username);
    ctl.metrics.count(&ctl.metrics.ami_connects);

    // Media lives in Asterisk: after a restart or a reconnect, take over the sessions that are
    // still running there, so that their teardown still happens.
    let (list_id, list) = link.tracker.start(Action::new("CoreShowChannels"), ctl.now());
    link.send(&mut stream, &list).await?;
    let mut stash = std::collections::VecDeque::new();
    loop {
        let msg = link.next(&mut stream, action_timeout).await?;
        match link.tracker.on_message(msg) {
            Tracked::Completed(id, outcome) if id == list_id => {
                // Channels that went away while the link was down: their hangups were missed.
                let present: std::collections::HashSet<&str> =
                    outcome.events.iter().filter_map(|e| e.get("Uniqueid")).collect();
                for gone in ctl.sessions.channels().into_iter().filter(|u| !present.contains(u.as_str())) {
                    let input = Input::Hangup {
                        uniqueid: gone,
                        cause: 0,
                        cause_txt: "gone while the AMI link was down".into(),
                    };
                    let out = ctl.handle(input);
                    link.run_commands(&mut stream, ctl, out.commands).await?;
                }
                let found = found_sessions(&outcome.events, &ctl.sessions, &ctl.cfg.conference.name_prefix);
                let n = found.len();
                for f in found {
                    let out = ctl.sessions.adopt(f, ctl.now());
                    ctl.log(&out);
                    link.run_commands(&mut stream, ctl, out.commands).await?;
                }
                ctl.metrics.sessions_open.store(ctl.sessions.len() as u64, std::sync::atomic::Ordering::Relaxed);
                info!(
                    "resynchronised from Asterisk: {n} running session(s) taken over; {} session(s) open",
                    ctl.sessions.len()
                );
                break;
            }
            Tracked::Unsolicited(m) => stash.push_back(m),
            _ => {}
        }
    }
    for m in stash {
        if let AmiMessage::Event(ev) = m {
            link.on_event(&mut stream, ctl, ev).await?;
        }
    }

    let mut hello_due = Instant::now();
    let mut hello_id = None;
    let mut module_missing_reported = false;
    loop {
        let now = Instant::now();
        if now >= hello_due {
            let hello =
                Action::new("HandoffHello").header("Controller", concat!("handoffd/", env!("CARGO_PKG_VERSION")));
            let (id, hello) = link.tracker.start(hello, ctl.now());
            hello_id = Some(id);
            link.send(&mut stream, &hello).await?;
            hello_due = now + HELLO_INTERVAL;
        }
        for expired in link.tracker.expire(ctl.now(), ctl.cfg.ami.action_timeout_ms) {
            warn!("AMI action {expired:?} got no response within {} ms", ctl.cfg.ami.action_timeout_ms);
        }
        let out = ctl.handle(Input::Tick);
        link.run_commands(&mut stream, ctl, out.commands).await?;

        let mut wake = hello_due;
        if let Some(t) = ctl.sessions.next_timeout() {
            wake = wake.min(ctl.epoch + Duration::from_millis(t));
        }
        if let Some(t) = link.tracker.next_timeout() {
            wake = wake.min(ctl.epoch + Duration::from_millis(t + ctl.cfg.ami.action_timeout_ms));
        }
        let until = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let msg = match link.next_before(&mut stream, until).await? {
            Some(m) => m,
            None => continue,
        };
        match link.tracker.on_message(msg) {
            Tracked::Completed(id, outcome) => {
                if Some(&id) == hello_id.as_ref() {
                    if outcome.response.status == ResponseStatus::Success {
                        if module_missing_reported {
                            info!("res_handoff.so answered HandoffHello again");
                            module_missing_reported = false;
                        }
                    } else if !module_missing_reported {
                        error!(
                            "res_handoff.so does not answer HandoffHello (AMI says: {}); load it: asterisk -rx 'module load res_handoff.so'",
                            outcome.response.message.as_deref().unwrap_or("no message")
                        );
                        module_missing_reported = true;
                    }
                } else if outcome.response.status != ResponseStatus::Success {
                    warn!("AMI action {id:?} failed: {}", outcome.response.message.as_deref().unwrap_or("no message"));
                }
            }
            Tracked::Pending => {}
            Tracked::Unsolicited(AmiMessage::Event(ev)) => link.on_event(&mut stream, ctl, ev).await?,
            Tracked::Unsolicited(AmiMessage::Response(r)) if r.status == ResponseStatus::Goodbye => return Ok(()),
            Tracked::Unsolicited(other) => debug!("unsolicited AMI message: {other:?}"),
        }
    }
}

struct Link {
    addr: String,
    decoder: AmiDecoder,
    tracker: ActionTracker,
    buf: Vec<u8>,
}

impl Link {
    fn lost(&self, why: impl ToString) -> LinkError {
        LinkError::Lost { addr: self.addr.clone(), why: why.to_string() }
    }

    async fn send(&mut self, stream: &mut TcpStream, action: &Action) -> Result<(), LinkError> {
        let bytes = match action.encode() {
            Ok(b) => b,
            Err(e) => {
                // A command built from bad data is refused here; the link stays up.
                error!("not sending AMI action {}: {e}", action.name());
                return Ok(());
            }
        };
        debug!(action = action.name(), id = ?action.action_id(), "AMI send");
        stream.write_all(&bytes).await.map_err(|e| self.lost(e))
    }

    /// The next message, waiting at most `limit`.
    async fn next(&mut self, stream: &mut TcpStream, limit: Duration) -> Result<AmiMessage, LinkError> {
        match self.next_before(stream, limit).await? {
            Some(m) => Ok(m),
            None => Err(self.lost(format!("no answer within {} ms", limit.as_millis()))),
        }
    }

    /// The next message, or `None` when `limit` passes first.
    async fn next_before(&mut self, stream: &mut TcpStream, limit: Duration) -> Result<Option<AmiMessage>, LinkError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => {
                    // The decoder resynchronises on the next message boundary; nothing else is lost.
                    warn!("bad AMI input from {}: {e}", self.addr);
                    continue;
                }
            }
            let read = tokio::time::timeout_at(deadline, stream.read(&mut self.buf)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(self.lost("Asterisk closed the connection")),
                Ok(Ok(n)) => self.decoder.feed(&self.buf[..n]),
                Ok(Err(e)) => return Err(self.lost(e)),
            }
        }
    }

    async fn on_event(&mut self, stream: &mut TcpStream, ctl: &mut Controller, ev: Event) -> Result<(), LinkError> {
        if ev.name == "HandoffLegSwitched" && ev.get("Reason") == Some("stall") {
            ctl.metrics.observe_failover(ev.get("GapMs").and_then(|g| g.parse().ok()).unwrap_or(0));
        }
        let input = if ev.name == "OriginateResponse" {
            let Some(far) = ev.headers.get("ActionID").and_then(|id| ctl.originates.remove(id)) else { return Ok(()) };
            Some(originate_outcome(&ev, &far))
        } else {
            match input_from_event(&ev) {
                Ok(i) => i,
                Err(e) => {
                    warn!("{e}; event ignored");
                    None
                }
            }
        };
        let Some(input) = input else { return Ok(()) };
        let out = ctl.handle(input);
        self.run_commands(stream, ctl, out.commands).await
    }

    async fn run_commands(
        &mut self,
        stream: &mut TcpStream,
        ctl: &mut Controller,
        commands: Vec<Command>,
    ) -> Result<(), LinkError> {
        for cmd in commands {
            let action = action_for(&cmd, &ctl.cfg);
            let (id, action) = self.tracker.start(action, ctl.now());
            if let Command::OriginateFar { uniqueid, .. } = &cmd {
                ctl.originates.insert(id.to_string(), uniqueid.clone());
            }
            self.send(stream, &action).await?;
        }
        Ok(())
    }
}
