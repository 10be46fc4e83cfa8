//! The backend seam: what the Agent reconciler asks of Docker, Apple Container or smolvm. Small
//! and declarative: observe an Agent's resources, ensure each piece exists, tear it all down.

pub mod archive;
pub mod bottle_ca;
pub mod cli_process;
pub mod cli_session;
pub mod config;
pub mod delivery;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod hash;
pub mod health;
pub mod image_inputs;
pub mod names;
pub mod output;
pub mod provision;
pub mod session;
pub mod shell;
pub mod sidecar_command;

use std::collections::BTreeMap;
use std::fmt;

use bb_crds::agent::SidecarEndpoints;
use bb_crds::runtime::RuntimeSpec;

pub use config::RuntimeConfig;
pub use output::ExecOutput;
pub use session::{Chunk, LogOptions, LogSource, Output, OutputStream, Session, SessionSpec};

/// Identifies one Agent's backend resources; the uid keeps a recreated Agent apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl From<&bb_crds::Agent> for AgentId {
    /// The Agent's own identity. One that claimed a warm pool member runs under the member's,
    /// which only the runner that gave it may vouch for (`bb_runner::reconcile::claim::runtime_id`).
    fn from(a: &bb_crds::Agent) -> Self {
        // The metadata itself (as kube's `ResourceExt` reads it): bb-backend links no kube, so
        // the runtimes compile beside kube's client rather than after it.
        let m = &a.metadata;
        AgentId {
            namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
            name: m
                .name
                .clone()
                .or_else(|| m.generate_name.clone())
                .unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A secret value on its way to the sidecar. Never printed: `Debug` redacts it and there is no
/// `Display`, so it cannot end up in a log line, an event or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(v: Vec<u8>) -> Self {
        SecretBytes(v)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A file written into the agent at provisioning (what a provider asks for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionFile {
    pub guest_path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A directory created in the agent at provisioning, owned by the agent user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionDir {
    pub guest_path: String,
    pub mode: u32,
}

/// A provider image whose Dockerfile the binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinImage {
    /// Short name (`claude`): the image is `bot-bottle/<name>:<content hash>`.
    pub name: &'static str,
    pub dockerfile: &'static str,
    /// The harness executable a runner may hold prebuilt (`--harness-dir`): when present it
    /// goes into the build context and `source_arg=context` tells the Dockerfile to use it.
    pub harness_binary: &'static str,
    pub source_arg: &'static str,
}

/// Where a build reports its steps, one line each.
pub type BuildSteps = tokio::sync::mpsc::UnboundedSender<String>;

/// Where the agent image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Use this image reference as is.
    Reference(String),
    /// Build this Dockerfile (a path on the controller host).
    Dockerfile(String),
    /// Build a provider's own Dockerfile.
    Builtin(BuiltinImage),
    /// An approved capability-block proposal: `dockerfile` built on top of `base`'s image,
    /// which it names as `${AGENT_IMAGE}`. `restart`: the running agent moves to it now rather
    /// than at its next start.
    Capability {
        base: Box<ImageSource>,
        dockerfile: String,
        restart: bool,
    },
}

/// The sidecar's desired state: its policy file and the token files it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarPlan {
    pub policy_yaml: String,
    pub secret_files: BTreeMap<String, SecretBytes>,
    /// Run the supervise MCP server and give git-gate's gitleaks:allow a queue
    /// (`Bottle.spec.supervise`).
    pub supervise: bool,
}

impl SidecarPlan {
    /// `status.appliedPolicyHash`: the same function over the same text as the Bottle's
    /// `resolvedPolicyHash`.
    pub fn policy_hash(&self) -> String {
        bb_crds::policy::policy_hash(self.policy_yaml.as_bytes())
    }

    /// The hash a sidecar reports once it has loaded this plan, keyed by its bottle's CA key
    /// (which only the backend and that sidecar hold): it changes when a token value rotates.
    pub fn applied_hash(&self, key: &[u8]) -> String {
        bb_crds::policy::applied_policy_hash(
            key,
            self.policy_yaml.as_bytes(),
            self.secret_files
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose())),
        )
    }
}

