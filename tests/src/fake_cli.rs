//! What the stand-in runtime CLIs (`fake-container`, `fake-smolvm`) share: where they keep
//! their state, the argv log the suites read, and how they refuse an argv.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `$var`, else `default` under the temporary directory.
pub fn state_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(default))
}

/// Appends `args` to `dir/argv.jsonl`, one JSON array a line.
pub fn record(dir: &Path, args: &[String]) {
    let _ = std::fs::create_dir_all(dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("argv.jsonl"))
    {
        // One write per line: concurrent calls append whole lines (O_APPEND).
        let _ = f.write_all(format!("{}\n", serde_json::json!(args)).as_bytes());
    }
}

/// An argv the real CLI would not take: exit 64, so a backend that drifts fails its tests.
pub fn usage(msg: &str) -> ExitCode {
    eprintln!("Error: {msg}");
    ExitCode::from(64)
}
