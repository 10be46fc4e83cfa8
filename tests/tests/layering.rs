//! The crates' dependency rules (docs/architecture.md), checked against `cargo metadata` and
//! `cargo tree`: a change that makes the CLI link a runtime, a runtime reach into the runner, or
//! the sidecar link Kubernetes, fails here. Rules the code does not meet yet are listed as known
//! gaps, and each gap must still be open: closing one fails the test until its entry is removed,
//! so the list cannot go stale.

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
    // The sidecar is its own binary: no controller, no resource model, no runtime client.
    ("bb-sidecar", "bb-controller", false),
    ("bb-sidecar", "bb-crds", false),
    ("bb-sidecar", "bollard", false),
    // The security chokepoint links no Kubernetes crates.
    ("bb-sidecar", "kube", false),
    ("bb-sidecar", "k8s-openapi", false),
    // Only a runtime crate talks to its engine; the CLI goes through bb-controller.
    ("bbctl", "bollard", true),
];

/// The arrows between this workspace's crates (normal dependencies): each crate may depend on
/// the ones listed and on no other workspace crate. Everything else is forbidden.
const ALLOWED: &[(&str, &[&str])] = &[
    ("bb-policy", &[]),
    ("bb-crds", &["bb-policy"]),
    ("bb-sidecar", &["bb-policy"]),
    ("bb-home", &["bb-crds"]),
    ("bb-apiserver", &["bb-crds", "bb-home"]),
    ("bb-backend", &["bb-crds", "bb-home"]),
    ("bb-docker", &["bb-crds", "bb-backend"]),
    ("bb-apple", &["bb-crds", "bb-backend"]),
    ("bb-smolvm", &["bb-crds", "bb-backend", "bb-docker"]),
    ("bb-runner", &["bb-crds", "bb-home", "bb-backend"]),
    (
        "bb-controller",
        &[
            "bb-crds",
            "bb-home",
            "bb-apiserver",
            "bb-backend",
            "bb-docker",
            "bb-apple",
            "bb-smolvm",
            "bb-runner",
        ],
    ),
    (
        "bbctl",
        &["bb-crds", "bb-home", "bb-runner", "bb-controller"],
    ),
    ("bb-e2e", &[]),
];

/// The workspace's packages from `cargo metadata`: name, manifest directory, and the workspace
/// packages each depends on through normal dependencies.
fn workspace_packages() -> Vec<(String, std::path::PathBuf, BTreeSet<String>)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let dir = std::path::Path::new(p["manifest_path"].as_str().unwrap_or_default())
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(*d))
                .map(str::to_string)
                .collect();
            (name, dir, deps)
        })
        .collect()
}

/// Every arrow between workspace crates is one `ALLOWED` names; every crate is listed there.
#[test]
fn workspace_crates_depend_only_along_allowed_arrows() {
    let packages = workspace_packages();
    // The reader sees an arrow that exists (a positive control).
    assert!(
        packages
            .iter()
            .any(|(n, _, d)| n == "bbctl" && d.contains("bb-controller")),
        "the graph is unreadable: bbctl does not depend on bb-controller?"
    );
    let mut broken = Vec::new();
    for (name, _, deps) in &packages {
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| n == name) else {
            broken.push(format!("{name} is not in ALLOWED: give it its arrows"));
            continue;
        };
        for dep in deps {
            if !allowed.contains(&dep.as_str()) {
                broken.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "arrows docs/architecture.md does not allow: {broken:#?}"
    );
}

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

/// A crate's modules, by path from its root (`[]` is lib.rs or main.rs), and their files.
fn module_tree(
    src: &std::path::Path,
) -> std::collections::BTreeMap<Vec<String>, std::path::PathBuf> {
    let mut out = std::collections::BTreeMap::new();
    let root = if src.join("lib.rs").exists() {
        "lib.rs"
    } else {
        "main.rs"
    };
    out.insert(Vec::new(), src.join(root));
    let mut stack = vec![(src.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, path)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                // A directory is a module only when something declares it (name.rs or mod.rs).
                let mut child = path.clone();
                child.push(name.clone());
                if p.join("mod.rs").exists() {
                    out.insert(child.clone(), p.join("mod.rs"));
                }
                if path.is_empty() && name == "bin" {
                    continue;
                }
                stack.push((p, child));
            } else if let Some(stem) = name.strip_suffix(".rs") {
                if matches!(stem, "mod" | "lib" | "main") && !(path.is_empty() && stem == "mod") {
                    continue;
                }
                let mut child = path.clone();
                child.push(stem.to_string());
                out.insert(child, p);
            }
        }
    }
    out
}

