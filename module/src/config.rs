//! `handoff.conf`, the module's own settings, read the Asterisk way (`[general]` section,
//! `name = value` lines). Parsing is pure: it takes the variables with their line numbers and
//! returns the settings plus one error line per bad value (the old value is kept for those).
//! The settings in force are held here ([`current`], [`replace`]), replaced on load and reload.

pub use handoff_vocab::Alignment;
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

/// The config file the module reads from Asterisk's config directory.
pub const CONFIG_FILE: &str = "handoff.conf";

/// The settings in force.
static CURRENT: LazyLock<RwLock<ModuleConfig>> = LazyLock::new(|| RwLock::new(ModuleConfig::default()));

/// A copy of the settings in force.
pub fn current() -> ModuleConfig {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Puts `cfg` in force.
pub fn replace(cfg: ModuleConfig) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = cfg;
}

/// What `handoff.conf` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleConfig {
    /// How long `Handoff()` waits for the controller to place the leg (ms).
    pub assign_timeout_ms: u32,
    /// How long after its last `HandoffHello` the controller counts as gone (s).
    pub controller_timeout_s: u32,
    /// Silence on the leg feeding the mix after which the other leg takes over (ms).
    pub stall_threshold_ms: u32,
    /// The most a leg's measured arrival jitter may raise its stall threshold to (ms).
    pub stall_threshold_max_ms: u32,
    /// How long the preferred path must flow cleanly before it takes the mix back (ms).
    pub recover_time_ms: u32,
    /// The AMI account (manager.conf section) of the controller: the only one that may send
    /// handoff's AMI actions.
    pub controller_account: String,
    /// `alignment`: `aligned` (the default: a device's legs are lined up in time from their
    /// audio and each 20 ms slot is filled from the best leg, `align.rs`), `low-latency` (no
    /// added delay; concealment at a failover, the take-back caught up in a pause,
    /// `conceal.rs`) or `switching` (the mix moves whole, as before alignment existed).
    pub alignment: Alignment,
    /// The largest offset between a device's legs that is aligned (ms); legs further apart
    /// switch.
    pub align_max_ms: u32,
    /// After every leg of a device has been silent this long (ms), the far party hears a
    /// reconnecting tone instead of silence until a leg delivers again (0: never).
    pub reconnect_tone_after_ms: u32,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        Self {
            assign_timeout_ms: 5000,
            controller_timeout_s: 15,
            stall_threshold_ms: 40,
            stall_threshold_max_ms: 120,
            recover_time_ms: 500,
            controller_account: "handoffd".to_string(),
            alignment: Alignment::Aligned,
            align_max_ms: 300,
            reconnect_tone_after_ms: 1000,
        }
    }
}

impl ModuleConfig {
    pub fn controller_timeout(&self) -> Duration {
        Duration::from_secs(self.controller_timeout_s.into())
    }

    /// The switch's tunables in the frame clock's units.
    pub fn timing(&self) -> crate::frame_clock::Timing {
        crate::frame_clock::Timing {
            stall_ns: u64::from(self.stall_threshold_ms) * 1_000_000,
            recover_ns: u64::from(self.recover_time_ms) * 1_000_000,
            stall_max_ns: u64::from(self.stall_threshold_max_ms) * 1_000_000,
        }
    }

    /// `align_max` in ns.
    pub fn align_max_ns(&self) -> u64 {
        u64::from(self.align_max_ms) * 1_000_000
    }

    /// `reconnect_tone_after` in ns, or None when the tone is off.
    pub fn reconnect_tone_after_ns(&self) -> Option<u64> {
        (self.reconnect_tone_after_ms > 0).then(|| u64::from(self.reconnect_tone_after_ms) * 1_000_000)
    }

    /// Applies `[general]` variables `(name, value, line)` over `self`; returns one message per
    /// variable that was refused (naming the file line, the key and the reason).
    pub fn apply(&mut self, file: &str, vars: &[(String, String, i32)]) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, value, line) in vars {
            let key = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let result = match key.as_str() {
                "assign_timeout" => {
                    parse_ranged(value, 100, 120_000, "milliseconds").map(|v| self.assign_timeout_ms = v)
                }
                "controller_timeout" => parse_ranged(value, 1, 3600, "seconds").map(|v| self.controller_timeout_s = v),
                "stall_threshold" => parse_ranged(value, 20, 2000, "milliseconds").map(|v| self.stall_threshold_ms = v),
                "stall_threshold_max" => {
                    parse_ranged(value, 20, 2000, "milliseconds").map(|v| self.stall_threshold_max_ms = v)
                }
                "recover_time" => parse_ranged(value, 0, 60_000, "milliseconds").map(|v| self.recover_time_ms = v),
                "controller_account" => parse_account(value).map(|v| self.controller_account = v),
                "alignment" => Alignment::parse(value)
                    .ok_or_else(|| "must be aligned, low-latency or switching".to_string())
                    .map(|v| self.alignment = v),
                "align_max" => parse_ranged(value, 20, 500, "milliseconds").map(|v| self.align_max_ms = v),
                "reconnect_tone_after" => match parse_ranged(value, 0, 60_000, "milliseconds") {
                    Ok(v) if v != 0 && v < 200 => Err(format!("{v} is out of range: 0 (off) or 200..=60000 milliseconds")),
                    r => r.map(|v| self.reconnect_tone_after_ms = v),
                },
                _ => Err("unknown setting (known: assign_timeout, controller_timeout, stall_threshold, stall_threshold_max, recover_time, controller_account, alignment, align_max, reconnect_tone_after)"
                    .to_string()),
            };
            if let Err(why) = result {
                errors.push(format!("{file} line {line}: {key} = '{value}': {why}; keeping the previous value"));
            }
        }
        errors
    }
}

