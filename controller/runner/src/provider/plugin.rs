//! `template: plugin`: a harness installed on the runner as `$BOT_BOTTLE_HOME/contrib/NAME/`,
//! a `provider.yaml` saying how to run it beside the `Dockerfile` that builds it: a new harness
//! without recompiling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bb_crds::egress::EgressRoute;
use bb_crds::provider::{PromptArg, ProviderTemplate};
use serde::Deserialize;

use super::{AgentView, PROMPT_PATH, Provider, ProviderError};
use bb_backend::ImageSource;

static CONTRIB_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Where this process finds plugins: the runner sets `<home>/contrib` at start; elsewhere it is
/// `contrib/` of the default home.
pub fn set_contrib_root(root: PathBuf) {
    let _ = CONTRIB_ROOT.set(root);
}

pub fn contrib_root() -> PathBuf {
    CONTRIB_ROOT.get().cloned().unwrap_or_else(|| {
        bb_home::resolve(None)
            .map(|h| h.join("contrib"))
            .unwrap_or_default()
    })
}

/// `contrib/NAME/provider.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginManifest {
    /// The argv a session runs.
    pub command: Vec<String>,
    /// How the prompt is passed; without it the harness reads `/etc/bot-bottle/prompt.md`
    /// itself (or has no prompt).
    #[serde(default)]
    pub prompt: Option<PromptArg>,
    /// The argv that continues the last session (default: `command`).
    #[serde(default)]
    pub resume: Option<Vec<String>>,
    /// Env inside the agent: plain values only (credentials belong in the Bottle's routes).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hosts the harness itself needs, without auth (a Bottle route for a host wins).
    #[serde(default)]
    pub routes: Vec<EgressRoute>,
    #[serde(default)]
    pub skills_dir: Option<String>,
}

