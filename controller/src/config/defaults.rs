//! The default of every `handoffd.yaml` key that has one (serde's `default = "..."` names
//! these functions).

pub(super) fn default_lease_ms() -> u64 {
    1_500
}

pub(super) fn default_metrics_listen() -> String {
    "127.0.0.1:9187".into()
}

/// Seconds between logins after a refused one.
pub(super) fn default_login_retry() -> u64 {
    60
}

pub(super) fn default_host() -> String {
    "127.0.0.1".into()
}

pub(super) fn default_port() -> u16 {
    5038
}

pub(super) fn default_esl_port() -> u16 {
    8021
}

pub(super) fn default_esl_profile() -> String {
    "handoff".into()
}

pub(super) fn default_esl_context() -> String {
    "handoff".into()
}

pub(super) fn default_esl_refused() -> String {
    "handoff-refused".into()
}

pub(super) fn default_connect_timeout() -> u64 {
    3000
}

pub(super) fn default_action_timeout() -> u64 {
    5000
}

pub(super) fn default_reconnect_initial() -> u64 {
    250
}

pub(super) fn default_reconnect_max() -> u64 {
    10_000
}

pub(super) fn default_far_endpoint() -> String {
    "far".into()
}

pub(super) fn default_answer_timeout() -> u32 {
    30
}

pub(super) fn default_bridge_profile() -> String {
    "handoff_bridge".into()
}

pub(super) fn default_user_profile() -> String {
    "handoff_user".into()
}

pub(super) fn default_far_user_profile() -> String {
    "handoff_far".into()
}

pub(super) fn default_name_prefix() -> String {
    "handoff-".into()
}

pub(super) fn default_level() -> String {
    "info".into()
}

pub(super) fn default_preferred() -> String {
    "data".into()
}

pub(super) fn default_grace() -> u32 {
    30
}

pub(super) fn default_dead_after() -> u32 {
    10
}

pub(super) fn default_pair_window() -> u32 {
    5
}

pub(super) fn default_store_path() -> String {
    "/var/lib/handoff/store".into()
}

pub(super) fn default_pepper_file() -> String {
    "/etc/handoff/pepper".into()
}

pub(super) fn default_audit_keep_days() -> u32 {
    90
}

pub(super) fn default_audit_max_records() -> u64 {
    1_000_000
}

pub(super) fn default_api_listen() -> String {
    "127.0.0.1:9188".into()
}

pub(super) fn default_admin_token_file() -> String {
    "/etc/handoff/admin-token".into()
}

pub(super) fn default_max_body() -> usize {
    4096
}

pub(super) fn default_rate() -> u32 {
    120
}

pub(super) fn default_ticket_ttl() -> u32 {
    30
}

pub(super) fn default_bar() -> u32 {
    300
}

pub(super) fn default_max_failures() -> u32 {
    5
}

pub(super) fn default_failure_window() -> u32 {
    900
}

pub(super) fn default_lockout() -> u32 {
    900
}

pub(super) fn default_checks() -> usize {
    2
}
