//! The Bottle reconciler: resolves `extends`, validates, and publishes the resolved provider,
//! route count, chain and policy hash with a `Ready` condition. Agents follow via `watches`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bb_crds::resolve::validate_bottle;
use bb_crds::{Bottle, BottleSpec, BottleStatus};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::conditions;
use super::error::{Error, MANAGER};

pub struct BottleCtx {
    pub client: kube::Client,
    pub bottles: Store<Bottle>,
}

impl std::fmt::Debug for BottleCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BottleCtx").finish_non_exhaustive()
    }
}

/// Every Bottle spec the cache holds, by name.
pub fn bottle_specs(store: &Store<Bottle>) -> BTreeMap<String, BottleSpec> {
    store
        .state()
        .iter()
        .map(|b| (b.name_any(), b.spec.clone()))
        .collect()
}

/// Every Bottle's spec by name, read from the API: what `extends` resolves against outside a
/// reconciler's cache (the session endpoint, `bbctl`).
pub async fn listed_bottle_specs(
    client: &kube::Client,
) -> Result<BTreeMap<String, BottleSpec>, kube::Error> {
    let api: kube::Api<Bottle> = kube::Api::all(client.clone());
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|b| (b.name_any(), b.spec))
        .collect())
}

pub async fn reconcile(bottle: Arc<Bottle>, ctx: Arc<BottleCtx>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(bottle, ctx).await;
    super::metrics::global().observe("bottle", started.elapsed(), result.is_err());
    result
}

async fn reconcile_inner(bottle: Arc<Bottle>, ctx: Arc<BottleCtx>) -> Result<Action, Error> {
    let name = bottle.name_any();
    let mut specs = bottle_specs(&ctx.bottles);
    // The triggering object is newer than the cache can be.
    specs.insert(name.clone(), bottle.spec.clone());
    let generation = bottle.metadata.generation;
    let old = bottle.status.clone().unwrap_or_default();
    let mut status = BottleStatus {
        conditions: old.conditions.clone(),
        observed_generation: generation,
        ..Default::default()
    };
    match validate_bottle(&name, &specs) {
        Ok(resolved) => {
            status.provider = Some(
                resolved
                    .spec
                    .agent_provider
                    .as_ref()
                    .map(|p| p.template())
                    .unwrap_or_default()
                    .as_str()
                    .to_string(),
            );
            // A provider this runner cannot run contributes no routes; its Agents say why.
            let provider_routes = crate::provider::of_bottle(&resolved)
                .map(|p| p.routes())
                .unwrap_or_default();
            status.route_count =
                Some(crate::plan::route_count(&resolved, provider_routes.clone()) as i64);
            status.resolved_policy_hash =
                crate::plan::bottle_policy_hash(&resolved, provider_routes).ok();
            status.chain = resolved.chain.clone();
            conditions::set(
                &mut status.conditions,
                "Ready",
                true,
                "Resolved",
                &format!("extends chain: {}", resolved.chain.join(" -> ")),
                generation,
            );
        }
        Err(errs) => {
            let msg = errs
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let reason = if msg.contains("not defined") || msg.contains("not found") {
                "ParentNotFound"
            } else if msg.contains("cycle") {
                "ExtendsCycle"
            } else {
                "Invalid"
            };
            conditions::set(
                &mut status.conditions,
                "Ready",
                false,
                reason,
                &msg,
                generation,
            );
            status.message = Some(msg);
        }
    }
    let unchanged = conditions::same(&status.conditions, &old.conditions)
        && BottleStatus {
            conditions: vec![],
            ..status.clone()
        } == BottleStatus {
            conditions: vec![],
            ..old.clone()
        };
    if !unchanged {
        let api: Api<Bottle> = Api::all(ctx.client.clone());
        let patch = json!({"apiVersion": bb_crds::API_VERSION, "kind": "Bottle", "metadata": {"name": name}, "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}
