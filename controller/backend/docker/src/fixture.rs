//! What a runner on Docker offers beyond the `Backend` trait, for `bbctl doctor` and the live
//! demo: the engine's health, and stand-in containers beside a bottle (the demo's upstream).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use futures_util::StreamExt;

use super::DockerBackend;
use bb_backend::health::Check;
use bb_backend::{Backend, BackendError, Step};

/// A container that is not part of any bottle.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: HashMap<String, String>,
    /// The network to join, and the names it answers to there.
    pub network: String,
    pub aliases: Vec<String>,
}

impl DockerBackend {
    /// The engine's version, gVisor and base images, as doctor checks.
    pub(super) async fn engine_checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let version = self
            .docker
            .version()
            .await
            .ok()
            .and_then(|v| v.version)
            .unwrap_or_default();
        checks.push(Check::ok("docker", format!("engine {version} reachable")));
        checks.push(if self.gvisor {
            Check::ok("gvisor", "runsc registered (runtime.gvisor: auto uses it)")
        } else {
            Check::warn(
                "gvisor",
                "runsc not registered: agents run under runc; Bottles with runtime.gvisor: required will not start",
            )
        });
        let base = bb_backend::config::default_base(self).await;
        let present = self.has_image(base).await.unwrap_or(false);
        checks.push(if present {
            Check::ok("base image", format!("{base} present; Agents build on it"))
        } else {
            Check::warn(
                "base image",
                format!(
                    "neither {} nor {base} is present: the first Agent pulls {base}; offline, run hack/build-base-image.sh",
                    bb_backend::config::HERMETIC_BASE
                ),
            )
        });
        checks
    }

    /// Pulls `image` from its registry; `false` when it cannot (no registry, no such image).
    pub async fn pull(&self, image: &str) -> bool {
        let mut pull = self.docker.create_image(
            Some(bollard::query_parameters::CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(item) = pull.next().await {
            if item.is_err() {
                return false;
            }
        }
        self.docker.inspect_image(image).await.is_ok()
    }

    /// Creates and starts `f`.
    pub async fn run_fixture(&self, f: &Fixture) -> Result<(), BackendError> {
        let body = ContainerCreateBody {
            image: Some(f.image.clone()),
            cmd: Some(f.command.clone()),
            env: Some(f.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(f.labels.clone()),
            host_config: Some(HostConfig {
                network_mode: Some(f.network.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    f.network.clone(),
                    EndpointSettings {
                        aliases: Some(f.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let failed = |e: bollard::errors::Error| {
            BackendError::new(Step::Agent, format!("fixture {}: {e}", f.name))
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(f.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(failed)?;
        self.docker
            .start_container(
                &f.name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(failed)
    }

    /// A fixture's output so far, as text.
    pub async fn fixture_log(&self, name: &str) -> String {
        let mut s = self.docker.logs(
            name,
            Some(bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = s.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }

    pub async fn remove_fixture(&self, name: &str) {
        let _ = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}
