//! The verbs: get, list, watch, create, update, patch (merge, JSON, strategic, apply), delete
//! and deletecollection, each turning a parsed request into a JSON response or a Status.

use std::time::Duration;

use serde_json::{Value, json};

use super::managed;
use super::objects::{Registry, WriteOpts, deleted_status, now};
use super::resources::Resource;
use super::select::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{self, View};
use super::watch::{self, WatchParams};

/// A request for one resource, after routing.
#[derive(Debug)]
pub struct Target {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Query parameters, as the Kubernetes API names them.
#[derive(Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dryRun value '{other}'; supported: All"
            ))),
        }
    }
    fn write_opts(&self, t: &Target) -> Result<WriteOpts, ApiError> {
        Ok(WriteOpts {
            dry_run: self.dry_run()?,
            field_manager: self.get("fieldManager").map(str::to_string),
            subresource: t.subresource.clone(),
            apply: false,
        })
    }
}

/// What a handler returns: a JSON body and its status, or a watch stream.
pub enum Reply {
    Json(u16, Value),
    Watch(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::convert::Infallible>>),
}

fn name_of(t: &Target) -> Result<&str, ApiError> {
    t.name
        .as_deref()
        .ok_or_else(|| ApiError::method_not_allowed("a name is required for this verb"))
}

fn ns_of(t: &Target) -> Option<&str> {
    if t.res.namespaced {
        t.namespace.as_deref()
    } else {
        None
    }
}

fn selectors(q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
        FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))?,
    ))
}

fn encode_continue(rev: i64, key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rev, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::bad_request("invalid continue token"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("invalid continue token"))?;
    v.get("start")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("invalid continue token"))
}

pub fn get(reg: &Registry, t: &Target, view: View, q: &Query) -> Result<Reply, ApiError> {
    let obj = reg.get(t.res, ns_of(t), name_of(t)?)?;
    Ok(Reply::Json(
        200,
        match view {
            View::Table => table::table(
                t.res,
                std::slice::from_ref(&obj),
                None,
                q.get("includeObject").unwrap_or("Metadata"),
            ),
            View::Object => obj,
        },
    ))
}

pub fn list(
    reg: &Registry,
    t: &Target,
    view: View,
    q: &Query,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(q)?;
    if q.flag("watch") {
        let rv = match q.get("resourceVersion") {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion '{s}'")))?,
            ),
        };
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(Duration::from_secs(30 * 60), Duration::from_secs);
        let params = WatchParams {
            resource_version: rv,
            send_initial_events: q.flag("sendInitialEvents"),
            bookmarks: q.flag("allowWatchBookmarks"),
            timeout,
            labels,
            fields,
        };
        let rx = watch::start(
            reg.clone(),
            t.res,
            ns_of(t).map(str::to_string),
            params,
            view,
            shutdown,
        )?;
        return Ok(Reply::Watch(rx));
    }
    let limit = q
        .get("limit")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let after = q
        .get("continue")
        .filter(|s| !s.is_empty())
        .map(decode_continue)
        .transpose()?;
    let (mut items, rev, next) =
        reg.list(t.res, ns_of(t), &labels, &fields, limit, after.as_deref())?;
    if t.res.group.is_empty() && t.res.plural == "events" && after.is_none() {
        // Controllers publish events.k8s.io/v1 Events; `kubectl describe` reads core/v1.
        // Kubernetes stores both as one; here the newer form is converted on read.
        if let Some(newer) = super::resources::find("events.k8s.io", "v1", "events") {
            let none = (LabelSelector::default(), FieldSelector::default());
            let (more, _, _) = reg.list(newer, ns_of(t), &none.0, &none.1, 0, None)?;
            items.extend(
                more.iter()
                    .map(super::events::to_core)
                    .filter(|e| labels.matches(e) && fields.matches(e)),
            );
        }
    }
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(k) = next {
        meta["continue"] = json!(encode_continue(rev, &k));
    }
    Ok(Reply::Json(
        200,
        match view {
            View::Table => {
                let mut tb = table::table(
                    t.res,
                    &items,
                    Some(rev.to_string()),
                    q.get("includeObject").unwrap_or("Metadata"),
                );
                tb["metadata"] = meta;
                tb
            }
            View::Object => {
                json!({"apiVersion": t.res.api_version(), "kind": format!("{}List", t.res.kind), "metadata": meta, "items": items})
            }
        },
    ))
}

