//! The `AgentPool` resource: bottles of one Bottle kept started and provisioned ahead of the
//! Agents that claim them, and the status its runner reports (the members, ready or starting).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::BottleRef;

/// The most members one pool may hold: each is a running sidecar and agent container.
pub const MAX_SIZE: i64 = 50;

/// Desired state of one warm pool.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "bot-bottle.dev",
    version = "v1alpha1",
    kind = "AgentPool",
    plural = "agentpools",
    shortname = "pool",
    category = "bot-bottle",
    namespaced,
    status = "AgentPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An AgentPool keeps bottles of one Bottle started and provisioned, so that a new Agent of that Bottle claims one instead of starting its own.",
    printcolumn = r#"{"name":"Bottle","type":"string","jsonPath":".spec.bottleRef.name"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentPoolSpec {
    /// The Bottle whose bottles the pool keeps; Agents of this Bottle in the pool's namespace
    /// claim them.
    pub bottle_ref: BottleRef,
    /// How many unclaimed members to keep, 0 to 50. A claimed member leaves the pool and a new
    /// one is started in its place.
    pub size: i64,
    /// How many members the runner starts at once while filling the pool (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_starting: Option<i64>,
}

/// One member of a pool: a bottle with no Agent yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolMember {
    /// Its name on the runtime (`<pool>-<5 characters>`).
    pub name: String,
    /// Its identity on the runtime, which the Agent that claims it takes over.
    pub uid: String,
    /// What it was started from (the Bottle's container and policy); a member of an older
    /// plan is replaced, never claimed.
    pub plan_hash: String,
    /// Started and provisioned: an Agent may claim it.
    #[serde(default)]
    pub ready: bool,
    /// In cluster mode, the runner whose engine it runs on: only that runner starts, checks
    /// and removes it, and only Agents that runner holds claim it. Unset on a local control
    /// plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Why its last start failed; cleared once it is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Observed state of a pool, written by the runner; a claim removes its member from `members`,
/// conditional on the pool's resourceVersion, so no member is ever claimed twice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many members are ready to be claimed.
    #[serde(default)]
    pub ready: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<PoolMember>,
    /// `Ready`: the pool is full of members of the Bottle's current plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AgentPoolStatus {
    /// The first ready member of `plan_hash` on `runner` (`None`: a local control plane's
    /// members), if any.
    pub fn claimable(&self, plan_hash: &str, runner: Option<&str>) -> Option<&PoolMember> {
        self.members
            .iter()
            .find(|m| m.ready && m.plan_hash == plan_hash && m.runner.as_deref() == runner)
    }

    /// Recounts `ready` after `members` changed.
    pub fn recount(&mut self) {
        self.ready = self.members.iter().filter(|m| m.ready).count() as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, plan: &str, ready: bool) -> PoolMember {
        PoolMember {
            name: name.into(),
            uid: format!("uid-{name}"),
            plan_hash: plan.into(),
            ready,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_ready_member_of_the_current_plan_is_claimable() {
        let mut s = AgentPoolStatus {
            members: vec![
                member("a", "old", true),
                member("b", "new", false),
                member("c", "new", true),
            ],
            ..Default::default()
        };
        assert_eq!(s.claimable("new", None).map(|m| m.name.as_str()), Some("c"));
        assert_eq!(s.claimable("other", None), None);
        // In cluster mode a runner claims only the members on its own engine.
        s.members[2].runner = Some("r1".into());
        assert_eq!(s.claimable("new", None), None);
        assert_eq!(s.claimable("new", Some("r2")), None);
        assert_eq!(
            s.claimable("new", Some("r1")).map(|m| m.name.as_str()),
            Some("c")
        );
        s.recount();
        assert_eq!(s.ready, 2);
    }
}
