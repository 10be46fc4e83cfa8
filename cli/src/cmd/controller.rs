//! `bbctl controller`: the local control plane. `run` is its foreground form.

use std::net::SocketAddr;
use std::path::PathBuf;

use bb_controller::control_plane::{self, DEFAULT_LISTEN, Options, RunError};

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
    },
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Sub::Run {
            home,
            listen,
            kubeconfig,
            context,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::new(Kind::General, format!("starting the runtime: {e}")))?;
            let external = kubeconfig.is_some();
            let opts = Options {
                home,
                listen,
                kubeconfig,
                context,
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
                    RunError::Serve(_) | RunError::Client(_) => Kind::Unavailable,
                    _ => Kind::General,
                };
                CliError::new(kind, e.to_string())
            })
        }
    }
}
