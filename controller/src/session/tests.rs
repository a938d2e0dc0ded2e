//! The session machine's unit tests: sessions opening, pairing, failing over, holding, ending,
//! moving and being adopted, with the commands and states each input leads to (the property
//! test against a model is `controller/tests/session_props.rs`).

use super::arrival::normalise_number;
use super::*;
use crate::hangup_cause::q850;

pub(crate) fn alice() -> Device {
    Device {
        id: "alice-phone".into(),
        user: "alice".into(),
        endpoint: Some("alice-app".into()),
        number: Some("+15550001".into()),
        caller_id: None,
    }
}

fn core() -> Sessions {
    Sessions::new(Rules::default(), vec![alice(), alice_tablet()], "t")
}

pub(crate) fn core_with(rules: Rules, devices: Vec<Device>) -> Sessions {
    Sessions::new(rules, devices, "t")
}

/// Alice's leg on `path` calling `far`.
pub(crate) fn leg_to(uniqueid: &str, path: Path, far: &str) -> Input {
    let mut l = leg(uniqueid, path);
    if let Input::LegArrived(a) = &mut l {
        a.far = far.into();
    }
    l
}

fn alice_tablet() -> Device {
    Device {
        id: "alice-tablet".into(),
        user: "alice".into(),
        endpoint: Some("alice-tablet".into()),
        number: None,
        caller_id: None,
    }
}

fn tablet_leg(uniqueid: &str, far: &str, token: &str) -> LegArrival {
    LegArrival {
        uniqueid: uniqueid.into(),
        channel: format!("PJSIP/alice-tablet-{uniqueid}"),
        caller: "alice-tablet".into(),
        endpoint: "alice-tablet".into(),
        path: Path::Data,
        far: far.into(),
        token: token.into(),
    }
}

/// Alice's phone on a connected call over both paths.
fn connected_on_both_paths() -> Sessions {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(leg("1.2", Path::Carrier), 10);
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
    c
}

#[test]
fn a_move_joins_the_new_device_hangs_up_every_old_leg_and_bars_the_old_device() {
    let mut c = connected_on_both_paths();
    let tablet = alice_tablet();
    let b = tablet_leg("2.1", MOVE_FAR, "ticket-x");
    let out = c.move_to(&sid(), &tablet, &b, 300_000, 5_000).unwrap();
    assert_eq!(
        out.commands,
        vec![Command::Assign {
            uniqueid: "2.1".into(),
            session: sid(),
            bridge: "handoff-t1".into(),
            group: "t1/alice-tablet".into(),
            preferred: Path::Data,
            alignment: None,
        }]
    );
    // The old legs go only once the new one is in the conference.
    let out = c.handle(Input::LegJoined { uniqueid: "1.1".into() }, 5_001);
    assert!(out.commands.is_empty());
    let out = c.handle(Input::LegJoined { uniqueid: "2.1".into() }, 5_002);
    assert_eq!(
        out.commands,
        vec![
            Command::Hangup { uniqueid: "1.1".into(), cause: MOVED_AWAY_CAUSE },
            Command::Hangup { uniqueid: "1.2".into(), cause: MOVED_AWAY_CAUSE },
        ]
    );
    let v = c.view(&sid()).unwrap();
    assert_eq!((v.device.as_str(), v.user.as_str()), ("alice-tablet", "alice"));
    assert_eq!(v.barred, vec![("alice-phone".into(), 300_000)]);
    // The old legs' hangups (cause 16 from the phone, as Asterisk reports our own hangup
    // too) are not the user hanging up: the call goes on, on the tablet.
    c.handle(hangup("1.1"), 5_010);
    c.handle(hangup("1.2"), 5_011);
    assert_eq!(c.state(&sid()), Some(State::Connected));
    assert_eq!(c.live_legs(&sid()), vec![("2.1".into(), Path::Data)]);
    // The phone calling the far number again during the bar is refused and reported.
    let out = c.handle(leg("1.3", Path::Data), 6_000);
    assert!(matches!(&out.commands[..], [Command::Refuse { uniqueid, .. }] if uniqueid == "1.3"));
    assert_eq!(out.barred.len(), 1);
    assert!(out.barred[0].2.contains("barred from session t1"), "{}", out.barred[0].2);
    assert_eq!(c.live_legs(&sid()).len(), 1, "the refusal changes nothing");
    // After the bar, the phone may call that number again: a new call.
    let out = c.handle(leg("1.4", Path::Data), 300_001);
    assert!(out.commands.iter().any(|c| matches!(c, Command::OriginateFar { .. })));
    // Hanging up on the tablet ends the call.
    let out = c.handle(hangup("2.1"), 400_000);
    assert!(out.commands.contains(&Command::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING }));
}

