//! `template: pi`: the Pi coding agent against an OpenAI-compatible model server (a local
//! Ollama by default): `~/.pi/agent/models.json` from the Bottle's `settings`, the prompt as
//! `APPEND_SYSTEM.md`, and the model server's host as the provider's route.

use bb_crds::common::SecretSource;
use bb_crds::egress::{AuthScheme, EgressRoute, RouteAuth};
use bb_crds::provider::{PiSettings, ProviderTemplate};
use serde_json::json;

use super::{AgentView, PLACEHOLDER, Provider, home, home_dirs};
use bb_backend::{BuiltinImage, ImageSource, ProvisionDir, ProvisionFile};

pub const DOCKERFILE: &str = include_str!("../../../../images/pi/Dockerfile");

#[derive(Debug, Clone)]
pub struct PiProvider {
    pub(super) settings: PiSettings,
    pub(super) dockerfile: Option<String>,
}

/// The model server as scheme, host and port (validation has checked it is an absolute
/// `http(s)://` URL; anything else yields no route rather than a wrong one).
fn endpoint(base_url: &str) -> Option<(bool, String, u16)> {
    let uri: http::Uri = base_url.parse().ok()?;
    let tls = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Some((tls, host, port))
}

impl PiProvider {
    fn api_key_source(&self) -> Option<&SecretSource> {
        self.settings.api_key_from.as_ref()
    }

    /// `~/.pi/agent/models.json`, with the reference's keys, defaults and arithmetic.
    pub fn models_json(&self) -> serde_json::Value {
        let s = &self.settings;
        let provider = s.provider();
        let models: Vec<serde_json::Value> = s
            .models
            .clone()
            .unwrap_or_else(|| vec![PiSettings::DEFAULT_MODEL.to_string()])
            .into_iter()
            .map(|id| {
                json!({
                    "id": id, "name": id,
                    "contextWindow": s.effective_context_window(),
                    "maxTokens": s.max_tokens(),
                })
            })
            .collect();
        let mut entry = json!({
            "baseUrl": s.base_url(),
            "api": s.api.as_deref().unwrap_or(PiSettings::DEFAULT_API),
            "compat": {
                "supportsDeveloperRole": s.supports_developer_role.unwrap_or(false),
                "supportsReasoningEffort": s.supports_reasoning_effort.unwrap_or(false),
                "maxTokensField": s.max_tokens_field.as_deref().unwrap_or("max_tokens"),
            },
            "models": models,
        });
        let key = match (&s.api_key, self.api_key_source()) {
            (Some(k), _) => Some(k.as_str()),
            (None, Some(_)) => Some(PLACEHOLDER),
            (None, None) if provider == PiSettings::DEFAULT_PROVIDER => Some("ollama"),
            (None, None) => None,
        };
        if let Some(k) = key {
            entry["apiKey"] = json!(k);
        }
        json!({"providers": {provider: entry}})
    }
}

