//! The sidecar of an Agent on Apple Container: NAT network first, the agent's host-only network
//! second, an explicit resolver; CA, tokens and policy fed to its tmpfs through an exec's stdin.

use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;

use super::{AppleBackend, cli};
use bb_backend::names::{self, PROXY_PORT, Role};
use bb_backend::sidecar_command::{
    GIT_GATE_STATE, QUEUE_DIR, SIDECAR_BINARY, SIDECAR_RUN, SIDECAR_USER, SPEC_LABEL,
    create_queue_dir,
};
use bb_backend::{AgentId, BackendError, SidecarPlan, Step};

impl AppleBackend {
    /// Runs bb-sidecar's `argv` in the sidecar as its own user.
    async fn exec_in_sidecar(
        &self,
        sidecar: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<bb_backend::ExecOutput, BackendError> {
        let argv: Vec<&str> = std::iter::once(SIDECAR_BINARY)
            .chain(argv.iter().copied())
            .collect();
        self.exec(sidecar, SIDECAR_USER, &argv, stdin, Step::Policy)
            .await
    }

    /// The policy hash a running sidecar reports having loaded.
    pub(super) async fn loaded_policy(&self, sidecar: &str) -> Option<String> {
        let status = format!("{SIDECAR_RUN}/applied");
        let out = self
            .exec_in_sidecar(sidecar, &["applied", "--status-file", &status], None)
            .await
            .ok()?;
        out.success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Delivers token files and the policy (and on a new sidecar its CA) to the sidecar's
    /// tmpfs: a tar on the stdin of `bb-sidecar receive`, never a mount, an argv or an env.
    pub(super) async fn deliver(
        &self,
        sidecar: &str,
        plan: &SidecarPlan,
        with_ca: bool,
        id: &AgentId,
    ) -> Result<(), BackendError> {
        let ca = with_ca.then(|| self.runtime().bottle_ca(id)).transpose()?;
        let archive = bb_backend::sidecar_command::delivery(
            plan,
            ca.as_ref(),
            self.runtime().upstream_ca.as_deref(),
        )?;
        let argv: Vec<String> = [SIDECAR_BINARY, "receive", "--dir", SIDECAR_RUN]
            .map(String::from)
            .to_vec();
        let args = cli::exec(sidecar, Some(SIDECAR_USER), None, true, false, &[], &argv);
        // Right after `run` the VM may not take an exec yet; receive is safe to repeat.
        self.cli
            .ok_after_run(Step::Policy, &args, Some(&archive))
            .await
            .map(|_| ())
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
                .cli
                .output(Step::Policy, &cli::kill(sidecar, "SIGHUP"), None)
                .await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut polls: u32 = 0;
        while tokio::time::Instant::now() < deadline {
            if self.loaded_policy(sidecar).await.as_deref() == Some(hash) {
                self.learn(sidecar, |f| f.policy = Some(hash.to_string()));
                return Ok(());
            }
            polls += 1;
            // Listing every container is the costly call: a sidecar that died is noticed
            // within a second, not looked for on every poll.
            if !polls.is_multiple_of(10) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let running = self
                .containers(&Default::default(), Step::Sidecar)
                .await?
                .into_iter()
                .any(|c| c.id == sidecar && c.running());
            if !running {
                return Err(BackendError::new(
                    Step::Sidecar,
                    format!(
                        "the sidecar exited; its log ends: {}",
                        self.logs_tail(sidecar).await
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BackendError::new(
            Step::Policy,
            format!(
                "the sidecar did not load policy {hash} within 20s; its log ends: {}",
                self.logs_tail(sidecar).await
            ),
        ))
    }

    pub(super) async fn logs_tail(&self, name: &str) -> String {
        match self
            .cli
            .output(Step::Sidecar, &cli::logs(name, false, Some(5)), None)
            .await
        {
            Ok(out) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                text.lines().collect::<Vec<_>>().join(" | ")
            }
            Err(e) => e.to_string(),
        }
    }

    /// The sidecar's address on the agent's network, from `inspect`.
    pub(super) async fn sidecar_ip(
        &self,
        id: &AgentId,
        step: Step,
    ) -> Result<String, BackendError> {
        let name = names::name(id, Role::Sidecar);
        let network = names::name(id, Role::InternalNetwork);
        let out = self.cli.ok(step, &cli::inspect(&name), None).await?;
        cli::parse_ipv4(&String::from_utf8_lossy(&out.stdout), &name, &network)
            .map_err(|e| BackendError::new(step, e.to_string()))
    }

    fn endpoints(&self, plan: &SidecarPlan, ip: &str) -> SidecarEndpoints {
        SidecarEndpoints {
            proxy: Some(format!("http://{ip}:{PROXY_PORT}")),
            git_gate: plan
                .secret_files
                .contains_key(bb_crds::policy::GIT_GATE_CONFIG_FILE)
                .then(|| bb_backend::sidecar_command::GATE_BASE.to_string()),
            supervise: plan.supervise.then(|| {
                use bb_backend::Backend;
                self.supervise_url()
            }),
        }
    }

    /// Creates (or finds running) the sidecar, delivers CA, tokens and policy, and waits until
    /// it reports the policy loaded.
    pub(super) async fn run_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        let name = names::name(id, Role::Sidecar);
        let existing = self
            .containers(&Self::agent_selector(id), Step::Sidecar)
            .await?
            .into_iter()
            .find(|c| Self::role_of(c) == Some(Role::Sidecar.as_str()));
        let image = self.sidecar_image(None).await?.clone();
        let queue =
            bb_backend::sidecar_command::queue_dir(&bb_backend::Backend::supervise_dir(self, id));
        let cmd = bb_backend::sidecar_command::command(plan, self.runtime());
        let mounts = if plan.supervise {
            create_queue_dir(&queue)?;
            vec![cli::Mount {
                source: queue.display().to_string(),
                target: QUEUE_DIR.into(),
                readonly: false,
            }]
        } else {
            Vec::new()
        };
        let dns = self.dns().await.clone();
        let spec = bb_backend::hash::sha256_hex(&[
            image.as_bytes(),
            cmd.join("\0").as_bytes(),
            format!("{mounts:?}").as_bytes(),
            dns.as_bytes(),
        ]);
        match existing {
            Some(c) if c.running() && c.configuration.labels.get(SPEC_LABEL) == Some(&spec) => {
                let ip = self.sidecar_ip(id, Step::Sidecar).await?;
                return Ok(self.endpoints(plan, &ip));
            }
            // Another image or command, or stopped (its tmpfs, with the CA key and tokens, is
            // gone): a new sidecar replaces it and the delivery below restores what it held.
            Some(c) => self.remove_container(&c.id, Step::Sidecar).await?,
            None => {}
        }
        let mut labels = self.labels(id, Role::Sidecar);
        labels.insert(SPEC_LABEL.to_string(), spec);
        let mut run = cli::sidecar_run(
            &name,
            (
                &names::name(id, Role::EgressNetwork),
                &names::name(id, Role::InternalNetwork),
            ),
            &dns,
            mounts,
            labels,
            &image,
        );
        run.tmpfs = vec![SIDECAR_RUN.to_string(), GIT_GATE_STATE.to_string()];
        run.command = cmd;
        let args = cli::run(&run);
        self.forget(&name);
        let out = self.cli.output(Step::Sidecar, &args, None).await?;
        if !out.success() {
            // A half-made container would block every retry: remove it.
            let _ = self.remove_container(&name, Step::Sidecar).await;
            return Err(self.cli.failed(Step::Sidecar, &args, &out));
        }
        self.deliver(&name, plan, true, id).await?;
        self.await_policy(&name, applied, false).await?;
        let ip = self.sidecar_ip(id, Step::Sidecar).await?;
        Ok(self.endpoints(plan, &ip))
    }
}
