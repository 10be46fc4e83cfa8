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
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};

use super::conditions;
use super::error::Error;
use crate::{plan, provider, resolve};

pub const FINALIZER: &str = "bot-bottle.dev/pool-members";

/// Members started at once unless `spec.maxStarting` says otherwise.
const DEFAULT_STARTING: usize = 2;
/// Writes of a pool's status that meet a newer one read it again; past this many, the
/// reconcile fails and is retried.
const CONFLICT_RETRIES: usize = 20;

pub struct PoolCtx {
    pub client: kube::Client,
    pub backend: SharedBackend,
    pub bottles: Store<Bottle>,
    pub recorder: Recorder,
    /// How often a full pool is checked again without an API event (a member removed out of
    /// band is started again).
    pub resync: Duration,
    /// Failed rounds in a row, by pool: the next round waits longer.
    failures: Mutex<HashMap<String, u32>>,
}

impl PoolCtx {
    pub fn new(
        client: kube::Client,
        backend: SharedBackend,
        bottles: Store<Bottle>,
        recorder: Recorder,
        resync: Duration,
    ) -> Self {
        PoolCtx {
            client,
            backend,
            bottles,
            recorder,
            resync,
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

fn pools_api(client: &kube::Client, pool: &AgentPool) -> Api<AgentPool> {
    Api::namespaced(
        client.clone(),
        &pool.namespace().unwrap_or_else(|| "default".into()),
    )
}

/// A member's identity on the runtime, which the Agent claiming it takes over.
pub fn member_id(pool: &AgentPool, m: &PoolMember) -> AgentId {
    AgentId {
        namespace: pool.namespace().unwrap_or_else(|| "default".into()),
        name: m.name.clone(),
        uid: m.uid.clone(),
    }
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
fn new_member(pool: &str, plan_hash: &str) -> PoolMember {
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
        ready: false,
    }
}

/// Replaces the pool's status with `change` applied to the latest copy, conditional on its
/// resourceVersion; a conflict (a claim, most often) reads it again. Returns what `change`
/// returned for the write that landed.
pub(super) async fn update_status<T>(
    api: &Api<AgentPool>,
    name: &str,
    mut change: impl FnMut(&mut AgentPoolStatus) -> T,
) -> Result<T, kube::Error> {
    let mut last = None;
    for _ in 0..CONFLICT_RETRIES {
        let mut pool = api.get_status(name).await?;
        let before = pool.status.take().unwrap_or_default();
        let mut status = before.clone();
        let out = change(&mut status);
        status.recount();
        if status == before {
            return Ok(out);
        }
        pool.status = Some(status);
        match api
            .replace_status(name, &PostParams::default(), &pool)
            .await
        {
            Ok(_) => return Ok(out),
            Err(kube::Error::Api(e)) if e.code == 409 => last = Some(kube::Error::Api(e)),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| kube::Error::Service("no status write was attempted".into())))
}

async fn apply(pool: Arc<AgentPool>, ctx: &PoolCtx) -> Result<Action, Error> {
    let api = pools_api(&ctx.client, &pool);
    let name = pool.name_any();
    let key = format!("{}/{name}", pool.namespace().unwrap_or_default());
    let probe = new_member(&name, "");
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
    let mut events = Vec::new();

    // Members of an older plan, and those beyond the size (unready first), leave the pool.
    let (removed, current) = update_status(&api, &name, |s| {
        (leave(s, &plan_hash, size), s.members.clone())
    })
    .await?;
    for m in &removed {
        events.extend(remove_member(ctx, &pool, m).await?);
        let why = match m.plan_hash == plan_hash {
            true => "the pool is smaller now",
            false => "its Bottle changed",
        };
        events.push((
            EventType::Normal,
            "MemberRemoved",
            format!("removed member {} ({why})", m.name),
        ));
    }

    // A ready member whose resources are gone is started again; only what this write marked
    // is touched (a member claimed meanwhile is no longer in the status to mark).
    let mut broken = BTreeSet::new();
    for m in current.iter().filter(|m| m.ready) {
        let seen = ctx.backend.observe(&member_id(&pool, m)).await;
        let intact = seen.is_ok_and(|s| {
            s.sidecar_policy.is_some()
                && s.agent_container.is_some()
                && s.provisioned.as_deref() == Some(POOL_MEMBER)
        });
        if !intact {
            broken.insert(m.uid.clone());
        }
    }
    if !broken.is_empty() {
        let marked = update_status(&api, &name, |s| {
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
        for m in marked {
            events.push((
                EventType::Warning,
                "MemberLost",
                format!("member {m} was gone or changed; starting it again"),
            ));
        }
    }

    // Fill up to the size: members are recorded before anything of theirs exists, so a
    // crash leaves nothing the status does not name.
    // Then every unready member is started: those just recorded and those marked above.
    let starting: Vec<PoolMember> = update_status(&api, &name, |s| {
        while s.members.len() < size {
            s.members.push(new_member(&name, &plan_hash));
        }
        s.members.iter().filter(|m| !m.ready).cloned().collect()
    })
    .await?;
    let parallel = pool
        .spec
        .max_starting
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_STARTING)
        .max(1);
    let results: Vec<(PoolMember, Result<(), String>)> = futures_util::stream::iter(starting)
        .map(|m| async {
            let done = start_member(ctx, &pool, &m).await;
            (m, done)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut started = BTreeSet::new();
    let mut failed = 0usize;
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
                failed += 1;
                events.push((
                    EventType::Warning,
                    "MemberFailed",
                    format!("member {}: {e}", m.name),
                ));
            }
        }
    }

    let generation = pool.metadata.generation;
    let message = match failed {
        0 => None,
        n => Some(format!(
            "{n} member(s) failed to start; see the pool's events"
        )),
    };
    update_status(&api, &name, |s| {
        for m in s.members.iter_mut().filter(|m| started.contains(&m.uid)) {
            m.ready = true;
        }
        let ready = s.members.iter().filter(|m| m.ready).count();
        let full = ready >= size;
        let (reason, text) = match (full, &message) {
            (true, _) => ("Full", format!("{ready} of {size} members ready")),
            (false, Some(m)) => ("MembersFailed", m.clone()),
            (false, None) => ("Filling", format!("{ready} of {size} members ready")),
        };
        conditions::set(&mut s.conditions, "Ready", full, reason, &text, generation);
        s.observed_generation = generation;
        s.message = message.clone();
    })
    .await?;
    publish(ctx, &pool, events).await;
    Ok(Action::requeue(ctx.next_round(&key, failed > 0)))
}

/// Takes out of `s` the members of another plan than `plan_hash` and those beyond `size`
/// (unready ones first); returns them.
fn leave(s: &mut AgentPoolStatus, plan_hash: &str, size: usize) -> Vec<PoolMember> {
    let (keep, mut out): (Vec<_>, Vec<_>) =
        s.members.drain(..).partition(|m| m.plan_hash == plan_hash);
    s.members = keep;
    while s.members.len() > size {
        let i = s
            .members
            .iter()
            .rposition(|m| !m.ready)
            .unwrap_or(s.members.len() - 1);
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
    start(&*ctx.backend, &member_id(pool, m), &resolved.sidecar, &plan)
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
async fn cleanup(pool: Arc<AgentPool>, ctx: &PoolCtx) -> Result<Action, Error> {
    let api = pools_api(&ctx.client, &pool);
    let removed = update_status(&api, &pool.name_any(), |s| std::mem::take(&mut s.members)).await?;
    let mut events = Vec::new();
    for m in &removed {
        events.extend(remove_member(ctx, &pool, m).await?);
    }
    publish(ctx, &pool, events).await;
    Ok(Action::await_change())
}

/// Removes a member that left the pool unclaimed: its runtime resources, and the deploy keys
/// minted for it (a warning each that the forge would not revoke).
async fn remove_member(
    ctx: &PoolCtx,
    pool: &AgentPool,
    m: &PoolMember,
) -> Result<Vec<(EventType, &'static str, String)>, Error> {
    ctx.backend
        .teardown(&member_id(pool, m))
        .await
        .map_err(Error::Backend)?;
    Ok(crate::git_gate::gitea::revoke_all(&ctx.client, &m.uid)
        .await
        .into_iter()
        .map(|why| (EventType::Warning, "DeployKeyRevokeFailed", why))
        .collect())
}

async fn publish(ctx: &PoolCtx, pool: &AgentPool, events: Vec<(EventType, &'static str, String)>) {
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
        let out = leave(&mut s, "new", 1);
        assert_eq!(names(&out), ["a", "c", "d"]);
        assert_eq!(names(&s.members), ["b"]);
        let out = leave(&mut s, "new", 5);
        assert!(out.is_empty());
        assert_eq!(names(&leave(&mut s, "new", 0)), ["b"]);
    }

    /// Names leave room in a runtime name and never repeat; uids are version-4 UUIDs.
    #[test]
    fn new_members_have_fresh_names_and_uuids() {
        let a = new_member("pool", "h");
        let b = new_member("pool", "h");
        assert_ne!(a.name, b.name);
        assert_ne!(a.uid, b.uid);
        assert_eq!(a.name.len(), "pool-".len() + 5);
        assert_eq!(a.uid.len(), 36);
        assert_eq!(a.uid.as_bytes()[14], b'4');
        assert!(!a.ready);
    }
}
