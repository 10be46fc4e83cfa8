//! `bbctl controller run`: assembles the home directory, store, credentials and apiserver, writes
//! the kubeconfig, compacts history in the background, and shuts down cleanly on a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bb_apiserver::ApiServer;
use std::sync::Arc;

pub use crate::options::{
    BackendChoice, ClusterSettings, Options, RunError, RuntimeSettings, SyncFrom,
};
use crate::runtime::choose;
use bb_apiserver::store::{DEFAULT_HISTORY, Store};
use bb_backend::SharedBackend;
use bb_home::Home;
use bb_home::pki;
use bb_runner::cluster::RunnerInfo;
use bb_runner::cluster::claims::Claims;
use bb_runner::cluster::lease::Heartbeat;
use bb_runner::sessions::SessionServer;
use bb_runner::sessions::plans::SessionPlans;

/// The User-Agent of a runner syncing from a cluster, before `/<identity>`.
pub const RUNNER_USER_AGENT: &str = "bb-runner";
/// Where the control plane listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
/// Where the runner serves sessions unless told otherwise: loopback, any free port.
pub const DEFAULT_SESSION_LISTEN: &str = "127.0.0.1:0";

async fn client_from(
    kubeconfig: &std::path::Path,
    context: Option<String>,
    user_agent: Option<&str>,
) -> Result<kube::Client, RunError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| RunError::Client(format!("{}: {e}", kubeconfig.display())))?;
    if let Some(c) = &context
        && !kc.contexts.iter().any(|n| &n.name == c)
    {
        let known: Vec<&str> = kc.contexts.iter().map(|n| n.name.as_str()).collect();
        return Err(RunError::Client(format!(
            "--sync-from: no context '{c}' in {}; contexts there: {}",
            kubeconfig.display(),
            if known.is_empty() {
                "(none)".into()
            } else {
                known.join(", ")
            }
        )));
    }
    let opts = kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| RunError::Client(e.to_string()))?;
    // A runner names itself, as a kubelet does, so the cluster's audit log tells runners apart.
    if let Some(ua) = user_agent.and_then(|u| http::HeaderValue::from_str(u).ok()) {
        cfg.headers.push((http::header::USER_AGENT, ua));
    }
    kube::Client::try_from(cfg).map_err(|e| RunError::Client(e.to_string()))
}

/// SIGTERM and SIGINT, registered when created: a signal that arrives while the control plane
/// is still starting is held for `recv` rather than lost.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals(SIGTERM, SIGINT)")
    }
}

impl Signals {
    pub fn register() -> Result<Signals, RunError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(RunError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(RunError::Signal)?,
        })
    }

    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// How long the reconcilers get to finish what they are doing once told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a started control plane tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
}

