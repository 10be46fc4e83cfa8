//! What a session of each Agent this runner runs needs, as the Agent's last reconcile planned
//! and resolved it: a session never plans again, lists Bottles or reads a Secret itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bb_backend::SecretBytes;

/// One Agent's sessions' inputs.
#[derive(Debug)]
pub struct SessionPlan {
    /// What `attach` runs (the provider's harness, else a shell).
    pub attach: Vec<String>,
    /// The Agent's secret environment, given to every session and never to its container.
    pub secret_env: Vec<(String, SecretBytes)>,
    /// Whether the Agent has a workspace (`attach` starts in it).
    pub workspace: bool,
}

/// The runner's session plans by Agent uid, shared by its reconciler (which writes them) and
/// its session endpoint (which reads them), with what the sessions report back (`activity`).
#[derive(Debug, Clone, Default)]
pub struct SessionPlans {
    plans: Arc<Mutex<HashMap<String, Arc<SessionPlan>>>>,
    /// The sessions' use of each Agent, which `spec.lifecycle` judges idleness and exits by.
    pub activity: crate::activity::Activity,
}

impl SessionPlans {
    pub fn set(&self, uid: &str, plan: SessionPlan) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(uid.to_string(), Arc::new(plan));
        }
    }

    pub fn remove(&self, uid: &str) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.remove(uid);
        }
        self.activity.forget(uid);
    }

    pub fn get(&self, uid: &str) -> Option<Arc<SessionPlan>> {
        self.plans.lock().ok()?.get(uid).cloned()
    }
}
