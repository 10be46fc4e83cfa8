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
}

/// What a started control plane tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
}

/// Runs until SIGINT or SIGTERM. `on_ready` is called once the API answers.
pub async fn run(opts: Options, on_ready: impl FnOnce(&Ready)) -> Result<(), RunError> {
    let dir = crate::home::resolve(opts.home)?;
    let home = Home::open(&dir)?;
    let store = Store::open(&home.path("state.db"))?;
    let creds = pki::load_or_create(&home)?;
    let server = ApiServer::start(opts.listen, &creds, store.clone()).await?;
    let url = format!("https://{}", server.local_addr);
    let kubeconfig = pki::write_kubeconfig(&home, &creds, &url)?;
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "control plane ready");
    on_ready(&Ready {
        url,
        kubeconfig,
        home: dir,
    });

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

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    compactor.abort();
    server.shutdown().await;
    drop(home);
    Ok(())
}
