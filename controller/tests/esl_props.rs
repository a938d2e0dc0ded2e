//! Properties of the ESL codec and client on hostile input: arbitrary bytes, damaged
//! recordings and random well-framed messages never panic, memory stays within one frame plus
//! one read, and well-framed input never loses sync. Commands with arbitrary text either encode
//! to exactly one command or are refused.

mod esl_support;

use handoff::esl::{Client, ClientConfig, Command, Decoder, EslError, EslMessage, MAX_BODY_BYTES, MAX_HEADER_BYTES};
use proptest::prelude::*;

/// Feeds `chunks`, draining after each; checks the memory bound and the fatal-error contract.
/// Returns the messages and errors in order.
fn drive(chunks: &[Vec<u8>]) -> Vec<Result<EslMessage, EslError>> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut dead: Option<EslError> = None;
    for c in chunks {
        d.feed(c);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    assert!(dead.is_none(), "a dead decoder produced a message");
                    out.push(Ok(m));
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    if let Some(first) = &dead {
                        assert_eq!(&e, first, "a dead decoder repeats its error");
                    } else {
                        out.push(Err(e.clone()));
                        dead = Some(e);
                    }
                    assert_eq!(d.buffered(), 0, "a dead decoder holds nothing");
                    break;
                }
                Err(e) => out.push(Err(e)),
            }
        }
        assert!(d.buffered() <= MAX_HEADER_BYTES + MAX_BODY_BYTES + c.len(), "{} bytes buffered", d.buffered());
    }
    out
}

fn chunked(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(bytes.len()).clamp(1, bytes.len() - at);
        out.push(bytes[at..at + n].to_vec());
        at += n;
        i += 1;
    }
    out
}

