//! Which API server a verb talks to: the local control plane in the home directory by default,
//! or a cluster chosen with `--kubeconfig` / `--context`; and the namespace (`-n`).

use std::path::PathBuf;

use crate::exit::{CliError, Kind};

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Home of the local control plane (default: $BOT_BOTTLE_HOME, else ~/.bot-bottle).
    #[arg(long, value_name = "DIR", global = true)]
    pub home: Option<PathBuf>,
    /// Talk to the cluster in this kubeconfig instead of the local control plane.
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of --kubeconfig (default: its current context).
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// Namespace of the Agent (default: default).
    #[arg(short = 'n', long, value_name = "NAME", global = true)]
    pub namespace: Option<String>,
}

impl Target {
    pub fn home_dir(&self) -> Result<PathBuf, CliError> {
        bb_home::resolve(self.home.clone()).map_err(|e| CliError::new(Kind::Usage, e.to_string()))
    }

    pub fn namespace(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }

    /// `client`, starting the local control plane in the background first when this targets
    /// it and it is not running (kubectl-style verbs that only talk to the API).
    pub async fn client_autostart(&self) -> Result<kube::Client, CliError> {
        if self.kubeconfig.is_none() {
            super::background::ensure_running(&self.home_dir()?)?;
        }
        self.client().await
    }

    /// `client` when the target answers without being started: a named cluster, or the local
    /// control plane when it runs. `None` otherwise (a client-side dry run starts nothing).
    pub async fn client_if_running(&self) -> Result<Option<kube::Client>, CliError> {
        if self.kubeconfig.is_none() && super::background::status(&self.home_dir()?).is_none() {
            return Ok(None);
        }
        self.client().await.map(Some)
    }

    pub async fn client(&self) -> Result<kube::Client, CliError> {
        let cfg = self.config().await?;
        kube::Client::try_from(cfg).map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))
    }

    /// A client for the session endpoint `url` of the runner that holds `agent`, with the
    /// kubeconfig's credentials. Its trust is the kubeconfig's for a local control plane (whose
    /// runner serves with the control plane's CA); a cluster runner's CA is read from its
    /// heartbeat Lease, and the runner asks the cluster about the credentials.
    pub async fn runner_client(
        &self,
        agent: &bb_crds::Agent,
        url: &str,
    ) -> Result<kube::Client, CliError> {
        let mut cfg = self.config().await?;
        if let Some(runner) = agent.status.as_ref().and_then(|s| s.runner.as_deref()) {
            let api = kube::Client::try_from(cfg.clone())
                .map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))?;
            let trust = bb_runner::sessions::client::runner_trust(&api, runner)
                .await
                .map_err(|e| CliError::api("", e))?;
            match trust {
                Some(ders) => cfg.root_cert = Some(ders),
                None => {
                    return Err(CliError::new(
                        Kind::Unavailable,
                        format!(
                            "runner {runner} publishes no session CA in its Lease (bot-bottle-system/runner-{runner}); is it running?"
                        ),
                    ));
                }
            }
        }
        cfg.cluster_url = url.parse().map_err(|e| {
            CliError::new(
                Kind::Unavailable,
                format!("the Agent's status.sessionEndpoint '{url}' is not a URL: {e}"),
            )
        })?;
        kube::Client::try_from(cfg).map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))
    }

    async fn config(&self) -> Result<kube::Config, CliError> {
        let path = match &self.kubeconfig {
            Some(p) => p.clone(),
            None => self.home_dir()?.join("kubeconfig"),
        };
        if !path.is_file() {
            return Err(CliError::new(
                Kind::Unavailable,
                format!(
                    "no kubeconfig at {}: the local control plane is not running; `bbctl controller start` starts it (as do apply, get and run)",
                    path.display()
                ),
            ));
        }
        let kc = kube::config::Kubeconfig::read_from(&path)
            .map_err(|e| CliError::new(Kind::Usage, format!("{}: {e}", path.display())))?;
        let opts = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| CliError::new(Kind::Usage, format!("{}: {e}", path.display())))
    }
}

/// `agent/NAME`, `agents/NAME`, `ag/NAME` or a bare `NAME`.
/// A kind as typed, without the group kubectl's `-o name` adds: `agent.bot-bottle.dev` and
/// `agent.v1alpha1.bot-bottle.dev` are `agent`.
pub fn bare_kind(kind: &str) -> &str {
    let Some(k) = kind.strip_suffix(".bot-bottle.dev") else {
        return kind;
    };
    k.strip_suffix(&format!(".{}", bb_crds::VERSION))
        .unwrap_or(k)
}

pub fn agent_name(arg: &str) -> Result<String, CliError> {
    let name = match arg.split_once('/').map(|(k, n)| (bare_kind(k), n)) {
        Some(("agent" | "agents" | "ag", n)) => n,
        Some((kind, _)) => {
            return Err(CliError::new(
                Kind::Usage,
                format!("'{arg}': only agents have sessions (use agent/NAME), not '{kind}'"),
            ));
        }
        None => arg,
    };
    if name.is_empty() {
        return Err(CliError::new(
            Kind::Usage,
            format!("'{arg}': missing the Agent's name"),
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        assert_eq!(agent_name("agent/dev").ok().as_deref(), Some("dev"));
        assert_eq!(agent_name("ag/dev").ok().as_deref(), Some("dev"));
        assert_eq!(
            agent_name("agent.bot-bottle.dev/dev").ok().as_deref(),
            Some("dev")
        );
        assert_eq!(
            agent_name("agents.v1alpha1.bot-bottle.dev/dev")
                .ok()
                .as_deref(),
            Some("dev")
        );
        assert_eq!(agent_name("dev").ok().as_deref(), Some("dev"));
        let e = agent_name("bottle/dev")
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("only agents"), "{e}");
        assert!(agent_name("agent/").is_err());
    }
}
