//! The local control plane as kubectl sees it: apply, get, describe, patch, server-side apply,
//! watch, finalizers, explain, admission errors, auth and durability across kill -9.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{ControlPlane, path_str, repo};

#[test]
fn apply_get_describe_and_update_with_kubectl() {
    let cp = ControlPlane::start();
    let crds = repo().join("charts/bot-bottle/crds");
    for _ in 0..2 {
        // Applying the chart's CRDs is accepted and idempotent.
        cp.ok(&["apply", "-f", path_str(&crds)]);
    }
    let out = cp.ok(&["apply", "-f", path_str(&repo().join("examples/bottles"))]);
    assert!(
        out.contains("bottle.bot-bottle.dev/gitea-dev created"),
        "{out}"
    );
    let out = cp.ok(&["apply", "-f", path_str(&repo().join("examples/agents"))]);
    assert!(
        out.contains("agent.bot-bottle.dev/reviewer created"),
        "{out}"
    );
    let out = cp.ok(&["apply", "-f", path_str(&repo().join("examples/agents"))]);
    assert!(
        out.contains("agent.bot-bottle.dev/reviewer unchanged"),
        "{out}"
    );

    let table = cp.ok(&["get", "agents", "-A"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        vec!["NAMESPACE", "NAME", "BOTTLE", "BACKEND", "PHASE", "AGE"]
    );
    assert!(
        table.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["default", "reviewer", "codex"])),
        "{table}"
    );
    let bottles = cp.ok(&["get", "bt", "-o", "name"]);
    assert_eq!(
        bottles,
        "bottle.bot-bottle.dev/claude\nbottle.bot-bottle.dev/codex\nbottle.bot-bottle.dev/gitea-dev\nbottle.bot-bottle.dev/pi-openrouter\n"
    );

    // The Bottle reconciler runs in the control plane: resolved provider, routes (its own
    // four and the claude provider's) and Ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut row = String::new();
    while Instant::now() < deadline {
        row = cp.ok(&["get", "bottle", "gitea-dev", "--no-headers"]);
        if row.split_whitespace().nth(3) == Some("True") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols.get(..4),
        Some(&["gitea-dev", "claude", "5", "True"][..]),
        "{row}"
    );
    let chain = cp.ok(&[
        "get",
        "bottle",
        "gitea-dev",
        "-o",
        "jsonpath={.status.chain}",
    ]);
    assert_eq!(chain, r#"["claude","gitea-dev"]"#);
    let orphan = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: orphan}\nspec: {extends: nope}\n";
    let (code, _, err) = cp.kubectl_stdin(&["apply", "-f", "-"], orphan);
    assert_eq!(
        code, 0,
        "a missing parent is a status, not an admission error: {err}"
    );
    let ready = r#"jsonpath={.status.conditions[?(@.type=="Ready")].reason}: {.status.message}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = String::new();
    while Instant::now() < deadline && !got.starts_with("ParentNotFound") {
        got = cp.ok(&["get", "bottle", "orphan", "-o", ready]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        got.starts_with(
            "ParentNotFound: spec.extends: bottle 'orphan' extends 'nope' which is not defined"
        ),
        "{got}"
    );

    let edited = std::fs::read_to_string(repo().join("examples/agents/reviewer.yaml"))
        .expect("example")
        .replace("label: reviewer", "label: reviewer-2");
    let (code, out, err) = cp.kubectl_stdin(&["apply", "-f", "-"], &edited);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configured"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&cp.ok(&["get", "agent", "reviewer", "-o", "json"])).expect("json");
    assert_eq!(json["spec"]["label"], "reviewer-2");
    assert_eq!(json["metadata"]["generation"], 2);
    assert!(
        json["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    let yaml = cp.ok(&["get", "agent", "reviewer", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Agent") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );

    let described = cp.ok(&["describe", "agent", "reviewer"]);
    assert!(
        described.contains("Bottle Ref:") && described.contains("reviewer-2"),
        "{described}"
    );

    // Labels and selectors.
    cp.ok(&["label", "agent", "reviewer", "team=infra"]);
    assert_eq!(
        cp.ok(&["get", "agents", "-l", "team=infra", "-o", "name"]),
        "agent.bot-bottle.dev/reviewer\n"
    );
    assert_eq!(
        cp.ok(&["get", "agents", "-l", "team notin (infra)", "-o", "name"]),
        "agent.bot-bottle.dev/issue-42\n"
    );
    assert_eq!(
        cp.ok(&[
            "get",
            "agents",
            "--field-selector",
            "metadata.name=issue-42",
            "-o",
            "name"
        ]),
        "agent.bot-bottle.dev/issue-42\n"
    );

    let out = cp.ok(&["delete", "-f", path_str(&repo().join("examples/agents"))]);
    assert!(out.contains("\"reviewer\" deleted"), "{out}");
    assert_eq!(cp.ok(&["get", "agents", "-A", "-o", "name"]), "");
}

