//! The store's unit tests on sled: E.164 numbers, the record envelope, every conformance case,
//! and what only sled shows (a second opener, bad ids and damaged records, a newer layout).

use super::*;

#[test]
fn e164() {
    assert!(is_e164("+4930123456"));
    assert!(!is_e164("4930123456"));
    assert!(!is_e164("+0301"));
    assert!(!is_e164("+1"));
    assert!(!is_e164("+1234567890123456"));
    assert!(!is_e164("+49 30"));
}

#[test]
fn envelope_rejects_other_versions() {
    let bytes = br#"{"v":2,"r":{"name":"a","created":0}}"#;
    let err = decode::<User>(bytes).unwrap_err();
    assert!(err.to_string().contains("record version 2 unknown"), "{err}");
    let ok: User = decode(&encode(&User { name: "a".into(), created: UnixMs(5) })).unwrap();
    assert_eq!(ok.created, UnixMs(5));
}

/// Sled stores in one temporary directory.
struct OnSled(tempfile::TempDir, std::sync::atomic::AtomicUsize);

impl conformance::Fixture for OnSled {
    fn fresh(&self) -> Store {
        let n = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store::open(self.0.path().join(format!("store-{n}"))).unwrap()
    }
    #[allow(clippy::disallowed_methods)] // waits for sled to release the reopened store's lock
    fn reopen(&self, store: Store) -> Store {
        let path = store.path().to_string();
        drop(store);
        // sled's flusher thread may hold the old handle's lock a moment after the drop.
        let reopened = (0..100).find_map(|_| match Store::open(&path) {
            Err(StoreError::InUse { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            other => Some(other),
        });
        reopened.expect("the store's lock is released").unwrap()
    }
}

#[test]
fn sled_passes_every_store_conformance_case() {
    conformance::run_all(&OnSled(tempfile::tempdir().unwrap(), Default::default()));
}

fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

#[test]
fn a_second_opener_is_told_the_store_is_in_use() {
    let (dir, _store) = fresh();
    let Err(err) = Store::open(dir.path().join("store")) else { panic!("a second open must fail") };
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(err.to_string().ends_with("is in use (is handoffd running?)"), "{err}");
}

#[test]
fn bad_ids_and_undecodable_records_are_named() {
    let (_dir, store) = fresh();
    let err = store.add_user("", UnixMs(1)).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { what: "user name", .. }), "{err}");
    store.sled().users_tree().insert("mallory", b"{not json".to_vec()).unwrap();
    let err = store.get_user("mallory").unwrap_err();
    assert!(err.to_string().contains("users key \"mallory\""), "{err}");
    assert!(matches!(err, StoreError::Corrupt { tree: "users", .. }));
}

#[test]
fn a_store_from_a_newer_handoff_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).unwrap();
        let meta = store.sled().db().open_tree("meta").unwrap();
        meta.insert("schema", encode(&(SCHEMA_VERSION + 1))).unwrap();
        store.flush().unwrap();
    }
    let Err(err) = Store::open(&path) else { panic!("a newer schema must be refused") };
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err}");
}
