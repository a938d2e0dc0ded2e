//! What every store backend must do, as test cases run against each of them: sled by the unit
//! tests of `store.rs`, PostgreSQL by `tests/tests/store_postgres.rs` on the testbed's real
//! database. A backend passes when every case of [`CASES`] passes on it.

use super::{
    AuditAction, AuditRecord, Bar, Device, Outcome, SessionSnapshot, SessionState, Store, StoreError, TicketHash,
    TicketRecord, UnixMs, Write,
};
use crate::timeline::{Entry, Mark, TIMELINE_HEAD, TIMELINE_MAX_ENTRIES};

/// How a test gets stores of one backend.
pub trait Fixture: Sync {
    /// A new, empty store.
    fn fresh(&self) -> Store;
    /// The same store opened again, as after a restart (the handle given is dropped first).
    fn reopen(&self, store: Store) -> Store;
}

/// One case: it panics when the backend misbehaves.
pub type Case = fn(&dyn Fixture);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("devices_are_unique_by_id_endpoint_and_number_and_need_their_user", devices_are_unique),
    ("a_ticket_is_spent_exactly_once_among_concurrent_presenters", ticket_spent_once),
    ("records_and_audit_numbers_survive_a_reopen", survive_reopen),
    ("ended_sessions_are_purged_after_the_keep_time_and_running_ones_never", ended_sessions_purged),
    ("audit_retention_drops_the_oldest_but_never_within_the_floor_or_the_newest", audit_retention),
    ("failures_count_every_concurrent_wrong_pin", failures_all_count),
    ("bad_ids_are_refused_with_their_name", bad_ids),
    ("timelines_survive_a_reopen_and_carry_the_sessions_moves", timelines_survive),
    ("a_timeline_keeps_its_head_and_recent_past_and_counts_what_it_dropped", timeline_bounded),
    ("old_timelines_are_purged", timelines_purged),
];

/// Runs every case; a failing case panics with its name first.
pub fn run_all(f: &dyn Fixture) {
    for (name, case) in CASES {
        eprintln!("store conformance: {name}");
        case(f);
    }
}

fn device(id: &str, user: &str, endpoint: &str, number: &str) -> Device {
    Device {
        id: id.into(),
        user: user.into(),
        name: format!("{id} of {user}"),
        data_endpoint: Some(endpoint.into()),
        carrier_number: Some(number.into()),
    }
}

/// A ticket of alice's, issued at 1 s, good until 31 s.
pub fn ticket(n: u8) -> TicketRecord {
    TicketRecord {
        hash: TicketHash([n; 32]),
        user: "alice".into(),
        session: "s1".into(),
        from_device: "phone".into(),
        to_device: "desk".into(),
        issued: UnixMs(1_000),
        expires: UnixMs(31_000),
        presented: None,
    }
}

fn ok<T>(r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("store call failed: {e}"))
}

fn devices_are_unique(f: &dyn Fixture) {
    let store = f.fresh();
    assert!(matches!(
        store.add_device(&device("phone", "alice", "alice-app", "+4930123456")),
        Err(StoreError::NoSuchUser { .. })
    ));
    ok(store.add_user("alice", UnixMs(1)));
    ok(store.add_user("bob", UnixMs(1)));
    assert!(matches!(store.add_user("alice", UnixMs(2)), Err(StoreError::UserExists { .. })));
    ok(store.add_device(&device("phone", "alice", "alice-app", "+4930123456")));
    assert!(matches!(
        store.add_device(&device("phone", "bob", "bob-app", "+4930999999")),
        Err(StoreError::DeviceExists { .. })
    ));
    let taken = store.add_device(&device("bobs", "bob", "alice-app", "+4930999999")).err().map(|e| e.to_string());
    assert_eq!(
        taken.as_deref().and_then(|t| t.split(": ").last()),
        Some("endpoint alice-app already belongs to device phone")
    );
    assert!(matches!(
        store.add_device(&device("bobs", "bob", "bob-app", "+4930123456")),
        Err(StoreError::Taken { what: "number", .. })
    ));
    // The refused devices left nothing behind, not even index entries.
    assert_eq!(ok(store.list_devices()).len(), 1);
    assert_eq!(ok(store.device_by_endpoint("bob-app")), None);
    assert_eq!(ok(store.device_by_number("+4930999999")), None);
    assert_eq!(ok(store.device_by_number("+4930123456")).map(|d| d.id), Some("phone".into()));
    assert_eq!(ok(store.devices_of("alice")).len(), 1);
    // Removing a device frees its endpoint and number.
    assert!(ok(store.remove_device("phone")).is_some());
    assert_eq!(ok(store.device_by_endpoint("alice-app")), None);
    ok(store.add_device(&device("bobs", "bob", "alice-app", "+4930123456")));
    assert_eq!(ok(store.list_users()).into_iter().map(|u| u.name).collect::<Vec<_>>(), ["alice", "bob"]);
}

