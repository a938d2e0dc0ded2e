//! Users, their devices (with their endpoint and number indexes) and credential hashes on
//! sled: a device is added or removed with its indexes in one transaction, and flushed.

use super::SledStore;
use crate::store::records::{CredentialHash, Device};
use crate::store::{decode, encode, is_e164, StoreError, UnixMs, User};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

impl SledStore {
    // ---- users

    /// Adds a user (flushed).
    pub fn add_user(&self, name: &str, now: UnixMs) -> Result<User, StoreError> {
        self.check("user name", name)?;
        let user = User { name: name.into(), created: now };
        let swapped = self
            .inner
            .users
            .compare_and_swap(name, None as Option<&[u8]>, Some(encode(&user)))
            .map_err(|e| self.io("users", e))?;
        if swapped.is_err() {
            return Err(StoreError::UserExists { path: self.inner.path.clone(), user: name.into() });
        }
        self.flush()?;
        Ok(user)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get(&self.inner.users, "users", name.as_bytes())
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.scan(&self.inner.users, "users")
    }

    fn require_user(&self, name: &str) -> Result<(), StoreError> {
        match self.get_user(name)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchUser { path: self.inner.path.clone(), user: name.into() }),
        }
    }

    // ---- devices

    /// Registers a device of an existing user (flushed). Its id, endpoint and number must be
    /// free; the number must be E.164.
    pub fn add_device(&self, device: &Device) -> Result<(), StoreError> {
        let path = &self.inner.path;
        self.check("device id", &device.id)?;
        self.check("user name", &device.user)?;
        if device.name.is_empty() || device.name.len() > 128 || device.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                path: path.clone(),
                what: "device name",
                value: device.name.clone(),
                problem: "must be 1 to 128 bytes without control characters",
            });
        }
        if let Some(e) = &device.data_endpoint {
            self.check("endpoint", e)?;
        }
        if let Some(n) = &device.carrier_number {
            if !is_e164(n) {
                return Err(StoreError::Invalid {
                    path: path.clone(),
                    what: "number",
                    value: n.clone(),
                    problem: "not E.164 (+ and 2 to 15 digits)",
                });
            }
        }
        let i = &self.inner;
        let bytes = encode(device);
        (&i.users, &i.devices, &i.by_endpoint, &i.by_number)
            .transaction(|(users, devices, by_endpoint, by_number)| {
                let abort = |e| Err(ConflictableTransactionError::Abort(e));
                if users.get(device.user.as_bytes())?.is_none() {
                    return abort(StoreError::NoSuchUser { path: path.clone(), user: device.user.clone() });
                }
                if devices.get(device.id.as_bytes())?.is_some() {
                    return abort(StoreError::DeviceExists { path: path.clone(), device: device.id.clone() });
                }
                for (what, value, index) in
                    [("endpoint", &device.data_endpoint, by_endpoint), ("number", &device.carrier_number, by_number)]
                {
                    if let Some(value) = value {
                        if let Some(owner) = index.get(value.as_bytes())? {
                            return abort(StoreError::Taken {
                                path: path.clone(),
                                what,
                                value: value.clone(),
                                device: String::from_utf8_lossy(&owner).into_owned(),
                            });
                        }
                        index.insert(value.as_bytes(), device.id.as_bytes())?;
                    }
                }
                devices.insert(device.id.as_bytes(), bytes.clone())?;
                Ok(())
            })
            .map_err(|e| self.tx_err("devices", e))?;
        self.flush()
    }

    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.get(&self.inner.devices, "devices", id.as_bytes())
    }

    /// The device whose app registers as this PJSIP endpoint.
    pub fn device_by_endpoint(&self, endpoint: &str) -> Result<Option<Device>, StoreError> {
        self.device_by_index(&self.inner.by_endpoint, "devices_by_endpoint", endpoint)
    }

    /// The device with this E.164 number.
    pub fn device_by_number(&self, number: &str) -> Result<Option<Device>, StoreError> {
        self.device_by_index(&self.inner.by_number, "devices_by_number", number)
    }

    fn device_by_index(&self, index: &sled::Tree, name: &'static str, key: &str) -> Result<Option<Device>, StoreError> {
        match index.get(key).map_err(|e| self.io(name, e))? {
            Some(id) => self.get(&self.inner.devices, "devices", &id),
            None => Ok(None),
        }
    }

    /// Every device, by id.
    pub fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.scan(&self.inner.devices, "devices")
    }

    /// Unregisters a device (flushed); returns it, or `None` if there was none.
    pub fn remove_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let i = &self.inner;
        let path = &i.path;
        let removed = (&i.devices, &i.by_endpoint, &i.by_number)
            .transaction(|(devices, by_endpoint, by_number)| {
                let Some(bytes) = devices.remove(id.as_bytes())? else { return Ok(None) };
                let device: Device = decode(&bytes).map_err(|problem| {
                    ConflictableTransactionError::Abort(StoreError::Corrupt {
                        path: path.clone(),
                        tree: "devices",
                        key: format!("{id:?}"),
                        problem: problem.to_string(),
                    })
                })?;
                if let Some(e) = &device.data_endpoint {
                    by_endpoint.remove(e.as_bytes())?;
                }
                if let Some(n) = &device.carrier_number {
                    by_number.remove(n.as_bytes())?;
                }
                Ok(Some(device))
            })
            .map_err(|e| self.tx_err("devices", e))?;
        self.flush()?;
        Ok(removed)
    }

    // ---- credentials

    /// Sets (or replaces) an existing user's credential hash (flushed).
    pub fn set_credential(&self, user: &str, hash: &CredentialHash) -> Result<(), StoreError> {
        self.require_user(user)?;
        self.inner.credentials.insert(user, encode(hash)).map_err(|e| self.io("credentials", e))?;
        self.flush()
    }

    pub fn credential(&self, user: &str) -> Result<Option<CredentialHash>, StoreError> {
        self.get(&self.inner.credentials, "credentials", user.as_bytes())
    }
}
