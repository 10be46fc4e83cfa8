//! CRD generation: the `CustomResourceDefinition`s the chart ships and `bbctl crds` prints,
//! derived from the Rust types so the schema can never drift from what the code accepts.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Agent, Bottle};

/// Every CRD bot-bottle defines, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Bottle::crd(), Agent::crd()]
}

/// File name of a CRD under `charts/bot-bottle/crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as the YAML document written to the chart.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from the bb-crds Rust types by `bbctl crds`; do not edit.\n# Regenerate with: hack/update-crds.sh\n{body}"
    ))
}

/// Every CRD as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
