//! How every runtime starts bb-sidecar: its command line, the ports and directories it uses,
//! and the supervise queue it shares with the runner.

use super::bottle_ca::BottleCa;
use super::names::{PROXY_PORT, SIDECAR_ALIAS};
use super::{BackendError, RuntimeConfig, SidecarPlan, Step};

/// Inside the sidecar: a tmpfs holding CA, tokens and policy, so none touches a disk or env.
pub const SIDECAR_RUN: &str = "/run/bot-bottle";
/// Where the sidecar image keeps bb-sidecar (it has no shell and no PATH lookup to rely on).
pub const SIDECAR_BINARY: &str = "/usr/local/bin/bb-sidecar";
/// The unprivileged user the sidecar runs as (the image's USER). Execs in the sidecar run as
/// it too: root there holds no capabilities, so it could not read the tmpfs.
pub const SIDECAR_UID: u32 = 65532;
pub const SIDECAR_USER: &str = "65532:65532";

/// Where the agent reaches git-gate (`GATE_BASE`).
pub const GIT_GATE_PORT: u16 = 9420;
/// git-gate's base URL as the agent's git config names it: the sidecar's alias and port.
pub const GATE_BASE: &str = "http://bb-sidecar:9420";
/// git-gate's mirrors, on their own tmpfs.
pub const GIT_GATE_STATE: &str = "/var/lib/bot-bottle/git";
/// Where the agent reaches the supervise MCP server.
pub const SUPERVISE_PORT: u16 = 9100;
/// The supervise queue inside the sidecar: the runner's per-Agent queue directory, mounted.
pub const QUEUE_DIR: &str = "/run/bot-bottle-queue";
/// Where the runner's hold directory is mounted in the sidecar (cluster mode, read-only).
pub const HOLD_DIR: &str = "/run/bot-bottle-hold";
/// The hold file in the hold directory: the deadline, in milliseconds since the Unix epoch.
pub const HOLD_FILE: &str = "deadline";
/// Identifies how a sidecar was made (image, command, mounts): another value replaces it.
pub const SPEC_LABEL: &str = "bot-bottle.dev/sidecar-spec";

/// Where an Agent's sidecar queues proposals: `queue/` of its supervise directory, the only
/// part of it the sidecar sees.
pub fn queue_dir(supervise_dir: &std::path::Path) -> std::path::PathBuf {
    supervise_dir.join("queue")
}

/// The supervise queue directory on the host. The sidecar's unprivileged user must write
/// there whatever uid the runner has, so the directory is open to all; it lives inside the
/// Agent's state directory, which only the runner's user can enter.
pub fn create_queue_dir(dir: &std::path::Path) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)))
        .map_err(|e| {
            BackendError::new(
                Step::Sidecar,
                format!("creating the supervise queue {}: {e}", dir.display()),
            )
        })
}

/// The sidecar's command line for `plan`.
pub fn command(plan: &SidecarPlan, config: &RuntimeConfig) -> Vec<String> {
    let run = SIDECAR_RUN;
    let mut cmd: Vec<String> = [
        "egress",
        "--listen",
        &format!("0.0.0.0:{PROXY_PORT}"),
        "--ca-cert",
        &format!("{run}/ca.crt"),
        "--ca-key",
        &format!("{run}/ca.key"),
        "--policy",
        &format!("{run}/policy.yaml"),
        "--secrets-dir",
        &format!("{run}/secrets"),
        "--status-file",
        &format!("{run}/applied"),
        "--audit-log",
        &format!("{run}/audit.log"),
        "--wait-for-policy",
        "60",
        "--git-gate-listen",
        &format!("0.0.0.0:{GIT_GATE_PORT}"),
        "--git-gate-config",
        &format!("{run}/secrets/{}", bb_crds::policy::GIT_GATE_CONFIG_FILE),
        "--git-gate-state",
        GIT_GATE_STATE,
    ]
    .map(String::from)
    .to_vec();
    if plan.supervise {
        cmd.extend(
            [
                "--queue-dir",
                QUEUE_DIR,
                "--supervise-listen",
                &format!("0.0.0.0:{SUPERVISE_PORT}"),
            ]
            .map(String::from),
        );
    }
    if config.upstream_ca.is_some() {
        cmd.extend([
            "--upstream-ca".to_string(),
            format!("{run}/upstream-ca.crt"),
        ]);
    }
    if config.allow_private_upstreams {
        cmd.push("--allow-private-upstreams".to_string());
    }
    if config.fencing.is_some() {
        cmd.extend(["--hold-file".to_string(), format!("{HOLD_DIR}/{HOLD_FILE}")]);
    }
    cmd
}