fn ticket_spent_once(f: &dyn Fixture) {
    let store = f.fresh();
    ok(store.put_ticket(&ticket(7)));
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                s.spawn(move || ok(store.take_ticket(&TicketHash([7; 32]), UnixMs(2_000 + i))))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a presenter panicked")))
            .filter(|t| t.as_ref().is_some_and(|t| t.presented.is_none()))
            .count()
    });
    assert_eq!(winners, 1);
    let after = ok(store.take_ticket(&TicketHash([7; 32]), UnixMs(9_000)));
    assert!(matches!(after.and_then(|t| t.presented), Some(UnixMs(t)) if (2_000..2_008).contains(&t)));
    assert_eq!(ok(store.take_ticket(&TicketHash([8; 32]), UnixMs(9_000))), None);
}

fn survive_reopen(f: &dyn Fixture) {
    let store = f.fresh();
    let audit = AuditRecord::new(UnixMs(1), "handoffd", AuditAction::MoveRequest, Outcome::Granted);
    ok(store.apply(&[
        Write::PutTicket(ticket(1)),
        Write::PutBar(Bar { session: "s1".into(), device: "phone".into(), until: UnixMs(5) }),
        Write::Audit(audit.clone()),
        Write::Audit(audit),
    ]));
    let store = f.reopen(store);
    assert_eq!(ok(store.list_tickets()), vec![ticket(1)]);
    assert_eq!(ok(store.bar("s1", "phone")), Some(UnixMs(5)));
    assert_eq!(ok(store.list_bars()).len(), 1);
    let seq = ok(store.audit(&AuditRecord::new(UnixMs(2), "handoffd", AuditAction::Rejoin, Outcome::Refused)));
    assert_eq!(seq, 3, "audit numbering continues after a reopen");
    assert_eq!(ok(store.audit_since(1)).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(ok(store.audit_tail(1))[0].1.action, AuditAction::Rejoin);
    // Expired tickets are kept for the replay window, then purged with ended bars.
    assert_eq!(ok(store.purge_expired(UnixMs(31_000), 60_000)), (0, 1));
    assert_eq!(ok(store.purge_expired(UnixMs(91_000), 60_000)), (1, 0));
}

fn ended_sessions_purged(f: &dyn Fixture) {
    let store = f.fresh();
    let snapshot = |id: &str, state, updated| SessionSnapshot {
        id: id.into(),
        user: "alice".into(),
        device: "phone".into(),
        far: None,
        bridge: format!("handoff-{id}"),
        legs: Vec::new(),
        state,
        updated: UnixMs(updated),
        far_number: String::new(),
        barred: Vec::new(),
        node: "ast1".into(),
    };
    ok(store.put_session(&snapshot("old", SessionState::Ended, 1_000)));
    ok(store.put_session(&snapshot("new", SessionState::Ended, 50_000)));
    ok(store.put_session(&snapshot("live", SessionState::Connected, 1_000)));
    ok(store.put_session(&snapshot("live", SessionState::Connected, 2_000)));
    assert_eq!(ok(store.get_session("live")).map(|s| s.updated), Some(UnixMs(2_000)), "a put replaces");
    assert_eq!(ok(store.get_session("live")).map(|s| s.node), Some("ast1".into()), "the session's node is kept");
    assert_eq!(ok(store.purge_ended_sessions(UnixMs(61_000), 60_000)), 1);
    let left: Vec<String> = ok(store.list_sessions()).into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec!["live".to_string(), "new".to_string()]);
    assert!(ok(store.remove_session("new")));
    assert!(!ok(store.remove_session("new")));
}

