//! Discovery (`/api`, `/apis`, group and version resource lists) and OpenAPI v3 documents built
//! from the same resource table and CRD schemas, so `kubectl` can map, validate and `explain`.

use serde_json::{Map, Value, json};

use super::resources::{self, Resource};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn api_versions(server: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status_subresource {
        out.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    out
}

/// `APIResourceList` for one group/version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let list: Vec<Value> = resources::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(resource_entries)
        .collect();
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    resources::groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(g, v)| {
            let mut e = group_entry(g, v);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The OpenAPI v3 index: one document per group/version.
pub fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    let mut seen = Vec::new();
    for r in resources::all() {
        let p = gv_path(r.group, r.version);
        if !seen.contains(&p) {
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc_hash(r.group, r.version))}));
            seen.push(p);
        }
    }
    json!({"paths": paths})
}

fn doc_hash(group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    openapi_v3_doc_inner(group, version)
        .to_string()
        .hash(&mut h);
    format!("{:016X}", h.finish())
}

fn schema_name(r: &Resource) -> String {
    // Kubernetes' reverse-domain naming: io.k8s.api.core.v1.Secret, dev.bot-bottle.v1alpha1.Agent.
    let g = if r.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        r.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{g}.{}.{}", r.version, r.kind)
}

fn object_schema(r: &Resource) -> Value {
    let mut s = match r.schema() {
        Some(schema) => serde_json::to_value(schema).unwrap_or(json!({"type": "object"})),
        None => {
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": format!("{} (schema not published by this server)", r.kind)})
        }
    };
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata (name, namespace, labels, annotations...).", "x-kubernetes-preserve-unknown-fields": true}));
    }
    s["type"] = json!("object");
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    s
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn operation(r: &Resource, action: &str, id: &str) -> Value {
    let object = json!({"$ref": format!("#/components/schemas/{}", schema_name(r))});
    let mut queries = vec![
        query("fieldManager", "Names the actor making the change."),
        query(
            "fieldValidation",
            "Ignore, Warn or Strict handling of unknown fields.",
        ),
    ];
    if !matches!(action, "get" | "list") {
        queries.push(query("dryRun", "All: validate without persisting."));
    }
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": queries,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": object}}}},
    });
    match action {
        "post" | "put" => {
            op["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": object},
                "application/yaml": {"schema": object},
            }});
        }
        "patch" => {
            let any = json!({"type": "object"});
            op["requestBody"] = json!({"required": true, "content": {
                "application/json-patch+json": {"schema": {"type": "array", "items": any}},
                "application/merge-patch+json": {"schema": any},
                "application/apply-patch+yaml": {"schema": any},
            }});
        }
        _ => {}
    }
    op
}

fn openapi_v3_doc_inner(group: &str, version: &str) -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for r in resources::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        schemas.insert(schema_name(r), object_schema(r));
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let (coll, mut params) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                vec![path_param(
                    "namespace",
                    "object name and auth scope, such as for teams and projects",
                )],
            )
        } else {
            (format!("{base}/{}", r.plural), Vec::new())
        };
        // OpenAPI 3 operation IDs are unique per document, as Kubernetes' own are
        // (createNamespacedSecret, readNamespacedSecret, ...).
        let scope = if r.namespaced { "Namespaced" } else { "" };
        let id = |verb: &str, suffix: &str| format!("{verb}{scope}{}{suffix}", r.kind);
        let mut coll_item = json!({
            "post": operation(r, "post", &id("create", "")),
            "get": operation(r, "list", &id("list", "")),
        });
        if !params.is_empty() {
            coll_item["parameters"] = json!(params);
        }
        paths.insert(coll.clone(), coll_item);
        params.push(path_param("name", &format!("name of the {}", r.kind)));
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "parameters": params,
                "get": operation(r, "get", &id("read", "")),
                "put": operation(r, "put", &id("replace", "")),
                "patch": operation(r, "patch", &id("patch", "")),
                "delete": operation(r, "delete", &id("delete", "")),
            }),
        );
        if r.status_subresource {
            paths.insert(
                format!("{coll}/{{name}}/status"),
                json!({
                    "parameters": params,
                    "get": operation(r, "get", &id("read", "Status")),
                    "put": operation(r, "put", &id("replace", "Status")),
                    "patch": operation(r, "patch", &id("patch", "Status")),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "bot-bottle", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The OpenAPI v3 document of one group/version.
pub fn openapi_v3_doc(group: &str, version: &str) -> Option<Value> {
    if resources::all()
        .iter()
        .any(|r| r.group == group && r.version == version)
    {
        Some(openapi_v3_doc_inner(group, version))
    } else {
        None
    }
}
