//! Text made safe for the HTML and SVG handoffd writes (the status page, the timeline picture):
//! one escaping rule for both, since user, device and session names are attacker-controlled.

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
}
