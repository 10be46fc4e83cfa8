//! The sidecar container of an Agent: created on the internal network (alias `bb-sidecar`) and
//! the egress network (or, for a micro-VM agent, on the egress network with its ports published
//! on one loopback address), fed CA, tokens and policy through an exec's stdin, watched until it
//! reports the policy it loaded.

use std::collections::HashMap;
use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptions, KillContainerOptions};

use super::placement::{Placement, published_ports};
use super::{DockerBackend, SIDECAR_RUN, SIDECAR_UID, is_conflict};
use bb_backend::delivery::{self, Delivery, Polling, SidecarSeam};
use bb_backend::names::{self, Role, SIDECAR_ALIAS};
use bb_backend::sidecar_command::{
    GIT_GATE_STATE, HOLD_DIR, QUEUE_DIR, SPEC_LABEL, create_hold_dir, create_queue_dir,
};
use bb_backend::{AgentId, Backend, BackendError, SidecarPlan, Step};

/// The delivery protocol (`bb_backend::delivery`) over Docker: execs through the Engine API,
/// a state check on every poll (inspect is cheap), 10 s to load.
#[async_trait::async_trait]
impl SidecarSeam for DockerBackend {
    fn runtime(&self) -> &bb_backend::RuntimeConfig {
        &self.config
    }

    fn polling(&self) -> Polling {
        Polling {
            interval: Duration::from_millis(25),
            state_every: 1,
            deadline: Duration::from_secs(10),
        }
    }

    async fn run_in_sidecar(
        &self,
        sidecar: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        _after_start: bool,
    ) -> Result<bb_backend::ExecOutput, BackendError> {
        // A started container takes execs at once: nothing to retry.
        self.exec_in_sidecar(sidecar, argv, stdin, Step::Policy)
            .await
    }

