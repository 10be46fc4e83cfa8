//! The agent container of an Agent on Apple Container: on the host-only network only, proxy
//! settings stamped with the sidecar's address; provisioned by `cp` behind a ready marker.

use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;

use super::{AGENT_ETC, AppleBackend, BASE_IMAGE, IMAGE, SIDECAR_IP, cli};
use bb_backend::cli_process::BUILD_DEADLINE;
use bb_backend::names::{self, CONTAINER_HASH, Role, SIDECAR_ALIAS};
use bb_backend::{AgentId, AgentPlan, BackendError, Step};

/// Where the provisioning archive lands in the agent before it is unpacked.
const PROVISION_TAR: &str = "/tmp/bot-bottle-provision.tar";
/// The repository snapshots are tagged in; each tag starts with the Agent's name prefix.
const SNAPSHOT_REPO: &str = "bot-bottle/snapshot";
/// Inside the agent: the image its filesystem first came from.
const BASE_FILE: &str = "/etc/bot-bottle/base-image";

impl AppleBackend {
    /// Replaces the agent container with one for `plan`.
    pub(super) async fn create_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = self.config.runtime.name(id, Role::Agent);
        self.remove_container(&name, Step::Agent).await?;
        let ip = self.await_sidecar_ip(id).await?;
        let mut env = plan.env.clone();
        env.extend(bb_backend::sidecar_command::agent_proxy_env(
            &ip,
            &format!("{AGENT_ETC}/ca.crt"),
        ));
        let mut labels = self.labels(id, Role::Agent);
        labels.insert(CONTAINER_HASH.to_string(), plan.container_hash.clone());
        labels.insert(IMAGE.to_string(), image.to_string());
        // A snapshot builds on the image the agent's filesystem first came from, not on a
        // pile of earlier snapshots: the label names it, and provisioning records it inside
        // (where a container made from a snapshot finds it).
        if !is_snapshot(image) {
            labels.insert(BASE_IMAGE.to_string(), image.to_string());
        }
        labels.insert(SIDECAR_IP.to_string(), ip);
        let run = cli::agent_run(
            &name,
            &self.config.runtime.name(id, Role::InternalNetwork),
            env,
            labels,
            image,
        );
        let args = cli::run(&run);
        let out = self.cli.output(Step::Agent, &args, None).await?;
        if !out.success() {
            let _ = self.remove_container(&name, Step::Agent).await;
            return Err(self.cli.failed(Step::Agent, &args, &out));
        }
        // A new container is known not to be provisioned: no need to look.
        self.learn(&name, |f| f.provisioned = Some(None));
        Ok(())
    }

    /// The sidecar's address once it has one: the reconciler brings the sidecar up beside the
    /// agent, and the agent's proxy settings need the address.
    async fn await_sidecar_ip(&self, id: &AgentId) -> Result<String, BackendError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.sidecar_ip(id, Step::Agent).await {
                Ok(ip) => return Ok(ip),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(BackendError::new(
                        Step::Agent,
                        format!("the sidecar has no address on the agent's network: {e}"),
                    ));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            }
        }
    }

    /// Copies the provisioning archive in with `cp`, unpacks it, installs the CA, names the
    /// sidecar in /etc/hosts, and writes the ready marker last.
    pub(super) async fn provision_agent(
        &self,
        id: &AgentId,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = self.config.runtime.name(id, Role::Agent);
        let ca = self.runtime().bottle_ca(id)?;
        let archive = bb_backend::provision::archive(
            plan,
            &ca.cert_pem,
            self.runtime().agent_uid,
            &self.runtime().skills_root,
        )?;
        let ip = self.sidecar_ip(id, Step::Provision).await?;
        let base = self
            .containers(&self.copy_selector(id), Step::Provision)
            .await?
            .into_iter()
            .find(|c| c.id == name)
            .and_then(|c| c.configuration.labels.get(BASE_IMAGE).cloned());
        let record_base = base
            .map(|b| format!("printf '%s' '{}' > {BASE_FILE} && ", b.replace('\'', "")))
            .unwrap_or_default();
        let staged = self.state_dir(id).join("provision.tar");
        write_private(&staged, &archive).map_err(|e| {
            BackendError::new(
                Step::Provision,
                format!("staging {}: {e}", staged.display()),
            )
        })?;
        let copied = self
            .cli
            .ok_after_run(
                Step::Provision,
                &cli::cp_in(&staged.display().to_string(), &name, PROVISION_TAR),
                None,
            )
            .await;
        let _ = std::fs::remove_file(&staged);
        copied?;
        let script = format!(
            "tar -xpf {PROVISION_TAR} -C / && rm -f {PROVISION_TAR} && \
             {{ grep -v ' {SIDECAR_ALIAS}$' /etc/hosts > /etc/hosts.bb 2>/dev/null; \
                echo '{ip} {SIDECAR_ALIAS}' >> /etc/hosts.bb && cat /etc/hosts.bb > /etc/hosts && rm -f /etc/hosts.bb; }} && \
             {record_base}{}",
            bb_backend::provision::finish_script(&plan.inputs_hash)
        );
        let out = self
            .exec(&name, "root", &["sh", "-c", &script], None, Step::Provision)
            .await?;
        if !out.success() {
            return Err(BackendError::new(
                Step::Provision,
                format!("unpacking the provisioning archive failed: {}", out.tail()),
            ));
        }
        let delivered = plan.inputs_hash.clone();
        self.learn(&name, |f| f.provisioned = Some(Some(delivered)));
        Ok(())
    }

    /// Streams the agent's root filesystem out with tar and builds it onto the image the agent
    /// started from, tagged under the Agent's prefix.
    pub(super) async fn snapshot_agent(&self, id: &AgentId) -> Result<String, BackendError> {
        let name = self.config.runtime.name(id, Role::Agent);
        let agent = self
            .containers(&self.copy_selector(id), Step::Snapshot)
            .await?
            .into_iter()
            .find(|c| c.id == name)
            .ok_or_else(|| BackendError::new(Step::Snapshot, format!("{name} does not exist")))?;
        let base = match agent.configuration.labels.get(BASE_IMAGE) {
            Some(b) => b.clone(),
            None => {
                let out = self
                    .exec(&name, "root", &["cat", BASE_FILE], None, Step::Snapshot)
                    .await?;
                let recorded = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match agent.configuration.labels.get(IMAGE) {
                    _ if out.success() && !recorded.is_empty() => recorded,
                    Some(image) => image.clone(),
                    None => {
                        return Err(BackendError::new(
                            Step::Snapshot,
                            format!("{name} does not say which image it runs"),
                        ));
                    }
                }
            }
        };
        let tag = format!(
            "{SNAPSHOT_REPO}:{}-{}",
            names::prefix(id, None),
            jiff::Timestamp::now().as_second()
        );
        let dir = self.state_dir(id).join("snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::new(Step::Snapshot, format!("{}: {e}", dir.display())))?;
        let rootfs = dir.join("rootfs.tar");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&rootfs)
            .map_err(|e| BackendError::new(Step::Snapshot, format!("{}: {e}", rootfs.display())))?;
        let command: Vec<String> = [
            "tar",
            "-C",
            "/",
            "-cpf",
            "-",
            "--one-file-system",
            "--exclude=./proc",
            "--exclude=./sys",
            "--exclude=./dev",
            "--exclude=./run",
            "--exclude=./tmp",
            // A container made from the snapshot is provisioned anew (the sidecar's address
            // may differ): it must not look provisioned before that.
            "--exclude=./etc/bot-bottle/provisioned",
            ".",
        ]
        .map(String::from)
        .to_vec();
        let args = cli::exec(&name, Some("root"), None, false, false, &[], &command);
        let mut c = self.cli.command(&args, &[]);
        c.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped());
        let out = tokio::time::timeout(BUILD_DEADLINE, async {
            c.spawn()?.wait_with_output().await
        })
        .await
        .map_err(|_| BackendError::new(Step::Snapshot, "streaming the filesystem out timed out"))?
        .map_err(|e| self.cli.spawn_error(Step::Snapshot, &args, e))?;
        // tar exits 1 when files changed while it read them: the archive is still whole.
        if !matches!(out.status.code(), Some(0 | 1)) {
            return Err(BackendError::new(
                Step::Snapshot,
                format!(
                    "streaming {name}'s filesystem out failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let dockerfile = format!("FROM {base}\nADD rootfs.tar /\n");
        let built = self
            .build_dir(&tag, &dir, &dockerfile, &Default::default(), None)
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        built?;
        Ok(tag)
    }

    /// Every snapshot of the Agent, found by its tag prefix.
    pub(super) async fn remove_snapshots(&self, id: &AgentId) -> Result<(), BackendError> {
        let out = self
            .cli
            .ok(Step::Teardown, &cli::image_list(), None)
            .await?;
        // Snapshots are the Agent's, not the copy's: any runner that takes it over finds them.
        let prefix = format!("{SNAPSHOT_REPO}:{}-", names::prefix(id, None));
        let images = cli::parse_image_names(&String::from_utf8_lossy(&out.stdout))
            .map_err(|e| BackendError::new(Step::Teardown, e.to_string()))?;
        for image in images.into_iter().filter(|i| i.starts_with(&prefix)) {
            let args = cli::image_delete(&image);
            let out = self.cli.output(Step::Teardown, &args, None).await?;
            if !out.success() && !super::gone(&out) {
                return Err(self.cli.failed(Step::Teardown, &args, &out));
            }
        }
        Ok(())
    }
}

fn is_snapshot(image: &str) -> bool {
    image.starts_with(&format!("{SNAPSHOT_REPO}:"))
}

/// Writes `data` to a file only the runner's user can read (it may hold credentials).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
