//! ESL framing: bytes in, [`EslMessage`]s out.
//!
//! Every message is a header block ended by a blank line (`\n\n`), then exactly
//! `Content-Length` body bytes if that header is present. Frame, then parse: [`Decoder`] finds
//! the end of the header block within [`MAX_HEADER_BYTES`], reads `Content-Length` (at most
//! [`MAX_BODY_BYTES`]), waits for the whole body, and only then parses the body by content
//! type. A plain event's body holds a second header block and blank line of its own; it is
//! never re-framed, because the outer `Content-Length` already says where the frame ends.
//!
//! Every header value of a frame is percent-decoded, as libesl does: the outbound `connect`
//! reply needs it (`Reply-Text: %2BOK%0A`), and the plain replies (`+OK accepted`) hold no
//! `%`. Bodies are never decoded.
//!
//! "Need more bytes" is `Ok(None)`. Errors come in two kinds:
//! - a frame whose length cannot be known or trusted (headers or body over the cap, a bad
//!   `Content-Length`, a header line that is not `Name: value`) is **fatal**. ESL has no
//!   resynchronisation point: a blank line may sit inside any body, so skipping ahead could
//!   read body bytes as headers. The decoder reports the error, drops its buffer, ignores all
//!   later input and repeats the error; the connection must be closed.
//! - an event body that does not parse ([`EslError::BadEvent`]) costs only that frame: its
//!   length was known, so the stream is still in sync and the next call goes on.
//!
//! The buffer never holds more than one frame ([`MAX_HEADER_BYTES`] + [`MAX_BODY_BYTES`])
//! plus whatever was fed since the last call to [`Decoder::next_message`].

use super::event::{find_blank_line, parse_header_block, parse_json, parse_plain, parse_xml, EventBodyError};
use super::message::{ApiResponse, DisconnectNotice, EslMessage, EventFormat, Headers, LogLine, Reply};

/// The longest header block accepted (the connect reply, the largest, is about 4 KB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The largest body accepted (`xml_locate directory` on a stock install is 24.7 KB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What was wrong with the bytes FreeSWITCH sent: one line naming what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EslError {
    /// No blank line within [`MAX_HEADER_BYTES`]: not ESL, or a lost frame boundary (fatal).
    #[error(
        "ESL frame at byte {offset}: no end of headers within {MAX_HEADER_BYTES} bytes; drop the connection (ESL cannot resynchronise)"
    )]
    HeadersTooLong { offset: u64 },
    /// `Content-Length` over [`MAX_BODY_BYTES`] (fatal).
    #[error(
        "ESL frame at byte {offset}: Content-Length {length} exceeds {MAX_BODY_BYTES}; drop the connection (ESL cannot resynchronise)"
    )]
    BodyTooLong { offset: u64, length: u64 },
    /// `Content-Length` is not a decimal number (fatal).
    #[error("ESL frame at byte {offset}: Content-Length {value:?} is not a number; drop the connection")]
    BadContentLength { offset: u64, value: String },
    /// A header line is not `Name: value`, so the frame's length cannot be trusted (fatal).
    #[error("ESL frame at byte {offset}: header line {line} is not 'Name: value': {text:?}; drop the connection")]
    BadHeaderLine { offset: u64, line: usize, text: String },
    /// The peer closed the connection in the middle of a frame (see [`Decoder::finish`]).
    #[error("ESL stream ended inside the frame at byte {offset} ({buffered} bytes of it received)")]
    Truncated { offset: u64, buffered: usize },
    /// A well-framed event whose body does not parse; that frame was skipped, the stream goes on.
    #[error("ESL {format} event at byte {offset} skipped: {reason}")]
    BadEvent { offset: u64, format: EventFormat, reason: String },
}

impl EslError {
    /// True when the connection cannot go on: the decoder is dead, the socket must be closed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, EslError::BadEvent { .. })
    }
}

/// Where the decoder is in the current frame.
#[derive(Debug)]
enum Stage {
    /// Looking for the blank line; `scanned` bytes are known to hold none.
    Head { scanned: usize },
    /// Headers parsed; waiting for `head_len + body_len` bytes.
    Body { head_len: usize, body_len: usize, headers: Headers },
}

