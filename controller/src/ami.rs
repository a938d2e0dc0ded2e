//! The Asterisk Manager Interface, sans-I/O: bytes in, typed messages out; typed actions in,
//! bytes out. No sockets, no clocks.
//!
//! - [`codec`]: frame (find the blank line, cap the size), then parse the whole frame with nom.
//! - [`correlate`]: match responses and event lists to the actions that caused them, by ActionID.

pub mod codec;
pub mod correlate;

pub use codec::{
    Action, AmiDecoder, AmiError, AmiMessage, Event, Headers, Response, ResponseStatus, MAX_MESSAGE_BYTES,
};
pub use correlate::{ActionId, ActionTracker, Outcome, Tracked};
