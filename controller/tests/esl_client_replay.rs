//! The ESL client driven by the recorded FreeSWITCH conversations: the server's bytes are fed
//! in the recorded chunks and order (with the recorded times as `now`), the same commands are
//! given as typed [`Command`]s when the recorded client sent them, and the bytes the client
//! produces must be the recorded client bytes.

mod esl_support;

use esl_support::{load, names, Dir, Recording};
use handoff::esl::{
    Client, ClientConfig, ClientError, Command, CommandError, EventFormat, Failure, Output, ReplyStatus, State,
};

/// Reads one recorded command the way a caller would have written it as a typed command.
/// Text that is not a header after the first line (05's `bgapi eval multi\nline?`) is taken
/// as part of the command, as a careless caller might.
fn typed(text: &[u8]) -> (Command, usize) {
    let s = String::from_utf8_lossy(text).into_owned();
    let head_end = s.find("\n\n").map_or(s.len(), |i| i + 2);
    let mut lines = s[..head_end].lines();
    let first = lines.next().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut stray = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        match l.split_once(": ") {
            Some((k, v)) => headers.push((k.to_string(), v.to_string())),
            None => stray.push(l.to_string()),
        }
    }
    let mut used = head_end;
    let mut body = None;
    if let Some(pos) = headers.iter().position(|(k, _)| k.eq_ignore_ascii_case("Content-Length")) {
        let len: usize = headers.remove(pos).1.parse().expect("recorded Content-Length");
        body = Some(text[head_end..head_end + len].to_vec());
        used += len;
    }
    let mut words = first.splitn(2, ' ');
    let word = words.next().unwrap_or("");
    let rest = words.next();
    let names = |r: Option<&str>| r.unwrap_or("").split(' ').filter(|w| !w.is_empty()).map(String::from).collect();
    let format = |f: &str| match f {
        "plain" => Some(EventFormat::Plain),
        "json" => Some(EventFormat::Json),
        "xml" => Some(EventFormat::Xml),
        _ => None,
    };
    let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    let cmd = match (word, rest) {
        ("api", Some(c)) => Command::api(c),
        ("bgapi", Some(c)) => {
            let mut command = c.to_string();
            for l in &stray {
                command.push('\n');
                command.push_str(l);
            }
            Command::Bgapi { command, job_uuid: header("Job-UUID") }
        }
        ("event", Some(r)) => {
            let (f, n) = r.split_once(' ').unwrap_or((r, ""));
            Command::Event { format: format(f).expect("recorded event format"), names: names(Some(n)) }
        }
        ("myevents", r) => {
            let mut parts: Vec<String> = names(r);
            let fmt = parts.first().and_then(|p| format(p));
            if fmt.is_some() {
                parts.remove(0);
            }
            Command::MyEvents { format: fmt, uuid: parts.pop() }
        }
        ("nixevent", r) => Command::NixEvent { names: names(r) },
        ("noevents", None) => Command::NoEvents,
        ("filter", Some(r)) => match r.strip_prefix("delete ") {
            Some(d) => {
                let (h, v) = d.split_once(' ').map_or((d, None), |(h, v)| (h, Some(v.to_string())));
                Command::FilterDelete { header: h.to_string(), value: v }
            }
            None => {
                let (h, v) = r.split_once(' ').expect("recorded filter value");
                Command::Filter { header: h.to_string(), value: v.to_string() }
            }
        },
        ("sendmsg", uuid) => Command::SendMsg { uuid: uuid.map(String::from), headers, body },
        ("sendevent", Some(n)) => Command::SendEvent { name: n.to_string(), headers, body },
        ("linger", r) => Command::Linger { seconds: r.map(|n| n.parse().expect("recorded linger seconds")) },
        ("nolinger", None) => Command::NoLinger,
        ("log", Some(l)) => Command::Log { level: l.to_string() },
        ("nolog", None) => Command::NoLog,
        ("divert_events", Some(on)) => Command::DivertEvents { on: on == "on" },
        ("exit", None) => Command::Exit,
        _ => Command::Other { line: first.clone() },
    };
    (cmd, used)
}

