//! The controller core: the session machine with the metrics, the status board and the device
//! registry around it. No I/O: every input comes in with the time ([`Now`]) and leaves as a
//! [`Step`] (commands for the PBX, store writes, audit records, timeline entries, a move to
//! check), which the link loop ([`super::link`]) carries out. The move flow's two halves on
//! this side are in [`super::move_flow`].

use super::move_flow::MoveAsk;
use super::persist::{self, StoreWrite};
use crate::metrics::Metrics;
use crate::session::{Command, Found, Input, Millis, Outputs, Sessions, MOVE_FAR};
use crate::status::Board;
use crate::store::{AuditRecord, SessionSnapshot, UnixMs};
use std::sync::{Arc, Mutex};
use tracing::info;

/// When an input comes in: the sessions' monotonic clock and the store's wall clock, read
/// together by the link loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Millis,
    pub unix: UnixMs,
}

impl Now {
    /// A monotonic instant as wall-clock time (for the store), in the past (a record's time)
    /// or in the future (a bar's end).
    pub fn unix_of(self, at: Millis) -> UnixMs {
        let unix = i128::from(self.unix.0) + i128::from(at) - i128::from(self.mono);
        UnixMs(u64::try_from(unix.max(0)).unwrap_or(u64::MAX))
    }

    /// A wall-clock instant as a monotonic one.
    pub fn mono_of(self, at: UnixMs) -> Millis {
        self.mono + at.0.saturating_sub(self.unix.0)
    }
}

/// What one input asks of the I/O around the core, in the order the link loop carries it
/// out: timeline entries queued, store writes landed, audit records appended, the move check
/// started, and only then the commands sent to the PBX.
#[derive(Debug, Default)]
pub struct Step {
    pub commands: Vec<Command>,
    pub writes: Vec<StoreWrite>,
    pub audit: Vec<AuditRecord>,
    /// (session, entry) for the session timelines in the store.
    pub timeline: Vec<(String, crate::timeline::Entry)>,
    /// A move leg's ticket or PIN to check off the loop ([`super::move_flow::check`]).
    pub check: Option<MoveAsk>,
}

impl Step {
    /// Only commands.
    pub fn commands(commands: Vec<Command>) -> Self {
        Self { commands, ..Self::default() }
    }
}

/// The sessions and what is kept about them in memory: metrics, the status board, the
/// device registry's caller IDs from handoffd.yaml, and this controller's cluster node.
pub struct Core {
    pub sessions: Sessions,
    pub metrics: Arc<Metrics>,
    pub board: Arc<Mutex<Board>>,
    /// handoffd.yaml's devices: (id, caller ID for the far call).
    caller_ids: Vec<(String, Option<String>)>,
    /// `cluster.node`, written into each session record.
    node: String,
}

impl Core {
    /// A core with no device yet ([`Core::set_registry`] gives it the store's); session ids
    /// start with `id_prefix`.
    pub fn new(cfg: &crate::config::Config, id_prefix: String) -> Self {
        let (rules, _) = cfg.session_rules();
        Self {
            sessions: Sessions::new(rules, Vec::new(), id_prefix),
            metrics: Default::default(),
            board: Default::default(),
            caller_ids: cfg.devices.iter().map(|d| (d.id.clone(), d.caller_id.clone())).collect(),
            node: cfg.cluster.node.clone(),
        }
    }

    /// The device registry from the store (config devices were imported into it), with the
    /// config's caller IDs.
    pub fn set_registry(&mut self, stored: Vec<crate::store::Device>) {
        let devices = stored
            .into_iter()
            .map(|d| crate::session::Device {
                caller_id: self.caller_ids.iter().find(|(id, _)| *id == d.id).and_then(|(_, c)| c.clone()),
                id: d.id,
                user: d.user,
                endpoint: d.data_endpoint,
                number: d.carrier_number,
            })
            .collect::<Vec<_>>();
        info!("device registry: {} device(s)", devices.len());
        self.sessions.set_devices(devices);
    }

    /// An input from the PBX: a move leg starts the move flow, anything else goes to the
    /// session core.
    pub fn on_input(&mut self, input: Input, now: Now) -> Step {
        if let Input::LegArrived(leg) = &input {
            if leg.far == MOVE_FAR {
                return self.start_move(leg.clone(), now);
            }
        }
        self.handle(input, now)
    }

