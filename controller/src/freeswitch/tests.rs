//! Unit tests of the FreeSWITCH driver on hand-written events (the recorded ones are in
//! `controller/tests/fs_driver_replay.rs` and `esl_live_replay.rs`).

use super::*;
use crate::session::Command;

#[test]
fn names_are_read_from_channel_names_and_application_data() {
    assert_eq!(user_of("sofia/internal/alice-app@10.0.0.1:5060"), "alice-app");
    assert_eq!(user_of("loopback/parkme-a"), "loopback/parkme-a");
    assert_eq!(conference_of("handoff-s-1@handoff+flags{mute}"), "handoff-s-1");
    assert_eq!(conference_of("test@default"), "test");
    assert!(dialable("+15550002") && !dialable("1}sofia/x") && !dialable(""));
    assert_eq!(clean("a\nb\rc"), "a b c");
}

/// A driver logged in whose snapshot (`show channels`) is asked for and not yet answered.
fn snapshot_pending() -> FreeSwitchDriver {
    let cfg = Config::parse("pbx: freeswitch\nesl:\n  password: pw\n", "t.yaml").unwrap();
    let esl = cfg.esl.clone().unwrap();
    let mut d = FreeSwitchDriver::new(cfg, esl);
    d.connected(0);
    d.receive(b"Content-Type: auth/request\n\n", 1);
    d.receive(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n", 2);
    d.receive(b"Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n", 3);
    d
}

fn ready() -> FreeSwitchDriver {
    let mut d = snapshot_pending();
    d.receive(b"Content-Type: api/response\nContent-Length: 16\n\n{\"row_count\": 0}", 4);
    d.resynced(5);
    let _ = sent(&mut d);
    let ev = events(&mut d);
    assert!(matches!(&ev[..], [DriverEvent::Up { .. }, DriverEvent::Snapshot(c)] if c.is_empty()), "{ev:?}");
    d
}

fn sent(d: &mut FreeSwitchDriver) -> String {
    std::iter::from_fn(|| d.poll_transmit()).map(|b| String::from_utf8(b).unwrap()).collect()
}

fn events(d: &mut FreeSwitchDriver) -> Vec<DriverEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

fn event(d: &mut FreeSwitchDriver, headers: &[(&str, &str)]) -> Vec<DriverEvent> {
    let text: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    let e = crate::esl::parse_plain(text.as_bytes()).unwrap();
    d.on_event(&e, 10);
    events(d)
}

fn park(d: &mut FreeSwitchDriver, uuid: &str, path: &str, user: &str) -> Vec<DriverEvent> {
    event(
        d,
        &[
            ("Event-Name", "CHANNEL_PARK"),
            ("Unique-ID", uuid),
            ("Channel-Name", &format!("sofia/internal/{user}@10.0.0.1")),
            ("Caller-Caller-ID-Number", "+15550001"),
            ("variable_handoff_far", "15550002"),
            ("variable_handoff_path", path),
            ("variable_handoff_token", "ab-12%0A%7D"),
        ],
    )
}

fn join(d: &mut FreeSwitchDriver, uuid: &str, member: &str) -> Vec<DriverEvent> {
    event(
        d,
        &[
            ("Event-Name", "CUSTOM"),
            ("Event-Subclass", "conference::maintenance"),
            ("Action", "add-member"),
            ("Unique-ID", uuid),
            ("Member-ID", member),
        ],
    )
}

fn assign(d: &mut FreeSwitchDriver, uuid: &str) -> String {
    let cmd = Command::Assign {
        uniqueid: uuid.into(),
        session: crate::session::SessionId("s".into()),
        bridge: "handoff-s".into(),
        group: "s/phone".into(),
        preferred: Path::Data,
        alignment: None,
    };
    d.command(&cmd, 10);
    sent(d)
}

#[test]
fn a_parked_leg_arrives_joins_muted_and_one_leg_feeds_the_mix() {
    let mut d = ready();
    let ev = park(&mut d, "u1", "data", "alice-app");
    let [DriverEvent::Input(Input::LegArrived(leg))] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!((leg.endpoint.as_str(), leg.path, leg.far.as_str()), ("alice-app", Path::Data, "15550002"));
    assert_eq!(leg.token, "ab-12", "only letters, digits and - pass");
    assert_eq!(assign(&mut d, "u1"), "api uuid_transfer u1 answer,conference:handoff-s@handoff+flags{mute} inline\n\n");
    // The first leg in feeds the mix: no switch to report.
    assert_eq!(join(&mut d, "u1", "5"), vec![DriverEvent::Input(Input::LegJoined { uniqueid: "u1".into() })]);
    assert_eq!(sent(&mut d), "api conference handoff-s unmute 5\n\n");
    // The carrier leg stays muted while the preferred data leg feeds, and the two legs of
    // the device do not hear each other.
    park(&mut d, "u2", "carrier", "carrier");
    assign(&mut d, "u2");
    join(&mut d, "u2", "6");
    assert_eq!(
        sent(&mut d),
        "api conference handoff-s relate 6 5 nohear\n\napi conference handoff-s relate 5 6 nohear\n\n"
    );
    // Wi-Fi gone: FreeSWITCH's media timeout hangs the data leg up; the carrier leg is
    // unmuted on that event.
    let ev = event(&mut d, &[("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "u1"), ("Hangup-Cause", "MEDIA_TIMEOUT")]);
    assert_eq!(sent(&mut d), "api conference handoff-s unmute 6\n\n");
    assert_eq!(
        ev,
        vec![
            DriverEvent::Failover { gap_ms: None },
            DriverEvent::Input(Input::LegSwitched {
                uniqueid: "u2".into(),
                to: Path::Carrier,
                reason: "the data leg hung up (MEDIA_TIMEOUT)".into(),
                gap_ms: None
            })
        ]
    );
    // The app calls back in: the preferred path takes the mix back, muting first.
    park(&mut d, "u3", "data", "alice-app");
    assign(&mut d, "u3");
    let ev = join(&mut d, "u3", "7");
    assert_eq!(
        sent(&mut d),
        "api conference handoff-s mute 6\n\napi conference handoff-s unmute 7\n\n\
         api conference handoff-s relate 7 6 nohear\n\napi conference handoff-s relate 6 7 nohear\n\n"
    );
    assert_eq!(
        ev[1],
        DriverEvent::Input(Input::LegSwitched {
            uniqueid: "u3".into(),
            to: Path::Data,
            reason: "the data leg joined".into(),
            gap_ms: None
        })
    );
    assert_eq!(ev.len(), 2, "a leg joining is no failover");
}

#[test]
fn legs_being_hung_up_are_never_unmuted() {
    // A two-leg device moved away: handoffd kills both legs (MANAGER_REQUEST, which
    // FreeSWITCH reports back as the cause: a lost leg, not the user). The feeding data
    // leg's hang-up must not hand the mix to the carrier leg, which is going too.
    let mut d = ready();
    park(&mut d, "u1", "data", "alice-app");
    assign(&mut d, "u1");
    join(&mut d, "u1", "5");
    park(&mut d, "u2", "carrier", "carrier");
    assign(&mut d, "u2");
    join(&mut d, "u2", "6");
    let _ = sent(&mut d);
    let _ = events(&mut d);
    d.command(&Command::Hangup { uniqueid: "u1".into(), cause: 26 }, 10);
    d.command(&Command::Hangup { uniqueid: "u2".into(), cause: 26 }, 10);
    assert_eq!(sent(&mut d), "api uuid_kill u1 MANAGER_REQUEST\n\napi uuid_kill u2 MANAGER_REQUEST\n\n");
    let ev =
        event(&mut d, &[("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "u1"), ("Hangup-Cause", "MANAGER_REQUEST")]);
    assert_eq!(ev, vec![]);
    assert_eq!(sent(&mut d), "", "no unmute of a leg being hung up");
    let ev = event(
        &mut d,
        &[("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", "u1"), ("Hangup-Cause", "MANAGER_REQUEST")],
    );
    assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegEnded { end: LegEnd::Lost, cause: 16, .. })]), "{ev:?}");
}

#[test]
fn a_pin_keyed_in_for_a_move_is_read_once_and_cleared_from_the_channel() {
    let mut d = ready();
    let ev = event(
        &mut d,
        &[
            ("Event-Name", "CHANNEL_PARK"),
            ("Unique-ID", "u4"),
            ("Channel-Name", "sofia/internal/alice-desk@10.0.0.2"),
            ("variable_handoff_far", "move"),
            ("variable_handoff_path", "data"),
            ("variable_handoff_token", "pin-2468"),
        ],
    );
    let [DriverEvent::Input(Input::LegArrived(leg))] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!((leg.endpoint.as_str(), leg.far.as_str(), leg.token.as_str()), ("alice-desk", "move", "pin-2468"));
    assert_eq!(sent(&mut d), "api uuid_setvar u4 handoff_token\n\n");
    // A ticket is spent when presented: nothing to clear.
    park(&mut d, "u5", "data", "alice-desk");
    assert_eq!(sent(&mut d), "");
}

/// An api response frame, as FreeSWITCH sends it.
fn api_response(text: &str) -> Vec<u8> {
    format!("Content-Type: api/response\nContent-Length: {}\n\n{text}", text.len()).into_bytes()
}

#[test]
fn err_replies_and_unknown_calls_change_nothing_and_bad_frames_drop_the_link() {
    let mut d = ready();
    park(&mut d, "u1", "data", "alice-app");
    assign(&mut d, "u1");
    // The leg hung up between its park and handoffd's transfer: -ERR, noted, nothing else.
    d.receive(&api_response("-ERR No such channel!\n"), 20);
    assert_eq!(events(&mut d), vec![]);
    assert_eq!(sent(&mut d), "");
    // Events of calls handoffd never saw: no command, only what the session machine ignores.
    let ev = event(&mut d, &[("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "nobody")]);
    assert_eq!(ev, vec![]);
    let ev = event(&mut d, &[("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "nobody")]);
    assert_eq!(ev, vec![]);
    let ev = event(
        &mut d,
        &[("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", "nobody"), ("Hangup-Cause", "NORMAL_CLEARING")],
    );
    assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegEnded { cause: 16, .. })]), "{ev:?}");
    assert_eq!(sent(&mut d), "");
    // The link still works: the leg's own hangup reaches the session machine.
    let ev = event(
        &mut d,
        &[("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", "u1"), ("Hangup-Cause", "ORIGINATOR_CANCEL")],
    );
    assert!(matches!(&ev[..], [DriverEvent::Input(Input::LegEnded { cause: 16, .. })]), "{ev:?}");

    // An oversized frame: the link is dropped with a reason naming it (then reconnected).
    d.receive(b"Content-Type: api/response\nContent-Length: 99999999\n\n", 30);
    let ev = events(&mut d);
    let [DriverEvent::Down(LinkError::Lost { why, .. })] = &ev[..] else { panic!("{ev:?}") };
    assert!(why.contains("Content-Length 99999999 exceeds"), "{why}");

    // A dropped socket.
    let mut d = ready();
    d.closed(40);
    let ev = events(&mut d);
    let [DriverEvent::Down(LinkError::Lost { why, .. })] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(why, "FreeSWITCH closed the connection");
}

#[test]
fn bad_dial_plan_values_are_refused_on_the_call_not_dropped() {
    let mut d = ready();
    assert!(park(&mut d, "u9", "wifi", "alice-app").is_empty());
    assert_eq!(
        sent(&mut d),
        "api uuid_setvar u9 handoff_reason the dial plan set handoff_path to 'wifi': must be data or carrier\n\n\
         api uuid_setvar u9 handoff_status REFUSED\n\n\
         api uuid_transfer u9 handoff-refused XML handoff\n\n"
    );
    let far = Command::OriginateFar {
        session: crate::session::SessionId("s".into()),
        uniqueid: "s-far".into(),
        number: "1}sofia/gateway/evil/2".into(),
        bridge: "handoff-s".into(),
        caller_id: String::new(),
    };
    d.command(&far, 10);
    assert_eq!(sent(&mut d), "");
    let ev = events(&mut d);
    assert!(
        matches!(&ev[..], [DriverEvent::Input(Input::FarFailed { no_channel: true, reason, .. })] if reason.contains("cannot carry")),
        "{ev:?}"
    );
    // A refusal's reason is one line even if a caller ID smuggled a line break in.
    d.command(&Command::Refuse { uniqueid: "u8".into(), reason: "unknown caller ID 'x\r\ny'".into() }, 11);
    assert!(sent(&mut d).starts_with("api uuid_setvar u8 handoff_reason unknown caller ID 'x  y'\n\n"));
}

#[test]
fn events_flooding_the_snapshot_drop_the_link_instead_of_growing() {
    let mut d = snapshot_pending();
    let _ = events(&mut d);
    // The snapshot (`show channels`) is pending: a flood of events, never its answer.
    let mut down = Vec::new();
    for n in 1..=MAX_HELD_DURING_SNAPSHOT + 10 {
        let body = format!("{{\"Event-Name\":\"HEARTBEAT\",\"Event-Sequence\":\"{n}\"}}");
        let frame = format!("Content-Length: {}\nContent-Type: text/event-json\n\n{body}", body.len());
        d.receive(frame.as_bytes(), 4 + n as u64 * REORDER_WINDOW_MS);
        assert!(d.held.len() <= MAX_HELD_DURING_SNAPSHOT);
        down.extend(events(&mut d));
        if !down.is_empty() {
            break;
        }
    }
    let [DriverEvent::Down(LinkError::Lost { why, .. })] = &down[..] else { panic!("{down:?}") };
    assert!(why.contains("while the channel snapshot was read"), "{why}");
    assert_eq!(d.held.capacity(), 0, "the held events are freed");
}

#[test]
fn big_events_during_the_snapshot_are_bounded_in_bytes_too() {
    let mut d = snapshot_pending();
    let _ = events(&mut d);
    let pad = "x".repeat(200_000);
    let mut down = Vec::new();
    let mut fed = 0u64;
    while down.is_empty() {
        fed += 1;
        let body = format!("{{\"Event-Name\":\"HEARTBEAT\",\"Event-Sequence\":\"{fed}\",\"Pad\":\"{pad}\"}}");
        let frame = format!("Content-Length: {}\nContent-Type: text/event-json\n\n{body}", body.len());
        d.receive(frame.as_bytes(), 4 + fed * REORDER_WINDOW_MS);
        assert!(d.held_bytes <= MAX_HELD_BYTES_DURING_SNAPSHOT + 256 * 1024);
        down.extend(events(&mut d));
        assert!(fed < 1_000, "never dropped");
    }
    assert!(fed < 200, "the byte bound, not the count, dropped the link after {fed} events");
    let [DriverEvent::Down(LinkError::Lost { why, .. })] = &down[..] else { panic!("{down:?}") };
    assert!(why.contains("MiB of events came while the channel snapshot was read"), "{why}");
}
