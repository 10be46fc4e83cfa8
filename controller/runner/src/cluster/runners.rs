//! The runners one runner can see: read from their Leases, each live until it has gone a whole
//! Lease duration unchanged on this runner's own clock (so clock skew between machines cannot
//! make a live runner look dead).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

use super::lease::{
    BACKEND_ANNOTATION, CAPACITY_ANNOTATION, DRAINING_ANNOTATION, ENDPOINT_ANNOTATION, LABEL,
};

/// One runner as its Lease describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub id: String,
    pub backend: String,
    /// Its labels, without `bot-bottle.dev/runner`.
    pub labels: BTreeMap<String, String>,
    pub capacity: Option<u32>,
    pub draining: bool,
    pub session_endpoint: Option<String>,
    pub duration: Duration,
    /// When it last renewed, by its own clock (for display; liveness is judged locally).
    pub renewed: Option<jiff::Timestamp>,
}

impl Runner {
    /// The runner a Lease describes, or `None` for a Lease that is not a runner's.
    pub fn from_lease(l: &Lease) -> Option<Runner> {
        let labels = l.metadata.labels.clone().unwrap_or_default();
        let id = labels.get(LABEL)?.clone();
        let ann = l.metadata.annotations.clone().unwrap_or_default();
        let spec = l.spec.clone().unwrap_or_default();
        Some(Runner {
            backend: ann
                .get(BACKEND_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| "none".into()),
            capacity: ann.get(CAPACITY_ANNOTATION).and_then(|c| c.parse().ok()),
            draining: ann.get(DRAINING_ANNOTATION).is_some_and(|v| v == "true"),
            session_endpoint: ann.get(ENDPOINT_ANNOTATION).cloned(),
            labels: labels.into_iter().filter(|(k, _)| k != LABEL).collect(),
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .unwrap_or(super::lease::DURATION_SECONDS)
                    .max(1) as u64,
            ),
            renewed: spec.renew_time.map(|t| t.0),
            id,
        })
    }

    /// Whether its Lease has lapsed by the wall clock (what `bbctl get runners` shows; the
    /// claims use the skew-proof `Observer` instead).
    pub fn expired_at(&self, now: jiff::Timestamp) -> bool {
        match self.renewed {
            Some(t) => now.as_millisecond() - t.as_millisecond() > self.duration.as_millis() as i64,
            None => true,
        }
    }
}

/// Remembers when each Lease last changed, as this runner saw it.
#[derive(Debug, Default)]
pub struct Observer {
    seen: HashMap<String, (String, Instant)>,
}

impl Observer {
    /// The live runners among `leases` as of `now`: a Lease is live until it has stayed at the
    /// same resourceVersion for its whole duration since this observer first saw that version.
    /// A runner seen for the first time is live (it may be renewing right now).
    pub fn live(&mut self, leases: &[Lease], now: Instant) -> Vec<Runner> {
        let mut live = Vec::new();
        let mut present = std::collections::HashSet::new();
        for l in leases {
            let Some(r) = Runner::from_lease(l) else {
                continue;
            };
            let rv = l.metadata.resource_version.clone().unwrap_or_default();
            present.insert(r.id.clone());
            let since = match self.seen.get(&r.id) {
                Some((seen_rv, at)) if *seen_rv == rv => *at,
                _ => {
                    self.seen.insert(r.id.clone(), (rv, now));
                    now
                }
            };
            if now.saturating_duration_since(since) < r.duration {
                live.push(r);
            }
        }
        self.seen.retain(|id, _| present.contains(id));
        live
    }
}

/// A live runner of the fake backend, labelled `zone=<id>`, for the placement tests.
#[cfg(test)]
pub(crate) fn test_runner(id: &str, capacity: Option<u32>) -> Runner {
    Runner {
        id: id.into(),
        backend: "fake".into(),
        labels: [("zone".to_string(), id.to_string())].into(),
        capacity,
        draining: false,
        session_endpoint: None,
        duration: Duration::from_secs(15),
        renewed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn lease_of(id: &str, rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(format!("runner-{id}")),
                labels: Some(
                    [
                        (LABEL.to_string(), id.to_string()),
                        ("zone".into(), "a".into()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        (BACKEND_ANNOTATION.to_string(), "fake".to_string()),
                        (CAPACITY_ANNOTATION.into(), "3".into()),
                    ]
                    .into(),
                ),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_describes_its_runner() {
        let r = Runner::from_lease(&lease_of("a", "1")).expect("a runner");
        assert_eq!(r.id, "a");
        assert_eq!(r.backend, "fake");
        assert_eq!(r.capacity, Some(3));
        assert_eq!(r.labels.get("zone").map(String::as_str), Some("a"));
        assert!(!r.labels.contains_key(LABEL));
        assert!(!r.draining);
        let mut other = lease_of("b", "1");
        other.metadata.labels = None;
        assert_eq!(Runner::from_lease(&other), None, "not a runner's Lease");
    }

    #[test]
    fn a_runner_dies_a_whole_duration_after_its_lease_last_changed_here() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(o.live(&[lease_of("a", "1")], at(0)).len(), 1);
        assert_eq!(o.live(&[lease_of("a", "1")], at(14)).len(), 1);
        // Renewed at 14: alive until 29 whatever its own clock says.
        assert_eq!(o.live(&[lease_of("a", "2")], at(14)).len(), 1);
        assert_eq!(o.live(&[lease_of("a", "2")], at(28)).len(), 1);
        assert_eq!(o.live(&[lease_of("a", "2")], at(29)).len(), 0);
        // A deleted Lease is gone at once, and a new one starts afresh.
        assert_eq!(o.live(&[], at(30)).len(), 0);
        assert_eq!(o.live(&[lease_of("a", "2")], at(31)).len(), 1);
    }
}
