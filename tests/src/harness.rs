//! What the suites that run real harnesses in a bottle share: the harness cache, sessions
//! through bbctl, and the checks every provider's credential must pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{Controller, containers_with, ok, run, scan_for, workspace_bin, workspace_root};

/// The harness cache CI keeps between runs (like the cargo target directory), filled by
/// hack/fetch-harnesses.sh.
pub fn harness_dir() -> PathBuf {
    let dir = std::env::var_os("BOT_BOTTLE_HARNESS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/bot-bottle/harnesses")
        });
    ok(Command::new("bash")
        .arg(workspace_root().join("hack/fetch-harnesses.sh"))
        .arg(&dir));
    dir
}

/// A controller that runs real harnesses: the stand-ins' CA (`ca_path`) trusted upstream, the
/// harness cache for image builds, a 5 s resync, and `env` on the controller process.
pub fn harness_controller(ca_path: &Path, env: &[(&str, &str)]) -> Controller {
    let harnesses = harness_dir();
    Controller::start_with_env(
        &[
            "--upstream-ca",
            &ca_path.to_string_lossy(),
            "--harness-dir",
            &harnesses.to_string_lossy(),
            "--resync-seconds",
            "5",
        ],
        env,
    )
}

/// A runner host's Codex login with API key `key`, in `dir/codex-home` (the controller's
/// `CODEX_HOME`).
pub fn codex_login(dir: &Path, key: &str) -> PathBuf {
    let home = dir.join("codex-home");
    std::fs::create_dir_all(&home).expect("mkdir codex home");
    std::fs::write(
        home.join("auth.json"),
        format!("{{\"OPENAI_API_KEY\": \"{key}\"}}"),
    )
    .expect("auth.json");
    home
}

/// The only element of `ids`.
pub fn one(ids: Vec<String>, what: &str) -> String {
    assert_eq!(ids.len(), 1, "expected exactly one {what}, found {ids:?}");
    ids.into_iter().next().unwrap_or_default()
}

/// An Agent reached the way a user does: `bbctl` against the controller's home.
#[derive(Debug)]
pub struct AgentSessions {
    bbctl: PathBuf,
    home: PathBuf,
    agent: String,
}

impl AgentSessions {
    pub fn new(cp: &Controller, agent: &str) -> AgentSessions {
        AgentSessions {
            bbctl: workspace_bin("bbctl"),
            home: cp.home.path().to_path_buf(),
            agent: format!("agent/{agent}"),
        }
    }

    fn bbctl(&self, verb: &str) -> Command {
        let mut c = Command::new(&self.bbctl);
        c.args([verb, &self.agent, "--home"]).arg(&self.home);
        c
    }

    /// `bbctl exec agent/NAME -- cmd...`
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut c = self.bbctl("exec");
        c.arg("--").args(cmd);
        run(&mut c)
    }

    /// `bbctl logs agent/NAME --egress`
    pub fn egress_audit(&self) -> String {
        let mut c = self.bbctl("logs");
        c.arg("--egress");
        ok(&mut c)
    }
}

/// The credential reached the stand-in on `path` as the sidecar's Authorization header, no
/// placeholder left the bottle, and nothing in the agent (env, argv, files) holds it.
pub fn assert_injected_and_unreadable(
    agent_label: &str,
    stand_in_log: &str,
    path: &str,
    secret: &str,
) {
    assert!(
        stand_in_log
            .lines()
            .any(|l| l.contains(path) && l.contains(&format!("Bearer {secret}"))),
        "the stand-in never saw the real credential on {path}:\n{stand_in_log}"
    );
    assert!(
        !stand_in_log.contains("egress-placeholder"),
        "a placeholder left the bottle:\n{stand_in_log}"
    );
    let agent = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let found = scan_for(&agent, secret);
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        ["0"],
        "the real credential is readable inside the agent: {found}"
    );
}

/// Every audit record for a host other than `hosts` is a refusal; returns how many there were.
/// An empty audit proves nothing, so the allowed hosts must be in it.
pub fn assert_other_hosts_refused(audit: &str, hosts: &[&str]) -> usize {
    assert!(
        audit.lines().any(|l| hosts.iter().any(|h| l.contains(h))),
        "the audit log holds no record of the allowed traffic:\n{audit}"
    );
    let others: Vec<&str> = audit
        .lines()
        .filter(|l| !hosts.iter().any(|h| l.contains(h)))
        .collect();
    for line in &others {
        assert!(
            line.contains("\"block\"") || line.contains("deny") || line.contains("refuse"),
            "a request to another host was not refused: {line}"
        );
    }
    others.len()
}

/// A stand-in "internet" server (`script`, with the test PKI's certificate and key) on the
/// egress network of the Agent labelled `agent_label`, answering there as `aliases`.
pub fn start_stand_in(
    agent_label: &str,
    name: &str,
    aliases: &[&str],
    script: &str,
    pki: (&str, &str),
) -> crate::Upstream {
    let egress_net = one(
        crate::networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    crate::start_upstream(name, &egress_net, aliases, script, pki)
}
