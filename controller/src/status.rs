//! The status page (`GET /status` on the API listener): what handoffd runs now, as one small
//! read-only HTML page. Sans-I/O: the daemon tells a [`Board`] what only it sees (the PBX
//! link, which leg feeds each conference, the switches and their measured silence), the API
//! reads the live sessions and the audit log from the store, and [`render`] turns both into
//! HTML. No script, no external resource: the page works with scripts off and refreshes
//! itself with `<meta http-equiv=refresh>`. Every text that came from outside (user, device,
//! session and leg names, refusal reasons) is HTML-escaped by [`escape`].
//!
//! ```text
//!   daemon ── link_up / link_down / switched / failover ──▶ Board (bounded, in memory)
//!   store  ── live sessions, audit tail ─────────────────┐        │
//!                                                        ▼        ▼
//!                                      api: GET /status ──▶ render(Page) ──▶ text/html
//! ```

use crate::store::{AuditAction, AuditRecord, LegPath, Outcome, SessionSnapshot, SessionState, UnixMs};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// Switches the board remembers (oldest dropped first).
pub const MAX_SWITCHES: usize = 50;
/// Sessions whose feeding leg the board remembers (the oldest entry is dropped past it).
pub const MAX_FEEDS: usize = 10_000;
/// Audit records read for the page (moves and refusals are picked from these).
pub const AUDIT_TAIL: usize = 500;
/// Moves and refusals shown.
pub const MAX_AUDIT_ROWS: usize = 30;
/// Live sessions shown (the count says how many more there are).
pub const MAX_SESSION_ROWS: usize = 200;
/// How long a measured gap and its switch may be apart to be paired (ms).
pub const PAIR_WITHIN_MS: u64 = 2_000;
/// The page's own refresh period (s).
pub const REFRESH_S: u32 = 10;

/// The link to the PBX as the daemon last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Link {
    /// handoffd has not logged in since it started.
    #[default]
    NotYet,
    /// Logged in (`detail`: the driver's login line).
    Up { pbx: String, detail: String, since: UnixMs },
    /// Lost or refused, and why (handoffd retries).
    Down { why: String, since: UnixMs },
}

/// The leg that feeds a session's conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub uniqueid: String,
    pub path: LegPath,
    pub since: UnixMs,
}

/// A change of the leg feeding a conference: a failover (the feeding leg stalled or was lost),
/// a take-back or the first leg's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub at: UnixMs,
    pub session: String,
    pub uniqueid: String,
    pub to: LegPath,
    /// The PBX's reason (`stall`, `preferred-recovered`, `the data leg hung up (…)`, …).
    pub reason: String,
    /// How long the mix had no voice from the device at the switch (a failover's measured
    /// silence; Asterisk measures every switch).
    pub gap_ms: Option<u64>,
    /// The mix switched because the feeding leg failed (not its first frames, not a take-back).
    failover: bool,
    /// A failover whose gap the PBX reports after the switch (FreeSWITCH): still waiting.
    gap_pending: bool,
}

impl Switch {
    /// A failover: the mix switched because the feeding leg failed.
    pub fn is_failover(&self) -> bool {
        self.failover
    }
}

/// What the daemon tells the page: bounded, in memory, lost at a restart (the store and the
/// audit log keep the rest).
#[derive(Debug, Default)]
pub struct Board {
    link: Link,
    feeds: BTreeMap<String, Feed>,
    switches: VecDeque<Switch>,
    /// A failover's gap reported before its switch (Asterisk's `HandoffLegSwitched` gives
    /// both in one event; the driver reports the gap first), with when.
    held_gap: Option<(Option<u64>, UnixMs)>,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// handoffd logged in to the PBX.
    pub fn link_up(&mut self, pbx: &str, detail: &str, at: UnixMs) {
        self.link = Link::Up { pbx: pbx.to_string(), detail: detail.to_string(), since: at };
    }

