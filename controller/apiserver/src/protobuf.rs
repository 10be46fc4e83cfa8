//! Kubernetes' protobuf wire format for the core kinds clients send that way (kubectl's `create
//! secret|namespace|configmap`): the `k8s\0` envelope around a `runtime.Unknown`, to and from JSON.
//!
//! The message types come from `k8s-pb`; only the JSON mapping is written here, as one table per
//! message (the `wire!` lines), because Kubernetes' JSON names, base64 bytes and RFC 3339 times
//! are not protobuf's canonical JSON mapping, so no generic proto-JSON codec produces them.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Map, Value};

use super::status::ApiError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// Every protobuf body starts with these four bytes (k8s.io/apimachinery's `protobuf.go`).
const MAGIC: &[u8; 4] = b"k8s\0";
/// The kinds with a protobuf form here; everything else is JSON only (as for CRDs in Kubernetes).
pub const KINDS: &[&str] = &["Namespace", "Secret", "ConfigMap", "Event"];

/// One message's mapping to its Kubernetes JSON object.
trait Wire: Sized {
    fn to_json(&self) -> Value;
    fn from_json(v: &Value) -> Result<Self, String>;
    /// Go clients write every non-pointer string and time, set or not; Kubernetes' JSON omits
    /// the empty ones (`omitempty`), so they are dropped rather than stored as `""` or 1970.
    fn is_zero(&self) -> bool {
        false
    }
}

/// A message field: optional scalars and messages, repeated fields and maps.
trait Field: Sized {
    /// `None` when the field is unset (omitted from JSON, as Kubernetes' `omitempty`).
    fn to_json(&self) -> Option<Value>;
    fn from_json(v: Option<&Value>) -> Result<Self, String>;
}

impl Wire for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| "expected a string".to_string())
    }
}

impl Wire for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| "expected a boolean".to_string())
    }
}

impl Wire for i64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_i64().ok_or_else(|| "expected an integer".to_string())
    }
}

impl Wire for i32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| "expected a 32-bit integer".to_string())
    }
}

/// `bytes` fields are base64 strings in JSON.
impl Wire for Vec<u8> {
    fn to_json(&self) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(self))
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        let s = v.as_str().ok_or("expected a base64 string")?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| "must be base64".to_string())
    }
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(seconds.unwrap_or(0), nanos.unwrap_or(0)).ok()
}

fn parse_time(v: &Value) -> Result<(Option<i64>, Option<i32>), String> {
    let t: jiff::Timestamp = v
        .as_str()
        .ok_or("expected an RFC 3339 time")?
        .parse()
        .map_err(|_| "expected an RFC 3339 time".to_string())?;
    let nanos = t.subsec_nanosecond();
    Ok((Some(t.as_second()), (nanos != 0).then_some(nanos)))
}

/// `metav1.Time`: RFC 3339 to the second.
impl Wire for meta::Time {
    fn is_zero(&self) -> bool {
        self.seconds.unwrap_or(0) == 0 && self.nanos.unwrap_or(0) == 0
    }
    fn to_json(&self) -> Value {
        timestamp(self.seconds, None)
            .map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
            .unwrap_or(Value::Null)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        let (seconds, _) = parse_time(v)?;
        Ok(meta::Time {
            seconds,
            nanos: None,
        })
    }
}

/// `metav1.MicroTime`: RFC 3339 with microseconds.
impl Wire for meta::MicroTime {
    fn is_zero(&self) -> bool {
        self.seconds.unwrap_or(0) == 0 && self.nanos.unwrap_or(0) == 0
    }
    fn to_json(&self) -> Value {
        let micros = self.nanos.map(|n| n - n % 1000);
        timestamp(self.seconds, micros)
            .map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
            .unwrap_or(Value::Null)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        let (seconds, nanos) = parse_time(v)?;
        Ok(meta::MicroTime { seconds, nanos })
    }
}

/// `managedFields[].fieldsV1` is a JSON object on the JSON side and its bytes in protobuf.
impl Wire for meta::FieldsV1 {
    fn to_json(&self) -> Value {
        self.raw
            .as_deref()
            .and_then(|r| serde_json::from_slice(r).ok())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        Ok(meta::FieldsV1 {
            raw: Some(serde_json::to_vec(v).map_err(|e| e.to_string())?),
        })
    }
}