impl Provider for PiProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Pi
    }

    fn image(&self) -> ImageSource {
        if let Some(d) = &self.dockerfile {
            return ImageSource::Dockerfile(d.clone());
        }
        ImageSource::Builtin(BuiltinImage {
            name: "pi",
            dockerfile: DOCKERFILE,
            harness_binary: "pi",
            source_arg: "PI_SOURCE",
        })
    }

    fn dirs(&self) -> Vec<ProvisionDir> {
        home_dirs(&[
            (".pi", 0o755),
            (".pi/agent", 0o700),
            (".pi/agent/skills", 0o755),
        ])
    }

    fn files(&self, agent: &AgentView) -> Vec<ProvisionFile> {
        let mut files = vec![ProvisionFile {
            guest_path: home(".pi/agent/models.json"),
            contents: serde_json::to_vec_pretty(&self.models_json()).unwrap_or_default(),
            mode: 0o600,
        }];
        // Pi's --append-system-prompt takes text, not a path: the prompt goes where Pi
        // discovers an appended system prompt by itself.
        if let Some(p) = agent.prompt {
            files.push(ProvisionFile {
                guest_path: home(".pi/agent/APPEND_SYSTEM.md"),
                contents: p.as_bytes().to_vec(),
                mode: 0o600,
            });
        }
        files
    }

    /// The model server's host: plain HTTP and private addresses allowed when the URL is
    /// `http://` (a model server on the LAN), the API key injected only when it is a secret.
    fn routes(&self) -> Vec<EgressRoute> {
        let Some((tls, host, port)) = endpoint(self.settings.base_url()) else {
            return Vec::new();
        };
        let plain = !tls;
        vec![EgressRoute {
            host,
            ports: Some(vec![port]),
            plain_http: plain.then_some(true),
            allow_private_addresses: plain.then_some(true),
            auth: self.api_key_source().map(|token| RouteAuth {
                scheme: AuthScheme::Bearer,
                token: token.clone(),
                allow_plaintext: plain.then_some(true),
            }),
            ..Default::default()
        }]
    }

    fn skills_dir(&self) -> String {
        home(".pi/agent/skills")
    }

    fn attach_command(&self, _agent: &AgentView) -> Vec<String> {
        let provider = self.settings.provider();
        let models = self
            .settings
            .models
            .clone()
            .unwrap_or_else(|| vec![PiSettings::DEFAULT_MODEL.to_string()]);
        vec![
            "pi".into(),
            "--models".into(),
            models
                .iter()
                .map(|m| format!("{provider}/{m}"))
                .collect::<Vec<_>>()
                .join(","),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi(settings: serde_json::Value) -> PiProvider {
        PiProvider {
            settings: serde_json::from_value(settings).expect("settings"),
            dockerfile: None,
        }
    }

    #[test]
    fn defaults_target_a_local_ollama() {
        let p = pi(json!({}));
        assert_eq!(
            p.models_json(),
            json!({"providers": {"ollama": {
                "baseUrl": "http://ollama:11434/v1", "api": "openai-completions",
                "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false, "maxTokensField": "max_tokens"},
                "models": [{"id": "qwen2.5-coder:7b", "name": "qwen2.5-coder:7b", "contextWindow": 3072, "maxTokens": 1024}],
                "apiKey": "ollama",
            }}})
        );
        assert_eq!(
            p.attach_command(&AgentView::default()),
            ["pi", "--models", "ollama/qwen2.5-coder:7b"]
        );
        let r = &p.routes()[0];
        assert_eq!(
            (
                r.host.as_str(),
                r.ports.clone(),
                r.plain_http,
                r.allow_private_addresses
            ),
            ("ollama", Some(vec![11434]), Some(true), Some(true))
        );
        assert!(r.auth.is_none(), "no key source, no injection");
    }

    #[test]
    fn a_secret_key_is_a_placeholder_inside_and_injected_on_the_route() {
        let p = pi(json!({
            "provider": "openrouter", "baseUrl": "https://openrouter.ai/api/v1",
            "apiKeyFrom": {"hostEnv": "OPENROUTER_API_KEY"},
            "models": ["a/b", "c/d"], "contextWindow": 100, "maxTokens": 500,
        }));
        let j = p.models_json();
        assert_eq!(j["providers"]["openrouter"]["apiKey"], PLACEHOLDER);
        assert_eq!(
            j["providers"]["openrouter"]["models"][1]["contextWindow"], 1,
            "never below 1"
        );
        let r = &p.routes()[0];
        assert_eq!(r.host, "openrouter.ai");
        assert_eq!(r.ports, Some(vec![443]));
        assert_eq!((r.plain_http, r.allow_private_addresses), (None, None));
        let auth = r.auth.clone().expect("auth");
        assert_eq!(auth.scheme, AuthScheme::Bearer);
        assert_eq!(auth.allow_plaintext, None);
        assert_eq!(
            p.attach_command(&AgentView::default()),
            ["pi", "--models", "openrouter/a/b,openrouter/c/d"]
        );
    }

    #[test]
    fn literal_keys_and_unnamed_providers() {
        let j = pi(json!({"provider": "lan", "apiKey": "not-secret"})).models_json();
        assert_eq!(j["providers"]["lan"]["apiKey"], "not-secret");
        let j = pi(json!({"provider": "lan"})).models_json();
        assert!(j["providers"]["lan"].get("apiKey").is_none());
    }

    #[test]
    fn the_prompt_is_the_appended_system_prompt() {
        let p = pi(json!({}));
        let files = p.files(&AgentView {
            prompt: Some("be brief"),
            supervise_url: None,
            ..Default::default()
        });
        let f = files
            .iter()
            .find(|f| f.guest_path == "/home/agent/.pi/agent/APPEND_SYSTEM.md")
            .expect("APPEND_SYSTEM.md");
        assert_eq!((f.contents.as_slice(), f.mode), (&b"be brief"[..], 0o600));
        assert_eq!(p.files(&AgentView::default()).len(), 1);
        assert_eq!(p.skills_dir(), "/home/agent/.pi/agent/skills");
    }
}
