//! The Agent reconciler: drives one Agent's backend resources toward its spec, step by step,
//! observing before acting, and reports every step as a condition, a phase and an event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bb_crds::agent::{
    BackendKind, GuardedSecretLocation, GuardedSecrets, Lifecycle, SidecarEndpoints,
};
use bb_crds::bottle::SecretDiscovery;
use bb_crds::policy::guarded::{GUARDED_SECRETS_FILE, GuardedSecret};
use bb_crds::resolve::validate_bottle;
use bb_crds::{Agent, AgentPhase, AgentStatus, Bottle, ResolvedBottle};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::backoff::{self, Wait};
use super::claim;
use super::conditions;
use super::context::AgentCtx;
use super::error::{Error, MANAGER};
use super::lifecycle;
use crate::cluster::claims::Gate;
use crate::discovery;
use crate::plan;
use crate::resolve::{self, ResolveError};
use crate::sessions::plans::SessionPlan;
use crate::supervise::grants;
use bb_backend::{AgentId, Backend, BackendError, SecretBytes, Step};

pub const FINALIZER: &str = "bot-bottle.dev/cleanup";

fn backend_name(k: BackendKind) -> &'static str {
    k.as_str()
}

/// Whether a controller running `running` may hold an Agent that asks for `wanted`.
fn serves(wanted: BackendKind, running: &str) -> bool {
    wanted == BackendKind::Auto || backend_name(wanted) == running
}

/// Status under construction plus the events to publish once it is written.
struct Report {
    status: AgentStatus,
    events: Vec<(EventType, &'static str, String)>,
    generation: Option<i64>,
}

impl Report {
    fn condition(&mut self, type_: &str, ok: bool, reason: &str, message: impl AsRef<str>) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message.as_ref(),
            self.generation,
        );
    }
    fn event(&mut self, t: EventType, reason: &'static str, note: impl Into<String>) {
        self.events.push((t, reason, note.into()));
    }
    fn phase(&mut self, p: AgentPhase) {
        if self.status.phase != Some(p) {
            // One reason per phase: the event recorder folds events that share a reason into
            // one series, which would show every transition under the first note.
            let reason = match p {
                AgentPhase::Pending => "Pending",
                AgentPhase::Building => "Building",
                AgentPhase::Starting => "Starting",
                AgentPhase::Running => "Running",
                AgentPhase::Suspended => "Suspending",
                AgentPhase::Failed => "Failed",
                AgentPhase::Terminating => "Terminating",
            };
            self.event(EventType::Normal, reason, format!("phase is now {p}"));
        }
        self.status.phase = Some(p);
    }
}

/// The backoff's key of an Agent: `namespace/name`.
fn key_of(agent: &Agent) -> String {
    format!(
        "{}/{}",
        agent.namespace().unwrap_or_else(|| "default".into()),
        agent.name_any()
    )
}

pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<AgentCtx>) -> Result<Action, Error> {
    let ns = agent.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    let key = key_of(&agent);
    let span = tracing::info_span!("reconcile_agent", agent = %key);
    let started = std::time::Instant::now();
    // Cluster mode: act only on an Agent this runner holds, as the API says now.
    let (agent, _held) = match &ctx.claims {
        Some(claims) => match claims.gate(&agent, &*ctx.backend).await? {
            Gate::Act(fresh, guard) => (fresh, Some(guard)),
            Gate::Skip(action) => return Ok(action),
        },
        None => (agent, None),
    };
    // Woken inside a failure's backoff by nothing that is a reason to act (its own status
    // write): wait the rest of it out.
    match ctx.backoff.held(&key, ctx.fingerprint(&agent)) {
        Some(Wait::For(wait)) => return Ok(Action::requeue(wait)),
        // Gave up: its status says what to change; deletion is a change, so it still goes.
        Some(Wait::Change) => return Ok(Action::await_change()),
        None => {}
    }
    let result = finalizer(&api, FINALIZER, agent, |event| async {
        match event {
            // A span entered across awaits would leak onto other tasks: instrument instead.
            Finalizer::Apply(a) => apply(a, ctx.clone()).instrument(span.clone()).await,
            Finalizer::Cleanup(a) => cleanup(a, ctx.clone()).instrument(span.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    super::metrics::global().observe("agent", started.elapsed(), result.is_err());
    result
}

async fn publish(ctx: &AgentCtx, agent: &Agent, events: Vec<(EventType, &'static str, String)>) {
    let reference = agent.object_ref(&());
    for (type_, reason, note) in events {
        let ev = Event {
            type_,
            reason: reason.into(),
            action: series_action(reason, &note),
            note: Some(note),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(agent = %agent.name_any(), error = %e, "publishing an event failed");
        }
    }
}

/// The recorder folds events with the same reason and action into one series (count, last
/// seen), keeping the first note, as client-go's does. Only identical events may fold, or a
/// second snapshot or build step would show under the first one's note: the action carries a
/// digest of the note.
pub(super) fn series_action(reason: &str, note: &str) -> String {
    let digest = bb_backend::hash::sha256_hex(&[note.as_bytes()]);
    format!("{reason}-{}", &digest[..digest.len().min(8)])
}

async fn write_status(ctx: &AgentCtx, agent: &Agent, report: Report) -> Result<(), Error> {
    // Keyed by uid: a recreated Agent with the same name is a different Agent.
    let phase = report.status.phase.map(|p| p.to_string());
    super::metrics::global().set_phase(&agent.uid().unwrap_or_default(), phase.as_deref());
    let old = agent.status.clone().unwrap_or_default();
    let same = conditions::same(&report.status.conditions, &old.conditions)
        && AgentStatus {
            conditions: vec![],
            ..report.status.clone()
        } == AgentStatus {
            conditions: vec![],
            ..old
        };
    if !same {
        apply_status(ctx, agent, &report.status).await?;
    }
    publish(ctx, agent, report.events).await;
    Ok(())
}

/// Server-side applies the whole status under the controller's field manager.
async fn apply_status(
    ctx: &AgentCtx,
    agent: &Agent,
    status: &AgentStatus,
) -> Result<(), kube::Error> {
    let api: Api<Agent> =
        Api::namespaced(ctx.client.clone(), &agent.namespace().unwrap_or_default());
    // `runner` belongs to the claims (`cluster::claims`), written only with a resourceVersion:
    // a forced apply of a stale copy must never move an Agent between runners.
    let status = AgentStatus {
        runner: None,
        ..status.clone()
    };
    let patch = json!({"apiVersion": bb_crds::API_VERSION, "kind": "Agent", "metadata": {"name": agent.name_any()}, "status": status});
    api.patch_status(
        &agent.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// Builds (or finds) the image while telling the user how far the build is: each Dockerfile
/// step becomes the Agent's status message and a `Building` event as it starts, instead of
/// only a line in the controller's log.
async fn build_image(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    image: &bb_backend::ImageSource,
    r: &Report,
) -> Result<String, BackendError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let build = ctx.backend.ensure_image(id, image, &tx);
    tokio::pin!(build);
    let mut status = r.status.clone();
    loop {
        tokio::select! {
            built = &mut build => {
                // Steps sent just before the end still get reported.
                while let Ok(line) = rx.try_recv() {
                    report_build_step(ctx, agent, &mut status, line).await;
                }
                return built;
            }
            Some(line) = rx.recv() => report_build_step(ctx, agent, &mut status, line).await,
        }
    }
}

async fn report_build_step(ctx: &AgentCtx, agent: &Agent, status: &mut AgentStatus, line: String) {
    let line: String = line.chars().take(200).collect();
    status.phase = Some(AgentPhase::Building);
    status.message = Some(format!("building: {line}"));
    if let Err(e) = apply_status(ctx, agent, status).await {
        tracing::debug!(error = %e, "reporting a build step failed");
    }
    let ev = Event {
        type_: EventType::Normal,
        reason: "Building".into(),
        action: series_action("Building", &line),
        note: Some(line),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &agent.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing a build step failed");
    }
}

/// The Bottle `name` with its `extends` chain resolved, or the reason and message of why not.
pub(super) fn resolve_bottle(
    bottles: &Store<Bottle>,
    name: &str,
) -> Result<ResolvedBottle, (String, String)> {
    let specs = super::bottle::bottle_specs(bottles);
    if !specs.contains_key(name) {
        let available = specs.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err((
            "BottleNotFound".into(),
            format!(
                "Bottle '{name}' not found (available: {}); apply a Bottle named '{name}' or change spec.bottleRef.name",
                if available.is_empty() {
                    "none".into()
                } else {
                    available
                }
            ),
        ));
    }
    validate_bottle(name, &specs).map_err(|e| {
        (
            "BottleInvalid".into(),
            e.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// A plan whose secrets could not be read: the Agent waits (for a Secret, or a forge that
/// would not mint a key) with `SecretsResolved=False` saying what it waits for.
async fn unresolved(
    ctx: &AgentCtx,
    agent: &Agent,
    mut r: Report,
    e: ResolveError,
) -> Result<Action, Error> {
    let (reason, waits_for, detail, retry) = match e {
        ResolveError::Secret(crate::secrets::SecretError::Missing(m)) => {
            ("SecretMissing", "a secret", m, 15)
        }
        ResolveError::DeployKey(m) => ("DeployKeyFailed", "a git-gate deploy key", m, 30),
        other => return Err(Error::Plan(other.to_string())),
    };
    if r.status.phase.is_none() {
        r.phase(AgentPhase::Pending);
    }
    r.condition("SecretsResolved", false, reason, &detail);
    r.condition("Ready", false, reason, &detail);
    r.status.message = Some(format!("waiting for {waits_for}: {detail}"));
    r.event(EventType::Warning, reason, detail);
    write_status(ctx, agent, r).await?;
    Ok(Action::requeue(Duration::from_secs(retry)))
}

async fn apply(agent: Arc<Agent>, ctx: Arc<AgentCtx>) -> Result<Action, Error> {
    let id = claim::runtime_id(&*ctx.backend, &agent);
    let generation = agent.metadata.generation;
    let mut r = Report {
        status: agent.status.clone().unwrap_or_default(),
        events: Vec::new(),
        generation,
    };
    if let Some(l) = &agent.spec.lifecycle
        && let Some(action) = lifecycle_due(&ctx, &agent, &id, l).await?
    {
        return Ok(action);
    }
    r.status.observed_generation = generation;
    r.status.backend = Some(ctx.backend.name().to_string());
    r.status.session_endpoint = ctx.session_endpoint.clone();
    // A member this runner never gave the Agent (one on another runner's engine, or named by
    // a status it did not write) is not its copy: it runs a bottle of its own, as it says.
    if r.status
        .bottle_copy
        .as_ref()
        .is_some_and(|c| c.uid != id.uid)
    {
        r.status.bottle_copy = None;
    }

    let bottle = match resolve_bottle(&ctx.bottles, &agent.spec.bottle_ref.name) {
        Ok(b) => b,
        Err((reason, message)) => {
            if r.status.phase.is_none() {
                r.phase(AgentPhase::Pending);
            }
            r.condition("Ready", false, &reason, &message);
            r.status.message = Some(message.clone());
            r.event(EventType::Warning, "BottleUnresolved", message);
            write_status(&ctx, &agent, r).await?;
            // Bottle changes reconcile the Agents that name them: nothing to poll for.
            return Ok(Action::await_change());
        }
    };
    let wanted = agent.spec.backend.unwrap_or_default();
    if !serves(wanted, ctx.backend.name()) {
        let m = format!(
            "spec.backend is {} but this controller runs the {} backend; the others are not available yet (valid here: auto, {})",
            backend_name(wanted),
            ctx.backend.name(),
            ctx.backend.name()
        );
        if r.status.phase.is_none() {
            r.phase(AgentPhase::Pending);
        }
        r.condition("Ready", false, "BackendUnavailable", &m);
        r.status.message = Some(m);
        write_status(&ctx, &agent, r).await?;
        return Ok(Action::await_change());
    }
    tracing::debug!("planning");
    // Approved proposals are this Agent's own layer over its Bottle (which stays untouched).
    let proposals = grants::of_agent(&ctx.client, &agent).await?;
    let now = jiff::Timestamp::now();
    let provider = match crate::provider::of_bottle(&bottle) {
        Ok(p) => p,
        Err(e) => {
            let m = e.to_string();
            r.phase(AgentPhase::Failed);
            r.condition("Ready", false, "ProviderInvalid", &m);
            r.status.message = Some(m);
            write_status(&ctx, &agent, r).await?;
            return Ok(Action::await_change());
        }
    };
    let (base, _) = plan::sidecar_policy(&bottle, provider.routes());
    let mut layer = grants::layer(&proposals, base.routes(), now);
    let bottle = grants::over(&bottle, &layer);
    let supervise = bottle.spec.supervise().then(|| ctx.backend.supervise_url());
    let planned = plan::plan(&agent, &bottle, provider.as_ref(), supervise.as_deref())
        .map_err(|e| Error::Plan(e.to_string()))?;
    let plan_hash = plan::pool_plan_hash(&planned);
    let resolved = match resolve::resolve(&ctx.client, &agent, &planned, provider.as_ref()).await {
        Ok(resolved) => resolved,
        Err(e) => return unresolved(&ctx, &agent, r, e).await,
    };
    let sidecar = resolved.sidecar;
    let mut agent_plan = planned.agent;
    agent_plan.secret_env = resolved.secret_env;
    agent_plan.credential_files = resolved.credential_files;
    r.condition(
        "SecretsResolved",
        true,
        "Resolved",
        "every secret source resolved",
    );

    if agent.spec.suspend == Some(true) {
        return suspend(&ctx, &agent, &id, r).await;
    }
    let id = match claim_member(&ctx, &agent, &id, &plan_hash, &mut r).await? {
        Some(member) => member,
        None => id,
    };

    // An approved capability: its image is built before it is used, so a Dockerfile that does
    // not build fails the proposal and the Agent keeps the image it has.
    if let Some((p, dockerfile, restart)) = grants::capability(&proposals) {
        let source = bb_backend::ImageSource::Capability {
            base: Box::new(agent_plan.image.clone()),
            dockerfile,
            restart,
        };
        let name = p.name_any();
        let built = match p.status.as_ref().and_then(|s| s.phase) {
            Some(bb_crds::proposal::ProposalPhase::Applied) => Ok(()),
            _ => build_image(&ctx, &agent, &id, &source, &r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if built.is_ok() {
            agent_plan.image = source;
            agent_plan.container_hash = plan::container_hash(&agent_plan);
        }
        layer.capability = Some((name, built));
    }

    if let (Some(uid), Ok(mut live)) = (agent.uid(), ctx.live_routes.lock()) {
        live.insert(uid, planned.policy.routes().to_vec());
    }
    // Cluster mode: planning read the API, which may have taken a while; a runner whose Lease
    // lapsed meanwhile creates nothing (its fence is tearing copies down).
    if ctx.claims.as_ref().is_some_and(|c| !c.heartbeat.held()) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if let Some(src) = &agent.spec.source
        && let Some(wait) = fork(&ctx, &agent, &id, &src.agent_ref.name, &mut r).await?
    {
        return Ok(wait);
    }
    let session_plan = SessionPlan {
        attach: provider.attach_command(&crate::provider::AgentView::of(&agent)),
        secret_env: agent_plan
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        workspace: agent_plan.workspace.is_some(),
    };
    let previous_grants = std::mem::replace(&mut r.status.grants, layer.included.clone());
    let driven = drive(
        &ctx,
        &agent,
        &id,
        (&sidecar, bottle.spec.secret_discovery.as_ref()),
        &agent_plan,
        &mut r,
    )
    .await;
    let supervise_dir = ctx.backend.supervise_dir(&id);
    let outcome = driven.as_ref().map(|_| ()).map_err(|e| e.to_string());
    for (t, reason, note) in grants::settle(
        &ctx.client,
        &proposals,
        &layer,
        &previous_grants,
        &supervise_dir,
        outcome.as_ref().map(|_| ()).map_err(String::as_str),
        now,
    )
    .await
    {
        r.event(t, reason, note);
    }
    // An expiring grant is withdrawn on time, not at the next resync.
    let resync = layer
        .next_expiry
        .and_then(|e| e.duration_since(jiff::Timestamp::now()).try_into().ok())
        .map_or(ctx.resync, |d: Duration| {
            d.min(ctx.resync) + Duration::from_millis(50)
        });
    match driven {
        Ok((endpoints, policy_hash)) => {
            // Sessions from now on run with what this container was made from.
            ctx.session_plans.set(&id.uid, session_plan);
            r.status.endpoints = Some(endpoints);
            // The sidecar confirmed the keyed hash, which covers the policy text: so it runs
            // exactly this text, whose plain hash is comparable with the Bottle's.
            r.status.applied_policy_hash = Some(sidecar.policy_hash());
            r.status.applied_credentials_hash = Some(policy_hash);
            snapshot_on_request(&ctx, &agent, &id, &mut r).await;
            if r.status.phase != Some(AgentPhase::Running) {
                r.status.started_at = Some(Time(jiff::Timestamp::now()));
            }
            r.phase(AgentPhase::Running);
            r.condition(
                "Ready",
                true,
                "Running",
                "the agent and its sidecar are running",
            );
            r.status.message = None;
            write_status(&ctx, &agent, r).await?;
            Ok(Action::requeue(resync))
        }
        Err(e) => {
            // Nothing new reached the sidecar: the grants it enforces are still the old ones.
            r.status.grants = previous_grants;
            let cond = condition_for(e.step);
            let msg = e.to_string();
            let key = key_of(&agent);
            let attempt = ctx.backoff.failures(&key) + 1;
            r.condition(cond, false, "StepFailed", &msg);
            // The note stays the same across attempts, so repeats fold into one event series.
            r.event(EventType::Warning, "StepFailed", msg.clone());
            let gives_up = ctx.backoff.last_attempt(&key);
            if gives_up {
                r.phase(AgentPhase::Failed);
                let m = format!(
                    "{msg}; gave up after {attempt} attempts. Fix the cause, then `bbctl resume agent/{}` to try again (any change to the Agent or its Bottle also does)",
                    agent.name_any()
                );
                r.condition("Ready", false, "RetriesExhausted", &m);
                r.status.message = Some(m);
            } else {
                // A retry after giving up (the user changed something) is pending again.
                if matches!(r.status.phase, None | Some(AgentPhase::Failed)) {
                    r.phase(AgentPhase::Pending);
                }
                r.condition("Ready", false, "StepFailed", &msg);
                r.status.message = Some(format!(
                    "{msg} (attempt {attempt} of {}, next in {}s)",
                    backoff::ATTEMPTS,
                    backoff::gap(attempt).as_secs()
                ));
            }
            write_status(&ctx, &agent, r).await?;
            // Only once the status says so: the error policy then waits for a change.
            if gives_up {
                ctx.backoff.give_up(&key, ctx.fingerprint(&agent));
            }
            Err(Error::Backend(e))
        }
    }
}

/// A new Agent of a Bottle with a warm pool takes a ready member instead of starting a bottle
/// of its own. Its status names the member at once, before anything of its own reaches it, and
/// the member's identity is the Agent's on the runtime from then on (`claim::runtime_id`).
async fn claim_member(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    plan_hash: &str,
    r: &mut Report,
) -> Result<Option<AgentId>, Error> {
    let s = &r.status;
    let fresh = s.bottle_copy.is_none()
        && s.started_at.is_none()
        && s.snapshot.is_none()
        && agent.spec.source.is_none();
    let bottle = &agent.spec.bottle_ref.name;
    // In cluster mode, only the members on this runner's engine.
    let runner = ctx.claims.as_ref().map(|c| c.me.id.as_str());
    let candidates = claim::candidates(&ctx.pools, &id.namespace, bottle, plan_hash, runner);
    if !fresh || candidates.is_empty() {
        return Ok(None);
    }
    // What a start that failed part-way left of its own keeps it on its own bottle.
    let own = ctx.backend.observe(id).await.map_err(Error::Backend)?;
    if own.sidecar_policy.is_some() || own.agent_container.is_some() || own.stopped_agent.is_some()
    {
        return Ok(None);
    }
    let Some(copy) = claim::claim(&ctx.client, candidates, plan_hash, runner).await? else {
        return Ok(None);
    };
    let member = AgentId {
        namespace: id.namespace.clone(),
        name: copy.name.clone(),
        uid: copy.uid.clone(),
    };
    // Before the status names it: a member the runner has no record of giving is never used.
    claim::record(&*ctx.backend, &member, &id.uid).map_err(|e| {
        Error::Backend(BackendError::new(
            Step::Provision,
            format!("recording the claim of member {}: {e}", member.name),
        ))
    })?;
    r.status.bottle_copy = Some(copy.clone());
    apply_status(ctx, agent, &r.status).await?;
    r.event(
        EventType::Normal,
        "Claimed",
        format!("claimed member {} of agentpool/{}", copy.name, copy.pool),
    );
    Ok(Some(member))
}

/// The condition a failed step reports on, besides `Ready`. Exhaustive on purpose: a new step
/// does not compile until it says where its failures show.
fn condition_for(step: Step) -> &'static str {
    match step {
        Step::Image => "ImagesReady",
        Step::Network | Step::Sidecar => "SidecarReady",
        Step::Policy => "PolicyApplied",
        Step::Agent | Step::Provision => "Provisioned",
        Step::Discover => "SecretsGuarded",
        Step::Connect
        | Step::Observe
        | Step::Snapshot
        | Step::Stop
        | Step::Teardown
        | Step::Sweep
        | Step::Session
        | Step::Exec => "Ready",
    }
}

/// The ordered steps. Each observes first; nothing is recreated that is already right.
async fn drive(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    (sidecar, discovery): (&bb_backend::SidecarPlan, Option<&SecretDiscovery>),
    plan: &bb_backend::AgentPlan,
    r: &mut Report,
) -> Result<(SidecarEndpoints, String), BackendError> {
    let be = &*ctx.backend;
    // In cluster mode a missing agent container is one handed over from another runner (or
    // lost): its snapshot, when there is one, is where it was.
    // A resume stays Suspended until its agent container exists: one interrupted part-way
    // (a failed create, a restart) retries from the snapshot, never from a fresh image.
    let unsuspending = r.status.phase == Some(AgentPhase::Suspended);
    // A fork starts from the snapshot of its source (`fork`), and so does a replacement of it.
    let mut resuming = unsuspending || ctx.claims.is_some() || agent.spec.source.is_some();
    let seen = be.observe(id).await?;
    // Provisioned with other inputs than the plan's: a pool member's are the Bottle's alone and
    // take the claimant's own; any other container is replaced, as one whose image changed is.
    let stale_inputs = seen
        .provisioned
        .as_deref()
        .is_some_and(|p| p != plan.inputs_hash && p != bb_backend::provision::POOL_MEMBER);
    // A kept container whose plan is unchanged starts again, beside its sidecar (below); one
    // whose plan changed meanwhile carries its files into its replacement through a snapshot.
    let mut restart = false;
    if seen.agent_container.is_none()
        && let Some(kept) = seen.stopped_agent.clone()
    {
        if kept == plan.container_hash && !stale_inputs {
            restart = true;
        } else {
            let snap = be.snapshot(id).await?;
            r.event(
                EventType::Normal,
                "Snapshotted",
                format!("snapshot {snap} of the stopped agent container, to carry its files into its replacement"),
            );
            r.status.snapshot = Some(snap);
            resuming = true;
        }
    }
    // What earlier reconciles brought up, whether or not they finished: a piece that was up
    // and is gone now was removed out of band, and that gets a warning event.
    let had_sidecar = conditions::is_true(&r.status.conditions, "SidecarReady");
    let had_agent = conditions::is_true(&r.status.conditions, "Provisioned");

    let current = seen.agent_container.is_some() || restart;
    let recreate = seen
        .agent_container
        .as_deref()
        .is_some_and(|h| h != plan.container_hash || stale_inputs);
    let create_agent = !current || recreate;

    if seen.image.is_none() && !unsuspending {
        r.phase(AgentPhase::Building);
    }
    // A current agent container already runs its image: building (for a Dockerfile, packing
    // and hashing its whole context) is only needed when a container is about to be made, not
    // on every resync.
    let image = match (&seen.image, create_agent) {
        (Some(running), false) => running.clone(),
        _ => build_image(ctx, agent, id, &plan.image, r).await?,
    };
    r.condition("ImagesReady", true, "Ready", format!("image {image}"));

    be.ensure_network(id).await?;
    if seen.sidecar_policy.is_none() {
        if !unsuspending {
            r.phase(AgentPhase::Starting);
        }
        if had_sidecar {
            r.event(
                EventType::Warning,
                "SidecarRecreated",
                "the sidecar was gone; recreated it",
            );
        }
    }
    if create_agent && !unsuspending && r.status.phase != Some(AgentPhase::Starting) {
        r.phase(AgentPhase::Starting);
    }
    // Coming out of suspension: the snapshot holds the agent's state; a pruned one falls back
    // to a fresh image, and an event says the state is gone.
    let mut run_image = image.clone();
    if create_agent
        && resuming
        && !recreate
        && let Some(snap) = r.status.snapshot.clone()
    {
        if be.has_image(&snap).await? {
            run_image = snap;
        } else {
            r.event(
                EventType::Warning,
                "SnapshotMissing",
                format!("snapshot {snap} no longer exists; starting from {image}"),
            );
        }
    }

    // A container made just now starts unprovisioned; a kept one is as observed.
    let provision = create_agent || seen.provisioned.as_deref() != Some(&plan.inputs_hash);
    // The secrets in what provisioning copies in go to the sidecar with its credentials. A
    // container resumed from its snapshot still holds the earlier copy: its secrets stay guarded.
    let from_snapshot = run_image != image;
    let guarded = guard_secrets(be, id, plan, discovery, provision, from_snapshot, r).await?;
    let mut sidecar = sidecar.clone();
    if !guarded.is_empty() {
        sidecar.secret_files.insert(
            GUARDED_SECRETS_FILE.to_string(),
            SecretBytes::new(bb_crds::policy::guarded::to_file(&guarded)),
        );
    }
    let sidecar = &sidecar;
    // Covers the token values and the guarded secrets: a rotated Secret or a new workspace
    // differs here and is delivered below.
    let policy_hash = be.policy_hash(id, sidecar)?;
    // Copied secrets reach the agent only once its sidecar guards them.
    let provision_after_sidecar = provision && !guarded.is_empty();

    // The sidecar and the agent container need only the network, not each other: bring them
    // up side by side (an agent without its sidecar has no way out, so nothing is exposed).
    let sidecar_side = async {
        let endpoints = be.ensure_sidecar(id, sidecar, &policy_hash).await?;
        // A sidecar that was running when observed is the one ensure_sidecar kept; only a new
        // one needs looking at again.
        let loaded = match &seen.sidecar_policy {
            Some(p) => Some(p.clone()),
            None => be.observe(id).await?.sidecar_policy,
        };
        let reloaded = loaded.as_deref() != Some(policy_hash.as_str());
        if reloaded {
            be.apply_policy(id, sidecar, &policy_hash).await?;
        }
        Ok::<_, BackendError>((endpoints, reloaded))
    };
    let agent_side = async {
        let replaced = match restart {
            true => start_kept(be, id, plan).await?,
            false => None,
        };
        if create_agent {
            be.ensure_agent(id, &run_image, plan).await?;
        }
        if provision && !provision_after_sidecar {
            be.provision(id, plan).await?;
        }
        Ok::<_, BackendError>((provision, replaced))
    };
    let (sidecar_done, agent_done) = futures_util::future::join(sidecar_side, agent_side).await;
    let (mut agent_done, replaced) = match agent_done {
        Ok((provisioned, replaced)) => (Ok(provisioned), replaced),
        Err(e) => (Err(e), None),
    };
    // A replacement made from the kept container's snapshot is provisioned once the sidecar
    // guards what it copies, like any new container.
    let provision_later = provision_after_sidecar || (replaced.is_some() && !provision);
    if provision_later && agent_done.is_ok() {
        agent_done = match &sidecar_done {
            Ok(_) => be.provision(id, plan).await.map(|()| true),
            Err(_) => Err(BackendError::new(
                Step::Provision,
                "waiting for the sidecar to guard the copied secrets",
            )),
        };
    }
    if restart && agent_done.is_ok() {
        restarted(r, replaced, unsuspending);
    }

    let endpoints = match sidecar_done {
        Ok((endpoints, reloaded)) => {
            r.condition("SidecarReady", true, "Running", "the sidecar is running");
            // The plain policy hash (comparable with the Bottle's), not the keyed hash that
            // also covers credentials.
            let plain = sidecar.policy_hash();
            if reloaded {
                r.event(
                    EventType::Normal,
                    "PolicyApplied",
                    format!("sidecar reloaded policy {plain}"),
                );
            }
            r.condition("PolicyApplied", true, "Applied", format!("policy {plain}"));
            Some(endpoints)
        }
        Err(e) => {
            // Reported after the agent side's outcome is recorded.
            agent_outcome(r, &agent_done, create_agent, recreate, had_agent);
            return Err(e);
        }
    };
    agent_outcome(r, &agent_done, create_agent, recreate, had_agent);
    agent_done?;
    Ok((endpoints.unwrap_or_default(), policy_hash))
}

/// Starts a kept, stopped agent container again. One the runtime will not start is replaced
/// by a container made from a snapshot of it, so no file is lost: returns the snapshot and why.
async fn start_kept(
    be: &dyn Backend,
    id: &AgentId,
    plan: &bb_backend::AgentPlan,
) -> Result<Option<(String, String)>, BackendError> {
    let Err(why) = be.start_agent(id).await else {
        return Ok(None);
    };
    let snap = be.snapshot(id).await?;
    be.ensure_agent(id, &snap, plan).await?;
    Ok(Some((snap, why.to_string())))
}

/// Events (and the snapshot) for a kept container brought back by `start_kept`.
fn restarted(r: &mut Report, replaced: Option<(String, String)>, unsuspending: bool) {
    match replaced {
        Some((snap, why)) => {
            r.event(
                EventType::Warning,
                "RestartFailed",
                format!("{why}; made a new agent container from its snapshot {snap}"),
            );
            r.status.snapshot = Some(snap);
        }
        None if unsuspending => r.event(
            EventType::Normal,
            "Resumed",
            "started the kept agent container",
        ),
        None => r.event(
            EventType::Warning,
            "AgentRestarted",
            "the agent container had stopped; started it again",
        ),
    }
}

/// The secrets the sidecar guards for what the agent was given: discovered again whenever the
/// agent is provisioned (and stored in the Agent's directory on the runner), otherwise the set
/// stored then. Discovery reads the host's files, off the async threads.
async fn guard_secrets(
    be: &dyn Backend,
    id: &AgentId,
    plan: &bb_backend::AgentPlan,
    settings: Option<&SecretDiscovery>,
    provision: bool,
    keep_previous: bool,
    r: &mut Report,
) -> Result<Vec<GuardedSecret>, BackendError> {
    let dir = be.agent_dir(id);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        BackendError::new(Step::Discover, format!("{what} the guarded secrets: {e}"))
    };
    let stored = discovery::load(&dir).map_err(|e| fail("reading", &e))?;
    if !provision && let Some(stored) = stored {
        return Ok(stored);
    }
    let (plan, root, settings) = (plan.clone(), be.skills_root(), settings.cloned());
    let found =
        tokio::task::spawn_blocking(move || discovery::discover(&plan, &root, settings.as_ref()))
            .await
            .map_err(|e| fail("finding", &e))??;
    let mut secrets = found.secrets.clone();
    if keep_previous {
        for s in stored.into_iter().flatten() {
            if !secrets.iter().any(|k| k.value == s.value) {
                secrets.push(s);
            }
        }
    }
    discovery::store(&dir, &secrets).map_err(|e| fail("storing", &e))?;
    let summary = found.summary();
    r.status.guarded_secrets = Some(GuardedSecrets {
        count: secrets.len() as i64,
        found: secrets
            .iter()
            .take(50)
            .map(|s| GuardedSecretLocation {
                path: s.path.clone(),
                line: i64::from(s.line),
                kind: s.kind.clone(),
            })
            .collect(),
        files_skipped: Some((found.skipped_large + found.skipped_binary) as i64).filter(|n| *n > 0),
    });
    r.condition("SecretsGuarded", true, "Discovered", &summary);
    r.event(EventType::Normal, "SecretsGuarded", summary);
    Ok(secrets)
}

/// Conditions and events for what the agent side of `drive` did.
fn agent_outcome(
    r: &mut Report,
    done: &Result<bool, BackendError>,
    created: bool,
    recreate: bool,
    had_agent: bool,
) {
    let Ok(provisioned) = done else { return };
    if created && recreate {
        r.event(
            EventType::Normal,
            "Recreated",
            "the agent container changed (provider, image, env, runtime, or the Agent's prompt, workspace, skills or identity); recreated it",
        );
    } else if created && had_agent {
        r.event(
            EventType::Warning,
            "AgentRecreated",
            "the agent container was gone; recreated it",
        );
    }
    if *provisioned {
        r.event(EventType::Normal, "Provisioned", "provisioned the agent");
    }
    r.condition(
        "Provisioned",
        true,
        "Provisioned",
        "CA, proxy, prompt and workspace are in place",
    );
}

/// Answers a new `spec.snapshotRequest` of a running Agent: the snapshot goes to
/// `status.snapshot`, the request it answers to `status.snapshotRequestHandled`. A failure is a
/// warning event, and the next reconcile tries again.
async fn snapshot_on_request(ctx: &AgentCtx, agent: &Agent, id: &AgentId, r: &mut Report) {
    let Some(request) = agent.spec.snapshot_request.clone() else {
        return;
    };
    if r.status.snapshot_request_handled.as_deref() == Some(request.as_str()) {
        return;
    }
    match ctx.backend.snapshot(id).await {
        Ok(image) => {
            r.event(
                EventType::Normal,
                "Snapshotted",
                format!("snapshot {image} (request {request})"),
            );
            r.status.snapshot = Some(image);
            r.status.snapshot_request_handled = Some(request);
        }
        Err(e) => r.event(
            EventType::Warning,
            "SnapshotFailed",
            format!("request {request}: {e}"),
        ),
    }
}

/// `spec.source.agentRef`: before this Agent's first container, a snapshot of the source
/// Agent's container becomes its `status.snapshot` (which `drive` starts it from), and the
/// secrets the source's sidecar guards are guarded here too: the copy holds the same files.
/// `Some(action)` while the source cannot be forked, with a condition saying why.
async fn fork(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    source: &str,
    r: &mut Report,
) -> Result<Option<Action>, Error> {
    if r.status.snapshot.is_some() {
        return Ok(None);
    }
    let seen = ctx.backend.observe(id).await.map_err(Error::Backend)?;
    if seen.agent_container.is_some() || seen.stopped_agent.is_some() {
        return Ok(None);
    }
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let forked = match api.get_opt(source).await? {
        None => Err((
            "SourceNotFound",
            format!("Agent '{source}' not found in namespace '{}'", id.namespace),
        )),
        Some(a) if a.spec.bottle_ref != agent.spec.bottle_ref => Err((
            "SourceInOtherBottle",
            format!(
                "Agent '{source}' runs in Bottle '{}', this one in '{}': a fork runs in its source's Bottle",
                a.spec.bottle_ref.name, agent.spec.bottle_ref.name
            ),
        )),
        Some(a) if !held_here(ctx, &a) => Err((
            "SourceElsewhere",
            format!(
                "Agent '{source}' runs on another runner: a fork is made where its source runs"
            ),
        )),
        Some(a) => {
            let from = claim::runtime_id(&*ctx.backend, &a);
            match ctx.backend.fork_snapshot(&from, id).await {
                Ok(snap) => copy_guarded(&*ctx.backend, &from, id)
                    .map(|()| snap)
                    .map_err(|e| ("SourceNotForkable", e)),
                Err(e) => Err((
                    "SourceNotForkable",
                    format!("forking Agent '{source}': {e}"),
                )),
            }
        }
    };
    match forked {
        Ok(snap) => {
            r.event(
                EventType::Normal,
                "Forked",
                format!("snapshot {snap} of agent/{source}; starting from it"),
            );
            r.status.snapshot = Some(snap);
            Ok(None)
        }
        Err((reason, why)) => {
            let m = format!("spec.source.agentRef: {why}");
            if r.status.phase.is_none() {
                r.phase(AgentPhase::Pending);
            }
            r.condition("Ready", false, reason, &m);
            r.status.message = Some(m.clone());
            r.event(EventType::Warning, reason, m);
            let report = Report {
                status: r.status.clone(),
                events: std::mem::take(&mut r.events),
                generation: r.generation,
            };
            write_status(ctx, agent, report).await?;
            // The source may appear, start or move: look again.
            Ok(Some(Action::requeue(Duration::from_secs(10))))
        }
    }
}

/// Whether this runner holds `a` (always, on a local control plane).
fn held_here(ctx: &AgentCtx, a: &Agent) -> bool {
    match &ctx.claims {
        Some(c) => a.status.as_ref().and_then(|s| s.runner.as_deref()) == Some(c.me.id.as_str()),
        None => true,
    }
}

/// Guards in `into` the secrets `from`'s sidecar guards (what discovery stored for it), beside
/// any `into` already has: a fork holds its source's files.
fn copy_guarded(be: &dyn Backend, from: &AgentId, into: &AgentId) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} the source's guarded secrets: {e}");
    let theirs = discovery::load(&be.agent_dir(from)).map_err(|e| fail("reading", e))?;
    let dir = be.agent_dir(into);
    let mut ours = discovery::load(&dir)
        .map_err(|e| fail("reading", e))?
        .unwrap_or_default();
    for s in theirs.into_iter().flatten() {
        if !ours.iter().any(|k| k.value == s.value) {
            ours.push(s);
        }
    }
    discovery::store(&dir, &ours).map_err(|e| fail("storing", e))
}

/// `spec.lifecycle`: deletes or suspends the Agent when that is due (returning what to do
/// next), else brings its reconcile back at its next deadline. Idleness is judged from this
/// runner's own signals: its sessions and the sidecar's request count, never the agent.
async fn lifecycle_due(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    l: &Lifecycle,
) -> Result<Option<Action>, Error> {
    let phase = agent.status.as_ref().and_then(|s| s.phase);
    let running = phase == Some(AgentPhase::Running) && agent.spec.suspend != Some(true);
    let sessions = ctx.session_plans.activity.of(&id.uid);
    let quiet_for = if running && l.idle_suspend_after.is_some() {
        match ctx.backend.egress_count(id).await {
            Ok(Some(count)) => {
                let moved = ctx.egress_seen.moved_at(&id.uid, count);
                Some(sessions.map_or(moved, |u| u.since.max(moved)).elapsed())
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "reading the sidecar's request count failed");
                None
            }
        }
    } else {
        None
    };
    let created = agent.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let age = created
        .and_then(|c| jiff::Timestamp::now().duration_since(c).try_into().ok())
        .unwrap_or_default();
    let seen = lifecycle::Seen {
        age,
        open_sessions: sessions.map_or(0, |u| u.open),
        quiet_for,
        exited: sessions.is_some_and(|u| u.exited),
        running,
    };
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &id.namespace);
    match lifecycle::judge(l, &seen) {
        lifecycle::Verdict::Keep(None) => Ok(None),
        lifecycle::Verdict::Keep(Some(wait)) => {
            // A little after the deadline, so the clock has surely passed it.
            let at = tokio::time::Instant::now() + wait + Duration::from_millis(100);
            let me = kube::runtime::reflector::ObjectRef::from_obj(agent);
            ctx.session_plans.activity.wake_at(&id.uid, me, at);
            Ok(None)
        }
        lifecycle::Verdict::Suspend(why) => {
            let patch = json!({"spec": {"suspend": true}});
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            api.patch(&id.name, &params, &Patch::Merge(&patch)).await?;
            ctx.egress_seen.forget(&id.uid);
            let note =
                format!("suspending: {why}; `bbctl attach` or `bbctl resume` starts it again");
            publish(ctx, agent, vec![(EventType::Normal, "IdleSuspended", note)]).await;
            Ok(Some(Action::await_change()))
        }
        lifecycle::Verdict::Delete(why) => {
            expire(ctx, agent, id, l.keep_snapshot == Some(true), &why).await?;
            api.delete(&id.name, &Default::default()).await?;
            Ok(Some(Action::await_change()))
        }
    }
}

/// Before a lifecycle deletion: keeps the agent's files when asked (and refuses to go on when
/// that fails: the retry tries again), and says why the Agent goes in an `Expired` event.
async fn expire(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    keep: bool,
    why: &str,
) -> Result<(), Error> {
    let seen = ctx.backend.observe(id).await.map_err(Error::Backend)?;
    let exists = seen.agent_container.is_some() || seen.stopped_agent.is_some();
    let kept = match keep && exists {
        false => String::new(),
        true => match ctx.backend.keep_snapshot(id).await {
            Ok(image) => format!("; kept snapshot {image}"),
            Err(e) => {
                let note = format!("not deleting ({why}): keeping its snapshot failed: {e}");
                let event = (EventType::Warning, "KeepSnapshotFailed", note);
                publish(ctx, agent, vec![event]).await;
                return Err(Error::Backend(e));
            }
        },
    };
    let note = format!("deleting: {why}{kept}");
    publish(ctx, agent, vec![(EventType::Normal, "Expired", note)]).await;
    Ok(())
}

async fn suspend(
    ctx: &AgentCtx,
    agent: &Agent,
    id: &AgentId,
    mut r: Report,
) -> Result<Action, Error> {
    let be = &*ctx.backend;
    ctx.egress_seen.forget(&id.uid);
    let seen = be.observe(id).await.map_err(Error::Backend)?;
    if seen.agent_container.is_some() {
        // A runtime that keeps a stopped container resumes it with a start: no image needed.
        // In cluster mode the next runner may be on another engine, and only an image travels.
        if be.restarts_stopped_agents() && ctx.claims.is_none() {
            be.stop(id).await.map_err(Error::Backend)?;
            r.event(
                EventType::Normal,
                "Suspended",
                "stopped; the agent container is kept for resume",
            );
        } else {
            let snap = be.snapshot(id).await.map_err(Error::Backend)?;
            be.stop(id).await.map_err(Error::Backend)?;
            r.event(
                EventType::Normal,
                "Suspended",
                format!("snapshot {snap}; stopped"),
            );
            r.status.snapshot = Some(snap);
        }
    }
    r.phase(AgentPhase::Suspended);
    r.condition("Ready", false, "Suspended", "spec.suspend is true");
    // Stopped on purpose: a resume that starts them again is not a repair (no warnings).
    for cond in ["SidecarReady", "Provisioned"] {
        r.condition(
            cond,
            false,
            "Suspended",
            "stopped while suspended; started again on resume",
        );
    }
    write_status(ctx, agent, r).await?;
    Ok(Action::await_change())
}

async fn cleanup(agent: Arc<Agent>, ctx: Arc<AgentCtx>) -> Result<Action, Error> {
    let id = claim::runtime_id(&*ctx.backend, &agent);
    ctx.backend.teardown(&id).await.map_err(Error::Backend)?;
    // Runtime state goes by the runtime identity (a claimed pool member's), what the API
    // side keeps by the Agent's own uid.
    let uid = agent.uid().unwrap_or_default();
    if id.uid != uid {
        // What a start of its own left before it claimed a member (a network, say).
        let own = AgentId {
            name: agent.name_any(),
            uid: uid.clone(),
            ..id.clone()
        };
        ctx.backend.teardown(&own).await.map_err(Error::Backend)?;
    }
    super::metrics::global().set_phase(&uid, None);
    ctx.session_plans.remove(&id.uid);
    ctx.egress_seen.forget(&id.uid);
    if let Ok(mut live) = ctx.live_routes.lock() {
        live.remove(&uid);
    }
    // After the sidecar is gone, so nothing pushes with a key being revoked. A key the forge
    // would not revoke is reported, never dropped silently, and deletion goes on.
    // A claimed pool member's keys were minted under its identity, the Agent's own under its.
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();
    let owners: BTreeSet<&str> = [id.uid.as_str(), uid.as_str()].into();
    for owner in owners {
        events.extend(
            crate::git_gate::gitea::revoke_all(&ctx.client, owner)
                .await
                .into_iter()
                .map(|why| (EventType::Warning, "DeployKeyRevokeFailed", why)),
        );
    }
    // A cluster's garbage collector follows the owner reference; the local control plane has
    // none, so the Agent's proposals go here (a recreated Agent of the same name starts clean).
    if let Err(e) = grants::delete_all(&ctx.client, &agent).await {
        tracing::warn!(agent = %id, error = %e, "deleting the Agent's proposals failed");
    }
    events.push((
        EventType::Normal,
        "Deleted",
        "removed every backend resource".into(),
    ));
    publish(&ctx, &agent, events).await;
    Ok(Action::await_change())
}