/// The stream decoder, one per connection.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    stage: Stage,
    /// Set once a fatal error happened; repeated on every later call.
    dead: Option<EslError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self { buf: Vec::new(), offset: 0, stage: Stage::Head { scanned: 0 }, dead: None }
    }

    /// Adds bytes read from the connection (ignored once the decoder is dead).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.dead.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Total bytes consumed so far (the offset of the next frame).
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// True when no partial frame is buffered (a clean place for the peer to close).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// The peer closed the connection: an error if it left a frame unfinished.
    pub fn finish(&mut self) -> Result<(), EslError> {
        if self.dead.is_some() || self.buf.is_empty() {
            return Ok(());
        }
        let e = EslError::Truncated { offset: self.offset, buffered: self.buf.len() };
        self.buf = Vec::new();
        self.stage = Stage::Head { scanned: 0 };
        Err(e)
    }

    fn die(&mut self, e: EslError) -> Result<Option<EslMessage>, EslError> {
        self.buf = Vec::new();
        self.stage = Stage::Head { scanned: 0 };
        self.dead = Some(e.clone());
        Err(e)
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
        self.stage = Stage::Head { scanned: 0 };
    }

    /// The next complete message; `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<EslMessage>, EslError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        loop {
            match &mut self.stage {
                Stage::Head { scanned } => {
                    // stray blank lines between frames carry nothing
                    let blank = self.buf.iter().take_while(|&&b| b == b'\n').count();
                    if blank > 0 {
                        self.consume(blank);
                        continue;
                    }
                    let Some(end) = find_blank_line(&self.buf, scanned.saturating_sub(1)) else {
                        *scanned = self.buf.len();
                        if self.buf.len() > MAX_HEADER_BYTES {
                            let offset = self.offset;
                            return self.die(EslError::HeadersTooLong { offset });
                        }
                        return Ok(None);
                    };
                    let offset = self.offset;
                    if end > MAX_HEADER_BYTES {
                        return self.die(EslError::HeadersTooLong { offset });
                    }
                    let headers = match parse_header_block(&self.buf[..end - 2], true) {
                        Ok(h) => h,
                        Err(bad) => {
                            return self.die(EslError::BadHeaderLine { offset, line: bad.line, text: bad.text });
                        }
                    };
                    let body_len = match headers.get("Content-Length").map(str::trim) {
                        None => 0,
                        Some(v) if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                            let length: u64 = v.parse().unwrap_or(u64::MAX);
                            if length > MAX_BODY_BYTES as u64 {
                                return self.die(EslError::BodyTooLong { offset, length });
                            }
                            // at most MAX_BODY_BYTES, so it fits
                            length as usize
                        }
                        Some(v) => {
                            let value = v.chars().take(40).collect();
                            return self.die(EslError::BadContentLength { offset, value });
                        }
                    };
                    self.stage = Stage::Body { head_len: end, body_len, headers };
                }
                Stage::Body { head_len, body_len, headers } => {
                    let (head_len, body_len) = (*head_len, *body_len);
                    if self.buf.len() < head_len + body_len {
                        return Ok(None);
                    }
                    let headers = std::mem::take(headers);
                    let body = self.buf[head_len..head_len + body_len].to_vec();
                    let offset = self.offset;
                    self.consume(head_len + body_len);
                    return typed(headers, body, offset).map(Some);
                }
            }
        }
    }
}

