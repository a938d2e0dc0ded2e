//! The store calls handoffd makes per dual-leg call and per move, counted (issue #16 item 6:
//! the capacity model in README "Cluster store (PostgreSQL)"). `load_support` drives complete
//! calls through the real Asterisk driver and controller core into a real sled store made
//! counting (`handoff::store::tally`): every store call by method, the records written, and
//! what the same calls cost on PostgreSQL (transactions, statements, round trips). A move is a
//! ticket move (the API request with the PIN, then the new device dialling in with the ticket)
//! or a *86 PIN move (the new device dialling in with the PIN), each checked by the real move
//! service and carried out by the core. The counts are asserted: a change that adds store
//! calls to a call or a move fails here and says what it added.
//!
//! `cargo test --release -p handoff --test store_ops -- --nocapture` prints the tables.

// Clock, tokio and sockets are allowed here: a test harness standing in for the link loop (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod load_support;

use handoff::credentials::{HashCost, Hasher, Passcode, Pepper, Verifier};
use handoff::moves::{LockoutPolicy, MoveRules};
use handoff::service::MoveService;
use handoff::store::tally::{Counts, PgCost};
use handoff::store::{Store, UnixMs};
use load_support::{devices, Load, Moves, CALL_MS};

const PIN: &str = "2468";

/// A counting sled store with user `user-000`, its devices `load-000` and `load-001`, its PIN;
/// the harness around it, with the move service.
fn harness(dir: &std::path::Path) -> (Load, Store) {
    let store = Store::open(dir.join("store")).expect("store").counting();
    let registry = devices(2, 2);
    store.add_user("user-000", UnixMs(1)).expect("user");
    for d in &registry {
        store.add_device(d).expect("device");
    }
    let hasher = Hasher::new(Pepper::from_bytes([7; 32]), HashCost::TESTING).expect("hasher");
    store.set_credential("user-000", &hasher.hash(&Passcode::parse(PIN).expect("pin")).expect("hash")).expect("pin");
    let verifier = Verifier::new(store.clone(), hasher, LockoutPolicy::default(), 1).expect("verifier");
    let service = MoveService { store: store.clone(), verifier, rules: MoveRules::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut load = Load::new(Some(store.clone()), registry);
    load.moves = Some(Moves { service, runtime });
    (load, store)
}

fn counts(store: &Store) -> Counts {
    store.counts().expect("a counting store")
}

fn print(what: &str, c: &Counts) {
    println!("{what}: {} store calls, PostgreSQL {:?}", c.total_calls(), c.pg);
    println!("  calls:   {:?}", c.calls);
    println!("  written: {:?}", c.records);
}

/// What one complete dual-leg call asks of the store: its snapshots, timeline, end.
const CALL_CALLS: &[(&str, u64)] =
    &[("append_timeline", 7), ("apply_returning_seq", 1), ("get_session", 2), ("put_session", 7)];
const CALL_RECORDS: &[(&str, u64)] = &[("audit", 1), ("snapshot", 7), ("timeline entry", 10)];
const CALL_PG: PgCost = PgCost { transactions: 17, writing: 15, statements: 43, round_trips: 102 };

/// What a move asks of the store, from the request to the old legs hung up. A ticket move (the
/// API request, then the dial-in with the ticket) and a *86 PIN move (the dial-in with the PIN:
/// a ticket issued and spent at once) ask the same: the PIN checked (its failures and hash
/// read, cleared and audited), the facts read (the user's sessions, both devices, the session,
/// the bar, the lockout), the ticket written and audited; the ticket spent, the facts read
/// again, the bar written and audited; the session's snapshots and timeline as it moves.
const MOVE_CALLS: &[(&str, u64)] = &[
    ("append_timeline", 4),
    ("apply_returning_seq", 3),
    ("bar", 2),
    ("credential", 1),
    ("device", 3),
    ("failures", 3),
    ("get_session", 2),
    ("list_sessions", 1),
    ("put_session", 4),
    ("take_ticket", 1),
];
const MOVE_RECORDS: &[(&str, u64)] = &[
    ("audit", 3),
    ("bar", 1),
    ("failures cleared", 1),
    ("snapshot", 4),
    ("ticket", 1),
    ("ticket spent", 1),
    ("timeline entry", 6),
];
const MOVE_PG: PgCost = PgCost { transactions: 24, writing: 12, statements: 47, round_trips: 108 };

fn check(what: &str, c: &Counts, calls: &[(&str, u64)], records: &[(&str, u64)], pg: PgCost) {
    let got_calls: Vec<(&str, u64)> = c.calls.iter().map(|(k, v)| (*k, *v)).collect();
    let got_records: Vec<(&str, u64)> = c.records.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got_calls, calls, "{what}: store calls");
    assert_eq!(got_records, records, "{what}: records written");
    assert_eq!(c.pg, pg, "{what}: on PostgreSQL");
    assert_eq!(c.unmodelled, 0, "{what}: every call's PostgreSQL cost is modelled");
}

