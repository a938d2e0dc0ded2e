//! Opening the controller: the store, the pepper and the PIN verifier, the devices listed
//! in handoffd.yaml imported into the store, the device registry, and session ids unique
//! across restarts. Runs once, before the link loop.

// Clock, tokio and sockets are allowed here: reads the clock once for the session id prefix (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::{controller::Core, store_io::TimelineQueue, Controller};
use crate::config::Config;
use crate::service::MoveService;
use crate::store::{Store, UnixMs};
use std::time::Instant;
use tracing::{error, info, warn};

/// Why handoffd could not start (one line; exit code 78 for configuration problems).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error("admin token {path}: {problem}")]
    AdminToken { path: String, problem: String },
}

impl Controller {
    /// Opens the store (`store.backend`: the sled `store.path` or the PostgreSQL `store.url`), loads the pepper (made on first start, when the store
    /// holds no PIN yet) and the admin token (made if missing), and imports the devices listed
    /// in the config into the store.
    pub fn open(cfg: Config) -> Result<Self, StartError> {
        let store = Store::open_configured(&cfg.store)?;
        let pepper_path = std::path::Path::new(&cfg.store.pepper_file);
        let pepper = if pepper_path.exists() {
            crate::credentials::Pepper::load(pepper_path)?
        } else {
            let has_pins = store.list_users()?.iter().any(|u| store.credential(&u.name).ok().flatten().is_some());
            if has_pins {
                return Err(crate::credentials::CredentialError::PepperIo {
                    path: cfg.store.pepper_file.clone(),
                    problem: "missing, but the store holds PINs hashed with it (restore the file)".into(),
                }
                .into());
            }
            let p = crate::credentials::Pepper::create(pepper_path)?;
            info!("created the pepper {} (keep it: every PIN depends on it)", cfg.store.pepper_file);
            p
        };
        let hasher = crate::credentials::Hasher::new(pepper, crate::credentials::HashCost::default())?;
        let verifier = crate::credentials::Verifier::new(
            store.clone(),
            hasher,
            cfg.moves.lockout(),
            cfg.moves.max_concurrent_checks,
        )?;
        let service = MoveService { store: store.clone(), verifier, rules: cfg.moves.rules() };
        import_config_devices(&store, &cfg)?;
        // Session ids stay unique across restarts: prefix them with the start time.
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut core = Core::new(&cfg, format!("{}-", radix36(start)));
        core.set_registry(store.list_devices()?);
        let (inbox_tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            cfg,
            metrics: core.metrics.clone(),
            board: core.board.clone(),
            core,
            epoch: Instant::now(),
            store,
            service,
            inbox_tx,
            inbox,
            timeline: TimelineQueue::default(),
        })
    }
}

/// Makes the store say what `handoffd.yaml` says for the devices it lists (the YAML is their
/// source of truth: see [`crate::store::config_devices`]); one line for each device imported,
/// changed or kept because of a conflict.
fn import_config_devices(store: &Store, cfg: &Config) -> Result<(), crate::store::StoreError> {
    use crate::store::config_devices::{apply, Applied};
    for done in apply(store, &cfg.devices, UnixMs::now())? {
        match done {
            Applied::Imported(id) => info!("device '{id}' added to the store from handoffd.yaml"),
            Applied::Updated(d) => warn!(
                "device '{}': handoffd.yaml differs from the store ({}); handoffd.yaml wins, the store now says the same",
                d.device, d.what
            ),
            Applied::Conflict(d, why) => error!(
                "device '{}': handoffd.yaml differs from the store ({}) but cannot be applied: {why}; the store's record stays until that is resolved",
                d.device, d.what
            ),
        }
    }
    Ok(())
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::radix36;

    #[test]
    fn radix36_writes_lowercase_digits_most_significant_first() {
        assert_eq!(radix36(0), "0");
        assert_eq!(radix36(35), "z");
        assert_eq!(radix36(36), "10");
        assert_eq!(radix36(1_700_000_000), "s44we8");
        assert_eq!(radix36(u64::MAX), "3w5e11264sgsf");
    }
}
