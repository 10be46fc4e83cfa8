//! The `Bottle` resource: a cluster-scoped policy (provider, env, egress, git-gate, supervise,
//! runtime) that Agents run inside. Cluster-scoped because the policy is the trust boundary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::egress::EgressSpec;
use crate::env::EnvVar;
use crate::git_gate::GitGateSpec;
use crate::provider::AgentProvider;
use crate::runtime::RuntimeSpec;

/// Desired policy of a bottle. Every field is optional so a child bottle states only what it
/// changes; `extends` names the parent it is merged onto.
#[derive(
    CustomResource, Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "bot-bottle.dev",
    version = "v1alpha1",
    kind = "Bottle",
    plural = "bottles",
    shortname = "bt",
    category = "bot-bottle",
    status = "BottleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Bottle is the policy an Agent runs inside: agent provider, environment, egress allowlist with injected credentials and DLP, git-gate repos, supervise and runtime hardening.",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider"}"#,
    printcolumn = r#"{"name":"Routes","type":"integer","jsonPath":".status.routeCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BottleSpec {
    /// Name of the parent Bottle this one is merged onto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// The agent harness. Replaced whole when a child sets it. Default: `{template: claude}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_provider: Option<AgentProvider>,
    /// Environment of the agent, merged by name (child wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Option<Vec<EnvVar>>,
    /// Egress allowlist; routes concatenate along `extends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressSpec>,
    /// Git identity and the upstream repos pushes are gated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<GitGateSpec>,
    /// Run the supervise MCP server so the agent can ask for more access. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<bool>,
    /// Isolation and resource limits of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
    /// Finding credentials in what the runner copies into the agent (workspace, skills,
    /// provider files), whose values the sidecar then guards like the bottle's own. On by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_discovery: Option<SecretDiscovery>,
}

/// `spec.secretDiscovery`: whether the runner looks for credentials in the files it copies in,
/// and which workspace paths it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretDiscovery {
    /// Look for credentials at all. Default true. Turning it off leaves only the bottle's own
    /// credentials and the token formats guarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Workspace-relative files or directories not read (`fixtures/`, `test/keys.pem`): each
    /// entry leaves out that path and everything under it. Concatenated along `extends`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl BottleSpec {
    pub fn supervise(&self) -> bool {
        self.supervise.unwrap_or(true)
    }

    pub fn env(&self) -> &[EnvVar] {
        self.env.as_deref().unwrap_or(&[])
    }
}

/// Observed state of a Bottle, written by the Bottle reconciler.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BottleStatus {
    /// Conditions (`Ready`), Kubernetes conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Provider template after `extends` resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Number of egress routes after `extends` resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_count: Option<i64>,
    /// The `extends` chain, root first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Hash of the sidecar policy this Bottle resolves to; an Agent's `appliedPolicyHash` equals
    /// it once its sidecar runs that policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_policy_hash: Option<String>,
    /// Human-readable summary, set on error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
