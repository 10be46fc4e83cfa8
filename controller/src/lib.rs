//! bot-bottle's control plane: the local Kubernetes-compatible apiserver and its store, the
//! Bottle and Agent reconcilers, the backend they drive (Docker, behind the `Backend` trait
//! that other runtimes implement) and the session endpoint through which a runner serves
//! attach, exec and logs of the Agents it runs.
//!
//! The resource model and every validation rule come from `bb-crds`; this crate adds I/O.

pub mod apiserver;
pub mod backend;
pub mod cluster;
pub mod control_plane;
pub mod discovery;
pub mod git_gate;
pub mod home;
pub mod https;
pub mod pki;
pub mod plan;
pub mod provider;
pub mod reconcile;
pub mod secrets;
pub mod sessions;
pub mod store;
pub mod supervise;

pub use bb_crds as crds;
