//! Prometheus metrics of handoffd: counters fed by the daemon from what the session core and
//! the module report, rendered in the Prometheus text format (version 0.0.4). It is served by
//! [`crate::http`] (started in [`crate::daemon`]), on loopback by default (`metrics.listen`).

use crate::pbx::Pbx;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the failover-gap histogram buckets.
pub const GAP_BUCKETS_MS: [u64; 8] = [20, 40, 60, 80, 100, 200, 500, 1000];
/// Upper bounds (ms) of the leg-offset histogram buckets.
pub const OFFSET_BUCKETS_MS: [u64; 8] = [20, 40, 60, 80, 100, 150, 200, 300];

/// A cumulative histogram of whole milliseconds with fixed bucket bounds.
#[derive(Debug)]
struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)), count: AtomicU64::new(0), sum: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[u64; N], v: u64) {
        inc(&self.count);
        self.sum.fetch_add(v, Ordering::Relaxed);
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            if v <= *bound {
                inc(bucket);
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str, bounds: &[u64; N]) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", get(&self.count));
        let _ = writeln!(out, "{name}_sum {}", get(&self.sum));
        let _ = writeln!(out, "{name}_count {}", get(&self.count));
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub sessions_opened: AtomicU64,
    pub sessions_ended: AtomicU64,
    pub sessions_open: AtomicU64,
    pub legs_data: AtomicU64,
    pub legs_carrier: AtomicU64,
    pub legs_refused: AtomicU64,
    pub failovers: AtomicU64,
    pub far_failures: AtomicU64,
    /// Successful AMI logins (`handoff_ami_connects_total`, kept for one release: use
    /// `handoff_pbx_connects_total{pbx="asterisk"}`).
    pub ami_connects: AtomicU64,
    /// Successful FreeSWITCH event-socket logins.
    pub esl_connects: AtomicU64,
    /// Move requests granted a ticket (API).
    pub moves_granted: AtomicU64,
    /// Move requests and ticket presentations refused.
    pub moves_refused: AtomicU64,
    /// Calls moved to another device.
    pub moves_done: AtomicU64,
    /// The API listener's connections.
    pub api_http: std::sync::Arc<crate::http::Counters>,
    /// The metrics listener's connections.
    pub metrics_http: std::sync::Arc<crate::http::Counters>,
    gaps: Histogram<{ GAP_BUCKETS_MS.len() }>,
    /// Device groups whose legs the PBX aligned / gave the alignment up for.
    pub alignments_aligned: AtomicU64,
    pub alignments_given_up: AtomicU64,
    offsets: Histogram<{ OFFSET_BUCKETS_MS.len() }>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// A failover whose mix had no frame for `gap_ms`.
    pub fn observe_failover(&self, gap_ms: u64) {
        inc(&self.failovers);
        self.gaps.observe(&GAP_BUCKETS_MS, gap_ms);
    }

    /// A device's legs aligned with the later one `offset_ms` behind (`None`: alignment given up).
    pub fn observe_alignment(&self, offset_ms: Option<u64>) {
        match offset_ms {
            Some(ms) => {
                inc(&self.alignments_aligned);
                self.offsets.observe(&OFFSET_BUCKETS_MS, ms);
            }
            None => inc(&self.alignments_given_up),
        }
    }

    pub fn count(&self, c: &AtomicU64) {
        inc(c);
    }

    /// A successful login to `pbx` (a driver's [`crate::pbx::DriverEvent::Up`]).
    pub fn pbx_connected(&self, pbx: Pbx) {
        inc(match pbx {
            Pbx::Asterisk => &self.ami_connects,
            Pbx::FreeSwitch => &self.esl_connects,
        });
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "handoff_sessions_opened_total",
            "Sessions opened.",
            "counter",
            &[(String::new(), get(&self.sessions_opened))],
        );
        counter(
            "handoff_sessions_ended_total",
            "Sessions ended.",
            "counter",
            &[(String::new(), get(&self.sessions_ended))],
        );
        counter("handoff_sessions", "Sessions open now.", "gauge", &[(String::new(), get(&self.sessions_open))]);
        counter(
            "handoff_legs_total",
            "Client legs placed into sessions, by path.",
            "counter",
            &[("{path=\"data\"}".into(), get(&self.legs_data)), ("{path=\"carrier\"}".into(), get(&self.legs_carrier))],
        );
        counter(
            "handoff_refusals_total",
            "Client legs refused.",
            "counter",
            &[(String::new(), get(&self.legs_refused))],
        );
        counter(
            "handoff_failovers_total",
            "Mix switches away from a stalled leg.",
            "counter",
            &[(String::new(), get(&self.failovers))],
        );
        counter(
            "handoff_far_failures_total",
            "Far calls that failed.",
            "counter",
            &[(String::new(), get(&self.far_failures))],
        );
        counter(
            "handoff_pbx_connects_total",
            "Successful logins to the PBX, by PBX.",
            "counter",
            &[
                (format!("{{pbx=\"{}\"}}", Pbx::Asterisk.label()), get(&self.ami_connects)),
                (format!("{{pbx=\"{}\"}}", Pbx::FreeSwitch.label()), get(&self.esl_connects)),
            ],
        );
        counter(
            "handoff_ami_connects_total",
            "Successful AMI logins (deprecated: handoff_pbx_connects_total{pbx=\"asterisk\"}; removed in the next release).",
            "counter",
            &[(String::new(), get(&self.ami_connects))],
        );
        counter(
            "handoff_moves_total",
            "Moves between devices, by outcome: granted (ticket issued), done (call moved), refused.",
            "counter",
            &[
                ("{outcome=\"granted\"}".into(), get(&self.moves_granted)),
                ("{outcome=\"done\"}".into(), get(&self.moves_done)),
                ("{outcome=\"refused\"}".into(), get(&self.moves_refused)),
            ],
        );
        let http = [("api", &self.api_http), ("metrics", &self.metrics_http)];
        let by_listener = |f: fn(&crate::http::Counters) -> &AtomicU64| {
            http.iter().map(|(l, c)| (format!("{{listener=\"{l}\"}}"), get(f(c)))).collect::<Vec<_>>()
        };
        counter(
            "handoff_http_connections",
            "HTTP connections being served now, by listener.",
            "gauge",
            &by_listener(|c| &c.open),
        );
        counter(
            "handoff_http_connections_refused_total",
            "HTTP connections closed at once because the listener was at its connection cap.",
            "counter",
            &by_listener(|c| &c.refused),
        );
        counter(
            "handoff_alignments_total",
            "Device groups whose legs the PBX lined up in time (aligned), or stopped aligning (switching).",
            "counter",
            &[
                ("{status=\"aligned\"}".into(), get(&self.alignments_aligned)),
                ("{status=\"switching\"}".into(), get(&self.alignments_given_up)),
            ],
        );
        self.gaps.render(
            &mut out,
            "handoff_failover_gap_ms",
            "How long the mix had no frame when a leg took over.",
            &GAP_BUCKETS_MS,
        );
        self.offsets.render(
            &mut out,
            "handoff_leg_offset_ms",
            "How far the later leg's audio ran behind the earlier one's when the legs were aligned.",
            &OFFSET_BUCKETS_MS,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new();
        m.count(&m.sessions_opened);
        m.count(&m.legs_carrier);
        m.observe_failover(42);
        m.observe_failover(300);
        let text = m.render();
        assert!(text.contains("handoff_sessions_opened_total 1\n"));
        assert!(text.contains("handoff_legs_total{path=\"carrier\"} 1\n"));
        assert!(text.contains("handoff_failover_gap_ms_bucket{le=\"40\"} 0\n"));
        assert!(text.contains("handoff_failover_gap_ms_bucket{le=\"60\"} 1\n"));
        assert!(text.contains("handoff_failover_gap_ms_bucket{le=\"500\"} 2\n"));
        assert!(text.contains("handoff_failover_gap_ms_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("handoff_failover_gap_ms_sum 342\n"));
        assert!(text.contains("# TYPE handoff_sessions gauge\n"));
        m.observe_alignment(Some(88));
        m.observe_alignment(None);
        let text = m.render();
        assert!(text.contains("handoff_alignments_total{status=\"aligned\"} 1\n"));
        assert!(text.contains("handoff_alignments_total{status=\"switching\"} 1\n"));
        assert!(
            text.contains("handoff_leg_offset_ms_bucket{le=\"80\"} 0\nhandoff_leg_offset_ms_bucket{le=\"100\"} 1\n")
        );
        assert!(text.contains("handoff_leg_offset_ms_sum 88\n"));
        m.api_http.refused.fetch_add(3, Ordering::Relaxed);
        assert!(m.render().contains("handoff_http_connections_refused_total{listener=\"api\"} 3\n"));
    }

    #[test]
    fn pbx_logins_are_counted_per_pbx_and_the_ami_alias_counts_asterisk_only() {
        let m = Metrics::new();
        m.pbx_connected(Pbx::FreeSwitch);
        m.pbx_connected(Pbx::FreeSwitch);
        m.pbx_connected(Pbx::Asterisk);
        let text = m.render();
        assert!(text.contains("handoff_pbx_connects_total{pbx=\"freeswitch\"} 2\n"), "{text}");
        assert!(text.contains("handoff_pbx_connects_total{pbx=\"asterisk\"} 1\n"));
        assert!(text.contains("handoff_ami_connects_total 1\n"));
    }
}
