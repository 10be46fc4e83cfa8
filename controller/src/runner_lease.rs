//! This runner's heartbeat: a `coordination.k8s.io/v1` Lease in `bot-bottle-system`, renewed
//! while it runs and deleted when it stops, so who runs where can be read from the API.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// Where runner Leases live.
pub const NAMESPACE: &str = "bot-bottle-system";
/// Label on each runner Lease: the runner's identity.
pub const LABEL: &str = "bot-bottle.dev/runner";
/// Annotation naming the backend the runner drives (`none` without one).
pub const BACKEND_ANNOTATION: &str = "bot-bottle.dev/backend";
/// A Lease not renewed for this long belongs to a runner that is gone.
pub const DURATION_SECONDS: i32 = 15;
/// How often it is renewed: three chances within one duration.
const RENEW: Duration = Duration::from_secs(5);

/// The Lease object name of runner `id`.
pub fn name(id: &str) -> String {
    format!("runner-{id}")
}

fn lease(id: &str, backend: &str, resource_version: Option<String>, transitions: i32) -> Lease {
    let now = MicroTime(jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name(id)),
            namespace: Some(NAMESPACE.into()),
            labels: Some([(LABEL.to_string(), id.to_string())].into()),
            annotations: Some([(BACKEND_ANNOTATION.to_string(), backend.to_string())].into()),
            resource_version,
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(id.into()),
            lease_duration_seconds: Some(DURATION_SECONDS),
            acquire_time: (transitions == 0).then(|| now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

/// Creates or renews the Lease once.
async fn renew(api: &Api<Lease>, id: &str, backend: &str) -> Result<(), kube::Error> {
    match api.get_opt(&name(id)).await? {
        None => {
            api.create(&PostParams::default(), &lease(id, backend, None, 0))
                .await?;
        }
        Some(mut current) => {
            // Optimistic concurrency: a write racing ours fails, and the next tick retries.
            let rv = current.metadata.resource_version.take();
            let mut next = lease(id, backend, rv, 1);
            if let (Some(spec), Some(old)) = (next.spec.as_mut(), current.spec) {
                spec.acquire_time = old.acquire_time;
                spec.lease_transitions = old.lease_transitions;
            }
            api.replace(&name(id), &PostParams::default(), &next)
                .await?;
        }
    }
    Ok(())
}

/// Holds runner `id`'s Lease until `shutdown`, then deletes it (a stopped runner is gone at
/// once, not after its Lease lapses). A failed renewal is logged and retried: a runner cut off
/// from the API keeps running, and its Lease lapses for everyone else.
pub async fn hold(
    client: kube::Client,
    id: String,
    backend: &'static str,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let beat = async {
        let mut tick = tokio::time::interval(RENEW);
        loop {
            tick.tick().await;
            if let Err(e) = renew(&api, &id, backend).await {
                tracing::warn!(runner = %id, error = %e, "renewing the runner Lease failed");
            }
        }
    };
    tokio::select! {
        () = beat => {}
        () = shutdown => {}
    }
    if let Err(e) = api.delete(&name(&id), &Default::default()).await {
        tracing::warn!(runner = %id, error = %e, "releasing the runner Lease failed");
    }
}
