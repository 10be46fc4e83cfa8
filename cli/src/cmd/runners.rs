//! `bbctl get runners`: the runners of a cluster as their heartbeat Leases describe them, with
//! how many Agents each holds (`status.runner`) and how many warm pool members it runs.

use bb_crds::{Agent, AgentPool};
use bb_runner::cluster::lease::{LABEL, NAMESPACE};
use bb_runner::cluster::runners::Runner;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};

use crate::exit::{CliError, Kind};

/// Whether `r` runs `a`: in cluster mode the Agent's claim names it; on a local control plane,
/// where the one runner holds every Agent and nothing is claimed, its session endpoint does.
fn runs(r: &Runner, a: &Agent) -> bool {
    let Some(st) = a.status.as_ref() else {
        return false;
    };
    match st.runner.as_deref() {
        Some(id) => id == r.id,
        None => st.session_endpoint.is_some() && st.session_endpoint == r.session_endpoint,
    }
}

/// One row: NAME, BACKEND, STATUS, AGENTS, MEMBERS, CAPACITY, RENEWED and, wide, LABELS and
/// ENDPOINT. MEMBERS counts the pool members whose `runner` names it (cluster mode): they take
/// places of its capacity as Agents do.
pub fn rows(
    leases: &[Lease],
    agents: &[Agent],
    pools: &[AgentPool],
    now: jiff::Timestamp,
    wide: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = [
        "NAME", "BACKEND", "STATUS", "AGENTS", "MEMBERS", "CAPACITY", "RENEWED",
    ]
    .map(String::from)
    .to_vec();
    let members: Vec<&str> = pools
        .iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.members.iter()))
        .filter_map(|m| m.runner.as_deref())
        .collect();
    if wide {
        header.extend(["LABELS", "ENDPOINT"].map(String::from));
    }
    let mut runners: Vec<Runner> = leases.iter().filter_map(Runner::from_lease).collect();
    runners.sort_by(|a, b| a.id.cmp(&b.id));
    let rows = runners
        .iter()
        .map(|r| {
            let held = agents.iter().filter(|a| runs(r, a)).count();
            let here = members.iter().filter(|m| **m == r.id).count();
            let status = if r.expired_at(now) {
                "Expired"
            } else if r.draining {
                "Draining"
            } else {
                "Ready"
            };
            let renewed = r.renewed.map_or("<unknown>".into(), |t| {
                let secs = now.as_second() - t.as_second();
                format!("{} ago", bb_crds::duration::human_duration(secs))
            });
            let mut row = vec![
                r.id.clone(),
                r.backend.clone(),
                status.into(),
                held.to_string(),
                here.to_string(),
                r.capacity.map_or("<none>".into(), |c| c.to_string()),
                renewed,
            ];
            if wide {
                let labels: Vec<String> =
                    r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                row.push(if labels.is_empty() {
                    "<none>".into()
                } else {
                    labels.join(",")
                });
                row.push(
                    r.session_endpoint
                        .clone()
                        .unwrap_or_else(|| "<none>".into()),
                );
            }
            row
        })
        .collect();
    (header, rows)
}

/// Prints the runners table (`-o wide` adds labels and session endpoints).
pub async fn print(client: kube::Client, output: Option<&str>) -> Result<(), CliError> {
    let wide = match output {
        None => false,
        Some("wide") => true,
        Some(o) => {
            return Err(CliError::new(
                Kind::Usage,
                format!(
                    "-o {o}: runners print as a table (or -o wide); their Leases in full: kubectl get leases -n {NAMESPACE} -l {LABEL} -o yaml"
                ),
            ));
        }
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let leases = leases
        .list(&ListParams::default().labels(LABEL))
        .await
        .map_err(|e| CliError::api("", e))?;
    let agents: Api<Agent> = Api::all(client.clone());
    let agents = agents
        .list(&ListParams::default())
        .await
        .map_err(|e| CliError::api("", e))?;
    let pools: Api<AgentPool> = Api::all(client);
    let pools = pools
        .list(&ListParams::default())
        .await
        .map_err(|e| CliError::api("", e))?;
    let now = jiff::Timestamp::now();
    let (header, rows) = rows(&leases.items, &agents.items, &pools.items, now, wide);
    if rows.is_empty() {
        eprintln!("No runners found.");
        return Ok(());
    }
    print!("{}", super::table::render(&header, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::ObjectMeta;

    fn lease(id: &str, renewed: jiff::Timestamp, draining: bool) -> Lease {
        let mut ann = std::collections::BTreeMap::from([
            ("bot-bottle.dev/backend".to_string(), "fake".to_string()),
            ("bot-bottle.dev/capacity".into(), "5".into()),
        ]);
        if draining {
            ann.insert("bot-bottle.dev/draining".into(), "true".into());
        }
        Lease {
            metadata: ObjectMeta {
                name: Some(format!("runner-{id}")),
                labels: Some(
                    [
                        (LABEL.to_string(), id.to_string()),
                        ("zone".into(), "a".into()),
                    ]
                    .into(),
                ),
                annotations: Some(ann),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    fn held_by(id: &str) -> Agent {
        let mut a = Agent::new("x", Default::default());
        a.status = Some(bb_crds::AgentStatus {
            runner: Some(id.into()),
            ..Default::default()
        });
        a
    }

    #[test]
    fn each_runner_shows_its_state_and_its_agents() {
        let now = jiff::Timestamp::now();
        let old = now - jiff::SignedDuration::from_secs(40);
        let leases = [
            lease("b", now, true),
            lease("a", now, false),
            lease("c", old, false),
        ];
        // A local control plane claims nothing: its runner holds the Agents naming its
        // session endpoint.
        let mut leases = leases;
        leases[2]
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                bb_runner::cluster::lease::ENDPOINT_ANNOTATION.into(),
                "https://127.0.0.1:9".into(),
            );
        let local = |endpoint: Option<&str>| {
            let mut a = Agent::new("x", Default::default());
            a.status = Some(bb_crds::AgentStatus {
                session_endpoint: endpoint.map(Into::into),
                ..Default::default()
            });
            a
        };
        let agents = [
            held_by("a"),
            held_by("a"),
            held_by("b"),
            local(Some("https://127.0.0.1:9")),
            local(None),
        ];
        let mut pool = AgentPool::new("warm", Default::default());
        pool.status = Some(bb_crds::pool::AgentPoolStatus {
            members: ["a", "b", "b"]
                .map(|r| bb_crds::pool::PoolMember {
                    runner: Some(r.into()),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        });
        let (header, rows) = rows(&leases, &agents, &[pool], now, true);
        assert_eq!(
            header[..5],
            ["NAME", "BACKEND", "STATUS", "AGENTS", "MEMBERS"]
        );
        assert_eq!(rows[0][..6], ["a", "fake", "Ready", "2", "1", "5"]);
        assert_eq!(rows[1][..5], ["b", "fake", "Draining", "1", "2"]);
        assert_eq!(rows[2][..5], ["c", "fake", "Expired", "1", "0"]);
        assert_eq!(rows[2][6], "40s ago");
        assert_eq!(rows[0][7], "zone=a");
    }
}
