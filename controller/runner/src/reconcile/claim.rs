//! An Agent claiming a warm pool's member: the member leaves the pool's status by a replace
//! conditional on the pool's resourceVersion, so of Agents racing for one member exactly one
//! gets it; the winner records it in its own status and runs in it from then on, under the
//! member's identity, which the runner vouches for by a record of its own (`runtime_id`).

use std::sync::Arc;

use bb_backend::{AgentId, Backend};
use bb_crds::agent::BottleCopy;
use bb_crds::{Agent, AgentPool};
use kube::api::PostParams;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

/// How many conflicting claims one Agent sits out on one pool before starting its own bottle.
const ATTEMPTS: usize = 64;

/// The cached pools of `bottle` in `namespace` that hold a ready member of `plan_hash` on
/// `runner` (cluster mode; `None` on a local control plane): no API call, so an Agent of a
/// Bottle without a pool pays nothing for pools existing.
pub fn candidates(
    pools: &Store<AgentPool>,
    namespace: &str,
    bottle: &str,
    plan_hash: &str,
    runner: Option<&str>,
) -> Vec<Arc<AgentPool>> {
    pools
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace)
                && p.spec.bottle_ref.name == bottle
                && p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.claimable(plan_hash, runner).is_some())
        })
        .collect()
}

/// Takes a ready member of `plan_hash` from one of `pools` (cached copies, from
/// `candidates`), reading a pool again only after a conflict. `None`: no pool had one to give.
pub async fn claim(
    client: &kube::Client,
    pools: Vec<Arc<AgentPool>>,
    plan_hash: &str,
    runner: Option<&str>,
) -> Result<Option<BottleCopy>, kube::Error> {
    for cached in pools {
        let ns = cached.namespace().unwrap_or_else(|| "default".into());
        let api: Api<AgentPool> = Api::namespaced(client.clone(), &ns);
        let name = cached.name_any();
        let mut pool = (*cached).clone();
        for _ in 0..ATTEMPTS {
            let status = pool.status.get_or_insert_with(Default::default);
            let Some(member) = status.claimable(plan_hash, runner).cloned() else {
                break;
            };
            status.members.retain(|m| m.uid != member.uid);
            status.recount();
            match api
                .replace_status(&name, &PostParams::default(), &pool)
                .await
            {
                Ok(_) => {
                    return Ok(Some(BottleCopy {
                        pool: name,
                        name: member.name,
                        uid: member.uid,
                    }));
                }
                // Another claim (or the pool's reconciler) wrote first: read what it left.
                Err(kube::Error::Api(e)) if e.code == 409 => pool = api.get_status(&name).await?,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// The record, in a member's directory on the runner, of the Agent it was given to.
const CLAIMED_BY: &str = "claimed-by";

/// Records that the member `member` now runs the Agent with uid `agent_uid`: the runner's own
/// word, which `status.bottleCopy` alone (writable by whoever may write an Agent's status) is
/// not.
pub fn record(be: &dyn Backend, member: &AgentId, agent_uid: &str) -> std::io::Result<()> {
    let dir = be.agent_dir(member);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(CLAIMED_BY), agent_uid)
}

/// The identity the Agent's runtime resources carry: the member's when its status names one
/// and this runner gave it that member, else its own. A `status.bottleCopy` the runner did not
/// write (a forged one, naming another Agent's member) is ignored: that Agent runs a bottle of
/// its own and never reaches the member.
pub fn runtime_id(be: &dyn Backend, agent: &Agent) -> AgentId {
    let own = AgentId::from(agent);
    let Some(copy) = agent.status.as_ref().and_then(|s| s.bottle_copy.as_ref()) else {
        return own;
    };
    let member = AgentId {
        namespace: own.namespace.clone(),
        name: copy.name.clone(),
        uid: copy.uid.clone(),
    };
    let given = std::fs::read_to_string(be.agent_dir(&member).join(CLAIMED_BY))
        .is_ok_and(|uid| !own.uid.is_empty() && uid == own.uid);
    match given {
        true => member,
        false => own,
    }
}
