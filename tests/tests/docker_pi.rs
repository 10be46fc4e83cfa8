//! The Pi provider in a running bottle: the files it provisions (owner, mode, content), the
//! argv `bbctl attach` runs, and its model-server route with the API key injected over plain
//! HTTP on the LAN. Pi itself comes from npm, which this machine cannot reach: the Bottle
//! builds the test agent image instead (`dockerfile` overrides a provider's image), and a
//! stand-in `pi` prints the argv it was given.

use std::time::Duration;

use bb_e2e::harness::{one, start_stand_in};
use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ensure_base_image, ok, remove_all_with, run,
    scan_for, workspace_root,
};

const KEY: &str = "sk-lan-e2e-0c1d2e3f4a5b";

#[test]
fn pi_files_argv_and_route() {
    ensure_base_image();
    let cp = Controller::start(&["--resync-seconds", "5"]);
    let agent_label = "bot-bottle.dev/agent=default/pi";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: lan-key, namespace: bot-bottle-system}}
stringData: {{key: {KEY}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: pi}}
spec:
  agentProvider:
    template: pi
    dockerfile: {dockerfile}
    settings:
      provider: lan
      baseUrl: http://models.lan:8080/v1
      apiKeyFrom: {{secretKeyRef: {{name: lan-key, key: key}}}}
      models: [m1, m2]
      contextWindow: 8192
      maxTokens: 2048
  egress: {{log: 1}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: pi, namespace: default}}
spec:
  bottleRef: {{name: pi}}
  prompt: "Keep answers short."
"#,
        dockerfile = dockerfile.display()
    ));
    cp.wait_for(
        "the pi Agent to be Running",
        Duration::from_secs(600),
        || cp.jsonpath(&["agent", "pi"], "{.status.phase}") == "Running",
    );
    let agent = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let in_agent = |user: &str, script: &str| {
        ok(&mut docker(&[
            "exec", "-u", user, &agent, "sh", "-c", script,
        ]))
    };

    let listing = in_agent(
        "1000",
        "cd ~ && stat -c '%U %a %n' .pi .pi/agent .pi/agent/skills .pi/agent/models.json .pi/agent/APPEND_SYSTEM.md && cat .pi/agent/APPEND_SYSTEM.md",
    );
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "agent 755 .pi",
            "agent 700 .pi/agent",
            "agent 755 .pi/agent/skills",
            "agent 600 .pi/agent/models.json",
            "agent 600 .pi/agent/APPEND_SYSTEM.md",
            "Keep answers short.",
        ],
        "provisioned files"
    );
    let models: serde_json::Value =
        serde_json::from_str(&in_agent("1000", "cat ~/.pi/agent/models.json")).expect("json");
    let lan = &models["providers"]["lan"];
    assert_eq!(lan["baseUrl"], "http://models.lan:8080/v1");
    assert_eq!(lan["apiKey"], "egress-placeholder");
    assert_eq!(lan["models"][1]["id"], "m2");
    assert_eq!(lan["models"][0]["contextWindow"], 6144, "8192 - 2048");
    assert_eq!(lan["models"][0]["maxTokens"], 2048);

    // attach runs `pi --models ...` (a stand-in pi prints its argv).
    in_agent(
        "0",
        "printf '#!/bin/sh\\necho \"pi argv: $*\"\\n' > /usr/local/bin/pi && chmod 755 /usr/local/bin/pi",
    );
    let bbctl = bb_e2e::workspace_bin("bbctl");
    let mut c = std::process::Command::new(&bbctl);
    c.args(["attach", "agent/pi", "--home"])
        .arg(cp.home.path())
        .stdin(std::process::Stdio::null());
    let out = run(&mut c);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pi argv: --models lan/m1,lan/m2"),
        "{out:?}"
    );

    // The route: plain HTTP to the LAN host, the key injected by the sidecar.
    let server = start_stand_in(
        agent_label,
        "bb-e2e-models-lan",
        &["models.lan"],
        include_str!("../fixtures/plain_http.py"),
        ("", ""),
    );
    let mut answered = String::new();
    for _ in 0..40 {
        answered = in_agent(
            "1000",
            "curl -s -m 5 -H 'Authorization: Bearer egress-placeholder' http://models.lan:8080/v1/models || true",
        );
        if answered.contains("\"m1\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        answered.contains("\"m1\""),
        "the model server did not answer: {answered}"
    );
    let seen = ok(&mut docker(&["logs", &server.name]));
    assert!(
        seen.contains(&format!("Bearer {KEY}")),
        "the key was not injected: {seen}"
    );
    assert_eq!(
        scan_for(&agent, KEY).lines().collect::<Vec<_>>(),
        ["0"],
        "the key is readable inside the agent"
    );
    // Only the route's host and port: another port on it is refused.
    let other = in_agent(
        "1000",
        "curl -s -o /dev/null -w '%{http_code}' -m 5 http://models.lan:8081/ || true",
    );
    assert_eq!(other.trim(), "403", "another port of the model host");
}
