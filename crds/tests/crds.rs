//! The chart's CRDs are generated from the Rust types; this fails when they drift and proves the
//! checked-in schema is a real `CustomResourceDefinition` that rejects unknown fields.

use std::path::PathBuf;

use bb_crds::FieldPath;
use bb_crds::ValidationErrors;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/bot-bottle/crds")
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    for crd in bb_crds::crd::all() {
        let path = chart_dir().join(bb_crds::crd::file_name(&crd));
        let want = bb_crds::crd::to_yaml(&crd).expect("render");
        let got = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            got == want,
            "{} is out of date with the Rust types in crds/src; regenerate it with: hack/update-crds.sh",
            path.display()
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(chart_dir())
        .expect("chart crds dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "agentpools.bot-bottle.dev.yaml",
            "agents.bot-bottle.dev.yaml",
            "bottles.bot-bottle.dev.yaml",
            "proposals.bot-bottle.dev.yaml"
        ],
        "stale CRD files in the chart"
    );
}

#[test]
fn bbctl_crds_output_is_the_chart_files() {
    let all = bb_crds::crd::all_yaml().expect("render");
    let mut joined = String::new();
    for crd in bb_crds::crd::all() {
        joined.push_str("---\n");
        joined.push_str(
            &std::fs::read_to_string(chart_dir().join(bb_crds::crd::file_name(&crd)))
                .expect("read"),
        );
    }
    assert_eq!(all, joined);
}

#[test]
fn each_file_is_a_crd_whose_schema_rejects_unknown_fields() {
    for (file, kind, spec) in [
        (
            "bottles.bot-bottle.dev.yaml",
            "Bottle",
            json!({"egress": {"routes": [{"host": "a.com", "sneaky": 1}]}}),
        ),
        (
            "agents.bot-bottle.dev.yaml",
            "Agent",
            json!({"bottleRef": {"name": "b"}, "sneaky": 1}),
        ),
    ] {
        let text = std::fs::read_to_string(chart_dir().join(file)).expect("read");
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).expect("a CustomResourceDefinition");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.group, "bot-bottle.dev");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "status subresource"
        );
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema");
        let spec_schema = &schema.properties.as_ref().expect("properties")["spec"];
        let mut errs = ValidationErrors::default();
        bb_crds::structural::validate(spec_schema, &spec, &FieldPath::root("spec"), &mut errs);
        assert_eq!(errs.errors.len(), 1, "{errs}");
        assert!(errs.errors[0].path.ends_with(".sneaky"), "{errs}");
        assert!(
            errs.errors[0].message.starts_with("unknown field"),
            "{errs}"
        );
    }
}

#[test]
fn printer_columns_and_short_names() {
    let cols = |crd: &CustomResourceDefinition| -> Vec<String> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    let all = bb_crds::crd::all();
    let bottle = &all[0];
    let agent = &all[1];
    assert_eq!(bottle.spec.scope, "Cluster");
    assert_eq!(agent.spec.scope, "Namespaced");
    assert_eq!(
        bottle.spec.names.short_names.as_deref(),
        Some(&["bt".to_string()][..])
    );
    assert_eq!(
        agent.spec.names.short_names.as_deref(),
        Some(&["ag".to_string()][..])
    );
    assert_eq!(cols(agent), vec!["Bottle", "Backend", "Phase", "Age"]);
    assert_eq!(cols(bottle), vec!["Provider", "Routes", "Ready", "Age"]);
}
