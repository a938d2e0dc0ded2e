//! Users, their devices and credential hashes on PostgreSQL: a device's id, endpoint and
//! number are checked free and its user present in the transaction that adds it.

use super::connection::{db_io, text, PgStore};
use crate::store::records::{CredentialHash, Device};
use crate::store::{check_id, decode, is_e164, StoreError, UnixMs, User};

impl PgStore {
    // ---- users

    pub fn add_user(&self, name: &str, now: UnixMs) -> Result<User, StoreError> {
        check_id(&self.name, "user name", name)?;
        let user = User { name: name.into(), created: now };
        let (path, rec, n) = (self.name.clone(), text(&user), name.to_string());
        self.run("users", move |c| {
            let rows = c
                .execute("INSERT INTO users (name, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&n, &rec])
                .map_err(|e| db_io(&path, "users", &e))?;
            if rows == 0 {
                return Err(StoreError::UserExists { path, user: n });
            }
            Ok(())
        })?;
        Ok(user)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get_one("users", "SELECT rec FROM users WHERE name = $1", name.to_string())
    }

    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.get_all("users", "SELECT name, rec FROM users ORDER BY name")
    }

    // ---- devices

    pub fn add_device(&self, device: &Device) -> Result<(), StoreError> {
        let path = self.name.clone();
        check_id(&path, "device id", &device.id)?;
        check_id(&path, "user name", &device.user)?;
        if device.name.is_empty() || device.name.len() > 128 || device.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                path,
                what: "device name",
                value: device.name.clone(),
                problem: "must be 1 to 128 bytes without control characters",
            });
        }
        if let Some(e) = &device.data_endpoint {
            check_id(&path, "endpoint", e)?;
        }
        if let Some(n) = &device.carrier_number {
            if !is_e164(n) {
                return Err(StoreError::Invalid {
                    path,
                    what: "number",
                    value: n.clone(),
                    problem: "not E.164 (+ and 2 to 15 digits)",
                });
            }
        }
        let d = device.clone();
        let rec = text(device);
        self.run("devices", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "devices", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            if tx.query_opt("SELECT 1 FROM users WHERE name = $1 FOR SHARE", &[&d.user]).map_err(|e| io(&e))?.is_none()
            {
                return Err(StoreError::NoSuchUser { path, user: d.user });
            }
            if tx.query_opt("SELECT 1 FROM devices WHERE id = $1", &[&d.id]).map_err(|e| io(&e))?.is_some() {
                return Err(StoreError::DeviceExists { path, device: d.id });
            }
            for (what, column, value) in
                [("endpoint", "endpoint", &d.data_endpoint), ("number", "number", &d.carrier_number)]
            {
                if let Some(value) = value {
                    let sql = format!("SELECT id FROM devices WHERE {column} = $1");
                    if let Some(row) = tx.query_opt(sql.as_str(), &[value]).map_err(|e| io(&e))? {
                        return Err(StoreError::Taken { path, what, value: value.clone(), device: row.get(0) });
                    }
                }
            }
            tx.execute(
                "INSERT INTO devices (id, user_name, endpoint, number, rec) VALUES ($1, $2, $3, $4, $5)",
                &[&d.id, &d.user, &d.data_endpoint, &d.carrier_number, &rec],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })
    }

    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE id = $1", id.to_string())
    }

    pub fn device_by_endpoint(&self, endpoint: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE endpoint = $1", endpoint.to_string())
    }

    pub fn device_by_number(&self, number: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE number = $1", number.to_string())
    }

    pub fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.get_all("devices", "SELECT id, rec FROM devices ORDER BY id")
    }

    pub fn remove_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let (path, id) = (self.name.clone(), id.to_string());
        let rec: Option<String> = self.run("devices", move |c| {
            let row = c
                .query_opt("DELETE FROM devices WHERE id = $1 RETURNING rec", &[&id])
                .map_err(|e| db_io(&path, "devices", &e))?;
            Ok(row.map(|r| r.get(0)))
        })?;
        rec.map(|r| self.decode_text("devices", id_key(&r), &r)).transpose()
    }

    // ---- credentials

    pub fn set_credential(&self, user: &str, hash: &CredentialHash) -> Result<(), StoreError> {
        let (path, user, rec) = (self.name.clone(), user.to_string(), text(hash));
        self.run("credentials", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "credentials", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            if tx.query_opt("SELECT 1 FROM users WHERE name = $1 FOR SHARE", &[&user]).map_err(|e| io(&e))?.is_none() {
                return Err(StoreError::NoSuchUser { path, user });
            }
            tx.execute(
                "INSERT INTO credentials (user_name, rec) VALUES ($1, $2)
                 ON CONFLICT (user_name) DO UPDATE SET rec = EXCLUDED.rec",
                &[&user, &rec],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })
    }

    pub fn credential(&self, user: &str) -> Result<Option<CredentialHash>, StoreError> {
        self.get_one("credentials", "SELECT rec FROM credentials WHERE user_name = $1", user.to_string())
    }
}

fn id_key(rec: &str) -> String {
    decode::<Device>(rec.as_bytes()).map(|d| format!("{:?}", d.id)).unwrap_or_else(|_| "?".into())
}
