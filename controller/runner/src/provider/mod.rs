//! The agent-provider seam: what a harness (claude, codex, pi, custom) contributes to an Agent:
//! its image, env (with placeholders for injected credentials), directories and files to
//! provision, egress routes, and the argv a session attaches or resumes with.

mod claude;
mod codex;
mod custom;
mod pi;
mod plugin;

use std::collections::BTreeMap;

use bb_crds::Agent;
use bb_crds::agent::Color;
use bb_crds::egress::EgressRoute;
use bb_crds::provider::{AgentProvider, ProviderTemplate};

use bb_backend::ImageSource;
pub use bb_backend::{ProvisionDir, ProvisionFile};
pub use claude::ClaudeProvider;
pub use codex::CodexProvider;
pub use custom::CustomProvider;
pub use pi::PiProvider;
pub use plugin::{PluginManifest, PluginProvider, contrib_root, set_contrib_root};

/// The agent user's home in every provider image (uid 1000, user `agent`).
pub const AGENT_HOME: &str = "/home/agent";
/// Where the Agent's workspace is copied.
pub const WORKSPACE: &str = "/workspace";
/// Where the Agent's prompt is provisioned (root-owned, readable).
pub const PROMPT_PATH: &str = "/etc/bot-bottle/prompt.md";
/// What the agent holds where the sidecar injects a real credential.
pub const PLACEHOLDER: &str = "egress-placeholder";

/// What of an Agent its provider's files and argv depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentView<'a> {
    pub label: Option<&'a str>,
    pub color: Option<Color>,
    pub prompt: Option<&'a str>,
    /// The supervise MCP server the harness registers, when the Bottle runs one.
    pub supervise_url: Option<&'a str>,
}

impl<'a> AgentView<'a> {
    pub fn of(agent: &'a Agent) -> AgentView<'a> {
        AgentView {
            label: agent.spec.label.as_deref(),
            color: agent.spec.color,
            prompt: agent.spec.prompt.as_deref().filter(|p| !p.is_empty()),
            supervise_url: None,
        }
    }
}

/// One harness. Implementations are pure: they describe, the backend does.
pub trait Provider: Send + Sync {
    fn template(&self) -> ProviderTemplate;
    fn image(&self) -> ImageSource;
    /// Env the provider needs inside the agent (placeholders only, never real credentials).
    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Directories under the agent's home, owned by the agent user.
    fn dirs(&self) -> Vec<ProvisionDir> {
        Vec::new()
    }
    /// Files owned by the agent user.
    fn files(&self, _agent: &AgentView) -> Vec<ProvisionFile> {
        Vec::new()
    }
    /// Files derived from a login on the runner host (placeholder copies of forwarded
    /// credentials): the one hook that reads the host, so it runs where secrets resolve.
    fn credential_files(&self) -> Result<Vec<ProvisionFile>, crate::secrets::SecretError> {
        Ok(Vec::new())
    }
    /// Routes the provider's own traffic needs (e.g. its model API, with injected auth). A
    /// Bottle route for the same host takes precedence.
    fn routes(&self) -> Vec<EgressRoute> {
        Vec::new()
    }
    /// Where the harness looks for skills inside the agent.
    fn skills_dir(&self) -> String {
        "/etc/bot-bottle/skills".into()
    }
    /// The argv an attached session runs (the prompt passed the provider's way).
    fn attach_command(&self, agent: &AgentView) -> Vec<String>;
    /// The argv that continues the previous conversation.
    fn resume_command(&self, agent: &AgentView) -> Vec<String> {
        self.attach_command(agent)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("custom provider needs an image or a dockerfile")]
    NoImage,
    #[error("{0}")]
    Plugin(String),
}

/// `rel` under the agent's home.
pub(crate) fn home(rel: &str) -> String {
    format!("{AGENT_HOME}/{rel}")
}

/// Directories under the agent's home (`rel`, mode), owned by the agent user.
pub(crate) fn home_dirs(entries: &[(&str, u32)]) -> Vec<ProvisionDir> {
    entries
        .iter()
        .map(|(rel, mode)| ProvisionDir {
            guest_path: home(rel),
            mode: *mode,
        })
        .collect()
}

/// The provider a resolved Bottle runs.
pub fn of_bottle(resolved: &bb_crds::ResolvedBottle) -> Result<Box<dyn Provider>, ProviderError> {
    for_bottle(&resolved.spec.agent_provider.clone().unwrap_or_default())
}

/// The provider a (validated, resolved) Bottle asks for.
pub fn for_bottle(p: &AgentProvider) -> Result<Box<dyn Provider>, ProviderError> {
    match p.template() {
        ProviderTemplate::Custom => {
            let image = match (&p.image, &p.dockerfile) {
                (Some(r), _) => ImageSource::Reference(r.clone()),
                (None, Some(d)) => ImageSource::Dockerfile(d.clone()),
                (None, None) => return Err(ProviderError::NoImage),
            };
            Ok(Box::new(CustomProvider {
                image,
                command: p.command.clone().unwrap_or_default(),
                prompt_arg: p.prompt_arg.clone(),
            }))
        }
        ProviderTemplate::Claude => Ok(Box::new(ClaudeProvider {
            auth_token: p.auth_token.clone(),
            dockerfile: p.dockerfile.clone(),
        })),
        ProviderTemplate::Plugin => {
            let name = p.plugin.as_deref().ok_or_else(|| {
                ProviderError::Plugin("template 'plugin' needs spec.agentProvider.plugin".into())
            })?;
            Ok(Box::new(PluginProvider::load(
                &contrib_root(),
                name,
                p.dockerfile.as_deref(),
            )?))
        }
        ProviderTemplate::Pi => Ok(Box::new(PiProvider {
            settings: p.settings.clone().unwrap_or_default(),
            dockerfile: p.dockerfile.clone(),
        })),
        ProviderTemplate::Codex => Ok(Box::new(CodexProvider {
            forward_host_credentials: p.forward_host_credentials.unwrap_or(false),
            dockerfile: p.dockerfile.clone(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_provider_describes_its_container() {
        let p: AgentProvider = serde_json::from_value(serde_json::json!({"template": "custom", "dockerfile": "/d/Dockerfile", "command": ["bash", "-l"]}))
            .expect("provider");
        let prov = for_bottle(&p).expect("custom");
        assert_eq!(
            prov.image(),
            ImageSource::Dockerfile("/d/Dockerfile".into())
        );
        assert_eq!(
            prov.attach_command(&AgentView::default()),
            vec!["bash", "-l"]
        );
        assert!(prov.routes().is_empty() && prov.env().is_empty());
        let p: AgentProvider = serde_json::from_value(serde_json::json!({"template": "custom", "image": "h:1", "command": ["h"], "promptArg": {"argument": "Read {path}."}}))
            .expect("provider");
        let prov = for_bottle(&p).expect("custom");
        let view = AgentView {
            prompt: Some("x"),
            supervise_url: None,
            ..Default::default()
        };
        assert_eq!(
            prov.attach_command(&view),
            ["h", "Read /etc/bot-bottle/prompt.md."]
        );
        assert_eq!(prov.attach_command(&AgentView::default()), ["h"]);
        let claude = AgentProvider::default();
        assert_eq!(
            for_bottle(&claude).map(|p| p.template()).ok(),
            Some(ProviderTemplate::Claude)
        );
        let codex: AgentProvider =
            serde_json::from_value(serde_json::json!({"template": "codex"})).expect("provider");
        assert_eq!(
            for_bottle(&codex).map(|p| p.template()).ok(),
            Some(ProviderTemplate::Codex)
        );
    }
}
