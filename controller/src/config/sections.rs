//! The sections of `handoffd.yaml` as serde types (`ami:`, `esl:`, `far:`, `conference:`,
//! `log:`, `sessions:`, `devices:`, `metrics:`, `store:`, `api:`, `moves:`, `cluster:`), each
//! with its defaults.

use super::defaults::*;
use super::Secret;
use serde::Deserialize;

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
    /// How a device's two legs share the mix in res_handoff.so (`aligned`, `low-latency`,
    /// `switching`): sent with every `HandoffAssign`. Absent: `alignment` in the module's
    /// handoff.conf decides. FreeSWITCH has no module and ignores it.
    #[serde(default, deserialize_with = "alignment_rule")]
    pub alignment: Option<handoff_vocab::Alignment>,
}

/// `sessions.alignment`, read at parse time so that a bad value is reported with its place
/// (`file:line:column: sessions.alignment: ...`, `parse.rs` names the key).
fn alignment_rule<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<handoff_vocab::Alignment>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => handoff_vocab::Alignment::parse(s.trim()).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{s}' must be aligned, low-latency or switching (or absent: the module's handoff.conf decides)"
            ))
        }),
    }
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            preferred_path: default_preferred(),
            grace_s: default_grace(),
            leg_dead_after_s: default_dead_after(),
            pair_window_s: default_pair_window(),
            normal_clearing_is_lost: Vec::new(),
            alignment: None,
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

pub(super) fn join_host_port(host: &str, port: u16) -> String {
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
