//! The `Proposal` resource: an agent's request for more access (a routes document, a Dockerfile,
//! a push holding findings marked gitleaks:allow), the human decision on it, and what came of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldPath, ValidationErrors};

/// One request an agent raised through supervise (or git-gate), mirrored by its runner.
#[derive(
    CustomResource, Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "bot-bottle.dev",
    version = "v1alpha1",
    kind = "Proposal",
    plural = "proposals",
    shortname = "prop",
    category = "bot-bottle",
    namespaced,
    status = "ProposalStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Proposal is an agent's request for more access, waiting for (or carrying) a human decision.",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agentRef.name"}"#,
    printcolumn = r#"{"name":"Tool","type":"string","jsonPath":".spec.tool"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision.verdict"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalSpec {
    /// The Agent that asked (same namespace).
    pub agent_ref: AgentRef,
    /// `allow`, `egress-block`, `capability-block` or `gitleaks-allow`.
    pub tool: ProposalTool,
    /// What the agent proposes: a routes document, a Dockerfile, or the findings of a push.
    pub content: String,
    /// Why, in the agent's words.
    pub justification: String,
    /// gitleaks-allow: the git-gate repository the push goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The id the sidecar gave the proposal in its queue.
    #[schemars(length(min = 1, max = 63))]
    pub queue_id: String,
    /// The human decision; absent while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ProposalDecision>,
    /// Egress: the hosts this proposal adds that nothing allowed when it was raised (the
    /// runner writes it, with `content` reduced to what the proposal changes). An approved
    /// grant keeps a route for a host its Bottle no longer allows only if it added that host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adds: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalTool {
    #[default]
    Allow,
    EgressBlock,
    CapabilityBlock,
    GitleaksAllow,
}

impl ProposalTool {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalTool::Allow => bb_policy::proposal::TOOL_ALLOW,
            ProposalTool::EgressBlock => bb_policy::proposal::TOOL_EGRESS_BLOCK,
            ProposalTool::CapabilityBlock => bb_policy::proposal::TOOL_CAPABILITY_BLOCK,
            ProposalTool::GitleaksAllow => bb_policy::proposal::TOOL_GITLEAKS_ALLOW,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProposalTool::Allow,
            ProposalTool::EgressBlock,
            ProposalTool::CapabilityBlock,
            ProposalTool::GitleaksAllow,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// The tools whose content is a routes document layered over the Bottle.
    pub fn is_egress(self) -> bool {
        matches!(self, ProposalTool::Allow | ProposalTool::EgressBlock)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalDecision {
    /// `Approved` or `Rejected`.
    pub verdict: Verdict,
    /// Why; required to approve a gitleaks-allow proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who decided (`bbctl` records the user and host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Egress only: the grant is withdrawn this long after it is applied (`90s`, `30m`, `8h`,
    /// `1h30m`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
    /// The content as the approver modified it, applied instead of `spec.content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// capability-block only: move the running agent to the new image now, rather than at its
    /// next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProposalPhase {
    Pending,
    Applied,
    Rejected,
    Expired,
    Failed,
}

impl ProposalPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalPhase::Pending => "Pending",
            ProposalPhase::Applied => "Applied",
            ProposalPhase::Rejected => "Rejected",
            ProposalPhase::Expired => "Expired",
            ProposalPhase::Failed => "Failed",
        }
    }

    /// Nothing more happens to a proposal in this phase.
    pub fn is_final(self) -> bool {
        !matches!(self, ProposalPhase::Pending | ProposalPhase::Applied)
    }
}

/// Observed state of a Proposal, written by the runner of its Agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProposalPhase>,
    /// The routes diff against the Agent's live policy (egress tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The new reach an approval grants, one plain sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Rules beyond the schema, held at admission: a decision must make sense for its tool.
