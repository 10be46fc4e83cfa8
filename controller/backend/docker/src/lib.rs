//! The Docker backend: each Agent is an agent container on an internal network whose only
//! other member is its sidecar, which alone reaches the egress network. Engine API via bollard.

mod agent;
mod exec;
mod fixture;
pub mod images;
pub mod placement;
mod session;
pub mod sidecar;
mod subnets;

use bb_backend::Step;
use bb_backend::delivery::{self, Delivery};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bb_crds::agent::SidecarEndpoints;
use bollard::Docker;
use bollard::models::{ContainerSummary, NetworkCreateRequest};
use bollard::query_parameters::{
    CommitContainerOptions, ListContainersOptions, ListImagesOptions, ListNetworksOptions,
    RemoveContainerOptions, RemoveImageOptions, StopContainerOptions,
};
use tokio::sync::OnceCell;

use self::names::{CONTAINER_HASH, ROLE, Role};
pub use bb_backend::ExecOutput;
pub use bb_backend::names;
use bb_backend::{
    AgentId, AgentPlan, Backend, BackendError, ImageSource, Observed, RuntimeConfig, SidecarPlan,
};
pub use fixture::Fixture;

use bb_backend::sidecar_command::{SIDECAR_BINARY, SIDECAR_RUN, SIDECAR_UID, SIDECAR_USER};

/// Inside the agent: the CA certificate and provisioning marker.
const AGENT_ETC: &str = "/etc/bot-bottle";

#[derive(Debug, Clone)]
pub struct DockerBackend {
    docker: Docker,
    config: Arc<RuntimeConfig>,
    sidecar_image: Arc<OnceCell<String>>,
    progress: images::BuildProgress,
    gvisor: bool,
    /// What this process established about a container (by ID, so a recreated container
    /// starts unknown): spares an exec per observe. After a restart it is re-learned by exec.
    facts: Arc<std::sync::Mutex<HashMap<String, Facts>>>,
    /// Held while a subnet of our own is chosen and taken, so two networks made at once do not
    /// pick the same one.
    subnet_choice: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone, Default)]
struct Facts {
    policy: Option<String>,
    /// The provisioning marker's inputs hash, once known (`Some(None)`: known unprovisioned).
    provisioned: Option<Option<String>>,
    /// This process provisioned the container itself, so its system store holds the bottle CA
    /// (a container made from a snapshot may hold another's): delivering again needs no exec.
    ca_installed: bool,
}

