//! Secret discovery: before the runner copies a workspace, skills and provider files into an
//! agent, it finds the credentials in exactly those files, so the sidecar guards their values.

pub mod formats;

use std::path::Path;

use bb_crds::bottle::SecretDiscovery;
use bb_crds::policy::guarded::GuardedSecret;
use bb_crds::policy::secret_rules::LineRules;

use bb_backend::archive::{TreeEntry, walk_tree};
use bb_backend::provision::copied_trees;
use bb_backend::{AgentPlan, BackendError, Step};

/// Files larger than this are not read: credential files are small, and a large file is data.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// A file whose first bytes hold a NUL is binary and not read.
const SNIFF_BYTES: usize = 8 << 10;
/// At most this many secrets are guarded per Agent (a workspace with more is a dataset, and
/// the status says the rest were not).
pub const MAX_SECRETS: usize = 2000;

/// What discovery found, and what it left out by rule.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub secrets: Vec<GuardedSecret>,
    pub files_read: u64,
    pub bytes_read: u64,
    pub skipped_large: u64,
    pub skipped_binary: u64,
    /// Secrets found beyond `MAX_SECRETS`, not guarded.
    pub dropped: u64,
}

impl Discovery {
    /// One line for events and conditions: how many, and where (paths and kinds, no values).
    pub fn summary(&self) -> String {
        let n = self.secrets.len();
        let mut text = format!(
            "{n} workspace secret{} guarded",
            if n == 1 { "" } else { "s" }
        );
        if n > 0 {
            let shown: Vec<String> = self.secrets.iter().take(10).map(|s| s.origin()).collect();
            text.push_str(": ");
            text.push_str(&shown.join(", "));
            if n > shown.len() {
                text.push_str(&format!(" and {} more", n - shown.len()));
            }
        }
        if self.dropped > 0 {
            text.push_str(&format!(
                "; {} more found and NOT guarded (over {MAX_SECRETS})",
                self.dropped
            ));
        }
        text
    }
}

/// Whether `at` (a path relative to `/` in the agent) falls under one of `exclude`, which name
/// files or directories relative to the workspace (`fixtures/`, `test/keys.pem`).
fn excluded(at: &str, exclude: &[String]) -> bool {
    let ws = bb_backend::provision::WORKSPACE.trim_start_matches('/');
    let Some(rel) = at.strip_prefix(ws).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    exclude.iter().any(|e| {
        let e = e.trim_matches('/');
        rel == e || rel.starts_with(&format!("{e}/"))
    })
}

/// Finds the credentials in every file `plan` copies into the agent: provider files, skills and
/// the workspace, under `settings`. Reading a file that is copied fails the step (provisioning
/// would fail on it too).
pub fn discover(
    plan: &AgentPlan,
    skills_root: &Path,
    settings: Option<&SecretDiscovery>,
) -> Result<Discovery, BackendError> {
    let mut d = Discovery::default();
    if settings.and_then(|s| s.enabled) == Some(false) {
        return Ok(d);
    }
    let exclude = settings.map(|s| s.exclude.clone()).unwrap_or_default();
    let rules = LineRules::shared();
    for f in plan.files.iter().chain(&plan.credential_files) {
        scan(&mut d, rules, &f.guest_path, &f.contents);
    }
    for tree in copied_trees(plan, skills_root)? {
        walk_tree(&tree.src, &tree.at, tree.include_git, |entry| {
            let TreeEntry::File { at, path, len, .. } = entry else {
                return Ok(());
            };
            if excluded(&at, &exclude) {
                return Ok(());
            }
            if len > MAX_FILE_BYTES {
                d.skipped_large += 1;
                return Ok(());
            }
            let bytes = std::fs::read(&path)?;
            if memchr::memchr(0, &bytes[..bytes.len().min(SNIFF_BYTES)]).is_some() {
                d.skipped_binary += 1;
                return Ok(());
            }
            scan(&mut d, rules, &format!("/{at}"), &bytes);
            Ok(())
        })
        .map_err(|e| {
            BackendError::new(
                Step::Discover,
                format!("reading {} for secrets: {e}", tree.what),
            )
        })?;
    }
    Ok(d)
}

/// Where the runner keeps what it last guarded for an Agent (in the Agent's own directory on
/// the runner's host, 0600 beside the bottle CA key): every later reconcile hands the sidecar the
/// same set, until the agent is provisioned again.
pub fn stored_path(agent_dir: &Path) -> std::path::PathBuf {
    agent_dir.join(bb_crds::policy::guarded::GUARDED_SECRETS_FILE)
}

