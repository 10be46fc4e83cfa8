//! What a control plane or runner is started with (`bbctl controller run`'s flags, as data), and
//! how starting one fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bb_apiserver::ServeError;
use bb_apiserver::store::StoreError;
use bb_home::HomeError;
use bb_home::pki::PkiError;

/// Which runtime holds the bottles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The host's default: Apple Container on a Mac with its `container` CLI, else Docker;
    /// when that runtime does not answer, only Bottles are reconciled (and a warning says why
    /// Agents stay pending).
    #[default]
    Auto,
    /// Docker, or fail to start.
    Docker,
    /// Apple Container through its `container` CLI, or fail to start.
    AppleContainer,
    /// smolvm micro-VMs through its CLI, their sidecars on Docker; fail without either.
    Smolvm,
    /// Reconcile Bottles only; Agents are left alone.
    None,
    /// The in-memory fake (tests and benchmarks of many runners): it runs nothing, and records
    /// each Agent it starts and stops in `journal`, one JSON line each.
    Fake {
        journal: PathBuf,
        /// An image reference whose builds always fail.
        failing_image: Option<String>,
    },
}

/// Cluster mode: this runner shares the cluster's Agents with others (`bb_runner::cluster`).
#[derive(Debug, Clone, Default)]
pub struct ClusterSettings {
    /// Labels an Agent's `spec.runnerSelector` is matched against.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The most Agents this runner holds (unset: no limit).
    pub capacity: Option<u32>,
}

/// Runtime backend settings a user can override (Docker and Apple Container alike).
#[derive(Debug, Clone, Default)]
pub struct RuntimeSettings {
    /// `BASE` build argument of the sidecar and agent images (default: `config::default_base`).
    pub base_image: Option<String>,
    /// The bb-sidecar executable (default: next to the running binary).
    pub sidecar_binary: Option<PathBuf>,
    /// Extra CA (PEM) the sidecars trust for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// Sidecars may reach private addresses on every route (test rigs only).
    pub allow_private_upstreams: bool,
    /// Prebuilt harness executables provider images take instead of fetching them.
    pub harness_dir: Option<PathBuf>,
    /// The `container` executable of the Apple Container backend (default: on PATH).
    pub container_cli: Option<PathBuf>,
    /// The resolver Apple Container sidecars and builds use (default: the host's).
    pub container_dns: Option<String>,
    /// The `smolvm` executable of the smolvm backend (default: on PATH).
    pub smolvm_cli: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub home: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Where the runner serves sessions (attach, exec, logs); port 0 picks a free one, and
    /// each Agent's status names the address in use.
    pub session_listen: SocketAddr,
    /// Sync from a cluster instead of serving the embedded control plane: the kubeconfig
    /// (`None`: $KUBECONFIG, else ~/.kube/config) and context (`None`: its current one).
    pub sync_from: Option<SyncFrom>,
    /// What this runner tells the others when it syncs from a cluster.
    pub cluster: ClusterSettings,
    pub backend: BackendChoice,
    pub runtime: RuntimeSettings,
    /// How often a Running Agent is checked against its backend without an API event.
    pub resync: Duration,
    /// Where the embedded control plane logs every API request (`apiserver::audit`).
    pub audit_log: Option<PathBuf>,
}

/// The cluster a runner syncs from.
#[derive(Debug, Clone, Default)]
pub struct SyncFrom {
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
    #[error("backend: {0}")]
    Backend(#[from] bb_backend::BackendError),
}