    async fn hang_up(&self, sidecar: &str) {
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

    async fn stopped(&self, sidecar: &str) -> Result<Option<Option<i64>>, BackendError> {
        let state = self
            .docker
            .inspect_container(
                sidecar,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|c| c.state);
        Ok(state
            .filter(|s| s.running != Some(true))
            .map(|s| Some(s.exit_code.unwrap_or_default())))
    }

    async fn logs_tail(&self, sidecar: &str) -> String {
        DockerBackend::logs_tail(self, sidecar).await
    }

    async fn learn_policy(&self, sidecar: &str, hash: &str) {
        let hash = hash.to_string();
        self.learn_by_name(sidecar, |f| f.policy = Some(hash)).await;
    }
}

impl DockerBackend {
    pub(super) async fn logs_tail(&self, container: &str) -> String {
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

    /// Creates (or finds running) the sidecar, delivers CA, tokens and policy, and waits until
    /// it reports the policy loaded.
    pub async fn run_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
        placement: Placement,
    ) -> Result<SidecarEndpoints, BackendError> {
        let endpoints = SidecarEndpoints {
            proxy: Some(match placement {
                Placement::Internal => Self::proxy_url(),
                Placement::Loopback(ip) => format!("http://{ip}:{}", names::PROXY_PORT),
            }),
            git_gate: plan
                .secret_files
                .contains_key(bb_crds::policy::GIT_GATE_CONFIG_FILE)
                .then(|| bb_backend::sidecar_command::GATE_BASE.to_string()),
            supervise: plan.supervise.then(|| self.supervise_url()),
        };
        let name = self.config.name(id, Role::Sidecar);
        let existing = self
            .containers(id)
            .await?
            .into_iter()
            .find(|c| Self::role_of(c) == Some(Role::Sidecar.as_str()));
        let image = self.sidecar_image(None).await?.clone();
        let queue = bb_backend::sidecar_command::queue_dir(&self.supervise_dir(id));
        let cmd = bb_backend::sidecar_command::command(plan, &self.config);
        let mut mounts = if plan.supervise {
            create_queue_dir(&queue)?;
            vec![format!("{}:{QUEUE_DIR}:rw", queue.display())]
        } else {
            Vec::new()
        };
        if let Some(hold) = self.config.hold_dir(id) {
            create_hold_dir(&hold)?;
            mounts.push(format!("{}:{HOLD_DIR}:ro", hold.display()));
        }
        let published = match placement {
            Placement::Internal => None,
            Placement::Loopback(ip) => Some(ip.to_string()),
        };
        let (joined_cmd, joined_mounts) = (cmd.join("\0"), mounts.join("\0"));
        let mut parts = vec![
            image.as_bytes(),
            joined_cmd.as_bytes(),
            joined_mounts.as_bytes(),
        ];
        // Only a published sidecar hashes its address: a Docker bottle's spec (and so its
        // running sidecar) is what it was before placements existed.
        parts.extend(published.as_deref().map(str::as_bytes));
        let spec = bb_backend::hash::sha256_hex(&parts);
        match existing {
            Some(c) if Self::running(&c) && Self::label(&c, SPEC_LABEL) == Some(spec.as_str()) => {
                return Ok(endpoints);
            }
            // Another image (this controller was upgraded: the new one may serve more) or
            // another command (supervise turned on or off): a new sidecar replaces the old one,
            // and the delivery below restores what the tmpfs held. The agent is untouched.
            Some(c) if Self::running(&c) => {
                tracing::info!(agent = %id, from = c.image.as_deref().unwrap_or("?"), to = %image, "sidecar changed; replacing the sidecar");
                self.remove_container(&name).await?;
            }
            // A stopped sidecar of the same spec (a suspended Agent's) starts again: a start,
            // not a create. Its tmpfs is empty (CA key, tokens, policy), so the delivery
            // restores it exactly as for a new one; until then it refuses everything.
            Some(c) if Self::label(&c, SPEC_LABEL) == Some(spec.as_str()) => {
                match self.start_stopped(&name).await {
                    Ok(()) => {
                        delivery::install(self, &name, id, plan, applied, Delivery::New).await?;
                        return Ok(endpoints);
                    }
                    Err(e) => {
                        tracing::info!(agent = %id, error = %e, "the stopped sidecar would not start; replacing it");
                        self.remove_container(&name).await?;
                    }
                }
            }
            // Stopped, of another spec: a new one replaces it.
            Some(_) => self.remove_container(&name).await?,
            None => {}
        }
        let mut labels = names::labels(id, Role::Sidecar, &self.config.instance);
        labels.insert(SPEC_LABEL.to_string(), spec);
        let internal = self.config.name(id, Role::InternalNetwork);
        let egress = self.config.name(id, Role::EgressNetwork);
        // Published ports need a network with a way out; the internal one joins second.
        let (first, second, ports) = match placement {
            Placement::Internal => (internal.clone(), Some(egress), None),
            Placement::Loopback(ip) => (egress, None, Some(published_ports(ip))),
        };
        let aliases = (placement == Placement::Internal).then(|| vec![SIDECAR_ALIAS.to_string()]);
        // The engine publishes only ports the container exposes.
        let exposed = ports.as_ref().map(|p| {
            p.keys()
                .map(|k| (k.clone(), HashMap::new()))
                .collect::<HashMap<_, _>>()
        });
        let body = ContainerCreateBody {
            image: Some(image),
            exposed_ports: exposed,
            cmd: Some(cmd),
            user: Some(format!("{SIDECAR_UID}:{SIDECAR_UID}")),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(first.clone()),
                port_bindings: ports,
                binds: (!mounts.is_empty()).then_some(mounts),
                // Its only writable place, owned by the image's unprivileged user.
                tmpfs: Some(HashMap::from([
                    (
                        SIDECAR_RUN.to_string(),
                        format!(
                            "rw,noexec,nosuid,nodev,size=16m,mode=0700,uid={SIDECAR_UID},gid={SIDECAR_UID}"
                        ),
                    ),
                    // git-gate's mirrors: memory is only used as repositories fill it.
                    (
                        GIT_GATE_STATE.to_string(),
                        format!(
                            "rw,noexec,nosuid,nodev,size=2g,mode=0700,uid={SIDECAR_UID},gid={SIDECAR_UID}"
                        ),
                    ),
                ])),
                readonly_rootfs: Some(true),
                init: Some(true),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                restart_policy: None,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    first.clone(),
                    EndpointSettings {
                        aliases,
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
                    Step::Sidecar,
                    "replaced a half-created sidecar; retrying",
                ));
            }
            Err(e) => {
                return Err(BackendError::new(
                    Step::Sidecar,
                    format!("creating {name}: {e}"),
                ));
            }
        }
        if let Some(egress) = second {
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
                    BackendError::new(Step::Sidecar, format!("attaching {name} to {egress}: {e}"))
                })?;
        }
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| BackendError::new(Step::Sidecar, format!("starting {name}: {e}")))?;
        delivery::install(self, &name, id, plan, applied, Delivery::New).await?;
        Ok(endpoints)
    }
}
