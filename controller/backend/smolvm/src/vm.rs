//! The agent VM of an Agent on smolvm: booted from the artifact packed from its image, allowed
//! to reach its sidecar's loopback alias only, provisioned through exec stdin, run as sessions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cli;
use super::machines::{INSTALL_HINT, machines, wait_exec_ready};
use super::record::{self, VmMade};
use bb_backend::cli_process::RuntimeCli;
use bb_backend::names::{Role, SIDECAR_ALIAS};
use bb_backend::{AgentId, AgentPlan, BackendError, ExecOutput, RuntimeConfig, SessionSpec, Step};

/// Inside the VM: the CA certificate and the provisioning marker.
const AGENT_ETC: &str = "/etc/bot-bottle";
/// How long a just-started VM gets to take its first command.
const BOOT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The smolvm half of the backend: VMs, their artifacts and their records. The sidecar half is
/// the Docker backend's.
#[derive(Debug, Clone)]
pub struct Vms {
    pub(super) cli: RuntimeCli,
    /// `<home>/smolvm`: `records/`, `images/` (packed artifacts), `snapshots/`.
    dir: PathBuf,
    /// Serialises alias assignment.
    assign: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Serialises packing: two Agents on one image pack it once.
    packing: std::sync::Arc<tokio::sync::Mutex<()>>,
    pub(super) sessions: bb_backend::cli_session::Sessions,
    /// VMs this process saw provisioned: spares an exec per observe. A new VM starts unknown.
    provisioned: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// Names VMs as the Docker side names the sidecar (`RuntimeConfig::name`).
    runtime: bb_backend::RuntimeConfig,
}

impl Vms {
    pub fn new(program: PathBuf, dir: PathBuf, runtime: bb_backend::RuntimeConfig) -> Vms {
        Vms {
            runtime,
            cli: RuntimeCli::new(program, INSTALL_HINT),
            dir,
            assign: Default::default(),
            packing: Default::default(),
            sessions: Default::default(),
            provisioned: Default::default(),
        }
    }

    pub(super) fn records(&self) -> PathBuf {
        self.dir.join("records")
    }

    pub(super) async fn record(&self, id: &AgentId) -> Result<record::VmRecord, BackendError> {
        let _one_at_a_time = self.assign.lock().await;
        record::load_or_assign(&self.records(), id)
    }