/// The old legs of `call` are gone; after a while the new device hangs up `leg`, and the call
/// ends.
fn moved_call_ends(load: &mut Load, call: u64, leg: &str) {
    assert!(load.core.sessions.session_of(&format!("{call}.1")).is_none(), "the old legs are gone");
    load.talk(CALL_MS);
    load.hang_up(leg);
    load.settle();
    assert_eq!(load.core.sessions.len(), 0, "the moved call ended");
}

#[test]
fn store_calls_per_dual_leg_call_and_per_move_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut load, store) = harness(dir.path());

    // Dual-leg calls, one after the other, from both devices: each asks the same of the store.
    let mut per_call = Vec::new();
    for _ in 0..6 {
        let before = counts(&store);
        load.wave(1);
        per_call.push(counts(&store).since(&before));
    }
    print("one dual-leg call (28 s)", &per_call[0]);
    assert!(per_call.iter().all(|c| *c == per_call[0]), "every call asks the same: {per_call:#?}");
    assert!(per_call[0].records("timeline entry") < handoff::timeline::TIMELINE_MAX_ENTRIES);
    check("a dual-leg call", &per_call[0], CALL_CALLS, CALL_RECORDS, CALL_PG);

    // A ticket move: load-000's call goes to load-001 (the API request, then its app dials in
    // with the ticket).
    let [(call, 0)] = load.start_calls(1)[..] else { panic!("the call is on load-000") };
    load.talk(10_000);
    let before = counts(&store);
    let moves = load.moves.as_ref().expect("moves");
    let issued = moves
        .runtime
        .block_on(moves.service.request(
            "api:127.0.0.1:device:load-001",
            "user-000",
            "load-001",
            None,
            Passcode::presented(PIN),
        ))
        .expect("the ticket is granted");
    let ticket = format!("ticket-{}", issued.granted.ticket.expose().as_str());
    assert!(load.move_leg(1, "m1.1", &ticket), "the ticket move is carried out");
    let ticket_move = counts(&store).since(&before);
    print("one ticket move (API request + dial-in)", &ticket_move);
    moved_call_ends(&mut load, call, "m1.1");

    // A *86 PIN move: load-001's call goes to load-000, whose app dials the feature code.
    let [(call, 1)] = load.start_calls(1)[..] else { panic!("the call is on load-001") };
    load.talk(10_000);
    let before = counts(&store);
    assert!(load.move_leg(0, "m2.1", &format!("pin-{PIN}")), "the PIN move is carried out");
    let pin_move = counts(&store).since(&before);
    print("one *86 PIN move (dial-in)", &pin_move);
    moved_call_ends(&mut load, call, "m2.1");

    check("a ticket move", &ticket_move, MOVE_CALLS, MOVE_RECORDS, MOVE_PG);
    check("a PIN move", &pin_move, MOVE_CALLS, MOVE_RECORDS, MOVE_PG);
}
