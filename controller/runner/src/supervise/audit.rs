//! The per-Agent supervise audit log: one JSON line per proposal raised and per decision and
//! its outcome (who, when, what changed, why), appended by the runner and never rewritten.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: String,
    pub proposal: String,
    pub tool: String,
    /// `raised`, `approved`, `rejected`, `applied`, `expired`, `withdrawn`.
    pub action: String,
    /// The agent for `raised`; the approver for a decision; `runner` for what followed.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What changed (or would): the reach summary, one item per line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change: Vec<String>,
}

impl AuditRecord {
    pub fn new(proposal: &str, tool: &str, action: &str, actor: &str) -> Self {
        AuditRecord {
            time: jiff::Timestamp::now().to_string(),
            proposal: proposal.into(),
            tool: tool.into(),
            action: action.into(),
            actor: actor.into(),
            reason: None,
            change: Vec::new(),
        }
    }

    pub fn reason(mut self, r: Option<&str>) -> Self {
        self.reason = r.map(Into::into);
        self
    }

    pub fn change(mut self, c: Vec<String>) -> Self {
        self.change = c;
        self
    }
}

/// Appends `record` as one line; the file is opened for appending only, so no write of ours
/// can change what is already there. A failure is logged, never fatal: the Events carry the
/// same facts.
pub fn append(file: &Path, record: &AuditRecord) {
    let line = match serde_json::to_string(record) {
        Ok(l) => l + "\n",
        Err(_) => return,
    };
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
        })
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "appending to the supervise audit log failed");
    }
}

/// The last `tail` lines of the log (all of it with `None`); empty when there is none yet.
pub fn read(file: &Path, tail: Option<usize>) -> Vec<u8> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    lines[from..]
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_and_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("s/audit.jsonl");
        assert!(read(&f, None).is_empty());
        for action in ["raised", "approved", "applied"] {
            append(
                &f,
                &AuditRecord::new("p", "allow", action, "alice@h").reason(Some("ok")),
            );
        }
        let all = String::from_utf8(read(&f, None)).expect("utf8");
        assert_eq!(all.lines().count(), 3);
        let last: AuditRecord = serde_json::from_slice(&read(&f, Some(1))).expect("one record");
        assert_eq!(last.action, "applied");
        assert_eq!(last.reason.as_deref(), Some("ok"));
    }
}
