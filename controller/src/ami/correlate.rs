//! Matching AMI responses to actions by ActionID, never by arrival order (sans-I/O).
//!
//! An action whose response says `EventList: start` (CoreShowChannels, ConfbridgeList, ...)
//! collects the events carrying its ActionID until the one with `EventList: Complete`.
//! Everything that belongs to no pending action is handed back as `Unsolicited`.
//!
//! A list holds at most [`MAX_LIST_EVENTS`] events: past it the action is forgotten (its
//! further events come back as `Unsolicited`) and never completes, so that its caller's timeout
//! (the login snapshot's deadline, [`ActionTracker::expire`]) reconnects and starts over.

use super::codec::{Action, AmiMessage, Event, Response, ResponseStatus};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// The most events one event list may collect (a PBX with this many channels or conference
/// members is far beyond what handoff drives); past it the action is given up.
pub const MAX_LIST_EVENTS: usize = 50_000;

/// The most bytes of events one event list may collect (events may be up to the codec's 64 KiB
/// each); past it the action is given up the same way.
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// The ActionID the tracker gave an action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionId(pub String);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A finished action: its response and, for event lists, the list's events (without the
/// closing `...Complete` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub response: Response,
    pub events: Vec<Event>,
}

/// What a message meant to the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// The action is complete.
    Completed(ActionId, Outcome),
    /// The message belonged to a pending action that is not complete yet.
    Pending,
    /// Not ours: events, the banner, responses to unknown ActionIDs.
    Unsolicited(AmiMessage),
}

#[derive(Debug)]
struct Pending {
    started_ms: u64,
    seq: u64,
    response: Option<Response>,
    events: Vec<Event>,
    /// The collected events' size in bytes, roughly.
    bytes: usize,
}

/// Pending actions of one connection.
#[derive(Debug)]
pub struct ActionTracker {
    prefix: String,
    next: u64,
    pending: HashMap<String, Pending>,
    /// (started, sequence number) of every pending action, oldest first: the next timeout
    /// without a walk over all of them (the daemon asks after every read).
    by_age: BTreeSet<(u64, u64)>,
}

fn is_list_start(r: &Response) -> bool {
    r.headers.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"))
}

fn is_list_end(e: &Event) -> bool {
    e.headers.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete"))
}

