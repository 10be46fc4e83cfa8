//! The request log (`controller run --audit-log FILE`): one JSON line per API request with the
//! attributes Kubernetes RBAC judges (verb, group, resource, subresource, namespace, name), the
//! client's User-Agent and the answer's code, so the roles a client needs can be read off it.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::handlers::{Query, Target};

/// What RBAC would judge of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The Kubernetes verb of `method` on `target`: `list` and `watch` for a collection read,
/// `deletecollection` for a collection delete.
pub fn attributes(method: &http::Method, target: &Target, q: &Query) -> Attributes {
    let watch = matches!(q.get("watch"), Some("true" | "1"));
    let verb = match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => other,
    };
    Attributes {
        verb: verb.to_ascii_lowercase(),
        api_group: target.res.group.to_string(),
        resource: target.res.plural.to_string(),
        subresource: target.subresource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    }
}

/// A review (`tokenreviews`, `subjectaccessreviews`): cluster-scoped, created.
pub fn review_attributes(method: &http::Method, group: &str, resource: &str) -> Attributes {
    let verb = if method == http::Method::POST {
        "create".to_string()
    } else {
        method.as_str().to_ascii_lowercase()
    };
    Attributes {
        verb,
        api_group: group.to_string(),
        resource: resource.to_string(),
        subresource: None,
        namespace: None,
        name: None,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    user_agent: &'a str,
    #[serde(flatten)]
    attributes: &'a Attributes,
    code: u16,
}

/// An append-only request log.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    pub fn record(&self, user_agent: &str, attributes: &Attributes, code: u16) {
        let line = Line {
            time: jiff::Timestamp::now().to_string(),
            user_agent,
            attributes,
            code,
        };
        let Ok(text) = serde_json::to_string(&line) else {
            return;
        };
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = writeln!(f, "{text}")
        {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(plural: &str, name: Option<&str>, sub: Option<&str>) -> Target {
        Target {
            res: super::super::resources::find("bot-bottle.dev", "v1alpha1", plural).expect("kind"),
            namespace: Some("default".into()),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }
    }

    #[test]
    fn methods_map_to_kubernetes_verbs() {
        let none = Query::parse(None);
        let watch = Query::parse(Some("watch=true&resourceVersion=5"));
        let cases = [
            (
                http::Method::GET,
                target("agents", Some("a"), None),
                &none,
                "get",
            ),
            (
                http::Method::GET,
                target("agents", None, None),
                &none,
                "list",
            ),
            (
                http::Method::GET,
                target("agents", None, None),
                &watch,
                "watch",
            ),
            (
                http::Method::POST,
                target("agents", None, None),
                &none,
                "create",
            ),
            (
                http::Method::PUT,
                target("agents", Some("a"), None),
                &none,
                "update",
            ),
            (
                http::Method::PATCH,
                target("agents", Some("a"), Some("status")),
                &none,
                "patch",
            ),
            (
                http::Method::DELETE,
                target("agents", Some("a"), None),
                &none,
                "delete",
            ),
            (
                http::Method::DELETE,
                target("agents", None, None),
                &none,
                "deletecollection",
            ),
        ];
        for (m, t, q, want) in cases {
            let a = attributes(&m, &t, q);
            assert_eq!(a.verb, want, "{m} {:?}", t.name);
            assert_eq!(a.api_group, "bot-bottle.dev");
            assert_eq!(a.resource, "agents");
        }
        let a = attributes(
            &http::Method::PATCH,
            &target("agents", Some("a"), Some("status")),
            &none,
        );
        assert_eq!(a.subresource.as_deref(), Some("status"));
    }
}
