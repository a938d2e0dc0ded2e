//! A real AMI session with Asterisk 22.10 (tests/data/ami/*.s2c.bin, recorded from the testbed
//! during one joined call: login, the call's events, a CoreShowChannels list, a Command with
//! repeated Output headers, and an error response) replayed through the codec whole and split
//! at every byte offset, with the correlation of responses and lists by ActionID.

use handoff::ami::{Action, ActionTracker, AmiDecoder, AmiMessage, ResponseStatus, Tracked};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/ami/");

fn recordings() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DATA).expect("tests/data/ami") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".s2c.bin") {
            out.push((path.display().to_string(), std::fs::read(&path).expect("read recording")));
        }
    }
    assert!(!out.is_empty(), "no recordings in {DATA}");
    out
}

fn decode_all(chunks: &[&[u8]]) -> Vec<AmiMessage> {
    let mut d = AmiDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => panic!("a real Asterisk stream must decode without errors: {e}"),
            }
        }
    }
    out
}

#[test]
fn every_recording_decodes_the_same_at_every_split() {
    for (name, bytes) in recordings() {
        let whole = decode_all(&[&bytes]);
        assert!(whole.len() > 20, "{name}: {} messages", whole.len());
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            assert_eq!(decode_all(&[&bytes[..cut], &bytes[cut..]]), whole, "{name}: split at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&bytewise), whole, "{name}: byte by byte");
    }
}

#[test]
fn the_recorded_call_reads_as_asterisk_said_it() {
    let bytes = std::fs::read(format!("{DATA}asterisk22_call.s2c.bin")).unwrap();
    let msgs = decode_all(&[&bytes]);
    assert_eq!(msgs[0], AmiMessage::Banner("Asterisk Call Manager/11.0.0".into()));
    let events: Vec<_> =
        msgs.iter().filter_map(|m| if let AmiMessage::Event(e) = m { Some(e) } else { None }).collect();
    let count = |n: &str| events.iter().filter(|e| e.name == n).count();
    assert_eq!(count("HandoffLegArrived"), 1);
    assert_eq!(count("ConfbridgeJoin"), 2);
    assert_eq!(count("Hangup"), 2);
    let arrived = events.iter().find(|e| e.name == "HandoffLegArrived").unwrap();
    assert_eq!(
        (arrived.get("Far"), arrived.get("Path"), arrived.get("Endpoint")),
        (Some("2000"), Some("data"), Some("alice-app"))
    );
    assert!(
        events.iter().filter(|e| e.name == "Newchannel").all(|e| e.get("Timestamp").is_some()),
        "timestampevents = yes"
    );

    // Correlate as handoffd does: ActionIDs rec-1..rec-5 as the recorder sent them.
    let mut t = ActionTracker::new("rec");
    for name in ["Login", "CoreShowChannels", "ConfbridgeListRooms", "Command", "HandoffAssign"] {
        t.start(Action::new(name), 0);
    }
    let mut done = std::collections::HashMap::new();
    for m in msgs {
        if let Tracked::Completed(id, outcome) = t.on_message(m) {
            done.insert(id.0, outcome);
        }
    }
    assert_eq!(done["rec-1"].response.status, ResponseStatus::Success);
    assert!(done["rec-2"].events.iter().all(|e| e.name == "CoreShowChannel"), "the list holds its own items only");
    let output: Vec<_> = done["rec-4"].response.headers.get_all("Output").collect();
    assert!(output.len() > 5 && output[0].starts_with("handoff "), "{output:?}");
    assert_eq!(done["rec-5"].response.status, ResponseStatus::Error);
    assert_eq!(done["rec-5"].response.message.as_deref(), Some("HandoffAssign: missing header Session"));
    assert_eq!(t.pending(), 0, "every action answered");
}
