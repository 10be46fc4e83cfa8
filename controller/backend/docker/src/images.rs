//! Images a Docker backend runs: the sidecar (built from the bundled Dockerfile and the
//! bb-sidecar binary) and agent images (a reference, or a Dockerfile built on the given base).
//! Reuse is keyed by a hash of everything that goes into a build, never by tag alone.

use bb_backend::Step;
use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use futures_util::StreamExt;
use tokio::sync::broadcast;

use bb_backend::archive::TarBuilder;
use bb_backend::hash::sha256_hex;
use bb_backend::image_inputs::{SIDECAR_DOCKERFILE, harness_identity};
use bb_backend::names::{CONTENT_HASH, MANAGED_BY, MANAGER};
use bb_backend::{BackendError, BuiltinImage};

fn err(message: impl Into<String>) -> BackendError {
    BackendError::new(Step::Image, message)
}

/// The base image's identity: its ID when present locally, else its name (the engine will
/// fetch it during the build).
async fn base_identity(docker: &Docker, base: &str) -> String {
    match docker.inspect_image(base).await {
        Ok(i) => i.id.unwrap_or_else(|| base.to_string()),
        Err(_) => base.to_string(),
    }
}

async fn exists(docker: &Docker, reference: &str) -> bool {
    docker.inspect_image(reference).await.is_ok()
}

/// Where build progress goes besides the log: one line per Dockerfile step, for whoever
/// watches (the demo prints them). Nobody listening is fine.
pub type BuildProgress = broadcast::Sender<String>;

/// Where one build's steps go: everyone watching the engine (the demo) and the Agent that
/// asked for the image (its events).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub all: &'a BuildProgress,
    pub agent: Option<&'a bb_backend::BuildSteps>,
}

impl Progress<'_> {
    fn send(&self, line: String) {
        if let Some(a) = self.agent {
            let _ = a.send(line.clone());
        }
        let _ = self.all.send(line);
    }
}

/// Builds `context` (a tar holding a Dockerfile) as `tag` on `base` with `args` as further
/// build arguments. Each step goes to the log and to `progress`; a failure carries the
/// build's last lines.
async fn build(
    docker: &Docker,
    progress: Progress<'_>,
    tag: &str,
    content_hash: &str,
    dockerfile: &str,
    context: Vec<u8>,
    args: BuildArgs<'_>,
) -> Result<(), BackendError> {
    let mut buildargs = args.extra;
    buildargs.insert("BASE".to_string(), args.base.to_string());
    let options = BuildImageOptions {
        dockerfile: dockerfile.into(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(buildargs),
        labels: Some(HashMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (CONTENT_HASH.to_string(), content_hash.to_string()),
        ])),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| err(format!("building {tag}: {e}")))?;
        if let Some(line) = info
            .stream
            .as_deref()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            if line.starts_with("Step ") {
                tracing::info!(image = tag, "{line}");
                progress.send(format!("{}: {line}", short(tag)));
            } else {
                tracing::debug!(image = tag, "{line}");
            }
            tail.push(line.to_string());
            if tail.len() > 8 {
                tail.remove(0);
            }
        }
        if let Some(e) = info.error {
            return Err(err(format!(
                "building {tag}: {e} (last output: {})",
                tail.join(" | ")
            )));
        }
    }
    if !exists(docker, tag).await {
        return Err(err(format!(
            "building {tag} produced no image (last output: {})",
            tail.join(" | ")
        )));
    }
    tracing::info!(image = tag, "built image");
    Ok(())
}

/// The build arguments of one build: the shared `BASE` and any the image adds.
struct BuildArgs<'a> {
    base: &'a str,
    extra: HashMap<String, String>,
}

impl<'a> BuildArgs<'a> {
    fn base(base: &'a str) -> Self {
        BuildArgs {
            base,
            extra: HashMap::new(),
        }
    }
}

/// `bot-bottle/sidecar:0123456789ab` for a content-hash tag: enough to tell images apart.
fn short(tag: &str) -> &str {
    tag.rfind(':')
        .and_then(|i| tag.get(..i + 13))
        .unwrap_or(tag)
}

/// The sidecar image for this binary and base, built once per content.
pub async fn sidecar(
    docker: &Docker,
    progress: Progress<'_>,
    binary: &Path,
    base: &str,
) -> Result<String, BackendError> {
    let bin = std::fs::read(binary).map_err(|e| {
        err(format!(
            "reading the sidecar binary {}: {e}; install bb-sidecar next to bbctl or pass --sidecar-binary",
            binary.display()
        ))
    })?;
    let base_id = base_identity(docker, base).await;
    let h = sha256_hex(&[SIDECAR_DOCKERFILE.as_bytes(), &bin, base_id.as_bytes()]);
    let tag = format!("bot-bottle/sidecar:{h}");
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    let mut ctx = TarBuilder::default();
    ctx.file("Dockerfile", SIDECAR_DOCKERFILE.as_bytes(), 0o644, 0)
        .and_then(|()| ctx.file("bb-sidecar", &bin, 0o755, 0))
        .map_err(|e| err(format!("packing the sidecar build context: {e}")))?;
    let context = ctx.finish().map_err(|e| err(e.to_string()))?;
    progress.send(format!(
        "building the sidecar image {} on {base}",
        short(&tag)
    ));
    build(
        docker,
        progress,
        &tag,
        &h,
        "Dockerfile",
        context,
        BuildArgs::base(base),
    )
    .await?;
    Ok(tag)
}

