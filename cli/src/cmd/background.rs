//! The local control plane as a background process: `bbctl controller start|stop|status`, and
//! the auto-start that commands needing the API use on a cold home directory.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bb_controller::home::{Home, HomeError};

use crate::exit::{CliError, Kind};

/// A control plane holding the home's lock.
#[derive(Debug, Clone)]
pub struct Running {
    pub pid: String,
    pub url: Option<String>,
}

fn kubeconfig_server(home: &Path) -> Option<String> {
    let text = std::fs::read_to_string(home.join("kubeconfig")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().to_string())
}

/// Whether a control plane runs on `home` (its lock is held), without creating anything.
pub fn status(home: &Path) -> Option<Running> {
    if !home.join("controller.lock").exists() {
        return None;
    }
    match Home::open(home) {
        // We got the lock: nobody holds it. Dropping `Home` releases it again.
        Ok(_) => None,
        Err(HomeError::Locked { pid, .. }) => Some(Running {
            pid,
            url: kubeconfig_server(home),
        }),
        Err(_) => None,
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Starts `bbctl controller run --home HOME ARGS...` detached from this terminal and waits
/// until it has written its kubeconfig. Its log goes to HOME/controller.log.
pub fn start(home: &Path, args: &[String]) -> Result<Running, CliError> {
    if let Some(r) = status(home) {
        return Ok(r);
    }
    let io = |e: std::io::Error| CliError::new(Kind::General, format!("{}: {e}", home.display()));
    if !home.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(home)
            .map_err(io)?;
    }
    // A kubeconfig left by an earlier run would look like readiness.
    let kubeconfig = home.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let log_path = home.join("controller.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let exe = std::env::current_exe().map_err(io)?;
    let mut child = Command::new(exe)
        .args(["controller", "run", "--home"])
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a Ctrl-C meant for this command does not stop it.
        .process_group(0)
        .spawn()
        .map_err(io)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(code)) = child.try_wait() {
            return Err(CliError::new(
                Kind::Unavailable,
                format!(
                    "the control plane exited ({code}); {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                ),
            ));
        }
        if kubeconfig.exists() {
            return Ok(Running {
                pid: child.id().to_string(),
                url: kubeconfig_server(home),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(CliError::new(
        Kind::Unavailable,
        format!(
            "the control plane did not become ready within 30s; see {}",
            log_path.display()
        ),
    ))
}

/// Sends SIGTERM to the control plane on `home` and waits for it to let go of the home.
pub fn stop(home: &Path) -> Result<Option<Running>, CliError> {
    let Some(r) = status(home) else {
        return Ok(None);
    };
    let pid = r
        .pid
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            CliError::new(
                Kind::General,
                format!("the lock names no valid pid ({})", r.pid),
            )
        })?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| CliError::new(Kind::General, format!("signalling pid {}: {e}", r.pid)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(home).is_some() {
        if Instant::now() > deadline {
            return Err(CliError::new(
                Kind::Unavailable,
                format!("pid {} is still running 30s after SIGTERM", r.pid),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Some(r))
}

/// For commands that need the API on the default target: a cold home gets a control plane in
/// the background (on a free port), and the user is told so.
pub fn ensure_running(home: &Path) -> Result<(), CliError> {
    if status(home).is_some() {
        return Ok(());
    }
    let r = start(home, &["--listen".to_string(), "127.0.0.1:0".to_string()])?;
    eprintln!(
        "started the local control plane in the background (pid {}, {}); stop it with `bbctl controller stop`",
        r.pid,
        r.url.as_deref().unwrap_or("?")
    );
    Ok(())
}
