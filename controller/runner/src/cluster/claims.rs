//! Who runs which Agent: a runner claims an Agent by writing `status.runner` conditional on the
//! Agent's resourceVersion, acts only on Agents it holds (checked against the API before each
//! reconcile), releases them when drained or stopped, and tears down any copy it no longer holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb_crds::agent::BackendKind;
use bb_crds::{Agent, AgentPool};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::RunnerInfo;
use super::holds::Holds;
use super::lease::{Heartbeat, LABEL, NAMESPACE};
use super::runners::{Observer, Runner};
use crate::reconcile::claim::runtime_id;
use bb_backend::{AgentId, Backend, SharedBackend};

/// Field manager of claims and releases (apart from the reconciler's status, so its
/// server-side apply never owns, and so never overwrites, `status.runner`).
pub const MANAGER: &str = "bb-runner";
/// How long an unclaimed Agent waits for the runner the plan prefers before any eligible runner
/// takes it (the preferred one may be slow, full by now, or partitioned).
const PREFERRED_GRACE: Duration = Duration::from_secs(3);
/// How often the claim loop looks.
const TICK: Duration = Duration::from_millis(500);
/// How often copies this runner no longer holds are looked for without an event.
const FENCE_SWEEP: Duration = Duration::from_secs(5);
/// The longest the claim loop waits on one API call: a partition may hang a request rather than
/// fail it, and the loop must come back to check the heartbeat.
const API_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a drain waits for a released Agent to run elsewhere before releasing the next.
const HANDOVER_WAIT: Duration = Duration::from_secs(60);

/// What the claim plan reads of one Agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub uid: String,
    pub holder: Option<String>,
    pub deleting: bool,
    pub selector: BTreeMap<String, String>,
    pub backend: BackendKind,
    /// The (namespace, Bottle) whose warm pool member it would take, for an Agent that never
    /// started (`reconcile::agent`'s claim takes members for those alone).
    pub pooled: Option<(String, String)>,
}

impl Facts {
    pub fn of(a: &Agent) -> Facts {
        let status = a.status.clone().unwrap_or_default();
        let fresh = status.bottle_copy.is_none()
            && status.started_at.is_none()
            && status.snapshot.is_none()
            && a.spec.source.is_none();
        Facts {
            uid: a.uid().unwrap_or_default(),
            holder: status.runner,
            deleting: a.metadata.deletion_timestamp.is_some(),
            selector: a.spec.runner_selector.clone().unwrap_or_default(),
            backend: a.spec.backend.unwrap_or_default(),
            pooled: fresh.then(|| {
                (
                    a.namespace().unwrap_or_else(|| "default".into()),
                    a.spec.bottle_ref.name.clone(),
                )
            }),
        }
    }
}

/// What the claim plan reads of one warm pool member: where it runs, and what it is a bottle of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub runner: String,
    /// (namespace, Bottle) of its pool.
    pub bottle: (String, String),
    pub ready: bool,
}

impl MemberFacts {
    /// The members of `pools` that run on a runner.
    pub fn of(pools: &[Arc<AgentPool>]) -> Vec<MemberFacts> {
        pools
            .iter()
            .flat_map(|p| {
                let bottle = (
                    p.namespace().unwrap_or_else(|| "default".into()),
                    p.spec.bottle_ref.name.clone(),
                );
                let members = p
                    .status
                    .as_ref()
                    .map(|s| s.members.clone())
                    .unwrap_or_default();
                members.into_iter().filter_map(move |m| {
                    Some(MemberFacts {
                        runner: m.runner?,
                        bottle: bottle.clone(),
                        ready: m.ready,
                    })
                })
            })
            .collect()
    }
}

/// Whether runner `r` may run an Agent with these facts (capacity aside).
pub fn eligible(r: &Runner, a: &Facts) -> bool {
    !r.draining
        && bb_crds::labels::matches(&a.selector, &r.labels)
        && (a.backend == BackendKind::Auto || a.backend.as_str() == r.backend)
        && r.backend != "none"
}

