//! The reconcilers against the real control plane (in process, over TLS, through kube-rs) with
//! the fake backend: create → Running, live policy change, repair, backoff and recovery,
//! suspend, delete, restart mid-reconcile, sweep, and secrets never leaking.

mod support;

use std::time::Duration;

use bb_backend::{AgentId, Step};
use bb_crds::{Agent, AgentPhase, Bottle};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use support::{Harness, SECRET_VALUE, events_for, events_with, logs};

fn phase(a: &Agent) -> Option<AgentPhase> {
    a.status.as_ref().and_then(|s| s.phase)
}

fn condition(a: &Agent, t: &str) -> Option<(String, String, String)> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_and_policy_changes_apply_live_without_recreating_it() {
    let h = Harness::start().await;
    h.create().await;
    let a = h
        .wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    for c in [
        "ImagesReady",
        "SidecarReady",
        "PolicyApplied",
        "Provisioned",
        "Ready",
        "SecretsResolved",
    ] {
        assert_eq!(condition(&a, c).map(|c| c.0), Some("True".into()), "{c}");
    }
    let st = a.status.clone().expect("status");
    assert_eq!(st.observed_generation, a.metadata.generation);
    assert_eq!(st.backend.as_deref(), Some("fake"));
    assert!(st.endpoints.and_then(|e| e.proxy).is_some());
    let first_hash = st.applied_policy_hash.expect("hash");
    let fake = h.backend.snapshot_of("worker").expect("fake resources");
    assert_eq!(
        fake.secret_files
            .values()
            .next()
            .map(|v| v.expose().to_vec()),
        Some(SECRET_VALUE.as_bytes().to_vec())
    );
    assert!(
        fake.sidecar_policy_yaml
            .as_deref()
            .is_some_and(|y| y.contains("tokenFile: route-0-token") && !y.contains(SECRET_VALUE))
    );

    // The Bottle's status shows what it resolved to.
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    for _ in 0..100 {
        if bottles
            .get("tools")
            .await
            .ok()
            .and_then(|b| b.status)
            .and_then(|s| s.route_count)
            == Some(1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bs = bottles
        .get("tools")
        .await
        .expect("bottle")
        .status
        .expect("bottle status");
    assert_eq!(
        (bs.provider.as_deref(), bs.route_count),
        (Some("custom"), Some(1))
    );
    // One hash: what the sidecar applied is what the Bottle resolved to.
    assert_eq!(
        bs.resolved_policy_hash.as_deref(),
        Some(first_hash.as_str())
    );

    // Policy-only change: a new route. The sidecar reloads; the agent is not recreated.
    let patch = json!({"spec": {"egress": {"routes": [
        {"host": "api.example.com", "auth": {"scheme": "Bearer", "secretKeyRef": {"name": "api-token", "key": "token"}}},
        {"host": "pypi.org"}]}}});
    bottles
        .patch("tools", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit bottle");
    let a = h
        .wait_for("the new policy", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.applied_policy_hash.as_deref())
                .is_some_and(|x| x != first_hash)
        })
        .await;
    assert_eq!(phase(&a), Some(AgentPhase::Running));
    let fake = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!(
        (fake.agent_creates, fake.sidecar_creates),
        (1, 1),
        "{fake:?}"
    );
    // Resyncs (every 500 ms here) and the policy edit did not build the image again.
    assert_eq!(fake.image_builds, 1, "{fake:?}");
    assert!(
        fake.policy_reloads >= 1
            && fake
                .sidecar_policy_yaml
                .as_deref()
                .is_some_and(|y| y.contains("pypi.org"))
    );

    // A change that needs a new container (the image) recreates the agent.
    let patch = json!({"spec": {"agentProvider": {"template": "custom", "image": "agent:2", "command": ["bash"]}}});
    bottles
        .patch("tools", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit bottle");
    for _ in 0..200 {
        if h.backend
            .snapshot_of("worker")
            .is_some_and(|f| f.agent_creates == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.backend.snapshot_of("worker").map(|f| f.agent_creates),
        Some(2)
    );
    assert_eq!(
        h.backend.snapshot_of("worker").and_then(|f| f.agent_image),
        Some("agent:2".to_string()),
        "the recreated container runs the new image"
    );
    let events = events_with(&h.client, &["PolicyApplied", "Recreated"]).await;
    assert!(
        events.contains("PolicyApplied") && events.contains("Recreated"),
        "{events}"
    );

    // /metrics reports the reconciles and the Agents by phase.
    let metrics = h
        .client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("req"),
        )
        .await
        .expect("metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("bb_reconciles_total{controller=\"agent\"}") >= 3.0,
        "{metrics}"
    );
    assert!(
        value("bb_reconciles_total{controller=\"bottle\"}") >= 1.0,
        "{metrics}"
    );
    assert!(value("bb_agents{phase=\"Running\"}") >= 1.0, "{metrics}");

    // The secret never reached an API object, an event, or a log line.
    let everything = format!(
        "{}{}{}",
        serde_json::to_string(&h.agents().list(&Default::default()).await.expect("agents"))
            .expect("json"),
        serde_json::to_string(&bottles.list(&Default::default()).await.expect("bottles"))
            .expect("json"),
        events,
    );
    assert!(!everything.contains(SECRET_VALUE));
    let logged = String::from_utf8_lossy(&logs().lock().expect("logs")).into_owned();
    assert!(logged.contains("reconcile_agent"), "the capture works");
    assert!(!logged.contains(SECRET_VALUE), "a secret value was logged");
}

/// Every failed step shows on the condition of its own part (network on SidecarReady, the agent
/// container on Provisioned), not only on Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_step_reports_on_its_condition() {
    let h = Harness::start().await;
    // Each step keeps failing until the test has seen its condition: a short burst of
    // failures can be retried and cleared between two polls (a status write is itself a
    // watch event, so retries do not wait for the backoff).
    h.backend.fail(Step::Network, u32::MAX);
    h.create().await;
    for (cond, what, step, next) in [
        ("SidecarReady", "network", Step::Network, Some(Step::Agent)),
        ("Provisioned", "agent", Step::Agent, None),
    ] {
        let a = h
            .wait_for(what, |a| {
                condition(a, cond).is_some_and(|c| c.0 == "False" && c.2.starts_with(what))
            })
            .await;
        let (_, reason, message) = condition(&a, cond).expect("condition");
        assert_eq!(reason, "StepFailed");
        assert!(message.contains("injected failure"), "{message}");
        if let Some(n) = next {
            h.backend.fail(n, u32::MAX);
        }
        h.backend.fail(step, 0);
        // A change to the Agent retries at once instead of after the grown backoff.
        h.agents()
            .patch(
                "worker",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"retry": what}}})),
            )
            .await
            .expect("annotate");
    }
    h.wait_for("recovery", |a| phase(a) == Some(AgentPhase::Running))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_deletion_is_repaired_and_failures_back_off_then_recover() {
    let h = Harness::start().await;
    h.backend.fail(Step::Sidecar, 3);
    h.create().await;
    let a = h
        .wait_for("the injected failure", |a| {
            condition(a, "SidecarReady").is_some_and(|c| c.0 == "False")
        })
        .await;
    let (_, reason, message) = condition(&a, "SidecarReady").expect("condition");
    assert_eq!(reason, "StepFailed");
    assert!(message.contains("injected failure"), "{message}");
    h.wait_for("recovery", |a| phase(a) == Some(AgentPhase::Running))
        .await;

    h.backend.vanish_sidecar("worker");
    for _ in 0..200 {
        if h.backend
            .snapshot_of("worker")
            .is_some_and(|f| f.sidecar_creates == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.backend.snapshot_of("worker").map(|f| f.sidecar_creates),
        Some(2),
        "the sidecar came back"
    );
    let events = events_with(&h.client, &["SidecarRecreated"]).await;
    assert!(events.contains("SidecarRecreated"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_waits_then_proceeds() {
    let h = Harness::start().await;
    h.create_bottle_and_agent().await;
    let a = h
        .wait_for("the missing secret", |a| {
            condition(a, "SecretsResolved").is_some_and(|c| c.0 == "False")
        })
        .await;
    assert_eq!(phase(&a), Some(AgentPhase::Pending));
    let (_, reason, message) = condition(&a, "SecretsResolved").expect("condition");
    assert_eq!(reason, "SecretMissing");
    assert!(
        message.starts_with("Secret bot-bottle-system/api-token not found; create it"),
        "{message}"
    );
    assert_eq!(
        h.backend.count(),
        0,
        "nothing is started without its secrets"
    );
    h.create_secret().await;
    // Secrets are not watched: the Agent looks again every 15 s.
    h.wait_within(Duration::from_secs(30), "Running", |a| {
        phase(a) == Some(AgentPhase::Running)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asking_for_another_backend_waits_with_a_reason() {
    let h = Harness::start().await;
    h.create().await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let patch = json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "other"}, "spec": {"bottleRef": {"name": "tools"}, "backend": "smolvm"}});
    h.agents()
        .patch("other", &PatchParams::apply("test"), &Patch::Apply(&patch))
        .await
        .expect("create");
    for _ in 0..200 {
        let a = h.agents().get("other").await.expect("get");
        if let Some((status, reason, message)) = condition(&a, "Ready") {
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "BackendUnavailable")
            );
            assert!(
                message.contains("smolvm") && message.contains("valid here: auto, fake"),
                "{message}"
            );
            assert!(
                h.backend.snapshot_of("other").is_none(),
                "nothing was created"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no Ready condition on an Agent asking for smolvm");
}

/// A snapshot is asked for in the spec and answered in status by the reconciler, once per new
/// request value; the agent keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_requests_are_answered_in_status() {
    let h = Harness::start().await;
    h.create().await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let mut images = Vec::new();
    for request in ["r1", "r2"] {
        let patch = json!({"spec": {"snapshotRequest": request}});
        h.agents()
            .patch("worker", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("request a snapshot");
        let a = h
            .wait_for("the request answered", |a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.snapshot_request_handled.as_deref())
                    == Some(request)
            })
            .await;
        let status = a.status.expect("status");
        assert_eq!(status.phase, Some(AgentPhase::Running));
        images.push(status.snapshot.expect("snapshot image"));
    }
    assert_ne!(images[0], images[1], "each request is its own snapshot");
    // An answered request is not taken again on later reconciles.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = h.agents().get("worker").await.expect("agent");
    assert_eq!(
        a.status.and_then(|s| s.snapshot),
        Some(images[1].clone()),
        "an answered request was snapshotted again"
    );
    let events = events_with(&h.client, &["Snapshotted"]).await;
    assert_eq!(
        events.matches("\"reason\":\"Snapshotted\"").count(),
        2,
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_and_delete_leave_nothing_behind() {
    let h = Harness::start().await;
    h.create().await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let set_suspend = |on: bool| h.patch_spec(json!({"suspend": on}));
    // Suspend stops and keeps the agent container: no snapshot; resume starts that container.
    set_suspend(true).await;
    let a = h
        .wait_for("Suspended", |a| phase(a) == Some(AgentPhase::Suspended))
        .await;
    assert_eq!(a.status.and_then(|s| s.snapshot), None, "no snapshot taken");
    let f = h.backend.snapshot_of("worker").expect("fake");
    assert!(f.stopped && f.agent_stopped && f.snapshots == 0, "{f:?}");
    set_suspend(false).await;
    h.wait_for("Running again", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let f = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!(
        (f.agent_creates, f.agent_starts, f.snapshots),
        (1, 1, 0),
        "resume started the kept container: {f:?}"
    );
    assert!(
        events_with(&h.client, &["Resumed"])
            .await
            .contains("Resumed")
    );

    // The first attempt to start it again fails: the kept container's files go into a new one
    // through a snapshot, never a fresh image.
    set_suspend(true).await;
    h.wait_for("Suspended", |a| phase(a) == Some(AgentPhase::Suspended))
        .await;
    h.backend.fail(Step::Agent, 1);
    set_suspend(false).await;
    h.wait_for("Running again", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    assert_eq!(
        h.backend.snapshot_of("worker").and_then(|f| f.agent_image),
        Some("fake-snapshot/worker:1".to_string()),
        "a container that would not start again is carried over by its snapshot"
    );
    assert!(
        events_with(&h.client, &["RestartFailed"])
            .await
            .contains("RestartFailed")
    );

    // The Bottle changed while suspended (a new container hash): the same, by a snapshot.
    set_suspend(true).await;
    h.wait_for("Suspended", |a| phase(a) == Some(AgentPhase::Suspended))
        .await;
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    let patch = json!({"spec": {"runtime": {"pids": 321}}});
    bottles
        .patch("tools", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit bottle");
    set_suspend(false).await;
    let a = h
        .wait_for("Running again", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let f = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!(
        f.agent_image.as_deref(),
        Some("fake-snapshot/worker:2"),
        "{f:?}"
    );
    assert_eq!(
        a.status.and_then(|s| s.snapshot).as_deref(),
        Some("fake-snapshot/worker:2")
    );

    // The kept container removed and its snapshot pruned while suspended: resume from a fresh
    // image and say the state is gone.
    set_suspend(true).await;
    h.wait_for("Suspended", |a| phase(a) == Some(AgentPhase::Suspended))
        .await;
    h.backend.vanish_agent("worker");
    h.backend.prune_snapshots();
    set_suspend(false).await;
    h.wait_for("Running again", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    assert_eq!(
        h.backend.snapshot_of("worker").and_then(|f| f.agent_image),
        Some("agent:1".to_string()),
        "a missing snapshot falls back to the built image"
    );
    assert!(
        events_with(&h.client, &["SnapshotMissing"])
            .await
            .contains("SnapshotMissing")
    );

    h.agents()
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_deleted("the finalizer was released").await;
    assert_eq!(h.backend.count(), 0, "every backend resource is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_reconcile_converges_without_duplicates_and_sweeps_orphans() {
    let mut h = Harness::start().await;
    h.backend.hang(Step::Agent, Duration::from_secs(2));
    h.create().await;
    for _ in 0..200 {
        if h.backend
            .snapshot_of("worker")
            .is_some_and(|f| f.sidecar_creates == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    h.kill_controller();
    h.backend.hang(Step::Agent, Duration::ZERO);
    h.backend.plant_orphan(AgentId {
        namespace: "default".into(),
        name: "ghost".into(),
        uid: "gone".into(),
    });
    h.run_controller();
    h.wait_for("Running after restart", |a| {
        phase(a) == Some(AgentPhase::Running)
    })
    .await;
    let f = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!(
        (f.sidecar_creates, f.agent_creates),
        (1, 1),
        "no duplicates: {f:?}"
    );
    assert!(
        h.backend.snapshot_of("ghost").is_none(),
        "the start-up sweep removed the orphan"
    );
}

/// Agent `worker` of a `claude` Bottle (whose image the fake builds, reporting its steps).
async fn claude_agent(h: &Harness) {
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    let bottle: Bottle = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "tools"},
        "spec": {"agentProvider": {"template": "claude"}}
    }))
    .expect("bottle");
    bottles
        .create(&Default::default(), &bottle)
        .await
        .expect("bottle");
    tools_agent(h).await;
}

/// Agent `worker` of Bottle `tools`, with nothing else in its spec.
async fn tools_agent(h: &Harness) {
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "worker"},
        "spec": {"bottleRef": {"name": "tools"}}
    }))
    .expect("agent");
    h.agents()
        .create(&Default::default(), &agent)
        .await
        .expect("agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_steps_reach_the_agents_events() {
    let h = Harness::start().await;
    claude_agent(&h).await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let events = events_with(&h.client, &["Step 1/1 : FROM fake"]).await;
    assert!(
        events.contains("\"reason\":\"Building\"") && events.contains("Step 1/1 : FROM fake"),
        "{events}"
    );
    // A provider Bottle with no routes of its own counts the provider's (what describe lists).
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    let mut routes = None;
    for _ in 0..100 {
        routes = bottles
            .get("tools")
            .await
            .expect("bottle")
            .status
            .and_then(|s| s.route_count);
        if routes.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(routes.is_some_and(|n| n >= 1), "{routes:?}");
}

/// A build that keeps failing (reporting its steps, then an error, as a real one does) is
/// retried with growing gaps (its own status writes do not wake the next attempt), then the
/// Agent is Failed, says what to do, and is not tried again until it changes; the repeats of
/// its warning fold into one Event. Before: a retry every ~160 ms for minutes, 8,211 Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_backs_off_then_gives_up_until_the_agent_changes() {
    let h = Harness::start().await;
    h.backend.fail(Step::Image, u32::MAX);
    claude_agent(&h).await;
    let started = std::time::Instant::now();
    // Gaps of 1, 2, 4 and 8 s: the fifth attempt, near 15 s, gives up.
    let a = h
        .wait_within(Duration::from_secs(40), "Failed", |a| {
            phase(a) == Some(AgentPhase::Failed)
        })
        .await;
    let took = started.elapsed();
    assert!(took > Duration::from_secs(12), "gave up after {took:?}");
    assert_eq!(h.backend.attempts(Step::Image), 5);
    let (status, reason, message) = condition(&a, "Ready").expect("Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RetriesExhausted")
    );
    assert!(
        message.contains("injected failure")
            && message.contains("gave up after 5 attempts")
            && message.contains("bbctl resume agent/worker"),
        "{message}"
    );
    // No more attempts while nothing changes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.backend.attempts(Step::Image), 5);
    // Five failures, one Event: count 5.
    let events: serde_json::Value =
        serde_json::from_str(&events_for(&h.client).await).expect("events");
    let failed: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["reason"] == "StepFailed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["count"], 5, "{failed:#?}");

    // What `bbctl resume` does (an annotation) is a change: tried again, and now it builds.
    h.backend.fail(Step::Image, 0);
    h.agents()
        .patch(
            "worker",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"bot-bottle.dev/retried-at": "now"}}}),
            ),
        )
        .await
        .expect("annotate");
    h.wait_for("Running after the change", |a| {
        phase(a) == Some(AgentPhase::Running)
    })
    .await;
    assert_eq!(h.backend.attempts(Step::Image), 6);
}

/// An Agent naming a Bottle that does not exist says what to change and waits for it without
/// polling; applying the Bottle is what starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_waits_for_its_bottle_and_says_so() {
    let h = Harness::start().await;
    tools_agent(&h).await;
    let a = h
        .wait_for("BottleNotFound", |a| {
            condition(a, "Ready").is_some_and(|c| c.1 == "BottleNotFound")
        })
        .await;
    assert_eq!(phase(&a), Some(AgentPhase::Pending));
    let (_, _, message) = condition(&a, "Ready").expect("Ready");
    assert_eq!(
        message,
        "Bottle 'tools' not found (available: none); apply a Bottle named 'tools' or change spec.bottleRef.name"
    );
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    let bottle: Bottle = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "tools"},
        "spec": {"agentProvider": {"template": "custom", "image": "agent:1", "command": ["bash"]}}
    }))
    .expect("bottle");
    bottles
        .create(&Default::default(), &bottle)
        .await
        .expect("bottle");
    h.wait_for("Running once the Bottle exists", |a| {
        phase(a) == Some(AgentPhase::Running)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_suspends_and_requests_through_its_sidecar_keep_it_running() {
    let h = Harness::start().await;
    h.create().await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    h.patch_spec(json!({"lifecycle": {"idleSuspendAfter": "2s"}}))
        .await;
    // A request every 300 ms for 4 s: never 2 s quiet, so it keeps running.
    for _ in 0..13 {
        h.backend.add_egress("worker", 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = h.agents().get("worker").await.expect("get");
        assert_eq!(
            phase(&a),
            Some(AgentPhase::Running),
            "suspended while in use"
        );
        assert_eq!(a.spec.suspend, None);
    }
    // Then quiet: suspended by the runner, through spec.suspend, with an event that says why.
    let a = h
        .wait_within(Duration::from_secs(10), "idle suspend", |a| {
            phase(a) == Some(AgentPhase::Suspended)
        })
        .await;
    assert_eq!(a.spec.suspend, Some(true));
    let events = events_with(&h.client, &["IdleSuspended"]).await;
    assert!(
        events.contains("no session and no request for 2s"),
        "{events}"
    );
    // Resuming is the user's: the kept container starts again and idleness counts afresh.
    h.patch_spec(json!({"suspend": false})).await;
    h.wait_for("Running again", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let f = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!((f.agent_creates, f.agent_starts), (1, 1), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_deletes_the_agent_keeping_a_snapshot_only_when_asked() {
    for keep in [false, true] {
        let h = Harness::start().await;
        h.create().await;
        h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
            .await;
        h.patch_spec(json!({"lifecycle": {"ttl": "3s", "keepSnapshot": keep}}))
            .await;
        h.wait_deleted("the ttl deleted the Agent").await;
        assert_eq!(h.backend.count(), 0, "every backend resource is gone");
        let events = events_with(&h.client, &["Expired"]).await;
        assert!(
            events.contains("deleting: its ttl of 3s passed"),
            "{events}"
        );
        let kept = h.backend.kept_snapshots();
        if keep {
            assert_eq!(kept, vec!["fake-kept/default/worker".to_string()]);
            assert!(
                events.contains("kept snapshot fake-kept/default/worker"),
                "{events}"
            );
        } else {
            assert!(kept.is_empty(), "{kept:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_starts_from_its_sources_snapshot_and_waits_for_a_missing_source() {
    let h = Harness::start().await;
    h.create().await;
    h.wait_for("Running", |a| phase(a) == Some(AgentPhase::Running))
        .await;
    let fork = |name: &str, source: &str| -> Agent {
        serde_json::from_value(json!({
            "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name},
            "spec": {"bottleRef": {"name": "tools"}, "source": {"agentRef": {"name": source}}}
        }))
        .expect("agent")
    };
    let get = |name: &'static str| {
        let agents = h.agents();
        async move { agents.get_opt(name).await.ok().flatten() }
    };
    for a in [fork("copy", "worker"), fork("orphan", "nobody")] {
        h.agents()
            .create(&Default::default(), &a)
            .await
            .expect("create");
    }
    let mut copy = None;
    let mut orphan = None;
    for _ in 0..200 {
        copy = get("copy").await;
        orphan = get("orphan").await;
        if copy.as_ref().and_then(phase) == Some(AgentPhase::Running)
            && orphan
                .as_ref()
                .and_then(|a| condition(a, "Ready"))
                .is_some_and(|c| c.1 == "SourceNotFound")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = copy.expect("copy");
    assert_eq!(phase(&copy), Some(AgentPhase::Running), "{:?}", copy.status);
    assert_eq!(
        copy.status.and_then(|s| s.snapshot).as_deref(),
        Some("fake-fork/copy:from-worker")
    );
    let f = h.backend.snapshot_of("copy").expect("fake");
    assert_eq!(f.agent_image.as_deref(), Some("fake-fork/copy:from-worker"));
    // The source carries on: never stopped or recreated.
    let w = h.backend.snapshot_of("worker").expect("fake");
    assert_eq!((w.agent_creates, w.agent_stopped), (1, false), "{w:?}");
    let orphan = orphan.expect("orphan");
    assert_eq!(phase(&orphan), Some(AgentPhase::Pending));
    let (status, reason, message) = condition(&orphan, "Ready").expect("Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SourceNotFound")
    );
    assert!(message.contains("Agent 'nobody' not found"), "{message}");
    assert!(
        h.backend
            .snapshot_of("orphan")
            .is_none_or(|f| f.agent_hash.is_none())
    );
}
