//! An in-memory backend for controller tests, with fault injection (fail a step N times, hang
//! a step, make resources vanish). It stands in only where a real runtime cannot run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb_crds::agent::SidecarEndpoints;

use futures_util::StreamExt;

use super::{
    AgentId, AgentPlan, Backend, BackendError, Chunk, ImageSource, LogOptions, LogSource, Observed,
    Output, OutputStream, SecretBytes, Session, SessionSpec, SidecarPlan, Step,
};

/// Stands in for a bottle CA key: the fake's sidecars hash what they "load" with it.
const FAKE_CA_KEY: &[u8] = b"fake bottle CA key";

/// What the fake holds for one Agent.
#[derive(Debug, Clone, Default)]
pub struct FakeAgent {
    pub image: Option<String>,
    pub network: bool,
    pub sidecar_policy: Option<String>,
    pub sidecar_policy_yaml: Option<String>,
    pub secret_files: BTreeMap<String, SecretBytes>,
    pub agent_hash: Option<String>,
    /// The inputs hash provisioning delivered (`None`: not provisioned).
    pub provisioned: Option<String>,
    /// How often provisioning ran.
    pub provisions: u32,
    /// The sidecar is stopped (`stop`), as is the agent while `agent_stopped`.
    pub stopped: bool,
    pub agent_stopped: bool,
    pub sidecar_creates: u32,
    pub agent_creates: u32,
    /// How often a stopped agent container was started again (`start_agent`).
    pub agent_starts: u32,
    /// Requests its sidecar has judged since it started (`egress_count`).
    pub egress: u64,
    pub policy_reloads: u32,
    pub snapshots: u32,
    /// The image the agent container was last created from.
    pub agent_image: Option<String>,
    /// How often an image was built or looked up for this Agent.
    pub image_builds: u32,
}

#[derive(Debug, Default)]
struct Faults {
    fail: HashMap<Step, u32>,
    hang: HashMap<Step, Duration>,
    /// How many times each step was attempted.
    attempts: HashMap<Step, u32>,
    /// How many calls of each step are under way now, and the most there ever were at once.
    in_flight: HashMap<Step, (u32, u32)>,
    /// An image reference that never builds (`controller run --fake-failing-image`).
    failing_image: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeBackend {
    agents: Arc<Mutex<BTreeMap<AgentId, FakeAgent>>>,
    faults: Arc<Mutex<Faults>>,
    /// Snapshot images that exist (pruning one tests the fresh-image fallback).
    images: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Snapshots kept past their Agent (`keep_snapshot`): never removed.
    kept: Arc<Mutex<Vec<String>>>,
    sessions: Arc<Mutex<Sessions>>,
    /// Where starts and stops are recorded, when a process of its own runs it.
    journal: Option<Arc<Journal>>,
    /// Cluster mode: where the runner keeps its holds (`<dir>/<uid>/deadline`).
    holds: Option<std::path::PathBuf>,
}

/// An append-only record of the agents this fake ran: one JSON object a line, written before
/// the call returns, so a killed process has recorded everything it started.
#[derive(Debug)]
struct Journal {
    file: Mutex<std::fs::File>,
    runner: String,
}

impl Journal {
    fn record(&self, event: &str, id: &AgentId, image: Option<&str>) {
        use std::io::Write;
        let line = serde_json::json!({
            "atMs": jiff::Timestamp::now().as_millisecond(),
            "runner": self.runner,
            "event": event,
            "agent": format!("{}/{}", id.namespace, id.name),
            "uid": id.uid,
            "image": image,
        });
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::warn!(error = %e, "writing the fake backend's journal failed");
        }
    }
}

/// Sessions run as host processes: real streams and exit codes without a container runtime.
#[derive(Debug, Default)]
struct Sessions {
    next: u64,
    running: HashMap<String, tokio::process::Child>,
    /// Every session's spec, in order (secret env included, for assertions).
    opened: Vec<SessionSpec>,
    resized: Vec<(String, u16, u16)>,
    logs: HashMap<(String, LogSource), Vec<Chunk>>,
}

