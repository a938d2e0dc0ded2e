//! Validation of a parsed `handoffd.yaml`: the PBX section the config needs, names, paths,
//! numbers in range, the link sections' shared checks, and the sample's placeholder secrets
//! `handoffd --check` refuses.

use super::*;

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

    pub(super) fn validate(&self, file: &str) -> Result<(), ConfigError> {
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