fn audit_retention(f: &dyn Fixture) {
    let store = f.fresh();
    let day = 86_400_000;
    let rec = |at| AuditRecord::new(UnixMs(at), "handoffd", AuditAction::Rejoin, Outcome::Refused);
    // 10 records a day apart, then 5 in the last minute.
    for n in 0..10u64 {
        ok(store.audit(&rec(n * day)));
    }
    let now = UnixMs(20 * day);
    for n in 0..5u64 {
        ok(store.audit(&rec(now.0 - 60_000 + n)));
    }
    // Older than 15 days: the first 6 (days 0..=5) go.
    assert_eq!(ok(store.prune_audit(now, 15 * day, 1_000, 3_600_000)), 6);
    assert_eq!(ok(store.audit_since(0)).first().map(|(seq, _)| *seq), Some(7), "oldest first, in order");
    // A count bound drops the oldest whatever their age, down to the floor (the last hour).
    assert_eq!(ok(store.prune_audit(now, 365 * day, 3, 3_600_000)), 4);
    assert_eq!(ok(store.audit_since(0)).len(), 5, "records younger than the floor stay");
    // Even a keep of 0 keeps the floor and the newest record.
    assert_eq!(ok(store.prune_audit(now, 0, 1, 59_999)), 2);
    assert_eq!(ok(store.prune_audit(UnixMs(now.0 + day), 0, 1, 0)), 2);
    let left = ok(store.audit_since(0));
    assert_eq!(left.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![15]);
    // Numbers carry on after a restart.
    let store = f.reopen(store);
    assert_eq!(ok(store.audit(&rec(now.0))), 16);
}

fn failures_all_count(f: &dyn Fixture) {
    let store = f.fresh();
    ok(store.add_user("alice", UnixMs(1)));
    // 16 concurrent wrong PINs, each adding one failure: all 16 are counted.
    std::thread::scope(|s| {
        for i in 0..16u64 {
            let store = store.clone();
            s.spawn(move || {
                ok(store.record_failure("alice", move |prev| {
                    let mut f = prev.unwrap_or_default();
                    f.recent.push(UnixMs(100 + i));
                    if f.recent.len() >= 16 {
                        f.locked_until = Some(UnixMs(1_000_000));
                    }
                    f
                }))
            });
        }
    });
    let failures = ok(store.failures("alice")).unwrap_or_default();
    assert_eq!(failures.recent.len(), 16, "a concurrent failure was lost");
    assert_eq!(ok(store.locked_until("alice", UnixMs(500))), Some(UnixMs(1_000_000)));
    assert!(ok(store.clear_failures("alice")));
    assert!(!ok(store.clear_failures("alice")));
    assert_eq!(ok(store.locked_until("alice", UnixMs(500))), None);
}

fn bad_ids(f: &dyn Fixture) {
    let store = f.fresh();
    let err = store.add_user("", UnixMs(1)).err();
    assert!(matches!(err, Some(StoreError::Invalid { what: "user name", .. })), "{err:?}");
    let err = store.add_user("a b", UnixMs(1)).err();
    assert!(matches!(err, Some(StoreError::Invalid { what: "user name", .. })), "{err:?}");
    let bar = Bar { session: "s\n1".into(), device: "phone".into(), until: UnixMs(5) };
    assert!(matches!(store.put_bar(&bar), Err(StoreError::Invalid { what: "session id", .. })));
    assert!(matches!(
        store.set_credential("nobody", &super::CredentialHash("x".into())),
        Err(StoreError::NoSuchUser { .. })
    ));
    assert_eq!(ok(store.list_bars()), Vec::new());
}

