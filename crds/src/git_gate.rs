//! The git-gate block of a Bottle: the identity the agent commits as, and the upstream repos the
//! gate pushes clean refs to, each with the key it pushes with.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{GitUser, SecretSource};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitGateSpec {
    /// Identity for commits made inside the agent. An Agent's `gitUser` overrides per field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<GitUser>,
    /// Upstream repositories by name (`^[A-Za-z0-9._-]+$`); served to the agent at
    /// `/git/<name>.git`. A child bottle's `repos: {}` clears the inherited set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repos: Option<BTreeMap<String, GitRepo>>,
}

/// One upstream repository. `url` and `key` are required once the `extends` chain is merged;
/// a child bottle may set only the fields it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepo {
    /// SSH remote: `git@host:owner/repo.git` or `ssh://git@host:22/owner/repo.git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The key the gate pushes upstream with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RepoKey>,
    /// Expected SSH host key line (`ssh-ed25519 AAAA...`), pinned instead of trust-on-first-use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyProvider {
    /// A private key file on the controller host.
    Static,
    /// A deploy key minted through the Gitea API at start and revoked at teardown.
    Gitea,
}

impl KeyProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyProvider::Static => "static",
            KeyProvider::Gitea => "gitea",
        }
    }

    /// The `key` fields this provider accepts, in the order error messages list them.
    pub fn allowed_fields(self) -> &'static [&'static str] {
        match self {
            KeyProvider::Static => &["provider", "path"],
            KeyProvider::Gitea => &["provider", "forgeToken", "apiUrl"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoKey {
    /// `static` or `gitea`.
    pub provider: KeyProvider,
    /// static: absolute path of the private key on the controller host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// gitea: API token with "Repository: Read & Write".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_token: Option<SecretSource>,
    /// gitea: API base URL; defaults to `https://<upstream host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// A parsed SSH upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUpstream {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

/// Parses `ssh://[user@]host[:port]/path` and scp-like `[user@]host:path`.
pub fn parse_git_upstream(url: &str) -> Result<GitUpstream, String> {
    const HINT: &str = "expected an SSH remote such as git@host:owner/repo.git or ssh://git@host:22/owner/repo.git";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain whitespace; {HINT}"));
    }
    let split_user = |s: &str| -> (Option<String>, String) {
        match s.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h.to_string()),
            None => (None, s.to_string()),
        }
    };
    let (user, host, port, path) = if let Some(rest) = url.strip_prefix("ssh://") {
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("has no repository path; {HINT}"))?;
        let (user, hostport) = split_user(authority);
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| format!("port '{p}' is not a number from 1 to 65535"))?;
                if port == 0 {
                    return Err("port 0 is not valid".into());
                }
                (h.to_string(), Some(port))
            }
            None => (hostport, None),
        };
        (user, host, port, path.to_string())
    } else if url.contains("://") {
        return Err(format!("scheme is not ssh; {HINT}"));
    } else {
        let (authority, path) = url
            .split_once(':')
            .ok_or_else(|| format!("has no ':' before the path; {HINT}"))?;
        let (user, host) = split_user(authority);
        (user, host, None, path.to_string())
    };
    if host.is_empty() {
        return Err(format!("has no host; {HINT}"));
    }
    if path.trim_matches('/').is_empty() {
        return Err(format!("has no repository path; {HINT}"));
    }
    if user.as_deref() == Some("") {
        return Err(format!("has an empty user before '@'; {HINT}"));
    }
    Ok(GitUpstream {
        user,
        host,
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scp_and_ssh_forms() {
        let u = parse_git_upstream("git@gitea.example.com:me/repo.git").expect("scp form");
        assert_eq!(u.user.as_deref(), Some("git"));
        assert_eq!(u.host, "gitea.example.com");
        assert_eq!(u.port, None);
        assert_eq!(u.path, "me/repo.git");
        let u = parse_git_upstream("ssh://git@h.example:2222/me/repo.git").expect("ssh form");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.path, "me/repo.git");
    }

    #[test]
    fn rejects_non_ssh_remotes() {
        for bad in [
            "https://github.com/me/repo.git",
            "git@host:",
            "ssh://host",
            "ssh://git@host:99999/x",
            "@host:x",
            "repo",
        ] {
            assert!(parse_git_upstream(bad).is_err(), "{bad} should fail");
        }
    }
}
