//! The Docker runtime `bbctl demo` runs its one Agent on, and the stand-in upstream it puts on
//! that Agent's egress network: what the demo needs of a runtime, so that bbctl links none.

use std::path::Path;
use std::time::Duration;

pub use bb_backend::config::{DEBIAN_BASE, HERMETIC_BASE};
use bb_backend::names::Role;
use bb_backend::{AgentId, BackendError, RuntimeConfig};
use bb_crds::Agent;
use bb_docker::DockerBackend;
pub use bb_docker::Fixture;

use crate::control_plane::Runner;
use crate::options::RunError;

/// Docker, set up for the demo: its upstream's CA trusted, private upstreams allowed (the
/// demo's "internet" is a container on the bottle's private egress network).
#[derive(Debug, Clone)]
pub struct DemoRuntime {
    docker: DockerBackend,
}

impl DemoRuntime {
    pub async fn connect(
        home: &Path,
        instance: &str,
        upstream_ca: &Path,
    ) -> Result<DemoRuntime, BackendError> {
        let mut cfg = RuntimeConfig::for_home(home, instance);
        cfg.upstream_ca = Some(upstream_ca.to_path_buf());
        cfg.allow_private_upstreams = true;
        Ok(DemoRuntime {
            docker: DockerBackend::connect(cfg).await?,
        })
    }

    /// Whether the engine holds `image` (false when it cannot say).
    pub async fn has_image(&self, image: &str) -> bool {
        use bb_backend::Backend;
        self.docker.has_image(image).await.unwrap_or(false)
    }

    /// Pulls `image`; false when no registry answers.
    pub async fn pull(&self, image: &str) -> bool {
        self.docker.pull(image).await
    }

    pub fn with_base_image(self, base: &str) -> DemoRuntime {
        DemoRuntime {
            docker: self.docker.with_base_image(base),
        }
    }

    /// Each image build step as it starts.
    pub fn build_progress(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.docker.build_progress()
    }

    /// A runner on this runtime for the control plane `client` reaches: sessions on loopback,
    /// a short resync (the demo waits on it).
    pub async fn start_runner(
        &self,
        client: kube::Client,
        identity: &str,
        creds: &bb_home::pki::Credentials,
    ) -> Result<Runner, RunError> {
        Runner::start(
            client,
            identity,
            Some(std::sync::Arc::new(self.docker.clone())),
            Duration::from_secs(2),
            ([127, 0, 0, 1], 0).into(),
            creds,
            None,
        )
        .await
    }

    /// Starts `fixture` on `agent`'s egress network, where its sidecar reaches it.
    pub async fn start_upstream(
        &self,
        agent: &Agent,
        mut fixture: Fixture,
    ) -> Result<(), BackendError> {
        fixture.network = self
            .docker
            .runtime()
            .name(&AgentId::from(agent), Role::EgressNetwork);
        self.docker.run_fixture(&fixture).await
    }

    /// The container `agent` runs in.
    pub fn agent_container(&self, agent: &Agent) -> String {
        self.docker
            .runtime()
            .name(&AgentId::from(agent), Role::Agent)
    }

    /// What the upstream `name` printed.
    pub async fn upstream_log(&self, name: &str) -> String {
        self.docker.fixture_log(name).await
    }

    pub async fn remove_upstream(&self, name: &str) {
        self.docker.remove_fixture(name).await
    }
}