#[test]
fn a_move_of_a_session_that_is_not_connected_or_gone_is_refused_and_changes_nothing() {
    let mut c = core();
    let tablet = alice_tablet();
    c.handle(leg("1.1", Path::Data), 0);
    let err = c.move_to(&sid(), &tablet, &tablet_leg("2.1", MOVE_FAR, ""), 1_000, 10).unwrap_err();
    assert_eq!(err.to_string(), "session t1 is not connected");
    assert_eq!(c.view(&sid()).unwrap().device, "alice-phone");
    let err = c.move_to(&SessionId("nope".into()), &tablet, &tablet_leg("2.1", MOVE_FAR, ""), 1_000, 10);
    assert_eq!(err.unwrap_err(), MoveRefused::Ended { session: SessionId("nope".into()) });
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
    let err = c.move_to(&sid(), &tablet, &tablet_leg("1.1", MOVE_FAR, ""), 1_000, 1_000).unwrap_err();
    assert!(matches!(err, MoveRefused::LegInASession { .. }), "{err}");
    assert_eq!(c.live_legs(&sid()), vec![("1.1".into(), Path::Data)]);
}

#[test]
fn a_move_whose_new_leg_goes_before_joining_leaves_the_call_on_the_old_device() {
    let mut c = connected_on_both_paths();
    c.move_to(&sid(), &alice_tablet(), &tablet_leg("2.1", MOVE_FAR, ""), 300_000, 5_000).unwrap();
    let out = c.handle(hangup("2.1"), 5_100);
    assert!(out.commands.is_empty(), "{:?}", out.commands);
    let v = c.view(&sid()).unwrap();
    assert_eq!((v.device.as_str(), v.barred.len(), v.legs.len()), ("alice-phone", 0, 2));
    assert_eq!(c.state(&sid()), Some(State::Connected));
    // The phone's legs are the user's again: hanging one up ends the call.
    let out = c.handle(hangup("1.1"), 6_000);
    assert!(out.commands.contains(&Command::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING }));
}

#[test]
fn the_live_session_of_a_user_is_found_on_another_device_only() {
    let c = connected_on_both_paths();
    assert_eq!(c.live_session_of_user("alice", "alice-tablet"), Some(sid()));
    assert_eq!(c.live_session_of_user("alice", "alice-phone"), None);
    assert_eq!(c.live_session_of_user("bob", "bob-phone"), None);
}

#[test]
fn ended_sessions_are_reported_with_their_reason() {
    let mut c = connected_on_both_paths();
    c.handle(hangup("1.1"), 1_000);
    c.handle(lost("1.2"), 1_001);
    let out = c.handle(hangup("t1-far"), 1_002);
    assert_eq!(out.ended, vec![(sid(), "the phone hung up its data leg".to_string())]);
}

fn leg(uniqueid: &str, path: Path) -> Input {
    Input::LegArrived(LegArrival {
        uniqueid: uniqueid.into(),
        channel: format!("PJSIP/{}-{uniqueid}", path.as_str()),
        caller: if path == Path::Carrier { "+1 555 0001".into() } else { "alice-app".into() },
        endpoint: if path == Path::Data { "alice-app".into() } else { "carrier".into() },
        path,
        far: "2000".into(),
        token: String::new(),
    })
}

fn hangup(uniqueid: &str) -> Input {
    Input::Hangup { uniqueid: uniqueid.into(), cause: q850::NORMAL_CLEARING, cause_txt: "Normal Clearing".into() }
}

/// A leg lost to the network (not the user hanging up).
fn lost(uniqueid: &str) -> Input {
    Input::Hangup {
        uniqueid: uniqueid.into(),
        cause: q850::NORMAL_TEMPORARY_FAILURE,
        cause_txt: "Temporary failure".into(),
    }
}

