//! Runs the Bottle and Agent reconcilers with kube-runtime against any API server (the local
//! control plane or a real cluster): per-object serialisation, backoff on errors, resync.

pub mod agent;
pub mod backoff;
pub mod bottle;
pub mod claim;
mod conditions;
pub(crate) mod context;
pub(crate) mod error;
mod lifecycle;
pub mod members;
pub mod metrics;
pub mod pool;

pub use context::AgentCtx;
pub use error::{Error, MANAGER};
pub use pool::PoolCtx;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bb_crds::{Agent, AgentPool, Bottle};
use futures_util::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use bb_backend::{AgentId, Backend, SharedBackend};

/// Bottles whose `extends` chain includes `changed` (itself included).
fn descendants(bottles: &Store<Bottle>, changed: &str) -> BTreeSet<String> {
    let specs = bottle::bottle_specs(bottles);
    // `changed` itself even when the store does not hold it yet (a Bottle created just now
    // must still wake the Agents waiting for exactly it).
    let mut out = BTreeSet::from([changed.to_string()]);
    out.extend(
        specs
            .keys()
            .filter(|name| {
                let mut cur = Some(name.as_str());
                let mut seen = BTreeSet::new();
                while let Some(c) = cur {
                    if c == changed {
                        return true;
                    }
                    if !seen.insert(c) {
                        return false;
                    }
                    cur = specs.get(c).and_then(|s| s.extends.as_deref());
                }
                false
            })
            .cloned(),
    );
    out
}

/// Removes backend resources whose Agent no longer exists (replaces the reference's `cleanup`).
/// A warm pool's members are kept too, as are the members Agents claimed.
pub async fn sweep(client: &kube::Client, backend: &dyn Backend) -> Result<Vec<AgentId>, Error> {
    let agents: Api<Agent> = Api::all(client.clone());
    let mut live: BTreeSet<String> = BTreeSet::new();
    for a in agents.list(&Default::default()).await?.items {
        live.extend(a.uid());
        live.extend(a.status.and_then(|s| s.bottle_copy).map(|copy| copy.uid));
    }
    let api: Api<AgentPool> = Api::all(client.clone());
    for p in api.list(&Default::default()).await?.items {
        live.extend(p.status.into_iter().flat_map(|s| s.members).map(|m| m.uid));
    }
    let mut removed = Vec::new();
    for id in backend.list_managed().await.map_err(Error::Backend)? {
        if !live.contains(&id.uid) {
            backend.teardown(&id).await.map_err(Error::Backend)?;
            tracing::info!(agent = %id, "removed resources of an Agent that no longer exists");
            removed.push(id);
        }
    }
    Ok(removed)
}

/// The Bottle controller and the cache it fills, which the Agent controller reads as well.
fn bottle_controller(client: &kube::Client) -> (Controller<Bottle>, Store<Bottle>) {
    let api: Api<Bottle> = Api::all(client.clone());
    let controller = Controller::new(api.clone(), watcher::Config::default().any_semantic());
    let store = controller.store();
    let map_store = store.clone();
    // A parent's change requeues every bottle that extends it.
    let controller = controller.watches(
        api,
        watcher::Config::default().any_semantic(),
        move |b: Bottle| {
            descendants(&map_store, &b.name_any())
                .into_iter()
                .map(|n| ObjectRef::<Bottle>::new(&n))
                .collect::<Vec<_>>()
        },
    );
    (controller, store)
}

