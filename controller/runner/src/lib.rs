//! bot-bottle's runner: the Bottle and Agent reconcilers and everything they plan and hold on
//! the runner's side (providers, secrets, git-gate, supervise), cluster mode and sessions.
//!
//! It drives a runtime only through `bb_backend::Backend`; which runtime is bb-controller's call.

pub mod activity;
pub mod cluster;
pub mod discovery;
pub mod git_gate;
pub mod plan;
pub mod provider;
pub mod reconcile;
pub mod resolve;
pub mod secrets;
pub mod sessions;
pub mod supervise;

pub use bb_backend::AgentId;
