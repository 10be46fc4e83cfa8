//! The Docker backend: each Agent is an agent container on an internal network whose only
//! other member is its sidecar, which alone reaches the egress network. Engine API via bollard.

mod exec;
pub mod images;
pub mod names;
pub mod session;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;
use bb_crds::quantity::parse_quantity;
use bb_crds::runtime::GvisorMode;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, KillContainerOptions, ListContainersOptions,
    ListImagesOptions, ListNetworksOptions, RemoveContainerOptions, RemoveImageOptions,
    StopContainerOptions, UploadToContainerOptions,
};
use tokio::sync::OnceCell;

use self::names::{CONTAINER_HASH, PROXY_PORT, ROLE, Role, SIDECAR_ALIAS};
use super::{AgentId, AgentPlan, Backend, BackendError, ImageSource, Observed, SidecarPlan};
pub use exec::ExecOutput;

/// Inside the sidecar: a tmpfs holding CA, tokens and policy, so none touches a disk or env.
const SIDECAR_RUN: &str = "/run/bot-bottle";
/// Inside the agent: the CA certificate and provisioning marker.
const AGENT_ETC: &str = "/etc/bot-bottle";
const WORKSPACE: &str = "/workspace";

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Per-Agent state (the bottle CA) lives in `<state_dir>/<uid>/`.
    pub state_dir: PathBuf,
    /// `BASE` build argument of every image the backend builds.
    pub base_image: String,
    /// The bb-sidecar executable copied into the sidecar image.
    pub sidecar_binary: PathBuf,
    /// Extra CA (PEM) sidecars trust for upstream servers, beside the system roots.
    pub upstream_ca: Option<PathBuf>,
    /// The uid owning the workspace and provisioned files in the agent.
    pub agent_uid: u64,
    /// Names this controller instance in the labels of what it creates (see `names::CONTROLLER`).
    pub instance: String,
    /// Where `spec.skills` names resolve on the controller host.
    pub skills_root: PathBuf,
}

