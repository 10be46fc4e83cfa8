//! One served repository on disk: its bare mirror, created on first use and refreshed from
//! upstream, and the environment every git process of it runs with (hook, SSH wrapper, key).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::config::{GateRepo, key_file, known_hosts_line};

/// Names the SSH wrapper: git runs `GIT_SSH` with no shell, so the pinned options live in
/// bb-sidecar itself, run under this name (see `ssh_argv`).
pub const SSH_WRAPPER_NAME: &str = "gate-ssh";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Git { what: String, stderr: String },
    #[error(
        "repository {0} has no hostKey: set spec.gitGate.repos.{0}.hostKey to the upstream's host key line (ssh-keyscan -t ed25519 HOST)"
    )]
    NoHostKey(String),
    #[error("repository {0} has no key file {1} in the sidecar's secrets")]
    NoKey(String, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepoError {
    let what = what.into();
    move |source| RepoError::Io { what, source }
}

/// Where git-gate keeps its state, and what it runs.
/// The variable naming the hold file to the hook.
pub const HOLD_ENV: &str = "BB_GATE_HOLD";

#[derive(Debug, Clone)]
pub struct GatePaths {
    /// Mirrors (`NAME.git`), hooks and per-repo known_hosts live here.
    pub state: PathBuf,
    /// The delivered secret files (`git-key-NAME`, and the tokens the scanner looks for).
    pub secrets: PathBuf,
    /// Where gitleaks:allow proposals wait for a decision; none: they are refused at once.
    pub queue: Option<PathBuf>,
    /// How long a gitleaks:allow proposal waits.
    pub allow_timeout_secs: u64,
    /// The bb-sidecar executable the hook and SSH wrapper links point at.
    pub exe: PathBuf,
    /// The runner's hold file (cluster mode): the hook reads it again right before it pushes
    /// upstream, since a push may wait minutes for a human.
    pub hold_file: Option<PathBuf>,
}

impl GatePaths {
    fn hooks(&self) -> PathBuf {
        self.state.join("hooks")
    }

    pub fn mirror(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}.git"))
    }

    /// One SSH control socket per repository and upstream: a connection another repository
    /// opened (checked against that repository's pinned host key) is never reused for this one.
    /// Hashed so the socket path stays within the 108 bytes a Unix socket allows.
    fn control_path(&self, name: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        self.state.join(format!("ssh-{:016x}-%C", h.finish()))
    }

    fn known_hosts(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}.known_hosts"))
    }

    /// The hook and SSH-wrapper links, made once.
    pub fn prepare(&self) -> Result<(), RepoError> {
        let hooks = self.hooks();
        std::fs::create_dir_all(&hooks).map_err(io(format!("creating {}", hooks.display())))?;
        for name in [super::HOOK_NAME, SSH_WRAPPER_NAME] {
            let link = hooks.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&self.exe, &link)
                .map_err(io(format!("linking {}", link.display())))?;
        }
        Ok(())
    }

    /// The environment of every git process serving `name` (and so of its hook).
    pub fn env(&self, name: &str, repo: &GateRepo) -> Result<Vec<(String, String)>, RepoError> {
        let mut env = vec![
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("BB_GATE_REPO".into(), name.to_string()),
            ("BB_GATE_UPSTREAM".into(), repo.url.clone()),
            (
                "BB_GATE_SECRETS".into(),
                self.secrets.to_string_lossy().into_owned(),
            ),
            (
                "BB_GATE_ALLOW_TIMEOUT".into(),
                self.allow_timeout_secs.to_string(),
            ),
        ];
        if let Some(q) = &self.queue {
            env.push(("BB_GATE_QUEUE".into(), q.to_string_lossy().into_owned()));
        }
        if let Some(h) = &self.hold_file {
            env.push((HOLD_ENV.into(), h.to_string_lossy().into_owned()));
        }
        if super::config::ssh_host(&repo.url).is_some() {
            let key = self.secrets.join(key_file(name));
            if !key.is_file() {
                return Err(RepoError::NoKey(name.to_string(), key_file(name)));
            }
            let host_key = repo
                .host_key
                .as_deref()
                .ok_or_else(|| RepoError::NoHostKey(name.to_string()))?;
            let line = known_hosts_line(&repo.url, host_key)
                .ok_or_else(|| RepoError::NoHostKey(name.to_string()))?;
            let kh = self.known_hosts(name);
            // Every request passes here; the file changes only with a new hostKey.
            if std::fs::read_to_string(&kh).ok().as_deref() != Some(line.as_str()) {
                std::fs::write(&kh, &line).map_err(io(format!("writing {}", kh.display())))?;
            }
            env.extend([
                (
                    "GIT_SSH".into(),
                    self.hooks()
                        .join(SSH_WRAPPER_NAME)
                        .to_string_lossy()
                        .into_owned(),
                ),
                ("GIT_SSH_VARIANT".into(), "ssh".into()),
                ("BB_GATE_SSH_KEY".into(), key.to_string_lossy().into_owned()),
                (
                    "BB_GATE_KNOWN_HOSTS".into(),
                    kh.to_string_lossy().into_owned(),
                ),
                (
                    "BB_GATE_SSH_CONTROL".into(),
                    self.control_path(name).to_string_lossy().into_owned(),
                ),
            ]);
        }
        Ok(env)
    }

    /// The bare mirror of `name`, created and configured on first use; whether it was just
    /// created.
    pub async fn ensure_mirror(
        &self,
        name: &str,
        env: &[(String, String)],
    ) -> Result<(PathBuf, bool), RepoError> {
        let dir = self.mirror(name);
        let created = !dir.join("HEAD").is_file();
        if !created {
            return Ok((dir, false));
        }
        git(env, None, &["init", "--bare", "-q"], Some(&dir), "git init").await?;
        let hooks = self.hooks().to_string_lossy().into_owned();
        for (k, v) in [
            ("core.hooksPath", hooks.as_str()),
            ("receive.advertisePushOptions", "true"),
            // The mirror's refs are upstream's; git-gate never rewrites them by gc on its own.
            ("gc.auto", "0"),
            ("receive.autogc", "false"),
            ("uploadpack.allowFilter", "true"),
        ] {
            git(env, Some(&dir), &["config", k, v], None, "git config").await?;
        }
        Ok((dir, true))
    }

    /// Brings the mirror's branches and tags to upstream's; with `set_head` (a new mirror),
    /// HEAD too.
    pub async fn refresh(
        &self,
        dir: &Path,
        repo: &GateRepo,
        env: &[(String, String)],
        set_head: bool,
    ) -> Result<(), RepoError> {
        git(
            env,
            Some(dir),
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--no-write-fetch-head",
                &repo.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            None,
            "fetching from upstream",
        )
        .await?;
        // HEAD follows upstream's default branch, so a clone checks out what upstream would.
        if set_head
            && let Ok(out) = git(
                env,
                Some(dir),
                &["ls-remote", "--symref", &repo.url, "HEAD"],
                None,
                "reading upstream HEAD",
            )
            .await
            && let Some(target) = out
                .lines()
                .find_map(|l| l.strip_prefix("ref: "))
                .and_then(|l| l.split_whitespace().next())
        {
            git(
                env,
                Some(dir),
                &["symbolic-ref", "HEAD", target],
                None,
                "setting HEAD",
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs git (in `dir` as GIT_DIR when given, with `extra` appended as a path argument) and
/// returns its stdout.
async fn git(
    env: &[(String, String)],
    dir: Option<&Path>,
    args: &[&str],
    extra: Option<&Path>,
    what: &str,
) -> Result<String, RepoError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.env("GIT_DIR", d);
    }
    if let Some(p) = extra {
        cmd.arg(p);
    }
    let out = cmd
        .output()
        .await
        .map_err(io(format!("running git for {what}")))?;
    if !out.status.success() {
        return Err(RepoError::Git {
            what: what.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ssh argv the wrapper runs for git's `args`: the repository's key only, the pinned host
/// key only, no agent, no prompts, no user or system config. With `control`, connections to
/// one upstream are shared for a minute, so a push's refresh and its forwarding pay for one
/// SSH handshake.
pub fn ssh_argv(
    key: &str,
    known_hosts: &str,
    control: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = [
        "-F",
        "/dev/null",
        "-i",
        key,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("UserKnownHostsFile={known_hosts}"));
    v.extend(["-o".into(), "GlobalKnownHostsFile=/dev/null".into()]);
    if let Some(path) = control {
        v.extend([
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={path}"),
            "-o".into(),
            "ControlPersist=60".into(),
        ]);
    }
    v.extend(args.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_argv_pins_key_and_host() {
        let v = ssh_argv(
            "/s/git-key-app",
            "/g/app.known_hosts",
            Some("/g/ssh-%C"),
            &[
                "-p".into(),
                "2222".into(),
                "git@h".into(),
                "git-receive-pack 'a.git'".into(),
            ],
        );
        let joined = v.join(" ");
        for want in [
            "-F /dev/null",
            "-i /s/git-key-app",
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "UserKnownHostsFile=/g/app.known_hosts",
            "GlobalKnownHostsFile=/dev/null",
            "ControlPath=/g/ssh-%C",
        ] {
            assert!(joined.contains(want), "{want}: {joined}");
        }
        assert_eq!(
            &v[v.len() - 4..],
            ["-p", "2222", "git@h", "git-receive-pack 'a.git'"]
        );
    }
}
