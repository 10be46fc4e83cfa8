//! Decided Proposals and their effect: approved egress proposals as the Agent's own policy layer
//! over its Bottle, and each proposal's status and queue answer once the sidecar enforces it.

use std::path::Path;

use bb_crds::ResolvedBottle;
use bb_crds::egress::EgressRoute;
use bb_crds::policy::proposal::{QueueDecision, compare, parse_proposed_routes};
use bb_crds::proposal::{ProposalPhase, ProposalStatus, ProposalTool, Verdict};
use bb_crds::{Agent, Proposal};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::audit::{self, AuditRecord};
use super::queue;

/// Label on every Proposal naming its Agent.
pub const AGENT_LABEL: &str = "bot-bottle.dev/agent";

/// An event the Agent reconciler publishes.
pub type Note = (EventType, &'static str, String);

/// The Agent's approved egress grants, ready to merge over its Bottle's routes.
#[derive(Debug, Default)]
pub struct Layer {
    pub routes: Vec<EgressRoute>,
    /// Proposals whose routes are in `routes`.
    pub included: Vec<String>,
    /// Approved proposals that cannot be applied, and why.
    pub invalid: Vec<(String, String)>,
    /// The earliest time an included grant expires.
    pub next_expiry: Option<Timestamp>,
    /// The approved capability-block proposal the agent's image is built from, and whether
    /// that image built (its error otherwise: the Agent keeps its image).
    pub capability: Option<(String, Result<(), String>)>,
}

/// The capability-block proposal an Agent's image follows: the latest approved one that has
/// not failed to build. With it, its Dockerfile and whether to restart now.
pub fn capability(proposals: &[Proposal]) -> Option<(&Proposal, String, bool)> {
    proposals
        .iter()
        .rev()
        .filter(|p| p.spec.tool == ProposalTool::CapabilityBlock)
        .filter(|p| p.status.as_ref().and_then(|s| s.phase) != Some(ProposalPhase::Failed))
        .find_map(|p| {
            let d = p.spec.decision.as_ref()?;
            (d.verdict == Verdict::Approved).then(|| {
                (
                    p,
                    d.content.clone().unwrap_or_else(|| p.spec.content.clone()),
                    d.restart == Some(true),
                )
            })
        })
}

/// The Proposals of `agent` (same namespace, same Agent uid).
pub async fn of_agent(client: &kube::Client, agent: &Agent) -> Result<Vec<Proposal>, kube::Error> {
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Proposal> = Api::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{AGENT_LABEL}={}", agent.name_any()));
    let uid = agent.uid();
    let mut items: Vec<Proposal> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|p| {
            // A Proposal left by an earlier Agent of the same name grants nothing to this one.
            p.owner_references()
                .iter()
                .all(|o| Some(&o.uid) == uid.as_ref())
                && p.spec.agent_ref.name == agent.name_any()
        })
        .collect();
    items.sort_by_key(|p| {
        (
            p.spec
                .decision
                .as_ref()
                .and_then(|d| d.decided_at.as_ref().map(|t| t.0)),
            p.creation_timestamp().map(|t| t.0),
        )
    });
    Ok(items)
}

