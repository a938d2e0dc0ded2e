//! The daemon: the only part of handoffd that does I/O.
//!
//! [`run`] keeps one connection to the PBX up (connect, reconnect with backoff) and hands its
//! bytes to the PBX's driver ([`crate::pbx::Driver`]: [`AsteriskDriver`] over AMI,
//! [`FreeSwitchDriver`] over the event socket). What the driver reports becomes session inputs
//! ([`crate::session`]); the commands the session core returns go back through the driver.
//! After every (re)connect the driver's snapshot of running channels rebuilds the sessions.
//! Sessions survive a dropped link: media lives in the PBX.

// Clock, tokio and sockets are allowed here: the link loop: sockets, clock and tasks (the only I/O of the session core) (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::asterisk::AsteriskDriver;
use crate::config::{Config, LinkSettings, Pbx};
use crate::freeswitch::FreeSwitchDriver;
use crate::moves::{Restore, Ticket};
pub use crate::pbx::LinkError;
use crate::pbx::{found_sessions, Driver, DriverEvent, PbxChannel};
use crate::service::{MoveService, Refusal};
use crate::session::{Command, Input, LegArrival, Millis, Outputs, SessionId, Sessions, State, MOVE_FAR};
use crate::store::{AuditAction, AuditRecord, Outcome, SessionSnapshot, SessionState, Store, UnixMs};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

/// A move leg's checked ticket or PIN.
#[derive(Debug)]
pub struct MoveChecked {
    leg: LegArrival,
    device: crate::session::Device,
    result: Result<Restore, Refusal>,
    since: Instant,
}

/// What the link loop is told from outside it: finished move checks and API notices.
#[derive(Debug)]
pub enum Inbox {
    /// A move leg's ticket or PIN was checked (on the blocking pool): carry it out or refuse.
    MoveChecked(Box<MoveChecked>),
    /// The API changed the store.
    Api(crate::api::Notice),
}

/// The session core, the store and the move service: everything the daemon keeps across
/// links to the PBX.
pub struct Controller {
    cfg: Config,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    epoch: Instant,
    pub sessions: Sessions,
    store: Store,
    service: MoveService,
    inbox_tx: tokio::sync::mpsc::UnboundedSender<Inbox>,
    inbox: tokio::sync::mpsc::UnboundedReceiver<Inbox>,
    timeline: TimelineQueue,
    /// What the status page shows of the link and the mix ([`crate::status`]).
    pub board: std::sync::Arc<std::sync::Mutex<crate::status::Board>>,
}

/// Batches of timeline entries waiting for the store (written by [`write_timelines`] on the
/// blocking pool); bounded: past [`TIMELINE_QUEUE`] batches, entries are dropped and counted.
struct TimelineQueue {
    tx: Option<tokio::sync::mpsc::Sender<Vec<(String, crate::timeline::Entry)>>>,
    rx: Option<tokio::sync::mpsc::Receiver<Vec<(String, crate::timeline::Entry)>>>,
    lost: std::sync::atomic::AtomicU64,
}

/// Batches of timeline entries the queue to the store holds at most.
const TIMELINE_QUEUE: usize = 1024;

/// Why handoffd could not start (one line; exit code 78 for configuration problems).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error("admin token {path}: {problem}")]
    AdminToken { path: String, problem: String },
}

