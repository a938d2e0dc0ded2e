//! The link loop: the socket to the PBX, the clock and the driver; the only place that does
//! I/O with the PBX. [`drive`] keeps one connection up (connect, reconnect with backoff, and
//! in a cluster only while this handoffd holds the node's lease); [`link`] moves bytes between
//! the socket and the driver, gives what the driver reports to the controller core and
//! carries out the [`Step`] it returns. After every (re)connect the driver's snapshot of
//! running channels rebuilds the sessions ([`resync`]).

// Clock, tokio and sockets are allowed here: the link loop: sockets, clock and tasks (the only I/O of the session core) (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::controller::Step;
use super::node_lease::NodeTurn;
use super::{move_flow, store_io, Controller, Inbox};
use crate::config::LinkSettings;
use crate::hangup_cause::q850;
use crate::pbx::{found_sessions, Driver, DriverEvent, DriverInput, LinkError, PbxChannel};
use crate::session::{Input, Millis};
use crate::store::UnixMs;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

/// Keeps the link to the PBX up until `shutdown` completes. `true` if it completed while a
/// link was up (the driver said goodbye: the caller releases the node and flushes the store),
/// `false` if no link was up then.
pub async fn drive(
    ctl: &mut Controller,
    driver: &mut dyn Driver,
    turn: Option<&NodeTurn>,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    let settings = ctl.cfg.link();
    let mut backoff = Duration::from_millis(settings.reconnect_initial_ms);
    let max_backoff = Duration::from_millis(settings.reconnect_max_ms);
    loop {
        // In a cluster, only the holder of the node's lease drives the PBX; the others wait.
        if let Some(turn) = turn {
            if !turn.wait_for_the_node(&ctl.store, shutdown.as_mut()).await {
                return false;
            }
        }
        let started = Instant::now();
        let ended = match turn {
            None => link(ctl, driver, &settings, shutdown.as_mut()).await,
            Some(turn) => {
                let (renewal, mut taken) = turn.keep(ctl.store.clone());
                let ended = tokio::select! {
                    ended = link(ctl, driver, &settings, shutdown.as_mut()) => Some(ended),
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
        let Some(result) = ended else { return true };
        ctl.core.tell_board(|b| b.link_down(&result.to_string(), UnixMs::now()));
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
                _ = &mut shutdown => return false,
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
            _ = &mut shutdown => return false,
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// How long handoffd waits for the PBX's answer to its goodbye when stopping.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// handoffd is stopping: the driver's goodbye (ESL `exit`) is sent and the PBX's answer (its
/// disconnect notice) read, for at most [`GOODBYE_WAIT`].
async fn goodbye(ctl: &Controller, driver: &mut dyn Driver, stream: &mut TcpStream) {
    if !driver.goodbye(ctl.now().mono) {
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
            Ok(Ok(n)) if n > 0 => driver.handle(DriverInput::Received(&buf[..n]), ctl.now().mono),
            Ok(Ok(_)) => return driver.handle(DriverInput::Closed, ctl.now().mono),
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
        pbx: driver.pbx().link(),
        addr: addr.clone(),
        why,
        hint: driver.pbx().unreachable_hint(),
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
    let link_name = driver.pbx().link();
    let lost = |why: String| LinkError::Lost { link: link_name, addr: addr.clone(), why };
    driver.handle(DriverInput::Connected, ctl.now().mono);
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
                    DriverEvent::Up(up) => {
                        info!("{up}");
                        ctl.metrics.pbx_connected(up.pbx);
                        ctl.core.tell_board(|b| b.link_up(up.pbx.name(), &up.to_string(), UnixMs::now()));
                    }
                    DriverEvent::Snapshot(channels) => {
                        resync(ctl, driver, &channels).await;
                        synced = true;
                    }
                    DriverEvent::Input(input) => {
                        if let Input::LegSwitched { uniqueid, to, reason, gap_ms } = &input {
                            let core = &ctl.core;
                            match core.sessions.session_of(uniqueid) {
                                Some(id) => core.tell_board(|b| {
                                    b.switched(&id.0, uniqueid, (*to).into(), reason, *gap_ms, UnixMs::now())
                                }),
                                None => core.tell_board(|b| b.switched_without_session()),
                            }
                        }
                        let step = ctl.core.on_input(input, ctl.now());
                        carry_out(ctl, driver, step).await;
                    }
                    DriverEvent::Failover { gap_ms } => {
                        match gap_ms {
                            Some(gap) => ctl.metrics.observe_failover(gap),
                            None => ctl.metrics.count(&ctl.metrics.failovers),
                        }
                        ctl.core.tell_board(|b| b.failover(gap_ms, UnixMs::now()));
                    }
                    DriverEvent::Alignment { offset_ms } => ctl.metrics.observe_alignment(offset_ms),
                    DriverEvent::Down(e) => return Some(e),
                }
            }
            if idle {
                break;
            }
        }
        if synced {
            let step = ctl.core.handle(Input::Tick, ctl.now());
            let again = !step.commands.is_empty();
            carry_out(ctl, driver, step).await;
            if again {
                continue;
            }
        }

        let now = ctl.now().mono;
        let mut wake: Millis = now + 60_000;
        if let Some(t) = driver.poll_timeout() {
            wake = wake.min(t);
        }
        if synced {
            if let Some(t) = ctl.core.sessions.next_timeout() {
                wake = wake.min(t);
            }
        }
        let until = Duration::from_millis(wake.saturating_sub(now).max(1));
        tokio::select! {
            read = tokio::time::timeout(until, stream.read(&mut buf)) => match read {
                Err(_) => {}
                Ok(Ok(0)) => driver.handle(DriverInput::Closed, ctl.now().mono),
                Ok(Ok(n)) => driver.handle(DriverInput::Received(&buf[..n]), ctl.now().mono),
                Ok(Err(e)) => return Some(lost(e.to_string())),
            },
            _ = shutdown.as_mut() => {
                goodbye(ctl, driver, &mut stream).await;
                return None;
            }
            Some(note) = ctl.inbox.recv(), if synced => {
                let step = match note {
                    Inbox::MoveChecked(m) => ctl.core.finish_move(*m, ctl.now()),
                    Inbox::Api(crate::api::Notice::DevicesChanged) => {
                        devices_changed(ctl).await;
                        Step::default()
                    }
                };
                carry_out(ctl, driver, step).await;
            }
        }
        if driver.poll_timeout().is_some_and(|t| t <= ctl.now().mono) {
            driver.handle(DriverInput::Timeout, ctl.now().mono);
        }
    }
}

/// Carries out what the core asked for, in order: timeline entries queued, store writes
/// landed, audit records appended, a move check started, then the commands handed to the
/// driver (which sends them with its next transmit).
async fn carry_out(ctl: &mut Controller, driver: &mut dyn Driver, step: Step) {
    let Step { commands, writes, audit, timeline, check } = step;
    ctl.timeline.push(timeline);
    store_io::write(&ctl.store, writes, audit).await;
    if let Some(ask) = check {
        let (service, inbox) = (ctl.service.clone(), ctl.inbox_tx.clone());
        tokio::spawn(async move {
            let checked = move_flow::check(service, ask).await;
            let _ = inbox.send(Inbox::MoveChecked(Box::new(checked)));
        });
    }
    let now = ctl.now().mono;
    for cmd in &commands {
        driver.handle(DriverInput::Command(cmd), now);
    }
}

/// The API changed the devices: a device listed in `handoffd.yaml` that now differs from it is
/// named (the YAML wins again at the next start), and the registry is reloaded from the store.
async fn devices_changed(ctl: &mut Controller) {
    let listed = ctl.cfg.devices.clone();
    match store_io::read(&ctl.store, move |s| crate::store::config_devices::differences(s, &listed)).await {
        Some(Ok(diffs)) => {
            for d in diffs {
                warn!(
                    "device '{}' now differs from handoffd.yaml ({}, store → YAML); handoffd.yaml wins again at the next start: change it there",
                    d.device, d.what
                );
            }
        }
        Some(Err(e)) => error!("comparing the devices with handoffd.yaml: {e}"),
        None => {}
    }
    match store_io::read(&ctl.store, |s| s.list_devices()).await {
        Some(Ok(stored)) => ctl.core.set_registry(stored),
        Some(Err(e)) => error!("reloading the device registry: {e}"),
        None => {}
    }
}

/// Rebuilds the sessions from what the PBX runs: channels that went away while the link was
/// down are hung up in the session core, conferences named after sessions are taken over
/// (with what the PBX does not say, the far number and bars, from the store), and stored
/// sessions the PBX no longer has are closed and audited.
async fn resync(ctl: &mut Controller, driver: &mut dyn Driver, channels: &[PbxChannel]) {
    let present: std::collections::HashSet<&str> = channels.iter().map(|c| c.uniqueid.as_str()).collect();
    for gone in ctl.core.sessions.channels().into_iter().filter(|u| !present.contains(u.as_str())) {
        let cause_txt = format!("gone while the link to {} was down", driver.pbx());
        let step = ctl.core.handle(Input::Hangup { uniqueid: gone, cause: q850::NONE, cause_txt }, ctl.now());
        carry_out(ctl, driver, step).await;
    }
    let found = found_sessions(channels, &ctl.core.sessions, &ctl.cfg.conference.name_prefix);
    let n = found.len();
    let ids: Vec<String> = found.iter().map(|f| f.session.0.clone()).collect();
    let stored =
        store_io::read(&ctl.store, move |s| ids.iter().map(|id| s.get_session(id).ok().flatten()).collect::<Vec<_>>())
            .await
            .unwrap_or_default();
    for (i, mut f) in found.into_iter().enumerate() {
        let stored = stored.get(i).cloned().flatten();
        if let Some(s) = &stored {
            f.far_number = s.far_number.clone();
            if f.device.is_empty() {
                f.device = s.device.clone();
            }
        }
        driver.handle(DriverInput::Adopted(&f), ctl.now().mono);
        let step = ctl.core.adopt(f, stored, ctl.now());
        carry_out(ctl, driver, step).await;
    }
    // A far call never outlives its session: a far channel whose session was not taken over
    // (it ended while the link was down, or before its originate got a channel) is hung up.
    for far in channels.iter().filter(|c| crate::session::is_far_channel(&c.uniqueid)) {
        let step = ctl.core.handle(Input::FarSeen { uniqueid: far.uniqueid.clone() }, ctl.now());
        carry_out(ctl, driver, step).await;
    }
    driver.handle(DriverInput::Resynced, ctl.now().mono);
    let step = ctl.core.close_vanished(ctl.now());
    carry_out(ctl, driver, step).await;
    ctl.metrics.sessions_open.store(ctl.core.sessions.len() as u64, std::sync::atomic::Ordering::Relaxed);
    info!(
        "resynchronised from {}: {n} running session(s) taken over; {} session(s) open",
        driver.pbx(),
        ctl.core.sessions.len()
    );
}
