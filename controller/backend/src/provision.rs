//! What provisioning puts into an agent, whatever the runtime: one tar archive (bottle CA,
//! prompt, provider files, skills, git identity, workspace) and the script that finishes it.

use std::path::Path;

use super::{AgentPlan, BackendError, Step};
use crate::archive::TarBuilder;

/// Where the workspace lands in the agent.
pub const WORKSPACE: &str = "/workspace";

/// The marker provisioning leaves last: it holds the inputs hash (`AgentPlan::inputs_hash`) of
/// what was delivered, so observing it says both whether and with what an agent was provisioned.
pub const MARKER: &str = "/etc/bot-bottle/provisioned";

/// The inputs hash of a warm pool's member: provisioned with everything of its Bottle and none
/// of an Agent's own inputs, which the Agent that claims it delivers without a new container.
pub const POOL_MEMBER: &str = "pool-member";

/// Run as root once the archive is unpacked. The system store too, so tools that ignore the
/// env variables trust the bottle CA: appending to the bundle is what every TLS stack reads
/// (and SSL_CERT_FILE points at); the copy in /usr/local/share/ca-certificates keeps it across
/// update-ca-certificates (running that tool instead costs about a second per start). The
/// marker comes last: an agent is provisioned only once everything before it is in place.
pub fn finish_script(inputs_hash: &str) -> String {
    // A hex digest or `POOL_MEMBER`; anything else is dropped rather than quoted.
    let hash: String = inputs_hash
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!(
        "b=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/ssl/certs && \
         {{ grep -qF \"$(sed -n 2p /etc/bot-bottle/ca.crt)\" $b 2>/dev/null || cat /etc/bot-bottle/ca.crt >> $b; }} && \
         printf %s {hash} > {MARKER}"
    )
}

/// The inputs hash a marker's contents name (an empty marker, from before markers held one,
/// matches no plan).
pub fn marker_hash(contents: &[u8]) -> String {
    String::from_utf8_lossy(contents).trim().to_string()
}

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
    for tree in copied_trees(plan, skills_root)? {
        tar.host_tree(&tree.src, &tree.at, uid, tree.include_git)
            .map_err(|e| {
                BackendError::new(Step::Provision, format!("copying {}: {e}", tree.what))
            })?;
    }
    tar.finish().map_err(fail)
}

/// A host directory provisioning copies into the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTree {
    pub src: std::path::PathBuf,
    /// Where it lands, relative to `/`.
    pub at: String,
    pub include_git: bool,
    /// How errors name it (`skill 'lint'`, `workspace /home/me/app`).
    pub what: String,
}

/// The host directories `plan` copies in: each skill, then the workspace (unless
/// `copy: false`). Archive and secret discovery both read this list, so discovery sees exactly
/// what is copied.
pub fn copied_trees(plan: &AgentPlan, skills_root: &Path) -> Result<Vec<CopiedTree>, BackendError> {
    let mut trees = Vec::new();
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
        trees.push(CopiedTree {
            src,
            at: format!("{}/{name}", plan.skills_dir.trim_matches('/')),
            include_git: true,
            what: format!("skill '{skill}'"),
        });
    }
    if let Some(ws) = plan.workspace.as_ref().filter(|w| w.copy.unwrap_or(true)) {
        trees.push(CopiedTree {
            src: std::path::PathBuf::from(&ws.host_path),
            at: WORKSPACE.trim_start_matches('/').to_string(),
            include_git: ws.include_git.unwrap_or(false),
            what: format!("workspace {}", ws.host_path),
        });
    }
    Ok(trees)
}
