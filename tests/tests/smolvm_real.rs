//! Against the real `smolvm` CLI (with Docker for the sidecars): the reference's integration
//! assertions, checked through `smolvm machine exec`. It is compiled as ignored where smolvm is
//! not on PATH (`tests/build.rs`), so cargo reports it as not run there, never as passed. The
//! test's "internet" is an HTTPS server it starts on the bottle's egress network.

use std::process::Command;
use std::time::Duration;

use bb_e2e::{
    Cleanup, Controller, UPSTREAM_PY, docker, ensure_base_image, networks_with, ok, run, test_pki,
    workspace_root,
};

const TOKEN: &str = "e2e-Real-Smol-T0ken-9c8b7a6d5e4f";
const READY_LIMIT: Duration = Duration::from_secs(1800);

fn in_vm(vm: &str, script: &str) -> (bool, String) {
    let out = run(Command::new("smolvm").args([
        "machine",
        "exec",
        "--name",
        vm,
        "--",
        "setpriv",
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        "--",
        "sh",
        "-lc",
        script,
    ]));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[cfg_attr(
    not(bb_smolvm),
    ignore = "smolvm is not on PATH: not run (install it, with Docker running, and run it)"
)]
fn real_smolvm_holds() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.example.test", "other.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let cp = Controller::start(&[
        "--backend",
        "smolvm",
        "--upstream-ca",
        &ca_path.display().to_string(),
        "--resync-seconds",
        "2",
    ]);
    let agent_label = "bot-bottle.dev/agent=default/real-smol";
    let _cleanup = Cleanup(agent_label.to_string());
    cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: real-smol-token, namespace: bot-bottle-system}}
stringData: {{token: {TOKEN}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: real-smol}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash, -l]}}
  egress:
    routes:
      - host: api.example.test
        auth: {{scheme: Bearer, secretKeyRef: {{name: real-smol-token, key: token}}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: real-smol, namespace: default}}
spec:
  bottleRef: {{name: real-smol}}
  backend: smolvm
"#,
        dockerfile = workspace_root()
            .join("images/test-agent/Dockerfile")
            .display()
    ));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "real-smol"], "{.status.phase}") == "Running"
    });
    let egress = bb_e2e::harness::one(
        networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let upstream = bb_e2e::start_upstream(
        "bb-e2e-upstream-real-smol",
        &egress,
        &["api.example.test", "other.example.test"],
        UPSTREAM_PY,
        (&cert, &key),
    );
    let records = cp.home.path().join("smolvm").join("records");
    let record: serde_json::Value = std::fs::read_dir(&records)
        .expect("records")
        .filter_map(Result::ok)
        .find_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .expect("the Agent's record");
    let alias = record["alias"].as_str().expect("alias").to_string();
    let sidecar = ok(&mut docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label={agent_label}"),
    ]));
    assert!(!sidecar.trim().is_empty(), "the sidecar runs");
    let vm = format!(
        "bb-default-real-smol-{}-agent",
        record["uid"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect::<String>()
    );

    // The proxy env points at the sidecar's alias.
    let (_, env) = in_vm(&vm, "echo \"$HTTPS_PROXY\"");
    assert_eq!(env.trim(), format!("http://{alias}:3128"));
    // An allowed host works, with the token injected.
    cp.wait_for("the allowed host", Duration::from_secs(60), || {
        in_vm(&vm, "curl -sS -m 5 https://api.example.test/hello").0
    });
    assert!(
        ok(&mut docker(&["logs", &upstream.name])).contains(&format!("Bearer {TOKEN}")),
        "the token was not injected"
    );
    // Direct egress fails with the proxy env unset, and no name resolves.
    let (direct, out) = in_vm(
        &vm,
        "unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; curl -sS -k -m 5 https://api.example.test/",
    );
    assert!(!direct, "direct egress worked: {out}");
    let (resolved, out) = in_vm(&vm, "getent hosts api.example.test");
    assert!(!resolved, "a name resolved in the guest: {out}");
    // By address, no name to resolve: the upstream answers the host at that address (the
    // control), and the guest's request neither succeeds nor reaches it.
    let ip = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &upstream.name,
    ]))
    .trim()
    .to_string();
    let resolve = format!("api.example.test:443:{ip}");
    let control = run(std::process::Command::new("curl").args([
        "-sk",
        "-m",
        "5",
        "--resolve",
        &resolve,
        "https://api.example.test/direct-control",
    ]));
    assert!(
        String::from_utf8_lossy(&control.stdout).contains("hello from upstream"),
        "the upstream does not answer at {ip} even from the host"
    );
    let (direct, out) = in_vm(
        &vm,
        &format!(
            "unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; curl -sS -k -m 5 --resolve {resolve} https://api.example.test/direct-by-address"
        ),
    );
    assert!(!direct, "direct egress by address worked: {out}");
    assert!(
        !ok(&mut docker(&["logs", &upstream.name])).contains("/direct-by-address"),
        "a direct request by address reached the upstream"
    );
    // A host outside the policy is refused.
    let (_, code) = in_vm(
        &vm,
        "curl -s -m 5 -o /dev/null -w '%{http_connect}' https://other.example.test/",
    );
    assert_eq!(code.trim(), "403");
    drop(upstream);
    let out = run(&mut cp.kubectl(&[
        "delete",
        "agent",
        "real-smol",
        "-n",
        "default",
        "--timeout=300s",
    ]));
    assert!(out.status.success(), "delete: {out:?}");
}