/// What was stored for the Agent; `None` when nothing was (an Agent provisioned before discovery
/// existed, or a runner that lost its state).
pub fn load(agent_dir: &Path) -> std::io::Result<Option<Vec<GuardedSecret>>> {
    match std::fs::read(stored_path(agent_dir)) {
        Ok(bytes) => bb_crds::policy::guarded::from_file(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `secrets` for the Agent, replacing what was there (written beside, then renamed).
pub fn store(agent_dir: &Path, secrets: &[GuardedSecret]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(agent_dir)?;
    let path = stored_path(agent_dir);
    let tmp = path.with_extension("incoming");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(&bb_crds::policy::guarded::to_file(secrets))?;
    std::fs::rename(&tmp, &path)
}

fn scan(d: &mut Discovery, rules: &LineRules, path: &str, bytes: &[u8]) {
    d.files_read += 1;
    d.bytes_read += bytes.len() as u64;
    for f in formats::find(path, bytes, rules) {
        if d.secrets.iter().any(|s| s.value == f.value) {
            continue;
        }
        if d.secrets.len() >= MAX_SECRETS {
            d.dropped += 1;
            continue;
        }
        d.secrets.push(GuardedSecret {
            path: path.to_string(),
            line: f.line,
            kind: f.kind.to_string(),
            value: f.value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(ws: &Path) -> AgentPlan {
        AgentPlan {
            image: bb_backend::ImageSource::Reference("img:1".into()),
            command: vec![],
            env: Default::default(),
            secret_env: Default::default(),
            runtime: Default::default(),
            prompt: None,
            workspace: Some(bb_crds::agent::Workspace {
                host_path: ws.display().to_string(),
                copy: None,
                include_git: None,
            }),
            gitconfig: None,
            dirs: vec![],
            files: vec![],
            credential_files: vec![],
            skills: vec![],
            skills_dir: "/home/agent/.skills".into(),
            container_hash: String::new(),
            inputs_hash: String::new(),
        }
    }

    #[test]
    fn reads_what_is_copied_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("fixtures")).expect("mkdir");
        std::fs::create_dir_all(ws.join(".git")).expect("mkdir");
        std::fs::write(ws.join(".env"), "API_TOKEN=tok-0123456789abcdef\n").expect("write");
        std::fs::write(ws.join("fixtures/.env"), "API_TOKEN=fixture-token-123456\n")
            .expect("write");
        std::fs::write(
            ws.join(".git/config"),
            "url = https://bot:Gx7pL2qZ9tR4@git.example.test/x.git\n",
        )
        .expect("write");
        std::fs::write(ws.join("blob.bin"), b"\0API_TOKEN=binary-token-1234\n").expect("write");
        let outside = dir.path().join("outside.env");
        std::fs::write(&outside, "API_TOKEN=outside-token-12345\n").expect("write");
        std::os::unix::fs::symlink(&outside, ws.join("linked.env")).expect("link");
        let big = format!(
            "API_TOKEN=too-big-token-12345\n{}",
            "x".repeat(MAX_FILE_BYTES as usize)
        );
        std::fs::write(ws.join("big.env"), big).expect("write");

        let plan = plan_for(&ws);
        let d = discover(&plan, dir.path(), None).expect("discover");
        let origins: Vec<String> = d.secrets.iter().map(GuardedSecret::origin).collect();
        assert_eq!(
            origins,
            vec![
                "/workspace/.env:1 (dotenv)".to_string(),
                "/workspace/fixtures/.env:1 (dotenv)".to_string()
            ]
        );
        assert_eq!((d.skipped_large, d.skipped_binary), (1, 1));

        let settings = SecretDiscovery {
            enabled: None,
            exclude: vec!["fixtures/".into()],
        };
        let d = discover(&plan, dir.path(), Some(&settings)).expect("discover");
        assert_eq!(d.secrets.len(), 1);
        assert_eq!(
            d.summary(),
            "1 workspace secret guarded: /workspace/.env:1 (dotenv)"
        );
        let off = SecretDiscovery {
            enabled: Some(false),
            exclude: vec![],
        };
        assert!(
            discover(&plan, dir.path(), Some(&off))
                .expect("off")
                .secrets
                .is_empty()
        );

        let mut with_git = plan.clone();
        if let Some(w) = with_git.workspace.as_mut() {
            w.include_git = Some(true);
        }
        let d = discover(&with_git, dir.path(), None).expect("discover");
        assert!(d.secrets.iter().any(|s| s.path == "/workspace/.git/config"));
    }

    #[test]
    fn the_store_round_trips_privately() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let agent_dir = dir.path().join("uid-1");
        assert_eq!(load(&agent_dir).expect("load"), None);
        let s = vec![GuardedSecret {
            path: "/workspace/.env".into(),
            line: 1,
            kind: "dotenv".into(),
            value: b"stored-secret-value".to_vec(),
        }];
        store(&agent_dir, &s).expect("store");
        assert_eq!(load(&agent_dir).expect("load"), Some(s));
        let mode = std::fs::metadata(stored_path(&agent_dir))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_workspace_fails_the_step() {
        let plan = plan_for(Path::new("/nonexistent/bb-discovery"));
        let e = discover(&plan, Path::new("/"), None).expect_err("fails");
        assert_eq!(e.step, Step::Discover);
        assert!(
            e.message.contains("/nonexistent/bb-discovery"),
            "{}",
            e.message
        );
    }
}