/// An agent image from a Dockerfile: its directory is the build context (without `.git`).
pub async fn from_dockerfile(
    docker: &Docker,
    progress: Progress<'_>,
    dockerfile: &Path,
    base: &str,
) -> Result<String, BackendError> {
    let dir = dockerfile.parent().unwrap_or(Path::new("/"));
    let file_name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !dockerfile.is_file() {
        return Err(err(format!(
            "Dockerfile {} does not exist",
            dockerfile.display()
        )));
    }
    let mut ctx = TarBuilder::default();
    ctx.host_tree(dir, ".", 0, false)
        .map_err(|e| err(format!("packing the build context {}: {e}", dir.display())))?;
    let context = ctx.finish().map_err(|e| err(e.to_string()))?;
    let base_id = base_identity(docker, base).await;
    let h = sha256_hex(&[&context, base_id.as_bytes()]);
    let tag = format!("bot-bottle/agent:{h}");
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    progress.send(format!(
        "building the agent image {} from {} on {base}",
        short(&tag),
        dockerfile.display()
    ));
    build(
        docker,
        progress,
        &tag,
        &h,
        &file_name,
        context,
        BuildArgs::base(base),
    )
    .await?;
    Ok(tag)
}

/// A provider image from the Dockerfile the binary carries. With a prebuilt harness in
/// `harness_dir`, that executable joins the build context and the Dockerfile is told to use it
/// (`<source_arg>=context`). The tag hashes the Dockerfile, the base and the harness file's
/// identity (size and modification time: a harness is hundreds of megabytes, too much to read
/// each time an agent container is made), so a new binary is a new image.
pub async fn builtin(
    docker: &Docker,
    progress: Progress<'_>,
    image: &BuiltinImage,
    harness_dir: Option<&Path>,
    base: &str,
) -> Result<String, BackendError> {
    let harness = harness_dir.map(|d| d.join(image.harness_binary));
    let identity = match &harness {
        Some(path) => harness_identity(path).map_err(|e| {
            err(format!(
                "--harness-dir: {} cannot be read ({e}); put the {} harness there (hack/fetch-harnesses.sh) or drop the flag to fetch it at build time",
                path.display(),
                image.harness_binary
            ))
        })?,
        None => "fetch".to_string(),
    };
    let base_id = base_identity(docker, base).await;
    let h = sha256_hex(&[
        image.dockerfile.as_bytes(),
        base_id.as_bytes(),
        identity.as_bytes(),
    ]);
    let tag = format!("bot-bottle/{}:{h}", image.name);
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    let mut ctx = TarBuilder::default();
    ctx.file("Dockerfile", image.dockerfile.as_bytes(), 0o644, 0)
        .map_err(|e| err(e.to_string()))?;
    let mut extra = HashMap::new();
    if let Some(path) = &harness {
        let packed = if path.is_dir() {
            ctx.host_tree(path, image.harness_binary, 0, false)
        } else {
            std::fs::read(path).and_then(|data| ctx.file(image.harness_binary, &data, 0o755, 0))
        };
        packed.map_err(|e| err(format!("{}: {e}", path.display())))?;
        extra.insert(image.source_arg.to_string(), "context".to_string());
    }
    let context = ctx.finish().map_err(|e| err(e.to_string()))?;
    progress.send(format!(
        "building the {} image {} on {base}",
        image.name,
        short(&tag)
    ));
    build(
        docker,
        progress,
        &tag,
        &h,
        "Dockerfile",
        context,
        BuildArgs { base, extra },
    )
    .await?;
    Ok(tag)
}

/// An approved capability Dockerfile built on the agent's image (`${AGENT_IMAGE}`), with only
/// the Dockerfile as its context: a proposal carries no files. Tagged by its content and the
/// image it builds on.
pub async fn capability(
    docker: &Docker,
    progress: Progress<'_>,
    dockerfile: &str,
    agent_image: &str,
    base: &str,
) -> Result<String, BackendError> {
    let h = sha256_hex(&[dockerfile.as_bytes(), agent_image.as_bytes()]);
    let tag = format!("bot-bottle/agent-capability:{h}");
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    let mut ctx = TarBuilder::default();
    ctx.file("Dockerfile", dockerfile.as_bytes(), 0o644, 0)
        .map_err(|e| err(e.to_string()))?;
    let context = ctx.finish().map_err(|e| err(e.to_string()))?;
    progress.send(format!(
        "building the approved capability image {} on {agent_image}",
        short(&tag)
    ));
    let extra = HashMap::from([("AGENT_IMAGE".to_string(), agent_image.to_string())]);
    build(
        docker,
        progress,
        &tag,
        &h,
        "Dockerfile",
        context,
        BuildArgs { base, extra },
    )
    .await?;
    Ok(tag)
}

/// An image named by reference: used when present, pulled otherwise.
pub async fn reference(docker: &Docker, reference: &str) -> Result<String, BackendError> {
    if exists(docker, reference).await {
        return Ok(reference.to_string());
    }
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(reference.to_string()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(item) = pull.next().await {
        if let Err(e) = item {
            return Err(err(format!(
                "image {reference} is not present locally and pulling it failed: {e}"
            )));
        }
    }
    Ok(reference.to_string())
}
