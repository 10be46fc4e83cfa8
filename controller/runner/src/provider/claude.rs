//! `template: claude`: Claude Code from the image the binary carries, trusting its home and
//! workspace, in bypass-permissions mode, while the sidecar injects the real OAuth token on
//! `api.anthropic.com` and the agent holds only a placeholder.

use std::collections::BTreeMap;

use bb_crds::agent::Color;
use bb_crds::common::SecretSource;
use bb_crds::egress::{AuthScheme, EgressRoute, RouteAuth};
use bb_crds::provider::ProviderTemplate;
use serde_json::json;

use super::{
    AGENT_HOME, AgentView, PLACEHOLDER, PROMPT_PATH, Provider, WORKSPACE, home, home_dirs,
};
use bb_backend::{BuiltinImage, ImageSource, ProvisionDir, ProvisionFile};

/// The image recipe, built on the shared `BASE` like every image.
pub const DOCKERFILE: &str = include_str!("../../../../images/claude/Dockerfile");
pub const API_HOST: &str = "api.anthropic.com";

#[derive(Debug, Clone)]
pub struct ClaudeProvider {
    pub(super) auth_token: Option<SecretSource>,
    /// `spec.agentProvider.dockerfile`: the user's own image recipe instead of the built-in.
    pub(super) dockerfile: Option<String>,
}