impl Controller {
    /// Opens the store (`store.backend`: the sled `store.path` or the PostgreSQL `store.url`), loads the pepper (made on first start, when the store
    /// holds no PIN yet) and the admin token (made if missing), and imports the devices listed
    /// in the config into the store.
    pub fn open(cfg: Config) -> Result<Self, StartError> {
        let store = Store::open_configured(&cfg.store)?;
        let pepper_path = std::path::Path::new(&cfg.store.pepper_file);
        let pepper = if pepper_path.exists() {
            crate::credentials::Pepper::load(pepper_path)?
        } else {
            let has_pins = store.list_users()?.iter().any(|u| store.credential(&u.name).ok().flatten().is_some());
            if has_pins {
                return Err(crate::credentials::CredentialError::PepperIo {
                    path: cfg.store.pepper_file.clone(),
                    problem: "missing, but the store holds PINs hashed with it (restore the file)".into(),
                }
                .into());
            }
            let p = crate::credentials::Pepper::create(pepper_path)?;
            info!("created the pepper {} (keep it: every PIN depends on it)", cfg.store.pepper_file);
            p
        };
        let hasher = crate::credentials::Hasher::new(pepper, crate::credentials::HashCost::default())?;
        let verifier = crate::credentials::Verifier::new(
            store.clone(),
            hasher,
            cfg.moves.lockout(),
            cfg.moves.max_concurrent_checks,
        )?;
        let service = MoveService { store: store.clone(), verifier, rules: cfg.moves.rules() };
        import_config_devices(&store, &cfg)?;
        let (rules, _) = cfg.session_rules();
        // Session ids stay unique across restarts: prefix them with the start time.
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let sessions = Sessions::new(rules, Vec::new(), format!("{}-", radix36(start)));
        let (inbox_tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        let (tx, rx) = tokio::sync::mpsc::channel(TIMELINE_QUEUE);
        let timeline = TimelineQueue { tx: Some(tx), rx: Some(rx), lost: Default::default() };
        let mut ctl = Self {
            cfg,
            metrics: Default::default(),
            epoch: Instant::now(),
            sessions,
            store,
            service,
            inbox_tx,
            inbox,
            timeline,
            board: Default::default(),
        };
        ctl.reload_devices()?;
        Ok(ctl)
    }

    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    /// A monotonic instant as wall-clock time (for the store).
    fn unix_of(&self, at: Millis) -> UnixMs {
        UnixMs(UnixMs::now().0.saturating_sub(self.now().saturating_sub(at)))
    }

    /// A wall-clock instant as a monotonic one.
    fn mono_of(&self, at: UnixMs) -> Millis {
        self.now() + at.0.saturating_sub(UnixMs::now().0)
    }

    /// The device registry from the store (config devices were imported into it), with the
    /// config's caller IDs.
    fn reload_devices(&mut self) -> Result<(), crate::store::StoreError> {
        let stored = self.store.list_devices()?;
        self.set_registry(stored);
        Ok(())
    }

    /// [`Controller::reload_devices`] from the link loop: the store is read on the blocking pool.
    async fn reload_devices_off_loop(&mut self) -> Result<(), String> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.list_devices()).await.map_err(|e| e.to_string())?;
        self.set_registry(stored.map_err(|e| e.to_string())?);
        Ok(())
    }

    fn set_registry(&mut self, stored: Vec<crate::store::Device>) {
        let devices = stored
            .into_iter()
            .map(|d| crate::session::Device {
                caller_id: self.cfg.devices.iter().find(|c| c.id == d.id).and_then(|c| c.caller_id.clone()),
                id: d.id,
                user: d.user,
                endpoint: d.data_endpoint,
                number: d.carrier_number,
            })
            .collect::<Vec<_>>();
        info!("device registry: {} device(s)", devices.len());
        self.sessions.set_devices(devices);
    }

    /// After the registry changed through the API: a device listed in `handoffd.yaml` that now
    /// differs from it is named (the YAML wins again at the next start). The store is read on
    /// the blocking pool.
    async fn warn_yaml_differences(&self) {
        let (store, listed) = (self.store.clone(), self.cfg.devices.clone());
        let found =
            tokio::task::spawn_blocking(move || crate::store::config_devices::differences(&store, &listed)).await;
        match found {
            Ok(Ok(diffs)) => {
                for d in diffs {
                    warn!(
                        "device '{}' now differs from handoffd.yaml ({}, store → YAML); handoffd.yaml wins again at the next start: change it there",
                        d.device, d.what
                    );
                }
            }
            Ok(Err(e)) => error!("comparing the devices with handoffd.yaml: {e}"),
            Err(e) => error!("comparing the devices with handoffd.yaml: {e}"),
        }
    }

    /// Appends audit records off the link loop (each is flushed).
    fn audit(&self, records: Vec<AuditRecord>) {
        if records.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for r in records {
                if let Err(e) = store.audit(&r) {
                    error!("audit record not written: {e}");
                }
            }
        });
    }

    /// Keeps the store's session snapshots in step with what an input changed, and audits
    /// ended sessions and refused rejoins.
    fn persist(&self, out: &Outputs) {
        let mut touched: Vec<&SessionId> = out.records.iter().map(|r| &r.session).collect();
        touched.extend(out.ended.iter().map(|(id, _)| id));
        touched.sort();
        touched.dedup();
        for id in touched {
            let snapshot = match self.sessions.view(id) {
                Some(v) => SessionSnapshot {
                    id: v.id.0.clone(),
                    user: v.user,
                    device: v.device,
                    far: v.far,
                    bridge: v.bridge,
                    legs: v.legs.into_iter().map(|(u, p)| (u, p.into())).collect(),
                    state: match v.state {
                        State::AwaitingFarAnswer => SessionState::AwaitingFarAnswer,
                        State::Connected => SessionState::Connected,
                        State::Grace { .. } => SessionState::Grace,
                        State::Ending { .. } => SessionState::Ending,
                    },
                    updated: UnixMs::now(),
                    far_number: v.far_number,
                    barred: v.barred.into_iter().map(|(d, t)| (d, self.unix_of(t))).collect(),
                    node: self.cfg.cluster.node.clone(),
                },
                None => match self.store.get_session(&id.0) {
                    Ok(Some(s)) => {
                        SessionSnapshot { state: SessionState::Ended, legs: Vec::new(), updated: UnixMs::now(), ..s }
                    }
                    _ => continue,
                },
            };
            if let Err(e) = self.store.put_session(&snapshot) {
                error!("session {id}: snapshot not stored: {e}");
            }
        }
        let now = UnixMs::now();
        let mut records = Vec::new();
        for (id, reason) in &out.ended {
            self.tell_board(|b| b.ended(&id.0));
            let user = self.store.get_session(&id.0).ok().flatten().map(|s| s.user).unwrap_or_default();
            records.push(
                AuditRecord::new(now, "handoffd", AuditAction::SessionEnd, Outcome::Done)
                    .user(user)
                    .session(&id.0)
                    .reason(reason),
            );
        }
        for (id, device, reason) in &out.barred {
            records.push(
                AuditRecord::new(now, format!("device:{device}"), AuditAction::Rejoin, Outcome::Refused)
                    .device(device)
                    .session(&id.0)
                    .reason(reason),
            );
        }
        self.audit(records);
    }

    /// Sessions the store says are running but the PBX no longer has: closed and audited.
    fn close_vanished(&self) {
        let Ok(snapshots) = self.store.list_sessions() else { return };
        let now = UnixMs::now();
        let mut records = Vec::new();
        for s in snapshots.into_iter().filter(|s| s.state != SessionState::Ended) {
            if self.sessions.view(&SessionId(s.id.clone())).is_some() {
                continue;
            }
            records.push(
                AuditRecord::new(now, "handoffd", AuditAction::SessionEnd, Outcome::Done)
                    .user(&s.user)
                    .session(&s.id)
                    .reason("closed: its channels were gone from the PBX when handoffd resynchronised"),
            );
            let closed = SessionSnapshot { state: SessionState::Ended, legs: Vec::new(), updated: now, ..s };
            let _ = self.store.put_session(&closed);
        }
        if !records.is_empty() {
            info!("closed {} stored session(s) whose channels are gone", records.len());
        }
        self.audit(records);
    }

    /// A leg asking to take a call over (`Handoff(move,...)`): its ticket or PIN is checked
    /// off the loop; the answer comes back through the inbox.
    fn start_move(&mut self, leg: LegArrival) -> Option<Command> {
        let refuse = |reason: String| Some(Command::Refuse { uniqueid: leg.uniqueid.clone(), reason });
        let Some(device) = self.sessions.device_of_leg(&leg).cloned() else {
            let who = if leg.endpoint.is_empty() { leg.caller.clone() } else { leg.endpoint.clone() };
            let reason = format!("move refused: no registered device is '{who}'");
            self.audit(vec![AuditRecord::new(
                UnixMs::now(),
                format!("sip:{who}"),
                AuditAction::MoveRequest,
                Outcome::Refused,
            )
            .reason(&reason)]);
            self.metrics.count(&self.metrics.moves_refused);
            return refuse(reason);
        };
        let actor = format!("sip:device:{}", device.id);
        let service = self.service.clone();
        let tx = self.inbox_tx.clone();
        let since = Instant::now();
        let token = leg.token.clone();
        if let Some(hex) = token.strip_prefix("ticket-") {
            let ticket = match Ticket::parse(hex) {
                Ok(t) => t,
                Err(e) => {
                    let reason = format!("move refused: {e}");
                    self.audit(vec![AuditRecord::new(
                        UnixMs::now(),
                        &actor,
                        AuditAction::TicketRedeem,
                        Outcome::Refused,
                    )
                    .device(&device.id)
                    .reason(&reason)]);
                    self.metrics.count(&self.metrics.moves_refused);
                    return refuse(reason);
                }
            };
            tokio::spawn(async move {
                let result = service.redeem(&actor, &device.id, ticket).await;
                let _ = tx.send(Inbox::MoveChecked(Box::new(MoveChecked { leg, device, result, since })));
            });
        } else if let Some(pin) = token.strip_prefix("pin-") {
            let pin = crate::credentials::Passcode::presented(pin);
            tokio::spawn(async move {
                let result = service.pull(&actor, &device.user, &device.id, pin).await;
                let _ = tx.send(Inbox::MoveChecked(Box::new(MoveChecked { leg, device, result, since })));
            });
        } else {
            let reason = "move refused: no ticket (X-Handoff-Ticket) and no PIN given".to_string();
            self.audit(vec![AuditRecord::new(UnixMs::now(), &actor, AuditAction::MoveRequest, Outcome::Refused)
                .device(&device.id)
                .reason(&reason)]);
            return refuse(reason);
        }
        None
    }

    /// Carries out (or refuses) a checked move.
    fn finish_move(
        &mut self,
        leg: LegArrival,
        device: crate::session::Device,
        result: Result<Restore, Refusal>,
        since: Instant,
    ) -> Vec<Command> {
        let restore = match result {
            Ok(r) => r,
            Err(refusal) => {
                self.metrics.count(&self.metrics.moves_refused);
                warn!(target: "handoff::moves", device = %device.id, "move refused: {refusal}");
                return vec![Command::Refuse { uniqueid: leg.uniqueid, reason: format!("move refused: {refusal}") }];
            }
        };
        let now = self.now();
        let bar_until = self.mono_of(restore.from_barred_until);
        match self.sessions.move_to(&SessionId(restore.session.clone()), &device, &leg, bar_until, now) {
            Ok(out) => {
                self.metrics.count(&self.metrics.moves_done);
                info!(
                    target: "handoff::moves",
                    session = %restore.session,
                    from = %restore.from_device,
                    to = %restore.to_device,
                    check_ms = since.elapsed().as_millis() as u64,
                    "call moved"
                );
                self.log(&out);
                self.persist(&out);
                out.commands
            }
            Err(why) => {
                self.metrics.count(&self.metrics.moves_refused);
                let reason = format!("move not carried out: {why}");
                self.audit(vec![AuditRecord::new(
                    UnixMs::now(),
                    format!("sip:device:{}", device.id),
                    AuditAction::TicketRedeem,
                    Outcome::Refused,
                )
                .device(&device.id)
                .session(&restore.session)
                .reason(&reason)]);
                vec![Command::Refuse { uniqueid: leg.uniqueid, reason }]
            }
        }
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
        self.persist(&out);
        out
    }

    /// Tells the status page's board something (see [`crate::status::Board`]).
    fn tell_board(&self, f: impl FnOnce(&mut crate::status::Board)) {
        f(&mut self.board.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn log(&self, out: &Outputs) {
        for r in &out.records {
            info!(target: "handoff::timeline", session = %r.session, at_ms = r.at, "{}", r.what);
        }
        self.keep_timeline(out);
    }

    /// Queues a session's timeline records for the store (refusals of no session are only
    /// logged); a full queue drops them, counted and logged.
    fn keep_timeline(&self, out: &Outputs) {
        let batch: Vec<(String, crate::timeline::Entry)> = out
            .records
            .iter()
            .filter(|r| r.session.0 != "-")
            .map(|r| {
                let entry =
                    crate::timeline::Entry { at: self.unix_of(r.at), mark: r.mark.clone(), text: r.what.clone() };
                (r.session.0.clone(), entry)
            })
            .collect();
        let (Some(tx), false) = (&self.timeline.tx, batch.is_empty()) else { return };
        let n = batch.len() as u64;
        if tx.try_send(batch).is_err() {
            let before = self.timeline.lost.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if before == 0 || (before + n) / 1000 > before / 1000 {
                warn!("timeline queue to the store is full: {} timeline entries not stored so far", before + n);
            }
        }
    }
}

/// Makes the store say what `handoffd.yaml` says for the devices it lists (the YAML is their
/// source of truth: see [`crate::store::config_devices`]); one line for each device imported,
/// changed or kept because of a conflict.
fn import_config_devices(store: &Store, cfg: &Config) -> Result<(), crate::store::StoreError> {
    use crate::store::config_devices::{apply, Applied};
    for done in apply(store, &cfg.devices, UnixMs::now())? {
        match done {
            Applied::Imported(id) => info!("device '{id}' added to the store from handoffd.yaml"),
            Applied::Updated(d) => warn!(
                "device '{}': handoffd.yaml differs from the store ({}); handoffd.yaml wins, the store now says the same",
                d.device, d.what
            ),
            Applied::Conflict(d, why) => error!(
                "device '{}': handoffd.yaml differs from the store ({}) but cannot be applied: {why}; the store's record stays until that is resolved",
                d.device, d.what
            ),
        }
    }
    Ok(())
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

/// Runs handoffd until `shutdown` resolves (or the config names no PBX link). A refused
/// login is not the end: it is logged as an error naming the account and what to check, and
/// tried again every `login_retry_s` (a manager.conf reload can refuse a good secret briefly;
/// under systemd, exiting would end in the unit's start limit and no controller at all).
pub async fn run(mut ctl: Controller, shutdown: impl std::future::Future<Output = ()>) -> Result<(), LinkError> {
    if !ctl.cfg.metrics.listen.is_empty() {
        serve_metrics(ctl.cfg.metrics.listen.clone(), ctl.metrics.clone()).await;
    }
    if !ctl.cfg.api.listen.is_empty() {
        let admin_token = load_admin_token(&ctl.cfg.api.admin_token_file);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let inbox = ctl.inbox_tx.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if inbox.send(Inbox::Api(n)).is_err() {
                    break;
                }
            }
        });
        let mut api = crate::api::Api::new(ctl.service.clone(), admin_token, &ctl.cfg.api, tx, ctl.metrics.clone());
        api.board = ctl.board.clone();
        crate::api::serve(ctl.cfg.api.listen.clone(), std::sync::Arc::new(api)).await;
    }
    // Tickets, bars and ended sessions that ran out while handoffd was down, then every hour:
    // a store that runs for months keeps only what a late replay or move needs.
    let retention = AuditRetention::of(&ctl.cfg);
    housekeeping(&ctl.store, retention);
    let store = ctl.store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        every.tick().await;
        loop {
            every.tick().await;
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || housekeeping(&store, retention)).await;
        }
    });
    let mut driver: Box<dyn Driver> = match (ctl.cfg.pbx, ctl.cfg.ami.clone(), ctl.cfg.esl.clone()) {
        (Pbx::Freeswitch, _, Some(esl)) => Box::new(FreeSwitchDriver::new(ctl.cfg.clone(), esl)),
        (_, Some(ami), _) => Box::new(AsteriskDriver::new(ctl.cfg.clone(), ami)),
        _ => return Err(LinkError::Refused("handoffd.yaml names no PBX link (ami: or esl:)".into())),
    };
    let settings = ctl.cfg.link();
    let writer = ctl.timeline.rx.take().map(|rx| tokio::spawn(write_timelines(ctl.store.clone(), rx)));
    tokio::pin!(shutdown);
    let turn = NodeTurn::of(&ctl.cfg);
    let mut backoff = Duration::from_millis(settings.reconnect_initial_ms);
    let max_backoff = Duration::from_millis(settings.reconnect_max_ms);
    loop {
        // In a cluster, only the holder of the node's lease drives the PBX; the others wait.
        if let Some(turn) = &turn {
            if !turn.wait_for_the_node(&ctl.store, shutdown.as_mut()).await {
                return Ok(());
            }
        }
        let started = Instant::now();
        let ended = match &turn {
            None => link(&mut ctl, driver.as_mut(), &settings, shutdown.as_mut()).await,
            Some(turn) => {
                let (renewal, mut taken) = turn.keep(ctl.store.clone());
                let ended = tokio::select! {
                    ended = link(&mut ctl, driver.as_mut(), &settings, shutdown.as_mut()) => Some(ended),
                    Ok(()) = taken.changed() => None,
                };
                renewal.abort();
                match ended {
                    Some(ended) => ended,
                    None => {
                        // Another handoffd holds the node now: its link replaces ours.
                        let holder = taken.borrow().clone();
                        warn!(
                            "node {}: {holder} drives it now; this handoffd left the PBX link and waits as a standby",
                            turn.node
                        );
                        continue;
                    }
                }
            }
        };
        let Some(result) = ended else {
            if let Some(turn) = &turn {
                turn.release(&ctl.store).await;
            }
            info!("shutting down; {} session(s) open stay up in {}", ctl.sessions.len(), driver.pbx());
            // The timeline entries still queued go to the store, which is flushed.
            ctl.timeline.tx = None;
            if let Some(w) = writer {
                let _ = tokio::time::timeout(Duration::from_secs(3), w).await;
            }
            let store = ctl.store.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
                warn!("flushing the store: {e}");
            }
            return Ok(());
        };
        ctl.tell_board(|b| b.link_down(&result.to_string(), UnixMs::now()));
        // What the link held (a snapshot, events held during it, lists) is freed now; give it
        // back to the system so that a flood leaves no lasting RSS.
        handoff_heap::release_free_memory();
        if result.is_fatal() {
            let wait = Duration::from_millis(settings.login_retry_ms);
            error!(
                "{result}; handoffd keeps running and logs in again in {} s (no call is handled until then)",
                wait.as_secs()
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => return Ok(()),
            }
            backoff = Duration::from_millis(settings.reconnect_initial_ms);
            continue;
        }
        // A link that stayed up a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(settings.reconnect_initial_ms);
        }
        let jitter =
            Duration::from_millis(u64::from(started.elapsed().subsec_millis()) % (backoff.as_millis() as u64 / 4 + 1));
        let wait = backoff + jitter;
        warn!("{result}; retrying in {:.1} s", wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// This handoffd's turn at driving a cluster node (`cluster.node`): a lease in the shared
/// store, taken before the PBX link is opened, renewed every third of `cluster.lease_ms`
/// while it is up, given back on a clean stop. The database's clock decides when a lease ran
/// out, so the controllers' clocks need not agree.
struct NodeTurn {
    node: String,
    /// Who this process is in the lease table: host, process id, start time.
    holder: String,
    lease_ms: u64,
}

impl NodeTurn {
    fn of(cfg: &Config) -> Option<Self> {
        if cfg.cluster.node.is_empty() {
            return None;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Some(Self {
            node: cfg.cluster.node.clone(),
            holder: format!("{}/{}/{}", host.trim(), std::process::id(), started.as_millis() % 1_000_000),
            lease_ms: cfg.cluster.lease_ms,
        })
    }

    async fn hold(&self, store: &Store) -> Result<crate::store::NodeLease, String> {
        let (store, node, holder, lease) = (store.clone(), self.node.clone(), self.holder.clone(), self.lease_ms);
        match tokio::task::spawn_blocking(move || store.hold_node(&node, &holder, lease)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the lease check failed: {e}")),
        }
    }

    /// Waits until this handoffd holds the node; `false` if `shutdown` came first. Says once
    /// that it waits, and for whom.
    async fn wait_for_the_node(
        &self,
        store: &Store,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let mut said = String::new();
        loop {
            let what = match self.hold(store).await {
                Ok(crate::store::NodeLease::Held) => {
                    info!("node {}: this handoffd ({}) drives it, lease {} ms", self.node, self.holder, self.lease_ms);
                    return true;
                }
                Ok(crate::store::NodeLease::HeldBy { holder, remaining_ms }) => {
                    format!(
                        "standby: node {} is driven by {holder} (its lease ends in {remaining_ms} ms unless renewed)",
                        self.node
                    )
                }
                Err(e) => {
                    format!("node {}: the lease cannot be checked, no call is handled until it can: {e}", self.node)
                }
            };
            // one line per change of who holds it, not one per poll
            let key = what.split(" (").next().unwrap_or_default().to_string();
            if key != said {
                warn!("{what}");
                said = key;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.lease_ms / 5)) => {}
                _ = shutdown.as_mut() => return false,
            }
        }
    }

    /// Renews the lease every third of it; the receiver changes (to the new holder) when
    /// another handoffd took the node. A store that cannot be reached leaves the link up: no
    /// other controller can take the lease through it either, and the calls need one.
    fn keep(&self, store: Store) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<String>) {
        let (tx, rx) = tokio::sync::watch::channel(String::new());
        let turn = Self { node: self.node.clone(), holder: self.holder.clone(), lease_ms: self.lease_ms };
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(Duration::from_millis(turn.lease_ms / 3)).await;
                match turn.hold(&store).await {
                    Ok(crate::store::NodeLease::Held) => {
                        if failing {
                            info!("node {}: lease renewed again", turn.node);
                            failing = false;
                        }
                    }
                    Ok(crate::store::NodeLease::HeldBy { holder, .. }) => {
                        let _ = tx.send(holder);
                        return;
                    }
                    Err(e) => {
                        if !failing {
                            error!("node {}: the lease cannot be renewed, the link stays up: {e}", turn.node);
                            failing = true;
                        }
                    }
                }
            }
        });
        (task, rx)
    }

    async fn release(&self, store: &Store) {
        let (store, node, holder) = (store.clone(), self.node.clone(), self.holder.clone());
        match tokio::task::spawn_blocking(move || store.release_node(&node, &holder)).await {
            Ok(Ok(())) => info!("node {}: lease given up", self.node),
            Ok(Err(e)) => warn!("node {}: the lease was not given up (it runs out by itself): {e}", self.node),
            Err(_) => {}
        }
    }
}

