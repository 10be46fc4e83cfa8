//! Cluster mode: many runners share the Agents declared in one cluster. Each runner holds a
//! heartbeat Lease (`lease`), sees the others through theirs (`runners`), and claims, releases
//! and fences Agents through `status.runner` (`claims`); warm pool members are spread over the
//! runners (`pools`).

pub mod claims;
pub mod holds;
pub mod lease;
pub mod pools;
pub mod runners;

use std::collections::BTreeMap;

/// What a runner says about itself in its Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerInfo {
    /// Stable per home directory (`instance-id`): the Lease is `runner-<id>`.
    pub id: String,
    /// The backend it drives (`docker`, `fake`, or `none` without one).
    pub backend: String,
    /// Labels an Agent's `spec.runnerSelector` is matched against.
    pub labels: BTreeMap<String, String>,
    /// How many Agents it holds at most (unset: no limit).
    pub capacity: Option<u32>,
    /// Where it serves sessions.
    pub session_endpoint: Option<String>,
    /// The CA (PEM) its session endpoint's certificate chains to, for clients to trust.
    pub session_ca: Option<String>,
}
