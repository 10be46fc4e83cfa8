//! The Apple Container backend: each Agent is an agent container (its own micro-VM) on a
//! host-only network whose only other member is its sidecar, driven through the `container` CLI.

mod agent;
pub mod cli;
mod images;
mod session;
mod sidecar;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bb_crds::agent::SidecarEndpoints;
use tokio::sync::OnceCell;

use self::cli::Container;
use bb_backend::cli_process::RuntimeCli;
use bb_backend::names::{self, AGENT_UID, CONTAINER_HASH, MANAGED_BY, MANAGER, ROLE, Role};
use bb_backend::{
    AgentId, AgentPlan, Backend, BackendError, ImageSource, Observed, RuntimeConfig, SidecarPlan,
    Step,
};

/// Inside the agent: the CA certificate and provisioning marker.
const AGENT_ETC: &str = "/etc/bot-bottle";
/// On the agent container: the image its filesystem started from (a snapshot builds on it).
const BASE_IMAGE: &str = "bot-bottle.dev/base-image";
/// On the agent container: the image it runs.
const IMAGE: &str = "bot-bottle.dev/image";
/// What a user without the CLI is told.
const INSTALL_HINT: &str = "install Apple's container CLI (https://github.com/apple/container/releases) or pass --container-cli";
/// On the agent container: the sidecar address stamped into its proxy settings.
const SIDECAR_IP: &str = "bot-bottle.dev/sidecar-ip";

#[derive(Debug, Clone)]
pub struct AppleConfig {
    pub runtime: RuntimeConfig,
    /// The `container` executable (default: `container` on PATH).
    pub cli: PathBuf,
    /// The resolver for sidecars and the builder; unset: the host's (`scutil --dns`).
    pub dns: Option<String>,
}

impl AppleConfig {
    pub fn for_home(home: &std::path::Path, instance: &str) -> AppleConfig {
        AppleConfig {
            runtime: RuntimeConfig::for_home(home, instance),
            cli: PathBuf::from(cli::CLI),
            dns: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppleBackend {
    cli: RuntimeCli,
    config: Arc<AppleConfig>,
    dns: Arc<OnceCell<String>>,
    sidecar_image: Arc<OnceCell<String>>,
    /// What this process established about a running container, by name; forgotten when the
    /// container is made, removed or seen stopped.
    facts: Arc<Mutex<HashMap<String, Facts>>>,
    sessions: bb_backend::cli_session::Sessions,
}

#[derive(Debug, Clone, Default)]
struct Facts {
    policy: Option<String>,
    /// The provisioning marker's inputs hash, once known (`Some(None)`: known unprovisioned).
    provisioned: Option<Option<String>>,
}

/// Whether a host is a Mac with Apple's CLI installed: where `auto` picks this backend.
pub fn host_has_apple_container() -> bool {
    cfg!(target_os = "macos")
        && std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cli::CLI).is_file()))
}

