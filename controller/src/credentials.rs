//! PINs and passphrases: hashed with Argon2id keyed by a server-side pepper, checked off the
//! async executor with a concurrency cap, failures counted towards a lockout, all audited.
//!
//! - [`Pepper`]: 32 random bytes in a file outside the store (`/etc/handoff/pepper`, mode
//!   0600, made by `handoffctl init-pepper`). It is Argon2's `secret` (keyed hashing): a copy
//!   of the store alone does not allow an offline guess of a 4-digit PIN.
//! - [`Passcode`]: a PIN (4–12 digits) or passphrase (8+ characters); wiped on drop, never in
//!   Debug output or errors.
//! - [`Hasher`]: hash and verify (blocking; Argon2's verify compares in constant time).
//! - [`Verifier`]: the async check the daemon calls: lockout first, then Argon2 on the blocking
//!   pool under a [`tokio::sync::Semaphore`], one check per user at a time (parallel guesses
//!   would outrun the failure count), failures recorded with [`LockoutPolicy`], audit records
//!   for every check and every lockout.

// Clock, tokio and sockets are allowed here: runs Argon2 checks on the blocking pool: I/O layer (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::moves::LockoutPolicy;
use crate::store::{AuditAction, AuditRecord, CredentialHash, Outcome, Store, StoreError, UnixMs, Write};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// A credential error: one line, never containing a PIN, passphrase or pepper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The pepper file could not be read or written.
    #[error("pepper {path}: {problem}")]
    PepperIo { path: String, problem: String },
    /// `init-pepper` found a pepper already there.
    #[error("pepper {path} already exists (not replaced: every stored PIN depends on it)")]
    PepperExists { path: String },
    /// The pepper file is not 32 bytes.
    #[error("pepper {path}: {len} bytes, expected 32")]
    PepperSize { path: String, len: u64 },
    /// The pepper file can be read by group or others.
    #[error("pepper {path}: mode {mode:04o} lets group or others read it (chmod 600 it)")]
    PepperMode { path: String, mode: u32 },
    /// The PIN or passphrase offered to be set is not acceptable.
    #[error("PIN or passphrase: {0}")]
    Passcode(&'static str),
    /// The Argon2 cost parameters are out of range.
    #[error("argon2 cost: {0}")]
    Cost(String),
    /// A stored hash is not a usable Argon2id PHC string.
    #[error("stored credential of user {user}: {problem}")]
    StoredHash { user: String, problem: String },
    /// Hashing failed.
    #[error("hashing a credential: {0}")]
    Hash(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking check did not complete (it panicked, or the runtime is shutting down).
    #[error("credential check of user {user} did not finish: {problem}")]
    Interrupted { user: String, problem: String },
}

/// The server's pepper: Argon2's secret key. Wiped on drop; Debug shows nothing of it.
pub struct Pepper(Zeroizing<[u8; 32]>);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(***)")
    }
}

impl Pepper {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Makes a new pepper file (mode 0600; its directory is created if missing) and returns the
    /// pepper. Refuses to replace an existing one.
    pub fn create(path: &Path) -> Result<Self, CredentialError> {
        let shown = path.display().to_string();
        let io = |what: &str, e: std::io::Error| CredentialError::PepperIo {
            path: shown.clone(),
            problem: format!("{what}: {e}"),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).map_err(|e| CredentialError::PepperIo {
            path: shown.clone(),
            problem: format!("OS random source: {e}"),
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CredentialError::PepperExists { path: shown.clone() },
            _ => io("creating", e),
        })?;
        file.write_all(&bytes[..]).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        Ok(Self(bytes))
    }

    /// Reads a pepper file: exactly 32 bytes, not readable by group or others.
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| CredentialError::PepperIo { path: shown.clone(), problem: format!("cannot read it: {e}") })?;
        if !meta.is_file() {
            return Err(CredentialError::PepperIo { path: shown, problem: "not a regular file".into() });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CredentialError::PepperMode { path: shown, mode });
            }
        }
        if meta.len() != 32 {
            return Err(CredentialError::PepperSize { path: shown, len: meta.len() });
        }
        let bytes =
            Zeroizing::new(std::fs::read(path).map_err(|e| CredentialError::PepperIo {
                path: shown.clone(),
                problem: format!("cannot read it: {e}"),
            })?);
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CredentialError::PepperSize { path: shown, len: bytes.len() as u64 })?;
        Ok(Self(Zeroizing::new(array)))
    }
}