    /// Feeds one input to the session core, keeping the metrics.
    pub fn handle(&mut self, input: Input, now: Now) -> Step {
        let m = &self.metrics;
        match &input {
            Input::LegArrived(l) => {
                m.count(if l.path == crate::session::Path::Data { &m.legs_data } else { &m.legs_carrier })
            }
            Input::FarFailed { .. } => m.count(&m.far_failures),
            _ => {}
        }
        let before = self.sessions.len() as u64;
        let out = self.sessions.handle(input, now.mono);
        let opened = out.commands.iter().filter(|c| matches!(c, Command::OriginateFar { .. })).count() as u64;
        let refused = out.commands.iter().filter(|c| matches!(c, Command::Refuse { .. })).count() as u64;
        let after = self.sessions.len() as u64;
        let m = &self.metrics;
        use std::sync::atomic::Ordering::Relaxed;
        m.sessions_opened.fetch_add(opened, Relaxed);
        m.legs_refused.fetch_add(refused, Relaxed);
        m.sessions_ended.fetch_add((before + opened).saturating_sub(after), Relaxed);
        m.sessions_open.store(after, Relaxed);
        self.step(out, now)
    }

    /// A running session found in the PBX after a (re)connect is taken over, with what the
    /// store kept of it (the far number, the device, the bars the PBX does not know).
    pub fn adopt(&mut self, found: Found, stored: Option<SessionSnapshot>, now: Now) -> Step {
        let id = found.session.clone();
        let out = self.sessions.adopt(found, now.mono);
        for (device, until) in stored.map(|s| s.barred).unwrap_or_default() {
            let until = now.mono_of(until);
            if until > now.mono {
                self.sessions.bar(&id, &device, until);
            }
        }
        self.step(out, now)
    }

    /// After a resync: the store's sessions that are not running here are closed and audited.
    pub fn close_vanished(&self, now: Now) -> Step {
        let live = self.sessions.ids().map(|id| id.0.clone()).collect();
        Step { writes: vec![StoreWrite::CloseVanished { live, at: now.unix }], ..Step::default() }
    }

    /// What the session core's outputs ask of the I/O: the log lines are written here, the
    /// timeline entries, snapshots and audit records go into the step.
    pub(super) fn step(&self, out: Outputs, now: Now) -> Step {
        for r in &out.records {
            info!(target: "handoff::timeline", session = %r.session, at_ms = r.at, "{}", r.what);
        }
        // Refusals of no session are only logged.
        let timeline = out
            .records
            .iter()
            .filter(|r| r.session.0 != "-")
            .map(|r| {
                let entry =
                    crate::timeline::Entry { at: now.unix_of(r.at), mark: r.mark.clone(), text: r.what.clone() };
                (r.session.0.clone(), entry)
            })
            .collect();
        for (id, _) in &out.ended {
            self.tell_board(|b| b.ended(&id.0));
        }
        let (writes, audit) = persist::writes(&self.sessions, &out, &self.node, now);
        Step { commands: out.commands, writes, audit, timeline, check: None }
    }

