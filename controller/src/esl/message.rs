//! The typed messages FreeSWITCH sends on an event socket, on top of a raw header list.
//!
//! Every message keeps the headers it came with ([`Headers`], values percent-decoded where the
//! wire encodes them), so nothing is lost when a type does not name a header.

use std::borrow::Cow;
use std::fmt;

/// Header lines in wire order; names as received, lookups ignore ASCII case. Names may repeat
/// (a plain event that carries its own `Content-Length` has it twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Every value of `name`, in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// The outcome a `Reply-Text` or an api body starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// `+OK ...`
    Ok,
    /// `-ERR ...` or `-USAGE: ...`
    Err,
    /// Anything else (an api body is free text: `vm`, `_undef_`, a JSON document).
    Other,
}

impl ReplyStatus {
    /// Classifies a reply text or api body by its first word.
    pub fn of(text: &str) -> Self {
        if text.starts_with("+OK") {
            ReplyStatus::Ok
        } else if text.starts_with("-ERR") || text.starts_with("-USAGE") {
            ReplyStatus::Err
        } else {
            ReplyStatus::Other
        }
    }
}

/// `Content-Type: command/reply`: the answer to every command but `api`.
///
/// In outbound mode the reply to `connect` is a whole CHANNEL_DATA event serialized as one
/// header block (with `Reply-Text: +OK\n` among the channel's headers); [`Reply::headers`]
/// holds all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub headers: Headers,
}

impl Reply {
    /// `Reply-Text`, decoded, without its trailing line break (the connect reply's is `+OK\n`).
    pub fn text(&self) -> &str {
        self.headers.get("Reply-Text").unwrap_or("").trim_end_matches(['\n', '\r'])
    }
    pub fn status(&self) -> ReplyStatus {
        ReplyStatus::of(self.text())
    }
    /// The `Job-UUID` header of a `bgapi` reply.
    pub fn job_uuid(&self) -> Option<&str> {
        self.headers.get("Job-UUID")
    }
}

/// `Content-Type: api/response`: the output of an `api` command, verbatim (it need not end in a
/// line break: `api hostname` answers `vm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
    pub fn status(&self) -> ReplyStatus {
        ReplyStatus::of(&self.text())
    }
}

/// How an event was serialized (the subscription's format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventFormat {
    Plain,
    Json,
    Xml,
}

impl EventFormat {
    /// The keyword used in `event <format> ...`.
    pub fn keyword(self) -> &'static str {
        match self {
            EventFormat::Plain => "plain",
            EventFormat::Json => "json",
            EventFormat::Xml => "xml",
        }
    }
}

impl fmt::Display for EventFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// What an event is: a core event by name, or a `CUSTOM` event by subclass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName<'a> {
    /// `CHANNEL_ANSWER`, `BACKGROUND_JOB`, ...
    Core(&'a str),
    /// `Event-Name: CUSTOM` with `Event-Subclass` (e.g. `conference::maintenance`).
    Custom(&'a str),
}

impl EventName<'_> {
    /// True for a core event of that name, or a custom event of that subclass.
    pub fn is(&self, name_or_subclass: &str) -> bool {
        match self {
            EventName::Core(n) | EventName::Custom(n) => *n == name_or_subclass,
        }
    }
}

impl fmt::Display for EventName<'_> {
    /// The form a subscription uses: `CHANNEL_ANSWER` or `CUSTOM conference::maintenance`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventName::Core(n) => f.write_str(n),
            EventName::Custom(s) => write!(f, "CUSTOM {s}"),
        }
    }
}

/// An event (`text/event-plain`, `text/event-json` or `text/event-xml`): its own headers,
/// decoded to the same values whatever the format, and its body if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub format: EventFormat,
    /// The event's headers (not the frame's), in the order FreeSWITCH serialized them.
    pub headers: Headers,
    /// The event body (BACKGROUND_JOB output, a sendevent body), if any.
    pub body: Option<String>,
}

impl Event {
    /// The memory this event holds, roughly: its headers' and body's text.
    pub fn byte_size(&self) -> usize {
        self.headers.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>()
            + self.body.as_ref().map_or(0, String::len)
    }

    /// Event-Name, or the subclass for `CUSTOM` events. The decoder only builds events that
    /// have an `Event-Name`.
    pub fn name(&self) -> EventName<'_> {
        let name = self.headers.get("Event-Name").unwrap_or("");
        match self.headers.get("Event-Subclass") {
            Some(sub) if name == "CUSTOM" => EventName::Custom(sub),
            _ => EventName::Core(name),
        }
    }
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
    /// `Event-Sequence`: the order key (timestamps repeat, and the wire order is not the
    /// sequence order either).
    pub fn sequence(&self) -> Option<u64> {
        self.headers.get("Event-Sequence").and_then(|s| s.parse().ok())
    }
    /// `Unique-ID`: the channel the event is about.
    pub fn unique_id(&self) -> Option<&str> {
        self.headers.get("Unique-ID")
    }
    /// `Job-UUID` (BACKGROUND_JOB).
    pub fn job_uuid(&self) -> Option<&str> {
        self.headers.get("Job-UUID")
    }
}

/// `Content-Type: log/data` (after `log <level>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl LogLine {
    /// `Log-Level` (0 console .. 7 debug).
    pub fn level(&self) -> Option<u8> {
        self.headers.get("Log-Level").and_then(|l| l.parse().ok())
    }
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// `Content-Disposition` of a disconnect notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The controlled channel hung up; the socket stays open (`linger`) for the last events.
    Linger,
    /// The socket is closing.
    Disconnect,
    Other(String),
}

/// `Content-Type: text/disconnect-notice`.
///
/// Inbound `exit`, a wrong password and shutdown send it without `Content-Disposition`; the
/// socket closes right after. Outbound (and `myevents <uuid>`) sockets say `linger` or
/// `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectNotice {
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl DisconnectNotice {
    pub fn disposition(&self) -> Option<Disposition> {
        self.headers.get("Content-Disposition").map(|d| match d {
            "linger" => Disposition::Linger,
            "disconnect" => Disposition::Disconnect,
            other => Disposition::Other(other.to_string()),
        })
    }
    /// True when the socket stays open after this notice.
    pub fn is_linger(&self) -> bool {
        self.disposition() == Some(Disposition::Linger)
    }
    /// `Linger-Time` in seconds (`-1`: until the client exits).
    pub fn linger_time(&self) -> Option<i64> {
        self.headers.get("Linger-Time").and_then(|t| t.parse().ok())
    }
    /// `Controlled-Session-UUID`: the channel the socket was tied to.
    pub fn controlled_session(&self) -> Option<&str> {
        self.headers.get("Controlled-Session-UUID")
    }
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// One decoded unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EslMessage {
    /// `auth/request`: the inbound greeting, asking for `auth <password>`.
    AuthRequest,
    CommandReply(Reply),
    ApiResponse(ApiResponse),
    Event(Event),
    Log(LogLine),
    DisconnectNotice(DisconnectNotice),
    /// `text/rude-rejection`: the ACL refused this peer; the socket closes.
    RudeRejection {
        headers: Headers,
        body: Vec<u8>,
    },
    /// A well-framed message of a content type this codec does not know (or none).
    Unknown {
        headers: Headers,
        body: Vec<u8>,
    },
}
