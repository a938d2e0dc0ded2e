//! AMI framing and parsing.
//!
//! On connect Asterisk sends one banner line (`Asterisk Call Manager/<version>\r\n`); after that
//! every message is a block of `Key: Value` lines ended by an empty line. Keys may repeat
//! (`Variable`, `Output`), values may be empty, line ends may be bare `\n`.
//!
//! Frame, then parse: [`AmiDecoder`] first finds a message boundary within
//! [`MAX_MESSAGE_BYTES`] (a word-at-a-time search for the line ends), then parses the complete
//! frame (a hand-written `Key: Value` line parser over the line ends the framing found). "Need
//! more bytes" is `Ok(None)`. A frame that is too big or is not a message is reported once as an [`AmiError`]
//! and skipped up to the next blank line, so the stream resynchronises and nothing after it is
//! lost. The buffer never grows beyond the cap plus one read.

use std::fmt;

/// The largest message the decoder accepts (header block included).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest banner line accepted.
const MAX_BANNER_BYTES: usize = 256;

/// What went wrong in the input or in an action: one line naming what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmiError {
    /// A message grew past the size cap before its blank line; its bytes were dropped.
    #[error("AMI message at byte {offset} exceeds {MAX_MESSAGE_BYTES} bytes; dropped up to the next blank line")]
    Oversized { offset: u64 },
    /// A line of a message is not `Key: Value`.
    #[error("AMI message at byte {offset}: line {line} is not 'Key: Value': {text:?}; message dropped")]
    BadLine { offset: u64, line: usize, text: String },
    /// The first line of the connection is not an AMI banner.
    #[error("the peer's first line is not an Asterisk Call Manager banner: {text:?}")]
    NotAmi { text: String },
    /// An action header name or value would break the framing (CR, LF, or a colon in a name).
    #[error("AMI action {action}: header {header:?} contains a line break or an invalid character; not sent")]
    Injection { action: String, header: String },
}

/// The headers of a message, in order, keys as received (lookups ignore case).
///
/// A decoded message keeps its frame's text once and each header as byte ranges into it: one
/// allocation per message instead of two per header.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    /// Key start, key end, value start, value end (byte offsets into `text`).
    spans: Vec<[usize; 4]>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }
    fn key(&self, s: &[usize; 4]) -> &str {
        self.text.get(s[0]..s[1]).unwrap_or("")
    }
    /// Whether header `s` is named `key` (ASCII case ignored); bytes only, no char checks.
    fn is(&self, s: &[usize; 4], key: &str) -> bool {
        s[1] - s[0] == key.len()
            && self.text.as_bytes().get(s[0]..s[1]).is_some_and(|k| k.eq_ignore_ascii_case(key.as_bytes()))
    }
    fn value(&self, s: &[usize; 4]) -> &str {
        self.text.get(s[2]..s[3]).unwrap_or("")
    }
    /// The first value of `key` (case-insensitive).
    /// The memory these headers hold, roughly: their text and their spans.
    pub fn byte_size(&self) -> usize {
        self.text.len() + self.spans.len() * std::mem::size_of::<[usize; 4]>()
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.spans.iter().find(|s| self.is(s, key)).map(|s| self.value(s))
    }
    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spans.iter().filter(move |s| self.is(s, key)).map(|s| self.value(s))
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|s| (self.key(s), self.value(s)))
    }
    pub fn push(&mut self, k: impl Into<String>, v: impl Into<String>) {
        let (k, v) = (k.into(), v.into());
        let ks = self.text.len();
        self.text.push_str(&k);
        let vs = self.text.len();
        self.text.push_str(&v);
        self.spans.push([ks, vs, vs, self.text.len()]);
    }
    pub fn len(&self) -> usize {
        self.spans.len()
    }
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
    /// The first header, if any.
    fn first(&self) -> Option<(&str, &str)> {
        self.spans.first().map(|s| (self.key(s), self.value(s)))
    }
}

