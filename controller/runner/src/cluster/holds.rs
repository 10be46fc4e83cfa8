//! The holds this runner keeps on the sidecars it runs (cluster mode): the file each sidecar reads
//! its deadline from, renewed from the heartbeat's last renewal while this runner holds the Agent.
//! A copy whose runner died, was cut off or lost the Agent then stops on its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bb_backend::{AgentId, Backend};

/// The deadline last written per Agent uid, so a renewal writes each file once per heartbeat.
#[derive(Debug, Default)]
pub struct Holds {
    written: Mutex<HashMap<String, u64>>,
}

impl Holds {
    /// Writes `deadline` into the hold file of `id`'s sidecar, unless it holds it already. A
    /// backend whose copies are not fenced has no hold file: nothing to write.
    pub fn renew(&self, backend: &dyn Backend, id: &AgentId, deadline: SystemTime) {
        let Some(file) = backend.hold_file(id) else {
            return;
        };
        let ms = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // The runtime removes the directory with the copy; a new copy needs the file again.
        let written = self
            .written
            .lock()
            .ok()
            .and_then(|w| w.get(&id.uid).copied());
        if written == Some(ms) && file.exists() {
            return;
        }
        match write(&file, ms) {
            Ok(()) => {
                if let Ok(mut w) = self.written.lock() {
                    w.insert(id.uid.clone(), ms);
                }
            }
            Err(e) => {
                tracing::warn!(agent = %id, file = %file.display(), error = %e, "renewing the hold on a sidecar failed")
            }
        }
    }

    /// Ends the hold on `id`'s sidecar now: its hold file goes, which the sidecar reads as a
    /// lapsed hold (for a copy that outlives its eviction).
    pub fn lapse(&self, backend: &dyn Backend, id: &AgentId) {
        if let Ok(mut w) = self.written.lock() {
            w.remove(&id.uid);
        }
        let Some(dir) = backend
            .hold_file(id)
            .and_then(|f| f.parent().map(|d| d.to_path_buf()))
        else {
            return;
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(agent = %id, dir = %dir.display(), error = %e, "removing a hold failed")
            }
        }
    }
}

/// Replaces `file` with `ms` (temp file and rename, `bb_home::write_private`): the sidecar,
/// reading through a mount of its directory, sees the old deadline or the new one, never half of
/// one. World-readable, for the sidecar's own user.
fn write(file: &std::path::Path, ms: u64) -> std::io::Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| std::io::Error::other("a hold file has a directory"))?;
    bb_backend::sidecar_command::create_hold_dir(dir).map_err(std::io::Error::other)?;
    bb_home::write_private(file, format!("{ms}\n").as_bytes(), 0o644).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb_backend::fake::FakeBackend;

    fn id() -> AgentId {
        AgentId {
            namespace: "default".into(),
            name: "a".into(),
            uid: "u1".into(),
        }
    }

    #[test]
    fn a_hold_is_written_whole_once_per_deadline_and_lapses_by_going() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = FakeBackend::new().with_holds(dir.path().to_path_buf());
        let holds = Holds::default();
        let file = backend
            .hold_file(&id())
            .expect("a fenced fake has hold files");
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_123);
        holds.renew(&backend, &id(), at);
        assert_eq!(
            std::fs::read_to_string(&file).expect("written"),
            "1800000000123\n"
        );
        // The same deadline is not written again (the file stays as the sidecar last read it).
        std::fs::write(&file, "sentinel").expect("write");
        holds.renew(&backend, &id(), at);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "sentinel");
        holds.renew(&backend, &id(), at + std::time::Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "1800000005123\n"
        );
        // A copy removed with its hold directory gets the file back at once.
        std::fs::remove_dir_all(file.parent().expect("dir")).expect("rm");
        holds.renew(&backend, &id(), at + std::time::Duration::from_secs(5));
        assert!(file.exists(), "the hold is written again for a new copy");
        holds.lapse(&backend, &id());
        assert!(!file.exists(), "a lapsed hold has no file");
        // Renewed after a lapse, it is written again.
        holds.renew(&backend, &id(), at);
        assert!(file.exists());
    }
}
