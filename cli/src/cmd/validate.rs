//! `bbctl validate`: schema and rule checks of manifests, as one set so `extends` resolves
//! across files. Nothing is applied; every error of every object is printed.

use std::path::PathBuf;

use bb_crds::Resource;
use bb_crds::manifest::{check_document, validate_bottle_set, yaml_documents};

use crate::exit::{CliError, Kind};
use crate::input::read_sources;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: crate::input::FileArgs,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let (resources, errors) = load(&args.files.required()?.files, args.files.recursive)?;
    if !errors.is_empty() {
        return Err(CliError::new(Kind::Validation, errors.join("\n")));
    }
    for r in &resources {
        println!("{}/{} valid", r.kind().to_lowercase(), r.name());
    }
    Ok(())
}

/// Loads every document of every source and validates them as one set. Errors are prefixed with
/// their source so a user can find them.
pub fn load(files: &[PathBuf], recursive: bool) -> Result<(Vec<Resource>, Vec<String>), CliError> {
    let loaded = load_with(files, recursive, &Default::default())?;
    Ok((loaded.resources, loaded.errors))
}

/// Manifests read and checked as one set: the objects, the source each came from, and every
/// error found.
#[derive(Debug)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub origins: Vec<String>,
    pub errors: Vec<String>,
}

/// `load`, with Bottles that already exist elsewhere (on the server) counted for `extends`, and
/// the source each resource came from.
pub fn load_with(
    files: &[PathBuf],
    recursive: bool,
    known: &std::collections::BTreeMap<String, bb_crds::BottleSpec>,
) -> Result<Loaded, CliError> {
    let mut resources = Vec::new();
    let mut origins = Vec::new();
    let mut errors = Vec::new();
    // The reference system's Markdown manifests are converted on the way in.
    let (reference, yaml): (Vec<&PathBuf>, Vec<&PathBuf>) = files
        .iter()
        .partition(|p| p.as_os_str() != "-" && super::convert::is_reference(p));
    // Each path is its own set (its origin decides trust in `apply`); every problem of every
    // file joins the YAML ones below rather than stopping at the first.
    for path in reference {
        match super::convert::reference_resources(std::slice::from_ref(path)) {
            Ok(converted) => {
                for r in converted {
                    origins.push(path.display().to_string());
                    resources.push(r);
                }
            }
            Err(e) if e.kind == Kind::Validation => {
                errors.extend(e.to_string().lines().map(str::to_string));
            }
            Err(e) => return Err(e),
        }
    }
    let yaml: Vec<PathBuf> = yaml.into_iter().cloned().collect();
    let sources = if yaml.is_empty() {
        Vec::new()
    } else {
        read_sources(&yaml, recursive)?
    };
    for src in &sources {
        let docs = match yaml_documents(&src.text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{}: {e}", src.name));
                continue;
            }
        };
        for (i, doc) in docs.iter().enumerate() {
            match check_document(doc, i + 1) {
                Ok(r) => {
                    origins.push(src.name.clone());
                    resources.push(r);
                }
                Err(e) => errors.push(format!("{}: {e}", src.name)),
            }
        }
    }
    for e in validate_bottle_set(&resources, known) {
        let origin = resources
            .iter()
            .zip(&origins)
            .find(|(r, _)| format!("Bottle/{}", r.name()) == e.object)
            .map(|(_, o)| o.as_str())
            .unwrap_or("");
        errors.push(format!("{origin}: {e}"));
    }
    Ok(Loaded {
        resources,
        origins,
        errors,
    })
}
