//! Reads YAML manifests (one or many `---` documents) into typed, validated resources: schema
//! check against the generated CRDs first, then the semantic rules, every error at once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value;

use crate::error::{FieldPath, ValidationErrors};
use crate::resolve::validate_bottle;
use crate::validate::{self, check_dns_label, check_dns_subdomain};
use crate::{API_VERSION, Agent, AgentPool, Bottle, BottleSpec};
pub(crate) use bb_policy::yaml::typed;
pub use bb_policy::yaml::{ManifestError, yaml_documents};

/// A bot-bottle object read from a manifest.
// Short-lived values held a handful at a time; boxing would only add noise at every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Bottle(Bottle),
    Agent(Agent),
    AgentPool(AgentPool),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Bottle(_) => "Bottle",
            Resource::Agent(_) => "Agent",
            Resource::AgentPool(_) => "AgentPool",
        }
    }

    /// The object as JSON, as a manifest or the API holds it.
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        match self {
            Resource::Bottle(b) => serde_json::to_value(b),
            Resource::Agent(a) => serde_json::to_value(a),
            Resource::AgentPool(p) => serde_json::to_value(p),
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Resource::Bottle(b) => &b.metadata,
            Resource::Agent(a) => &a.metadata,
            Resource::AgentPool(p) => &p.metadata,
        };
        meta.name.as_deref().unwrap_or("")
    }
}

const KINDS: &[&str] = &["Bottle", "Agent", "AgentPool"];

const METADATA_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

fn schema_of(kind: &str) -> Option<&'static JSONSchemaProps> {
    static BOTTLE: OnceLock<Option<JSONSchemaProps>> = OnceLock::new();
    static AGENT: OnceLock<Option<JSONSchemaProps>> = OnceLock::new();
    static PROPOSAL: OnceLock<Option<JSONSchemaProps>> = OnceLock::new();
    static POOL: OnceLock<Option<JSONSchemaProps>> = OnceLock::new();
    let cell = match kind {
        "Bottle" => BOTTLE.get_or_init(|| top_schema(crate::crd::all().swap_remove(0))),
        "Agent" => AGENT.get_or_init(|| top_schema(crate::crd::all().swap_remove(1))),
        "Proposal" => PROPOSAL.get_or_init(|| top_schema(crate::crd::all().swap_remove(2))),
        "AgentPool" => POOL.get_or_init(|| top_schema(crate::crd::all().swap_remove(3))),
        _ => return None,
    };
    cell.as_ref()
}

fn top_schema(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Option<JSONSchemaProps> {
    crd.spec
        .versions
        .into_iter()
        .next()?
        .schema?
        .open_api_v3_schema
}

/// Identifies a document for error messages: `Bottle/dev`, or its position when unnamed.
fn object_label(doc: &Value, index: usize) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("object");
    match doc.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => format!("{kind} (document {index})"),
    }
}

/// Admission of any bot-bottle object the API server stores: schema, metadata and types. The
/// manifests users apply with bbctl hold Bottles, Agents and AgentPools (`check_document`); Proposals are
/// written by runners, `bbctl approve` and `kubectl`.
pub fn check_object(doc: &Value) -> Vec<crate::FieldError> {
    if doc.get("kind").and_then(Value::as_str) != Some("Proposal") {
        return check_document(doc, 1)
            .err()
            .map(|e| e.errors)
            .unwrap_or_default();
    }
    let mut errs = match check_shape(doc, 1, true) {
        Ok(()) => ValidationErrors::new(object_label(doc, 1)),
        Err(e) => return e.errors,
    };
    let _ = typed::<crate::Proposal>(doc, &mut errs);
    errs.errors
}

/// Checks one document and returns it typed, or every error it has.
pub fn check_document(doc: &Value, index: usize) -> Result<Resource, ValidationErrors> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    check_shape(doc, index, false)?;
    let mut errs = ValidationErrors::new(object_label(doc, index));
    let resource = match kind {
        "Bottle" => typed::<Bottle>(doc, &mut errs).map(Resource::Bottle),
        "AgentPool" => typed::<AgentPool>(doc, &mut errs).map(|p| {
            validate::pool(p.metadata.name.as_deref().unwrap_or(""), &p.spec, &mut errs);
            Resource::AgentPool(p)
        }),
        _ => typed::<Agent>(doc, &mut errs).map(|a| {
            validate::agent_spec(&a.spec, &mut errs);
            Resource::Agent(a)
        }),
    };
    match resource {
        Some(r) if errs.is_empty() => Ok(r),
        _ => Err(errs),
    }
}

