//! Real FreeSWITCH 1.11.2 event-socket traffic (tests/data/freeswitch-esl/, 29 connections
//! recorded byte for byte; 22–28 are handoffd's own) through the ESL codec: every server
//! stream decoded whole, in the chunks `recv()` returned, one byte at a time and split in two
//! at many offsets, always to the same messages; then the content checked against what the
//! README says FreeSWITCH did.

mod esl_support;

use esl_support::{decode_all, load, names, Recording};
use handoff::esl::{
    parse_conference_json_list, parse_json, parse_plain, parse_show_channels_json, ApiResponse, Decoder, Disposition,
    EslMessage, Event, EventFormat, EventName, Reply, ReplyStatus,
};

fn events(msgs: &[EslMessage]) -> Vec<&Event> {
    msgs.iter().filter_map(|m| if let EslMessage::Event(e) = m { Some(e) } else { None }).collect()
}

fn replies(msgs: &[EslMessage]) -> Vec<&Reply> {
    msgs.iter().filter_map(|m| if let EslMessage::CommandReply(r) = m { Some(r) } else { None }).collect()
}

fn apis(msgs: &[EslMessage]) -> Vec<&ApiResponse> {
    msgs.iter().filter_map(|m| if let EslMessage::ApiResponse(a) = m { Some(a) } else { None }).collect()
}

fn decoded(name: &str) -> (Recording, Vec<EslMessage>) {
    let rec = load(name);
    let msgs = decode_all(name, &[&rec.s2c]);
    (rec, msgs)
}

/// Where each frame of the stream ends, from a whole decode.
fn frame_ends(name: &str, bytes: &[u8]) -> Vec<usize> {
    let mut d = Decoder::new();
    d.feed(bytes);
    let mut ends = Vec::new();
    while d.next_message().unwrap_or_else(|e| panic!("{name}: {e}")).is_some() {
        ends.push(d.position() as usize);
    }
    ends
}

/// Offsets worth splitting at: within 8 bytes of every blank line (frame ends and the nested
/// blank line of plain events) and of every recorded chunk boundary, and every 31st offset.
fn split_points(rec: &Recording) -> Vec<usize> {
    let len = rec.s2c.len();
    let mut marks: Vec<usize> = rec.s2c.windows(2).enumerate().filter(|(_, w)| w == b"\n\n").map(|(i, _)| i).collect();
    let mut at = 0;
    for c in rec.s2c_chunks() {
        at += c.len();
        marks.push(at);
    }
    let mut points: Vec<usize> = (0..len).step_by(31).collect();
    for m in marks {
        points.extend(m.saturating_sub(8)..(m + 9).min(len));
    }
    points.sort_unstable();
    points.dedup();
    points
}

#[test]
fn every_recording_decodes_the_same_whole_in_recorded_chunks_and_split_anywhere() {
    for name in names() {
        let (rec, whole) = decoded(&name);
        assert!(!whole.is_empty(), "{name}");
        assert_eq!(decode_all(&name, &rec.s2c_chunks()), whole, "{name}: in the recorded chunks");
        let bytewise: Vec<&[u8]> = rec.s2c.chunks(1).collect();
        assert_eq!(decode_all(&name, &bytewise), whole, "{name}: one byte at a time");
        // split in two: the decoder is fresh at every frame start, so splitting the frame that
        // holds the cut is splitting the stream there
        let ends = frame_ends(&name, &rec.s2c);
        assert_eq!(ends.len(), whole.len());
        for cut in split_points(&rec) {
            let k = ends.partition_point(|&e| e <= cut);
            let start = if k == 0 { 0 } else { ends[k - 1] };
            let frame = &rec.s2c[start..ends[k]];
            let got = decode_all(&name, &[&frame[..cut - start], &frame[cut - start..]]);
            assert_eq!(got, whole[k..=k], "{name}: split at {cut}");
        }
        for cut in (0..rec.s2c.len()).step_by(rec.s2c.len() / 8 + 1) {
            assert_eq!(
                decode_all(&name, &[&rec.s2c[..cut], &rec.s2c[cut..]]),
                whole,
                "{name}: whole stream split at {cut}"
            );
        }
    }
}

