//! `handoffd.yaml`: the controller's configuration, read with serde-saphyr (the maintained
//! successor of the deprecated serde_yaml) and validated. Every error is one line:
//! `<file>: <key path>: <what is wrong>`, or `<file>:<line>:<column>: <message>` for YAML syntax.
//! The AMI secret and the ESL password never appear in Debug output or in errors.
//!
//! `pbx:` picks the PBX handoffd drives: `asterisk` (the default; needs the `ami:` section) or
//! `freeswitch` (needs the `esl:` section).

//!
//! | file           | owns |
//! |----------------|------|
//! | `sections.rs`  | the sections as serde types |
//! | `defaults.rs`  | every key's default |
//! | `parse.rs`     | reading the file and secret files, one-line syntax and type errors |
//! | `validate.rs`  | checks of a parsed config |
//! | `tests.rs`     | tests |

use serde::Deserialize;
use std::fmt;

mod defaults;
mod parse;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use defaults::{default_connect_timeout, default_host, default_login_retry, default_port};
use defaults::{default_reconnect_initial, default_reconnect_max};
use sections::join_host_port;
pub use sections::*;

/// A secret value: Debug prints `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that sends it (the AMI login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A configuration error, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}{sep}{problem}", sep = if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: String,
    /// The key path (`ami.port`), or `line:column` for syntax errors, or empty.
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which PBX handoffd drives.
    #[serde(default)]
    pub pbx: Pbx,
    /// Asterisk's manager interface (`pbx: asterisk`).
    #[serde(default)]
    pub ami: Option<Ami>,
    /// FreeSWITCH's event socket (`pbx: freeswitch`).
    #[serde(default)]
    pub esl: Option<Esl>,
    #[serde(default)]
    pub far: Far,
    #[serde(default)]
    pub conference: Conference,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub sessions: SessionRules,
    /// The device registry: which app endpoint and which number belong to which user.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub moves: MovesConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// The secrets the samples ship with (`conf/*.sample`, the package's `/etc/handoff/handoffd.yaml`):
/// `handoffd --check` refuses a config that still holds one, so that a service never starts with
/// a secret every reader of the samples knows.
pub const PLACEHOLDER_SECRETS: [&str; 2] = ["change-me-handoffd-secret", "change-me-esl-password"];

impl Config {
    /// The link settings of the PBX handoffd drives (validation made sure its section is there;
    /// a config built by hand without it gets the AMI defaults).
    pub fn link(&self) -> LinkSettings {
        let of = |address, connect_timeout_ms, reconnect_initial_ms, reconnect_max_ms| LinkSettings {
            address,
            connect_timeout_ms,
            reconnect_initial_ms,
            reconnect_max_ms,
            login_retry_ms: default_login_retry() * 1000,
        };
        match (self.pbx, &self.ami, &self.esl) {
            (Pbx::Freeswitch, _, Some(e)) => {
                of(e.address(), e.connect_timeout_ms, e.reconnect_initial_ms, e.reconnect_max_ms)
            }
            (_, Some(a), _) => LinkSettings {
                login_retry_ms: a.login_retry_s.max(1) * 1000,
                ..of(a.address(), a.connect_timeout_ms, a.reconnect_initial_ms, a.reconnect_max_ms)
            },
            _ => LinkSettings {
                address: join_host_port(&default_host(), default_port()),
                connect_timeout_ms: default_connect_timeout(),
                reconnect_initial_ms: default_reconnect_initial(),
                reconnect_max_ms: default_reconnect_max(),
                login_retry_ms: default_login_retry() * 1000,
            },
        }
    }

    /// The path whose leg feeds the mix when both of a device's legs are healthy.
    pub fn preferred_path(&self) -> crate::session::Path {
        crate::session::Path::parse(&self.sessions.preferred_path).unwrap_or(crate::session::Path::Data)
    }

    /// How hang-ups are read per path (`sessions.normal_clearing_is_lost`).
    pub fn hangup_overrides(&self) -> crate::hangup_cause::Overrides {
        let paths: Vec<crate::session::Path> =
            self.sessions.normal_clearing_is_lost.iter().filter_map(|p| crate::session::Path::parse(p)).collect();
        crate::hangup_cause::Overrides::from_paths(&paths)
    }

    /// What `handoffd --check` says of `sessions.alignment` (None: nothing to say, FreeSWITCH
    /// without the key).
    pub fn alignment_note(&self) -> Option<String> {
        match (self.pbx, self.sessions.alignment) {
            (Pbx::Asterisk, Some(a)) => Some(format!(
                "sessions.alignment: {} (sent with every HandoffAssign; alignment in res_handoff's handoff.conf does not apply)",
                a.as_str()
            )),
            (Pbx::Asterisk, None) => {
                Some("sessions.alignment: not set (alignment in res_handoff's handoff.conf decides)".into())
            }
            (Pbx::Freeswitch, Some(a)) => Some(format!(
                "sessions.alignment: {} is ignored: FreeSWITCH has no res_handoff.so (its mix moves whole from leg to leg)",
                a.as_str()
            )),
            (Pbx::Freeswitch, None) => None,
        }
    }

    /// The session core's rules and device registry from this config.
    pub fn session_rules(&self) -> (crate::session::Rules, Vec<crate::session::Device>) {
        let rules = crate::session::Rules {
            bridge_prefix: self.conference.name_prefix.clone(),
            default_caller_id: self.far.caller_id.clone(),
            preferred: self.preferred_path(),
            grace_ms: u64::from(self.sessions.grace_s) * 1000,
            leg_dead_after_ms: u64::from(self.sessions.leg_dead_after_s) * 1000,
            pair_window_ms: u64::from(self.sessions.pair_window_s) * 1000,
            alignment: self.sessions.alignment,
        };
        let devices = self
            .devices
            .iter()
            .map(|d| crate::session::Device {
                id: d.id.clone(),
                user: d.user.clone(),
                endpoint: d.endpoint.clone(),
                number: d.number.clone(),
                caller_id: d.caller_id.clone(),
            })
            .collect();
        (rules, devices)
    }
}