impl ActionTracker {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string(), next: 1, pending: HashMap::new(), by_age: BTreeSet::new() }
    }

    /// Gives `action` a fresh ActionID and starts waiting for its response.
    pub fn start(&mut self, action: Action, now_ms: u64) -> (ActionId, Action) {
        let (id, seq) = (format!("{}-{}", self.prefix, self.next), self.next);
        self.next += 1;
        self.by_age.insert((now_ms, seq));
        if let Some(old) = self
            .pending
            .insert(id.clone(), Pending { started_ms: now_ms, seq, response: None, events: Vec::new(), bytes: 0 })
        {
            self.by_age.remove(&(old.started_ms, old.seq));
        }
        (ActionId(id.clone()), action.with_action_id(id))
    }

    /// How many actions wait for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn on_message(&mut self, msg: AmiMessage) -> Tracked {
        match msg {
            AmiMessage::Response(r) => {
                let Some(id) = r.action_id.clone() else { return Tracked::Unsolicited(AmiMessage::Response(r)) };
                let Some(p) = self.pending.get_mut(&id) else {
                    return Tracked::Unsolicited(AmiMessage::Response(r));
                };
                if is_list_start(&r) && r.status == ResponseStatus::Success {
                    p.response = Some(r);
                    return Tracked::Pending;
                }
                self.take(&id);
                Tracked::Completed(ActionId(id), Outcome { response: r, events: Vec::new() })
            }
            AmiMessage::Event(e) => {
                let Some(id) = e.action_id().map(str::to_string) else {
                    return Tracked::Unsolicited(AmiMessage::Event(e));
                };
                let collecting = self.pending.get(&id).is_some_and(|p| p.response.is_some());
                if !collecting {
                    return Tracked::Unsolicited(AmiMessage::Event(e));
                }
                if is_list_end(&e) {
                    let Some(p) = self.take(&id) else { return Tracked::Pending };
                    let Some(response) = p.response else { return Tracked::Pending };
                    return Tracked::Completed(ActionId(id), Outcome { response, events: p.events });
                }
                if let Some(p) = self.pending.get_mut(&id) {
                    if p.events.len() >= MAX_LIST_EVENTS || p.bytes >= MAX_LIST_BYTES {
                        // Given up: it never completes, its caller times out and starts over.
                        self.take(&id);
                        return Tracked::Unsolicited(AmiMessage::Event(e));
                    }
                    p.bytes += e.name.len() + e.headers.byte_size();
                    p.events.push(e);
                }
                Tracked::Pending
            }
            other => Tracked::Unsolicited(other),
        }
    }

    /// Actions that waited longer than `timeout_ms`; they are forgotten.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<ActionId> {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.started_ms) >= timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.take(id);
        }
        expired.into_iter().map(ActionId).collect()
    }

    /// When the oldest pending action started (its timeout runs from there).
    pub fn next_timeout(&self) -> Option<u64> {
        self.by_age.first().map(|&(started, _)| started)
    }

    /// The link dropped: every pending action failed.
    pub fn fail_all(&mut self) -> Vec<ActionId> {
        self.by_age.clear();
        self.pending.drain().map(|(id, _)| ActionId(id)).collect()
    }

    /// Forgets a pending action.
    fn take(&mut self, id: &str) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        self.by_age.remove(&(p.started_ms, p.seq));
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::codec::AmiDecoder;

    fn msgs(bytes: &[u8]) -> Vec<AmiMessage> {
        let mut d = AmiDecoder::without_banner();
        d.feed(bytes);
        let mut out = Vec::new();
        while let Ok(Some(m)) = d.next_message() {
            out.push(m);
        }
        out
    }

    #[test]
    fn responses_match_by_action_id_not_order() {
        let mut t = ActionTracker::new("h");
        let (a, _) = t.start(Action::new("Ping"), 0);
        let (b, _) = t.start(Action::new("Ping"), 0);
        let m =
            msgs(b"Response: Success\r\nActionID: h-2\r\n\r\nResponse: Error\r\nActionID: h-1\r\nMessage: no\r\n\r\n");
        let mut it = m.into_iter();
        assert!(matches!(t.on_message(it.next().unwrap()), Tracked::Completed(id, _) if id == b));
        assert!(
            matches!(t.on_message(it.next().unwrap()), Tracked::Completed(id, o) if id == a && o.response.status == ResponseStatus::Error)
        );
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn event_lists_collect_their_events_among_others() {
        let mut t = ActionTracker::new("h");
        let (list, _) = t.start(Action::new("CoreShowChannels"), 0);
        let m = msgs(
            b"Response: Success\r\nActionID: h-1\r\nEventList: start\r\n\r\n\
Event: Newchannel\r\nUniqueid: 9\r\n\r\n\
Event: CoreShowChannel\r\nActionID: h-1\r\nChannel: A\r\n\r\n\
Event: CoreShowChannel\r\nActionID: other\r\nChannel: X\r\n\r\n\
Event: CoreShowChannel\r\nActionID: h-1\r\nChannel: B\r\n\r\n\
Event: CoreShowChannelsComplete\r\nActionID: h-1\r\nEventList: Complete\r\nListItems: 2\r\n\r\n",
        );
        let mut done = None;
        let mut unsolicited = 0;
        for msg in m {
            match t.on_message(msg) {
                Tracked::Completed(id, o) => done = Some((id, o)),
                Tracked::Unsolicited(_) => unsolicited += 1,
                Tracked::Pending => {}
            }
        }
        let (id, o) = done.expect("list completes");
        assert_eq!(id, list);
        assert_eq!(o.events.iter().map(|e| e.get("Channel").unwrap()).collect::<Vec<_>>(), vec!["A", "B"]);
        assert_eq!(unsolicited, 2);
    }

    #[test]
    fn a_list_flooded_past_its_bound_is_given_up() {
        let mut t = ActionTracker::new("h");
        t.start(Action::new("CoreShowChannels"), 0);
        let m = msgs(b"Response: Success\r\nActionID: h-1\r\nEventList: start\r\n\r\n");
        assert_eq!(t.on_message(m.into_iter().next().unwrap()), Tracked::Pending);
        let ev = |n: usize| {
            let raw = format!("Event: CoreShowChannel\r\nActionID: h-1\r\nUniqueid: {n}\r\n\r\n");
            msgs(raw.as_bytes()).into_iter().next().unwrap()
        };
        let mut unsolicited = 0;
        for n in 0..MAX_LIST_EVENTS + 1000 {
            match t.on_message(ev(n)) {
                Tracked::Pending => {}
                Tracked::Unsolicited(_) => unsolicited += 1,
                Tracked::Completed(..) => panic!("a flooded list must not complete"),
            }
        }
        assert_eq!(unsolicited, 1000);
        assert_eq!(t.pending(), 0, "the flooded action and its events are dropped");
        let end = msgs(b"Event: CoreShowChannelsComplete\r\nActionID: h-1\r\nEventList: Complete\r\n\r\n");
        assert!(matches!(t.on_message(end.into_iter().next().unwrap()), Tracked::Unsolicited(_)));
        assert_eq!(t.next_timeout(), None, "nothing of the given-up action is left to time out");
    }

    #[test]
    fn a_list_of_big_events_is_bounded_in_bytes_too() {
        let mut t = ActionTracker::new("h");
        t.start(Action::new("CoreShowChannels"), 0);
        let m = msgs(b"Response: Success\r\nActionID: h-1\r\nEventList: start\r\n\r\n");
        assert_eq!(t.on_message(m.into_iter().next().unwrap()), Tracked::Pending);
        let big = format!("Event: CoreShowChannel\r\nActionID: h-1\r\nAppData: {}\r\n\r\n", "x".repeat(60_000));
        let mut fed = 0;
        while t.pending() == 1 {
            t.on_message(msgs(big.as_bytes()).into_iter().next().unwrap());
            fed += 1;
            assert!(fed < 1_000, "never given up: {fed} events of 60 kB collected");
        }
        assert!(fed <= MAX_LIST_BYTES / 60_000 + 2, "given up by bytes after {fed} events");
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn timeouts_and_link_loss() {
        let mut t = ActionTracker::new("h");
        t.start(Action::new("Ping"), 100);
        t.start(Action::new("Ping"), 900);
        assert_eq!(t.next_timeout(), Some(100));
        assert_eq!(t.expire(1000, 500), vec![ActionId("h-1".into())]);
        assert_eq!(t.fail_all().len(), 1);
        assert_eq!(t.pending(), 0);
    }
}