fn sid() -> SessionId {
    SessionId("t1".into())
}

fn assign(uniqueid: &str) -> Command {
    Command::Assign {
        uniqueid: uniqueid.into(),
        session: sid(),
        bridge: "handoff-t1".into(),
        group: "t1/alice-phone".into(),
        preferred: Path::Data,
        alignment: None,
    }
}

#[test]
fn the_first_leg_opens_a_session_and_calls_the_far_party_at_once_with_the_users_caller_id() {
    let mut c = core();
    let out = c.handle(leg("1.1", Path::Data), 0);
    assert_eq!(
        out.commands,
        vec![
            assign("1.1"),
            Command::OriginateFar {
                session: sid(),
                uniqueid: "t1-far".into(),
                number: "2000".into(),
                bridge: "handoff-t1".into(),
                caller_id: "+15550001".into()
            },
        ]
    );
    assert_eq!(c.state(&sid()), Some(State::AwaitingFarAnswer));
    assert_eq!(c.bridge(&sid()), Some("handoff-t1"));
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 900);
    assert_eq!(c.state(&sid()), Some(State::Connected));
}

#[test]
fn the_alignment_rule_goes_with_every_assign_of_the_session() {
    let rules = Rules { alignment: Some(Alignment::LowLatency), ..Rules::default() };
    let mut c = core_with(rules, vec![alice()]);
    let first = c.handle(leg("1.1", Path::Data), 0);
    let second = c.handle(leg("1.2", Path::Carrier), 10);
    let alignments: Vec<_> = [first, second]
        .iter()
        .flat_map(|o| o.commands.iter())
        .filter_map(|cmd| match cmd {
            Command::Assign { alignment, .. } => Some(*alignment),
            _ => None,
        })
        .collect();
    assert_eq!(alignments, [Some(Alignment::LowLatency); 2]);
}

#[test]
fn the_carrier_leg_pairs_by_caller_id_into_the_same_session() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    let out = c.handle(leg("1.2", Path::Carrier), 300);
    assert_eq!(out.commands, vec![assign("1.2")], "no second far call");
    assert_eq!(c.live_legs(&sid()).len(), 2);
    assert!(out.records[0].what.contains("paired after 300 ms"));
}

#[test]
fn one_leg_dying_continues_on_the_other_then_grace_then_rejoin() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(leg("1.2", Path::Carrier), 10);
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
    let out = c.handle(lost("1.1"), 1000);
    assert!(out.commands.is_empty());
    assert_eq!(c.state(&sid()), Some(State::Connected));
    c.handle(lost("1.2"), 2000);
    assert_eq!(c.state(&sid()), Some(State::Grace { until: 32_000 }));
    let out = c.handle(leg("1.3", Path::Data), 5000);
    assert_eq!(out.commands, vec![assign("1.3")]);
    assert_eq!(c.state(&sid()), Some(State::Connected));
}

#[test]
fn the_user_hanging_up_one_leg_ends_the_whole_call() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(leg("1.2", Path::Carrier), 10);
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
    let out = c.handle(hangup("1.2"), 5000);
    assert_eq!(
        out.commands,
        vec![
            Command::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING },
            Command::Hangup { uniqueid: "1.1".into(), cause: q850::NORMAL_CLEARING }
        ]
    );
    c.handle(hangup("1.1"), 5010);
    c.handle(hangup("t1-far"), 5020);
    assert!(c.is_empty());
}

#[test]
fn grace_runs_out_and_the_far_party_is_released() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
    c.handle(lost("1.1"), 100);
    assert_eq!(c.next_timeout(), Some(30_100));
    let out = c.handle(Input::Tick, 30_100);
    assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "t1-far".into(), cause: q850::NORMAL_CLEARING }]);
    c.handle(hangup("t1-far"), 30_200);
    assert!(c.is_empty());
}