pub fn create(reg: &Registry, t: &Target, body: Value, q: &Query) -> Result<Reply, ApiError> {
    if t.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "POST is only allowed on a collection",
        ));
    }
    let opts = q.write_opts(t)?;
    let obj = reg.create(t.res, t.namespace.as_deref(), body, &opts)?;
    Ok(Reply::Json(201, obj))
}

pub fn update(reg: &Registry, t: &Target, body: Value, q: &Query) -> Result<Reply, ApiError> {
    let opts = q.write_opts(t)?;
    let obj = reg.update(t.res, ns_of(t), name_of(t)?, body, &opts)?;
    Ok(Reply::Json(200, obj))
}

/// PATCH in all four flavours. Patches without a resourceVersion retry on conflicts, as the
/// Kubernetes apiserver does.
pub fn patch(
    reg: &Registry,
    t: &Target,
    content_type: &str,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let name = name_of(t)?;
    let mut opts = q.write_opts(t)?;
    let ctype = content_type.split(';').next().unwrap_or("").trim();
    if ctype == "application/apply-patch+yaml" || ctype == "application/apply-patch+cbor" {
        return apply(reg, t, body, q, opts);
    }
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?;
    for _attempt in 0..5 {
        let current = reg.get(t.res, ns_of(t), name)?;
        let mut target = current.clone();
        match ctype {
            "application/merge-patch+json" => json_patch::merge(&mut target, &patch_doc),
            "application/strategic-merge-patch+json" if t.res.crd.is_none() => {
                json_patch::merge(&mut target, &patch_doc)
            }
            "application/strategic-merge-patch+json" => {
                return Err(ApiError::unsupported_media(
                    "strategic merge patch is not supported for custom resources; accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            "application/json-patch+json" => {
                let p = kubernetes_json_patch(&target, &patch_doc)?;
                json_patch::patch(&mut target, &p).map_err(|e| {
                    ApiError::invalid(format!("the JSON patch could not be applied: {e}"))
                })?;
            }
            other => {
                return Err(ApiError::unsupported_media(format!(
                    "unsupported patch type '{other}'; accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                )));
            }
        }
        let pinned = target
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
        let expected = target
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok());
        if opts.field_manager.is_none() {
            opts.field_manager = Some("unknown".into());
        }
        match reg.replace(t.res, ns_of(t), name, &current, target, expected, &opts) {
            Err(e) if e.code == 409 && !pinned => continue,
            other => return other.map(|o| Reply::Json(200, o)),
        }
    }
    Err(ApiError::conflict("the object kept changing; please retry"))
}

/// Parses a JSON patch with Kubernetes' reading of `test`: a missing path equals `null`
/// (kube-runtime's finalizer helper relies on this to add the first finalizer safely).
fn kubernetes_json_patch(target: &Value, doc: &Value) -> Result<json_patch::Patch, ApiError> {
    let ops = doc.as_array().ok_or_else(|| {
        ApiError::bad_request("invalid JSON patch: expected an array of operations")
    })?;
    let kept: Vec<Value> = ops
        .iter()
        .filter(|op| {
            let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
                && op.get("value").is_some_and(Value::is_null);
            let absent = op
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| target.pointer(p).is_none());
            !(is_null_test && absent)
        })
        .cloned()
        .collect();
    serde_json::from_value(Value::Array(kept))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))
}

fn apply(
    reg: &Registry,
    t: &Target,
    body: &[u8],
    q: &Query,
    mut opts: WriteOpts,
) -> Result<Reply, ApiError> {
    let name = name_of(t)?;
    let manager = opts
        .field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "PATCH, fieldManager: Required value: is required for apply patch",
            )
        })?;
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply patch is not UTF-8"))?;
    let config: Value = serde_yaml::from_str::<serde_yaml::Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        .and_then(|y| {
            serde_json::to_value(y)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        })?;
    if !config.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    let av = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if !t.res.gvk_matches(av, kind) {
        return Err(ApiError::bad_request(format!(
            "apply patch must set apiVersion {} and kind {} (got '{av}' and '{kind}')",
            t.res.api_version(),
            t.res.kind
        )));
    }
    if config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(
            "the name in the apply patch does not match the name on the URL",
        ));
    }
    let force = q.flag("force");
    opts.apply = true;
    for _attempt in 0..5 {
        let current = match reg.get(t.res, ns_of(t), name) {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let ts = now();
        let merged = managed::apply(
            current.as_ref(),
            &config,
            &managed::ApplyBy {
                manager: &manager,
                force,
                api_version: &t.res.api_version(),
                subresource: t.subresource.as_deref(),
                status_subresource: t.res.status_subresource,
                schema: t.res.schema(),
                now: &ts,
            },
        )?;
        let result = match &current {
            None => {
                if t.subresource.is_some() {
                    return Err(ApiError::not_found(format!(
                        "{} \"{name}\" not found",
                        t.res.plural
                    )));
                }
                let mut obj = merged;
                obj["metadata"]["name"] = json!(name);
                reg.create(t.res, t.namespace.as_deref(), obj, &opts)
                    .map(|o| Reply::Json(201, o))
            }
            Some(cur) => reg
                .replace(t.res, ns_of(t), name, cur, merged, None, &opts)
                .map(|o| Reply::Json(200, o)),
        };
        match result {
            Err(e)
                if e.code == 409
                    && (e.reason == "Conflict" && e.causes().is_empty()
                        || e.reason == "AlreadyExists") =>
            {
                continue;
            }
            other => return other,
        }
    }
    Err(ApiError::conflict("the object kept changing; please retry"))
}

