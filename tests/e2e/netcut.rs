//! Real network faults on this host's loopback: an nftables rule (run from the testbed root)
//! drops a leg's RTP in both directions, as a Wi-Fi link that goes away would, or a random share
//! of the packets a leg sends (`numgen random`: the kernel here has no netem). The rules are
//! removed when the guard drops, whatever happens to the test.

use crate::testbed::testbed;

const TABLE: &str = "handoff_cut";

/// A cut path: UDP to and from `ports` (a SIPp leg's RTP port range) is dropped.
pub struct Cut {
    ports: String,
}

impl Cut {
    /// Cuts the path of the RTP ports `from..=to`.
    pub fn udp_ports(from: u16, to: u16) -> Self {
        Self::udp_port_ranges(&[(from, to)])
    }

    /// Cuts the paths of every RTP port range in `ranges` at once (all of a phone's legs).
    pub fn udp_port_ranges(ranges: &[(u16, u16)]) -> Self {
        input_chain();
        let mut all = Vec::new();
        for (from, to) in ranges {
            let ports = format!("{from}-{to}");
            testbed(&["nft", "add", "rule", "inet", TABLE, "input", "udp", "sport", &ports, "drop"]);
            testbed(&["nft", "add", "rule", "inet", TABLE, "input", "udp", "dport", &ports, "drop"]);
            all.push(ports);
        }
        Self { ports: all.join(", ") }
    }

    /// Drops `percent` % of the UDP packets sent *from* each port range, at random and
    /// independently per range (the phone's uplink on a lossy path).
    pub fn loss(ranges: &[((u16, u16), u32)]) -> Self {
        input_chain();
        let mut all = Vec::new();
        for ((from, to), percent) in ranges {
            let ports = format!("{from}-{to}");
            let share = percent.to_string();
            testbed(&[
                "nft", "add", "rule", "inet", TABLE, "input", "udp", "sport", &ports, "numgen", "random", "mod", "100",
                "<", &share, "drop",
            ]);
            all.push(format!("{ports} {percent}%"));
        }
        Self { ports: all.join(", ") }
    }

    /// The link comes back.
    pub fn heal(self) {}

    pub fn ports(&self) -> &str {
        &self.ports
    }
}

/// A fresh table with an input chain for the rules (any earlier cut's table removed first).
fn input_chain() {
    remove_table();
    testbed(&["nft", "add", "table", "inet", TABLE]);
    let chain = "{ type filter hook input priority -10 ; policy accept ; }";
    testbed(&["nft", "add", "chain", "inet", TABLE, "input", chain]);
}

/// Removes the cut's table if it is there (it may not be: no error then).
fn remove_table() {
    let _ = std::process::Command::new(crate::repo_root().join("tests/testbed/testbed"))
        .args(["nft", "delete", "table", "inet", TABLE])
        .stderr(std::process::Stdio::null())
        .status();
}

impl Drop for Cut {
    fn drop(&mut self) {
        remove_table();
    }
}