#[test]
fn patches_generation_dry_run_and_generate_name() {
    let cp = ControlPlane::start();
    cp.ok(&[
        "apply",
        "-f",
        path_str(&repo().join("examples/bottles/codex.yaml")),
    ]);
    cp.ok(&[
        "apply",
        "-f",
        path_str(&repo().join("examples/agents/reviewer.yaml")),
    ]);
    cp.ok(&[
        "patch",
        "agent",
        "reviewer",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
    cp.ok(&[
        "patch",
        "agent",
        "reviewer",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/label","value":"jp"}]"#,
    ]);
    // Metadata-only changes do not bump the generation.
    cp.ok(&["annotate", "agent", "reviewer", "note=x"]);
    let got = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "-o",
        "jsonpath={.spec.color} {.spec.label} {.metadata.generation}",
    ]);
    assert_eq!(got, "red jp 3");
    let (code, _, err) = cp.kubectl(&[
        "patch",
        "agent",
        "reviewer",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"color":"blue"}}"#,
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("strategic merge patch is not supported for custom resources"),
        "{err}"
    );

    let generated = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {generateName: scratch-}\nspec: {bottleRef: {name: codex}}\n";
    let (code, out, err) = cp.kubectl_stdin(&["create", "-f", "-", "-o", "name"], generated);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("agent.bot-bottle.dev/scratch-")
            && out.trim().len() > "agent.bot-bottle.dev/scratch-".len(),
        "{out}"
    );
    let (code, out, err) = cp.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-", "-o", "name"],
        &generated.replace("generateName: scratch-", "name: dry"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "agent.bot-bottle.dev/dry\n");
    let (code, _, _) = cp.kubectl(&["get", "agent", "dry"]);
    assert_ne!(code, 0, "a server dry run stores nothing");
}

#[test]
fn server_side_apply_conflicts_and_force() {
    let cp = ControlPlane::start();
    let agent =
        std::fs::read_to_string(repo().join("examples/agents/reviewer.yaml")).expect("example");
    let (code, out, err) = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &agent);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("serverside-applied"), "{out}");
    let other = agent.replace("label: reviewer", "label: taken");
    let (code, _, err) = cp.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            "-",
        ],
        &other,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".spec.label"),
        "{err}"
    );
    let (code, _, err) = cp.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &other,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        cp.ok(&["get", "agent", "reviewer", "-o", "jsonpath={.spec.label}"]),
        "taken"
    );
    let managers = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "kubectl other");

    // A field stays while any manager still applies it, and goes with the last one.
    let fewer = other.replace("  color: blue\n", "");
    let (code, _, err) = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &fewer);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        cp.ok(&["get", "agent", "reviewer", "-o", "jsonpath={.spec.color}"]),
        "blue",
        "co-owned by other"
    );
    let (code, _, err) = cp.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            "-",
        ],
        &fewer,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        cp.ok(&["get", "agent", "reviewer", "-o", "jsonpath={.spec.color}"]),
        ""
    );
}

