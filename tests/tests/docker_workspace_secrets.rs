//! Secrets in the workspace an agent is handed, on real Docker: the runner finds them in the
//! `.env`, AWS credentials file and kubeconfig it copies in, and the sidecar refuses each value
//! on its way out through allowed hosts (raw, hex, URL-encoded, truncated, base64, a file's
//! first 40 bytes; in a query, a body, a header, a WebSocket message), while the same requests
//! without them get through. The witness upstream's own log is the proof; the values are nowhere
//! in the agent's environment or argv, the API, the controller's log or the egress audit.

use std::collections::BTreeMap;
use std::time::Duration;

use bb_e2e::harness::{AgentSessions, one};
use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ensure_base_image, networks_with, ok,
    remove_all_with, run, scan_for, scan_sidecar, test_pki, workspace_root,
};

const WITNESS_PY: &str = include_str!("../attacks/witness.py");
const LEAKER_PY: &str = include_str!("../attacks/workspace_leaker.py");

const DB_PASSWORD: &str = "Wq8z-pL3x_Rt7vN2bC4d";
const AWS_SECRET: &str = "jR4vT9xL2qW7zN5bK8mP3sD6fH1gY0aE9cU4iO2t";
const KUBE_TOKEN: &str = "kube-6f3a9c2e1b7d4058a2c9e1f3b5d7a9c0";

fn workspace(dir: &std::path::Path) -> std::path::PathBuf {
    let ws = dir.join("ws");
    for sub in ["", ".aws", ".kube", "src"] {
        std::fs::create_dir_all(ws.join(sub)).expect("mkdir");
    }
    let write = |p: &str, text: String| std::fs::write(ws.join(p), text).expect("write");
    write(
        ".env",
        format!("DB_PASSWORD={DB_PASSWORD}\nLOG_LEVEL=debug\nPORT=8080\n"),
    );
    write(
        ".aws/credentials",
        format!(
            "[default]\naws_access_key_id = AKIAQ3EGRUOPXNVZLM7K\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    );
    write(
        ".kube/config",
        format!(
            "apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: dev\n  user:\n    token: {KUBE_TOKEN}\n"
        ),
    );
    write(
        "src/main.py",
        "import os\nprint(os.environ.get('PORT', '8080'))\n".into(),
    );
    ws
}

fn manifest(ws: &std::path::Path) -> String {
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: wsleak}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash, -l]}}
  egress:
    log: 1
    routes:
      - host: pkg.example.test
        matches: [{{methods: [GET, HEAD]}}]
      - host: api.example.test
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: wsleak, namespace: default}}
spec:
  bottleRef: {{name: wsleak}}
  workspace: {{hostPath: {ws}}}
