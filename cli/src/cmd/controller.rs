//! `bbctl controller`: the local control plane. `run` is its foreground form.

use std::net::SocketAddr;
use std::path::PathBuf;

use bb_controller::control_plane::{
    self, BackendChoice, DEFAULT_LISTEN, DEFAULT_SESSION_LISTEN, Options, RunError, RuntimeSettings,
};

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run the apiserver (and, as they land, the reconcilers) in the foreground until
    /// SIGINT or SIGTERM.
    Run(Box<RunArgs>),
    /// Start `controller run` in the background (log: HOME/controller.log); flags after `--`
    /// are passed to it and saved in HOME/controller-flags.json, which every later start uses
    /// (this one without flags, and the automatic start of any command).
    Start {
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Forget the saved flags and start with the defaults.
        #[arg(long, conflicts_with = "run_args")]
        default_flags: bool,
        /// `controller run` flags, e.g. `-- --base-image IMAGE --backend docker`.
        #[arg(last = true, value_name = "RUN FLAGS")]
        run_args: Vec<String>,
    },
    /// Stop the background control plane (SIGTERM, then wait for it to let go of the home).
    /// Agents keep running: their containers, sidecars and networks are the runtime's, and
    /// the next control plane adopts them; `bbctl delete` or `suspend` stops an Agent.
    Stop {
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Whether a control plane runs on the home; exits 5 when none does.
    Status {
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Cluster mode: ask runner NAME (as `bbctl get runners` lists it) to release every Agent
    /// it holds, one at a time, each once another runner runs the previous one, and to claim
    /// none until it restarts.
    Drain(super::drain::DrainArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// State directory (default: $BOT_BOTTLE_HOME, else ~/.bot-bottle).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Address to serve the Kubernetes API on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address of the runner's session endpoint (attach, exec, logs), which each Agent's
    /// status names; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_SESSION_LISTEN)]
    session_listen: SocketAddr,
    /// Cluster mode: sync from this context of the kubeconfig (--kubeconfig, else $KUBECONFIG,
    /// else ~/.kube/config) instead of serving the embedded control plane, sharing its Agents
    /// with every other runner syncing from it.
    #[arg(long, value_name = "CONTEXT")]
    sync_from: Option<String>,
    /// The kubeconfig of --sync-from; given alone, sync from its current context.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Cluster mode: a label this runner carries, matched by Agents' spec.runnerSelector
    /// (repeatable).
    #[arg(long = "runner-label", value_name = "KEY=VALUE")]
    runner_labels: Vec<String>,
    /// Cluster mode: the most Agents this runner holds at once (default: no limit).
    #[arg(long, value_name = "N")]
    capacity: Option<u32>,
    /// Runtime for Agents: auto (the host's default: Apple Container on a Mac with its
    /// `container` CLI, else Docker), docker, apple-container or smolvm (micro-VMs, sidecars on
    /// Docker; fail without them), or none (reconcile Bottles only).
    #[arg(long, value_name = "KIND", value_enum, default_value_t = BackendFlag::Auto)]
    backend: BackendFlag,
    /// Apple Container: the `container` executable (default: `container` on PATH).
    #[arg(long, value_name = "FILE")]
    container_cli: Option<PathBuf>,
    /// Apple Container: the resolver sidecars and image builds use (default: the host's, from
    /// `scutil --dns`); setting it also restarts a builder that lacks it.
    #[arg(long, value_name = "IP")]
    container_dns: Option<std::net::Ipv4Addr>,
    /// smolvm: the `smolvm` executable (default: `smolvm` on PATH).
    #[arg(long, value_name = "FILE")]
    smolvm_cli: Option<PathBuf>,
    /// With --backend fake (test rigs and benchmarks of many runners: runs nothing): the file
    /// each Agent start and stop is appended to.
    #[arg(long, value_name = "FILE", hide = true)]
    fake_journal: Option<PathBuf>,
    /// With --backend fake: an image reference whose builds always fail.
    #[arg(long, value_name = "IMAGE", hide = true, requires = "fake_journal")]
    fake_failing_image: Option<String>,
    /// Base image (BASE build argument) of the sidecar and agent images; an offline
    /// machine passes the image built by hack/build-base-image.sh.
    #[arg(long, value_name = "IMAGE", env = "BOT_BOTTLE_BASE_IMAGE")]
    base_image: Option<String>,
    /// The bb-sidecar executable baked into the sidecar image (default: next to bbctl).
    #[arg(long, value_name = "FILE", env = "BOT_BOTTLE_SIDECAR_BINARY")]
    sidecar_binary: Option<PathBuf>,
    /// Extra CA certificate (PEM) every sidecar trusts for upstream servers.
    #[arg(long, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Let every sidecar reach private, loopback and link-local addresses on every route.
    /// For test rigs whose stand-in upstreams live on private networks; it turns off the
    /// DNS-rebinding and cloud-metadata protection.
    #[arg(long)]
    allow_private_upstreams: bool,
    /// Directory of prebuilt harness executables (`claude`) that provider images use
    /// instead of fetching them at build time: air-gapped machines and CI
    /// (hack/fetch-harnesses.sh fills it).
    #[arg(long, value_name = "DIR", env = "BOT_BOTTLE_HARNESS_DIR")]
    harness_dir: Option<PathBuf>,
    /// How often a running Agent is checked against its backend without an API event.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    resync_seconds: u64,
    /// Append one JSON line per API request (verb, group, resource, subresource, namespace,
    /// name, User-Agent, code) to FILE: who needs which role.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
}

/// `controller run --backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendFlag {
    Auto,
    Docker,
    AppleContainer,
    Smolvm,
    None,
    /// Test rigs and benchmarks of many runners: runs nothing (needs --fake-journal).
    #[value(hide = true)]
    Fake,
}

/// The runner's labels and capacity: only meaningful when it syncs from a cluster.
fn cluster_settings(
    external: bool,
    labels: &[String],
    capacity: Option<u32>,
) -> Result<control_plane::ClusterSettings, CliError> {
    if !external && (!labels.is_empty() || capacity.is_some()) {
        return Err(CliError::new(
            Kind::Usage,
            "--runner-label and --capacity apply to a runner that syncs from a cluster (--sync-from CONTEXT or --kubeconfig FILE)",
        ));
    }
    if capacity == Some(0) {
        return Err(CliError::new(
            Kind::Usage,
            "--capacity must be at least 1 (drain a runner to have it hold none)",
        ));
    }
    let mut out = std::collections::BTreeMap::new();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            return Err(CliError::new(
                Kind::Usage,
                format!("--runner-label '{l}': expected KEY=VALUE"),
            ));
        };
        if let Some(e) = bb_crds::labels::key_error(k).or_else(|| bb_crds::labels::value_error(v)) {
            return Err(CliError::new(Kind::Usage, format!("--runner-label: {e}")));
        }
        if k == bb_runner::cluster::lease::LABEL {
            return Err(CliError::new(
                Kind::Usage,
                format!(
                    "--runner-label: {k} is the runner's own identity label; choose another key"
                ),
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(CliError::new(
                Kind::Usage,
                format!("--runner-label: '{k}' given twice"),
            ));
        }
    }
    Ok(control_plane::ClusterSettings {
        labels: out,
        capacity,
    })
}

fn home_of(home: Option<PathBuf>) -> Result<PathBuf, CliError> {
    bb_home::resolve(home).map_err(|e| CliError::new(Kind::Usage, e.to_string()))
}

/// `controller run` alone, to check flags before they are saved or passed on.
#[derive(Debug, clap::Parser)]
#[command(name = "bbctl controller run", no_binary_name = true)]
struct RunOnly {
    #[command(flatten)]
    args: RunArgs,
}

fn start(
    home: Option<PathBuf>,
    default_flags: bool,
    run_args: Vec<String>,
) -> Result<(), CliError> {
    use super::background;
    if run_args
        .iter()
        .any(|a| a == "--home" || a.starts_with("--home="))
    {
        return Err(CliError::new(
            Kind::Usage,
            "--home belongs before `--`: bbctl controller start --home DIR -- RUN FLAGS",
        ));
    }
    let home = home_of(home)?;
    // Whether this start says which flags to use, rather than reusing the saved ones.
    let asked = default_flags || !run_args.is_empty();
    let flags = if default_flags {
        background::forget_flags(&home)?;
        Vec::new()
    } else if run_args.is_empty() {
        background::saved_flags(&home)?.unwrap_or_default()
    } else {
        // Bad flags are refused here, not saved for every later start to fail on.
        <RunOnly as clap::Parser>::try_parse_from(&run_args).map_err(|e| {
            CliError::new(
                Kind::Usage,
                format!("flags after `--`: {}", e.render().to_string().trim_end()),
            )
        })?;
        background::save_flags(&home, &run_args)?;
        run_args
    };
    let shown = |f: &[String]| {
        if f.is_empty() {
            "the default flags".to_string()
        } else {
            format!("flags `{}`", f.join(" "))
        }
    };
    if let Some(r) = background::status(&home) {
        let in_use = background::flags_in_use(&home).unwrap_or_default();
        if !asked || in_use == flags {
            println!(
                "control plane already running (pid {}) with {}",
                r.pid,
                shown(&in_use)
            );
        } else {
            println!(
                "control plane already running (pid {}) with {}; saved {} for the next start: `bbctl controller stop && bbctl controller start` applies them now",
                r.pid,
                shown(&in_use),
                shown(&flags)
            );
        }
        return Ok(());
    }
    let r = background::start(&home, &flags)?;
    println!(
        "control plane started (pid {}) at {} with {}; kubeconfig {}",
        r.pid,
        r.url.as_deref().unwrap_or("?"),
        shown(&flags),
        home.join("kubeconfig").display()
    );
    Ok(())
}

pub fn run(args: Args) -> Result<(), CliError> {
    use super::background;
    match args.command {
        Sub::Start {
            home,
            default_flags,
            run_args,
        } => start(home, default_flags, run_args),
        Sub::Stop { home } => {
            let home = home_of(home)?;
            match background::stop(&home)? {
                Some(r) => println!(
                    "control plane stopped (pid {}); Agents keep running and the next start adopts them",
                    r.pid
                ),
                None => println!("no control plane runs on {}", home.display()),
            }
            Ok(())
        }
        Sub::Drain(args) => super::drain::run(args),
        Sub::Status { home } => {
            let home = home_of(home)?;
            match background::status(&home) {
                Some(r) => {
                    println!(
                        "running (pid {}) at {}",
                        r.pid,
                        r.url.as_deref().unwrap_or("?")
                    );
                    Ok(())
                }
                None => Err(CliError::new(
                    Kind::Unavailable,
                    format!(
                        "no control plane runs on {}; start one with `bbctl controller start`",
                        home.display()
                    ),
                )),
            }
        }
        Sub::Run(run) => {
            let RunArgs {
                home,
                listen,
                session_listen,
                sync_from,
                kubeconfig,
                runner_labels,
                capacity,
                backend,
                container_cli,
                container_dns,
                smolvm_cli,
                fake_journal,
                fake_failing_image,
                base_image,
                sidecar_binary,
                upstream_ca,
                allow_private_upstreams,
                harness_dir,
                resync_seconds,
                audit_log,
            } = *run;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::new(Kind::General, format!("starting the runtime: {e}")))?;
            let external = kubeconfig.is_some() || sync_from.is_some();
            if external && audit_log.is_some() {
                return Err(CliError::new(
                    Kind::Usage,
                    "--audit-log logs the embedded control plane's requests; a runner syncing from a cluster serves no API (use the cluster's audit log)",
                ));
            }
            let cluster = cluster_settings(external, &runner_labels, capacity)?;
            let backend = match (backend, fake_journal) {
                (BackendFlag::Fake, Some(journal)) => BackendChoice::Fake {
                    journal,
                    failing_image: fake_failing_image,
                },
                (BackendFlag::Fake, None) => {
                    return Err(CliError::new(
                        Kind::Usage,
                        "--backend fake needs --fake-journal FILE (where its starts and stops are recorded)",
                    ));
                }
                (_, Some(_)) => {
                    return Err(CliError::new(
                        Kind::Usage,
                        "--fake-journal applies only to --backend fake",
                    ));
                }
                (BackendFlag::Docker, None) => BackendChoice::Docker,
                (BackendFlag::AppleContainer, None) => BackendChoice::AppleContainer,
                (BackendFlag::Smolvm, None) => BackendChoice::Smolvm,
                (BackendFlag::None, None) => BackendChoice::None,
                (BackendFlag::Auto, None) => BackendChoice::Auto,
            };
            if (container_cli.is_some() || container_dns.is_some())
                && !matches!(backend, BackendChoice::Auto | BackendChoice::AppleContainer)
            {
                return Err(CliError::new(
                    Kind::Usage,
                    "--container-cli and --container-dns apply only to --backend apple-container (or auto on a Mac)",
                ));
            }
            if smolvm_cli.is_some() && backend != BackendChoice::Smolvm {
                return Err(CliError::new(
                    Kind::Usage,
                    "--smolvm-cli applies only to --backend smolvm",
                ));
            }
            if matches!(
                backend,
                BackendChoice::Auto
                    | BackendChoice::Docker
                    | BackendChoice::AppleContainer
                    | BackendChoice::Smolvm
            ) {
                super::dev_sidecar::ensure_built(sidecar_binary.as_deref())?;
            }
            if let Some(d) = harness_dir.as_ref().filter(|d| !d.is_dir()) {
                return Err(CliError::new(
                    Kind::Usage,
                    format!(
                        "--harness-dir: {} is not a directory (hack/fetch-harnesses.sh DIR fills one)",
                        d.display()
                    ),
                ));
            }
            if let Some(f) = upstream_ca.as_ref().filter(|f| !f.is_file()) {
                return Err(CliError::new(
                    Kind::Usage,
                    format!("--upstream-ca: {} is not a readable file", f.display()),
                ));
            }
            let opts = Options {
                home,
                listen,
                session_listen,
                sync_from: external.then_some(control_plane::SyncFrom {
                    kubeconfig,
                    context: sync_from,
                }),
                cluster,
                backend,
                runtime: RuntimeSettings {
                    base_image,
                    sidecar_binary,
                    upstream_ca,
                    allow_private_upstreams,
                    harness_dir,
                    container_cli,
                    container_dns: container_dns.map(|ip| ip.to_string()),
                    smolvm_cli,
                },
                resync: std::time::Duration::from_secs(resync_seconds.max(1)),
                audit_log,
            };
            rt.block_on(control_plane::run(opts, |ready| {
                if external {
                    eprintln!(
                        "runner syncing from the cluster in {}",
                        ready.kubeconfig.display()
                    );
                    return;
                }
                eprintln!("control plane ready at {}", ready.url);
                eprintln!("kubeconfig: {}", ready.kubeconfig.display());
                eprintln!(
                    "try: kubectl --kubeconfig {} get agents -A",
                    ready.kubeconfig.display()
                );
            }))
            .map_err(|e| {
                let kind = match e {
                    RunError::Home(bb_home::HomeError::Locked { .. }) => Kind::Conflict,
                    RunError::Serve(_) | RunError::Client(_) | RunError::Backend(_) => {
                        Kind::Unavailable
                    }
                    _ => Kind::General,
                };
                CliError::new(kind, e.to_string())
            })
        }
    }
}
