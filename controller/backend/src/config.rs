//! Settings every runtime backend shares: where per-Agent state lives, what images build on,
//! the sidecar binary, and the switches a runner is started with.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-Agent state (the bottle CA) lives in `<state_dir>/<uid>/`.
    pub state_dir: PathBuf,
    /// `BASE` build argument of every image the backend builds.
    pub base_image: String,
    /// The bb-sidecar executable copied into the sidecar image.
    pub sidecar_binary: PathBuf,
    /// Extra CA (PEM) sidecars trust for upstream servers, beside the system roots.
    pub upstream_ca: Option<PathBuf>,
    /// Sidecars may reach private addresses on every route (`--allow-private-upstreams`): a
    /// switch for test rigs whose stand-in upstreams live on private networks.
    pub allow_private_upstreams: bool,
    /// The uid owning the workspace and provisioned files in the agent.
    pub agent_uid: u64,
    /// Names this controller instance in the labels of what it creates (see `names::CONTROLLER`).
    pub instance: String,
    /// Where `spec.skills` names resolve on the controller host.
    pub skills_root: PathBuf,
    /// Prebuilt harness executables (`claude`, ...) that provider images take instead of
    /// fetching them (`--harness-dir`): air-gapped machines and CI.
    pub harness_dir: Option<PathBuf>,
    /// Cluster mode: another runner may take an Agent over, and may share this engine. Then
    /// every name carries this runner's instance (so two runners' copies never collide), and
    /// every sidecar is held by a file the runner renews (`hold_file`).
    pub fencing: Option<Fencing>,
}

/// Where a runner in cluster mode keeps its holds on its sidecars.
#[derive(Debug, Clone)]
pub struct Fencing {
    /// `<holds_dir>/<uid>/` is mounted read-only into the Agent's sidecar.
    pub holds_dir: PathBuf,
}

impl RuntimeConfig {
    /// The host directory holding the Agent's hold file, in cluster mode.
    pub fn hold_dir(&self, id: &super::AgentId) -> Option<PathBuf> {
        self.fencing.as_ref().map(|f| f.holds_dir.join(&id.uid))
    }

    /// The name of the Agent's `role` resource in the engine (see `names::name`).
    pub fn name(&self, id: &super::AgentId, role: super::names::Role) -> String {
        super::names::name(id, role, self.name_tag().as_deref())
    }

    /// The prefix of every name of the Agent's resources (see `names::prefix`).
    pub fn prefix(&self, id: &super::AgentId) -> String {
        super::names::prefix(id, self.name_tag().as_deref())
    }

    /// In cluster mode, the part of the instance names carry.
    fn name_tag(&self) -> Option<String> {
        self.fencing.as_ref().map(|_| {
            self.instance
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect()
        })
    }

    /// Where the Agent's own state (its bottle CA, staged files) lives on the host.
    pub fn agent_dir(&self, id: &super::AgentId) -> PathBuf {
        self.state_dir.join(&id.uid)
    }

    /// The Agent's bottle CA, minted the first time it is asked for.
    pub fn bottle_ca(
        &self,
        id: &super::AgentId,
    ) -> Result<super::bottle_ca::BottleCa, super::BackendError> {
        super::bottle_ca::load_or_create(&self.agent_dir(id), &id.to_string())
    }

    /// Defaults for a controller whose home is `home`: Debian's slim base (see `default_base`
    /// for the one a runtime actually gets) and the
    /// bb-sidecar installed next to the running executable.
    pub fn for_home(home: &std::path::Path, instance: &str) -> RuntimeConfig {
        let sidecar_binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("bb-sidecar")))
            .unwrap_or_else(|| PathBuf::from("bb-sidecar"));
        RuntimeConfig {
            state_dir: home.join("agents"),
            base_image: DEBIAN_BASE.into(),
            sidecar_binary,
            upstream_ca: None,
            allow_private_upstreams: false,
            agent_uid: 1000,
            instance: instance.to_string(),
            skills_root: home.join("skills"),
            harness_dir: None,
            fencing: None,
        }
    }
}

/// The base image `hack/build-base-image.sh` builds from Debian packages (no registry needed).
pub const HERMETIC_BASE: &str = "bot-bottle/base:bookworm";
/// Debian's slim image, pulled from a registry on first use.
pub const DEBIAN_BASE: &str = "debian:bookworm-slim";

/// The base image when none is given: the hermetic one when the runtime holds it (an offline
/// machine that ran hack/build-base-image.sh), else Debian's slim image. The control plane,
/// `bbctl doctor` and `bbctl demo` choose alike.
pub async fn default_base<B: super::Backend>(backend: &B) -> &'static str {
    if backend.has_image(HERMETIC_BASE).await.unwrap_or(false) {
        HERMETIC_BASE
    } else {
        DEBIAN_BASE
    }
}