/// Gives a framed message its type by `Content-Type`.
fn typed(headers: Headers, body: Vec<u8>, offset: u64) -> Result<EslMessage, EslError> {
    let content_type = headers.get("Content-Type").unwrap_or("").trim().to_ascii_lowercase();
    let event = |format: EventFormat, parse: fn(&[u8]) -> Result<_, EventBodyError>| {
        parse(&body).map(EslMessage::Event).map_err(|e| EslError::BadEvent { offset, format, reason: e.0 })
    };
    Ok(match content_type.as_str() {
        "auth/request" => EslMessage::AuthRequest,
        "command/reply" => EslMessage::CommandReply(Reply { headers }),
        "api/response" => EslMessage::ApiResponse(ApiResponse { headers, body }),
        "text/event-plain" => event(EventFormat::Plain, parse_plain)?,
        "text/event-json" => event(EventFormat::Json, parse_json)?,
        "text/event-xml" => event(EventFormat::Xml, parse_xml)?,
        "log/data" => EslMessage::Log(LogLine { headers, body }),
        "text/disconnect-notice" => EslMessage::DisconnectNotice(DisconnectNotice { headers, body }),
        "text/rude-rejection" => EslMessage::RudeRejection { headers, body },
        _ => EslMessage::Unknown { headers, body },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Vec<Result<EslMessage, EslError>> {
        let mut out = Vec::new();
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    const STREAM: &[u8] = b"Content-Type: auth/request\n\nContent-Type: api/response\nContent-Length: 2\n\nvmContent-Length: 63\nContent-Type: text/event-plain\n\nEvent-Name: BACKGROUND_JOB\nJob-UUID: j1\nContent-Length: 4\n\n+OK\n\n\n";

    #[test]
    fn frames_and_a_nested_plain_body() {
        let mut d = Decoder::new();
        d.feed(STREAM);
        let msgs = all(&mut d);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[0], Ok(EslMessage::AuthRequest));
        let Ok(EslMessage::ApiResponse(api)) = &msgs[1] else { panic!("{msgs:?}") };
        assert_eq!(api.body, b"vm");
        let Ok(EslMessage::Event(e)) = &msgs[2] else { panic!("{msgs:?}") };
        assert_eq!((e.job_uuid(), e.body()), (Some("j1"), Some("+OK\n")));
        assert!(d.is_idle());
    }

    #[test]
    fn every_split_gives_the_same_messages() {
        let mut whole = Decoder::new();
        whole.feed(STREAM);
        let expected = all(&mut whole);
        for cut in 0..STREAM.len() {
            let mut d = Decoder::new();
            d.feed(&STREAM[..cut]);
            let mut got = all(&mut d);
            d.feed(&STREAM[cut..]);
            got.extend(all(&mut d));
            assert_eq!(got, expected, "split at {cut}");
        }
    }

    #[test]
    fn oversized_headers_are_fatal_and_bounded() {
        let mut d = Decoder::new();
        let mut errors = 0;
        for _ in 0..100 {
            d.feed(&[b'x'; 4096]);
            if let Err(e) = d.next_message() {
                assert_eq!(e, EslError::HeadersTooLong { offset: 0 });
                assert!(e.is_fatal());
                errors += 1;
            }
            assert!(d.buffered() <= MAX_HEADER_BYTES + 4096);
        }
        assert_eq!(errors, 100 - 16, "the error repeats once dead");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_or_bad_lengths_are_fatal() {
        let mut d = Decoder::new();
        d.feed(b"Content-Type: auth/request\n\nContent-Type: api/response\nContent-Length: 1048577\n\n");
        assert_eq!(d.next_message(), Ok(Some(EslMessage::AuthRequest)));
        assert_eq!(d.next_message(), Err(EslError::BodyTooLong { offset: 28, length: 1_048_577 }));
        d.feed(b"Content-Type: auth/request\n\n");
        assert!(d.next_message().is_err(), "dead decoders stay dead");
        for bad in ["-1", "12x", "", "99999999999999999999999"] {
            let mut d = Decoder::new();
            d.feed(format!("Content-Type: api/response\nContent-Length: {bad}\n\n").as_bytes());
            assert!(matches!(
                d.next_message(),
                Err(EslError::BadContentLength { .. }) | Err(EslError::BodyTooLong { .. })
            ));
        }
        let mut d = Decoder::new();
        d.feed(b"Content-Type: x\ngarbage line\n\n");
        assert!(matches!(d.next_message(), Err(EslError::BadHeaderLine { line: 2, .. })));
    }

    #[test]
    fn eof_inside_a_frame() {
        let mut d = Decoder::new();
        d.feed(b"Content-Type: auth/request\n\nContent-Type: api/resp");
        assert_eq!(d.next_message(), Ok(Some(EslMessage::AuthRequest)));
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(EslError::Truncated { offset: 28, buffered: 22 }));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn a_bad_event_costs_one_frame() {
        let mut d = Decoder::new();
        d.feed(b"Content-Length: 5\nContent-Type: text/event-json\n\n{nop}Content-Type: auth/request\n\n");
        let msgs = all(&mut d);
        assert!(matches!(&msgs[0], Err(EslError::BadEvent { format: EventFormat::Json, .. })), "{msgs:?}");
        assert_eq!(msgs[1], Ok(EslMessage::AuthRequest));
    }

    #[test]
    fn unknown_types_keep_their_bytes() {
        let mut d = Decoder::new();
        d.feed(b"Content-Type: text/x-new\nContent-Length: 3\nX: %41\n\nabcContent-Type: text/rude-rejection\nContent-Length: 2\n\nno");
        let msgs = all(&mut d);
        let Ok(EslMessage::Unknown { headers, body }) = &msgs[0] else { panic!("{msgs:?}") };
        assert_eq!((headers.get("X"), body.as_slice()), (Some("A"), &b"abc"[..]));
        assert!(matches!(&msgs[1], Ok(EslMessage::RudeRejection { body, .. }) if body == b"no"));
    }
}
