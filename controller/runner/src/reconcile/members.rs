//! A warm pool's members as its status records them: each member's identity on the runtime, the
//! conditional replace every change of the status is, and a runner withdrawing its own.

use bb_backend::{AgentId, Backend};
use bb_crds::AgentPool;
use bb_crds::pool::{AgentPoolStatus, PoolMember};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

/// Writes of a pool's status that meet a newer one read it again; past this many, the
/// reconcile fails and is retried.
const CONFLICT_RETRIES: usize = 20;

/// The API of `pool`'s namespace.
pub fn pools_api(client: &kube::Client, pool: &AgentPool) -> Api<AgentPool> {
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

/// Replaces the pool's status with `change` applied to the latest copy, conditional on its
/// resourceVersion; a conflict (a claim, most often) reads it again. Returns what `change`
/// returned for the write that landed.
pub async fn update_status<T>(
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

/// Takes the members `out` picks out of `s`.
pub fn take(s: &mut AgentPoolStatus, out: impl Fn(&PoolMember) -> bool) -> Vec<PoolMember> {
    let (gone, keep): (Vec<_>, Vec<_>) = s.members.drain(..).partition(|m| out(m));
    s.members = keep;
    gone
}

/// Takes this runner's (`me`) members out of every pool and removes them: a runner that stops or
/// drains leaves their places to the others. Returns how many it removed.
pub async fn withdraw(
    client: &kube::Client,
    backend: &dyn Backend,
    me: &str,
) -> Result<usize, kube::Error> {
    let here = |m: &PoolMember| m.runner.as_deref() == Some(me);
    let all: Api<AgentPool> = Api::all(client.clone());
    let mut removed = 0;
    for p in all.list(&Default::default()).await?.items {
        if !p.status.iter().flat_map(|s| &s.members).any(here) {
            continue;
        }
        let out = update_status(&pools_api(client, &p), &p.name_any(), |s| take(s, here)).await?;
        for m in &out {
            let id = member_id(&p, m);
            if let Err(e) = backend.teardown(&id).await {
                tracing::warn!(member = %id, error = %e, "removing a withdrawn pool member failed");
            }
            for why in crate::git_gate::gitea::revoke_all(client, &m.uid).await {
                tracing::warn!(member = %id, "{why}");
            }
            removed += 1;
        }
    }
    Ok(removed)
}
