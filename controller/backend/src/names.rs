//! The names and labels of every runtime resource of an Agent. Observe and sweep select by
//! label only; names are deterministic so a retried create finds what the first attempt made.

use std::collections::HashMap;

use crate::AgentId;

pub const MANAGED_BY: &str = "bot-bottle.dev/managed-by";
pub const MANAGER: &str = "bot-bottle";
pub const AGENT: &str = "bot-bottle.dev/agent";
pub const AGENT_UID: &str = "bot-bottle.dev/agent-uid";
pub const ROLE: &str = "bot-bottle.dev/role";
/// On a snapshot kept past its Agent (`spec.lifecycle.keepSnapshot`): `namespace/name`.
pub const KEPT_FROM: &str = "bot-bottle.dev/kept-from";
/// Which controller instance made it: a sweep only ever removes its own instance's leftovers,
/// never those of another control plane sharing the engine.
pub const CONTROLLER: &str = "bot-bottle.dev/controller";
/// On the agent container: the plan hash it was created from.
pub const CONTAINER_HASH: &str = "bot-bottle.dev/container-hash";
/// On images the controller builds: the content hash they were built from.
pub const CONTENT_HASH: &str = "bot-bottle.dev/content-hash";

/// The sidecar's name on the internal network, as the agent's proxy variables use it.
pub const SIDECAR_ALIAS: &str = "bb-sidecar";
pub const PROXY_PORT: u16 = 3128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Sidecar,
    InternalNetwork,
    EgressNetwork,
    Snapshot,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Sidecar => "sidecar",
            Role::InternalNetwork => "internal-network",
            Role::EgressNetwork => "egress-network",
            Role::Snapshot => "snapshot",
        }
    }
}

/// `bb-<ns>-<name>-<uid8>`: readable in `docker ps`, unique per Agent incarnation. With a
/// `runner` tag (cluster mode) `bb-<ns>-<name>-<uid8>-<runner8>`: unique per copy, so runners
/// sharing an engine never collide (runtimes call `RuntimeConfig::prefix`).
pub fn prefix(id: &AgentId, runner: Option<&str>) -> String {
    let uid: String = id
        .uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    match runner {
        Some(r) => format!("bb-{}-{}-{uid}-{r}", id.namespace, id.name),
        None => format!("bb-{}-{}-{uid}", id.namespace, id.name),
    }
}

/// The name of one resource of the Agent's copy (runtimes call `RuntimeConfig::name`).
pub fn name(id: &AgentId, role: Role, runner: Option<&str>) -> String {
    let suffix = match role {
        Role::Agent => "agent",
        Role::Sidecar => "sidecar",
        Role::InternalNetwork => "internal",
        Role::EgressNetwork => "egress",
        Role::Snapshot => "snapshot",
    };
    format!("{}-{suffix}", prefix(id, runner))
}

pub fn labels(id: &AgentId, role: Role, instance: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (CONTROLLER.to_string(), instance.to_string()),
        (AGENT.to_string(), format!("{}/{}", id.namespace, id.name)),
        (AGENT_UID.to_string(), id.uid.clone()),
        (ROLE.to_string(), role.as_str().to_string()),
    ])
}

/// A Docker `label=` filter selecting the resources of this instance's copy of one Agent:
/// never another runner's copy on a shared engine.
pub fn copy_filter(id: &AgentId, instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED_BY}={MANAGER}"),
            format!("{AGENT_UID}={}", id.uid),
            format!("{CONTROLLER}={instance}"),
        ],
    )])
}

/// A Docker `label=` filter selecting one Agent's resources whoever made them: its snapshots,
/// which any runner that takes the Agent over may start from.
pub fn agent_filter(id: &AgentId) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED_BY}={MANAGER}"),
            format!("{AGENT_UID}={}", id.uid),
        ],
    )])
}

/// Every resource this controller instance manages.
pub fn managed_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED_BY}={MANAGER}"),
            format!("{CONTROLLER}={instance}"),
        ],
    )])
}

/// The Agent a resource's labels name, if they name one completely.
pub fn agent_from_labels(labels: &HashMap<String, String>) -> Option<AgentId> {
    let (ns, name) = labels.get(AGENT)?.split_once('/')?;
    Some(AgentId {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: labels.get(AGENT_UID)?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_to_the_agent() {
        let id = AgentId {
            namespace: "team".into(),
            name: "dev".into(),
            uid: "3f2a9c1e-0000-4000-8000-000000000000".into(),
        };
        assert_eq!(
            name(&id, Role::Sidecar, None),
            "bb-team-dev-3f2a9c1e-sidecar"
        );
        assert_eq!(
            name(&id, Role::Sidecar, Some("7c0ffee1")),
            "bb-team-dev-3f2a9c1e-7c0ffee1-sidecar"
        );
        let l = labels(&id, Role::Agent, "i1");
        assert_eq!(agent_from_labels(&l), Some(id));
        assert_eq!(l.get(ROLE).map(String::as_str), Some("agent"));
        assert_eq!(agent_from_labels(&HashMap::new()), None);
    }
}
