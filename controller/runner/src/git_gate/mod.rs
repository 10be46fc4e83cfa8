//! What git-gate needs from a resolved Bottle and its Agent: the sidecar's `git-gate.yaml` and
//! push keys, and the agent's git config (identity, and each upstream URL mapped to the gate).

pub mod gitea;

use std::collections::BTreeMap;

use bb_crds::common::GitUser;
use bb_crds::git_gate::{GitGateSpec, GitRepo, KeyProvider, parse_git_upstream};

use crate::secrets::SecretError;
use bb_backend::SecretBytes;

pub use bb_backend::sidecar_command::GATE_BASE;
pub use bb_crds::policy::{GIT_GATE_CONFIG_FILE as CONFIG_FILE, git_key_file as key_file};

/// The declared repositories that have an upstream URL.
pub fn repos(spec: Option<&GitGateSpec>) -> BTreeMap<String, GitRepo> {
    spec.and_then(|g| g.repos.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, r)| r.url.is_some())
        .collect()
}

/// The sidecar's `git-gate.yaml`.
pub fn sidecar_config(repos: &BTreeMap<String, GitRepo>) -> String {
    let doc: BTreeMap<&str, serde_json::Value> = repos
        .iter()
        .map(|(name, r)| {
            let mut v = serde_json::json!({"url": r.url});
            if let Some(k) = &r.host_key {
                v["hostKey"] = serde_json::json!(k);
            }
            (name.as_str(), v)
        })
        .collect();
    serde_yaml::to_string(&serde_json::json!({ "repos": doc })).unwrap_or_default()
}

/// `~/x` under the controller user's home.
fn expand_home(path: &str) -> std::path::PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest)
        }
        None => std::path::PathBuf::from(path),
    }
}

/// The push key of each `static` repository, read from the controller host. Keys minted
/// through a forge are added by the caller.
pub fn static_keys(
    repos: &BTreeMap<String, GitRepo>,
) -> Result<BTreeMap<String, SecretBytes>, SecretError> {
    let mut out = BTreeMap::new();
    for (name, repo) in repos {
        let Some(key) = &repo.key else { continue };
        if key.provider != KeyProvider::Static {
            continue;
        }
        let Some(path) = key.path.as_deref() else {
            continue;
        };
        let file = expand_home(path);
        let bytes = std::fs::read(&file).map_err(|e| {
            SecretError::Missing(format!(
                "spec.gitGate.repos.{name}.key.path: cannot read {}: {e}",
                file.display()
            ))
        })?;
        out.insert(key_file(name), SecretBytes::new(bytes));
    }
    Ok(out)
}

/// The Bottle's identity with the Agent's non-empty fields over it.
pub fn identity(bottle: Option<&GitUser>, agent: Option<&GitUser>) -> Option<GitUser> {
    let pick = |a: Option<&String>, b: Option<&String>| {
        a.filter(|s| !s.is_empty())
            .or(b.filter(|s| !s.is_empty()))
            .cloned()
    };
    let user = GitUser {
        name: pick(
            agent.and_then(|u| u.name.as_ref()),
            bottle.and_then(|u| u.name.as_ref()),
        ),
        email: pick(
            agent.and_then(|u| u.email.as_ref()),
            bottle.and_then(|u| u.email.as_ref()),
        ),
    };
    (user.name.is_some() || user.email.is_some()).then_some(user)
}

/// The ways an agent may spell upstream `url`: as declared, as `ssh://`, and as the forge's
/// HTTPS URL (with and without `.git`), so `git clone https://forge/team/app` also goes
/// through the gate.
pub fn url_spellings(url: &str) -> Vec<String> {
    let mut v = vec![url.to_string()];
    if let Ok(u) = parse_git_upstream(url) {
        let user = u
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let path = u.path.trim_start_matches('/');
        let port = u.port.map(|p| format!(":{p}")).unwrap_or_default();
        v.push(format!("ssh://{user}{}{port}/{path}", u.host));
        let bare = path.strip_suffix(".git").unwrap_or(path);
        v.push(format!("https://{}/{bare}.git", u.host));
        v.push(format!("https://{}/{bare}", u.host));
    }
    v.sort();
    v.dedup();
    v
}

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace(['\n', '\r'], " ")
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// The agent's system git config: the identity, and every upstream spelling rewritten to the
/// gate. `None` when there is nothing to say.
pub fn agent_gitconfig(
    user: Option<&GitUser>,
    repos: &BTreeMap<String, GitRepo>,
) -> Option<String> {
    let mut cfg = String::new();
    if let Some(u) = user {
        cfg.push_str("[user]\n");
        if let Some(n) = &u.name {
            cfg.push_str(&format!("\tname = {}\n", quote(n)));
        }
        if let Some(e) = &u.email {
            cfg.push_str(&format!("\temail = {}\n", quote(e)));
        }
    }
    for (name, repo) in repos {
        let Some(url) = &repo.url else { continue };
        cfg.push_str(&format!(
            "[url {}]\n",
            quote(&format!("{GATE_BASE}/{name}.git"))
        ));
        for s in url_spellings(url) {
            cfg.push_str(&format!("\tinsteadOf = {}\n", quote(&s)));
        }
    }
    (!cfg.is_empty()).then_some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(url: &str) -> GitRepo {
        GitRepo {
            url: Some(url.into()),
            key: None,
            host_key: Some("ssh-ed25519 AAAA".into()),
        }
    }

    #[test]
    fn agent_fields_win_per_field() {
        let bottle = GitUser {
            name: Some("claude".into()),
            email: Some("c@b.invalid".into()),
        };
        let agent = GitUser {
            name: Some("Claude (issue 42)".into()),
            email: Some(String::new()),
        };
        let u = identity(Some(&bottle), Some(&agent)).expect("identity");
        assert_eq!(u.name.as_deref(), Some("Claude (issue 42)"));
        assert_eq!(u.email.as_deref(), Some("c@b.invalid"));
        assert_eq!(identity(None, None), None);
    }

    #[test]
    fn every_spelling_of_the_upstream_goes_to_the_gate() {
        let repos = BTreeMap::from([("app".to_string(), repo("git@forge.lan:team/app.git"))]);
        let cfg = agent_gitconfig(None, &repos).expect("config");
        assert!(
            cfg.contains("[url \"http://bb-sidecar:9420/app.git\"]"),
            "{cfg}"
        );
        for s in [
            "git@forge.lan:team/app.git",
            "ssh://git@forge.lan/team/app.git",
            "https://forge.lan/team/app.git",
            "https://forge.lan/team/app",
        ] {
            assert!(
                cfg.contains(&format!("\tinsteadOf = \"{s}\"\n")),
                "{s}: {cfg}"
            );
        }
        let yaml = sidecar_config(&repos);
        assert!(
            yaml.contains("url: git@forge.lan:team/app.git")
                && yaml.contains("hostKey: ssh-ed25519 AAAA"),
            "{yaml}"
        );
    }

    #[test]
    fn a_static_key_that_cannot_be_read_names_the_field() {
        let mut r = repo("git@h:a.git");
        r.key = Some(bb_crds::git_gate::RepoKey {
            provider: KeyProvider::Static,
            path: Some("/nonexistent/key".into()),
            forge_token: None,
            api_url: None,
        });
        let e = static_keys(&BTreeMap::from([("app".to_string(), r)]))
            .expect_err("missing key")
            .to_string();
        assert!(
            e.contains("spec.gitGate.repos.app.key.path: cannot read /nonexistent/key"),
            "{e}"
        );
    }
}
