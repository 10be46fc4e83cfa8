//! End-to-end suites for bot-bottle live in `tests/tests/`: they drive the real binaries against
//! real Docker, the real control plane and real clients (`kubectl`, `curl`, `docker`).
//!
//! This library holds their harness: locating the built binaries, the hermetic base image, a
//! controller process on a temporary home, and command helpers that fail loudly.

pub mod chart;
pub mod cluster;
pub mod fake_cli;
pub mod forge;
pub mod harness;
pub mod integration;
pub mod rbac;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root, for suites that read `examples/`, `images/` or `hack/`.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A binary of this workspace, built by the same `cargo test --workspace` run (test executables
/// live in `<target>/<profile>/deps`, binaries one level up).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary under <target>/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the suites with `cargo test --workspace` so every binary is built",
        path.display()
    );
    path
}

/// Runs a command to completion, panicking with its output when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn docker<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// Fails (never skips) when the Docker engine does not answer: CI must run these suites.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Docker engine is required for the end-to-end suites and did not answer: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("the docker CLI is required for the end-to-end suites: {e}"),
    }
}

pub const BASE_IMAGE: &str = "bot-bottle/base:bookworm";

/// Builds the registry-free base image once per machine (hack/build-base-image.sh). An OS file
/// lock serialises concurrent suites and is released even if a builder is killed, so a crashed
/// run cannot leave later ones waiting on a stale lock file.
pub fn ensure_base_image() {
    require_docker();
    let present = || {
        run(&mut docker(&["image", "inspect", BASE_IMAGE]))
            .status
            .success()
    };
    if present() {
        return;
    }
    let path = std::env::temp_dir().join("bot-bottle-base-image.lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    // Another suite may have built it while we waited for the lock.
    if present() {
        return;
    }
    let script = workspace_root().join("hack/build-base-image.sh");
    let out = run(Command::new("bash").arg(&script).arg(BASE_IMAGE));
    drop(lock);
    assert!(
        out.status.success(),
        "building the base image with {} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bbctl controller run` with the Docker backend on a temporary home.
#[derive(Debug)]
pub struct Controller {
    pub home: tempfile::TempDir,
    pub listen: String,
    pub child: Option<Child>,
    pub args: Vec<String>,
    /// Extra environment of the controller process (and of it alone).
    pub env: Vec<(String, String)>,
    /// The bb-sidecar the controller puts in sidecar images (a test may swap it and respawn).
    pub sidecar_binary: PathBuf,
}

impl Controller {
    /// Starts on a fixed free port (a restart keeps the kubeconfig valid). `extra` is appended
    /// to `controller run`.
    pub fn start(extra: &[&str]) -> Controller {
        Self::start_with_env(extra, &[])
    }

    /// `start`, with `env` set on the controller process only.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Controller {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut c = Controller {
            home: tempfile::tempdir().expect("tempdir"),
            listen: format!("127.0.0.1:{port}"),
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sidecar_binary: workspace_bin("bb-sidecar"),
        };
        // The port was free a moment ago; another test may have taken it since. Only a lost
        // race is retried, on a new port.
        for _ in 0..3 {
            match c.try_spawn() {
                Ok(()) => return c,
                Err(log) if log.contains("Address already in use") => {
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .and_then(|l| l.local_addr())
                        .expect("free port")
                        .port();
                    c.listen = format!("127.0.0.1:{port}");
                }
                Err(log) => panic!("controller exited before it was ready:\n{log}"),
            }
        }
        panic!("controller could not find a free port:\n{}", c.log());
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join("kubeconfig")
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("controller.log")
    }

    /// (Re)starts the controller on its port and waits until the API answers.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("controller exited before it was ready:\n{log}");
        }
    }

    /// `spawn`, returning the controller's log when it exits before it is ready.
    fn try_spawn(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("controller log");
        // Docker unless the test names another backend.
        let backend: &[&str] = if self.args.iter().any(|a| a == "--backend") {
            &[]
        } else {
            &["--backend", "docker"]
        };
        let child = Command::new(workspace_bin("bbctl"))
            .args(["controller", "run"])
            .args(backend)
            .args(["--listen", &self.listen, "--home"])
            .arg(self.home.path())
            // The hermetic base, unless the test names another (a runtime other than Docker
            // has its own image store).
            .args(if self.args.iter().any(|a| a == "--base-image") {
                &[][..]
            } else {
                &["--base-image", BASE_IMAGE][..]
            })
            .arg("--sidecar-binary")
            .arg(&self.sidecar_binary)
            // The tests' stand-in upstreams live on the bottles' private Docker networks.
            .arg("--allow-private-upstreams")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bbctl controller run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.kubeconfig().exists()
                && run(&mut self.kubectl(&["get", "--raw", "/readyz"]))
                    .status
                    .success()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!("exit {status}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("controller not ready within 60s:\n{}", self.log());
    }

    /// SIGKILL: no graceful shutdown, as a crash would leave things.
    pub fn kill(&mut self) {
        crate::kill_child(&mut self.child);
    }

    pub fn stop(&mut self) {
        crate::term_child(&mut self.child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `bbctl ARGS` against this controller's home.
    pub fn bbctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(workspace_bin("bbctl"));
        c.args(args).arg("--home").arg(self.home.path());
        c
    }

    /// `bbctl exec agent/NAME -- CMD` against this controller's home, run to completion.
    pub fn exec(&self, agent: &str, cmd: &[&str]) -> Output {
        let mut c = Command::new(workspace_bin("bbctl"));
        c.args(["exec", &format!("agent/{agent}"), "--home"])
            .arg(self.home.path())
            .arg("--")
            .args(cmd);
        run(&mut c)
    }

    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        c
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        apply_with(self.kubectl(&["apply", "-f", "-"]), yaml);
    }

    /// `kubectl get ... -o jsonpath=PATH`, empty when the object or field is absent.
    pub fn jsonpath(&self, kind_name: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(kind_name);
        let p = format!("-o=jsonpath={path}");
        args.push(&p);
        let out = run(&mut self.kubectl(&args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `cond` holds, polling every 250 ms; panics with `what` and the log after
    /// `limit`. Returns how long it took.
    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl FnMut() -> bool) -> Duration {
        wait_until(what, limit, cond, || {
            format!("controller log:\n{}", self.log())
        })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
        // A failing assertion says what went wrong, rarely why: the controller's own account
        // of the run is the first thing to read.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(200)..].join("\n");
            eprintln!(
                "--- controller log (last 200 lines) ---\n{tail}\n--- end of controller log ---"
            );
        }
        // A test's own Cleanup guard may run while the controller still reconciles and
        // recreates what it removed; once the controller is stopped, everything this instance
        // labelled goes.
        if let Ok(id) = std::fs::read_to_string(self.home.path().join("instance-id")) {
            remove_all_with(&format!("bot-bottle.dev/controller={}", id.trim()));
        }
    }
}

/// SIGKILL to a child process, and wait for it: no graceful shutdown, as a crash leaves things.
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// SIGTERM to a child process, and wait for it to exit.
pub fn term_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let _ = c.wait();
    }
}

