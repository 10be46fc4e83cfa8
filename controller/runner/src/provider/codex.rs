//! `template: codex`: Codex trusting its home and workspace, prompted to read the Agent's
//! prompt file, and (with `forwardHostCredentials`) logged in with the runner host's Codex
//! login: the sidecar injects it on the OpenAI hosts and the agent holds placeholders.

use base64::Engine;
use bb_crds::common::{HostJson, SecretSource};
use bb_crds::egress::{AuthScheme, EgressRoute, RouteAuth};
use bb_crds::provider::ProviderTemplate;
use serde_json::{Value, json};

use super::{
    AGENT_HOME, AgentView, PLACEHOLDER, PROMPT_PATH, Provider, WORKSPACE, home, home_dirs,
};
use crate::secrets::SecretError;
use bb_backend::{BuiltinImage, ImageSource, ProvisionDir, ProvisionFile};

pub const DOCKERFILE: &str = include_str!("../../../../images/codex/Dockerfile");
/// The hosts a forwarded login is injected on, and only those.
pub const CREDENTIAL_HOSTS: [&str; 2] = ["api.openai.com", "chatgpt.com"];
const BYPASS: &str = "--dangerously-bypass-approvals-and-sandbox";
const REMEDY: &str = "run `codex login` as the user running the controller (or set CODEX_HOME), or turn forwardHostCredentials off";

#[derive(Debug, Clone)]
pub struct CodexProvider {
    pub(super) forward_host_credentials: bool,
    pub(super) dockerfile: Option<String>,
}

/// The runner host's Codex login: `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`.
pub fn host_auth_path() -> std::path::PathBuf {
    match std::env::var_os("CODEX_HOME") {
        Some(h) => std::path::PathBuf::from(h).join("auth.json"),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".codex/auth.json"),
    }
}

/// The secret the sidecar injects: the login's API key, else its ChatGPT access token.
fn forwarded_token() -> SecretSource {
    SecretSource {
        host_json: Some(HostJson {
            path: host_auth_path(),
            pointers: vec!["/OPENAI_API_KEY".into(), "/tokens/access_token".into()],
            remedy: REMEDY.into(),
        }),
        ..Default::default()
    }
}

/// A JWT whose signature is replaced: Codex reads its claims (plan, account), but it proves
/// nothing to anyone.
fn unsigned(jwt: &str) -> String {
    let mut parts: Vec<&str> = jwt.split('.').collect();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(PLACEHOLDER);
    if parts.len() == 3 {
        parts[2] = &sig;
        parts.join(".")
    } else {
        PLACEHOLDER.to_string()
    }
}

/// The agent's `~/.codex/auth.json` for a host login: the same kind of login, every secret
/// replaced by the placeholder (the sidecar adds the real one on the wire).
pub fn placeholder_auth(host: &Value) -> Option<Value> {
    if host
        .get("OPENAI_API_KEY")
        .and_then(Value::as_str)
        .is_some_and(|k| !k.is_empty())
    {
        return Some(json!({"OPENAI_API_KEY": PLACEHOLDER}));
    }
    let tokens = host.get("tokens")?;
    tokens.get("access_token")?.as_str()?;
    let mut out = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": unsigned(tokens.get("id_token").and_then(Value::as_str).unwrap_or("")),
            "access_token": PLACEHOLDER,
            "refresh_token": PLACEHOLDER,
        },
    });
    if let Some(a) = tokens.get("account_id") {
        out["tokens"]["account_id"] = a.clone();
    }
    if let Some(l) = host.get("last_refresh") {
        out["last_refresh"] = l.clone();
    }
    Some(out)
}

const CONFIG: &str = "# Written by bot-bottle.\n\
[projects.\"/workspace\"]\n\
trust_level = \"trusted\"\n\
\n\
[projects.\"/home/agent\"]\n\
trust_level = \"trusted\"\n\
\n\
[tui]\n\
status_line = [\"model-with-reasoning\"]\n\
terminal_title = [\"spinner\", \"project\"]\n\
theme = \"ansi\"\n";

