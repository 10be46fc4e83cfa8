//! Environment variables a Bottle gives its agent: literal values, which are plain config, and
//! sourced values (a Secret key, the controller host's environment, or a prompt), which are secret.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;

/// One environment variable of the agent. Exactly one of `value` or `valueFrom` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name: letters, digits and `_`, not starting with a digit.
    #[schemars(length(min = 1))]
    pub name: String,
    /// A literal value. Not secret: it is visible in the Bottle and the agent's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A secret value resolved by the controller when the agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

impl EnvVar {
    /// True when the value must be treated as a secret (never logged or shown).
    pub fn is_secret(&self) -> bool {
        self.value_from.is_some()
    }
}

/// Where a secret env value comes from. Exactly one source must be set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSource {
    /// A key of a Kubernetes `Secret` (namespace defaults to `bot-bottle-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// An environment variable of the controller's host process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_env: Option<HostEnvSelector>,
    /// Ask the user (without echo) when the agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptSource>,
}

impl EnvSource {
    pub fn set_sources(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.secret_key_ref.is_some() {
            v.push("secretKeyRef");
        }
        if self.host_env.is_some() {
            v.push("hostEnv");
        }
        if self.prompt.is_some() {
            v.push("prompt");
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEnvSelector {
    /// Name of the controller host's environment variable.
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptSource {
    /// Text shown when asking; defaults to the variable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