/// The checks every kind shares: kind and apiVersion, the CRD's structural schema, metadata.
fn check_shape(doc: &Value, index: usize, proposals: bool) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::new(object_label(doc, index));
    let root = FieldPath::default();
    let kind = doc.get("kind").and_then(Value::as_str);
    let api_version = doc.get("apiVersion").and_then(Value::as_str);
    let Some(kind) = kind else {
        errs.push(
            &root.field("kind"),
            format!("required value; supported kinds: {}", KINDS.join(", ")),
        );
        return Err(errs);
    };
    let Some(schema) = schema_of(kind).filter(|_| proposals || kind != "Proposal") else {
        errs.push(
            &root.field("kind"),
            format!(
                "unsupported kind '{kind}'; supported kinds: {}",
                KINDS.join(", ")
            ),
        );
        return Err(errs);
    };
    match api_version {
        Some(API_VERSION) => {}
        Some(other) => errs.push(
            &root.field("apiVersion"),
            format!("'{other}' is not served for {kind}; use {API_VERSION}"),
        ),
        None => errs.push(
            &root.field("apiVersion"),
            format!("required value: {API_VERSION}"),
        ),
    }
    // apiVersion, kind and metadata are implicit in every CRD schema; only spec and status
    // are described by it.
    if let Some(map) = doc.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" | "metadata" => {}
                _ => match schema.properties.as_ref().and_then(|p| p.get(k)) {
                    Some(s) => crate::structural::validate(s, v, &root.field(k), &mut errs),
                    None => errs.push(
                        &root.field(k),
                        "unknown field; allowed: apiVersion, kind, metadata, spec, status",
                    ),
                },
            }
        }
    }
    metadata(
        doc.get("metadata"),
        kind != "Bottle",
        kind == "Proposal",
        &mut errs,
    );
    if doc.get("spec").is_none() {
        errs.push(&root.field("spec"), "required value");
    }
    errs.into_result()
}

/// `long_names`: names are subdomains, not labels (a Proposal's name joins its Agent's and an
/// id, and names no container).
fn metadata(meta: Option<&Value>, namespaced: bool, long_names: bool, errs: &mut ValidationErrors) {
    let path = FieldPath::root("metadata");
    let Some(meta) = meta else {
        errs.push(&path, "required value: metadata.name names the object");
        return;
    };
    let Some(map) = meta.as_object() else { return };
    for k in map.keys() {
        if !METADATA_FIELDS.contains(&k.as_str()) {
            errs.push(
                &path.field(k),
                format!("unknown field; allowed: {}", METADATA_FIELDS.join(", ")),
            );
        }
    }
    match map.get("name").and_then(Value::as_str) {
        None if map.get("generateName").is_none() => {
            errs.push(&path.field("name"), "required value")
        }
        None => {}
        Some(name) => {
            let check = if namespaced && !long_names {
                check_dns_label(name)
            } else {
                check_dns_subdomain(name)
            };
            if let Err(m) = check {
                errs.push(&path.field("name"), m);
            }
        }
    }
    match (namespaced, map.get("namespace").and_then(Value::as_str)) {
        (false, Some(_)) => errs.push(
            &path.field("namespace"),
            "Bottle is cluster-scoped; remove metadata.namespace",
        ),
        (true, Some(ns)) => {
            if let Err(m) = check_dns_label(ns) {
                errs.push(&path.field("namespace"), m);
            }
        }
        _ => {}
    }
    for field in ["labels", "annotations"] {
        if let Some(v) = map.get(field) {
            match v.as_object() {
                None => errs.push(&path.field(field), "must be a map of strings"),
                Some(m) => {
                    for (k, v) in m {
                        if !v.is_string() {
                            errs.push(&path.field(field).key(k), "must be a string");
                        }
                    }
                }
            }
        }
    }
}

