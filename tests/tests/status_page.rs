//! handoffd's status page in a real browser: a real dual-leg call on the testbed Asterisk (the
//! phone's app leg and carrier leg from SIPp, as in dual_leg.rs), its Wi-Fi really cut
//! (nftables) and restored, and the page (`GET /status` on the API listener, loopback) loaded
//! by Debian's headless Chromium from the testbed root (driven over the DevTools protocol,
//! scripts off) before the cut, during it and after it. The DOM Chromium built must show the session, both legs, which leg feeds the
//! conference, and the failover with the silence the module measured; screenshots of each
//! load are kept in target/test-artefacts/status_page/.

use handoff_tests::ami::AmiClient;
use handoff_tests::audio::tone;
use handoff_tests::browser::{artefact_dir, png_size, Browser};
use handoff_tests::handoffd::{testbed_config, Handoffd, AMI_SECRET};
use handoff_tests::netcut::Cut;
use handoff_tests::rtp::Recorder;
use handoff_tests::signal::coded_signal;
use handoff_tests::sipp::{write_carrier_signal, write_signals, Sipp, CARRIER_RTP, DATA_RTP};
use handoff_tests::testbed::Asterisk;
use handoff_tests::wait_for;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

/// The first `name` event after the first `skip` events that `pred` accepts.
fn event_after(
    ami: &AmiClient,
    h: &Handoffd,
    skip: usize,
    name: &str,
    pred: impl Fn(&handoff::ami::Event) -> bool,
) -> handoff::ami::Event {
    wait_for(10 * SEC, || ami.events().into_iter().skip(skip).find(|e| e.name == name && pred(e)))
        .unwrap_or_else(|| panic!("no {name} event; handoffd log:\n{}", h.log().join("\n")))
}

/// The `<tr class="session" ...>` row of `session` in `dom` (Chromium's serialisation).
fn session_row<'a>(dom: &'a str, session: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr class=\"session\" data-session=\"{session}\">"))
        .unwrap_or_else(|| panic!("the page shows no row for session {session}:\n{dom}"));
    let end = dom[start..].find("</tr>").map(|e| start + e).unwrap_or(dom.len());
    &dom[start..end]
}

/// The module's `HandoffLegSwitched` events so far.
fn switch_events(ami: &AmiClient) -> Vec<handoff::ami::Event> {
    ami.events().into_iter().filter(|e| e.name == "HandoffLegSwitched").collect()
}

/// Loads the page and checks it says what the module did up to then: the leg of the newest
/// switch feeds, and every stall switch is a failover row with the gap the module measured.
/// On this small host a leg may really stall while Chromium starts (it takes the CPU from
/// SIPp), so a switch may land while the page loads: the page must then match the events up
/// to one of those switches. Returns the DOM and the switches seen after the load.
fn load_and_check(
    browser: &mut Browser,
    page: &str,
    ami: &AmiClient,
    session: &str,
    took: &mut Duration,
) -> (String, Vec<handoff::ami::Event>) {
    let before = switch_events(ami);
    let run = browser.dump_dom(page);
    *took += run.took;
    let after = switch_events(ami);
    let dom = run.stdout;
    let row = session_row(&dom, session);
    let feeding_li = |e: &handoff::ami::Event| {
        let (path, leg) = (e.headers.get("To").unwrap_or(""), e.headers.get("Uniqueid").unwrap_or(""));
        format!("<li class=\"leg {path} feeding\" data-uniqueid=\"{leg}\">▶ {path} leg {leg} — feeds")
    };
    let candidates = &after[before.len().saturating_sub(1)..];
    assert!(
        candidates.iter().any(|e| row.contains(&feeding_li(e))),
        "the page does not show the leg the module switched to feeding:\n{row}\n{candidates:#?}"
    );
    assert_eq!(row.matches(" feeding\"").count(), 1, "one leg feeds:\n{row}");
    let gaps = |events: &[handoff::ami::Event]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.headers.get("Reason") == Some("stall"))
            .map(|e| e.headers.get("GapMs").unwrap_or("").to_string())
            .collect()
    };
    let (gaps_before, gaps_after) = (gaps(&before), gaps(&after));
    let shown = failovers_shown(&dom);
    assert!(
        (gaps_before.len()..=gaps_after.len()).contains(&shown),
        "the page counts {shown} failovers; the module made {} before the load, {} after",
        gaps_before.len(),
        gaps_after.len()
    );
    let rows: Vec<&str> = dom.lines().filter(|l| l.starts_with("<tr class=\"switch failover\"")).collect();
    assert_eq!(rows.len(), shown, "{dom}");
    // Newest first on the page.
    for (row, gap) in rows.iter().zip(gaps_after[..shown].iter().rev()) {
        assert!(row.contains(&format!("<td class=\"silence\">{gap} ms</td>")), "{row} lacks the gap {gap} ms");
        assert!(row.contains(&format!("data-session=\"{session}\"")) && row.contains("failover: stall"), "{row}");
    }
    (dom, after)
}