/// Deletes the Proposals of `agent` (this Agent, by uid).
pub async fn delete_all(client: &kube::Client, agent: &Agent) -> Result<(), kube::Error> {
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Proposal> = Api::namespaced(client.clone(), &ns);
    for p in of_agent(client, agent).await? {
        match api.delete(&p.name_any(), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// When an applied grant of `p` expires, if it does.
fn expiry(p: &Proposal) -> Option<Timestamp> {
    let after = p.spec.decision.as_ref()?.expires_after.as_deref()?;
    let applied = p.status.as_ref()?.applied_at.as_ref()?.0;
    let d = bb_crds::duration::parse_expiry(after).ok()?;
    let span = jiff::SignedDuration::try_from(d).ok()?;
    applied.checked_add(span).ok()
}

fn approved_egress(p: &Proposal) -> bool {
    p.spec.tool.is_egress()
        && p.spec
            .decision
            .as_ref()
            .is_some_and(|d| d.verdict == Verdict::Approved)
}

/// The layer of `proposals` over `bottle_routes` at `now`: each approved, unexpired egress
/// proposal's routes that differ from the Bottle's, later decisions over earlier ones. A grant's
/// route stands on what it changed: a host it added itself, a host the Bottle still allows, or
/// a host an earlier grant still in force added. So an expired grant takes along every later
/// change to its host, and a route removed from the Bottle is gone whatever grants changed it.
/// `bottle` with `layer`'s routes merged into its egress (the Bottle object stays untouched).
pub fn over(bottle: &ResolvedBottle, layer: &Layer) -> ResolvedBottle {
    let mut bottle = bottle.clone();
    if !layer.routes.is_empty() {
        let egress = bottle.spec.egress.get_or_insert_with(Default::default);
        bb_crds::policy::proposal::merge(egress.routes.get_or_insert_with(Vec::new), &layer.routes);
    }
    bottle
}

pub fn layer(proposals: &[Proposal], bottle_routes: &[EgressRoute], now: Timestamp) -> Layer {
    let mut out = Layer::default();
    let key = |h: &str| bb_crds::policy::host_key(h);
    for p in proposals.iter().filter(|p| approved_egress(p)) {
        let phase = p.status.as_ref().and_then(|s| s.phase);
        if phase == Some(ProposalPhase::Expired) {
            continue;
        }
        let expires = expiry(p);
        if expires.is_some_and(|e| e <= now) {
            continue;
        }
        let text = p
            .spec
            .decision
            .as_ref()
            .and_then(|d| d.content.as_deref())
            .unwrap_or(&p.spec.content);
        match parse_proposed_routes(text) {
            Ok(routes) => {
                let stands = |r: &EgressRoute| {
                    let h = key(&r.host);
                    bottle_routes.iter().any(|b| key(&b.host) == h)
                        || out.routes.iter().any(|g| key(&g.host) == h)
                        || p.spec.adds.iter().any(|a| key(a) == h)
                        || typed_by_approver(p, &h)
                };
                let routes: Vec<EgressRoute> = routes.into_iter().filter(stands).collect();
                let changes = compare(bottle_routes, &routes).layer();
                bb_crds::policy::proposal::merge(&mut out.routes, &changes);
                out.included.push(p.name_any());
                if let Some(e) = expires {
                    out.next_expiry = Some(out.next_expiry.map_or(e, |n| n.min(e)));
                }
            }
            Err(e) => out.invalid.push((p.name_any(), e.to_string())),
        }
    }
    out
}

/// Whether host key `h` is one the approver wrote into a modified decision that the proposal
/// itself never named: a human added it, so it stands as a grant of its own.
fn typed_by_approver(p: &Proposal, h: &str) -> bool {
    let Some(modified) = p.spec.decision.as_ref().and_then(|d| d.content.as_deref()) else {
        return false;
    };
    let key = |x: &str| bb_crds::policy::host_key(x);
    let named = |text: &str| {
        parse_proposed_routes(text)
            .map(|rs| rs.iter().any(|r| key(&r.host) == h))
            .unwrap_or(false)
    };
    named(modified) && !named(&p.spec.content)
}

async fn set_status(client: &kube::Client, p: &Proposal, status: ProposalStatus) {
    let ns = p.namespace().unwrap_or_default();
    let api: Api<Proposal> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"status": status});
    if let Err(e) = api
        .patch_status(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(proposal = %p.name_any(), error = %e, "writing a proposal's status failed");
    }
}

/// A decision that took effect: answered in the queue for whoever waits on it, and audited
/// (`status`: `approved` or `rejected`).
fn took_effect(supervise_dir: &Path, p: &Proposal, status: &str) {
    let Some(d) = &p.spec.decision else { return };
    let reason = d.reason.as_deref();
    answer(&super::queue_dir(supervise_dir), p, status, reason);
    audit::append(
        &super::audit_file(supervise_dir),
        &AuditRecord::new(
            &p.name_any(),
            p.spec.tool.as_str(),
            status,
            d.approver.as_deref().unwrap_or("unknown"),
        )
        .reason(reason)
        .change(
            p.status
                .as_ref()
                .map(|s| s.reach.clone())
                .unwrap_or_default(),
        ),
    );
}

fn answer(dir: &Path, p: &Proposal, status: &str, reason: Option<&str>) {
    // Only a proposal still waiting is answered: a push that gave up withdrew its file.
    if !queue::is_waiting(dir, &p.spec.queue_id) {
        return;
    }
    let d = QueueDecision {
        status: status.into(),
        reason: reason.map(Into::into),
    };
    if let Err(e) = queue::respond(dir, &p.spec.queue_id, &d) {
        tracing::warn!(proposal = %p.name_any(), error = %e, "answering a proposal in the queue failed");
    }
}

/// Brings each decided proposal's status (and queue answer) up to date once the sidecar runs
/// `layer` (`outcome`: whether it could be applied), recording each decision that took effect
/// and each grant that ended in the audit log. `previous` are the grants the Agent's status
/// listed before. Returns events for the Agent.
pub async fn settle(
    client: &kube::Client,
    proposals: &[Proposal],
    layer: &Layer,
    previous: &[String],
    supervise_dir: &Path,
    outcome: Result<(), &str>,
    now: Timestamp,
) -> Vec<Note> {
    let queue_dir = &super::queue_dir(supervise_dir);
    let log = |r: AuditRecord| audit::append(&super::audit_file(supervise_dir), &r);
    let mut notes = Vec::new();
    if outcome.is_ok() {
        for gone in previous
            .iter()
            .filter(|g| !proposals.iter().any(|p| p.name_any() == **g))
        {
            log(AuditRecord::new(gone, "egress", "withdrawn", "runner")
                .reason(Some("the Proposal was deleted")));
            notes.push((
                EventType::Normal,
                "ProposalWithdrawn",
                format!("grant {gone} was deleted; the sidecar no longer allows it"),
            ));
        }
    }
    for p in proposals {
        let Some(d) = &p.spec.decision else { continue };
        let old = p.status.clone().unwrap_or_default();
        let mut st = old.clone();
        st.observed_generation = p.meta().generation;
        let name = p.name_any();
        let reason = d.reason.as_deref();
        let tool = p.spec.tool.as_str();
        match (d.verdict, p.spec.tool) {
            (Verdict::Rejected, _) => {
                if old.phase != Some(ProposalPhase::Rejected) {
                    took_effect(supervise_dir, p, "rejected");
                    st.phase = Some(ProposalPhase::Rejected);
                    st.message = Some(format!("rejected: {}", reason.unwrap_or("no reason given")));
                    notes.push((
                        EventType::Normal,
                        "ProposalRejected",
                        format!(
                            "{} proposal {name} rejected: {}",
                            p.spec.tool.as_str(),
                            reason.unwrap_or("no reason given")
                        ),
                    ));
                }
            }
            (Verdict::Approved, ProposalTool::GitleaksAllow) => {
                if old.phase != Some(ProposalPhase::Applied) {
                    took_effect(supervise_dir, p, "approved");
                    st.phase = Some(ProposalPhase::Applied);
                    st.applied_at = Some(Time(now));
                    st.message = Some("the push was released".into());
                    notes.push((
                        EventType::Normal,
                        "ProposalApplied",
                        format!("gitleaks-allow proposal {name} approved: the push goes on"),
                    ));
                }
            }
            (Verdict::Approved, ProposalTool::CapabilityBlock) => {
                match layer.capability.as_ref().filter(|(n, _)| *n == name) {
                    Some((_, Err(e))) if old.phase != Some(ProposalPhase::Failed) => {
                        answer(
                            queue_dir,
                            p,
                            "rejected",
                            Some(&format!("the Dockerfile did not build: {e}")),
                        );
                        st.phase = Some(ProposalPhase::Failed);
                        st.message = Some(format!(
                            "the Dockerfile did not build; the agent keeps its image: {e}"
                        ));
                        notes.push((
                            EventType::Warning,
                            "ProposalFailed",
                            format!(
                                "capability-block proposal {name}: the Dockerfile did not build"
                            ),
                        ));
                    }
                    Some((_, Ok(())))
                        if old.phase != Some(ProposalPhase::Applied) && outcome.is_ok() =>
                    {
                        took_effect(supervise_dir, p, "approved");
                        st.phase = Some(ProposalPhase::Applied);
                        st.applied_at = Some(Time(now));
                        st.message = Some(if d.restart == Some(true) {
                            "the agent was restarted on the new image".into()
                        } else {
                            "the new image is built; the agent runs it from its next start".into()
                        });
                        notes.push((
                            EventType::Normal,
                            "ProposalApplied",
                            format!(
                                "capability-block proposal {name} applied: {}",
                                reason.unwrap_or("no reason given")
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            (Verdict::Approved, _) => {
                if let Some((_, why)) = layer.invalid.iter().find(|(n, _)| *n == name) {
                    st.phase = Some(ProposalPhase::Pending);
                    st.message = Some(format!("approved but not applied: {why}"));
                } else if !layer.included.contains(&name) {
                    if old.phase == Some(ProposalPhase::Applied) {
                        st.phase = Some(ProposalPhase::Expired);
                        st.message = Some("the grant expired and was withdrawn".into());
                        log(AuditRecord::new(&name, tool, "expired", "runner"));
                        notes.push((
                            EventType::Normal,
                            "ProposalExpired",
                            format!("grant {name} expired; the sidecar no longer allows it"),
                        ));
                    }
                } else if let Err(e) = outcome {
                    st.phase = Some(ProposalPhase::Pending);
                    st.message = Some(format!("approved but not applied yet: {e}"));
                } else if old.phase != Some(ProposalPhase::Applied) {
                    took_effect(supervise_dir, p, "approved");
                    st.phase = Some(ProposalPhase::Applied);
                    st.applied_at = Some(Time(now));
                    st.expires_at = None;
                    let mut applied = p.clone();
                    applied.status = Some(st.clone());
                    st.expires_at = expiry(&applied).map(Time);
                    st.message = Some(match &st.expires_at {
                        Some(t) => format!("the sidecar enforces it until {}", t.0),
                        None => "the sidecar enforces it".into(),
                    });
                    notes.push((
                        EventType::Normal,
                        "ProposalApplied",
                        format!(
                            "{} proposal {name} applied: {}",
                            p.spec.tool.as_str(),
                            reason.unwrap_or("no reason given")
                        ),
                    ));
                }
            }
        }
        if st != old {
            set_status(client, p, st).await;
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb_crds::proposal::{AgentRef, ProposalDecision, ProposalSpec};

    fn proposal(name: &str, content: &str, decision: Option<(Verdict, Option<&str>)>) -> Proposal {
        let mut p = Proposal::new(
            name,
            ProposalSpec {
                agent_ref: AgentRef { name: "a".into() },
                tool: ProposalTool::EgressBlock,
                content: content.into(),
                justification: "j".into(),
                repo: None,
                queue_id: format!("egress-block-{name}"),
                decision: decision.map(|(verdict, expires)| ProposalDecision {
                    verdict,
                    reason: None,
                    approver: None,
                    expires_after: expires.map(Into::into),
                    content: None,
                    restart: None,
                    decided_at: None,
                }),
                // As the mirror raises it against no live routes: every host is its own.
                adds: parse_proposed_routes(content)
                    .map(|rs| rs.into_iter().map(|r| r.host).collect())
                    .unwrap_or_default(),
            },
        );
        p.metadata.namespace = Some("default".into());
        p
    }

    /// A grant holds what it changed, not the whole document it came in: a later proposal that
    /// carried an earlier grant's host along does not keep it past that grant's expiry, a
    /// change to a Bottle route goes with the route, and a host a grant added (or an approver
    /// typed in) stays for as long as the grant does.
    #[test]
    fn a_grant_is_what_it_changed() {
        let now = Timestamp::now();
        let applied = |p: &mut Proposal, secs: i64| {
            p.status = Some(ProposalStatus {
                applied_at: Some(Time(now - jiff::SignedDuration::from_secs(secs))),
                ..Default::default()
            });
        };
        // A: x.test for a minute, applied 61 s ago (expired).
        let mut a = proposal(
            "a",
            "routes:\n  - host: x.test\n",
            Some((Verdict::Approved, Some("1m"))),
        );
        applied(&mut a, 61);
        // B: raised while A was live, its whole document carrying x.test with one more path.
        let mut b = proposal(
            "b",
            "routes:\n  - host: x.test\n    matches: [{paths: [{value: /more}]}]\n  - host: y.test\n",
            Some((Verdict::Approved, None)),
        );
        b.spec.adds = vec!["y.test".into()];
        // C: a change to the Bottle's a.test; D: a host it added itself.
        let mut c = proposal(
            "c",
            "routes:\n  - host: a.test\n    matches: [{methods: [POST]}]\n",
            Some((Verdict::Approved, None)),
        );
        c.spec.adds = vec![];
        let d = proposal(
            "d",
            "routes:\n  - host: z.test\n",
            Some((Verdict::Approved, None)),
        );
        // E: the approver modified it, typing in w.test the agent never named.
        let mut e = proposal(
            "e",
            "routes:\n  - host: v.test\n",
            Some((Verdict::Approved, None)),
        );
        e.spec.adds = vec![];
        if let Some(dec) = e.spec.decision.as_mut() {
            dec.content = Some("routes:\n  - host: v.test\n  - host: w.test\n".into());
        }
        let hosts = |bottle: &str| {
            let bottle = parse_proposed_routes(bottle).expect("routes");
            let l = layer(
                &[a.clone(), b.clone(), c.clone(), d.clone(), e.clone()],
                &bottle,
                now,
            );
            l.routes.iter().map(|r| r.host.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            hosts("routes:\n  - host: a.test\n"),
            ["y.test", "a.test", "z.test", "w.test"]
        );
        // The operator removes a.test from the Bottle: C's change to it goes too.
        assert_eq!(hosts("routes: []\n"), ["y.test", "z.test", "w.test"]);
        // While A is in force, B's change to x.test stands on it.
        applied(&mut a, 10);
        let bottle = parse_proposed_routes("routes: []\n").expect("routes");
        let l = layer(&[a.clone(), b.clone()], &bottle, now);
        let x = l
            .routes
            .iter()
            .find(|r| r.host == "x.test")
            .expect("x.test");
        assert!(x.matches.is_some(), "B's version of x.test");
    }

    #[test]
    fn only_approved_unexpired_grants_layer_and_only_what_they_change() {
        let bottle = parse_proposed_routes("routes:\n  - host: a.test\n").expect("routes");
        let now = Timestamp::now();
        let approved = proposal(
            "p1",
            "routes:\n  - host: a.test\n  - host: b.test\n",
            Some((Verdict::Approved, None)),
        );
        let pending = proposal("p2", "routes:\n  - host: c.test\n", None);
        let rejected = proposal(
            "p3",
            "routes:\n  - host: d.test\n",
            Some((Verdict::Rejected, None)),
        );
        let mut expired = proposal(
            "p4",
            "routes:\n  - host: e.test\n",
            Some((Verdict::Approved, Some("1m"))),
        );
        expired.status = Some(ProposalStatus {
            applied_at: Some(Time(now - jiff::SignedDuration::from_secs(61))),
            ..Default::default()
        });
        let mut expiring = proposal(
            "p5",
            "routes:\n  - host: f.test\n",
            Some((Verdict::Approved, Some("1m"))),
        );
        expiring.status = Some(ProposalStatus {
            applied_at: Some(Time(now)),
            ..Default::default()
        });
        let broken = proposal("p6", "routes: [", Some((Verdict::Approved, None)));
        let l = layer(
            &[approved, pending, rejected, expired, expiring, broken],
            &bottle,
            now,
        );
        let hosts: Vec<_> = l.routes.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, ["b.test", "f.test"]);
        assert_eq!(l.included, ["p1", "p5"]);
        assert_eq!(l.invalid.len(), 1);
        assert_eq!(
            l.next_expiry,
            Some(now + jiff::SignedDuration::from_secs(60))
        );
    }
}
