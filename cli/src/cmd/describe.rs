//! `bbctl describe`: one Bottle or Agent the way `kubectl describe` shows objects: a spec
//! summary (for a Bottle, its resolved policy), status, conditions and recent events.

use std::fmt::Write as _;

use bb_crds::{Agent, AgentPool, Bottle};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, ResourceExt};

use super::table::render;
use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// bottle (bt) or agent (ag), or TYPE/NAME.
    #[arg(value_name = "TYPE")]
    kind: String,
    name: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `Key:` padded to one column, and always at least one space before the value (the longest
/// keys, `Credentials hash:`, once ran into it).
fn field(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<16} {value}", format!("{key}:"));
}

/// How many copied secrets the sidecar guards and where each was found (never a value).
fn guarded_secrets(out: &mut String, g: &bb_crds::agent::GuardedSecrets) {
    let n = g.count;
    field(
        out,
        "Guarded secrets",
        format!(
            "{n} workspace secret{} guarded",
            if n == 1 { "" } else { "s" }
        ),
    );
    for f in &g.found {
        let _ = writeln!(out, "  {}:{} ({})", f.path, f.line, f.kind);
    }
    if let Some(more) = n.checked_sub(g.found.len() as i64).filter(|m| *m > 0) {
        let _ = writeln!(out, "  ... and {more} more");
    }
    if let Some(skipped) = g.files_skipped {
        let _ = writeln!(
            out,
            "  ({skipped} files not read: larger than 1 MiB or binary)"
        );
    }
}

/// `spec.lifecycle` in a line: what the runner will do, and when the ttl falls due.
fn lifecycle(
    l: &bb_crds::agent::Lifecycle,
    created: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> String {
    let mut parts = Vec::new();
    if let Some(idle) = &l.idle_suspend_after {
        parts.push(format!("suspend after {idle} idle"));
    }
    if let Some(ttl) = &l.ttl {
        let due = bb_crds::duration::parse(ttl)
            .ok()
            .zip(created)
            .and_then(|(d, c)| c.checked_add(jiff::SignedDuration::try_from(d).ok()?).ok())
            .map(|at| at.as_second() - now.as_second());
        parts.push(match due {
            Some(left) if left > 0 => format!(
                "delete after {ttl} (in {})",
                bb_crds::duration::human_duration(left)
            ),
            Some(_) => format!("delete after {ttl} (due now)"),
            None => format!("delete after {ttl}"),
        });
    }
    if l.delete_after_exit == Some(true) {
        parts.push("delete when its attached command exits".into());
    }
    if l.keep_snapshot == Some(true) {
        parts.push("keep a snapshot when deleted so".into());
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join("; ")
    }
}

fn conditions(out: &mut String, conds: &[Condition]) {
    out.push_str("Conditions:\n");
    if conds.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let rows: Vec<Vec<String>> = conds
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        })
        .collect();
    let table = render(
        &[
            "Type".into(),
            "Status".into(),
            "Reason".into(),
            "Message".into(),
        ],
        &rows,
    );
    for line in table.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// The recent events of the `kind` object `name` (an Agent and a pool may share a name).
