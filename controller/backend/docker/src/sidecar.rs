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
use bb_backend::names::{self, Role, SIDECAR_ALIAS};
use bb_backend::sidecar_command::{GIT_GATE_STATE, QUEUE_DIR, SPEC_LABEL, create_queue_dir};
use bb_backend::{AgentId, Backend, BackendError, SidecarPlan, Step};

impl DockerBackend {
    /// The policy hash a running sidecar reports having loaded.
    pub(super) async fn loaded_policy(&self, sidecar: &str) -> Option<String> {
        let status = format!("{SIDECAR_RUN}/applied");
        let out = self
            .exec_in_sidecar(
                sidecar,
                &["applied", "--status-file", &status],
                None,
                Step::Policy,
            )
            .await
            .ok()?;
        out.success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Delivers token files and the policy (written last, renamed into place) to the
    /// sidecar's tmpfs through an exec's stdin.
    pub(super) async fn deliver(
        &self,
        sidecar: &str,
        plan: &SidecarPlan,
        with_ca: bool,
        id: &AgentId,
    ) -> Result<(), BackendError> {
        let ca = with_ca.then(|| self.config.bottle_ca(id)).transpose()?;
        let archive = bb_backend::sidecar_command::delivery(
            plan,
            ca.as_ref(),
            self.config.upstream_ca.as_deref(),
        )?;
        // The image has no shell: bb-sidecar installs its own delivery (token set swapped whole,
        // policy renamed last, so the proxy never reloads half of it).
        let out = self
            .exec_in_sidecar(
                sidecar,
                &["receive", "--dir", SIDECAR_RUN],
                Some(&archive),
                Step::Policy,
            )
            .await?;
        if !out.success() {
            return Err(BackendError::new(
                Step::Policy,
                format!("writing the policy into the sidecar failed: {}", out.tail()),
            ));
        }
        Ok(())
    }

    /// Waits until the sidecar reports `hash` as loaded; a hang-up speeds up its file watcher.
    pub(super) async fn await_policy(
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
                    Step::Sidecar,
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
            Step::Policy,
            format!("the sidecar did not load policy {hash} within 10s; its log ends: {logs}"),
        ))
    }

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
        let name = names::name(id, Role::Sidecar);
        let existing = self
            .containers(id)
            .await?
            .into_iter()
            .find(|c| Self::role_of(c) == Some(Role::Sidecar.as_str()));
        let image = self.sidecar_image(None).await?.clone();
        let queue = bb_backend::sidecar_command::queue_dir(&self.supervise_dir(id));
        let cmd = bb_backend::sidecar_command::command(plan, &self.config);
        let mounts = if plan.supervise {
            create_queue_dir(&queue)?;
            vec![format!("{}:{QUEUE_DIR}:rw", queue.display())]
        } else {
            Vec::new()
        };
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
            // A stopped sidecar lost its tmpfs (CA key, tokens): start over.
            Some(_) => self.remove_container(&name).await?,
            None => {}
        }
        let mut labels = names::labels(id, Role::Sidecar, &self.config.instance);
        labels.insert(SPEC_LABEL.to_string(), spec);
        let internal = names::name(id, Role::InternalNetwork);
        let egress = names::name(id, Role::EgressNetwork);
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
        self.deliver(&name, plan, true, id).await?;
        self.await_policy(&name, applied, false).await?;
        Ok(endpoints)
    }
}
