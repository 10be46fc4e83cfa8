//! `template: custom`: any harness, as an image or a Dockerfile and the command a session runs.

use bb_crds::provider::ProviderTemplate;

use super::{AgentView, Provider};
use crate::backend::ImageSource;

#[derive(Debug, Clone)]
pub struct CustomProvider {
    pub(super) image: ImageSource,
    pub(super) command: Vec<String>,
}

impl Provider for CustomProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Custom
    }
    fn image(&self) -> ImageSource {
        self.image.clone()
    }
    fn attach_command(&self, _agent: &AgentView) -> Vec<String> {
        self.command.clone()
    }
}
