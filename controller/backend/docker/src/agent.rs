//! The agent container of an Agent: hardened, on the internal network only, with proxy and CA
//! settings in its env; provisioning copies in what the agent needs to work.

use bb_backend::Step;
use bb_crds::quantity::parse_quantity;
use bb_crds::runtime::GvisorMode;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, UploadToContainerOptions};

use super::names::{self, CONTAINER_HASH, PROXY_PORT, Role, SIDECAR_ALIAS};
use super::{AGENT_ETC, DockerBackend};
use bb_backend::{AgentId, AgentPlan, BackendError};

/// Hosts the agent reaches without the proxy: itself, and the sidecar's git-gate.
const NO_PROXY: &str = "localhost,127.0.0.1,::1,bb-sidecar";

impl DockerBackend {
    pub(super) fn agent_host_config(&self, plan: &AgentPlan) -> Result<HostConfig, BackendError> {
        let rt = &plan.runtime;
        let runtime = match rt.gvisor.unwrap_or_default() {
            GvisorMode::Off => None,
            GvisorMode::Auto => self.gvisor.then(|| "runsc".to_string()),
            GvisorMode::Required if self.gvisor => Some("runsc".to_string()),
            GvisorMode::Required => {
                return Err(BackendError::new(
                    Step::Agent,
                    "runtime.gvisor is required but the Docker engine has no 'runsc' runtime; install gVisor and register it, or set runtime.gvisor: auto",
                ));
            }
        };
        let quantity = |field: &str, v: &Option<String>| -> Result<Option<u128>, BackendError> {
            v.as_deref()
                .map(|s| {
                    parse_quantity(s).map_err(|e| {
                        BackendError::new(Step::Agent, format!("runtime.{field} '{s}' {e}"))
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

    pub(super) fn proxy_url() -> String {
        format!("http://{SIDECAR_ALIAS}:{PROXY_PORT}")
    }

    /// Replaces the agent container with one for `plan`.
    pub(super) async fn create_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = self.config.name(id, Role::Agent);
        self.remove_container(&name).await?;
        let proxy = Self::proxy_url();
        let bundle = "/etc/ssl/certs/ca-certificates.crt";
        let mut env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (k, v) in [
            ("HTTP_PROXY", proxy.as_str()),
            ("HTTPS_PROXY", proxy.as_str()),
            ("http_proxy", proxy.as_str()),
            ("https_proxy", proxy.as_str()),
            // git-gate is reached directly, not through the proxy.
            ("NO_PROXY", NO_PROXY),
            ("no_proxy", NO_PROXY),
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
        let internal = self.config.name(id, Role::InternalNetwork);
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
            .map_err(|e| BackendError::new(Step::Agent, format!("creating {name}: {e}")))?;
        // A new container is known not to be provisioned: no need to look.
        self.learn(&created.id, |f| f.provisioned = Some(None));
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| BackendError::new(Step::Agent, format!("starting {name}: {e}")))?;
        Ok(())
    }

    /// Copies CA, prompt, provider files, skills, git identity and workspace in. A container
    /// this process provisioned before (a claimed pool member) takes the new files in one copy,
    /// with no exec: its system store already holds the bottle CA.
    pub(super) async fn provision_agent(
        &self,
        id: &AgentId,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = self.config.name(id, Role::Agent);
        let cid = self
            .docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| BackendError::new(Step::Provision, format!("inspecting {name}: {e}")))?
            .id
            .unwrap_or_default();
        let again = self.fact(&cid).ca_installed;
        let ca = self.config.bottle_ca(id)?;
        let pack = match again {
            true => bb_backend::provision::redelivery_archive,
            false => bb_backend::provision::archive,
        };
        let archive = pack(
            plan,
            &ca.cert_pem,
            self.config.agent_uid,
            &self.config.skills_root,
        )?;
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
                BackendError::new(Step::Provision, format!("copying files into {name}: {e}"))
            })?;
        if !again {
            let finish = bb_backend::provision::finish_script(&plan.inputs_hash);
            let out = self
                .exec(&name, &["sh", "-c", &finish], None, Step::Provision)
                .await?;
            if !out.success() {
                return Err(BackendError::new(
                    Step::Provision,
                    format!("installing the bottle CA failed: {}", out.tail()),
                ));
            }
        }
        let delivered = plan.inputs_hash.clone();
        self.learn(&cid, |f| {
            f.provisioned = Some(Some(delivered));
            f.ca_installed = true;
        });
        Ok(())
    }
}