/// A control plane running inside this process with a client for it: what tests and
/// benchmarks use, and what `run` is built from.
pub struct Embedded {
    pub server: ApiServer,
    pub store: Store,
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub home: Home,
    /// The home's serving credentials, which the runner's session endpoint uses too.
    pub creds: pki::Credentials,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("server", &self.server)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

/// Starts the apiserver on `home` (locked for this process) listening on `listen`.
pub async fn embedded(home: Home, listen: SocketAddr) -> Result<Embedded, RunError> {
    embedded_with(home, listen, None).await
}

/// `embedded`, logging every API request to `audit_log` when given.
pub async fn embedded_with(
    home: Home,
    listen: SocketAddr,
    audit_log: Option<&std::path::Path>,
) -> Result<Embedded, RunError> {
    let audit = audit_log
        .map(|p| {
            bb_apiserver::audit::AuditLog::open(p)
                .map_err(|e| RunError::Client(format!("--audit-log {}: {e}", p.display())))
        })
        .transpose()?;
    let store = Store::open(&home.path("state.db"))?;
    let creds = pki::load_or_create_for(&home, Some(listen.ip()))?;
    let server = ApiServer::start(
        listen,
        &creds,
        store.clone(),
        std::sync::Arc::new(|| bb_runner::reconcile::metrics::global().render()),
        audit,
    )
    .await?;
    let url = format!("https://{}", server.local_addr);
    let kubeconfig = pki::write_kubeconfig(&home, &creds, &url)?;
    let client = client_from(&kubeconfig, None, None).await?;
    Ok(Embedded {
        server,
        store,
        client,
        kubeconfig,
        home,
        creds,
    })
}

/// What runs the Agents of one machine: the reconcilers and, with a backend, the session
/// endpoint through which clients reach the Agents it runs.
pub struct Runner {
    stop: tokio::sync::oneshot::Sender<()>,
    reconcilers: tokio::task::JoinHandle<()>,
    pub sessions: Option<SessionServer>,
    /// Cluster mode: gives every held Agent back before the runner stops.
    release: Option<futures_util::future::BoxFuture<'static, ()>>,
    heartbeat: Heartbeat,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// How long a stopping runner in cluster mode gets to release its Agents.
const RELEASE_GRACE: Duration = Duration::from_secs(60);

impl Runner {
    /// Starts the reconcilers the backend allows (Bottles only without one); with a backend,
    /// first binds the session endpoint on `session_listen` so every Agent's status can name it.
    /// `identity` names this runner in its heartbeat Lease (`bb_runner::cluster::lease`); with
    /// `cluster`, the runner claims Agents rather than running every one (`bb_runner::cluster`).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        client: kube::Client,
        identity: &str,
        backend: Option<SharedBackend>,
        resync: Duration,
        session_listen: SocketAddr,
        creds: &pki::Credentials,
        cluster: Option<ClusterSettings>,
    ) -> Result<Runner, RunError> {
        use futures_util::FutureExt;
        if !session_listen.ip().is_loopback() {
            tracing::warn!(listen = %session_listen, "session endpoint beyond loopback: anyone who can reach it and holds the token can exec in every Agent this runner runs");
        }
        let session_plans = SessionPlans::default();
        let sessions = match &backend {
            Some(b) => {
                let s = SessionServer::start_delegating(
                    session_listen,
                    creds,
                    client.clone(),
                    b.clone(),
                    session_plans.clone(),
                    cluster.is_some(),
                )
                .await?;
                tracing::info!(endpoint = %s.endpoint(), "session endpoint ready");
                Some(s)
            }
            None => None,
        };
        let endpoint = sessions.as_ref().map(|s| s.endpoint().to_string());
        let info = RunnerInfo {
            id: identity.to_string(),
            backend: backend.as_ref().map_or("none", |b| b.name()).to_string(),
            labels: cluster
                .as_ref()
                .map(|c| c.labels.clone())
                .unwrap_or_default(),
            capacity: cluster.as_ref().and_then(|c| c.capacity),
            session_endpoint: endpoint.clone(),
            session_ca: cluster.is_some().then(|| creds.ca_pem.clone()),
        };
        let heartbeat = Heartbeat::default();
        let claims = cluster
            .is_some()
            .then(|| Arc::new(Claims::new(client.clone(), info.clone(), heartbeat.clone())));
        let release = match (&claims, &backend) {
            (Some(c), Some(b)) => {
                let (c, b) = (c.clone(), b.clone());
                Some(async move { c.release_all(&*b, "runner stopping").await }.boxed())
            }
            _ => None,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = rx.map(|_| ()).shared();
        let lease = bb_runner::cluster::lease::hold(
            client.clone(),
            info,
            heartbeat.clone(),
            shutdown.clone(),
        );
        let reconcilers = tokio::spawn(async move {
            let _ = futures_util::future::join(lease, async {
                match backend {
                    Some(b) => {
                        if let Err(e) = bb_runner::reconcile::run(
                            client,
                            b,
                            resync,
                            endpoint,
                            session_plans,
                            claims,
                            shutdown,
                        )
                        .await
                        {
                            tracing::error!(error = %e, "reconcilers stopped");
                        }
                    }
                    None => bb_runner::reconcile::run_bottles(client, shutdown).await,
                }
            })
            .await;
        });
        Ok(Runner {
            stop: tx,
            reconcilers,
            sessions,
            release,
            heartbeat,
        })
    }

    /// Stops the reconcilers (gracefully within `SHUTDOWN_GRACE`, at once on a second signal
    /// when `signals` are given) and then the session endpoint. In cluster mode it first
    /// releases every Agent it holds, so others take them over at once and none runs twice.
    pub async fn shutdown(mut self, mut signals: Option<&mut Signals>) {
        if let Some(release) = self.release.take() {
            // Nothing released may be claimed back by this runner on its way out.
            self.heartbeat.stop_claiming();
            tracing::info!("releasing this runner's Agents");
            let again = async {
                match signals.as_deref_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = release => {}
                _ = tokio::time::sleep(RELEASE_GRACE) => {
                    tracing::warn!(grace = ?RELEASE_GRACE, "releasing took too long; the rest are fenced when the Lease lapses");
                }
                which = again => tracing::warn!("{which} again: not releasing the rest"),
            }
        }
        let _ = self.stop.send(());
        let reconcilers = self.reconcilers;
        let abort = reconcilers.abort_handle();
        let again = async {
            match signals {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = reconcilers => {}
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconcilers did not stop in time; stopping them");
                abort.abort();
            }
            which = again => {
                tracing::warn!("{which} again: stopping now");
                abort.abort();
            }
        }
        if let Some(s) = self.sessions {
            s.shutdown().await;
        }
    }
}

/// A stable identity for this controller: random once per home directory, so the labels it
/// puts on backend resources tell its leftovers from another control plane's.
fn instance_id(home: &Home) -> Result<String, RunError> {
    let path = home.path("instance-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let id = pki::random_hex(8)?;
    bb_home::write_private(&path, id.as_bytes(), 0o600)?;
    Ok(id)
}

/// Runs until SIGINT or SIGTERM. `on_ready` is called once the API answers.
/// The kubeconfig a runner syncs from: the one named, else $KUBECONFIG (its first file),
/// else ~/.kube/config.
fn sync_kubeconfig(from: &SyncFrom) -> Result<PathBuf, RunError> {
    if let Some(k) = &from.kubeconfig {
        return Ok(k.clone());
    }
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty())
        && let Some(first) = std::env::split_paths(&k).next()
    {
        return Ok(first);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".kube").join("config"))
        .ok_or_else(|| {
            RunError::Client(
                "--sync-from: no --kubeconfig, $KUBECONFIG or $HOME to find one".into(),
            )
        })
}

/// Starts the runner with the backend `opts` ask for.
async fn start_runner(
    opts: &Options,
    client: kube::Client,
    home: &Home,
    creds: &pki::Credentials,
    cluster: Option<ClusterSettings>,
) -> Result<Runner, RunError> {
    let instance = instance_id(home)?;
    bb_runner::provider::set_contrib_root(home.path("contrib"));
    let backend = choose(opts, &home.dir, &instance).await?;
    Runner::start(
        client,
        &instance,
        backend,
        opts.resync,
        opts.session_listen,
        creds,
        cluster,
    )
    .await
}

/// Runs until SIGINT or SIGTERM. `on_ready` is called once the API answers.
pub async fn run(opts: Options, on_ready: impl FnOnce(&Ready)) -> Result<(), RunError> {
    if let Some(from) = &opts.sync_from {
        // Same reconcilers, the cluster's API server: no embedded store, no listener; Agents
        // are shared with the cluster's other runners by claims.
        let mut signals = Signals::register()?;
        let kc = sync_kubeconfig(from)?;
        let dir = bb_home::resolve(opts.home.clone())?;
        let home = Home::open(&dir)?;
        let agent = format!("{RUNNER_USER_AGENT}/{}", instance_id(&home)?);
        let client = client_from(&kc, from.context.clone(), Some(&agent)).await?;
        // Clients on other machines reach the session endpoint by its address.
        let creds = pki::load_or_create_for(&home, Some(opts.session_listen.ip()))?;
        let runner = start_runner(&opts, client, &home, &creds, Some(opts.cluster.clone())).await?;
        on_ready(&Ready {
            url: String::new(),
            kubeconfig: kc,
            home: dir,
        });
        let which = signals.recv().await;
        tracing::info!("{which}: shutting down");
        runner.shutdown(Some(&mut signals)).await;
        return Ok(());
    }
    if !opts.listen.ip().is_loopback() {
        tracing::warn!(listen = %opts.listen, "listening beyond loopback: anyone who can reach this address and holds the token controls every bottle");
    }
    let mut signals = Signals::register()?;
    let dir = bb_home::resolve(opts.home.clone())?;
    let emb = embedded_with(Home::open(&dir)?, opts.listen, opts.audit_log.as_deref()).await?;
    let url = format!("https://{}", emb.server.local_addr);
    tracing::info!(%url, kubeconfig = %emb.kubeconfig.display(), "control plane ready");
    on_ready(&Ready {
        url,
        kubeconfig: emb.kubeconfig.clone(),
        home: dir,
    });

    let store = emb.store.clone();
    let compactor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match store.revision() {
                Ok(rev) if rev > DEFAULT_HISTORY => {
                    if let Err(e) = store.compact(rev - DEFAULT_HISTORY) {
                        tracing::warn!(error = %e, "compaction failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the revision failed"),
            }
        }
    });

    let runner = start_runner(&opts, emb.client.clone(), &emb.home, &emb.creds, None).await?;
    let which = signals.recv().await;
    tracing::info!("{which}: shutting down");
    runner.shutdown(Some(&mut signals)).await;
    compactor.abort();
    emb.server.shutdown().await;
    drop(emb.home);
    Ok(())
}
