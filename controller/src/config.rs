//! `handoffd.yaml`: the controller's configuration, read with serde-saphyr (the maintained
//! successor of the deprecated serde_yaml) and validated. Every error is one line:
//! `<file>: <key path>: <what is wrong>`, or `<file>:<line>:<column>: <message>` for YAML syntax.
//! The AMI secret and the ESL password never appear in Debug output or in errors.
//!
//! `pbx:` picks the PBX handoffd drives: `asterisk` (the default; needs the `ami:` section) or
//! `freeswitch` (needs the `esl:` section).

use serde::Deserialize;
use std::fmt;
use std::path::Path;

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

/// Several handoffd for several PBX nodes, sharing a PostgreSQL store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The name of the PBX node this handoffd drives (empty: no cluster). Controllers that
    /// name the same node take turns: one drives it under a lease in the store, the others
    /// wait as standbys and take over when its lease runs out.
    #[serde(default)]
    pub node: String,
    /// How long a lease lasts without renewal (renewed every third of it): the longest a
    /// node goes without a controller when its controller dies.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { node: String::new(), lease_ms: default_lease_ms() }
    }
}

fn default_lease_ms() -> u64 {
    1_500
}

/// Where handoffd keeps its durable state, and the pepper kept outside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the records live: `sled` (embedded, one box: the default) or `postgres` (shared by
    /// the handoffd of a cluster).
    #[serde(default)]
    pub backend: StoreBackend,
    /// The sled database directory (one process at a time); `backend: sled` only.
    #[serde(default = "default_store_path")]
    pub path: String,
    /// `postgres://user:password@host:port/database`; `backend: postgres` only. Its password
    /// never appears in a log line or an error.
    #[serde(default)]
    pub url: String,
    /// 32 random bytes, mode 0600, outside the store: Argon2's secret key for every PIN.
    #[serde(default = "default_pepper_file")]
    pub pepper_file: String,
    /// Audit records older than this many days are pruned hourly (never one younger than the
    /// longest lockout or bar).
    #[serde(default = "default_audit_keep_days")]
    pub audit_keep_days: u32,
    /// At most this many audit records are kept; the oldest go first (with the same floor).
    #[serde(default = "default_audit_max_records")]
    pub audit_max_records: u64,
}

/// `store.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Sled,
    Postgres,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sled,
            url: String::new(),
            path: default_store_path(),
            pepper_file: default_pepper_file(),
            audit_keep_days: default_audit_keep_days(),
            audit_max_records: default_audit_max_records(),
        }
    }
}

/// The HTTP API: moves for the users' apps, administration for handoffctl.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `address:port`; loopback by default; empty turns the API off.
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// The bearer token of the admin endpoints (made on first start, mode 0600).
    #[serde(default = "default_admin_token_file")]
    pub admin_token_file: String,
    /// Requests with a larger body are refused (413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Requests one client address may make per minute (429 beyond).
    #[serde(default = "default_rate")]
    pub requests_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            admin_token_file: default_admin_token_file(),
            max_body_bytes: default_max_body(),
            requests_per_minute: default_rate(),
        }
    }
}

/// How moves between devices are timed and guarded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesConfig {
    /// How long a ticket may be presented after it is issued.
    #[serde(default = "default_ticket_ttl")]
    pub ticket_ttl_s: u32,
    /// How long the device a call moved away from is barred from the session.
    #[serde(default = "default_bar")]
    pub bar_s: u32,
    /// Wrong PINs within `failure_window_s` that lock the user out; 0 never locks.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window_s: u32,
    /// How long a lockout lasts.
    #[serde(default = "default_lockout")]
    pub lockout_s: u32,
    /// PIN checks (Argon2id) running at once.
    #[serde(default = "default_checks")]
    pub max_concurrent_checks: usize,
}

impl Default for MovesConfig {
    fn default() -> Self {
        Self {
            ticket_ttl_s: default_ticket_ttl(),
            bar_s: default_bar(),
            max_failures: default_max_failures(),
            failure_window_s: default_failure_window(),
            lockout_s: default_lockout(),
            max_concurrent_checks: default_checks(),
        }
    }
}

