//! An in-memory backend for controller tests, with fault injection (fail a step N times, hang
//! a step, make resources vanish). It stands in only where a real runtime cannot run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;

use super::{
    AgentId, AgentPlan, Backend, BackendError, ImageSource, Observed, SecretBytes, SidecarPlan,
    Step,
};

/// Stands in for a bottle CA key: the fake's sidecars hash what they "load" with it.
const FAKE_CA_KEY: &[u8] = b"fake bottle CA key";

/// What the fake holds for one Agent.
#[derive(Debug, Clone, Default)]
pub struct FakeAgent {
    pub image: Option<String>,
    pub network: bool,
    pub sidecar_policy: Option<String>,
    pub sidecar_policy_yaml: Option<String>,
    pub secret_files: BTreeMap<String, SecretBytes>,
    pub agent_hash: Option<String>,
    pub provisioned: bool,
    /// The sidecar is stopped (`stop`), as is the agent while `agent_stopped`.
    pub stopped: bool,
    pub agent_stopped: bool,
    pub sidecar_creates: u32,
    pub agent_creates: u32,
    pub policy_reloads: u32,
    pub snapshots: u32,
    /// The image the agent container was last created from.
    pub agent_image: Option<String>,
    /// How often an image was built or looked up for this Agent.
    pub image_builds: u32,
}

#[derive(Debug, Default)]
struct Faults {
    fail: HashMap<Step, u32>,
    hang: HashMap<Step, Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeBackend {
    agents: Arc<Mutex<BTreeMap<AgentId, FakeAgent>>>,
    faults: Arc<Mutex<Faults>>,
    /// Snapshot images that exist (pruning one tests the fresh-image fallback).
    images: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `times` calls of `step` fail.
    pub fn fail(&self, step: Step, times: u32) {
        if let Ok(mut f) = self.faults.lock() {
            f.fail.insert(step, times);
        }
    }

    /// Calls of `step` take `d` before doing anything.
    pub fn hang(&self, step: Step, d: Duration) {
        if let Ok(mut f) = self.faults.lock() {
            f.hang.insert(step, d);
        }
    }

    /// Deletes every snapshot image, as `docker image prune` would.
    pub fn prune_snapshots(&self) {
        if let Ok(mut i) = self.images.lock() {
            i.clear();
        }
    }

    /// Removes an Agent's sidecar out of band, as `docker rm -f` would.
    pub fn vanish_sidecar(&self, name: &str) {
        self.with_all(|m| {
            for (id, a) in m.iter_mut() {
                if id.name == name {
                    a.sidecar_policy = None;
                    a.sidecar_policy_yaml = None;
                    a.secret_files.clear();
                }
            }
        });
    }

    /// Leaves resources behind for an Agent the API no longer has (for the start-up sweep).
    pub fn plant_orphan(&self, id: AgentId) {
        self.with_all(|m| {
            m.insert(
                id,
                FakeAgent {
                    network: true,
                    ..Default::default()
                },
            );
        });
    }

    pub fn snapshot_of(&self, name: &str) -> Option<FakeAgent> {
        self.with_all(|m| {
            m.iter()
                .find(|(id, _)| id.name == name)
                .map(|(_, a)| a.clone())
        })
    }

    pub fn count(&self) -> usize {
        self.with_all(|m| m.len())
    }

    fn with_all<T>(&self, f: impl FnOnce(&mut BTreeMap<AgentId, FakeAgent>) -> T) -> T {
        match self.agents.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    async fn gate(&self, step: Step) -> Result<(), BackendError> {
        let (fail, hang) = match self.faults.lock() {
            Ok(mut f) => {
                let fail = match f.fail.get_mut(&step) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                (fail, f.hang.get(&step).copied())
            }
            Err(_) => (false, None),
        };
        if let Some(d) = hang {
            tokio::time::sleep(d).await;
        }
        if fail {
            return Err(BackendError::new(step, "injected failure"));
        }
        Ok(())
    }

    fn with<T>(&self, id: &AgentId, f: impl FnOnce(&mut FakeAgent) -> T) -> T {
        self.with_all(|m| f(m.entry(id.clone()).or_default()))
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError> {
        self.gate(Step::Observe).await?;
        Ok(self.with_all(|m| match m.get(id) {
            None => Observed::default(),
            Some(a) => Observed {
                image: a.image.clone(),
                network: a.network,
                sidecar_policy: if a.stopped {
                    None
                } else {
                    a.sidecar_policy.clone()
                },
                agent_container: if a.agent_stopped {
                    None
                } else {
                    a.agent_hash.clone()
                },
                provisioned: a.provisioned,
            },
        }))
    }

    async fn ensure_image(
        &self,
        id: &AgentId,
        image: &ImageSource,
    ) -> Result<String, BackendError> {
        self.gate(Step::Image).await?;
        let r = match image {
            ImageSource::Reference(r) => r.clone(),
            ImageSource::Dockerfile(p) => format!("fake-build:{}", p.len()),
        };
        self.with(id, |a| {
            a.image = Some(r.clone());
            a.image_builds += 1;
        });
        Ok(r)
    }

    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Network).await?;
        self.with(id, |a| a.network = true);
        Ok(())
    }

    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        self.gate(Step::Sidecar).await?;
        self.with(id, |a| {
            if a.sidecar_policy.is_none() || a.stopped {
                a.sidecar_creates += 1;
                a.sidecar_policy = Some(applied.to_string());
                a.sidecar_policy_yaml = Some(plan.policy_yaml.clone());
                a.secret_files = plan.secret_files.clone();
                a.stopped = false;
            }
        });
        Ok(SidecarEndpoints {
            proxy: Some("http://sidecar:9099".into()),
            git_gate: Some("http://sidecar:9420".into()),
            supervise: Some("http://sidecar:9100/mcp".into()),
        })
    }