/// Equal when they hold the same headers in the same order, however they were built.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Headers").field(&self.iter().collect::<Vec<_>>()).finish()
    }
}

/// `Response:` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStatus {
    Success,
    Error,
    Follows,
    Goodbye,
    Other(String),
}

/// A response to an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: ResponseStatus,
    pub action_id: Option<String>,
    pub message: Option<String>,
    pub headers: Headers,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub headers: Headers,
}

impl Event {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers.get(key)
    }
    pub fn action_id(&self) -> Option<&str> {
        self.headers.get("ActionID")
    }
}

/// One decoded unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiMessage {
    /// The greeting line, e.g. `Asterisk Call Manager/9.0.0`.
    Banner(String),
    Response(Response),
    Event(Event),
    /// A well-formed header block that is neither a response nor an event.
    Unknown(Headers),
}

/// The stream decoder (one per connection).
#[derive(Debug, Default)]
pub struct AmiDecoder {
    /// Bytes read; `buf[start..]` is not decoded yet (the rest is dropped on the next feed).
    buf: Vec<u8>,
    start: usize,
    /// `buf[start..scanned]` holds no message boundary (the search resumes there).
    scanned: usize,
    /// Where the line ends (`\n`) of the pending message are, relative to `start`: found
    /// while framing, used by the parser.
    lines: Vec<usize>,
    /// Stream offset of `buf[start]`.
    offset: u64,
    banner_seen: bool,
    /// Dropping an oversized message: discard until the next blank line.
    skipping: bool,
}

/// Index of the first byte of `b` that is `x` or `y`, eight bytes at a time (lines and keys
/// are a few dozen bytes: a word loop beats both a byte loop and a memchr call per line).
fn find2(b: &[u8], x: u8, y: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (xs, ys) = (LO * u64::from(x), LO * u64::from(y));
    // flags the zero bytes of w; the lowest flag is exact (false flags only sit above a zero)
    let zeros = |w: u64| w.wrapping_sub(LO) & !w & HI;
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        let w = u64::from_le_bytes(bytes);
        let hit = zeros(w ^ xs) | zeros(w ^ ys);
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&c| c == x || c == y).map(|p| at + p)
}

/// Finds the end of the header block: the index just past the blank line, if complete. No
/// blank line ends before `from` (a previous search got that far). Every line end seen is
/// appended to `lines`.
fn frame_end(buf: &[u8], from: usize, lines: &mut Vec<usize>) -> Option<usize> {
    let mut at = from.min(buf.len());
    while let Some(p) = find2(buf.get(at..)?, b'\n', b'\n') {
        let nl = at + p;
        at = nl + 1;
        lines.push(nl);
        // a line that is empty, or only "\r", right after a newline ends it
        let next = nl + 1;
        match (buf.get(next), buf.get(next + 1)) {
            (Some(b'\n'), _) => {
                lines.push(next);
                return Some(next + 1);
            }
            (Some(b'\r'), Some(b'\n')) => {
                lines.push(next + 1);
                return Some(next + 2);
            }
            _ => {}
        }
    }
    None
}

/// Printable ASCII: never whitespace.
#[inline]
fn plain(c: u8) -> bool {
    c > b' ' && c < 0x80
}

/// `text[s..e]` without surrounding (or, if `!both`, trailing) whitespace, as a range.
fn trimmed(text: &str, s: usize, e: usize, both: bool) -> (usize, usize) {
    let b = text.as_bytes();
    // printable ASCII is never whitespace: the common case needs no char decoding
    let plain = |i: usize| b.get(i).is_some_and(|&c| plain(c));
    if s == e || (plain(e - 1) && (!both || plain(s))) {
        return (s, e);
    }
    let part = text.get(s..e).unwrap_or("");
    let t = if both { part.trim() } else { part.trim_end() };
    let ts = s + (t.as_ptr() as usize - part.as_ptr() as usize);
    (ts, ts + t.len())
}

