//! `bbctl controller`: the local control plane. `run` is its foreground form.

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run the apiserver and reconcilers in the foreground.
    Run,
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Sub::Run => Err(CliError::new(
            Kind::NotImplemented,
            "not yet: the local control plane has not landed; `bbctl validate -f` checks manifests meanwhile",
        )),
    }
}