impl<T: Wire> Field for Option<T> {
    fn to_json(&self) -> Option<Value> {
        self.as_ref().filter(|v| !v.is_zero()).map(Wire::to_json)
    }
    fn from_json(v: Option<&Value>) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::from_json(v).map(Some),
        }
    }
}

impl<T: Wire> Field for Vec<T> {
    fn to_json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| Value::Array(self.iter().map(Wire::to_json).collect()))
    }
    fn from_json(v: Option<&Value>) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item).map_err(|e| format!("[{i}]: {e}")))
                .collect(),
            Some(_) => Err("expected a list".to_string()),
        }
    }
}

impl<T: Wire> Field for BTreeMap<String, T> {
    fn to_json(&self) -> Option<Value> {
        (!self.is_empty())
            .then(|| Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()))
    }
    fn from_json(v: Option<&Value>) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        T::from_json(v).map_err(|e| format!("[{k}]: {e}"))?,
                    ))
                })
                .collect(),
            Some(_) => Err("expected a map".to_string()),
        }
    }
}

/// One line per message: its protobuf fields and their JSON names. Every field of each message
/// is listed, so nothing a client sends is dropped on the way to JSON.
macro_rules! wire {
    ($ty:path { $($field:ident : $json:literal),* $(,)? }) => {
        impl Wire for $ty {
            fn to_json(&self) -> Value {
                let mut m = Map::new();
                $(if let Some(v) = Field::to_json(&self.$field) {
                    m.insert($json.to_string(), v);
                })*
                Value::Object(m)
            }
            fn from_json(v: &Value) -> Result<Self, String> {
                let o = v.as_object().ok_or("expected an object")?;
                Ok(Self {
                    $($field: Field::from_json(o.get($json))
                        .map_err(|e| format!(".{}{}{e}", $json, if e.starts_with('.') || e.starts_with('[') { "" } else { ": " }))?,)*
                })
            }
        }
    };
}

wire!(meta::ObjectMeta {
    name: "name",
    generate_name: "generateName",
    namespace: "namespace",
    self_link: "selfLink",
    uid: "uid",
    resource_version: "resourceVersion",
    generation: "generation",
    creation_timestamp: "creationTimestamp",
    deletion_timestamp: "deletionTimestamp",
    deletion_grace_period_seconds: "deletionGracePeriodSeconds",
    labels: "labels",
    annotations: "annotations",
    owner_references: "ownerReferences",
    finalizers: "finalizers",
    managed_fields: "managedFields"
});
wire!(meta::OwnerReference {
    api_version: "apiVersion",
    kind: "kind",
    name: "name",
    uid: "uid",
    controller: "controller",
    block_owner_deletion: "blockOwnerDeletion"
});
wire!(meta::ManagedFieldsEntry {
    manager: "manager",
    operation: "operation",
    api_version: "apiVersion",
    time: "time",
    fields_type: "fieldsType",
    fields_v1: "fieldsV1",
    subresource: "subresource"
});
wire!(meta::ListMeta {
    self_link: "selfLink",
    resource_version: "resourceVersion",
    r#continue: "continue",
    remaining_item_count: "remainingItemCount"
});
wire!(meta::Status {
    metadata: "metadata",
    status: "status",
    message: "message",
    reason: "reason",
    details: "details",
    code: "code"
});
wire!(meta::StatusDetails {
    name: "name",
    group: "group",
    kind: "kind",
    uid: "uid",
    causes: "causes",
    retry_after_seconds: "retryAfterSeconds"
});
wire!(meta::StatusCause {
    reason: "reason",
    message: "message",
    field: "field"
});
wire!(core::Secret {
    metadata: "metadata",
    immutable: "immutable",
    data: "data",
    string_data: "stringData",
    r#type: "type"
});
wire!(core::SecretList {
    metadata: "metadata",
    items: "items"
});
wire!(core::ConfigMap {
    metadata: "metadata",
    immutable: "immutable",
    data: "data",
    binary_data: "binaryData"
});
wire!(core::ConfigMapList {
    metadata: "metadata",
    items: "items"
});
wire!(core::Namespace {
    metadata: "metadata",
    spec: "spec",
    status: "status"
});
wire!(core::NamespaceSpec {
    finalizers: "finalizers"
});
wire!(core::NamespaceStatus {
    phase: "phase",
    conditions: "conditions"
});
wire!(core::NamespaceCondition {
    r#type: "type",
    status: "status",
    last_transition_time: "lastTransitionTime",
    reason: "reason",
    message: "message"
});
wire!(core::NamespaceList {
    metadata: "metadata",
    items: "items"
});
wire!(core::Event {
    metadata: "metadata",
    involved_object: "involvedObject",
    reason: "reason",
    message: "message",
    source: "source",
    first_timestamp: "firstTimestamp",
    last_timestamp: "lastTimestamp",
    count: "count",
    r#type: "type",
    event_time: "eventTime",
    series: "series",
    action: "action",
    related: "related",
    reporting_component: "reportingComponent",
    reporting_instance: "reportingInstance"
});
wire!(core::EventSource {
    component: "component",
    host: "host"
});
wire!(core::EventSeries {
    count: "count",
    last_observed_time: "lastObservedTime"
});
wire!(core::EventList {
    metadata: "metadata",
    items: "items"
});
wire!(core::ObjectReference {
    kind: "kind",
    namespace: "namespace",
    name: "name",
    uid: "uid",
    api_version: "apiVersion",
    resource_version: "resourceVersion",
    field_path: "fieldPath"
});

