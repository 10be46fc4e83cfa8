//! Mirrors each running Agent's supervise queue into `Proposal` objects: the sidecar holds no
//! API credentials, so the runner that runs the Agent raises its proposals for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb_crds::egress::EgressRoute;
use bb_crds::policy::proposal::{
    QueueDecision, QueuedProposal, compare, parse_proposed_routes, reduce, routes_yaml,
};
use bb_crds::proposal::{AgentRef, ProposalPhase, ProposalSpec, ProposalStatus, ProposalTool};
use bb_crds::{Agent, Proposal};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::grants::AGENT_LABEL;
use super::queue;
use bb_backend::Backend;

/// How often the queues are read: a proposal shows in `kubectl get proposals` within this.
const TICK: Duration = Duration::from_millis(100);

/// What the mirror needs from the Agent reconciler: the routes each Agent's sidecar enforces
/// (to diff a proposal against), by Agent uid.
pub type LiveRoutes = Arc<Mutex<HashMap<String, Vec<EgressRoute>>>>;

/// The Proposal object for a queued proposal of `agent`. An egress proposal is reduced to what
/// it changes against the `live` routes (an agent may send the whole document it listed): the
/// human approves, and the grant holds, that and nothing else. `Err` says why there is nothing
/// to propose.
pub fn proposal_object(
    agent: &Agent,
    q: &QueuedProposal,
    tool: ProposalTool,
    live: &[EgressRoute],
) -> Result<Proposal, String> {
    let mut content = q.proposed_file.clone();
    let mut adds = Vec::new();
    if tool.is_egress()
        && let Ok(proposed) = parse_proposed_routes(&q.proposed_file)
    {
        let reduced = reduce(live, &proposed);
        if reduced.routes.is_empty() {
            return Err(
                "nothing new: every route you proposed is already allowed as proposed".into(),
            );
        }
        content = routes_yaml(&reduced.routes);
        adds = reduced.adds;
    }
    let agent_name = agent.name_any();
    let mut p = Proposal::new(
        &format!("{agent_name}-{}", q.id),
        ProposalSpec {
            agent_ref: AgentRef {
                name: agent_name.clone(),
            },
            tool,
            content,
            justification: q.justification.clone(),
            repo: q.repo.clone(),
            queue_id: q.id.clone(),
            decision: None,
            adds,
        },
    );
    p.metadata.namespace = agent.namespace();
    p.metadata.labels = Some([(AGENT_LABEL.to_string(), agent_name)].into());
    // Deleting the Agent deletes its proposals (in a cluster, by garbage collection).
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: bb_crds::API_VERSION.into(),
        kind: "Agent".into(),
        name: agent.name_any(),
        uid: agent.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: None,
    }]);
    Ok(p)
}

/// The status a freshly mirrored proposal starts with: pending, with its diff and reach.
pub fn initial_status(p: &Proposal, live: &[EgressRoute]) -> ProposalStatus {
    let mut st = ProposalStatus {
        phase: Some(ProposalPhase::Pending),
        observed_generation: p.meta().generation,
        ..Default::default()
    };
    match p.spec.tool {
        t if t.is_egress() => {
            if let Ok(routes) = parse_proposed_routes(&p.spec.content) {
                let diff = compare(live, &routes);
                st.diff = Some(diff.text());
                st.reach = diff.reach();
            }
        }
        ProposalTool::CapabilityBlock => {
            st.reach = vec!["a new image for this agent, built by the runner's engine (its RUN steps reach the network builds get, not the sidecar's); whatever it installs runs inside the bottle from the next start".into()];
        }
        _ => {
            st.reach = vec![format!(
                "the push to {} goes upstream with the findings listed",
                p.spec.repo.as_deref().unwrap_or("the repository")
            )];
        }
    }
    st
}

/// What the mirror works with: the API, who it reports as, the runtime (for each Agent's
/// queue directory) and the routes each sidecar enforces.
pub struct MirrorCtx<'a> {
    pub client: &'a kube::Client,
    pub reporter: &'a Reporter,
    pub backend: &'a dyn Backend,
    pub live_routes: &'a LiveRoutes,
}

impl std::fmt::Debug for MirrorCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorCtx")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

