//! `convert` on a copy of the reference layout must yield objects that validate, with every
//! reference key mapped to its field.

use std::path::{Path, PathBuf};

use bb_crds::Resource;
use bb_crds::convert::{ManifestKind, SourceFile, convert};
use bb_crds::manifest::validate_bottle_set;

fn fixture() -> Vec<SourceFile> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference");
    let mut out = Vec::new();
    for (dir, kind) in [
        ("bottles", ManifestKind::Bottle),
        ("agents", ManifestKind::Agent),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("fixture dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for p in files {
            out.push(SourceFile {
                path: Path::new(dir)
                    .join(p.file_name().expect("name"))
                    .display()
                    .to_string(),
                kind,
                contents: std::fs::read_to_string(&p).expect("read"),
            });
        }
    }
    out
}

fn value_of(resources: &[Resource], kind: &str, name: &str) -> serde_json::Value {
    let r = resources
        .iter()
        .find(|r| r.kind() == kind && r.name() == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"));
    r.to_json().expect("json")
}

#[test]
fn reference_layout_converts_to_valid_objects() {
    let out = convert(&fixture()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.warnings,
        vec![
            "bottles/NOTES.md: skipped: manifest file names must match [a-z][a-z0-9-]*.md",
            "agents/dev.md: ignored Claude Code frontmatter key 'description'",
        ]
    );
    let names: Vec<String> = out
        .resources
        .iter()
        .map(|r| format!("{}/{}", r.kind(), r.name()))
        .collect();
    assert_eq!(
        names,
        vec![
            "Bottle/aider",
            "Bottle/claude",
            "Bottle/codex",
            "Bottle/dev",
            "Bottle/pi",
            "Agent/dev",
            "Agent/review"
        ]
    );
    assert!(validate_bottle_set(&out.resources, &Default::default()).is_empty());

    let dev = value_of(&out.resources, "Bottle", "dev");
    assert_eq!(
        dev["spec"]["env"],
        serde_json::json!([
            {"name": "GITEA_URL", "value": "https://gitea.dideric.is"},
            {"name": "LICENSE_KEY", "valueFrom": {"prompt": {"message": "License key for the build tools"}}},
            {"name": "SENTRY_DSN", "valueFrom": {"hostEnv": {"name": "BOT_BOTTLE_SENTRY_DSN"}}},
        ])
    );
    let route = &dev["spec"]["egress"]["routes"][0];
    assert_eq!(
        route["auth"],
        serde_json::json!({"scheme": "token", "hostEnv": "BOT_BOTTLE_GITEA_TOKEN"})
    );
    assert_eq!(
        route["dlp"],
        serde_json::json!({"outbound": ["token_patterns", "known_secrets"], "inbound": false})
    );
    assert_eq!(
        dev["spec"]["egress"]["routes"][1]["git"],
        serde_json::json!({"fetch": true})
    );
    assert_eq!(
        dev["spec"]["gitGate"]["repos"]["bot-bottle"]["key"],
        serde_json::json!({"provider": "gitea", "forgeToken": {"hostEnv": "BOT_BOTTLE_GITEA_TOKEN"}})
    );
    assert_eq!(
        dev["spec"]["gitGate"]["repos"]["notes"]["hostKey"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    );

    let claude = value_of(&out.resources, "Bottle", "claude");
    assert_eq!(
        claude["spec"]["agentProvider"],
        serde_json::json!({"template": "claude", "authToken": {"hostEnv": "BOT_BOTTLE_CLAUDE_OAUTH_TOKEN"}})
    );
    let pi = value_of(&out.resources, "Bottle", "pi");
    assert_eq!(
        pi["spec"]["agentProvider"]["settings"]["apiKeyFrom"],
        serde_json::json!({"hostEnv": "OPENROUTER_API_KEY"})
    );
    assert_eq!(
        pi["spec"]["agentProvider"]["settings"]["maxTokensField"],
        "max_completion_tokens"
    );
    let aider = value_of(&out.resources, "Bottle", "aider");
    assert_eq!(
        aider["spec"]["agentProvider"],
        serde_json::json!({"template": "custom", "dockerfile": "~/.bot-bottle/contrib/aider/Dockerfile", "command": ["aider"]})
    );

    let agent = value_of(&out.resources, "Agent", "dev");
    assert_eq!(
        agent["spec"],
        serde_json::json!({
            "bottleRef": {"name": "dev"},
            "prompt": "You help maintain Gitea-hosted projects.\nKeep changes small and explain them.",
            "skills": ["code-review", "gitea-pr"],
            "gitUser": {"name": "Claude (dev)"},
        })
    );
}

#[test]
fn converted_objects_still_face_the_full_rules() {
    let mut files = fixture();
    let bad = files
        .iter_mut()
        .find(|f| f.path == "bottles/codex.md")
        .expect("codex");
    bad.contents = "---\nagent_provider: {template: codex, auth_token: T}\negress: {routes: [{host: Bad.com}]}\n---\n".into();
    let err = convert(&files).expect_err("invalid").0;
    assert_eq!(
        err,
        vec![
            "bottles/codex.md: Bottle/codex spec.agentProvider.authToken: is only supported for template 'claude'; template 'codex' does not use it (use forwardHostCredentials)",
            "bottles/codex.md: Bottle/codex spec.egress.routes[0].host: 'Bad.com' must be lowercase ('bad.com')",
        ]
    );
}

/// A problem the reference's rules report is not repeated by the converted object's validation,
/// and does not hide that validation's other findings.
#[test]
fn reference_problems_and_validation_problems_are_reported_together_once() {
    let files = [SourceFile {
        path: "bottles/b.md".into(),
        kind: ManifestKind::Bottle,
        contents: "---\nsupervise: 1\negress:\n  routes:\n    - host: ok.example.com\n      auth: {scheme: Bearer}\n    - host: \"http://x.example.com\"\n---\n".into(),
    }];
    let errors = convert(&files).expect_err("invalid").0;
    assert_eq!(
        errors,
        vec![
            "bottles/b.md: bottle 'b' supervise must be a boolean",
            "bottles/b.md: bottle 'b' egress.routes[0] auth missing required field 'token_ref'",
            "bottles/b.md: Bottle/b spec.egress.routes[1].host: 'http://x.example.com' must be a bare hostname without a scheme, e.g. 'api.example.com'",
        ]
    );
}

/// A route the reference cannot read does not hide the other routes' problems: the converted
/// object is still checked without it, and the problems keep their own indices.
#[test]
fn a_broken_element_does_not_hide_the_rest_of_the_object() {
    let files = [SourceFile {
        path: "bottles/b.md".into(),
        kind: ManifestKind::Bottle,
        contents: "---\nsupervise: 1\negress:\n  routes:\n    - host: \"a.com:443\"\n    - \"http://x.example.com\"\n    - host: \"http://y.example.com\"\nenv: [1, 2]\n---\n".into(),
    }];
    let errors = convert(&files).expect_err("invalid").0;
    assert_eq!(
        errors,
        vec![
            "bottles/b.md: bottle 'b' supervise must be a boolean",
            "bottles/b.md: bottle 'b' env must be an object (was list)",
            "bottles/b.md: bottle 'b' egress.routes[1] must be an object (was str)",
            "bottles/b.md: Bottle/b spec.egress.routes[1].host: required value",
            "bottles/b.md: Bottle/b spec.egress.routes[0].host: 'a.com:443' must not include a port; list ports in the route's `ports` (default [443], or [80] with plainHttp)",
            "bottles/b.md: Bottle/b spec.egress.routes[2].host: 'http://y.example.com' must be a bare hostname without a scheme, e.g. 'api.example.com'",
        ]
    );
}