/// The bright ANSI foreground for the status line, and Claude's theme colour name.
fn palette(c: Color) -> (&'static str, &'static str) {
    match c {
        Color::Red => ("91", "ansi:redBright"),
        Color::Green => ("92", "ansi:greenBright"),
        Color::Yellow => ("93", "ansi:yellowBright"),
        Color::Blue => ("94", "ansi:blueBright"),
        Color::Magenta => ("95", "ansi:magentaBright"),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// `~/.claude/statusline.sh`: the label in the Agent's colour (plain without one).
fn status_line(label: &str, color: Option<Color>) -> String {
    let line = match (label.is_empty(), color) {
        (true, _) => "printf '\\n'".to_string(),
        (false, Some(c)) => format!(
            "printf '\\033[{}m%s\\033[0m\\n' {}",
            palette(c).0,
            bb_backend::shell::quote(label)
        ),
        (false, None) => format!("printf '%s\\n' {}", bb_backend::shell::quote(label)),
    };
    format!(
        "#!/bin/sh\n# Written by bot-bottle: the Agent's label as Claude Code's status line.\n{line}\n"
    )
}

impl Provider for ClaudeProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Claude
    }

    fn image(&self) -> ImageSource {
        if let Some(d) = &self.dockerfile {
            return ImageSource::Dockerfile(d.clone());
        }
        ImageSource::Builtin(BuiltinImage {
            name: "claude",
            dockerfile: DOCKERFILE,
            harness_binary: "claude",
            source_arg: "CLAUDE_SOURCE",
        })
    }

    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_string(),
                "1".to_string(),
            ),
            ("DISABLE_ERROR_REPORTING".to_string(), "1".to_string()),
        ]);
        if self.auth_token.is_some() {
            env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), PLACEHOLDER.into());
        }
        env
    }

    fn dirs(&self) -> Vec<ProvisionDir> {
        home_dirs(&[
            (".claude", 0o700),
            (".claude/themes", 0o755),
            (".claude/skills", 0o755),
        ])
    }

    fn files(&self, agent: &AgentView) -> Vec<ProvisionFile> {
        let mut state = json!({
            "bypassPermissionsModeAccepted": true,
            "hasCompletedOnboarding": true,
            "projects": {
                AGENT_HOME: {"hasTrustDialogAccepted": true},
                WORKSPACE: {"hasTrustDialogAccepted": true},
            },
        });
        if let Some(l) = agent.label {
            state["name"] = json!(l);
        }
        if let Some(c) = agent.color {
            state["color"] = json!(c.as_str());
        }
        if let Some(url) = agent.supervise_url {
            state["mcpServers"] = json!({"supervise": {"type": "http", "url": url}});
        }
        let mut files = vec![ProvisionFile {
            guest_path: home(".claude.json"),
            contents: serde_json::to_vec_pretty(&state).unwrap_or_default(),
            mode: 0o600,
        }];
        let mut settings = serde_json::Map::new();
        if agent.label.is_some() || agent.color.is_some() {
            files.push(ProvisionFile {
                guest_path: home(".claude/statusline.sh"),
                contents: status_line(agent.label.unwrap_or(""), agent.color).into_bytes(),
                mode: 0o755,
            });
            settings.insert(
                "statusLine".into(),
                json!({"type": "command", "command": "~/.claude/statusline.sh"}),
            );
        }
        if let Some(c) = agent.color {
            let name = format!("bot-bottle-{}", slug(agent.label.unwrap_or(c.as_str())));
            let theme = json!({
                "name": format!("Bot-bottle {}", c.as_str()),
                "base": "dark",
                "overrides": {"claude": palette(c).1},
            });
            files.push(ProvisionFile {
                guest_path: home(&format!(".claude/themes/{name}.json")),
                contents: serde_json::to_vec_pretty(&theme).unwrap_or_default(),
                mode: 0o644,
            });
            settings.insert("theme".into(), json!(format!("custom:{name}")));
        }
        if !settings.is_empty() {
            files.push(ProvisionFile {
                guest_path: home(".claude/settings.json"),
                contents: serde_json::to_vec_pretty(&settings).unwrap_or_default(),
                mode: 0o600,
            });
        }
        files
    }

    fn routes(&self) -> Vec<EgressRoute> {
        vec![EgressRoute {
            host: API_HOST.into(),
            auth: self.auth_token.clone().map(|token| RouteAuth {
                scheme: AuthScheme::Bearer,
                token,
                allow_plaintext: None,
            }),
            ..Default::default()
        }]
    }

    fn skills_dir(&self) -> String {
        home(".claude/skills")
    }

    fn attach_command(&self, agent: &AgentView) -> Vec<String> {
        let mut argv = vec![
            "claude".to_string(),
            "--dangerously-skip-permissions".into(),
        ];
        if agent.prompt.is_some() {
            argv.extend(["--append-system-prompt-file".into(), PROMPT_PATH.into()]);
        }
        argv
    }

    fn resume_command(&self, agent: &AgentView) -> Vec<String> {
        let mut argv = self.attach_command(agent);
        argv.push("--continue".into());
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(label: Option<&'static str>, color: Option<Color>, prompt: bool) -> AgentView<'static> {
        AgentView {
            label,
            color,
            prompt: prompt.then_some("do the thing"),
            supervise_url: None,
        }
    }

    fn file<'a>(files: &'a [ProvisionFile], rel: &str) -> Option<&'a ProvisionFile> {
        files.iter().find(|f| f.guest_path == home(rel))
    }

    #[test]
    fn argv_per_prompt_mode_and_resume() {
        let p = ClaudeProvider {
            auth_token: None,
            dockerfile: None,
        };
        assert_eq!(
            p.attach_command(&view(None, None, false)),
            ["claude", "--dangerously-skip-permissions"]
        );
        assert_eq!(
            p.attach_command(&view(None, None, true)),
            [
                "claude",
                "--dangerously-skip-permissions",
                "--append-system-prompt-file",
                PROMPT_PATH
            ]
        );
        assert_eq!(
            p.resume_command(&view(None, None, false))
                .last()
                .map(String::as_str),
            Some("--continue")
        );
    }

    #[test]
    fn the_token_is_a_placeholder_inside_and_injected_on_its_route() {
        let bare = ClaudeProvider {
            auth_token: None,
            dockerfile: None,
        };
        assert!(!bare.env().contains_key("CLAUDE_CODE_OAUTH_TOKEN"));
        assert_eq!(bare.routes()[0].host, API_HOST);
        assert!(bare.routes()[0].auth.is_none());
        let token = SecretSource {
            host_env: Some("CLAUDE_TOKEN".into()),
            ..Default::default()
        };
        let p = ClaudeProvider {
            auth_token: Some(token.clone()),
            dockerfile: None,
        };
        assert!(matches!(p.image(), ImageSource::Builtin(b) if b.name == "claude"));
        let own = ClaudeProvider {
            auth_token: None,
            dockerfile: Some("/src/Dockerfile".into()),
        };
        assert_eq!(
            own.image(),
            ImageSource::Dockerfile("/src/Dockerfile".into())
        );
        assert_eq!(
            p.env().get("CLAUDE_CODE_OAUTH_TOKEN").map(String::as_str),
            Some(PLACEHOLDER)
        );
        assert_eq!(p.env()["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
        assert_eq!(p.env()["DISABLE_ERROR_REPORTING"], "1");
        let auth = p.routes()[0].auth.clone().expect("auth");
        assert_eq!(auth.scheme, AuthScheme::Bearer);
        assert_eq!(auth.token, token);
    }

    #[test]
    fn state_trusts_home_and_workspace_and_carries_label_and_colour() {
        let p = ClaudeProvider {
            auth_token: None,
            dockerfile: None,
        };
        let files = p.files(&view(Some("Review bot"), Some(Color::Green), false));
        let state: serde_json::Value =
            serde_json::from_slice(&file(&files, ".claude.json").expect("state").contents)
                .unwrap_or_default();
        assert_eq!(state["bypassPermissionsModeAccepted"], true);
        assert_eq!(
            state["projects"][AGENT_HOME]["hasTrustDialogAccepted"],
            true
        );
        assert_eq!(state["projects"][WORKSPACE]["hasTrustDialogAccepted"], true);
        assert_eq!(state["name"], "Review bot");
        assert_eq!(state["color"], "green");
        assert_eq!(file(&files, ".claude.json").map(|f| f.mode), Some(0o600));

        let line = file(&files, ".claude/statusline.sh").expect("status line");
        assert_eq!(line.mode, 0o755);
        assert!(
            String::from_utf8_lossy(&line.contents)
                .contains("printf '\\033[92m%s\\033[0m\\n' 'Review bot'"),
            "{}",
            String::from_utf8_lossy(&line.contents)
        );
        let theme: serde_json::Value = serde_json::from_slice(
            &file(&files, ".claude/themes/bot-bottle-review-bot.json")
                .expect("theme")
                .contents,
        )
        .unwrap_or_default();
        assert_eq!(theme["overrides"]["claude"], "ansi:greenBright");
        let settings: serde_json::Value = serde_json::from_slice(
            &file(&files, ".claude/settings.json")
                .expect("settings")
                .contents,
        )
        .unwrap_or_default();
        assert_eq!(settings["theme"], "custom:bot-bottle-review-bot");
        assert_eq!(settings["statusLine"]["command"], "~/.claude/statusline.sh");
    }

    #[test]
    fn settings_only_when_there_is_something_to_set() {
        let p = ClaudeProvider {
            auth_token: None,
            dockerfile: None,
        };
        let files = p.files(&view(None, None, false));
        assert_eq!(files.len(), 1, "only ~/.claude.json");
        // A label alone: a plain status line, no theme.
        let files = p.files(&view(Some("it's"), None, false));
        let line = file(&files, ".claude/statusline.sh").expect("status line");
        assert!(String::from_utf8_lossy(&line.contents).contains(r"printf '%s\n' 'it'\''s'"));
        assert!(files.iter().all(|f| !f.guest_path.contains("/themes/")));
        // A colour alone: the theme is named after it, the status line prints an empty line.
        let files = p.files(&view(None, Some(Color::Red), false));
        assert!(file(&files, ".claude/themes/bot-bottle-red.json").is_some());
        let line = file(&files, ".claude/statusline.sh").expect("status line");
        assert!(String::from_utf8_lossy(&line.contents).contains("printf '\\n'"));
    }
}