/// A recorded client write, as typed commands. Leading blank lines are skipped.
fn commands_in(chunk: &[u8]) -> Vec<Command> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < chunk.len() {
        while chunk.get(at) == Some(&b'\n') {
            at += 1;
        }
        if at >= chunk.len() {
            break;
        }
        let (cmd, used) = typed(&chunk[at..]);
        out.push(cmd);
        at += used;
    }
    out
}

/// Recorded writes the encoder must refuse or write differently, and what is sent instead.
fn deviation(name: &str, chunk: &[u8]) -> Option<(Vec<Command>, &'static str)> {
    match (name, chunk) {
        ("04_api_replies", b"api status\r\n\r\n") => {
            let refused = Command::api("status\r").encode();
            assert!(matches!(refused, Err(CommandError::LineBreak { .. })), "{refused:?}");
            Some((vec![Command::api("status")], "CR is refused; the encoder writes LF only"))
        }
        ("04_api_replies", b"\n\napi hostname\n\n") => {
            Some((vec![Command::api("hostname")], "the encoder writes no stray blank lines"))
        }
        ("05_bgapi_plain", b"bgapi eval multi\nline?\n\n") => {
            let refused = commands_in(chunk)[0].encode();
            assert!(matches!(refused, Err(CommandError::LineBreak { .. })), "{refused:?}");
            // FreeSWITCH ran `eval multi` (Job-Command-Arg: multi) and ignored the second line
            Some((vec![Command::bgapi("eval multi")], "a line break in a command is refused"))
        }
        _ => None,
    }
}

struct Replay {
    client: Client,
    outputs: Vec<Output>,
    errors: Vec<ClientError>,
    deviations: Vec<&'static str>,
}

fn password(rec: &Recording) -> String {
    let c2s = String::from_utf8_lossy(&rec.c2s).into_owned();
    let line = c2s.lines().find_map(|l| l.strip_prefix("auth ")).expect("an auth line");
    line.to_string()
}

fn replay(name: &str, config: ClientConfig) -> Replay {
    let rec = load(name);
    let mut client =
        if rec.outbound { Client::outbound(config, 0) } else { Client::inbound(password(&rec), config, 0) };
    let mut r = Replay {
        client: Client::outbound(ClientConfig::default(), 0),
        outputs: vec![],
        errors: vec![],
        deviations: vec![],
    };
    for chunk in &rec.chunks {
        let now = chunk.t_ms;
        match chunk.dir {
            Dir::S2c => {
                if let Err(e) = client.handle_bytes(&chunk.bytes, now) {
                    r.errors.push(e);
                }
            }
            Dir::Eof => client.handle_eof(now),
            // handoffd closed its socket (22–28): what FreeSWITCH sent after it is still fed,
            // as a client that reads until the end would see it.
            Dir::ClientEof => {}
            Dir::C2s => {
                let is_handshake = chunk.bytes.starts_with(b"auth ") || chunk.bytes == b"connect\n\n";
                let (cmds, deviates) = match deviation(name, &chunk.bytes) {
                    Some((cmds, why)) => {
                        r.deviations.push(why);
                        (cmds, true)
                    }
                    None if is_handshake => (vec![], false),
                    None => (commands_in(&chunk.bytes), false),
                };
                for cmd in cmds {
                    client
                        .send(cmd.clone(), now)
                        .unwrap_or_else(|e| panic!("{name}: chunk {}: {cmd:?}: {e}", chunk.index));
                }
                let produced: Vec<u8> = std::iter::from_fn(|| client.poll_transmit()).flatten().collect();
                if !deviates {
                    assert_eq!(
                        String::from_utf8_lossy(&produced),
                        String::from_utf8_lossy(&chunk.bytes),
                        "{name}: chunk {}: the client's bytes are the recorded client's",
                        chunk.index
                    );
                }
            }
        }
        r.outputs.extend(std::iter::from_fn(|| client.poll_output()));
    }
    assert!(client.poll_transmit().is_none(), "{name}: nothing left to send");
    r.client = client;
    r
}

fn count(outputs: &[Output], pred: impl Fn(&Output) -> bool) -> usize {
    outputs.iter().filter(|o| pred(o)).count()
}