#[test]
fn finalizers_hold_deletion_and_watch_sees_it_go() {
    let cp = ControlPlane::start();
    cp.ok(&[
        "apply",
        "-f",
        path_str(&repo().join("examples/agents/reviewer.yaml")),
    ]);
    cp.ok(&[
        "patch",
        "agent",
        "reviewer",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["bot-bottle.dev/cleanup"]}}"#,
    ]);
    let mut watcher = support::KillOnDrop(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .args([
                "get",
                "agent",
                "reviewer",
                "-w",
                "--output-watch-events",
                "-o",
                "jsonpath={.type} {.object.metadata.deletionTimestamp}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl -w"),
    );
    let stdout = watcher.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("initial event");
    assert_eq!(first.trim(), "ADDED");

    cp.ok(&["delete", "agent", "reviewer", "--wait=false"]);
    let held = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        !held.is_empty(),
        "a finalizer holds the object with a deletionTimestamp"
    );
    cp.ok(&[
        "patch",
        "agent",
        "reviewer",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let (code, _, err) = cp.kubectl(&["get", "agent", "reviewer"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l: &String| l.starts_with("DELETED")) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    drop(watcher);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("MODIFIED ") && l.len() > "MODIFIED ".len()),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with("DELETED")), "{seen:?}");
}

#[test]
fn explain_admission_errors_and_auth() {
    let cp = ControlPlane::start();
    let explained = cp.ok(&["explain", "agent.spec.bottleRef"]);
    assert!(
        explained.contains("KIND:       Agent")
            && explained.contains("name")
            && explained.contains("-required-"),
        "{explained}"
    );
    let bad = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: bad}\nspec:\n  egress: {log: 7, routes: [{host: A.com, auth: {scheme: basic}}]}\n";
    let (code, _, err) = cp.kubectl_stdin(&["apply", "-f", "-"], bad);
    assert_ne!(code, 0);
    assert!(err.contains("The Bottle \"bad\" is invalid"), "{err}");
    assert!(
        err.contains("spec.egress.log: must be less than or equal to 2"),
        "{err}"
    );
    assert!(
        err.contains("spec.egress.routes[0].auth.scheme: unsupported value \"basic\""),
        "{err}"
    );
    let unknown = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: bad}\nspec: {egress: {routes: [{host: a.com, sneaky: 1}]}}\n";
    let (code, _, err) = cp.kubectl_stdin(&["apply", "-f", "-"], unknown);
    assert_ne!(code, 0);
    assert!(
        err.contains("spec.egress.routes[0].sneaky: unknown field"),
        "{err}"
    );
    let (code, _, _) = cp.kubectl(&["get", "bottle", "bad"]);
    assert_ne!(code, 0, "nothing of an invalid object is stored");

    // Wrong token: 401 for kubectl, and no data.
    let kc = std::fs::read_to_string(cp.kubeconfig())
        .expect("kubeconfig")
        .replace(&cp.token(), "not-the-token");
    let bad_kc = cp.home.path().join("bad-kubeconfig");
    std::fs::write(&bad_kc, kc).expect("write");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&bad_kc)
        .args(["get", "agents"])
        .output()
        .expect("kubectl");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A second control plane on the same home is refused.
    let second = Command::new(env!("CARGO_BIN_EXE_bbctl"))
        .args(["controller", "run", "--listen", "127.0.0.1:0", "--home"])
        .arg(cp.home.path())
        .output()
        .expect("second");
    assert_eq!(second.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another control plane is already running")
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut cp = ControlPlane::start();
    cp.ok(&["apply", "-f", path_str(&repo().join("examples/bottles"))]);
    let mut docs = String::new();
    for i in 0..50 {
        docs.push_str(&format!(
            "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: a{i}, labels: {{n: \"{i}\"}}}}\nspec: {{bottleRef: {{name: claude}}}}\n"
        ));
    }
    let (code, _, err) = cp.kubectl_stdin(&["create", "-f", "-"], &docs);
    assert_eq!(code, 0, "{err}");
    let before = cp.ok(&[
        "get",
        "--raw",
        "/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents",
    ]);
    let rv_before: serde_json::Value = serde_json::from_str(&before).expect("json");
    let list_rv = rv_before["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    cp.kill9();
    cp.spawn();
    let after: serde_json::Value = serde_json::from_str(&cp.ok(&[
        "get",
        "--raw",
        "/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents",
    ]))
    .expect("json");
    assert_eq!(after["items"].as_array().map(Vec::len), Some(50));
    assert_eq!(
        after["items"], rv_before["items"],
        "every acknowledged write is back, unchanged"
    );
    // Watching from before the crash resumes from the stored history: every Agent written
    // after that version comes back (other kinds, such as Bottle status, share the counter, so
    // the count is of the Agents past it, not of the versions).
    let start = list_rv.parse::<i64>().expect("int") - 5;
    let expected = after["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|a| {
                    a["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse::<i64>().ok())
                        .is_some_and(|v| v > start)
                })
                .count()
        })
        .unwrap_or_default();
    assert!(
        expected >= 1,
        "no Agent was written in the last five versions"
    );
    let raw = cp.ok(&["get", "--raw", &format!("/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents?watch=true&resourceVersion={start}&timeoutSeconds=1")]);
    assert_eq!(raw.lines().count(), expected, "{raw}");
    assert!(
        raw.lines().all(|l| l.contains("\"type\":\"ADDED\"")),
        "{raw}"
    );
}

