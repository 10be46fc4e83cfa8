//! Field sets: which leaf fields of an object a manager owns, in the `managedFields` `FieldsV1`
//! format. Lists marked `x-kubernetes-list-type: map` are keyed by their map keys; other lists
//! are atomic (owned and replaced whole), as for Kubernetes custom resources.

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    Field(String),
    /// A keyed list item: the JSON object of its key fields.
    Key(String),
}

pub type Path = Vec<Elem>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields that managers own; the rest of `metadata` is the server's.
const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];
/// Top-level fields nobody owns.
const UNOWNED_TOP: &[&str] = &["apiVersion", "kind"];

fn child_schema<'a>(s: Option<&'a JSONSchemaProps>, name: &str) -> Option<&'a JSONSchemaProps> {
    let s = s?;
    if let Some(p) = s.properties.as_ref().and_then(|p| p.get(name)) {
        return Some(p);
    }
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(v)) => Some(v),
        _ => None,
    }
}

fn item_schema(s: Option<&JSONSchemaProps>) -> Option<&JSONSchemaProps> {
    match s?.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(v) => Some(v),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    }
}

/// The map keys of a keyed list, if this schema is one.
fn list_keys(s: Option<&JSONSchemaProps>) -> Option<&[String]> {
    let s = s?;
    if s.x_kubernetes_list_type.as_deref() == Some("map") {
        s.x_kubernetes_list_map_keys.as_deref()
    } else {
        None
    }
}

fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    serde_json::to_string(&Value::Object(m)).ok()
}

/// Every owned leaf of `obj` (a whole object, top level). `schema` is the resource's schema.
pub fn leaves(obj: &Value, schema: Option<&JSONSchemaProps>) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if UNOWNED_TOP.contains(&k.as_str()) {
            continue;
        }
        if k == "metadata" {
            for mk in OWNED_METADATA {
                if let Some(mv) = v.get(*mk) {
                    let path = vec![Elem::Field("metadata".into()), Elem::Field((*mk).into())];
                    // labels and annotations are granular maps; the lists are atomic.
                    if mv.is_object() {
                        walk(mv, None, path, &mut out);
                    } else {
                        out.insert(path);
                    }
                }
            }
            continue;
        }
        walk(
            v,
            child_schema(schema, k),
            vec![Elem::Field(k.clone())],
            &mut out,
        );
    }
    out
}

