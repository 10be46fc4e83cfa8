//! Where every outcome the proxy reaches is written down: the audit log (when there is one) and
//! the decision counters `/metrics` shows, in one call, so neither misses what the other saw.

use std::sync::OnceLock;

use bb_policy::rule::Rule;
use http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::audit::{Audit, Entry, Seen};
use crate::policy::Policy;

/// The proxy's record of outcomes, shared by its front door, its tunnels and its relay.
#[derive(Debug, Default)]
pub struct Ledger {
    audit: OnceLock<Audit>,
    counters: Counters,
}

impl Ledger {
    /// Starts writing the audit log (once; a second log is ignored).
    pub fn set_audit(&self, audit: Audit) {
        let _ = self.audit.set(audit);
    }

    /// Whether outcomes are audited (the relay then keeps the request's headers for it).
    pub fn audits(&self) -> bool {
        self.audit.get().is_some()
    }

    /// Audits and counts one outcome under `policy`, the policy that made it (a reload in
    /// between must not change the level it is logged at).
    pub fn record(
        &self,
        policy: &Policy,
        seen: &Seen,
        status: StatusCode,
        refused_by: Option<Rule>,
    ) {
        self.counters.count(refused_by);
        if let Some(a) = self.audit.get() {
            a.record(
                policy,
                &Entry {
                    method: &seen.method,
                    host: &seen.host,
                    path: &seen.path,
                    status: status.as_u16(),
                    rule: refused_by,
                    started: seen.started,
                    headers: seen.headers.as_ref(),
                    reported: seen.reported,
                    target: seen.target,
                },
            );
        }
    }

    /// Audits a CONNECT refused, or a tunnel closed before any request could be read from it
    /// (not TLS, SNI mismatch).
    pub fn record_tunnel(&self, policy: &Policy, host: &str, rule: Rule) {
        let seen = Seen {
            method: "CONNECT".into(),
            host: host.to_string(),
            path: String::new(),
            started: std::time::Instant::now(),
            headers: None,
            reported: None,
            target: None,
        };
        self.record(policy, &seen, StatusCode::FORBIDDEN, Some(rule));
    }

    /// The counters in Prometheus' text exposition.
    pub fn metrics(&self) -> String {
        self.counters.render()
    }
}

/// The sum of the decision counters in `/metrics` text (permits and refusals alike), or
/// `None` when it holds none (not this proxy's answer).
pub fn decisions_in(metrics: &str) -> Option<u64> {
    let values: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("bb_egress_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// What `/metrics` answers with: OpenMetrics text, as prometheus-client encodes it.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of one decision counter: `decision` (permit or refuse) and the refusal `rule`.
type DecisionLabels = [(&'static str, &'static str); 2];

/// How many requests were permitted and how many refused by each rule, since start. Every
/// rule has its counter from the start, at 0 until it refuses something.
#[derive(Debug)]
pub struct Counters {
    registry: Registry,
    permitted: Counter,
    /// Handles on the family's counters, indexed by `Rule as usize` (`Rule::ALL` is in
    /// declaration order), so counting takes no lock and no lookup.
    refused: [Counter; Rule::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        let family = Family::<DecisionLabels, Counter>::default();
        let counter = |decision, rule| {
            family
                .get_or_create(&[("decision", decision), ("rule", rule)])
                .clone()
        };
        let permitted = counter("permit", "");
        let refused = std::array::from_fn(|i| counter("refuse", Rule::ALL[i].as_str()));
        let mut registry = Registry::default();
        registry.register(
            "bb_egress_decisions",
            "Requests and CONNECTs judged by the egress proxy",
            family,
        );
        Counters {
            registry,
            permitted,
            refused,
        }
    }
}

impl Counters {
    /// Counts one outcome: `None` for a permit, the rule for a refusal.
    pub fn count(&self, refused_by: Option<Rule>) {
        match refused_by {
            None => &self.permitted,
            Some(rule) => &self.refused[rule as usize],
        }
        .inc();
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
    fn counters_render_every_rule() {
        let c = Counters::default();
        c.count(None);
        c.count(Some(Rule::HostNotAllowed));
        c.count(Some(Rule::HostNotAllowed));
        c.count(Some(Rule::DlpOutbound));
        let text = c.render();
        assert!(
            text.contains("decision=\"permit\",rule=\"\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rule=\"host-not-allowed\"} 2\n"), "{text}");
        assert!(text.contains("rule=\"dlp-outbound\"} 1\n"), "{text}");
        // Every rule has its line from the start, at 0 until it refuses something.
        for rule in Rule::ALL {
            assert!(
                text.contains(&format!("decision=\"refuse\",rule=\"{rule}\"}}")),
                "{rule}: {text}"
            );
        }
        assert!(text.contains("rule=\"not-tls\"} 0\n"), "{text}");
        assert_eq!(text.matches("decision=\"refuse\"").count(), Rule::ALL.len());
        // OpenMetrics framing: one family, typed as a counter, and the terminating EOF.
        assert!(text.starts_with("# HELP bb_egress_decisions Requests and CONNECTs judged by the egress proxy.\n# TYPE bb_egress_decisions counter\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // What `bb-sidecar activity` prints: every decision, permits and refusals alike.
        assert_eq!(decisions_in(&text), Some(4));
        assert_eq!(decisions_in(&Counters::default().render()), Some(0));
        assert_eq!(decisions_in("HTTP/1.1 502 Bad Gateway\r\n\r\n"), None);
    }
}
