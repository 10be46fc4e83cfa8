//! How long a failing Agent waits before its next attempt, and when it stops trying: gaps that
//! double to a cap, and after `ATTEMPTS` reported failures in a row, no more tries until it
//! changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row after which an Agent is `Failed` and waits for a change. With gaps of 1,
/// 2, 4 and 8 s, that is about 15 s of trying: long enough for a blip (an engine restart, a
/// slow registry), short enough that a build that cannot work says so before the user waits.
pub const ATTEMPTS: u32 = 5;

/// The gap after the `n`th failure in a row (1-based): 1 s, 2 s, 4 s, ... capped at 5 minutes.
pub fn gap(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// What a failing Agent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Retry after this long.
    For(Duration),
    /// Retry only when something that is a reason to act changes.
    Change,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    /// The fingerprint of what was a reason to act when it failed.
    fingerprint: u64,
    /// `None`: gave up, until the fingerprint changes.
    until: Option<Instant>,
}

/// Per-Agent failure counts and holds, keyed `namespace/name`.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
    holds: Mutex<HashMap<String, Hold>>,
}

impl Backoff {
    /// Failures in a row so far.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }

    /// Records a failure; returns what to wait for: the next gap, or a change when the reconcile
    /// gave up (`give_up`, after writing a status that says so). Only the reconcile gives up:
    /// an error it could not report (the API unreachable) keeps being retried, capped.
    pub fn failed(&self, key: &str, fingerprint: u64) -> Wait {
        let n = match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key.to_string()).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        let Ok(mut h) = self.holds.lock() else {
            return Wait::For(gap(n));
        };
        let gave_up = h
            .get(key)
            .is_some_and(|hold| hold.until.is_none() && hold.fingerprint == fingerprint);
        if gave_up {
            return Wait::Change;
        }
        let until = Some(Instant::now() + gap(n));
        h.insert(key.to_string(), Hold { fingerprint, until });
        Wait::For(gap(n))
    }

    /// Whether the failure being handled is the `ATTEMPTS`th in a row: the one to give up on.
    pub fn last_attempt(&self, key: &str) -> bool {
        self.failures(key) + 1 >= ATTEMPTS
    }

    /// No more tries until the fingerprint changes.
    pub fn give_up(&self, key: &str, fingerprint: u64) {
        if let Ok(mut h) = self.holds.lock() {
            h.insert(
                key.to_string(),
                Hold {
                    fingerprint,
                    until: None,
                },
            );
        }
    }

    /// What a reconcile woken now must still wait for, if nothing that matters changed. A
    /// change forgets the failures: the Agent gets its full number of attempts again.
    pub fn held(&self, key: &str, fingerprint: u64) -> Option<Wait> {
        let hold = self.holds.lock().ok()?.get(key).copied()?;
        if hold.fingerprint != fingerprint {
            self.reset(key);
            return None;
        }
        match hold.until {
            None => Some(Wait::Change),
            Some(t) => t.checked_duration_since(Instant::now()).map(Wait::For),
        }
    }

    /// A success (or a deletion): the count starts again.
    pub fn reset(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
        if let Ok(mut h) = self.holds.lock() {
            h.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_double_to_a_cap_and_only_the_reconcile_gives_up() {
        assert_eq!(
            (1..=5).map(gap).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16].map(Duration::from_secs)
        );
        assert_eq!(gap(40), Duration::from_secs(300));
        let b = Backoff::default();
        for n in 1..ATTEMPTS {
            assert!(!b.last_attempt("ns/a"));
            assert_eq!(b.failed("ns/a", 7), Wait::For(gap(n)));
            assert!(matches!(b.held("ns/a", 7), Some(Wait::For(_))));
        }
        assert!(b.last_attempt("ns/a"));
        // An error the reconcile could not report is retried however often it happens.
        assert_eq!(b.failed("ns/a", 7), Wait::For(gap(ATTEMPTS)));
        b.give_up("ns/a", 7);
        assert_eq!(b.failed("ns/a", 7), Wait::Change);
        assert_eq!(b.held("ns/a", 7), Some(Wait::Change));
        // Another Agent is not held.
        assert_eq!(b.held("ns/b", 7), None);
    }

    #[test]
    fn a_change_releases_the_hold_and_forgets_the_failures() {
        let b = Backoff::default();
        for _ in 0..ATTEMPTS {
            b.failed("ns/a", 1);
        }
        b.give_up("ns/a", 1);
        assert_eq!(b.held("ns/a", 2), None);
        assert_eq!(b.failures("ns/a"), 0);
        assert_eq!(b.failed("ns/a", 2), Wait::For(gap(1)));
    }
}
