//! Watch responses: a stream of `{"type": ..., "object": ...}` JSON lines, with the initial
//! state, bookmarks, selectors, timeouts and `410 Gone` the way client-go and kube-runtime expect.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::objects::{Registry, decode};
use super::resources::Resource;
use super::select::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{self, View};
use crate::store::EventKind;

/// How often an idle watch with bookmarks enabled reports its progress.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WatchParams {
    pub resource_version: Option<i64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

/// An event line in the client's view: objects become one-row Tables for `kubectl get -w`.
fn event(res: &Resource, view: View, kind: &str, object: &Value) -> Bytes {
    if view == View::Table && kind != "ERROR" && kind != "BOOKMARK" {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        return line(
            kind,
            &table::table(res, std::slice::from_ref(object), rv, "Metadata"),
        );
    }
    line(kind, object)
}

fn bookmark(res: &Resource, rev: i64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": meta})
}

/// Starts a watch and returns the channel its lines arrive on. Errors before the stream starts
/// (bad parameters) are returned; `410 Gone` is delivered in-stream as an `ERROR` event.
pub fn start(
    registry: Registry,
    res: &'static Resource,
    ns: Option<String>,
    p: WatchParams,
    view: View,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<Bytes, Infallible>>, ApiError> {
    let (tx, rx) = mpsc::channel(256);
    let prefix = res.namespace_prefix(ns.as_deref());
    tokio::spawn(async move {
        let matches = |o: &Value| p.labels.matches(o) && p.fields.matches(o);
        // Initial state: explicit `sendInitialEvents`, or a watch without a resourceVersion
        // ("0" or unset), which Kubernetes answers with the current objects as ADDED.
        let initial = p.send_initial_events || p.resource_version.unwrap_or(0) == 0;
        let start_rev = if initial {
            let listed = registry.list(res, ns.as_deref(), &p.labels, &p.fields, 0, None);
            match listed {
                Ok((items, rev, _)) => {
                    for o in &items {
                        if tx.send(Ok(event(res, view, "ADDED", o))).await.is_err() {
                            return;
                        }
                    }
                    if p.send_initial_events
                        && p.bookmarks
                        && tx
                            .send(Ok(line("BOOKMARK", &bookmark(res, rev, true))))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    rev
                }
                Err(e) => {
                    let _ = tx.send(Ok(line("ERROR", &e.to_status()))).await;
                    return;
                }
            }
        } else {
            p.resource_version.unwrap_or(0)
        };
        let mut watch = match registry.store.watch(&prefix, start_rev) {
            Ok(w) => w,
            Err(e) => {
                let err: ApiError = e.into();
                let _ = tx.send(Ok(line("ERROR", &err.to_status()))).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(p.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        let mut shutdown = shutdown;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = ticker.tick(), if p.bookmarks => {
                    if tx.send(Ok(line("BOOKMARK", &bookmark(res, watch.revision(), false)))).await.is_err() {
                        return;
                    }
                }
                ev = watch.next() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            let err: ApiError = e.into();
                            let _ = tx.send(Ok(line("ERROR", &err.to_status()))).await;
                            return;
                        }
                    };
                    let Ok(mut obj) = decode(&ev.record) else { continue };
                    let kind = match ev.kind {
                        EventKind::Added => "ADDED",
                        EventKind::Modified => "MODIFIED",
                        EventKind::Deleted => "DELETED",
                    };
                    if !matches(&obj) {
                        // An object that stops matching leaves the watcher's view.
                        let left = ev.kind == EventKind::Modified
                            && ev.prev.as_ref().and_then(|p| serde_json::from_slice::<Value>(p).ok()).is_some_and(|o| matches(&o));
                        if !left {
                            continue;
                        }
                        if tx.send(Ok(event(res, view, "DELETED", &obj))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let entered = ev.kind == EventKind::Modified
                        && ev.prev.as_ref().and_then(|p| serde_json::from_slice::<Value>(p).ok()).is_some_and(|o| !matches(&o));
                    if ev.kind == EventKind::Deleted
                        && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.insert("resourceVersion".into(), json!(ev.record.revision.to_string()));
                    }
                    if tx.send(Ok(event(res, view, if entered { "ADDED" } else { kind }, &obj))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
