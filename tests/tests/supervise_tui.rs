//! `bbctl supervise` under a real terminal (tmux) against the real control plane, showing a
//! Proposal whose justification is hostile: it draws a fake "Approving grants" box and a fake
//! diff, clears the screen with escape sequences, and then pushes everything down with blank
//! lines. The reach and diff the runner computed are what the approver sees first.

use std::time::Duration;

use bb_e2e::{Controller, Tmux, ok, workspace_bin};

#[test]
fn a_hostile_justification_cannot_hide_the_real_request_on_a_terminal() {
    let cp = Controller::start(&[]);
    let hostile = format!(
        "\\e[2J\\e[H┌────────────────────────┐\\nApproving grants\\n  • nothing new: docs only\\nDiff against the live routes\\n+ host: docs.example.test\\n{}",
        "\\n".repeat(120)
    );
    cp.apply(&format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Proposal
metadata: {{name: ghost-egress-block-1, namespace: default}}
spec:
  agentRef: {{name: ghost}}
  tool: egress-block
  content: "routes:\n  - host: paste.example.test\n    dlp: {{outbound: false}}\n"
  justification: "{hostile}"
  queueId: egress-block-1
"#
    ));
    // What the runner writes when it raises a proposal: the reach and the diff.
    let status = serde_json::json!({"status": {
        "phase": "Pending",
        "reach": [
            "new host paste.example.test on port(s) 443: any path, any method",
            "paste.example.test: outbound secret scanning turned off",
        ],
        "diff": "@@ new route paste.example.test @@\n+ host: paste.example.test\n+ dlp:\n+   outbound: false\n",
    }});
    ok(&mut cp.kubectl(&[
        "patch",
        "proposal",
        "ghost-egress-block-1",
        "-n",
        "default",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]));
    let tmux = Tmux::start(
        "supervise-tui",
        &format!(
            "{} supervise --home {}; sleep 60",
            workspace_bin("bbctl").display(),
            cp.home.path().display()
        ),
        (100, 30),
    );
    let mut pane = String::new();
    cp.wait_for("the proposal on screen", Duration::from_secs(20), || {
        pane = tmux.pane();
        pane.contains("outbound secret scanning turned off")
    });
    assert!(pane.contains("new host paste.example.test"), "{pane}");
    assert!(pane.contains("+ host: paste.example.test"), "{pane}");
    // The view's own header comes once unquoted and above the real reach; the agent's copy of it,
    // its fake list item and its fake diff line show only quoted.
    let lines: Vec<&str> = pane.lines().collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("Approving grants"))
        .collect();
    let reach = lines
        .iter()
        .position(|l| l.contains("new host paste.example.test"))
        .unwrap_or(0);
    assert!(
        headers
            .first()
            .is_some_and(|&h| h < reach && !lines[h].contains("> ")),
        "{pane}"
    );
    for l in lines
        .iter()
        .filter(|l| l.contains("docs only") || l.contains("docs.example.test"))
    {
        assert!(l.contains("> "), "unquoted agent text: {l}\n{pane}");
    }
    assert!(
        pane.contains("␛[2J"),
        "the escape sequence is shown inert:\n{pane}"
    );
}
