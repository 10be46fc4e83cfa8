//! Against Apple's real `container` CLI on a Mac: the reference's integration assertions. It is
//! compiled as ignored where the CLI is not on PATH (`tests/build.rs`), so cargo reports it as
//! not run there, never as passed. Everything is checked through the `container` CLI itself;
//! the test's "internet" is an HTTPS server it starts on the bottle's NAT network, addressed
//! by IP (the runtime has no container names in DNS) with a certificate for that address.

use std::process::{Command, Output};
use std::time::Duration;

use bb_e2e::{Controller, TestCa, UPSTREAM_PY, run, workspace_root};
use serde_json::Value;

const TOKEN: &str = "e2e-Real-Apple-T0ken-8b7a6c5d4e3f";
const READY_LIMIT: Duration = Duration::from_secs(1800);

fn container(args: &[&str]) -> Output {
    run(Command::new("container").args(args))
}

fn container_ok(args: &[&str]) -> String {
    let out = container(args);
    assert!(out.status.success(), "container {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container as the CLI lists it: name, labels, and its address on each network.
struct Listed {
    name: String,
    labels: Value,
    addresses: Vec<(String, String)>,
}

/// Every container, read from either of the shapes the CLI's releases print.
fn listed() -> Vec<Listed> {
    let all: Vec<Value> =
        serde_json::from_str(&container_ok(&["list", "--all", "--format", "json"]))
            .unwrap_or_default();
    all.into_iter()
        .map(|c| {
            let name = c["id"]
                .as_str()
                .or(c["configuration"]["id"].as_str())
                .unwrap_or_default()
                .to_string();
            let nets = c["status"]["networks"]
                .as_array()
                .or(c["networks"].as_array())
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    let addr = n["ipv4Address"].as_str().or(n["address"].as_str());
                    (
                        n["network"].as_str().unwrap_or_default().to_string(),
                        addr.unwrap_or_default()
                            .split('/')
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            Listed {
                name,
                labels: c["configuration"]["labels"].clone(),
                addresses: nets,
            }
        })
        .collect()
}

fn with_labels(pairs: &[(&str, &str)]) -> Vec<String> {
    listed()
        .into_iter()
        .filter(|c| pairs.iter().all(|(k, v)| c.labels[*k].as_str() == Some(*v)))
        .map(|c| c.name)
        .collect()
}

fn address_on(name: &str, network: &str) -> String {
    listed()
        .into_iter()
        .find(|c| c.name == name)
        .and_then(|c| c.addresses.into_iter().find(|(net, _)| net == network))
        .map(|(_, ip)| ip)
        .unwrap_or_default()
}

fn in_agent(name: &str, script: &str) -> (bool, String) {
    let out = container(&["exec", "--user", "1000", name, "sh", "-c", script]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Removes what the test made, whatever state a failure left.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for name in with_labels(&[("bot-bottle.dev/agent", "default/real")])
            .into_iter()
            .chain(self.0.iter().cloned())
        {
            let _ = container(&["delete", "--force", &name]);
        }
    }
}

fn manifest(route_host: &str) -> String {
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: real-token, namespace: bot-bottle-system}}
stringData: {{token: {TOKEN}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: real}}
spec:
  agentProvider:
    template: custom
    dockerfile: {dockerfile}
    command: [bash, -l]
  egress:
    routes:
      - host: {route_host}
        auth:
          scheme: Bearer
          secretKeyRef: {{name: real-token, key: token}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: real, namespace: default}}
spec:
  bottleRef: {{name: real}}
  backend: apple-container
"#,
        dockerfile = dockerfile.display()
    )
}