/// Polls `cond` every 100 ms until it holds, returning how long that took; panics with `what`
/// and `log()` after `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    log: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}\n{}", log());
}

/// A Bottle named `name` running `images/test-agent` (a shell and curl, no harness) with
/// `spec` (YAML lines already indented under `spec:`) after its agent provider.
pub fn test_agent_bottle(name: &str, spec: &str) -> String {
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {{name: {name}}}\nspec:\n  agentProvider:\n    template: custom\n    dockerfile: {}\n    command: [bash, -l]\n{spec}",
        dockerfile.display()
    )
}

/// Runs `kubectl` (already told `apply -f -`) with `yaml` on stdin, asserting it succeeded.
pub fn apply_with(mut kubectl: Command, yaml: &str) {
    use std::io::Write;
    let mut child = kubectl
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `base` plus one `--filter label=...` per comma-separated `key=value` in `labels` (Docker
/// ANDs separate filters; one filter with a comma would be a single odd label).
fn label_args<'a>(base: &[&'a str], labels: &'a str) -> Vec<String> {
    let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    for l in labels.split(',') {
        v.push("--filter".into());
        v.push(format!("label={l}"));
    }
    v
}

/// IDs of containers carrying `label` (`key=value`), running or not.
pub fn containers_with(labels: &str) -> Vec<String> {
    ok(&mut docker(&label_args(
        &["ps", "-aq", "--no-trunc"],
        labels,
    )))
    .split_whitespace()
    .map(String::from)
    .collect()
}

