//! The FreeSWITCH Event Socket (ESL), sans-I/O: bytes in, typed messages out; typed commands
//! in, bytes out. No sockets, no clocks (time comes in as `now_ms`).
//!
//! The path of a byte: [`codec`] frames it (header block, blank line, `Content-Length` body,
//! both capped) and types the frame by `Content-Type` into a [`message`]; event bodies in
//! plain, JSON and XML are parsed by [`event`] into one [`Event`] shape; [`client`] runs the
//! handshake (inbound `auth`, outbound `connect`), matches replies to [`command`]s in send
//! order and bgapi jobs by `Job-UUID`, and hands the owner typed [`Output`]s. [`resync`]
//! reads the api bodies used to rebuild state after a reconnect.
//!
//! Everything here was checked against FreeSWITCH 1.11.2 transcripts kept byte for byte in
//! `tests/data/freeswitch-esl/` (see its README for the wire-format traps).

pub mod client;
pub mod codec;
pub mod command;
pub mod event;
pub mod message;
pub mod resync;

pub use client::{Client, ClientConfig, ClientError, CommandId, Failure, Mode, Output, State};
pub use codec::{Decoder, EslError, MAX_BODY_BYTES, MAX_HEADER_BYTES};
pub use command::{Command, CommandError};
pub use event::{parse_json, parse_plain, parse_xml, percent_decode, xml_unescape, EventBodyError};
pub use message::{
    ApiResponse, DisconnectNotice, Disposition, EslMessage, Event, EventFormat, EventName, Headers, LogLine, Reply,
    ReplyStatus,
};
pub use resync::{
    parse_conference_json_list, parse_show_channels_json, ChannelRow, Conference, ConferenceMember, MemberFlags,
    ResyncError,
};