#[test]
#[cfg_attr(
    not(bb_apple_container),
    ignore = "Apple's container CLI is not on PATH: not run (on a Mac, `container system start` and run it)"
)]
fn real_apple_container_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write ca");
    let cp = Controller::start(&[
        "--backend",
        "apple-container",
        "--base-image",
        "debian:bookworm-slim",
        "--upstream-ca",
        &ca_path.display().to_string(),
        "--resync-seconds",
        "2",
    ]);
    let upstream = format!("bb-e2e-real-upstream-{}", std::process::id());
    let _leftovers = Leftovers(vec![upstream.clone()]);

    // The Agent first (its image carries python3 for the upstream), then the upstream on its
    // NAT network, then the route to the upstream's address.
    cp.apply(&manifest("placeholder.invalid"));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "real"], "{.status.phase}") == "Running"
    });
    let agent = with_labels(&[
        ("bot-bottle.dev/agent", "default/real"),
        ("bot-bottle.dev/role", "agent"),
    ])
    .pop()
    .expect("agent container");
    let sidecar = with_labels(&[
        ("bot-bottle.dev/agent", "default/real"),
        ("bot-bottle.dev/role", "sidecar"),
    ])
    .pop()
    .expect("sidecar");
    let prefix = agent.trim_end_matches("-agent");
    let (egress, internal) = (format!("{prefix}-egress"), format!("{prefix}-internal"));
    let image = listed()
        .into_iter()
        .find(|c| c.name == agent)
        .and_then(|c| c.labels["bot-bottle.dev/image"].as_str().map(String::from))
        .expect("the agent's image label");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(certs.join("upstream.py"), UPSTREAM_PY).expect("upstream.py");
    let wrapper = "import os, time\n\
        while not os.path.exists('/certs/ready'): time.sleep(0.1)\n\
        os.environ['CERT'] = open('/certs/cert.pem').read()\n\
        os.environ['KEY'] = open('/certs/key.pem').read()\n\
        exec(open('/certs/upstream.py').read())\n";
    container_ok(&[
        "run",
        "--detach",
        "--name",
        &upstream,
        "--network",
        &egress,
        "--mount",
        &format!("type=bind,source={},target=/certs", certs.display()),
        &image,
        "python3",
        "-u",
        "-c",
        wrapper,
    ]);
    let mut ip = String::new();
    cp.wait_for("the upstream's address", Duration::from_secs(60), || {
        ip = address_on(&upstream, &egress);
        !ip.is_empty()
    });
    let (cert, key) = ca.leaf(&[&ip]);
    std::fs::write(certs.join("cert.pem"), cert).expect("cert");
    std::fs::write(certs.join("key.pem"), key).expect("key");
    std::fs::write(certs.join("ready"), "").expect("ready");
    cp.apply(&manifest(&ip));

    // exec works.
    let (ok, out) = in_agent(&agent, "echo hi");
    assert!(ok && out.trim() == "hi", "{out}");
    // The proxy env points at the sidecar's address.
    let sidecar_ip = address_on(&sidecar, &internal);
    let (_, env) = in_agent(
        &agent,
        "echo \"$HTTPS_PROXY|$HTTP_PROXY|$NO_PROXY|$NODE_EXTRA_CA_CERTS\"",
    );
    let parts: Vec<&str> = env.trim().split('|').collect();
    assert_eq!(parts[0], format!("http://{sidecar_ip}:3128"), "{env}");
    assert_eq!(parts[0], parts[1]);
    assert!(!parts[0].contains("127.0.0.1"), "{env}");
    assert!(parts[2].split(',').any(|h| h == sidecar_ip), "{env}");
    assert_eq!(parts[3], "/etc/bot-bottle/ca.crt");
    // An allowed host works through the proxy, with the token injected.
    cp.wait_for(
        "the upstream to answer through the proxy",
        Duration::from_secs(60),
        || in_agent(&agent, &format!("curl -sS -m 5 https://{ip}/hello")).0,
    );
    let logs = container_ok(&["logs", &upstream]);
    assert!(logs.contains(&format!("Bearer {TOKEN}")), "{logs}");
    // Direct egress fails with the proxy env unset (only the network may stop it: -k).
    let (direct, out) = in_agent(
        &agent,
        &format!(
            "unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; curl -sS -k -m 5 https://{ip}/"
        ),
    );
    assert!(
        !direct && !out.contains("hello from upstream"),
        "direct egress worked: {out}"
    );
    // A host outside the policy is refused (at CONNECT: nothing leaves the sidecar).
    let (_, code) = in_agent(
        &agent,
        "curl -s -m 5 -o /dev/null -w '%{http_connect}' https://blocked.example.test/",
    );
    assert_eq!(code.trim(), "403");

    // Delete: nothing of the Agent is left.
    let _ = container(&["delete", "--force", &upstream]);
    let out = run(&mut cp.kubectl(&["delete", "agent", "real", "--timeout=300s"]));
    assert!(out.status.success(), "delete: {out:?}\n{}", cp.log());
    assert!(
        with_labels(&[("bot-bottle.dev/agent", "default/real")]).is_empty(),
        "containers left behind"
    );
}
