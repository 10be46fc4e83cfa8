//! The local control plane as a background process: `bbctl controller start|stop|status`, and
//! the auto-start that commands needing the API use on a cold home directory.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bb_home::{Home, HomeError};

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
    write_flags(&home.join(FLAGS_IN_USE), args)?;
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
/// the background, with the flags `controller start` saved (on a free port unless they name
/// one), and the user is told so.
pub fn ensure_running(home: &Path) -> Result<(), CliError> {
    if status(home).is_some() {
        return Ok(());
    }
    let mut flags = saved_flags(home)?.unwrap_or_default();
    if !flags
        .iter()
        .any(|f| f == "--listen" || f.starts_with("--listen="))
    {
        flags.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
    }
    let r = start(home, &flags)?;
    eprintln!(
        "started the local control plane in the background (pid {}, {}{}); stop it with `bbctl controller stop`",
        r.pid,
        r.url.as_deref().unwrap_or("?"),
        if flags.len() > 2 {
            format!(
                ", flags saved by `bbctl controller start`: {}",
                flags.join(" ")
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The `controller run` flags `controller start -- FLAGS` saved: every later start of this
/// home's control plane, by `controller start` or by any command, uses them.
const SAVED_FLAGS: &str = "controller-flags.json";
/// The flags the running control plane was started with (rewritten at each start).
const FLAGS_IN_USE: &str = "controller.flags";

fn read_flags(path: &Path) -> Result<Option<Vec<String>>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::new(
                Kind::General,
                format!(
                    "{}: not a JSON list of flags ({e}); fix it, or `bbctl controller start --default-flags` forgets it",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::new(Kind::General, format!("{}: {e}", path.display()))),
    }
}

fn write_flags(path: &Path, flags: &[String]) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(flags)
        .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| CliError::new(Kind::General, format!("{}: {e}", path.display())))
}

pub fn saved_flags(home: &Path) -> Result<Option<Vec<String>>, CliError> {
    read_flags(&home.join(SAVED_FLAGS))
}

pub fn save_flags(home: &Path, flags: &[String]) -> Result<(), CliError> {
    write_flags(&home.join(SAVED_FLAGS), flags)
}

pub fn forget_flags(home: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(home.join(SAVED_FLAGS)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::new(Kind::General, e.to_string())),
    }
}

/// The flags the running control plane started with, when it was started by bbctl.
pub fn flags_in_use(home: &Path) -> Option<Vec<String>> {
    read_flags(&home.join(FLAGS_IN_USE)).ok().flatten()
}
