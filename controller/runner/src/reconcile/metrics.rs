//! Reconciler metrics, served at `/metrics` as OpenMetrics text (prometheus-client encodes it): reconciles, errors
//! and durations per controller, and Agents by phase.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the duration histogram buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The controllers whose reconciles are counted.
const CONTROLLERS: [&str; 2] = ["bottle", "agent"];

/// The phases an Agent is counted in, each at 0 until an Agent is in it.
const PHASES: [&str; 7] = [
    "Pending",
    "Building",
    "Starting",
    "Running",
    "Suspended",
    "Failed",
    "Terminating",
];

type ControllerLabel = [(&'static str, &'static str); 1];
type PhaseLabel = [(&'static str, String); 1];

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ControllerLabel, Counter>,
    durations: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    agents: Family<PhaseLabel, Gauge>,
    /// Each Agent's phase by uid, so a change moves one Agent between two gauges.
    phases: Mutex<BTreeMap<String, String>>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            agents: Family::default(),
            phases: Mutex::default(),
        };
        // Every series exists from the start, so a dashboard sees 0 rather than nothing.
        for name in CONTROLLERS {
            drop(m.reconciles.get_or_create(&[("controller", name)]));
            drop(m.errors.get_or_create(&[("controller", name)]));
            drop(m.durations.get_or_create(&[("controller", name)]));
        }
        for phase in PHASES {
            drop(m.agents.get_or_create(&[("phase", phase.to_string())]));
        }
        let mut registry = Registry::default();
        registry.register(
            "bb_reconciles",
            "Reconciles run, per controller",
            m.reconciles.clone(),
        );
        registry.register(
            "bb_reconcile_errors",
            "Reconciles that failed, per controller",
            m.errors.clone(),
        );
        registry.register_with_unit(
            "bb_reconcile_duration",
            "Time per reconcile",
            Unit::Seconds,
            m.durations.clone(),
        );
        registry.register("bb_agents", "Agents by phase", m.agents.clone());
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn observe(&self, controller: &str, took: Duration, failed: bool) {
        let label = [(
            "controller",
            if controller == "bottle" {
                "bottle"
            } else {
                "agent"
            },
        )];
        self.reconciles.get_or_create(&label).inc();
        if failed {
            self.errors.get_or_create(&label).inc();
        }
        self.durations
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Records the phase of the Agent with uid `agent` (`None` when it is gone).
    pub fn set_phase(&self, agent: &str, phase: Option<&str>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let was = match phase {
            Some(p) => phases.insert(agent.to_string(), p.to_string()),
            None => phases.remove(agent),
        };
        if was.as_deref() == phase {
            return;
        }
        if let Some(was) = was {
            self.agents.get_or_create(&[("phase", was)]).dec();
        }
        if let Some(now) = phase {
            self.agents
                .get_or_create(&[("phase", now.to_string())])
                .inc();
        }
    }

    /// OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
                "bb_reconcile_duration_seconds_bucket{le=\"0.005\",controller=\"agent\"} 1\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "bb_reconcile_duration_seconds_bucket{le=\"0.05\",controller=\"agent\"} 2\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("bb_agents{phase=\"Running\"} 1\n")
                && t.contains("bb_agents{phase=\"Pending\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("bb_reconciles_total{controller=\"bottle\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("# UNIT bb_reconcile_duration_seconds seconds\n"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
        // A phase change moves the Agent from one gauge to the other; repeating it moves nothing.
        m.set_phase("default/a", Some("Failed"));
        m.set_phase("default/a", Some("Failed"));
        let t = m.render();
        assert!(
            t.contains("bb_agents{phase=\"Running\"} 0\n")
                && t.contains("bb_agents{phase=\"Failed\"} 1\n"),
            "{t}"
        );
    }
}
