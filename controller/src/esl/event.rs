//! Event bodies in the three formats, and the header-line grammar they share with frames.
//!
//! - plain: a header block (values percent-encoded), then, if the event has a body, an inner
//!   `Content-Length: N`, a blank line and N bytes. When the sender put its own
//!   `Content-Length` in the event, the inner block holds it twice.
//! - json: one object; values are raw UTF-8 (JSON escapes only, never percent-encoded); the
//!   body is the `_body` key; keys may repeat (`Content-Length`), so the object is read as a
//!   list of pairs, not a map.
//! - xml: `<event><headers><Name>value</Name>...</headers><Content-Length>N</Content-Length>
//!   <body>...</body></event>`; values are XML-escaped *and* percent-encoded, the body only
//!   XML-escaped (non-ASCII and CR as numeric references).
//!
//! All three decode to the same [`Event`] headers and body.

use super::message::{Event, EventFormat, Headers};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_till1, take_while, take_while1};
use nom::character::complete::multispace0;
use nom::combinator::{map, opt};
use nom::multi::many0;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// `%XX` to the byte it names; anything else, including a `%` without two hex digits, stays
/// as it is (FreeSWITCH leaves `100%41` alone when encoding, so such values decode lossily:
/// `100%41` reads back as `100A`). Invalid UTF-8 after decoding is replaced.
pub fn percent_decode(value: &str) -> String {
    if !value.contains('%') {
        return value.to_string();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                // two hex digits make at most 0xFF
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `Name: value` line (complete input, without its `\n`): the name runs to the first
/// colon, spaces after the colon are skipped, a trailing `\r` is dropped.
fn header_line(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (rest, name) = take_till1(|b| b == b':')(line)?;
    let (rest, _) = tag(&b":"[..])(rest)?;
    let (rest, _) = take_while(|b| b == b' ')(rest)?;
    let value = rest.strip_suffix(b"\r").unwrap_or(rest);
    Ok((&rest[rest.len()..], (name, value)))
}

/// A header line that is not `Name: value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadLine {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// Parses a header block (lines separated by `\n`, without the blank line that ends it).
/// Values are percent-decoded when `decode` is set.
pub(crate) fn parse_header_block(block: &[u8], decode: bool) -> Result<Headers, BadLine> {
    let mut headers = Headers::new();
    for (n, line) in block.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() || line == b"\r" {
            continue;
        }
        match header_line(line) {
            Ok((_, (name, value))) => {
                let name = String::from_utf8_lossy(name).trim().to_string();
                let value = String::from_utf8_lossy(value);
                let value = if decode { percent_decode(&value) } else { value.into_owned() };
                headers.push(name, value);
            }
            Err(_) => {
                let text = String::from_utf8_lossy(line).chars().take(80).collect();
                return Err(BadLine { line: n + 1, text });
            }
        }
    }
    Ok(headers)
}

/// Position just past the first blank line (`\n\n`) in `buf`, searching from `from`.
pub(crate) fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    buf[start..].windows(2).position(|w| w == b"\n\n").map(|p| start + p + 2)
}

/// Why an event body does not parse (one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventBodyError(pub String);

impl From<String> for EventBodyError {
    fn from(s: String) -> Self {
        EventBodyError(s)
    }
}

fn require_name(headers: Headers, body: Option<String>, format: EventFormat) -> Result<Event, EventBodyError> {
    if headers.get("Event-Name").is_none() {
        return Err(EventBodyError("no Event-Name".into()));
    }
    Ok(Event { format, headers, body })
}

