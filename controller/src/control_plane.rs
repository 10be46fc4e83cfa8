//! `bbctl controller run`: assembles the home directory, store, credentials and apiserver, writes
//! the kubeconfig, compacts history in the background, and shuts down cleanly on a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::apiserver::{ApiServer, ServeError};
use crate::home::{Home, HomeError};
use crate::pki::{self, PkiError};
use crate::store::{DEFAULT_HISTORY, Store, StoreError};

/// Where the control plane listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

#[derive(Debug, Clone)]
pub struct Options {
    pub home: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Reconcile against this cluster instead of serving the embedded control plane.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("connecting to the API server: {0}")]
    Client(String),
}

async fn client_from(
    kubeconfig: &std::path::Path,
    context: Option<String>,
) -> Result<kube::Client, RunError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| RunError::Client(format!("{}: {e}", kubeconfig.display())))?;
    let opts = kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| RunError::Client(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| RunError::Client(e.to_string()))
}

async fn signalled() -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    Ok(())
}

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
    let store = Store::open(&home.path("state.db"))?;
    let creds = pki::load_or_create(&home)?;
    let server = ApiServer::start(listen, &creds, store.clone()).await?;
    let url = format!("https://{}", server.local_addr);
    let kubeconfig = pki::write_kubeconfig(&home, &creds, &url)?;
    let client = client_from(&kubeconfig, None).await?;
    Ok(Embedded {
        server,
        store,
        client,
        kubeconfig,
        home,
    })
}

/// Runs until SIGINT or SIGTERM. `on_ready` is called once the API answers.
pub async fn run(opts: Options, on_ready: impl FnOnce(&Ready)) -> Result<(), RunError> {
    if let Some(kc) = &opts.kubeconfig {
        // Same reconcilers, someone else's API server: no embedded store, no listener.
        let client = client_from(kc, opts.context.clone()).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let reconcilers = tokio::spawn(crate::reconcile::run_bottles(client, async move {
            let _ = rx.await;
        }));
        on_ready(&Ready {
            url: String::new(),
            kubeconfig: kc.clone(),
            home: PathBuf::new(),
        });
        signalled().await?;
        let _ = tx.send(());
        let _ = reconcilers.await;
        return Ok(());
    }
    if !opts.listen.ip().is_loopback() {
        tracing::warn!(listen = %opts.listen, "listening beyond loopback: anyone who can reach this address and holds the token controls every bottle");
    }
    let dir = crate::home::resolve(opts.home)?;
    let emb = embedded(Home::open(&dir)?, opts.listen).await?;
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

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let reconcilers = tokio::spawn(crate::reconcile::run_bottles(
        emb.client.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    signalled().await?;
    let _ = tx.send(());
    let _ = reconcilers.await;
    compactor.abort();
    emb.server.shutdown().await;
    drop(emb.home);
    Ok(())
}