/// The Agent's hold directory on the host, created readable by the sidecar's user (the runner
/// writes the hold file; the sidecar only reads it, through a read-only mount).
pub fn create_hold_dir(dir: &std::path::Path) -> Result<(), BackendError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| {
            BackendError::new(
                Step::Sidecar,
                format!("creating the hold directory {}: {e}", dir.display()),
            )
        })
}

/// What `bb-sidecar receive` installs into `SIDECAR_RUN`: on a new sidecar its CA (and the
/// upstream CA it trusts), then the token files, and the policy last.
pub fn delivery(
    plan: &SidecarPlan,
    ca: Option<&BottleCa>,
    upstream_ca: Option<&std::path::Path>,
) -> Result<Vec<u8>, BackendError> {
    let fail = |e: std::io::Error| BackendError::new(Step::Policy, format!("packing files: {e}"));
    let mut tar = super::archive::TarBuilder::default();
    if let Some(ca) = ca {
        tar.file("ca.crt", ca.cert_pem.as_bytes(), 0o600, 0)
            .map_err(fail)?;
        tar.file("ca.key", ca.key_pem.as_bytes(), 0o600, 0)
            .map_err(fail)?;
        if let Some(path) = upstream_ca {
            let pem = std::fs::read(path).map_err(|e| {
                BackendError::new(Step::Sidecar, format!("reading {}: {e}", path.display()))
            })?;
            tar.file("upstream-ca.crt", &pem, 0o644, 0).map_err(fail)?;
        }
    }
    for (name, value) in &plan.secret_files {
        tar.file(&format!("secrets/{name}"), value.expose(), 0o600, 0)
            .map_err(fail)?;
    }
    tar.file("policy.yaml", plan.policy_yaml.as_bytes(), 0o600, 0)
        .map_err(fail)?;
    tar.finish().map_err(fail)
}

/// `bb-sidecar activity`: how many requests the sidecar's proxy has judged since it started.
pub fn activity() -> Vec<String> {
    vec![
        SIDECAR_BINARY.into(),
        "activity".into(),
        "--proxy".into(),
        format!("127.0.0.1:{PROXY_PORT}"),
    ]
}

/// The number `bb-sidecar activity` printed.
pub fn parse_activity(out: &crate::ExecOutput) -> Result<u64, crate::BackendError> {
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.success(), text.trim().parse()) {
        (true, Ok(n)) => Ok(n),
        _ => Err(crate::BackendError::new(
            crate::Step::Observe,
            format!("reading the sidecar's request count: {}", out.tail()),
        )),
    }
}

/// `bb-sidecar audit-log`: the egress audit log, optionally followed.
pub fn audit_log(follow: bool, tail: Option<u64>) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        SIDECAR_BINARY.into(),
        "audit-log".into(),
        "--file".into(),
        format!("{SIDECAR_RUN}/audit.log"),
    ];
    if follow {
        argv.push("--follow".into());
    }
    if let Some(n) = tail {
        argv.push("--tail".into());
        argv.push(n.to_string());
    }
    argv
}

/// The environment that points an agent which reaches its sidecar by address (a VM, or a
/// container without Docker's resolver) at the proxy, and its TLS clients at the bottle CA
/// (`ca_path`) and the system bundle it was added to. git-gate and supervise are reached by
/// the name `bb-sidecar` (an /etc/hosts entry), directly, not through the proxy.
pub fn agent_proxy_env(sidecar: &str, ca_path: &str) -> std::collections::BTreeMap<String, String> {
    let proxy = format!("http://{sidecar}:{PROXY_PORT}");
    let no_proxy = format!("localhost,127.0.0.1,::1,{sidecar},{SIDECAR_ALIAS}");
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    [
        ("HTTPS_PROXY", proxy.as_str()),
        ("HTTP_PROXY", &proxy),
        ("https_proxy", &proxy),
        ("http_proxy", &proxy),
        ("NO_PROXY", &no_proxy),
        ("no_proxy", &no_proxy),
        ("NODE_EXTRA_CA_CERTS", ca_path),
        ("SSL_CERT_FILE", bundle),
        ("REQUESTS_CA_BUNDLE", bundle),
        ("GIT_SSL_CAINFO", bundle),
        ("CURL_CA_BUNDLE", bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_base_is_the_sidecars_alias_and_port() {
        assert_eq!(GATE_BASE, format!("http://{SIDECAR_ALIAS}:{GIT_GATE_PORT}"));
    }
}
