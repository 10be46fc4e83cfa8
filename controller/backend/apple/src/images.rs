//! Images on Apple Container: built by `container build` from a directory context (the builder's
//! resolver checked first), tagged by a hash of everything that goes into them.

use std::collections::BTreeMap;
use std::path::Path;

use super::{AppleBackend, cli};
use bb_backend::archive::TarBuilder;
use bb_backend::hash::sha256_hex;
use bb_backend::image_inputs::{SIDECAR_DOCKERFILE, harness_identity};
use bb_backend::{BackendError, BuildSteps, ImageSource, Step};

fn err(message: impl Into<String>) -> BackendError {
    BackendError::new(Step::Image, message)
}

/// `bot-bottle/sidecar:0123456789ab`: enough of a content-hash tag to tell images apart.
fn short(tag: &str) -> &str {
    tag.rfind(':')
        .and_then(|i| tag.get(..i + 13))
        .unwrap_or(tag)
}

impl AppleBackend {
    pub(super) async fn image_exists(&self, image: &str, step: Step) -> Result<bool, BackendError> {
        let args = cli::image_inspect(image);
        Ok(self.cli.output(step, &args, None).await?.success())
    }

    /// The base image's identity: its id when present, else its name.
    async fn base_identity(&self) -> String {
        let base = &self.runtime().base_image;
        match self
            .cli
            .output(Step::Image, &cli::image_inspect(base), None)
            .await
        {
            Ok(out) if out.success() => cli::parse_image_id(&String::from_utf8_lossy(&out.stdout))
                .unwrap_or_else(|_| base.clone()),
            _ => base.clone(),
        }
    }

    /// Restarts the builder when it is down, cannot resolve, or lacks an explicit resolver
    /// override: builds fetch packages, and the builder VM resolves through its own settings.
    async fn ensure_builder_dns(&self) -> Result<(), BackendError> {
        let dns = self.dns().await.clone();
        let status = self
            .cli
            .output(Step::Image, &cli::builder_status(), None)
            .await?;
        let builder = if status.success() {
            cli::parse_builder(&String::from_utf8_lossy(&status.stdout))
        } else {
            cli::Builder::default()
        };
        let probe_ok = builder.running
            && self
                .cli
                .output(Step::Image, &cli::builder_probe(), None)
                .await
                .is_ok_and(|o| o.success());
        if !cli::builder_needs_restart(&builder, probe_ok, self.config.dns.as_deref()) {
            return Ok(());
        }
        tracing::info!(%dns, "restarting the container builder with an explicit resolver");
        let _ = self
            .cli
            .output(Step::Image, &cli::builder_stop(), None)
            .await;
        self.cli
            .ok(Step::Image, &cli::builder_start(&dns), None)
            .await
            .map(|_| ())
    }

    /// Builds `dir` (holding the build context) with `dockerfile` written into it as `tag`.
    pub(super) async fn build_dir(
        &self,
        tag: &str,
        dir: &Path,
        dockerfile: &str,
        args: &BTreeMap<String, String>,
        steps: Option<&BuildSteps>,
    ) -> Result<(), BackendError> {
        let file = dir.join("Dockerfile.bot-bottle");
        std::fs::write(&file, dockerfile)
            .map_err(|e| err(format!("writing {}: {e}", file.display())))?;
        self.ensure_builder_dns().await?;
        if let Some(s) = steps {
            let _ = s.send(format!("building {}", short(tag)));
        }
        let dns = self.dns().await.clone();
        let argv = cli::build(
            tag,
            &dns,
            args,
            Some(&file.display().to_string()),
            &dir.display().to_string(),
        );
        let out = self.cli.output_slow(Step::Image, &argv).await?;
        if !out.success() {
            return Err(err(format!("building {tag}: {}", out.tail())));
        }
        tracing::info!(image = tag, "built image");
        Ok(())
    }