impl AppleBackend {
    /// Checks the CLI answers and its system service runs.
    pub async fn connect(config: AppleConfig) -> Result<AppleBackend, BackendError> {
        let cli = RuntimeCli::new(config.cli.clone(), INSTALL_HINT);
        let args = cli::system_status();
        let out = cli.output(Step::Connect, &args, None).await?;
        if !out.success() {
            let said = out.tail();
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(" ({said})")
            };
            return Err(BackendError::new(
                Step::Connect,
                format!(
                    "Apple's container system service is not running{said}; start it with `container system start`"
                ),
            ));
        }
        Ok(AppleBackend {
            cli,
            config: Arc::new(config),
            dns: Arc::new(OnceCell::new()),
            sidecar_image: Arc::new(OnceCell::new()),
            facts: Arc::default(),
            sessions: Default::default(),
        })
    }

    fn runtime(&self) -> &RuntimeConfig {
        &self.config.runtime
    }

    fn state_dir(&self, id: &AgentId) -> PathBuf {
        self.runtime().agent_dir(id)
    }

    fn labels(&self, id: &AgentId, role: Role) -> BTreeMap<String, String> {
        names::labels(id, role, &self.runtime().instance)
            .into_iter()
            .collect()
    }

    /// This instance's copy of one Agent: never another runner's copy on a shared machine.
    fn copy_selector(&self, id: &AgentId) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (AGENT_UID.to_string(), id.uid.clone()),
            (
                names::CONTROLLER.to_string(),
                self.runtime().instance.clone(),
            ),
        ])
    }

    fn managed_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (
                names::CONTROLLER.to_string(),
                self.runtime().instance.clone(),
            ),
        ])
    }

    /// The resolver the sidecars and the builder use, worked out once.
    async fn dns(&self) -> &String {
        self.dns
            .get_or_init(|| async {
                let scutil = if cfg!(target_os = "macos") {
                    tokio::process::Command::new("scutil")
                        .arg("--dns")
                        .output()
                        .await
                        .ok()
                        .filter(|o| o.status.success())
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                } else {
                    None
                };
                cli::dns_server(self.config.dns.as_deref(), scutil.as_deref())
            })
            .await
    }

    async fn containers(
        &self,
        selector: &BTreeMap<String, String>,
        step: Step,
    ) -> Result<Vec<Container>, BackendError> {
        let out = self.cli.ok(step, &cli::list_all(), None).await?;
        cli::parse_list(&String::from_utf8_lossy(&out.stdout), selector)
            .map_err(|e| BackendError::new(step, e.to_string()))
    }

    async fn networks(
        &self,
        selector: &BTreeMap<String, String>,
        step: Step,
    ) -> Result<Vec<cli::Network>, BackendError> {
        let out = self.cli.ok(step, &cli::network_list(), None).await?;
        cli::parse_networks(&String::from_utf8_lossy(&out.stdout), selector)
            .map_err(|e| BackendError::new(step, e.to_string()))
    }

    fn role_of(c: &Container) -> Option<&str> {
        c.configuration.labels.get(ROLE).map(String::as_str)
    }

    fn fact(&self, name: &str) -> Facts {
        self.facts
            .lock()
            .map(|f| f.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn learn(&self, name: &str, update: impl FnOnce(&mut Facts)) {
        if let Ok(mut f) = self.facts.lock() {
            update(f.entry(name.to_string()).or_default());
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut f) = self.facts.lock() {
            f.remove(name);
        }
    }

    /// Runs `argv` in a container as `user`, feeding `stdin`; output and exit code come back.
    async fn exec(
        &self,
        name: &str,
        user: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        step: Step,
    ) -> Result<bb_backend::ExecOutput, BackendError> {
        let command: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let args = cli::exec(
            name,
            Some(user),
            None,
            stdin.is_some(),
            false,
            &[],
            &command,
        );
        self.cli.output(step, &args, stdin).await
    }

    /// Removes a container; one that is already gone is fine.
    async fn remove_container(&self, name: &str, step: Step) -> Result<(), BackendError> {
        self.forget(name);
        let args = cli::delete(name);
        let out = self.cli.output(step, &args, None).await?;
        if out.success() || gone(&out) {
            return Ok(());
        }
        Err(self.cli.failed(step, &args, &out))
    }

    /// The Agent's containers, networks and state directory: everything but its snapshots.
    async fn remove_copy(&self, id: &AgentId) -> Result<(), BackendError> {
        let selector = self.copy_selector(id);
        for c in self.containers(&selector, Step::Teardown).await? {
            self.remove_container(&c.id, Step::Teardown).await?;
        }
        for n in self.networks(&selector, Step::Teardown).await? {
            let args = cli::network_delete(n.name());
            let out = self.cli.output(Step::Teardown, &args, None).await?;
            if !out.success() && !gone(&out) {
                return Err(self.cli.failed(Step::Teardown, &args, &out));
            }
        }
        if let Some(hold) = self.runtime().hold_dir(id) {
            // The copy is gone: so is the runner's hold on it.
            let _ = std::fs::remove_dir_all(hold);
        }
        match std::fs::remove_dir_all(self.state_dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::new(
                Step::Teardown,
                format!("removing {}: {e}", self.state_dir(id).display()),
            )),
        }
    }

    async fn ensure_network_named(
        &self,
        id: &AgentId,
        role: Role,
        internal: bool,
    ) -> Result<(), BackendError> {
        let name = self.config.runtime.name(id, role);
        let args = cli::network_create(&name, internal, &self.labels(id, role));
        let out = self.cli.output(Step::Network, &args, None).await?;
        if out.success() || cli::already_exists(&String::from_utf8_lossy(&out.stderr)) {
            return Ok(());
        }
        Err(self.cli.failed(Step::Network, &args, &out))
    }
}