impl PluginManifest {
    /// The manifest's own rules, each naming the field.
    fn check(&self) -> Result<(), String> {
        if self.command.is_empty() || self.command.iter().any(String::is_empty) {
            return Err("command: needs at least one non-empty word, e.g. [aider, --yes]".into());
        }
        if let Some(m) = self.prompt.as_ref().and_then(PromptArg::problem) {
            return Err(format!("prompt: {m}"));
        }
        if let Some(r) = self.routes.iter().find(|r| r.auth.is_some()) {
            return Err(format!(
                "routes: {} has auth; a plugin cannot name credentials (put the route with its auth in the Bottle)",
                r.host
            ));
        }
        if let Some(k) = self.env.keys().find(|k| {
            k.is_empty()
                || k.starts_with(|c: char| c.is_ascii_digit())
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return Err(format!(
                "env: '{k}' is not a variable name (letters, digits and _)"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PluginProvider {
    image: ImageSource,
    manifest: PluginManifest,
}

impl PluginProvider {
    /// Reads `root/name/`; every problem names the file and what would be valid.
    pub fn load(
        root: &Path,
        name: &str,
        dockerfile: Option<&str>,
    ) -> Result<PluginProvider, ProviderError> {
        let dir = root.join(name);
        let fail = |m: String| ProviderError::Plugin(m);
        if !dir.is_dir() {
            let mut available: Vec<String> = std::fs::read_dir(root)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().join("provider.yaml").is_file())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            available.sort();
            return Err(fail(format!(
                "no plugin '{name}' on this runner: {} does not exist (available: {})",
                dir.display(),
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            )));
        }
        let path = dir.join("provider.yaml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let manifest: PluginManifest =
            serde_yaml::from_str(&text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        manifest
            .check()
            .map_err(|m| fail(format!("{}: {m}", path.display())))?;
        let image = match dockerfile {
            Some(d) => ImageSource::Dockerfile(d.to_string()),
            None => {
                let d = dir.join("Dockerfile");
                if !d.is_file() {
                    return Err(fail(format!(
                        "{} is missing: a plugin builds its image from it",
                        d.display()
                    )));
                }
                ImageSource::Dockerfile(d.to_string_lossy().into_owned())
            }
        };
        Ok(PluginProvider { image, manifest })
    }
}

impl Provider for PluginProvider {
    fn template(&self) -> ProviderTemplate {
        ProviderTemplate::Plugin
    }
    fn image(&self) -> ImageSource {
        self.image.clone()
    }
    fn env(&self) -> BTreeMap<String, String> {
        self.manifest.env.clone()
    }
    fn routes(&self) -> Vec<EgressRoute> {
        self.manifest.routes.clone()
    }
    fn skills_dir(&self) -> String {
        self.manifest
            .skills_dir
            .clone()
            .unwrap_or_else(|| "/etc/bot-bottle/skills".into())
    }
    fn attach_command(&self, agent: &AgentView) -> Vec<String> {
        let mut argv = self.manifest.command.clone();
        if agent.prompt.is_some()
            && let Some(p) = &self.manifest.prompt
        {
            p.apply(&mut argv, PROMPT_PATH);
        }
        argv
    }
    fn resume_command(&self, agent: &AgentView) -> Vec<String> {
        match &self.manifest.resume {
            Some(r) => r.clone(),
            None => self.attach_command(agent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str, with_dockerfile: bool) -> Result<PluginProvider, ProviderError> {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("echo");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("provider.yaml"), yaml).expect("write");
        if with_dockerfile {
            std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write");
        }
        PluginProvider::load(root.path(), "echo", None)
    }

    #[test]
    fn a_manifest_describes_the_harness() {
        let p = plugin(
            "command: [echo-harness, --yes]\nprompt: {flag: --prompt-file}\nresume: [echo-harness, --again]\nenv: {MODE: bottle}\nroutes: [{host: api.echo.test}]\nskillsDir: /home/agent/.echo/skills\n",
            true,
        )
        .expect("plugin");
        let with_prompt = AgentView {
            prompt: Some("x"),
            supervise_url: None,
            ..Default::default()
        };
        assert_eq!(
            p.attach_command(&with_prompt),
            ["echo-harness", "--yes", "--prompt-file", PROMPT_PATH]
        );
        assert_eq!(
            p.attach_command(&AgentView::default()),
            ["echo-harness", "--yes"]
        );
        assert_eq!(p.resume_command(&with_prompt), ["echo-harness", "--again"]);
        assert_eq!(p.env()["MODE"], "bottle");
        assert_eq!(p.routes()[0].host, "api.echo.test");
        assert_eq!(p.skills_dir(), "/home/agent/.echo/skills");
        assert!(matches!(p.image(), ImageSource::Dockerfile(d) if d.ends_with("echo/Dockerfile")));
        let q = plugin(
            "command: [h]\nprompt: {argument: 'Read {path} first.'}\n",
            true,
        )
        .expect("plugin");
        assert_eq!(
            q.attach_command(&with_prompt),
            ["h", "Read /etc/bot-bottle/prompt.md first."]
        );
    }

    #[test]
    fn bad_plugins_say_what_is_wrong() {
        let cases = [
            ("command: []\n", true, "command: needs at least one"),
            (
                "command: [h]\nroutes: [{host: x.test, auth: {scheme: Bearer, hostEnv: T}}]\n",
                true,
                "cannot name credentials",
            ),
            (
                "command: [h]\nenv: {'BAD-NAME': x}\n",
                true,
                "not a variable name",
            ),
            ("command: [h]\nshell: true\n", true, "unknown field `shell`"),
            (
                "command: [h]\nprompt: {flag: -p, argument: x}\n",
                true,
                "not both",
            ),
            ("command: [h]\n", false, "Dockerfile is missing"),
        ];
        for (yaml, dockerfile, needle) in cases {
            match plugin(yaml, dockerfile) {
                Err(ProviderError::Plugin(m)) => assert!(m.contains(needle), "{yaml}: {m}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
        let root = tempfile::tempdir().expect("tempdir");
        match PluginProvider::load(root.path(), "nope", None) {
            Err(ProviderError::Plugin(m)) => assert!(m.contains("available: none"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