async fn events(client: &kube::Client, kind: &str, ns: &str, name: &str, out: &mut String) {
    let path = format!("/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name}");
    let value: serde_json::Value = match http::Request::get(&path)
        .body(Vec::new())
        .map(|req| client.request(req))
    {
        Ok(fut) => fut.await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let mut items: Vec<serde_json::Value> = value["items"].as_array().cloned().unwrap_or_default();
    items.retain(|e| {
        e["involvedObject"]["kind"]
            .as_str()
            .is_none_or(|k| k == kind)
    });
    items.sort_by_key(|e| {
        e["lastTimestamp"]
            .as_str()
            .or(e["eventTime"].as_str())
            .unwrap_or_default()
            .to_string()
    });
    out.push_str("Events:\n");
    if items.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .rev()
        .take(15)
        .rev()
        .map(|e| {
            let count = e["count"].as_i64().unwrap_or(1);
            let reason = e["reason"].as_str().unwrap_or_default();
            vec![
                e["type"].as_str().unwrap_or_default().to_string(),
                if count > 1 {
                    format!("{reason} (x{count})")
                } else {
                    reason.to_string()
                },
                e["source"]["component"]
                    .as_str()
                    .or(e["reportingComponent"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let table = render(
        &[
            "Type".into(),
            "Reason".into(),
            "From".into(),
            "Message".into(),
        ],
        &rows,
    );
    for line in table.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// The namespaced object `kind`/`name`, or a NotFound error naming it and its namespace.
async fn namespaced<K>(
    client: &kube::Client,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<K, CliError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| CliError::api("API", e))?
        .ok_or_else(|| {
            CliError::new(
                Kind::NotFound,
                format!("{kind} '{name}' not found in namespace '{ns}'"),
            )
        })
}

async fn describe_bottle(client: &kube::Client, name: &str) -> Result<String, CliError> {
    let api: Api<Bottle> = Api::all(client.clone());
    let all = bb_runner::reconcile::bottle::listed_bottle_specs(client)
        .await
        .map_err(|e| CliError::api("API", e))?;
    let b = api
        .get_opt(name)
        .await
        .map_err(|e| CliError::api("API", e))?
        .ok_or_else(|| {
            let names: Vec<&str> = all.keys().map(String::as_str).collect();
            CliError::new(
                Kind::NotFound,
                format!(
                    "Bottle '{name}' not found; available: {}",
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })?;
    let mut out = String::new();
    field(&mut out, "Name", b.name_any());
    field(
        &mut out,
        "Extends",
        b.spec.extends.as_deref().unwrap_or("<none>"),
    );
    match bb_crds::resolve::resolve_bottle(name, &all) {
        Ok(r) => {
            let provider = r
                .spec
                .agent_provider
                .as_ref()
                .map(|p| p.template())
                .unwrap_or_default();
            field(&mut out, "Chain", r.chain.join(" -> "));
            field(&mut out, "Provider", provider.as_str());
            field(&mut out, "Supervise", r.spec.supervise());
            out.push_str("Egress (resolved):\n");
            let injects = |route: &bb_crds::egress::EgressRoute| {
                route.auth.as_ref().map_or("-".to_string(), |a| {
                    format!(
                        "{} from {}",
                        a.scheme.as_str(),
                        super::demo::source(&a.token)
                    )
                })
            };
            let mut rows: Vec<Vec<String>> = r
                .spec
                .egress
                .iter()
                .flat_map(|e| e.routes())
                .zip(&r.route_origins)
                .map(|(route, origin)| {
                    vec![
                        route.host.clone(),
                        injects(route),
                        format!("bottle/{}", origin.bottle),
                    ]
                })
                .collect();
            // The provider's own routes, where the Bottle has none for the host (as the
            // sidecar gets them).
            if let Ok(p) = bb_runner::provider::of_bottle(&r) {
                for route in p.routes() {
                    if !rows.iter().any(|row| row[0] == route.host) {
                        rows.push(vec![
                            route.host.clone(),
                            injects(&route),
                            format!("provider/{}", provider.as_str()),
                        ]);
                    }
                }
            }
            if rows.is_empty() {
                out.push_str("  <none: every request is refused>\n");
            } else {
                let table = render(&["Host".into(), "Injects".into(), "From".into()], &rows);
                for line in table.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        Err(e) => field(&mut out, "Resolved", format!("<invalid: {e}>")),
    }
    let st = b.status.clone().unwrap_or_default();
    field(
        &mut out,
        "Policy hash",
        st.resolved_policy_hash.as_deref().unwrap_or("<none>"),
    );
    conditions(&mut out, &st.conditions);
    Ok(out)
}

/// The Agent's supervise audit log, from its runner: one row per proposal raised and per
/// decision and what came of it (`<unavailable>` when the runner cannot be reached).
async fn supervise_audit(target: &Target, agent: &Agent, out: &mut String) {
    let (Some(endpoint), Some(ns)) = (
        agent
            .status
            .as_ref()
            .and_then(|s| s.session_endpoint.as_deref()),
        agent.namespace(),
    ) else {
        return;
    };
    let path = format!(
        "/apis/{}/namespaces/{ns}/agents/{}/log?container=supervise&tailLines=20&stdout=true",
        bb_crds::API_VERSION,
        agent.name_any()
    );
    out.push_str("Supervise:\n");
    // The audit lives in the running supervise service; a stopped Agent has none to ask.
    let phase = agent.status.as_ref().and_then(|s| s.phase);
    if phase != Some(bb_crds::AgentPhase::Running) {
        let phase = phase.map_or("not running", |p| p.as_str());
        let _ = writeln!(out, "  <shown while the Agent runs; it is {phase}>");
        return;
    }
    let collected = match target.runner_client(agent, endpoint).await {
        Ok(runner) => bb_runner::sessions::client::collect(&runner, &path)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    let c = match collected {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "  <unavailable: {e}>");
            return;
        }
    };
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&c.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            vec![
                s("time"),
                s("action"),
                s("proposal"),
                s("actor"),
                s("reason"),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let header = ["Time", "Action", "Proposal", "By", "Reason"].map(String::from);
    for line in render(&header, &rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

async fn describe_agent(
    client: &kube::Client,
    target: &Target,
    ns: &str,
    name: &str,
) -> Result<String, CliError> {
    let a: Agent = namespaced(client, "Agent", ns, name).await?;
    let st = a.status.clone().unwrap_or_default();
    let mut out = String::new();
    field(&mut out, "Name", a.name_any());
    field(&mut out, "Namespace", ns);
    field(&mut out, "Bottle", &a.spec.bottle_ref.name);
    field(&mut out, "Suspend", a.spec.suspend.unwrap_or(false));
    if let Some(src) = &a.spec.source {
        field(
            &mut out,
            "Forked from",
            format!("agent/{}", src.agent_ref.name),
        );
    }
    if let Some(copy) = a.status.as_ref().and_then(|s| s.bottle_copy.as_ref()) {
        field(
            &mut out,
            "Pool member",
            format!("{} of agentpool/{}", copy.name, copy.pool),
        );
    }
    if let Some(l) = &a.spec.lifecycle {
        let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        field(
            &mut out,
            "Lifecycle",
            lifecycle(l, created, jiff::Timestamp::now()),
        );
    }
    if let Some(w) = &a.spec.workspace {
        field(&mut out, "Workspace", &w.host_path);
    }
    field(
        &mut out,
        "Backend",
        st.backend.as_deref().unwrap_or("<none>"),
    );
    field(
        &mut out,
        "Phase",
        st.phase.map_or("<none>".to_string(), |p| p.to_string()),
    );
    if let Some(m) = &st.message {
        field(&mut out, "Message", m);
    }
    if let Some(p) = st.endpoints.as_ref().and_then(|e| e.proxy.as_deref()) {
        field(&mut out, "Proxy", p);
    }
    field(
        &mut out,
        "Applied policy",
        st.applied_policy_hash.as_deref().unwrap_or("<none>"),
    );
    if let Some(h) = &st.applied_credentials_hash {
        field(&mut out, "Credentials hash", h);
    }
    if let Some(e) = &st.session_endpoint {
        field(&mut out, "Sessions", e);
    }
    if let Some(s) = &st.snapshot {
        field(&mut out, "Snapshot", s);
    }
    if !st.grants.is_empty() {
        field(&mut out, "Grants", st.grants.join(", "));
    }
    if let Some(g) = &st.guarded_secrets {
        guarded_secrets(&mut out, g);
    }
    conditions(&mut out, &st.conditions);
    if st.endpoints.as_ref().is_some_and(|e| e.supervise.is_some()) {
        supervise_audit(target, &a, &mut out).await;
    }
    events(client, "Agent", ns, name, &mut out).await;
    Ok(out)
}

async fn describe_pool(client: &kube::Client, ns: &str, name: &str) -> Result<String, CliError> {
    let p: AgentPool = namespaced(client, "AgentPool", ns, name).await?;
    let st = p.status.clone().unwrap_or_default();
    let mut out = String::new();
    field(&mut out, "Name", p.name_any());
    field(&mut out, "Namespace", ns);
    field(&mut out, "Bottle", &p.spec.bottle_ref.name);
    field(&mut out, "Size", p.spec.size);
    field(
        &mut out,
        "Ready",
        format!("{} of {}", st.ready, p.spec.size),
    );
    if let Some(m) = &st.message {
        field(&mut out, "Message", m);
    }
    out.push_str("Members:\n");
    if st.members.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = st
            .members
            .iter()
            .map(|m| {
                let plan: String = m.plan_hash.chars().take(12).collect();
                vec![m.name.clone(), m.ready.to_string(), plan]
            })
            .collect();
        let header = ["Name", "Ready", "Plan"].map(String::from);
        for line in render(&header, &rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    conditions(&mut out, &st.conditions);
    events(client, "AgentPool", ns, name, &mut out).await;
    Ok(out)
}

pub fn run(args: DescribeArgs) -> Result<(), CliError> {
    let (kind, name) = match (args.kind.split_once('/'), &args.name) {
        (Some((k, n)), None) => (k.to_string(), n.to_string()),
        (None, Some(n)) => (args.kind.clone(), n.clone()),
        _ => {
            return Err(CliError::new(
                Kind::Usage,
                "what to describe: TYPE NAME or TYPE/NAME (bottle, agent, agentpool)",
            ));
        }
    };
    let rt = super::runtime()?;
    let text = rt.block_on(async {
        let client = args.target.client_autostart().await?;
        match super::target::bare_kind(&kind.to_ascii_lowercase()) {
            "bottle" | "bottles" | "bt" => describe_bottle(&client, &name).await,
            "agent" | "agents" | "ag" => {
                describe_agent(&client, &args.target, &args.target.namespace(), &name).await
            }
            "agentpool" | "agentpools" | "pool" | "pools" => {
                describe_pool(&client, &args.target.namespace(), &name).await
            }
            other => Err(CliError::new(
                Kind::Usage,
                format!("unknown type '{other}'; valid: bottle (bt), agent (ag), agentpool (pool)"),
            )),
        }
    })?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_says_what_the_runner_will_do_and_when() {
        let created: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().expect("time");
        let now: jiff::Timestamp = "2026-12-07T11:30:00Z".parse().expect("time");
        let l = bb_crds::agent::Lifecycle {
            idle_suspend_after: Some("30m".into()),
            ttl: Some("8h".into()),
            delete_after_exit: Some(true),
            keep_snapshot: Some(true),
        };
        assert_eq!(
            lifecycle(&l, Some(created), now),
            "suspend after 30m idle; delete after 8h (in 6h30m); delete when its attached command exits; keep a snapshot when deleted so"
        );
        let late: jiff::Timestamp = "2026-12-07T19:00:00Z".parse().expect("time");
        let ttl_only = bb_crds::agent::Lifecycle {
            ttl: Some("8h".into()),
            ..Default::default()
        };
        assert_eq!(
            lifecycle(&ttl_only, Some(created), late),
            "delete after 8h (due now)"
        );
        assert_eq!(lifecycle(&Default::default(), None, now), "<none>");
    }
}
