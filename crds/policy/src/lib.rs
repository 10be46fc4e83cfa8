//! bot-bottle's egress policy without Kubernetes: the route types (`Bottle.spec.egress` and the
//! sidecar's policy file share them), their validation, the policy file and its applied hash.
//! The sidecar links this crate alone; `bb-crds` re-exports it with the `schema` feature on.

pub mod egress;
pub mod error;
pub mod file;
pub mod proposal;
pub mod secret;
pub mod suggest;
pub mod validate;
pub mod yaml;