/// Every `\n` in `bytes` (for a frame whose invalid UTF-8 was replaced: rare, kept out of line).
#[cold]
#[inline(never)]
fn line_ends(bytes: &[u8]) -> Vec<usize> {
    let (mut v, mut i) = (Vec::new(), 0);
    while let Some(p) = bytes.get(i..).and_then(|rest| find2(rest, b'\n', b'\n')) {
        v.push(i + p);
        i += p + 1;
    }
    v
}

/// Parses a whole frame; `lines` are its line ends, as found by [`frame_end`].
#[inline(never)]
fn parse_frame(frame: &[u8], lines: &[usize], offset: u64) -> Result<Option<AmiMessage>, AmiError> {
    let (text, exact) = match std::str::from_utf8(frame) {
        Ok(t) => (t.to_owned(), true),
        Err(_) => (String::from_utf8_lossy(frame).into_owned(), false),
    };
    let bytes = text.as_bytes();
    // Invalid UTF-8 was replaced (the text is longer): find its line ends again.
    let found;
    let lines = if exact && lines.last() == Some(&frame.len().wrapping_sub(1)) {
        lines
    } else {
        found = line_ends(bytes);
        &found
    };
    // Cut points are ASCII (':', ' ', '\t', '\r', '\n'), so every range is on a char boundary.
    let mut spans = Vec::with_capacity(lines.len());
    let mut at = 0;
    for (n, &nl) in lines.iter().enumerate() {
        let line_at = at;
        at = nl + 1;
        let line = match bytes.get(line_at..nl) {
            Some([line @ .., b'\r']) | Some(line) => line,
            None => continue,
        };
        let Some(&last) = line.last() else { continue };
        // the key ends at the colon; a space before it means the line is not a header
        let Some(k) = find2(line, b':', b' ').filter(|&k| k > 0 && line.get(k) == Some(&b':')) else {
            let line = String::from_utf8_lossy(line);
            return Err(AmiError::BadLine { offset, line: n + 1, text: line.chars().take(80).collect() });
        };
        let mut v = k + 1;
        while let Some(b' ' | b'\t') = line.get(v) {
            v += 1;
        }
        // printable ASCII is never whitespace: the common case needs no trimming
        let key = if plain(line[0]) && plain(line[k - 1]) {
            (line_at, line_at + k)
        } else {
            trimmed(&text, line_at, line_at + k, true)
        };
        let end = line_at + line.len();
        let value =
            if v == line.len() || plain(last) { (line_at + v, end) } else { trimmed(&text, line_at + v, end, false) };
        spans.push([key.0, key.1, value.0, value.1]);
    }
    let headers = Headers { text, spans };
    let Some((first, value)) = headers.first() else {
        return Ok(None); // stray blank lines
    };
    Ok(Some(if first.eq_ignore_ascii_case("response") {
        let status = if value.eq_ignore_ascii_case("success") {
            ResponseStatus::Success
        } else if value.eq_ignore_ascii_case("error") {
            ResponseStatus::Error
        } else if value.eq_ignore_ascii_case("follows") {
            ResponseStatus::Follows
        } else if value.eq_ignore_ascii_case("goodbye") {
            ResponseStatus::Goodbye
        } else {
            ResponseStatus::Other(value.to_string())
        };
        Response {
            status,
            action_id: headers.get("ActionID").map(str::to_string),
            message: headers.get("Message").map(str::to_string),
            headers,
        }
        .into()
    } else if first.eq_ignore_ascii_case("event") {
        AmiMessage::Event(Event { name: value.to_string(), headers })
    } else {
        AmiMessage::Unknown(headers)
    }))
}

impl From<Response> for AmiMessage {
    fn from(r: Response) -> Self {
        AmiMessage::Response(r)
    }
}

