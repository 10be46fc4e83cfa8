//! Claude Code in a bottle on a real Docker engine: the real binary (from the claude-agent-sdk
//! wheel, fetched by hack/fetch-harnesses.sh) answers `claude -p` through its sidecar against a
//! stand-in Anthropic API the test starts on the bottle's egress network. The stand-in gets
//! the real token; the agent holds only the placeholder; other hosts are refused and audited.

use std::time::{Duration, Instant};

use bb_e2e::harness::{
    AgentSessions, assert_injected_and_unreadable, assert_other_hosts_refused, harness_controller,
    start_stand_in,
};
use bb_e2e::{Cleanup, ensure_base_image, ok, remove_all_with, run, test_pki};

const REAL_TOKEN: &str = "sk-ant-oat01-e2e-real-7f3c9a1b5d";
const ANSWER: &str = "The bottle says hello.";
const READY_LIMIT: Duration = Duration::from_secs(900);

#[test]
fn claude_code_answers_through_its_sidecar_with_an_injected_token() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.anthropic.com"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let cp = harness_controller(&ca_path, &[("BB_E2E_CLAUDE_TOKEN", REAL_TOKEN)]);
    let agent_label = "bot-bottle.dev/agent=default/claude";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());

    // A cold build every run: its steps must reach the Agent's events.
    let old_images = ok(&mut bb_e2e::docker(&["images", "-q", "bot-bottle/claude"]));
    for id in old_images.split_whitespace() {
        let _ = run(&mut bb_e2e::docker(&["rmi", "-f", id]));
    }
    let started = Instant::now();
    cp.apply(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: claude}
spec:
  agentProvider: {template: claude, authToken: {hostEnv: BB_E2E_CLAUDE_TOKEN}}
  egress: {log: 1}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: claude, namespace: default}
spec:
  bottleRef: {name: claude}
  label: e2e claude
  color: blue
  prompt: "Answer in one sentence."
"#,
    );
    cp.wait_for("the claude Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "claude"], "{.status.phase}") == "Running"
    });
    println!(
        "apply -> Running in {:.1}s (includes the claude image build on a cold engine)",
        started.elapsed().as_secs_f64()
    );
    let events = ok(&mut cp.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=claude,reason=Building",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]));
    assert!(
        events
            .lines()
            .any(|l| l.contains("Step ") && l.contains("RUN")),
        "the build's steps are not in the Agent's events:\n{events}"
    );
    let api = start_stand_in(
        agent_label,
        "bb-e2e-anthropic",
        &["api.anthropic.com"],
        include_str!("../fixtures/anthropic_api.py"),
        (&cert, &key),
    );

    let sessions = AgentSessions::new(&cp, "claude");
    let exec = |cmd: &[&str]| sessions.exec(cmd);

    // The files Claude Code reads, owned by the agent user with the modes the provider set.
    let out = exec(&[
        "sh",
        "-c",
        "stat -c '%U %a %n' ~/.claude.json ~/.claude ~/.claude/settings.json ~/.claude/statusline.sh; ~/.claude/statusline.sh",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "agent 600 /home/agent/.claude.json",
        "agent 700 /home/agent/.claude",
        "agent 600 /home/agent/.claude/settings.json",
        "agent 755 /home/agent/.claude/statusline.sh",
        "\u{1b}[94me2e claude\u{1b}[0m",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }

    // One real run, bounded: the answer comes back through the sidecar.
    let t = Instant::now();
    let out = exec(&[
        "timeout",
        "60",
        "claude",
        "-p",
        "Say hello from the bottle.",
        "--dangerously-skip-permissions",
        "--append-system-prompt-file",
        "/etc/bot-bottle/prompt.md",
    ]);
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen = ok(&mut bb_e2e::docker(&["logs", &api.name]));
    assert!(
        out.status.success() && stdout.contains(ANSWER),
        "claude -p failed ({:?}) in {took:?}:\nstdout: {stdout}\nstderr: {}\nstand-in saw:\n{seen}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(60), "claude -p took {took:?}");
    println!("claude -p answered in {:.1}s", took.as_secs_f64());

    // The supervise MCP server is registered and Claude Code connects to it.
    let out = exec(&["timeout", "60", "claude", "mcp", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("supervise: http://bb-sidecar:9100/mcp")
                && l.contains("Connected")),
        "supervise is not a connected MCP server:\n{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The stand-in received the real token; the agent holds only the placeholder.
    assert_injected_and_unreadable(agent_label, &seen, "/v1/messages", REAL_TOKEN);
    let env = String::from_utf8_lossy(&exec(&["env"]).stdout).into_owned();
    assert!(
        env.contains("CLAUDE_CODE_OAUTH_TOKEN=egress-placeholder"),
        "{env}"
    );

    // Every other host Claude Code tried was refused by the sidecar and audited.
    let audit = sessions.egress_audit();
    let others = assert_other_hosts_refused(&audit, &["api.anthropic.com"]);
    println!(
        "audit: {} records, {others} for other hosts",
        audit.lines().count()
    );
}
