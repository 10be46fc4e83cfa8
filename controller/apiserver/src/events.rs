//! Conversion of `events.k8s.io/v1` Events (what kube-runtime's Recorder writes) to core `v1`
//! Events (what `kubectl describe` lists), field for field as Kubernetes maps them.

use serde_json::{Value, json};

pub fn to_core(e: &Value) -> Value {
    let get = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
    let event_time = e.get("eventTime").and_then(Value::as_str).map(|t| {
        // core timestamps have second precision
        t.split('.')
            .next()
            .map(|s| format!("{}Z", s.trim_end_matches('Z')))
            .unwrap_or_else(|| t.to_string())
    });
    let last = e
        .pointer("/series/lastObservedTime")
        .and_then(Value::as_str)
        .map(|t| {
            format!(
                "{}Z",
                t.split('.').next().unwrap_or(t).trim_end_matches('Z')
            )
        })
        .or_else(|| event_time.clone());
    let count = e
        .pointer("/series/count")
        .and_then(Value::as_i64)
        .or_else(|| e.get("deprecatedCount").and_then(Value::as_i64))
        .unwrap_or(1);
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": get("metadata"),
        "involvedObject": get("regarding"),
        "related": get("related"),
        "reason": get("reason"),
        "message": get("note"),
        "type": get("type"),
        "action": get("action"),
        "eventTime": get("eventTime"),
        "reportingComponent": get("reportingController"),
        "reportingInstance": get("reportingInstance"),
        "source": {"component": get("reportingController")},
        "count": count,
        "firstTimestamp": event_time,
        "lastTimestamp": last,
    });
    if let Some(m) = out.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_regarding_and_note() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x.1", "namespace": "default"},
            "regarding": {"kind": "Agent", "name": "a", "namespace": "default", "uid": "u"}, "note": "hello", "reason": "Ready",
            "type": "Normal", "reportingController": "bb-controller", "eventTime": "2026-01-01T00:00:00.123456Z"});
        let c = to_core(&e);
        assert_eq!(c["involvedObject"]["name"], "a");
        assert_eq!(c["message"], "hello");
        assert_eq!(c["source"]["component"], "bb-controller");
        assert_eq!(c["lastTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(c["count"], 1);
    }
}
