//! The FreeSWITCH driver against scripted replays of the recorded FreeSWITCH 1.11.2 traffic
//! (`tests/data/freeswitch-esl/`): what FreeSWITCH says comes from the recordings, frame by
//! frame and unchanged; what the driver sends is asserted, byte for byte, and where the
//! recording's client sent the same command, against the recorded client bytes.
//!
//! A script feeds the frames a session needs in recorded order. Replies that answered the
//! recording client's own commands are left out (the driver did not send those); where the
//! driver sends a command of its own, a recorded reply of the same kind answers it. Where one
//! connection lacks a reply the driver needs (10 never listed its channels), another
//! connection's recorded reply stands in, named in the script.

mod esl_support;

use esl_support::load;
use handoff::config::Config;
use handoff::freeswitch::FreeSwitchDriver;
use handoff::hangup_cause::LegEnd;
use handoff::pbx::{found_sessions, Driver, DriverEvent, LinkError};
use handoff::session::{Command, Device, Input, Path, Rules, SessionId, Sessions};

/// The recording's FreeSWITCH → client bytes cut into whole frames (header block, blank
/// line, `Content-Length` body), each kept as received.
fn frames(name: &str) -> Vec<Vec<u8>> {
    let bytes = load(name).s2c;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = at + bytes[at..].windows(2).position(|w| w == b"\n\n").expect("a header block") + 2;
        let header = String::from_utf8_lossy(&bytes[at..end]).into_owned();
        let len: usize = header
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|v| v.trim().parse().expect("Content-Length"))
            .unwrap_or(0);
        out.push(bytes[at..end + len].to_vec());
        at = end + len;
    }
    out
}

/// The recording's client commands, one per entry (each ends with a blank line).
fn client_commands(name: &str) -> Vec<String> {
    let text = String::from_utf8(load(name).c2s).expect("client bytes are text");
    text.split_inclusive("\n\n").map(str::to_string).collect()
}

fn config(extra: &str) -> Config {
    let text = format!("pbx: freeswitch\nesl:\n  password: ClueCon\n{extra}");
    Config::parse(&text, "test.yaml").expect("config")
}

struct Rig {
    driver: FreeSwitchDriver,
    now: u64,
}

impl Rig {
    fn new(cfg: Config) -> Self {
        let esl = cfg.esl.clone().expect("esl");
        let mut driver = FreeSwitchDriver::new(cfg, esl);
        driver.connected(0);
        Self { driver, now: 0 }
    }

    fn feed(&mut self, frame: &[u8]) -> Vec<DriverEvent> {
        self.now += 1;
        self.driver.receive(frame, self.now);
        self.events()
    }

    fn events(&mut self) -> Vec<DriverEvent> {
        std::iter::from_fn(|| self.driver.poll_event()).collect()
    }

    /// Everything the driver wrote since the last call.
    fn sent(&mut self) -> String {
        let mut s = String::new();
        while let Some(b) = self.driver.poll_transmit() {
            s.push_str(std::str::from_utf8(&b).expect("commands are text"));
        }
        s
    }

    /// Runs out the reorder window so that held events are released.
    fn settle(&mut self) -> Vec<DriverEvent> {
        self.now += 1_000;
        self.driver.timeout(self.now);
        self.events()
    }
}

fn inputs(events: &[DriverEvent]) -> Vec<&Input> {
    events.iter().filter_map(|e| if let DriverEvent::Input(i) = e { Some(i) } else { None }).collect()
}

const SUBSCRIBE: &str = "event json CHANNEL_CREATE CHANNEL_PARK CHANNEL_ANSWER CHANNEL_HANGUP \
                         CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB CUSTOM conference::maintenance\n\n";

/// The handshake on recorded bytes: `auth/request`, `+OK accepted`, then the subscription's
/// reply; the driver asks for the channel list next.
fn handshake(rig: &mut Rig, auth_request: &[u8], accepted: &[u8], subscribed: &[u8]) {
    assert!(rig.feed(auth_request).is_empty());
    assert_eq!(rig.sent(), "auth ClueCon\n\n");
    let up = rig.feed(accepted);
    assert!(matches!(&up[..], [DriverEvent::Up(up)] if up.to_string().contains("127.0.0.1:8021")), "{up:?}");
    assert_eq!(rig.sent(), format!("{SUBSCRIBE}api show channels as json\n\n"));
    assert!(rig.feed(subscribed).is_empty());
}