async fn drive_bottles(
    client: kube::Client,
    controller: Controller<Bottle>,
    store: Store<Bottle>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(bottle::BottleCtx {
        client,
        bottles: store,
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            bottle::reconcile,
            |_b, err, _ctx| {
                tracing::warn!(error = %err, "bottle reconcile failed");
                Action::requeue(Duration::from_secs(5))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// Runs the Bottle reconciler alone (no backend needed) until `shutdown` resolves.
pub async fn run_bottles(
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (controller, store) = bottle_controller(&client);
    drive_bottles(client, controller, store, shutdown).await;
}

/// Runs both reconcilers until `shutdown` resolves. `resync` is how often a Running Agent is
/// re-checked against its backend without an API event; `session_endpoint` is where this
/// runner serves sessions of the Agents it runs, with what each reconcile puts in
/// `session_plans`.
pub async fn run(
    client: kube::Client,
    backend: SharedBackend,
    resync: Duration,
    session_endpoint: Option<String>,
    session_plans: crate::sessions::plans::SessionPlans,
    claims: Option<Arc<crate::cluster::claims::Claims>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Result<(), Error> {
    match sweep(&client, &*backend).await {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(count = removed.len(), "start-up sweep removed orphans")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "start-up sweep failed"),
    }
    let bottles_api: Api<Bottle> = Api::all(client.clone());
    let agents_api: Api<Agent> = Api::all(client.clone());

    let (bottle_controller, bottle_store) = bottle_controller(&client);
    let bottles_done = drive_bottles(
        client.clone(),
        bottle_controller,
        bottle_store.clone(),
        shutdown.clone(),
    );

    // Wake-ups of `spec.lifecycle` (a deadline, a session closing) reconcile their Agent.
    let lifecycle_wakes = session_plans.activity.take_wakes().map(|rx| {
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
    });
    let mut agent_controller =
        Controller::new(agents_api, watcher::Config::default().any_semantic());
    if let Some(wakes) = lifecycle_wakes {
        agent_controller = agent_controller.reconcile_on(wakes);
    }
    let agent_store = agent_controller.store();
    let pool_controller = Controller::new(
        Api::<AgentPool>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let pool_store = pool_controller.store();
    let map_bottles = bottle_store.clone();
    let claiming = claims.clone().map(|c| {
        c.run(
            agent_store.clone(),
            pool_store.clone(),
            backend.clone(),
            shutdown.clone(),
        )
    });
    let pool_cluster = claims.clone().map(|claims| pool::PoolCluster {
        claims,
        agents: agent_store.clone(),
        pools: pool_store.clone(),
    });
    let reporter = Reporter {
        controller: MANAGER.into(),
        // Events say which runner acted; on a local control plane, which host.
        instance: claims
            .as_ref()
            .map(|c| c.me.id.clone())
            .or_else(|| std::env::var("HOSTNAME").ok()),
    };
    let ctx = Arc::new(AgentCtx {
        client: client.clone(),
        resync,
        backend,
        session_endpoint,
        bottles: bottle_store.clone(),
        reporter: reporter.clone(),
        backoff: Default::default(),
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        live_routes: Default::default(),
        egress_seen: Default::default(),
        session_plans,
        claims,
        pools: pool_store.clone(),
    });
    let pools_done = drive_pools(
        pool_controller,
        pool_store,
        PoolCtx::new(
            client.clone(),
            ctx.backend.clone(),
            bottle_store.clone(),
            ctx.recorder.clone(),
            resync,
            pool_cluster,
        ),
        shutdown.clone(),
    );
    let proposals_api: Api<bb_crds::Proposal> = Api::all(client.clone());
    let mirror_ctx = ctx.clone();
    let mirror_store = agent_store.clone();
    let mirror_shutdown = shutdown.clone();
    let mirror = async move {
        let ctx = crate::supervise::mirror::MirrorCtx {
            client: &mirror_ctx.client,
            reporter: &mirror_ctx.reporter,
            backend: &*mirror_ctx.backend,
            live_routes: &mirror_ctx.live_routes,
        };
        crate::supervise::mirror::run(ctx, mirror_store, mirror_shutdown).await
    };
    let agents_done = agent_controller
        .watches(bottles_api, watcher::Config::default().any_semantic(), move |b: Bottle| {
            let names = descendants(&map_bottles, &b.name_any());
            agent_store
                .state()
                .iter()
                .filter(|a| names.contains(&a.spec.bottle_ref.name))
                .map(|a| ObjectRef::from_obj(a.as_ref()))
                .collect::<Vec<_>>()
        })
        // A decision (or a deleted grant) reconciles the Agent it belongs to.
        .watches(proposals_api, watcher::Config::default().any_semantic(), |p: bb_crds::Proposal| {
            p.namespace().map(|ns| ObjectRef::<Agent>::new(&p.spec.agent_ref.name).within(&ns))
        })
        .graceful_shutdown_on(shutdown)
        .run(
            agent::reconcile,
            |a: Arc<Agent>, err: &Error, ctx: Arc<AgentCtx>| {
                let key = format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any());
                match ctx.backoff.failed(&key, ctx.fingerprint(&a)) {
                    backoff::Wait::For(wait) => {
                        tracing::warn!(agent = %key, error = %err, retry_in = ?wait, "agent reconcile failed");
                        Action::requeue(wait)
                    }
                    backoff::Wait::Change => {
                        tracing::warn!(agent = %key, error = %err, attempts = backoff::ATTEMPTS, "agent reconcile failed; not retrying until the Agent or its Bottle changes");
                        Action::await_change()
                    }
                }
            },
            ctx,
        )
        .for_each(|_| async {});
    let claiming = async move {
        if let Some(c) = claiming {
            c.await;
        }
    };
    futures_util::future::join5(bottles_done, agents_done, mirror, claiming, pools_done).await;
    Ok(())
}

/// Runs the AgentPool reconciler until `shutdown` resolves; a Bottle's change (or a parent's)
/// reconciles the pools of it.
async fn drive_pools(
    controller: Controller<AgentPool>,
    pools: Store<AgentPool>,
    ctx: PoolCtx,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let bottles = ctx.bottles.clone();
    let bottles_api: Api<Bottle> = Api::all(ctx.client.clone());
    controller
        .watches(
            bottles_api,
            watcher::Config::default().any_semantic(),
            move |b: Bottle| {
                let names = descendants(&bottles, &b.name_any());
                pools
                    .state()
                    .iter()
                    .filter(|p| names.contains(&p.spec.bottle_ref.name))
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(
            pool::reconcile,
            |p: Arc<AgentPool>, err: &Error, _ctx| {
                tracing::warn!(pool = %p.name_any(), error = %err, "agentpool reconcile failed");
                Action::requeue(Duration::from_secs(5))
            },
            Arc::new(ctx),
        )
        .for_each(|_| async {})
        .await;
}
