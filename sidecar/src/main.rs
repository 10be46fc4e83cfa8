//! `bb-sidecar`: the per-agent chokepoint (egress proxy, DLP, git-gate, supervise). This entry
//! point owns argument parsing; each daemon lives in its own module as it lands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bb-sidecar",
    version,
    about = "bot-bottle sidecar: the agent's only way out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and validate a policy file with the same schema as Bottle.spec.egress, then exit.
    CheckPolicy {
        /// Policy YAML (`log`, `routes[]`; auth names a token file).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::CheckPolicy { policy } => match check_policy(&policy) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_policy(path: &PathBuf) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let policy = bb_crds::policy::parse_sidecar_policy(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(format!(
        "{}: ok: {} route(s), log level {}",
        path.display(),
        policy.routes().len(),
        policy.log_level()
    ))
}