/// A PIN (4 to 12 digits) or a passphrase (8 to 256 bytes, at least 8 characters, no control
/// characters). Wiped on drop; Debug shows nothing of it.
pub struct Passcode(Zeroizing<String>);

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(***)")
    }
}

impl Passcode {
    /// Checks a new PIN or passphrase (one trailing line break is dropped).
    pub fn parse(s: &str) -> Result<Self, CredentialError> {
        let s = s.strip_suffix('\n').unwrap_or(s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if !(4..=12).contains(&s.len()) {
                return Err(CredentialError::Passcode("a PIN has 4 to 12 digits"));
            }
        } else if s.chars().count() < 8 {
            return Err(CredentialError::Passcode(
                "a passphrase has at least 8 characters (or use a 4 to 12 digit PIN)",
            ));
        } else if s.len() > 256 {
            return Err(CredentialError::Passcode("a passphrase has at most 256 bytes"));
        } else if s.chars().any(char::is_control) {
            return Err(CredentialError::Passcode("contains a control character"));
        }
        Ok(Self(Zeroizing::new(s.to_owned())))
    }

    /// A presented PIN or passphrase, taken as it is (a malformed one simply fails to verify).
    pub fn presented(s: &str) -> Self {
        Self(Zeroizing::new(s.to_owned()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Argon2id's cost. Verification uses the cost written in each stored hash, so raising it
/// applies to hashes set from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl Default for HashCost {
    /// OWASP's Argon2id minimum: 19 MiB, 2 iterations, 1 lane (about 20–40 ms a check here).
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, lanes: 1 }
    }
}

impl HashCost {
    /// Cheap hashes, for tests only.
    pub const TESTING: HashCost = HashCost { memory_kib: 64, iterations: 1, lanes: 1 };
}

/// Hashes and verifies passcodes with Argon2id and the pepper. Blocking and CPU-bound: from
/// async code use [`Verifier`].
pub struct Hasher {
    pepper: Pepper,
    params: Params,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(pepper: Pepper, cost: HashCost) -> Result<Self, CredentialError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
            .map_err(|e| CredentialError::Cost(format!("{cost:?}: {e}")))?;
        Ok(Self { pepper, params })
    }

    fn argon2(&self, params: Params) -> Result<Argon2<'_>, CredentialError> {
        Argon2::new_with_secret(&self.pepper.0[..], Algorithm::Argon2id, Version::V0x13, params)
            .map_err(|e| CredentialError::Hash(e.to_string()))
    }

    /// A new hash of `code`, with a fresh 128-bit salt.
    pub fn hash(&self, code: &Passcode) -> Result<CredentialHash, CredentialError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| CredentialError::Hash(format!("OS random source: {e}")))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| CredentialError::Hash(e.to_string()))?;
        let hash = self
            .argon2(self.params.clone())?
            .hash_password(code.as_bytes(), &salt)
            .map_err(|e| CredentialError::Hash(e.to_string()))?;
        Ok(CredentialHash(hash.to_string()))
    }

    /// Does `code` match `stored` (user `user`'s hash)? An error means the stored hash itself
    /// is unusable, not that the code is wrong.
    pub fn verify(&self, user: &str, code: &Passcode, stored: &CredentialHash) -> Result<bool, CredentialError> {
        let bad = |problem: String| CredentialError::StoredHash { user: user.into(), problem };
        let parsed = PasswordHash::new(&stored.0).map_err(|e| bad(format!("not a PHC string: {e}")))?;
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return Err(bad(format!("algorithm {} is not argon2id", parsed.algorithm)));
        }
        match self.argon2(self.params.clone())?.verify_password(code.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(e) => Err(bad(e.to_string())),
        }
    }
}