/// The count of failovers the page states.
fn failovers_shown(dom: &str) -> usize {
    dom.split("Recent leg switches (")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of failovers on the page:\n{dom}"))
}

/// Waits until the mix is on `path` and stayed there for a second.
fn settle_on(ami: &AmiClient, path: &str) {
    let settled = wait_for(15 * SEC, || {
        let n = switch_events(ami).len();
        let on = switch_events(ami).last().is_some_and(|e| e.headers.get("To") == Some(path));
        std::thread::sleep(SEC);
        (on && switch_events(ami).len() == n).then_some(())
    });
    assert!(settled.is_some(), "the mix did not settle on the {path} leg: {:#?}", switch_events(ami));
}

/// A plain request to handoffd's API at `addr`: (status line, body).
fn request(addr: &str, method: &str, path: &str, bearer: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to handoffd's API");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    conn.write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").as_bytes()).expect("send");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// A fresh directory for one handoffd's store, pepper and admin token, and the YAML that
/// points there (the harness's state directory is named after the process id, which a later
/// run may get again with the records of an earlier one).
fn fresh_state(name: &str) -> (std::path::PathBuf, String) {
    let d = std::env::temp_dir().join(format!("handoff-status-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("make the state directory");
    let yaml = format!("store:\n  path: {0}/store\n  pepper_file: {0}/pepper\n", d.display());
    (d, yaml)
}

/// The address handoffd's listener `name` (`api`, `metrics`) bound, from its log.
fn bound(h: &Handoffd, name: &str) -> String {
    let line = h
        .wait_log(&format!("{name}: listening on http://"), 10 * SEC)
        .unwrap_or_else(|| panic!("handoffd's {name} listener did not start: {:#?}", h.log()));
    let addr = line.split("listening on http://").nth(1).and_then(|t| t.split('/').next()).unwrap();
    addr.replace("0.0.0.0", "127.0.0.1")
}

/// After the call nothing is left (what `Handoffd::assert_nothing_left` checks, on this
/// handoffd's own ports): no channel or conference, no leg in the module, no session open in
/// handoffd nor in its store.
fn nothing_left(ast: &Asterisk, ami: &AmiClient, h: &Handoffd, api_addr: &str, metrics_addr: &str, token: &str) {
    assert!(wait_for(10 * SEC, || ami.channels().is_empty().then_some(())).is_some(), "{:#?}", ami.channels());
    assert!(ami.conferences().is_empty(), "conferences left: {:#?}", ami.conferences());
    let idle = |s: &String| s.contains("Waiting in Handoff(): 0") && s.contains("Watched legs:        0");
    let status = wait_for(10 * SEC, || Some(ast.cli("handoff show status")).filter(idle));
    assert!(status.is_some(), "the module still holds legs:\n{}", ast.cli("handoff show status"));
    let closed = wait_for(10 * SEC, || {
        request(metrics_addr, "GET", "/metrics", None).1.contains("\nhandoff_sessions 0\n").then_some(())
    });
    assert!(closed.is_some(), "handoffd still holds a session: {:#?}", h.log());
    let (status, stored) = request(api_addr, "GET", "/v1/admin/sessions", Some(token));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let open: Vec<_> = stored
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "ended" || s["legs"].as_array().is_some_and(|l| !l.is_empty()))
        .collect();
    assert!(open.is_empty(), "store records of sessions not closed: {open:#?}");
}

#[test]
fn the_status_page_shows_a_dual_leg_call_and_its_wifi_failover_in_chromium() {
    let t0 = Instant::now();
    let ast = Asterisk::start();
    // Switching, so that the data cut moves the mix (the page's failover count and its "fed by" line follow the module's switches); aligned legs need
    // no switch for it (tests/tests/listener.rs).
    ast.set_alignment("switching").unwrap_or_else(|e| panic!("{e}"));
    write_signals(&ast, &coded_signal(40.0, 0), &tone(1000.0, 2.0));
    write_carrier_signal(&ast, &coded_signal(40.0, 80));
    let ami = AmiClient::connect();
    // A cut data leg is declared dead after 20 s here (4 s in the testbed config): the page is
    // loaded several times while the cut lasts.
    // Its API and metrics listen on ports of their own (other tests' handoffd may hold 9187/9188).
    let (dir, store) = fresh_state("call");
    let token_file = dir.join("admin-token");
    let config = format!(
        "{}api:\n  listen: 127.0.0.1:0\n  admin_token_file: {}\nmetrics:\n  listen: 127.0.0.1:0\n{store}",
        testbed_config(5038, AMI_SECRET).replace("leg_dead_after_s: 4", "leg_dead_after_s: 20"),
        token_file.display()
    );
    let h = Handoffd::spawn(&config);
    let (api_addr, metrics_addr) = (bound(&h, "api"), bound(&h, "metrics"));
    let page = format!("http://{api_addr}/status");
    let page = page.as_str();
    assert!(h.wait_log("logged in to AMI", 10 * SEC).is_some(), "handoffd did not log in: {:#?}", h.log());
    wait_for(10 * SEC, || ast.cli("handoff show status").contains("Controller:          connected").then_some(()))
        .expect("res_handoff sees handoffd's hello");
    let mut browser = Browser::new(&ast.root());
    let shots = artefact_dir("status_page");
    let _ = std::fs::remove_dir_all(&shots);
    let mut took = Duration::ZERO;

    // The browser really runs with scripts off.
    let probe = "data:text/html,<p id=probe>off</p><script>document.getElementById('probe').textContent='on'</script>";
    let off = browser.dump_dom(probe);
    assert!(off.stdout.contains("<p id=\"probe\">off</p>"), "a script ran: {}", off.stdout);

    // No call yet: the page loads and says so, with the link up.
    let idle = browser.dump_dom(page);
    took += idle.took;
    assert!(idle.stdout.contains("no call runs now"), "{}", idle.stdout);
    assert!(idle.stdout.contains("<span class=\"up\">up</span>: Asterisk"), "{}", idle.stdout);

    // The phone calls over its app (data) and its carrier line; the user hangs up on the app
    // after 20 s.
    let far_rec = Recorder::bind("127.0.0.3");
    let mut far = Sipp::far_party("far_uas.xml", far_rec.port, None);
    let data_rec = Recorder::bind("127.0.0.1");
    let carrier_rec = Recorder::bind("127.0.0.2");
    let mut data =
        Sipp::leg("data_leg_uac.xml", "127.0.0.1", 5071, "alice-app", "2000", data_rec.port, 20_000, DATA_RTP);
    let mut carrier = Sipp::leg(
        "carrier_leg_uac_wait.xml",
        "127.0.0.2",
        5072,
        "+15550001",
        "2000",
        carrier_rec.port,
        20_000,
        CARRIER_RTP,
    );
    // (20 s: SIPp and Asterisk are slow to set calls up when other builds load this host.)
    wait_for(20 * SEC, || (ami.events().iter().filter(|e| e.name == "ConfbridgeJoin").count() == 3).then_some(()))
        .unwrap_or_else(|| {
            panic!("data, carrier and far party not in one conference; handoffd:\n{}", h.log().join("\n"))
        });
    let first = event_after(&ami, &h, 0, "HandoffLegSwitched", |e| e.headers.get("To") == Some("data"));
    let data_leg = first.headers.get("Uniqueid").unwrap().to_string();
    let token = std::fs::read_to_string(&token_file).expect("handoffd made the admin token").trim().to_string();
    let (status, sessions) = request(&api_addr, "GET", "/v1/admin/sessions", Some(&token));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let sessions: serde_json::Value = serde_json::from_str(&sessions).unwrap();
    let live: Vec<_> = sessions.as_array().unwrap().iter().filter(|s| s["state"] != "ended").collect();
    assert_eq!(live.len(), 1, "{sessions}");
    let session = live[0]["id"].as_str().unwrap().to_string();
    let legs = live[0]["legs"].as_array().unwrap();
    let carrier_leg = legs.iter().find(|l| l[1] == "carrier").expect("a carrier leg")[0].as_str().unwrap().to_string();
    assert!(legs.iter().any(|l| l[0] == data_leg.as_str() && l[1] == "data"), "{sessions}");

    // Both legs up: the page shows the session, its two legs and the one feeding.
    settle_on(&ami, "data");
    let (before, _) = load_and_check(&mut browser, page, &ami, &session, &mut took);
    let row = session_row(&before, &session);
    for want in [
        "<td>alice</td>",
        "<td>alice-phone",
        "connected",
        &format!(
            "<li class=\"leg data feeding\" data-uniqueid=\"{data_leg}\">▶ data leg {data_leg} — feeds the conference"
        ),
        &format!("<li class=\"leg carrier\" data-uniqueid=\"{carrier_leg}\">carrier leg {carrier_leg}</li>"),
        &format!("<a href=\"/status/sessions/{session}/timeline.svg\">timeline</a>"),
    ] {
        assert!(row.contains(want), "the session row lacks {want:?}:\n{row}");
    }
    took += browser.screenshot(page, 1280, 720, &shots.join("1-both-legs.png")).took;

    // Wi-Fi goes away: the module switches the mix to the carrier leg and measures the gap.
    settle_on(&ami, "data");
    let before_cut = ami.events().len();
    let cut = Cut::udp_ports(DATA_RTP.0, DATA_RTP.1);
    let switched = event_after(&ami, &h, before_cut, "HandoffLegSwitched", |e| e.headers.get("To") == Some("carrier"));
    assert_eq!(switched.headers.get("Reason"), Some("stall"));
    assert_eq!(switched.headers.get("Uniqueid"), Some(carrier_leg.as_str()));
    let gap = switched.headers.get("GapMs").unwrap().to_string();
    let (during, _) = load_and_check(&mut browser, page, &ami, &session, &mut took);
    let row = session_row(&during, &session);
    assert!(
        row.contains(&format!("<li class=\"leg carrier feeding\" data-uniqueid=\"{carrier_leg}\">▶ carrier leg")),
        "the carrier leg feeds during the cut:\n{row}"
    );
    assert!(row.contains(&format!("<li class=\"leg data\" data-uniqueid=\"{data_leg}\">data leg")), "{row}");
    let failover = during
        .lines()
        .find(|l| l.starts_with("<tr class=\"switch failover\""))
        .unwrap_or_else(|| panic!("no failover row:\n{during}"));
    for want in [
        format!("data-session=\"{session}\""),
        format!("carrier {carrier_leg}"),
        "failover: stall".to_string(),
        format!("<td class=\"silence\">{gap} ms</td>"),
    ] {
        assert!(failover.contains(&want), "the newest failover row lacks {want:?}:\n{failover}");
    }
    took += browser.screenshot(page, 1280, 720, &shots.join("2-wifi-cut.png")).took;

    // Wi-Fi is back: the preferred data leg takes the mix back.
    let before_heal = ami.events().len();
    cut.heal();
    event_after(&ami, &h, before_heal, "HandoffLegSwitched", |e| e.headers.get("To") == Some("data"));
    settle_on(&ami, "data");
    let (after, _) = load_and_check(&mut browser, page, &ami, &session, &mut took);
    assert!(after.contains("preferred-recovered"), "the take-back is listed:\n{after}");
    let shown_after_heal = failovers_shown(&after);
    took += browser.screenshot(page, 1280, 720, &shots.join("3-wifi-back.png")).took;

    // The session's timeline link opens its picture, drawn from what handoffd recorded: both
    // legs' lanes and the failover at the cut with the silence the module measured.
    let (status, body) = request(&api_addr, "GET", &format!("/status/sessions/{session}/timeline.svg"), None);
    assert!(status.starts_with("HTTP/1.1 200") && body.starts_with("<svg"), "{status}\n{body}");
    assert!(during.contains(&format!("/status/sessions/{session}/timeline.svg")), "the page links the picture");
    let picture = format!("http://{api_addr}/status/sessions/{session}/timeline.svg");
    let svg = browser.dump_dom(&picture);
    took += svg.took;
    for want in ["alice-phone · data", "alice-phone · carrier", "far party", &format!("{gap} ms"), "data leg feeds"] {
        assert!(svg.stdout.contains(want), "the timeline picture lacks {want:?}:\n{}", svg.stdout);
    }
    took += browser.screenshot(&picture, 1280, 720, &shots.join("4-timeline.png")).took;
    let (status, _) = request(&api_addr, "GET", "/status/nothing", None);
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    // The call ends; the page says no call runs, and keeps the failovers in its recent list.
    let log = || h.log().join("\n");
    data.wait(60 * SEC).unwrap_or_else(|e| panic!("data leg scenario: {e}; handoffd:\n{}", log()));
    carrier
        .wait(60 * SEC)
        .unwrap_or_else(|e| panic!("carrier leg (hung up when the app leg is): {e}; handoffd:\n{}", log()));
    far.wait(60 * SEC).unwrap_or_else(|e| panic!("far party (gets its BYE): {e}; handoffd:\n{}", log()));
    nothing_left(&ast, &ami, &h, &api_addr, &metrics_addr, &token);
    let stalls = switch_events(&ami).iter().filter(|e| e.headers.get("Reason") == Some("stall")).count();
    let ended = browser.dump_dom(page);
    took += ended.took;
    assert!(ended.stdout.contains("no call runs now"), "{}", ended.stdout);
    // A switch the module makes while the call is torn down finds no session any more.
    let shown = failovers_shown(&ended.stdout);
    assert!((shown_after_heal..=stalls).contains(&shown), "{shown} failovers shown, {stalls} made:\n{}", ended.stdout);

    for name in ["1-both-legs.png", "2-wifi-cut.png", "3-wifi-back.png", "4-timeline.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert_eq!(png_size(&png), Some((1280, 720)), "{name}");
        assert!(png.len() > 10_000, "{name} is only {} bytes: an empty page?", png.len());
    }
    println!(
        "status page: Chromium started in {:.1} s; {} page loads took {:.1} s in all ({stalls} failover(s) seen); the test {:.1} s; screenshots in {}",
        browser.started_in.as_secs_f64(),
        browser.runs(),
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        shots.display()
    );
}

#[test]
fn on_a_listener_that_is_not_loopback_the_status_pages_need_the_admin_token() {
    // No PBX (port 9 refuses): the page shows the link down. The API listens on every
    // address, on a port of its own (other tests use 9188); no metrics listener.
    let (dir, store) = fresh_state("wide");
    let token_file = dir.join("admin-token");
    let config = format!(
        "{}api:\n  listen: 0.0.0.0:0\n  admin_token_file: {}\nmetrics:\n  listen: \"\"\n{store}",
        testbed_config(9, AMI_SECRET),
        token_file.display()
    );
    let h = Handoffd::spawn(&config);
    assert!(h.wait_log("api: listening on http://0.0.0.0:", 10 * SEC).is_some(), "{:#?}", h.log());
    let addr = bound(&h, "api");
    let token = std::fs::read_to_string(&token_file).expect("handoffd made the admin token").trim().to_string();

    for bearer in [None, Some("wrong"), Some(&token[..token.len() - 1])] {
        let (status, body) = request(&addr, "GET", "/status", bearer);
        assert!(status.starts_with("HTTP/1.1 401"), "{bearer:?}: {status}\n{body}");
        assert!(body.contains("need Authorization: Bearer <api.admin_token_file>"), "{body}");
        assert!(!body.contains("<html"), "{body}");
    }
    let (status, _) = request(&addr, "GET", "/status/sessions/x/timeline.svg", None);
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    let (status, body) = request(&addr, "GET", "/status", Some(&token));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{body}");
    assert!(body.contains("<h2>PBX link</h2>") && body.contains("class=\"down\""), "{body}");
    let (status, body) = request(&addr, "GET", "/status/sessions/x/timeline.svg", Some(&token));
    assert!(
        status.starts_with("HTTP/1.1 404") && body.trim() == "no timeline for this session (unknown, or purged)",
        "{status}\n{body}"
    );
    let (status, _) = request(&addr, "POST", "/status", Some(&token));
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    // Each refusal is in the audit log.
    let (status, audit) = request(&addr, "GET", "/v1/admin/audit?tail=20", Some(&token));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("the audit log as JSON");
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["record"]["reason"] == "admin request GET /status without a valid admin token")
        .count();
    assert_eq!(refused, 3, "{audit}");
}