/// An AMI account name as manager.conf sections are written: 1 to 79 letters, digits, `_ - . @`.
fn parse_account(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 79 {
        return Err("must be the AMI account's name (1 to 79 characters)".to_string());
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c)) {
        return Err("an AMI account name has only letters, digits and _ - . @".to_string());
    }
    Ok(value.to_string())
}

fn parse_ranged(value: &str, min: u32, max: u32, unit: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range {min}..={max} {unit}")),
        Err(_) => Err(format!("not a whole number of {unit}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String, i32)> {
        v.iter().enumerate().map(|(i, (n, v))| (n.to_string(), v.to_string(), i as i32 + 2)).collect()
    }

    #[test]
    fn good_values_apply() {
        let mut c = ModuleConfig::default();
        let errs = c.apply("handoff.conf", &vars(&[("assign_timeout", "2500"), ("controller_timeout", " 30 ")]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c, ModuleConfig { assign_timeout_ms: 2500, controller_timeout_s: 30, ..ModuleConfig::default() });
    }

    #[test]
    fn bad_values_name_the_line_and_key_and_keep_the_old_value() {
        let mut c = ModuleConfig::default();
        let errs = c
            .apply("handoff.conf", &vars(&[("assign_timeout", "abc"), ("controller_timeout", "0"), ("colour", "red")]));
        assert_eq!(c, ModuleConfig::default());
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0], "handoff.conf line 2: assign_timeout = 'abc': not a whole number of milliseconds; keeping the previous value");
        assert!(
            errs[1].starts_with("handoff.conf line 3: controller_timeout = '0': 0 is out of range 1..=3600 seconds")
        );
        assert!(errs[2].contains("line 4: colour = 'red': unknown setting"));
    }

    #[test]
    fn the_controller_account_is_a_plain_name() {
        let mut c = ModuleConfig::default();
        assert_eq!(c.controller_account, "handoffd");
        assert!(c.apply("handoff.conf", &vars(&[("controller_account", "pbx-ctl")])).is_empty());
        assert_eq!(c.controller_account, "pbx-ctl");
        let errs = c.apply("handoff.conf", &vars(&[("controller_account", "a b"), ("controller_account", "")]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("handoff.conf line 2: controller_account = 'a b': an AMI account name has only"));
        assert_eq!(c.controller_account, "pbx-ctl", "the previous value is kept");
    }

    #[test]
    fn alignment_is_aligned_low_latency_or_switching() {
        let mut c = ModuleConfig::default();
        assert_eq!(c.alignment, Alignment::Aligned);
        assert!(c.apply("handoff.conf", &vars(&[("alignment", "low-latency")])).is_empty());
        assert_eq!(c.alignment, Alignment::LowLatency);
        assert!(c.apply("handoff.conf", &vars(&[("alignment", "switching"), ("align_max", "200")])).is_empty());
        assert_eq!(c.alignment, Alignment::Switching);
        assert_eq!(c.align_max_ms, 200);
        let errs = c.apply("handoff.conf", &vars(&[("alignment", "tight"), ("align_max", "900")]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            "handoff.conf line 2: alignment = 'tight': must be aligned, low-latency or switching; keeping the previous value"
        );
        assert!(errs[1].contains("align_max = '900': 900 is out of range 20..=500 milliseconds"));
        assert_eq!(c.alignment, Alignment::Switching);
    }

    #[test]
    fn the_reconnect_tone_is_off_or_at_least_200_ms() {
        let mut c = ModuleConfig::default();
        assert_eq!(c.reconnect_tone_after_ns(), Some(1_000_000_000));
        assert!(c.apply("handoff.conf", &vars(&[("reconnect_tone_after", "0")])).is_empty());
        assert_eq!(c.reconnect_tone_after_ns(), None);
        let errs = c.apply("handoff.conf", &vars(&[("reconnect_tone_after", "50"), ("reconnect_tone_after", "-1")]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("reconnect_tone_after = '50': 50 is out of range: 0 (off) or 200..=60000"),
            "{errs:?}"
        );
        assert_eq!(c.reconnect_tone_after_ms, 0, "the previous value is kept");
        assert!(c.apply("handoff.conf", &vars(&[("reconnect_tone_after", "1500")])).is_empty());
        assert_eq!(c.reconnect_tone_after_ns(), Some(1_500_000_000));
    }
}