impl Provider for CodexProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Codex
    }

    fn image(&self) -> ImageSource {
        if let Some(d) = &self.dockerfile {
            return ImageSource::Dockerfile(d.clone());
        }
        ImageSource::Builtin(BuiltinImage {
            name: "codex",
            dockerfile: DOCKERFILE,
            harness_binary: "codex",
            source_arg: "CODEX_SOURCE",
        })
    }

    fn dirs(&self) -> Vec<ProvisionDir> {
        home_dirs(&[(".codex", 0o700), (".codex/skills", 0o755)])
    }

    fn files(&self, agent: &AgentView) -> Vec<ProvisionFile> {
        debug_assert!(CONFIG.contains(WORKSPACE) && CONFIG.contains(AGENT_HOME));
        let mut config = CONFIG.to_string();
        if let Some(url) = agent.supervise_url {
            // What `codex mcp add supervise --url URL` writes, without running codex.
            config.push_str(&format!(
                "\n[mcp_servers.supervise]\nurl = {}\n",
                serde_json::Value::String(url.into())
            ));
        }
        vec![ProvisionFile {
            guest_path: home(".codex/config.toml"),
            contents: config.into_bytes(),
            mode: 0o600,
        }]
    }

    fn credential_files(&self) -> Result<Vec<ProvisionFile>, SecretError> {
        if !self.forward_host_credentials {
            return Ok(Vec::new());
        }
        let path = host_auth_path();
        let missing = |why: String| SecretError::Missing(format!("{why}; {REMEDY}"));
        let text = std::fs::read(&path)
            .map_err(|e| missing(format!("{} cannot be read ({e})", path.display())))?;
        let host: Value = serde_json::from_slice(&text)
            .map_err(|e| missing(format!("{} is not JSON ({e})", path.display())))?;
        let auth = placeholder_auth(&host).ok_or_else(|| {
            missing(format!(
                "{} holds neither an API key nor ChatGPT tokens",
                path.display()
            ))
        })?;
        Ok(vec![ProvisionFile {
            guest_path: home(".codex/auth.json"),
            contents: serde_json::to_vec_pretty(&auth).unwrap_or_default(),
            mode: 0o600,
        }])
    }

    fn routes(&self) -> Vec<EgressRoute> {
        CREDENTIAL_HOSTS
            .into_iter()
            .map(|host| EgressRoute {
                host: host.into(),
                auth: self.forward_host_credentials.then(|| RouteAuth {
                    scheme: AuthScheme::Bearer,
                    token: forwarded_token(),
                    allow_plaintext: None,
                }),
                ..Default::default()
            })
            .collect()
    }

    fn skills_dir(&self) -> String {
        home(".codex/skills")
    }

    fn attach_command(&self, agent: &AgentView) -> Vec<String> {
        let mut argv = vec!["codex".to_string(), BYPASS.into()];
        if agent.prompt.is_some() {
            argv.push(format!(
                "Read and follow the instructions in {PROMPT_PATH}."
            ));
        }
        argv
    }

    /// Resuming continues the last session; the prompt was its first message.
    fn resume_command(&self, _agent: &AgentView) -> Vec<String> {
        vec![
            "codex".into(),
            BYPASS.into(),
            "resume".into(),
            "--last".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codex(forward: bool) -> CodexProvider {
        CodexProvider {
            forward_host_credentials: forward,
            dockerfile: None,
        }
    }

    #[test]
    fn argv_per_prompt_mode_and_resume() {
        let p = codex(false);
        assert_eq!(p.attach_command(&AgentView::default()), ["codex", BYPASS]);
        let with_prompt = AgentView {
            prompt: Some("x"),
            supervise_url: None,
            ..Default::default()
        };
        assert_eq!(
            p.attach_command(&with_prompt),
            [
                "codex",
                BYPASS,
                "Read and follow the instructions in /etc/bot-bottle/prompt.md."
            ]
        );
        assert_eq!(
            p.resume_command(&with_prompt),
            ["codex", BYPASS, "resume", "--last"]
        );
    }

    #[test]
    fn config_trusts_the_projects_and_sets_the_tui() {
        let files = codex(false).files(&AgentView::default());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].guest_path, "/home/agent/.codex/config.toml");
        assert_eq!(files[0].mode, 0o600);
        let text = String::from_utf8_lossy(&files[0].contents);
        assert!(text.contains("[projects.\"/workspace\"]\ntrust_level = \"trusted\""));
        assert!(text.contains("[tui]\nstatus_line = [\"model-with-reasoning\"]"));
    }

    #[test]
    fn a_forwarded_login_is_injected_only_on_the_openai_hosts() {
        let plain = codex(false).routes();
        assert_eq!(
            plain.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
            CREDENTIAL_HOSTS
        );
        assert!(plain.iter().all(|r| r.auth.is_none()));
        assert!(
            codex(false)
                .credential_files()
                .unwrap_or_default()
                .is_empty()
        );
        for r in codex(true).routes() {
            let auth = r.auth.expect("auth");
            let src = auth.token.host_json.expect("host login");
            assert_eq!(src.pointers, ["/OPENAI_API_KEY", "/tokens/access_token"]);
            assert!(src.path.ends_with("auth.json"));
        }
    }

    #[test]
    fn the_agent_gets_the_same_login_with_placeholders() {
        assert_eq!(
            placeholder_auth(&json!({"OPENAI_API_KEY": "sk-real"})),
            Some(json!({"OPENAI_API_KEY": PLACEHOLDER}))
        );
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"plan":"pro"}"#);
        let host = json!({
            "OPENAI_API_KEY": null,
            "tokens": {"id_token": format!("eyJh.{claims}.realsig"), "access_token": "at-real",
                       "refresh_token": "rt-real", "account_id": "acct-1"},
            "last_refresh": "2026-11-01T00:00:00Z",
        });
        let agent = placeholder_auth(&host).expect("tokens");
        let text = agent.to_string();
        for secret in ["at-real", "rt-real", "realsig"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(agent["tokens"]["account_id"], "acct-1");
        assert!(
            agent["tokens"]["id_token"]
                .as_str()
                .is_some_and(|t| t.contains(&claims)),
            "the claims stay readable"
        );
        assert_eq!(placeholder_auth(&json!({"tokens": {}})), None);
        assert_eq!(placeholder_auth(&json!({})), None);
    }
}
