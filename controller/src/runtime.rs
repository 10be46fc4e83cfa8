//! The one place a runtime is chosen and built: what `--backend` names for a runner, the probes
//! `bbctl doctor` reports, and the Docker runtime `bbctl demo` runs on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bb_apple::{AppleBackend, AppleConfig};
use bb_backend::fake::FakeBackend;
use bb_backend::health::Check;
use bb_backend::{Backend, BackendError, RuntimeConfig, SharedBackend};
use bb_docker::DockerBackend;
use bb_smolvm::SmolvmBackend;

use crate::options::{BackendChoice, Options, RunError};

/// The runtime settings every backend shares, from the defaults and what `opts` override.
fn runtime_config(opts: &Options, home: &Path, instance: &str) -> RuntimeConfig {
    let mut cfg = RuntimeConfig::for_home(home, instance);
    if let Some(b) = &opts.runtime.base_image {
        cfg.base_image = b.clone();
    }
    if let Some(b) = &opts.runtime.sidecar_binary {
        cfg.sidecar_binary = b.clone();
    }
    cfg.upstream_ca = opts.runtime.upstream_ca.clone();
    cfg.allow_private_upstreams = opts.runtime.allow_private_upstreams;
    cfg.harness_dir = opts.runtime.harness_dir.clone();
    cfg.fencing = fencing(opts, home);
    if cfg.allow_private_upstreams {
        tracing::warn!(
            "--allow-private-upstreams: every sidecar may reach private, loopback and link-local addresses (a test-rig switch; never in production)"
        );
    }
    cfg
}

/// Syncing from a cluster, another runner may take an Agent over (and may share the engine):
/// copies are named per runner and every sidecar is held by this runner's hold file.
fn fencing(opts: &Options, home: &Path) -> Option<bb_backend::config::Fencing> {
    opts.sync_from
        .is_some()
        .then(|| bb_backend::config::Fencing {
            holds_dir: home.join("holds"),
        })
}

/// Without --base-image, the base `doctor` and `demo` would choose (the hermetic one when
/// present): an offline machine that built it needs no flag.
async fn with_default_base(b: DockerBackend, opts: &Options) -> DockerBackend {
    if opts.runtime.base_image.is_some() {
        return b;
    }
    let base = bb_backend::config::default_base(&b).await;
    tracing::info!(base, "base image (no --base-image given)");
    b.with_base_image(base)
}

