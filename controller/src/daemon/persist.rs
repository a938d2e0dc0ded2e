//! Persistence: what the session core's outputs change in the store. [`writes`] maps the
//! sessions' views to store records (no I/O); [`apply`] writes them, on a blocking thread
//! (the link loop calls it through [`super::store_io`]).

use super::controller::Now;
use crate::session::{Outputs, SessionId, Sessions, State};
use crate::store::{AuditAction, AuditRecord, Outcome, SessionSnapshot, SessionState, Store, UnixMs};
use tracing::{error, info};

/// One change to the store's session records, in the order it is to be made.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    /// A running session's snapshot.
    Put(SessionSnapshot),
    /// A session the core no longer has: its stored snapshot (if any) is marked ended.
    Close { session: String, at: UnixMs },
    /// A session ended: audited, under its stored user.
    AuditEnd { session: String, reason: String, at: UnixMs },
    /// After a resync: stored sessions not ended and not in `live` are closed and audited.
    CloseVanished { live: Vec<String>, at: UnixMs },
}

/// What an input changed, as store writes (each touched session's snapshot, ended sessions
/// closed and audited) and audit records (refused rejoins). `node` is `cluster.node`.
pub fn writes(sessions: &Sessions, out: &Outputs, node: &str, now: Now) -> (Vec<StoreWrite>, Vec<AuditRecord>) {
    let at = now.unix;
    let mut touched: Vec<&SessionId> = out.records.iter().map(|r| &r.session).collect();
    touched.extend(out.ended.iter().map(|(id, _)| id));
    touched.sort();
    touched.dedup();
    let mut writes: Vec<StoreWrite> = touched
        .into_iter()
        .map(|id| match sessions.view(id) {
            Some(v) => StoreWrite::Put(SessionSnapshot {
                id: v.id.0.clone(),
                user: v.user,
                device: v.device,
                far: v.far,
                bridge: v.bridge,
                legs: v.legs.into_iter().map(|(u, p)| (u, p.into())).collect(),
                state: match v.state {
                    State::AwaitingFarAnswer => SessionState::AwaitingFarAnswer,
                    State::Connected => SessionState::Connected,
                    State::Grace { .. } => SessionState::Grace,
                    State::Ending { .. } => SessionState::Ending,
                },
                updated: at,
                far_number: v.far_number,
                barred: v.barred.into_iter().map(|(d, t)| (d, now.unix_of(t))).collect(),
                node: node.to_string(),
            }),
            None => StoreWrite::Close { session: id.0.clone(), at },
        })
        .collect();
    writes.extend(out.ended.iter().map(|(id, reason)| StoreWrite::AuditEnd {
        session: id.0.clone(),
        reason: reason.clone(),
        at,
    }));
    let audit = out
        .barred
        .iter()
        .map(|(id, device, reason)| {
            AuditRecord::new(at, format!("device:{device}"), AuditAction::Rejoin, Outcome::Refused)
                .device(device)
                .session(&id.0)
                .reason(reason)
        })
        .collect();
    (writes, audit)
}

/// Makes the writes, in order; returns the audit records they call for (ended sessions with
/// their users, closed vanished sessions). Blocks on the store: call it off the executor.
pub fn apply(store: &Store, writes: Vec<StoreWrite>) -> Vec<AuditRecord> {
    let mut audit = Vec::new();
    for w in writes {
        match w {
            StoreWrite::Put(s) => {
                if let Err(e) = store.put_session(&s) {
                    error!("session {}: snapshot not stored: {e}", s.id);
                }
            }
            StoreWrite::Close { session, at } => {
                if let Ok(Some(s)) = store.get_session(&session) {
                    let closed = SessionSnapshot { state: SessionState::Ended, legs: Vec::new(), updated: at, ..s };
                    if let Err(e) = store.put_session(&closed) {
                        error!("session {session}: snapshot not stored: {e}");
                    }
                }
            }
            StoreWrite::AuditEnd { session, reason, at } => {
                let user = store.get_session(&session).ok().flatten().map(|s| s.user).unwrap_or_default();
                audit.push(
                    AuditRecord::new(at, "handoffd", AuditAction::SessionEnd, Outcome::Done)
                        .user(user)
                        .session(&session)
                        .reason(&reason),
                );
            }
            StoreWrite::CloseVanished { live, at } => audit.extend(close_vanished(store, &live, at)),
        }
    }
    audit
}

