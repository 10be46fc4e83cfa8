//! The sidecar delivery protocol, once for every runtime: pack the CA, token files and policy,
//! hand them to `bb-sidecar receive` on an exec's stdin, and wait for the hash it reports loaded.
//! A runtime only offers the narrow seam below (run a bb-sidecar command, signal, state, log).

use std::time::Duration;

use crate::sidecar_command::SIDECAR_RUN;
use crate::{AgentId, BackendError, ExecOutput, RuntimeConfig, SidecarPlan, Step};

/// How a runtime's sidecar is polled while it loads a policy.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub interval: Duration,
    /// Whether the sidecar still runs is asked on every this-many polls (a costly call on some
    /// runtimes), so one that died is reported rather than waited out.
    pub state_every: u32,
    pub deadline: Duration,
}

/// What the protocol needs of a runtime.
#[async_trait::async_trait]
pub trait SidecarSeam: Send + Sync {
    /// The settings the delivery reads (bottle CA, upstream CA).
    fn runtime(&self) -> &RuntimeConfig;
    fn polling(&self) -> Polling;
    /// Runs `bb-sidecar ARGV` in `sidecar` as the sidecar's user, `stdin` fed to it. With
    /// `after_start`, the command is safe to repeat and may be retried while a sidecar started
    /// just now does not take execs yet.
    async fn run_in_sidecar(
        &self,
        sidecar: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
        after_start: bool,
    ) -> Result<ExecOutput, BackendError>;
    /// Sends the sidecar SIGHUP: its file watcher reloads at once.
    async fn hang_up(&self, sidecar: &str);
    /// `None` while the sidecar runs; once it stopped, its exit code when known.
    async fn stopped(&self, sidecar: &str) -> Result<Option<Option<i64>>, BackendError>;
    /// The last lines of the sidecar's log, on one line.
    async fn logs_tail(&self, sidecar: &str) -> String;
    /// Remembers that `sidecar` loaded `hash` (runtimes cache what they observed).
    async fn learn_policy(&self, sidecar: &str, hash: &str);
}

/// The policy hash a running sidecar reports having loaded.
pub async fn loaded_policy(seam: &dyn SidecarSeam, sidecar: &str) -> Option<String> {
    let status = format!("{SIDECAR_RUN}/applied");
    let out = seam
        .run_in_sidecar(sidecar, &["applied", "--status-file", &status], None, false)
        .await
        .ok()?;
    out.success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether a delivery goes to a sidecar started just now (which gets its CA and needs no
/// signal) or to a running one (new tokens and policy, then a hang-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    New,
    Reload,
}

/// Delivers `plan` to the Agent's `sidecar` and waits until it reports `applied` loaded.
pub async fn install(
    seam: &dyn SidecarSeam,
    sidecar: &str,
    id: &AgentId,
    plan: &SidecarPlan,
    applied: &str,
    how: Delivery,
) -> Result<(), BackendError> {
    deliver(seam, sidecar, plan, how == Delivery::New, id).await?;
    await_policy(seam, sidecar, applied, how == Delivery::Reload).await
}

/// Hands token files and the policy (and on a new sidecar its CA) to `bb-sidecar receive`: a
/// tar on an exec's stdin, never a mount, an argv or an env. The image has no shell: bb-sidecar
/// installs its own delivery (token set swapped whole, policy renamed last, so the proxy never
/// reloads half of it).
async fn deliver(
    seam: &dyn SidecarSeam,
    sidecar: &str,
    plan: &SidecarPlan,
    with_ca: bool,
    id: &AgentId,
) -> Result<(), BackendError> {
    let runtime = seam.runtime();
    let ca = with_ca.then(|| runtime.bottle_ca(id)).transpose()?;
    let archive =
        crate::sidecar_command::delivery(plan, ca.as_ref(), runtime.upstream_ca.as_deref())?;
    let out = seam
        .run_in_sidecar(
            sidecar,
            &["receive", "--dir", SIDECAR_RUN],
            Some(&archive),
            true,
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

/// Waits until the sidecar reports `hash` as loaded; `signal` hangs it up first.
async fn await_policy(
    seam: &dyn SidecarSeam,
    sidecar: &str,
    hash: &str,
    signal: bool,
) -> Result<(), BackendError> {
    if signal {
        seam.hang_up(sidecar).await;
    }
    let polling = seam.polling();
    let deadline = tokio::time::Instant::now() + polling.deadline;
    let mut polls: u32 = 0;
    while tokio::time::Instant::now() < deadline {
        if loaded_policy(seam, sidecar).await.as_deref() == Some(hash) {
            seam.learn_policy(sidecar, hash).await;
            return Ok(());
        }
        polls += 1;
        if polls.is_multiple_of(polling.state_every.max(1))
            && let Some(code) = seam.stopped(sidecar).await?
        {
            let code = code.map(|c| format!(" (code {c})")).unwrap_or_default();
            return Err(BackendError::new(
                Step::Sidecar,
                format!(
                    "the sidecar exited{code}; its log ends: {}",
                    seam.logs_tail(sidecar).await
                ),
            ));
        }
        tokio::time::sleep(polling.interval).await;
    }
    Err(BackendError::new(
        Step::Policy,
        format!(
            "the sidecar did not load policy {hash} within {}s; its log ends: {}",
            polling.deadline.as_secs(),
            seam.logs_tail(sidecar).await
        ),
    ))
}