/// The answer to a credential check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right PIN; the user's failures are cleared.
    Accepted,
    /// Wrong PIN; counted. `locked_until` is set if this failure locked the user out.
    Wrong { locked_until: Option<UnixMs> },
    /// The user is locked out; the PIN was not even checked.
    LockedOut { until: UnixMs },
    /// The user has no PIN set (or does not exist).
    NoCredential,
    /// Another check for this user is running; try again (not counted as a failure).
    Busy,
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }
}

/// Checks PINs for the daemon: clone it freely (clones share the cap and the store).
#[derive(Clone, Debug)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

#[derive(Debug)]
struct VerifierInner {
    store: Store,
    hasher: Hasher,
    policy: LockoutPolicy,
    permits: Arc<tokio::sync::Semaphore>,
    in_flight: Mutex<HashSet<String>>,
    /// Verified against when the user has no credential, so that a missing PIN takes as long
    /// as a wrong one.
    decoy: CredentialHash,
}

/// Removes the user from the in-flight set when the check ends, however it ends.
struct InFlight {
    inner: Arc<VerifierInner>,
    user: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.user);
    }
}

impl Verifier {
    /// At most `max_concurrent` (at least 1) Argon2 runs at once.
    pub fn new(
        store: Store,
        hasher: Hasher,
        policy: LockoutPolicy,
        max_concurrent: usize,
    ) -> Result<Self, CredentialError> {
        let mut decoy_code = Zeroizing::new([0u8; 16]);
        getrandom::fill(&mut decoy_code[..]).map_err(|e| CredentialError::Hash(format!("OS random source: {e}")))?;
        let decoy = hasher.hash(&Passcode::presented(&crate::store::records::hex(&decoy_code[..])))?;
        Ok(Self {
            inner: Arc::new(VerifierInner {
                store,
                hasher,
                policy,
                permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
                in_flight: Mutex::new(HashSet::new()),
                decoy,
            }),
        })
    }

    /// Checks `user`'s PIN or passphrase at `now`, for `actor` (audit). Runs on the blocking
    /// pool; the store writes (failure count, audit) are flushed before it returns.
    pub async fn check(
        &self,
        actor: &str,
        user: &str,
        code: Passcode,
        now: UnixMs,
    ) -> Result<Verdict, CredentialError> {
        let first = self.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned());
        let inner = Arc::clone(&self.inner);
        let (actor, user) = (actor.to_owned(), user.to_owned());
        if !first {
            let audit = AuditRecord::new(now, &actor, AuditAction::CredentialCheck, Outcome::Refused)
                .user(&user)
                .reason("another check for this user is running");
            let store = self.inner.store.clone();
            return match tokio::task::spawn_blocking(move || store.audit(&audit)).await {
                Ok(r) => r.map(|_| Verdict::Busy).map_err(Into::into),
                Err(e) => Err(CredentialError::Interrupted { user, problem: e.to_string() }),
            };
        }
        let guard = InFlight { inner: Arc::clone(&inner), user: user.clone() };
        let permit = Arc::clone(&inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| CredentialError::Interrupted { user: user.clone(), problem: e.to_string() })?;
        let task_user = user.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // Held until the check is done, even if the caller stops waiting.
            let _permit = permit;
            let _guard = guard;
            inner.check_blocking(&actor, &task_user, &code, now)
        })
        .await;
        joined.unwrap_or_else(|e| Err(CredentialError::Interrupted { user, problem: e.to_string() }))
    }

    /// The hasher, for setting credentials (`handoffctl credential set`).
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }
}

