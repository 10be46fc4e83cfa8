//! `bbctl crds`: prints the CRDs generated from the Rust types, or writes one file per CRD.

use std::path::PathBuf;

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one `<name>.yaml` per CRD into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let render =
        |e: serde_yaml::Error| CliError::new(Kind::General, format!("rendering CRDs: {e}"));
    match args.output_dir {
        None => {
            print!("{}", bb_crds::crd::all_yaml().map_err(render)?);
        }
        Some(dir) => {
            if !dir.is_dir() {
                return Err(CliError::new(
                    Kind::NotFound,
                    format!("--output-dir {}: not a directory", dir.display()),
                ));
            }
            for crd in bb_crds::crd::all() {
                let path = dir.join(bb_crds::crd::file_name(&crd));
                let text = bb_crds::crd::to_yaml(&crd).map_err(render)?;
                std::fs::write(&path, text).map_err(|e| {
                    CliError::new(Kind::General, format!("writing {}: {e}", path.display()))
                })?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