/// Sessions the store says are running but the PBX no longer has: closed, and their audit
/// records returned.
fn close_vanished(store: &Store, live: &[String], at: UnixMs) -> Vec<AuditRecord> {
    let Ok(snapshots) = store.list_sessions() else { return Vec::new() };
    let mut records = Vec::new();
    for s in snapshots.into_iter().filter(|s| s.state != SessionState::Ended) {
        if live.contains(&s.id) {
            continue;
        }
        records.push(
            AuditRecord::new(at, "handoffd", AuditAction::SessionEnd, Outcome::Done)
                .user(&s.user)
                .session(&s.id)
                .reason("closed: its channels were gone from the PBX when handoffd resynchronised"),
        );
        let closed = SessionSnapshot { state: SessionState::Ended, legs: Vec::new(), updated: at, ..s };
        let _ = store.put_session(&closed);
    }
    if !records.is_empty() {
        info!("closed {} stored session(s) whose channels are gone", records.len());
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::controller::tests::{core, leg, now};

    fn snapshot(id: &str, user: &str, state: SessionState) -> SessionSnapshot {
        SessionSnapshot {
            id: id.into(),
            user: user.into(),
            device: "alice-phone".into(),
            far: None,
            bridge: format!("handoff-{id}"),
            legs: Vec::new(),
            state,
            updated: UnixMs(1),
            far_number: "2000".into(),
            barred: Vec::new(),
            node: String::new(),
        }
    }

    #[test]
    fn a_session_view_becomes_its_snapshot() {
        let mut c = core();
        c.on_input(leg("1.1", "2000", ""), now(100));
        let id = c.sessions.ids().next().cloned().unwrap();
        c.sessions.bar(&id, "alice-tablet", 5_100);
        let out = crate::session::Outputs {
            records: vec![crate::session::Record {
                at: 150,
                session: id.clone(),
                what: "x".into(),
                mark: crate::timeline::Mark::Note,
            }],
            ..Default::default()
        };
        let (w, audit) = writes(&c.sessions, &out, "node-a", now(200));
        assert!(audit.is_empty());
        let [StoreWrite::Put(s)] = w.as_slice() else { panic!("{w:?}") };
        assert_eq!(s.node, "node-a");
        assert_eq!(s.updated, now(200).unix);
        assert_eq!(s.barred, vec![("alice-tablet".to_string(), now(200).unix_of(5_100))]);
    }

    #[test]
    fn applied_writes_close_and_audit_under_the_stored_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        store.put_session(&snapshot("s1", "alice", SessionState::Connected)).unwrap();
        store.put_session(&snapshot("s2", "bob", SessionState::Connected)).unwrap();
        store.put_session(&snapshot("s3", "carol", SessionState::Grace)).unwrap();
        let at = UnixMs(42);
        let audit = apply(
            &store,
            vec![
                StoreWrite::Close { session: "s1".into(), at },
                StoreWrite::Close { session: "never-stored".into(), at },
                StoreWrite::AuditEnd { session: "s1".into(), reason: "hung up".into(), at },
                StoreWrite::CloseVanished { live: vec!["s3".into()], at },
            ],
        );
        let s1 = store.get_session("s1").unwrap().unwrap();
        assert_eq!((s1.state, s1.updated), (SessionState::Ended, at));
        assert!(store.get_session("never-stored").unwrap().is_none());
        assert_eq!(store.get_session("s2").unwrap().unwrap().state, SessionState::Ended, "vanished");
        assert_eq!(store.get_session("s3").unwrap().unwrap().state, SessionState::Grace, "live");
        let who: Vec<_> =
            audit.iter().map(|r| (r.user.clone().unwrap_or_default(), r.session.clone().unwrap_or_default())).collect();
        assert_eq!(who, vec![("alice".to_string(), "s1".to_string()), ("bob".to_string(), "s2".to_string())]);
    }

    #[test]
    fn a_refused_rejoin_is_audited_without_the_store() {
        let c = core();
        let out = crate::session::Outputs {
            barred: vec![(crate::session::SessionId("s1".into()), "alice-tablet".into(), "moved away".into())],
            ..Default::default()
        };
        let (w, audit) = writes(&c.sessions, &out, "", now(1));
        assert!(w.is_empty());
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, AuditAction::Rejoin);
    }
}
