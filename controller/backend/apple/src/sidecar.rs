//! The sidecar of an Agent on Apple Container: NAT network first, the agent's host-only network
//! second, an explicit resolver; CA, tokens and policy fed to its tmpfs through an exec's stdin.

use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;

use super::{AppleBackend, cli};
use bb_backend::delivery::{self, Delivery, Polling, SidecarSeam};
use bb_backend::names::{PROXY_PORT, Role};
use bb_backend::sidecar_command::{
    GIT_GATE_STATE, QUEUE_DIR, SIDECAR_BINARY, SIDECAR_RUN, SIDECAR_USER, SPEC_LABEL,
    create_queue_dir,
};
use bb_backend::{AgentId, BackendError, SidecarPlan, Step};

/// The delivery protocol (`bb_backend::delivery`) over the `container` CLI: a VM started just
/// now may not take an exec yet (receive is retried), listing containers is costly (asked every
/// tenth poll), 20 s to load.
#[async_trait::async_trait]
impl SidecarSeam for AppleBackend {
    fn runtime(&self) -> &bb_backend::RuntimeConfig {
        AppleBackend::runtime(self)
    }

    fn polling(&self) -> Polling {
        Polling {
            interval: Duration::from_millis(100),
            state_every: 10,
            deadline: Duration::from_secs(20),
        }
    }

    async fn run_in_sidecar(
        &self,
        sidecar: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        after_start: bool,
    ) -> Result<bb_backend::ExecOutput, BackendError> {
        let argv: Vec<&str> = std::iter::once(SIDECAR_BINARY)
            .chain(argv.iter().copied())
            .collect();
        if !after_start {
            return self
                .exec(sidecar, SIDECAR_USER, &argv, stdin, Step::Policy)
                .await;
        }
        let argv: Vec<String> = argv.into_iter().map(String::from).collect();
        let args = cli::exec(
            sidecar,
            Some(SIDECAR_USER),
            None,
            stdin.is_some(),
            false,
            &[],
            &argv,
        );
        self.cli.ok_after_run(Step::Policy, &args, stdin).await
    }

    async fn hang_up(&self, sidecar: &str) {
        let _ = self
            .cli
            .output(Step::Policy, &cli::kill(sidecar, "SIGHUP"), None)
            .await;
    }

    async fn stopped(&self, sidecar: &str) -> Result<Option<Option<i64>>, BackendError> {
        let running = self
            .containers(&Default::default(), Step::Sidecar)
            .await?
            .into_iter()
            .any(|c| c.id == sidecar && c.running());
        Ok((!running).then_some(None))
    }

    async fn logs_tail(&self, sidecar: &str) -> String {
        AppleBackend::logs_tail(self, sidecar).await
    }

    async fn learn_policy(&self, sidecar: &str, hash: &str) {
        self.learn(sidecar, |f| f.policy = Some(hash.to_string()));
    }
}

impl AppleBackend {
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
        let name = self.config.runtime.name(id, Role::Sidecar);
        let network = self.config.runtime.name(id, Role::InternalNetwork);
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
        let name = self.config.runtime.name(id, Role::Sidecar);
        let existing = self
            .containers(&self.copy_selector(id), Step::Sidecar)
            .await?
            .into_iter()
            .find(|c| Self::role_of(c) == Some(Role::Sidecar.as_str()));
        let image = self.sidecar_image(None).await?.clone();
        let queue =
            bb_backend::sidecar_command::queue_dir(&bb_backend::Backend::supervise_dir(self, id));
        let cmd = bb_backend::sidecar_command::command(plan, self.runtime());
        let mut mounts = if plan.supervise {
            create_queue_dir(&queue)?;
            vec![cli::Mount {
                source: queue.display().to_string(),
                target: QUEUE_DIR.into(),
                readonly: false,
            }]
        } else {
            Vec::new()
        };
        if let Some(hold) = self.runtime().hold_dir(id) {
            bb_backend::sidecar_command::create_hold_dir(&hold)?;
            mounts.push(cli::Mount {
                source: hold.display().to_string(),
                target: bb_backend::sidecar_command::HOLD_DIR.into(),
                readonly: true,
            });
        }
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
                &self.config.runtime.name(id, Role::EgressNetwork),
                &self.config.runtime.name(id, Role::InternalNetwork),
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
        delivery::install(self, &name, id, plan, applied, Delivery::New).await?;
        let ip = self.sidecar_ip(id, Step::Sidecar).await?;
        Ok(self.endpoints(plan, &ip))
    }
}