impl MovesConfig {
    pub fn rules(&self) -> crate::moves::MoveRules {
        crate::moves::MoveRules {
            ticket_ttl_ms: u64::from(self.ticket_ttl_s) * 1000,
            bar_ms: u64::from(self.bar_s) * 1000,
        }
    }
    pub fn lockout(&self) -> crate::moves::LockoutPolicy {
        crate::moves::LockoutPolicy {
            max_failures: self.max_failures,
            window_ms: u64::from(self.failure_window_s) * 1000,
            lock_ms: u64::from(self.lockout_s) * 1000,
        }
    }
}

/// Where the Prometheus endpoint listens (`GET /metrics`); empty turns it off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: default_metrics_listen() }
    }
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9187".into()
}

/// How sessions treat their legs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRules {
    /// The path whose leg feeds the mix when both are healthy: data or carrier.
    #[serde(default = "default_preferred")]
    pub preferred_path: String,
    /// How long the far party is held (music on hold) when every client leg is gone.
    #[serde(default = "default_grace")]
    pub grace_s: u32,
    /// How long a stalled leg may stay silent before handoffd hangs it up.
    #[serde(default = "default_dead_after")]
    pub leg_dead_after_s: u32,
    /// A leg of a device whose session ended less than this ago is refused, not a new call.
    #[serde(default = "default_pair_window")]
    pub pair_window_s: u32,
    /// Paths (data, carrier) whose normal clearing (Q.850 16) means a dropped leg, not the
    /// user hanging up: for carriers that clear a call they dropped normally (see
    /// `crate::hangup_cause`).
    #[serde(default)]
    pub normal_clearing_is_lost: Vec<String>,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            preferred_path: default_preferred(),
            grace_s: default_grace(),
            leg_dead_after_s: default_dead_after(),
            pair_window_s: default_pair_window(),
            normal_clearing_is_lost: Vec::new(),
        }
    }
}

/// One registered device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub id: String,
    pub user: String,
    /// The PJSIP endpoint of the device's app (its data path).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The device's E.164 number: the caller ID of its carrier leg.
    #[serde(default)]
    pub number: Option<String>,
    /// Caller ID for the far call (default: number).
    #[serde(default)]
    pub caller_id: Option<String>,
}

/// The PBX underneath.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pbx {
    /// Asterisk 22 with `res_handoff.so`, over AMI.
    #[default]
    Asterisk,
    /// FreeSWITCH with `mod_conference`, over the event socket (no module inside).
    Freeswitch,
}

/// Where and how the daemon's link to the PBX connects, whichever the PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    pub address: String,
    pub connect_timeout_ms: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// How long to wait before logging in again after the PBX refused the login (a
    /// manager.conf reload can refuse briefly): long, so that a wrong secret never hammers it.
    pub login_retry_ms: u64,
}

/// FreeSWITCH's event socket (`mod_event_socket`, `event_socket.conf.xml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Esl {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_esl_port")]
    pub port: u16,
    #[serde(default)]
    pub password: Secret,
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// The longest wait for the reply to a command (an `api` answer, a `bgapi` acceptance).
    #[serde(default = "default_action_timeout")]
    pub command_timeout_ms: u64,
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// The `mod_conference` profile the sessions' conferences use.
    #[serde(default = "default_esl_profile")]
    pub conference_profile: String,
    /// The dial plan context of `dialplans/freeswitch/handoff.xml`, where refused legs go.
    #[serde(default = "default_esl_context")]
    pub context: String,
    /// The extension in `context` that tells a refused caller and hangs up.
    #[serde(default = "default_esl_refused")]
    pub refused_extension: String,
}

