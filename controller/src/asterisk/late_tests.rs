//! Tests of the driver's guards against late and runaway input: far channels that appear for
//! sessions that are gone, decisions the module refused, and a flood of events while the
//! channel list is read (issue 12, items 1 and 3).

use super::tests::{driver, events, sent};
use super::*;

/// Logs in and sends `CoreShowChannels`; returns the driver waiting for the list.
fn listing() -> AsteriskDriver {
    let mut d = driver();
    d.connected(0);
    d.receive(b"Asterisk Call Manager/11.0.0\r\n", 1);
    d.receive(b"Response: Success\r\nActionID: handoffd-1\r\nMessage: Authentication accepted\r\n\r\n", 2);
    let _ = events(&mut d);
    assert!(sent(&mut d).contains("Action: CoreShowChannels\r\n"));
    d
}

fn ready() -> AsteriskDriver {
    let mut d = listing();
    d.receive(
        b"Response: Success\r\nActionID: handoffd-2\r\nEventList: start\r\n\r\n\
          Event: CoreShowChannelsComplete\r\nActionID: handoffd-2\r\nEventList: Complete\r\n\r\n",
        3,
    );
    let _ = events(&mut d);
    let _ = sent(&mut d);
    d
}

#[test]
fn a_flood_of_events_while_the_list_is_read_drops_the_link_instead_of_growing() {
    let mut d = listing();
    let one = b"Event: Newexten\r\nChannel: PJSIP/x-1\r\nUniqueid: 1.1\r\nAppData: something long enough\r\n\r\n";
    let mut chunk = Vec::new();
    for _ in 0..1000 {
        chunk.extend_from_slice(one);
    }
    let mut fed = 0;
    while fed < MAX_HELD_EVENTS + 5_000 {
        d.receive(&chunk, 3);
        fed += 1000;
        if let Phase::Listing(_, held, _) = &d.phase {
            assert!(held.len() <= MAX_HELD_EVENTS, "held {}", held.len());
        }
    }
    let ev = events(&mut d);
    assert!(
        matches!(&ev[..], [DriverEvent::Down(e)] if !e.is_fatal() && e.to_string().contains(&format!("more than {MAX_HELD_EVENTS} events arrived while the channel list was read"))),
        "{ev:?}"
    );
    assert!(matches!(d.phase, Phase::Down), "the held events are dropped with the link");
    // The daemon reconnects: a fresh login and a fresh snapshot.
    d.connected(10);
    d.receive(b"Asterisk Call Manager/11.0.0\r\n", 11);
    assert!(sent(&mut d).contains("Action: Login\r\n"));
}

#[test]
fn big_events_while_the_list_is_read_are_bounded_in_bytes_too() {
    let mut d = listing();
    let mut one = b"Event: Newexten\r\nChannel: PJSIP/x-1\r\nUniqueid: 1.1\r\nAppData: ".to_vec();
    one.extend(std::iter::repeat_n(b'x', 60_000));
    one.extend_from_slice(b"\r\n\r\n");
    let mut fed = 0;
    let mut ev = Vec::new();
    while ev.is_empty() {
        d.receive(&one, 3);
        fed += 1;
        if let Phase::Listing(_, _, bytes) = &d.phase {
            assert!(*bytes <= MAX_HELD_BYTES + 64 * 1024, "held {bytes} bytes");
        }
        ev = events(&mut d);
        assert!(fed < 1_000, "never dropped: {fed} events of 60 kB held");
    }
    assert!(fed < MAX_HELD_EVENTS, "the byte bound, not the count, dropped the link");
    assert!(
        matches!(&ev[..], [DriverEvent::Down(e)] if e.to_string().contains("MiB of events arrived while the channel list was read")),
        "{ev:?}"
    );
    assert!(matches!(d.phase, Phase::Down), "the held events are dropped with the link");
}

#[test]
fn a_far_channel_created_or_answered_is_reported_to_the_core() {
    let mut d = ready();
    d.receive(b"Event: Newchannel\r\nChannel: PJSIP/far-00000001\r\nUniqueid: ab-1-far\r\n\r\n", 4);
    d.receive(b"Event: Newchannel\r\nChannel: PJSIP/alice-app-00000001\r\nUniqueid: 1700.1\r\n\r\n", 4);
    // An answer to an originate the driver no longer follows still names the far channel.
    d.receive(
        b"Event: OriginateResponse\r\nActionID: handoffd-77\r\nResponse: Success\r\nUniqueid: ab-2-far\r\n\r\n",
        5,
    );
    let ev = events(&mut d);
    assert!(
        matches!(&ev[..], [DriverEvent::Input(Input::FarSeen { uniqueid: a }), DriverEvent::Input(Input::FarSeen { uniqueid: b })] if a == "ab-1-far" && b == "ab-2-far"),
        "{ev:?}"
    );
}

