//! bb-sidecar as a library: the egress proxy, its policy, DLP, certificate minting and audit
//! log, shared by the `bb-sidecar` binary, the benchmarks and the fuzz targets.

pub mod accept;
pub mod address;
pub mod audit;
pub mod bump;
pub mod content_coding;
pub mod decision;
pub mod delivery;
pub mod dlp;
pub mod dlp_views;
pub mod fuzzing;
pub mod git_gate;
pub mod hold;
pub mod ledger;
pub mod live_policy;
pub mod mcp_sessions;
pub mod mint;
pub mod needles;
pub mod policy;
pub mod proxy;
pub mod queue;
pub mod relay;
pub mod relay_body;
pub mod resolve;
pub mod responses;
pub mod secret_files;
pub mod supervise;
pub mod target_path;
pub mod tunnel_upstream;
pub mod websocket;