    /// Tells the status page's board something (see [`crate::status::Board`]).
    pub fn tell_board(&self, f: impl FnOnce(&mut Board)) {
        f(&mut self.board.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::{LegArrival, Path};

    pub(crate) fn core() -> Core {
        let cfg = crate::config::Config::parse("ami:\n  username: handoffd\n  secret: s3cret\n", "t.yaml").unwrap();
        let mut core = Core::new(&cfg, "t".into());
        core.set_registry(vec![crate::store::Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            data_endpoint: Some("alice-app".into()),
            carrier_number: Some("+15550001".into()),
            name: "Alice's phone".into(),
        }]);
        core
    }

    pub(crate) fn now(mono: Millis) -> Now {
        Now { mono, unix: UnixMs(1_700_000_000_000 + mono) }
    }

    pub(crate) fn leg(uniqueid: &str, far: &str, token: &str) -> Input {
        Input::LegArrived(LegArrival {
            uniqueid: uniqueid.into(),
            channel: format!("PJSIP/alice-app-{uniqueid}"),
            caller: "alice-app".into(),
            endpoint: "alice-app".into(),
            path: Path::Data,
            far: far.into(),
            token: token.into(),
        })
    }

    #[test]
    fn clocks_convert_both_ways() {
        let n = now(10_000);
        assert_eq!(n.unix_of(4_000), UnixMs(n.unix.0 - 6_000));
        assert_eq!(n.unix_of(70_000), UnixMs(n.unix.0 + 60_000), "the future stays ahead");
        assert_eq!(n.mono_of(n.unix_of(70_000)), 70_000);
        assert_eq!(n.mono_of(UnixMs(n.unix.0 + 2_500)), 12_500);
        assert_eq!(n.mono_of(UnixMs(n.unix.0 - 2_500)), 10_000, "the past is now");
    }

    #[test]
    fn a_call_opens_a_session_stored_before_its_commands_go_out() {
        let mut c = core();
        let step = c.on_input(leg("1.1", "2000", ""), now(100));
        assert!(step.commands.iter().any(|c| matches!(c, Command::OriginateFar { .. })), "{:?}", step.commands);
        assert!(step.check.is_none());
        let Some(StoreWrite::Put(s)) = step.writes.first() else { panic!("{:?}", step.writes) };
        assert_eq!((s.user.as_str(), s.device.as_str(), s.far_number.as_str()), ("alice", "alice-phone", "2000"));
        assert_eq!(s.state, crate::store::SessionState::AwaitingFarAnswer);
        assert!(step.timeline.iter().all(|(id, _)| *id == s.id) && !step.timeline.is_empty());
        let m = &c.metrics;
        assert_eq!(m.sessions_opened.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(m.legs_data.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn an_ended_session_is_closed_and_audited_in_the_store() {
        let mut c = core();
        c.on_input(leg("1.1", "2000", ""), now(100));
        let id = c.sessions.ids().next().cloned().unwrap();
        let far = c.sessions.view(&id).unwrap().far.unwrap_or_default();
        let step = c.handle(Input::FarFailed { uniqueid: far, reason: "busy".into(), no_channel: true }, now(200));
        let step = if c.sessions.is_empty() {
            step
        } else {
            let gone = Input::Hangup { uniqueid: "1.1".into(), cause: 16, cause_txt: "Normal Clearing".into() };
            c.handle(gone, now(300))
        };
        assert!(
            step.writes.iter().any(|w| matches!(w, StoreWrite::AuditEnd { session, .. } if *session == id.0)),
            "{:?}",
            step.writes
        );
    }

    /// A bar (the call moved away from a device) is stored with its end in wall-clock time and,
    /// after a restart (a new monotonic clock), still bars the device for the rest of its time.
    #[test]
    fn a_bar_saved_then_loaded_after_a_restart_still_bars_for_the_rest_of_its_time() {
        let tablet = crate::store::Device {
            id: "alice-tablet".into(),
            user: "alice".into(),
            data_endpoint: Some("alice-tablet".into()),
            carrier_number: None,
            name: "Alice's tablet".into(),
        };
        let mut c = core();
        c.on_input(leg("1.1", "2000", ""), now(100));
        let id = c.sessions.ids().next().cloned().unwrap();
        let far = c.sessions.view(&id).unwrap().far.unwrap();
        c.handle(Input::FarAnswered { uniqueid: far.clone() }, now(150));
        c.sessions.bar(&id, "alice-tablet", 60_100);
        let step = c.step(test_record(&id, 200), now(200));
        let Some(StoreWrite::Put(saved)) = step.writes.first().cloned() else { panic!("{:?}", step.writes) };
        assert_eq!(saved.barred, vec![("alice-tablet".to_string(), UnixMs(now(200).unix.0 + 59_900))]);

        // handoffd restarts 10 s later: its monotonic clock starts again near 0.
        let later = Now { mono: 1_000, unix: UnixMs(now(200).unix.0 + 10_000) };
        let mut c = core();
        let mut registry = vec![tablet];
        registry.push(crate::store::Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            data_endpoint: Some("alice-app".into()),
            carrier_number: Some("+15550001".into()),
            name: "Alice's phone".into(),
        });
        c.set_registry(registry);
        let found = Found {
            session: id.clone(),
            bridge: saved.bridge.clone(),
            device: "alice-phone".into(),
            far: Some(far),
            legs: vec![("1.1".into(), "PJSIP/alice-app-1.1".into(), crate::session::Path::Data)],
            far_number: "2000".into(),
        };
        c.adopt(found, Some(saved), later);
        let rest = 1_000 + 59_900 - 10_000;
        assert_eq!(c.sessions.view(&id).unwrap().barred, vec![("alice-tablet".to_string(), rest)]);
        let tablet_leg = |uid: &str| {
            Input::LegArrived(LegArrival {
                uniqueid: uid.into(),
                channel: format!("PJSIP/alice-tablet-{uid}"),
                caller: "alice-tablet".into(),
                endpoint: "alice-tablet".into(),
                path: Path::Data,
                far: "2000".into(),
                token: String::new(),
            })
        };
        let at = |mono| Now { mono, unix: UnixMs(later.unix.0 + mono - later.mono) };
        let step = c.handle(tablet_leg("2.1"), at(rest - 1));
        assert!(
            matches!(&step.commands[..], [Command::Refuse { reason, .. }] if reason.contains("barred")),
            "{step:?}"
        );
        let step = c.handle(tablet_leg("2.2"), at(rest));
        assert!(!step.commands.iter().any(|c| matches!(c, Command::Refuse { .. })), "{step:?}");
    }

    fn test_record(id: &crate::session::SessionId, at: Millis) -> Outputs {
        Outputs {
            records: vec![crate::session::Record {
                at,
                session: id.clone(),
                what: "x".into(),
                mark: crate::timeline::Mark::Note,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn close_vanished_names_the_live_sessions() {
        let mut c = core();
        c.on_input(leg("1.1", "2000", ""), now(100));
        let step = c.close_vanished(now(150));
        let [StoreWrite::CloseVanished { live, at }] = step.writes.as_slice() else { panic!("{:?}", step.writes) };
        assert_eq!(live.len(), 1);
        assert_eq!(*at, now(150).unix);
    }
}
