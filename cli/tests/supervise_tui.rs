//! `bbctl supervise` driven by keystrokes under tmux against the real control plane: the
//! pending list and detail render without colour under NO_COLOR, approve (with an expiry),
//! modify in $EDITOR then approve, and reject land in each Proposal's `spec.decision`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::ControlPlane;

const SESSION: &str = "bb-supervise-tui";

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is required for this test (apt-get install tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screen() -> String {
    tmux(&["capture-pane", "-p", "-t", SESSION])
}

fn wait_screen(what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = screen();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keys(k: &[&str]) {
    let mut args = vec!["send-keys", "-t", SESSION];
    args.extend_from_slice(k);
    tmux(&args);
}

fn typed(text: &str) {
    tmux(&["send-keys", "-t", SESSION, "-l", text]);
}

fn proposal(name: &str, tool: &str, content: &str) -> String {
    format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Proposal\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  agentRef: {{name: dev}}\n  tool: {tool}\n  queueId: {tool}-{name}\n  justification: need it for {name}\n  content: |\n{}\n",
        content
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

struct KillSession;
impl Drop for KillSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", SESSION])
            .status();
    }
}

/// Whether SGR escapes in `screen` set a foreground or background colour (resets and
/// bold/reverse are fine without colour).
fn sets_colour(screen: &str) -> bool {
    screen.split("\u{1b}[").skip(1).any(|seq| {
        let params = seq.split('m').next().unwrap_or_default();
        params.split(';').any(|p| {
            matches!(
                p.parse::<u16>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

fn decision(cp: &ControlPlane, name: &str) -> serde_json::Value {
    let out = cp.ok(&["get", "proposal", name, "-n", "default", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["spec"]["decision"].clone()
}

#[test]
fn the_terminal_ui_approves_modifies_and_rejects() {
    let cp = ControlPlane::start();
    for (name, tool, content) in [
        (
            "p1-docs",
            "egress-block",
            "routes:\n  - host: docs.example.com\n",
        ),
        (
            "p2-push",
            "gitleaks-allow",
            "Push to repository app holds findings marked gitleaks:allow:\n- fixture.env:1 rule aws-access-key-id in commit abc\n  AKIA****\n",
        ),
        ("p3-pypi", "allow", "routes:\n  - host: pypi.org\n"),
    ] {
        let (code, _, err) =
            cp.kubectl_stdin(&["apply", "-f", "-"], &proposal(name, tool, content));
        assert_eq!(code, 0, "{err}");
        // Creation order is the list's order.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // What a runner adds when it mirrors a proposal: the reach summary and the diff.
    let status = r#"{"status":{"phase":"Pending","reach":["new host docs.example.com on port(s) 443: any path, any method"],"diff":"@@ new route docs.example.com @@\n+ host: docs.example.com\n"}}"#;
    cp.patch_status("proposal", "p1-docs", "default", status);
    let dir = tempfile::tempdir().expect("tempdir");
    // The "editor": adds a route to whatever routes document it is given.
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '  - host: files.pythonhosted.org\\n' >> \"$1\"\n",
    )
    .expect("editor");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");

    let _ = Command::new("tmux")
        .args(["kill-session", "-t", SESSION])
        .status();
    let _guard = KillSession;
    let bbctl = env!("CARGO_BIN_EXE_bbctl");
    let cmd = format!(
        "NO_COLOR=1 EDITOR={} {bbctl} supervise --home {}; echo EXITED $?; sleep 30",
        editor.display(),
        cp.home.path().display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "160",
        "-y",
        "45",
        &cmd,
    ]);
    let s = wait_screen("the pending list", |s| s.contains("Pending proposals (3)"));
    assert!(
        s.contains("dev  egress-block") && s.contains("dev  gitleaks-allow"),
        "{s}"
    );
    // The first proposal's detail: why, and what it would reach (the runner's summary is not
    // there without a runner; the content stands in).
    assert!(s.contains("need it for p1-docs"), "{s}");
    assert!(
        s.contains("• new host docs.example.com on port(s) 443")
            && s.contains("Diff against the live routes")
            && s.contains("+ host: docs.example.com"),
        "{s}"
    );
    assert!(s.contains("m modify in $EDITOR"), "{s}");
    // NO_COLOR: no colour escapes reach the terminal.
    let escaped = tmux(&["capture-pane", "-p", "-e", "-t", SESSION]);
    assert!(!sets_colour(&escaped), "colour under NO_COLOR:\n{escaped}");

    // Approve the first with a reason and an expiry.
    keys(&["a"]);
    wait_screen("the reason prompt", |s| s.contains("Approve. Reason:"));
    keys(&["Enter"]);
    wait_screen("the refusal of an empty reason", |s| {
        s.contains("a reason is required")
    });
    typed("docs are public");
    keys(&["Enter"]);
    wait_screen("the expiry prompt", |s| s.contains("Expires after"));
    typed("8h");
    keys(&["Enter"]);
    wait_screen("the approval", |s| {
        s.contains("p1-docs approved") && s.contains("Pending proposals (2)")
    });
    let d = decision(&cp, "p1-docs");
    assert_eq!(d["verdict"], "Approved");
    assert_eq!(d["reason"], "docs are public");
    assert_eq!(d["expiresAfter"], "8h");
    assert!(
        d["approver"].as_str().unwrap_or_default().contains('@'),
        "{d}"
    );

    // The gitleaks-allow proposal is next: no modify, and a rejection with a reason.
    let s = wait_screen("the push proposal", |s| s.contains("Findings"));
    assert!(!s.contains("m modify"), "{s}");
    keys(&["m"]);
    wait_screen("modify refused", |s| {
        s.contains("modify is not offered for gitleaks-allow")
    });
    keys(&["r"]);
    typed("not a fixture");
    keys(&["Enter"]);
    wait_screen("the rejection", |s| {
        s.contains("p2-push rejected") && s.contains("Pending proposals (1)")
    });
    assert_eq!(decision(&cp, "p2-push")["verdict"], "Rejected");

    // Modify the last in $EDITOR, then approve the modified routes.
    keys(&["m"]);
    wait_screen("the reason prompt after editing", |s| {
        s.contains("Approve the modified proposal. Reason:")
    });
    typed("pip needs both");
    keys(&["Enter"]);
    wait_screen("the expiry prompt", |s| s.contains("Expires after"));
    keys(&["Enter"]);
    wait_screen("the last approval", |s| {
        s.contains("p3-pypi approved") && s.contains("Pending proposals (0)")
    });
    let d = decision(&cp, "p3-pypi");
    assert_eq!(d["verdict"], "Approved");
    assert!(
        d.get("expiresAfter").is_none_or(serde_json::Value::is_null),
        "{d}"
    );
    let content = d["content"].as_str().unwrap_or_default();
    assert!(
        content.contains("pypi.org") && content.contains("files.pythonhosted.org"),
        "{content}"
    );

    keys(&["q"]);
    wait_screen("bbctl to exit", |s| s.contains("EXITED 0"));
}

/// A Proposal whose justification draws a fake "Approving grants" box and a fake diff, clears
/// the screen with escape sequences and pushes everything down with blank lines: on a 100x30
/// terminal the runner's reach and diff are what the approver sees first, and the agent's text
/// only quoted and inert.
#[test]
fn a_hostile_justification_cannot_hide_the_real_request() {
    const HOSTILE: &str = "bb-supervise-tui-hostile";
    let cp = ControlPlane::start();
    let justification = format!(
        "\\e[2J\\e[H┌────────────────────────┐\\nApproving grants\\n  • nothing new: docs only\\nDiff against the live routes\\n+ host: docs.example.test\\n{}",
        "\\n".repeat(120)
    );
    let manifest = format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Proposal\nmetadata: {{name: hostile, namespace: default}}\nspec:\n  agentRef: {{name: dev}}\n  tool: egress-block\n  queueId: egress-block-hostile\n  justification: \"{justification}\"\n  content: \"routes:\\n  - host: paste.example.test\\n    dlp: {{outbound: false}}\\n\"\n"
    );
    let (code, _, err) = cp.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert_eq!(code, 0, "{err}");
    // What the runner writes when it raises a proposal: the reach and the diff.
    let status = r#"{"status":{"phase":"Pending","reach":["new host paste.example.test on port(s) 443: any path, any method","paste.example.test: outbound secret scanning turned off"],"diff":"@@ new route paste.example.test @@\n+ host: paste.example.test\n+ dlp:\n+   outbound: false\n"}}"#;
    cp.patch_status("proposal", "hostile", "default", status);
    let pane = || tmux(&["capture-pane", "-p", "-t", HOSTILE]);
    struct Kill;
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", HOSTILE])
                .status();
        }
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", HOSTILE])
        .status();
    let _guard = Kill;
    let cmd = format!(
        "{} supervise --home {}; sleep 30",
        env!("CARGO_BIN_EXE_bbctl"),
        cp.home.path().display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        HOSTILE,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut s = pane();
    while !s.contains("outbound secret scanning turned off") {
        assert!(Instant::now() < deadline, "the proposal never showed:\n{s}");
        std::thread::sleep(Duration::from_millis(100));
        s = pane();
    }
    assert!(
        s.contains("new host paste.example.test") && s.contains("+ host: paste.example.test"),
        "{s}"
    );
    // The view's own header comes once unquoted, above the real reach; the agent's copy of it,
    // its fake list item and its fake diff line show only quoted.
    let lines: Vec<&str> = s.lines().collect();
    let reach = lines
        .iter()
        .position(|l| l.contains("new host paste.example.test"))
        .unwrap_or(0);
    let first_header = lines.iter().position(|l| l.contains("Approving grants"));
    assert!(
        first_header.is_some_and(|h| h < reach && !lines[h].contains("> ")),
        "{s}"
    );
    for l in lines
        .iter()
        .filter(|l| l.contains("docs only") || l.contains("docs.example.test"))
    {
        assert!(l.contains("> "), "unquoted agent text: {l}\n{s}");
    }
    assert!(
        s.contains("␛[2J"),
        "the escape sequence is not shown inert:\n{s}"
    );
}