fn delete_options(body: &[u8], q: &Query) -> Result<Value, ApiError> {
    let mut opts: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(p) = q.get("propagationPolicy") {
        if !matches!(p, "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy '{p}'; supported: Orphan, Background, Foreground"
            )));
        }
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        let g: i64 = g
            .parse()
            .map_err(|_| ApiError::bad_request("gracePeriodSeconds must be an integer"))?;
        opts["gracePeriodSeconds"] = json!(g);
    }
    Ok(opts)
}

pub fn delete(reg: &Registry, t: &Target, body: &[u8], q: &Query) -> Result<Reply, ApiError> {
    let options = delete_options(body, q)?;
    let dry = q.dry_run()?
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    let (obj, gone) = reg.delete(t.res, ns_of(t), name_of(t)?, &options, dry)?;
    if gone {
        Ok(Reply::Json(200, deleted_status(t.res, &obj)))
    } else {
        Ok(Reply::Json(200, obj))
    }
}

pub fn delete_collection(
    reg: &Registry,
    t: &Target,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let options = delete_options(body, q)?;
    let dry = q.dry_run()?;
    let (labels, fields) = selectors(q)?;
    let (items, rev, _) = reg.list(t.res, ns_of(t), &labels, &fields, 0, None)?;
    let mut deleted = Vec::new();
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        match reg.delete(t.res, ns.as_deref(), &name, &options, dry) {
            Ok((o, _)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::Json(
        200,
        json!({"apiVersion": t.res.api_version(), "kind": format!("{}List", t.res.kind), "metadata": {"resourceVersion": rev.to_string()}, "items": deleted}),
    ))
}
