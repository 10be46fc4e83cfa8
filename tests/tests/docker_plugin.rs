//! A harness plugin from the runner's `$BOT_BOTTLE_HOME/contrib/NAME/` runs end to end without
//! recompiling: its Dockerfile builds the image, its provider.yaml gives the argv, prompt flag
//! and env that `bbctl attach` runs with; a Bottle naming a missing plugin fails saying which
//! plugins exist.

use std::time::Duration;

use bb_e2e::{Cleanup, Controller, ensure_base_image, remove_all_with, run, workspace_root};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn a_contrib_plugin_launches_end_to_end() {
    ensure_base_image();
    let cp = Controller::start(&["--resync-seconds", "5"]);
    copy_dir(
        &workspace_root().join("tests/fixtures/contrib/echo-harness"),
        &cp.home.path().join("contrib/echo-harness"),
    );
    let agent_label = "bot-bottle.dev/agent=default/echo";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    cp.apply(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: echo}
spec:
  agentProvider: {template: plugin, plugin: echo-harness}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: missing}
spec:
  agentProvider: {template: plugin, plugin: nope}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: echo, namespace: default}
spec:
  bottleRef: {name: echo}
  prompt: "Echo this prompt."
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: missing, namespace: default}
spec:
  bottleRef: {name: missing}
"#,
    );
    cp.wait_for(
        "the plugin Agent to be Running",
        Duration::from_secs(600),
        || cp.jsonpath(&["agent", "echo"], "{.status.phase}") == "Running",
    );
    let mut c = std::process::Command::new(bb_e2e::workspace_bin("bbctl"));
    c.args(["attach", "agent/echo", "--home"])
        .arg(cp.home.path())
        .stdin(std::process::Stdio::null());
    let out = run(&mut c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "echo-harness argv: --yes --prompt-file /etc/bot-bottle/prompt.md",
            "mode: bottle",
            "Echo this prompt.",
        ],
        "{out:?}"
    );

    cp.wait_for(
        "the missing plugin to fail",
        Duration::from_secs(60),
        || cp.jsonpath(&["agent", "missing"], "{.status.phase}") == "Failed",
    );
    let message = cp.jsonpath(&["agent", "missing"], "{.status.message}");
    assert!(
        message.contains("no plugin 'nope' on this runner")
            && message.contains("available: echo-harness"),
        "{message}"
    );
}
