//! In-process apiserver checks for what kubectl does not easily show: 410 Gone in a watch,
//! the initial-events bookmark, deletecollection, owner-reference garbage collection and
//! namespace deletion. HTTP goes through the real TLS listener via `curl`.

use std::process::Command;

use serde_json::{Value, json};

use super::objects::{Registry, WriteOpts};
use super::resources;
use super::{ApiServer, METRICS_CONTENT_TYPE};
use crate::store::Store;
use bb_home::Home;
use bb_home::pki;

struct Fixture {
    _dir: tempfile::TempDir,
    server: Option<ApiServer>,
    registry: Registry,
    token: String,
    ca: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = Home::open(dir.path()).expect("home");
    let creds = pki::load_or_create(&home).expect("creds");
    let store = Store::open(&home.path("state.db")).expect("store");
    let server = ApiServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        &creds,
        store.clone(),
        std::sync::Arc::new(|| "bb_test_metric 1\n".to_string()),
        None,
    )
    .await
    .expect("start");
    let ca = home.path("ca.crt");
    Fixture {
        _dir: dir,
        server: Some(server),
        registry: Registry::new(store),
        token: creds.token,
        ca,
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.server.as_ref().map_or(0, |s| s.local_addr.port())
        )
    }

    /// Runs curl (verifying TLS against the control plane's CA) and returns (status, body).
    async fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.arg("-s")
            .arg("--cacert")
            .arg(&self.ca)
            .args(["-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token))
            .args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

fn agent(name: &str) -> Value {
    json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "labels": {"n": name}}, "spec": {"bottleRef": {"name": "b"}}})
}

#[tokio::test]
async fn watch_from_a_compacted_revision_gets_410_in_stream() {
    let f = fixture().await;
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    for i in 0..5 {
        f.registry
            .create(
                agents,
                Some("default"),
                agent(&format!("a{i}")),
                &WriteOpts::default(),
            )
            .expect("create");
    }
    let rev = f.registry.store.revision().expect("rev");
    f.registry.store.compact(rev - 1).expect("compact");
    let (code, body) = f.curl(&[&f.url("/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents?watch=1&resourceVersion=1&timeoutSeconds=2")]).await;
    assert_eq!(code, 200);
    let ev: Value = serde_json::from_str(body.lines().next().unwrap_or("")).expect("event");
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
}

#[tokio::test]
async fn send_initial_events_ends_with_a_bookmark() {
    let f = fixture().await;
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    for i in 0..3 {
        f.registry
            .create(
                agents,
                Some("default"),
                agent(&format!("a{i}")),
                &WriteOpts::default(),
            )
            .expect("create");
    }
    let (code, body) = f
        .curl(&[&f.url("/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1&labelSelector=n!%3Da1")])
        .await;
    assert_eq!(code, 200);
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, vec!["ADDED", "ADDED", "BOOKMARK"], "{body}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn deletecollection_honours_selectors() {
    let f = fixture().await;
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    for i in 0..4 {
        f.registry
            .create(
                agents,
                Some("default"),
                agent(&format!("a{i}")),
                &WriteOpts::default(),
            )
            .expect("create");
    }
    let (code, body) = f.curl(&["-X", "DELETE", &f.url("/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents?labelSelector=n+in+(a1,a2)")]).await;
    assert_eq!(code, 200, "{body}");
    let (left, _, _) = f
        .registry
        .list(
            agents,
            Some("default"),
            &Default::default(),
            &Default::default(),
            0,
            None,
        )
        .expect("list");
    let names: Vec<&str> = left
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, vec!["a0", "a3"]);
}

