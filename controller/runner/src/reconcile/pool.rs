//! The AgentPool reconciler: keeps `spec.size` members of the pool's Bottle started and
//! provisioned with none of an Agent's own inputs, and replaces the members of an older plan.
//!
//! The pool's status is the one record of its members. Every change to it is a replace
//! conditional on the pool's resourceVersion (`update_status`), as every claim is
//! (`super::claim`): a member leaves the pool exactly once, either to an Agent or to be removed,
//! and the reconciler touches the resources of only what its own write took out.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb_backend::provision::POOL_MEMBER;
use bb_backend::{AgentId, AgentPlan, Backend, BackendError, SharedBackend, SidecarPlan};
use bb_crds::pool::{AgentPoolStatus, PoolMember};
use bb_crds::{Agent, AgentPool, AgentSpec, Bottle};
use futures_util::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::conditions;
use super::error::Error;
use super::members::{member_id, pools_api, take, update_status};
use crate::cluster::claims::{self, Claims, Facts, MemberFacts};
use crate::cluster::pools::{fill_share, gone};
use crate::cluster::runners::Runner;
use crate::{plan, provider, resolve};

pub const FINALIZER: &str = "bot-bottle.dev/pool-members";

/// Members started at once unless `spec.maxStarting` says otherwise.
const DEFAULT_STARTING: usize = 2;

pub struct PoolCtx {
    pub client: kube::Client,
    pub backend: SharedBackend,
    pub bottles: Store<Bottle>,
    pub recorder: Recorder,
    /// How often a full pool is checked again without an API event (a member removed out of
    /// band is started again).
    pub resync: Duration,
    /// In cluster mode, this runner's view of the others: it starts, checks and removes only
    /// the members placed on it.
    pub cluster: Option<PoolCluster>,
    /// Failed rounds in a row, by pool: the next round waits longer.
    failures: Mutex<HashMap<String, u32>>,
}

/// What a cluster runner's pool reconciler reads besides the pool: its claims (identity, live
/// runners, heartbeat, holds) and the caches the runners' load is counted from.
pub struct PoolCluster {
    pub claims: Arc<Claims>,
    pub agents: Store<Agent>,
    pub pools: Store<AgentPool>,
}

impl std::fmt::Debug for PoolCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCluster")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Where this round places members: on this runner alone (`me`) among `live` ones.
struct Placement {
    me: String,
    live: Vec<Runner>,
    load: HashMap<String, u32>,
    /// Draining: this runner's members leave and it starts none.
    draining: bool,
}

impl Placement {
    /// This round's placement, or how long to wait for one: a runner cut off from the API (or
    /// that has not listed the runners yet) touches nothing.
    fn of(c: &PoolCluster) -> Result<Placement, Duration> {
        if !c.claims.heartbeat.held() {
            return Err(Duration::from_secs(2));
        }
        let live = c.claims.live().ok_or(Duration::from_secs(1))?;
        let agents: Vec<Facts> = c.agents.state().iter().map(|a| Facts::of(a)).collect();
        let load = claims::load(&live, &agents, &MemberFacts::of(&c.pools.state()));
        Ok(Placement {
            me: c.claims.me.id.clone(),
            live,
            load,
            draining: c.claims.heartbeat.draining(),
        })
    }
}

impl PoolCtx {
    pub fn new(
        client: kube::Client,
        backend: SharedBackend,
        bottles: Store<Bottle>,
        recorder: Recorder,
        resync: Duration,
        cluster: Option<PoolCluster>,
    ) -> Self {
        PoolCtx {
            client,
            backend,
            bottles,
            recorder,
            resync,
            cluster,
            failures: Mutex::default(),
        }
    }

    /// The wait before the next round: the resync when this one went well, else a backoff
    /// doubling from 2 s to 5 min.
    fn next_round(&self, key: &str, failed: bool) -> Duration {
        let Ok(mut f) = self.failures.lock() else {
            return self.resync;
        };
        if !failed {
            f.remove(key);
            return self.resync;
        }
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(2u64.saturating_mul(1 << (*n - 1).min(8)).min(300))
    }
}

