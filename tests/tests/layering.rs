//! The crates' dependency rules (docs/architecture.md), checked against `cargo tree`: a
//! change that makes the CLI talk to a runtime, or the sidecar link Kubernetes, fails here.
//! Rules the code does not meet yet are listed as known gaps, and each gap must still be open:
//! closing one fails the test until its entry is removed, so the list cannot go stale.

use std::collections::BTreeSet;
use std::process::Command;

use bb_e2e::workspace_root;

/// (package, dependency, direct only) pairs that must not exist.
const FORBIDDEN: &[(&str, &str, bool)] = &[
    // bb-policy is the bottom layer, and kube-free; bb-crds builds on it alone.
    ("bb-policy", "bb-crds", false),
    ("bb-policy", "kube", false),
    ("bb-policy", "k8s-openapi", false),
    ("bb-policy", "schemars", false),
    ("bb-crds", "bb-controller", false),
    ("bb-crds", "bb-sidecar", false),
    ("bb-crds", "bbctl", false),
    // The sidecar is its own binary: no controller, no resource model, no runtime client.
    ("bb-sidecar", "bb-controller", false),
    ("bb-sidecar", "bb-crds", false),
    ("bb-sidecar", "bollard", false),
    // The security chokepoint links no Kubernetes crates.
    ("bb-sidecar", "kube", false),
    ("bb-sidecar", "k8s-openapi", false),
    // The controller never reaches up into the CLI.
    ("bb-controller", "bbctl", false),
    // Only the runner (the controller) talks to a runtime; the CLI goes through it.
    ("bbctl", "bollard", true),
];

/// Rules above that do not hold yet (none today; a new one names the issue that closes it).
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// This machine's target triple: the graph is resolved for it only, so the crates other
/// platforms would pull need not be downloaded.
fn host_triple() -> String {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// The crates `pkg` depends on through normal (not dev, not build) dependencies, with the
/// features `cargo build -p pkg` would enable (what its binary links), as `cargo tree` resolves
/// them for this host; only its direct dependencies when `direct`.
fn depends(pkg: &str, direct: bool) -> BTreeSet<String> {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal",
        "--prefix",
        "none",
    ])
    .args(["--format", "{p}", "--target", &host_triple(), "-p", pkg])
    .current_dir(workspace_root());
    if direct {
        cmd.args(["--depth", "1"]);
    }
    let out = cmd.output().expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {pkg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1) // the package itself
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    // The check must be able to see a dependency at all.
    assert!(
        depends("bbctl", true).contains("bb-controller"),
        "the graph is unreadable: bbctl does not depend on bb-controller?"
    );
    let mut broken = Vec::new();
    let mut closed = Vec::new();
    for &(pkg, dep, direct) in FORBIDDEN {
        let present = depends(pkg, direct).contains(dep);
        let known = KNOWN_GAPS.contains(&(pkg, dep));
        match (present, known) {
            (true, false) => broken.push(format!(
                "{pkg} depends on {dep}{}",
                if direct { " directly" } else { "" }
            )),
            (false, true) => closed.push(format!("{pkg} -> {dep}")),
            _ => {}
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken (see docs/architecture.md): {broken:?}"
    );
    assert!(
        closed.is_empty(),
        "known gaps now closed: remove them from KNOWN_GAPS: {closed:?}"
    );
}

/// The sidecar parses policies with the types alone: the schema the CRDs carry stays out of it.
/// (schemars itself arrives with rmcp, whose MCP tools describe their input as JSON Schema.)
#[test]
fn the_sidecar_links_the_policy_types_without_their_schema() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-e",
            "features",
            "--prefix",
            "none",
            "--target",
            &host_triple(),
        ])
        .args(["-p", "bb-sidecar"])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo tree");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bb-policy feature \"default\""),
        "the graph is unreadable:\n{text}"
    );
    assert!(
        !text.contains("bb-policy feature \"schema\""),
        "bb-sidecar builds bb-policy with its schema feature"
    );
}
