//! `bbctl approve` and `bbctl reject`: a human decision on a Proposal, written to
//! `spec.decision`; the runner of its Agent applies it (or answers the waiting push or tool).

use std::time::Duration;

use bb_crds::Proposal;
use bb_crds::proposal::{ProposalPhase, ProposalTool, Verdict};
use kube::api::{Api, Patch, PatchParams};

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The Proposal: proposal/NAME or NAME.
    proposal: String,
    /// Why it is fine: recorded in the decision, the audit trail and the agent's answer.
    #[arg(long)]
    reason: String,
    /// Egress only: withdraw the grant this long after it is applied (90s, 30m, 8h, 1h30m, 7d).
    #[arg(long, value_name = "DURATION")]
    expires_after: Option<String>,
    /// capability-block only: move the running agent to the new image now (its container is
    /// replaced), rather than at its next start.
    #[arg(long)]
    restart: bool,
    /// Egress only: also write the grant into the Agent's Bottle, for every Agent of it (the
    /// live object: with GitOps, change the repository instead).
    #[arg(long)]
    promote: bool,
    /// Wait until the runner applied the decision and print what came of it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The Proposal: proposal/NAME or NAME.
    proposal: String,
    /// Why not: the agent reads it.
    #[arg(long)]
    reason: String,
    /// Wait until the runner answered the agent.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    target: Target,
}

/// `proposal/NAME`, `proposals/NAME`, `prop/NAME`, what `get -o name` prints
/// (`proposal.bot-bottle.dev/NAME`, with or without the version) or a bare `NAME`.
fn proposal_name(arg: &str) -> Result<String, CliError> {
    let name = match arg
        .split_once('/')
        .map(|(k, n)| (super::target::bare_kind(k), n))
    {
        Some(("proposal" | "proposals" | "prop", n)) => n,
        Some((kind, _)) => {
            return Err(CliError::new(
                Kind::Usage,
                format!(
                    "'{arg}': only proposals are approved or rejected (use proposal/NAME), not '{kind}'"
                ),
            ));
        }
        None => arg,
    };
    if name.is_empty() {
        return Err(CliError::new(
            Kind::Usage,
            format!("'{arg}': missing the Proposal's name"),
        ));
    }
    Ok(name.to_string())
}

/// `user@host` of whoever runs bbctl.
fn approver() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

pub fn approve(args: ApproveArgs) -> Result<(), CliError> {
    if let Some(d) = &args.expires_after {
        bb_crds::duration::parse_expiry(d)
            .map_err(|m| CliError::new(Kind::Usage, format!("--expires-after: {m}")))?;
    }
    if args.promote && args.expires_after.is_some() {
        return Err(CliError::new(
            Kind::Usage,
            "--promote writes the grant into the Bottle, where nothing expires; drop --expires-after",
        ));
    }
    decide(
        &args.proposal,
        &args.target,
        Decision {
            verdict: Verdict::Approved,
            reason: &args.reason,
            expires_after: args.expires_after.as_deref(),
            restart: args.restart,
        },
        args.promote,
        args.wait,
    )
}

pub fn reject(args: RejectArgs) -> Result<(), CliError> {
    decide(
        &args.proposal,
        &args.target,
        Decision {
            verdict: Verdict::Rejected,
            reason: &args.reason,
            expires_after: None,
            restart: false,
        },
        false,
        args.wait,
    )
}

/// Writes a decision on `p` (as read): refused when one was already made, or when an expiry
/// is asked for a proposal that grants nothing to withdraw. `content` approves a modified
/// proposal. The resourceVersion makes two deciders race safely: the second gets a conflict.
/// A human's decision as the verbs and the terminal UI take it.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub verdict: Verdict,
    pub reason: &'a str,
    pub expires_after: Option<&'a str>,
    pub restart: bool,
}

pub async fn write_decision(
    api: &Api<Proposal>,
    p: &Proposal,
    decision: Decision<'_>,
    content: Option<String>,
) -> Result<(), CliError> {
    let Decision {
        verdict,
        reason,
        expires_after,
        restart,
    } = decision;
    let name = p.metadata.name.clone().unwrap_or_default();
    let what = format!("proposal.bot-bottle.dev/{name}");
    if let Some(d) = &p.spec.decision {
        return Err(CliError::new(
            Kind::Conflict,
            format!(
                "{what}: already {} by {} ({}); a decision is not changed (delete the proposal to withdraw an applied grant)",
                if d.verdict == Verdict::Approved {
                    "approved"
                } else {
                    "rejected"
                },
                d.approver.as_deref().unwrap_or("someone"),
                d.reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    if expires_after.is_some() && !p.spec.tool.is_egress() {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "--expires-after: only egress grants expire; {what} is a {} proposal",
                p.spec.tool.as_str()
            ),
        ));
    }
    if restart && p.spec.tool != ProposalTool::CapabilityBlock {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "--restart: only a capability-block proposal changes the agent's image; {what} is a {} proposal",
                p.spec.tool.as_str()
            ),
        ));
    }
    let decision = bb_crds::proposal::ProposalDecision {
        verdict,
        reason: Some(reason.to_string()),
        approver: Some(approver()),
        expires_after: expires_after.map(Into::into),
        content,
        restart: restart.then_some(true),
        decided_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        )),
    };
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": p.metadata.resource_version},
        "spec": {"decision": decision},
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::api(&what, e))?;
    Ok(())
}