#[test]
fn raw_http_errors_are_statuses() {
    let cp = ControlPlane::start();
    let token = cp.token();
    let curl = |args: &[&str]| -> (String, String) {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/stderr", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(args)
            .output()
            .expect("curl");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let agents = format!(
        "{}/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents",
        cp.url
    );
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{not json",
        &agents,
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/xml",
        "-d",
        "<a/>",
        &agents,
    ]);
    assert_eq!(code, "415");
    let big = cp.home.path().join("big.json");
    std::fs::write(&big, vec![b' '; 4 * 1024 * 1024]).expect("write");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
        &agents,
    ]);
    assert_eq!(code, "413", "{body}");
    let (code, _) = curl(&[&format!("{}/apis/bot-bottle.dev/v1alpha1/widgets", cp.url)]);
    assert_eq!(code, "404");
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"apiVersion":"bot-bottle.dev/v1alpha1","kind":"Agent","metadata":{"name":"x","resourceVersion":"1"},"spec":{"bottleRef":{"name":"b"}}}"#,
        &format!("{agents}/x"),
    ]);
    assert_eq!(code, "404", "{body}");
    let old = format!("{agents}?watch=true&resourceVersion=1&timeoutSeconds=1");
    cp.ok(&["apply", "-f", path_str(&repo().join("examples/bottles"))]);
    let (code, body) = curl(&[&old]);
    assert_eq!(code, "200", "{body}");
}