/// The CLI said the thing it was asked to remove does not exist.
fn gone(out: &bb_backend::ExecOutput) -> bool {
    let text = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    text.contains("not found") || text.contains("no such") || text.contains("does not exist")
}

#[async_trait::async_trait]
impl Backend for AppleBackend {
    fn name(&self) -> &'static str {
        "apple-container"
    }

    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError> {
        let selector = self.copy_selector(id);
        let containers = self.containers(&selector, Step::Observe).await?;
        let mut seen = Observed::default();
        for c in containers.iter().filter(|c| !c.running()) {
            self.forget(&c.id);
        }
        let find = |role: Role| {
            containers
                .iter()
                .find(|c| Self::role_of(c) == Some(role.as_str()))
        };
        let internal = self.config.runtime.name(id, Role::InternalNetwork);
        let sidecar = find(Role::Sidecar).filter(|c| c.running());
        if let Some(s) = sidecar {
            seen.sidecar_policy = match self.fact(&s.id).policy {
                Some(p) => Some(p),
                None => {
                    let p = bb_backend::delivery::loaded_policy(self, &s.id).await;
                    if let Some(p) = &p {
                        self.learn(&s.id, |f| f.policy = Some(p.clone()));
                    }
                    p
                }
            };
        }
        let sidecar_ip = sidecar.and_then(|s| address_on(s, &internal));
        if let Some(a) = find(Role::Agent) {
            seen.image = a.configuration.labels.get(IMAGE).cloned();
            // Its proxy settings name the sidecar by address: an agent stamped with another
            // sidecar's address (the sidecar was replaced) is stale.
            let stamped = a.configuration.labels.get(SIDECAR_IP);
            let current = sidecar_ip.is_none() || stamped == sidecar_ip.as_ref();
            if a.running() && current {
                seen.agent_container = a.configuration.labels.get(CONTAINER_HASH).cloned();
                seen.provisioned = match self.fact(&a.id).provisioned {
                    Some(known) => known,
                    None => {
                        let marker = bb_backend::provision::MARKER;
                        let hash = self
                            .exec(&a.id, "root", &["cat", marker], None, Step::Observe)
                            .await
                            .ok()
                            .filter(|o| o.success())
                            .map(|o| bb_backend::provision::marker_hash(&o.stdout));
                        if let Some(h) = &hash {
                            let h = h.clone();
                            self.learn(&a.id, |f| f.provisioned = Some(Some(h)));
                        }
                        hash
                    }
                };
            }
        }
        Ok(seen)
    }

    async fn ensure_image(
        &self,
        _id: &AgentId,
        image: &ImageSource,
        steps: &bb_backend::BuildSteps,
    ) -> Result<String, BackendError> {
        self.sidecar_image(Some(steps)).await?;
        if let ImageSource::Capability {
            base, dockerfile, ..
        } = image
        {
            let agent_image = self.provider_image(base, steps).await?;
            return self.capability_image(dockerfile, &agent_image, steps).await;
        }
        self.provider_image(image, steps).await
    }

    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError> {
        self.ensure_network_named(id, Role::InternalNetwork, true)
            .await?;
        self.ensure_network_named(id, Role::EgressNetwork, false)
            .await
    }

    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        self.run_sidecar(id, plan, applied).await
    }

    fn policy_hash(&self, id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError> {
        let ca = self.runtime().bottle_ca(id)?;
        Ok(plan.applied_hash(ca.key_pem.as_bytes()))
    }

    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError> {
        let name = self.config.runtime.name(id, Role::Sidecar);
        bb_backend::delivery::install(
            self,
            &name,
            id,
            plan,
            applied,
            bb_backend::delivery::Delivery::Reload,
        )
        .await
    }

    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        self.create_agent(id, image, plan).await
    }

    async fn provision(&self, id: &AgentId, plan: &AgentPlan) -> Result<(), BackendError> {
        self.provision_agent(id, plan).await
    }

    async fn has_image(&self, image: &str) -> Result<bool, BackendError> {
        self.image_exists(image, Step::Image).await
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.snapshot_agent(id).await
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        for role in [Role::Agent, Role::Sidecar] {
            let name = self.config.runtime.name(id, role);
            self.forget(&name);
            let args = cli::stop(&name);
            let out = self.cli.output(Step::Stop, &args, None).await?;
            if !out.success() && !gone(&out) {
                return Err(self.cli.failed(Step::Stop, &args, &out));
            }
        }
        Ok(())
    }

    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError> {
        self.remove_copy(id).await?;
        self.remove_snapshots(id).await
    }

    async fn evict(&self, id: &AgentId) -> Result<(), BackendError> {
        self.remove_copy(id).await
    }

    fn agent_dir(&self, id: &AgentId) -> PathBuf {
        self.state_dir(id)
    }

    fn skills_root(&self) -> PathBuf {
        self.runtime().skills_root.clone()
    }

    fn supervise_url(&self) -> String {
        format!(
            "http://{}:{}/mcp",
            names::SIDECAR_ALIAS,
            bb_backend::sidecar_command::SUPERVISE_PORT
        )
    }

    fn hold_file(&self, id: &AgentId) -> Option<PathBuf> {
        self.runtime()
            .hold_dir(id)
            .map(|d| d.join(bb_backend::sidecar_command::HOLD_FILE))
    }

    fn supervise_dir(&self, id: &AgentId) -> PathBuf {
        self.state_dir(id).join("supervise")
    }

    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError> {
        let selector = self.managed_selector();
        let mut ids = std::collections::BTreeSet::new();
        let of = |labels: &BTreeMap<String, String>| {
            names::agent_from_labels(&labels.clone().into_iter().collect())
        };
        for c in self.containers(&selector, Step::Sweep).await? {
            ids.extend(of(&c.configuration.labels));
        }
        for n in self.networks(&selector, Step::Sweep).await? {
            ids.extend(of(&n.configuration.labels));
        }
        Ok(ids.into_iter().collect())
    }

    async fn open_session(
        &self,
        id: &AgentId,
        spec: &bb_backend::SessionSpec,
    ) -> Result<bb_backend::Session, BackendError> {
        self.open_exec_session(id, spec).await
    }

    async fn resize_session(&self, session: &str, width: u16, height: u16) {
        self.sessions.resize(session, width, height);
    }

    async fn session_exit_code(&self, session: &str) -> Result<Option<i64>, BackendError> {
        Ok(self.sessions.exit_code(session).await)
    }

    async fn diagnose(&self) -> Vec<bb_backend::health::Check> {
        self.runtime_checks().await
    }

    async fn logs(
        &self,
        id: &AgentId,
        source: bb_backend::LogSource,
        options: bb_backend::LogOptions,
    ) -> Result<bb_backend::Output, BackendError> {
        self.log_stream(id, source, options).await
    }
}

/// A container's IPv4 address on `network` as its listing shows it (CIDR suffix dropped).
fn address_on(c: &Container, network: &str) -> Option<String> {
    c.status
        .networks
        .as_ref()?
        .iter()
        .find(|a| a.network == network)?
        .ipv4_address
        .as_deref()
        .and_then(|a| a.split('/').next())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}