/// Connections the metrics listener serves at once (a scraper needs one).
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Serves `GET /metrics` (Prometheus text) on `listen` through [`crate::http::serve`]; a bind
/// failure is logged and handoffd runs on without metrics.
async fn serve_metrics(listen: String, metrics: std::sync::Arc<crate::metrics::Metrics>) {
    use crate::http::{connection_cap, open_files_limit, Limits, Response};
    let limits = Limits {
        max_connections: connection_cap(METRICS_MAX_CONNECTIONS, open_files_limit(), 2),
        read_timeout: Duration::from_secs(2),
        max_body: 0,
    };
    let counters = metrics.metrics_http.clone();
    crate::http::serve("metrics", &listen, limits, counters, move |req, _| {
        let metrics = metrics.clone();
        async move {
            if (req.method.as_str(), req.path.as_str()) == ("GET", "/metrics") {
                Response { status: 200, content_type: "text/plain; version=0.0.4", body: metrics.render() }
            } else {
                Response { status: 404, content_type: "text/plain", body: String::new() }
            }
        }
    })
    .await;
}

/// How often expired tickets, ended bars and old ended sessions are dropped from the store.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// How long expired tickets and ended sessions are kept: a replay or a move of an ended call
/// within this time is refused by name ("ticket already used", "session has ended").
pub const KEEP_ENDED_MS: u64 = 3_600_000;

