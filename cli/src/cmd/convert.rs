//! `bbctl convert`: imports the reference system's `bottles/*.md` and `agents/*.md` into Bottle
//! and Agent YAML on stdout. Whether a file is a bottle or an agent follows its directory.

use std::path::{Path, PathBuf};

use bb_crds::Resource;
use bb_crds::convert::{ManifestKind, SourceFile, convert};

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A reference manifest directory (holding bottles/ and agents/), one of those
    /// directories, or a single .md file inside one; repeat to convert several as one set.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    files: Vec<PathBuf>,
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
    let resources = reference_resources(&args.files)?;
    // Rendered whole before anything is printed: a failure writes nothing.
    print!("{}", render(&resources, args.output)?);
    Ok(())
}

fn render(resources: &[Resource], output: Output) -> Result<String, CliError> {
    let values: Vec<serde_json::Value> = resources
        .iter()
        .map(Resource::to_json)
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

/// Converts the reference manifests at `paths` as one set (warnings go to stderr). Fails with
/// every problem of every file, one per line: a path that is no manifest set at all keeps its
/// own kind (not found, usage) when it is the only trouble, else the whole is a validation error.
pub fn reference_resources(paths: &[PathBuf]) -> Result<Vec<Resource>, CliError> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut kind = None;
    for path in paths {
        if let Err(e) = collect(path, &mut files, &mut errors) {
            kind.get_or_insert(e.kind);
            errors.push(e.to_string());
        }
    }
    match convert(&files) {
        Ok(c) if errors.is_empty() => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            Ok(c.resources)
        }
        Ok(_) => Err(CliError::new(
            kind.unwrap_or(Kind::Validation),
            errors.join("\n"),
        )),
        Err(e) => {
            errors.extend(e.0);
            Err(CliError::new(Kind::Validation, errors.join("\n")))
        }
    }
}

/// Reads the manifests at `path` into `out`; a file that cannot be read is one more line in
/// `errors` (the others are still read); a path that is no manifest set at all is the error.
fn collect(
    path: &Path,
    out: &mut Vec<SourceFile>,
    errors: &mut Vec<String>,
) -> Result<(), CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::new(Kind::NotFound, format!("{}: {e}", path.display())))?;
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
        return Ok(());
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
            match read(&p, kind) {
                Ok(f) => out.push(f),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    Ok(())
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
