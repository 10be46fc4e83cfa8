//! TokenReview and SubjectAccessReview, so a runner can ask this control plane who a client is
//! and what it may do, as it would ask a cluster. This server knows one identity, its token's
//! holder, who may do everything; reviews are answered, never stored.

use serde_json::{Value, json};

use super::status::ApiError;

/// The user the control plane's token authenticates as.
pub const ADMIN: &str = "bot-bottle-admin";
const ADMIN_GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

/// The review asked at `segs` by `POST`, if it is one.
pub fn is_review(segs: &[&str]) -> Option<&'static str> {
    match segs {
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] => Some("tokenreviews"),
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => {
            Some("subjectaccessreviews")
        }
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers a review `body` of kind `which`, where `token` is the control plane's own.
pub fn answer(which: &str, body: &Value, token: &str) -> Result<Value, ApiError> {
    let spec = body
        .get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| ApiError::invalid("spec: Required value"))?;
    let mut out = body.clone();
    let status = match which {
        "tokenreviews" => {
            let given = spec.get("token").and_then(Value::as_str).unwrap_or("");
            if !given.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()) {
                json!({"authenticated": true, "user": {"username": ADMIN, "groups": ADMIN_GROUPS}})
            } else {
                json!({"authenticated": false, "error": "the token is not this control plane's"})
            }
        }
        _ => {
            let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
            let masters = spec
                .get("groups")
                .and_then(Value::as_array)
                .is_some_and(|g| g.iter().any(|g| g == "system:masters"));
            if user == ADMIN || masters {
                json!({"allowed": true, "reason": "the control plane's administrator"})
            } else {
                json!({"allowed": false, "reason": format!("user \"{user}\" is not this control plane's administrator")})
            }
        }
    };
    out["status"] = status;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_control_planes_token_authenticates_and_only_its_holder_is_allowed() {
        let tr = |t: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
        let ok = answer("tokenreviews", &tr("s3cret"), "s3cret").expect("review");
        assert_eq!(ok["status"]["authenticated"], true);
        assert_eq!(ok["status"]["user"]["username"], ADMIN);
        for bad in ["", "s3cre", "s3cretX"] {
            let no = answer("tokenreviews", &tr(bad), "s3cret").expect("review");
            assert_eq!(no["status"]["authenticated"], false, "{bad:?}");
        }
        let sar = |u: &str| json!({"spec": {"user": u, "resourceAttributes": {"verb": "create"}}});
        assert_eq!(
            answer("subjectaccessreviews", &sar(ADMIN), "x").expect("sar")["status"]["allowed"],
            true
        );
        assert_eq!(
            answer("subjectaccessreviews", &sar("mallory"), "x").expect("sar")["status"]["allowed"],
            false
        );
        assert!(
            answer("subjectaccessreviews", &json!({}), "x").is_err(),
            "no spec"
        );
    }
}
