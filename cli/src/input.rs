//! Reads `-f FILE|DIR|-` arguments the way kubectl does: files as given, directories' `.yaml`,
//! `.yml` and `.json` files (recursively with `-R`), `-` for standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::exit::{CliError, Kind};

/// The manifest flags every verb that reads manifests shares, as kubectl spells them.
#[derive(Debug, Clone, clap::Args)]
pub struct FileArgs {
    /// File, directory or `-` (stdin) holding Bottle / Agent YAML. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<PathBuf>,
    /// Descend into subdirectories of directory arguments.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

impl FileArgs {
    /// For verbs that need manifests: a usage error naming the flag when none was given, and
    /// not-found for a path that does not exist. Checked before anything else happens (no
    /// control plane is started for input that cannot be read).
    pub fn required(&self) -> Result<&Self, CliError> {
        if self.files.is_empty() {
            return Err(CliError::new(
                crate::exit::Kind::Usage,
                "-f/--filename is required: a file, a directory or - for stdin",
            ));
        }
        for p in self.files.iter().filter(|p| p.as_os_str() != "-") {
            std::fs::metadata(p).map_err(|e| not_found(p, e))?;
        }
        Ok(self)
    }
}

/// One manifest source: where it came from and its text.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

pub fn read_sources(paths: &[PathBuf], recursive: bool) -> Result<Vec<Source>, CliError> {
    if paths.is_empty() {
        return Err(CliError::new(
            Kind::Usage,
            "no input: pass -f FILE, -f DIR or -f -",
        ));
    }
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::new(Kind::General, format!("reading standard input: {e}"))
            })?;
            out.push(Source {
                name: "<stdin>".into(),
                text,
            });
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| not_found(p, e))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_dir(p, recursive, &mut files)?;
            if files.is_empty() {
                return Err(CliError::new(
                    Kind::NotFound,
                    format!(
                        "{}: no .yaml, .yml or .json files{}",
                        p.display(),
                        if recursive {
                            ""
                        } else {
                            " (use -R to descend into subdirectories)"
                        }
                    ),
                ));
            }
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(p)?);
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| not_found(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                collect_dir(&p, recursive, out)?;
            }
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

fn read_file(p: &Path) -> Result<Source, CliError> {
    let text = std::fs::read_to_string(p).map_err(|e| not_found(p, e))?;
    Ok(Source {
        name: p.display().to_string(),
        text,
    })
}

fn not_found(p: &Path, e: std::io::Error) -> CliError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        Kind::NotFound
    } else {
        Kind::General
    };
    CliError::new(kind, format!("{}: {e}", p.display()))
}