/// How much each live runner holds: its Agents and its warm pool members (each member is a
/// bottle running on its engine, so it takes a place of the runner's capacity).
pub fn load(live: &[Runner], agents: &[Facts], members: &[MemberFacts]) -> HashMap<String, u32> {
    let mut load: HashMap<String, u32> = live.iter().map(|r| (r.id.clone(), 0)).collect();
    let holders = agents.iter().filter_map(|a| a.holder.as_deref());
    for h in holders.chain(members.iter().map(|m| m.runner.as_str())) {
        if let Some(n) = load.get_mut(h) {
            *n += 1;
        }
    }
    load
}

/// Whether runner `r` has a place left.
pub fn room(r: &Runner, load: &HashMap<String, u32>) -> bool {
    r.capacity
        .is_none_or(|c| load.get(&r.id).copied().unwrap_or(0) < c)
}

/// The Agents `me` should claim now. Every runner computes the same plan from the same view:
/// each unclaimed Agent (or one whose holder is no longer live) goes to the eligible runner
/// with the fewest Agents and members (ties broken by a hash of Agent and runner, so they
/// spread), taken in uid order with the counts updated as it goes. An Agent that would take a
/// warm pool member goes first to a runner holding a ready one of its Bottle (the member
/// becomes the Agent: it takes no new place). A runner claims what the plan gives it at once,
/// and anything it is eligible for that has waited `PREFERRED_GRACE` unclaimed.
pub fn plan(
    me: &str,
    live: &[Runner],
    agents: &[Facts],
    members: &[MemberFacts],
    waited: impl Fn(&str) -> Duration,
) -> Vec<String> {
    let mut load = load(live, agents, members);
    // Ready members not yet promised to an Agent, by (runner, namespace, Bottle).
    let mut spare: HashMap<(&str, &(String, String)), u32> = HashMap::new();
    for m in members.iter().filter(|m| m.ready) {
        *spare.entry((m.runner.as_str(), &m.bottle)).or_default() += 1;
    }
    let mut open: Vec<&Facts> = agents
        .iter()
        .filter(|a| !a.deleting && a.holder.as_deref().is_none_or(|h| !load.contains_key(h)))
        .collect();
    open.sort_by(|a, b| a.uid.cmp(&b.uid));
    let mut mine = Vec::new();
    for a in open {
        let warm = |r: &Runner, spare: &HashMap<(&str, &(String, String)), u32>| {
            a.pooled
                .as_ref()
                .is_some_and(|b| spare.get(&(r.id.as_str(), b)).is_some_and(|n| *n > 0))
        };
        let by_load = |r: &&Runner| (load.get(&r.id).copied().unwrap_or(0), spread(&a.uid, &r.id));
        let best = live
            .iter()
            .filter(|r| eligible(r, a) && warm(r, &spare))
            .min_by_key(by_load)
            .map(|r| (r, true))
            .or_else(|| {
                live.iter()
                    .filter(|r| eligible(r, a) && room(r, &load))
                    .min_by_key(by_load)
                    .map(|r| (r, false))
            });
        let Some((best, warmed)) = best else { continue };
        let me_ok = live
            .iter()
            .any(|r| r.id == me && eligible(r, a) && (room(r, &load) || warm(r, &spare)));
        if best.id == me || (me_ok && waited(&a.uid) >= PREFERRED_GRACE) {
            mine.push(a.uid.clone());
        }
        match (warmed, &a.pooled) {
            (true, Some(b)) => {
                if let Some(n) = spare.get_mut(&(best.id.as_str(), b)) {
                    *n -= 1;
                }
            }
            _ => {
                if let Some(n) = load.get_mut(&best.id) {
                    *n += 1;
                }
            }
        }
    }
    mine
}

pub(super) fn spread(uid: &str, runner: &str) -> [u8; 8] {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{uid}/{runner}").as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&d.as_ref()[..8]);
    out
}

/// What the reconciler may do with one Agent.
pub enum Gate {
    /// This runner holds it: act on this fresh copy while holding the guard.
    Act(Arc<Agent>, tokio::sync::OwnedMutexGuard<()>),
    /// Not this runner's to act on.
    Skip(Action),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::Act(a, _) => write!(f, "Act({})", a.name_any()),
            Gate::Skip(action) => write!(f, "Skip({action:?})"),
        }
    }
}