#[test]
fn a_refused_assign_tells_the_core_the_leg_is_gone() {
    let mut d = ready();
    let assign = Command::Assign {
        uniqueid: "1700.5".into(),
        session: crate::session::SessionId("ab-1".into()),
        bridge: "handoff-ab-1".into(),
        group: "ab-1/alice".into(),
        preferred: Path::Data,
        alignment: None,
    };
    d.command(&assign, 10);
    let text = sent(&mut d);
    let id = text.lines().find_map(|l| l.strip_prefix("ActionID: ")).expect("an ActionID").to_string();
    let reply = format!(
        "Response: Error\r\nActionID: {id}\r\nMessage: HandoffAssign: Uniqueid 1700.5 is not waiting in Handoff() (gone, timed out or never there)\r\n\r\n"
    );
    d.receive(reply.as_bytes(), 11);
    let ev = events(&mut d);
    assert!(
        matches!(&ev[..], [DriverEvent::Input(Input::AssignRefused { uniqueid, why })] if uniqueid == "1700.5" && why.contains("not waiting")),
        "{ev:?}"
    );
    // An accepted assign says nothing and is forgotten.
    d.command(&assign, 12);
    let text = sent(&mut d);
    let id = text.lines().find_map(|l| l.strip_prefix("ActionID: ")).expect("an ActionID").to_string();
    d.receive(format!("Response: Success\r\nActionID: {id}\r\n\r\n").as_bytes(), 13);
    assert!(events(&mut d).is_empty());
    assert!(d.assigns.is_empty());
}

/// Legs that hung up while the link was down leave no path behind: the channel list read after
/// the reconnect is what still lives (before, each stayed until 10 000 were kept, and the legs
/// after that had no path to read their hang-up cause with).
#[test]
fn paths_of_legs_gone_while_the_link_was_down_are_forgotten_at_the_snapshot() {
    let mut d = ready();
    for i in 0..3 {
        let arrived = format!(
            "Event: HandoffLegArrived\r\nChannel: PJSIP/alice-app-{i}\r\nUniqueid: 5.{i}\r\nEndpoint: alice-app\r\n\
             Path: data\r\nFar: 2000\r\nToken: \r\nSecret: \r\n\r\n"
        );
        d.receive(arrived.as_bytes(), 4);
    }
    assert_eq!(d.paths.len(), 3);
    // The link drops; legs 5.0 and 5.1 hang up meanwhile; 5.2 is still there after the reconnect.
    d.connected(10);
    d.receive(b"Asterisk Call Manager/11.0.0\r\n", 11);
    let login = sent(&mut d);
    let id = |text: &str, action: &str| {
        let at = text.find(&format!("Action: {action}\r\n")).unwrap();
        text[at..].lines().find_map(|l| l.strip_prefix("ActionID: ")).unwrap().to_string()
    };
    let login_id = id(&login, "Login");
    d.receive(format!("Response: Success\r\nActionID: {login_id}\r\n\r\n").as_bytes(), 12);
    let list = id(&sent(&mut d), "CoreShowChannels");
    d.receive(
        format!(
            "Response: Success\r\nActionID: {list}\r\nEventList: start\r\n\r\n\
             Event: CoreShowChannel\r\nActionID: {list}\r\nChannel: PJSIP/alice-app-2\r\nUniqueid: 5.2\r\n\r\n\
             Event: CoreShowChannelsComplete\r\nActionID: {list}\r\nEventList: Complete\r\n\r\n"
        )
        .as_bytes(),
        13,
    );
    assert!(matches!(&events(&mut d)[..], [DriverEvent::Up(_), DriverEvent::Snapshot(c)] if c.len() == 1));
    assert_eq!(d.paths.keys().collect::<Vec<_>>(), ["5.2"]);
    // The one left still reads its hang-up as a data leg's.
    d.receive(b"Event: Hangup\r\nUniqueid: 5.2\r\nCause: 16\r\n\r\n", 14);
    assert!(d.paths.is_empty());
}
