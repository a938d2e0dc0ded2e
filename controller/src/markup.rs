//! Text made safe for the HTML and SVG handoffd writes (the status page, the timeline picture),
//! and for URLs (a session id in a path, an audit filter in a query): one rule each, since user,
//! device and session names are attacker-controlled.

/// `s` with `& < > " '` replaced by entities (safe in element text and in quoted attributes of
/// HTML and XML alike); a control character becomes U+FFFD (the API refuses them in names, but a
/// store edited by hand or an older record may hold one).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for one URL path segment or query value (everything but
/// `A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `s` with its `%XX` sequences decoded; `None` if a sequence is broken or the result is not
/// UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_control_characters_never_pass() {
        assert_eq!(
            super::escape("<a href=\"x\">'&'\n\u{1b}</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;\u{FFFD}\u{FFFD}&lt;/a&gt;"
        );
        assert_eq!(super::escape("alice-phone · data"), "alice-phone · data");
    }

    #[test]
    fn percent_encoding_round_trips_and_broken_sequences_are_refused() {
        for s in ["t1-2", "a b/c?d=e&f", "2026-12-03T08:00:00Z", "ünï"] {
            assert_eq!(super::percent_decode(&super::percent_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(super::percent_encode("a b:c"), "a%20b%3Ac");
        assert_eq!(super::percent_decode("%zz"), None);
        assert_eq!(super::percent_decode("%4"), None);
    }
}