#[test]
fn a_stalled_leg_is_declared_dead_after_seconds_and_a_redial_replaces_it() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(leg("1.2", Path::Carrier), 10);
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 20);
    c.handle(Input::LegStalled { uniqueid: "1.1".into(), silent_ms: 40 }, 1000);
    assert_eq!(c.next_timeout(), Some(960 + 10_000));
    // The app re-dials over the returning Wi-Fi before the old leg is declared dead.
    let out = c.handle(leg("1.3", Path::Data), 3000);
    assert_eq!(
        out.commands,
        vec![Command::Hangup { uniqueid: "1.1".into(), cause: q850::NORMAL_CLEARING }, assign("1.3")]
    );
    assert!(c.handle(hangup("1.1"), 3010).commands.is_empty(), "our own hangup of the old leg ends nothing");
    assert_eq!(c.state(&sid()), Some(State::Connected));
    // A carrier leg that stalls and never recovers is hung up after leg_dead_after.
    c.handle(Input::LegStalled { uniqueid: "1.2".into(), silent_ms: 40 }, 4000);
    c.handle(Input::LegRecovered { uniqueid: "1.2".into() }, 4500);
    assert!(c.handle(Input::Tick, 20_000).commands.is_empty(), "recovered: not dead");
    c.handle(Input::LegStalled { uniqueid: "1.2".into(), silent_ms: 40 }, 21_000);
    let out = c.handle(Input::Tick, 21_000 - 40 + 10_000);
    assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.2".into(), cause: q850::NORMAL_CLEARING }]);
}

#[test]
fn bad_legs_are_refused_with_a_reason_and_change_nothing() {
    let mut c = core();
    // unknown device
    let mut stranger = leg("9.1", Path::Data);
    if let Input::LegArrived(l) = &mut stranger {
        l.endpoint = "mallory-app".into();
    }
    let out = c.handle(stranger, 0);
    assert!(
        matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason == "unknown device: no registered device has endpoint 'mallory-app'")
    );
    assert!(c.is_empty());
    // a third leg for an already-paired device
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(leg("1.2", Path::Carrier), 10);
    let out = c.handle(leg("1.3", Path::Carrier), 20);
    assert!(
        matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason.contains("already has a live carrier leg"))
    );
    assert_eq!(c.live_legs(&sid()).len(), 2);
    // a re-dial just after the session ended is a new call (the late second leg of an
    // ended call is refused: see session/late.rs)
    c.handle(hangup("t1-far"), 100);
    c.handle(hangup("1.1"), 110);
    c.handle(hangup("1.2"), 120);
    assert!(c.is_empty());
    let out = c.handle(leg("1.4", Path::Data), 1000);
    assert!(matches!(&out.commands[..], [Command::Assign { .. }, Command::OriginateFar { .. }]));
}

#[test]
fn a_token_used_by_another_device_is_refused() {
    let bob = Device {
        id: "bob-phone".into(),
        user: "bob".into(),
        endpoint: Some("bob-app".into()),
        number: None,
        caller_id: None,
    };
    let mut c = Sessions::new(Rules::default(), vec![alice(), bob], "t");
    let with_token = |uid: &str, endpoint: &str| {
        Input::LegArrived(LegArrival {
            uniqueid: uid.into(),
            channel: format!("PJSIP/{endpoint}"),
            caller: String::new(),
            endpoint: endpoint.into(),
            path: Path::Data,
            far: "2000".into(),
            token: "t0k3n".into(),
        })
    };
    c.handle(with_token("1.1", "alice-app"), 0);
    let out = c.handle(with_token("2.1", "bob-app"), 5);
    assert!(
        matches!(&out.commands[..], [Command::Refuse { reason, .. }] if reason == "pairing token already used by device 'alice-phone'")
    );
    assert_eq!(c.len(), 1);
}

#[test]
fn far_failures_end_the_legs_with_the_far_cause() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    let out = c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "busy".into(), no_channel: true }, 50);
    assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: q850::USER_BUSY }]);
    c.handle(hangup("1.1"), 60);
    assert!(c.is_empty());
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    let out = c.handle(
        Input::Hangup { uniqueid: "t1-far".into(), cause: q850::NO_ANSWER, cause_txt: "No answer".into() },
        30_000,
    );
    assert_eq!(out.commands, vec![Command::Hangup { uniqueid: "1.1".into(), cause: q850::NO_ANSWER }]);
}

