//! Attacks from inside a real bottle on Docker: a hostile agent (tests/attacks/attacker.py) tries
//! every way out it knows; a witness upstream (tests/attacks/witness.py) on the sidecar's egress
//! network, answering as both the allowed and the blocked host, records everything that reaches
//! it. Each attack carries a marker the witness must never record; the controls must arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ensure_base_image, networks_with, ok,
    remove_all_with, run, test_pki, workspace_root,
};

const SECRET: &str = "atk-S3cret-7d1e5a9c3b2f4e6d8a0c";
const WITNESS_PY: &str = include_str!("../attacks/witness.py");
const ATTACKER_PY: &str = include_str!("../attacks/attacker.py");
/// How many attacks and controls `attacker.py` emits (its `done` line aside): every one must
/// be reported, so an attack that silently stopped running fails the suite.
const ATTACKS: usize = 128;
/// The legitimate requests that must reach the witness, in the order they run.
const CONTROLS: [&str; 4] = [
    "control",
    "control-curl",
    "path-double-encoded-verbatim",
    "after-flood-control",
];

fn manifest() -> String {
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: atk-token, namespace: bot-bottle-system}}
stringData: {{token: {SECRET}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: atk}}
spec:
  agentProvider:
    template: custom
    dockerfile: {dockerfile}
    command: [bash, -l]
  egress:
    log: 1
    routes:
      - host: api.example.test
        matches: [{{paths: [{{type: prefix, value: /allowed/}}]}}]
        auth:
          scheme: Bearer
          secretKeyRef: {{name: atk-token, key: token}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: atk, namespace: default}}
spec:
  bottleRef: {{name: atk}}
"#,
        dockerfile = dockerfile.display()
    )
}

#[derive(Debug)]
struct Attack {
    name: String,
    marker: String,
    observed: String,
    expect: String,
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

/// What the witness recorded outside request bodies (a body may legitimately carry bytes that
/// merely look like a request; a *parsed* request, a header, or raw bytes may not).
fn witness_records(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| match field(&v, "kind").as_str() {
            "http" => format!(
                "http {} {} {}",
                field(&v, "method"),
                field(&v, "path"),
                v.get("headers").map(|h| h.to_string()).unwrap_or_default()
            ),
            kind => format!(
                "{kind} port {} {}",
                v.get("port").map(|p| p.to_string()).unwrap_or_default(),
                field(&v, "data")
            ),
        })
        .collect()
}

fn ip_on(container: &str, network: &str) -> String {
    ok(&mut docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    ]))
    .trim()
    .to_string()
}