/// One runner's side of the claims.
pub struct Claims {
    pub me: RunnerInfo,
    pub heartbeat: Heartbeat,
    client: kube::Client,
    /// The live runners as last listed; `None` until the first list.
    live: Mutex<Option<Vec<Runner>>>,
    /// One lock per Agent: the reconciler and a release never act on it at once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Agents (by uid) this process acted on and may still have a copy of. Copies left by an
    /// earlier run are the fence sweep's.
    acted: Mutex<std::collections::HashSet<String>>,
    /// The holds on the sidecars of the Agents this runner holds.
    holds: Holds,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

fn holder(a: &Agent) -> Option<&str> {
    a.status.as_ref().and_then(|s| s.runner.as_deref())
}

impl Claims {
    pub fn new(client: kube::Client, me: RunnerInfo, heartbeat: Heartbeat) -> Claims {
        Claims {
            me,
            heartbeat,
            client,
            live: Mutex::new(None),
            locks: Mutex::new(HashMap::new()),
            acted: Mutex::new(Default::default()),
            holds: Holds::default(),
        }
    }

    /// Renews the hold on `agent`'s sidecar to the heartbeat's deadline (none once it lapsed).
    fn renew_hold(&self, agent: &Agent, backend: &dyn Backend) {
        self.hold(backend, &runtime_id(backend, agent));
    }

    /// Renews the hold on the sidecar of `id` (an Agent's or a warm pool member's runtime
    /// identity) to the heartbeat's deadline; nothing once it lapsed. Before anything of `id`
    /// is created: a new sidecar starts held.
    pub fn hold(&self, backend: &dyn Backend, id: &AgentId) {
        if let Some(deadline) = self.heartbeat.hold_deadline() {
            self.holds.renew(backend, id, deadline);
        }
    }

    /// The live runners as last listed; `None` before the first list.
    pub fn live(&self) -> Option<Vec<Runner>> {
        self.live.lock().ok().and_then(|l| l.clone())
    }

    /// Evicts this runner's copy of `id` and ends the hold on its sidecar.
    async fn evict(
        &self,
        id: &AgentId,
        backend: &dyn Backend,
    ) -> Result<(), bb_backend::BackendError> {
        backend.evict(id).await?;
        self.holds.lapse(backend, id);
        Ok(())
    }

