//! bot-bottle's facade: assembles a control plane (bb-apiserver on a bb-home) or a runner
//! (bb-runner over one runtime) from options. It is the one place that picks a runtime.
//!
//! The resource model and every validation rule come from `bb-crds`.

pub mod control_plane;
pub mod demo;
pub mod options;
pub mod runtime;

pub use bb_backend::health::{Check, Level};

pub use bb_crds as crds;