#[test]
fn message_counts_per_recording() {
    // auth/request, command/reply, api/response, events, log/data, disconnect notices:
    // counted independently of this codec from the raw bytes
    let expected: &[(&str, [usize; 6])] = &[
        ("01_auth_ok_exit", [1, 2, 0, 0, 0, 1]),
        ("02_auth_wrong_password", [1, 1, 0, 0, 0, 1]),
        ("03_preauth_command_then_auth", [1, 4, 1, 0, 0, 1]),
        ("04_api_replies", [1, 3, 20, 0, 0, 1]),
        ("05_bgapi_plain", [1, 9, 0, 5, 0, 1]),
        ("06_bgapi_json_xml", [1, 8, 0, 3, 0, 1]),
        ("07_event_plain_all_loopback", [1, 4, 4, 55, 0, 1]),
        ("08_event_json_conference_sipp", [1, 3, 13, 26, 0, 1]),
        ("09_event_xml_loopback", [1, 3, 2, 8, 0, 1]),
        ("10_hangup_causes", [1, 5, 9, 26, 0, 1]),
        ("11_filters_sendevent_log", [1, 21, 1, 4, 1, 1]),
        ("12_outbound_async_full", [0, 10, 1, 14, 0, 2]),
        ("12_outbound_async_full.control", [1, 4, 0, 1, 0, 1]),
        ("13_outbound_linger_timeout", [0, 9, 1, 14, 0, 2]),
        ("13_outbound_linger_timeout.control", [1, 4, 0, 1, 0, 1]),
        ("14_outbound_sync_full", [0, 5, 0, 8, 0, 1]),
        ("14_outbound_sync_full.control", [1, 4, 0, 1, 0, 1]),
        ("15_event_plain_sipp_sdp", [1, 3, 3, 5, 0, 1]),
        ("16_inbound_myevents_sendmsg", [1, 4, 1, 8, 0, 1]),
        ("17_shutdown_notice", [1, 3, 0, 2, 0, 1]),
        ("18_percent_encoding_edge_cases", [1, 11, 0, 3, 0, 1]),
        ("22_single_call", [1, 3, 4, 25, 0, 1]),
        ("23_dual_leg_media_timeout_shipped", [1, 3, 7, 33, 0, 1]),
        ("24_dual_leg_media_timeout_failover", [1, 3, 6, 35, 0, 1]),
        ("25_dual_leg_rejoin", [1, 3, 11, 45, 0, 1]),
        ("26_move_ticket_two_leg_device", [1, 3, 10, 42, 0, 1]),
        ("27_move_pin_empty", [1, 3, 8, 30, 0, 1]),
        ("28_restart_resync_dual_leg.killed", [1, 3, 4, 18, 0, 1]),
        ("28_restart_resync_dual_leg.resync", [1, 2, 4, 11, 0, 1]),
    ];
    assert_eq!(expected.len(), names().len());
    for (name, counts) in expected {
        let (_, msgs) = decoded(name);
        let mut got = [0usize; 6];
        for m in &msgs {
            let slot = match m {
                EslMessage::AuthRequest => 0,
                EslMessage::CommandReply(_) => 1,
                EslMessage::ApiResponse(_) => 2,
                EslMessage::Event(_) => 3,
                EslMessage::Log(_) => 4,
                EslMessage::DisconnectNotice(_) => 5,
                other => panic!("{name}: unexpected {other:?}"),
            };
            got[slot] += 1;
        }
        assert_eq!(&got, counts, "{name}");
        // every event has a name and a sequence number
        for e in events(&msgs) {
            assert!(e.sequence().is_some() && !e.name().to_string().is_empty(), "{name}: {e:?}");
        }
    }
}

const GOODBYE: &str = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

#[test]
fn auth_exit_and_wrong_password() {
    let (_, msgs) = decoded("01_auth_ok_exit");
    assert_eq!(msgs[0], EslMessage::AuthRequest);
    let texts: Vec<&str> = replies(&msgs).iter().map(|r| r.text()).collect();
    assert_eq!(texts, vec!["+OK accepted", "+OK bye"]);
    let EslMessage::DisconnectNotice(n) = &msgs[3] else { panic!("{msgs:?}") };
    assert_eq!((n.text().as_ref(), n.disposition()), (GOODBYE, None));

    let (_, msgs) = decoded("02_auth_wrong_password");
    let r = replies(&msgs)[0];
    assert_eq!((r.text(), r.status()), ("-ERR invalid", ReplyStatus::Err));
    assert!(matches!(&msgs[2], EslMessage::DisconnectNotice(n) if n.text() == GOODBYE));

    let (_, msgs) = decoded("03_preauth_command_then_auth");
    let texts: Vec<&str> = replies(&msgs).iter().map(|r| r.text()).collect();
    assert_eq!(texts, vec!["-ERR command not found", "-ERR command not found", "+OK accepted", "+OK bye"]);
}