/// Writes an approved egress proposal's grant into the Bottle of its Agent: the routes it adds
/// or changes, in the Bottle's own routes (guarded by the resourceVersion). Returns the Bottle.
async fn promote(client: &kube::Client, p: &Proposal) -> Result<String, CliError> {
    use bb_crds::policy::proposal::{compare, parse_proposed_routes, promote};
    let what = format!(
        "proposal.bot-bottle.dev/{}",
        p.metadata.name.as_deref().unwrap_or("")
    );
    if !p.spec.tool.is_egress() {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "--promote: {what} is a {} proposal; only egress grants go into a Bottle",
                p.spec.tool.as_str()
            ),
        ));
    }
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let agents: Api<bb_crds::Agent> = Api::namespaced(client.clone(), &ns);
    let agent = agents
        .get(&p.spec.agent_ref.name)
        .await
        .map_err(|e| CliError::api(&format!("agent/{}", p.spec.agent_ref.name), e))?;
    let bottles: Api<bb_crds::Bottle> = Api::all(client.clone());
    let all = bottles
        .list(&Default::default())
        .await
        .map_err(|e| CliError::api("API", e))?;
    let name = agent.spec.bottle_ref.name.clone();
    let bottle = all
        .items
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(name.as_str()))
        .cloned()
        .ok_or_else(|| CliError::new(Kind::NotFound, format!("bottle/{name} not found")))?;
    let specs = all
        .items
        .into_iter()
        .map(|b| (b.metadata.name.clone().unwrap_or_default(), b.spec))
        .collect();
    let resolved = bb_crds::resolve::validate_bottle(&name, &specs)
        .map_err(|e| CliError::new(Kind::Validation, format!("bottle/{name}: {e}")))?;
    let live = resolved.spec.egress.clone().unwrap_or_default();
    let own = bottle.spec.egress.clone().unwrap_or_default();
    let inherited: Vec<_> = live
        .routes()
        .iter()
        .filter(|r| !own.routes().iter().any(|o| o.host == r.host))
        .cloned()
        .collect();
    let proposed = parse_proposed_routes(&p.spec.content)
        .map_err(|e| CliError::new(Kind::Validation, format!("{what}: {e}")))?;
    let layer = compare(live.routes(), &proposed).layer();
    let routes = promote(own.routes(), &inherited, &layer)
        .map_err(|m| CliError::new(Kind::Conflict, format!("--promote: {m}")))?;
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": bottle.metadata.resource_version},
        "spec": {"egress": {"routes": routes}},
    });
    bottles
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::api(&format!("bottle/{name}"), e))?;
    Ok(name)
}

fn decide(
    arg: &str,
    target: &Target,
    decision: Decision<'_>,
    promoting: bool,
    wait: bool,
) -> Result<(), CliError> {
    let name = proposal_name(arg)?;
    let verdict = decision.verdict;
    if decision.reason.trim().is_empty() {
        return Err(CliError::new(Kind::Usage, "--reason must not be empty"));
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = target.client_autostart().await?;
        let api: Api<Proposal> = Api::namespaced(client.clone(), &target.namespace());
        let what = format!("proposal.bot-bottle.dev/{name}");
        let p = api.get(&name).await.map_err(|e| CliError::api(&what, e))?;
        if promoting {
            if p.spec.decision.is_some() {
                return Err(CliError::new(
                    Kind::Conflict,
                    format!("{what}: already decided"),
                ));
            }
            let bottle = promote(&client, &p).await?;
            println!("bottle.bot-bottle.dev/{bottle} now allows what {what} asked for");
        }
        write_decision(&api, &p, decision, None).await?;
        let verb = if verdict == Verdict::Approved {
            "approved"
        } else {
            "rejected"
        };
        if !wait {
            println!("{what} {verb}");
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = api.get(&name).await.map_err(|e| CliError::api(&what, e))?;
            let st = now.status.unwrap_or_default();
            let done = match (verdict, st.phase) {
                (Verdict::Rejected, Some(ProposalPhase::Rejected)) => true,
                (Verdict::Approved, Some(ProposalPhase::Applied)) => true,
                (Verdict::Approved, Some(p)) => p.is_final(),
                _ => false,
            };
            if done || (p.spec.tool == ProposalTool::CapabilityBlock && st.message.is_some()) {
                println!("{what} {verb}: {}", st.message.unwrap_or_default());
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CliError::new(
                    Kind::Unavailable,
                    format!(
                        "{what} {verb}, but its runner has not applied it within 60s: {}",
                        st.message.unwrap_or_else(|| "no status yet".into())
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(proposal_name("prop/x").ok(), Some("x".into()));
        // `bbctl approve $(bbctl get proposals -o name)`, as with kubectl.
        assert_eq!(
            proposal_name("proposal.bot-bottle.dev/x").ok(),
            Some("x".into())
        );
        assert_eq!(proposal_name("x").ok(), Some("x".into()));
        assert!(proposal_name("agent/x").is_err());
        assert!(proposal_name("proposal/").is_err());
        assert!(approver().contains('@'));
    }
}