impl DockerConfig {
    /// Defaults for a controller whose home is `home`: the stock Debian base and the
    /// bb-sidecar installed next to the running executable.
    pub fn for_home(home: &std::path::Path, instance: &str) -> DockerConfig {
        let sidecar_binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("bb-sidecar")))
            .unwrap_or_else(|| PathBuf::from("bb-sidecar"));
        DockerConfig {
            state_dir: home.join("agents"),
            base_image: "debian:bookworm-slim".into(),
            sidecar_binary,
            upstream_ca: None,
            agent_uid: 1000,
            instance: instance.to_string(),
            skills_root: home.join("skills"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DockerBackend {
    docker: Docker,
    config: Arc<DockerConfig>,
    sidecar_image: Arc<OnceCell<String>>,
    gvisor: bool,
    /// What this process established about a container (by ID, so a recreated container
    /// starts unknown): spares an exec per observe. After a restart it is re-learned by exec.
    facts: Arc<std::sync::Mutex<HashMap<String, Facts>>>,
}

#[derive(Debug, Clone, Default)]
struct Facts {
    policy: Option<String>,
    provisioned: Option<bool>,
}

fn step(step: &'static str) -> impl Fn(bollard::errors::Error) -> BackendError {
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
    pub async fn connect(config: DockerConfig) -> Result<DockerBackend, BackendError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(step("connect"))?
            .negotiate_version()
            .await
            .map_err(|e| BackendError::new("connect", format!("Docker is not reachable: {e}")))?;
        let info = docker
            .info()
            .await
            .map_err(|e| BackendError::new("connect", format!("Docker is not reachable: {e}")))?;
        let gvisor = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.contains_key("runsc"));
        Ok(DockerBackend {
            docker,
            config: Arc::new(config),
            sidecar_image: Arc::new(OnceCell::new()),
            gvisor,
            facts: Arc::default(),
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
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
        self.config.state_dir.join(&id.uid)
    }

    async fn containers(&self, id: &AgentId) -> Result<Vec<ContainerSummary>, BackendError> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(names::agent_filter(id)),
                ..Default::default()
            }))
            .await
            .map_err(step("observe"))
    }

    fn role_of(c: &ContainerSummary) -> Option<&str> {
        c.labels.as_ref()?.get(ROLE).map(String::as_str)
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
        step_name: &'static str,
    ) -> Result<ExecOutput, BackendError> {
        exec::run(&self.docker, container, argv, None, stdin)
            .await
            .map_err(step(step_name))
    }

    /// Runs a command in the agent container as `user` (root when `None`): `bbctl exec`.
    pub async fn exec_in_agent(
        &self,
        id: &AgentId,
        argv: &[&str],
        user: Option<&str>,
    ) -> Result<ExecOutput, BackendError> {
        exec::run(
            &self.docker,
            &names::name(id, Role::Agent),
            argv,
            user,
            None,
        )
        .await
        .map_err(step("exec"))
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
            Err(e) => Err(BackendError::new("teardown", e.to_string())),
        }
    }

    /// The policy hash a running sidecar reports having loaded.
    async fn loaded_policy(&self, sidecar: &str) -> Option<String> {
        let out = exec::run(
            &self.docker,
            sidecar,
            &["cat", &format!("{SIDECAR_RUN}/applied")],
            None,
            None,
        )
        .await
        .ok()?;
        out.success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Delivers token files and the policy (written last, renamed into place) to the
    /// sidecar's tmpfs through an exec's stdin.
    async fn deliver(
        &self,
        sidecar: &str,
        plan: &SidecarPlan,
        with_ca: bool,
        id: &AgentId,
    ) -> Result<(), BackendError> {
        let fail = |e: std::io::Error| BackendError::new("policy", format!("packing files: {e}"));
        let mut tar = exec::TarBuilder::default();
        if with_ca {
            let ca = super::bottle_ca::load_or_create(&self.state_dir(id), &id.to_string())?;
            tar.file("ca.crt", ca.cert_pem.as_bytes(), 0o600, 0)
                .map_err(fail)?;
            tar.file("ca.key", ca.key_pem.as_bytes(), 0o600, 0)
                .map_err(fail)?;
            if let Some(path) = &self.config.upstream_ca {
                let pem = std::fs::read(path).map_err(|e| {
                    BackendError::new("sidecar", format!("reading {}: {e}", path.display()))
                })?;
                tar.file("upstream-ca.crt", &pem, 0o644, 0).map_err(fail)?;
            }
        }
        tar.dir("secrets", 0o700, 0).map_err(fail)?;
        for (name, value) in &plan.secret_files {
            tar.file(&format!("secrets/{name}"), value.expose(), 0o600, 0)
                .map_err(fail)?;
        }
        tar.file("policy.next", plan.policy_yaml.as_bytes(), 0o600, 0)
            .map_err(fail)?;
        let archive = tar.finish().map_err(fail)?;
        // Token files first, then the policy by rename: the watcher never sees half a file.
        let script = format!(
            "tar -x -o -C {SIDECAR_RUN} -f - && mv -f {SIDECAR_RUN}/policy.next {SIDECAR_RUN}/policy.yaml"
        );
        let out = self
            .exec(sidecar, &["sh", "-c", &script], Some(&archive), "policy")
            .await?;
        if !out.success() {
            return Err(BackendError::new(
                "policy",
                format!("writing the policy into the sidecar failed: {}", out.tail()),
            ));
        }
        Ok(())
    }

    /// Waits until the sidecar reports `hash` as loaded; a hang-up speeds up its file watcher.
    async fn await_policy(
        &self,
        sidecar: &str,
        hash: &str,
        signal: bool,
    ) -> Result<(), BackendError> {
        if signal {
            let _ = self
                .docker
                .kill_container(
                    sidecar,
                    Some(KillContainerOptions {
                        signal: "SIGHUP".into(),
                    }),
                )
                .await;
        }
        for _ in 0..400 {
            if self.loaded_policy(sidecar).await.as_deref() == Some(hash) {
                let hash = hash.to_string();
                self.learn_by_name(sidecar, |f| f.policy = Some(hash)).await;
                return Ok(());
            }
            let state = self
                .docker
                .inspect_container(
                    sidecar,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .ok()
                .and_then(|c| c.state);
            if let Some(st) = state.filter(|s| s.running != Some(true)) {
                let logs = self.logs_tail(sidecar).await;
                return Err(BackendError::new(
                    "sidecar",
                    format!(
                        "the sidecar exited (code {}); its log ends: {logs}",
                        st.exit_code.unwrap_or_default()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let logs = self.logs_tail(sidecar).await;
        Err(BackendError::new(
            "policy",
            format!("the sidecar did not load policy {hash} within 10s; its log ends: {logs}"),
        ))
    }

    async fn logs_tail(&self, container: &str) -> String {
        use futures_util::StreamExt;
        let mut s = self.docker.logs(
            container,
            Some(bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: "5".into(),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = s.next().await {
            text.push_str(&chunk.to_string());
        }
        text.lines().collect::<Vec<_>>().join(" | ")
    }

    async fn ensure_network_named(
        &self,
        id: &AgentId,
        role: Role,
        internal: bool,
    ) -> Result<(), BackendError> {
        let name = names::name(id, role);
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
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(BackendError::new(
                "network",
                format!("creating {name}: {e}"),
            )),
        }
    }

    fn agent_host_config(&self, plan: &AgentPlan) -> Result<HostConfig, BackendError> {
        let rt = &plan.runtime;
        let runtime = match rt.gvisor.unwrap_or_default() {
            GvisorMode::Off => None,
            GvisorMode::Auto => self.gvisor.then(|| "runsc".to_string()),
            GvisorMode::Required if self.gvisor => Some("runsc".to_string()),
            GvisorMode::Required => {
                return Err(BackendError::new(
                    "agent",
                    "runtime.gvisor is required but the Docker engine has no 'runsc' runtime; install gVisor and register it, or set runtime.gvisor: auto",
                ));
            }
        };
        let quantity = |field: &str, v: &Option<String>| -> Result<Option<u128>, BackendError> {
            v.as_deref()
                .map(|s| {
                    parse_quantity(s).map_err(|e| {
                        BackendError::new("agent", format!("runtime.{field} '{s}' {e}"))
                    })
                })
                .transpose()
                .map(|q| {
                    q.map(|q| {
                        if field == "cpu" {
                            q.milli()
                        } else {
                            q.ceil_units()
                        }
                    })
                })
        };
        let memory = quantity("memory", &rt.memory)?.map(|b| b.min(i64::MAX as u128) as i64);
        let nano_cpus = quantity("cpu", &rt.cpu)?
            .map(|m| (m.saturating_mul(1_000_000)).min(i64::MAX as u128) as i64);
        Ok(HostConfig {
            network_mode: None,
            runtime,
            init: Some(true),
            memory,
            nano_cpus,
            pids_limit: Some(rt.pids.unwrap_or(4096)),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            // Enough to own files and switch to the agent user; nothing that reaches the
            // network stack (no NET_RAW, NET_ADMIN) or the host (no SYS_*).
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(
                [
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "FOWNER",
                    "FSETID",
                    "SETUID",
                    "SETGID",
                    "KILL",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ..Default::default()
        })
    }

    fn proxy_url() -> String {
        format!("http://{SIDECAR_ALIAS}:{PROXY_PORT}")
    }

    /// Everything an agent container holds for one Agent, snapshots included.
    async fn remove_snapshots(&self, id: &AgentId) -> Result<(), BackendError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(names::agent_filter(id)),
                ..Default::default()
            }))
            .await
            .map_err(step("teardown"))?;
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
                Err(e) => return Err(BackendError::new("teardown", e.to_string())),
            }
        }
        Ok(())
    }
}

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
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(names::agent_filter(id)),
            }))
            .await
            .map_err(step("observe"))?;
        let mut seen = Observed {
            network: networks.len() >= 2,
            ..Default::default()
        };
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
                    let p = self.loaded_policy(&names::name(id, Role::Sidecar)).await;
                    if let (Some(cid), Some(p)) = (s.id.as_deref(), p.clone()) {
                        self.learn(cid, |f| f.policy = Some(p));
                    }
                    p
                }
            };
        }
        if let Some(a) = agent {
            seen.image = a.image.clone();
            if Self::running(a) {
                seen.agent_container = a
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CONTAINER_HASH).cloned());
                let cid = a.id.clone().unwrap_or_default();
                seen.provisioned = match self.fact(&cid).provisioned {
                    Some(known) => known,
                    None => {
                        let marker = format!("{AGENT_ETC}/provisioned");
                        let done = exec::run(
                            &self.docker,
                            &names::name(id, Role::Agent),
                            &["test", "-f", &marker],
                            None,
                            None,
                        )
                        .await
                        .is_ok_and(|o| o.success());
                        if done {
                            self.learn(&cid, |f| f.provisioned = Some(true));
                        }
                        done
                    }
                };
            }
        }
        seen.stopped = !containers.is_empty() && !containers.iter().any(Self::running);
        Ok(seen)
    }

    async fn ensure_image(
        &self,
        _id: &AgentId,
        image: &ImageSource,
    ) -> Result<String, BackendError> {
        let sidecar = self
            .sidecar_image
            .get_or_try_init(|| {
                images::sidecar(
                    &self.docker,
                    &self.config.sidecar_binary,
                    &self.config.base_image,
                )
            })
            .await?;
        tracing::debug!(sidecar = %sidecar, "sidecar image ready");
        match image {
            ImageSource::Reference(r) => images::reference(&self.docker, r).await,
            ImageSource::Dockerfile(d) => {
                images::from_dockerfile(
                    &self.docker,
                    std::path::Path::new(d),
                    &self.config.base_image,
                )
                .await
            }
        }
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
    ) -> Result<SidecarEndpoints, BackendError> {
        let endpoints = SidecarEndpoints {
            proxy: Some(Self::proxy_url()),
            git_gate: None,
            supervise: None,
        };
        let name = names::name(id, Role::Sidecar);
        let existing = self
            .containers(id)
            .await?
            .into_iter()
            .find(|c| Self::role_of(c) == Some(Role::Sidecar.as_str()));
        match existing {
            Some(c) if Self::running(&c) => return Ok(endpoints),
            // A stopped sidecar lost its tmpfs (CA key, tokens): start over.
            Some(_) => self.remove_container(&name).await?,
            None => {}
        }
        let image = self
            .sidecar_image
            .get_or_try_init(|| {
                images::sidecar(
                    &self.docker,
                    &self.config.sidecar_binary,
                    &self.config.base_image,
                )
            })
            .await?
            .clone();
        let run = SIDECAR_RUN;
        let mut cmd: Vec<String> = [
            "egress",
            "--listen",
            &format!("0.0.0.0:{PROXY_PORT}"),
            "--ca-cert",
            &format!("{run}/ca.crt"),
            "--ca-key",
            &format!("{run}/ca.key"),
            "--policy",
            &format!("{run}/policy.yaml"),
            "--secrets-dir",
            &format!("{run}/secrets"),
            "--status-file",
            &format!("{run}/applied"),
            "--audit-log",
            &format!("{run}/audit.log"),
            "--wait-for-policy",
            "60",
        ]
        .map(String::from)
        .to_vec();
        if self.config.upstream_ca.is_some() {
            cmd.extend([
                "--upstream-ca".to_string(),
                format!("{run}/upstream-ca.crt"),
            ]);
        }
        let internal = names::name(id, Role::InternalNetwork);
        let egress = names::name(id, Role::EgressNetwork);
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(cmd),
            labels: Some(names::labels(id, Role::Sidecar, &self.config.instance)),
            host_config: Some(HostConfig {
                network_mode: Some(internal.clone()),
                tmpfs: Some(HashMap::from([(
                    run.to_string(),
                    "rw,noexec,nosuid,size=16m,mode=0700".to_string(),
                )])),
                init: Some(true),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                restart_policy: None,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    internal.clone(),
                    EndpointSettings {
                        aliases: Some(vec![SIDECAR_ALIAS.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        match self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                // Left behind by an interrupted attempt: replace it.
                self.remove_container(&name).await?;
                return Err(BackendError::new(
                    "sidecar",
                    "replaced a half-created sidecar; retrying",
                ));
            }
            Err(e) => {
                return Err(BackendError::new(
                    "sidecar",
                    format!("creating {name}: {e}"),
                ));
            }
        }
        self.docker
            .connect_network(
                &egress,
                NetworkConnectRequest {
                    container: Some(name.clone()),
                    endpoint_config: Some(EndpointSettings::default()),
                },
            )
            .await
            .map_err(|e| {
                BackendError::new("sidecar", format!("attaching {name} to {egress}: {e}"))
            })?;
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| BackendError::new("sidecar", format!("starting {name}: {e}")))?;
        self.deliver(&name, plan, true, id).await?;
        self.await_policy(&name, &plan.policy_hash, false).await?;
        Ok(endpoints)
    }

    async fn apply_policy(&self, id: &AgentId, plan: &SidecarPlan) -> Result<(), BackendError> {
        let name = names::name(id, Role::Sidecar);
        self.deliver(&name, plan, false, id).await?;
        self.await_policy(&name, &plan.policy_hash, true).await
    }

    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = names::name(id, Role::Agent);
        self.remove_container(&name).await?;
        let proxy = Self::proxy_url();
        let bundle = "/etc/ssl/certs/ca-certificates.crt";
        let mut env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (k, v) in [
            ("HTTP_PROXY", proxy.as_str()),
            ("HTTPS_PROXY", proxy.as_str()),
            ("http_proxy", proxy.as_str()),
            ("https_proxy", proxy.as_str()),
            ("NO_PROXY", "localhost,127.0.0.1,::1"),
            ("no_proxy", "localhost,127.0.0.1,::1"),
            ("NODE_EXTRA_CA_CERTS", &format!("{AGENT_ETC}/ca.crt")),
            ("SSL_CERT_FILE", bundle),
            ("REQUESTS_CA_BUNDLE", bundle),
            ("GIT_SSL_CAINFO", bundle),
            ("CURL_CA_BUNDLE", bundle),
        ] {
            env.push(format!("{k}={v}"));
        }
        let mut labels = names::labels(id, Role::Agent, &self.config.instance);
        labels.insert(CONTAINER_HASH.to_string(), plan.container_hash.clone());
        let internal = names::name(id, Role::InternalNetwork);
        let mut host = self.agent_host_config(plan)?;
        host.network_mode = Some(internal);
        // Names the engine's resolver cannot answer locally go to 127.0.0.1 inside the agent's
        // own namespace, never to a resolver outside: no DNS channel out, whatever the engine
        // version does for internal networks. (The proxy resolves for the agent.)
        host.dns = Some(vec!["127.0.0.1".into()]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Stays up doing nothing: sessions are execs of the provider's command.
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec![
                "-c".into(),
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
            ]),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| BackendError::new("agent", format!("creating {name}: {e}")))?;
        // A new container is known not to be provisioned: no need to look.
        self.learn(&created.id, |f| f.provisioned = Some(false));
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| BackendError::new("agent", format!("starting {name}: {e}")))?;
        Ok(())
    }

    async fn provision(&self, id: &AgentId, plan: &AgentPlan) -> Result<(), BackendError> {
        let name = names::name(id, Role::Agent);
        let fail =
            |e: std::io::Error| BackendError::new("provision", format!("packing files: {e}"));
        let ca = super::bottle_ca::load_or_create(&self.state_dir(id), &id.to_string())?;
        let uid = self.config.agent_uid;
        let mut tar = exec::TarBuilder::default();
        tar.dir("etc/bot-bottle", 0o755, 0).map_err(fail)?;
        tar.file("etc/bot-bottle/ca.crt", ca.cert_pem.as_bytes(), 0o644, 0)
            .map_err(fail)?;
        tar.file(
            "usr/local/share/ca-certificates/bot-bottle.crt",
            ca.cert_pem.as_bytes(),
            0o644,
            0,
        )
        .map_err(fail)?;
        if let Some(prompt) = &plan.prompt {
            tar.file("etc/bot-bottle/prompt.md", prompt.as_bytes(), 0o644, 0)
                .map_err(fail)?;
        }
        for f in &plan.files {
            let path = f.guest_path.trim_start_matches('/');
            tar.file(path, &f.contents, f.mode, uid).map_err(fail)?;
        }
        if let Some(user) = &plan.git_user {
            let mut cfg = String::from("[user]\n");
            if let Some(n) = &user.name {
                cfg.push_str(&format!("\tname = {}\n", n.replace(['\n', '\r'], " ")));
            }
            if let Some(e) = &user.email {
                cfg.push_str(&format!("\temail = {}\n", e.replace(['\n', '\r'], " ")));
            }
            tar.file("etc/gitconfig", cfg.as_bytes(), 0o644, 0)
                .map_err(fail)?;
        }
        for skill in &plan.skills {
            let (name, src) = if skill.starts_with('/') {
                let p = std::path::PathBuf::from(skill);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, p)
            } else {
                (skill.clone(), self.config.skills_root.join(skill))
            };
            if !src.is_dir() {
                return Err(BackendError::new(
                    "provision",
                    format!(
                        "skill '{skill}' is not a directory at {}; create it or fix spec.skills",
                        src.display()
                    ),
                ));
            }
            let dst = format!("{}/{name}", plan.skills_dir.trim_matches('/'));
            tar.host_tree(&src, &dst, uid, true).map_err(|e| {
                BackendError::new("provision", format!("copying skill '{skill}': {e}"))
            })?;
        }
        if let Some(ws) = plan.workspace.as_ref().filter(|w| w.copy.unwrap_or(true)) {
            tar.host_tree(
                std::path::Path::new(&ws.host_path),
                WORKSPACE.trim_start_matches('/'),
                uid,
                ws.include_git.unwrap_or(false),
            )
            .map_err(|e| {
                BackendError::new(
                    "provision",
                    format!("copying workspace {}: {e}", ws.host_path),
                )
            })?;
        }
        let archive = tar.finish().map_err(fail)?;
        self.docker
            .upload_to_container(
                &name,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(|e| {
                BackendError::new("provision", format!("copying files into {name}: {e}"))
            })?;
        // The system store too, so tools that ignore the env variables trust the bottle CA.
        // Appending to the bundle is what every TLS stack reads (and SSL_CERT_FILE points at);
        // the copy in /usr/local/share/ca-certificates keeps it across update-ca-certificates.
        // Running that tool instead costs about a second per start.
        let script = "b=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/ssl/certs && \
             { grep -qF \"$(sed -n 2p /etc/bot-bottle/ca.crt)\" $b 2>/dev/null || cat /etc/bot-bottle/ca.crt >> $b; } && \
             touch /etc/bot-bottle/provisioned";
        let out = self
            .exec(&name, &["sh", "-c", script], None, "provision")
            .await?;
        if !out.success() {
            return Err(BackendError::new(
                "provision",
                format!("installing the bottle CA failed: {}", out.tail()),
            ));
        }
        self.learn_by_name(&name, |f| f.provisioned = Some(true))
            .await;
        Ok(())
    }

    async fn has_image(&self, image: &str) -> Result<bool, BackendError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(BackendError::new("image", e.to_string())),
        }
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        let tag = format!(
            "{}-{}",
            names::prefix(id),
            jiff::Timestamp::now().as_second()
        );
        let mut labels = names::labels(id, Role::Snapshot, &self.config.instance);
        labels.insert(ROLE.into(), Role::Snapshot.as_str().into());
        let config = bollard::models::ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .commit_container(
                CommitContainerOptions {
                    container: Some(names::name(id, Role::Agent)),
                    repo: Some("bot-bottle/snapshot".into()),
                    tag: Some(tag.clone()),
                    pause: true,
                    ..Default::default()
                },
                config,
            )
            .await
            .map_err(|e| BackendError::new("snapshot", e.to_string()))?;
        Ok(format!("bot-bottle/snapshot:{tag}"))
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        for role in [Role::Agent, Role::Sidecar] {
            match self
                .docker
                .stop_container(
                    &names::name(id, role),
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
                Err(e) => return Err(BackendError::new("stop", e.to_string())),
            }
        }
        Ok(())
    }

    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError> {
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
                filters: Some(names::agent_filter(id)),
            }))
            .await
            .map_err(step("teardown"))?;
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
                        "teardown",
                        format!("removing network {name}: {e}"),
                    ));
                }
            }
        }
        self.remove_snapshots(id).await?;
        match std::fs::remove_dir_all(self.state_dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::new(
                "teardown",
                format!("removing {}: {e}", self.state_dir(id).display()),
            )),
        }
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
            .map_err(step("sweep"))?
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
            .map_err(step("sweep"))?
        {
            if let Some(id) = n.labels.as_ref().and_then(names::agent_from_labels) {
                ids.insert(id);
            }
        }
        Ok(ids.into_iter().collect())
    }
}
