//! The supervise queue: a directory the runner also sees, where proposals wait as
//! `<id>.proposal.json` until a decision appears beside them. The sidecar never calls the API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bb_policy::proposal::{QueueDecision, QueuedProposal, proposal_file, response_file};

/// A decision file larger than this is malformed (it holds a status and a reason).
const MAX_DECISION: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

/// What came of a proposal so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Waiting,
    Decided(QueueDecision),
    /// A decision file that does not parse: treated as a refusal by every caller.
    Malformed(String),
}

/// A fresh proposal id: `<tool>-<time>-<pid><n>`, unique across the sidecar's processes.
pub fn new_id(tool: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 40 bits of time at ~1 µs: unique, and short enough for an object name.
    format!(
        "{tool}-{:x}{:x}{n:x}",
        (nanos >> 10) & 0xff_ffff_ffff,
        std::process::id() & 0xffff
    )
}

impl Queue {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Queue { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the proposal whole (temporary name, then rename) so the runner never reads half.
    pub fn raise(&self, p: &QueuedProposal) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}.tmp", p.id));
        let text = serde_json::to_vec(p).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join(proposal_file(&p.id)))
    }

    /// The decision on `id`, if one was written. A decision is consumed: both files go.
    pub fn take_decision(&self, id: &str) -> Outcome {
        let path = self.dir.join(response_file(id));
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_DECISION => Err("the decision file is too large".to_string()),
            Ok(_) => std::fs::read_to_string(&path).map_err(|e| e.to_string()),
            Err(_) => return Outcome::Waiting,
        };
        self.withdraw(id);
        let _ = std::fs::remove_file(&path);
        match text
            .and_then(|t| serde_json::from_str::<QueueDecision>(&t).map_err(|e| e.to_string()))
        {
            Ok(d) => Outcome::Decided(d),
            Err(e) => Outcome::Malformed(e),
        }
    }

    /// How many proposals with one of `prefixes` wait in the queue for a decision.
    pub fn pending(&self, prefixes: &[&str]) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".proposal.json")
                    .is_some_and(|id| prefixes.iter().any(|p| id.starts_with(&format!("{p}-"))))
            })
            .count()
    }

    /// Removes a proposal nobody waits for any more.
    pub fn withdraw(&self, id: &str) {
        let _ = std::fs::remove_file(self.dir.join(proposal_file(id)));
    }

    /// Removes decisions on proposals whose tool call stopped waiting (`ids` are those still
    /// awaited in this process); only ids with one of `prefixes`, so another process's waits
    /// (a push's gitleaks-allow) are left alone.
    pub fn sweep(&self, prefixes: &[&str], awaited: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".response.json") else {
                continue;
            };
            if prefixes.iter().any(|p| id.starts_with(&format!("{p}-")))
                && !awaited.iter().any(|a| a == id)
            {
                let _ = self.take_decision(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(id: &str) -> QueuedProposal {
        QueuedProposal {
            id: id.into(),
            tool: "allow".into(),
            proposed_file: "routes: []\n".into(),
            justification: "why".into(),
            repo: None,
            arrival_timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn ids_are_unique_and_valid_object_names() {
        let a = new_id("egress-block");
        let b = new_id("egress-block");
        assert_ne!(a, b);
        assert!(bb_policy::proposal::valid_id(&a), "{a}");
    }

    #[test]
    fn a_decision_is_read_once_and_malformed_ones_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::new(dir.path());
        q.raise(&proposal("allow-1")).expect("raise");
        assert!(dir.path().join("allow-1.proposal.json").is_file());
        assert_eq!(q.take_decision("allow-1"), Outcome::Waiting);
        std::fs::write(
            dir.path().join("allow-1.response.json"),
            r#"{"status":"approved","reason":"ok"}"#,
        )
        .expect("write");
        match q.take_decision("allow-1") {
            Outcome::Decided(d) => assert!(d.approved()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("allow-1.proposal.json").exists());
        assert_eq!(q.take_decision("allow-1"), Outcome::Waiting);
        std::fs::write(dir.path().join("allow-2.response.json"), "{").expect("write");
        assert!(matches!(q.take_decision("allow-2"), Outcome::Malformed(_)));
    }

    #[test]
    fn sweeping_leaves_awaited_and_foreign_decisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::new(dir.path());
        for id in ["allow-1", "allow-2", "gitleaks-allow-3"] {
            std::fs::write(dir.path().join(format!("{id}.response.json")), "{}").expect("w");
        }
        q.sweep(&["allow"], &["allow-2".to_string()]);
        assert!(!dir.path().join("allow-1.response.json").exists());
        assert!(dir.path().join("allow-2.response.json").exists());
        assert!(dir.path().join("gitleaks-allow-3.response.json").exists());
    }
}