/// 08: two SIP calls in conference `test`. handoffd (re)connects while they run, takes the
/// conference over as a session (prefix `tes`), keeps one voice per device, fails over when
/// the feeding leg leaves, and reports both hangups with their Q.850 causes.
#[test]
fn a_running_conference_is_taken_over_and_fails_over_on_recorded_bytes() {
    let f = frames("08_event_json_conference_sipp");
    let recorded = client_commands("08_event_json_conference_sipp");
    assert_eq!(recorded[0], "auth ClueCon\n\n");
    let mut rig = Rig::new(config("conference:\n  name_prefix: tes\n"));
    handshake(&mut rig, &f[0], &f[1], &f[2]);
    assert!(recorded.contains(&"api show channels as json\n\n".to_string()));

    // The calls' events while the channels are read: held until the sessions are rebuilt.
    for i in (4..=10).chain(12..=15) {
        assert!(rig.feed(&f[i]).is_empty(), "frame {i} is held");
    }
    assert!(rig.settle().is_empty());
    // `show channels as json` (frame 19) names conference `test`: its members are read next.
    assert!(rig.feed(&f[19]).is_empty());
    let json_list = rig.sent();
    assert_eq!(json_list, "api conference test json_list\n\n");
    assert!(recorded.contains(&json_list), "the recorded client sent the same line");
    let snapshot = rig.feed(&f[18]);
    let [DriverEvent::Snapshot(channels)] = &snapshot[..] else { panic!("{snapshot:?}") };
    assert_eq!(channels.len(), 2);
    assert!(channels.iter().all(|c| c.conference.as_deref() == Some("test")));
    let mut who: Vec<(&str, &str)> = channels.iter().map(|c| (c.endpoint.as_str(), c.caller.as_str())).collect();
    who.sort();
    // FreeSWITCH reports these outbound legs with the callee as caller ID (cid_num "sipp1",
    // not the origination_caller_id_number 1001 the recording's client set).
    assert_eq!(who, vec![("sipp1", "sipp1"), ("sipp2", "sipp2")]);

    // The daemon's side: the registry knows one device whose app is sipp1 and whose carrier
    // number is 2 (what caller ID "sipp2" comes to once reduced to digits), so the conference
    // is its session `t` with a data and a carrier leg.
    let device = Device {
        id: "phone".into(),
        user: "u".into(),
        endpoint: Some("sipp1".into()),
        number: Some("2".into()),
        caller_id: None,
    };
    let sessions = Sessions::new(Rules::default(), vec![device], "n");
    let found = found_sessions(channels, &sessions, "tes");
    assert_eq!(found.len(), 1);
    let (data, carrier) = ("0fd62b94-a8ee-450f-bbc1-3eef8724f198", "29ce3b1b-0e47-4e95-84f2-b0674094ca00");
    assert_eq!(found[0].session, SessionId("t".into()));
    let mut legs: Vec<(&str, Path)> = found[0].legs.iter().map(|(u, _, p)| (u.as_str(), *p)).collect();
    legs.sort();
    assert_eq!(legs, vec![(data, Path::Data), (carrier, Path::Carrier)]);

    // Both members speak (json_list): the preferred data leg keeps the voice, the carrier
    // leg (member 2) is muted.
    rig.driver.adopted(&found[0], rig.now);
    assert_eq!(rig.sent(), "api conference test mute 2\n\n");
    // The held events come now: both joins, and no switch (nothing changed). The two legs of
    // the device stop hearing each other.
    rig.driver.resynced(rig.now);
    let held = rig.events();
    assert_eq!(
        inputs(&held),
        vec![&Input::LegJoined { uniqueid: data.into() }, &Input::LegJoined { uniqueid: carrier.into() }]
    );
    assert_eq!(rig.sent(), "api conference test relate 1 2 nohear\n\napi conference test relate 2 1 nohear\n\n");
    assert!(rig.feed(&f[23]).is_empty(), "a recorded `+OK mute` answers the mute");

    for i in [21, 22, 24, 26, 28, 29] {
        assert!(rig.feed(&f[i]).is_empty(), "frame {i}");
        assert_eq!(rig.sent(), "");
    }
    // Frame 30: the data leg (member 1, feeding) leaves the conference. The carrier leg is
    // unmuted at once and the session machine hears of the switch.
    let mut switched = rig.feed(&f[30]);
    switched.extend(rig.settle());
    assert_eq!(rig.sent(), "api conference test unmute 2\n\n");
    assert_eq!(
        switched,
        vec![
            DriverEvent::Failover { gap_ms: None },
            DriverEvent::Input(Input::LegSwitched {
                uniqueid: carrier.into(),
                to: Path::Carrier,
                reason: "the data leg left the conference".into(),
                gap_ms: None
            }),
        ]
    );
    assert!(rig.feed(&f[25]).is_empty(), "a recorded `+OK unmute` answers the unmute");
    let mut hangup = rig.feed(&f[31]);
    hangup.extend(rig.settle());
    assert_eq!(
        inputs(&hangup),
        vec![&Input::LegEnded {
            uniqueid: data.into(),
            cause: 16,
            cause_txt: "NORMAL_CLEARING".into(),
            end: LegEnd::ClearedByUser
        }]
    );

    // The session ends: handoffd hangs the carrier leg up with 21, the very line the
    // recording's client sent, answered by the recorded `+OK`.
    rig.driver.command(&Command::Hangup { uniqueid: carrier.into(), cause: 21 }, rig.now);
    let kill = rig.sent();
    assert_eq!(kill, format!("api uuid_kill {carrier} CALL_REJECTED\n\n"));
    assert!(recorded.contains(&kill));
    assert!(rig.feed(&f[36]).is_empty());
    for i in [32, 33, 34, 37, 38] {
        let ev = rig.feed(&f[i]);
        assert!(inputs(&ev).is_empty(), "frame {i}: {ev:?}");
    }
    let mut gone = rig.feed(&f[39]);
    gone.extend(rig.feed(&f[40]));
    gone.extend(rig.settle());
    assert_eq!(
        inputs(&gone),
        vec![&Input::LegEnded {
            uniqueid: carrier.into(),
            cause: 21,
            cause_txt: "CALL_REJECTED".into(),
            end: LegEnd::Lost
        }]
    );
    assert_eq!(rig.sent(), "", "the last leg leaving switches nothing");

    // FreeSWITCH's goodbye ends the link (handoffd reconnects).
    let down = rig.feed(&f[43]);
    assert!(
        matches!(&down[..], [DriverEvent::Down(LinkError::Lost { why, .. })] if why == "FreeSWITCH disconnected: Disconnected, goodbye."),
        "{down:?}"
    );
}

