//! Codex in a bottle on a real Docker engine: the real binary (from the openai-codex-cli-bin
//! wheel, fetched by hack/fetch-harnesses.sh) answers `codex exec` through its sidecar against
//! a stand-in OpenAI Responses API on the bottle's egress network. The runner host's Codex
//! login (an API key here) is forwarded: the stand-in gets the real key, the agent holds only
//! placeholders, and other hosts are refused and audited.

use std::time::{Duration, Instant};

use bb_e2e::harness::{
    AgentSessions, assert_injected_and_unreadable, assert_other_hosts_refused, codex_login,
    harness_controller, start_stand_in,
};
use bb_e2e::{Cleanup, ensure_base_image, ok, remove_all_with, test_pki};

const REAL_KEY: &str = "sk-proj-e2e-real-5b8d2c7e1f";
const ANSWER: &str = "The bottle says hello.";

#[test]
fn codex_answers_through_its_sidecar_with_the_forwarded_login() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.openai.com", "chatgpt.com"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    // The runner host's Codex login.
    let codex_home = codex_login(dir.path(), REAL_KEY);
    let cp = harness_controller(&ca_path, &[("CODEX_HOME", &codex_home.to_string_lossy())]);
    let agent_label = "bot-bottle.dev/agent=default/codex";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());

    let started = Instant::now();
    cp.apply(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: codex}
spec:
  agentProvider: {template: codex, forwardHostCredentials: true}
  egress: {log: 1}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: codex, namespace: default}
spec:
  bottleRef: {name: codex}
  prompt: "Answer in one sentence."
"#,
    );
    cp.wait_for(
        "the codex Agent to be Running",
        Duration::from_secs(900),
        || cp.jsonpath(&["agent", "codex"], "{.status.phase}") == "Running",
    );
    println!(
        "apply -> Running in {:.1}s (includes the codex image build on a cold engine)",
        started.elapsed().as_secs_f64()
    );
    let api = start_stand_in(
        agent_label,
        "bb-e2e-openai",
        &["api.openai.com", "chatgpt.com"],
        include_str!("../fixtures/openai_api.py"),
        (&cert, &key),
    );

    let sessions = AgentSessions::new(&cp, "codex");
    let exec = |cmd: &[&str]| sessions.exec(cmd);

    let out = exec(&[
        "sh",
        "-c",
        "stat -c '%U %a %n' ~/.codex ~/.codex/config.toml ~/.codex/auth.json; cat ~/.codex/auth.json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "agent 700 /home/agent/.codex",
        "agent 600 /home/agent/.codex/config.toml",
        "agent 600 /home/agent/.codex/auth.json",
        "\"OPENAI_API_KEY\": \"egress-placeholder\"",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }

    // The supervise MCP server is registered where Codex reads it.
    let out = exec(&["timeout", "30", "codex", "mcp", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("supervise") && l.contains("http://bb-sidecar:9100/mcp")),
        "codex does not list the supervise server:\n{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let t = Instant::now();
    let out = exec(&[
        "timeout",
        "60",
        "codex",
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "Say hello from the bottle.",
    ]);
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen = ok(&mut bb_e2e::docker(&["logs", &api.name]));
    assert!(
        out.status.success() && stdout.contains(ANSWER),
        "codex exec failed ({:?}) in {took:?}:\nstdout: {stdout}\nstderr: {}\nstand-in saw:\n{seen}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("codex exec answered in {:.1}s", took.as_secs_f64());
    assert_injected_and_unreadable(agent_label, &seen, "/responses", REAL_KEY);

    let audit = sessions.egress_audit();
    let others = assert_other_hosts_refused(&audit, &["api.openai.com", "chatgpt.com"]);
    println!(
        "audit: {} records, {others} for other hosts",
        audit.lines().count()
    );
}
