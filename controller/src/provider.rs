//! The agent-provider seam: what a harness (claude, codex, pi, custom) contributes to an Agent:
//! its image, command, env (with placeholders for injected credentials), files to provision,
//! egress routes, and the argv a session attaches with.

use std::collections::BTreeMap;

use bb_crds::egress::EgressRoute;
use bb_crds::provider::{AgentProvider, ProviderTemplate};

use crate::backend::ImageSource;
pub use crate::backend::ProvisionFile;

/// One harness. Implementations are pure: they describe, the backend does.
pub trait Provider: Send + Sync {
    fn template(&self) -> ProviderTemplate;
    fn image(&self) -> ImageSource;
    fn command(&self) -> Vec<String>;
    /// Env the provider needs inside the agent (placeholders only, never real credentials).
    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    fn files(&self) -> Vec<ProvisionFile> {
        Vec::new()
    }
    /// Routes the provider's own traffic needs (e.g. its model API, with injected auth).
    fn routes(&self) -> Vec<EgressRoute> {
        Vec::new()
    }
    /// Where the harness looks for skills inside the agent.
    fn skills_dir(&self) -> String {
        "/etc/bot-bottle/skills".into()
    }
    /// The argv an attached session runs.
    fn attach_command(&self) -> Vec<String> {
        self.command()
    }
}

/// `template: custom`: an image or a Dockerfile, and a command.
#[derive(Debug, Clone)]
pub struct CustomProvider {
    image: ImageSource,
    command: Vec<String>,
}

impl Provider for CustomProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Custom
    }
    fn image(&self) -> ImageSource {
        self.image.clone()
    }
    fn command(&self) -> Vec<String> {
        self.command.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider '{0}' is not available yet: only the custom template runs in this release")]
    Unsupported(&'static str),
    #[error("custom provider needs an image or a dockerfile")]
    NoImage,
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
            }))
        }
        other => Err(ProviderError::Unsupported(other.as_str())),
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
        assert_eq!(prov.attach_command(), vec!["bash", "-l"]);
        assert!(prov.routes().is_empty() && prov.env().is_empty());
        let claude = AgentProvider::default();
        assert_eq!(
            for_bottle(&claude).err(),
            Some(ProviderError::Unsupported("claude"))
        );
    }
}