fn refusals(outputs: &[Output]) -> Vec<(String, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Failed { command, failure: Failure::Refused(text), .. } => Some((command.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn every_recording_replays_through_the_client() {
    for name in names() {
        if name.starts_with("03_") {
            continue; // commands before auth: see its own test
        }
        let r = replay(&name, ClientConfig::default());
        let o = &r.outputs;
        if name.starts_with("02_") {
            assert_eq!(r.errors, vec![ClientError::AuthFailed { reply_text: "-ERR invalid".into() }], "{name}");
        } else {
            assert!(r.errors.is_empty(), "{name}: {:?}", r.errors);
            assert!(
                matches!(o.last(), Some(Output::Disconnected { linger: false, notice: Some(_) })),
                "{name}: ends with the disconnect notice: {:?}",
                o.last()
            );
        }
        assert_eq!(r.client.state(), State::Closed, "{name}");
        assert_eq!(r.client.pending_commands(), 0, "{name}");
        assert_eq!(r.client.pending_jobs(), 0, "{name}");
        // every command was answered, none lost to the disconnect but 05's unsubscribed bgapi
        let lost = count(o, |o| matches!(o, Output::Failed { failure: Failure::Disconnected, .. }));
        assert_eq!(lost, usize::from(name.starts_with("05_")), "{name}");
        // every event comes out once, as an event or as a finished job
        let decoded = esl_support::decode_all(&name, &[&load(&name).s2c]);
        let events = decoded.iter().filter(|m| matches!(m, handoff::esl::EslMessage::Event(_))).count();
        let surfaced = count(o, |o| matches!(o, Output::Event { .. } | Output::JobDone { .. }));
        assert_eq!(surfaced, events, "{name}");
        let deviations = match name.as_str() {
            "04_api_replies" => 2,
            "05_bgapi_plain" => 1,
            _ => 0,
        };
        assert_eq!(r.deviations.len(), deviations, "{name}: {:?}", r.deviations);
    }
}

#[test]
fn commands_given_before_auth_wait_for_it() {
    // 03's client wrote `api status` and `event plain ALL` before authenticating and got
    // `-ERR command not found` for each; this client holds them until `+OK accepted`.
    let rec = load("03_preauth_command_then_auth");
    let mut c = Client::inbound("ClueCon", ClientConfig::default(), 0);
    let early = c.send(Command::api("status"), 0).unwrap();
    assert!(c.poll_transmit().is_none());
    let s2c: Vec<_> = rec.chunks.iter().filter(|c| c.dir == Dir::S2c).collect();
    let c2s: Vec<_> = rec.chunks.iter().filter(|c| c.dir == Dir::C2s).map(|c| c.bytes.clone()).collect();
    assert!(s2c[1].bytes.ends_with(b"Reply-Text: -ERR command not found\n\n"));
    c.handle_bytes(&s2c[0].bytes, s2c[0].t_ms).unwrap(); // auth/request
    assert_eq!(c.poll_transmit(), Some(c2s[2].clone()), "auth ClueCon");
    c.handle_bytes(&s2c[3].bytes, s2c[3].t_ms).unwrap(); // +OK accepted (the two -ERR skipped)
    assert_eq!(c.poll_transmit(), Some(c2s[3].clone()), "the held api status");
    c.handle_bytes(&s2c[4].bytes, s2c[4].t_ms).unwrap();
    c.send(Command::Exit, 6000).unwrap();
    assert_eq!(c.poll_transmit(), Some(c2s[4].clone()), "exit");
    c.handle_bytes(&s2c[5].bytes, s2c[5].t_ms).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| c.poll_output()).collect();
    assert_eq!(out[0], Output::Authenticated);
    assert!(
        matches!(&out[1], Output::ApiResult { id, response, .. } if *id == early && response.text().starts_with("UP 0 years"))
    );
    assert!(
        matches!(&out[2], Output::Replied { command, reply, .. } if command == "exit" && reply.text() == "+OK bye")
    );
    assert!(matches!(&out[3], Output::Disconnected { linger: false, .. }));
}

#[test]
fn api_failures_name_their_command() {
    let r = replay("04_api_replies", ClientConfig::default());
    assert_eq!(
        refusals(&r.outputs),
        vec![
            ("api global_getvar switch_serial".into(), "-ERR no reply".into()),
            ("api nosuchcommand with args".into(), "-ERR nosuchcommand Command not found!".into()),
            ("api originate error/USER_BUSY &park".into(), "-ERR USER_BUSY".into()),
            ("api uuid_kill 00000000-0000-0000-0000-000000000000".into(), "-ERR No such channel!".into()),
            ("api ".into(), "-ERR  Command not found!".into()),
            ("bogus_command".into(), "-ERR command not found".into()),
        ]
    );
    let results = count(&r.outputs, |o| matches!(o, Output::ApiResult { .. }));
    assert_eq!(results, 15);
    let hostname = r.outputs.iter().find_map(|o| match o {
        Output::ApiResult { command, response, .. } if command == "api hostname" => Some(response.text().into_owned()),
        _ => None,
    });
    assert_eq!(hostname.as_deref(), Some("vm"));
}

#[test]
fn bgapi_jobs_are_matched_by_job_uuid() {
    let r = replay("05_bgapi_plain", ClientConfig::default());
    let accepted: Vec<&str> = r
        .outputs
        .iter()
        .filter_map(|o| if let Output::JobAccepted { job_uuid, .. } = o { Some(job_uuid.as_str()) } else { None })
        .collect();
    assert_eq!(accepted.len(), 6);
    assert_eq!(accepted[2], "11111111-2222-3333-4444-555555555555");
    let done: Vec<(String, String, ReplyStatus)> = r
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::JobDone { command, job_uuid, status, .. } => Some((command.clone(), job_uuid.clone(), *status)),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 5);
    assert_eq!(done[1], ("bgapi version".into(), "11111111-2222-3333-4444-555555555555".into(), ReplyStatus::Other));
    assert_eq!(done[2].2, ReplyStatus::Err, "nosuchcommand");
    assert_eq!(done[3].2, ReplyStatus::Err, "failing originate");
    assert_eq!(done[4].0, "bgapi eval multi");
    // the first bgapi, sent before subscribing to BACKGROUND_JOB, never finishes
    let lost: Vec<&Output> = r.outputs.iter().filter(|o| matches!(o, Output::Failed { .. })).collect();
    assert!(
        matches!(lost.as_slice(), [Output::Failed { command, failure: Failure::Disconnected, .. }] if command == "bgapi status")
    );
    assert_eq!(count(&r.outputs, |o| matches!(o, Output::Event { .. })), 0);

    // with a job timeout it is reported when the time comes instead
    let config = ClientConfig { job_timeout_ms: Some(1500), ..ClientConfig::default() };
    let mut c = Client::inbound("ClueCon", config, 0);
    let rec = load("05_bgapi_plain");
    c.handle_bytes(&rec.chunks[0].bytes, 0).unwrap();
    c.handle_bytes(&rec.chunks[2].bytes, 1).unwrap();
    c.send(Command::bgapi("status"), 1).unwrap();
    c.handle_bytes(&rec.chunks[4].bytes, 2).unwrap();
    assert_eq!(c.poll_timeout(), Some(1502));
    c.handle_timeout(1502).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| c.poll_output()).collect();
    assert!(matches!(out.last(), Some(Output::Failed { failure: Failure::TimedOut, .. })), "{out:?}");
}

