//! bbctl as a user runs it: real binary, real files, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bbctl(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bbctl"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run bbctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_examples() {
    let (code, out, err) = bbctl(&["validate", "-f", "examples", "-R"], &root());
    assert_eq!(code, 0, "{err}");
    for line in [
        "bottle/claude valid",
        "bottle/gitea-dev valid",
        "agent/issue-42 valid",
    ] {
        assert!(out.contains(line), "{out}");
    }
}

#[test]
fn validate_reports_every_error_with_file_and_path_and_exits_6() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: child}\nspec:\n  extends: base\n  egress: {routes: [{host: a.com, auth: {scheme: basic}}]}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {bottleRef: {name: child}, color: teal}\n",
    )
    .expect("write");
    let (code, out, err) = bbctl(&["validate", "-f", "bad.yaml"], dir.path());
    assert_eq!(code, 6, "stdout: {out}\nstderr: {err}");
    assert!(
        out.is_empty(),
        "nothing is reported valid when the set is not: {out}"
    );
    assert_eq!(
        err,
        "error: bad.yaml: Bottle/child is invalid (1 error)\n  - spec.egress.routes[0].auth.scheme: unsupported value \"basic\"; supported values: \"Bearer\", \"token\"\n\
         bad.yaml: Agent/a is invalid (1 error)\n  - spec.color: unsupported value \"teal\"; supported values: \"red\", \"green\", \"yellow\", \"blue\", \"magenta\"\n"
    );
    // Fix the schema errors: the extends rule is now what is left.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: child}\nspec: {extends: base}\n",
    )
    .expect("write");
    let (code, _, err) = bbctl(&["validate", "-f", "bad.yaml"], dir.path());
    assert_eq!(code, 6);
    assert!(
        err.contains("spec.extends: bottle 'child' extends 'base' which is not defined; available bottles: child"),
        "{err}"
    );
}

#[test]
fn missing_input_is_not_found_and_no_backtrace() {
    let (code, _, err) = bbctl(&["validate", "-f", "nope.yaml"], &root());
    assert_eq!(code, 3);
    assert!(err.starts_with("error: nope.yaml: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn crds_prints_the_chart() {
    let (code, out, _) = bbctl(&["crds"], &root());
    assert_eq!(code, 0);
    let mut want = String::new();
    for f in [
        "bottles.bot-bottle.dev.yaml",
        "agents.bot-bottle.dev.yaml",
        "proposals.bot-bottle.dev.yaml",
        "agentpools.bot-bottle.dev.yaml",
    ] {
        want.push_str("---\n");
        want.push_str(
            &std::fs::read_to_string(root().join("charts/bot-bottle/crds").join(f)).expect("read"),
        );
    }
    assert_eq!(out, want);
}

#[test]
fn convert_output_validates_and_round_trips_through_validate() {
    let fixture = root().join("crds/tests/fixtures/reference");
    let (code, out, err) = bbctl(&["convert", "-f", fixture.to_str().expect("utf8")], &root());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("NOTES.md: skipped"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("converted.yaml"), &out).expect("write");
    let (code, vout, verr) = bbctl(&["validate", "-f", "converted.yaml"], dir.path());
    assert_eq!(code, 0, "{verr}");
    assert_eq!(vout.lines().count(), 7, "{vout}");

    let (code, json, _) = bbctl(
        &[
            "convert",
            "-f",
            fixture.to_str().expect("utf8"),
            "-o",
            "json",
        ],
        &root(),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json list");
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(7));
}

#[test]
fn convert_needs_the_reference_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("x.md"), "---\nbottle: b\n---\n").expect("write");
    let (code, _, err) = bbctl(&["convert", "-f", "x.md"], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot tell whether this is a bottle or an agent"),
        "{err}"
    );
    let (code, _, err) = bbctl(&["convert", "-f", "."], dir.path());
    assert_eq!(code, 3);
    assert!(
        err.contains("no bottles/ or agents/ directory here"),
        "{err}"
    );
}

#[test]
fn demo_validates_the_examples_and_never_prints_secret_sources_values() {
    let (code, out, err) = bbctl(&["demo", "--offline"], &root());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("bottle/gitea-dev  (chain: claude -> gitea-dev)"),
        "{out}"
    );
    assert!(
        out.contains(
            "allow gitea.example.com  injects token from secret bot-bottle-system/gitea-token"
        ),
        "{out}"
    );
}

/// A reference layout with problems in several files, of both kinds the converter finds (the
/// reference's own rules and the converted objects' validation): all are reported in one run,
/// grouped by file, the exit code is 6 and nothing reaches stdout.
#[test]
fn convert_and_validate_report_every_problem_of_every_reference_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refdir = dir.path().join("ref");
    std::fs::create_dir_all(refdir.join("bottles")).expect("mkdir");
    std::fs::create_dir_all(refdir.join("agents")).expect("mkdir");
    std::fs::write(
        refdir.join("bottles/dev.md"),
        "---\negress:\n  routes:\n    - host: \"https://api.example.com\"\n    - host: ok.example.com\n      bogus: 1\n      auth: {scheme: Bearer}\n    - host: \"*.example.com\"\nenv:\n  FOO: 3\nsupervise: \"yes\"\n---\n",
    )
    .expect("write");
    std::fs::write(
        refdir.join("bottles/ok.md"),
        "---\negress:\n  routes:\n    - host: api.example.com\n---\n",
    )
    .expect("write");
    std::fs::write(
        refdir.join("agents/a.md"),
        "---\nbottle: nope\ncolour: red\n---\nDo it.\n",
    )
    .expect("write");
    let expected = [
        "bottles/dev.md: bottle 'dev' supervise must be a boolean",
        "bottles/dev.md: bottle 'dev' env.FOO must be a string (was int)",
        "bottles/dev.md: bottle 'dev' egress.routes[1] has unknown key 'bogus'",
        "bottles/dev.md: bottle 'dev' egress.routes[1] auth missing required field 'token_ref'",
        "bottles/dev.md: Bottle/dev spec.egress.routes[0].host: 'https://api.example.com' must be a bare hostname",
        "bottles/dev.md: Bottle/dev spec.egress.routes[2].host: '*.example.com': wildcards are not supported",
        "agents/a.md: agent 'a' has unknown key 'colour'",
        "agents/a.md: agent 'a' names bottle 'nope' which is not defined. Available: dev, ok",
    ];
    for verb in ["convert", "validate"] {
        let (code, out, err) = bbctl(&[verb, "-f", "ref"], dir.path());
        assert_eq!(code, 6, "{verb}: {err}");
        assert!(out.is_empty(), "{verb} wrote output: {out}");
        let lines: Vec<&str> = err.trim_start_matches("error: ").lines().collect();
        assert_eq!(lines.len(), expected.len(), "{verb}:\n{err}");
        for (line, want) in lines.iter().zip(expected) {
            assert!(
                line.contains(want),
                "{verb}: expected {want:?}, got {line:?}\n{err}"
            );
        }
    }
}
