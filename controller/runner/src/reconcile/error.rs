//! What a reconcile fails with, and the field manager every status the controller writes is
//! applied under. A leaf: the reconcilers and cluster claims share it.

use bb_backend::BackendError;

/// Field manager of every status the controller writes.
pub const MANAGER: &str = "bb-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("backend: {0}")]
    Backend(BackendError),
    #[error("planning: {0}")]
    Plan(String),
    /// Nothing failed, but what the reconcile waits for is not done yet (another runner's
    /// part of it): retried.
    #[error("waiting: {0}")]
    Waiting(String),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
}