#[test]
fn events_can_be_released_in_sequence_order() {
    let plain = replay("07_event_plain_all_loopback", ClientConfig::default());
    let seqs = |outputs: &[Output]| -> Vec<(u64, bool)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Event { event, late } => Some((event.sequence().unwrap(), *late)),
                Output::JobDone { event, .. } => Some((event.sequence().unwrap(), false)),
                _ => None,
            })
            .collect()
    };
    let arrival = seqs(&plain.outputs);
    assert_eq!(arrival.iter().filter(|(_, late)| *late).map(|(s, _)| *s).collect::<Vec<_>>(), vec![474, 466, 501]);
    let config = ClientConfig { reorder_window_ms: 100, ..ClientConfig::default() };
    let ordered = replay("07_event_plain_all_loopback", config);
    let got = seqs(&ordered.outputs);
    assert_eq!(got.len(), arrival.len());
    assert!(got.iter().all(|(_, late)| !late), "{got:?}");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
    assert!(ordered
        .outputs
        .iter()
        .any(|o| matches!(o, Output::JobDone { command, .. } if command.starts_with("bgapi uuid_kill"))));
}

#[test]
fn outbound_sockets_connect_linger_and_close() {
    for (name, lingers) in
        [("12_outbound_async_full", true), ("13_outbound_linger_timeout", true), ("14_outbound_sync_full", false)]
    {
        let r = replay(name, ClientConfig::default());
        let o = &r.outputs;
        let Output::Connected { channel } = &o[0] else { panic!("{name}: {:?}", o[0]) };
        assert_eq!(channel.get("Event-Name"), Some("CHANNEL_DATA"));
        let disconnects: Vec<bool> = o
            .iter()
            .filter_map(|o| if let Output::Disconnected { linger, .. } = o { Some(*linger) } else { None })
            .collect();
        assert_eq!(disconnects, if lingers { vec![true, false] } else { vec![false] }, "{name}");
        if lingers {
            // the linger notice follows the channel's last events
            let linger_at = o.iter().position(|o| matches!(o, Output::Disconnected { linger: true, .. })).unwrap();
            let hangup_at = o
                .iter()
                .position(|o| matches!(o, Output::Event { event, .. } if event.name().is("CHANNEL_HANGUP_COMPLETE")))
                .unwrap();
            assert!(hangup_at < linger_at, "{name}");
            assert_eq!(refusals(o), vec![("getvar lab_var".into(), "-ERR command not found".into())], "{name}");
            let api = o.iter().find_map(|o| {
                if let Output::ApiResult { response, .. } = o {
                    Some(response.text())
                } else {
                    None
                }
            });
            assert_eq!(api.as_deref(), Some("_undef_"));
        }
        let replies = count(o, |o| matches!(o, Output::Replied { .. }));
        assert_eq!(
            replies,
            if name.starts_with("12") {
                8
            } else if name.starts_with("13") {
                7
            } else {
                4
            },
            "{name}"
        );
    }
    // the control connections' bgapi originate finishes only when the outbound socket closed
    for name in
        ["12_outbound_async_full.control", "13_outbound_linger_timeout.control", "14_outbound_sync_full.control"]
    {
        let r = replay(name, ClientConfig::default());
        assert!(
            r.outputs.iter().any(
                |o| matches!(o, Output::JobDone { status: ReplyStatus::Ok, output, .. } if output.starts_with("+OK "))
            ),
            "{name}"
        );
    }
}

