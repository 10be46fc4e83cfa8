//! The `Agent` resource: one running bottle (bottle reference, prompt, skills, workspace,
//! identity, label and colour, backend, suspend) and the status the controller reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::GitUser;

/// Desired state of one agent.
#[derive(
    CustomResource, Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "bot-bottle.dev",
    version = "v1alpha1",
    kind = "Agent",
    plural = "agents",
    shortname = "ag",
    category = "bot-bottle",
    namespaced,
    status = "AgentStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An Agent is one coding agent running inside a Bottle, reached only through its sidecar.",
    printcolumn = r#"{"name":"Bottle","type":"string","jsonPath":".spec.bottleRef.name"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.backend"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// The Bottle this agent runs in.
    pub bottle_ref: BottleRef,
    /// Instructions given to the agent at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Skills to install: a name resolved under the skills root, or an absolute host directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// Host directory copied into the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// Overrides the bottle's `gitGate.user` per non-empty field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_user: Option<GitUser>,
    /// Short human label shown in the terminal title and status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Accent colour of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    /// Where to run: `auto` (default), `docker`, `apple-container` or `smolvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// Snapshot and stop the agent, keeping its state; false resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Asks for a snapshot of the running agent: each new value (`bbctl commit` writes a
    /// timestamp) is one request, answered in `status.snapshot` and
    /// `status.snapshotRequestHandled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_request: Option<String>,
    /// Where the agent's files start from instead of its image: a fork of another Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<AgentSource>,
    /// When the runner suspends or deletes this Agent by itself: after it has been idle, after a
    /// time to live, after its attached command exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Cluster mode: labels a runner must carry (`bbctl controller run --runner-label`) to run
    /// this Agent; every pair must match. Unset, any runner may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_selector: Option<std::collections::BTreeMap<String, String>>,
}

/// `spec.source`: the files a new Agent starts from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSource {
    /// Fork: a snapshot of this Agent (same namespace and Bottle, running or suspended, on the
    /// same runner), taken once when this Agent's container is first made. The source keeps
    /// running; the two diverge from then on.
    pub agent_ref: AgentRef,
}

/// Names another Agent in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// `spec.lifecycle`: what the runner does by itself with an Agent nobody is using.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// Suspend the Agent after this long with no session attached and no request through its
    /// sidecar (`30m`, `2h`); `bbctl attach` resumes it. Unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_suspend_after: Option<String>,
    /// Delete the Agent this long after it was created (`8h`, `7d`), whatever its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Delete the Agent once an attached session's command (the provider's harness) exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_exit: Option<bool>,
    /// Before a deletion by `ttl` or `deleteAfterExit`, keep an image of the agent's files that
    /// outlives the Agent (named in its `Expired` event). Default false: nothing is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_snapshot: Option<bool>,
}

/// `status.bottleCopy`: the pool member an Agent runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BottleCopy {
    /// The AgentPool it came from.
    pub pool: String,
    /// The member's name on the runtime.
    pub name: String,
    /// The member's identity on the runtime.
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BottleRef {
    /// Name of the Bottle.
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workspace {
    /// Absolute directory on the controller host.
    #[schemars(length(min = 1))]
    pub host_path: String,
    /// Copy the directory in at start. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<bool>,
    /// Include the `.git` directory in the copy. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_git: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
}

impl Color {
    pub const ALL: [Color; 5] = [
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
    ];

    /// The serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Blue => "blue",
            Color::Magenta => "magenta",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    #[default]
    Auto,
    Docker,
    AppleContainer,
    Smolvm,
}

/// Lifecycle phase of an Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AgentPhase {
    Pending,
    Building,
    Starting,
    Running,
    Suspended,
    Failed,
    Terminating,
}

impl BackendKind {
    /// The name as written in `spec.backend` (its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Docker => "docker",
            BackendKind::AppleContainer => "apple-container",
            BackendKind::Smolvm => "smolvm",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AgentPhase {
    /// The name as written in `status.phase` (its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentPhase::Pending => "Pending",
            AgentPhase::Building => "Building",
            AgentPhase::Starting => "Starting",
            AgentPhase::Running => "Running",
            AgentPhase::Suspended => "Suspended",
            AgentPhase::Failed => "Failed",
            AgentPhase::Terminating => "Terminating",
        }
    }
}

impl std::fmt::Display for AgentPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the agent's sidecar listens, as seen from inside the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarEndpoints {
    /// HTTP(S) proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// git-gate smart-HTTP base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<String>,
    /// supervise MCP URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<String>,
}

/// `status.guardedSecrets`: how many secrets of the copied files the sidecar guards, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardedSecrets {
    /// How many values are guarded.
    pub count: i64,
    /// Where they were found (the first 50), as the agent sees the files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<GuardedSecretLocation>,
    /// Files not read by rule: larger than 1 MiB, or binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_skipped: Option<i64>,
}

/// Where one guarded secret was found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardedSecretLocation {
    pub path: String,
    pub line: i64,
    /// The file format or rule that found it (`dotenv`, `kubeconfig`, `aws-access-key-id`).
    pub kind: String,
}

/// Observed state of an Agent, written by the Agent reconciler.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AgentPhase>,
    /// `ImagesReady`, `SidecarReady`, `PolicyApplied`, `Provisioned`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Backend actually used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<SidecarEndpoints>,
    /// Hash of the policy the sidecar has loaded: equal to its Bottle's `resolvedPolicyHash`
    /// once the sidecar runs what the Bottle says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_policy_hash: Option<String>,
    /// Keyed hash (HMAC by the bottle CA key) of the policy and the credential values the
    /// sidecar has loaded: it changes when a credential rotates, and reveals nothing about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_credentials_hash: Option<String>,
    /// Where the runner that runs this Agent serves its sessions (attach, exec, logs): a base
    /// URL under which `/apis/bot-bottle.dev/v1alpha1/namespaces/NS/agents/NAME/{exec,attach,log}`
    /// answer. `bbctl` connects there; only that runner touches the Agent's runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_endpoint: Option<String>,
    /// Cluster mode: the runner that holds this Agent (its identity; its heartbeat is the Lease
    /// `runner-<identity>` in `bot-bottle-system`). Written only by a claim or a release, each
    /// conditional on the Agent's resourceVersion; only the holder acts on the Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Approved Proposals the sidecar enforces on top of the Bottle: while any is listed,
    /// `appliedPolicyHash` differs from the Bottle's `resolvedPolicyHash`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// The credentials found in what the runner copied into the agent, whose values the sidecar
    /// guards (`Bottle.spec.secretDiscovery`): where each is, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarded_secrets: Option<GuardedSecrets>,
    /// The warm pool member this Agent claimed (`AgentPool`): its containers and network keep
    /// the member's name and identity on the runtime for the Agent's whole life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottle_copy: Option<BottleCopy>,
    /// Image (or artifact) holding the latest snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The `spec.snapshotRequest` that `snapshot` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_request_handled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_the_serde_names() {
        for p in [
            AgentPhase::Pending,
            AgentPhase::Building,
            AgentPhase::Starting,
            AgentPhase::Running,
            AgentPhase::Suspended,
            AgentPhase::Failed,
            AgentPhase::Terminating,
        ] {
            assert_eq!(serde_json::to_value(p).ok(), Some(p.to_string().into()));
        }
        for b in [
            BackendKind::Auto,
            BackendKind::Docker,
            BackendKind::AppleContainer,
            BackendKind::Smolvm,
        ] {
            assert_eq!(serde_json::to_value(b).ok(), Some(b.to_string().into()));
        }
    }
}