fn step(step: Step) -> impl Fn(bollard::errors::Error) -> BackendError {
    move |e| BackendError::new(step, e.to_string())
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

impl DockerBackend {
    /// Connects to the local engine (DOCKER_HOST or the default socket) and checks it answers.
    pub async fn connect(config: RuntimeConfig) -> Result<DockerBackend, BackendError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(step(Step::Connect))?
            .negotiate_version()
            .await
            .map_err(|e| {
                BackendError::new(Step::Connect, format!("Docker is not reachable: {e}"))
            })?;
        let info = docker.info().await.map_err(|e| {
            BackendError::new(Step::Connect, format!("Docker is not reachable: {e}"))
        })?;
        let gvisor = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.contains_key("runsc"));
        Ok(DockerBackend {
            docker,
            config: Arc::new(config),
            sidecar_image: Arc::new(OnceCell::new()),
            progress: tokio::sync::broadcast::channel(64).0,
            gvisor,
            facts: Arc::default(),
            subnet_choice: Arc::default(),
        })
    }

    /// The same engine connection building on another base image (chosen after connecting,
    /// e.g. by looking at which images the engine has).
    pub fn with_base_image(mut self, base: &str) -> DockerBackend {
        Arc::make_mut(&mut self.config).base_image = base.to_string();
        // The sidecar image depends on the base: forget one resolved for the old base.
        self.sidecar_image = Arc::new(OnceCell::new());
        self
    }

    /// Image build steps as they happen (see `images::BuildProgress`).
    pub fn build_progress(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.progress.subscribe()
    }

    /// The sidecar image for this backend's binary and base, built on first use.
    async fn sidecar_image(
        &self,
        steps: Option<&bb_backend::BuildSteps>,
    ) -> Result<&String, BackendError> {
        self.sidecar_image
            .get_or_try_init(|| {
                images::sidecar(
                    &self.docker,
                    images::Progress {
                        all: &self.progress,
                        agent: steps,
                    },
                    &self.config.sidecar_binary,
                    &self.config.base_image,
                )
            })
            .await
    }

    fn fact(&self, container_id: &str) -> Facts {
        self.facts
            .lock()
            .map(|f| f.get(container_id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn learn(&self, container_id: &str, update: impl FnOnce(&mut Facts)) {
        if let Ok(mut f) = self.facts.lock() {
            update(f.entry(container_id.to_string()).or_default());
        }
    }

    /// Records a fact about the container now named `name`.
    async fn learn_by_name(&self, name: &str, update: impl FnOnce(&mut Facts)) {
        if let Ok(c) = self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            && let Some(id) = c.id
        {
            self.learn(&id, update);
        }
    }

    fn state_dir(&self, id: &AgentId) -> PathBuf {
        self.config.agent_dir(id)
    }

    /// The Agent's containers, networks and state directory: everything but its snapshots.
    async fn remove_copy(&self, id: &AgentId) -> Result<(), BackendError> {
        for c in self.containers(id).await? {
            if let (Some(cid), Ok(mut f)) = (c.id.as_deref(), self.facts.lock()) {
                f.remove(cid);
            }
            if let Some(n) = c.names.as_ref().and_then(|n| n.first()) {
                self.remove_container(n.trim_start_matches('/')).await?;
            }
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(names::copy_filter(id, &self.config.instance)),
            }))
            .await
            .map_err(step(Step::Teardown))?;
        for n in networks {
            let Some(name) = n.name else { continue };
            // Anything else attached (a debugging container, a test's upstream) would make the
            // removal fail forever: detach it first.
            if let Ok(info) = self
                .docker
                .inspect_network(
                    &name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                for container in info.containers.unwrap_or_default().into_keys() {
                    let _ = self
                        .docker
                        .disconnect_network(
                            &name,
                            bollard::models::NetworkDisconnectRequest {
                                container: Some(container),
                                force: Some(true),
                            },
                        )
                        .await;
                }
            }
            match self.docker.remove_network(&name).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(BackendError::new(
                        Step::Teardown,
                        format!("removing network {name}: {e}"),
                    ));
                }
            }
        }
        if let Some(hold) = self.config.hold_dir(id) {
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

    /// What this backend was configured with.
    pub fn runtime(&self) -> &RuntimeConfig {
        &self.config
    }

    async fn containers(&self, id: &AgentId) -> Result<Vec<ContainerSummary>, BackendError> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(names::copy_filter(id, &self.config.instance)),
                ..Default::default()
            }))
            .await
            .map_err(step(Step::Observe))
    }

    /// The agent image a provider asks for (a capability builds on top of it).
    async fn provider_image(
        &self,
        image: &ImageSource,
        progress: images::Progress<'_>,
    ) -> Result<String, BackendError> {
        match image {
            ImageSource::Reference(r) => images::reference(&self.docker, r).await,
            ImageSource::Dockerfile(d) => {
                images::from_dockerfile(
                    &self.docker,
                    progress,
                    std::path::Path::new(d),
                    &self.config.base_image,
                )
                .await
            }
            ImageSource::Builtin(b) => {
                images::builtin(
                    &self.docker,
                    progress,
                    b,
                    self.config.harness_dir.as_deref(),
                    &self.config.base_image,
                )
                .await
            }
            ImageSource::Capability { .. } => Err(BackendError::new(
                Step::Image,
                "a capability image builds on a provider image, not on another capability",
            )),
        }
    }

    fn role_of(c: &ContainerSummary) -> Option<&str> {
        Self::label(c, ROLE)
    }

    fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
        c.labels.as_ref()?.get(key).map(String::as_str)
    }

    fn running(c: &ContainerSummary) -> bool {
        c.state
            .as_ref()
            .is_some_and(|s| s.to_string().eq_ignore_ascii_case("running"))
    }

    async fn exec(
        &self,
        container: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        step_name: Step,
    ) -> Result<ExecOutput, BackendError> {
        exec::run(&self.docker, container, argv, None, stdin)
            .await
            .map_err(step(step_name))
    }

    /// Runs bb-sidecar's `argv` in the sidecar as its own user.
    async fn exec_in_sidecar(
        &self,
        sidecar: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        step_name: Step,
    ) -> Result<ExecOutput, BackendError> {
        let argv: Vec<&str> = std::iter::once(SIDECAR_BINARY)
            .chain(argv.iter().copied())
            .collect();
        exec::run(&self.docker, sidecar, &argv, Some(SIDECAR_USER), stdin)
            .await
            .map_err(step(step_name))
    }

    /// Starts a kept, stopped container (a suspended Agent's agent or sidecar); one already
    /// running is what was asked for.
    async fn start_stopped(&self, name: &str) -> Result<(), bollard::errors::Error> {
        match self
            .docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => other,
        }
    }

    async fn remove_container(&self, name: &str) -> Result<(), BackendError> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed by an earlier attempt.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(BackendError::new(Step::Teardown, e.to_string())),
        }
    }

    pub async fn ensure_network_named(
        &self,
        id: &AgentId,
        role: Role,
        internal: bool,
    ) -> Result<(), BackendError> {
        let name = self.config.name(id, role);
        if self
            .docker
            .inspect_network(
                &name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(internal),
            labels: Some(names::labels(id, role, &self.config.instance)),
            ..Default::default()
        };
        match self.docker.create_network(req.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) if subnets::pools_exhausted(&e.to_string()) => {
                self.create_network_in_fallback(req).await
            }
            Err(e) => Err(BackendError::new(
                Step::Network,
                format!("creating {name}: {e}"),
            )),
        }
    }

    /// The engine's address pools are used up: the network gets a /28 of its own
    /// (`subnets`), clear of every subnet the engine's networks hold. Another process may take
    /// the same one first: the next free one is tried.
    async fn create_network_in_fallback(
        &self,
        mut req: NetworkCreateRequest,
    ) -> Result<(), BackendError> {
        let _choosing = self.subnet_choice.lock().await;
        let name = req.name.clone();
        let fail = |e: String| BackendError::new(Step::Network, format!("creating {name}: {e}"));
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let used: Vec<String> = networks
            .iter()
            .flat_map(|n| n.ipam.iter().flat_map(|i| i.config.iter().flatten()))
            .filter_map(|c| c.subnet.clone())
            .collect();
        let mut last = String::from("no free /28 left in 198.18.0.0/15");
        for subnet in subnets::free(&used).take(8) {
            req.ipam = Some(bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(subnet.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            match self.docker.create_network(req.clone()).await {
                Ok(_) => {
                    tracing::info!(network = %name, %subnet, "the engine's address pools are used up; gave the network its own subnet");
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => return Ok(()),
                Err(e) => last = format!("{subnet}: {e}"),
            }
        }
        Err(fail(format!(
            "the engine's address pools are used up, and so is the fallback ({last})"
        )))
    }

    /// What a stopped agent container was provisioned with: what this runner learnt, else its
    /// marker file read from the stopped container's filesystem (no exec needed).
    async fn stopped_provisioned(&self, c: &ContainerSummary) -> Option<String> {
        use futures_util::StreamExt;
        let cid = c.id.clone().unwrap_or_default();
        if let Some(known) = self.fact(&cid).provisioned {
            return known;
        }
        let mut archive = self.docker.download_from_container(
            &cid,
            Some(bollard::query_parameters::DownloadFromContainerOptions {
                path: bb_backend::provision::MARKER.into(),
            }),
        );
        let mut tar = Vec::new();
        while let Some(Ok(chunk)) = archive.next().await {
            tar.extend_from_slice(&chunk);
        }
        let hash =
            bb_backend::archive::first_file(&tar).map(|b| bb_backend::provision::marker_hash(&b));
        if let Some(h) = &hash {
            let h = h.clone();
            self.learn(&cid, |f| f.provisioned = Some(Some(h)));
        }
        hash
    }

    /// Commits `source`'s agent container (running or stopped) as `repo:<into>-<time>`
    /// labelled `labels`; returns the reference. Named for the Agent it belongs to and without
    /// the runner: a snapshot is the Agent's, not the copy's.
    async fn commit_agent(
        &self,
        source: &AgentId,
        into: &AgentId,
        repo: &str,
        labels: HashMap<String, String>,
    ) -> Result<String, BackendError> {
        let tag = format!(
            "{}-{}",
            names::prefix(into, None),
            jiff::Timestamp::now().as_second()
        );
        let config = bollard::models::ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .commit_container(
                CommitContainerOptions {
                    container: Some(self.config.name(source, Role::Agent)),
                    repo: Some(repo.into()),
                    tag: Some(tag.clone()),
                    pause: true,
                    ..Default::default()
                },
                config,
            )
            .await
            .map_err(|e| BackendError::new(Step::Snapshot, e.to_string()))?;
        Ok(format!("{repo}:{tag}"))
    }

    /// Everything an agent container holds for one Agent, snapshots included: whichever runner
    /// made them (one that took the Agent over deletes the snapshot it started from).
    async fn remove_snapshots(&self, id: &AgentId) -> Result<(), BackendError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(names::agent_filter(id)),
                ..Default::default()
            }))
            .await
            .map_err(step(Step::Teardown))?;
        for img in images {
            match self
                .docker
                .remove_image(
                    &img.id,
                    Some(RemoveImageOptions {
                        force: true,
                        ..Default::default()
                    }),
                    None,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(BackendError::new(Step::Teardown, e.to_string())),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError> {
        let containers = self.containers(id).await?;
        let find = |role: Role| {
            containers
                .iter()
                .find(|c| Self::role_of(c) == Some(role.as_str()))
        };
        let mut seen = Observed::default();
        // A stopped container loses its tmpfs (the sidecar's policy): forget the policy known
        // about it, so a later `docker start` is looked at afresh. Provisioning is in the
        // container's own filesystem, which a stop keeps.
        if let Ok(mut f) = self.facts.lock() {
            for c in containers.iter().filter(|c| !Self::running(c)) {
                if let Some(known) = c.id.as_deref().and_then(|cid| f.get_mut(cid)) {
                    known.policy = None;
                }
            }
        }
        let sidecar = find(Role::Sidecar);
        let agent = find(Role::Agent);
        if let Some(s) = sidecar.filter(|c| Self::running(c)) {
            let known =
                s.id.as_deref()
                    .map(|cid| self.fact(cid))
                    .unwrap_or_default();
            seen.sidecar_policy = match known.policy {
                Some(p) => Some(p),
                None => {
                    let p =
                        delivery::loaded_policy(self, &self.config.name(id, Role::Sidecar)).await;
                    if let (Some(cid), Some(p)) = (s.id.as_deref(), p.clone()) {
                        self.learn(cid, |f| f.policy = Some(p));
                    }
                    p
                }
            };
        }
        if let Some(a) = agent {
            seen.image = a.image.clone();
            let hash = || {
                a.labels
                    .as_ref()
                    .and_then(|l| l.get(CONTAINER_HASH).cloned())
            };
            if !Self::running(a) {
                seen.stopped_agent = hash();
                seen.provisioned = self.stopped_provisioned(a).await;
            } else {
                seen.agent_container = hash();
                let cid = a.id.clone().unwrap_or_default();
                seen.provisioned = match self.fact(&cid).provisioned {
                    Some(known) => known,
                    None => {
                        let read = exec::run(
                            &self.docker,
                            &self.config.name(id, Role::Agent),
                            &["cat", bb_backend::provision::MARKER],
                            None,
                            None,
                        )
                        .await;
                        let hash = read
                            .ok()
                            .filter(|o| o.success())
                            .map(|o| bb_backend::provision::marker_hash(&o.stdout));
                        if let Some(h) = &hash {
                            let h = h.clone();
                            self.learn(&cid, |f| f.provisioned = Some(Some(h)));
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
        let progress = images::Progress {
            all: &self.progress,
            agent: Some(steps),
        };
        let sidecar = self.sidecar_image(Some(steps)).await?;
        tracing::debug!(sidecar = %sidecar, "sidecar image ready");
        if let ImageSource::Capability {
            base, dockerfile, ..
        } = image
        {
            let agent_image = self.provider_image(base, progress).await?;
            return images::capability(
                &self.docker,
                progress,
                dockerfile,
                &agent_image,
                &self.config.base_image,
            )
            .await;
        }
        self.provider_image(image, progress).await
    }

    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError> {
        let (internal, egress) = futures_util::future::join(
            self.ensure_network_named(id, Role::InternalNetwork, true),
            self.ensure_network_named(id, Role::EgressNetwork, false),
        )
        .await;
        internal.and(egress)
    }
    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        self.run_sidecar(id, plan, applied, placement::Placement::Internal)
            .await
    }

    fn policy_hash(&self, id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError> {
        let ca = self.config.bottle_ca(id)?;
        Ok(plan.applied_hash(ca.key_pem.as_bytes()))
    }

    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError> {
        let name = self.config.name(id, Role::Sidecar);
        delivery::install(self, &name, id, plan, applied, Delivery::Reload).await
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
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(BackendError::new(Step::Image, e.to_string())),
        }
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.fork_snapshot(id, id).await
    }

    async fn fork_snapshot(
        &self,
        source: &AgentId,
        into: &AgentId,
    ) -> Result<String, BackendError> {
        let mut labels = names::labels(into, Role::Snapshot, &self.config.instance);
        labels.insert(ROLE.into(), Role::Snapshot.as_str().into());
        self.commit_agent(source, into, "bot-bottle/snapshot", labels)
            .await
    }

    async fn keep_snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        // Not managed any more: no filter of the Agent's, the runner's or a sweep's matches
        // these labels (a commit inherits the container's, so each is overridden).
        let labels = HashMap::from([
            (names::MANAGED_BY.to_string(), "kept".to_string()),
            (names::ROLE.to_string(), "kept".to_string()),
            (
                names::KEPT_FROM.to_string(),
                format!("{}/{}", id.namespace, id.name),
            ),
        ]);
        self.commit_agent(id, id, "bot-bottle/kept", labels).await
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        for role in [Role::Agent, Role::Sidecar] {
            match self
                .docker
                .stop_container(
                    &self.config.name(id, role),
                    Some(StopContainerOptions {
                        t: Some(10),
                        ..Default::default()
                    }),
                )
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => return Err(BackendError::new(Step::Stop, e.to_string())),
            }
        }
        Ok(())
    }

    async fn egress_count(&self, id: &AgentId) -> Result<Option<u64>, BackendError> {
        let name = self.config.name(id, Role::Sidecar);
        let argv = bb_backend::sidecar_command::activity();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = exec::run(&self.docker, &name, &argv, Some(SIDECAR_USER), None)
            .await
            .map_err(step(Step::Observe))?;
        bb_backend::sidecar_command::parse_activity(&out).map(Some)
    }

    fn restarts_stopped_agents(&self) -> bool {
        true
    }

    async fn start_agent(&self, id: &AgentId) -> Result<(), BackendError> {
        let name = self.config.name(id, Role::Agent);
        self.start_stopped(&name)
            .await
            .map_err(|e| BackendError::new(Step::Agent, format!("starting {name} again: {e}")))
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
        self.config.skills_root.clone()
    }

    fn supervise_url(&self) -> String {
        format!(
            "http://{}:{}/mcp",
            names::SIDECAR_ALIAS,
            bb_backend::sidecar_command::SUPERVISE_PORT
        )
    }

    fn hold_file(&self, id: &AgentId) -> Option<PathBuf> {
        self.config
            .hold_dir(id)
            .map(|d| d.join(bb_backend::sidecar_command::HOLD_FILE))
    }

    fn supervise_dir(&self, id: &AgentId) -> PathBuf {
        self.state_dir(id).join("supervise")
    }

    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError> {
        let mut ids = std::collections::BTreeSet::new();
        for c in self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(names::managed_filter(&self.config.instance)),
                ..Default::default()
            }))
            .await
            .map_err(step(Step::Sweep))?
        {
            if let Some(id) = c.labels.as_ref().and_then(names::agent_from_labels) {
                ids.insert(id);
            }
        }
        for n in self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(names::managed_filter(&self.config.instance)),
            }))
            .await
            .map_err(step(Step::Sweep))?
        {
            if let Some(id) = n.labels.as_ref().and_then(names::agent_from_labels) {
                ids.insert(id);
            }
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

    async fn diagnose(&self) -> Vec<bb_backend::health::Check> {
        self.engine_checks().await
    }

    async fn resize_session(&self, session: &str, width: u16, height: u16) {
        self.resize_exec(session, width, height).await;
    }

    async fn session_exit_code(&self, session: &str) -> Result<Option<i64>, BackendError> {
        self.exec_exit_code(session).await
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
