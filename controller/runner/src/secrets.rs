//! Resolves secret sources (a Secret key, or the controller host's environment) at reconcile
//! time. Errors name where the value should have been, never the value.

use bb_crds::common::{DEFAULT_SECRET_NAMESPACE, SecretKeySelector, SecretSource};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use bb_backend::SecretBytes;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The source names something that does not exist; the Agent waits for it.
    #[error("{0}")]
    Missing(String),
    #[error("reading a Secret: {0}")]
    Api(#[from] kube::Error),
}

/// Reads one key of a Secret.
pub async fn secret_key(
    client: &kube::Client,
    sel: &SecretKeySelector,
) -> Result<SecretBytes, SecretError> {
    let ns = sel.namespace.as_deref().unwrap_or(DEFAULT_SECRET_NAMESPACE);
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = match api.get_opt(&sel.name).await? {
        Some(s) => s,
        None => {
            return Err(SecretError::Missing(format!(
                "Secret {ns}/{name} not found; create it with the key '{key}' (kubectl create secret generic {name} -n {ns} --from-literal={key}=...)",
                name = sel.name,
                key = sel.key
            )));
        }
    };
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&sel.key))
        .map(|b| b.0.clone());
    let from_string = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(&sel.key))
        .map(|s| s.as_bytes().to_vec());
    from_data
        .or(from_string)
        .map(SecretBytes::new)
        .ok_or_else(|| {
            SecretError::Missing(format!("Secret {ns}/{} has no key '{}'", sel.name, sel.key))
        })
}

/// Reads a variable of the controller's own environment.
pub fn host_env(name: &str) -> Result<SecretBytes, SecretError> {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => Ok(SecretBytes::new(v.into_encoded_bytes())),
        _ => Err(SecretError::Missing(format!(
            "host environment variable {name} is not set on the controller; export it where the control plane starts (the shell running bbctl), then `bbctl controller stop` so the next command starts it with {name}"
        ))),
    }
}

/// Resolves a token source from a Bottle (`secretKeyRef` or `hostEnv`).
pub async fn resolve(
    client: &kube::Client,
    src: &SecretSource,
) -> Result<SecretBytes, SecretError> {
    if let Some(sel) = &src.secret_key_ref {
        return secret_key(client, sel).await;
    }
    if let Some(name) = &src.host_env {
        return host_env(name);
    }
    if let Some(h) = &src.host_json {
        return host_json(h);
    }
    Err(SecretError::Missing("no secret source set".into()))
}

/// The first non-empty string at one of `h.pointers` in the JSON file `h.path` on this host.
pub fn host_json(h: &bb_crds::common::HostJson) -> Result<SecretBytes, SecretError> {
    let missing = |why: String| SecretError::Missing(format!("{why}; {}", h.remedy));
    let text = std::fs::read(&h.path)
        .map_err(|e| missing(format!("{} cannot be read ({e})", h.path.display())))?;
    let doc: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| missing(format!("{} is not JSON ({e})", h.path.display())))?;
    h.pointers
        .iter()
        .find_map(|p| {
            doc.pointer(p)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        })
        .map(|v| SecretBytes::new(v.as_bytes().to_vec()))
        .ok_or_else(|| {
            missing(format!(
                "{} holds none of {}",
                h.path.display(),
                h.pointers.join(", ")
            ))
        })
}