pub fn networks_with(labels: &str) -> Vec<String> {
    ok(&mut docker(&label_args(&["network", "ls", "-q"], labels)))
        .split_whitespace()
        .map(String::from)
        .collect()
}

pub fn volumes_with(labels: &str) -> Vec<String> {
    ok(&mut docker(&label_args(&["volume", "ls", "-q"], labels)))
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Removes every container and network carrying `label`, whatever state a failed test left.
pub fn remove_all_with(label: &str) {
    for c in containers_with(label) {
        let _ = run(&mut docker(&["rm", "-f", "-v", &c]));
    }
    for n in networks_with(label) {
        let _ = run(&mut docker(&["network", "rm", &n]));
    }
}

/// Removes everything carrying a label when dropped, so a failed test leaves nothing running.
#[derive(Debug)]
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_all_with(&self.0);
    }
}

/// A test CA and a server certificate for `names`, as PEM (ca, cert, key).
pub fn test_pki(names: &[&str]) -> (String, String, String) {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(names);
    (ca.pem(), cert, key)
}

/// A test CA that signs server certificates on demand (when a name, such as a container's
/// address, is known only after the CA had to be handed out).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "bot-bottle e2e upstream CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("ca key");
        let cert = ca.self_signed(&key).expect("ca cert");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (host names or IP addresses), as PEM (cert, key).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let leaf =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &self.cert, &self.key)
            .expect("leaf cert");
        (leaf_cert.pem(), leaf_key.serialize_pem())
    }
}

/// An HTTPS server that logs every request it receives (one JSON line on stdout) and answers
/// A stand-in upstream container, removed when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = run(&mut docker(&["rm", "-f", &self.name]));
    }
}

/// Runs the Python `script` in the base image as container `name` on `network`, reachable there
/// as each of `aliases`, with `CERT` and `KEY` (PEM) in its environment: a test's own "internet".
pub fn start_upstream(
    name: &str,
    network: &str,
    aliases: &[&str],
    script: &str,
    (cert, key): (&str, &str),
) -> Upstream {
    let _ = run(&mut docker(&["rm", "-f", name]));
    let mut args: Vec<String> = ["run", "-d", "--name", name]
        .into_iter()
        .chain(["--label", "bot-bottle.e2e=upstream", "--network", network])
        .map(String::from)
        .collect();
    for a in aliases {
        args.extend(["--network-alias".to_string(), a.to_string()]);
    }
    args.extend([
        "-e".to_string(),
        format!("CERT={cert}"),
        "-e".to_string(),
        format!("KEY={key}"),
        BASE_IMAGE.to_string(),
        "python3".to_string(),
        "-u".to_string(),
        "-c".to_string(),
        script.to_string(),
    ]);
    ok(&mut docker(&args));
    Upstream {
        name: name.to_string(),
    }
}

/// `200 hello from upstream`: the test's own "internet" (shared with `bbctl demo`).
pub const UPSTREAM_PY: &str = include_str!("../../images/demo-upstream/upstream.py");

