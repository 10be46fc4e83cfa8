//! The runner's side of a sidecar's supervise queue: reading the proposals waiting there and
//! writing decisions beside them, whole (temporary name, then rename).

use std::path::Path;

use bb_crds::policy::proposal::{
    QueueDecision, QueuedProposal, proposal_file, response_file, valid_id,
};

/// A proposal file larger than this is not read: the sidecar caps requests at 1 MiB.
const MAX_PROPOSAL: u64 = 2 << 20;

/// The proposals waiting in `dir`, by id. Files that are not well-formed proposals (a sidecar
/// is not trusted to write them) are skipped with a warning.
pub fn waiting(dir: &Path) -> Vec<QueuedProposal> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".proposal.json") else {
            continue;
        };
        match read(&e.path(), id) {
            Ok(p) => out.push(p),
            Err(why) => {
                tracing::warn!(queue = %dir.display(), file = %name, "skipping a malformed proposal: {why}")
            }
        }
    }
    out.sort_by(|a, b| a.arrival_timestamp.cmp(&b.arrival_timestamp));
    out
}

/// Reads one entry as the untrusted file it is: opened without following a link and without
/// blocking (a FIFO swapped in after a look would hang a plain open or read), then held to be a
/// regular file of at most `MAX_PROPOSAL` bytes by the descriptor itself.
fn read(path: &Path, id: &str) -> Result<QueuedProposal, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > MAX_PROPOSAL {
        return Err("not a regular file of at most 2 MiB".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PROPOSAL + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let p: QueuedProposal = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if p.id != id || !valid_id(id) {
        return Err(format!("its id {:?} does not match its file name", p.id));
    }
    Ok(p)
}

/// Whether proposal `id` is still waiting in `dir` (its tool call or push may read a decision).
pub fn is_waiting(dir: &Path, id: &str) -> bool {
    dir.join(proposal_file(id)).is_file()
}

/// Answers proposal `id`; the waiting tool call or push reads it and removes both files. The
/// sidecar owns the directory, so whatever it left at the temporary name (a link to a file of
/// the runner's, say) is removed and the file is created new, never opened through a link.
pub fn respond(dir: &Path, id: &str, decision: &QueueDecision) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{id}.response.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?
        .write_all(&serde_json::to_vec(decision).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, dir.join(response_file(id)))
}

/// Removes a proposal nobody can answer any more (malformed, or refused by the API).
pub fn discard(dir: &Path, id: &str) {
    let _ = std::fs::remove_file(dir.join(proposal_file(id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_proposals_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = QueuedProposal {
            id: "allow-1".into(),
            tool: "allow".into(),
            proposed_file: "routes: []\n".into(),
            justification: "j".into(),
            repo: None,
            arrival_timestamp: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(
            dir.path().join("allow-1.proposal.json"),
            serde_json::to_vec(&good).expect("json"),
        )
        .expect("write");
        // Named for another id, not JSON, an invalid id, and a symlink.
        std::fs::write(
            dir.path().join("allow-2.proposal.json"),
            serde_json::to_vec(&good).expect("json"),
        )
        .expect("write");
        std::fs::write(dir.path().join("allow-3.proposal.json"), "{").expect("write");
        std::fs::write(dir.path().join("Bad.proposal.json"), "{}").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("allow-4.proposal.json"))
            .expect("symlink");
        assert_eq!(waiting(dir.path()), vec![good]);
        assert!(is_waiting(dir.path(), "allow-1"));
        respond(
            dir.path(),
            "allow-1",
            &QueueDecision {
                status: "approved".into(),
                reason: None,
            },
        )
        .expect("respond");
        let back: QueueDecision = serde_json::from_slice(
            &std::fs::read(dir.path().join("allow-1.response.json")).expect("read"),
        )
        .expect("json");
        assert!(back.approved());
    }

    /// A FIFO (directly, or behind a link swapped in) never blocks the reader, and a link
    /// planted at the answer's temporary name is not written through.
    #[test]
    fn fifos_and_links_neither_block_nor_redirect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("allow-5.proposal.json");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink(&fifo, dir.path().join("allow-6.proposal.json"))
            .expect("symlink");
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(waiting(&d));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading the queue blocked on a FIFO");
        assert!(read.is_empty());

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join(".allow-7.response.tmp"))
            .expect("symlink");
        respond(
            dir.path(),
            "allow-7",
            &QueueDecision {
                status: "rejected".into(),
                reason: None,
            },
        )
        .expect("respond");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        assert!(dir.path().join("allow-7.response.json").is_file());
    }
}
