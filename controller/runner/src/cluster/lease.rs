//! This runner's heartbeat: a `coordination.k8s.io/v1` Lease in `bot-bottle-system`, renewed
//! while it runs and deleted when it stops, so who runs where can be read from the API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

use super::RunnerInfo;

/// Where runner Leases live.
pub const NAMESPACE: &str = "bot-bottle-system";
/// Label on each runner Lease: the runner's identity.
pub const LABEL: &str = "bot-bottle.dev/runner";
/// Annotation naming the backend the runner drives (`none` without one).
pub const BACKEND_ANNOTATION: &str = "bot-bottle.dev/backend";
/// Annotation with the most Agents the runner holds (absent: no limit).
pub const CAPACITY_ANNOTATION: &str = "bot-bottle.dev/capacity";
/// Annotation with the runner's session endpoint.
pub const ENDPOINT_ANNOTATION: &str = "bot-bottle.dev/session-endpoint";
/// Annotation with the CA (PEM) of the runner's session endpoint.
pub const SESSION_CA_ANNOTATION: &str = "bot-bottle.dev/session-ca";
/// Annotation `bbctl controller drain` sets: the runner releases its Agents and claims none.
/// It lasts as long as the runner process; a restarted runner rejoins.
pub const DRAINING_ANNOTATION: &str = "bot-bottle.dev/draining";
/// A Lease not renewed for this long belongs to a runner that is gone.
pub const DURATION_SECONDS: i32 = 15;
/// How often it is renewed: three chances within one duration.
const RENEW: Duration = Duration::from_secs(5);
/// A runner that has not renewed for this long acts as if it held nothing: it stops its Agents
/// before anyone else may see its Lease expire (others wait a whole duration from when they
/// last saw it change, which is after the renewal was sent).
pub const FENCE: Duration = Duration::from_secs(10);

/// The Lease object name of runner `id`.
pub fn name(id: &str) -> String {
    format!("runner-{id}")
}

/// What the heartbeat knows, shared with the claims: when the Lease was last renewed (the
/// moment the successful request was sent) and whether someone asked the runner to drain.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    renewed: Arc<Mutex<Option<Instant>>>,
    draining: Arc<AtomicBool>,
    /// Set by a stopping runner: it claims nothing more, whatever its Lease says.
    stopping: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Whether this runner may act: its last renewal is recent enough that nobody else can
    /// have taken its Agents.
    pub fn held(&self) -> bool {
        self.renewed
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|t| t.elapsed() < FENCE)
    }

    /// Until when this runner's sidecars may act: `FENCE` past the last renewal (on the wall
    /// clock the sidecars compare with), as long as the heartbeat is held.
    pub fn hold_deadline(&self) -> Option<std::time::SystemTime> {
        let renewed = self.renewed.lock().ok().and_then(|r| *r)?;
        let since = renewed.elapsed();
        (since < FENCE).then(|| std::time::SystemTime::now() - since + FENCE)
    }

    /// Whether the runner is giving its Agents up: drained through its Lease, or stopping.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst)
    }

    /// The runner is stopping: from now on it claims nothing (what it holds is being released).
    pub fn stop_claiming(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn renewed_at(&self, t: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(t);
        }
    }

    #[cfg(test)]
    pub fn set_renewed(&self, t: Option<Instant>) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = t;
        }
    }
}

