//! CRD generation: the `CustomResourceDefinition`s the chart ships and `bbctl crds` prints,
//! derived from the Rust types so the schema can never drift from what the code accepts.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube_core::CustomResourceExt;

use crate::{Agent, AgentPool, Bottle, Proposal};

/// Every CRD bot-bottle defines, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Bottle::crd(),
        Agent::crd(),
        Proposal::crd(),
        AgentPool::crd(),
    ];
    for crd in &mut crds {
        for v in &mut crd.spec.versions {
            if let Some(s) = v
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                strip_null_enums(s);
            }
        }
    }
    crds
}

/// schemars lists `null` among the values of optional enums; `nullable` already says that, and
/// clients such as `kubectl explain` print the null as a value.
fn strip_null_enums(s: &mut JSONSchemaProps) {
    if let Some(e) = s.enum_.as_mut() {
        e.retain(|v| !v.0.is_null());
    }
    for p in s.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_null_enums(p);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = s.additional_properties.as_mut() {
        strip_null_enums(a);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(i)) = s.items.as_mut() {
        strip_null_enums(i);
    }
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