/// 10 (plain events): the far call's originate fails (its job says -ERR
/// NO_ROUTE_DESTINATION before any channel existed), and hangups carry their Q.850 causes.
/// 10 never listed its channels: 04's recorded empty list stands in.
#[test]
fn a_failed_originate_and_hangup_causes_on_recorded_bytes() {
    let f = frames("10_hangup_causes");
    let empty_list = frames("04_api_replies")[11].clone();
    assert!(String::from_utf8_lossy(&empty_list).ends_with("{\"row_count\": 0}\n"));
    let mut rig = Rig::new(config(""));
    handshake(&mut rig, &f[0], &f[1], &f[2]);
    let snapshot = rig.feed(&empty_list);
    assert_eq!(snapshot, vec![DriverEvent::Snapshot(vec![])]);
    rig.driver.resynced(rig.now);

    rig.driver.command(
        &Command::OriginateFar {
            session: SessionId("s1".into()),
            uniqueid: "s1-far".into(),
            number: "+15550002".into(),
            bridge: "handoff-s1".into(),
            caller_id: "+15550001".into(),
        },
        rig.now,
    );
    assert_eq!(
        rig.sent(),
        "bgapi originate {origination_uuid=s1-far,originate_timeout=30,handoff_session=s1,\
         origination_caller_id_number=+15550001}sofia/gateway/far/+15550002 &conference(handoff-s1@handoff)\n\n"
    );
    assert!(rig.feed(&f[32]).is_empty(), "the job is accepted");
    let mut failed = rig.feed(&f[33]);
    failed.extend(rig.settle());
    assert_eq!(
        inputs(&failed),
        vec![&Input::FarFailed { uniqueid: "s1-far".into(), reason: "no route destination".into(), no_channel: true }]
    );

    // CHANNEL_HANGUP says nothing to the session machine; _COMPLETE brings the Q.850 cause.
    let mut causes = Vec::new();
    for i in [5, 6, 7, 8, 11, 12, 13, 14, 17, 18, 19, 20] {
        let ev = rig.feed(&f[i]);
        causes.extend(ev);
    }
    causes.extend(rig.settle());
    let got: Vec<(String, u32, String)> = inputs(&causes)
        .into_iter()
        .map(|i| match i {
            Input::LegEnded { uniqueid, cause, cause_txt, .. } => {
                (uniqueid[..8].to_string(), *cause, cause_txt.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [
        ("eb3b96b6", 17, "USER_BUSY"),
        ("f0cd0e9b", 17, "USER_BUSY"),
        ("16100442", 41, "NORMAL_TEMPORARY_FAILURE"),
        ("0c1c4b98", 41, "NORMAL_TEMPORARY_FAILURE"),
        ("11edc54a", 16, "ORIGINATOR_CANCEL"),
        ("db1782a6", 16, "ORIGINATOR_CANCEL"),
    ];
    assert_eq!(got, want.iter().map(|(u, c, t)| (u.to_string(), *c, t.to_string())).collect::<Vec<_>>());
}

/// 07: parked loopback legs that the handoff dial plan did not send (no `handoff_far`) are
/// none of handoffd's business, whatever else they carry.
#[test]
fn parked_channels_without_handoff_variables_are_left_alone() {
    let f = frames("07_event_plain_all_loopback");
    let parks: Vec<&Vec<u8>> = f
        .iter()
        .filter(|m| {
            let t = String::from_utf8_lossy(m);
            t.contains("Content-Type: text/event-plain") && t.contains("Event-Name: CHANNEL_PARK")
        })
        .collect();
    assert_eq!(parks.len(), 2);
    let empty_list = frames("04_api_replies")[11].clone();
    let mut rig = Rig::new(config(""));
    handshake(&mut rig, &f[0], &f[1], &f[2]);
    rig.feed(&empty_list);
    rig.driver.resynced(rig.now);
    let mut ev = Vec::new();
    for p in parks {
        ev.extend(rig.feed(p));
    }
    ev.extend(rig.settle());
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(rig.sent(), "");
}

/// 02 and 17: a refused password stops handoffd with the fix (never the password); a
/// FreeSWITCH shutdown is a lost link, retried.
#[test]
fn a_wrong_password_is_fatal_and_a_shutdown_is_retried() {
    let f = frames("02_auth_wrong_password");
    let cfg = Config::parse("pbx: freeswitch\nesl:\n  password: not-the-password\n", "t.yaml").unwrap();
    let mut rig = Rig::new(cfg);
    rig.feed(&f[0]);
    assert_eq!(rig.sent(), "auth not-the-password\n\n");
    let mut ev = rig.feed(&f[1]);
    ev.extend(rig.feed(&f[2]));
    let [DriverEvent::Down(e)] = &ev[..] else { panic!("{ev:?}") };
    assert!(e.is_fatal());
    let line = e.to_string();
    assert!(
        line.contains("ESL auth at 127.0.0.1:8021 refused: -ERR invalid") && line.contains("esl.password"),
        "{line}"
    );
    assert!(!line.contains("not-the-password"));

    let f = frames("17_shutdown_notice");
    let mut rig = Rig::new(config(""));
    handshake(&mut rig, &f[0], &f[1], &f[2]);
    rig.feed(&frames("04_api_replies")[11]);
    rig.driver.resynced(rig.now);
    // Frames 3 and 4 answered the recording client's own bgapi: left out.
    assert!(rig.feed(&f[5]).is_empty(), "SHUTDOWN itself is just an event");
    let ev = rig.feed(&f[6]);
    let [DriverEvent::Down(e)] = &ev[..] else { panic!("{ev:?}") };
    assert!(!e.is_fatal());
    assert_eq!(
        e.to_string(),
        "ESL link to 127.0.0.1:8021 lost: FreeSWITCH disconnected: The system is being shut down."
    );
}
