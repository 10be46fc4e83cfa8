//! `bbctl convert`: imports the reference system's `bottles/*.md` and `agents/*.md` into Bottle
//! and Agent YAML on stdout. Whether a file is a bottle or an agent follows its directory.

use std::path::{Path, PathBuf};

use bb_crds::Resource;
use bb_crds::convert::{ManifestKind, SourceFile, convert};

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A reference manifest directory (holding bottles/ and agents/), one of those
    /// directories, or a single .md file inside one.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
    file: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Yaml,
    Json,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let files = collect(&args.file)?;
    let converted = convert(&files).map_err(|e| CliError::new(Kind::Validation, e.to_string()))?;
    for w in &converted.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", render(&converted.resources, args.output)?);
    Ok(())
}

fn render(resources: &[Resource], output: Output) -> Result<String, CliError> {
    let values: Vec<serde_json::Value> = resources
        .iter()
        .map(|r| match r {
            Resource::Bottle(b) => serde_json::to_value(b),
            Resource::Agent(a) => serde_json::to_value(a),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::new(Kind::General, format!("rendering: {e}")))?;
    match output {
        Output::Json => {
            let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": values });
            serde_json::to_string_pretty(&list)
                .map(|s| s + "\n")
                .map_err(|e| CliError::new(Kind::General, format!("rendering: {e}")))
        }
        Output::Yaml => {
            let mut out = String::new();
            for v in values {
                out.push_str("---\n");
                out.push_str(
                    &serde_yaml::to_string(&v)
                        .map_err(|e| CliError::new(Kind::General, format!("rendering: {e}")))?,
                );
            }
            Ok(out)
        }
    }
}

/// Whether `path` is a reference manifest: a `.md` file, or a directory holding (or being) a
/// `bottles/` or `agents/` directory of them.
pub fn is_reference(path: &Path) -> bool {
    let has_md = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|mut it| {
            it.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "md")))
        })
    };
    if path.is_file() {
        return path.extension().is_some_and(|e| e == "md");
    }
    (kind_of_dir(path).is_some() && has_md(path))
        || ["bottles", "agents"].iter().any(|d| has_md(&path.join(d)))
}

/// Converts the reference manifests at `path` (warnings go to stderr).
pub fn reference_resources(path: &Path) -> Result<Vec<Resource>, CliError> {
    let files = collect(path)?;
    let converted = convert(&files).map_err(|e| CliError::new(Kind::Validation, e.to_string()))?;
    for w in &converted.warnings {
        eprintln!("warning: {w}");
    }
    Ok(converted.resources)
}

fn collect(path: &Path) -> Result<Vec<SourceFile>, CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::new(Kind::NotFound, format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    if meta.is_file() {
        let kind = kind_of_dir(path.parent().unwrap_or(Path::new(""))).ok_or_else(|| {
            CliError::new(
                Kind::Usage,
                format!(
                    "{}: cannot tell whether this is a bottle or an agent; it must sit in a bottles/ or agents/ directory",
                    path.display()
                ),
            )
        })?;
        out.push(read(path, kind)?);
        return Ok(out);
    }
    let dirs: Vec<(PathBuf, ManifestKind)> = match kind_of_dir(path) {
        Some(kind) => vec![(path.to_path_buf(), kind)],
        None => [
            ("bottles", ManifestKind::Bottle),
            ("agents", ManifestKind::Agent),
        ]
        .into_iter()
        .map(|(d, k)| (path.join(d), k))
        .filter(|(d, _)| d.is_dir())
        .collect(),
    };
    if dirs.is_empty() {
        return Err(CliError::new(
            Kind::NotFound,
            format!("{}: no bottles/ or agents/ directory here", path.display()),
        ));
    }
    if path.join("bot-bottle.json").exists() && dirs.iter().all(|(_, k)| *k != ManifestKind::Bottle)
    {
        return Err(CliError::new(
            Kind::Validation,
            format!(
                "{}: holds a legacy bot-bottle.json and no bottles/ directory; the JSON manifest format was replaced by Markdown files (bottles/*.md, agents/*.md)",
                path.display()
            ),
        ));
    }
    for (dir, kind) in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| CliError::new(Kind::General, format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
            .collect();
        entries.sort();
        for p in entries {
            out.push(read(&p, kind)?);
        }
    }
    Ok(out)
}

fn kind_of_dir(dir: &Path) -> Option<ManifestKind> {
    match dir.file_name()?.to_str()? {
        "bottles" => Some(ManifestKind::Bottle),
        "agents" => Some(ManifestKind::Agent),
        _ => None,
    }
}

fn read(path: &Path, kind: ManifestKind) -> Result<SourceFile, CliError> {
    let contents = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            Kind::General,
            format!("could not read {}: {e}", path.display()),
        )
    })?;
    Ok(SourceFile {
        path: path.display().to_string(),
        kind,
        contents,
    })
}