impl VerifierInner {
    fn check_blocking(
        &self,
        actor: &str,
        user: &str,
        code: &Passcode,
        now: UnixMs,
    ) -> Result<Verdict, CredentialError> {
        let audit = |outcome| AuditRecord::new(now, actor, AuditAction::CredentialCheck, outcome).user(user);
        if let Some(until) = self.store.locked_until(user, now)? {
            self.store.audit(&audit(Outcome::Refused).reason(format_args!("locked out until {until}")))?;
            return Ok(Verdict::LockedOut { until });
        }
        let Some(stored) = self.store.credential(user)? else {
            let _ = self.hasher.verify(user, code, &self.decoy);
            self.store.audit(&audit(Outcome::Refused).reason("no PIN or passphrase set"))?;
            return Ok(Verdict::NoCredential);
        };
        if self.hasher.verify(user, code, &stored)? {
            self.store.apply(&[Write::ClearFailures(user.into()), Write::Audit(audit(Outcome::Granted))])?;
            return Ok(Verdict::Accepted);
        }
        let policy = self.policy;
        let failures = self.store.record_failure(user, move |prev| policy.on_failure(prev, now))?;
        let locked_until = failures.locked_at(now);
        let mut writes = vec![Write::Audit(audit(Outcome::Refused).reason("wrong PIN or passphrase"))];
        if let Some(until) = locked_until {
            writes.push(Write::Audit(
                AuditRecord::new(now, actor, AuditAction::Lockout, Outcome::Done).user(user).reason(format_args!(
                    "{} wrong PINs within {} s: locked out until {until}",
                    policy.max_failures,
                    policy.window_ms / 1000
                )),
            ));
        }
        self.store.apply(&writes)?;
        Ok(Verdict::Wrong { locked_until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(pepper: u8) -> Hasher {
        Hasher::new(Pepper::from_bytes([pepper; 32]), HashCost::TESTING).unwrap()
    }

    #[test]
    fn pins_and_passphrases() {
        assert!(Passcode::parse("1234").is_ok());
        assert!(Passcode::parse("123456789012\n").is_ok());
        assert!(Passcode::parse("123").is_err());
        assert!(Passcode::parse("1234567890123").is_err());
        assert!(Passcode::parse("").is_err());
        assert!(Passcode::parse("short").is_err());
        assert!(Passcode::parse("correct horse battery").is_ok());
        assert!(Passcode::parse("bad\u{7}passphrase").is_err());
        let e = Passcode::parse("97").unwrap_err().to_string();
        assert!(!e.contains("97"), "the error never echoes the PIN: {e}");
        assert_eq!(format!("{:?}", Passcode::parse("4711").unwrap()), "Passcode(***)");
    }

    #[test]
    fn hash_verifies_only_with_the_same_pin_and_pepper() {
        let h = hasher(1);
        let pin = Passcode::parse("4711").unwrap();
        let stored = h.hash(&pin).unwrap();
        assert!(stored.0.starts_with("$argon2id$v=19$"), "{}", stored.0);
        assert!(h.verify("alice", &pin, &stored).unwrap());
        assert!(!h.verify("alice", &Passcode::presented("4712"), &stored).unwrap());
        assert!(!hasher(2).verify("alice", &pin, &stored).unwrap(), "another pepper must not verify");
        assert_ne!(h.hash(&pin).unwrap(), stored, "salted");
    }

    #[test]
    fn unusable_stored_hashes_are_errors_naming_the_user() {
        let h = hasher(1);
        let pin = Passcode::presented("4711");
        let e = h.verify("alice", &pin, &CredentialHash("nonsense".into())).unwrap_err();
        assert!(e.to_string().starts_with("stored credential of user alice: "), "{e}");
        let argon2i = "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        let e = h.verify("alice", &pin, &CredentialHash(argon2i.into())).unwrap_err();
        assert!(e.to_string().contains("not argon2id"), "{e}");
    }

    #[test]
    fn pepper_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/pepper");
        let made = Pepper::create(&path).unwrap();
        let loaded = Pepper::load(&path).unwrap();
        assert_eq!(made.0[..], loaded.0[..]);
        assert_eq!(format!("{loaded:?}"), "Pepper(***)");
        let e = Pepper::create(&path).unwrap_err();
        assert!(matches!(e, CredentialError::PepperExists { .. }), "{e}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = Pepper::load(&path).unwrap_err().to_string();
            assert!(e.contains("mode 0644"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"short").unwrap();
        let e = Pepper::load(&path).unwrap_err().to_string();
        assert!(e.ends_with("5 bytes, expected 32"), "{e}");
        let e = Pepper::load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing: cannot read it"), "{e}");
    }
}
