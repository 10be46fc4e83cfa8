//! What every backend's bottle must show from inside its agent (the reference's integration
//! assertions), and the Bottle the CLI-driven backends' suites apply to show it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Controller, Upstream, docker, in_agent, ok, workspace_root};

/// The host the suites' Bottles allow (with a token), and one they do not.
pub const ALLOWED: &str = "api.example.test";
pub const BLOCKED: &str = "other.example.test";

/// The test agent's Dockerfile.
pub fn test_agent_dockerfile() -> PathBuf {
    workspace_root().join("images/test-agent/Dockerfile")
}

/// A Bottle built from `dockerfile` allowing `ALLOWED` with `token` injected, a session secret
/// env, and its Agent on `backend` with `prompt`; `extra_routes` are more route lines.
pub fn token_bottle(
    name: &str,
    backend: &str,
    dockerfile: &Path,
    (token, session_secret): (&str, &str),
    prompt: &str,
    extra_routes: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}-token, namespace: bot-bottle-system}}
stringData: {{token: {token}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-env, namespace: bot-bottle-system}}
stringData: {{value: {session_secret}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: {name}}}
spec:
  agentProvider:
    template: custom
    dockerfile: {dockerfile}
    command: [bash, -l]
  env:
    - {{name: SESSION_TOKEN, valueFrom: {{secretKeyRef: {{name: {name}-env, key: value}}}}}}
  egress:
    routes:
      - host: {ALLOWED}
        auth:
          scheme: Bearer
          secretKeyRef: {{name: {name}-token, key: token}}
{extra_routes}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, namespace: default}}
spec:
  bottleRef: {{name: {name}}}
  backend: {backend}
  prompt: "{prompt}"
"#,
        dockerfile = dockerfile.display()
    )
}

/// From inside `agent` (a container `docker exec` reaches): the proxy env names the sidecar at
/// `sidecar_addr`; `ALLOWED` answers through the proxy with `token` injected; with the proxy
/// variables unset neither the upstream's name nor its address is reachable, whatever the
/// certificate; `BLOCKED` gets the proxy's 403.
pub fn assert_reference_checks(
    cp: &Controller,
    agent: &str,
    sidecar_addr: &str,
    upstream: &Upstream,
    token: &str,
) {
    let (_, env) = in_agent(
        agent,
        "echo \"$HTTPS_PROXY|$HTTP_PROXY|$NO_PROXY|$NODE_EXTRA_CA_CERTS\"",
    );
    let parts: Vec<&str> = env.trim().split('|').collect();
    assert_eq!(parts[0], format!("http://{sidecar_addr}:3128"), "{env}");
    assert_eq!(parts[0], parts[1], "{env}");
    assert!(parts[2].split(',').any(|h| h == sidecar_addr), "{env}");
    assert_eq!(parts[3], "/etc/bot-bottle/ca.crt", "{env}");
    // A legitimate request first: an unreachable upstream would make every refusal below
    // prove nothing.
    let mut body = String::new();
    cp.wait_for(
        "the allowed host to answer through the proxy",
        Duration::from_secs(30),
        || {
            let (ok, out) = in_agent(agent, &format!("curl -sS -m 5 https://{ALLOWED}/hello"));
            body = out;
            ok
        },
    );
    assert!(body.contains("hello from upstream"), "{body}");
    assert!(
        ok(&mut docker(&["logs", &upstream.name])).contains(&format!("Bearer {token}")),
        "the token was not injected"
    );
    let upstream_ip = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &upstream.name,
    ]));
    let (direct, out) = in_agent(
        agent,
        &format!(
            "unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; curl -sS -k -m 5 https://{ALLOWED}/; curl -sS -k -m 5 https://{}/",
            upstream_ip.trim()
        ),
    );
    assert!(
        !direct && !out.contains("hello from upstream"),
        "direct egress worked: {out}"
    );
    let (_, code) = in_agent(
        agent,
        &format!("curl -s -m 5 -o /dev/null -w '%{{http_connect}}' https://{BLOCKED}/"),
    );
    assert_eq!(code.trim(), "403", "CONNECT to a host outside the policy");
}

/// `bbctl exec` through the runner: the provisioned prompt reads back, and a command's stderr
/// and exit code come back as its own.
pub fn assert_exec_basics(cp: &Controller, name: &str, prompt: &str) {
    let out = cp.exec(name, &["cat", "/etc/bot-bottle/prompt.md"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), prompt);
    let out = cp.exec(name, &["sh", "-c", "echo to-err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-err"));
}

/// `bbctl suspend agent/NAME` and the wait for `Suspended`; returns the snapshot its status
/// names.
pub fn suspend(cp: &Controller, name: &str) -> String {
    ok(&mut cp.bbctl(&["suspend", &format!("agent/{name}")]));
    cp.wait_for(
        "the Agent to be Suspended",
        Duration::from_secs(300),
        || cp.jsonpath(&["agent", name], "{.status.phase}") == "Suspended",
    );
    cp.jsonpath(&["agent", name], "{.status.snapshot}")
}

/// `bbctl resume agent/NAME` and the wait for `Running`.
pub fn resume(cp: &Controller, name: &str) {
    ok(&mut cp.bbctl(&["resume", &format!("agent/{name}")]));
    cp.wait_for("the Agent to run again", Duration::from_secs(300), || {
        cp.jsonpath(&["agent", name], "{.status.phase}") == "Running"
    });
}