/// The runtime a runner drives: what `--backend` names, or under `auto` the host's default;
/// `None` when Agents are not to be reconciled (`--backend none`, or `auto` finding nothing).
pub(crate) async fn choose(
    opts: &Options,
    home: &Path,
    instance: &str,
) -> Result<Option<SharedBackend>, RunError> {
    let apple = match &opts.backend {
        BackendChoice::None => return Ok(None),
        BackendChoice::Fake {
            journal,
            failing_image,
        } => {
            let mut fake = FakeBackend::new()
                .with_journal(journal, instance)
                .map_err(|e| {
                    RunError::Client(format!("--fake-journal {}: {e}", journal.display()))
                })?;
            if let Some(image) = failing_image {
                fake = fake.with_failing_image(image);
            }
            if let Some(f) = fencing(opts, home) {
                fake = fake.with_holds(f.holds_dir);
            }
            tracing::info!("backend: fake (journal {})", journal.display());
            return Ok(Some(Arc::new(fake)));
        }
        BackendChoice::AppleContainer => true,
        BackendChoice::Auto => bb_apple::host_has_apple_container(),
        BackendChoice::Docker | BackendChoice::Smolvm => false,
    };
    let cfg = runtime_config(opts, home, instance);
    if opts.backend == BackendChoice::Smolvm {
        let docker = DockerBackend::connect(cfg).await.map_err(|e| {
            BackendError::new(
                e.step,
                format!(
                    "the smolvm backend runs its sidecars on Docker: {}",
                    e.message
                ),
            )
        })?;
        let cli = opts
            .runtime
            .smolvm_cli
            .clone()
            .unwrap_or_else(|| PathBuf::from(bb_smolvm::cli::CLI));
        let docker = with_default_base(docker, opts).await;
        let b = SmolvmBackend::connect(docker, cli, home.join("smolvm")).await?;
        tracing::info!("backend: smolvm");
        return Ok(Some(Arc::new(b)));
    }
    let auto = opts.backend == BackendChoice::Auto;
    if apple {
        let mut apple = AppleConfig::for_home(home, instance);
        apple.runtime = cfg;
        if let Some(c) = &opts.runtime.container_cli {
            apple.cli = c.clone();
        }
        apple.dns = opts.runtime.container_dns.clone();
        return match AppleBackend::connect(apple).await {
            Ok(b) => {
                tracing::info!("backend: apple-container");
                Ok(Some(Arc::new(b)))
            }
            Err(e) if auto => {
                tracing::warn!(error = %e, "Apple Container does not answer: Bottles are reconciled, Agents stay pending until the controller restarts with its system service running");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        };
    }
    match DockerBackend::connect(cfg).await {
        Ok(b) => {
            let b = with_default_base(b, opts).await;
            tracing::info!("backend: docker");
            Ok(Some(Arc::new(b)))
        }
        Err(e) if auto => {
            tracing::warn!(error = %e, "no backend is reachable: Bottles are reconciled, Agents stay pending until the controller restarts with Docker running");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What one runtime said when `bbctl doctor` asked it.
#[derive(Debug)]
pub enum Probe {
    /// It answers; its own checks.
    Usable(Vec<Check>),
    /// It cannot run Agents here, and why.
    NotUsable(String),
}

/// Every runtime's answer, in the order `doctor` prints them, and the one `--backend auto` picks.
#[derive(Debug)]
pub struct Diagnosis {
    pub runtimes: Vec<(&'static str, Probe)>,
    pub auto: &'static str,
    /// The bb-sidecar executable the runtimes would start.
    pub sidecar_binary: PathBuf,
}

/// Asks each runtime (through the backend seam) whether it can run Agents for `home`.
/// `container_cli` and `smolvm_cli` name executables other than those on PATH.
pub async fn diagnose(
    home: &Path,
    container_cli: Option<PathBuf>,
    smolvm_cli: Option<PathBuf>,
) -> Diagnosis {
    let cfg = RuntimeConfig::for_home(home, "doctor");
    let mut runtimes = Vec::new();
    let apple = if container_cli.is_some() || bb_apple::host_has_apple_container() {
        let mut ac = AppleConfig::for_home(home, "doctor");
        if let Some(c) = container_cli {
            ac.cli = c;
        }
        match AppleBackend::connect(ac).await {
            Ok(b) => Probe::Usable(b.diagnose().await),
            Err(e) => Probe::NotUsable(e.to_string()),
        }
    } else {
        Probe::NotUsable("needs macOS with Apple's `container` CLI on PATH".into())
    };
    runtimes.push(("apple-container", apple));
    let docker = DockerBackend::connect(cfg.clone()).await;
    runtimes.push((
        "docker",
        match &docker {
            Ok(b) => Probe::Usable(b.diagnose().await),
            Err(e) => Probe::NotUsable(e.to_string()),
        },
    ));
    let smolvm = match (smolvm_cli.or_else(bb_smolvm::on_path), docker) {
        (None, _) => Probe::NotUsable("no `smolvm` on PATH (--smolvm-cli names one)".into()),
        (Some(_), Err(_)) => {
            Probe::NotUsable("its sidecars run on Docker, which does not answer".into())
        }
        (Some(cli), Ok(docker)) => {
            match SmolvmBackend::connect(docker, cli, home.join("smolvm")).await {
                // Its sidecars' checks are Docker's, reported above.
                Ok(b) => Probe::Usable(
                    b.diagnose()
                        .await
                        .into_iter()
                        .filter(|c| c.name == "smolvm")
                        .collect(),
                ),
                Err(e) => Probe::NotUsable(e.to_string()),
            }
        }
    };
    runtimes.push(("smolvm", smolvm));
    Diagnosis {
        runtimes,
        auto: if bb_apple::host_has_apple_container() {
            "apple-container"
        } else {
            "docker"
        },
        sidecar_binary: cfg.sidecar_binary,
    }
}