    /// The artifact packed from Docker image `image`, packed once per image.
    pub(super) async fn artifact_for(&self, image: &str) -> Result<String, BackendError> {
        let key = bb_backend::hash::sha256_hex(&[image.as_bytes()]);
        let dir = self.dir.join("images").join(key);
        let out = dir.join("agent").display().to_string();
        let artifact = cli::artifact(&out);
        let _one_at_a_time = self.packing.lock().await;
        if std::path::Path::new(&artifact).is_file() {
            return Ok(artifact);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::new(Step::Image, format!("{}: {e}", dir.display())))?;
        let args = cli::pack_image(image, &out);
        let done = self.cli.output_slow(Step::Image, &args).await?;
        if !done.success() || !std::path::Path::new(&artifact).is_file() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(self.cli.failed(Step::Image, &args, &done));
        }
        Ok(artifact)
    }

    pub(super) async fn exec(
        &self,
        name: &str,
        command: &[String],
        stdin: Option<&[u8]>,
        step: Step,
    ) -> Result<ExecOutput, BackendError> {
        let args = cli::machine_exec(name, stdin.is_some(), false, command);
        self.cli.output(step, &args, stdin).await
    }

    /// Records what VM `name` was provisioned with (`None`: not provisioned, or unknown).
    fn set_provisioned(&self, name: &str, inputs: Option<&str>) {
        if let Ok(mut p) = self.provisioned.lock() {
            match inputs {
                Some(h) => p.insert(name.to_string(), h.to_string()),
                None => p.remove(name),
            };
        }
    }

    /// Stops and deletes VM `name`; one that does not exist is already gone.
    pub(super) async fn remove(&self, name: &str, step: Step) -> Result<(), BackendError> {
        self.set_provisioned(name, None);
        if !machines(&self.cli, step)
            .await?
            .iter()
            .any(|m| m.name == name)
        {
            return Ok(());
        }
        let _ = self.cli.output(step, &cli::machine_stop(name), None).await;
        let args = cli::machine_delete(name);
        let out = self.cli.output(step, &args, None).await?;
        let gone = !machines(&self.cli, step)
            .await?
            .iter()
            .any(|m| m.name == name);
        if out.success() || gone {
            Ok(())
        } else {
            Err(self.cli.failed(step, &args, &out))
        }
    }

    /// Replaces the Agent's VM with one booted from `artifact` for `plan`: proxy settings name
    /// the sidecar's alias, the only address the VM may reach; nothing secret is on its argv.
    pub(super) async fn create(
        &self,
        id: &AgentId,
        artifact: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        let name = self.runtime.name(id, Role::Agent);
        let mut rec = self.record(id).await?;
        self.remove(&name, Step::Agent).await?;
        let alias = rec.alias.to_string();
        let mut env: BTreeMap<String, String> = plan.env.clone();
        env.extend(bb_backend::sidecar_command::agent_proxy_env(
            &alias,
            &format!("{AGENT_ETC}/ca.crt"),
        ));
        let create = cli::Create {
            name: name.clone(),
            from: artifact.to_string(),
            env,
            allow_cidrs: vec![format!("{alias}/32")],
        };
        let args = cli::machine_create(&create);
        let out = self.cli.output(Step::Agent, &args, None).await?;
        if !out.success() {
            return Err(self.cli.failed(Step::Agent, &args, &out));
        }
        let args = cli::machine_start(&name);
        let out = self.cli.output(Step::Agent, &args, None).await?;
        if !out.success() {
            let _ = self.remove(&name, Step::Agent).await;
            return Err(self.cli.failed(Step::Agent, &args, &out));
        }
        wait_exec_ready(&self.cli, &name, BOOT_LIMIT).await?;
        // A VM booted from a snapshot carries the old marker: were this VM's provisioning to
        // fail, the next observe would take it for provisioned (its /etc/hosts names no
        // sidecar yet).
        let unmark = [
            "rm".to_string(),
            "-f".to_string(),
            bb_backend::provision::MARKER.to_string(),
        ];
        let out = self.exec(&name, &unmark, None, Step::Agent).await?;
        if !out.success() {
            return Err(BackendError::new(
                Step::Agent,
                format!("clearing the provisioning marker failed: {}", out.tail()),
            ));
        }
        rec.vm = Some(VmMade {
            artifact: artifact.to_string(),
            container_hash: plan.container_hash.clone(),
        });
        record::save(&self.records(), &rec)
    }

    /// Unpacks the provisioning archive (fed on the exec's stdin), installs the CA, names the
    /// sidecar in /etc/hosts (the guest has no resolver), and writes the ready marker last.
    pub(super) async fn provision(
        &self,
        id: &AgentId,
        plan: &AgentPlan,
        runtime: &RuntimeConfig,
    ) -> Result<(), BackendError> {
        let name = self.runtime.name(id, Role::Agent);
        let rec = self.record(id).await?;
        let ca = runtime.bottle_ca(id)?;
        let archive = bb_backend::provision::archive(
            plan,
            &ca.cert_pem,
            runtime.agent_uid,
            &runtime.skills_root,
        )?;
        let script = format!(
            "tar -xpf - -C / && \
             {{ grep -v ' {SIDECAR_ALIAS}$' /etc/hosts > /etc/hosts.bb 2>/dev/null; \
                echo '{alias} {SIDECAR_ALIAS}' >> /etc/hosts.bb && cat /etc/hosts.bb > /etc/hosts && rm -f /etc/hosts.bb; }} && \
             mkdir -p /tmp /var/tmp && chmod 1777 /tmp /var/tmp && {}",
            bb_backend::provision::finish_script(&plan.inputs_hash),
            alias = rec.alias,
        );
        let command = ["sh".to_string(), "-c".to_string(), script];
        let out = self
            .exec(&name, &command, Some(&archive), Step::Provision)
            .await?;
        if !out.success() {
            return Err(BackendError::new(
                Step::Provision,
                format!("unpacking the provisioning archive failed: {}", out.tail()),
            ));
        }
        self.set_provisioned(&name, Some(&plan.inputs_hash));
        Ok(())
    }

    /// What the VM's ready marker says it was provisioned with; `None` without one.
    pub(super) async fn provisioned(&self, name: &str) -> Option<String> {
        if let Some(known) = self
            .provisioned
            .lock()
            .ok()
            .and_then(|p| p.get(name).cloned())
        {
            return Some(known);
        }
        let command = ["cat".to_string(), bb_backend::provision::MARKER.to_string()];
        let hash = self
            .exec(name, &command, None, Step::Observe)
            .await
            .ok()
            .filter(|o| o.success())
            .map(|o| bb_backend::provision::marker_hash(&o.stdout));
        self.set_provisioned(name, hash.as_deref());
        hash
    }

    /// A stopped VM packed as an artifact under the Agent's snapshot directory: what resume
    /// boots from. The VM stays stopped (suspend stops it anyway).
    pub(super) async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        let name = self.runtime.name(id, Role::Agent);
        self.set_provisioned(&name, None);
        let args = cli::machine_stop(&name);
        let out = self.cli.output(Step::Snapshot, &args, None).await?;
        if !out.success() {
            return Err(self.cli.failed(Step::Snapshot, &args, &out));
        }
        let dir = self.snapshots(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::new(Step::Snapshot, format!("{}: {e}", dir.display())))?;
        let out_path = dir
            .join(jiff::Timestamp::now().as_second().to_string())
            .display()
            .to_string();
        let args = cli::pack_vm(&name, &out_path);
        let done = self.cli.output_slow(Step::Snapshot, &args).await?;
        let artifact = cli::artifact(&out_path);
        if !done.success() || !std::path::Path::new(&artifact).is_file() {
            return Err(self.cli.failed(Step::Snapshot, &args, &done));
        }
        Ok(artifact)
    }

    pub(super) fn snapshots(&self, id: &AgentId) -> PathBuf {
        let safe: String = id
            .uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.dir.join("snapshots").join(safe)
    }

    /// A session: its secret env first written to a root-only file in the VM through an
    /// exec's stdin, then the command run as the session's user, reading and removing it.
    pub(super) async fn open_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
        agent_uid: u64,
    ) -> Result<bb_backend::Session, BackendError> {
        let name = self.runtime.name(id, Role::Agent);
        let (uid, gid) = match spec.user.as_deref() {
            Some(u) => cli::parse_user(u).map_err(|e| BackendError::new(Step::Session, e))?,
            None => (agent_uid, agent_uid),
        };
        let env_file = if spec.env.is_empty() {
            None
        } else {
            let values: Vec<(String, Vec<u8>)> = spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_vec()))
                .collect();
            let file =
                cli::secret_env_file(&values).map_err(|e| BackendError::new(Step::Session, e))?;
            let path = format!(
                "/run/bb-session-{}.env",
                bb_backend::cli_session::random_id()
            );
            let out = self
                .exec(
                    &name,
                    &cli::secret_env_store(&path, 0),
                    Some(&file),
                    Step::Session,
                )
                .await?;
            if !out.success() {
                return Err(BackendError::new(
                    Step::Session,
                    format!("handing the session its env failed: {}", out.tail()),
                ));
            }
            Some(path)
        };
        let command = cli::session_command(
            uid,
            gid,
            spec.workdir.as_deref(),
            env_file.as_deref(),
            &spec.argv,
        );
        let args = cli::machine_exec(&name, true, spec.tty, &command);
        bb_backend::cli_session::spawn(
            &self.cli,
            &self.sessions,
            "smolvm",
            &args,
            &[],
            spec.tty,
            spec.size,
        )
    }
}