/// The agent container's desired state. `container_hash` covers what the container is made
/// from (a change gives a new container); `inputs_hash` what provisioning delivers of the
/// Agent's own (prompt, workspace, skills, identity, provider files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    pub image: ImageSource,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Secret env values: delivered to the agent process at exec time, never in its config.
    pub secret_env: BTreeMap<String, SecretBytes>,
    pub runtime: RuntimeSpec,
    pub prompt: Option<String>,
    /// Copied into the agent at provisioning.
    pub workspace: Option<bb_crds::agent::Workspace>,
    /// The agent's system git config (`/etc/gitconfig`): identity and the git-gate URL map.
    pub gitconfig: Option<String>,
    pub dirs: Vec<ProvisionDir>,
    pub files: Vec<ProvisionFile>,
    /// Placeholder copies of a host login (codex's auth.json): provisioned like `files`, but
    /// outside the container hash, so the host refreshing its login never replaces the agent.
    pub credential_files: Vec<ProvisionFile>,
    /// `spec.skills`: names (under the backend's skills root) or absolute host directories.
    pub skills: Vec<String>,
    /// Where the provider reads skills inside the agent.
    pub skills_dir: String,
    pub container_hash: String,
    /// Written into the provisioning marker (`provision::MARKER`); `provision::POOL_MEMBER`
    /// for a warm pool's member.
    pub inputs_hash: String,
}

/// What exists for one Agent right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub image: Option<String>,
    /// Policy hash loaded by a running sidecar; `None` when there is no running sidecar.
    pub sidecar_policy: Option<String>,
    /// Container hash of a running agent container.
    pub agent_container: Option<String>,
    /// Container hash of an agent container that exists but is stopped (a suspended Agent's,
    /// kept so that resuming is a start, not a create): it still holds every file it wrote.
    pub stopped_agent: Option<String>,
    /// The inputs hash provisioning last delivered to the agent container (its marker);
    /// `None` while it is not provisioned.
    pub provisioned: Option<String>,
}

/// The step of realising an Agent that failed. The reconciler maps each to the condition it
/// reports on (`reconcile::agent::condition_for`), exhaustively: a new step does not compile
/// until it says which condition it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Reaching the runtime at all.
    Connect,
    /// Listing what exists for an Agent.
    Observe,
    Image,
    Network,
    Sidecar,
    Policy,
    /// Creating or starting the agent container.
    Agent,
    Provision,
    /// Finding the secrets in what provisioning copies in (`bb_runner::discovery`).
    Discover,
    Snapshot,
    Stop,
    Teardown,
    /// Removing resources whose Agent is gone.
    Sweep,
    /// An attach or log session.
    Session,
    /// A command run in the agent (`bbctl exec`).
    Exec,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Observe => "observe",
            Step::Image => "image",
            Step::Network => "network",
            Step::Sidecar => "sidecar",
            Step::Policy => "policy",
            Step::Agent => "agent",
            Step::Provision => "provision",
            Step::Discover => "discover",
            Step::Snapshot => "snapshot",
            Step::Stop => "stop",
            Step::Teardown => "teardown",
            Step::Sweep => "sweep",
            Step::Session => "session",
            Step::Exec => "exec",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {message}")]
pub struct BackendError {
    pub step: Step,
    pub message: String,
}

impl BackendError {
    pub fn new(step: Step, message: impl Into<String>) -> Self {
        BackendError {
            step,
            message: message.into(),
        }
    }
}

/// The runtime a runner drives, chosen once (by bb-controller) and shared by its reconcilers,
/// cluster claims and session endpoint.
pub type SharedBackend = std::sync::Arc<dyn Backend>;

