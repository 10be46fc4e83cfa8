//! `gitleaks:allow` is a request, not a bypass: findings the agent marked wait for a human
//! decision, raised as a `gitleaks-allow` proposal in the sidecar's supervise queue. Only an
//! approval lets the push go on; rejection, anything malformed, no queue, or the timeout refuse.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::scan::Finding;

const JUSTIFICATION: &str = "The agent marked these findings with gitleaks:allow. Approve only dummy test fixtures or confirmed false positives.";

/// A decision written beside a proposal as `<id>.response.json`.
#[derive(Debug, Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The text a human reviews: each finding, redacted.
pub fn proposal_text(repo: &str, findings: &[Finding]) -> String {
    let mut s = format!("Push to repository {repo} holds findings marked gitleaks:allow:\n");
    for f in findings {
        s.push_str(&format!(
            "- {}:{} rule {} in commit {}\n  {}\n",
            f.file, f.line, f.rule, f.commit, f.redacted
        ));
    }
    s
}

fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("gitleaks-allow-{:x}-{:x}", nanos, std::process::id())
}

fn say(line: &str) {
    eprintln!("git-gate: {line}");
}

/// Raises the proposal and waits for its decision; `Ok` only on approval.
pub fn decide(repo: &str, findings: &[Finding]) -> Result<(), String> {
    let queue = std::env::var("BB_GATE_QUEUE").ok();
    let timeout = match std::env::var("BB_GATE_ALLOW_TIMEOUT") {
        Ok(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<u64>()
            .map_err(|_| format!("allow timeout {v:?} is too large"))?,
        Ok(v) => {
            return Err(format!(
                "allow timeout {v:?} is not a number of seconds; refusing the push"
            ));
        }
        Err(_) => 300,
    };
    say(&format!(
        "{} finding(s) marked gitleaks:allow need a human decision:",
        findings.len()
    ));
    for f in findings {
        say(&f.to_string());
    }
    let Some(queue) = queue else {
        return Err(
            "this bottle has no supervisor to ask (spec.supervise is off); remove the secrets, or enable supervise and push again".into(),
        );
    };
    let id = new_id();
    let proposal = serde_json::json!({
        "id": id,
        "tool": "gitleaks-allow",
        "repo": repo,
        "proposedFile": proposal_text(repo, findings),
        "justification": JUSTIFICATION,
        "arrivalTimestamp": jiff::Timestamp::now().to_string(),
    });
    let dir = Path::new(&queue);
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.proposal.json"));
    std::fs::write(&tmp, proposal.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot raise the proposal in {queue}: {e}; refusing the push"))?;
    say(&format!(
        "waiting up to {timeout}s for a decision on proposal {id} (approve it with `bbctl supervise`)"
    ));
    let response = dir.join(format!("{id}.response.json"));
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        if let Ok(text) = std::fs::read_to_string(&response) {
            let decision: Result<Response, _> = serde_json::from_str(&text);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&response);
            return match decision {
                Ok(r) if r.status == "approved" || r.status == "modified" => {
                    say(&format!(
                        "approved: {}",
                        r.reason.as_deref().unwrap_or("(no reason given)")
                    ));
                    Ok(())
                }
                Ok(r) => Err(format!(
                    "proposal {id} was {}: {}; refusing the push",
                    r.status,
                    r.reason.as_deref().unwrap_or("no reason given")
                )),
                Err(e) => Err(format!(
                    "the decision on {id} is unreadable ({e}); refusing the push"
                )),
            };
        }
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "no decision on proposal {id} within {timeout}s; refusing the push"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