/// A `text/event-plain` body (also the body of `api uuid_dump <uuid>`).
pub fn parse_plain(text: &[u8]) -> Result<Event, EventBodyError> {
    let (block, rest) = match find_blank_line(text, 0) {
        Some(end) => (&text[..end - 2], &text[end..]),
        None => (text, &text[text.len()..]),
    };
    let headers = parse_header_block(block, true).map_err(|b| format!("header line {}: {:?}", b.line, b.text))?;
    // the serializer appends its own Content-Length last; a sender's own may come earlier
    let body = match headers.get_all("Content-Length").last() {
        Some(len) => {
            let len: usize = len.trim().parse().map_err(|_| format!("inner Content-Length {len:?}"))?;
            if len > rest.len() {
                return Err(format!("inner Content-Length {len} but {} bytes follow", rest.len()).into());
            }
            Some(String::from_utf8_lossy(&rest[..len]).into_owned())
        }
        None if rest.is_empty() => None,
        None => Some(String::from_utf8_lossy(rest).into_owned()),
    };
    require_name(headers, body, EventFormat::Plain)
}

/// A JSON object read as pairs in document order, keeping repeated keys.
struct JsonPairs(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for JsonPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    pairs.push((k, v));
                }
                Ok(JsonPairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// A JSON value as a header value: strings as they are, arrays in the plain format's
/// `ARRAY::a|:b` form, anything else as JSON text.
fn json_header_value(v: serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        Value::Array(items) => {
            let items: Vec<String> = items.into_iter().map(json_header_value).collect();
            format!("ARRAY::{}", items.join("|:"))
        }
        other => other.to_string(),
    }
}

/// A `text/event-json` body (also the body of `api uuid_dump <uuid> json`).
pub fn parse_json(text: &[u8]) -> Result<Event, EventBodyError> {
    let JsonPairs(pairs) = serde_json::from_slice(text).map_err(|e| EventBodyError(e.to_string()))?;
    let mut headers = Headers::new();
    let mut body = None;
    for (k, v) in pairs {
        if k == "_body" {
            body = Some(json_header_value(v));
        } else {
            headers.push(k, json_header_value(v));
        }
    }
    require_name(headers, body, EventFormat::Json)
}

/// XML character data to text: the five named entities and numeric references; anything
/// else stays literal.
pub fn xml_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `<Name>text</Name>` (or `<Name/>`), the closing name checked; returns name and raw text.
fn xml_element(input: &str) -> IResult<&str, (&str, &str)> {
    let (rest, _) = tag("<")(input)?;
    let (rest, name) = take_till1(|c: char| c == '>' || c == '/' || c == '<' || c.is_whitespace())(rest)?;
    if name.starts_with('/') {
        return Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Tag)));
    }
    let (rest, empty) = alt((map(tag("/>"), |_| true), map(tag(">"), |_| false))).parse(rest)?;
    if empty {
        return Ok((rest, (name, "")));
    }
    let (rest, text) = take_till(|c| c == '<')(rest)?;
    let (rest, _) = tag("</")(rest)?;
    let (rest, _) = tag(name)(rest)?;
    let (rest, _) = tag(">")(rest)?;
    Ok((rest, (name, text)))
}

type XmlParts<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, Option<&'a str>);

fn xml_event(input: &str) -> IResult<&str, XmlParts<'_>> {
    let ws = multispace0;
    let (rest, _) = (ws, tag("<event>"), ws, tag("<headers>"), ws).parse(input)?;
    let (rest, headers) = many0(delimited(ws, xml_element, ws)).parse(rest)?;
    let (rest, _) = (tag("</headers>"), ws).parse(rest)?;
    let (rest, length) = opt(delimited(
        tag("<Content-Length>"),
        take_while1(|c: char| c.is_ascii_digit()),
        (tag("</Content-Length>"), ws),
    ))
    .parse(rest)?;
    let (rest, body) = opt(delimited(tag("<body>"), take_till(|c| c == '<'), (tag("</body>"), ws))).parse(rest)?;
    let (rest, _) = preceded(ws, tag("</event>")).parse(rest)?;
    let (rest, _) = ws(rest)?;
    Ok((rest, (headers, length, body)))
}