/// Reads every queue each tick until `shutdown`; each proposal is mirrored once.
pub async fn run(
    ctx: MirrorCtx<'_>,
    agents: Store<Agent>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (client, reporter) = (ctx.client, ctx.reporter);
    let mut mirrored: BTreeSet<(String, String)> = BTreeSet::new();
    let pass = async {
        loop {
            for agent in agents.state() {
                let Some(uid) = agent.uid() else { continue };
                let supervised = agent
                    .status
                    .as_ref()
                    .and_then(|s| s.endpoints.as_ref())
                    .is_some_and(|e| e.supervise.is_some());
                if !supervised || agent.meta().deletion_timestamp.is_some() {
                    continue;
                }
                let id = crate::reconcile::claim::runtime_id(ctx.backend, &agent);
                let sdir = ctx.backend.supervise_dir(&id);
                let dir = super::queue_dir(&sdir);
                let waiting = queue::waiting(&dir);
                // Forget what left the queue, so the set stays as small as the queues.
                mirrored.retain(|(u, i)| *u != uid || waiting.iter().any(|q| q.id == *i));
                for q in waiting {
                    if mirrored.contains(&(uid.clone(), q.id.clone())) {
                        continue;
                    }
                    let routes = ctx
                        .live_routes
                        .lock()
                        .ok()
                        .and_then(|m| m.get(&uid).cloned())
                        .unwrap_or_default();
                    if mirror_one(client, reporter, &agent, &sdir, &q, &routes).await {
                        mirrored.insert((uid.clone(), q.id.clone()));
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    };
    tokio::select! {
        () = pass => {}
        () = shutdown => {}
    }
}

/// Creates the Proposal for `q`; true once it exists (or can never be created).
async fn mirror_one(
    client: &kube::Client,
    reporter: &Reporter,
    agent: &Agent,
    supervise_dir: &std::path::Path,
    q: &QueuedProposal,
    live: &[EgressRoute],
) -> bool {
    let dir = &super::queue_dir(supervise_dir);
    let refuse = |why: String| {
        tracing::warn!(agent = %agent.name_any(), proposal = %q.id, "refusing a proposal: {why}");
        let _ = queue::respond(
            dir,
            &q.id,
            &QueueDecision {
                status: "rejected".into(),
                reason: Some(why),
            },
        );
    };
    let Some(tool) = ProposalTool::parse(&q.tool) else {
        refuse(format!("unknown tool '{}'", q.tool));
        return true;
    };
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Proposal> = Api::namespaced(client.clone(), &ns);
    let p = match proposal_object(agent, q, tool, live) {
        Ok(p) => p,
        Err(why) => {
            refuse(why);
            return true;
        }
    };
    let created = match api.create(&PostParams::default(), &p).await {
        Ok(created) => created,
        Err(kube::Error::Api(e)) if e.code == 409 => return true,
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
            refuse(format!("the API refused it: {}", e.message));
            return true;
        }
        Err(e) => {
            tracing::warn!(agent = %agent.name_any(), error = %e, "creating a Proposal failed; retrying");
            return false;
        }
    };
    let status = initial_status(&created, live);
    let patch = serde_json::json!({ "status": status });
    if let Err(e) = api
        .patch_status(
            &created.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(proposal = %created.name_any(), error = %e, "writing a proposal's status failed");
    }
    tracing::info!(agent = %agent.name_any(), proposal = %created.name_any(), tool = tool.as_str(), "proposal raised");
    super::audit::append(
        &super::audit_file(supervise_dir),
        &super::audit::AuditRecord::new(
            &created.name_any(),
            tool.as_str(),
            "raised",
            &agent.name_any(),
        )
        .reason(Some(&bb_crds::policy::untrusted::one_line(
            &q.justification,
            bb_crds::policy::untrusted::MAX_CHARS,
        )))
        .change(status.reach.clone()),
    );
    let recorder = Recorder::new(client.clone(), reporter.clone());
    let note = format!(
        "{} proposal {}: {}",
        tool.as_str(),
        created.name_any(),
        bb_crds::policy::untrusted::one_line(&q.justification, 300)
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "ProposalRaised".into(),
        note: Some(note.chars().take(1024).collect()),
        action: "ProposalRaised".into(),
        secondary: Some(created.object_ref(&())),
    };
    if let Err(e) = recorder.publish(&ev, &agent.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
    true
}
