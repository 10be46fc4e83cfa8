//! What every Agent reconcile works with: the client, the runtime, the Bottle cache, this
//! runner's claims and backoff, and what of an Agent counts as a change worth acting on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bb_crds::{Agent, AgentPool, Bottle};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};

use super::backoff;
use bb_backend::SharedBackend;

pub struct AgentCtx {
    pub client: kube::Client,
    /// How often a Running Agent is checked again without a watch event (repairs drift).
    pub resync: Duration,
    pub backend: SharedBackend,
    /// This runner's session endpoint, recorded in every Agent it runs.
    pub session_endpoint: Option<String>,
    pub bottles: Store<Bottle>,
    pub reporter: Reporter,
    /// Failing Agents' gaps and holds: a reconcile woken early by anything that is not a
    /// reason to act (its own status write) waits the rest out.
    pub(crate) backoff: backoff::Backoff,
    /// One recorder for every Agent event, so repeats of an event fold into one series (count,
    /// last seen) as Kubernetes' own recorders do, instead of one Event object each.
    pub(crate) recorder: kube::runtime::events::Recorder,
    /// The routes each Agent's sidecar enforces, for the proposal mirror to diff against.
    pub live_routes: crate::supervise::mirror::LiveRoutes,
    /// What sessions of each running Agent need, for the session endpoint.
    pub session_plans: crate::sessions::plans::SessionPlans,
    /// The last request count of each running Agent's sidecar and when it moved: the egress
    /// half of `spec.lifecycle.idleSuspendAfter` (sessions are the other).
    pub(crate) egress_seen: super::lifecycle::EgressSeen,
    /// Cluster mode: this runner's claims, which gate every reconcile. `None` on a local
    /// control plane, where the one runner holds every Agent.
    pub claims: Option<Arc<crate::cluster::claims::Claims>>,
    /// The warm pools a new Agent may claim a member of (`super::claim`).
    pub pools: Store<AgentPool>,
}

impl std::fmt::Debug for AgentCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCtx")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl AgentCtx {
    /// What of `a` and its Bottle chain is a reason to act (see `agent_changed`).
    pub(crate) fn fingerprint(&self, a: &Agent) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        agent_changed(a).hash(&mut h);
        // A Bottle edit is a change too: the chain's generations, child to root.
        let mut seen = BTreeSet::new();
        let mut cur = Some(a.spec.bottle_ref.name.clone());
        while let Some(name) = cur.take() {
            if !seen.insert(name.clone()) {
                break;
            }
            let b = self.bottles.get(&ObjectRef::new(&name));
            (&name, b.as_ref().and_then(|b| b.metadata.generation)).hash(&mut h);
            cur = b.and_then(|b| b.spec.extends.clone());
        }
        h.finish()
    }
}

/// What of an Agent is a reason to reconcile it: its spec (generation), its deletion and
/// finalizers, labels and annotations, and which runner holds it (cluster claims). Not the rest
/// of its status, which the reconciler writes itself: a failing step that writes a new message
/// each attempt would otherwise wake the next attempt at once, whatever its backoff said.
pub(crate) fn agent_changed(a: &Agent) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = &a.metadata;
    m.generation.hash(&mut h);
    m.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut h);
    m.finalizers.hash(&mut h);
    m.labels.hash(&mut h);
    m.annotations.hash(&mut h);
    a.status
        .as_ref()
        .and_then(|s| s.runner.as_ref())
        .hash(&mut h);
    h.finish()
}