    /// The link ended (or a login was refused).
    pub fn link_down(&mut self, why: &str, at: UnixMs) {
        self.link = Link::Down { why: why.to_string(), since: at };
        self.held_gap = None;
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// A failover was counted, with its gap if measured. Pairs with the switch it belongs to:
    /// the newest one if it still waits for its gap (FreeSWITCH), else the next one (Asterisk
    /// reports the failover just before its switch).
    pub fn failover(&mut self, gap_ms: Option<u64>, at: UnixMs) {
        if let Some(last) = self.switches.back_mut() {
            if last.gap_pending && at.ms_since(last.at) <= PAIR_WITHIN_MS {
                last.gap_ms = gap_ms;
                last.gap_pending = false;
                return;
            }
        }
        self.held_gap = Some((gap_ms, at));
    }

    /// The PBX switched the mix of `session` to the leg `uniqueid`, after `gap_ms` without a
    /// frame if the PBX measured it with the switch.
    pub fn switched(
        &mut self,
        session: &str,
        uniqueid: &str,
        to: LegPath,
        reason: &str,
        gap_ms: Option<u64>,
        at: UnixMs,
    ) {
        let first = !self.feeds.contains_key(session);
        if first && self.feeds.len() >= MAX_FEEDS {
            if let Some(oldest) = self.feeds.iter().min_by_key(|(_, f)| f.since).map(|(s, _)| s.clone()) {
                self.feeds.remove(&oldest);
            }
        }
        self.feeds.insert(session.to_string(), Feed { uniqueid: uniqueid.to_string(), path: to, since: at });
        let held = self.held_gap.take().filter(|(_, t)| at.ms_since(*t) <= PAIR_WITHIN_MS);
        let (failover, gap_ms, gap_pending) = match held {
            Some((gap, _)) => (true, gap_ms.or(gap), false),
            // A leg that failed (not the first frames, not a take-back): its gap may come later.
            None => {
                let failover = reason == "stall" || (!first && !is_routine(reason));
                (failover, gap_ms, failover && gap_ms.is_none())
            }
        };
        if self.switches.len() >= MAX_SWITCHES {
            self.switches.pop_front();
        }
        self.switches.push_back(Switch {
            at,
            session: session.to_string(),
            uniqueid: uniqueid.to_string(),
            to,
            reason: reason.to_string(),
            gap_ms,
            failover,
            gap_pending,
        });
    }

    /// The PBX switched the mix of a leg handoffd knows no session of (a call being torn
    /// down): a gap held for it pairs with nothing.
    pub fn switched_without_session(&mut self) {
        self.held_gap = None;
    }

    /// `session` ended: its feed is forgotten (its switches stay in the recent list).
    pub fn ended(&mut self, session: &str) {
        self.feeds.remove(session);
    }

    pub fn feed(&self, session: &str) -> Option<&Feed> {
        self.feeds.get(session)
    }

    /// Recent switches, oldest first.
    pub fn switches(&self) -> impl DoubleEndedIterator<Item = &Switch> {
        self.switches.iter()
    }
}

/// A switch that is no failover: a leg's first frames, or the preferred leg taking back.
fn is_routine(reason: &str) -> bool {
    matches!(reason, "first-frames" | "preferred-recovered") || reason.contains("joined")
}

/// Everything one page shows.
#[derive(Debug)]
pub struct Page<'a> {
    pub now: UnixMs,
    pub version: &'a str,
    pub board: &'a Board,
    /// The store's sessions (ended ones are left out).
    pub sessions: &'a [SessionSnapshot],
    /// The audit log's tail, oldest first (moves and refusals are picked from it).
    pub audit: &'a [(u64, AuditRecord)],
    /// Why the store could not be read, if it could not (the page still shows the rest).
    pub store_error: Option<String>,
}

pub use crate::markup::escape;

/// The address of a session's timeline picture.
pub fn timeline_href(session: &str) -> String {
    format!("/status/sessions/{}/timeline.svg", crate::markup::percent_encode(session))
}

