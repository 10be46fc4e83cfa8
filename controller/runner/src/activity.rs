//! What the runner knows of each Agent's use from its own sessions (how many are open, when the
//! last opened or closed, whether an attached command exited), and the wake-ups that bring an
//! Agent's reconcile back when its lifecycle is due: the inputs of `spec.lifecycle`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bb_crds::Agent;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
// tokio's clock, which tests can pause and advance.
use tokio::time::Instant;

/// One Agent's use, as its sessions on this runner left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    /// Sessions (attach and exec) open now.
    pub open: usize,
    /// When the last session opened or closed.
    pub since: Instant,
    /// An attached command (the provider's harness) ran to its end.
    pub exited: bool,
}

#[derive(Debug)]
struct Inner {
    by_uid: HashMap<String, Use>,
    /// The earliest wake-up already scheduled per Agent uid, so a reconcile that asks for the
    /// same deadline again does not start another timer.
    timers: HashMap<String, Instant>,
    wakes: Option<UnboundedReceiver<ObjectRef<Agent>>>,
}

/// Shared by the session endpoint (which records use) and the Agent reconciler (which reads it
/// and schedules wake-ups); cloning shares it.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<Mutex<Inner>>,
    wake: UnboundedSender<ObjectRef<Agent>>,
}

impl Default for Activity {
    fn default() -> Self {
        let (wake, wakes) = unbounded_channel();
        Activity {
            inner: Arc::new(Mutex::new(Inner {
                by_uid: HashMap::new(),
                timers: HashMap::new(),
                wakes: Some(wakes),
            })),
            wake,
        }
    }
}

/// An open session: counted until dropped, when its Agent's reconcile is woken (its idle time
/// starts then).
#[derive(Debug)]
pub struct OpenSession {
    activity: Activity,
    uid: String,
    agent: ObjectRef<Agent>,
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.activity
            .update(&self.uid, |u| u.open = u.open.saturating_sub(1));
        let _ = self.activity.wake.send(self.agent.clone());
    }
}

impl Activity {
    fn update(&self, uid: &str, f: impl FnOnce(&mut Use)) {
        if let Ok(mut inner) = self.inner.lock() {
            let entry = inner.by_uid.entry(uid.to_string()).or_insert(Use {
                open: 0,
                since: Instant::now(),
                exited: false,
            });
            f(entry);
            entry.since = Instant::now();
        }
    }

    /// Counts a session of `agent` (uid `uid`) open until the guard drops. Someone uses the
    /// Agent again: an earlier exit no longer counts.
    pub fn open(&self, uid: &str, agent: ObjectRef<Agent>) -> OpenSession {
        self.update(uid, |u| {
            u.open += 1;
            u.exited = false;
        });
        OpenSession {
            activity: self.clone(),
            uid: uid.to_string(),
            agent,
        }
    }

    /// An attached command of the Agent ran to its end.
    pub fn exited(&self, uid: &str, agent: ObjectRef<Agent>) {
        self.update(uid, |u| u.exited = true);
        let _ = self.wake.send(agent);
    }

    /// The Agent's use on this runner; `None` when no session was ever opened here.
    pub fn of(&self, uid: &str) -> Option<Use> {
        self.inner.lock().ok()?.by_uid.get(uid).copied()
    }

    /// Forgets a deleted Agent.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.by_uid.remove(uid);
            inner.timers.remove(uid);
        }
    }

    /// Brings the Agent's reconcile back at `at` (unless an earlier wake-up is already due).
    pub fn wake_at(&self, uid: &str, agent: ObjectRef<Agent>, at: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if inner.timers.get(uid).is_some_and(|t| *t > now && *t <= at) {
            return;
        }
        inner.timers.insert(uid.to_string(), at);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = wake.send(agent);
        });
    }

    /// The stream of Agents to reconcile again (taken once, by the Agent controller).
    pub fn take_wakes(&self) -> Option<UnboundedReceiver<ObjectRef<Agent>>> {
        self.inner.lock().ok()?.wakes.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_count_while_open_and_closing_one_wakes_its_agent() {
        let a = Activity::default();
        let mut wakes = a.take_wakes().expect("first take");
        assert!(a.take_wakes().is_none(), "taken once");
        let agent = ObjectRef::<Agent>::new("w").within("default");
        assert_eq!(a.of("u1"), None);
        let one = a.open("u1", agent.clone());
        let two = a.open("u1", agent.clone());
        assert_eq!(a.of("u1").map(|u| u.open), Some(2));
        drop(one);
        assert_eq!(a.of("u1").map(|u| u.open), Some(1));
        assert_eq!(wakes.recv().await, Some(agent.clone()));
        drop(two);
        assert_eq!(a.of("u1").map(|u| (u.open, u.exited)), Some((0, false)));
        a.exited("u1", agent.clone());
        assert_eq!(a.of("u1").map(|u| u.exited), Some(true));
        let again = a.open("u1", agent.clone());
        assert_eq!(a.of("u1").map(|u| u.exited), Some(false), "in use again");
        drop(again);
        a.forget("u1");
        assert_eq!(a.of("u1"), None);
    }

    #[tokio::test]
    async fn a_wake_up_comes_at_its_time_and_the_same_one_asked_twice_comes_once() {
        let a = Activity::default();
        let mut wakes = a.take_wakes().expect("wakes");
        let agent = ObjectRef::<Agent>::new("w").within("default");
        let ms = std::time::Duration::from_millis;
        let start = Instant::now();
        a.wake_at("u1", agent.clone(), start + ms(5000));
        // An earlier deadline is scheduled even though a later one is pending; asking for it
        // again (every resync does) adds no second timer.
        a.wake_at("u1", agent.clone(), start + ms(200));
        a.wake_at("u1", agent.clone(), start + ms(200));
        assert_eq!(wakes.recv().await, Some(agent));
        assert!(start.elapsed() >= ms(200));
        let second = tokio::time::timeout(ms(500), wakes.recv()).await;
        assert!(second.is_err(), "woken twice: {second:?}");
    }
}
