//! `res_handoff.so`: the part of handoff that must live inside Asterisk.
//!
//! It registers the dialplan application `Handoff()` (hands a channel to the session machinery
//! run by the `handoffd` controller), the CLI command `handoff show status`, and the AMI actions
//! (`HandoffChallenge`, `HandoffHello`, `HandoffAssign`, `HandoffRefuse`, `HandoffSecret`; only
//! the controller's AMI account may use them, see `ami_auth.rs`) and events (`HandoffLegArrived`,
//! `HandoffLegAbandoned`, ...) the controller speaks. Policy lives in the controller; the module
//! only does what cannot leave the PBX. The AMI names it shares with handoffd come from the
//! `handoff-vocab` crate (`vocab/`).
//!
//! Layers, each calling only the one below it:
//!
//! ```text
//!   1  asterisk/ffi.rs    raw declarations; build.rs checks layouts and prototypes against the headers
//!   2  asterisk/          the safe wrapper: the only code that calls ffi (unsafe is denied elsewhere)
//!        mod.rs           C strings, logging, the clock, randomness
//!        module.rs        ast_module_info, declare_module!, the loader's handle
//!        application.rs   dialplan applications and their channel
//!        manager.rs       AMI actions, the session's proof record, events
//!        cli.rs           CLI commands
//!        framehook.rs     frame hooks and the voice frames they see
//!        config.rs        reading a config file
//!   3  lifecycle.rs       load / unload / reload; what a forced unload leaves
//!      app.rs             Handoff()                      app_args.rs  its arguments
//!      manager.rs         the AMI actions                ami_auth.rs  who may send them
//!      secret.rs          a move leg's PIN or ticket, and HandoffSecret
//!      cli.rs             handoff show status
//!      media.rs           one frame hook per leg (read: into the mix or not; write: the downlink)
//!      groups.rs          the registry of device groups and the ticker's work on them
//!      events.rs          the AMI events the module raises
//!      ticker.rs          the ticker thread              residency.rs  staying mapped through a forced unload
//!      guard.rs           the panic guard of every extern "C" entry
//!   4  pure logic, unit-tested without Asterisk:
//!      frame_clock.rs     which leg feeds the mix        align.rs     the legs lined up in time
//!      downlink.rs        the same downlink on every leg legs.rs      who waits for what
//!      config.rs          handoff.conf and the settings in force
//!      tone.rs            the reconnecting tone while every leg of a device is silent
//! ```
//!
//! Every `extern "C"` entry point runs inside [`guard::guard`], so a panic never reaches
//! Asterisk.
#![deny(unsafe_code)]

pub mod align;
pub mod ami_auth;
pub mod app_args;
pub mod conceal;
pub mod config;
pub mod downlink;
pub mod frame_clock;
pub mod legs;
pub mod secret;
pub mod tone;

#[cfg(not(test))]
mod app;
#[cfg(not(test))]
#[allow(unsafe_code)]
mod asterisk;
#[cfg(not(test))]
mod cli;
#[cfg(not(test))]
mod events;
#[cfg(not(test))]
mod groups;
#[cfg(not(test))]
mod guard;
#[cfg(not(test))]
mod lifecycle;
#[cfg(not(test))]
mod manager;
#[cfg(not(test))]
mod media;
#[cfg(not(test))]
#[allow(unsafe_code)]
mod residency;
#[cfg(not(test))]
#[allow(unsafe_code)]
mod ticker;
