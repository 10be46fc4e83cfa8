//! Reconciler metrics in the Prometheus text format, served at `/metrics`: reconciles, errors
//! and durations per controller, and Agents by phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histogram buckets.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Controller {
    reconciles: AtomicU64,
    errors: AtomicU64,
    /// Microseconds, summed.
    duration_us: AtomicU64,
    buckets: [AtomicU64; 11],
}

#[derive(Debug, Default)]
pub struct Metrics {
    bottle: Controller,
    agent: Controller,
    phases: Mutex<BTreeMap<String, String>>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

impl Metrics {
    fn controller(&self, name: &str) -> &Controller {
        if name == "bottle" {
            &self.bottle
        } else {
            &self.agent
        }
    }

    pub fn observe(&self, controller: &str, took: Duration, failed: bool) {
        let c = self.controller(controller);
        c.reconciles.fetch_add(1, Ordering::Relaxed);
        if failed {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.duration_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                c.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records the phase of the Agent with uid `agent` (`None` when it is gone).
    pub fn set_phase(&self, agent: &str, phase: Option<&str>) {
        if let Ok(mut m) = self.phases.lock() {
            match phase {
                Some(p) => m.insert(agent.to_string(), p.to_string()),
                None => m.remove(agent),
            };
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP bb_reconciles_total Reconciles run, per controller.\n# TYPE bb_reconciles_total counter\n");
        for (name, c) in [("bottle", &self.bottle), ("agent", &self.agent)] {
            out.push_str(&format!(
                "bb_reconciles_total{{controller=\"{name}\"}} {}\n",
                c.reconciles.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP bb_reconcile_errors_total Reconciles that failed, per controller.\n# TYPE bb_reconcile_errors_total counter\n");
        for (name, c) in [("bottle", &self.bottle), ("agent", &self.agent)] {
            out.push_str(&format!(
                "bb_reconcile_errors_total{{controller=\"{name}\"}} {}\n",
                c.errors.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP bb_reconcile_duration_seconds Time per reconcile.\n# TYPE bb_reconcile_duration_seconds histogram\n");
        for (name, c) in [("bottle", &self.bottle), ("agent", &self.agent)] {
            for (i, le) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "bb_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"{le}\"}} {}\n",
                    c.buckets[i].load(Ordering::Relaxed)
                ));
            }
            let n = c.reconciles.load(Ordering::Relaxed);
            out.push_str(&format!(
                "bb_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"+Inf\"}} {n}\n"
            ));
            out.push_str(&format!(
                "bb_reconcile_duration_seconds_sum{{controller=\"{name}\"}} {}\n",
                c.duration_us.load(Ordering::Relaxed) as f64 / 1e6
            ));
            out.push_str(&format!(
                "bb_reconcile_duration_seconds_count{{controller=\"{name}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP bb_agents Agents by phase.\n# TYPE bb_agents gauge\n");
        let mut by_phase: BTreeMap<String, u64> = [
            "Pending",
            "Building",
            "Starting",
            "Running",
            "Suspended",
            "Failed",
            "Terminating",
        ]
        .iter()
        .map(|p| (p.to_string(), 0))
        .collect();
        if let Ok(m) = self.phases.lock() {
            for p in m.values() {
                *by_phase.entry(p.clone()).or_default() += 1;
            }
        }
        for (p, n) in by_phase {
            out.push_str(&format!("bb_agents{{phase=\"{p}\"}} {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.observe("agent", Duration::from_millis(30), false);
        m.observe("agent", Duration::from_millis(3), true);
        m.set_phase("default/a", Some("Running"));
        m.set_phase("default/b", Some("Pending"));
        m.set_phase("default/b", None);
        let t = m.render();
        assert!(
            t.contains("bb_reconciles_total{controller=\"agent\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("bb_reconcile_errors_total{controller=\"agent\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "bb_reconcile_duration_seconds_bucket{controller=\"agent\",le=\"0.005\"} 1\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "bb_reconcile_duration_seconds_bucket{controller=\"agent\",le=\"0.05\"} 2\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("bb_agents{phase=\"Running\"} 1\n")
                && t.contains("bb_agents{phase=\"Pending\"} 0\n"),
            "{t}"
        );
    }
}
