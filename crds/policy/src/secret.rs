//! Where a secret value comes from: a Secret key, a host variable, or (in the sidecar's policy
//! file) a token file. A source names a value; only the controller ever reads it.

use serde::{Deserialize, Serialize};

/// Where a secret value (a token, an API key) comes from. Exactly one source must be set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// A key of a Kubernetes `Secret` (namespace defaults to `bot-bottle-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// The name of an environment variable of the controller's host process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_env: Option<String>,
    /// A file name under the sidecar's secrets directory. Only valid in the resolved sidecar
    /// policy the controller writes; never in a Bottle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// A value inside a JSON file on the runner host (a harness's forwarded login). Set only
    /// by a provider, never read from or written to a manifest or a policy file.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub host_json: Option<HostJson>,
}

/// A JSON file on the runner host and where in it the value is: the first of `pointers`
/// (RFC 6901) that holds a non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostJson {
    pub path: std::path::PathBuf,
    pub pointers: Vec<String>,
    /// What to do when the file or value is missing, for the Agent's condition.
    pub remedy: String,
}

impl SecretSource {
    pub fn host_env(name: impl Into<String>) -> Self {
        SecretSource {
            host_env: Some(name.into()),
            ..Default::default()
        }
    }

    /// The source names that are set, in schema order.
    pub fn set_sources(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.secret_key_ref.is_some() {
            v.push("secretKeyRef");
        }
        if self.host_env.is_some() {
            v.push("hostEnv");
        }
        if self.token_file.is_some() {
            v.push("tokenFile");
        }
        if self.host_json.is_some() {
            v.push("hostJson");
        }
        v
    }
}

/// Selects one key of a `Secret`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub name: String,
    /// Key within the Secret's `data` / `stringData`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub key: String,
    /// Namespace of the Secret; defaults to `bot-bottle-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