#[test]
fn filters_log_and_odd_replies() {
    let r = replay("11_filters_sendevent_log", ClientConfig::default());
    assert_eq!(
        refusals(&r.outputs),
        vec![
            ("event".into(), "-ERR no keywords supplied".into()),
            ("filter".into(), "-ERR command not found".into()),
            ("myevents".into(), "-ERR command not found".into()),
            ("divert_events on".into(), "-ERR not controlling a session.".into()),
        ]
    );
    assert_eq!(count(&r.outputs, |o| matches!(o, Output::Log(l) if l.level() == Some(5))), 1);
    let events: Vec<String> = r
        .outputs
        .iter()
        .filter_map(|o| if let Output::Event { event, .. } = o { Some(event.name().to_string()) } else { None })
        .collect();
    assert_eq!(events, vec!["CUSTOM lab::ping", "CUSTOM lab::pong", "CUSTOM lab::ping", "CUSTOM lab::ping"]);
}

#[test]
fn shutdown_and_myevents_close_the_socket() {
    for name in ["16_inbound_myevents_sendmsg", "17_shutdown_notice"] {
        let r = replay(name, ClientConfig::default());
        let Some(Output::Disconnected { linger: false, notice: Some(n) }) = r.outputs.last() else { panic!("{name}") };
        if name.starts_with("17") {
            assert_eq!(n.text(), "The system is being shut down.\n");
            assert!(r
                .outputs
                .iter()
                .any(|o| matches!(o, Output::JobDone { command, .. } if command == "bgapi fsctl shutdown")));
        } else {
            assert_eq!(n.controlled_session(), Some("fbce63a7-2a2c-4087-9a0c-353eb4994259"));
        }
    }
}
