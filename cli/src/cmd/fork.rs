//! `bbctl fork agent/NAME --name NEW`: a new Agent in the same Bottle whose files start as a
//! copy of NAME's (`spec.source.agentRef`); NAME keeps running.

use std::process::ExitCode;
use std::time::Duration;

use bb_crds::Agent;
use kube::Api;
use kube::api::PostParams;

use super::target::{Target, agent_name};
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct ForkArgs {
    /// The Agent to fork: agent/NAME or NAME.
    agent: String,
    /// Name of the new Agent.
    #[arg(long, value_name = "NEW")]
    name: String,
    /// How long to wait for the fork to run (`30s`, `5m`; `0s`: no limit).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::apply::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

/// The fork of `source` named `name`: its spec, less what asks something of the source alone
/// (suspend, a snapshot request), with `source.agentRef` naming it. A workspace is not copied
/// in again: the fork keeps the source's copy, with the source's changes.
fn fork_object(source: &Agent, name: &str) -> Result<Agent, CliError> {
    let mut spec = source.spec.clone();
    spec.suspend = None;
    spec.snapshot_request = None;
    spec.source = Some(bb_crds::agent::AgentSource {
        agent_ref: bb_crds::agent::AgentRef {
            name: source.metadata.name.clone().unwrap_or_default(),
        },
    });
    if let Some(w) = spec.workspace.as_mut() {
        w.copy = Some(false);
    }
    let mut fork = Agent::new(name, spec);
    fork.metadata.namespace = source.metadata.namespace.clone();
    fork.metadata.labels = source.metadata.labels.clone();
    let errors = bb_crds::manifest::check_document(
        &serde_json::to_value(&fork).map_err(|e| CliError::new(Kind::General, e.to_string()))?,
        1,
    )
    .err();
    match errors {
        None => Ok(fork),
        Some(e) => Err(CliError::new(
            Kind::Usage,
            format!(
                "--name {name}: {}",
                e.errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

pub fn fork(args: ForkArgs) -> Result<ExitCode, CliError> {
    let source = agent_name(&args.agent)?;
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let client = args.target.client_autostart().await?;
        let api: Api<Agent> = Api::namespaced(client, &args.target.namespace());
        let from = format!("agent.bot-bottle.dev/{source}");
        let Some(src) = api
            .get_opt(&source)
            .await
            .map_err(|e| CliError::api(&from, e))?
        else {
            return Err(CliError::new(
                Kind::NotFound,
                format!(
                    "Agent '{source}' not found in namespace '{}'",
                    args.target.namespace()
                ),
            ));
        };
        let what = format!("agent.bot-bottle.dev/{}", args.name);
        api.create(&PostParams::default(), &fork_object(&src, &args.name)?)
            .await
            .map_err(|e| CliError::api(&what, e))?;
        eprintln!("{what} created from {from}");
        super::apply::wait_running(&api, &args.name, super::apply::Deadline::new(args.timeout))
            .await?;
        println!("{what} forked from {from}");
        Ok(())
    });
    rt.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_names_its_source_keeps_its_inputs_and_asks_nothing_of_it() {
        let src: Agent = serde_json::from_value(serde_json::json!({
            "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": "src", "namespace": "team", "labels": {"app": "x"}},
            "spec": {"bottleRef": {"name": "b"}, "prompt": "p", "suspend": true,
                     "snapshotRequest": "t", "workspace": {"hostPath": "/w"},
                     "lifecycle": {"ttl": "1h"}}
        }))
        .expect("agent");
        let f = fork_object(&src, "copy").expect("fork");
        assert_eq!(f.metadata.name.as_deref(), Some("copy"));
        assert_eq!(f.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(
            f.spec.source.as_ref().map(|s| s.agent_ref.name.as_str()),
            Some("src")
        );
        assert_eq!(
            (f.spec.suspend, f.spec.snapshot_request.clone()),
            (None, None)
        );
        assert_eq!(f.spec.workspace.as_ref().and_then(|w| w.copy), Some(false));
        assert_eq!(f.spec.prompt.as_deref(), Some("p"));
        assert_eq!(f.spec.lifecycle, src.spec.lifecycle);
        let bad = fork_object(&src, "Not_A_Name").expect_err("bad name");
        assert!(bad.to_string().contains("--name Not_A_Name"), "{bad}");
    }
}