/// A child's pipe as a stream of chunks.
fn pipe_chunks(
    pipe: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    stream: OutputStream,
) -> Output {
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::unfold(
        pipe,
        move |mut pipe| async move {
            let mut buf = vec![0u8; 8192];
            match pipe.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok(Chunk {
                            stream,
                            data: bytes::Bytes::from(buf),
                        }),
                        pipe,
                    ))
                }
                Err(e) => Some((Err(BackendError::new(Step::Session, e.to_string())), pipe)),
            }
        },
    ))
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every agent start and stop in `path` (appended), as runner `runner`.
    pub fn with_journal(mut self, path: &std::path::Path, runner: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.journal = Some(Arc::new(Journal {
            file: Mutex::new(file),
            runner: runner.to_string(),
        }));
        Ok(self)
    }

    /// Fences copies as a runtime in cluster mode does: each Agent has a hold file under `dir`.
    pub fn with_holds(mut self, dir: std::path::PathBuf) -> Self {
        self.holds = Some(dir);
        self
    }

    fn record(&self, event: &str, id: &AgentId, image: Option<&str>) {
        if let Some(j) = &self.journal {
            j.record(event, id, image);
        }
    }

    /// Every build of the image reference `image` fails, as a Dockerfile that cannot build
    /// does: for a process of its own, where no test holds the backend to inject faults.
    pub fn with_failing_image(self, image: &str) -> Self {
        if let Ok(mut f) = self.faults.lock() {
            f.failing_image = Some(image.to_string());
        }
        self
    }

    /// The next `times` calls of `step` fail.
    pub fn fail(&self, step: Step, times: u32) {
        if let Ok(mut f) = self.faults.lock() {
            f.fail.insert(step, times);
        }
    }

    /// Calls of `step` take `d` before doing anything.
    /// How many times `step` was attempted, failed or not.
    pub fn attempts(&self, step: Step) -> u32 {
        self.faults
            .lock()
            .map(|f| f.attempts.get(&step).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The most calls of `step` that were ever under way at once.
    pub fn most_at_once(&self, step: Step) -> u32 {
        self.faults
            .lock()
            .map(|f| f.in_flight.get(&step).map_or(0, |(_, most)| *most))
            .unwrap_or(0)
    }

    pub fn hang(&self, step: Step, d: Duration) {
        if let Ok(mut f) = self.faults.lock() {
            f.hang.insert(step, d);
        }
    }

    /// Deletes every snapshot image, as `docker image prune` would.
    pub fn prune_snapshots(&self) {
        if let Ok(mut i) = self.images.lock() {
            i.clear();
        }
    }

    /// Removes an Agent's sidecar out of band, as `docker rm -f` would.
    pub fn vanish_sidecar(&self, name: &str) {
        self.with_all(|m| {
            for (id, a) in m.iter_mut() {
                if id.name == name {
                    a.sidecar_policy = None;
                    a.sidecar_policy_yaml = None;
                    a.secret_files.clear();
                }
            }
        });
    }

    /// Counts `n` requests through the Agent's sidecar.
    pub fn add_egress(&self, name: &str, n: u64) {
        self.with_all(|m| {
            for (id, a) in m.iter_mut() {
                if id.name == name {
                    a.egress += n;
                }
            }
        });
    }

    /// The snapshots kept past their Agents, in order.
    pub fn kept_snapshots(&self) -> Vec<String> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Removes an Agent's agent container out of band (running or stopped), as `docker rm -f`
    /// would.
    pub fn vanish_agent(&self, name: &str) {
        self.with_all(|m| {
            for (id, a) in m.iter_mut() {
                if id.name == name {
                    a.agent_hash = None;
                    a.agent_stopped = false;
                    a.provisioned = None;
                }
            }
        });
    }

    /// Leaves resources behind for an Agent the API no longer has (for the start-up sweep).
    pub fn plant_orphan(&self, id: AgentId) {
        self.with_all(|m| {
            m.insert(
                id,
                FakeAgent {
                    network: true,
                    ..Default::default()
                },
            );
        });
    }

    pub fn snapshot_of(&self, name: &str) -> Option<FakeAgent> {
        self.with_all(|m| {
            m.iter()
                .find(|(id, _)| id.name == name)
                .map(|(_, a)| a.clone())
        })
    }

    /// Adds output to one of an Agent's logs.
    pub fn write_log(&self, name: &str, source: LogSource, stream: OutputStream, text: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.logs
                .entry((name.to_string(), source))
                .or_default()
                .push(Chunk {
                    stream,
                    data: bytes::Bytes::copy_from_slice(text.as_bytes()),
                });
        }
    }

    /// Every session opened so far, oldest first.
    pub fn opened_sessions(&self) -> Vec<SessionSpec> {
        self.sessions
            .lock()
            .map(|s| s.opened.clone())
            .unwrap_or_default()
    }

    /// Every resize asked for so far: (session, columns, rows).
    pub fn resizes(&self) -> Vec<(String, u16, u16)> {
        self.sessions
            .lock()
            .map(|s| s.resized.clone())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.with_all(|m| m.len())
    }

    fn with_all<T>(&self, f: impl FnOnce(&mut BTreeMap<AgentId, FakeAgent>) -> T) -> T {
        match self.agents.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    async fn gate(&self, step: Step) -> Result<(), BackendError> {
        let (fail, hang) = match self.faults.lock() {
            Ok(mut f) => {
                *f.attempts.entry(step).or_default() += 1;
                let fail = match f.fail.get_mut(&step) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                let (now, most) = f.in_flight.entry(step).or_default();
                *now += 1;
                *most = (*most).max(*now);
                (fail, f.hang.get(&step).copied())
            }
            Err(_) => (false, None),
        };
        if let Some(d) = hang {
            tokio::time::sleep(d).await;
        }
        if let Ok(mut f) = self.faults.lock()
            && let Some((now, _)) = f.in_flight.get_mut(&step)
        {
            *now = now.saturating_sub(1);
        }
        if fail {
            return Err(BackendError::new(step, "injected failure"));
        }
        Ok(())
    }

    fn with<T>(&self, id: &AgentId, f: impl FnOnce(&mut FakeAgent) -> T) -> T {
        self.with_all(|m| f(m.entry(id.clone()).or_default()))
    }
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn observe(&self, id: &AgentId) -> Result<Observed, BackendError> {
        self.gate(Step::Observe).await?;
        Ok(self.with_all(|m| match m.get(id) {
            None => Observed::default(),
            Some(a) => Observed {
                image: a.image.clone(),
                sidecar_policy: if a.stopped {
                    None
                } else {
                    a.sidecar_policy.clone()
                },
                agent_container: if a.agent_stopped {
                    None
                } else {
                    a.agent_hash.clone()
                },
                stopped_agent: if a.agent_stopped {
                    a.agent_hash.clone()
                } else {
                    None
                },
                provisioned: a.provisioned.clone(),
            },
        }))
    }

    async fn ensure_image(
        &self,
        id: &AgentId,
        image: &ImageSource,
        steps: &super::BuildSteps,
    ) -> Result<String, BackendError> {
        // A build reports its steps before it fails, as a real one does.
        if let ImageSource::Dockerfile(_) | ImageSource::Builtin(_) = image {
            let _ = steps.send("Step 1/1 : FROM fake".to_string());
        }
        self.gate(Step::Image).await?;
        if let ImageSource::Reference(r) = image
            && self
                .faults
                .lock()
                .is_ok_and(|f| f.failing_image.as_ref() == Some(r))
        {
            let _ = steps.send(format!("Step 1/2 : FROM {r}"));
            return Err(BackendError::new(
                Step::Image,
                format!("building {r}: step 2/2 `RUN exit 1` returned 1"),
            ));
        }
        let r = match image {
            ImageSource::Reference(r) => r.clone(),
            ImageSource::Dockerfile(p) => format!("fake-build:{}", p.len()),
            ImageSource::Builtin(b) => format!("fake-builtin:{}", b.name),
            ImageSource::Capability { dockerfile, .. } => {
                format!("fake-capability:{}", dockerfile.len())
            }
        };
        self.with(id, |a| {
            a.image = Some(r.clone());
            a.image_builds += 1;
        });
        Ok(r)
    }

    async fn ensure_network(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Network).await?;
        self.with(id, |a| a.network = true);
        Ok(())
    }

    async fn ensure_sidecar(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<SidecarEndpoints, BackendError> {
        self.gate(Step::Sidecar).await?;
        self.with(id, |a| {
            if a.sidecar_policy.is_none() || a.stopped {
                a.sidecar_creates += 1;
                a.sidecar_policy = Some(applied.to_string());
                a.sidecar_policy_yaml = Some(plan.policy_yaml.clone());
                a.secret_files = plan.secret_files.clone();
                a.stopped = false;
            }
        });
        Ok(SidecarEndpoints {
            proxy: Some("http://sidecar:9099".into()),
            git_gate: Some("http://sidecar:9420".into()),
            supervise: Some("http://sidecar:9100/mcp".into()),
        })
    }

    fn policy_hash(&self, _id: &AgentId, plan: &SidecarPlan) -> Result<String, BackendError> {
        Ok(plan.applied_hash(FAKE_CA_KEY))
    }

    async fn apply_policy(
        &self,
        id: &AgentId,
        plan: &SidecarPlan,
        applied: &str,
    ) -> Result<(), BackendError> {
        self.gate(Step::Policy).await?;
        self.with(id, |a| {
            a.policy_reloads += 1;
            a.sidecar_policy = Some(applied.to_string());
            a.sidecar_policy_yaml = Some(plan.policy_yaml.clone());
            a.secret_files = plan.secret_files.clone();
        });
        Ok(())
    }

    async fn ensure_agent(
        &self,
        id: &AgentId,
        image: &str,
        plan: &AgentPlan,
    ) -> Result<(), BackendError> {
        self.gate(Step::Agent).await?;
        // As every runtime does: whatever container is there is replaced.
        let running = self.with(id, |a| a.agent_hash.is_some() && !a.agent_stopped);
        if running {
            self.record("stop", id, None);
        }
        self.record("start", id, Some(image));
        self.with(id, |a| {
            a.agent_image = Some(image.to_string());
            a.agent_creates += 1;
            a.agent_hash = Some(plan.container_hash.clone());
            a.provisioned = None;
            a.agent_stopped = false;
        });
        Ok(())
    }

    async fn provision(&self, id: &AgentId, plan: &AgentPlan) -> Result<(), BackendError> {
        self.gate(Step::Provision).await?;
        self.with(id, |a| {
            a.provisioned = Some(plan.inputs_hash.clone());
            a.provisions += 1;
        });
        Ok(())
    }

    async fn snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.gate(Step::Snapshot).await?;
        let snap = self.with(id, |a| {
            a.snapshots += 1;
            format!("fake-snapshot/{}:{}", id.name, a.snapshots)
        });
        if let Ok(mut i) = self.images.lock() {
            i.insert(snap.clone());
        }
        Ok(snap)
    }

    async fn has_image(&self, image: &str) -> Result<bool, BackendError> {
        Ok(self
            .images
            .lock()
            .map(|i| i.contains(image))
            .unwrap_or(false))
    }

    async fn stop(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Stop).await?;
        if self.with(id, |a| a.agent_hash.is_some() && !a.agent_stopped) {
            self.record("stop", id, None);
        }
        self.with(id, |a| {
            a.stopped = true;
            a.agent_stopped = true;
            a.egress = 0;
        });
        Ok(())
    }

    async fn egress_count(&self, id: &AgentId) -> Result<Option<u64>, BackendError> {
        self.gate(Step::Observe).await?;
        Ok(self.with(id, |a| (!a.stopped).then_some(a.egress)))
    }

    async fn fork_snapshot(
        &self,
        source: &AgentId,
        into: &AgentId,
    ) -> Result<String, BackendError> {
        self.gate(Step::Snapshot).await?;
        let exists = self.with_all(|m| m.get(source).is_some_and(|a| a.agent_hash.is_some()));
        if !exists {
            return Err(BackendError::new(
                Step::Snapshot,
                format!("{source} has no agent container"),
            ));
        }
        let snap = format!("fake-fork/{}:from-{}", into.name, source.name);
        if let Ok(mut i) = self.images.lock() {
            i.insert(snap.clone());
        }
        Ok(snap)
    }

    async fn keep_snapshot(&self, id: &AgentId) -> Result<String, BackendError> {
        self.gate(Step::Snapshot).await?;
        let image = format!("fake-kept/{}/{}", id.namespace, id.name);
        if let Ok(mut k) = self.kept.lock() {
            k.push(image.clone());
        }
        Ok(image)
    }

    fn restarts_stopped_agents(&self) -> bool {
        true
    }

    async fn start_agent(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Agent).await?;
        if self.with(id, |a| a.agent_hash.is_some() && a.agent_stopped) {
            let image = self.with(id, |a| a.agent_image.clone());
            self.record("start", id, image.as_deref());
        }
        self.with(id, |a| {
            a.agent_stopped = false;
            a.agent_starts += 1;
        });
        Ok(())
    }

    async fn teardown(&self, id: &AgentId) -> Result<(), BackendError> {
        self.gate(Step::Teardown).await?;
        let removed = self.with_all(|m| m.remove(id));
        if removed.is_some_and(|a| a.agent_hash.is_some() && !a.agent_stopped) {
            self.record("stop", id, None);
        }
        Ok(())
    }

    fn agent_dir(&self, id: &AgentId) -> std::path::PathBuf {
        std::env::temp_dir()
            .join(format!("bb-fake-agents-{}", std::process::id()))
            .join(&id.uid)
    }

    fn skills_root(&self) -> std::path::PathBuf {
        std::env::temp_dir().join("bb-fake-skills")
    }

    fn supervise_url(&self) -> String {
        "http://sidecar:9100/mcp".into()
    }

    /// Under the system temp directory, per process: what a test's sidecar would mount.
    fn hold_file(&self, id: &AgentId) -> Option<std::path::PathBuf> {
        self.holds
            .as_ref()
            .map(|d| d.join(&id.uid).join(crate::sidecar_command::HOLD_FILE))
    }

    fn supervise_dir(&self, id: &AgentId) -> std::path::PathBuf {
        std::env::temp_dir()
            .join(format!("bb-fake-queue-{}", std::process::id()))
            .join(&id.uid)
    }

    async fn list_managed(&self) -> Result<Vec<AgentId>, BackendError> {
        Ok(self.with_all(|m| m.keys().cloned().collect()))
    }

    async fn open_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
    ) -> Result<Session, BackendError> {
        self.gate(Step::Session).await?;
        let running = self.with_all(|m| {
            m.get(id)
                .is_some_and(|a| a.agent_hash.is_some() && !a.agent_stopped)
        });
        if !running {
            return Err(BackendError::new(
                Step::Session,
                format!("{id}: the agent container is not running"),
            ));
        }
        let Some((program, args)) = spec.argv.split_first() else {
            return Err(BackendError::new(Step::Session, "no command"));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(
                spec.env
                    .iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(v.expose()).into_owned())),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| BackendError::new(Step::Session, format!("{program}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(BackendError::new(Step::Session, "pipes missing"));
        };
        let handle = match self.sessions.lock() {
            Ok(mut s) => {
                s.next += 1;
                let handle = format!("fake-session-{}", s.next);
                s.running.insert(handle.clone(), child);
                s.opened.push(spec.clone());
                if let Some((w, h)) = spec.size {
                    s.resized.push((handle.clone(), w, h));
                }
                handle
            }
            Err(_) => return Err(BackendError::new(Step::Session, "session table poisoned")),
        };
        Ok(Session {
            handle,
            output: Box::pin(futures_util::stream::select(
                pipe_chunks(stdout, OutputStream::Stdout),
                pipe_chunks(stderr, OutputStream::Stderr),
            )),
            input: Box::pin(stdin),
        })
    }

    async fn diagnose(&self) -> Vec<super::health::Check> {
        vec![super::health::Check::ok(
            "fake",
            "in-memory backend for tests",
        )]
    }

    async fn resize_session(&self, session: &str, width: u16, height: u16) {
        if let Ok(mut s) = self.sessions.lock() {
            s.resized.push((session.to_string(), width, height));
        }
    }

    async fn session_exit_code(&self, session: &str) -> Result<Option<i64>, BackendError> {
        let child = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut s| s.running.remove(session));
        let Some(mut child) = child else {
            return Ok(None);
        };
        let status = child
            .wait()
            .await
            .map_err(|e| BackendError::new(Step::Session, e.to_string()))?;
        Ok(status.code().map(i64::from))
    }

    async fn logs(
        &self,
        id: &AgentId,
        source: LogSource,
        options: LogOptions,
    ) -> Result<Output, BackendError> {
        self.gate(Step::Session).await?;
        let mut chunks = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.logs.get(&(id.name.clone(), source)).cloned())
            .unwrap_or_default();
        if let Some(n) = options.tail {
            let keep = usize::try_from(n).unwrap_or(usize::MAX);
            chunks = chunks.split_off(chunks.len().saturating_sub(keep));
        }
        let history = futures_util::stream::iter(chunks.into_iter().map(Ok));
        Ok(if options.follow {
            Box::pin(history.chain(futures_util::stream::pending()))
        } else {
            Box::pin(history)
        })
    }
}
