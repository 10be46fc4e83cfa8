//! Runtime hardening knobs of a Bottle: the gVisor policy and resource limits the backend
//! applies to the agent container.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GvisorMode {
    /// Use gVisor (`runsc`) when the engine has it registered.
    #[default]
    Auto,
    /// Refuse to start without gVisor.
    Required,
    /// Never use gVisor.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeSpec {
    /// `auto` (default), `required` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gvisor: Option<GvisorMode>,
    /// CPU limit as a Kubernetes quantity (`2`, `1.5`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory limit as a Kubernetes quantity (`4Gi`, `512Mi`); at least 6Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Maximum number of processes in the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pids: Option<i64>,
}

impl RuntimeSpec {
    /// Per field, a value set in `over` wins.
    pub fn overlay(&self, over: &RuntimeSpec) -> RuntimeSpec {
        RuntimeSpec {
            gvisor: over.gvisor.or(self.gvisor),
            cpu: over.cpu.clone().or_else(|| self.cpu.clone()),
            memory: over.memory.clone().or_else(|| self.memory.clone()),
            pids: over.pids.or(self.pids),
        }
    }
}
