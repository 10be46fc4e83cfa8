//! Server-side printing (`Accept: ...;as=Table`): the columns `kubectl get` shows, from the CRD
//! printer columns for bot-bottle kinds and Kubernetes' own columns for core kinds.

use serde_json::{Value, json};

use super::resources::Resource;

struct Column {
    name: String,
    ty: String,
    path: String,
    description: String,
}

/// How the client asked to see objects: as themselves, or as a `meta.k8s.io` Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Object,
    Table,
}

fn columns(res: &Resource) -> Vec<Column> {
    let col = |name: &str, ty: &str, path: &str, description: &str| Column {
        name: name.into(),
        ty: ty.into(),
        path: path.into(),
        description: description.into(),
    };
    let age = col(
        "Age",
        "date",
        ".metadata.creationTimestamp",
        "Time since creation",
    );
    let mut cols = vec![col(
        "Name",
        "string",
        ".metadata.name",
        "Name must be unique within a namespace.",
    )];
    for c in res.strategy.columns {
        cols.push(col(c.name, c.ty, c.path, c.description));
    }
    if res.crd.is_some() {
        for c in res.printer_columns() {
            cols.push(Column {
                name: c.name.clone(),
                ty: c.type_.clone(),
                path: c.json_path.clone(),
                description: c.description.clone().unwrap_or_default(),
            });
        }
        return cols;
    }
    cols.push(age);
    cols
}

fn age(ts: &str) -> Value {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => json!(bb_crds::duration::human_duration(
            jiff::Timestamp::now().as_second() - t.as_second()
        )),
        Err(_) => Value::Null,
    }
}

fn cell(obj: &Value, c: &Column) -> Value {
    let v = match c.path.as_str() {
        "#data" => {
            let keys = |field: &str| {
                obj.get(field)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            return json!(keys("data") + keys("binaryData"));
        }
        "#involved" => {
            let io = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = io
                .and_then(|o| o.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase();
            let name = io
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return json!(format!("{kind}/{name}"));
        }
        p => bb_crds::jsonpath::query(obj, p)
            .ok()
            .and_then(|found| found.into_iter().next()),
    };
    match (c.ty.as_str(), v) {
        (_, None) => Value::Null,
        ("date", Some(Value::String(s))) => age(s),
        (_, Some(v)) => v.clone(),
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A `meta.k8s.io/v1` Table of `objects`.
pub fn table(
    res: &Resource,
    objects: &[Value],
    resource_version: Option<String>,
    include_object: &str,
) -> Value {
    let cols = columns(res);
    let defs: Vec<Value> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut d = json!({"name": c.name, "type": if c.ty == "date" { "string" } else { c.ty.as_str() }, "format": "", "description": c.description, "priority": 0});
            if i == 0 {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(o, c)).collect();
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial(o),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = resource_version {
        meta["resourceVersion"] = json!(rv);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}
