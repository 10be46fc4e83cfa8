//! What every runtime's image builds share: the sidecar's Dockerfile, and how a harness file
//! (or directory) is identified without reading its hundreds of megabytes.

use std::path::Path;

/// The sidecar's Dockerfile, shipped inside the controller so an installed binary can build it.
pub const SIDECAR_DOCKERFILE: &str = include_str!("../../../images/sidecar/Dockerfile");

/// Size and modification time of a harness file, or of every file under a harness directory
/// (a harness is hundreds of megabytes: this is read on every reconcile, the bytes only to build).
pub fn harness_identity(path: &Path) -> std::io::Result<String> {
    fn walk(p: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        let m = std::fs::metadata(p)?;
        if m.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                walk(&e.path(), &format!("{rel}/{name}"), out)?;
            }
        } else {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.push(format!("{rel}:{}:{mtime}", m.len()));
        }
        Ok(())
    }
    let mut out = vec![path.display().to_string()];
    walk(path, "", &mut out)?;
    Ok(out.join("\n"))
}
