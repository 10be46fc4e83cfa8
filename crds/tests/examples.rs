//! The shipped examples are the first thing users copy: they must validate as one set, and
//! reading them into the Rust types and writing them back must lose nothing.

use std::path::PathBuf;

use bb_crds::Resource;
use bb_crds::manifest::{parse_resources, yaml_documents};

fn example_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    for sub in ["bottles", "agents", "pools"] {
        let dir = root.join(sub);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    files
}

fn all_text() -> String {
    example_files()
        .iter()
        .map(|p| format!("---\n{}", std::fs::read_to_string(p).expect("read example")))
        .collect()
}

#[test]
fn examples_cover_the_promised_bottles_and_validate_together() {
    let resources = parse_resources(&all_text()).unwrap_or_else(|e| panic!("{e}"));
    let mut bottles: Vec<&str> = resources
        .iter()
        .filter(|r| matches!(r, Resource::Bottle(_)))
        .map(Resource::name)
        .collect();
    bottles.sort_unstable();
    assert_eq!(
        bottles,
        vec!["claude", "codex", "gitea-dev", "pi-openrouter"]
    );
    let child = resources
        .iter()
        .find_map(|r| match r {
            Resource::Bottle(b) if r.name() == "gitea-dev" => Some(b),
            _ => None,
        })
        .expect("gitea-dev");
    assert_eq!(
        child.spec.extends.as_deref(),
        Some("claude"),
        "a task bottle extends the base"
    );
    assert!(resources.iter().any(|r| matches!(r, Resource::Agent(_))));
}

#[test]
fn round_trip_is_lossless() {
    let docs = yaml_documents(&all_text()).expect("yaml");
    let resources = parse_resources(&all_text()).expect("valid");
    assert_eq!(docs.len(), resources.len());
    for (doc, res) in docs.iter().zip(&resources) {
        let back = res.to_json().expect("serialize");
        assert_eq!(
            &back,
            doc,
            "{} changed in a YAML -> type -> YAML round trip",
            res.name()
        );
        // And once more through YAML text, as `bbctl get -o yaml` would print it.
        let text = serde_yaml::to_string(&back).expect("to yaml");
        let again = yaml_documents(&text).expect("reparse");
        assert_eq!(again.first(), Some(doc));
    }
}
