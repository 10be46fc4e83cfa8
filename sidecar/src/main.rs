//! `bb-sidecar`: the per-agent chokepoint (egress proxy, DLP, git-gate, supervise). This entry
//! point owns argument parsing and process lifecycle; each daemon lives in its own module.

use bb_sidecar::secret_files::SecretFiles;
use bb_sidecar::{audit, mint, policy, proxy};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bb-sidecar",
    version,
    about = "bot-bottle sidecar: the agent's only way out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and validate a policy file with the same schema as Bottle.spec.egress, then exit.
    CheckPolicy {
        /// Policy YAML (`log`, `routes[]`; auth names a token file).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Directory holding the token files the policy names (checked when given).
        #[arg(long, value_name = "DIR")]
        secrets_dir: Option<PathBuf>,
    },
    /// Run the egress proxy. SIGHUP reloads the policy (an invalid one keeps the old).
    Egress(Box<EgressOptions>),
    /// Install a delivery (a tar of ca.crt, ca.key, upstream-ca.crt, secrets/NAME and
    /// policy.yaml) read from stdin into DIR; the policy is renamed into place last.
    Receive {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the applied-policy hash a running proxy wrote to its status file.
    Applied {
        #[arg(long, value_name = "FILE")]
        status_file: PathBuf,
    },
    /// Run git-gate alone: the smart-HTTP git server of the repositories in --config.
    GitGate(GitGateOptions),
    /// Print how many requests and CONNECTs the running proxy has judged since it started (the
    /// sum of its decision counters): the runner's sign that an agent still talks to the world.
    Activity {
        /// The proxy's listen address, as reached from inside the sidecar.
        #[arg(long, default_value = "127.0.0.1:3128")]
        proxy: SocketAddr,
    },
    /// Print the audit log (JSON lines); with --follow, keep printing what is appended.
    AuditLog {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        follow: bool,
        /// Only the last N lines (then, with --follow, what is appended).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
struct GitGateOptions {
    /// Where the agent reaches git-gate (the sidecar listens on 9420).
    #[arg(long, default_value = "0.0.0.0:9420")]
    listen: SocketAddr,
    /// `git-gate.yaml`: the repositories served (name, upstream url, pinned hostKey).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Mirrors, hook links and known_hosts files.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The delivered secret files: push keys (`git-key-NAME`) and the tokens scanned for.
    #[arg(long, value_name = "DIR")]
    secrets_dir: PathBuf,
    /// Where gitleaks:allow proposals wait for a human; without it they are refused at once.
    #[arg(long, value_name = "DIR")]
    queue_dir: Option<PathBuf>,
    /// How long a gitleaks:allow proposal waits for a decision.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    allow_timeout: u64,
    /// Once listening, write the address bound here.
    #[arg(long, value_name = "FILE")]
    listen_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct EgressOptions {
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9099")]
    pub listen: SocketAddr,
    /// The bottle CA certificate the agent trusts (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// The bottle CA key (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_key: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for upstream servers, beside the system roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Append one JSON line per decision here (level from the policy's `log`).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// After every successful (re)load, write the loaded policy's hash here, so whoever
    /// delivered the file can tell it took effect.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Wait up to this many seconds for the policy file to appear before starting (its
    /// deliverer writes it last, after the CA and token files).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub wait_for_policy: u64,
    /// Let every host resolve to private, loopback and link-local addresses. For test rigs whose
    /// stand-in upstreams live on private networks only: it turns off the DNS-rebinding and
    /// cloud-metadata protection for every route.
    #[arg(long)]
    pub allow_private_upstreams: bool,
    /// Once listening, write the address bound (`--listen` with port 0 picks one) here, so a
    /// test rig or bench never races another process for a port.
    #[arg(long, value_name = "FILE")]
    pub listen_file: Option<PathBuf>,
    /// Also serve git-gate here (the agent's `http://bb-sidecar:9420`).
    #[arg(long, value_name = "ADDR", requires_all = ["git_gate_config", "git_gate_state"])]
    pub git_gate_listen: Option<SocketAddr>,
    /// git-gate's `git-gate.yaml`, read per request (absent: no repositories yet).
    #[arg(long, value_name = "FILE")]
    pub git_gate_config: Option<PathBuf>,
    /// git-gate's mirrors and hook links.
    #[arg(long, value_name = "DIR")]
    pub git_gate_state: Option<PathBuf>,
    /// Where proposals wait for a human (gitleaks:allow, the supervise tools); the runner
    /// mirrors it. Without it gitleaks:allow is refused at once and supervise cannot run.
    #[arg(long, value_name = "DIR")]
    pub queue_dir: Option<PathBuf>,
    /// How long a gitleaks:allow proposal holds its push waiting for a decision.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub allow_timeout: u64,
    /// Also serve the supervise MCP server here (the agent's `http://bb-sidecar:9100/mcp`).
    #[arg(long, value_name = "ADDR", requires = "queue_dir")]
    pub supervise_listen: Option<SocketAddr>,
    /// Once listening, write the supervise server's address here.
    #[arg(long, value_name = "FILE", requires = "supervise_listen")]
    pub supervise_listen_file: Option<PathBuf>,
    /// A name supervise requests may carry in `Host` (repeatable; any port): the sidecar's name
    /// as the agent knows it. Others are refused, so DNS rebinding cannot reach the server.
    #[arg(long = "supervise-host", value_name = "NAME", default_values_t = ["bb-sidecar".to_string(), "localhost".to_string(), "127.0.0.1".to_string()])]
    pub supervise_hosts: Vec<String>,
    /// How long a supervise tool call waits for the decision before answering "pending".
    #[arg(long, value_name = "SECONDS", default_value_t = 50)]
    pub decision_wait: u64,
    /// Cluster mode: the file the runner renews its hold on this bottle in (a deadline in
    /// milliseconds since the Unix epoch). Past it, or while it is missing or unreadable,
    /// everything that would leave is refused (`runner-lost`) and open connections are cut.
    #[arg(long, value_name = "FILE")]
    pub hold_file: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The policy and its applied-policy hash (keyed by `key`, the bottle CA key), both from one
/// read of the policy file and the secrets directory.
fn load_policy_with_hash(
    path: &Path,
    secrets_dir: Option<&Path>,
    key: &[u8],
) -> anyhow::Result<(policy::Policy, String)> {
    let text = read(path)?;
    let secrets = secrets_dir
        .map(|dir| {
            SecretFiles::read(dir).with_context(|| format!("reading secrets {}", dir.display()))
        })
        .transpose()?;
    let policy = policy::Policy::parse(&text, secrets.as_ref())
        .with_context(|| format!("{}", path.display()))?;
    let hash = bb_policy::file::applied_policy_hash(
        key,
        text.as_bytes(),
        secrets.iter().flat_map(SecretFiles::iter),
    );
    Ok((policy, hash))
}

/// Atomically replaces `path` with `hash`, so a reader never sees half a hash.
fn write_status(path: &Path, hash: &str) {
    let tmp = path.with_extension("tmp");
    let result =
        std::fs::write(&tmp, format!("{hash}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "writing the status file failed");
    }
}

fn wait_for(path: &Path, secs: u64) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !path.exists() {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("{} did not appear within {secs}s", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// Schema and rules always; token files too when their directory is given.
fn check_policy(path: &Path, secrets_dir: Option<&Path>) -> anyhow::Result<()> {
    let spec = match secrets_dir {
        Some(dir) => {
            policy::Policy::load(&read(path)?, Some(dir))
                .with_context(|| format!("{}", path.display()))?
                .spec
        }
        None => bb_policy::file::parse_sidecar_policy(&read(path)?)
            .with_context(|| format!("{}", path.display()))?,
    };
    println!(
        "{}: ok: {} route(s), log level {}",
        path.display(),
        spec.routes().len(),
        spec.log_level()
    );
    Ok(())
}

/// Copies `path` to stdout; following, polls for appended lines (and starts over when the file
/// is replaced or truncated) until stdout closes.
/// Where the last `n` lines of `file` start (a final newline ends the last line).
fn tail_offset(file: &mut std::fs::File, n: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    let mut seen = 0;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let block = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(block)?;
        for (i, &b) in block.iter().enumerate().rev() {
            let at = start + i as u64;
            if b == b'\n' && at + 1 < len {
                seen += 1;
                if seen == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

fn print_audit_log(path: &Path, follow: bool, tail: Option<u64>) -> anyhow::Result<()> {
    use std::io::{Read, Seek, Write};
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let mut file = if follow {
        loop {
            match open() {
                Ok(f) => break f,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
            }
        }
    } else {
        open()?
    };
    if let Some(n) = tail {
        let at = tail_offset(&mut file, n)?;
        file.seek(std::io::SeekFrom::Start(at))?;
    }
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stamp = file_stamp(path);
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        out.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = file_stamp(path);
        let pos = file.stream_position()?;
        let replaced = now.map(|s| s.0) != stamp.map(|s| s.0);
        let truncated = now.is_some_and(|s| s.2 < pos);
        if (replaced || truncated)
            && let Ok(f) = open()
        {
            file = f;
            stamp = now;
        }
    }
}

/// What identifies a version of a file: a rename swaps the inode, an edit the mtime or size.
fn file_stamp(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

/// Crates whose trace output carries payloads (agent traffic, headers with credentials):
/// kept at info even under a catch-all `trace`, unless the filter names them itself.
const PAYLOAD_LOGGERS: [&str; 3] = ["tungstenite", "tokio_tungstenite", "h2"];

fn log_filter(spec: Option<&str>, default: &str) -> tracing_subscriber::EnvFilter {
    let mut spec = spec.unwrap_or(default).to_string();
    for target in PAYLOAD_LOGGERS {
        if !spec.split(',').any(|d| d.trim_start().starts_with(target)) {
            spec.push_str(&format!(",{target}=info"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn main() -> ExitCode {
    // git runs bb-sidecar as git-gate's pre-receive hook and SSH wrapper, by link name.
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    match argv0
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some(bb_sidecar::git_gate::HOOK_NAME) => return bb_sidecar::git_gate::hook::run(),
        Some(bb_sidecar::git_gate::repo::SSH_WRAPPER_NAME) => {
            return bb_sidecar::git_gate::hook::run_ssh_wrapper();
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(
            std::env::var("BB_SIDECAR_LOG").ok().as_deref(),
            "info",
        ))
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::CheckPolicy {
            policy,
            secrets_dir,
        } => check_policy(&policy, secrets_dir.as_deref()),
        Command::Egress(opts) => run_egress(*opts),
        Command::Receive { dir } => bb_sidecar::delivery::receive(std::io::stdin().lock(), &dir)
            .with_context(|| format!("installing into {}", dir.display())),
        Command::Applied { status_file } => {
            read(&status_file).map(|hash| println!("{}", hash.trim()))
        }
        Command::GitGate(opts) => run_git_gate(opts),
        Command::AuditLog { file, follow, tail } => print_audit_log(&file, follow, tail),
        Command::Activity { proxy } => print_activity(proxy),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_activity(proxy: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = Some(std::time::Duration::from_secs(5));
    let mut conn = std::net::TcpStream::connect_timeout(&proxy, std::time::Duration::from_secs(5))
        .with_context(|| format!("connecting to the proxy at {proxy}"))?;
    conn.set_read_timeout(timeout)?;
    conn.set_write_timeout(timeout)?;
    let host = bb_sidecar::proxy::INTROSPECTION_HOST;
    write!(
        conn,
        "GET http://{host}/metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .context("reading the proxy's counters")?;
    let total = bb_sidecar::ledger::decisions_in(&answer)
        .context("the proxy's answer holds no decision counters")?;
    println!("{total}");
    Ok(())
}

fn run_git_gate(opts: GitGateOptions) -> anyhow::Result<()> {
    use bb_sidecar::git_gate::{GateConfig, http::GateServer, repo::GatePaths};
    // Refuse a bad config at start; the server re-reads it per request.
    GateConfig::load(&opts.config)?;
    let paths = GatePaths {
        state: opts.state_dir,
        secrets: opts.secrets_dir,
        queue: opts.queue_dir,
        allow_timeout_secs: opts.allow_timeout,
        exe: std::env::current_exe().context("locating bb-sidecar")?,
        hold_file: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let gate = Arc::new(GateServer::new(opts.config.clone(), paths)?);
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        let bound = listener.local_addr()?;
        tracing::info!(listen = %bound, "git-gate ready");
        if let Some(f) = &opts.listen_file {
            write_listen_file(f, bound)?;
        }
        tokio::select! {
            r = gate.serve(listener) => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
        }
        Ok(())
    })
}

/// Writes the address a listener bound (port 0 picks one) whole, for a rig to read.
fn write_listen_file(f: &Path, bound: SocketAddr) -> anyhow::Result<()> {
    let tmp = f.with_extension("tmp");
    std::fs::write(&tmp, format!("{bound}\n"))
        .and_then(|()| std::fs::rename(&tmp, f))
        .with_context(|| format!("writing {}", f.display()))
}

fn run_egress(opts: EgressOptions) -> anyhow::Result<()> {
    let EgressOptions {
        listen,
        ca_cert,
        ca_key,
        policy: policy_path,
        secrets_dir,
        upstream_ca,
        audit_log,
        status_file,
        wait_for_policy,
        allow_private_upstreams,
        listen_file,
        git_gate_listen,
        git_gate_config,
        git_gate_state,
        queue_dir,
        allow_timeout,
        supervise_listen,
        supervise_listen_file,
        supervise_hosts,
        decision_wait,
        hold_file,
    } = opts;
    let gate_secrets = secrets_dir.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Take over SIGHUP before anything else: its default action kills the process, and a
    // deliverer may signal while we still wait for the policy file.
    let mut hup = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?
    };
    wait_for(&policy_path, wait_for_policy)?;
    let ca_key = read(&ca_key)?;
    let minter = mint::Minter::new(&read(&ca_cert)?, &ca_key)?;
    let (policy, hash) =
        load_policy_with_hash(&policy_path, secrets_dir.as_deref(), ca_key.as_bytes())?;
    let upstream_ca = upstream_ca.as_deref().map(read).transpose()?;
    rt.block_on(async move {
        if allow_private_upstreams {
            tracing::warn!("--allow-private-upstreams: every route may reach private, loopback and link-local addresses (a test-rig switch; never in production)");
        }
        let hold = match hold_file.clone() {
            Some(f) => {
                tracing::info!(file = %f.display(), "egress is held by the runner's hold file");
                bb_sidecar::hold::Hold::from_file(f)
            }
            None => bb_sidecar::hold::Hold::unfenced(),
        };
        let mut proxy = proxy::Proxy::new(policy, minter, upstream_ca.as_deref(), allow_private_upstreams, hold.clone())?;
        if let Some(path) = audit_log.as_deref() {
            proxy = proxy.with_audit(audit::Audit::open(path).with_context(|| format!("opening {}", path.display()))?);
        }
        let proxy = Arc::new(proxy);
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(listen = %bound, policy = %hash, "egress proxy ready");
        if let Some(f) = &listen_file {
            write_listen_file(f, bound)?;
        }
        if let Some(f) = &status_file {
            write_status(f, &hash);
        }
        let reloader = proxy.clone();
        tokio::spawn(async move {
            // SIGHUP, or the file changing under us (the controller replaces it by atomic rename
            // in a mounted directory, which a signal cannot announce across containers).
            let mut seen = file_stamp(&policy_path);
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    s = hup.recv() => if s.is_none() { return },
                    _ = tick.tick() => {
                        let now = file_stamp(&policy_path);
                        if now == seen {
                            continue;
                        }
                        seen = now;
                    }
                }
                match load_policy_with_hash(&policy_path, secrets_dir.as_deref(), ca_key.as_bytes()) {
                    Ok((p, hash)) => {
                        tracing::info!(routes = p.spec.routes().len(), policy = %hash, "policy reloaded");
                        reloader.replace_policy(p);
                        if let Some(f) = &status_file {
                            write_status(f, &hash);
                        }
                    }
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "new policy rejected; keeping the old one"),
                }
            }
        });
        if let (Some(addr), Some(config), Some(state), Some(secrets)) =
            (git_gate_listen, git_gate_config, git_gate_state, gate_secrets)
        {
            let paths = bb_sidecar::git_gate::repo::GatePaths {
                state,
                secrets,
                queue: queue_dir.clone(),
                allow_timeout_secs: allow_timeout,
                exe: std::env::current_exe().context("locating bb-sidecar")?,
                hold_file,
            };
            let gate = Arc::new(
                bb_sidecar::git_gate::http::GateServer::new(config, paths)?.with_hold(hold.clone()),
            );
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            tracing::info!(listen = %addr, "git-gate ready");
            tokio::spawn(async move {
                if let Err(e) = gate.serve(listener).await {
                    tracing::error!(error = %e, "git-gate stopped");
                }
            });
        }
        if let (Some(addr), Some(queue)) = (supervise_listen, queue_dir) {
            let live = proxy.clone();
            let supervise = Arc::new(bb_sidecar::supervise::Supervise::new(
                move || live.policy().spec.routes().to_vec(),
                bb_sidecar::queue::Queue::new(queue),
                std::time::Duration::from_secs(decision_wait),
                supervise_hosts,
            ).with_hold(hold));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let bound = listener.local_addr()?;
            tracing::info!(listen = %bound, "supervise ready");
            if let Some(f) = &supervise_listen_file {
                write_listen_file(f, bound)?;
            }
            tokio::spawn(async move {
                if let Err(e) = supervise.serve(listener).await {
                    tracing::error!(error = %e, "supervise stopped");
                }
            });
        }
        let serve = proxy.serve(listener);
        tokio::select! {
            r = serve => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
        }
        Ok(())
    })
}

#[cfg(test)]
mod log_filter_tests {
    use super::*;

    fn directives(spec: Option<&str>) -> Vec<String> {
        log_filter(spec, "warn")
            .to_string()
            .split(',')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn payload_loggers_stay_at_info_under_a_catch_all_trace() {
        let d = directives(Some("trace"));
        for target in PAYLOAD_LOGGERS {
            assert!(d.contains(&format!("{target}=info")), "{target}: {d:?}");
        }
        // Named explicitly, a crate gets what was asked for.
        let d = directives(Some("trace,tungstenite=trace"));
        assert!(d.contains(&"tungstenite=trace".to_string()), "{d:?}");
        assert!(!d.contains(&"tungstenite=info".to_string()), "{d:?}");
        assert!(directives(None).contains(&"h2=info".to_string()));
    }

    #[test]
    fn tail_offset_finds_the_last_lines() {
        use std::io::{Read, Seek, SeekFrom};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "a\nbb\nccc\n").expect("write");
        let mut f = std::fs::File::open(&path).expect("open");
        let mut last = |n: u64| {
            let at = tail_offset(&mut f, n).expect("offset");
            f.seek(SeekFrom::Start(at)).expect("seek");
            let mut s = String::new();
            f.read_to_string(&mut s).expect("read");
            s
        };
        assert_eq!(last(1), "ccc\n");
        assert_eq!(last(2), "bb\nccc\n");
        assert_eq!(last(9), "a\nbb\nccc\n");
        assert_eq!(last(0), "");
    }
}
