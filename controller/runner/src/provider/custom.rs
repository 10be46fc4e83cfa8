//! `template: custom`: any harness, as an image or a Dockerfile, the command a session runs and
//! how the prompt reaches it.

use bb_crds::provider::{PromptArg, ProviderTemplate};

use super::{AgentView, PROMPT_PATH, Provider};
use bb_backend::ImageSource;

#[derive(Debug, Clone)]
pub struct CustomProvider {
    pub(super) image: ImageSource,
    pub(super) command: Vec<String>,
    pub(super) prompt_arg: Option<PromptArg>,
}

impl Provider for CustomProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Custom
    }
    fn image(&self) -> ImageSource {
        self.image.clone()
    }
    fn attach_command(&self, agent: &AgentView) -> Vec<String> {
        let mut argv = self.command.clone();
        if let (Some(p), Some(_)) = (&self.prompt_arg, agent.prompt) {
            p.apply(&mut argv, PROMPT_PATH);
        }
        argv
    }
}