/// A runtime that can hold bottles. Every method is idempotent: calling it when the piece is
/// already in place changes nothing.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError>;
    /// Builds or finds the image; returns the reference it runs. Each build step it takes
    /// goes to `steps` as one line (the Agent's events show them).
    async fn ensure_image(
        &self,
        id: &AgentId,
        image: &ImageSource,
        steps: &BuildSteps,
    ) -> Result<String, BackendError>;
    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError>;
    /// Creates (or finds running) the sidecar for `plan`; a new one is ready once it reports
    /// `applied` (what `policy_hash` gave for this plan).
    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError>;
    /// The applied-policy hash the Agent's sidecar reports once it runs `plan`.
    fn policy_hash(&self, id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError>;
    /// Hands a running sidecar a new policy; it reloads without restarting the agent, and is
    /// done once the sidecar reports `applied`.
    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError>;
    /// Creates the agent container, replacing whatever container of the Agent is there (the
    /// reconciler asks only when the one there is stale, gone or stopped for good).
    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError>;
    async fn provision(&self, id: &AgentId, plan: &AgentPlan) -> Result<(), BackendError>;
    /// Whether an image (a snapshot) still exists.
    async fn has_image(&self, image: &str) -> Result<bool, BackendError>;
    /// Records the agent's state as an image; returns its reference.
    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError>;
    /// Fork: records `source`'s agent container (running or stopped; a running one is paused
    /// for the commit, not stopped) as a snapshot that belongs to `into`, removed with it.
    async fn fork_snapshot(
        &self,
        source: &AgentId,
        into: &AgentId,
    ) -> Result<String, BackendError> {
        Err(BackendError::new(
            Step::Snapshot,
            format!(
                "the {} runtime cannot fork {source} into {into}",
                self.name()
            ),
        ))
    }
    /// Records the agent's files as an image that outlives the Agent (no teardown or sweep
    /// removes it); returns its reference.
    async fn keep_snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        Err(BackendError::new(
            Step::Snapshot,
            format!(
                "the {} runtime cannot keep a snapshot of {id} past the Agent",
                self.name()
            ),
        ))
    }
    /// Stops the agent and sidecar, keeping their state.
    async fn stop(&self, id: &AgentId) -> Result<(), BackendError>;
    /// How many requests the Agent's running sidecar has judged since it started (the idle
    /// signal of `spec.lifecycle.idleSuspendAfter`); `None` where the runtime cannot say.
    async fn egress_count(&self, id: &AgentId) -> Result<Option<u64>, BackendError> {
        let _ = id;
        Ok(None)
    }
    /// Whether a stopped agent container stays and `start_agent` runs it again with its files:
    /// suspend then needs no snapshot on this runner.
    fn restarts_stopped_agents(&self) -> bool {
        false
    }
    /// Starts the Agent's stopped agent container again (`Observed::stopped_agent`).
    async fn start_agent(&self, id: &AgentId) -> Result<(), BackendError> {
        Err(BackendError::new(
            Step::Agent,
            format!(
                "the {} runtime cannot start a stopped agent container of {id} again",
                self.name()
            ),
        ))
    }
    /// Removes everything the Agent owns.
    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError>;
    /// Removes this runner's copy of the Agent but keeps its snapshots: the Agent lives on
    /// elsewhere (cluster mode's release and fence), and its next runner may start from them.
    async fn evict(&self, id: &AgentId) -> Result<(), BackendError> {
        self.teardown(id).await
    }
    /// Where the agent reaches the supervise MCP server.
    fn supervise_url(&self) -> String;
    /// The runner's own directory for the Agent on its host (bottle CA, supervise queue, the
    /// secrets discovery found in what was copied in).
    fn agent_dir(&self, id: &AgentId) -> std::path::PathBuf;
    /// Where `spec.skills` names resolve on this runner's host.
    fn skills_root(&self) -> std::path::PathBuf;
    /// The runner's supervise directory of the Agent: its `queue/` (see `bb_runner::supervise`) is
    /// where the sidecar queues proposals (`<id>.proposal.json`) and reads decisions
    /// (`<id>.response.json`); the audit log sits beside it.
    fn supervise_dir(&self, id: &AgentId) -> std::path::PathBuf;
    /// Cluster mode: the host file the runner renews its hold on the Agent's sidecar in
    /// (`bb_runner::cluster::holds`); the sidecar reads it through a read-only mount and
    /// refuses everything once its deadline passes. `None` where copies are not fenced.
    fn hold_file(&self, id: &AgentId) -> Option<std::path::PathBuf> {
        let _ = id;
        None
    }
    /// Every Agent this backend holds resources for (from labels, not memory).
    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError>;
    /// Starts `spec` in the Agent's running agent container.
    async fn open_session(&self, id: &AgentId, spec: &SessionSpec)
    -> Result<Session, BackendError>;
    /// Resizes a session's TTY; a session that has ended ignores it.
    async fn resize_session(&self, session: &str, width: u16, height: u16) -> ();
    /// The exit code of a session whose output has ended (`None` if the runtime lost it).
    async fn session_exit_code(&self, session: &str) -> Result<Option<i64>, BackendError>;
    /// The runtime's own prerequisites as `bbctl doctor` reports them.
    async fn diagnose(&self) -> Vec<health::Check>;
    /// One of the Agent's logs, optionally following it.
    async fn logs(
        &self,
        id: &AgentId,
        source: LogSource,
        options: LogOptions,
    ) -> Result<Output, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_never_print() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        let shown = format!(
            "{s:?} {:?}",
            SidecarPlan {
                policy_yaml: String::new(),
                secret_files: [("t".to_string(), s.clone())].into(),
                supervise: false,
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), b"hunter2");
    }
}