impl std::fmt::Debug for PoolCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCtx").finish_non_exhaustive()
    }
}

pub async fn reconcile(pool: Arc<AgentPool>, ctx: Arc<PoolCtx>) -> Result<Action, Error> {
    let api = pools_api(&ctx.client, &pool);
    let started = std::time::Instant::now();
    let result = finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            Finalizer::Apply(p) => apply(p, &ctx).await,
            Finalizer::Cleanup(p) => cleanup(p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    super::metrics::global().observe("agentpool", started.elapsed(), result.is_err());
    result
}

/// The stand-in Agent a member is planned for: the pool's Bottle and nothing of its own.
fn member_agent(pool: &AgentPool, m: &PoolMember) -> Agent {
    let mut a = Agent::new(
        &m.name,
        AgentSpec {
            bottle_ref: pool.spec.bottle_ref.clone(),
            ..Default::default()
        },
    );
    a.metadata.namespace = pool.namespace();
    a.metadata.uid = Some(m.uid.clone());
    a
}

/// What members start from now: the plan of an Agent of the Bottle with no inputs of its own
/// (`plan::pool_plan_hash` names it), or why there is none.
fn member_plan(
    ctx: &PoolCtx,
    pool: &AgentPool,
    m: &PoolMember,
) -> Result<(plan::Plan, Box<dyn provider::Provider>), (String, String)> {
    let bottle = super::agent::resolve_bottle(&ctx.bottles, &pool.spec.bottle_ref.name)?;
    let provider =
        provider::of_bottle(&bottle).map_err(|e| ("ProviderInvalid".to_string(), e.to_string()))?;
    let supervise = bottle.spec.supervise().then(|| ctx.backend.supervise_url());
    let planned = plan::plan(
        &member_agent(pool, m),
        &bottle,
        provider.as_ref(),
        supervise.as_deref(),
    )
    .map_err(|e| ("PlanFailed".to_string(), e.to_string()))?;
    Ok((planned, provider))
}

/// A new member's name (`<pool>-<5 characters>`, as Kubernetes' generateName makes them) and
/// identity (a random UUID).
fn new_member(pool: &str, plan_hash: &str, runner: Option<String>) -> PoolMember {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 21];
    // The system's randomness failing leaves zeros; the status write still keeps names unique
    // within the pool, and the uid apart from every other by its time part.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let mut u = [0u8; 16];
    u.copy_from_slice(&bytes[5..]);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    u[..4]
        .iter_mut()
        .zip(nanos.to_le_bytes())
        .for_each(|(b, n)| *b ^= n);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    PoolMember {
        name: format!("{pool}-{suffix}"),
        uid: format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ),
        plan_hash: plan_hash.to_string(),
        runner,
        ..Default::default()
    }
}