/// How long the audit log keeps its records (`store.audit_keep_days`, `store.audit_max_records`),
/// and the floor below which nothing goes: the longest lockout or bar.
#[derive(Debug, Clone, Copy)]
struct AuditRetention {
    keep_ms: u64,
    max_records: u64,
    floor_ms: u64,
}

impl AuditRetention {
    fn of(cfg: &Config) -> Self {
        let floor_s = u64::from(cfg.moves.lockout_s.max(cfg.moves.bar_s).max(cfg.moves.failure_window_s));
        Self {
            keep_ms: u64::from(cfg.store.audit_keep_days) * 86_400_000,
            max_records: cfg.store.audit_max_records,
            floor_ms: floor_s * 1000,
        }
    }
}

/// Writes queued timeline entries to the store on the blocking pool, a batch at a time, until
/// the queue is closed.
async fn write_timelines(store: Store, mut rx: tokio::sync::mpsc::Receiver<Vec<(String, crate::timeline::Entry)>>) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.append_timeline(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("timeline not stored: {e}"),
            Err(e) => error!("timeline writer: {e}"),
        }
    }
}

fn housekeeping(store: &Store, retention: AuditRetention) {
    let now = UnixMs::now();
    match store.purge_timelines(now, retention.keep_ms) {
        Ok(n) if n > 0 => info!("purged {n} session timeline(s) past store.audit_keep_days"),
        Ok(_) => {}
        Err(e) => warn!("purging session timelines: {e}"),
    }
    match store.prune_audit(now, retention.keep_ms, retention.max_records, retention.floor_ms) {
        Ok(n) if n > 0 => info!("pruned {n} audit record(s) past store.audit_keep_days or store.audit_max_records"),
        Ok(_) => {}
        Err(e) => warn!("pruning the audit log: {e}"),
    }
    match store.purge_expired(now, KEEP_ENDED_MS) {
        Ok((t, b)) if t + b > 0 => info!("purged {t} expired ticket(s) and {b} ended bar(s)"),
        Ok(_) => {}
        Err(e) => warn!("purging expired tickets: {e}"),
    }
    match store.purge_ended_sessions(now, KEEP_ENDED_MS) {
        Ok(n) if n > 0 => info!("purged {n} session record(s) ended over an hour ago"),
        Ok(_) => {}
        Err(e) => warn!("purging ended sessions: {e}"),
    }
}