    async fn lock(&self, uid: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = match self.locks.lock() {
            Ok(mut l) => l.entry(uid.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        m.lock_owned().await
    }

    fn mark_acted(&self, uid: &str, acted: bool) {
        if let Ok(mut a) = self.acted.lock() {
            if acted {
                a.insert(uid.to_string());
            } else {
                a.remove(uid);
            }
        }
    }

    fn may_have_copy(&self, uid: &str) -> bool {
        self.acted.lock().map_or(true, |a| a.contains(uid))
    }

    /// Whether runner `id` is live as last seen; before the first list, every runner is.
    fn is_live(&self, id: &str) -> bool {
        match self.live() {
            Some(live) => live.iter().any(|r| r.id == id),
            None => true,
        }
    }

    fn api(&self, a: &Agent) -> Api<Agent> {
        Api::namespaced(self.client.clone(), &a.namespace().unwrap_or_default())
    }

    /// Checks this runner's claim on `agent` against the API before the reconciler acts. A copy
    /// of an Agent held elsewhere is torn down here.
    pub async fn gate(
        &self,
        agent: &Agent,
        backend: &dyn Backend,
    ) -> Result<Gate, crate::reconcile::error::Error> {
        if !self.heartbeat.held() {
            // Cut off (or not yet renewed): act on nothing; the claim loop fences.
            return Ok(Gate::Skip(Action::requeue(Duration::from_secs(2))));
        }
        let uid = agent.uid().unwrap_or_default();
        // Every runner sees every Agent's events (each status write of another runner's): one
        // that names someone else, is not being deleted and was never acted on here needs no
        // API call to be skipped. A claim by this runner arrives as an event of its own.
        if holder(agent) != Some(self.me.id.as_str())
            && agent.metadata.deletion_timestamp.is_none()
            && !self.may_have_copy(&uid)
        {
            return Ok(Gate::Skip(Action::await_change()));
        }
        let guard = self.lock(&uid).await;
        let Some(fresh) = self.api(agent).get_opt(&agent.name_any()).await? else {
            return Ok(Gate::Skip(Action::await_change()));
        };
        if fresh.uid().as_deref() != Some(uid.as_str()) {
            return Ok(Gate::Skip(Action::await_change()));
        }
        let mine = holder(&fresh) == Some(self.me.id.as_str());
        let deleting = fresh.metadata.deletion_timestamp.is_some();
        // A deleted Agent whose holder is gone is cleaned up by whoever sees it.
        let orphaned = holder(&fresh).is_none_or(|h| !self.is_live(h));
        if (deleting && (mine || orphaned)) || (mine && !self.heartbeat.draining()) {
            self.mark_acted(&uid, true);
            // Before anything is created: a new sidecar starts held.
            self.renew_hold(&fresh, backend);
            return Ok(Gate::Act(Arc::new(fresh), guard));
        }
        if !mine {
            self.drop_copy(&fresh, backend).await;
        }
        Ok(Gate::Skip(Action::await_change()))
    }

    /// Tears down this runner's copy of an Agent it does not hold, if there is one.
    async fn drop_copy(&self, agent: &Agent, backend: &dyn Backend) {
        let id = runtime_id(backend, agent);
        let uid = agent.uid().unwrap_or_default();
        let here = match backend.list_managed().await {
            Ok(ids) => ids.contains(&id),
            Err(e) => {
                tracing::warn!(agent = %id, error = %e, "listing this runner's Agents failed");
                return;
            }
        };
        if !here {
            self.mark_acted(&uid, false);
            return;
        }
        match self.evict(&id, backend).await {
            Ok(()) => {
                self.mark_acted(&uid, false);
                tracing::info!(agent = %id, holder = ?holder(agent), "not held by this runner: removed its copy here")
            }
            Err(e) => {
                tracing::warn!(agent = %id, error = %e, "removing a copy this runner no longer holds failed")
            }
        }
    }

    /// Claims `a` for this runner unless it changed since it was read. `Ok(false)`: someone
    /// else was faster.
    async fn claim(&self, a: &Agent) -> Result<bool, kube::Error> {
        let patch = json!({
            "metadata": {"resourceVersion": a.resource_version()},
            "status": {"runner": self.me.id},
        });
        match self
            .api(a)
            .patch_status(&a.name_any(), &patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives `agent` up: snapshots a running copy, tears it down and clears `status.runner`
    /// (with the snapshot recorded), so another runner starts it from where it was.
    pub async fn release(&self, agent: &Agent, backend: &dyn Backend, why: &str) {
        let uid = agent.uid().unwrap_or_default();
        let _guard = self.lock(&uid).await;
        for _ in 0..3 {
            let fresh = match self.api(agent).get_opt(&agent.name_any()).await {
                Ok(Some(a)) if a.uid().as_deref() == Some(uid.as_str()) => a,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(agent = %agent.name_any(), error = %e, "reading an Agent to release failed");
                    return;
                }
            };
            if holder(&fresh) != Some(self.me.id.as_str()) {
                return;
            }
            let id = runtime_id(backend, &fresh);
            let mut snapshot = None;
            let running =
                fresh.status.as_ref().and_then(|s| s.phase) == Some(bb_crds::AgentPhase::Running);
            if running && matches!(backend.observe(&id).await, Ok(o) if o.agent_container.is_some())
            {
                match backend.snapshot(&id).await {
                    Ok(s) => snapshot = Some(s),
                    Err(e) => {
                        tracing::warn!(agent = %id, error = %e, "snapshot before release failed; the next runner starts it afresh")
                    }
                }
            }
            if let Err(e) = self.evict(&id, backend).await {
                tracing::warn!(agent = %id, error = %e, "tearing down an Agent to release failed; keeping it");
                return;
            }
            self.mark_acted(&uid, false);
            // The next runner starts it as itself: a pool member it ran in stays here.
            let mut status = json!({
                "runner": null,
                "bottleCopy": null,
                "sessionEndpoint": null,
                "phase": "Pending",
                "message": format!("released by runner {}: {why}", self.me.id),
            });
            if let Some(s) = &snapshot {
                status["snapshot"] = json!(s);
            }
            let patch = json!({"metadata": {"resourceVersion": fresh.resource_version()}, "status": status});
            match self
                .api(&fresh)
                .patch_status(&fresh.name_any(), &patch_params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(agent = %id, snapshot = ?snapshot, "released");
                    self.event(
                        &fresh,
                        "Released",
                        format!("runner {} released it ({why})", self.me.id),
                    )
                    .await;
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    tracing::warn!(agent = %id, error = %e, "clearing the claim failed");
                    return;
                }
            }
        }
    }

    async fn event(&self, a: &Agent, reason: &str, note: String) {
        use kube::runtime::events::{Event, EventType, Recorder, Reporter};
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: crate::reconcile::error::MANAGER.into(),
                instance: Some(self.me.id.clone()),
            },
        );
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &a.object_ref(&())).await {
            tracing::debug!(error = %e, "publishing a claim event failed");
        }
    }