#[test]
fn api_response_shapes() {
    let (_, msgs) = decoded("04_api_replies");
    let bodies: Vec<String> = apis(&msgs).iter().map(|a| a.text().into_owned()).collect();
    assert!(bodies[0].starts_with("UP 0 years") && bodies[0].ends_with("Current Stack Size/Max 240K/8192K\n"));
    assert_eq!(bodies[1], "FreeSWITCH Version 1.11.2-release~64bit ( 64bit)\n");
    assert_eq!(bodies[2], "vm", "no trailing newline");
    assert_eq!(bodies[3], "-ERR no reply\n");
    assert_eq!(bodies[4], "a percent %20 and a plus + and a colon: here", "api bodies are never percent-decoded");
    assert_eq!(bodies[5], "-ERR nosuchcommand Command not found!\n");
    assert_eq!(bodies[6], "-ERR USER_BUSY\n");
    assert_eq!(bodies[7], "-ERR No such channel!\n");
    assert_eq!(bodies[8], "\n0 total.\n");
    assert_eq!(parse_show_channels_json(&bodies[9]), Ok(vec![]));
    assert_eq!(bodies[10], "<result row_count=\"0\"/>\n");
    assert_eq!(apis(&msgs)[11].body.len(), 12_809, "show api spans several reads");
    assert_eq!(apis(&msgs)[12].body.len(), 24_703, "xml_locate directory");
    assert!(bodies[12].starts_with("<section name=\"directory\""), "{}", &bodies[12][..60]);
    assert_eq!(bodies[15], "-ERR  Command not found!\n", "'api ' with no command");
    assert_eq!(replies(&msgs)[1].text(), "-ERR command not found", "bogus_command");
    assert!(bodies[16].starts_with("UP 0 years"), "a CRLF-terminated command is still understood");
    assert_eq!(bodies[17..], ["vm", "FreeSWITCH Version 1.11.2-release~64bit ( 64bit)\n", "vm"]);
    let statuses: Vec<ReplyStatus> = apis(&msgs).iter().map(|a| a.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == ReplyStatus::Err).count(), 5);
}

#[test]
fn background_jobs_in_three_formats() {
    let (_, msgs) = decoded("05_bgapi_plain");
    let r = replies(&msgs);
    assert_eq!(r[1].text(), "+OK Job-UUID: 2f1a3078-d0e0-43a5-b048-501e8d71de50");
    assert_eq!(r[1].job_uuid(), Some("2f1a3078-d0e0-43a5-b048-501e8d71de50"));
    let jobs = events(&msgs);
    assert!(jobs.iter().all(|e| e.name() == EventName::Core("BACKGROUND_JOB") && e.format == EventFormat::Plain));
    assert_eq!(jobs[1].job_uuid(), Some("11111111-2222-3333-4444-555555555555"), "client-chosen Job-UUID");
    assert_eq!(jobs[1].body(), Some("FreeSWITCH Version 1.11.2-release~64bit ( 64bit)\n"));
    assert_eq!(jobs[2].body(), Some("-ERR nosuchcommand Command not found!\n"));
    assert_eq!(jobs[3].header("Job-Command-Arg"), Some("error/CALL_REJECTED &park"));
    assert_eq!(jobs[4].body(), Some("multi"), "the body need not end in a newline");
    assert_eq!(jobs[0].header("Event-Date-GMT"), Some("Sun, 22 Nov 2026 09:18:11 GMT"));
    assert_eq!(jobs.iter().map(|e| e.sequence().unwrap()).collect::<Vec<_>>(), vec![448, 450, 452, 454, 457]);

    let (_, msgs) = decoded("06_bgapi_json_xml");
    let jobs = events(&msgs);
    assert_eq!(
        jobs.iter().map(|e| e.format).collect::<Vec<_>>(),
        vec![EventFormat::Json, EventFormat::Json, EventFormat::Xml]
    );
    assert_eq!(jobs[0].header("FreeSWITCH-IPv6"), Some("fd00::2"));
    assert!(jobs[0].body().unwrap().ends_with("Current Stack Size/Max 240K/8192K\n"));
    assert_eq!(jobs[1].header("Job-Command-Arg"), Some("quote\" backslash\\ tab\t percent% done"));
    assert_eq!(jobs[1].body(), Some("quote\" backslash\\ tab\t percent% done"));
    assert_eq!(jobs[1].header("Content-Length"), Some("36"));
    assert_eq!(jobs[2].header("FreeSWITCH-IPv6"), Some("fd00::2"), "xml values are percent-decoded too");
    assert_eq!(jobs[2].header("Job-Command-Arg"), Some("<tag attr=\"v\">&amp; text</tag>"));
    assert_eq!(jobs[2].body(), Some("<tag attr=\"v\">&amp; text</tag>"));
    assert_eq!(jobs[2].sequence(), Some(465));
}