type Events = Vec<(EventType, &'static str, String)>;

async fn apply(pool: Arc<AgentPool>, ctx: &PoolCtx) -> Result<Action, Error> {
    let api = pools_api(&ctx.client, &pool);
    let name = pool.name_any();
    let key = format!("{}/{name}", pool.namespace().unwrap_or_default());
    let placement = match ctx.cluster.as_ref().map(Placement::of).transpose() {
        Ok(p) => p,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let probe = new_member(&name, "", None);
    let plan_hash = match member_plan(ctx, &pool, &probe) {
        Ok((planned, _)) => plan::pool_plan_hash(&planned),
        Err((reason, message)) => {
            let generation = pool.metadata.generation;
            update_status(&api, &name, |s| {
                s.observed_generation = generation;
                conditions::set(
                    &mut s.conditions,
                    "Ready",
                    false,
                    &reason,
                    &message,
                    generation,
                );
                s.message = Some(message.clone());
            })
            .await?;
            // A Bottle's change reconciles the pools naming it: nothing to poll for.
            return Ok(Action::await_change());
        }
    };
    let size = usize::try_from(pool.spec.size.clamp(0, bb_crds::pool::MAX_SIZE)).unwrap_or(0);
    let me = placement.as_ref().map(|p| p.me.clone());
    let mine = |m: &PoolMember| m.runner == me;
    let mut events = leave_and_remove(ctx, &pool, placement.as_ref(), &plan_hash, size).await?;
    events.extend(mark_broken(ctx, &pool, &mine).await?);

    // Fill up to the size: members are recorded before anything of theirs exists, so a
    // crash leaves nothing the status does not name. In cluster mode this runner adds only
    // its share. Then each unready member of its own is started: those just recorded and
    // those marked above.
    let starting: Vec<PoolMember> = update_status(&api, &name, |s| {
        let missing = size.saturating_sub(s.members.len());
        let share = match &placement {
            None => missing,
            Some(p) if p.draining => 0,
            Some(p) => {
                let uid = pool.uid().unwrap_or_default();
                fill_share(&p.me, &uid, &p.live, &p.load, &s.members, missing)
            }
        };
        for _ in 0..share {
            s.members.push(new_member(&name, &plan_hash, me.clone()));
        }
        s.members
            .iter()
            .filter(|m| mine(m) && !m.ready)
            .cloned()
            .collect()
    })
    .await?;
    let (started, failed) = start_all(ctx, &pool, starting, &mut events).await;

    let generation = pool.metadata.generation;
    update_status(&api, &name, |s| {
        for m in s.members.iter_mut().filter(|m| mine(m)) {
            if started.contains(&m.uid) {
                m.ready = true;
                m.error = None;
            } else if let Some(e) = failed.get(&m.uid) {
                m.error = Some(e.clone());
            }
        }
        report(s, size, generation);
    })
    .await?;
    publish(ctx, &pool, events).await;
    Ok(Action::requeue(ctx.next_round(&key, !failed.is_empty())))
}

/// The `Ready` condition and message, from the members alone (so runners sharing a pool all
/// write the same).
fn report(s: &mut AgentPoolStatus, size: usize, generation: Option<i64>) {
    let ready = s.members.iter().filter(|m| m.ready).count();
    let failing = s.members.iter().filter(|m| m.error.is_some()).count();
    let full = ready >= size;
    let message = (failing > 0)
        .then(|| format!("{failing} member(s) failed to start; see the pool's events"));
    let (reason, text) = match (full, &message) {
        (true, _) => ("Full", format!("{ready} of {size} members ready")),
        (false, Some(m)) => ("MembersFailed", m.clone()),
        (false, None) => ("Filling", format!("{ready} of {size} members ready")),
    };
    conditions::set(&mut s.conditions, "Ready", full, reason, &text, generation);
    s.observed_generation = generation;
    s.message = message;
}

/// Members of an older plan, and those beyond the size (unready first), leave the pool, and
/// this runner removes what it took out; in cluster mode only its own members, and the
/// members of runners that are gone leave with nothing to remove here.
async fn leave_and_remove(
    ctx: &PoolCtx,
    pool: &AgentPool,
    placement: Option<&Placement>,
    plan_hash: &str,
    size: usize,
) -> Result<Events, Error> {
    let api = pools_api(&ctx.client, pool);
    let me = placement.map(|p| p.me.clone());
    let keep_mine = !placement.is_some_and(|p| p.draining);
    let (removed, dropped) = update_status(&api, &pool.name_any(), |s| {
        let dropped = match placement {
            Some(p) => take(s, |m| gone(&p.live, m)),
            None => Vec::new(),
        };
        let removed = leave(s, plan_hash, size, keep_mine, |m| m.runner == me);
        (removed, dropped)
    })
    .await?;
    let mut events = Vec::new();
    for m in &removed {
        events.extend(remove_member(ctx, pool, m).await?);
        let why = match (keep_mine, m.plan_hash == plan_hash) {
            (false, _) => "its runner is draining",
            (true, true) => "the pool is smaller now",
            (true, false) => "its Bottle changed",
        };
        events.push((
            EventType::Normal,
            "MemberRemoved",
            format!("removed member {} ({why})", m.name),
        ));
    }
    for m in &dropped {
        events.extend(revoke_keys(ctx, m).await);
        events.push((
            EventType::Warning,
            "MemberLost",
            format!(
                "member {} ran on runner {}, which is gone; another takes its place",
                m.name,
                m.runner.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(events)
}

/// A ready member of this runner's whose resources are gone is started again; only what this
/// write marked is touched (a member claimed meanwhile is no longer in the status to mark).
async fn mark_broken(
    ctx: &PoolCtx,
    pool: &AgentPool,
    mine: &impl Fn(&PoolMember) -> bool,
) -> Result<Events, Error> {
    let current = pool
        .status
        .as_ref()
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let mut broken = BTreeSet::new();
    for m in current.iter().filter(|m| m.ready && mine(m)) {
        let seen = ctx.backend.observe(&member_id(pool, m)).await;
        let intact = seen.is_ok_and(|s| {
            s.sidecar_policy.is_some()
                && s.agent_container.is_some()
                && s.provisioned.as_deref() == Some(POOL_MEMBER)
        });
        if !intact {
            broken.insert(m.uid.clone());
        }
    }
    if broken.is_empty() {
        return Ok(Vec::new());
    }
    let marked = update_status(&pools_api(&ctx.client, pool), &pool.name_any(), |s| {
        let mut marked = Vec::new();
        for m in s
            .members
            .iter_mut()
            .filter(|m| m.ready && broken.contains(&m.uid))
        {
            m.ready = false;
            marked.push(m.name.clone());
        }
        marked
    })
    .await?;
    Ok(marked
        .into_iter()
        .map(|m| {
            (
                EventType::Warning,
                "MemberLost",
                format!("member {m} was gone or changed; starting it again"),
            )
        })
        .collect())
}

/// Starts `starting`, `spec.maxStarting` at once; returns the uids started and why the others
/// failed, with an event for each.
async fn start_all(
    ctx: &PoolCtx,
    pool: &AgentPool,
    starting: Vec<PoolMember>,
    events: &mut Events,
) -> (BTreeSet<String>, HashMap<String, String>) {
    let parallel = pool
        .spec
        .max_starting
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_STARTING)
        .max(1);
    let results: Vec<(PoolMember, Result<(), String>)> = futures_util::stream::iter(starting)
        .map(|m| async {
            let done = start_member(ctx, pool, &m).await;
            (m, done)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut started = BTreeSet::new();
    let mut failed = HashMap::new();
    for (m, done) in results {
        match done {
            Ok(()) => {
                started.insert(m.uid.clone());
                events.push((
                    EventType::Normal,
                    "MemberStarted",
                    format!("member {} is ready", m.name),
                ));
            }
            Err(e) => {
                events.push((
                    EventType::Warning,
                    "MemberFailed",
                    format!("member {}: {e}", m.name),
                ));
                failed.insert(m.uid.clone(), e);
            }
        }
    }
    (started, failed)
}

/// Takes out of `s` this runner's members (`mine`) of another plan than `plan_hash` (all of
/// them unless `keep_mine`), and its members beyond `size` (unready ones first); returns them.
/// Another runner's are left to it.
fn leave(
    s: &mut AgentPoolStatus,
    plan_hash: &str,
    size: usize,
    keep_mine: bool,
    mine: impl Fn(&PoolMember) -> bool,
) -> Vec<PoolMember> {
    let mut out = take(s, |m| mine(m) && (!keep_mine || m.plan_hash != plan_hash));
    while s.members.len() > size {
        let Some(i) = s
            .members
            .iter()
            .rposition(|m| mine(m) && !m.ready)
            .or_else(|| s.members.iter().rposition(&mine))
        else {
            break;
        };
        out.push(s.members.remove(i));
    }
    out
}

/// Plans, resolves and starts one member; an error says why in a line.
async fn start_member(ctx: &PoolCtx, pool: &AgentPool, m: &PoolMember) -> Result<(), String> {
    let (planned, provider) = member_plan(ctx, pool, m).map_err(|(_, why)| why)?;
    if plan::pool_plan_hash(&planned) != m.plan_hash {
        return Err("its Bottle changed while it was starting".into());
    }
    let agent = member_agent(pool, m);
    let resolved = resolve::resolve(&ctx.client, &agent, &planned, provider.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut plan = planned.agent;
    plan.secret_env = resolved.secret_env;
    plan.credential_files = resolved.credential_files;
    plan.inputs_hash = POOL_MEMBER.to_string();
    let id = member_id(pool, m);
    if let Some(c) = &ctx.cluster {
        c.claims.hold(&*ctx.backend, &id);
    }
    start(&*ctx.backend, &id, &resolved.sidecar, &plan)
        .await
        .map_err(|e| e.to_string())
}

/// Brings up a member's image, network, sidecar and agent container and provisions it with the
/// Bottle's files alone; what is already right is left as it is.
async fn start(
    be: &dyn Backend,
    id: &AgentId,
    sidecar: &SidecarPlan,
    plan: &AgentPlan,
) -> Result<(), BackendError> {
    let (steps, _unread) = tokio::sync::mpsc::unbounded_channel();
    let image = be.ensure_image(id, &plan.image, &steps).await?;
    be.ensure_network(id).await?;
    let applied = be.policy_hash(id, sidecar)?;
    let seen = be.observe(id).await?;
    let sidecar_side = async {
        be.ensure_sidecar(id, sidecar, &applied).await?;
        let loaded = match &seen.sidecar_policy {
            Some(p) => Some(p.clone()),
            None => be.observe(id).await?.sidecar_policy,
        };
        if loaded.as_deref() != Some(applied.as_str()) {
            be.apply_policy(id, sidecar, &applied).await?;
        }
        Ok::<_, BackendError>(())
    };
    let agent_side = async {
        let current = seen.agent_container.as_deref() == Some(plan.container_hash.as_str());
        if !current {
            be.ensure_agent(id, &image, plan).await?;
        }
        if !current || seen.provisioned.as_deref() != Some(POOL_MEMBER) {
            be.provision(id, plan).await?;
        }
        Ok::<_, BackendError>(())
    };
    let (sidecar_done, agent_done) = futures_util::future::join(sidecar_side, agent_side).await;
    sidecar_done.and(agent_done)
}

/// A deleted pool takes its unclaimed members with it; claimed ones belong to their Agents.
/// In cluster mode each runner removes its own members, and the pool stays (its finalizer
/// kept) until every live runner has: nothing of it is left on any engine once it is gone.
async fn cleanup(pool: Arc<AgentPool>, ctx: &PoolCtx) -> Result<Action, Error> {
    let api = pools_api(&ctx.client, &pool);
    let me = ctx.cluster.as_ref().map(|c| c.claims.me.id.clone());
    let live = ctx.cluster.as_ref().map(|c| c.claims.live());
    if live.as_ref().is_some_and(Option::is_none) {
        return Err(Error::Waiting(
            "the runners have not been listed yet".into(),
        ));
    }
    let (removed, others) = update_status(&api, &pool.name_any(), |s| {
        let removed = take(s, |m| {
            m.runner == me
                || live
                    .as_ref()
                    .and_then(Option::as_ref)
                    .is_some_and(|l| gone(l, m))
        });
        (removed, s.members.len())
    })
    .await?;
    let mut events = Vec::new();
    for m in &removed {
        match m.runner == me {
            true => events.extend(remove_member(ctx, &pool, m).await?),
            false => events.extend(revoke_keys(ctx, m).await),
        }
    }
    publish(ctx, &pool, events).await;
    if others > 0 {
        return Err(Error::Waiting(format!(
            "{others} member(s) on other runners are not removed yet"
        )));
    }
    Ok(Action::await_change())
}

/// Removes a member that left the pool unclaimed: its runtime resources, and the deploy keys
/// minted for it (a warning each that the forge would not revoke).
async fn remove_member(ctx: &PoolCtx, pool: &AgentPool, m: &PoolMember) -> Result<Events, Error> {
    ctx.backend
        .teardown(&member_id(pool, m))
        .await
        .map_err(Error::Backend)?;
    Ok(revoke_keys(ctx, m).await)
}

/// Revokes the deploy keys minted for member `m`: a warning each that the forge would not revoke.
async fn revoke_keys(ctx: &PoolCtx, m: &PoolMember) -> Events {
    crate::git_gate::gitea::revoke_all(&ctx.client, &m.uid)
        .await
        .into_iter()
        .map(|why| (EventType::Warning, "DeployKeyRevokeFailed", why))
        .collect()
}

async fn publish(ctx: &PoolCtx, pool: &AgentPool, events: Events) {
    let reference = pool.object_ref(&());
    for (type_, reason, note) in events {
        let ev = Event {
            type_,
            reason: reason.into(),
            action: super::agent::series_action(reason, &note),
            note: Some(note),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(pool = %pool.name_any(), error = %e, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, plan: &str, ready: bool) -> PoolMember {
        PoolMember {
            name: name.into(),
            uid: format!("uid-{name}"),
            plan_hash: plan.into(),
            ready,
            ..Default::default()
        }
    }

    fn names(ms: &[PoolMember]) -> Vec<&str> {
        ms.iter().map(|m| m.name.as_str()).collect()
    }

    /// A Bottle change takes out every member of the old plan; a smaller size takes out the
    /// unready members before the ready ones.
    #[test]
    fn stale_and_surplus_members_leave_unready_first() {
        let mut s = AgentPoolStatus {
            members: vec![
                member("a", "old", true),
                member("b", "new", true),
                member("c", "new", false),
                member("d", "new", true),
            ],
            ..Default::default()
        };
        let all = |_: &PoolMember| true;
        let out = leave(&mut s, "new", 1, true, all);
        assert_eq!(names(&out), ["a", "c", "d"]);
        assert_eq!(names(&s.members), ["b"]);
        let out = leave(&mut s, "new", 5, true, all);
        assert!(out.is_empty());
        assert_eq!(names(&leave(&mut s, "new", 0, true, all)), ["b"]);
    }

    /// In cluster mode a runner takes out only its own members: of an older plan, beyond the
    /// size (its unready ones first), or all of them when it drains; the others' are theirs.
    #[test]
    fn a_runner_takes_out_only_its_own_members() {
        let on = |name: &str, plan: &str, ready: bool, runner: &str| PoolMember {
            runner: Some(runner.into()),
            ..member(name, plan, ready)
        };
        let status = AgentPoolStatus {
            members: vec![
                on("a", "old", true, "r1"),
                on("b", "old", true, "r2"),
                on("c", "new", true, "r1"),
                on("d", "new", false, "r1"),
                on("e", "new", false, "r2"),
            ],
            ..Default::default()
        };
        let r1 = |m: &PoolMember| m.runner.as_deref() == Some("r1");
        let mut s = status.clone();
        let out = leave(&mut s, "new", 3, true, r1);
        assert_eq!(names(&out), ["a", "d"]);
        assert_eq!(names(&s.members), ["b", "c", "e"]);
        let mut s = status.clone();
        let out = leave(&mut s, "new", 1, true, r1);
        assert_eq!(names(&out), ["a", "d", "c"]);
        assert_eq!(
            names(&s.members),
            ["b", "e"],
            "r2's stay, over the size too"
        );
        let mut s = status.clone();
        assert_eq!(names(&leave(&mut s, "new", 9, false, r1)), ["a", "c", "d"]);
        let mut s = status;
        let dropped = take(&mut s, |m| m.runner.as_deref() == Some("r2"));
        assert_eq!(names(&dropped), ["b", "e"]);
    }

    /// Names leave room in a runtime name and never repeat; uids are version-4 UUIDs.
    #[test]
    fn new_members_have_fresh_names_and_uuids() {
        let a = new_member("pool", "h", None);
        let b = new_member("pool", "h", Some("r1".into()));
        assert_ne!(a.name, b.name);
        assert_ne!(a.uid, b.uid);
        assert_eq!(a.name.len(), "pool-".len() + 5);
        assert_eq!(a.uid.len(), 36);
        assert_eq!(a.uid.as_bytes()[14], b'4');
        assert!(!a.ready);
        assert_eq!((a.runner, b.runner.as_deref()), (None, Some("r1")));
    }
}