/// A random message in ESL's shape, with a correct Content-Length.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let content_type = prop_oneof![
        Just("auth/request"),
        Just("command/reply"),
        Just("api/response"),
        Just("text/event-plain"),
        Just("text/event-json"),
        Just("text/event-xml"),
        Just("log/data"),
        Just("text/disconnect-notice"),
        Just("text/rude-rejection"),
        Just("x/unknown"),
    ];
    let value = "[ -~]{0,30}";
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~\n]{0,200}".prop_map(String::into_bytes),
        ("[A-Z_]{1,12}", proptest::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..5), "[ -~\n]{0,40}")
            .prop_map(|(name, headers, body)| {
                let mut s = format!("Event-Name: {name}\n");
                for (k, v) in headers {
                    s.push_str(&format!("{k}: {v}\n"));
                }
                s.push_str(&format!("Content-Length: {}\n\n{body}", body.len()));
                s.into_bytes()
            }),
        "\\{\"Event-Name\":\"[A-Z]{1,8}\",\"_body\":\"[a-z ]{0,10}\"\\}".prop_map(String::into_bytes),
        "<event><headers><Event-Name>[A-Z]{1,8}</Event-Name></headers></event>".prop_map(String::into_bytes),
    ];
    (content_type, proptest::collection::vec(("[A-Za-z-]{1,12}", value), 0..4), body).prop_map(|(ct, headers, body)| {
        let mut s = format!("Content-Type: {ct}\n");
        for (k, v) in headers {
            if !k.eq_ignore_ascii_case("Content-Length") && !k.eq_ignore_ascii_case("Content-Type") {
                s.push_str(&format!("{k}: {v}\n"));
            }
        }
        s.push_str(&format!("Content-Length: {}\n\n", body.len()));
        let mut out = s.into_bytes();
        out.extend_from_slice(&body);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), sizes in proptest::collection::vec(1usize..600, 1..8)) {
        drive(&chunked(&bytes, &sizes));
        let mut c = Client::inbound("pw", ClientConfig::default(), 0);
        for (i, chunk) in chunked(&bytes, &sizes).iter().enumerate() {
            let _ = c.handle_bytes(chunk, i as u64);
            let _ = c.handle_timeout(i as u64 * 1000);
            while c.poll_output().is_some() {}
            while c.poll_transmit().is_some() {}
        }
        let _ = c.poll_timeout();
        let _ = c.handle_timeout(u64::MAX);
        c.handle_eof(u64::MAX);
    }

    #[test]
    fn the_client_takes_any_frames_at_any_time(frames in proptest::collection::vec(frame(), 1..12), times in proptest::collection::vec(any::<u64>(), 1..12), window in prop_oneof![Just(0u64), any::<u64>()]) {
        let config = ClientConfig { reorder_window_ms: window, job_timeout_ms: Some(window), ..ClientConfig::default() };
        for mut c in [Client::inbound("pw", config.clone(), times[0]), Client::outbound(config.clone(), times[0])] {
            let _ = c.send(Command::bgapi("status"), times[0]);
            for (i, f) in frames.iter().enumerate() {
                let now = times[i % times.len()];
                let _ = c.handle_bytes(f, now);
                if let Some(t) = c.poll_timeout() {
                    let _ = c.handle_timeout(t);
                }
                let _ = c.send(Command::api("status"), now);
                while c.poll_output().is_some() {}
            }
            c.handle_eof(0);
            prop_assert_eq!(c.state(), handoff::esl::State::Closed);
            prop_assert_eq!(c.pending_commands() + c.pending_jobs(), 0);
        }
    }

    #[test]
    fn header_shaped_garbage_never_panics(lines in proptest::collection::vec("[ -~]{0,40}", 0..20), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = lines.join("\n").into_bytes();
        bytes.extend_from_slice(b"\n\n");
        bytes.extend_from_slice(&tail);
        drive(&[bytes]);
    }

    #[test]
    fn well_framed_messages_never_lose_sync(frames in proptest::collection::vec(frame(), 1..12), sizes in proptest::collection::vec(1usize..300, 1..6)) {
        let stream: Vec<u8> = frames.concat();
        let results = drive(&chunked(&stream, &sizes));
        // one result per frame (a message, or a skipped event), whatever the split
        prop_assert_eq!(results.len(), frames.len());
        prop_assert!(results.iter().all(|r| !matches!(r, Err(e) if e.is_fatal())));
        prop_assert_eq!(&results, &drive(&[stream]));
    }

    #[test]
    fn damaged_recordings_never_panic(which in 0usize..21, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8), sizes in proptest::collection::vec(1usize..5000, 1..4)) {
        let names = esl_support::names();
        let mut bytes = esl_support::load(&names[which]).s2c;
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        drive(&chunked(&bytes, &sizes));
    }

    #[test]
    fn commands_encode_to_one_command_or_are_refused(text in "[ -~\r\n\t]{0,40}", key in "[ -~\r\n]{0,12}", value in "[ -~\r\n]{0,20}", body in proptest::option::of("[ -~\r\n]{0,30}")) {
        let commands = vec![
            Command::api(text.clone()),
            Command::Bgapi { command: text.clone(), job_uuid: Some(value.clone()) },
            Command::Filter { header: key.clone(), value: value.clone() },
            Command::SendMsg { uuid: Some(key.clone()), headers: vec![(key.clone(), value.clone())], body: body.clone().map(String::into_bytes) },
            Command::SendEvent { name: text.clone(), headers: vec![(key.clone(), value.clone())], body: body.map(String::into_bytes) },
            Command::Other { line: text.clone() },
        ];
        for c in commands {
            let Ok(bytes) = c.encode() else { continue };
            // the header part ends at the first blank line, and only the declared body follows
            let end = bytes.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
            prop_assert!(end.is_some(), "{:?}", c);
            let end = end.unwrap_or(0);
            let head = &bytes[..end];
            prop_assert!(!head.contains(&b'\r'), "{:?}", c);
            // FreeSWITCH reads the first line as the command, the rest as headers
            let declared = String::from_utf8_lossy(head)
                .lines()
                .skip(1)
                .find_map(|l| l.strip_prefix("Content-Length: ").map(|n| n.parse::<usize>().unwrap_or(usize::MAX)))
                .unwrap_or(0);
            prop_assert_eq!(bytes.len() - end, declared, "{:?}", c);
        }
    }
}

#[test]
fn a_body_at_the_cap_is_taken_and_one_byte_more_is_fatal() {
    let mut stream = format!("Content-Type: api/response\nContent-Length: {MAX_BODY_BYTES}\n\n").into_bytes();
    stream.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES));
    let results = drive(&chunked(&stream, &[65_536]));
    assert!(matches!(results.as_slice(), [Ok(EslMessage::ApiResponse(a))] if a.body.len() == MAX_BODY_BYTES));
    let over = format!("Content-Type: api/response\nContent-Length: {}\n\n", MAX_BODY_BYTES + 1);
    let results = drive(&[over.into_bytes(), vec![b'x'; 4096]]);
    assert!(matches!(results.as_slice(), [Err(EslError::BodyTooLong { .. })]), "{results:?}");
}
