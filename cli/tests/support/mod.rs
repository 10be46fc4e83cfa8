//! Starts the real control plane (`bbctl controller run`) on a temporary home and drives it with
//! the real `kubectl`. Missing `kubectl` fails loudly: these suites never skip.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ControlPlane {
    pub home: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    /// Listen address; `127.0.0.1:0` picks a new port on every start.
    pub listen: String,
    /// `controller run`'s backend flags (default `--backend none`).
    pub backend: Vec<String>,
}

fn kubectl_bin() -> &'static str {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "kubectl is required for the control-plane suites and was not found on PATH"
    );
    "kubectl"
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts on a fixed free port, so a restart keeps the URL clients already hold.
    pub fn start_fixed_port() -> ControlPlane {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(&format!("127.0.0.1:{port}"))
    }

    /// Starts with these backend flags instead of `--backend none` (e.g. the fake backend).
    pub fn start_with_backend(backend: &[&str]) -> ControlPlane {
        Self::start_on_with("127.0.0.1:0", backend)
    }

    fn start_on(listen: &str) -> ControlPlane {
        Self::start_on_with(listen, &["--backend", "none"])
    }

    fn start_on_with(listen: &str, backend: &[&str]) -> ControlPlane {
        let home = tempfile::tempdir().expect("tempdir");
        let mut cp = ControlPlane {
            home,
            child: None,
            url: String::new(),
            listen: listen.to_string(),
            backend: backend.iter().map(ToString::to_string).collect(),
        };
        cp.spawn();
        cp
    }

    /// SIGTERM and wait: the graceful stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join("kubeconfig")
    }

    /// Starts (or restarts) the process on the same home and waits until it answers.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let child = Command::new(env!("CARGO_BIN_EXE_bbctl"))
            // The API suites exercise the control plane alone; the Docker suite lives in tests/.
            .args(["controller", "run"])
            .args(&self.backend)
            .args(["--listen", &self.listen, "--home"])
            .arg(self.home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bbctl controller run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.kubeconfig())
                && let Some(line) = text.lines().find(|l| l.trim_start().starts_with("server:"))
            {
                self.url = line.trim().trim_start_matches("server:").trim().to_string();
                let (code, _, _) = self.kubectl(&["get", "--raw", "/readyz"]);
                if code == 0 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("control plane exited early with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "control plane did not become ready in 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed; returns stdout.
    #[track_caller]
    /// Merges `status` (JSON) into a namespaced object's status subresource, as a runner does.
    pub fn patch_status(&self, kind: &str, name: &str, ns: &str, status: &str) {
        self.ok(&[
            "patch",
            kind,
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ]);
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_eq!(code, 0, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> (i32, String, String) {
        let mut child = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.home.path().join("token"))
            .expect("token")
            .trim()
            .to_string()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: the graceful path is what users hit.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A child process killed and reaped when the test is done with it, even on panic.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `python3` command that can import `module`, installing `package` from PyPI into a cache
/// under `$HOME/.cache/bot-bottle/pypi` the first time when the machine lacks it. Tests use
/// real, independent tools from PyPI (validators, clients) and must not skip without them.
pub fn python_with(module: &str, package: &str) -> Command {
    let importable = |pythonpath: Option<&Path>| {
        let mut c = Command::new("python3");
        c.args(["-c", &format!("import {module}")]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if importable(None) {
        return Command::new("python3");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let target = home.join(".cache/bot-bottle/pypi").join(package);
    if !importable(Some(&target)) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&target)
            .arg(package)
            .output()
            .expect("python3 is required for this suite");
        assert!(
            out.status.success(),
            "installing {package} from PyPI failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", &target);
    c
}
