//! Which wins when `handoffd.yaml` and the store disagree about a device.
//!
//! **`handoffd.yaml` is the source of truth for the devices it lists**: what a PBX admin
//! writes there is what calls are matched against, after the next start. At start handoffd
//! compares each listed device with the store's record of it (user, app endpoint, number),
//! logs one line per difference, and rewrites the store's record to the YAML's. Devices that
//! only the store has (added with `handoffctl device add` or the API) are the store's and are
//! kept. `handoffd --check` prints the same differences without changing anything, and when
//! the registry changes through the API, a device that now differs from the YAML is logged
//! (the YAML will win again at the next start).

use super::{Device, Store, StoreError, UnixMs};
use crate::config::DeviceEntry;

/// One device that `handoffd.yaml` and the store disagree about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub device: String,
    /// `user 'alice' → 'bob', endpoint 'alice-app' → 'alice-app2'` (store → YAML).
    pub what: String,
}

fn shown(v: Option<&str>) -> String {
    v.map(|v| format!("'{v}'")).unwrap_or_else(|| "none".into())
}

fn compare(yaml: &DeviceEntry, stored: &Device) -> Option<Difference> {
    let mut parts = Vec::new();
    if yaml.user != stored.user {
        parts.push(format!("user '{}' → '{}'", stored.user, yaml.user));
    }
    for (what, s, y) in
        [("endpoint", &stored.data_endpoint, &yaml.endpoint), ("number", &stored.carrier_number, &yaml.number)]
    {
        if s != y {
            parts.push(format!("{what} {} → {}", shown(s.as_deref()), shown(y.as_deref())));
        }
    }
    (!parts.is_empty()).then(|| Difference { device: yaml.id.clone(), what: parts.join(", ") })
}

/// The listed devices whose store record differs from `handoffd.yaml` (nothing is changed).
pub fn differences(store: &Store, listed: &[DeviceEntry]) -> Result<Vec<Difference>, StoreError> {
    let mut out = Vec::new();
    for d in listed {
        if let Some(stored) = store.device(&d.id)? {
            out.extend(compare(d, &stored));
        }
    }
    Ok(out)
}

/// What [`apply`] did with one listed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Not in the store yet: added from the YAML.
    Imported(String),
    /// The store's record differed and now says what the YAML says.
    Updated(Difference),
    /// The store's record differs, but the YAML's endpoint or number belongs to another
    /// device in the store: the store's record is kept (one line says which and why).
    Conflict(Difference, String),
}

/// Makes the store say what `handoffd.yaml` says for every device it lists (blocking: call
/// it off the async executor).
pub fn apply(store: &Store, listed: &[DeviceEntry], now: UnixMs) -> Result<Vec<Applied>, StoreError> {
    let mut out = Vec::new();
    for d in listed {
        if store.get_user(&d.user)?.is_none() {
            store.add_user(&d.user, now)?;
        }
        let wanted = |name: String| Device {
            id: d.id.clone(),
            user: d.user.clone(),
            name,
            data_endpoint: d.endpoint.clone(),
            carrier_number: d.number.clone(),
        };
        let Some(stored) = store.device(&d.id)? else {
            store.add_device(&wanted(d.id.clone()))?;
            out.push(Applied::Imported(d.id.clone()));
            continue;
        };
        let Some(diff) = compare(d, &stored) else { continue };
        // The YAML's endpoint or number held by another device of the store: keep the store's.
        let mut taken = None;
        if let Some(e) = &d.endpoint {
            taken = store
                .device_by_endpoint(e)?
                .filter(|o| o.id != d.id)
                .map(|o| format!("endpoint '{e}' belongs to device '{}'", o.id));
        }
        if let (None, Some(n)) = (&taken, &d.number) {
            taken = store
                .device_by_number(n)?
                .filter(|o| o.id != d.id)
                .map(|o| format!("number '{n}' belongs to device '{}'", o.id));
        }
        if let Some(why) = taken {
            out.push(Applied::Conflict(diff, why));
            continue;
        }
        store.remove_device(&d.id)?;
        if let Err(e) = store.add_device(&wanted(stored.name.clone())) {
            // Put the old record back so that the device still works as before.
            let _ = store.add_device(&stored);
            return Err(e);
        }
        out.push(Applied::Updated(diff));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, user: &str, endpoint: Option<&str>, number: Option<&str>) -> DeviceEntry {
        DeviceEntry {
            id: id.into(),
            user: user.into(),
            endpoint: endpoint.map(Into::into),
            number: number.map(Into::into),
            caller_id: None,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("store")).unwrap();
        (dir, s)
    }

    /// Issue 12 item 11: the endpoint of a device is edited in handoffd.yaml after the store
    /// has it: the YAML wins, and the difference is named.
    #[test]
    fn an_edited_device_in_the_yaml_wins_over_the_store_and_is_reported() {
        let (_d, s) = store();
        let before = [entry("alice-phone", "alice", Some("alice-app"), Some("+15550001"))];
        assert_eq!(apply(&s, &before, UnixMs(1)).unwrap(), vec![Applied::Imported("alice-phone".into())]);
        let after = [entry("alice-phone", "alice", Some("alice-app2"), Some("+15550001"))];
        let diff = differences(&s, &after).unwrap();
        assert_eq!(diff.len(), 1);
        assert_eq!(diff[0].what, "endpoint 'alice-app' → 'alice-app2'");
        let done = apply(&s, &after, UnixMs(2)).unwrap();
        assert!(matches!(&done[..], [Applied::Updated(d)] if d.device == "alice-phone"), "{done:?}");
        let stored = s.device("alice-phone").unwrap().unwrap();
        assert_eq!(stored.data_endpoint.as_deref(), Some("alice-app2"));
        assert_eq!(s.device_by_endpoint("alice-app2").unwrap().map(|d| d.id).as_deref(), Some("alice-phone"));
        assert!(s.device_by_endpoint("alice-app").unwrap().is_none(), "the old endpoint is free again");
        assert!(differences(&s, &after).unwrap().is_empty());
        assert!(apply(&s, &after, UnixMs(3)).unwrap().is_empty(), "nothing to do twice");
    }

    #[test]
    fn a_yaml_value_another_store_device_holds_keeps_the_store_record_and_says_why() {
        let (_d, s) = store();
        apply(&s, &[entry("alice-phone", "alice", Some("alice-app"), None)], UnixMs(1)).unwrap();
        s.add_device(&Device {
            id: "bob-phone".into(),
            user: "alice".into(),
            name: "Bob".into(),
            data_endpoint: Some("bob-app".into()),
            carrier_number: Some("+15550002".into()),
        })
        .unwrap();
        let done = apply(&s, &[entry("alice-phone", "alice", Some("bob-app"), None)], UnixMs(2)).unwrap();
        assert!(
            matches!(&done[..], [Applied::Conflict(_, why)] if why == "endpoint 'bob-app' belongs to device 'bob-phone'"),
            "{done:?}"
        );
        assert_eq!(s.device("alice-phone").unwrap().unwrap().data_endpoint.as_deref(), Some("alice-app"));
        // A device only the store has is the store's: never touched.
        assert!(s.device("bob-phone").unwrap().is_some());
    }
}