impl AmiDecoder {
    /// A decoder for a new connection (expects the banner first).
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that does not expect a banner (e.g. for replaying message blocks).
    pub fn without_banner() -> Self {
        Self { banner_seen: true, ..Self::default() }
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            // decoded bytes go now, in one move per read rather than one per message
            self.buf.drain(..self.start);
            self.scanned -= self.start; // `lines` are relative to `start`: unchanged
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.lines.clear();
        self.start += n;
        self.offset += n as u64;
        self.scanned = self.scanned.max(self.start);
        if self.start == self.buf.len() {
            self.buf.clear();
            (self.start, self.scanned) = (0, 0);
        }
    }

    /// The end of the next frame in the pending bytes, resuming the last search.
    fn next_frame_end(&mut self) -> Option<usize> {
        // the last two bytes searched may start a blank line that the next read completes
        let from = self.scanned.saturating_sub(2).max(self.start) - self.start;
        while self.lines.last().is_some_and(|&l| l >= from) {
            self.lines.pop(); // found again
        }
        let end = frame_end(&self.buf[self.start..], from, &mut self.lines);
        if end.is_none() {
            self.scanned = self.buf.len();
        }
        end
    }

    /// The next complete message; `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<AmiMessage>, AmiError> {
        loop {
            if !self.banner_seen {
                let Some(nl) = self.pending().iter().position(|&b| b == b'\n') else {
                    if self.buffered() > MAX_BANNER_BYTES {
                        let text = String::from_utf8_lossy(&self.pending()[..64]).into_owned();
                        self.banner_seen = true;
                        return Err(AmiError::NotAmi { text });
                    }
                    return Ok(None);
                };
                let line = String::from_utf8_lossy(&self.pending()[..nl]).trim_end_matches('\r').to_string();
                self.consume(nl + 1);
                self.banner_seen = true;
                if line.contains("Call Manager") {
                    return Ok(Some(AmiMessage::Banner(line)));
                }
                return Err(AmiError::NotAmi { text: line.chars().take(80).collect() });
            }
            if self.skipping {
                match self.next_frame_end() {
                    Some(end) => {
                        self.consume(end);
                        self.skipping = false;
                    }
                    None => {
                        // keep a possible partial "\r\n\r" at the end for the next read
                        let keep = self.buffered().min(3);
                        let n = self.buffered() - keep;
                        self.consume(n);
                        return Ok(None);
                    }
                }
                continue;
            }
            let Some(end) = self.next_frame_end() else {
                if self.buffered() > MAX_MESSAGE_BYTES {
                    let offset = self.offset;
                    self.skipping = true;
                    return Err(AmiError::Oversized { offset });
                }
                return Ok(None);
            };
            let offset = self.offset;
            if end > MAX_MESSAGE_BYTES {
                self.consume(end);
                return Err(AmiError::Oversized { offset });
            }
            let parsed = parse_frame(&self.pending()[..end], &self.lines, offset);
            self.consume(end);
            match parsed? {
                Some(m) => return Ok(Some(m)),
                None => continue,
            }
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// An action to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    action_id: Option<String>,
    headers: Vec<(String, String)>,
}

impl Action {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string(), action_id: None, headers: Vec::new() }
    }
    /// Adds a header (repeat the call for repeated keys such as `Variable`).
    pub fn header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn with_action_id(mut self, id: impl Into<String>) -> Self {
        self.action_id = Some(id.into());
        self
    }
    pub fn action_id(&self) -> Option<&str> {
        self.action_id.as_deref()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The first value of header `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }

    /// The wire form; refuses line breaks anywhere (header injection).
    pub fn encode(&self) -> Result<Vec<u8>, AmiError> {
        let bad_value = |v: &str| v.bytes().any(|b| b == b'\r' || b == b'\n');
        let bad_key = |k: &str| k.is_empty() || k.bytes().any(|b| b == b'\r' || b == b'\n' || b == b':');
        if bad_value(&self.name) || self.name.is_empty() {
            return Err(AmiError::Injection { action: self.name.escape_debug().to_string(), header: "Action".into() });
        }
        let size = self.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>()
            + self.name.len()
            + self.action_id.as_ref().map_or(0, |id| id.len() + 12)
            + 12;
        let mut out = Vec::with_capacity(size);
        let mut line = |k: &str, v: &str| {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line("Action", &self.name);
        if let Some(id) = &self.action_id {
            if bad_value(id) {
                return Err(AmiError::Injection { action: self.name.clone(), header: "ActionID".into() });
            }
            line("ActionID", id);
        }
        for (k, v) in &self.headers {
            if bad_key(k) || bad_value(v) {
                return Err(AmiError::Injection { action: self.name.clone(), header: k.escape_debug().to_string() });
            }
            line(k, v);
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

impl fmt::Display for Action {
    /// The action's name and ActionID only: values (a `Secret`) never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(id) = &self.action_id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(dec: &mut AmiDecoder) -> Vec<Result<AmiMessage, AmiError>> {
        let mut out = Vec::new();
        loop {
            match dec.next_message() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    const STREAM: &[u8] = b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nActionID: a1\r\nMessage: Authentication accepted\r\n\r\nEvent: VarSet\r\nVariable: X\r\nValue: \r\nVariable: Y\r\n\r\n";

    #[test]
    fn banner_response_and_repeated_keys() {
        let mut d = AmiDecoder::new();
        d.feed(STREAM);
        let msgs = all(&mut d);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], Ok(AmiMessage::Banner("Asterisk Call Manager/9.0.0".into())));
        let Ok(AmiMessage::Response(r)) = &msgs[1] else { panic!("{msgs:?}") };
        assert_eq!((r.status.clone(), r.action_id.as_deref()), (ResponseStatus::Success, Some("a1")));
        let Ok(AmiMessage::Event(e)) = &msgs[2] else { panic!() };
        assert_eq!(e.headers.get_all("variable").collect::<Vec<_>>(), vec!["X", "Y"]);
        assert_eq!(e.get("Value"), Some(""));
    }

    #[test]
    fn every_split_gives_the_same_messages() {
        let mut whole = AmiDecoder::new();
        whole.feed(STREAM);
        let expected = all(&mut whole);
        for cut in 0..STREAM.len() {
            let mut d = AmiDecoder::new();
            d.feed(&STREAM[..cut]);
            let mut got = all(&mut d);
            d.feed(&STREAM[cut..]);
            got.extend(all(&mut d));
            assert_eq!(got, expected, "split at {cut}");
        }
    }

    #[test]
    fn garbage_is_reported_once_and_the_next_message_decodes() {
        let mut d = AmiDecoder::without_banner();
        d.feed(b"this is not a header\r\nEvent: X\r\n\r\nEvent: Good\r\n\r\n");
        let msgs = all(&mut d);
        assert!(matches!(&msgs[0], Err(AmiError::BadLine { line: 1, .. })), "{msgs:?}");
        assert!(matches!(&msgs[1], Ok(AmiMessage::Event(e)) if e.name == "Good"));
    }

    #[test]
    fn oversized_input_is_bounded_and_resynchronises() {
        let mut d = AmiDecoder::without_banner();
        let big = vec![b'x'; MAX_MESSAGE_BYTES * 3];
        let mut errors = 0;
        for chunk in big.chunks(4096) {
            d.feed(chunk);
            for m in all(&mut d) {
                assert!(matches!(m, Err(AmiError::Oversized { .. })));
                errors += 1;
            }
            assert!(d.buffered() <= MAX_MESSAGE_BYTES + 4096);
        }
        assert_eq!(errors, 1);
        d.feed(b"\r\n\r\nEvent: After\r\n\r\n");
        let msgs = all(&mut d);
        assert!(matches!(msgs.last(), Some(Ok(AmiMessage::Event(e))) if e.name == "After"), "{msgs:?}");
    }

    #[test]
    fn actions_refuse_line_breaks() {
        let a = Action::new("Originate").with_action_id("1").header("Channel", "PJSIP/1\r\nAction: Hangup");
        assert!(matches!(a.encode(), Err(AmiError::Injection { header, .. }) if header == "Channel"));
        let ok = Action::new("Ping").with_action_id("7").header("Variable", "A=1").header("Variable", "B=2");
        assert_eq!(ok.encode().unwrap(), b"Action: Ping\r\nActionID: 7\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n");
    }

    /// The line ends found while framing are the ones the parser uses: mixed line ends, stray
    /// blank lines, tabs, trailing spaces, non-ASCII and invalid UTF-8 (the lossy text is
    /// longer than the frame), fed whole and one byte at a time.
    #[test]
    fn parsed_headers_match_their_lines_in_any_framing() {
        let stream: &[u8] = b"\r\n\nEvent: A\nK:\tv1 \r\nKey2:  v\xc3\xa9 \xc2\xa0\r\n\r\n\
Event: B\r\nBad: x\xff\xfey\r\nLast: \r\n\n";
        let want = |msgs: &[Result<AmiMessage, AmiError>]| {
            let [Ok(AmiMessage::Event(a)), Ok(AmiMessage::Event(b))] = msgs else { panic!("{msgs:?}") };
            assert_eq!(a.headers.iter().collect::<Vec<_>>(), vec![("Event", "A"), ("K", "v1"), ("Key2", "v\u{e9}")]);
            assert_eq!(b.get("Bad"), Some("x\u{fffd}\u{fffd}y"));
            assert_eq!((b.get("last"), b.headers.len()), (Some(""), 3));
        };
        let mut d = AmiDecoder::without_banner();
        d.feed(stream);
        want(&all(&mut d));
        let mut d = AmiDecoder::without_banner();
        let mut got = Vec::new();
        for b in stream {
            d.feed(std::slice::from_ref(b));
            got.extend(all(&mut d));
        }
        want(&got);
        assert_eq!(d.buffered(), 0);
    }

    /// The framing finds exactly the line ends and the blank line a byte-by-byte search
    /// finds, whatever surrounds them (CR, LF, bytes with the top bit set, lengths across the
    /// search's vector width), resuming from any point.
    #[test]
    fn frame_end_finds_every_line_end_and_the_blank_line() {
        let naive = |b: &[u8], from: usize| {
            let mut lines = Vec::new();
            for i in from..b.len() {
                if b[i] == b'\n' {
                    lines.push(i);
                    match (b.get(i + 1), b.get(i + 2)) {
                        (Some(b'\n'), _) => return (Some(i + 2), [lines, vec![i + 1]].concat()),
                        (Some(b'\r'), Some(b'\n')) => return (Some(i + 3), [lines, vec![i + 2]].concat()),
                        _ => {}
                    }
                }
            }
            (None, lines)
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = [b'\n', b'\r', b'\n', b':', b' ', 0x0b, 0x8a, 0xff, b'a', b'b', b'c', b'd'];
        for _ in 0..4000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 33) as usize % 150;
            let b: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize ^ i.wrapping_mul(7)) % alphabet.len()])
                .collect();
            let from = (seed >> 20) as usize % (len + 1);
            let mut lines = Vec::new();
            let end = frame_end(&b, from, &mut lines);
            assert_eq!((end, lines), naive(&b, from), "{b:?} from {from}");
        }
    }

    #[test]
    fn bare_newlines_and_a_non_ami_peer() {
        let mut d = AmiDecoder::new();
        d.feed(b"Asterisk Call Manager/11.0\nEvent: A\nK: v\n\n");
        let msgs = all(&mut d);
        assert!(matches!(&msgs[1], Ok(AmiMessage::Event(e)) if e.get("K") == Some("v")));
        let mut d = AmiDecoder::new();
        d.feed(b"SSH-2.0-OpenSSH\r\n");
        assert!(matches!(d.next_message(), Err(AmiError::NotAmi { .. })));
    }
}
