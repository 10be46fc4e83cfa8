//! End-to-end suites for bot-bottle live in `tests/tests/`: they drive the real binaries against
//! real Docker, the real control plane and real clients (`kubectl`, `curl`, `git`).
//!
//! Shared helpers for those suites live here.

use std::path::PathBuf;

/// The workspace root, for suites that read `examples/` or the chart.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