impl Esl {
    /// `host:port` (IPv6 hosts bracketed).
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ami {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    #[serde(default)]
    pub secret: Secret,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_action_timeout")]
    pub action_timeout_ms: u64,
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Seconds between logins after Asterisk refused one (handoffd never gives up).
    #[serde(default = "default_login_retry")]
    pub login_retry_s: u64,
}

/// Seconds between logins after a refused one.
fn default_login_retry() -> u64 {
    60
}

impl Ami {
    /// `host:port` (IPv6 hosts bracketed).
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Far {
    #[serde(default = "default_far_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_answer_timeout")]
    pub answer_timeout_s: u32,
    #[serde(default)]
    pub caller_id: String,
}

impl Default for Far {
    fn default() -> Self {
        Self { endpoint: default_far_endpoint(), answer_timeout_s: default_answer_timeout(), caller_id: String::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conference {
    #[serde(default = "default_bridge_profile")]
    pub bridge_profile: String,
    #[serde(default = "default_user_profile")]
    pub user_profile: String,
    #[serde(default = "default_far_user_profile")]
    pub far_user_profile: String,
    #[serde(default = "default_name_prefix")]
    pub name_prefix: String,
}

impl Default for Conference {
    fn default() -> Self {
        Self {
            bridge_profile: default_bridge_profile(),
            user_profile: default_user_profile(),
            far_user_profile: default_far_user_profile(),
            name_prefix: default_name_prefix(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self { level: default_level() }
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5038
}
fn default_esl_port() -> u16 {
    8021
}
fn default_esl_profile() -> String {
    "handoff".into()
}
fn default_esl_context() -> String {
    "handoff".into()
}
fn default_esl_refused() -> String {
    "handoff-refused".into()
}
fn default_connect_timeout() -> u64 {
    3000
}
fn default_action_timeout() -> u64 {
    5000
}
fn default_reconnect_initial() -> u64 {
    250
}
fn default_reconnect_max() -> u64 {
    10_000
}
fn default_far_endpoint() -> String {
    "far".into()
}
fn default_answer_timeout() -> u32 {
    30
}
fn default_bridge_profile() -> String {
    "handoff_bridge".into()
}
fn default_user_profile() -> String {
    "handoff_user".into()
}
fn default_far_user_profile() -> String {
    "handoff_far".into()
}
fn default_name_prefix() -> String {
    "handoff-".into()
}
fn default_level() -> String {
    "info".into()
}
fn default_preferred() -> String {
    "data".into()
}
fn default_grace() -> u32 {
    30
}
fn default_dead_after() -> u32 {
    10
}
fn default_pair_window() -> u32 {
    5
}
fn default_store_path() -> String {
    "/var/lib/handoff/store".into()
}
fn default_pepper_file() -> String {
    "/etc/handoff/pepper".into()
}
fn default_audit_keep_days() -> u32 {
    90
}
fn default_audit_max_records() -> u64 {
    1_000_000
}
fn default_api_listen() -> String {
    "127.0.0.1:9188".into()
}
fn default_admin_token_file() -> String {
    "/etc/handoff/admin-token".into()
}
fn default_max_body() -> usize {
    4096
}
fn default_rate() -> u32 {
    120
}
fn default_ticket_ttl() -> u32 {
    30
}
fn default_bar() -> u32 {
    300
}
fn default_max_failures() -> u32 {
    5
}
fn default_failure_window() -> u32 {
    900
}
fn default_lockout() -> u32 {
    900
}
fn default_checks() -> usize {
    2
}

/// The secrets the samples ship with (`conf/*.sample`, the package's `/etc/handoff/handoffd.yaml`):
/// `handoffd --check` refuses a config that still holds one, so that a service never starts with
/// a secret every reader of the samples knows.
pub const PLACEHOLDER_SECRETS: [&str; 2] = ["change-me-handoffd-secret", "change-me-esl-password"];

impl Config {
    /// The error `handoffd --check` gives for a secret still at its sample's placeholder
    /// ([`PLACEHOLDER_SECRETS`]), naming the key; `None` when the secret is the administrator's.
    pub fn placeholder_secret(&self, file: &str) -> Option<ConfigError> {
        let placeholder = |key: &str, secret: &Secret, from_file: bool, account: &str| {
            PLACEHOLDER_SECRETS.contains(&secret.expose()).then(|| ConfigError {
                file: file.to_string(),
                key: if from_file { format!("{key}_file") } else { key.to_string() },
                problem: format!(
                    "still the sample's placeholder '{}': set a secret of your own here and in {account}",
                    secret.expose()
                ),
            })
        };
        let ami = self.ami.as_ref().and_then(|a| {
            placeholder(
                "ami.secret",
                &a.secret,
                a.secret_file.is_some(),
                "Asterisk's AMI account (manager.d/handoffd.conf)",
            )
        });
        ami.or_else(|| {
            self.esl.as_ref().and_then(|e| {
                placeholder(
                    "esl.password",
                    &e.password,
                    e.password_file.is_some(),
                    "FreeSWITCH's event_socket.conf.xml",
                )
            })
        })
    }

    /// Reads and validates `path`; `secret_file` is read relative to nothing (absolute paths).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            problem: format!("cannot read: {e} (copy conf/handoffd.yaml.sample to it)"),
        })?;
        let mut cfg = Self::parse(&text, &file)?;
        let read_secret = |key: &str, path: &str| -> Result<Secret, ConfigError> {
            let s = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: file.clone(),
                key: key.into(),
                problem: format!("cannot read {path}: {e}"),
            })?;
            if s.trim().is_empty() {
                return Err(ConfigError { file: file.clone(), key: key.into(), problem: format!("{path} is empty") });
            }
            Ok(Secret::new(s.trim()))
        };
        if let Some(ami) = cfg.ami.as_mut() {
            if let Some(sf) = ami.secret_file.clone() {
                ami.secret = read_secret("ami.secret_file", &sf)?;
            }
        }
        if let Some(esl) = cfg.esl.as_mut() {
            if let Some(pf) = esl.password_file.clone() {
                esl.password = read_secret("esl.password_file", &pf)?;
            }
        }
        Ok(cfg)
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| {
            let at = e.location().map(|l| (l.line(), l.column()));
            let mut err = syntax_error(origin, &e.to_string());
            if let Some(key) = at.and_then(|(line, col)| key_path_at(text, line, col)) {
                err.key = key;
            }
            err
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, problem: String| Err(ConfigError { file: file.into(), key: key.into(), problem });
        match (self.pbx, &self.ami, &self.esl) {
            (Pbx::Asterisk, None, _) => {
                return err("ami", "missing: pbx is asterisk, so handoffd needs Asterisk's AMI account".into())
            }
            (Pbx::Freeswitch, _, None) => {
                return err("esl", "missing: pbx is freeswitch, so handoffd needs FreeSWITCH's event socket".into())
            }
            _ => {}
        }
        if let Some(ami) = &self.ami {
            ami.validate(file)?;
        }
        if let Some(esl) = &self.esl {
            esl.validate(file)?;
        }
        if self.far.answer_timeout_s == 0 {
            return err("far.answer_timeout_s", "must be greater than 0".into());
        }
        for (key, v) in [
            ("far.endpoint", &self.far.endpoint),
            ("conference.bridge_profile", &self.conference.bridge_profile),
            ("conference.user_profile", &self.conference.user_profile),
            ("conference.far_user_profile", &self.conference.far_user_profile),
            ("conference.name_prefix", &self.conference.name_prefix),
        ] {
            if !name_ok(v) {
                return err(key, format!("'{v}' must be letters, digits, _ . - (no spaces)"));
            }
        }
        if self.far.caller_id.contains(['\r', '\n']) {
            return err("far.caller_id", "must be one line".into());
        }
        if !["data", "carrier"].contains(&self.sessions.preferred_path.as_str()) {
            return err(
                "sessions.preferred_path",
                format!("'{}' must be data or carrier", self.sessions.preferred_path),
            );
        }
        if let Some(p) = self.sessions.normal_clearing_is_lost.iter().find(|p| crate::session::Path::parse(p).is_none())
        {
            return err("sessions.normal_clearing_is_lost", format!("'{p}' must be data or carrier"));
        }
        if self.sessions.leg_dead_after_s == 0 {
            return err("sessions.leg_dead_after_s", "must be greater than 0".into());
        }
        let mut endpoints = std::collections::HashMap::new();
        let mut numbers = std::collections::HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let at = |field: &str| format!("devices[{i}].{field}");
            if !name_ok(&d.id) {
                return err(&at("id"), format!("'{}' must be letters, digits, _ . - (no spaces)", d.id));
            }
            if !ids.insert(d.id.as_str()) {
                return err(&at("id"), format!("device '{}' is listed twice", d.id));
            }
            if d.user.trim().is_empty() {
                return err(&at("user"), "must not be empty".into());
            }
            if d.endpoint.is_none() && d.number.is_none() {
                return err(&at("endpoint"), format!("device '{}' needs an endpoint, a number or both", d.id));
            }
            if let Some(e) = &d.endpoint {
                if let Some(other) = endpoints.insert(e.as_str(), d.id.as_str()) {
                    return err(&at("endpoint"), format!("endpoint '{e}' already belongs to device '{other}'"));
                }
            }
            if let Some(n) = &d.number {
                let e164 =
                    n.starts_with('+') && n.len() > 4 && n.len() <= 16 && n[1..].chars().all(|c| c.is_ascii_digit());
                if !e164 {
                    return err(&at("number"), format!("'{n}' is not an E.164 number (+ and 4 to 15 digits)"));
                }
                if let Some(other) = numbers.insert(n.as_str(), d.id.as_str()) {
                    return err(&at("number"), format!("number {n} already belongs to device '{other}'"));
                }
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return err(
                "metrics.listen",
                format!("'{}' is not an address:port (e.g. 127.0.0.1:9187), or empty for off", self.metrics.listen),
            );
        }
        if !self.api.listen.is_empty() && self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return err(
                "api.listen",
                format!("'{}' is not an address:port (e.g. 127.0.0.1:9188), or empty for off", self.api.listen),
            );
        }
        for (key, v) in [
            ("store.path", &self.store.path),
            ("store.pepper_file", &self.store.pepper_file),
            ("api.admin_token_file", &self.api.admin_token_file),
        ] {
            if v.trim().is_empty() {
                return err(key, "must not be empty".into());
            }
        }
        if !(256..=1_048_576).contains(&self.api.max_body_bytes) {
            return err("api.max_body_bytes", format!("{} must be 256..=1048576", self.api.max_body_bytes));
        }
        for (key, v) in [
            ("api.requests_per_minute", u64::from(self.api.requests_per_minute)),
            ("moves.ticket_ttl_s", u64::from(self.moves.ticket_ttl_s)),
            ("moves.failure_window_s", u64::from(self.moves.failure_window_s)),
            ("moves.lockout_s", u64::from(self.moves.lockout_s)),
            ("moves.max_concurrent_checks", self.moves.max_concurrent_checks as u64),
            ("store.audit_keep_days", u64::from(self.store.audit_keep_days)),
        ] {
            if v == 0 {
                return err(key, "must be greater than 0".into());
            }
        }
        if self.store.backend == StoreBackend::Postgres
            && !(self.store.url.starts_with("postgres://") || self.store.url.starts_with("postgresql://"))
        {
            return err(
                "store.url",
                format!(
                    "'{}' is not a PostgreSQL URL (postgres://user:password@host:port/database); backend postgres needs one",
                    crate::store::redact_url(&self.store.url)
                ),
            );
        }
        if !self.cluster.node.is_empty() {
            if self.store.backend != StoreBackend::Postgres {
                return err("cluster.node", "a cluster needs the shared store: set store.backend: postgres".into());
            }
            if self.cluster.node.len() > 64
                || !self.cluster.node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return err(
                    "cluster.node",
                    format!("'{}' is not a node name (1 to 64 of A-Z a-z 0-9 - _ .)", self.cluster.node),
                );
            }
        }
        if !(300..=60_000).contains(&self.cluster.lease_ms) {
            return err("cluster.lease_ms", format!("{} must be 300..=60000", self.cluster.lease_ms));
        }
        if self.store.audit_max_records < 1_000 {
            return err(
                "store.audit_max_records",
                format!("{} is below 1000; the audit log must keep recent decisions", self.store.audit_max_records),
            );
        }
        if self.moves.ticket_ttl_s > 600 {
            return err(
                "moves.ticket_ttl_s",
                format!("{} is longer than 600 s; tickets are short-lived", self.moves.ticket_ttl_s),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return err("log.level", format!("'{}' must be one of error, warn, info, debug, trace", self.log.level));
        }
        Ok(())
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The checks shared by the AMI and ESL sections: a host, a port, a secret given one way, and
/// positive timeouts with a backoff that can grow.
fn check_link(
    file: &str,
    section: &str,
    (host, port): (&str, u16),
    (secret_name, secret_set, secret_file_set): (&str, bool, bool),
    timeouts: [(&str, u64); 4],
) -> Result<(), ConfigError> {
    let err =
        |key: &str, problem: String| Err(ConfigError { file: file.into(), key: format!("{section}.{key}"), problem });
    if host.trim().is_empty() {
        return err("host", "must not be empty".into());
    }
    if port == 0 {
        return err("port", "must be 1..=65535, got 0".into());
    }
    match (secret_set, secret_file_set) {
        (false, false) => {
            return err(secret_name, format!("set {section}.{secret_name} or {section}.{secret_name}_file"))
        }
        (true, true) => {
            return err(
                &format!("{secret_name}_file"),
                format!("set {section}.{secret_name} or {section}.{secret_name}_file, not both"),
            )
        }
        _ => {}
    }
    for (key, v) in timeouts {
        if v == 0 {
            return err(key, "must be greater than 0".into());
        }
    }
    let (initial, max) = (timeouts[2].1, timeouts[3].1);
    if initial > max {
        return err("reconnect_initial_ms", format!("{initial} is larger than {section}.reconnect_max_ms ({max})"));
    }
    Ok(())
}

impl Ami {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if self.username.trim().is_empty() {
            return Err(ConfigError {
                file: file.into(),
                key: "ami.username".into(),
                problem: "must not be empty".into(),
            });
        }
        check_link(
            file,
            "ami",
            (&self.host, self.port),
            ("secret", !self.secret.expose().is_empty(), self.secret_file.is_some()),
            [
                ("connect_timeout_ms", self.connect_timeout_ms),
                ("action_timeout_ms", self.action_timeout_ms),
                ("reconnect_initial_ms", self.reconnect_initial_ms),
                ("reconnect_max_ms", self.reconnect_max_ms),
            ],
        )
    }
}

impl Esl {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        check_link(
            file,
            "esl",
            (&self.host, self.port),
            ("password", !self.password.expose().is_empty(), self.password_file.is_some()),
            [
                ("connect_timeout_ms", self.connect_timeout_ms),
                ("command_timeout_ms", self.command_timeout_ms),
                ("reconnect_initial_ms", self.reconnect_initial_ms),
                ("reconnect_max_ms", self.reconnect_max_ms),
            ],
        )?;
        for (key, v) in [
            ("conference_profile", &self.conference_profile),
            ("context", &self.context),
            ("refused_extension", &self.refused_extension),
        ] {
            if !name_ok(v) {
                return Err(ConfigError {
                    file: file.into(),
                    key: format!("esl.{key}"),
                    problem: format!("'{v}' must be letters, digits, _ . - (no spaces)"),
                });
            }
        }
        Ok(())
    }
}

/// Folds a serde-saphyr error (which may carry a source snippet) into one line.
fn syntax_error(file: &str, message: &str) -> ConfigError {
    let first = message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid YAML");
    // "error: line L column C: what" → "what" (the place goes in front).
    let first = match first.strip_prefix("error: line ").and_then(|r| r.split_once(": ")) {
        Some((place, what)) if place.contains(" column ") => what,
        _ => first,
    }
    .to_string();
    // "... at line L column C" → "file:L:C"
    let loc = message.split("line ").nth(1).and_then(|rest| {
        let line: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let col: String = rest.split("column ").nth(1)?.chars().take_while(|c| c.is_ascii_digit()).collect();
        (!line.is_empty() && !col.is_empty()).then(|| format!("{line}:{col}"))
    });
    match loc {
        Some(l) => ConfigError { file: format!("{file}:{l}"), key: String::new(), problem: first },
        None => ConfigError { file: file.into(), key: String::new(), problem: first },
    }
}

/// A YAML node with the places of its keys and values, for naming the key path of a type error.
enum Node {
    Map(Vec<(serde_saphyr::Spanned<KeyText>, serde_saphyr::Spanned<Node>)>),
    Seq(Vec<serde_saphyr::Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (any scalar).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("~".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element()? {
                    items.push(n);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The key path (`sessions.grace_s`, `devices[0].user`) of the key or value that starts at
/// `line`:`column` of `text`, for errors serde reports with a place but no key.
fn key_path_at(text: &str, line: u64, column: u64) -> Option<String> {
    fn at(l: &serde_saphyr::Location, line: u64, column: u64) -> bool {
        l.line() == line && l.column() == column
    }
    fn walk(node: &Node, path: &str, line: u64, column: u64) -> Option<String> {
        match node {
            Node::Scalar => None,
            Node::Seq(items) => items.iter().enumerate().find_map(|(i, n)| {
                let p = format!("{path}[{i}]");
                if at(&n.referenced, line, column) && !matches!(n.value, Node::Map(_) | Node::Seq(_)) {
                    return Some(p);
                }
                walk(&n.value, &p, line, column).or_else(|| at(&n.referenced, line, column).then_some(p))
            }),
            Node::Map(entries) => entries.iter().find_map(|(k, v)| {
                let p = if path.is_empty() { k.value.0.clone() } else { format!("{path}.{}", k.value.0) };
                if at(&k.referenced, line, column) {
                    return Some(p);
                }
                walk(&v.value, &p, line, column).or_else(|| at(&v.referenced, line, column).then_some(p))
            }),
        }
    }
    let root: Node = serde_saphyr::from_str(text).ok()?;
    walk(&root, "", line, column).filter(|p| !p.is_empty())
}

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

    /// The session core's rules and device registry from this config.
    pub fn session_rules(&self) -> (crate::session::Rules, Vec<crate::session::Device>) {
        let rules = crate::session::Rules {
            bridge_prefix: self.conference.name_prefix.clone(),
            default_caller_id: self.far.caller_id.clone(),
            preferred: self.preferred_path(),
            grace_ms: u64::from(self.sessions.grace_s) * 1000,
            leg_dead_after_ms: u64::from(self.sessions.leg_dead_after_s) * 1000,
            pair_window_ms: u64::from(self.sessions.pair_window_s) * 1000,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "ami:\n  username: handoffd\n  secret: s3cret\n";

    #[test]
    fn defaults_fill_in() {
        let c = Config::parse(MIN, "t.yaml").unwrap();
        assert_eq!(c.pbx, Pbx::Asterisk);
        assert_eq!(c.ami.as_ref().unwrap().address(), "127.0.0.1:5038");
        assert_eq!(c.link().address, "127.0.0.1:5038");
        assert_eq!(c.far.endpoint, "far");
        assert_eq!(c.conference.name_prefix, "handoff-");
        assert!(!format!("{c:?}").contains("s3cret"), "the secret never shows in Debug");
    }

    #[test]
    fn errors_name_file_key_and_problem_on_one_line() {
        let cases = [
            ("ami:\n  username: h\n  secret: s\n  port: 0\n", "t.yaml: ami.port: must be 1..=65535, got 0"),
            ("ami:\n  username: h\n", "t.yaml: ami.secret: set ami.secret or ami.secret_file"),
            (
                "ami:\n  username: h\n  secret: s\nlog:\n  level: loud\n",
                "t.yaml: log.level: 'loud' must be one of error, warn, info, debug, trace",
            ),
            (
                "ami:\n  username: h\n  secret: s\nfar:\n  endpoint: \"a b\"\n",
                "t.yaml: far.endpoint: 'a b' must be letters, digits, _ . - (no spaces)",
            ),
            (
                "ami:\n  username: h\n  secret: s\n  reconnect_initial_ms: 5000\n  reconnect_max_ms: 100\n",
                "t.yaml: ami.reconnect_initial_ms: 5000 is larger than ami.reconnect_max_ms (100)",
            ),
            (
                "ami:\n  username: h\n  secret: s\ncluster:\n  node: ast1\n",
                "t.yaml: cluster.node: a cluster needs the shared store: set store.backend: postgres",
            ),
            (
                "ami:\n  username: h\n  secret: s\nstore:\n  backend: postgres\n  url: \"mysql://u:pw@h/d\"\n",
                "t.yaml: store.url: 'mysql://u@h/d' is not a PostgreSQL URL (postgres://user:password@host:port/database); backend postgres needs one",
            ),
            (
                "ami:\n  username: h\n  secret: s\nstore:\n  backend: postgres\n  url: postgres://h/d\ncluster:\n  node: \"a b\"\n",
                "t.yaml: cluster.node: 'a b' is not a node name (1 to 64 of A-Z a-z 0-9 - _ .)",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(text, "t.yaml").unwrap_err().to_string();
            assert_eq!(e, want);
        }
    }

    #[test]
    fn the_device_registry_is_checked() {
        let base = "ami:\n  username: h\n  secret: s\ndevices:\n";
        let ok = format!("{base}  - {{id: a, user: alice, endpoint: alice-app, number: \"+15550001\"}}\n");
        let c = Config::parse(&ok, "t.yaml").unwrap();
        assert_eq!(c.session_rules().1[0].number.as_deref(), Some("+15550001"));
        let cases = [
            (
                "  - {id: a, user: alice, number: \"555\"}\n",
                "t.yaml: devices[0].number: '555' is not an E.164 number (+ and 4 to 15 digits)",
            ),
            (
                "  - {id: a, user: alice}\n",
                "t.yaml: devices[0].endpoint: device 'a' needs an endpoint, a number or both",
            ),
            (
                "  - {id: a, user: alice, endpoint: x}\n  - {id: b, user: bob, endpoint: x}\n",
                "t.yaml: devices[1].endpoint: endpoint 'x' already belongs to device 'a'",
            ),
        ];
        for (devs, want) in cases {
            assert_eq!(Config::parse(&format!("{base}{devs}"), "t.yaml").unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn unknown_keys_and_bad_yaml_are_one_line_with_a_place() {
        let e = Config::parse("ami:\n  username: h\n  secret: s\n  prot: 1\n", "t.yaml").unwrap_err().to_string();
        assert!(e.starts_with("t.yaml") && e.contains("prot") && !e.contains('\n'), "{e}");
        let e = Config::parse("ami: [unclosed\n", "t.yaml").unwrap_err().to_string();
        assert!(e.starts_with("t.yaml") && !e.contains('\n'), "{e}");
        assert!(!Config::parse("ami:\n  username: h\n  secret: zzz\n  port: x\n", "t.yaml")
            .unwrap_err()
            .to_string()
            .contains("zzz"));
    }

    #[test]
    fn type_errors_name_the_key_path() {
        let base = "ami:\n  username: h\n  secret: s\n";
        let cases = [
            (format!("{base}sessions:\n  grace_s: [1]\n"), "t.yaml:5:12: sessions.grace_s: "),
            (format!("{base}devices:\n  - {{id: a, user: [x], endpoint: e}}\n"), "t.yaml:5:19: devices[0].user: "),
            (format!("{base}  prot: 1\n"), "t.yaml:4:3: ami.prot: unknown field `prot`"),
            ("ami:\n  username: h\n  secret: s\n  port: x\n".to_string(), "t.yaml:4:9: ami.port: "),
            (
                format!("{base}devices:\n  - id: a\n    user: b\n    endpoint: {{x: 1}}\n"),
                "t.yaml:7:15: devices[0].endpoint: ",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(&text, "t.yaml").unwrap_err().to_string();
            assert!(e.starts_with(want) && !e.contains('\n'), "{text:?}: got {e:?}, want {want:?}...");
        }
    }

    #[test]
    fn freeswitch_needs_its_event_socket() {
        let c = Config::parse("pbx: freeswitch\nesl:\n  password: ClueCon\n", "t.yaml").unwrap();
        assert_eq!(c.pbx, Pbx::Freeswitch);
        assert!(c.ami.is_none());
        let esl = c.esl.as_ref().unwrap();
        assert_eq!((esl.address(), esl.conference_profile.as_str()), ("127.0.0.1:8021".into(), "handoff"));
        assert_eq!(c.link().address, "127.0.0.1:8021");
        assert!(!format!("{c:?}").contains("ClueCon"), "the password never shows in Debug");
        let cases = [
            (
                "pbx: freeswitch\n",
                "t.yaml: esl: missing: pbx is freeswitch, so handoffd needs FreeSWITCH's event socket",
            ),
            (
                "esl:\n  password: x\n",
                "t.yaml: ami: missing: pbx is asterisk, so handoffd needs Asterisk's AMI account",
            ),
            ("pbx: freeswitch\nesl:\n  port: 8021\n", "t.yaml: esl.password: set esl.password or esl.password_file"),
            (
                "pbx: freeswitch\nesl:\n  password: x\n  conference_profile: \"a b\"\n",
                "t.yaml: esl.conference_profile: 'a b' must be letters, digits, _ . - (no spaces)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Config::parse(text, "t.yaml").unwrap_err().to_string(), want);
        }
        let e = Config::parse("pbx: kamailio\n", "t.yaml").unwrap_err().to_string();
        assert!(e.starts_with("t.yaml") && e.contains("kamailio") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn the_samples_placeholder_secrets_are_named_and_any_other_passes() {
        let c = Config::parse("ami:\n  username: h\n  secret: change-me-handoffd-secret\n", "t.yaml").unwrap();
        let e = c.placeholder_secret("t.yaml").expect("the placeholder is refused").to_string();
        assert!(e.starts_with("t.yaml: ami.secret: still the sample's placeholder"), "{e}");
        let c = Config::parse(MIN, "t.yaml").unwrap();
        assert_eq!(c.placeholder_secret("t.yaml"), None);
        let esl = "pbx: freeswitch\nesl:\n  password: change-me-esl-password\n";
        let c = Config::parse(esl, "t.yaml").unwrap();
        assert!(c.placeholder_secret("t.yaml").unwrap().to_string().contains("esl.password:"));
    }
}
