//! `bbctl controller drain RUNNER`: marks a runner's Lease draining; the runner then releases
//! its Agents one at a time (each once another runner runs the one before) and claims none.

use std::time::Duration;

use bb_crds::Agent;
use bb_runner::cluster::lease::{DRAINING_ANNOTATION, LABEL, NAMESPACE, name};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The runner: its identity as `bbctl get runners` lists it, or its Lease `runner-ID`.
    runner: String,
    /// Wait until the runner holds no Agent.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::apply::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

fn held_by(agents: &[Agent], id: &str) -> usize {
    agents
        .iter()
        .filter(|a| a.status.as_ref().and_then(|s| s.runner.as_deref()) == Some(id))
        .count()
}

pub fn run(args: DrainArgs) -> Result<(), CliError> {
    let id = args
        .runner
        .strip_prefix("runner-")
        .unwrap_or(&args.runner)
        .to_string();
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.target.client().await?;
        let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
        let Some(lease) = leases
            .get_opt(&name(&id))
            .await
            .map_err(|e| CliError::api("", e))?
        else {
            let known: Vec<String> = leases
                .list(&ListParams::default().labels(LABEL))
                .await
                .map_err(|e| CliError::api("", e))?
                .items
                .iter()
                .filter_map(|l| l.metadata.labels.as_ref()?.get(LABEL).cloned())
                .collect();
            return Err(CliError::new(
                Kind::NotFound,
                format!(
                    "no runner '{id}'; runners: {}",
                    if known.is_empty() { "(none)".into() } else { known.join(", ") }
                ),
            ));
        };
        // Conditional on the version read: the runner's own renewal racing this write wins or
        // loses whole, and a lost write is retried against what it wrote.
        let mut lease = lease;
        for attempt in 0.. {
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": lease.metadata.resource_version,
                    "annotations": {DRAINING_ANNOTATION: "true"},
                }
            });
            match leases
                .patch(&name(&id), &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                    lease = leases.get(&name(&id)).await.map_err(|e| CliError::api("", e))?;
                }
                Err(e) => return Err(CliError::api("", e)),
            }
        }
        let agents: Api<Agent> = Api::all(client);
        let count = |list: Vec<Agent>| held_by(&list, &id);
        let held = count(agents.list(&ListParams::default()).await.map_err(|e| CliError::api("", e))?.items);
        println!("runner {id} draining: it releases {held} Agent(s) one at a time and claims none until it restarts");
        if !args.wait {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + args.timeout;
        loop {
            let held = count(agents.list(&ListParams::default()).await.map_err(|e| CliError::api("", e))?.items);
            if held == 0 {
                println!("runner {id} holds no Agent");
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(CliError::new(
                    Kind::Unavailable,
                    format!(
                        "runner {id} still holds {held} Agent(s) after {}",
                        bb_crds::duration::human_duration(args.timeout.as_secs() as i64)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