/// Parses and validates every document of a manifest: schema and per-object rules, then the
/// Bottles as a set (`extends` chains, duplicate hosts across the chain). `known_bottles` holds
/// Bottles that exist elsewhere (e.g. on the server) for `extends` to resolve against.
pub fn parse_resources_with(
    text: &str,
    known_bottles: &BTreeMap<String, BottleSpec>,
) -> Result<Vec<Resource>, ManifestError> {
    let docs = yaml_documents(text)?;
    let mut resources = Vec::new();
    let mut invalid = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match check_document(doc, i + 1) {
            Ok(r) => resources.push(r),
            Err(e) => invalid.push(e),
        }
    }
    invalid.extend(validate_bottle_set(&resources, known_bottles));
    if invalid.is_empty() {
        Ok(resources)
    } else {
        Err(ManifestError::Invalid(invalid))
    }
}

/// [`parse_resources_with`] for a self-contained manifest.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>, ManifestError> {
    parse_resources_with(text, &BTreeMap::new())
}

/// Validates every Bottle in `resources` against the others and `known_bottles`.
pub fn validate_bottle_set(
    resources: &[Resource],
    known_bottles: &BTreeMap<String, BottleSpec>,
) -> Vec<ValidationErrors> {
    let mut set = known_bottles.clone();
    let mut names = Vec::new();
    for r in resources {
        if let Resource::Bottle(b) = r {
            let name = b.metadata.name.clone().unwrap_or_default();
            set.insert(name.clone(), b.spec.clone());
            names.push(name);
        }
    }
    names
        .iter()
        .filter_map(|n| validate_bottle(n, &set).err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_resources(text) {
            Ok(_) => vec![],
            Err(ManifestError::Invalid(all)) => all
                .iter()
                .flat_map(|e| e.errors.iter().map(move |f| format!("{}: {f}", e.object)))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn duplicate_yaml_keys_are_an_error() {
        let e = errors("apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nkind: Agent\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("duplicate entry with key \"kind\""), "{e:?}");
    }

    #[test]
    fn unknown_kinds_and_versions() {
        assert_eq!(
            errors("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"),
            vec!["Pod/x: kind: unsupported kind 'Pod'; supported kinds: Bottle, Agent, AgentPool"]
        );
        assert_eq!(
            errors(
                "apiVersion: bot-bottle.dev/v1\nkind: Agent\nmetadata: {name: x}\nspec: {bottleRef: {name: b}}\n"
            ),
            vec![
                "Agent/x: apiVersion: 'bot-bottle.dev/v1' is not served for Agent; use bot-bottle.dev/v1alpha1"
            ]
        );
    }

    #[test]
    fn metadata_rules() {
        assert_eq!(
            errors(
                "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: Dev, namespace: x, bogus: 1}\nspec: {}\n"
            ),
            vec![
                "Bottle/Dev: metadata.bogus: unknown field; allowed: annotations, creationTimestamp, deletionGracePeriodSeconds, deletionTimestamp, finalizers, generateName, generation, labels, managedFields, name, namespace, ownerReferences, resourceVersion, selfLink, uid",
                "Bottle/Dev: metadata.name: 'Dev' must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
                "Bottle/Dev: metadata.namespace: Bottle is cluster-scoped; remove metadata.namespace",
            ]
        );
        assert_eq!(
            errors(
                "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: a.b}\nspec: {bottleRef: {name: b}}\n"
            ),
            vec![
                "Agent/a.b: metadata.name: 'a.b' must be a lowercase RFC 1123 label: at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
            ]
        );
    }

    #[test]
    fn a_runner_selector_takes_label_syntax() {
        assert_eq!(
            errors(
                "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {bottleRef: {name: b}, runnerSelector: {zone: eu-1, gpu: 'yes please', -x: y}}\n"
            ),
            vec![
                "Agent/a: spec.runnerSelector.-x: label key '-x' must consist of letters, digits, '-', '_' or '.', and begin and end with a letter or digit",
                "Agent/a: spec.runnerSelector.gpu: label value 'yes please' must consist of letters, digits, '-', '_' or '.', and begin and end with a letter or digit",
            ]
        );
    }

    #[test]
    fn non_string_keys_and_tags_are_rejected() {
        assert!(errors("apiVersion: x\n1: 2\n")[0].contains("mapping keys must be strings"));
        assert!(errors("a: !secret x\n")[0].contains("YAML tags"));
    }
}
