//! The store on a real PostgreSQL (Debian's, started by `tests/testbed/testbed postgres start`):
//! every store conformance case that sled passes, then what only a shared database can show —
//! several handoffd ("nodes", each its own connection) racing for the same tickets, a schema from
//! a newer handoff, a wrong password, a damaged row, and the database going away and coming
//! back under a running store.
//!
//! Each fresh store is a schema of its own in the testbed's `handoff` database (selected by the
//! URL's `options=-c search_path=…`), named after its test, so cases never see each other's rows
//! and the tests run in parallel; the one test that stops the database runs alone.

use handoff::store::conformance::{self, Fixture};
use handoff::store::{Store, StoreError, TicketHash, TicketRecord, UnixMs};
use handoff_tests::testbed::{postgres_schema, testbed};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

fn database_url() -> String {
    let out = testbed(&["postgres", "start"]);
    out.lines().last().unwrap_or_default().trim().to_string()
}

/// The testbed database: the tests of this file share it, the one that stops it has it alone.
static DATABASE: RwLock<()> = RwLock::new(());

/// Fresh schemas in the testbed database, `<run>_<n>_<pid>` (`run`: the test's own name); a URL
/// per schema. Holds the test's turn on the database while it lives.
struct OnPostgres {
    base: String,
    run: &'static str,
    next: AtomicUsize,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

impl OnPostgres {
    /// For the test `run` (a name no other test of this file uses), beside the others.
    fn new(run: &'static str) -> Self {
        let shared = DATABASE.read().unwrap_or_else(PoisonError::into_inner);
        Self { base: database_url(), run, next: AtomicUsize::new(0), _shared: Some(shared), _alone: None }
    }
    /// For the test `run` that stops the database: it waits until no other test uses it.
    fn alone(run: &'static str) -> Self {
        let alone = DATABASE.write().unwrap_or_else(PoisonError::into_inner);
        Self { base: database_url(), run, next: AtomicUsize::new(0), _shared: None, _alone: Some(alone) }
    }
    /// A new empty schema and the URL whose connections use it.
    fn schema_url(&self) -> String {
        postgres_schema(&format!("{}_{}", self.run, self.next.fetch_add(1, Ordering::Relaxed)))
    }
    fn open(url: &str) -> Store {
        Store::open_postgres(url).unwrap_or_else(|e| panic!("open the PostgreSQL store: {e}"))
    }
}

thread_local! {
    static URLS: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Fixture for OnPostgres {
    fn fresh(&self) -> Store {
        let url = self.schema_url();
        let store = Self::open(&url);
        URLS.with(|u| u.borrow_mut().push((store.path().to_string(), url)));
        store
    }
    fn reopen(&self, store: Store) -> Store {
        let name = store.path().to_string();
        drop(store);
        let url = URLS.with(|u| u.borrow().iter().rev().find(|(n, _)| *n == name).map(|(_, url)| url.clone()));
        Self::open(&url.expect("a store this fixture opened"))
    }
}

#[test]
fn postgres_passes_every_store_conformance_case() {
    let pg = OnPostgres::new("conformance");
    conformance::run_all(&pg);
    // The password is never part of what the store calls itself (errors, logs).
    let store = pg.fresh();
    assert_eq!(store.backend(), "postgres");
    assert!(!store.path().contains("handoff-testbed-db"), "{}", store.path());
}

#[test]
fn tickets_raced_by_eight_nodes_are_each_spent_exactly_once() {
    let pg = OnPostgres::new("race");
    let url = pg.schema_url();
    let nodes: Vec<Store> = (0..8).map(|_| OnPostgres::open(&url)).collect();
    const TICKETS: u32 = 2_000;
    const ATTEMPTS: u32 = 12_000;
    let ticket = |n: u32| {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&n.to_be_bytes());
        TicketRecord { hash: TicketHash(hash), ..conformance::ticket(0) }
    };
    for n in 0..TICKETS {
        nodes[(n % 8) as usize].put_ticket(&ticket(n)).unwrap();
    }
    let started = Instant::now();
    // Each node presents tickets in its own pseudo-random order; 6 presentations per ticket.
    let wins: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                s.spawn(move || {
                    let mut won = Vec::new();
                    let mut x = 0x9e37_79b9u32.wrapping_mul(i as u32 + 1);
                    for a in 0..ATTEMPTS / 8 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let n = x % TICKETS;
                        let before = node.take_ticket(&ticket(n).hash, UnixMs(2_000 + u64::from(a))).unwrap();
                        if before.expect("every ticket was issued").presented.is_none() {
                            won.push(n);
                        }
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let per_attempt_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(ATTEMPTS);
    let mut spent = vec![0u32; TICKETS as usize];
    for n in wins.iter().flatten() {
        spent[*n as usize] += 1;
    }
    let twice = spent.iter().filter(|c| **c > 1).count();
    let once = spent.iter().filter(|c| **c == 1).count();
    let presented: std::collections::HashSet<u32> = nodes[0]
        .list_tickets()
        .unwrap()
        .iter()
        .filter(|t| t.presented.is_some())
        .map(|t| u32::from_be_bytes(t.hash.0[..4].try_into().unwrap()))
        .collect();
    eprintln!(
        "{ATTEMPTS} presentations by 8 nodes over {TICKETS} tickets: {once} spent once, {twice} twice, {} presented, {per_attempt_ms:.2} ms per presentation",
        presented.len()
    );
    assert_eq!(twice, 0, "a ticket was spent twice");
    assert_eq!(once, presented.len(), "every presented ticket was spent exactly once, by one node");
    assert!(once > 1_900, "the race presented too few tickets to mean anything: {once}");
}

#[test]
fn a_newer_schema_a_wrong_password_and_a_damaged_row_are_clear_errors() {
    let pg = OnPostgres::new("errors");
    // A schema written by a newer handoff.
    let url = pg.schema_url();
    drop(OnPostgres::open(&url));
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    raw.execute("UPDATE handoff_meta SET value = value + 1 WHERE key = 'schema'", &[]).unwrap();
    let err = Store::open_postgres(&url).expect_err("a newer schema must be refused");
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
    assert!(!err.to_string().contains("handoff-testbed-db"), "the password leaked: {err}");

    // A wrong password: one line, naming the store without any password.
    let wrong = pg.base.replace("handoff-testbed-db", "not-the-password");
    let started = Instant::now();
    let err = Store::open_postgres(&wrong).expect_err("a wrong password must be refused");
    let line = err.to_string();
    eprintln!("wrong password: {line}");
    assert!(matches!(err, StoreError::Open { .. }), "{line}");
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("not-the-password") && !line.contains('\n'), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A row that is not a record: named by table and key.
    let url = pg.schema_url();
    let store = OnPostgres::open(&url);
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    raw.execute("INSERT INTO users (name, rec) VALUES ('mallory', '{not json')", &[]).unwrap();
    let err = store.get_user("mallory").expect_err("a damaged row must be an error");
    assert!(matches!(err, StoreError::Corrupt { tree: "users", .. }), "{err}");
    assert!(err.to_string().contains("users key \"mallory\""), "{err}");
}

#[test]
fn while_the_database_is_down_calls_fail_at_once_and_work_again_when_it_is_back() {
    let pg = OnPostgres::alone("down");
    let store = pg.fresh();
    store.add_user("alice", UnixMs(1)).unwrap();
    testbed(&["postgres", "stop"]);
    let started = Instant::now();
    let err = store.put_ticket(&conformance::ticket(3)).err();
    let down_ms = started.elapsed().as_millis();
    eprintln!("with the database down: {err:?} after {down_ms} ms");
    assert!(matches!(err, Some(StoreError::Io { .. })), "a write while the database is down must fail: {err:?}");
    assert!(down_ms < 5_000, "a call while the database is down must not hang ({down_ms} ms)");
    testbed(&["postgres", "start"]);
    let back = Instant::now();
    let mut last = None;
    while back.elapsed() < Duration::from_secs(10) {
        match store.put_ticket(&conformance::ticket(3)) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(last.is_none(), "the store did not reconnect: {last:?}");
    eprintln!("the store wrote again {} ms after the database was back", back.elapsed().as_millis());
    assert_eq!(
        store.get_user("alice").unwrap().map(|u| u.name),
        Some("alice".into()),
        "nothing written before was lost"
    );
    assert_eq!(
        store.take_ticket(&conformance::ticket(3).hash, UnixMs(2_000)).unwrap().map(|t| t.presented),
        Some(None)
    );
}

#[test]
fn one_node_lease_has_one_holder_at_a_time() {
    use handoff::store::NodeLease;
    let pg = OnPostgres::new("lease");
    let url = pg.schema_url();
    let nodes: Vec<Store> = (0..8).map(|_| OnPostgres::open(&url)).collect();
    // Eight controllers claim node ast1 at once: exactly one holds it.
    let held: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| s.spawn(move || n.hold_node("ast1", &format!("c{i}"), 60_000).unwrap() == NodeLease::Held))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(held.iter().filter(|h| **h).count(), 1, "{held:?}");
    let winner = held.iter().position(|h| *h).unwrap();
    let other = (winner + 1) % 8;
    // The holder renews; another is told who holds it and for how long.
    assert_eq!(nodes[winner].hold_node("ast1", &format!("c{winner}"), 60_000).unwrap(), NodeLease::Held);
    match nodes[other].hold_node("ast1", &format!("c{other}"), 60_000).unwrap() {
        NodeLease::HeldBy { holder, remaining_ms } => {
            assert_eq!(holder, format!("c{winner}"));
            assert!((50_000..=60_000).contains(&remaining_ms), "{remaining_ms}");
        }
        NodeLease::Held => panic!("two holders of one node"),
    }
    // Another node is independent.
    assert_eq!(nodes[other].hold_node("ast2", &format!("c{other}"), 60_000).unwrap(), NodeLease::Held);
    // Given up: the next claimant holds it at once.
    nodes[winner].release_node("ast1", &format!("c{winner}")).unwrap();
    assert_eq!(nodes[other].hold_node("ast1", &format!("c{other}"), 300).unwrap(), NodeLease::Held);
    // Run out: taken by another without a release.
    assert!(matches!(nodes[winner].hold_node("ast1", "late", 300).unwrap(), NodeLease::HeldBy { .. }));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(nodes[winner].hold_node("ast1", "late", 300).unwrap(), NodeLease::Held);
}

/// `handoffctl store migrate`: a sled store with a bit of everything, copied by the real
/// binary into an empty schema, reads back the same; a second copy into it and a copy of a
/// store handoffd holds are refused with one line.
#[test]
fn handoffctl_copies_a_sled_store_into_postgres() {
    use handoff::store::{AuditAction, AuditRecord, Bar, CredentialHash, Device, Failures, Outcome, Write};
    let dir = std::env::temp_dir().join(format!("handoff-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sled_path = dir.join("store");
    {
        let sled = Store::open(&sled_path).unwrap();
        sled.add_user("alice", UnixMs(1)).unwrap();
        sled.add_user("bob", UnixMs(2)).unwrap();
        let phone = Device {
            id: "alice-phone".into(),
            user: "alice".into(),
            name: "phone".into(),
            data_endpoint: Some("alice-app".into()),
            carrier_number: Some("+15550001".into()),
        };
        sled.add_device(&phone).unwrap();
        sled.set_credential("alice", &CredentialHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into())).unwrap();
        sled.put_ticket(&conformance::ticket(1)).unwrap();
        sled.put_ticket(&conformance::ticket(2)).unwrap();
        sled.take_ticket(&conformance::ticket(2).hash, UnixMs(5_000)).unwrap();
        sled.put_bar(&Bar { session: "s1".into(), device: "alice-phone".into(), until: UnixMs(9_000) }).unwrap();
        sled.record_failure("bob", |_| Failures { recent: vec![UnixMs(7)], locked_until: None }).unwrap();
        for n in 0..5 {
            let r = AuditRecord::new(UnixMs(n * 1_000), "handoffd", AuditAction::Rejoin, Outcome::Refused);
            sled.apply(&[Write::Audit(r)]).unwrap();
        }
        // numbering that does not start at 1 (pruned) must survive the copy
        assert_eq!(sled.prune_audit(UnixMs(10_000), 7_500, 1_000, 0).unwrap(), 3);
    }
    let config = dir.join("handoffd.yaml");
    std::fs::write(
        &config,
        format!(
            "ami:\n  username: h\n  secret: s\nstore:\n  path: {}\n  pepper_file: {}/pepper\n",
            sled_path.display(),
            dir.display()
        ),
    )
    .unwrap();
    let on_postgres = OnPostgres::new("migrate");
    let url = on_postgres.schema_url();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(handoff_tests::target_dir().join("release/handoffctl"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = ctl(&["store", "migrate", "--to", &url]);
    eprintln!("{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copied 2 user(s), 1 device(s), 1 credential(s), 0 session(s), 2 ticket(s), 1 bar(s), 1 failure record(s), 2 audit record(s)"), "{out}");
    assert!(!out.contains("handoff-testbed-db"), "the password was printed: {out}");
    let sled = Store::open(&sled_path).unwrap().export().unwrap().canonical();
    let pg = OnPostgres::open(&url);
    assert_eq!(pg.export().unwrap().canonical(), sled, "PostgreSQL holds what sled held");
    assert_eq!(pg.audit_tail(1).unwrap()[0].0, 5, "audit numbers kept");
    assert_eq!(
        pg.take_ticket(&conformance::ticket(2).hash, UnixMs(6_000)).unwrap().and_then(|t| t.presented),
        Some(UnixMs(5_000)),
        "a spent ticket stays spent"
    );
    drop(pg);
    // Into a database that holds records already: refused, nothing merged.
    let (code, out) = ctl(&["store", "migrate", "--to", &url]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.trim().ends_with("already holds users or audit records; import into an empty one"), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    // A sled store in use (handoffd running): refused by sled's lock.
    let held = Store::open(&sled_path).unwrap();
    let (code, out) = ctl(&["store", "migrate", "--to", &on_postgres.schema_url()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is in use (is handoffd running?)"), "{out}");
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}
