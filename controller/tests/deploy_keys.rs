//! The gitea deploy-key lifecycle against a stand-in forge on 127.0.0.1: minted once when the
//! Agent starts (with the forge token, a fresh ed25519 key, delivered to the sidecar only),
//! revoked when the Agent is deleted, and every forge refusal reported instead of swallowed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb_crds::{Agent, AgentPhase, Bottle};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use support::{Harness, events_with};

const FORGE_TOKEN: &str = "gitea-token-e2e-71c4";

/// What the stand-in forge was asked, and how it answers.
#[derive(Debug, Default)]
struct Forge {
    seen: Vec<(String, String, String, String)>,
    post_status: u16,
    delete_status: u16,
}

async fn start_forge(state: Arc<Mutex<Forge>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut s = state.lock().expect("forge state");
                            s.seen.push((
                                method.clone(),
                                path,
                                auth,
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            let (status, out) = if method == "POST" {
                                (s.post_status, json!({"id": 4242, "key": "..."}).to_string())
                            } else {
                                (s.delete_status, String::new())
                            };
                            let mut resp = http::Response::new(Full::new(bytes::Bytes::from(out)));
                            *resp.status_mut() =
                                http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn apply(h: &Harness, api_url: &str) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "bot-bottle-system");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "forge-token"}, "stringData": {"token": FORGE_TOKEN}}),
    )
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let bottles: Api<Bottle> = Api::all(h.client.clone());
    let bottle: Bottle = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "tools"},
        "spec": {
            "agentProvider": {"template": "custom", "image": "agent:1", "command": ["bash"]},
            "gitGate": {"repos": {"app": {
                "url": "git@forge.lan:team/app.git",
                "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq3",
                "key": {"provider": "gitea", "apiUrl": api_url,
                        "forgeToken": {"secretKeyRef": {"name": "forge-token", "key": "token"}}}
            }}}
        }
    }))
    .expect("bottle");
    bottles
        .create(&PostParams::default(), &bottle)
        .await
        .expect("bottle");
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "worker"},
        "spec": {"bottleRef": {"name": "tools"}}
    }))
    .expect("agent");
    h.agents()
        .create(&PostParams::default(), &agent)
        .await
        .expect("agent");
}

async fn key_secrets(client: &kube::Client) -> usize {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "bot-bottle-system");
    secrets
        .list(&ListParams::default().labels("bot-bottle.dev/deploy-key-agent"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_keys_are_minted_once_and_revoked_on_delete() {
    let forge = Arc::new(Mutex::new(Forge {
        post_status: 201,
        delete_status: 204,
        ..Default::default()
    }));
    let url = start_forge(forge.clone()).await;
    let h = Harness::start().await;
    apply(&h, &url).await;
    h.wait_for("Running", |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
    })
    .await;
    {
        let f = forge.lock().expect("forge");
        let posts: Vec<_> = f.seen.iter().filter(|s| s.0 == "POST").collect();
        assert_eq!(posts.len(), 1, "{:?}", f.seen);
        let (_, path, auth, body) = posts[0];
        assert_eq!(path, "/api/v1/repos/team/app/keys");
        assert_eq!(auth, &format!("token {FORGE_TOKEN}"));
        let body: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert!(
            body["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("ssh-ed25519 ")),
            "{body}"
        );
        assert_eq!(body["read_only"], false);
    }
    // The private half reaches the sidecar's delivery, beside git-gate's config.
    let a = h.backend.snapshot_of("worker").expect("fake agent");
    let key = a
        .secret_files
        .get("git-key-app")
        .expect("the key is delivered");
    assert!(String::from_utf8_lossy(key.expose()).contains("BEGIN OPENSSH PRIVATE KEY"));
    assert!(a.secret_files.contains_key("git-gate.yaml"));
    assert_eq!(key_secrets(&h.client).await, 1);

    // Resyncs reuse the key.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        forge
            .lock()
            .expect("forge")
            .seen
            .iter()
            .filter(|s| s.0 == "POST")
            .count(),
        1,
        "a second key was minted"
    );

    h.agents()
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete");
    for _ in 0..200 {
        if h.agents().get_opt("worker").await.ok().flatten().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = forge.lock().expect("forge").seen.clone();
    assert!(
        seen.iter().any(|s| s.0 == "DELETE"
            && s.1 == "/api/v1/repos/team/app/keys/4242"
            && s.2 == format!("token {FORGE_TOKEN}")),
        "the key was not revoked: {seen:?}"
    );
    assert_eq!(
        key_secrets(&h.client).await,
        0,
        "the revoked key's Secret lingers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_refusals_are_reported() {
    let forge = Arc::new(Mutex::new(Forge {
        post_status: 401,
        delete_status: 500,
        ..Default::default()
    }));
    let url = start_forge(forge.clone()).await;
    let h = Harness::start().await;
    apply(&h, &url).await;
    // Minting refused: the Agent waits, saying why.
    let a = h
        .wait_for("DeployKeyFailed", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "DeployKeyFailed" && c.message.contains("401"))
            })
        })
        .await;
    assert_ne!(a.status.and_then(|s| s.phase), Some(AgentPhase::Running));

    // Minting works; revocation is refused: the deletion goes on, and an event says how to
    // revoke by hand.
    forge.lock().expect("forge").post_status = 201;
    // Sooner than the 30 s retry: any change to the Agent reconciles it again.
    h.agents()
        .patch(
            "worker",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"retry": "now"}}})),
        )
        .await
        .expect("patch");
    h.wait_for("Running", |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
    })
    .await;
    h.agents()
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete");
    let ev = events_with(&h.client, &["DeployKeyRevokeFailed"]).await;
    assert!(
        ev.contains("DeployKeyRevokeFailed") && ev.contains("revoke it by hand"),
        "{ev}"
    );
    assert!(ev.contains("keys/4242"), "{ev}");
}