/// The module paths a file's code names: `crate::`, `super::` and `self::` paths and paths
/// through its own child modules, in `use` items (braces expanded) and in code. Comments,
/// re-exports (`pub use`, which are the module's interface, not what it depends on) and the
/// unit tests at the end of a file are left out.
fn referenced_paths(
    text: &str,
    module: &[String],
    children: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" //").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    // `pub use` statements end at their `;`.
    let mut kept = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest
        .find("pub use ")
        .or_else(|| rest.find("pub(crate) use "))
    {
        kept.push_str(&rest[..at]);
        rest = rest[at..].find(';').map_or("", |end| &rest[at + end + 1..]);
    }
    kept.push_str(rest);
    let mut out = Vec::new();
    for path in expand_paths(&kept) {
        let mut segs: Vec<String> = path.split("::").map(|s| s.trim().to_string()).collect();
        let absolute = match segs.first().map(String::as_str) {
            Some("crate") => segs.split_off(1),
            Some("self") => [module.to_vec(), segs.split_off(1)].concat(),
            Some("super") => {
                let mut base = module.to_vec();
                while segs.first().map(String::as_str) == Some("super") {
                    segs.remove(0);
                    base.pop();
                }
                [base, segs].concat()
            }
            Some(first) if children.contains(first) => [module.to_vec(), segs].concat(),
            _ => continue,
        };
        out.push(absolute);
    }
    out
}

/// Every `a::b::c` path in `code`, with `use` braces expanded (`x::{a, b::c}` is `x::a` and
/// `x::b::c`).
fn expand_paths(code: &str) -> Vec<String> {
    let bytes: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        // Read `seg::seg::...`, then maybe a `{ ... }` group.
        let mut j = i;
        let mut prefix = String::new();
        loop {
            let start = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            prefix.extend(&bytes[start..j]);
            if j + 1 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
                prefix.push_str("::");
                j += 2;
                if j < bytes.len() && bytes[j] == '{' {
                    let mut depth = 0;
                    let open = j;
                    while j < bytes.len() {
                        match bytes[j] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let inner: String = bytes[open + 1..j.min(bytes.len())].iter().collect();
                    for part in split_top_level(&inner) {
                        let part = part.split(" as ").next().unwrap_or("").trim();
                        if part.is_empty() || part == "self" {
                            out.push(prefix.trim_end_matches("::").to_string());
                        } else {
                            for p in expand_paths(part) {
                                out.push(format!("{prefix}{p}"));
                            }
                            if !part.contains("::") && !part.contains('{') {
                                out.push(format!("{prefix}{part}"));
                            }
                        }
                    }
                    break;
                }
                continue;
            }
            break;
        }
        if prefix.contains("::") && !prefix.ends_with("::") {
            out.push(prefix);
        }
        i = j.max(i + 1);
    }
    out.sort();
    out.dedup();
    out
}