"#,
        dockerfile = dockerfile.display(),
        ws = ws.display(),
    )
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn workspace_secrets_never_leave_through_allowed_hosts() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = workspace(dir.path());
    let (ca, cert, key) = test_pki(&["pkg.example.test", "api.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let cp = Controller::start(&["--upstream-ca", &ca_path.to_string_lossy()]);
    let label = "bot-bottle.dev/agent=default/wsleak";
    remove_all_with(label);
    let _cleanup = Cleanup(label.to_string());

    cp.apply(&manifest(&ws));
    cp.wait_for("the Agent to be Running", Duration::from_secs(600), || {
        cp.jsonpath(&["agent", "wsleak"], "{.status.phase}") == "Running"
    });

    // What the user sees: how many, and where; never a value.
    let found = cp.jsonpath(
        &["agent", "wsleak"],
        "{range .status.guardedSecrets.found[*]}{.path}:{.line} ({.kind}){\"\\n\"}{end}",
    );
    for want in [
        "/workspace/.env:1 (dotenv)",
        "/workspace/.aws/credentials:3 (aws-credentials)",
        "/workspace/.kube/config:7 (kubeconfig)",
    ] {
        assert!(found.contains(want), "{want} not in status:\n{found}");
    }
    let described = ok(&mut cp.bbctl(&["describe", "agent", "wsleak"]));
    assert!(
        described.contains("workspace secrets guarded") && described.contains("/workspace/.env:1"),
        "{described}"
    );

    let agent = one(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let sidecar = one(
        containers_with(&format!("{label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    let egress_net = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &one(
            networks_with(&format!("{label},bot-bottle.dev/role=egress-network")),
            "egress network",
        ),
    ]))
    .trim()
    .to_string();
    let witness = "bb-e2e-witness-wsleak";
    let _witness = bb_e2e::start_upstream(
        witness,
        &egress_net,
        &["pkg.example.test", "api.example.test"],
        WITNESS_PY,
        (&cert, &key),
    );
    cp.wait_for("the witness to listen", Duration::from_secs(30), || {
        ok(&mut docker(&["logs", witness])).contains("\"ready\"")
    });
    cp.wait_for(
        "the package index to answer through the proxy",
        Duration::from_secs(30),
        || {
            run(&mut docker(&[
                "exec",
                "-u",
                "1000",
                &agent,
                "curl",
                "-sS",
                "-m",
                "5",
                "https://pkg.example.test/warm-up",
            ]))
            .status
            .success()
        },
    );

    let script = dir.path().join("leaker.py");
    std::fs::write(&script, LEAKER_PY).expect("write leaker");
    ok(&mut docker(&[
        "cp",
        &script.to_string_lossy(),
        &format!("{agent}:/tmp/leaker.py"),
    ]));
    let cfg = serde_json::json!({
        "secrets": {"db password": DB_PASSWORD, "aws secret": AWS_SECRET, "kube token": KUBE_TOKEN},
        "files": ["/workspace/.env"],
    });
    let out = run(&mut docker(&[
        "exec",
        "-u",
        "1000",
        &agent,
        "timeout",
        "300",
        "python3",
        "/tmp/leaker.py",
        &cfg.to_string(),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let attempts: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        attempts.last().is_some_and(|a| field(a, "name") == "done"),
        "the leaker did not finish (exit {:?}): {stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let attempts = &attempts[..attempts.len() - 1];
    // 4 controls; per secret 5 query forms, a body, a header and a WebSocket message; one file.
    assert_eq!(attempts.len(), 4 + 3 * 8 + 1, "{stdout}");

    let log = ok(&mut docker(&["logs", witness]));
    let mut failures = BTreeMap::new();
    for a in attempts {
        let (name, marker) = (field(a, "name"), field(a, "marker"));
        let seen = log.lines().any(|l| l.contains(&marker));
        let observed = field(a, "observed");
        let problem = match field(a, "expect").as_str() {
            "seen" if !seen => Some("the control never reached the witness"),
            "seen" if name.contains("websocket") && observed != "echoed" => {
                Some("the control message was not echoed")
            }
            "unseen" if seen => Some("the witness recorded it"),
            "unseen" if !name.contains("websocket") && !observed.starts_with("403") => {
                Some("not refused with 403")
            }
            "seen" | "unseen" => None,
            other => panic!("unknown expectation {other:?} for {name}"),
        };
        println!(
            "{:<48} {:<5} {}",
            name,
            if problem.is_some() { "FAIL" } else { "ok" },
            observed
        );
        if let Some(p) = problem {
            failures.insert(name, format!("{p} (agent saw: {observed})"));
        }
    }
    let controls_failed: Vec<_> = failures
        .keys()
        .filter(|k| k.starts_with("control"))
        .collect();
    assert!(
        controls_failed.is_empty(),
        "legitimate requests did not get through, so no refusal counts: {failures:#?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Refusals name the file the value came from.
    assert!(
        stdout.contains("workspace-secret from /workspace/.env:1 (dotenv)")
            && stdout.contains("/workspace/.aws/credentials:3 (aws-credentials)")
            && stdout.contains("/workspace/.kube/config:7 (kubeconfig)"),
        "{stdout}"
    );
    // No part of any value reached the witness, whatever the marker says.
    for value in [DB_PASSWORD, AWS_SECRET, KUBE_TOKEN] {
        assert!(
            !log.contains(&value[..12]) && !log.contains(&value[value.len() - 12..]),
            "the witness holds part of a secret"
        );
    }

    // Where the values must not be. Each scan first finds them where they are meant to be (a
    // scan that finds nothing anywhere proves nothing).
    let api = {
        let mut c = cp.kubectl(&["get", "agents,bottles,events", "-A", "-o", "yaml"]);
        ok(&mut c)
    };
    let controller_log = cp.log();
    let audit = AgentSessions::new(&cp, "wsleak").egress_audit();
    assert!(
        audit.contains("dlp-outbound"),
        "the audit lacks the refusals"
    );
    for value in [DB_PASSWORD, AWS_SECRET, KUBE_TOKEN] {
        let in_agent = scan_for(&agent, value);
        let mut lines = in_agent.lines();
        assert_eq!(lines.next(), Some("0"), "in the agent's env or argv");
        assert!(
            lines.all(|l| l.starts_with("/workspace/")),
            "outside the workspace copy: {in_agent}"
        );
        assert!(
            in_agent.contains("/workspace/"),
            "positive control: the scan finds the workspace copy: {in_agent}"
        );
        let in_sidecar = scan_sidecar(&sidecar, value);
        assert_eq!(
            in_sidecar.lines().next(),
            Some("0"),
            "in the sidecar's env or argv"
        );
        // Positive control: the same scan finds the value where the sidecar keeps it (hex, in
        // the guarded-secrets file of its secrets tmpfs).
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            scan_sidecar(&sidecar, &hex).contains("guarded-secrets.json"),
            "the sidecar scan does not see the sidecar's own secrets"
        );
        for (what, text) in [
            ("the API", &api),
            ("the controller's log", &controller_log),
            ("the egress audit", &audit),
        ] {
            assert!(!text.contains(value), "a workspace secret is in {what}");
        }
    }
}
