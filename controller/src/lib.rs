//! The handoff controller library, used by the `handoffd` daemon.
//!
//! Data flows one way: bytes from the PBX's event socket are framed and parsed by a sans-I/O
//! codec ([`ami`] for Asterisk, [`esl`] for FreeSWITCH), the session state machine ([`session`])
//! turns typed events into typed actions, and the daemon ([`daemon`]) is the only place that
//! touches sockets, clocks and the store.
//!
//! - [`ami`]: Asterisk Manager Interface codec and action/response correlation (no I/O).
//! - [`esl`]: FreeSWITCH Event Socket codec and protocol client (no I/O), proven on recorded
//!   FreeSWITCH 1.11.2 traffic (`tests/data/freeswitch-esl/`); the FreeSWITCH driver is to come.
//! - [`config`]: the `handoffd.yaml` schema and its validation.
//! - [`session`]: sessions, legs and their rules (no I/O).
//! - [`asterisk`]: AMI events to session inputs and session commands to AMI actions (no I/O).
//! - [`daemon`]: the tokio side: the AMI link with reconnect, the session driver.
//! - [`fuzzing`]: the parsers under arbitrary input, for cargo-fuzz and the corpus replay test.
//! - [`metrics`]: Prometheus counters and the failover-gap histogram.

pub mod ami;
pub mod api;
pub mod asterisk;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod esl;
pub mod fuzzing;
pub mod metrics;
pub mod moves;
pub mod service;
pub mod session;
pub mod store;