fn lease(info: &RunnerInfo, resource_version: Option<String>, draining: bool) -> Lease {
    let now = MicroTime(jiff::Timestamp::now());
    let mut labels = info.labels.clone();
    labels.insert(LABEL.to_string(), info.id.clone());
    let mut annotations =
        std::collections::BTreeMap::from([(BACKEND_ANNOTATION.to_string(), info.backend.clone())]);
    if let Some(c) = info.capacity {
        annotations.insert(CAPACITY_ANNOTATION.into(), c.to_string());
    }
    if let Some(e) = &info.session_endpoint {
        annotations.insert(ENDPOINT_ANNOTATION.into(), e.clone());
    }
    if let Some(ca) = &info.session_ca {
        annotations.insert(SESSION_CA_ANNOTATION.into(), ca.clone());
    }
    if draining {
        annotations.insert(DRAINING_ANNOTATION.into(), "true".into());
    }
    Lease {
        metadata: ObjectMeta {
            name: Some(name(&info.id)),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version,
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(info.id.clone()),
            lease_duration_seconds: Some(DURATION_SECONDS),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// Creates or renews the Lease once; `first` is this process's first renewal, which takes the
/// Lease over from an earlier run of the same runner (and so drops a drain it was under).
async fn renew(api: &Api<Lease>, info: &RunnerInfo, first: bool) -> Result<bool, kube::Error> {
    match api.get_opt(&name(&info.id)).await? {
        None => {
            api.create(&PostParams::default(), &lease(info, None, false))
                .await?;
            Ok(false)
        }
        Some(mut current) => {
            let draining = !first
                && current
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DRAINING_ANNOTATION))
                    .is_some_and(|v| v == "true");
            // Optimistic concurrency: a write racing ours (a drain) fails, and the next tick
            // retries with it seen.
            let rv = current.metadata.resource_version.take();
            let mut next = lease(info, rv, draining);
            if let (Some(spec), Some(old)) = (next.spec.as_mut(), current.spec) {
                if first {
                    spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
                } else {
                    spec.acquire_time = old.acquire_time;
                    spec.lease_transitions = old.lease_transitions;
                }
            }
            api.replace(&name(&info.id), &PostParams::default(), &next)
                .await?;
            Ok(draining)
        }
    }
}

/// Holds runner `info.id`'s Lease until `shutdown`, then deletes it (a stopped runner is gone
/// at once, not after its Lease lapses). A failed renewal is logged and retried: a runner cut
/// off from the API keeps running, and `heartbeat.held()` turns false after `FENCE`.
pub async fn hold(
    client: kube::Client,
    info: RunnerInfo,
    heartbeat: Heartbeat,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let beat = async {
        let mut tick = tokio::time::interval(RENEW);
        let mut first = true;
        loop {
            tick.tick().await;
            let sent = Instant::now();
            // A partition can hang a request rather than fail it: bounded, so the next tick
            // tries again and the fence is judged on time.
            let renewed = tokio::time::timeout(RENEW, renew(&api, &info, first))
                .await
                .unwrap_or_else(|_| Err(kube::Error::Service("renewal timed out".into())));
            match renewed {
                Ok(draining) => {
                    first = false;
                    heartbeat.renewed_at(sent);
                    if draining && !heartbeat.draining.load(Ordering::SeqCst) {
                        tracing::info!(runner = %info.id, "asked to drain: releasing every Agent and claiming none");
                    }
                    heartbeat.draining.store(draining, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::warn!(runner = %info.id, error = %e, "renewing the runner Lease failed")
                }
            }
        }
    };
    tokio::select! {
        () = beat => {}
        () = shutdown => {}
    }
    if let Err(e) = api.delete(&name(&info.id), &Default::default()).await {
        tracing::warn!(runner = %info.id, error = %e, "releasing the runner Lease failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_held_only_within_the_fence() {
        let h = Heartbeat::default();
        assert!(!h.held(), "never renewed");
        h.set_renewed(Some(Instant::now()));
        assert!(h.held());
        let deadline = h.hold_deadline().expect("held");
        let left = deadline
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        assert!(
            left <= FENCE && left > FENCE - Duration::from_secs(1),
            "{left:?}"
        );
        h.set_renewed(Instant::now().checked_sub(FENCE + Duration::from_millis(1)));
        assert!(!h.held(), "a renewal older than the fence still counts");
        assert_eq!(h.hold_deadline(), None, "no hold past the fence");
    }

    #[test]
    fn the_fence_comes_before_anyone_may_see_the_lease_expire() {
        assert!(FENCE + RENEW <= Duration::from_secs(DURATION_SECONDS as u64));
    }

    #[test]
    fn the_lease_carries_labels_capacity_and_drain() {
        let info = RunnerInfo {
            id: "abc".into(),
            backend: "fake".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            capacity: Some(7),
            session_endpoint: Some("https://127.0.0.1:1".into()),
            session_ca: None,
        };
        let l = lease(&info, None, true);
        let labels = l.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(LABEL).map(String::as_str), Some("abc"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        let ann = l.metadata.annotations.unwrap_or_default();
        assert_eq!(ann.get(CAPACITY_ANNOTATION).map(String::as_str), Some("7"));
        assert_eq!(
            ann.get(DRAINING_ANNOTATION).map(String::as_str),
            Some("true")
        );
        assert_eq!(l.metadata.name.as_deref(), Some("runner-abc"));
    }
}
