//! What the controller tells git-gate: the repositories it serves (name, upstream URL, pinned
//! host key). Keys arrive beside it as secret files `git-key-NAME`, never in this file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The delivered `git-gate.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default)]
    pub repos: BTreeMap<String, GateRepo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateRepo {
    /// The upstream: an SSH remote (`git@host:owner/repo.git`, `ssh://...`). A local path or
    /// `file://` URL also works (tests; a mirror of a mirror).
    pub url: String,
    /// `ssh-ed25519 AAAA...`: the only host key the upstream may present.
    #[serde(default)]
    pub host_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub use bb_policy::file::git_key_file as key_file;

impl GateConfig {
    pub fn load(path: &Path) -> Result<GateConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let cfg: GateConfig = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for name in cfg.repos.keys() {
            let plain = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !plain {
                return Err(invalid(format!(
                    "repository name {name:?} must match ^[A-Za-z0-9._-]+$ and not start with '.'"
                )));
            }
        }
        Ok(cfg)
    }
}

/// Host and port of an SSH upstream, for its known_hosts line; `None` for a local path.
pub fn ssh_host(url: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let hostport = authority.rsplit('@').next()?;
        return Some(match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (hostport.to_string(), None),
        });
    }
    if url.contains("://") || url.starts_with('/') || url.starts_with('.') {
        return None;
    }
    let (authority, _) = url.split_once(':')?;
    Some((authority.rsplit('@').next()?.to_string(), None))
}

/// The known_hosts line pinning `host_key` for the upstream `url`.
pub fn known_hosts_line(url: &str, host_key: &str) -> Option<String> {
    let (host, port) = ssh_host(url)?;
    let pattern = match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host,
    };
    Some(format!("{pattern} {}\n", host_key.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lines_pin_the_upstream_host() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq3";
        assert_eq!(
            known_hosts_line("git@forge.lan:team/app.git", k).as_deref(),
            Some("forge.lan ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq3\n")
        );
        assert_eq!(
            known_hosts_line("ssh://git@forge.lan:2222/team/app.git", k).as_deref(),
            Some("[forge.lan]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq3\n")
        );
        assert_eq!(
            known_hosts_line("ssh://forge.lan/app.git", k).as_deref(),
            Some("forge.lan ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq3\n")
        );
        assert_eq!(known_hosts_line("/srv/git/app.git", k), None);
    }

    #[test]
    fn config_refuses_odd_names_and_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g.yaml");
        std::fs::write(&p, "repos:\n  ../x: {url: /a}\n").expect("write");
        let e = GateConfig::load(&p).expect_err("bad name").to_string();
        assert!(e.contains("must match ^[A-Za-z0-9._-]+$"), "{e}");
        std::fs::write(&p, "repos:\n  app: {url: /a, key: x}\n").expect("write");
        let e = GateConfig::load(&p).expect_err("unknown field").to_string();
        assert!(e.contains("unknown field `key`"), "{e}");
        std::fs::write(
            &p,
            "repos:\n  app: {url: 'git@h:a.git', hostKey: 'ssh-ed25519 AAAA'}\n",
        )
        .expect("write");
        let c = GateConfig::load(&p).expect("valid");
        assert_eq!(c.repos["app"].host_key.as_deref(), Some("ssh-ed25519 AAAA"));
    }
}
