//! docs/resources.md must document every field of both schemas: adding a field without its
//! documentation fails here.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

const SECRET_SOURCE: &[&str] = &["hostEnv", "secretKeyRef", "tokenFile"];

fn walk(s: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    if let Some(props) = &s.properties {
        // A secret source (possibly flattened next to other fields, as in `auth`) is documented
        // once under "Secret sources".
        let is_source = SECRET_SOURCE.iter().all(|k| props.contains_key(*k));
        for (k, v) in props {
            if is_source && SECRET_SOURCE.contains(&k.as_str()) {
                continue;
            }
            let p = format!("{path}.{k}");
            out.push(p.clone());
            walk(v, &p, out);
        }
    } else if let Some(JSONSchemaPropsOrBool::Schema(v)) = &s.additional_properties {
        walk(v, &format!("{path}.<name>"), out);
    } else if let Some(JSONSchemaPropsOrArray::Schema(v)) = &s.items {
        walk(v, &format!("{path}[]"), out);
    }
}

#[test]
fn every_spec_field_is_documented() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/resources.md"),
    )
    .expect("docs/resources.md");
    let mut missing = Vec::new();
    for crd in bb_crds::crd::all() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema");
        let props = schema.properties.as_ref().expect("properties");
        let mut paths = Vec::new();
        walk(&props["spec"], "spec", &mut paths);
        for top in ["conditions", "observedGeneration", "message"] {
            paths.push(format!("status.{top}"));
        }
        for p in paths {
            if !doc.contains(&format!("`{p}`")) && !doc.contains(&format!("`{p}` (")) {
                missing.push(format!("{} {p}", crd.spec.names.kind));
            }
        }
    }
    for source in SECRET_SOURCE {
        if !doc.contains(&format!("| `{source}` |")) {
            missing.push(format!("secret source {source}"));
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented in docs/resources.md: {missing:#?}"
    );
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README's layout table names exactly the top-level directories that exist.
#[test]
fn readme_layout_table_matches_the_tree() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let layout = readme
        .split("## Layout")
        .nth(1)
        .expect("README has a Layout section");
    let named: Vec<String> = layout
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(|d| d.trim_end_matches('/').to_string())
        .collect();
    assert!(!named.is_empty(), "no rows found in README's layout table");
    let missing: Vec<&String> = named
        .iter()
        .filter(|d| !repo_root().join(d).is_dir())
        .collect();
    assert!(
        missing.is_empty(),
        "README's layout table names directories that do not exist: {missing:?}"
    );
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(repo_root()).expect("repo root") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir()
            && !name.starts_with('.')
            && name != "target"
            && !named
                .iter()
                .any(|d| d == &name || d.starts_with(&format!("{name}/")))
        {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "top-level directories missing from README's layout table: {unlisted:?}"
    );
}

/// Every repository file the docs link to or name in code (`hack/x.sh`, `docs/y.md`) exists.
#[test]
fn docs_cite_only_files_that_exist() {
    let mut pages = vec![repo_root().join("README.md")];
    for entry in std::fs::read_dir(repo_root().join("docs")).expect("docs/") {
        pages.push(entry.expect("entry").path());
    }
    let mut broken = Vec::new();
    for page in pages
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(page).expect("read");
        let dir = page.parent().expect("parent");
        // Markdown links, relative to the page.
        for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(target).exists() {
                broken.push(format!("{}: link {target}", page.display()));
            }
        }
        // Repository paths in code spans, relative to the root.
        for (i, span) in text.split('`').enumerate() {
            let looks_like_repo_file = i % 2 == 1
                && span.contains('/')
                && !span.contains([' ', '*'])
                && !span.starts_with(['/', '~', '$', '.', '<'])
                && [".rs", ".sh", ".md", ".py", ".toml"]
                    .iter()
                    .any(|ext| span.ends_with(ext));
            if looks_like_repo_file && !repo_root().join(span).exists() {
                broken.push(format!("{}: `{span}`", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "docs cite files that do not exist:\n{}",
        broken.join("\n")
    );
}
