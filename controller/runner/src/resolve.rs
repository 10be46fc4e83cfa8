//! The step after planning, with I/O of its own: reads what a `Plan` only names (Secrets, the
//! runner's environment, static key files, a forwarded login) and mints git-gate deploy keys.

use std::collections::BTreeMap;

use bb_backend::{ProvisionFile, SecretBytes, SidecarPlan};
use bb_crds::Agent;

use crate::git_gate;
use crate::plan::{EnvSecret, Plan};
use crate::provider::Provider;
use crate::secrets::{self, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Secret(#[from] SecretError),
    /// A forge would not mint a git-gate deploy key; the Agent waits and retries.
    #[error("{0}")]
    DeployKey(String),
}

/// A plan's secrets, read.
#[derive(Debug)]
pub struct Resolved {
    /// The sidecar's policy and its token, key and config files.
    pub sidecar: SidecarPlan,
    /// The agent's secret environment (it reaches sessions, never the container's config).
    pub secret_env: BTreeMap<String, SecretBytes>,
    /// Placeholder copies of a login forwarded from the runner's host.
    pub credential_files: Vec<ProvisionFile>,
}

/// Reads every secret `plan` names for `agent`, and mints its deploy keys.
pub async fn resolve(
    client: &kube::Client,
    agent: &Agent,
    plan: &Plan,
    provider: &dyn Provider,
) -> Result<Resolved, ResolveError> {
    let mut files = BTreeMap::new();
    for (file, source) in &plan.secrets.route_tokens {
        files.insert(file.clone(), secrets::resolve(client, source).await?);
    }
    let repos = &plan.secrets.git_repos;
    if !repos.is_empty() {
        files.insert(
            git_gate::CONFIG_FILE.to_string(),
            SecretBytes::new(git_gate::sidecar_config(repos).into_bytes()),
        );
        files.extend(git_gate::static_keys(repos)?);
        let minted = git_gate::gitea::keys(client, agent, repos)
            .await
            .map_err(|e| match e {
                git_gate::gitea::ForgeError::Secret(s) => ResolveError::Secret(s),
                other => ResolveError::DeployKey(other.to_string()),
            })?;
        files.extend(minted);
    }
    let mut secret_env = BTreeMap::new();
    for (name, from) in &plan.secrets.env {
        let value = match from {
            EnvSecret::SecretKey(sel) => secrets::secret_key(client, sel).await?,
            EnvSecret::HostEnv(var) => secrets::host_env(var)?,
        };
        secret_env.insert(name.clone(), value);
    }
    Ok(Resolved {
        sidecar: SidecarPlan {
            policy_yaml: plan.policy_yaml.clone(),
            secret_files: files,
            supervise: plan.supervise,
        },
        secret_env,
        credential_files: provider.credential_files()?,
    })
}