#[tokio::test]
async fn owners_take_their_dependents_with_them_unless_orphaned() {
    let f = fixture().await;
    let bottles = resources::find("bot-bottle.dev", "v1alpha1", "bottles").expect("bottles");
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    let owner = f
        .registry
        .create(bottles, None, json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "b"}, "spec": {}}), &WriteOpts::default())
        .expect("owner");
    let uid = owner
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .expect("uid")
        .to_string();
    for (name, ns) in [("owned", "default"), ("kept", "default")] {
        let mut a = agent(name);
        if name == "owned" {
            a["metadata"]["ownerReferences"] = json!([{"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "name": "b", "uid": uid}]);
        }
        f.registry
            .create(agents, Some(ns), a, &WriteOpts::default())
            .expect("create");
    }
    f.registry
        .delete(bottles, None, "b", &json!({}), false)
        .expect("delete owner");
    assert!(
        f.registry.get(agents, Some("default"), "owned").is_err(),
        "dependent collected"
    );
    assert!(f.registry.get(agents, Some("default"), "kept").is_ok());

    // Orphan: the dependent stays and loses the reference.
    let owner = f
        .registry
        .create(bottles, None, json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "b2"}, "spec": {}}), &WriteOpts::default())
        .expect("owner");
    let uid = owner
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .expect("uid")
        .to_string();
    let mut a = agent("orphan");
    a["metadata"]["ownerReferences"] = json!([{"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "name": "b2", "uid": uid}]);
    f.registry
        .create(agents, Some("default"), a, &WriteOpts::default())
        .expect("create");
    f.registry
        .delete(
            bottles,
            None,
            "b2",
            &json!({"propagationPolicy": "Orphan"}),
            false,
        )
        .expect("delete");
    let left = f
        .registry
        .get(agents, Some("default"), "orphan")
        .expect("orphan stays");
    assert_eq!(
        left.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(0)
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_is_in_it_and_creating_into_a_missing_one_is_404() {
    let mut f = fixture().await;
    let ns = resources::find("", "v1", "namespaces").expect("ns");
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    f.registry
        .create(
            ns,
            None,
            json!({"metadata": {"name": "team"}}),
            &WriteOpts::default(),
        )
        .expect("ns");
    f.registry
        .create(agents, Some("team"), agent("a"), &WriteOpts::default())
        .expect("agent");
    f.registry
        .delete(ns, None, "team", &json!({}), false)
        .expect("delete ns");
    assert!(f.registry.get(agents, Some("team"), "a").is_err());
    let err = f
        .registry
        .create(agents, Some("team"), agent("a"), &WriteOpts::default())
        .expect_err("no namespace");
    assert_eq!(err.code, 404);
    if let Some(s) = f.server.take() {
        s.shutdown().await;
    }
}

/// `/metrics` serves whatever source the server was given (it imports no metrics of its own),
/// behind the token like every non-public path.
#[tokio::test]
async fn metrics_come_from_the_injected_source() {
    let f = fixture().await;
    let (code, body) = f.curl(&[&f.url("/metrics")]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "bb_test_metric 1\n");
    let (_, head) = f.curl(&["-i", &f.url("/metrics")]).await;
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {METRICS_CONTENT_TYPE}\r\n")),
        "{head}"
    );
    let mut anonymous = Command::new("curl");
    anonymous
        .args([
            "-s",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&f.ca)
        .arg(f.url("/metrics"));
    let out = tokio::task::spawn_blocking(move || anonymous.output())
        .await
        .expect("join")
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

/// A kind's own admission rules run through its strategy: a Bottle whose spec passes the schema
/// but breaks a rule (`extends` must name a Bottle) is refused with the field named.
#[tokio::test]
async fn bottle_rules_are_admission() {
    let f = fixture().await;
    let bottle = json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle",
        "metadata": {"name": "b"}, "spec": {"extends": "Not_A_Name"}});
    let (code, body) = f
        .curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &bottle.to_string(),
            &f.url("/apis/bot-bottle.dev/v1alpha1/bottles"),
        ])
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("spec.extends"), "{body}");
}

/// Every served kind, created and replaced with an arbitrary JSON value in each metadata
/// field and in `spec`, `status` and a made-up field: always an answer with a 4xx status (or
/// success), never a panic. (schemathesis found `metadata: []` killing the request's task.)
#[tokio::test]
async fn arbitrary_json_anywhere_gets_a_status_never_a_panic() {
    let f = fixture().await;
    let values = [
        json!([]),
        json!("text"),
        json!(7),
        json!(-1.5),
        json!(true),
        json!(null),
        json!({}),
        json!([1, "a", null]),
        json!({"a": [{}], "b": {"c": 1}}),
    ];
    let positions: &[&[&str]] = &[
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "labels"],
        &["metadata", "annotations"],
        &["metadata", "finalizers"],
        &["metadata", "ownerReferences"],
        &["metadata", "managedFields"],
        &["metadata", "generation"],
        &["metadata", "resourceVersion"],
        &["metadata", "generateName"],
        &["metadata", "uid"],
        &["spec"],
        &["status"],
        &["data"],
        &["x-unknown"],
    ];
    let mut answers = 0;
    for res in resources::all() {
        let ns = res.namespaced.then_some("default");
        for pos in positions {
            for v in &values {
                let mut obj = json!({"apiVersion": res.api_version(), "kind": res.kind,
                    "metadata": {"name": "fuzzed"}});
                let mut at = &mut obj;
                for (i, key) in pos.iter().enumerate() {
                    if i + 1 == pos.len() {
                        at[*key] = v.clone();
                    } else {
                        at = &mut at[*key];
                    }
                }
                let opts = WriteOpts::default();
                for result in [
                    f.registry.create(res, ns, obj.clone(), &opts),
                    f.registry.update(res, ns, "fuzzed", obj.clone(), &opts),
                ] {
                    if let Err(e) = result {
                        assert!(
                            (400..500).contains(&e.code),
                            "{} {pos:?} = {v}: {} {}",
                            res.plural,
                            e.code,
                            e.message
                        );
                    }
                    answers += 1;
                }
                let _ = f.registry.delete(res, ns, "fuzzed", &json!({}), false);
            }
        }
    }
    assert_eq!(answers, resources::all().len() * 16 * 9 * 2);
}

/// A write with a stale resourceVersion is a conflict even when it would change nothing: two
/// writers that each removed the same item from a status must not both be told they did (the
/// warm pool's claims rely on it).
#[tokio::test]
async fn a_stale_resource_version_conflicts_even_when_nothing_would_change() {
    let f = fixture().await;
    let agents = resources::find("bot-bottle.dev", "v1alpha1", "agents").expect("agents");
    let created = f
        .registry
        .create(agents, Some("default"), agent("a"), &WriteOpts::default())
        .expect("create");
    let status_write = WriteOpts {
        subresource: Some("status".into()),
        ..Default::default()
    };
    let mut first = created.clone();
    first["status"] = json!({"message": "taken"});
    f.registry
        .update(agents, Some("default"), "a", first.clone(), &status_write)
        .expect("the first write lands");
    // The same change from the same, now stale, copy: the content would be identical.
    let second = f
        .registry
        .update(agents, Some("default"), "a", first, &status_write)
        .expect_err("a stale copy's write must conflict");
    assert_eq!(second.code, 409, "{second:?}");
    // With the current resourceVersion the same no-op write succeeds.
    let current = f.registry.get(agents, Some("default"), "a").expect("get");
    f.registry
        .update(agents, Some("default"), "a", current, &status_write)
        .expect("a current copy's no-op write");
}
