//! `bbctl controller`: the local control plane. `run` is its foreground form.

use std::net::SocketAddr;
use std::path::PathBuf;

use bb_controller::control_plane::{
    self, BackendChoice, DEFAULT_LISTEN, DockerSettings, Options, RunError,
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
    Run {
        /// State directory (default: $BOT_BOTTLE_HOME, else ~/.bot-bottle).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Address to serve the Kubernetes API on; port 0 picks a free port.
        #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Reconcile against the cluster in this kubeconfig instead of serving the embedded
        /// control plane (no local store or listener is started).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Context of --kubeconfig to use (default: its current context).
        #[arg(long, value_name = "NAME", requires = "kubeconfig")]
        context: Option<String>,
        /// Runtime for Agents: auto (Docker when reachable), docker (fail without it), or none
        /// (reconcile Bottles only).
        #[arg(long, value_name = "KIND", default_value = "auto", value_parser = ["auto", "docker", "none"])]
        backend: String,
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
        /// How often a running Agent is checked against its backend without an API event.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        resync_seconds: u64,
    },
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Sub::Run {
            home,
            listen,
            kubeconfig,
            context,
            backend,
            base_image,
            sidecar_binary,
            upstream_ca,
            resync_seconds,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::new(Kind::General, format!("starting the runtime: {e}")))?;
            let external = kubeconfig.is_some();
            if let Some(f) = upstream_ca.as_ref().filter(|f| !f.is_file()) {
                return Err(CliError::new(
                    Kind::Usage,
                    format!("--upstream-ca: {} is not a readable file", f.display()),
                ));
            }
            let opts = Options {
                home,
                listen,
                kubeconfig,
                context,
                backend: match backend.as_str() {
                    "docker" => BackendChoice::Docker,
                    "none" => BackendChoice::None,
                    _ => BackendChoice::Auto,
                },
                docker: DockerSettings {
                    base_image,
                    sidecar_binary,
                    upstream_ca,
                },
                resync: std::time::Duration::from_secs(resync_seconds.max(1)),
            };
            rt.block_on(control_plane::run(opts, |ready| {
                if external {
                    eprintln!(
                        "reconciling against the cluster in {}",
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
                    RunError::Home(bb_controller::home::HomeError::Locked { .. }) => Kind::Conflict,
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
