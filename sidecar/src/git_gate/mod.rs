//! git-gate: the agent's only way to push. A smart-HTTP git server (one mirror per declared
//! repository), a pre-receive step that judges every object a push brings and forwards clean
//! refs upstream.
//!
//! The agent reaches `http://bb-sidecar:9420/NAME.git`; its git config maps the upstream URL
//! there. Fetches are served from a mirror refreshed from upstream over SSH on every access;
//! a push is scanned and forwarded upstream inside receive-pack's pre-receive hook (bb-sidecar
//! itself, run under the name `pre-receive`), so the mirror's refs only move once upstream has
//! taken them.

pub mod allow;
pub mod config;
pub mod hook;
pub mod http;
pub mod objects;
pub mod repo;
pub mod scan;

pub use config::{GateConfig, GateRepo};

/// Pushes larger than this get 413: a packfile of ordinary work fits.
pub const MAX_PUSH_BYTES: u64 = 100 << 20;

/// What names the hook binary: git runs `<hooksPath>/pre-receive`, a link to bb-sidecar.
pub const HOOK_NAME: &str = "pre-receive";