/// One connection to the PBX: returns why it ended.
/// How long handoffd waits for the PBX's answer to its goodbye when stopping.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// handoffd is stopping: the driver's goodbye (ESL `exit`) is sent and the PBX's answer (its
/// disconnect notice) read, for at most [`GOODBYE_WAIT`].
async fn goodbye(ctl: &Controller, driver: &mut dyn Driver, stream: &mut TcpStream) {
    if !driver.goodbye(ctl.now()) {
        return;
    }
    while let Some(bytes) = driver.poll_transmit() {
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let deadline = Instant::now() + GOODBYE_WAIT;
    let mut buf = vec![0u8; 16384];
    loop {
        while let Some(event) = driver.poll_event() {
            if let DriverEvent::Down(e) = event {
                info!("said goodbye to {}: {e}", driver.pbx());
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => driver.receive(&buf[..n], ctl.now()),
            Ok(Ok(_)) => return driver.closed(ctl.now()),
            _ => return,
        }
    }
}

/// One connection to the PBX, until it fails (`Some`) or `shutdown` completes (`None`: the
/// driver's goodbye is said first).
async fn link(
    ctl: &mut Controller,
    driver: &mut dyn Driver,
    settings: &LinkSettings,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<LinkError> {
    let addr = settings.address.clone();
    let unreachable = |why: String| LinkError::Unreachable {
        pbx: driver.endpoint_name(),
        addr: addr.clone(),
        why,
        hint: driver.unreachable_hint(),
    };
    let connect = tokio::time::timeout(Duration::from_millis(settings.connect_timeout_ms), TcpStream::connect(&addr));
    let connected = tokio::select! {
        c = connect => c,
        _ = shutdown.as_mut() => return None,
    };
    let mut stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Some(unreachable(e.to_string())),
        Err(_) => return Some(unreachable("connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let link_name = driver.endpoint_name();
    let lost = |why: String| LinkError::Lost { link: link_name, addr: addr.clone(), why };
    driver.connected(ctl.now());
    let mut synced = false;
    let mut buf = vec![0u8; 16384];
    loop {
        // Everything the driver has to say, and everything that makes it say more.
        loop {
            let mut idle = true;
            while let Some(bytes) = driver.poll_transmit() {
                idle = false;
                if let Err(e) = stream.write_all(&bytes).await {
                    return Some(lost(e.to_string()));
                }
            }
            while let Some(event) = driver.poll_event() {
                idle = false;
                match event {
                    DriverEvent::Up { detail } => {
                        info!("{detail}");
                        ctl.metrics.pbx_connected(driver.pbx());
                        ctl.tell_board(|b| b.link_up(driver.pbx(), &detail, UnixMs::now()));
                    }
                    DriverEvent::Snapshot(channels) => {
                        resync(ctl, driver, &channels);
                        synced = true;
                    }
                    DriverEvent::Input(input) => {
                        if let Input::LegSwitched { uniqueid, to, reason, gap_ms } = &input {
                            match ctl.sessions.session_of(uniqueid).cloned() {
                                Some(id) => ctl.tell_board(|b| {
                                    b.switched(&id.0, uniqueid, (*to).into(), reason, *gap_ms, UnixMs::now())
                                }),
                                None => ctl.tell_board(|b| b.switched_without_session()),
                            }
                        }
                        let commands = ctl.on_input(input);
                        ctl.send(driver, commands);
                    }
                    DriverEvent::Failover { gap_ms } => {
                        match gap_ms {
                            Some(gap) => ctl.metrics.observe_failover(gap),
                            None => ctl.metrics.count(&ctl.metrics.failovers),
                        }
                        ctl.tell_board(|b| b.failover(gap_ms, UnixMs::now()));
                    }
                    DriverEvent::Down(e) => return Some(e),
                }
            }
            if idle {
                break;
            }
        }
        if synced {
            let out = ctl.handle(Input::Tick);
            if !out.commands.is_empty() {
                ctl.send(driver, out.commands);
                continue;
            }
        }

        let now = ctl.now();
        let mut wake: Millis = now + 60_000;
        if let Some(t) = driver.poll_timeout() {
            wake = wake.min(t);
        }
        if synced {
            if let Some(t) = ctl.sessions.next_timeout() {
                wake = wake.min(t);
            }
        }
        let until = Duration::from_millis(wake.saturating_sub(now).max(1));
        tokio::select! {
            read = tokio::time::timeout(until, stream.read(&mut buf)) => match read {
                Err(_) => {}
                Ok(Ok(0)) => driver.closed(ctl.now()),
                Ok(Ok(n)) => driver.receive(&buf[..n], ctl.now()),
                Ok(Err(e)) => return Some(lost(e.to_string())),
            },
            _ = shutdown.as_mut() => {
                goodbye(ctl, driver, &mut stream).await;
                return None;
            }
            Some(note) = ctl.inbox.recv(), if synced => {
                let commands = match note {
                    Inbox::MoveChecked(m) => ctl.finish_move(m.leg, m.device, m.result, m.since),
                    Inbox::Api(crate::api::Notice::DevicesChanged) => {
                        ctl.warn_yaml_differences().await;
                        if let Err(e) = ctl.reload_devices_off_loop().await {
                            error!("reloading the device registry: {e}");
                        }
                        Vec::new()
                    }
                };
                ctl.send(driver, commands);
            }
        }
        if driver.poll_timeout().is_some_and(|t| t <= ctl.now()) {
            driver.timeout(ctl.now());
        }
    }
}

/// Rebuilds the sessions from what the PBX runs: channels that went away while the link was
/// down are hung up in the session core, conferences named after sessions are taken over
/// (with what the PBX does not say, the far number and bars, from the store), and stored
/// sessions the PBX no longer has are closed and audited.
fn resync(ctl: &mut Controller, driver: &mut dyn Driver, channels: &[PbxChannel]) {
    let present: std::collections::HashSet<&str> = channels.iter().map(|c| c.uniqueid.as_str()).collect();
    for gone in ctl.sessions.channels().into_iter().filter(|u| !present.contains(u.as_str())) {
        let cause_txt = format!("gone while the link to {} was down", driver.pbx());
        let out = ctl.handle(Input::Hangup { uniqueid: gone, cause: 0, cause_txt });
        ctl.send(driver, out.commands);
    }
    let found = found_sessions(channels, &ctl.sessions, &ctl.cfg.conference.name_prefix);
    let n = found.len();
    for mut f in found {
        let stored = ctl.store.get_session(&f.session.0).ok().flatten();
        if let Some(s) = &stored {
            f.far_number = s.far_number.clone();
            if f.device.is_empty() {
                f.device = s.device.clone();
            }
        }
        let id = f.session.clone();
        driver.adopted(&f, ctl.now());
        let out = ctl.sessions.adopt(f, ctl.now());
        for (device, until) in stored.map(|s| s.barred).unwrap_or_default() {
            let until = ctl.mono_of(until);
            if until > ctl.now() {
                ctl.sessions.bar(&id, &device, until);
            }
        }
        ctl.log(&out);
        ctl.persist(&out);
        ctl.send(driver, out.commands);
    }
    // A far call never outlives its session: a far channel whose session was not taken over
    // (it ended while the link was down, or before its originate got a channel) is hung up.
    for far in channels.iter().filter(|c| crate::session::is_far_channel(&c.uniqueid)) {
        let out = ctl.handle(Input::FarSeen { uniqueid: far.uniqueid.clone() });
        ctl.send(driver, out.commands);
    }
    driver.resynced(ctl.now());
    ctl.close_vanished();
    ctl.metrics.sessions_open.store(ctl.sessions.len() as u64, std::sync::atomic::Ordering::Relaxed);
    info!(
        "resynchronised from {}: {n} running session(s) taken over; {} session(s) open",
        driver.pbx(),
        ctl.sessions.len()
    );
}

impl Controller {
    /// An input from the PBX: a move leg is checked off the loop, anything else goes to the
    /// session core. Returns the commands to carry out now.
    fn on_input(&mut self, input: Input) -> Vec<Command> {
        if let Input::LegArrived(leg) = &input {
            if leg.far == MOVE_FAR {
                return self.start_move(leg.clone()).into_iter().collect();
            }
        }
        self.handle(input).commands
    }

    fn send(&self, driver: &mut dyn Driver, commands: Vec<Command>) {
        let now = self.now();
        for cmd in &commands {
            driver.command(cmd, now);
        }
    }
}

/// Reads the admin token, making one (32 random bytes, hex, mode 0600) if the file is missing.
/// `None` (admin endpoints refuse everything) if it can be neither read nor made.
fn load_admin_token(path: &str) -> Option<zeroize::Zeroizing<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Some(zeroize::Zeroizing::new(t.trim().to_string())),
        Ok(_) => {
            error!("admin token {path} is empty; admin API off (delete it to have handoffd make one)");
            return None;
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            error!("admin token {path}: {e}; admin API off");
            return None;
        }
        Err(_) => {}
    }
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    if let Err(e) = getrandom::fill(&mut raw[..]) {
        error!("admin token: OS random source: {e}; admin API off");
        return None;
    }
    let token = zeroize::Zeroizing::new(crate::store::records::hex(&raw[..]));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()
    })();
    match written {
        Ok(()) => {
            info!("created the admin token {path} (handoffctl reads it)");
            Some(token)
        }
        Err(e) => {
            error!("admin token {path}: cannot create: {e}; admin API off");
            None
        }
    }
}
