//! The harness shared by the controller's integration tests: the real control plane in
//! process, the fake backend, the reconcilers and the runner's session endpoint over them.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bb_backend::fake::FakeBackend;
use bb_crds::{Agent, Bottle};
use bb_home::Home;
use bb_runner::reconcile;
use bb_runner::sessions::SessionServer;
use futures_util::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

pub const SECRET_VALUE: &str = "tok-4f1d2c9e-never-print-me";

/// Every log line of this test binary, to check that no secret is ever logged.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,hyper=info,h2=info,rustls=info,tower=info,tungstenite=info,tokio_tungstenite=info",
            ))
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

pub struct Capture(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut g) = self.0.lock() {
            g.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Harness {
    _dir: tempfile::TempDir,
    pub cp: bb_controller::control_plane::Embedded,
    pub client: kube::Client,
    pub backend: FakeBackend,
    /// What the reconciler leaves for the session endpoint.
    pub session_plans: bb_runner::sessions::plans::SessionPlans,
    pub sessions: Option<SessionServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path()).expect("home");
        let cp = bb_controller::control_plane::embedded(home, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("control plane");
        let client = cp.client.clone();
        let mut h = Harness {
            _dir: dir,
            client: client.clone(),
            backend: FakeBackend::new(),
            session_plans: Default::default(),
            sessions: None,
            stop: None,
            task: None,
            cp,
        };
        h.sessions = Some(
            SessionServer::start(
                "127.0.0.1:0".parse().expect("addr"),
                &h.cp.creds,
                client,
                std::sync::Arc::new(h.backend.clone()),
                h.session_plans.clone(),
            )
            .await
            .expect("session endpoint"),
        );
        h.run_controller();
        h
    }

    pub fn run_controller(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        }
        .boxed()
        .shared();
        let (client, backend) = (self.client.clone(), self.backend.clone());
        let plans = self.session_plans.clone();
        let endpoint = self.sessions.as_ref().map(|s| s.endpoint().to_string());
        self.task = Some(tokio::spawn(async move {
            let _ = reconcile::run(
                client,
                std::sync::Arc::new(backend),
                Duration::from_millis(500),
                endpoint,
                plans,
                None,
                shutdown,
            )
            .await;
        }));
        self.stop = Some(tx);
    }

    /// Kills the controller task outright, mid-whatever it was doing.
    pub fn kill_controller(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.stop = None;
    }

    pub fn agents(&self) -> Api<Agent> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create(&self) {
        self.create_secret().await;
        self.create_bottle_and_agent().await;
    }

    /// The Secret the Bottle's env and route read.
    pub async fn create_secret(&self) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "bot-bottle-system");
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "api-token"}, "stringData": {"token": SECRET_VALUE}}),
        )
        .expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
    }

    pub async fn create_bottle_and_agent(&self) {
        self.create_bottle().await;
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "worker"},
            "spec": {"bottleRef": {"name": "tools"}, "prompt": "do the thing"}
        }))
        .expect("agent");
        self.agents()
            .create(&PostParams::default(), &agent)
            .await
            .expect("agent");
    }

    /// The Bottle `tools`: a secret env var and route token from the Secret, a plain env var.
    pub async fn create_bottle(&self) {
        let bottles: Api<Bottle> = Api::all(self.client.clone());
        let bottle: Bottle = serde_json::from_value(json!({
            "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "tools"},
            "spec": {
                "agentProvider": {"template": "custom", "image": "agent:1", "command": ["bash"]},
                "env": [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}, {"name": "MODE", "value": "ci"}],
                "egress": {"routes": [{"host": "api.example.com", "auth": {"scheme": "Bearer", "secretKeyRef": {"name": "api-token", "key": "token"}}}]}
            }
        }))
        .expect("bottle");
        bottles
            .create(&PostParams::default(), &bottle)
            .await
            .expect("bottle");
    }

    /// Merge-patches the `worker` Agent's spec.
    pub async fn patch_spec(&self, spec: serde_json::Value) {
        self.agents()
            .patch(
                "worker",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("patch the Agent's spec");
    }

    /// Waits until the `worker` Agent is gone from the API (its finalizer released).
    pub async fn wait_deleted(&self, what: &str) {
        for _ in 0..200 {
            if self
                .agents()
                .get_opt("worker")
                .await
                .ok()
                .flatten()
                .is_none()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the Agent is still there after 10 s");
    }

    pub async fn wait_for(&self, what: &str, check: impl Fn(&Agent) -> bool) -> Agent {
        self.wait_within(Duration::from_secs(20), what, check).await
    }

    pub async fn wait_within(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&Agent) -> bool,
    ) -> Agent {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(a)) = self.agents().get_opt("worker").await
                && check(&a)
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last = self.agents().get_opt("worker").await.ok().flatten();
        let logged = String::from_utf8_lossy(&logs().lock().map(|l| l.clone()).unwrap_or_default())
            .into_owned();
        let problems: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
            .collect();
        panic!(
            "timed out waiting for {what}; last: {:#?}\nwarnings:\n{}",
            last.and_then(|a| a.status),
            problems.join("\n")
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Polls the core events list until it mentions every reason in `want` (events are published
/// after the backend work they describe).
pub async fn events_with(client: &kube::Client, want: &[&str]) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = events_for(client).await;
        if want.iter().all(|w| last.contains(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

pub async fn events_for(client: &kube::Client) -> String {
    let v: serde_json::Value = client
        .request(
            http::Request::get("/api/v1/namespaces/default/events")
                .body(Vec::new())
                .expect("req"),
        )
        .await
        .expect("events");
    v.to_string()
}