/// A `text/event-xml` body.
pub fn parse_xml(text: &[u8]) -> Result<Event, EventBodyError> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let (rest, (elements, length, body)) = xml_event(text).map_err(|e| format!("not an <event> document: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after </event>", rest.len()).into());
    }
    let headers: Headers = elements.into_iter().map(|(k, v)| (k, percent_decode(&xml_unescape(v)))).collect();
    let body = body.map(|b| {
        let mut b = xml_unescape(b);
        // the pretty-printer indents the closing tag after a body that ends in a newline:
        // Content-Length says where the body really ends
        if let Some(len) = length.and_then(|l| l.parse::<usize>().ok()) {
            if len < b.len() && b.is_char_boundary(len) && b[len..].chars().all(char::is_whitespace) {
                b.truncate(len);
            }
        }
        b
    });
    require_name(headers, body, EventFormat::Xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_as_freeswitch_encodes() {
        assert_eq!(percent_decode("fd00%3A%3A2"), "fd00::2");
        assert_eq!(
            percent_decode("100%41%20stays,%20100%254%20and%20100%25%20do%20not"),
            "100A stays, 100%4 and 100% do not"
        );
        assert_eq!(percent_decode("Zo%C3%AB%20%CE%A9mega%20%E2%98%8E"), "Zoë Ωmega ☎");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        assert_eq!(percent_decode("+OK"), "+OK");
    }

    #[test]
    fn header_lines() {
        let h = parse_header_block(b"A: 1\nUser-Data: \nB:2\r\nC: x: y", false).unwrap();
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("A", "1"), ("User-Data", ""), ("B", "2"), ("C", "x: y")]);
        assert_eq!(
            parse_header_block(b"A: 1\nno colon here", false),
            Err(BadLine { line: 2, text: "no colon here".into() })
        );
        assert!(parse_header_block(b": empty name", false).is_err());
    }

    #[test]
    fn xml_entities() {
        assert_eq!(xml_unescape("&lt;tag attr=\"v\"&gt;&amp;amp; text"), "<tag attr=\"v\">&amp; text");
        assert_eq!(xml_unescape("line one&#xD;\n&#xE9;&#233;"), "line one\r\néé");
        assert_eq!(xml_unescape("a & b &bogus; &#xZZ; &"), "a & b &bogus; &#xZZ; &");
    }

    #[test]
    fn plain_event_with_a_doubled_inner_length() {
        let e = parse_plain(
            b"Event-Name: CUSTOM\nEvent-Subclass: lab%3A%3Aenc\nContent-Length: 3\nContent-Length: 3\n\na\n\n",
        )
        .unwrap();
        assert_eq!(e.name().to_string(), "CUSTOM lab::enc");
        assert_eq!(e.body(), Some("a\n\n"));
        assert_eq!(e.headers.get_all("Content-Length").count(), 2);
        assert!(parse_plain(b"Event-Name: X\nContent-Length: 9\n\nshort").is_err());
        assert!(parse_plain(b"Core-UUID: x\n\n").is_err());
    }

    #[test]
    fn json_event_keeps_repeated_keys_and_arrays() {
        let e = parse_json(
            br#"{"Event-Name":"X","Content-Length":"2","n":5,"a":["p","q"],"Content-Length":"2","_body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(e.headers.get_all("Content-Length").count(), 2);
        assert_eq!(e.header("n"), Some("5"));
        assert_eq!(e.header("a"), Some("ARRAY::p|:q"));
        assert_eq!(e.body(), Some("hi"));
        assert!(parse_json(b"[1,2]").is_err());
        assert!(parse_json(b"{\"Event-Name\":").is_err());
    }

    #[test]
    fn xml_event() {
        let doc = "<event>\n  <headers>\n    <Event-Name>CUSTOM</Event-Name>\n    <Caller>%3CX%26Y%3E</Caller>\n    <E/>\n  </headers>\n  <Content-Length>3</Content-Length>\n  <body>a&#xD;\n  </body>\n</event>\n";
        let e = parse_xml(doc.as_bytes()).unwrap();
        assert_eq!(e.header("Caller"), Some("<X&Y>"));
        assert_eq!(e.header("E"), Some(""));
        assert_eq!(e.body(), Some("a\r\n"));
        assert!(parse_xml(b"<event><headers><A>1</B></headers></event>").is_err());
        assert!(parse_xml(b"<event><headers></headers></event>junk").is_err());
    }
}
