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