#[test]
fn wire_order_is_not_sequence_order() {
    let (_, msgs) = decoded("07_event_plain_all_loopback");
    let evs = events(&msgs);
    let seqs: Vec<u64> = evs.iter().map(|e| e.sequence().unwrap()).collect();
    let pos = |s: u64| seqs.iter().position(|&x| x == s).unwrap();
    assert!(pos(474) > pos(477), "one leg's CHANNEL_STATE 474 after the other leg's 477");
    assert!(pos(466) > pos(491), "the originate's API event 466 after CALL_UPDATE 491");
    assert_eq!(evs[pos(466)].name(), EventName::Core("API"));
    // per channel, the wire order was the sequence order
    let mut by_channel: std::collections::HashMap<&str, u64> = Default::default();
    for e in &evs {
        if let Some(uuid) = e.unique_id() {
            let seq = e.sequence().unwrap();
            let last = by_channel.insert(uuid, seq);
            assert!(last.is_none_or(|l| l < seq), "{uuid}: {last:?} then {seq}");
        }
    }
    assert_eq!(by_channel.len(), 2);
    // timestamps repeat: they cannot order events
    let mut same: std::collections::HashMap<&str, usize> = Default::default();
    for e in &evs {
        *same.entry(e.header("Event-Date-Timestamp").unwrap()).or_default() += 1;
    }
    assert_eq!(same.values().max(), Some(&24));
    let names = |n: &str| evs.iter().filter(|e| e.name().is(n)).count();
    assert_eq!((names("CHANNEL_CREATE"), names("CHANNEL_STATE"), names("API"), names("HEARTBEAT")), (2, 13, 5, 2));

    let a = apis(&msgs);
    assert_eq!(
        a[0].text(),
        "+OK 897f33c6-8dc0-436e-9a94-1b6219d3e0e8\n",
        "the api reply comes before the call's events"
    );
    assert!(matches!(&msgs[3], EslMessage::ApiResponse(_)) && matches!(&msgs[4], EslMessage::Event(_)));
    let rows = parse_show_channels_json(&a[1].text()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].uuid.as_str(), rows[0].name.as_str(), rows[0].callstate.as_str(), rows[0].application.as_str()),
        ("897f33c6-8dc0-436e-9a94-1b6219d3e0e8", "loopback/parkme-a", "ACTIVE", "park")
    );
    assert_eq!((rows[1].direction.as_str(), rows[1].call_uuid.as_str()), ("inbound", ""));
    assert_eq!(rows[0].fields.get("callee_name").and_then(|v| v.as_str()), Some("Plain Test"));
    // uuid_dump returns the channel as plain event text
    let dump = parse_plain(&a[3].body).unwrap();
    assert_eq!(dump.name(), EventName::Core("CHANNEL_DATA"));
    assert_eq!(dump.header("variable_lab_var"), Some("hello world & more=1%"));
    let job = evs.iter().find(|e| e.name().is("BACKGROUND_JOB")).unwrap();
    assert_eq!((job.body(), job.header("Job-Command")), (Some("+OK\n"), Some("uuid_kill")));
    let hangup = evs.iter().find(|e| e.name().is("CHANNEL_HANGUP")).unwrap();
    assert_eq!(hangup.header("Hangup-Cause"), Some("USER_BUSY"));
}

