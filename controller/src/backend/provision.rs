//! What provisioning puts into an agent, whatever the runtime: one tar archive (bottle CA,
//! prompt, provider files, skills, git identity, workspace) and the script that finishes it.

use std::path::Path;

use super::{AgentPlan, BackendError, Step};
use crate::backend::archive::TarBuilder;

/// Where the workspace lands in the agent.
pub const WORKSPACE: &str = "/workspace";

/// Run as root once the archive is unpacked. The system store too, so tools that ignore the
/// env variables trust the bottle CA: appending to the bundle is what every TLS stack reads
/// (and SSL_CERT_FILE points at); the copy in /usr/local/share/ca-certificates keeps it across
/// update-ca-certificates (running that tool instead costs about a second per start). The
/// marker comes last: an agent is provisioned only once everything before it is in place.
pub const FINISH_SCRIPT: &str = "b=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/ssl/certs && \
     { grep -qF \"$(sed -n 2p /etc/bot-bottle/ca.crt)\" $b 2>/dev/null || cat /etc/bot-bottle/ca.crt >> $b; } && \
     touch /etc/bot-bottle/provisioned";

/// The archive (rooted at `/`) that provisions an agent for `plan`, files owned by `uid`.
pub fn archive(
    plan: &AgentPlan,
    ca_cert_pem: &str,
    uid: u64,
    skills_root: &Path,
) -> Result<Vec<u8>, BackendError> {
    let fail =
        |e: std::io::Error| BackendError::new(Step::Provision, format!("packing files: {e}"));
    let ca = ca_cert_pem;
    let mut tar = TarBuilder::default();
    tar.dir("etc/bot-bottle", 0o755, 0).map_err(fail)?;
    tar.file("etc/bot-bottle/ca.crt", ca.as_bytes(), 0o644, 0)
        .map_err(fail)?;
    tar.file(
        "usr/local/share/ca-certificates/bot-bottle.crt",
        ca.as_bytes(),
        0o644,
        0,
    )
    .map_err(fail)?;
    if let Some(prompt) = &plan.prompt {
        tar.file("etc/bot-bottle/prompt.md", prompt.as_bytes(), 0o644, 0)
            .map_err(fail)?;
    }
    for d in &plan.dirs {
        tar.dir(d.guest_path.trim_start_matches('/'), d.mode, uid)
            .map_err(fail)?;
    }
    for f in plan.files.iter().chain(&plan.credential_files) {
        let path = f.guest_path.trim_start_matches('/');
        tar.file(path, &f.contents, f.mode, uid).map_err(fail)?;
    }
    if let Some(cfg) = &plan.gitconfig {
        tar.file("etc/gitconfig", cfg.as_bytes(), 0o644, 0)
            .map_err(fail)?;
    }
    for skill in &plan.skills {
        let (name, src) = if skill.starts_with('/') {
            let p = std::path::PathBuf::from(skill);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p)
        } else {
            (skill.clone(), skills_root.join(skill))
        };
        if !src.is_dir() {
            return Err(BackendError::new(
                Step::Provision,
                format!(
                    "skill '{skill}' is not a directory at {}; create it or fix spec.skills",
                    src.display()
                ),
            ));
        }
        let dst = format!("{}/{name}", plan.skills_dir.trim_matches('/'));
        tar.host_tree(&src, &dst, uid, true).map_err(|e| {
            BackendError::new(Step::Provision, format!("copying skill '{skill}': {e}"))
        })?;
    }
    if let Some(ws) = plan.workspace.as_ref().filter(|w| w.copy.unwrap_or(true)) {
        tar.host_tree(
            std::path::Path::new(&ws.host_path),
            WORKSPACE.trim_start_matches('/'),
            uid,
            ws.include_git.unwrap_or(false),
        )
        .map_err(|e| {
            BackendError::new(
                Step::Provision,
                format!("copying workspace {}: {e}", ws.host_path),
            )
        })?;
    }
    tar.finish().map_err(fail)
}
