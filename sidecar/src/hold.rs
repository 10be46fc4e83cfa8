//! The runner's hold on this bottle (cluster mode): a deadline the runner renews in a file while
//! it holds the Agent. Past it, everything that would leave is refused (`runner-lost`) and what is
//! open is cut, so a bottle whose runner died or lost the Agent stops acting on its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bb_policy::rule::Rule;
use tokio::sync::watch;

use crate::policy::Refusal;

/// How often the hold file is read, and so how late past the deadline an open connection may
/// be cut (new requests are refused at the deadline itself).
pub const POLL: Duration = Duration::from_millis(100);

/// A deadline that never comes: no hold file (local mode, where no other runner can take over).
const NEVER: u64 = u64::MAX;

/// What the agent is told once the hold has lapsed.
pub const LAPSED: &str = "this bottle's runner lost its hold on it (it stopped, was cut off, or \
     the Agent moved to another runner); nothing leaves until a runner that holds the Agent \
     starts it again";

/// Whether the hold in `path` has lapsed, read once (git-gate's hook, a process of its own).
pub fn file_lapsed(path: &std::path::Path) -> bool {
    now_ms() >= read_deadline(path)
}

/// The deadline, in milliseconds since the Unix epoch, and whether it has passed.
#[derive(Debug)]
pub struct Hold {
    deadline_ms: AtomicU64,
    lapsed: watch::Sender<bool>,
}

impl Hold {
    /// No hold to keep: never lapses.
    pub fn unfenced() -> Arc<Hold> {
        Arc::new(Hold {
            deadline_ms: AtomicU64::new(NEVER),
            lapsed: watch::Sender::new(false),
        })
    }

    /// A hold kept by the deadline in `path` (written by the runner as decimal milliseconds
    /// since the Unix epoch), read now and every `POLL` after. A missing or unreadable file is a
    /// lapsed hold: the sidecar fails closed. Must be called within a Tokio runtime.
    pub fn from_file(path: PathBuf) -> Arc<Hold> {
        let hold = Arc::new(Hold {
            deadline_ms: AtomicU64::new(read_deadline(&path)),
            lapsed: watch::Sender::new(false),
        });
        hold.publish();
        let polled = hold.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                polled
                    .deadline_ms
                    .store(read_deadline(&path), Ordering::Relaxed);
                polled.publish();
            }
        });
        hold
    }

    /// Whether the deadline has passed: nothing may leave.
    pub fn lapsed(&self) -> bool {
        now_ms() >= self.deadline_ms.load(Ordering::Relaxed)
    }

    /// Resolves when the hold next lapses (never for an unfenced sidecar): what was opened
    /// while it was kept is dropped then. While it is lapsed already, that is after a renewal
    /// and the lapse that follows it: a connection opened meanwhile is served (every request on
    /// it refused), so it hears why instead of being dropped unanswered.
    pub async fn until_lapsed(&self) {
        let mut rx = self.lapsed.subscribe();
        let mut seen_held = false;
        loop {
            let lapsed = *rx.borrow_and_update();
            if lapsed && seen_held {
                return;
            }
            seen_held |= !lapsed;
            if rx.changed().await.is_err() {
                // The sender lives as long as the hold: this is never reached.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs `work` until it ends or the hold lapses, whichever is first.
    pub async fn cut<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            out = work => Some(out),
            () = self.until_lapsed() => None,
        }
    }

    /// The refusal every request gets once the hold has lapsed.
    pub fn refusal(&self) -> Refusal {
        Refusal::new(Rule::RunnerLost, format!("egress: {LAPSED}"))
    }

    fn publish(&self) {
        let lapsed = self.lapsed();
        self.lapsed.send_if_modified(|was| {
            let changed = *was != lapsed;
            *was = lapsed;
            changed
        });
        if lapsed {
            tracing::debug!("the runner's hold has lapsed");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The deadline in `path`, or 0 (long past) when it cannot be read.
fn read_deadline(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &std::path::Path, ms: u64) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{ms}\n")).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[tokio::test]
    async fn a_hold_lapses_at_its_deadline_and_comes_back_when_renewed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deadline");
        // No file: fail closed.
        let hold = Hold::from_file(path.clone());
        assert!(hold.lapsed());
        write(&path, now_ms() + 60_000);
        tokio::time::timeout(Duration::from_secs(5), async {
            while hold.lapsed() {
                tokio::time::sleep(POLL / 2).await;
            }
        })
        .await
        .expect("a renewed hold is seen");
        // Work running under the hold is cut once the deadline passes.
        let running = hold.cut(std::future::pending::<()>());
        write(&path, now_ms() + 300);
        let cut = tokio::time::timeout(Duration::from_secs(5), running).await;
        assert_eq!(cut.ok(), Some(None), "open work is cut at the deadline");
        assert!(hold.lapsed());
        assert_eq!(hold.refusal().rule, Rule::RunnerLost);
        // Work begun while lapsed is served until the hold is renewed and lapses again.
        let begun = tokio::spawn({
            let hold = hold.clone();
            async move { hold.cut(std::future::pending::<()>()).await }
        });
        tokio::time::sleep(POLL * 3).await;
        assert!(
            !begun.is_finished(),
            "work begun while lapsed is not cut at once"
        );
        write(&path, now_ms() + 400);
        let cut = tokio::time::timeout(Duration::from_secs(5), begun).await;
        assert_eq!(
            cut.ok().and_then(Result::ok),
            Some(None),
            "cut at the next lapse"
        );
        // Garbage is a lapsed hold too.
        std::fs::write(&path, "soon").expect("write");
        tokio::time::sleep(POLL * 3).await;
        assert!(hold.lapsed());
    }

    #[tokio::test]
    async fn an_unfenced_sidecar_never_lapses() {
        let hold = Hold::unfenced();
        assert!(!hold.lapsed());
        let done = hold.cut(async { 7 }).await;
        assert_eq!(done, Some(7));
        let cut = tokio::time::timeout(POLL * 3, hold.until_lapsed()).await;
        assert!(cut.is_err(), "an unfenced hold never lapses");
    }
}
