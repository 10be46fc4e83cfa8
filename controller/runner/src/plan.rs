//! Turns an Agent and its resolved Bottle into what the backend realises: the sidecar's policy
//! (auth resolved to token files) and the agent container's spec, each with the hash that tells
//! the reconciler whether a running piece is current.

use std::collections::BTreeMap;

use bb_crds::common::SecretSource;
use bb_crds::egress::EgressSpec;
use bb_crds::{Agent, ResolvedBottle};

use crate::git_gate;
use crate::provider::{self, Provider, ProviderError};
use crate::secrets::{self, SecretError};
use bb_backend::hash::sha256_hex;
use bb_backend::{AgentPlan, ImageSource, SecretBytes, SidecarPlan};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// A forge would not mint a git-gate deploy key; the Agent waits and retries.
    #[error("{0}")]
    DeployKey(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// The sidecar's policy file for a resolved Bottle, each route's auth naming its token file
/// (`route-N-token`), and the secret source behind each file. Pure: nothing is resolved, so the
/// Bottle reconciler computes the same text (and hash) the Agent's sidecar will load.
pub fn sidecar_policy(
    resolved: &ResolvedBottle,
    provider: &dyn Provider,
) -> Result<(String, Vec<(String, SecretSource)>), PlanError> {
    policy_with_routes(resolved, provider.routes())
}

/// `sidecar_policy` with the provider's routes given (none when it cannot be planned).
/// Adds the provider's routes for hosts the Bottle has none for: the Bottle's own route for a
/// provider's host wins (it may narrow paths or add DLP).
fn with_provider_routes(
    routes: &mut Vec<bb_crds::egress::EgressRoute>,
    extra: Vec<bb_crds::egress::EgressRoute>,
) {
    for route in extra {
        if !routes.iter().any(|r| r.host == route.host) {
            routes.push(route);
        }
    }
}

/// How many routes a sidecar of this Bottle enforces: its own and its provider's.
pub fn route_count(resolved: &ResolvedBottle) -> usize {
    let mut routes = resolved
        .spec
        .egress
        .as_ref()
        .map(|e| e.routes().to_vec())
        .unwrap_or_default();
    with_provider_routes(
        &mut routes,
        provider(resolved).map(|p| p.routes()).unwrap_or_default(),
    );
    routes.len()
}

fn policy_with_routes(
    resolved: &ResolvedBottle,
    extra: Vec<bb_crds::egress::EgressRoute>,
) -> Result<(String, Vec<(String, SecretSource)>), PlanError> {
    let mut egress: EgressSpec = resolved.spec.egress.clone().unwrap_or_default();
    let routes = egress.routes.get_or_insert_with(Vec::new);
    with_provider_routes(routes, extra);
    if routes.is_empty() {
        egress.routes = None;
    }
    let mut sources = Vec::new();
    for (i, route) in egress.routes.iter_mut().flatten().enumerate() {
        if let Some(auth) = route.auth.as_mut() {
            let file = format!("route-{i}-token");
            let source = std::mem::replace(
                &mut auth.token,
                SecretSource {
                    token_file: Some(file.clone()),
                    ..Default::default()
                },
            );
            sources.push((file, source));
        }
    }
    let policy_yaml =
        serde_yaml::to_string(&egress).map_err(|e| PlanError::Internal(e.to_string()))?;
    // The sidecar will parse this with the same types; refuse to hand it something it rejects.
    bb_crds::policy::parse_sidecar_policy(&policy_yaml)
        .map_err(|e| PlanError::Internal(e.to_string()))?;
    Ok((policy_yaml, sources))
}

/// `status.resolvedPolicyHash` of a resolved Bottle: the hash of its sidecar policy text.
/// A provider this controller cannot run yet contributes no routes: no Agent of the Bottle can
/// start (its status says why), and the hash still identifies the Bottle's own policy.
pub fn bottle_policy_hash(resolved: &ResolvedBottle) -> Result<String, PlanError> {
    let extra = provider(resolved).map(|p| p.routes()).unwrap_or_default();
    let (policy_yaml, _) = policy_with_routes(resolved, extra)?;
    Ok(bb_crds::policy::policy_hash(policy_yaml.as_bytes()))
}

/// The sidecar policy with every route's auth pointing at a token file, and those files.
pub async fn sidecar(
    client: &kube::Client,
    agent: &Agent,
    resolved: &ResolvedBottle,
    provider: &dyn Provider,
) -> Result<SidecarPlan, PlanError> {
    let (policy_yaml, sources) = sidecar_policy(resolved, provider)?;
    let mut files = BTreeMap::new();
    for (file, source) in sources {
        files.insert(file, secrets::resolve(client, &source).await?);
    }
    let repos = git_gate::repos(resolved.spec.git_gate.as_ref());
    if !repos.is_empty() {
        files.insert(
            git_gate::CONFIG_FILE.to_string(),
            SecretBytes::new(git_gate::sidecar_config(&repos).into_bytes()),
        );
        files.extend(git_gate::static_keys(&repos)?);
        let minted = git_gate::gitea::keys(client, agent, &repos)
            .await
            .map_err(|e| match e {
                git_gate::gitea::ForgeError::Secret(s) => PlanError::Secret(s),
                other => PlanError::DeployKey(other.to_string()),
            })?;
        files.extend(minted);
    }
    Ok(SidecarPlan {
        policy_yaml,
        secret_files: files,
        supervise: resolved.spec.supervise(),
    })
}

/// The provider a resolved Bottle runs.
pub fn provider(resolved: &ResolvedBottle) -> Result<Box<dyn Provider>, PlanError> {
    Ok(provider::for_bottle(
        &resolved.spec.agent_provider.clone().unwrap_or_default(),
    )?)
}

/// The agent container for the Agent's provider.
pub async fn agent(
    client: &kube::Client,
    agent: &Agent,
    resolved: &ResolvedBottle,
    provider: &dyn Provider,
    supervise_url: Option<&str>,
) -> Result<AgentPlan, PlanError> {
    let image = provider.image();
    let view = provider::AgentView {
        supervise_url,
        ..provider::AgentView::of(agent)
    };
    let command = provider.attach_command(&view);
    let mut env = provider.env();
    if let Some(url) = supervise_url {
        env.insert("MCP_SUPERVISE_URL".into(), url.into());
    }
    let mut secret_env = BTreeMap::new();
    for var in resolved.spec.env() {
        match (&var.value, &var.value_from) {
            (Some(v), _) => {
                env.insert(var.name.clone(), v.clone());
            }
            (None, Some(from)) => {
                let value = if let Some(sel) = &from.secret_key_ref {
                    Some(secrets::secret_key(client, sel).await?)
                } else if let Some(h) = &from.host_env {
                    Some(secrets::host_env(&h.name)?)
                } else {
                    // Prompted values are asked for by the attached session, not the controller.
                    None
                };
                if let Some(v) = value {
                    secret_env.insert(var.name.clone(), v);
                }
            }
            (None, None) => {}
        }
    }
    let files = provider.files(&view);
    let credential_files = provider.credential_files()?;
    let runtime = resolved.spec.runtime.clone().unwrap_or_default();
    let gate = resolved.spec.git_gate.as_ref();
    let gitconfig = git_gate::agent_gitconfig(
        git_gate::identity(
            gate.and_then(|g| g.user.as_ref()),
            agent.spec.git_user.as_ref(),
        )
        .as_ref(),
        &git_gate::repos(gate),
    );
    let mut plan = AgentPlan {
        image,
        command,
        env,
        secret_env,
        runtime,
        prompt: agent.spec.prompt.clone(),
        workspace: agent.spec.workspace.clone(),
        gitconfig,
        dirs: provider.dirs(),
        files,
        credential_files,
        skills: agent.spec.skills.clone().unwrap_or_default(),
        skills_dir: provider.skills_dir(),
        container_hash: String::new(),
    };
    plan.container_hash = container_hash(&plan);
    Ok(plan)
}

/// The identity of the agent container: everything the container is made or provisioned from.
/// A change to any of it (prompt, skills, workspace and label included) gives a new container,
/// so an Agent reported Running at a generation runs exactly that generation's spec. Secret
/// values are left out (they reach sessions at exec time), their names are not; so are the
/// placeholder copies of a host login, which change whenever the host refreshes it.
pub fn container_hash(plan: &AgentPlan) -> String {
    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }
    fn image_key(image: &ImageSource) -> String {
        match image {
            ImageSource::Reference(r) => format!("ref:{r}"),
            ImageSource::Dockerfile(d) => format!("dockerfile:{d}"),
            ImageSource::Builtin(b) => format!(
                "builtin:{}:{}",
                b.name,
                sha256_hex(&[b.dockerfile.as_bytes()])
            ),
            // An approved capability waits for the agent's next start unless asked to restart
            // it: only then is it part of the running container's identity.
            ImageSource::Capability {
                base,
                dockerfile,
                restart,
            } => match restart {
                true => format!(
                    "{}+capability:{}",
                    image_key(base),
                    sha256_hex(&[dockerfile.as_bytes()])
                ),
                false => image_key(base),
            },
        }
    }
    let image_key = image_key(&plan.image);
    let secret_names: Vec<&str> = plan.secret_env.keys().map(String::as_str).collect();
    let dirs: Vec<String> = plan
        .dirs
        .iter()
        .map(|d| format!("{}:{:o}", d.guest_path, d.mode))
        .collect();
    let mut parts: Vec<Vec<u8>> = vec![
        image_key.into_bytes(),
        plan.command.join("\u{0}").into_bytes(),
        json(&plan.env),
        json(&plan.runtime),
        secret_names.join(",").into_bytes(),
        json(&plan.prompt),
        json(&plan.workspace),
        json(&plan.gitconfig),
        dirs.join(",").into_bytes(),
        plan.skills.join("\u{0}").into_bytes(),
        plan.skills_dir.clone().into_bytes(),
    ];
    for f in &plan.files {
        parts.push(format!("{}:{:o}", f.guest_path, f.mode).into_bytes());
        parts.push(f.contents.clone());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    sha256_hex(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb_backend::{ProvisionDir, ProvisionFile};

    fn base() -> AgentPlan {
        AgentPlan {
            image: ImageSource::Reference("img:1".into()),
            command: vec!["sh".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            runtime: Default::default(),
            prompt: Some("do it".into()),
            workspace: None,
            gitconfig: None,
            dirs: vec![ProvisionDir {
                guest_path: "/home/agent/.x".into(),
                mode: 0o700,
            }],
            files: vec![ProvisionFile {
                guest_path: "/home/agent/.x/label".into(),
                contents: b"blue".to_vec(),
                mode: 0o600,
            }],
            credential_files: Vec::new(),
            skills: vec!["review".into()],
            skills_dir: "/home/agent/.x/skills".into(),
            container_hash: String::new(),
        }
    }

    /// Everything the container is provisioned from is its identity: a change that left the
    /// hash alone would leave an Agent "Running" with its old prompt, skills or workspace.
    #[test]
    fn every_provisioned_input_changes_the_container_hash() {
        let h = container_hash(&base());
        type Change = Box<dyn Fn(&mut AgentPlan)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "image",
                Box::new(|p| p.image = ImageSource::Reference("img:2".into())),
            ),
            ("command", Box::new(|p| p.command.push("-c".into()))),
            (
                "env",
                Box::new(|p| {
                    p.env.insert("A".into(), "1".into());
                }),
            ),
            ("prompt", Box::new(|p| p.prompt = Some("do that".into()))),
            (
                "workspace",
                Box::new(|p| {
                    p.workspace = Some(bb_crds::agent::Workspace {
                        host_path: "/src".into(),
                        ..Default::default()
                    })
                }),
            ),
            (
                "gitconfig",
                Box::new(|p| p.gitconfig = Some("[user]\n\tname = n\n".into())),
            ),
            ("dirs", Box::new(|p| p.dirs[0].mode = 0o755)),
            (
                "file contents",
                Box::new(|p| p.files[0].contents = b"red".to_vec()),
            ),
            ("file mode", Box::new(|p| p.files[0].mode = 0o644)),
            ("skills", Box::new(|p| p.skills.push("more".into()))),
            (
                "skills dir",
                Box::new(|p| p.skills_dir = "/elsewhere".into()),
            ),
        ];
        for (what, change) in changes {
            let mut p = base();
            change(&mut p);
            assert_ne!(
                container_hash(&p),
                h,
                "{what} left the container hash unchanged"
            );
        }
        assert_eq!(container_hash(&base()), h, "the hash is not deterministic");
        // A refreshed host login is not a new container.
        let mut p = base();
        p.credential_files.push(ProvisionFile {
            guest_path: "/home/agent/.codex/auth.json".into(),
            contents: b"{\"last_refresh\": \"later\"}".to_vec(),
            mode: 0o600,
        });
        assert_eq!(
            container_hash(&p),
            h,
            "a host login refresh would replace the agent"
        );
    }
}
