//! A plain AMI client for tests: logs in with the testbed's `tester` account, keeps every event,
//! and sends actions whose responses (and event lists) it waits for by ActionID.

use crate::wait_for;
use handoff::ami::{Action, AmiDecoder, AmiMessage, Event, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    responses: Vec<Response>,
    closed: bool,
}

pub struct AmiClient {
    stream: TcpStream,
    seen: Arc<Mutex<Seen>>,
    next_id: AtomicU64,
}

impl AmiClient {
    /// Connects to the testbed's AMI and logs in as `tester` (all events).
    pub fn connect() -> Self {
        Self::connect_as("tester", "tester")
    }

    /// Connects to the testbed's AMI and logs in as `username` (all events it may read).
    pub fn connect_as(username: &str, secret: &str) -> Self {
        let stream = TcpStream::connect("127.0.0.1:5038").expect("connect to the testbed AMI");
        let mut reader = stream.try_clone().expect("clone AMI socket");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut dec = AmiDecoder::new();
            let mut buf = [0u8; 16384];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                dec.feed(&buf[..n]);
                while let Ok(Some(msg)) = dec.next_message() {
                    let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                    match msg {
                        AmiMessage::Event(e) => seen.events.push(e),
                        AmiMessage::Response(r) => seen.responses.push(r),
                        _ => {}
                    }
                }
            }
            s.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        });
        let client = Self { stream, seen, next_id: AtomicU64::new(1) };
        let r = client
            .action(Action::new("Login").header("Username", username).header("Secret", secret).header("Events", "on"));
        assert!(
            r.0.headers.get("Response") == Some("Success") || format!("{:?}", r.0.status).contains("Success"),
            "{username} login failed: {:?}",
            r.0
        );
        client
    }

    /// Sends an action and waits for its response plus, for event lists, the list's events.
    pub fn action(&self, action: Action) -> (Response, Vec<Event>) {
        let id = format!("test-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let action = action.with_action_id(id.clone());
        let bytes = action.encode().expect("encode test action");
        (&self.stream).write_all(&bytes).expect("send AMI action");
        let response = wait_for(Duration::from_secs(10), || {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .responses
                .iter()
                .find(|r| r.action_id.as_deref() == Some(id.as_str()))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no AMI response to {} ({id})", action.name()));
        let is_list = response.headers.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"));
        let mut events = Vec::new();
        if is_list {
            events = wait_for(Duration::from_secs(10), || {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let mine: Vec<Event> =
                    seen.events.iter().filter(|e| e.headers.get("ActionID") == Some(id.as_str())).cloned().collect();
                mine.iter()
                    .any(|e| e.headers.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete")))
                    .then_some(mine)
            })
            .unwrap_or_else(|| panic!("event list of {} ({id}) did not complete", action.name()));
            events.retain(|e| !e.headers.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete")));
        }
        (response, events)
    }

    /// Proves to res_handoff.so that this session is the controller account whose AMI secret is
    /// `secret` (HandoffChallenge, then HandoffHello with the Key, as handoffd does); the
    /// hello's response.
    pub fn prove_controller(&self, secret: &str) -> Response {
        use sha2::{Digest, Sha256};
        let (challenge, _) = self.action(Action::new("HandoffChallenge"));
        let nonce = challenge.headers.get("Challenge").unwrap_or_else(|| panic!("no Challenge in {challenge:?}"));
        let key: String = Sha256::new()
            .chain_update(nonce.as_bytes())
            .chain_update(secret.as_bytes())
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.action(Action::new("HandoffHello").header("Controller", "test").header("Key", &key)).0
    }

    /// All events seen so far.
    pub fn events(&self) -> Vec<Event> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).events.clone()
    }

    /// Waits for an event matching `pred`.
    pub fn wait_event(&self, limit: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        wait_for(limit, || self.events().into_iter().find(|e| pred(e)))
    }

    /// Channels Asterisk still has.
    pub fn channels(&self) -> Vec<Event> {
        self.action(Action::new("CoreShowChannels")).1
    }

    /// Conferences Asterisk still has (ConfbridgeListRooms answers an error when there are none).
    pub fn conferences(&self) -> Vec<Event> {
        self.action(Action::new("ConfbridgeListRooms")).1
    }
}