    fn policy_hash(&self, _id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError> {
        Ok(plan.applied_hash(FAKE_CA_KEY))
    }

    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError> {
        self.gate(Step::Policy).await?;
        self.with(id, |a| {
            a.policy_reloads += 1;
            a.sidecar_policy = Some(applied.to_string());
            a.sidecar_policy_yaml = Some(plan.policy_yaml.clone());
            a.secret_files = plan.secret_files.clone();
        });
        Ok(())
    }

    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        self.gate(Step::Agent).await?;
        self.with(id, |a| {
            if a.agent_hash.as_deref() != Some(plan.container_hash.as_str()) || a.agent_stopped {
                a.agent_image = Some(image.to_string());
                a.agent_creates += 1;
                a.agent_hash = Some(plan.container_hash.clone());
                a.provisioned = false;
                a.agent_stopped = false;
            }
        });
        Ok(())
    }

    async fn provision(&self, id: &AgentId, _plan: &AgentPlan) -> Result<(), BackendError> {
        self.gate(Step::Provision).await?;
        self.with(id, |a| a.provisioned = true);
        Ok(())
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.gate(Step::Snapshot).await?;
        let snap = self.with(id, |a| {
            a.snapshots += 1;
            format!("fake-snapshot/{}:{}", id.name, a.snapshots)
        });
        if let Ok(mut i) = self.images.lock() {
            i.insert(snap.clone());
        }
        Ok(snap)
    }

    async fn has_image(&self, image: &str) -> Result<bool, BackendError> {
        Ok(self
            .images
            .lock()
            .map(|i| i.contains(image))
            .unwrap_or(false))
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Stop).await?;
        self.with(id, |a| {
            a.stopped = true;
            a.agent_stopped = true;
        });
        Ok(())
    }

    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Teardown).await?;
        self.with_all(|m| m.remove(id));
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError> {
        Ok(self.with_all(|m| m.keys().cloned().collect()))
    }
}
