//! SIPp peers, run inside the testbed root from the scenarios in `tests/sipp/`.

use crate::repo_root;
use crate::testbed::Asterisk;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// RTP ports of the data leg's SIPp (what a Wi-Fi cut drops).
pub const DATA_RTP: (u16, u16) = (30000, 30999);
/// RTP ports of the carrier leg's SIPp.
pub const CARRIER_RTP: (u16, u16) = (32000, 32999);

/// Writes the carrier leg's signal, `carrier.ulaw`.
pub fn write_carrier_signal(ast: &Asterisk, carrier: &[u8]) {
    std::fs::write(ast.instance_dir().join("sipp/carrier.ulaw"), carrier).expect("write carrier.ulaw");
}

/// Writes the signal the moved-to device (alice-tablet) sends, `tablet.ulaw`.
pub fn write_tablet_signal(ast: &Asterisk, tablet: &[u8]) {
    std::fs::write(ast.instance_dir().join("sipp/tablet.ulaw"), tablet).expect("write tablet.ulaw");
}

/// Writes the test signals the scenarios send: `caller.ulaw` and `far.ulaw`.
pub fn write_signals(ast: &Asterisk, caller: &[u8], far: &[u8]) {
    let dir = ast.instance_dir().join("sipp");
    std::fs::write(dir.join("caller.ulaw"), caller).expect("write caller.ulaw");
    std::fs::write(dir.join("far.ulaw"), far).expect("write far.ulaw");
}

/// The digest password of app endpoint `endpoint` in the testbed
/// (`tests/testbed/etc/pjsip_endpoints.conf`; the load tests' endpoints follow the same rule).
pub fn app_password(endpoint: &str) -> String {
    format!("{endpoint}-testbed-pw")
}

/// One SIPp process.
pub struct Sipp {
    name: String,
    child: Child,
}

impl Sipp {
    /// Starts `scenario` with `args` (SIPp's own options). A leg with `-key user U` answers
    /// the PBX's digest challenge as endpoint `U` with its testbed password ([`app_password`])
    /// unless `args` name other credentials (`-key auth_user`, `-key auth_pass`).
    pub fn spawn(name: &str, scenario: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(repo_root().join("tests/testbed/testbed"));
        cmd.arg("sipp").arg("-sf").arg(scenario).args(["-nostdin", "-trace_err"]);
        if !args.contains(&"-m") {
            cmd.args(["-m", "1"]); // one call unless the caller says otherwise
        }
        let key = |k: &str| args.windows(3).find(|w| w[0] == "-key" && w[1] == k).map(|w| w[2]);
        if let Some(user) = key("user") {
            if key("auth_user").is_none() {
                cmd.args(["-key", "auth_user", user]);
            }
            if key("auth_pass").is_none() {
                cmd.args(["-key", "auth_pass", &app_password(key("auth_user").unwrap_or(user))]);
            }
        }
        cmd.args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start SIPp {name}: {e}"));
        Self { name: name.to_string(), child }
    }

    /// The far party: a UAS on 127.0.0.3:5060 whose SDP points at `rec_port`.
    pub fn far_party(scenario: &str, rec_port: u16, hangup_after_ms: Option<u64>) -> Self {
        let port = rec_port.to_string();
        let d = hangup_after_ms.unwrap_or(0).to_string();
        Self::spawn(
            "far party",
            scenario,
            &[
                "-i",
                "127.0.0.3",
                "-p",
                "5060",
                "-mi",
                "127.0.0.3",
                "-min_rtp_port",
                "31000",
                "-max_rtp_port",
                "31999",
                "-key",
                "rec_port",
                &port,
                "-d",
                &d,
                "-timeout",
                "300s",
                "-timeout_error",
            ],
        )
    }

    /// A phone leg from `ip` as From user `user`, dialling `number` at Asterisk; its RTP goes
    /// out from the data leg's ports.
    pub fn phone_leg(
        scenario: &str,
        ip: &str,
        sip_port: u16,
        user: &str,
        number: &str,
        rec_port: u16,
        hangup_after_ms: u64,
    ) -> Self {
        Self::leg(scenario, ip, sip_port, user, number, rec_port, hangup_after_ms, DATA_RTP)
    }

    /// A leg with its RTP from `rtp_ports` (so that a test can cut exactly that path).
    #[allow(clippy::too_many_arguments)]
    pub fn leg(
        scenario: &str,
        ip: &str,
        sip_port: u16,
        user: &str,
        number: &str,
        rec_port: u16,
        hangup_after_ms: u64,
        rtp_ports: (u16, u16),
    ) -> Self {
        Self::leg_with(scenario, ip, sip_port, user, number, rec_port, hangup_after_ms, rtp_ports, &[])
    }

    /// [`Sipp::leg`] with more scenario keys: `(name, value)` pairs (`-key name value`).
    #[allow(clippy::too_many_arguments)]
    pub fn leg_with(
        scenario: &str,
        ip: &str,
        sip_port: u16,
        user: &str,
        number: &str,
        rec_port: u16,
        hangup_after_ms: u64,
        rtp_ports: (u16, u16),
        keys: &[(&str, &str)],
    ) -> Self {
        let (port, sport, d) = (rec_port.to_string(), sip_port.to_string(), hangup_after_ms.to_string());
        let (lo, hi) = (rtp_ports.0.to_string(), rtp_ports.1.to_string());
        let mut extra: Vec<&str> = Vec::new();
        for (k, v) in keys {
            extra.extend(["-key", k, v]);
        }
        let base = [
            "127.0.0.1:5060",
            "-i",
            ip,
            "-p",
            &sport,
            "-mi",
            ip,
            "-min_rtp_port",
            &lo,
            "-max_rtp_port",
            &hi,
            "-key",
            "user",
            user,
            "-s",
            number,
            "-key",
            "rec_port",
            &port,
            "-d",
            &d,
            "-timeout",
            "90s",
            "-timeout_error",
        ];
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        Self::spawn(user, scenario, &args)
    }

    /// Waits for SIPp to finish; returns whether its scenario passed (exit 0).
    pub fn wait(&mut self, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let mut err = String::new();
                    if let Some(mut e) = self.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    return Err(format!("SIPp {} failed ({status}): {}", self.name, err.trim()));
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => return Err(format!("SIPp {} still running after {} s", self.name, limit.as_secs())),
                Err(e) => return Err(format!("SIPp {}: {e}", self.name)),
            }
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