/// The session id named by a timeline path (`/status/sessions/<id>/timeline.svg`), decoded.
pub fn timeline_session(path: &str) -> Option<String> {
    let id = path.strip_prefix("/status/sessions/")?.strip_suffix("/timeline.svg")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    crate::markup::percent_decode(id)
}

/// Whether `listen` (`api.listen`) is a loopback address: only then is the page served
/// without the admin token. A name that is not an address counts as not loopback.
pub fn listen_is_loopback(listen: &str) -> bool {
    listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

fn path_name(p: LegPath) -> &'static str {
    match p {
        LegPath::Data => "data",
        LegPath::Carrier => "carrier",
    }
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::AwaitingFarAnswer => "ringing the far party",
        SessionState::Connected => "connected",
        SessionState::Grace => "grace (far party on hold)",
        SessionState::Ending => "ending",
        SessionState::Ended => "ended",
    }
}

/// "12 s ago", "3 min ago", "2 h ago".
fn ago(now: UnixMs, then: UnixMs) -> String {
    let s = now.ms_since(then) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A `<time>` element: the UTC time, with how long ago.
fn when(now: UnixMs, t: UnixMs) -> String {
    format!("<time datetime=\"{t}\">{}</time> <small>({})</small>", clock(t, 23), ago(now, t))
}

/// The time of day of `t` (`HH:MM:SS.mmm` cut to `end`).
fn clock(t: UnixMs, end: usize) -> String {
    let full = t.to_string();
    full.get(11..end).unwrap_or(&full).to_string()
}

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;margin:1.5em;color:#111}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eee}.up{color:#070}.down{color:#a00}.feeding{font-weight:bold}\
.failover{background:#fff4e0}.refused{color:#a00}small{color:#555}ul{margin:0;padding-left:1.2em}";

/// The page.
pub fn render(p: &Page) -> String {
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'\">\
<title>handoffd status</title><style>{STYLE}</style></head><body>\n\
<h1>handoffd {} <small>at <time datetime=\"{}\">{}</time></small></h1>\n",
        escape(p.version),
        p.now,
        p.now
    );
    // The PBX link.
    h.push_str("<h2>PBX link</h2>\n<p id=\"link\">");
    match &p.board.link {
        Link::NotYet => h.push_str("<span class=\"down\">not logged in yet</span>"),
        Link::Up { pbx, detail, since } => {
            let _ = write!(
                h,
                "<span class=\"up\">up</span>: {} — {}, since {}",
                escape(pbx),
                escape(detail),
                when(p.now, *since)
            );
        }
        Link::Down { why, since } => {
            let _ = write!(
                h,
                "<span class=\"down\">down</span> since {}: {} (handoffd retries)",
                when(p.now, *since),
                escape(why)
            );
        }
    }
    h.push_str("</p>\n");
    if let Some(e) = &p.store_error {
        let _ = writeln!(h, "<p class=\"down\">the store could not be read: {}</p>", escape(e));
    }

    // Live sessions.
    let live: Vec<&SessionSnapshot> = p.sessions.iter().filter(|s| s.state != SessionState::Ended).collect();
    let _ = writeln!(h, "<h2>Live sessions ({})</h2>", live.len());
    if live.is_empty() {
        h.push_str("<p id=\"no-sessions\">no call runs now</p>\n");
    } else {
        h.push_str(
            "<table id=\"sessions\"><tr><th>session</th><th>user</th><th>device</th><th>state</th>\
<th>legs (▶ feeds the conference)</th><th>far party</th><th>timeline</th></tr>\n",
        );
        for s in live.iter().take(MAX_SESSION_ROWS) {
            session_row(&mut h, p, s);
        }
        h.push_str("</table>\n");
        if live.len() > MAX_SESSION_ROWS {
            let _ = writeln!(h, "<p>{} more not shown</p>", live.len() - MAX_SESSION_ROWS);
        }
    }

    // Recent switches, failovers first in mind: newest first.
    let switches: Vec<&Switch> = p.board.switches().rev().collect();
    let failovers = switches.iter().filter(|s| s.is_failover()).count();
    let _ = writeln!(h, "<h2>Recent leg switches ({failovers} failover(s))</h2>");
    if switches.is_empty() {
        h.push_str("<p id=\"no-switches\">no switch since handoffd started</p>\n");
    } else {
        h.push_str(
            "<table id=\"switches\"><tr><th>when</th><th>session</th><th>to leg</th><th>why</th>\
<th>silence heard</th></tr>\n",
        );
        for s in switches {
            let silence = match (s.gap_ms, s.gap_pending) {
                (Some(g), _) => format!("{g} ms"),
                (None, true) => "being measured".to_string(),
                (None, false) if s.is_failover() => "not measured".to_string(),
                (None, false) => "—".to_string(),
            };
            let _ = writeln!(
                h,
                "<tr class=\"switch{}\" data-session=\"{}\"><td>{}</td><td>{}</td><td>{} {}</td><td>{}{}</td><td class=\"silence\">{}</td></tr>",
                if s.is_failover() { " failover" } else { "" },
                escape(&s.session),
                when(p.now, s.at),
                escape(&s.session),
                path_name(s.to),
                escape(&s.uniqueid),
                if s.is_failover() { "failover: " } else { "" },
                escape(&s.reason),
                silence
            );
        }
        h.push_str("</table>\n");
    }

    // Moves and refusals from the audit log, newest first.
    let rows: Vec<&(u64, AuditRecord)> = p
        .audit
        .iter()
        .rev()
        .filter(|(_, r)| r.action.is_move() || r.outcome == Outcome::Refused || r.action == AuditAction::Lockout)
        .take(MAX_AUDIT_ROWS)
        .collect();
    let _ = writeln!(h, "<h2>Moves and refusals (audit log, newest first)</h2>");
    if rows.is_empty() {
        h.push_str("<p id=\"no-moves\">none in the recent audit log</p>\n");
    } else {
        h.push_str(
            "<table id=\"audit\"><tr><th>when</th><th>what</th><th>outcome</th><th>user</th><th>device</th>\
<th>session</th><th>by</th><th>reason</th></tr>\n",
        );
        for (seq, r) in rows {
            let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr class=\"audit {}\" data-seq=\"{seq}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.outcome.as_str(),
                when(p.now, r.at),
                r.action.as_str(),
                r.outcome.as_str(),
                opt(&r.user),
                opt(&r.device),
                opt(&r.session),
                escape(&r.actor),
                opt(&r.reason)
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<p><small>read-only; refreshes every {REFRESH_S} s; switches are kept in memory (the last {MAX_SWITCHES}), \
the audit log in the store (<code>handoffctl audit</code>)</small></p>\n</body></html>"
    );
    h
}

fn session_row(h: &mut String, p: &Page, s: &SessionSnapshot) {
    let feed = p.board.feed(&s.id);
    let mut legs = String::from("<ul>");
    if s.legs.is_empty() {
        legs.push_str("<li>no client leg</li>");
    }
    for (uniqueid, path) in &s.legs {
        let feeding = feed.is_some_and(|f| &f.uniqueid == uniqueid);
        let _ = write!(
            legs,
            "<li class=\"leg {}{}\" data-uniqueid=\"{}\">{}{} leg {}{}</li>",
            path_name(*path),
            if feeding { " feeding" } else { "" },
            escape(uniqueid),
            if feeding { "▶ " } else { "" },
            path_name(*path),
            escape(uniqueid),
            match feed {
                Some(f) if feeding => format!(" — feeds the conference since {}", when(p.now, f.since)),
                _ => String::new(),
            }
        );
    }
    if let Some(f) = feed.filter(|f| !s.legs.iter().any(|(u, _)| *u == f.uniqueid)) {
        let _ = write!(legs, "<li>last fed by the {} leg {} (gone)</li>", path_name(f.path), escape(&f.uniqueid));
    }
    legs.push_str("</ul>");
    let far = match (&s.far, s.far_number.is_empty()) {
        (Some(u), false) => format!("{} ({})", escape(&s.far_number), escape(u)),
        (Some(u), true) => escape(u),
        (None, false) => format!("{} (not answered)", escape(&s.far_number)),
        (None, true) => "—".to_string(),
    };
    let barred = if s.barred.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = s
            .barred
            .iter()
            .filter(|(_, until)| *until > p.now)
            .map(|(d, until)| format!("{} until {}", escape(d), clock(*until, 19)))
            .collect();
        if list.is_empty() {
            String::new()
        } else {
            format!("<br><small>barred: {}</small>", list.join(", "))
        }
    };
    let _ = writeln!(
        h,
        "<tr class=\"session\" data-session=\"{id}\"><td>{id}</td><td>{}</td><td>{}{barred}</td><td>{}<br><small>updated {}</small></td>\
<td>{legs}</td><td>{far}</td><td><a href=\"{}\">timeline</a></td></tr>",
        escape(&s.user),
        escape(&s.device),
        state_name(s.state),
        ago(p.now, s.updated),
        escape(&timeline_href(&s.id)),
        id = escape(&s.id),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMs = UnixMs(1_764_748_800_000); // 2025-12-03T08:00:00Z

    fn session(id: &str, user: &str, device: &str) -> SessionSnapshot {
        SessionSnapshot {
            id: id.into(),
            user: user.into(),
            device: device.into(),
            far: Some("far-1".into()),
            bridge: format!("handoff-{id}"),
            legs: vec![("1.1".into(), LegPath::Data), ("1.2".into(), LegPath::Carrier)],
            state: SessionState::Connected,
            updated: T0,
            far_number: "+15559999".into(),
            barred: Vec::new(),
            node: String::new(),
        }
    }

    fn page<'a>(board: &'a Board, sessions: &'a [SessionSnapshot], audit: &'a [(u64, AuditRecord)]) -> String {
        render(&Page { now: T0.plus_ms(5_000), version: "0.test", board, sessions, audit, store_error: None })
    }

    #[test]
    fn escaping_leaves_no_markup_and_no_control_character() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("a\u{1b}[2J\nb"), "a\u{FFFD}[2J\u{FFFD}b");
        assert_eq!(escape("Zoë Ünal"), "Zoë Ünal");
    }

    #[test]
    fn names_from_outside_are_escaped_everywhere_on_the_page() {
        let evil = r#"<img src=x onerror=alert(1)>"#;
        let attr = r#"x" onmouseover="alert(2)"#;
        let mut board = Board::new();
        board.link_up("Asterisk", evil, T0);
        board.switched(attr, evil, LegPath::Data, evil, Some(0), T0);
        let mut s = session(attr, evil, evil);
        s.legs = vec![(evil.into(), LegPath::Data)];
        s.far_number = evil.into();
        s.barred = vec![(evil.into(), T0.plus_ms(60_000))];
        let audit = vec![(
            7,
            AuditRecord::new(T0, evil, AuditAction::MoveRequest, Outcome::Refused)
                .user(evil)
                .device(attr)
                .session(attr)
                .reason(evil),
        )];
        let html = render(&Page {
            now: T0,
            version: evil,
            board: &board,
            sessions: &[s],
            audit: &audit,
            store_error: Some(evil.into()),
        });
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("\" onmouseover"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
        // The only tags are the page's own.
        let tags: std::collections::BTreeSet<&str> =
            html.split('<').skip(1).map(|t| t.split([' ', '>']).next().unwrap_or("")).collect();
        for t in &tags {
            let allowed = [
                "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "h1", "h2", "small", "time", "p", "span",
                "table", "tr", "th", "td", "ul", "li", "a", "br", "code",
            ];
            assert!(allowed.contains(&t.trim_start_matches('/')), "unexpected tag <{t}> in\n{html}");
        }
        // The timeline link's session id is percent-encoded, then escaped.
        assert!(html.contains("/status/sessions/x%22%20onmouseover%3D%22alert%282%29/timeline.svg"), "{html}");
    }

    #[test]
    fn a_session_shows_its_legs_and_which_one_feeds() {
        let mut board = Board::new();
        board.link_up("Asterisk", "logged in to AMI at 127.0.0.1:5038", T0);
        board.switched("s1", "1.1", LegPath::Data, "first-frames", Some(0), T0);
        let html = page(&board, &[session("s1", "alice", "alice-phone")], &[]);
        assert!(html.contains("<span class=\"up\">up</span>: Asterisk"), "{html}");
        assert!(html.contains("<li class=\"leg data feeding\" data-uniqueid=\"1.1\">▶ data leg 1.1 — feeds"), "{html}");
        assert!(html.contains("<li class=\"leg carrier\" data-uniqueid=\"1.2\">carrier leg 1.2</li>"), "{html}");
        assert!(html.contains("<a href=\"/status/sessions/s1/timeline.svg\">"), "{html}");
        assert!(html.contains("Recent leg switches (0 failover(s))"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!html.contains("<script"));
        // Ended sessions are not live.
        let mut ended = session("s2", "bob", "bob-phone");
        ended.state = SessionState::Ended;
        let html = page(&board, &[ended], &[]);
        assert!(html.contains("Live sessions (0)") && html.contains("no call runs now"), "{html}");
    }

    #[test]
    fn a_failover_shows_its_measured_silence_whichever_comes_first() {
        // Asterisk: every switch carries its gap (HandoffLegSwitched's GapMs); a stall's
        // failover is also reported just before its switch.
        let mut b = Board::new();
        b.switched("s1", "1.1", LegPath::Data, "first-frames", Some(0), T0);
        b.failover(Some(42), T0.plus_ms(3_000));
        b.switched("s1", "1.2", LegPath::Carrier, "stall", Some(42), T0.plus_ms(3_000));
        b.switched("s1", "1.1", LegPath::Data, "preferred-recovered", Some(13), T0.plus_ms(6_000));
        let kinds: Vec<_> = b.switches().map(|s| (s.reason.as_str(), s.gap_ms, s.is_failover())).collect();
        assert_eq!(
            kinds,
            [("first-frames", Some(0), false), ("stall", Some(42), true), ("preferred-recovered", Some(13), false)]
        );
        assert_eq!(b.feed("s1").map(|f| f.path), Some(LegPath::Data));
        let html = page(&b, &[session("s1", "alice", "alice-phone")], &[]);
        assert!(html.contains("(1 failover(s))"), "{html}");
        assert!(html.contains("failover: stall</td><td class=\"silence\">42 ms</td>"), "{html}");
        assert!(html.contains("preferred-recovered</td><td class=\"silence\">13 ms</td>"), "{html}");
        // A stall switch without its failover report is a failover all the same.
        b.switched("s1", "1.2", LegPath::Carrier, "stall", Some(55), T0.plus_ms(9_000));
        assert_eq!(b.switches().last().map(|s| (s.gap_ms, s.is_failover())), Some((Some(55), true)));

        // FreeSWITCH: the gap comes after the switch, when the unmute is confirmed.
        let mut b = Board::new();
        b.switched("s2", "2.1", LegPath::Data, "the data leg joined", None, T0);
        b.switched("s2", "2.2", LegPath::Carrier, "the data leg hung up (MEDIA_TIMEOUT)", None, T0.plus_ms(100));
        let html = page(&b, &[], &[]);
        assert!(html.contains("being measured"), "{html}");
        b.failover(Some(345), T0.plus_ms(160));
        assert_eq!(b.switches().last().and_then(|s| s.gap_ms), Some(345));
        // A gap whose switch found no session (a call torn down) is not pinned on the next one.
        b.failover(Some(77), T0.plus_ms(1_000));
        b.switched_without_session();
        b.switched("s2", "2.2", LegPath::Carrier, "preferred-recovered", None, T0.plus_ms(1_100));
        assert_eq!(b.switches().last().map(|s| (s.gap_ms, s.is_failover())), Some((None, false)));
        // A gap too far from any switch is not pinned on the next one.
        b.failover(Some(99), T0.plus_ms(10_000));
        b.switched("s2", "2.1", LegPath::Data, "preferred-recovered", None, T0.plus_ms(20_000));
        assert_eq!(b.switches().last().map(|s| (s.gap_ms, s.is_failover())), Some((None, false)));
    }

    #[test]
    fn what_the_board_keeps_is_bounded() {
        let mut b = Board::new();
        for i in 0..(MAX_FEEDS as u64 + 100) {
            b.switched(&format!("s{i}"), "1", LegPath::Data, "first-frames", Some(0), T0.plus_ms(i));
        }
        assert_eq!(b.feeds.len(), MAX_FEEDS);
        assert!(b.feed("s0").is_none() && b.feed(&format!("s{}", MAX_FEEDS + 99)).is_some());
        assert_eq!(b.switches().count(), MAX_SWITCHES);
        b.ended(&format!("s{}", MAX_FEEDS + 99));
        assert_eq!(b.feeds.len(), MAX_FEEDS - 1);
        // Thousands of live sessions: the page stays small.
        let many: Vec<_> = (0..5000).map(|i| session(&format!("s{i}"), "u", "d")).collect();
        let html = page(&b, &many, &[]);
        assert!(html.contains("Live sessions (5000)") && html.contains("4800 more not shown"));
        assert!(html.len() < 400_000, "{} bytes", html.len());
    }

    #[test]
    fn moves_and_refusals_come_from_the_audit_log_newest_first() {
        let audit = vec![
            (1, AuditRecord::new(T0, "handoffctl", AuditAction::UserAdd, Outcome::Done).reason("user alice added")),
            (
                2,
                AuditRecord::new(
                    T0.plus_ms(1000),
                    "api:127.0.0.1:device:b",
                    AuditAction::MoveRequest,
                    Outcome::Granted,
                )
                .user("alice")
                .device("alice-tablet")
                .session("s1"),
            ),
            (
                3,
                AuditRecord::new(T0.plus_ms(2000), "sip:device:alice-phone", AuditAction::Rejoin, Outcome::Refused)
                    .device("alice-phone")
                    .session("s1")
                    .reason("device 'alice-phone' is barred"),
            ),
        ];
        let html = page(&Board::new(), &[], &audit);
        let granted = html.find("data-seq=\"2\"").unwrap();
        let refused = html.find("data-seq=\"3\"").unwrap();
        assert!(refused < granted, "newest first");
        assert!(!html.contains("data-seq=\"1\""), "administration is not a move: {html}");
        assert!(html.contains("<tr class=\"audit refused\" data-seq=\"3\">"), "{html}");
        assert!(html.contains("device &#39;alice-phone&#39; is barred"), "{html}");
        assert!(html.contains("not logged in yet"));
    }

    #[test]
    fn timeline_paths_round_trip_and_bad_ones_are_refused() {
        for id in ["mi4x-1", "a b/c", "<&>", "Zoë"] {
            assert_eq!(timeline_session(&timeline_href(id)).as_deref(), Some(id), "{id}");
        }
        for bad in [
            "/status/sessions//timeline.svg",
            "/status/sessions/a/b/timeline.svg",
            "/status/sessions/%zz/timeline.svg",
            "/status/sessions/%c3/timeline.svg",
            "/status/sessions/a/timeline.png",
            "/status/sessions/%4/timeline.svg",
        ] {
            assert_eq!(timeline_session(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_loopback_listener_serves_the_page_without_the_token() {
        assert!(listen_is_loopback("127.0.0.1:9188"));
        assert!(listen_is_loopback("127.0.0.53:80"));
        assert!(listen_is_loopback("[::1]:9188"));
        assert!(!listen_is_loopback("0.0.0.0:9188"));
        assert!(!listen_is_loopback("[::]:9188"));
        assert!(!listen_is_loopback("192.0.2.1:9188"));
        assert!(!listen_is_loopback("localhost:9188"));
    }
}