#[test]
fn ending_sessions_are_dropped_after_the_linger_time_if_hangups_never_come() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(hangup("1.1"), 100);
    assert_eq!(c.next_timeout(), Some(100 + ENDING_LINGER_MS));
    c.handle(Input::Tick, 100 + ENDING_LINGER_MS);
    assert!(c.is_empty());
    assert_eq!(c.next_timeout(), None);
}

#[test]
fn a_running_session_is_adopted_and_then_followed() {
    let mut c = core();
    let found = Found {
        session: SessionId("old-7".into()),
        bridge: "handoff-old-7".into(),
        device: "alice-phone".into(),
        far: Some("old-7-far".into()),
        legs: vec![
            ("9.1".into(), "PJSIP/alice-app-1".into(), Path::Data),
            ("9.2".into(), "PJSIP/carrier-2".into(), Path::Carrier),
        ],
        far_number: "2000".into(),
    };
    c.adopt(found.clone(), 0);
    let id = SessionId("old-7".into());
    assert_eq!(c.state(&id), Some(State::Connected));
    assert!(c.adopt(found, 1).records.is_empty(), "adopting twice changes nothing");
    let out = c.handle(hangup("old-7-far"), 100);
    assert_eq!(
        out.commands,
        vec![
            Command::Hangup { uniqueid: "9.1".into(), cause: q850::NORMAL_CLEARING },
            Command::Hangup { uniqueid: "9.2".into(), cause: q850::NORMAL_CLEARING }
        ]
    );
    // a new leg of the same device is a third leg while both are alive
    c.handle(lost("9.1"), 110);
    c.handle(lost("9.2"), 120);
    assert!(c.is_empty());
    assert_eq!(
        c.device_of_channel("alice-app", "").map(|(d, p)| (d.id.as_str(), p)),
        Some(("alice-phone", Path::Data))
    );
    assert_eq!(c.device_of_channel("carrier", "+15550001").map(|(_, p)| p), Some(Path::Carrier));
}

#[test]
fn numbers_compare_without_formatting() {
    assert_eq!(normalise_number("+1 555-0001"), "+15550001");
    assert_eq!(normalise_number("0015550001"), "+15550001");
}

/// A move lives only while the session is connected: when the call ends before the new leg
/// joined, the move is undone at once (the call stays the old device's, which is not barred).
#[test]
fn a_move_under_way_when_the_call_ends_is_undone() {
    let mut c = connected_on_both_paths();
    c.move_to(&sid(), &alice_tablet(), &tablet_leg("2.1", MOVE_FAR, ""), 300_000, 5_000).unwrap();
    let out = c.handle(hangup("t1-far"), 5_100);
    assert!(out.records.iter().any(|r| r.what.contains("move abandoned")), "{:?}", out.records);
    let v = c.view(&sid()).unwrap();
    assert_eq!((v.device.as_str(), v.barred.len()), ("alice-phone", 0));
    assert!(matches!(v.state, State::Ending { .. }));
    // The new leg joining now hangs up nothing more.
    assert!(c.handle(Input::LegJoined { uniqueid: "2.1".into() }, 5_101).commands.is_empty());
}

/// The wait for a failed far call's hangup belongs to `AwaitingFarAnswer`: an answer ends it,
/// and a leg's stall timer is the only deadline left.
#[test]
fn timers_belong_to_their_state() {
    let mut c = core();
    c.handle(leg("1.1", Path::Data), 0);
    c.handle(Input::FarFailed { uniqueid: "t1-far".into(), reason: "busy".into(), no_channel: false }, 100);
    assert_eq!(c.next_timeout(), Some(100 + FAR_HANGUP_WAIT_MS));
    c.handle(Input::FarAnswered { uniqueid: "t1-far".into() }, 200);
    assert_eq!(c.next_timeout(), None);
    c.handle(Input::LegStalled { uniqueid: "1.1".into(), silent_ms: 40 }, 1_000);
    assert_eq!(c.next_timeout(), Some(960 + 10_000));
    // Ending stops the leg's timer: only the linger is left.
    c.handle(hangup("t1-far"), 2_000);
    assert_eq!(c.next_timeout(), Some(2_000 + ENDING_LINGER_MS));
}