fn note(at: u64, text: &str) -> Entry {
    Entry { at: UnixMs(at), mark: Mark::Note, text: text.into() }
}

fn timelines_survive(f: &dyn Fixture) {
    let store = f.fresh();
    ok(store.append_timeline(&[
        ("s1".into(), note(1_000, "opened")),
        ("s2".into(), note(1_100, "other")),
        ("s1".into(), Entry { at: UnixMs(9_000), mark: Mark::Ended, text: "ended".into() }),
    ]));
    let issued =
        AuditRecord::new(UnixMs(5_000), "api:x", AuditAction::MoveRequest, Outcome::Granted).session("s1").device("b");
    ok(store.audit(&issued));
    let far_away = AuditRecord::new(UnixMs(900_000), "api:x", AuditAction::MoveRequest, Outcome::Granted).session("s1");
    ok(store.audit(&far_away));
    ok(store.flush());
    let store = f.reopen(store);
    let t = ok(store.timeline("s1")).unwrap_or_else(|| panic!("the timeline is kept across a reopen"));
    let texts: Vec<&str> = t.entries.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[0], "opened");
    assert!(texts[1].starts_with("move ticket issued"), "{texts:?}");
    assert_eq!(texts[2], "ended");
    assert_eq!(ok(store.timeline("nope")), None);
    assert_eq!(ok(store.timeline("bad id")), None);
    assert_eq!(ok(store.timeline("")), None);
    assert!(store.append_timeline(&[("bad id".into(), note(1, "x"))]).is_err());
}

fn timeline_bounded(f: &dyn Fixture) {
    let store = f.fresh();
    let n = TIMELINE_MAX_ENTRIES + 500;
    let batch: Vec<(String, Entry)> = (0..n)
        .map(|i| {
            let mark = if i % 2 == 0 { Mark::LegStalled { leg: "l".into(), silent_ms: 1 } } else { Mark::Note };
            ("s".to_string(), Entry { at: UnixMs(i), mark, text: format!("e{i}") })
        })
        .collect();
    for chunk in batch.chunks(333) {
        ok(store.append_timeline(chunk));
    }
    let t = ok(store.timeline("s")).unwrap_or_else(|| panic!("a timeline"));
    assert_eq!(t.entries.len() as u64, TIMELINE_MAX_ENTRIES);
    assert_eq!(t.dropped.count, 500);
    assert_eq!(t.dropped.stalls, 250);
    assert_eq!(t.dropped.from, Some(UnixMs(TIMELINE_HEAD)));
    assert_eq!(t.dropped.to, Some(UnixMs(TIMELINE_HEAD + 499)));
    assert_eq!(t.entries[0].text, "e0");
    assert_eq!(t.entries[TIMELINE_HEAD as usize - 1].text, format!("e{}", TIMELINE_HEAD - 1));
    assert_eq!(t.entries[TIMELINE_HEAD as usize].text, format!("e{}", TIMELINE_HEAD + 500));
    assert_eq!(t.entries.last().map(|e| e.text.clone()), Some(format!("e{}", n - 1)));
}

fn timelines_purged(f: &dyn Fixture) {
    let store = f.fresh();
    ok(store.append_timeline(&[("old".into(), note(1_000, "a")), ("new".into(), note(50_000, "b"))]));
    assert_eq!(ok(store.purge_timelines(UnixMs(60_000), 30_000)), 1);
    assert_eq!(ok(store.timeline("old")), None);
    assert!(ok(store.timeline("new")).is_some());
    assert_eq!(ok(store.timelines()).len(), 1);
}