/// kubectl sends core kinds as protobuf (`Content-Type: application/vnd.kubernetes.protobuf`):
/// creating a Secret, a Namespace or a ConfigMap must work exactly as against a real cluster.
#[test]
fn kubectl_create_verbs_send_protobuf_and_are_understood() {
    let cp = ControlPlane::start();
    let files = tempfile::tempdir().expect("tempdir");
    let key = files.path().join("id_ed25519");
    std::fs::write(&key, b"-----BEGIN KEY-----\n\x00\x01binary\n").expect("write");
    let conf = files.path().join("settings.toml");
    std::fs::write(&conf, "model = \"m\"\n").expect("write");

    // -v=8 shows what went over the wire: the suite is about protobuf, so prove it was used.
    let (code, out, err) = cp.kubectl(&["create", "namespace", "team-a", "-v=8"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf; this test would prove nothing:\n{err}"
    );
    assert!(out.contains("namespace/team-a created"), "{out}");
    let out = cp.ok(&[
        "-n",
        "team-a",
        "create",
        "secret",
        "generic",
        "tok",
        "--from-literal=token=s3cr3t",
        &format!("--from-file=ssh-key={}", path_str(&key)),
    ]);
    assert!(out.contains("secret/tok created"), "{out}");
    let out = cp.ok(&[
        "-n",
        "team-a",
        "create",
        "configmap",
        "cfg",
        &format!("--from-file={}", path_str(&conf)),
        "--from-literal=label=dev",
    ]);
    assert!(out.contains("configmap/cfg created"), "{out}");

    // Stored as a JSON client would have sent them: bytes intact, no Go zero values.
    let yaml = cp.ok(&["-n", "team-a", "get", "secret", "tok", "-o", "yaml"]);
    assert!(yaml.contains("token: czNjcjN0"), "{yaml}");
    assert!(yaml.contains("type: Opaque"), "{yaml}");
    assert!(!yaml.contains("generateName"), "{yaml}");
    let key_b64 = cp.ok(&[
        "-n",
        "team-a",
        "get",
        "secret",
        "tok",
        "-o",
        "jsonpath={.data.ssh-key}",
    ]);
    assert_eq!(key_b64, "LS0tLS1CRUdJTiBLRVktLS0tLQoAAWJpbmFyeQo=");
    let cm = cp.ok(&["-n", "team-a", "get", "configmap", "cfg", "-o", "yaml"]);
    assert!(
        cm.contains("settings.toml: |")
            && cm.contains("model = \"m\"")
            && cm.contains("label: dev"),
        "{cm}"
    );
    let table = cp.ok(&["-n", "team-a", "get", "cm", "cfg"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().take(2).eq(["cfg", "2"])),
        "{table}"
    );
    let ns = cp.ok(&[
        "get",
        "namespace",
        "team-a",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(ns, "Active");

    // Answered in protobuf when that is all the client accepts; 406 for kinds without a form.
    let token = cp.token();
    let raw = |accept: &str, path: &str| {
        Command::new("curl")
            .args(["-sk", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args([
                "-H",
                &format!("Accept: {accept}"),
                "-w",
                "\n%{http_code} %{content_type}",
            ])
            .arg(format!("{}{path}", cp.url))
            .output()
            .expect("curl")
            .stdout
    };
    let pb = raw(
        "application/vnd.kubernetes.protobuf",
        "/api/v1/namespaces/team-a/secrets/tok",
    );
    assert!(pb.starts_with(b"k8s\0"), "{}", String::from_utf8_lossy(&pb));
    assert!(
        pb.windows(6).any(|w| w == b"s3cr3t")
            && pb.ends_with(b"200 application/vnd.kubernetes.protobuf"),
        "{}",
        String::from_utf8_lossy(&pb)
    );
    let missing = raw(
        "application/vnd.kubernetes.protobuf",
        "/api/v1/namespaces/team-a/secrets/nope",
    );
    assert!(
        missing.starts_with(b"k8s\0")
            && missing.ends_with(b"404 application/vnd.kubernetes.protobuf"),
        "a Status in protobuf: {}",
        String::from_utf8_lossy(&missing)
    );
    let crd = raw(
        "application/vnd.kubernetes.protobuf",
        "/apis/bot-bottle.dev/v1alpha1/bottles",
    );
    assert!(
        String::from_utf8_lossy(&crd).ends_with("406 application/json"),
        "{}",
        String::from_utf8_lossy(&crd)
    );

    for args in [
        ["-n", "team-a", "delete", "secret", "tok"],
        ["-n", "team-a", "delete", "configmap", "cfg"],
    ] {
        cp.ok(&args);
    }
    let out = cp.ok(&["delete", "namespace", "team-a"]);
    assert!(out.contains("namespace \"team-a\" deleted"), "{out}");
    let (code, _, err) = cp.kubectl(&["-n", "team-a", "get", "secret", "tok"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

/// Every OpenAPI v3 document the server publishes is valid OpenAPI 3.0 to an independent
/// validator (openapi-spec-validator from PyPI), so standard tooling can read it.
#[test]
fn openapi_documents_validate_as_openapi_3() {
    let cp = ControlPlane::start();
    let index: serde_json::Value =
        serde_json::from_str(&cp.ok(&["get", "--raw", "/openapi/v3"])).expect("index is JSON");
    let docs: Vec<String> = index["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p["serverRelativeURL"].as_str().expect("url").to_string())
        .collect();
    assert!(
        docs.iter().any(|d| d.contains("bot-bottle.dev/v1alpha1")) && docs.len() >= 4,
        "{docs:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, url) in docs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, cp.ok(&["get", "--raw", url])).expect("write");
        files.push((url.clone(), path));
    }
    let script = r#"
import json, sys
from openapi_spec_validator import OpenAPIV30SpecValidator
bad = 0
for url, path in zip(sys.argv[1::2], sys.argv[2::2]):
    doc = json.load(open(path))
    ops = sum(1 for item in doc["paths"].values() for k in item if k in ("get", "put", "post", "patch", "delete"))
    errors = list(OpenAPIV30SpecValidator(doc).iter_errors())
    print(f"{url}: {ops} operations, {len(errors)} errors")
    for e in errors[:10]:
        print("   ", str(e).splitlines()[0])
    bad += len(errors)
sys.exit(1 if bad else 0)
"#;
    let mut cmd = support::python_with("openapi_spec_validator", "openapi-spec-validator");
    cmd.arg("-c").arg(script);
    for (url, path) in &files {
        cmd.arg(url).arg(path);
    }
    let out = cmd.output().expect("python3");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "invalid OpenAPI:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("bot-bottle.dev/v1alpha1") && report.contains("27 operations"),
        "{report}"
    );
}

/// Leases (`coordination.k8s.io/v1`), what cluster-mode runners heartbeat and claim with:
/// created, listed with their holder, renewed with optimistic concurrency, and checked.
#[test]
fn leases_are_served_with_optimistic_concurrency() {
    let cp = ControlPlane::start();
    let lease = |holder: &str, rv: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: runner-a, namespace: default{rv}}}\nspec: {{holderIdentity: {holder}, leaseDurationSeconds: 15, renewTime: \"2026-01-02T03:04:05.000000Z\"}}\n"
        )
    };
    let (code, out, err) = cp.kubectl_stdin(&["create", "-f", "-"], &lease("runner-a", ""));
    assert_eq!(code, 0, "{out}{err}");
    let table = cp.ok(&["get", "leases", "-n", "default"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "HOLDER", "AGE"], "{table}");
    assert!(table.contains("runner-a   runner-a"), "{table}");
    let rv = cp.ok(&[
        "get",
        "lease",
        "runner-a",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    // A renewal carrying the version read wins; a second one carrying the same version loses,
    // which is how two runners claiming at once learn which one holds it.
    let at = |rv: &str| format!(", resourceVersion: \"{rv}\"");
    let (code, _, err) = cp.kubectl_stdin(&["replace", "-f", "-"], &lease("runner-b", &at(&rv)));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cp.kubectl_stdin(&["replace", "-f", "-"], &lease("runner-c", &at(&rv)));
    assert_ne!(code, 0);
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(
        cp.ok(&[
            "get",
            "lease",
            "runner-a",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.holderIdentity}"
        ]),
        "runner-b"
    );
    let (code, _, err) = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: bad, namespace: default}\nspec: {leaseDurationSeconds: -1}\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("spec.leaseDurationSeconds"), "{err}");
}

/// The runner's heartbeat: its Lease in bot-bottle-system names it, is renewed while it runs,
/// and is released when it stops (a restarted runner acquires a new one).
#[test]
fn the_runner_holds_a_heartbeat_lease() {
    let mut cp = ControlPlane::start_fixed_port();
    let id = std::fs::read_to_string(cp.home.path().join("instance-id")).expect("instance-id");
    let id = id.trim();
    let name = format!("runner-{id}");
    let field = |cp: &ControlPlane, path: &str| {
        let (_, out, _) = cp.kubectl(&[
            "get",
            "lease",
            &name,
            "-n",
            "bot-bottle-system",
            "-o",
            &format!("jsonpath={path}"),
        ]);
        out
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while field(&cp, "{.spec.holderIdentity}") != id {
        assert!(
            std::time::Instant::now() < deadline,
            "no runner Lease named {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(field(&cp, "{.spec.leaseDurationSeconds}"), "15");
    assert_eq!(field(&cp, "{.metadata.labels.bot-bottle\\.dev/runner}"), id);
    let acquired = field(&cp, "{.spec.acquireTime}");
    let first = field(&cp, "{.spec.renewTime}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    while field(&cp, "{.spec.renewTime}") == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the Lease was not renewed"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(
        field(&cp, "{.spec.acquireTime}"),
        acquired,
        "a renewal re-acquired"
    );
    cp.stop();
    cp.spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = field(&cp, "{.spec.acquireTime}");
        if !now.is_empty() && now != acquired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped runner did not release its Lease (acquireTime still {acquired})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
