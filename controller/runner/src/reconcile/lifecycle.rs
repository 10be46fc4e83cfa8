//! `spec.lifecycle`: when an Agent nobody uses is suspended (idle: no session open and no
//! request through its sidecar) or deleted (its ttl passed, its attached command exited).
//! `judge` is pure; the reconciler feeds it the runner's own signals and acts on its verdict.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bb_crds::agent::Lifecycle;
use tokio::time::Instant;

/// What the runner saw of an Agent's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// How long the Agent has existed.
    pub age: Duration,
    /// Sessions open now on this runner.
    pub open_sessions: usize,
    /// How long since the last sign of use (a session opening or closing, a request through
    /// the sidecar, the Agent starting); `None` when it cannot be told (the runtime gives no
    /// request count), which never counts as idle.
    pub quiet_for: Option<Duration>,
    /// An attached command ran to its end.
    pub exited: bool,
    /// The Agent runs (idle suspend applies only then).
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do now; look again after this long (`None`: nothing is due).
    Keep(Option<Duration>),
    Suspend(String),
    Delete(String),
}

/// `lifecycle`'s verdict on an Agent as `seen`. Durations were validated at admission; one that
/// does not parse (an object stored before validation) is ignored rather than acted on.
pub(crate) fn judge(l: &Lifecycle, seen: &Seen) -> Verdict {
    let parse = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| bb_crds::duration::parse_positive(s).ok())
    };
    let mut next: Option<Duration> = None;
    if let Some(ttl) = parse(&l.ttl) {
        if seen.age >= ttl {
            return Verdict::Delete(format!("its ttl of {} passed", show(&l.ttl)));
        }
        next = Some(ttl - seen.age);
    }
    if l.delete_after_exit == Some(true) && seen.exited && seen.open_sessions == 0 {
        return Verdict::Delete("its attached command exited (deleteAfterExit)".into());
    }
    if let Some(idle) = parse(&l.idle_suspend_after)
        && seen.running
        && seen.open_sessions == 0
        && let Some(quiet) = seen.quiet_for
    {
        if quiet >= idle {
            return Verdict::Suspend(format!(
                "no session and no request for {} (idleSuspendAfter)",
                show(&l.idle_suspend_after)
            ));
        }
        next = Some(next.map_or(idle - quiet, |n| n.min(idle - quiet)));
    }
    Verdict::Keep(next)
}

fn show(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The last request count read from each running Agent's sidecar and when it last moved, by
/// Agent uid: a sidecar's count is its idle signal.
#[derive(Debug, Default)]
pub(crate) struct EgressSeen(Mutex<HashMap<String, (u64, Instant)>>);

impl EgressSeen {
    /// Records `count` and returns when it last changed. A first reading, or a count lower than
    /// the last (a new sidecar), starts now: the Agent has just been seen running.
    pub fn moved_at(&self, uid: &str, count: u64) -> Instant {
        let now = Instant::now();
        let Ok(mut seen) = self.0.lock() else {
            return now;
        };
        let entry = seen.entry(uid.to_string()).or_insert((count, now));
        if entry.0 != count {
            *entry = (count, now);
        }
        entry.1
    }

    /// Forgets an Agent that stopped (suspended, deleted): its next sidecar counts from 0.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn lifecycle(idle: Option<&str>, ttl: Option<&str>, on_exit: bool) -> Lifecycle {
        Lifecycle {
            idle_suspend_after: idle.map(String::from),
            ttl: ttl.map(String::from),
            delete_after_exit: on_exit.then_some(true),
            keep_snapshot: None,
        }
    }

    fn seen(age: u64, open: usize, quiet: Option<u64>, exited: bool) -> Seen {
        Seen {
            age: MIN * age as u32,
            open_sessions: open,
            quiet_for: quiet.map(|q| MIN * q as u32),
            exited,
            running: true,
        }
    }

    #[test]
    fn idle_suspends_only_without_sessions_and_after_the_whole_wait() {
        let l = lifecycle(Some("30m"), None, false);
        assert_eq!(
            judge(&l, &seen(100, 0, Some(29), false)),
            Verdict::Keep(Some(MIN))
        );
        assert!(matches!(
            judge(&l, &seen(100, 0, Some(30), false)),
            Verdict::Suspend(_)
        ));
        // A session open keeps it, however quiet; so does a count the runtime cannot give.
        assert_eq!(
            judge(&l, &seen(100, 1, Some(90), false)),
            Verdict::Keep(None)
        );
        assert_eq!(judge(&l, &seen(100, 0, None, false)), Verdict::Keep(None));
        // Suspended already: idleness is not judged again.
        let stopped = Seen {
            running: false,
            ..seen(100, 0, Some(90), false)
        };
        assert_eq!(judge(&l, &stopped), Verdict::Keep(None));
    }

    #[test]
    fn ttl_deletes_in_any_phase_and_wakes_at_the_earlier_deadline() {
        let l = lifecycle(Some("30m"), Some("2h"), false);
        assert_eq!(
            judge(&l, &seen(100, 0, Some(10), false)),
            Verdict::Keep(Some(MIN * 20))
        );
        assert_eq!(
            judge(&l, &seen(115, 0, Some(10), false)),
            Verdict::Keep(Some(MIN * 5))
        );
        let suspended = Seen {
            running: false,
            ..seen(120, 0, None, false)
        };
        assert_eq!(
            judge(&l, &suspended),
            Verdict::Delete("its ttl of 2h passed".into())
        );
    }

    #[test]
    fn an_exit_deletes_only_when_asked() {
        assert_eq!(
            judge(&lifecycle(None, None, false), &seen(1, 0, Some(0), true)),
            Verdict::Keep(None)
        );
        assert!(matches!(
            judge(&lifecycle(None, None, true), &seen(1, 0, Some(0), true)),
            Verdict::Delete(_)
        ));
        // Not while another session still uses it.
        assert_eq!(
            judge(&lifecycle(None, None, true), &seen(1, 1, Some(0), true)),
            Verdict::Keep(None)
        );
    }

    #[tokio::test]
    async fn a_count_that_moves_or_restarts_starts_the_quiet_again() {
        let e = EgressSeen::default();
        let pause = || tokio::time::sleep(Duration::from_millis(20));
        let t0 = e.moved_at("u", 5);
        pause().await;
        assert_eq!(e.moved_at("u", 5), t0, "no change");
        let t1 = e.moved_at("u", 6);
        assert!(t1 > t0);
        pause().await;
        let t2 = e.moved_at("u", 0);
        assert!(t2 > t1, "a new sidecar counts from 0");
        e.forget("u");
        pause().await;
        assert!(
            e.moved_at("u", 0) > t2,
            "forgotten: the next reading starts now"
        );
    }
}
