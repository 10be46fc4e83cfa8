//! The policy in force: one snapshot every request is judged under from start to end, swapped
//! whole on reload, and read by the upstream resolver for which hosts may go private.

use std::sync::{Arc, RwLock};

use crate::policy::Policy;

#[derive(Debug, Clone)]
pub struct LivePolicy {
    cell: Arc<RwLock<Arc<Policy>>>,
    /// `--allow-private-upstreams`: a test-rig switch, off in production.
    allow_private: bool,
}

impl LivePolicy {
    pub fn new(policy: Policy, allow_private: bool) -> LivePolicy {
        LivePolicy {
            cell: Arc::new(RwLock::new(Arc::new(
                policy.with_private_everywhere(allow_private),
            ))),
            allow_private,
        }
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Policy> {
        match self.cell.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new policy; requests already admitted finish under the one they started with.
    pub fn replace(&self, p: Policy) {
        if let Ok(mut g) = self.cell.write() {
            *g = Arc::new(p.with_private_everywhere(self.allow_private));
        }
    }
}
