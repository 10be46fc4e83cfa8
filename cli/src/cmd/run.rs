//! `bbctl run`: the quick path. Creates an Agent in a Bottle, waits until it runs, optionally
//! attaches to it, and with `--rm` deletes it when the session ends.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bb_crds::Agent;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Name of the Agent to create.
    name: String,
    /// The Bottle it runs in.
    #[arg(long, value_name = "NAME")]
    bottle: String,
    /// Host directory copied into the agent at /workspace.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// File whose contents become the Agent's prompt.
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// Label shown in the terminal title.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Banner colour: red, green, yellow, blue or magenta.
    #[arg(long, value_name = "COLOR", value_parser = ["red", "green", "yellow", "blue", "magenta"])]
    color: Option<String>,
    /// Attach to the provider's command once the Agent runs.
    #[arg(long)]
    attach: bool,
    /// Delete the Agent when the attached session ends.
    #[arg(long, requires = "attach")]
    rm: bool,
    /// How long to wait for the Agent to run (`30s`, `5m`; `0s`: no limit); a first image
    /// build can take minutes.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::apply::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

fn agent_object(args: &RunArgs, ns: &str) -> Result<serde_json::Value, CliError> {
    let mut spec = serde_json::json!({"bottleRef": {"name": args.bottle}});
    if let Some(dir) = &args.workspace {
        let abs = std::fs::canonicalize(dir).map_err(|e| {
            CliError::new(
                Kind::NotFound,
                format!("--workspace {}: {e}", dir.display()),
            )
        })?;
        spec["workspace"] = serde_json::json!({"hostPath": abs.display().to_string()});
    }
    if let Some(f) = &args.prompt_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::new(
                Kind::NotFound,
                format!("--prompt-file {}: {e}", f.display()),
            )
        })?;
        spec["prompt"] = serde_json::json!(text);
    }
    if let Some(l) = &args.label {
        spec["label"] = serde_json::json!(l);
    }
    if let Some(c) = &args.color {
        spec["color"] = serde_json::json!(c);
    }
    Ok(serde_json::json!({
        "apiVersion": bb_crds::API_VERSION, "kind": "Agent",
        "metadata": {"name": args.name, "namespace": ns}, "spec": spec
    }))
}

pub fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let ns = args.target.namespace();
        let value = agent_object(&args, &ns)?;
        let client = args.target.client_autostart().await?;
        let api: Api<Agent> = Api::namespaced(client.clone(), &ns);
        let what = format!("agent.bot-bottle.dev/{}", args.name);
        api.patch(
            &args.name,
            &PatchParams::apply(super::apply::FIELD_MANAGER),
            &Patch::Apply(&value),
        )
        .await
        .map_err(|e| CliError::api(&what, e))?;
        eprintln!("{what} created");
        super::apply::wait_running(&api, &args.name, super::apply::Deadline::new(args.timeout))
            .await?;
        if !args.attach {
            println!("{what} running");
            return Ok(0);
        }
        let code = super::session::attach_to(&args.target, &args.name).await;
        if args.rm {
            let _ = api.delete(&args.name, &Default::default()).await;
            while matches!(api.get_opt(&args.name).await, Ok(Some(_))) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("{what} deleted");
        }
        code
    });
    rt.shutdown_background();
    result.map(ExitCode::from)
}
