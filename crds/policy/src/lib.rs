//! bot-bottle's egress policy without Kubernetes: the route types (`Bottle.spec.egress` and the
//! sidecar's policy file share them), their validation, the policy file and its applied hash,
//! and the rules and guarded-secrets file that say what outbound DLP must never let out.
//! The sidecar links this crate alone; `bb-crds` re-exports it with the `schema` feature on.

pub mod egress;
pub mod error;
pub mod file;
pub mod guarded;
pub mod proposal;
pub mod rule;
pub mod secret;
pub mod secret_rules;
pub mod suggest;
pub mod untrusted;
pub mod validate;
pub mod yaml;
