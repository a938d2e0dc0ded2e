//! `res_handoff.so`: the part of handoff that must live inside Asterisk.
//!
//! It registers the dialplan application `Handoff()` (hands a channel to the session machinery
//! run by the `handoffd` controller), the CLI command `handoff show status`, and the AMI actions
//! (`HandoffChallenge`, `HandoffHello`, `HandoffAssign`, `HandoffRefuse`, `HandoffSecret`; only
//! the controller's AMI account may use them, see `ami_auth.rs`) and events (`HandoffLegArrived`,
//! `HandoffLegAbandoned`, ...) the controller speaks. Policy lives in the controller; the module
//! only does what cannot leave the PBX.
//!
//! The FFI is layered: [`ffi`] holds raw declarations whose layouts and prototypes `build.rs`
//! checks against the Asterisk headers, [`asterisk`] is a small safe wrapper, and the logic
//! ([`legs`], [`config`]) is plain Rust with unit tests. Every `extern "C"` entry point runs inside
//! [`guard::guard`], so a panic never reaches Asterisk.
//!
//! Files: `lib.rs` (module registration, load/unload/reload), `app.rs` (`Handoff()`), `cli.rs`,
//! `manager.rs` (AMI), `ami_auth.rs` (who may drive it), `legs.rs` (who waits for what), `config.rs` (`handoff.conf`),
//! `frame_clock.rs` and `media.rs` (per-leg frame hooks and the switch), `align.rs` (the two legs
//! lined up in time, each slot from the best leg), `downlink.rs` (the same
//! downlink, without the phone's own voice, on every leg of a device), `residency.rs` (staying
//! mapped through a forced unload), `secret.rs` (the PIN or ticket of a move leg, kept out of
//! Asterisk's logs and broadcast events).

pub mod align;
pub mod ami_auth;
pub mod app_args;
pub mod config;
pub mod downlink;
pub mod frame_clock;
pub mod legs;
pub mod secret;

#[cfg(not(test))]
mod app;
#[cfg(not(test))]
mod asterisk;
#[cfg(not(test))]
mod cli;
#[cfg(not(test))]
mod ffi;
#[cfg(not(test))]
mod guard;
#[cfg(not(test))]
mod manager;
#[cfg(not(test))]
mod media;
#[cfg(not(test))]
mod registration;
#[cfg(not(test))]
mod residency;
