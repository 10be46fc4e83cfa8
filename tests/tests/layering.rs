//! The crates' dependency rules (docs/architecture.md), checked against `cargo metadata`: a
//! change that makes the CLI talk to a runtime, or the sidecar link Kubernetes, fails here.
//! Rules the code does not meet yet are listed as known gaps, and each gap must still be open:
//! closing one fails the test until its entry is removed, so the list cannot go stale.

use std::collections::{BTreeMap, BTreeSet};

use bb_e2e::workspace_root;

/// (package, dependency, direct only) pairs that must not exist.
const FORBIDDEN: &[(&str, &str, bool)] = &[
    // bb-crds is the bottom layer: it knows none of the others.
    ("bb-crds", "bb-controller", false),
    ("bb-crds", "bb-sidecar", false),
    ("bb-crds", "bbctl", false),
    // The sidecar is its own binary: no controller, no runtime client.
    ("bb-sidecar", "bb-controller", false),
    ("bb-sidecar", "bollard", false),
    // The security chokepoint links no Kubernetes crates.
    ("bb-sidecar", "kube", false),
    ("bb-sidecar", "k8s-openapi", false),
    ("bb-sidecar", "schemars", false),
    // The controller never reaches up into the CLI.
    ("bb-controller", "bbctl", false),
    // Only the runner (the controller) talks to a runtime; the CLI goes through it.
    ("bbctl", "bollard", true),
];

/// Rules above that do not hold yet (issue 13 closes them).
const KNOWN_GAPS: &[(&str, &str)] = &[
    ("bb-sidecar", "kube"),
    ("bb-sidecar", "k8s-openapi"),
    ("bb-sidecar", "schemars"),
    ("bbctl", "bollard"),
];

struct Graph {
    /// package id -> name
    names: BTreeMap<String, String>,
    /// package id -> ids of its normal (not dev, not build) dependencies
    normal: BTreeMap<String, Vec<String>>,
}

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

fn metadata() -> Graph {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let mut names = BTreeMap::new();
    for p in v["packages"].as_array().expect("packages") {
        names.insert(
            p["id"].as_str().unwrap_or_default().to_string(),
            p["name"].as_str().unwrap_or_default().to_string(),
        );
    }
    let mut normal = BTreeMap::new();
    for n in v["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let deps = n["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_string))
            .collect();
        normal.insert(n["id"].as_str().unwrap_or_default().to_string(), deps);
    }
    Graph { names, normal }
}

impl Graph {
    fn id(&self, name: &str) -> String {
        self.names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no package {name} in the workspace graph"))
    }

    /// Names `name` depends on: directly, or through any chain of normal dependencies.
    fn depends(&self, name: &str, direct: bool) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.id(name)];
        while let Some(id) = todo.pop() {
            for d in self.normal.get(&id).into_iter().flatten() {
                if seen.insert(d.clone()) && !direct {
                    todo.push(d.clone());
                }
            }
        }
        seen.iter()
            .filter_map(|id| self.names.get(id).cloned())
            .collect()
    }
}

#[test]
fn crates_depend_only_downwards() {
    let g = metadata();
    // The check must be able to see a dependency at all.
    assert!(
        g.depends("bbctl", true).contains("bb-controller"),
        "the graph is unreadable: bbctl does not depend on bb-controller?"
    );
    let mut broken = Vec::new();
    let mut closed = Vec::new();
    for &(pkg, dep, direct) in FORBIDDEN {
        let present = g.depends(pkg, direct).contains(dep);
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
