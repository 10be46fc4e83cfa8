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
    let hash = marker_contents(inputs_hash);
    format!(
        "b=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/ssl/certs && \
         {{ grep -qF \"$(sed -n 2p /etc/bot-bottle/ca.crt)\" $b 2>/dev/null || cat /etc/bot-bottle/ca.crt >> $b; }} && \
         printf %s {hash} > {MARKER}"
    )
}

/// What the marker holds for `inputs_hash`: a hex digest or `POOL_MEMBER`; anything else is
/// dropped rather than quoted into a script.
fn marker_contents(inputs_hash: &str) -> String {
    inputs_hash
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The inputs hash a marker's contents name (an empty marker, from before markers held one,
/// matches no plan).
pub fn marker_hash(contents: &[u8]) -> String {
    String::from_utf8_lossy(contents).trim().to_string()
}

/// The archive (rooted at `/`) that provisions an agent for `plan`, files owned by `uid`; the
/// finish script (`finish_script`) completes it.
pub fn archive(
    plan: &AgentPlan,
    ca_cert_pem: &str,
    uid: u64,
    skills_root: &Path,
) -> Result<Vec<u8>, BackendError> {
    build(plan, ca_cert_pem, uid, skills_root, false)
}

/// The archive for an agent its runtime saw provisioned before under the same bottle CA (a
/// claimed pool member): the CA is in its system store already, so nothing needs running, and
/// the marker is the archive's last entry instead of the finish script's last step.
pub fn redelivery_archive(
    plan: &AgentPlan,
    ca_cert_pem: &str,
    uid: u64,
    skills_root: &Path,
) -> Result<Vec<u8>, BackendError> {
    build(plan, ca_cert_pem, uid, skills_root, true)
}

fn build(
    plan: &AgentPlan,
    ca_cert_pem: &str,
    uid: u64,
    skills_root: &Path,
    marker: bool,
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
    if marker {
        let hash = marker_contents(&plan.inputs_hash);
        tar.file(MARKER.trim_start_matches('/'), hash.as_bytes(), 0o644, 0)
            .map_err(fail)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ws: &Path) -> AgentPlan {
        AgentPlan {
            image: crate::ImageSource::Reference("img".into()),
            command: vec![],
            env: Default::default(),
            secret_env: Default::default(),
            runtime: Default::default(),
            prompt: Some("p".into()),
            workspace: Some(bb_crds::agent::Workspace {
                host_path: ws.display().to_string(),
                ..Default::default()
            }),
            gitconfig: None,
            dirs: vec![],
            files: vec![],
            credential_files: vec![],
            skills: vec![],
            skills_dir: "/s".into(),
            container_hash: String::new(),
            inputs_hash: "abc123; rm -rf /".into(),
        }
    }

    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        use std::io::Read;
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read");
                (path, data)
            })
            .collect()
    }

    /// Delivering again writes the marker as the very last entry, after the workspace, so a
    /// copy cut short never reads as provisioned; the first delivery leaves it to the script.
    /// Whatever the hash holds, only its safe characters reach the marker or the script.
    #[test]
    fn a_redelivery_ends_with_its_marker_and_a_first_delivery_has_none() {
        let ws = tempfile::tempdir().expect("tempdir");
        std::fs::write(ws.path().join("f.txt"), "x").expect("write");
        let p = plan(ws.path());
        let again =
            entries(&redelivery_archive(&p, "CA", 1000, Path::new("/none")).expect("archive"));
        let (last, contents) = again.last().expect("entries");
        assert_eq!(last, MARKER.trim_start_matches('/'));
        assert_eq!(contents, b"abc123rm-rf");
        assert!(
            again.iter().any(|(p, _)| p == "workspace/f.txt"),
            "{again:?}"
        );
        let first = entries(&archive(&p, "CA", 1000, Path::new("/none")).expect("archive"));
        assert!(
            !first
                .iter()
                .any(|(p, _)| p == MARKER.trim_start_matches('/'))
        );
        assert!(
            finish_script(&p.inputs_hash)
                .ends_with("printf %s abc123rm-rf > /etc/bot-bottle/provisioned")
        );
    }
}
