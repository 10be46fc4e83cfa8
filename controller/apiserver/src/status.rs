//! API errors as `metav1.Status` responses, with the reason and code Kubernetes clients branch
//! on (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`...).

use serde_json::{Value, json};

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone)]
pub struct Cause {
    pub kind: &'static str,
    pub field: String,
    pub message: String,
}

/// The object an error is about and its field causes (boxed: most errors have none).
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

/// An error the API returns to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    details: Option<Box<Details>>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn causes(&self) -> &[Cause] {
        self.details.as_ref().map_or(&[], |d| &d.causes)
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", m)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, "NotFound", m)
    }
    pub fn method_not_allowed(m: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, "Conflict", m)
    }
    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new(409, "AlreadyExists", m)
    }
    pub fn gone(m: impl Into<String>) -> Self {
        Self::new(410, "Expired", m)
    }
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", m)
    }
    pub fn unsupported_media(m: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(422, "Invalid", m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, "InternalError", m)
    }

    pub fn for_object(mut self, group: &str, kind: &str, name: &str) -> Self {
        let d = self.details.get_or_insert_with(Default::default);
        d.group = Some(group.to_string());
        d.kind = Some(kind.to_string());
        d.name = Some(name.to_string());
        self
    }

    pub fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.details.get_or_insert_with(Default::default).causes = causes;
        self
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        let d = self.details.as_deref().cloned().unwrap_or_default();
        if let Some(n) = &d.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &d.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &d.kind {
            details.insert("kind".into(), json!(k));
        }
        if !d.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    d.causes
                        .iter()
                        .map(|c| json!({"reason": c.kind, "message": c.message, "field": c.field}))
                        .collect(),
                ),
            );
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        match e {
            S::Compacted { .. } => ApiError::gone(format!("too old resource version: {e}")),
            S::Conflict { .. } => ApiError::conflict(format!(
                "Operation cannot be fulfilled: {e}; please apply your changes to the latest version and try again"
            )),
            S::AlreadyExists => ApiError::already_exists("already exists"),
            S::NotFound => ApiError::not_found("not found"),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal("internal store error")
            }
        }
    }
}

/// A success `Status`, as returned by deletes that removed the object.
pub fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}
