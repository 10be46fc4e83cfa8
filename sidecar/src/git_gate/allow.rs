//! `gitleaks:allow` is a request, not a bypass: findings the agent marked wait for a human
//! decision, raised as a `gitleaks-allow` proposal in the sidecar's supervise queue. Only an
//! approval lets the push go on; rejection, anything malformed, no queue, or the timeout refuse.

use std::time::{Duration, Instant};

use bb_policy::proposal::{QueuedProposal, TOOL_GITLEAKS_ALLOW};

use super::scan::Finding;
use crate::queue::{Outcome, Queue, new_id};

const JUSTIFICATION: &str = "The agent marked these findings with gitleaks:allow. Approve only dummy test fixtures or confirmed false positives.";

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
    let queue = Queue::new(queue);
    let id = new_id(TOOL_GITLEAKS_ALLOW);
    let proposal = QueuedProposal {
        id: id.clone(),
        tool: TOOL_GITLEAKS_ALLOW.into(),
        repo: Some(repo.into()),
        proposed_file: proposal_text(repo, findings),
        justification: JUSTIFICATION.into(),
        arrival_timestamp: jiff::Timestamp::now().to_string(),
    };
    queue.raise(&proposal).map_err(|e| {
        format!(
            "cannot raise the proposal in {}: {e}; refusing the push",
            queue.dir().display()
        )
    })?;
    say(&format!(
        "waiting up to {timeout}s for a decision on proposal {id} (approve it with `bbctl supervise`)"
    ));
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        match queue.take_decision(&id) {
            Outcome::Decided(r) if r.approved() => {
                say(&format!(
                    "approved: {}",
                    r.reason.as_deref().unwrap_or("(no reason given)")
                ));
                return Ok(());
            }
            Outcome::Decided(r) => {
                return Err(format!(
                    "proposal {id} was {}: {}; refusing the push",
                    r.status,
                    r.reason.as_deref().unwrap_or("no reason given")
                ));
            }
            Outcome::Malformed(e) => {
                return Err(format!(
                    "the decision on {id} is unreadable ({e}); refusing the push"
                ));
            }
            Outcome::Waiting => {}
        }
        if Instant::now() >= deadline {
            queue.withdraw(&id);
            return Err(format!(
                "no decision on proposal {id} within {timeout}s; refusing the push"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
