//! The local control plane as kube-rs sees it: the same client, watcher and server-side apply
//! the reconcilers use, including a watcher that survives a control-plane restart.

mod support;

use std::time::Duration;

use bb_crds::{Agent, AgentSpec, AgentStatus};
use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use support::ControlPlane;

async fn client(cp: &ControlPlane) -> kube::Client {
    let kc = Kubeconfig::read_from(cp.kubeconfig()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn agent(name: &str) -> Agent {
    let mut a = Agent::new(name, AgentSpec::default());
    a.spec.bottle_ref.name = "claude".into();
    a
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_resumes_after_the_control_plane_restarts() {
    let mut cp = ControlPlane::start_fixed_port();
    let api: Api<Agent> = Api::namespaced(client(&cp).await, "default");
    api.create(&PostParams::default(), &agent("before"))
        .await
        .expect("create");

    let (reader, writer) = reflector::store::<Agent>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    eventually("the first agent in the cache", || {
        reader
            .state()
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some("before"))
    })
    .await;

    cp.stop();
    cp.spawn();
    let api: Api<Agent> = Api::namespaced(client(&cp).await, "default");
    api.create(&PostParams::default(), &agent("after"))
        .await
        .expect("create after restart");
    api.delete("before", &Default::default())
        .await
        .expect("delete");
    eventually("the cache to follow the restarted control plane", || {
        let names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|a| a.metadata.name.clone())
            .collect();
        names == vec!["after".to_string()]
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_server_side_apply_from_a_second_manager() {
    let cp = ControlPlane::start();
    let api: Api<Agent> = Api::namespaced(client(&cp).await, "default");
    let applied = json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "x"},
        "spec": {"bottleRef": {"name": "claude"}, "label": "mine"},
    });
    api.patch("x", &PatchParams::apply("user"), &Patch::Apply(&applied))
        .await
        .expect("user apply");

    let status = json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "x"},
        "status": {"phase": "Running", "observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Running", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]},
    });
    let got = api
        .patch_status(
            "x",
            &PatchParams::apply("bb-controller").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status apply");
    let st: &AgentStatus = got.status.as_ref().expect("status");
    assert_eq!(st.phase, Some(bb_crds::AgentPhase::Running));
    assert_eq!(st.conditions[0].type_, "Ready");
    assert_eq!(
        got.spec.label.as_deref(),
        Some("mine"),
        "a status write leaves spec alone"
    );
    assert_eq!(
        got.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let managers: Vec<(String, Option<String>)> = got
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&("bb-controller".to_string(), Some("status".to_string()))),
        "{managers:?}"
    );

    // The user re-applying spec neither conflicts with nor erases the controller's status.
    let relabel = json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "x"},
        "spec": {"bottleRef": {"name": "claude"}, "label": "again"},
    });
    let after = api
        .patch("x", &PatchParams::apply("user"), &Patch::Apply(&relabel))
        .await
        .expect("re-apply");
    assert_eq!(
        after.status.and_then(|s| s.phase),
        Some(bb_crds::AgentPhase::Running)
    );
    assert_eq!(after.metadata.generation, Some(2));

    // A stale update is refused with 409.
    let mut stale = got.clone();
    stale.spec.label = Some("stale".into());
    let err = api
        .replace("x", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
}