#[test]
fn attacks_from_inside_the_bottle_reach_nothing() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.example.test", "other.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let ca_arg = ca_path.to_string_lossy().into_owned();
    let cp = Controller::start(&["--upstream-ca", &ca_arg]);
    let label = "bot-bottle.dev/agent=default/atk";
    remove_all_with(label);
    let _cleanup = Cleanup(label.to_string());

    cp.apply(&manifest());
    cp.wait_for("the Agent to be Running", Duration::from_secs(600), || {
        cp.jsonpath(&["agent", "atk"], "{.status.phase}") == "Running"
    });
    let one = |role: &str, what: &str| {
        let found = if role.ends_with("network") {
            networks_with(&format!("{label},bot-bottle.dev/role={role}"))
        } else {
            containers_with(&format!("{label},bot-bottle.dev/role={role}"))
        };
        assert_eq!(found.len(), 1, "expected one {what}: {found:?}");
        found.into_iter().next().unwrap_or_default()
    };
    let agent = one("agent", "agent container");
    let sidecar = one("sidecar", "sidecar");
    let egress_net = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &one("egress-network", "egress network"),
    ]))
    .trim()
    .to_string();
    let internal_net = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &one("internal-network", "internal network"),
    ]))
    .trim()
    .to_string();

    let witness = "bb-e2e-witness-atk";
    let _witness = bb_e2e::start_upstream(
        witness,
        &egress_net,
        &["api.example.test", "other.example.test"],
        WITNESS_PY,
        (&cert, &key),
    );
    cp.wait_for("the witness to listen", Duration::from_secs(30), || {
        ok(&mut docker(&["logs", witness])).contains("\"ready\"")
    });
    let gateway = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &internal_net,
    ]));
    let cfg = serde_json::json!({
        "secret": SECRET,
        "witness_ip": ip_on(witness, &egress_net),
        "sidecar_ip": ip_on(&sidecar, &internal_net),
        "gateway_ip": gateway.trim(),
    });
    // The sidecar may need a moment to see the witness's DNS alias.
    cp.wait_for(
        "the allowed host to answer through the proxy",
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
                "https://api.example.test/allowed/warm-up",
            ]))
            .status
            .success()
        },
    );

    // A sidecar that crashed and came back mid-suite would count attacks sent while it was down
    // as held: its identity, start and restart count must be the same after the suite.
    let sidecar_life = || {
        ok(&mut docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Running}}",
            &sidecar,
        ]))
    };
    let sidecar_before = sidecar_life();
    let script = dir.path().join("attacker.py");
    std::fs::write(&script, ATTACKER_PY).expect("write attacker");
    ok(&mut docker(&[
        "cp",
        &script.to_string_lossy(),
        &format!("{agent}:/tmp/attacker.py"),
    ]));
    let out = run(&mut docker(&[
        "exec",
        "-u",
        "1000",
        &agent,
        "timeout",
        "600",
        "python3",
        "/tmp/attacker.py",
        &cfg.to_string(),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let attacks: Vec<Attack> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Attack {
            name: field(&v, "name"),
            marker: field(&v, "marker"),
            observed: field(&v, "observed"),
            expect: field(&v, "expect"),
        })
        .collect();
    assert!(
        attacks.last().is_some_and(|a| a.name == "done"),
        "the attacker did not finish (exit {:?}): {stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(Duration::from_secs(1));
    let records = witness_records(&ok(&mut docker(&["logs", witness])));
    let mut failures = BTreeMap::new();
    for a in attacks.iter().filter(|a| a.name != "done") {
        let seen: Vec<&String> = records.iter().filter(|r| r.contains(&a.marker)).collect();
        let problem = match a.expect.as_str() {
            "seen" if seen.is_empty() => Some("the control never reached the witness".to_string()),
            "seen" => None,
            "unseen" if !seen.is_empty() => Some(format!("the witness recorded {:?}", seen[0])),
            "unseen" => None,
            "blocked"
                if ["connected", "resolved", "udp reply"]
                    .iter()
                    .any(|p| a.observed.starts_with(p)) =>
            {
                Some("the agent reached it".to_string())
            }
            "blocked" => None,
            other => Some(format!(
                "unknown expectation {other:?}: the suite cannot judge it"
            )),
        };
        println!(
            "{:<38} {:<7} {}",
            a.name,
            if problem.is_some() { "FAIL" } else { "ok" },
            a.observed
        );
        if let Some(p) = problem {
            failures.insert(a.name.clone(), format!("{p} (agent saw: {})", a.observed));
        }
    }
    assert_eq!(
        sidecar_life(),
        sidecar_before,
        "the sidecar restarted during the suite: attacks sent while it was down prove nothing"
    );
    // A suite whose controls failed, or did not run, proves nothing: say so first.
    let controls: Vec<&str> = attacks
        .iter()
        .filter(|a| a.expect == "seen")
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        controls, CONTROLS,
        "the controls that ran are not the suite's controls"
    );
    let controls_failed: Vec<_> = attacks
        .iter()
        .filter(|a| a.expect == "seen" && failures.contains_key(&a.name))
        .collect();
    assert!(
        controls_failed.is_empty(),
        "legitimate requests did not get through, so no attack result counts: {controls_failed:?}"
    );
    let ran = attacks.iter().filter(|a| a.name != "done").count();
    assert_eq!(
        ran, ATTACKS,
        "{ran} attacks and controls ran, not the {ATTACKS} tests/attacks/attacker.py holds: {stdout}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} attacks got through:\n{}",
        failures.len(),
        attacks.len(),
        failures
            .iter()
            .map(|(k, v)| format!("  {k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