fn decode_as<T: Message + Default + Wire>(raw: &[u8]) -> Result<Value, String> {
    T::decode(raw)
        .map(|m| m.to_json())
        .map_err(|e| format!("not a valid protobuf message: {e}"))
}

fn encode_as<T: Message + Wire>(obj: &Value) -> Result<Vec<u8>, String> {
    T::from_json(obj).map(|m| m.encode_to_vec())
}

/// One kind's protobuf form: its `v1` kind name, decoder and encoder.
struct Codec {
    kind: &'static str,
    decode: fn(&[u8]) -> Result<Value, String>,
    encode: fn(&Value) -> Result<Vec<u8>, String>,
}

macro_rules! codecs {
    ($($kind:literal => $ty:ty),* $(,)?) => {
        &[$(Codec { kind: $kind, decode: decode_as::<$ty>, encode: encode_as::<$ty> }),*]
    };
}

/// Every `v1` kind with a protobuf form: the objects clients may send (`KINDS`), their lists and
/// `Status`, which only answers carry.
const CODECS: &[Codec] = codecs!(
    "Secret" => core::Secret,
    "SecretList" => core::SecretList,
    "ConfigMap" => core::ConfigMap,
    "ConfigMapList" => core::ConfigMapList,
    "Namespace" => core::Namespace,
    "NamespaceList" => core::NamespaceList,
    "Event" => core::Event,
    "EventList" => core::EventList,
    "Status" => meta::Status,
);

fn codec(api_version: &str, kind: &str) -> Option<&'static Codec> {
    (api_version == "v1")
        .then(|| CODECS.iter().find(|c| c.kind == kind))
        .flatten()
}

/// Decodes a protobuf request body into the JSON object the rest of the server handles.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("the protobuf body is invalid: {m}"));
    let inner = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("it does not start with the k8s\\0 envelope prefix".into()))?;
    let unknown = Unknown::decode(inner).map_err(|e| bad(e.to_string()))?;
    let TypeMeta { api_version, kind } = unknown.type_meta.unwrap_or_default();
    let (api_version, kind) = (api_version.unwrap_or_default(), kind.unwrap_or_default());
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ApiError::unsupported_media(
            "protobuf bodies with a contentEncoding are not supported; send them unencoded",
        ));
    }
    let raw = unknown.raw.unwrap_or_default();
    let Some(codec) = codec(&api_version, &kind).filter(|c| KINDS.contains(&c.kind)) else {
        return Err(ApiError::unsupported_media(format!(
            "{api_version}/{kind} has no protobuf form here; send it as application/json (protobuf is accepted for v1 {})",
            KINDS.join(", ")
        )));
    };
    let mut obj = (codec.decode)(&raw).map_err(bad)?;
    obj["apiVersion"] = Value::String(api_version);
    obj["kind"] = Value::String(kind);
    Ok(obj)
}

