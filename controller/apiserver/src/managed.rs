//! `metadata.managedFields` bookkeeping: who owns which fields after each write, and server-side
//! apply (merge an applied configuration, detect conflicts with other managers, drop fields a
//! manager stopped applying).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::{Value, json};

use super::fields::{self, Elem, FieldSet};
use super::status::{ApiError, Cause};

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

fn read(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some(Entry {
                        manager: e.get("manager")?.as_str()?.to_string(),
                        operation: e
                            .get("operation")
                            .and_then(Value::as_str)
                            .unwrap_or("Update")
                            .to_string(),
                        api_version: e
                            .get("apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        time: e
                            .get("time")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        subresource: e
                            .get("subresource")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        fields: e
                            .get("fieldsV1")
                            .map(fields::from_fields_v1)
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write(obj: &mut Value, entries: Vec<Entry>) {
    let arr: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields::to_fields_v1(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

fn is_under(path: &[Elem], prefix: &[Elem]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == *prefix
}

fn owned_by_anyone(entries: &[Entry], path: &[Elem]) -> bool {
    entries.iter().any(|e| {
        e.fields
            .iter()
            .any(|p| is_under(p, path) || is_under(path, p))
    })
}

/// After the field at `path` was removed, removes each enclosing struct it left empty that no
/// manager owns anything in: a manager that stops applying a whole struct removes the struct,
/// not only its fields (an empty one would fail the schema's required fields).
fn prune_emptied(obj: &mut Value, path: &[Elem], entries: &[Entry], applied: &FieldSet) {
    for n in (1..path.len()).rev() {
        let parent = &path[..n];
        let emptied = fields::get(obj, parent)
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty);
        let kept = owned_by_anyone(entries, parent) || applied.iter().any(|p| is_under(p, parent));
        if !matches!(parent.last(), Some(Elem::Field(_))) || !emptied || kept {
            return;
        }
        fields::remove(obj, parent);
    }
}

/// Restricts a field set to what a write through `subresource` may touch.
fn scope(set: FieldSet, subresource: Option<&str>, status_subresource: bool) -> FieldSet {
    let status = Elem::Field("status".into());
    set.into_iter()
        .filter(|p| match subresource {
            Some("status") => p.first() == Some(&status),
            _ => !(status_subresource && p.first() == Some(&status)),
        })
        .collect()
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of every
/// field it changed, and removed fields leave every manager.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    schema: Option<&JSONSchemaProps>,
    now: &str,
) {
    let mut entries = old.map(read).unwrap_or_default();
    let new_leaves = fields::leaves(new, schema);
    let old_leaves = old.map(|o| fields::leaves(o, schema)).unwrap_or_default();
    let changed: FieldSet = new_leaves
        .iter()
        .filter(|p| old.and_then(|o| fields::get(o, p)) != fields::get(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_leaves.difference(&new_leaves).cloned().collect();
    for e in &mut entries {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        let sub = subresource.map(str::to_string);
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub,
                fields: changed,
            }),
        }
    }
    write(new, entries);
}

/// Who applies (`manager`, `force`, at `now`) and what the resource says about its fields: its
/// version, the subresource addressed, whether status is a subresource, and its schema.
#[derive(Debug, Clone, Copy)]
pub struct ApplyBy<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub status_subresource: bool,
    pub schema: Option<&'a JSONSchemaProps>,
    pub now: &'a str,
}

/// Server-side apply of `config` onto `live` (None when the object does not exist yet).
/// Returns the object to store.
pub fn apply(live: Option<&Value>, config: &Value, by: &ApplyBy<'_>) -> Result<Value, ApiError> {
    let ApplyBy {
        manager,
        force,
        api_version,
        subresource,
        status_subresource,
        schema,
        now,
    } = *by;
    let mut entries = live.map(read).unwrap_or_default();
    let applied = scope(
        fields::leaves(config, schema),
        subresource,
        status_subresource,
    );
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let sub = subresource.map(str::to_string);
    let is_me = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;

    let mut conflicts: Vec<(String, Vec<Elem>)> = Vec::new();
    for e in entries.iter().filter(|e| !is_me(e)) {
        for p in applied.intersection(&e.fields) {
            if fields::get(live_v, p) != fields::get(config, p) {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|(m, p)| Cause {
                kind: "FieldManagerConflict",
                field: fields::display(p),
                message: format!("conflict with \"{m}\""),
            })
            .collect();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {}", fields::display(p)))
            .collect();
        return Err(ApiError::conflict(format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("; ")
        ))
        .with_causes(causes));
    }
    if force {
        // Forcing takes only the conflicting fields; fields applied with equal values stay shared.
        for e in entries.iter_mut().filter(|e| !is_me(e)) {
            e.fields
                .retain(|p| !conflicts.iter().any(|(m, c)| *m == e.manager && c == p));
        }
    }

    let previous = entries
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    entries.retain(|e| !is_me(e));
    let mut result = live_v.clone();
    for dropped in previous.difference(&applied) {
        if !owned_by_anyone(&entries, dropped) {
            fields::remove(&mut result, dropped);
            prune_emptied(&mut result, dropped, &entries, &applied);
        }
    }
    let mut scoped_config = config.clone();
    match subresource {
        Some("status") => {
            if let Some(m) = scoped_config.as_object_mut() {
                m.retain(|k, _| {
                    matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata")
                });
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
                }
            }
        }
        _ if status_subresource => {
            if let Some(m) = scoped_config.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    if let Some(meta) = scoped_config
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    fields::merge(&mut result, &scoped_config, schema);
    // A no-op apply changes nothing, not even the manager's timestamp: controllers that apply
    // their status on every reconcile must not wake themselves up.
    if let Some(live) = live {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
            v
        };
        if previous == applied && strip(&result) == strip(live) {
            return Ok(live.clone());
        }
    }
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        subresource: sub,
        fields: applied,
    });
    write(&mut result, entries);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    /// An apply by `manager` of a plain v1 object with no schema, at NOW.
    fn by(manager: &str, force: bool) -> ApplyBy<'_> {
        ApplyBy {
            manager,
            force,
            api_version: "v1",
            subresource: None,
            status_subresource: false,
            schema: None,
            now: NOW,
        }
    }

    fn obj(label: &str, color: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"label": label, "color": color}})
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced_or_equal() {
        let a = apply(None, &obj("one", "red"), &by("alice", false)).expect("first apply");
        // Same values: shared ownership, no conflict.
        let b = apply(Some(&a), &obj("one", "red"), &by("bob", false)).expect("same values");
        let err = apply(Some(&b), &obj("two", "red"), &by("bob", false)).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.causes().len(), 1);
        assert_eq!(err.causes()[0].field, ".spec.label");
        assert!(
            err.message.contains("conflict with \"alice\": .spec.label"),
            "{}",
            err.message
        );
        let forced = apply(Some(&b), &obj("two", "red"), &by("bob", true)).expect("force");
        assert_eq!(forced["spec"]["label"], "two");
        let owners = read(&forced);
        let alice = owners
            .iter()
            .find(|e| e.manager == "alice")
            .expect("alice keeps color");
        assert!(
            !alice
                .fields
                .iter()
                .any(|p| fields::display(p) == ".spec.label")
        );
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them() {
        let a = apply(None, &obj("one", "red"), &by("alice", false)).expect("apply");
        let only_label = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"label": "one"}});
        let b = apply(Some(&a), &only_label, &by("alice", false)).expect("reapply");
        assert_eq!(
            b["spec"].get("color"),
            None,
            "color was only alice's and she dropped it"
        );

        // A whole struct dropped goes whole, with no empty object left behind; one someone
        // else owns a field of stays.
        let with_copy = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"label": "one", "copy": {"name": "m", "uid": "u"}}});
        let e = apply(Some(&b), &with_copy, &by("alice", false)).expect("apply a struct");
        assert_eq!(e["spec"]["copy"]["name"], "m");
        let f = apply(Some(&e), &only_label, &by("alice", false)).expect("drop the struct");
        assert_eq!(f["spec"], json!({"label": "one"}), "{f}");
        let mut shared = e.clone();
        shared["spec"]["copy"]["note"] = json!("bob's");
        track_update(Some(&e), &mut shared, "bob", "v1", None, None, NOW);
        let g = apply(Some(&shared), &only_label, &by("alice", false)).expect("drop alice's part");
        assert_eq!(g["spec"]["copy"], json!({"note": "bob's"}), "{g}");

        let mut c = b.clone();
        c["spec"]["color"] = json!("blue");
        track_update(Some(&b), &mut c, "kubectl-edit", "v1", None, None, NOW);
        let d = apply(Some(&c), &only_label, &by("alice", false)).expect("reapply");
        assert_eq!(d["spec"]["color"], "blue", "kubectl-edit owns color now");
    }

    #[test]
    fn a_repeated_apply_is_a_no_op() {
        let a = apply(None, &obj("one", "red"), &by("alice", false)).expect("apply");
        let b = apply(
            Some(&a),
            &obj("one", "red"),
            &ApplyBy {
                now: "2030-01-01T00:00:00Z",
                ..by("alice", false)
            },
        )
        .expect("again");
        assert_eq!(a, b, "same object, same managedFields timestamp");
    }

    #[test]
    fn status_apply_touches_only_status() {
        let live = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"label": "a"}});
        let cfg = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"label": "evil"}, "status": {"phase": "Running"}});
        let out = apply(
            Some(&live),
            &cfg,
            &ApplyBy {
                subresource: Some("status"),
                status_subresource: true,
                ..by("controller", true)
            },
        )
        .expect("apply");
        assert_eq!(out["spec"]["label"], "a");
        assert_eq!(out["status"]["phase"], "Running");
        let main = apply(
            Some(&out),
            &cfg,
            &ApplyBy {
                status_subresource: true,
                ..by("user", true)
            },
        )
        .expect("apply");
        assert_eq!(
            main["status"]["phase"], "Running",
            "main-resource apply ignores status"
        );
        assert_eq!(main["spec"]["label"], "evil");
    }
}