pub fn validate(spec: &ProposalSpec, errs: &mut ValidationErrors) {
    let spath = FieldPath::root("spec");
    if spec.tool.is_egress()
        && let Err(e) = bb_policy::proposal::parse_proposed_routes(&spec.content)
    {
        errs.push(
            &spath.field("content"),
            format!(
                "is not a valid routes document: {}",
                bb_policy::validate::one_line(&e.to_string())
            ),
        );
    }
    if !bb_policy::proposal::valid_id(&spec.queue_id) {
        errs.push(
            &spath.field("queueId"),
            "must be lowercase letters, digits and '-', at most 63",
        );
    }
    let Some(d) = &spec.decision else { return };
    let dpath = spath.field("decision");
    let tool = spec.tool.as_str();
    if spec.tool == ProposalTool::GitleaksAllow
        && d.verdict == Verdict::Approved
        && d.reason.as_deref().is_none_or(|r| r.trim().is_empty())
    {
        errs.push(
            &dpath.field("reason"),
            "is required to approve gitleaks-allow: say why the findings are safe to push",
        );
    }
    if let Some(c) = &d.content {
        if spec.tool == ProposalTool::GitleaksAllow {
            errs.push(
                &dpath.field("content"),
                "cannot modify a gitleaks-allow proposal: approve or reject the push as it is",
            );
        } else if d.verdict == Verdict::Rejected {
            errs.push(&dpath.field("content"), "is only valid when approving");
        } else if spec.tool.is_egress()
            && let Err(e) = bb_policy::proposal::parse_proposed_routes(c)
        {
            errs.push(
                &dpath.field("content"),
                format!(
                    "is not a valid routes document: {}",
                    bb_policy::validate::one_line(&e.to_string())
                ),
            );
        } else if c.trim().is_empty() {
            errs.push(&dpath.field("content"), "must not be empty");
        }
    }
    if d.restart == Some(true)
        && (spec.tool != ProposalTool::CapabilityBlock || d.verdict != Verdict::Approved)
    {
        errs.push(
            &dpath.field("restart"),
            "only an approved capability-block proposal restarts the agent",
        );
    }
    if let Some(e) = &d.expires_after {
        if !spec.tool.is_egress() {
            errs.push(
                &dpath.field("expiresAfter"),
                format!("only egress grants expire; {tool} has nothing to withdraw"),
            );
        } else if let Err(m) = crate::duration::parse_expiry(e) {
            errs.push(&dpath.field("expiresAfter"), m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tool: ProposalTool, decision: Option<ProposalDecision>) -> ProposalSpec {
        ProposalSpec {
            agent_ref: AgentRef { name: "a".into() },
            tool,
            content: "routes:\n  - host: a.test\n".into(),
            justification: "j".into(),
            repo: None,
            queue_id: "allow-1".into(),
            decision,
            adds: vec![],
        }
    }

    fn errors(s: &ProposalSpec) -> String {
        let mut e = ValidationErrors::default();
        validate(s, &mut e);
        e.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn decisions_must_fit_their_tool() {
        let approve = |reason: Option<&str>| ProposalDecision {
            verdict: Verdict::Approved,
            reason: reason.map(Into::into),
            approver: None,
            expires_after: None,
            content: None,
            restart: None,
            decided_at: None,
        };
        assert_eq!(errors(&spec(ProposalTool::Allow, Some(approve(None)))), "");
        let mut restart = approve(None);
        restart.restart = Some(true);
        let e = errors(&spec(ProposalTool::Allow, Some(restart.clone())));
        assert!(
            e.contains("spec.decision.restart: only an approved capability-block"),
            "{e}"
        );
        assert_eq!(
            errors(&spec(ProposalTool::CapabilityBlock, Some(restart))),
            ""
        );
        let e = errors(&spec(ProposalTool::GitleaksAllow, Some(approve(Some(" ")))));
        assert!(e.contains("spec.decision.reason: is required"), "{e}");
        let mut d = approve(Some("ok"));
        d.content = Some("x".into());
        let e = errors(&spec(ProposalTool::GitleaksAllow, Some(d.clone())));
        assert!(e.contains("cannot modify a gitleaks-allow"), "{e}");
        let e = errors(&spec(ProposalTool::Allow, Some(d)));
        assert!(
            e.contains("spec.decision.content: is not a valid routes document"),
            "{e}"
        );
        let mut d = approve(None);
        d.expires_after = Some("soon".into());
        let e = errors(&spec(ProposalTool::EgressBlock, Some(d.clone())));
        assert!(e.contains("'soon' is not a duration"), "{e}");
        let e = errors(&spec(ProposalTool::CapabilityBlock, Some(d)));
        assert!(e.contains("only egress grants expire"), "{e}");
        let mut bad = spec(ProposalTool::Allow, None);
        bad.content = "routes: [{host: 'http://x'}]".into();
        bad.queue_id = "Bad_Id".into();
        let e = errors(&bad);
        assert!(
            e.contains("spec.content") && e.contains("spec.queueId"),
            "{e}"
        );
    }
}