/// Encodes a response object (a core kind, its list, or a Status) in the envelope; `None` when
/// the object has no protobuf form (the caller answers 406).
pub fn encode(obj: &Value) -> Option<Result<Vec<u8>, ApiError>> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str)?;
    let kind = obj.get("kind").and_then(Value::as_str)?;
    let raw = (codec(api_version, kind)?.encode)(obj);
    Some(
        raw.map(|raw| {
            let envelope = Unknown {
                type_meta: Some(TypeMeta {
                    api_version: Some(api_version.to_string()),
                    kind: Some(kind.to_string()),
                }),
                raw: Some(raw),
                content_encoding: None,
                content_type: None,
            };
            let mut out = MAGIC.to_vec();
            envelope.encode(&mut out).map(|()| out)
        })
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| ApiError::internal(format!("encoding {kind} as protobuf: {e}"))),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: None,
            content_type: None,
        }
        .encode(&mut out)
        .expect("encode");
        out
    }

    #[test]
    fn a_secret_as_kubectl_sends_it_decodes_to_its_json_object() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("tok".into()),
                namespace: Some("bot-bottle".into()),
                labels: BTreeMap::from([("a".into(), "b".into())]),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: None,
                }),
                // What a Go client writes for fields it never set.
                generate_name: Some(String::new()),
                deletion_timestamp: Some(meta::Time::default()),
                ..Default::default()
            }),
            data: BTreeMap::from([("token".into(), b"s3cr\x00t".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let obj = decode(&envelope("v1", "Secret", secret.encode_to_vec())).expect("decode");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "tok", "namespace": "bot-bottle", "labels": {"a": "b"},
                             "creationTimestamp": "2023-11-14T22:13:20Z"},
                "data": {"token": "czNjcgB0"}})
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_form() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n", "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:k": {}}}, "time": "2026-01-02T03:04:05Z"}]}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}, "immutable": true}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "finalizers": ["x"], "deletionTimestamp": "2026-01-02T03:04:05Z"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating", "conditions": [{"type": "T", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "n"}, "involvedObject": {"kind": "Agent", "name": "a", "apiVersion": "bot-bottle.dev/v1alpha1"}, "reason": "Started", "message": "m", "source": {"component": "bb"}, "count": 3, "type": "Normal", "eventTime": "2026-01-02T03:04:05.123456Z", "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:06.000001Z"}, "reportingComponent": "bb"}),
            json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "s", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u", "controller": true}]}, "stringData": {"k": "v"}}]}),
            json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": "nope", "reason": "Invalid", "code": 422, "details": {"name": "s", "kind": "Secret", "causes": [{"reason": "FieldValueInvalid", "message": "must be base64", "field": "data[k]"}]}}),
        ];
        for obj in objects {
            let bytes = encode(&obj).expect("has a wire form").expect("encodes");
            assert_eq!(decode_envelope_any(&bytes), obj);
        }
    }

    /// Decodes any kind `encode` produces (the server itself only accepts the four kinds).
    fn decode_envelope_any(bytes: &[u8]) -> Value {
        let unknown = Unknown::decode(&bytes[4..]).expect("envelope");
        let tm = unknown.type_meta.expect("type meta");
        let raw = unknown.raw.expect("raw");
        let kind = tm.kind.as_deref().unwrap_or_default();
        let codec = codec("v1", kind).unwrap_or_else(|| panic!("unexpected {kind}"));
        let mut obj = (codec.decode)(&raw).expect("decode");
        obj["apiVersion"] = json!(tm.api_version);
        obj["kind"] = json!(tm.kind);
        obj
    }

    #[test]
    fn bad_bodies_and_other_kinds_are_refused_by_name() {
        let e = decode(b"{\"kind\":\"Secret\"}").expect_err("no prefix");
        assert_eq!(e.code, 400);
        assert!(e.message.contains("k8s\\0"), "{}", e.message);
        let e = decode(&envelope("bot-bottle.dev/v1alpha1", "Bottle", vec![])).expect_err("crd");
        assert_eq!(e.code, 415);
        assert!(
            e.message.contains("application/json") && e.message.contains("Secret"),
            "{}",
            e.message
        );
        let e = decode(&envelope("v1", "Secret", vec![0xff, 0xff, 0xff])).expect_err("garbage");
        assert_eq!(e.code, 400);
        let bad_time = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"creationTimestamp": "yesterday"}});
        let e = encode(&bad_time).expect("kind").expect_err("time");
        assert!(
            e.message
                .contains(".metadata.creationTimestamp: expected an RFC 3339 time"),
            "{}",
            e.message
        );
        assert!(
            encode(&json!({"apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent"})).is_none()
        );
    }
}