    /// Releases every Agent this runner holds (a stopping runner), one after another.
    pub async fn release_all(&self, backend: &dyn Backend, why: &str) {
        let api: Api<Agent> = Api::all(self.client.clone());
        let held = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing Agents to release failed; their Leases lapse instead");
                return;
            }
        };
        for a in held
            .iter()
            .filter(|a| holder(a) == Some(self.me.id.as_str()))
        {
            self.release(a, backend, why).await;
        }
        self.withdraw_members(backend, why).await;
    }

    /// Takes this runner's warm pool members out of their pools and removes them (a runner
    /// stopping or draining): the others start members in their places.
    async fn withdraw_members(&self, backend: &dyn Backend, why: &str) {
        match crate::reconcile::members::withdraw(&self.client, backend, &self.me.id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, why, "withdrew this runner's pool members"),
            Err(e) => {
                tracing::warn!(error = %e, "withdrawing this runner's pool members failed; their runner's Lease lapsing drops them")
            }
        }
    }

    /// Tears down every copy here: the Lease could not be renewed within `FENCE`, so another
    /// runner may soon hold any of them. It takes no Agent lock: a reconcile may be stuck on the
    /// cut-off API while holding one, and the fence must not wait for it (the reconciler checks
    /// the heartbeat again before it creates anything).
    async fn fence_all(&self, backend: &dyn Backend) {
        let ids = match backend.list_managed().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "listing this runner's Agents to fence failed");
                return;
            }
        };
        for id in ids {
            match self.evict(&id, backend).await {
                Ok(()) => {
                    self.mark_acted(&id.uid, false);
                    tracing::warn!(agent = %id, "the runner Lease lapsed: stopped an Agent it may no longer hold")
                }
                Err(e) => tracing::warn!(agent = %id, error = %e, "fencing an Agent failed"),
            }
        }
    }

    /// Tears down copies of Agents this runner does not hold (per a fresh read), such as those
    /// left by a run that lost them, and warm pool members no pool gives this runner any more.
    /// Whether it found and removed every such copy (`false`: one may remain).
    ///
    /// A copy it can place nowhere (no Agent, no pool member here) is a stray: it is removed
    /// only when a later sweep still finds it so, because a member is on the runtime a moment
    /// before the cache shows its pool's status, and a claimed one a moment before its Agent's
    /// status names it.
    async fn fence_sweep(
        &self,
        backend: &dyn Backend,
        agents: &Store<Agent>,
        pools: &Store<AgentPool>,
        strays: &mut HashMap<String, Instant>,
    ) -> bool {
        let Ok(ids) = backend.list_managed().await else {
            return false;
        };
        strays.retain(|uid, _| ids.iter().any(|id| &id.uid == uid));
        // Each cached Agent by the identity its copy carries, worked out once per sweep (a
        // claimed member's takes a read of the runner's record).
        let cached = agents.state();
        let by_copy: HashMap<AgentId, &Arc<Agent>> =
            cached.iter().map(|a| (runtime_id(backend, a), a)).collect();
        let members_here = self.members_here(pools);
        let mut clean = true;
        for id in ids {
            let owner = by_copy.get(&id).copied();
            if owner.is_some_and(|a| holder(a) == Some(self.me.id.as_str()))
                || (owner.is_none() && members_here.contains(&id.uid))
            {
                strays.remove(&id.uid);
                continue;
            }
            let _guard = self.lock(&id.uid).await;
            // The Agent of a member it was given, else one of the copy's own name.
            let (name, uid) = match owner {
                Some(a) => (a.name_any(), a.uid().unwrap_or_default()),
                None => (id.name.clone(), id.uid.clone()),
            };
            let api: Api<Agent> = Api::namespaced(self.client.clone(), &id.namespace);
            let fresh = match api.get_opt(&name).await {
                Ok(a) => a.filter(|a| a.uid().as_deref() == Some(uid.as_str())),
                Err(_) => {
                    clean = false;
                    continue;
                }
            };
            if fresh.as_ref().and_then(holder) == Some(self.me.id.as_str()) {
                continue;
            }
            if fresh.is_none() && owner.is_none() {
                let first = *strays.entry(id.uid.clone()).or_insert_with(Instant::now);
                if first.elapsed() < FENCE_SWEEP / 2 {
                    // Not removed yet: a runner back from a crash claims nothing until it is.
                    clean = false;
                    continue;
                }
            }
            // An Agent that is gone takes its snapshots with it; one held elsewhere keeps them.
            let removed = match &fresh {
                Some(_) => backend.evict(&id).await,
                None => backend.teardown(&id).await,
            };
            if removed.is_ok() {
                self.holds.lapse(backend, &id);
                strays.remove(&id.uid);
            }
            match removed {
                Ok(()) => {
                    self.mark_acted(&uid, false);
                    tracing::info!(agent = %id, "not held by this runner: removed its copy here")
                }
                Err(e) => {
                    clean = false;
                    tracing::warn!(agent = %id, error = %e, "removing a copy this runner no longer holds failed")
                }
            }
        }
        clean
    }

    /// The uids of the warm pool members `pools` place on this runner.
    fn members_here(&self, pools: &Store<AgentPool>) -> std::collections::HashSet<String> {
        pools
            .state()
            .iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.members.iter()))
            .filter(|m| m.runner.as_deref() == Some(self.me.id.as_str()))
            .map(|m| m.uid.clone())
            .collect()
    }

    /// The claim loop: until `shutdown`, claims what the plan gives this runner, fences when
    /// the Lease lapses, sweeps stale copies, and, when drained, releases its Agents one at a
    /// time, each once the previous one runs elsewhere.
    pub async fn run(
        self: Arc<Self>,
        agents: Store<Agent>,
        pools: Store<AgentPool>,
        backend: SharedBackend,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NAMESPACE);
        let mut observer = Observer::default();
        let mut strays = HashMap::new();
        let mut unclaimed: HashMap<String, Instant> = HashMap::new();
        let mut was_held = false;
        let mut last_sweep: Option<Instant> = None;
        // A runner back from a crash removes the copies it no longer holds before it claims
        // anything (they are fenced already: their holds lapsed with its heartbeat).
        let mut swept = false;
        let mut handing_over: Option<(Arc<Agent>, Instant)> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => return,
            }
            if !self.heartbeat.held() {
                if was_held {
                    self.fence_all(&*backend).await;
                    was_held = false;
                }
                continue;
            }
            was_held = true;
            let listed = match tokio::time::timeout(
                API_TIMEOUT,
                leases.list(&ListParams::default().labels(LABEL)),
            )
            .await
            {
                Ok(Ok(l)) => l.items,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "listing runner Leases failed");
                    continue;
                }
                Err(_) => {
                    tracing::debug!("listing runner Leases timed out");
                    continue;
                }
            };
            let live = observer.live(&listed, Instant::now());
            if let Ok(mut l) = self.live.lock() {
                *l = Some(live.clone());
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= FENCE_SWEEP) {
                let sweep = self.fence_sweep(&*backend, &agents, &pools, &mut strays);
                let clean = tokio::time::timeout(API_TIMEOUT * 4, sweep)
                    .await
                    .unwrap_or(false);
                swept |= clean;
                last_sweep = Some(Instant::now());
            }
            let state = agents.state();
            for a in state.iter().filter(|a| {
                holder(a) == Some(self.me.id.as_str()) && a.metadata.deletion_timestamp.is_none()
            }) {
                self.renew_hold(a, &*backend);
            }
            for p in pools.state() {
                for m in p.status.iter().flat_map(|s| s.members.iter()) {
                    if m.runner.as_deref() == Some(self.me.id.as_str()) {
                        self.hold(&*backend, &crate::reconcile::members::member_id(&p, m));
                    }
                }
            }
            if self.heartbeat.draining() {
                if !self.members_here(&pools).is_empty() {
                    let withdraw = self.withdraw_members(&*backend, "draining");
                    let _ = tokio::time::timeout(API_TIMEOUT * 4, withdraw).await;
                }
                if let Some((a, since)) = &handing_over {
                    let now = state.iter().find(|x| x.uid() == a.uid());
                    let elsewhere = now.is_none_or(|x| {
                        holder(x).is_some_and(|h| h != self.me.id)
                            && x.status.as_ref().and_then(|s| s.phase)
                                == Some(bb_crds::AgentPhase::Running)
                    });
                    if !elsewhere && since.elapsed() < HANDOVER_WAIT {
                        continue;
                    }
                }
                handing_over = None;
                let next = state
                    .iter()
                    .filter(|a| {
                        holder(a) == Some(self.me.id.as_str())
                            && a.metadata.deletion_timestamp.is_none()
                    })
                    .min_by_key(|a| a.uid());
                if let Some(a) = next {
                    // A release snapshots, so it gets longer than one API call.
                    let _ = tokio::time::timeout(
                        API_TIMEOUT * 20,
                        self.release(a, &*backend, "draining"),
                    )
                    .await;
                    handing_over = Some((a.clone(), Instant::now()));
                }
                continue;
            }
            if !swept {
                continue;
            }
            let facts: Vec<Facts> = state.iter().map(|a| Facts::of(a)).collect();
            let now = Instant::now();
            unclaimed.retain(|uid, _| facts.iter().any(|f| &f.uid == uid && f.holder.is_none()));
            for f in facts.iter().filter(|f| f.holder.is_none()) {
                unclaimed.entry(f.uid.clone()).or_insert(now);
            }
            let members = MemberFacts::of(&pools.state());
            let wanted = plan(&self.me.id, &live, &facts, &members, |uid| {
                unclaimed.get(uid).map_or(Duration::ZERO, |t| t.elapsed())
            });
            for uid in wanted {
                if !self.heartbeat.held() {
                    break;
                }
                let Some(a) = state
                    .iter()
                    .find(|a| a.uid().as_deref() == Some(uid.as_str()))
                else {
                    continue;
                };
                let claimed = tokio::time::timeout(API_TIMEOUT, self.claim(a))
                    .await
                    .unwrap_or(Ok(false));
                match claimed {
                    Ok(true) => {
                        tracing::info!(agent = %format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()), "claimed")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(agent = %a.name_any(), error = %e, "claiming failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cluster::runners::test_runner as runner;

    fn agent(uid: &str, holder: Option<&str>) -> Facts {
        Facts {
            uid: uid.into(),
            holder: holder.map(Into::into),
            deleting: false,
            selector: BTreeMap::new(),
            backend: BackendKind::Auto,
            pooled: None,
        }
    }

    fn never(_: &str) -> Duration {
        Duration::ZERO
    }

    #[test]
    fn every_runner_plans_the_same_spread() {
        let live = [runner("a", None), runner("b", None), runner("c", None)];
        let agents: Vec<Facts> = (0..30)
            .map(|i| agent(&format!("uid-{i:02}"), None))
            .collect();
        let mut all: Vec<String> = Vec::new();
        for r in &live {
            let mine = plan(&r.id, &live, &agents, &[], never);
            assert_eq!(mine.len(), 10, "{} would claim {}", r.id, mine.len());
            all.extend(mine);
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 30, "an Agent planned twice or not at all");
    }

    #[test]
    fn held_agents_stay_and_a_dead_holders_are_taken() {
        let live = [runner("a", None), runner("b", None)];
        let agents = [
            agent("1", Some("a")),
            agent("2", Some("b")),
            agent("3", Some("gone")),
        ];
        let a = plan("a", &live, &agents, &[], never);
        let b = plan("b", &live, &agents, &[], never);
        assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
        assert_eq!([a, b].concat(), vec!["3".to_string()]);
    }

    #[test]
    fn selectors_capacity_backend_and_drain_are_honoured() {
        let mut live = vec![runner("a", Some(1)), runner("b", None)];
        let mut only_b = agent("1", None);
        only_b.selector = [("zone".to_string(), "b".to_string())].into();
        assert!(
            plan("a", &live, &[only_b.clone()], &[], |_| Duration::from_secs(
                99
            ))
            .is_empty()
        );
        assert_eq!(
            plan("b", &live, &[only_b], &[], never),
            vec!["1".to_string()]
        );

        // a is full with one Agent: the rest go to b however long they waited.
        let agents = [agent("1", Some("a")), agent("2", None), agent("3", None)];
        assert!(plan("a", &live, &agents, &[], |_| Duration::from_secs(99)).is_empty());
        assert_eq!(plan("b", &live, &agents, &[], never).len(), 2);

        let mut docker_only = agent("4", None);
        docker_only.backend = BackendKind::Docker;
        assert!(plan("b", &live, &[docker_only], &[], |_| Duration::from_secs(99)).is_empty());

        live[1].draining = true;
        assert!(
            plan("b", &live, &[agent("5", None)], &[], |_| {
                Duration::from_secs(99)
            })
            .is_empty()
        );
    }

    #[test]
    fn a_slow_preferred_runner_is_overtaken_after_the_grace() {
        let live = [runner("a", None), runner("b", None)];
        let agents = [agent("x", None)];
        let (winner, loser) = if plan("a", &live, &agents, &[], never).is_empty() {
            ("b", "a")
        } else {
            ("a", "b")
        };
        assert_eq!(plan(winner, &live, &agents, &[], never).len(), 1);
        assert!(plan(loser, &live, &agents, &[], never).is_empty());
        assert_eq!(
            plan(loser, &live, &agents, &[], |_| PREFERRED_GRACE).len(),
            1
        );
    }

    fn warm(runner: &str, bottle: &str, ready: bool) -> MemberFacts {
        MemberFacts {
            runner: runner.into(),
            bottle: ("default".into(), bottle.into()),
            ready,
        }
    }

    fn pooled(uid: &str, bottle: &str) -> Facts {
        Facts {
            pooled: Some(("default".into(), bottle.into())),
            ..agent(uid, None)
        }
    }

    /// Members take places: a runner full of members gets no Agent, and members spread the
    /// Agents as Agents do.
    #[test]
    fn pool_members_count_against_capacity() {
        let live = [runner("a", Some(2)), runner("b", Some(2))];
        let members = [warm("a", "other", true), warm("a", "other", false)];
        let agents = [agent("1", None)];
        assert!(plan("a", &live, &agents, &members, |_| Duration::from_secs(99)).is_empty());
        assert_eq!(
            plan("b", &live, &agents, &members, never),
            vec!["1".to_string()]
        );
        let loads = load(&live, &agents, &members);
        assert_eq!(loads.get("a"), Some(&2));
        assert_eq!(loads.get("b"), Some(&0));
    }

    /// A new Agent of a pooled Bottle goes where a ready member of it runs, even to a full or
    /// busier runner (the member becomes it); one member serves one Agent, the next goes by
    /// load; unready members and other Bottles' members attract nothing.
    #[test]
    fn a_new_agent_goes_where_a_ready_member_of_its_bottle_runs() {
        let live = [runner("a", Some(3)), runner("b", None)];
        let members = [
            warm("a", "claude", true),
            warm("a", "claude", false),
            warm("a", "codex", true),
        ];
        let busy_a = [agent("x", Some("a"))];
        let mut agents = busy_a.to_vec();
        agents.push(pooled("1", "claude"));
        assert_eq!(
            plan("a", &live, &agents, &members, never),
            vec!["1".to_string()]
        );
        assert!(plan("b", &live, &agents, &members, never).is_empty());

        // Two Agents, one ready member: the first (by uid) gets it, the second goes by load.
        agents.push(pooled("2", "claude"));
        assert_eq!(
            plan("a", &live, &agents, &members, never),
            vec!["1".to_string()]
        );
        assert_eq!(
            plan("b", &live, &agents, &members, never),
            vec!["2".to_string()]
        );

        // An Agent that already ran (no pooled Bottle) is placed by load alone.
        let ran = [busy_a[0].clone(), agent("3", None)];
        assert_eq!(
            plan("b", &live, &ran, &members, never),
            vec!["3".to_string()]
        );
        // An Agent of a Bottle with no ready member anywhere is placed by load alone.
        let other = [busy_a[0].clone(), pooled("4", "pi")];
        assert_eq!(
            plan("b", &live, &other, &members, never),
            vec!["4".to_string()]
        );
    }

    #[test]
    fn deleted_agents_are_never_claimed() {
        let live = [runner("a", None)];
        let mut gone = agent("1", None);
        gone.deleting = true;
        assert!(plan("a", &live, &[gone], &[], |_| Duration::from_secs(99)).is_empty());
    }
}
