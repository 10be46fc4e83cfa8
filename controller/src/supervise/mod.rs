//! Supervise on the runner's side: mirroring each sidecar's proposal queue into `Proposal`
//! objects, and turning decisions into the Agent's policy layer and answers in the queue.

pub mod grants;
pub mod mirror;
pub mod queue;
