//! The daemon: handoffd's tokio side, one concern per file under `daemon/`.
//!
//! [`run`] wires them together: the HTTP listeners ([`servers`]), the store's housekeeping
//! ([`housekeeping`]), the cluster node's lease ([`node_lease`]) and the link loop ([`link`]),
//! which keeps one connection to the PBX up and hands its bytes to the PBX's driver
//! ([`crate::pbx::Driver`]: [`AsteriskDriver`] over AMI, [`FreeSwitchDriver`] over the event
//! socket). What the driver reports goes to the controller core ([`controller`], no I/O); the
//! [`Step`](controller::Step) it returns is carried out by the link loop: store writes first
//! (off the executor, [`store_io`]), then the commands through the driver. Sessions survive a
//! dropped link: media lives in the PBX.
//!
//! | file | owns |
//! |------|------|
//! | `daemon.rs` | [`Controller`] (what the daemon keeps across links) and [`run`] |
//! | [`start`] | opening the controller: store, pepper, verifier, handoffd.yaml's devices |
//! | [`link`] | the link loop: socket, clock, driver, reconnect; the only I/O with the PBX |
//! | [`controller`] | the controller core: inputs in, commands and store writes out (no I/O) |
//! | [`persist`] | session views → store records, and applying them to the store |
//! | [`move_flow`] | a move, start to finish: leg → ticket/PIN check → call moved or refused |
//! | [`store_io`] | the store off the executor: writes in order, audit, the timeline queue |
//! | [`servers`] | the HTTP listeners of the API and the metrics (one server: [`crate::http`]) |
//! | [`housekeeping`] | the hourly purge of tickets, bars, ended sessions, audit and timelines |
//! | [`node_lease`] | a cluster node's lease: who drives the PBX |
//! | [`admin_token`] | reading or making the admin API's token |

// No module-wide allow of clock and tokio here: it would reach the sans-I/O files below
// (controller, persist, move_flow). Each I/O file allows them at its own top; `run` below.

pub mod admin_token;
pub mod controller;
pub mod housekeeping;
pub mod link;
pub mod move_flow;
pub mod node_lease;
pub mod persist;
pub mod servers;
pub mod start;
pub mod store_io;

use crate::asterisk::AsteriskDriver;
use crate::config::{Config, Pbx};
use crate::freeswitch::FreeSwitchDriver;
use crate::pbx::Driver;
pub use crate::pbx::LinkError;
use crate::service::MoveService;
use crate::session::Millis;
use crate::store::{Store, UnixMs};
pub use housekeeping::{HOUSEKEEPING_INTERVAL, KEEP_ENDED_MS};
pub use start::StartError;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What the link loop is told from outside it: finished move checks and API notices.
#[derive(Debug)]
pub enum Inbox {
    /// A move leg's ticket or PIN was checked (off the loop): carry it out or refuse.
    MoveChecked(Box<move_flow::MoveChecked>),
    /// The API changed the store.
    Api(crate::api::Notice),
}

/// The controller core, the store and the move service: everything the daemon keeps across
/// links to the PBX.
pub struct Controller {
    cfg: Config,
    /// The sessions with their metrics and status board; no I/O.
    core: controller::Core,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// What the status page shows of the link and the mix ([`crate::status`]).
    pub board: std::sync::Arc<std::sync::Mutex<crate::status::Board>>,
    epoch: Instant,
    store: Store,
    service: MoveService,
    inbox_tx: tokio::sync::mpsc::UnboundedSender<Inbox>,
    inbox: tokio::sync::mpsc::UnboundedReceiver<Inbox>,
    timeline: store_io::TimelineQueue,
}

impl Controller {
    /// The clock: the time an input comes in at, for the core.
    fn now(&self) -> controller::Now {
        controller::Now { mono: self.epoch.elapsed().as_millis() as Millis, unix: UnixMs::now() }
    }
}

/// Runs handoffd until `shutdown` resolves (or the config names no PBX link). A refused
/// login is not the end: it is logged as an error naming the account and what to check, and
/// tried again every `login_retry_s` (a manager.conf reload can refuse a good secret briefly;
/// under systemd, exiting would end in the unit's start limit and no controller at all).
// Clock and tokio are allowed here: the wiring waits for the timeline writer and flushes the store on the blocking pool (controller/clippy.toml).
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub async fn run(mut ctl: Controller, shutdown: impl std::future::Future<Output = ()>) -> Result<(), LinkError> {
    servers::start(&ctl).await;
    // Tickets, bars and ended sessions that ran out while handoffd was down, then every hour:
    // a store that runs for months keeps only what a late replay or move needs.
    housekeeping::start(&ctl.store, &ctl.cfg).await;
    let mut driver: Box<dyn Driver> = match (ctl.cfg.pbx, ctl.cfg.ami.clone(), ctl.cfg.esl.clone()) {
        (Pbx::Freeswitch, _, Some(esl)) => Box::new(FreeSwitchDriver::new(ctl.cfg.clone(), esl)),
        (_, Some(ami), _) => Box::new(AsteriskDriver::new(ctl.cfg.clone(), ami)),
        _ => return Err(LinkError::Refused("handoffd.yaml names no PBX link (ami: or esl:)".into())),
    };
    let writer = ctl.timeline.start_writer(ctl.store.clone());
    tokio::pin!(shutdown);
    let turn = node_lease::NodeTurn::of(&ctl.cfg);
    if !link::drive(&mut ctl, driver.as_mut(), turn.as_ref(), shutdown.as_mut()).await {
        // Stopped while no link was up (waiting for the node, or to reconnect).
        return Ok(());
    }
    if let Some(turn) = &turn {
        turn.release(&ctl.store).await;
    }
    info!("shutting down; {} session(s) open stay up in {}", ctl.core.sessions.len(), driver.pbx());
    // The timeline entries still queued go to the store, which is flushed.
    ctl.timeline.close();
    if let Some(w) = writer {
        let _ = tokio::time::timeout(Duration::from_secs(3), w).await;
    }
    let store = ctl.store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
        warn!("flushing the store: {e}");
    }
    Ok(())
}
