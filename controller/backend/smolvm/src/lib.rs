//! The smolvm backend: each Agent's agent is a libkrun micro-VM booted from an artifact packed
//! from its image; its sidecar is a Docker container whose ports are published on one loopback
//! address, the only address the VM may reach (TSI `--allow-cidr`, DNS filtered below the guest).

pub mod cli;
mod machines;
mod record;
mod vm;

pub use machines::INSTALL_HINT;
use machines::machines;
use record::VmRecord;
use vm::Vms;

use std::path::PathBuf;

use bb_crds::agent::SidecarEndpoints;

use bb_backend::names::Role;
use bb_backend::{
    AgentId, AgentPlan, Backend, BackendError, ImageSource, Observed, SidecarPlan, Step,
};
use bb_docker::DockerBackend;
use bb_docker::placement::Placement;

/// `smolvm` on PATH, if there is one.
pub fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cli::CLI))
        .find(|p| p.is_file())
}

/// Agents as smolvm VMs beside Docker sidecars.
#[derive(Debug, Clone)]
pub struct SmolvmBackend {
    docker: DockerBackend,
    vms: Vms,
}

impl SmolvmBackend {
    /// `docker` runs the sidecars; `smolvm` is the CLI, which must answer; `dir` holds records
    /// and artifacts.
    pub async fn connect(
        docker: DockerBackend,
        smolvm: PathBuf,
        dir: PathBuf,
    ) -> Result<SmolvmBackend, BackendError> {
        let vms = Vms::new(smolvm, dir, docker.runtime().clone());
        vms.cli
            .ok(Step::Connect, &["--version".to_string()], None)
            .await?;
        Ok(SmolvmBackend { docker, vms })
    }
}

#[async_trait::async_trait]
impl Backend for SmolvmBackend {
    fn name(&self) -> &'static str {
        "smolvm"
    }

    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError> {
        let mut seen = Observed {
            sidecar_policy: self.docker.observe(id).await?.sidecar_policy,
            ..Default::default()
        };
        let name = self.docker.runtime().name(id, Role::Agent);
        let running = machines(&self.vms.cli, Step::Observe)
            .await?
            .iter()
            .any(|m| m.name == name && m.running());
        let made = record::load(&self.vms.records(), id).and_then(|r| r.vm);
        if let (true, Some(made)) = (running, made) {
            seen.image = Some(made.artifact);
            seen.agent_container = Some(made.container_hash);
            seen.provisioned = self.vms.provisioned(&name).await;
        }
        Ok(seen)
    }

    async fn ensure_image(
        &self,
        id: &AgentId,
        image: &ImageSource,
        steps: &bb_backend::BuildSteps,
    ) -> Result<String, BackendError> {
        let built = self.docker.ensure_image(id, image, steps).await?;
        self.vms.artifact_for(&built).await
    }

    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError> {
        // The VM is on no Docker network: the sidecar needs only its way out.
        self.docker
            .ensure_network_named(id, Role::EgressNetwork, false)
            .await
    }

    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        let alias = self.vms.record(id).await?.alias;
        self.docker
            .run_sidecar(id, plan, applied, Placement::Loopback(alias))
            .await
    }

    fn policy_hash(&self, id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError> {
        self.docker.policy_hash(id, plan)
    }

    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError> {
        self.docker.apply_policy(id, plan, applied).await
    }

    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        self.vms.create(id, image, plan).await
    }

    async fn provision(&self, id: &AgentId, plan: &AgentPlan) -> Result<(), BackendError> {
        self.vms.provision(id, plan, self.docker.runtime()).await
    }

    async fn has_image(&self, image: &str) -> Result<bool, BackendError> {
        Ok(std::path::Path::new(image).is_file())
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.vms.snapshot(id).await
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        let name = self.docker.runtime().name(id, Role::Agent);
        if machines(&self.vms.cli, Step::Stop)
            .await?
            .iter()
            .any(|m| m.name == name && m.running())
        {
            let args = cli::machine_stop(&name);
            let out = self.vms.cli.output(Step::Stop, &args, None).await?;
            if !out.success() {
                return Err(self.vms.cli.failed(Step::Stop, &args, &out));
            }
        }
        self.docker.stop(id).await
    }

    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError> {
        self.evict(id).await?;
        let snapshots = self.vms.snapshots(id);
        match std::fs::remove_dir_all(&snapshots) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::new(
                Step::Teardown,
                format!("removing {}: {e}", snapshots.display()),
            )),
        }
    }

    async fn evict(&self, id: &AgentId) -> Result<(), BackendError> {
        self.vms
            .remove(&self.docker.runtime().name(id, Role::Agent), Step::Teardown)
            .await?;
        self.docker.evict(id).await?;
        record::remove(&self.vms.records(), id)
    }

    fn agent_dir(&self, id: &AgentId) -> PathBuf {
        self.docker.agent_dir(id)
    }

    fn skills_root(&self) -> PathBuf {
        self.docker.skills_root()
    }

    fn supervise_url(&self) -> String {
        self.docker.supervise_url()
    }

    fn hold_file(&self, id: &AgentId) -> Option<PathBuf> {
        self.docker.hold_file(id)
    }

    fn supervise_dir(&self, id: &AgentId) -> PathBuf {
        self.docker.supervise_dir(id)
    }

    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError> {
        let mut ids: std::collections::BTreeSet<AgentId> =
            self.docker.list_managed().await?.into_iter().collect();
        ids.extend(record::all(&self.vms.records())?.iter().map(VmRecord::id));
        Ok(ids.into_iter().collect())
    }

    async fn open_session(
        &self,
        id: &AgentId,
        spec: &bb_backend::SessionSpec,
    ) -> Result<bb_backend::Session, BackendError> {
        self.vms
            .open_session(id, spec, self.docker.runtime().agent_uid)
            .await
    }

    async fn resize_session(&self, session: &str, width: u16, height: u16) {
        self.vms.sessions.resize(session, width, height);
    }

    async fn session_exit_code(&self, session: &str) -> Result<Option<i64>, BackendError> {
        Ok(self.vms.sessions.exit_code(session).await)
    }

    async fn diagnose(&self) -> Vec<bb_backend::health::Check> {
        use bb_backend::health::Check;
        let mut checks = self.docker.diagnose().await;
        let version = self
            .vms
            .cli
            .output(Step::Connect, &["--version".to_string()], None)
            .await;
        checks.push(match version {
            Ok(out) if out.success() => Check::ok(
                "smolvm",
                format!(
                    "{} answers ({})",
                    self.vms.cli.program().display(),
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            ),
            Ok(out) => Check::fail("smolvm", out.tail(), INSTALL_HINT),
            Err(e) => Check::fail("smolvm", e.message, INSTALL_HINT),
        });
        checks
    }

    async fn logs(
        &self,
        id: &AgentId,
        source: bb_backend::LogSource,
        options: bb_backend::LogOptions,
    ) -> Result<bb_backend::Output, BackendError> {
        if source == bb_backend::LogSource::Agent {
            // The VM's workload only idles: what an agent does is in its sessions.
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        self.docker.logs(id, source, options).await
    }
}
