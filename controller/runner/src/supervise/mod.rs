//! Supervise on the runner's side: mirroring each sidecar's proposal queue into `Proposal`
//! objects, and turning decisions into the Agent's policy layer and answers in the queue.

pub mod audit;
pub mod grants;
pub mod mirror;
pub mod queue;

use std::path::{Path, PathBuf};

pub use bb_backend::sidecar_command::queue_dir;

/// The Agent's audit log, beside the queue and out of the sidecar's reach.
pub fn audit_file(supervise_dir: &Path) -> PathBuf {
    supervise_dir.join("audit.jsonl")
}