    /// A fresh, empty build context directory for `tag`.
    fn context_dir(&self, tag: &str) -> Result<std::path::PathBuf, BackendError> {
        let dir = self
            .runtime()
            .state_dir
            .join("builds")
            .join(tag.replace(['/', ':'], "_"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Builds `tag` unless it exists: `fill` puts the context files into the directory.
    async fn build_once(
        &self,
        tag: &str,
        dockerfile: &str,
        args: BTreeMap<String, String>,
        steps: Option<&BuildSteps>,
        fill: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<String, BackendError> {
        if self.image_exists(tag, Step::Image).await? {
            return Ok(tag.to_string());
        }
        let dir = self.context_dir(tag)?;
        fill(&dir).map_err(|e| err(format!("preparing the build context of {tag}: {e}")))?;
        let built = self.build_dir(tag, &dir, dockerfile, &args, steps).await;
        let _ = std::fs::remove_dir_all(&dir);
        built.map(|()| tag.to_string())
    }

    fn base_args(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("BASE".to_string(), self.runtime().base_image.clone())])
    }

    /// The sidecar image for this backend's binary and base, built on first use.
    pub(super) async fn sidecar_image(
        &self,
        steps: Option<&BuildSteps>,
    ) -> Result<&String, BackendError> {
        self.sidecar_image
            .get_or_try_init(|| async {
                let binary = &self.runtime().sidecar_binary;
                let bin = std::fs::read(binary).map_err(|e| {
                    err(format!(
                        "reading the sidecar binary {}: {e}; install bb-sidecar next to bbctl or pass --sidecar-binary",
                        binary.display()
                    ))
                })?;
                let base = self.base_identity().await;
                let h = sha256_hex(&[SIDECAR_DOCKERFILE.as_bytes(), &bin, base.as_bytes()]);
                let tag = format!("bot-bottle/sidecar:{h}");
                self.build_once(&tag, SIDECAR_DOCKERFILE, self.base_args(), steps, |dir| {
                    use std::os::unix::fs::PermissionsExt;
                    let path = dir.join("bb-sidecar");
                    std::fs::write(&path, &bin)?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                })
                .await
            })
            .await
    }

    /// The agent image a provider asks for (a capability builds on top of it).
    pub(super) async fn provider_image(
        &self,
        image: &ImageSource,
        steps: &BuildSteps,
    ) -> Result<String, BackendError> {
        match image {
            ImageSource::Reference(r) => {
                if !self.image_exists(r, Step::Image).await? {
                    let _ = steps.send(format!("pulling {r}"));
                    self.cli
                        .output_slow(Step::Image, &cli::image_pull(r))
                        .await
                        .and_then(|out| {
                            if out.success() {
                                Ok(())
                            } else {
                                Err(err(format!(
                                    "image {r} is not present and pulling it failed: {}",
                                    out.tail()
                                )))
                            }
                        })?;
                }
                Ok(r.clone())
            }
            ImageSource::Dockerfile(d) => {
                let path = Path::new(d);
                if !path.is_file() {
                    return Err(err(format!("Dockerfile {d} does not exist")));
                }
                let dir = path.parent().unwrap_or(Path::new("/"));
                let dockerfile =
                    std::fs::read_to_string(path).map_err(|e| err(format!("reading {d}: {e}")))?;
                // The tag hashes the context the way the Docker backend does (a tar of the
                // directory without .git): a changed file is a new image.
                let mut ctx = TarBuilder::default();
                ctx.host_tree(dir, ".", 0, false).map_err(|e| {
                    err(format!("reading the build context {}: {e}", dir.display()))
                })?;
                let context = ctx.finish().map_err(|e| err(e.to_string()))?;
                let base = self.base_identity().await;
                let tag = format!(
                    "bot-bottle/agent:{}",
                    sha256_hex(&[&context, base.as_bytes()])
                );
                self.build_once(&tag, &dockerfile, self.base_args(), Some(steps), |into| {
                    unpack(&context, into)
                })
                .await
            }
            ImageSource::Builtin(b) => {
                let harness = self
                    .runtime()
                    .harness_dir
                    .as_ref()
                    .map(|d| d.join(b.harness_binary))
                    .filter(|p| p.exists());
                // The Docker backend's identity: size and mtime of every harness file.
                let identity = match &harness {
                    Some(p) => {
                        harness_identity(p).map_err(|e| err(format!("{}: {e}", p.display())))?
                    }
                    None => "fetch".to_string(),
                };
                let base = self.base_identity().await;
                let h = sha256_hex(&[
                    b.dockerfile.as_bytes(),
                    base.as_bytes(),
                    identity.as_bytes(),
                ]);
                let tag = format!("bot-bottle/{}:{h}", b.name);
                let mut args = self.base_args();
                if harness.is_some() {
                    args.insert(b.source_arg.to_string(), "context".to_string());
                }
                self.build_once(
                    &tag,
                    b.dockerfile,
                    args,
                    Some(steps),
                    |dir| match &harness {
                        Some(p) => {
                            let mut ctx = TarBuilder::default();
                            if p.is_dir() {
                                ctx.host_tree(p, b.harness_binary, 0, false)?;
                            } else {
                                ctx.file(b.harness_binary, &std::fs::read(p)?, 0o755, 0)?;
                            }
                            unpack(&ctx.finish()?, dir)
                        }
                        None => Ok(()),
                    },
                )
                .await
            }
            ImageSource::Capability { .. } => Err(err(
                "a capability image builds on a provider image, not on another capability",
            )),
        }
    }

    /// An approved capability Dockerfile built on the agent's image (`${AGENT_IMAGE}`).
    pub(super) async fn capability_image(
        &self,
        dockerfile: &str,
        agent_image: &str,
        steps: &BuildSteps,
    ) -> Result<String, BackendError> {
        let h = sha256_hex(&[dockerfile.as_bytes(), agent_image.as_bytes()]);
        let tag = format!("bot-bottle/agent-capability:{h}");
        let mut args = self.base_args();
        args.insert("AGENT_IMAGE".to_string(), agent_image.to_string());
        self.build_once(&tag, dockerfile, args, Some(steps), |_| Ok(()))
            .await
    }
}

/// Unpacks an in-memory tar into `dir`.
fn unpack(archive: &[u8], dir: &Path) -> std::io::Result<()> {
    tar::Archive::new(archive).unpack(dir)
}
