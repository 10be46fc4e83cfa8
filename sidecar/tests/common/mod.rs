//! Helpers shared by the sidecar's integration tests.

pub mod tls;