fn walk(v: &Value, schema: Option<&JSONSchemaProps>, path: Path, out: &mut FieldSet) {
    let preserve = schema.is_some_and(|s| {
        s.x_kubernetes_preserve_unknown_fields == Some(true) && s.properties.is_none()
    });
    match v {
        Value::Object(m) if !m.is_empty() && !preserve => {
            for (k, cv) in m {
                let mut p = path.clone();
                p.push(Elem::Field(k.clone()));
                walk(cv, child_schema(schema, k), p, out);
            }
        }
        Value::Array(items) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or(&[]);
            for item in items {
                match item_key(item, keys) {
                    Some(key) => {
                        let mut p = path.clone();
                        p.push(Elem::Key(key));
                        out.insert(p.clone());
                        walk(item, item_schema(schema), p, out);
                    }
                    None => {
                        out.insert(path.clone());
                    }
                }
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path`, if present.
pub fn get<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = match e {
            Elem::Field(f) => cur.get(f)?,
            Elem::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
            }
        };
    }
    Some(cur)
}

/// Removes the field at `path` (a keyed item is removed from its list).
pub fn remove(obj: &mut Value, path: &[Elem]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for e in parent_path {
        let next = match e {
            Elem::Field(f) => cur.get_mut(f),
            Elem::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                cur.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
                })
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Elem::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Elem::Key(k) => {
            if let (Ok(key), Some(a)) = (
                serde_json::from_str::<Map<String, Value>>(k),
                cur.as_array_mut(),
            ) {
                a.retain(|item| !key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
            }
        }
    }
}

/// Renders a field set as a `FieldsV1` object.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[Elem], keyed_leaf: bool) {
        let Some((first, rest)) = path.split_first() else {
            if keyed_leaf {
                node.insert(".".into(), Value::Object(Map::new()));
            }
            return;
        };
        let name = match first {
            Elem::Field(f) => format!("f:{f}"),
            Elem::Key(k) => format!("k:{k}"),
        };
        let entry = node
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(child) = entry.as_object_mut() {
            insert(child, rest, keyed_leaf);
        }
    }
    let mut root = Map::new();
    for path in set {
        insert(&mut root, path, matches!(path.last(), Some(Elem::Key(_))));
    }
    Value::Object(root)
}

/// Parses a `FieldsV1` object back into leaf paths.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(node: &Map<String, Value>, path: &Path, out: &mut FieldSet) {
        if node.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in node {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let elem = if let Some(f) = k.strip_prefix("f:") {
                Elem::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Elem::Key(key.to_string())
            } else {
                continue;
            };
            let mut p = path.clone();
            p.push(elem);
            match child.as_object() {
                Some(m) => go(m, &p, out),
                None => {
                    out.insert(p);
                }
            }
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        go(m, &Vec::new(), &mut out);
    }
    out
}

/// Human form of a path, as conflict messages print it: `.spec.env[name="A"].value`.
pub fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let inner = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| {
                        m.iter()
                            .map(|(a, b)| format!("{a}={b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|_| k.clone());
                s.push_str(&format!("[{inner}]"));
            }
        }
    }
    s
}

/// Deep merge of an applied configuration onto a live object: objects merge by field, keyed
/// lists by key, everything else is replaced.
pub fn merge(live: &mut Value, config: &Value, schema: Option<&JSONSchemaProps>) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                let cs = child_schema(schema, k);
                match l.get_mut(k) {
                    Some(lv) if cv.is_object() || list_keys(cs).is_some() => merge(lv, cv, cs),
                    _ => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or(&[]);
            for citem in c {
                let ck = item_key(citem, keys);
                match l
                    .iter_mut()
                    .find(|li| ck.is_some() && item_key(li, keys) == ck)
                {
                    Some(li) => merge(li, citem, item_schema(schema)),
                    None => l.push(citem.clone()),
                }
            }
        }
        (l, c) => *l = c.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_schema() -> JSONSchemaProps {
        serde_json::from_value(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "env": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                "tags": {"type": "array", "items": {"type": "string"}}
            }}}
        }))
        .expect("schema")
    }

    #[test]
    fn leaves_round_trip_through_fields_v1() {
        let s = env_schema();
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "1"}},
            "spec": {"env": [{"name": "A", "value": "1"}], "tags": ["x"], "n": {"deep": true}}});
        let set = leaves(&obj, Some(&s));
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {
                "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                "f:n": {"f:deep": {}}, "f:tags": {}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
        let key_path = vec![
            Elem::Field("spec".into()),
            Elem::Field("env".into()),
            Elem::Key("{\"name\":\"A\"}".into()),
            Elem::Field("value".into()),
        ];
        assert_eq!(get(&obj, &key_path), Some(&json!("1")));
        assert_eq!(display(&key_path), ".spec.env[name=\"A\"].value");
    }

    #[test]
    fn merge_by_key_and_replace_atomic() {
        let s = env_schema();
        let mut live = json!({"spec": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "tags": ["a", "b"]}});
        merge(
            &mut live,
            &json!({"spec": {"env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}], "tags": ["c"]}}),
            Some(&s),
        );
        assert_eq!(
            live,
            json!({"spec": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}], "tags": ["c"]}})
        );
        remove(
            &mut live,
            &[
                Elem::Field("spec".into()),
                Elem::Field("env".into()),
                Elem::Key("{\"name\":\"A\"}".into()),
            ],
        );
        assert_eq!(live["spec"]["env"].as_array().map(Vec::len), Some(2));
    }
}