#[test]
fn conference_over_json() {
    let (_, msgs) = decoded("08_event_json_conference_sipp");
    let evs = events(&msgs);
    assert!(evs.iter().all(|e| e.format == EventFormat::Json));
    let actions: Vec<&str> = evs
        .iter()
        .filter(|e| e.name() == EventName::Custom("conference::maintenance"))
        .map(|e| e.header("Action").unwrap())
        .collect();
    assert_eq!(actions.len(), 20);
    for a in [
        "conference-create",
        "add-member",
        "floor-change",
        "play-file",
        "play-file-done",
        "mute-member",
        "unmute-member",
        "del-member",
        "conference-destroy",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert_eq!(evs[0].name().to_string(), "CHANNEL_CREATE");
    let custom = evs.iter().find(|e| e.name().is("conference::maintenance")).unwrap();
    assert_eq!(custom.name().to_string(), "CUSTOM conference::maintenance");
    assert_eq!(custom.header("Event-Date-Local"), Some("2026-11-22 09:18:36"), "json values are raw");
    let play = evs.iter().find(|e| e.header("Action") == Some("play-file-done")).unwrap();
    assert_eq!(
        play.header("File"),
        Some("tone_stream://%(200,0,500,600,700)"),
        "json values are never percent-decoded"
    );

    let bodies: Vec<String> = apis(&msgs).iter().map(|a| a.text().into_owned()).collect();
    let json_list = bodies.iter().find(|b| b.starts_with("[{")).unwrap();
    let confs = parse_conference_json_list(json_list).unwrap();
    assert_eq!(confs.len(), 1);
    let c = &confs[0];
    assert_eq!((c.conference_name.as_str(), c.member_count, c.rate, c.running), ("test", 2, 8000, true));
    assert_eq!(c.conference_uuid, "7c26053f-1321-46a7-b3af-dd4def9ded73");
    let members: Vec<(u64, &str, bool)> =
        c.members.iter().map(|m| (m.id, m.uuid.as_str(), m.flags.has_floor)).collect();
    assert_eq!(
        members,
        vec![(2, "29ce3b1b-0e47-4e95-84f2-b0674094ca00", false), (1, "0fd62b94-a8ee-450f-bbc1-3eef8724f198", true)]
    );
    assert!(c.members.iter().all(|m| m.kind == "caller" && m.flags.can_speak && m.energy == 100));
    let rows = parse_show_channels_json(bodies.iter().find(|b| b.starts_with("{\"row_count\"")).unwrap()).unwrap();
    assert_eq!(rows.iter().map(|r| r.application_data.as_str()).collect::<Vec<_>>(), vec!["test@default"; 2]);
    assert_eq!(bodies.last().map(String::as_str), Some("-ERR Conference test not found\n"));
    assert!(parse_conference_json_list(bodies.last().unwrap()).is_err());
}

#[test]
fn xml_events_and_hangup_causes() {
    let (_, msgs) = decoded("09_event_xml_loopback");
    let evs = events(&msgs);
    assert!(evs.iter().all(|e| e.format == EventFormat::Xml && e.body().is_none()));
    assert_eq!(evs[0].header("Caller-Caller-ID-Name"), Some("<X&Y>"));
    let causes: Vec<&str> =
        evs.iter().filter(|e| e.name().is("CHANNEL_HANGUP")).map(|e| e.header("Hangup-Cause").unwrap()).collect();
    assert_eq!(causes, vec!["NO_ANSWER", "NO_ANSWER"]);

    let (_, msgs) = decoded("10_hangup_causes");
    let complete: Vec<&str> = events(&msgs)
        .iter()
        .filter(|e| e.name().is("CHANNEL_HANGUP_COMPLETE"))
        .map(|e| e.header("Hangup-Cause").unwrap())
        .collect();
    let mut expected = Vec::new();
    for (cause, n) in [
        ("USER_BUSY", 2),
        ("NORMAL_TEMPORARY_FAILURE", 2),
        ("ORIGINATOR_CANCEL", 2),
        ("MANAGER_REQUEST", 4),
        ("NO_ROUTE_DESTINATION", 2),
    ] {
        expected.extend(std::iter::repeat_n(cause, n));
    }
    assert_eq!(complete, expected);
    let jobs: Vec<&str> =
        events(&msgs).iter().filter(|e| e.name().is("BACKGROUND_JOB")).map(|e| e.body().unwrap()).collect();
    assert_eq!(jobs[0], "-ERR NO_ROUTE_DESTINATION\n");
}

#[test]
fn sendevent_filters_and_log() {
    let (_, msgs) = decoded("11_filters_sendevent_log");
    let evs = events(&msgs);
    let first = evs[0];
    assert_eq!(first.name(), EventName::Custom("lab::ping"));
    assert_eq!(first.header("X-Lab-Header"), Some("a value with spaces & %percent"));
    assert_eq!(first.body(), Some("hello\nworld\n"), "the nested blank line is not a frame end");
    assert_eq!(first.headers.get_all("Content-Length").collect::<Vec<_>>(), vec!["12", "12"]);
    assert_eq!(first.header("Content-Type"), Some("text/plain"), "the event's own Content-Type, not the frame's");
    assert_eq!(evs.iter().map(|e| e.header("X-N")).collect::<Vec<_>>(), vec![None, Some("2"), Some("4"), None]);
    assert_eq!(evs[3].header("X-Json"), Some("\"quoted\" and \\ backslash"));
    let log = msgs.iter().find_map(|m| if let EslMessage::Log(l) = m { Some(l) } else { None }).unwrap();
    assert_eq!(log.level(), Some(5));
    assert_eq!(log.headers.get("User-Data"), Some(""));
    assert!(log.text().ends_with("[NOTICE] mod_commands.c:7247 lab log line from ESL\n"));
    let texts: Vec<&str> = replies(&msgs).iter().map(|r| r.text()).collect();
    assert!(texts.contains(&"+OK filter added. [Event-Subclass]=[lab::pong]"));
    assert!(texts.contains(&"-ERR no keywords supplied"));
    assert!(texts.contains(&"-ERR not controlling a session."));
    assert_eq!(texts[2], "+OK 0702a7aa-ce1c-4454-a183-044b568d198f", "sendevent answers with the event uuid");
}

#[test]
fn outbound_connect_linger_and_disconnect() {
    for (name, linger, mode) in [
        ("12_outbound_async_full", Some(-1), "async"),
        ("13_outbound_linger_timeout", Some(2), "async"),
        ("14_outbound_sync_full", None, "static"),
    ] {
        let (_, msgs) = decoded(name);
        let EslMessage::CommandReply(connect) = &msgs[0] else { panic!("{name}: {:?}", msgs[0]) };
        assert_eq!(connect.text(), "+OK", "{name}: Reply-Text %2BOK%0A");
        assert_eq!(connect.headers.get("Reply-Text"), Some("+OK\n"));
        assert_eq!(connect.headers.iter().next(), Some(("Event-Name", "CHANNEL_DATA")));
        assert_eq!((connect.headers.get("Socket-Mode"), connect.headers.get("Control")), (Some(mode), Some("full")));
        assert_eq!(connect.headers.get("Channel-Caller-ID-Name"), Some("Outbound Test"));
        let notices: Vec<_> =
            msgs.iter().filter_map(|m| if let EslMessage::DisconnectNotice(n) = m { Some(n) } else { None }).collect();
        let uuid = connect.headers.get("Unique-ID");
        match linger {
            Some(t) => {
                assert_eq!(notices.len(), 2, "{name}");
                assert_eq!((notices[0].disposition(), notices[0].linger_time()), (Some(Disposition::Linger), Some(t)));
                assert!(notices[0].is_linger() && notices[0].body.is_empty());
                assert_eq!(notices[0].controlled_session(), uuid);
            }
            None => assert_eq!(notices.len(), 1),
        }
        let last = notices.last().unwrap();
        assert_eq!((last.disposition(), last.text().as_ref()), (Some(Disposition::Disconnect), GOODBYE));
        assert_eq!(last.controlled_session(), uuid);
        assert!(matches!(msgs.last(), Some(EslMessage::DisconnectNotice(_))));
    }
    let (_, msgs) = decoded("12_outbound_async_full");
    let play = events(&msgs).into_iter().find(|e| e.header("Application-UUID") == Some("lab-playback-1")).unwrap();
    assert_eq!(play.header("Application-Data"), Some("tone_stream://%(200,100,440,480);loops=2"));
    assert_eq!(apis(&msgs)[0].text(), "_undef_");
}

#[test]
fn sip_call_sdp_and_uuid_dump_json() {
    let (_, msgs) = decoded("15_event_plain_sipp_sdp");
    let evs = events(&msgs);
    let answer = evs.iter().find(|e| e.name().is("CHANNEL_ANSWER")).unwrap();
    let sdp = answer.header("variable_switch_r_sdp").unwrap();
    assert!(sdp.starts_with("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"), "{sdp:?}");
    assert!(sdp.contains("m=audio 40020 RTP/AVP 0\r\n"));
    assert_eq!(answer.header("variable_sip_h_X-Lab"), Some("a b;c=d%e"));
    let dump = parse_json(&apis(&msgs)[1].body).unwrap();
    assert_eq!(dump.header("variable_sip_h_X-Lab"), Some("a b;c=d%e"));
    assert_eq!(dump.unique_id(), Some("3de02c06-0780-4927-9ca3-aecdd03406bd"));
    assert_eq!(dump.header("variable_rtp_local_sdp_str").map(|s| s.matches("\r\n").count()), Some(16));
}

#[test]
fn inbound_myevents_and_shutdown_notices() {
    let (_, msgs) = decoded("16_inbound_myevents_sendmsg");
    let EslMessage::DisconnectNotice(n) = msgs.last().unwrap() else { panic!() };
    assert_eq!(n.disposition(), Some(Disposition::Disconnect));
    assert_eq!(n.controlled_session(), Some("fbce63a7-2a2c-4087-9a0c-353eb4994259"));
    assert!(events(&msgs).iter().all(|e| e.unique_id() == Some("fbce63a7-2a2c-4087-9a0c-353eb4994259")));

    let (_, msgs) = decoded("17_shutdown_notice");
    let evs = events(&msgs);
    assert_eq!(evs.iter().map(|e| e.name().to_string()).collect::<Vec<_>>(), vec!["BACKGROUND_JOB", "SHUTDOWN"]);
    let EslMessage::DisconnectNotice(n) = msgs.last().unwrap() else { panic!() };
    assert_eq!((n.text().as_ref(), n.disposition()), ("The system is being shut down.\n", None));
}

#[test]
fn percent_encoding_edge_cases_read_the_same_in_every_format() {
    let (_, msgs) = decoded("18_percent_encoding_edge_cases");
    let evs = events(&msgs);
    assert_eq!(
        evs.iter().map(|e| e.format).collect::<Vec<_>>(),
        vec![EventFormat::Plain, EventFormat::Json, EventFormat::Xml]
    );
    let unsafe_chars = "sp[ ]hash[#]pct[%]amp[&]plus[+]colon[:]semi[;]lt[<]eq[=]gt[>]q[?]at[@]lb[[]bs[\\]rb[]]caret[^]bt[`]lc[{]bar[|]rc[}]dq[\"]";
    for e in &evs {
        let f = e.format;
        assert_eq!(e.name(), EventName::Custom("lab::enc"), "{f}");
        // FreeSWITCH leaves an existing %XX alone when encoding, so plain and xml read back
        // 100A where json, which is not percent-encoded, keeps what was sent
        let pct = if f == EventFormat::Json {
            "100%41 stays, 100%4 and 100% do not"
        } else {
            "100A stays, 100%4 and 100% do not"
        };
        assert_eq!(e.header("X-Pct-Hex"), Some(pct), "{f}");
        assert_eq!(e.header("X-Unsafe"), Some(unsafe_chars), "{f}");
        assert_eq!(e.header("X-Safe"), Some("!$'()*,-./_~ stay as they are"), "{f}");
        assert_eq!(e.header("X-UTF8"), Some("Zoë Ωmega ☎"), "{f}");
        assert_eq!(e.header("X-Tab"), Some("a\tb"), "{f}");
        assert_eq!(e.header("X-Empty"), None, "{f}: an empty header is dropped by FreeSWITCH");
        assert_eq!(e.header("Command"), Some("sendevent CUSTOM"), "{f}");
        assert_eq!(e.body(), Some("line one\r\nline two %41 é\n"), "{f}: bodies are never percent-decoded");
    }
    assert_eq!(evs[0].headers.get_all("Content-Length").count(), 2, "plain: the doubled inner Content-Length");
    assert_eq!(evs[1].headers.get_all("Content-Length").count(), 2, "json: the key appears twice");
    assert_eq!(evs[2].headers.get_all("Content-Length").count(), 1, "xml: one inside <headers>");
    assert_eq!(evs.iter().map(|e| e.sequence().unwrap()).collect::<Vec<_>>(), vec![422, 423, 424]);
    // the same headers, in the same order, whatever the format (json and xml carry the
    // core headers the plain serializer also has)
    let custom = |e: &Event| -> Vec<(String, String)> {
        e.headers
            .iter()
            .filter(|(k, _)| k.starts_with("X-") && *k != "X-Pct-Hex")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(custom(evs[0]), custom(evs[1]));
    assert_eq!(custom(evs[1]), custom(evs[2]));
}