/// A detached tmux session running one shell line under a real terminal (how the suites drive
/// `bbctl attach` as a person would); killed when dropped.
#[derive(Debug)]
pub struct Tmux {
    pub name: String,
}

impl Tmux {
    /// Starts `line` in a new `width`x`height` session named after `tag` and this process.
    pub fn start(tag: &str, line: &str, (width, height): (u16, u16)) -> Tmux {
        let name = format!("bb-e2e-{tag}-{}", std::process::id());
        ok(Command::new("tmux").args([
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            line,
        ]));
        Tmux { name }
    }

    /// What the terminal shows now.
    pub fn pane(&self) -> String {
        ok(Command::new("tmux").args(["capture-pane", "-p", "-t", &self.name]))
    }

    /// Types `keys` and Enter.
    pub fn send(&self, keys: &str) {
        ok(Command::new("tmux").args(["send-keys", "-t", &self.name, keys, "Enter"]));
    }

    pub fn resize(&self, width: u16, height: u16) {
        ok(Command::new("tmux").args([
            "resize-window",
            "-t",
            &self.name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(Command::new("tmux").args(["kill-session", "-t", &self.name]));
    }
}

/// Runs `script` with sh inside an agent container as the agent user (uid 1000): whether it
/// succeeded, and its stdout then stderr.
pub fn in_agent(container: &str, script: &str) -> (bool, String) {
    let out = run(&mut docker(&[
        "exec", "-u", "1000", container, "sh", "-c", script,
    ]));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `scan_for` for the sidecar, whose image has no shell: a helper joins its PID namespace as
/// its user (so it may read its processes' environments) and walks its filesystem through
/// /proc/1/root; paths are reported as the sidecar sees them.
pub fn scan_sidecar(sidecar: &str, needle: &str) -> String {
    let out = run(&mut docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pid",
        &format!("container:{sidecar}"),
        "--user",
        "65532:65532",
        BASE_IMAGE,
        "bash",
        "-c",
        &scan_script(needle, "/proc/1/root/"),
    ]));
    readable(
        sidecar,
        String::from_utf8_lossy(&out.stdout).replace("/proc/1/root/", "/"),
    )
}

/// What a scan printed, once it has shown it could read what it searched: a scan that reads
/// nothing finds nothing anywhere, which would pass every "found nowhere" check.
fn readable(container: &str, found: String) -> String {
    assert!(
        !found.contains(UNREADABLE),
        "the scan cannot read {container}'s first process or its filesystem, so it would find nothing anywhere: {found}"
    );
    found
}

/// What `scan_script` prints when its own positive control fails.
const UNREADABLE: &str = "scan-unreadable";

/// Counts `needle` in every process's environment and argv, then lists files holding it. The
/// needle travels base64-encoded and reaches grep through a pipe, so the scan never finds its
/// own command line.
pub fn scan_for(container: &str, needle: &str) -> String {
    let out = run(&mut docker(&[
        "exec",
        container,
        "bash",
        "-c",
        &scan_script(needle, "/"),
    ]));
    readable(container, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The shell script behind `scan_for`, searching files under `root`. Its positive control comes
/// first: the container's first process (not the scan's own shell) must show its environment
/// (Docker always gives it `PATH`) and `root` must list, or it prints `scan-unreadable`.
pub fn scan_script(needle: &str, root: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(needle);
    format!(
        "[ \"$(tr '\\0' '\\n' < /proc/1/environ 2>/dev/null | grep -c '^PATH=')\" -gt 0 ] && [ -n \"$(ls -A {root} 2>/dev/null)\" ] \
           || {{ echo {UNREADABLE}; exit 0; }}; \
         T=$(printf %s '{b64}' | base64 -d); \
         cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -cF -f <(printf %s \"$T\"); \
         grep -rlsIF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -f <(printf %s \"$T\") {root} | head -3"
    )
}
