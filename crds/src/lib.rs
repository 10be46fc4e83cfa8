//! bot-bottle's resource model: the `Bottle`, `Agent`, `AgentPool` and `Proposal` custom
//! resources, their validation, `extends` resolution, CRD generation and import of the reference system's manifests.
//!
//! Pure by design: no I/O beyond what callers hand in, no async runtime. Every other crate
//! (controller, sidecar, CLI) trusts what this crate accepts, so the rules live here once.

pub mod agent;
pub mod bottle;
pub mod common;
pub mod convert;
pub mod crd;
pub mod duration;
pub mod egress;
pub mod env;
pub mod error;
pub mod git_gate;
pub mod jsonpath;
pub mod labels;
pub mod manifest;
pub mod policy;
pub mod pool;
pub mod proposal;
pub mod provider;
pub mod quantity;
pub mod resolve;
pub mod runtime;
pub mod structural;
pub mod validate;

pub use agent::{Agent, AgentPhase, AgentSpec, AgentStatus};
pub use bottle::{Bottle, BottleSpec, BottleStatus};
pub use error::{FieldError, FieldPath, ValidationErrors};
pub use manifest::{Resource, parse_resources};
pub use pool::{AgentPool, AgentPoolSpec, AgentPoolStatus};
pub use proposal::{Proposal, ProposalSpec, ProposalStatus};
pub use resolve::{ResolvedBottle, resolve_bottle};

/// API group of every bot-bottle resource.
pub const GROUP: &str = "bot-bottle.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "bot-bottle.dev/v1alpha1";
/// Placeholder the agent holds wherever the sidecar injects the real credential.
pub const EGRESS_PLACEHOLDER: &str = "egress-placeholder";
