//! The handoff controller library, used by the `handoffd` daemon.
//!
//! Data flows one way: bytes from the PBX's event socket are framed and parsed by a sans-I/O
//! codec ([`ami`] for Asterisk, [`esl`] for FreeSWITCH), the session state machine ([`session`])
//! turns typed events into typed actions, and the daemon ([`daemon`]) is the only place that
//! touches sockets, clocks and the store (its controller core, persistence and move flow do
//! not).
//!
//! - [`ami`]: Asterisk Manager Interface codec (`ami/codec.rs`) and action/response
//!   correlation (`ami/correlate.rs`), no I/O.
//! - [`esl`]: FreeSWITCH Event Socket codec and protocol client (no I/O), proven on recorded
//!   FreeSWITCH 1.11.2 traffic (`tests/data/freeswitch-esl/`): `esl/codec.rs`, `message.rs`,
//!   `event.rs`, `command.rs`, `client.rs` + `client/receive.rs`, `resync.rs`.
//! - [`pbx`]: the PBX-neutral driver interface between the daemon and a PBX (no I/O):
//!   [`pbx::DriverInput`] in, [`pbx::DriverEvent`] out, plain data both ways.
//! - [`freeswitch`]: the FreeSWITCH driver: ESL events to session inputs, session commands to
//!   `api`/`bgapi`, the leg switch done by muting conference members (no I/O); `freeswitch/`
//!   `arrival.rs`, `inputs.rs`, `mix.rs`, `causes.rs`, `gap.rs`, `pin.rs`, `tests.rs`.
//! - [`config`]: the `handoffd.yaml` schema (`config/sections.rs`, `config/defaults.rs`), its
//!   reading (`config/parse.rs`) and validation (`config/validate.rs`).
//! - [`session`]: sessions, legs and their rules (no I/O); `session/` holds its vocabulary
//!   (`types.rs`), a session's phase and data (`state.rs`), its timer table (`timers.rs`), and
//!   what each kind of input does (`arrival.rs`, `events.rs`, `moving.rs`, `late.rs`).
//! - [`asterisk`]: the Asterisk driver: AMI login, events to session inputs, session commands
//!   to AMI actions (no I/O); `asterisk/mapping.rs`, `asterisk/late_tests.rs`. The AMI names it
//!   shares with `res_handoff.so` come from the `handoff-vocab` crate (`vocab/`).
//! - [`daemon`]: the tokio side, one file per concern under `daemon/`: `link.rs` (the PBX link
//!   loop with reconnect: socket, clock, driver), `controller.rs` (the controller core: inputs
//!   in, commands and store writes out; no I/O), `persist.rs` (session views → store records),
//!   `move_flow.rs` (a move from leg to moved call), `store_io.rs` (the store off the
//!   executor), `servers.rs` (the API and metrics listeners), `housekeeping.rs`,
//!   `node_lease.rs` (a cluster node's lease), `admin_token.rs`, `start.rs` (opening it all).
//! - [`fuzzing`]: the parsers under arbitrary input, for cargo-fuzz and the corpus replay test.
//! - [`hangup_cause`]: the one table deciding "user hung up" vs "leg lost" per PBX.
//! - [`http`]: the HTTP/1.1 server of the API and the metrics (connection cap, time limits).
//! - [`markup`]: escaping for the HTML and SVG handoffd writes.
//! - [`metrics`]: Prometheus counters and the failover-gap histogram.
//! - [`timeline`]: a session's timeline as typed marks, as text and as an SVG picture (no I/O); `timeline/svg.rs`.
//! - [`status`]: the status page (`GET /status`): its model and HTML rendering (no I/O).
//! - [`store`]: the store interface and its backends: `store/sled_db.rs`, `postgres_db.rs`,
//!   `records.rs`, `conformance.rs`, `config_devices.rs`, `timeline.rs`.
//! - [`moves`]: move decisions (`moves/lockout.rs`, `read.rs`, `ticket.rs`); [`service`] and
//!   [`api`]: the move service and the HTTP API; [`credentials`]: users' secrets.
//! - `bin/handoffd.rs`, `bin/handoffctl.rs`: the daemon and the admin tool.
//!
//! The rules hold themselves: `#![forbid(unsafe_code)]` here and in both binaries, and
//! `controller/clippy.toml` bans clocks, tokio and sockets outside the I/O files (CI runs
//! clippy with `-D warnings`).

// The controller is safe Rust: the compiler refuses any `unsafe` block (FFI lives in module/).
#![forbid(unsafe_code)]

pub mod ami;
pub mod api;
pub mod asterisk;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod esl;
pub mod freeswitch;
pub mod fuzzing;
pub mod hangup_cause;
pub mod http;
pub mod markup;
pub mod metrics;
pub mod moves;
pub mod pbx;
pub mod service;
pub mod session;
pub mod status;
pub mod store;
pub mod timeline;
