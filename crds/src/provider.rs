//! The agent provider block of a Bottle: which harness runs (claude, codex, pi, or a custom
//! image), its credentials, and the Pi model settings with the reference's keys and defaults.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderTemplate {
    #[default]
    Claude,
    Codex,
    Pi,
    Custom,
    /// A harness installed on the runner under `$BOT_BOTTLE_HOME/contrib/<plugin>/`.
    Plugin,
}

impl ProviderTemplate {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderTemplate::Claude => "claude",
            ProviderTemplate::Codex => "codex",
            ProviderTemplate::Pi => "pi",
            ProviderTemplate::Custom => "custom",
            ProviderTemplate::Plugin => "plugin",
        }
    }
}

/// Which agent harness the bottle runs. Replaced whole by a child bottle that sets it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentProvider {
    /// `claude` (default), `codex`, `pi`, `custom` or `plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ProviderTemplate>,
    /// The runner's harness plugin, `$BOT_BOTTLE_HOME/contrib/<plugin>/` (`plugin` only, and
    /// required there): a `provider.yaml` and a `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Image to run (`custom` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Dockerfile on the controller host to build the agent image from (any template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Command a session runs (`custom` only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// How the Agent's prompt reaches `command` (`custom` only): a flag before the prompt
    /// file's path, or one argument. Without it the prompt is only provisioned, at
    /// `/etc/bot-bottle/prompt.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_arg: Option<PromptArg>,
    /// Provider credential the sidecar injects (claude: OAuth token for api.anthropic.com).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<SecretSource>,
    /// Forward the host's codex login into the sidecar (`codex` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_host_credentials: Option<bool>,
    /// Model settings (`pi` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<PiSettings>,
}

impl AgentProvider {
    pub fn template(&self) -> ProviderTemplate {
        self.template.unwrap_or_default()
    }
}

/// How a prompt is passed on a harness's command line: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptArg {
    /// This flag followed by the prompt file's path, e.g. `--message-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// One argument: this text with `{path}` replaced by the prompt file's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
}

impl PromptArg {
    /// `argv` with the prompt at `path` passed this way.
    pub fn apply(&self, argv: &mut Vec<String>, path: &str) {
        if let Some(f) = &self.flag {
            argv.extend([f.clone(), path.to_string()]);
        } else if let Some(t) = &self.argument {
            argv.push(t.replace("{path}", path));
        }
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        match (&self.flag, &self.argument) {
            (Some(_), Some(_)) => Some("set flag or argument, not both"),
            (None, None) => {
                Some("set flag (e.g. --message-file) or argument (e.g. \"Read {path}.\")")
            }
            (Some(f), None) if f.is_empty() => Some("flag must not be empty"),
            (None, Some(a)) if a.is_empty() => Some("argument must not be empty"),
            _ => None,
        }
    }
}

/// `max_tokens_field` values Pi understands.
pub const MAX_TOKENS_FIELDS: &[&str] = &["max_tokens", "max_completion_tokens"];

/// Pi's model configuration (written to `~/.pi/agent/models.json`). Every field is optional;
/// the defaults target a local Ollama.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiSettings {
    /// Provider name. Default `ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub provider: Option<String>,
    /// Absolute URL of the OpenAI-compatible API. Default `http://ollama:11434/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub base_url: Option<String>,
    /// Pi API flavour. Default `openai-completions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub api: Option<String>,
    /// Literal API key, written into the agent (not secret). Excludes `apiKeyFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub api_key: Option<String>,
    /// Secret API key the sidecar injects; the agent sees `egress-placeholder`. Excludes `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_from: Option<SecretSource>,
    /// Model ids. Default `[qwen2.5-coder:7b]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub models: Option<Vec<String>>,
    /// Model context window in tokens. Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<i64>,
    /// Reply budget in tokens. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i64>,
    /// `max_tokens` (default) or `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_field: Option<String>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_developer_role: Option<bool>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_reasoning_effort: Option<bool>,
}

impl PiSettings {
    pub const DEFAULT_PROVIDER: &'static str = "ollama";
    pub const DEFAULT_BASE_URL: &'static str = "http://ollama:11434/v1";
    pub const DEFAULT_API: &'static str = "openai-completions";
    pub const DEFAULT_MODEL: &'static str = "qwen2.5-coder:7b";
    pub const DEFAULT_CONTEXT_WINDOW: i64 = 4096;
    pub const DEFAULT_MAX_TOKENS: i64 = 1024;

    pub fn provider(&self) -> &str {
        self.provider.as_deref().unwrap_or(Self::DEFAULT_PROVIDER)
    }
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(Self::DEFAULT_BASE_URL)
    }
    pub fn context_window(&self) -> i64 {
        self.context_window.unwrap_or(Self::DEFAULT_CONTEXT_WINDOW)
    }
    pub fn max_tokens(&self) -> i64 {
        self.max_tokens.unwrap_or(Self::DEFAULT_MAX_TOKENS)
    }
    /// What Pi is told the window is: it compacts input to this, so the reply budget is
    /// reserved out of it (never below 1).
    pub fn effective_context_window(&self) -> i64 {
        (self.context_window() - self.max_tokens()).max(1)
    }
}