/// `a, b::{c, d}, e` split on its top-level commas.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// The module each module's code uses (the deepest module each named path reaches), itself
/// and its own ancestors through `crate::` re-exports left out.
fn module_graph(
    src: &std::path::Path,
) -> std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let tree = module_tree(src);
    let mut graph = std::collections::BTreeMap::new();
    for (module, file) in &tree {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let children: BTreeSet<String> = tree
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
            .filter_map(|k| k.last().cloned())
            .collect();
        let mut uses = BTreeSet::new();
        for path in referenced_paths(&text, module, &children) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| tree.contains_key(p))
                .unwrap_or_default();
            if &target != module && !target.is_empty() {
                uses.insert(target);
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(
    graph: &std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        graph: &'a std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: std::collections::BTreeMap<&'a Vec<String>, (usize, usize)>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, (s.next, s.next));
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.index[w].1.min(s.index[v].1);
                if let Some(e) = s.index.get_mut(v) {
                    e.1 = low;
                }
            } else if s.on_stack.contains(w) {
                let low = s.index[w].0.min(s.index[v].1);
                if let Some(e) = s.index.get_mut(v) {
                    e.1 = low;
                }
            }
        }
        if s.index[v].0 == s.index[v].1 {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: Default::default(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// No crate's modules import each other in a circle (a module's own `mod`/`pub use` items
/// excepted): each one-concept module can be read, and moved, on its own.
#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    // The reader sees what it must: a crate with a known edge.
    let cli = module_graph(&workspace_root().join("cli/src"));
    assert!(
        cli.get(&vec!["cmd".to_string(), "run".to_string()])
            .is_some_and(|uses| uses.contains(&vec!["cmd".to_string(), "apply".to_string()])),
        "the module graph is unreadable: {cli:?}"
    );
    // And finds a circle where there is one.
    let planted = circles(&std::collections::BTreeMap::from([
        (
            vec!["a".to_string()],
            BTreeSet::from([vec!["b".to_string()]]),
        ),
        (
            vec!["b".to_string()],
            BTreeSet::from([vec!["a".to_string()]]),
        ),
    ]));
    assert_eq!(planted.len(), 1);
    let mut found = Vec::new();
    let packages = workspace_packages();
    assert!(
        packages.len() > 10,
        "the workspace is unreadable: {packages:?}"
    );
    for (_, dir, _) in packages {
        let src = dir.join("src");
        for c in circles(&module_graph(&src)) {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            found.push(format!("{}: {}", src.display(), names.join(" <-> ")));
        }
    }
    let known: BTreeSet<&str> = KNOWN_CIRCLES.iter().copied().collect();
    let new: Vec<&String> = found
        .iter()
        .filter(|f| !known.contains(f.as_str()))
        .collect();
    let closed: Vec<&&str> = KNOWN_CIRCLES
        .iter()
        .filter(|k| !found.iter().any(|f| f == *k))
        .collect();
    assert!(
        new.is_empty(),
        "import circles among a crate's modules: {new:#?}"
    );
    assert!(
        closed.is_empty(),
        "known circles now gone: remove them from KNOWN_CIRCLES: {closed:?}"
    );
}

/// Circles allowed for now (none since #31 removed the last); an entry names the issue that
/// removes it, and must still exist (as gaps must).
const KNOWN_CIRCLES: &[&str] = &[];

/// What names I/O in a file's code (comments and unit tests left out): a client, the filesystem, the
/// environment, a process, anything async, and the runner's own readers of host files.
fn io_named_in(file: &str) -> Vec<&'static str> {
    const IO: &[&str] = &[
        "async ",
        ".await",
        "kube::",
        "std::fs",
        "tokio",
        "std::env",
        "std::process",
        "Command::",
        "hyper",
        "secrets::",
        ".credential_files(",
        "static_keys(",
        "gitea::",
    ];
    let text = std::fs::read_to_string(workspace_root().join(file)).expect("read the file");
    let code: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    IO.iter().copied().filter(|w| code.contains(w)).collect()
}

/// Planning is a pure function from resources to a plan (#31): `plan.rs` reads no Secret, file,
/// environment or forge and awaits nothing. What it names is read by `resolve.rs`, a step of its
/// own.
#[test]
fn planning_has_no_io() {
    // The scan sees I/O where there is some (a positive control).
    let resolve = io_named_in("controller/runner/src/resolve.rs");
    assert!(
        resolve.contains(&".await") && resolve.contains(&"secrets::"),
        "the scan is blind: {resolve:?}"
    );
    assert_eq!(
        io_named_in("controller/runner/src/plan.rs"),
        Vec::<&str>::new(),
        "planning does I/O"
    );
}
