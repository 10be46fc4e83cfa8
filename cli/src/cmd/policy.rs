//! `bbctl policy suggest agent/NAME`: the routes that would cover what an Agent did while its
//! Bottle's egress ran in `report` mode, read from its sidecar's audit log through its runner.

use bb_crds::policy::suggest::{Reported, suggest};
use kube::ResourceExt;

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the smallest routes covering what the Agent's `report`-mode egress let through.
    Suggest {
        /// The Agent: agent/NAME or NAME.
        agent: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(args: Args) -> Result<(), CliError> {
    let Command::Suggest { agent, target } = args.command;
    let rt = super::runtime()?;
    let text = rt.block_on(async {
        let opened = super::session::open(&target, &agent).await?;
        let a = &opened.agent;
        let client = target.client().await?;
        let specs = bb_runner::reconcile::bottle::listed_bottle_specs(&client)
            .await
            .map_err(|e| CliError::api("API", e))?;
        let bottle_name = &a.spec.bottle_ref.name;
        let bottle = bb_crds::resolve::validate_bottle(bottle_name, &specs)
            .map_err(|e| CliError::new(Kind::Validation, format!("bottle/{bottle_name}: {e}")))?;
        let path = format!("{}/log?container=egress&stdout=true", opened.path);
        let log = bb_runner::sessions::client::collect(&opened.runner, &path)
            .await
            .map_err(super::session::session_error)?;
        let reported: Vec<Reported> = String::from_utf8_lossy(&log.stdout)
            .lines()
            .filter_map(Reported::from_audit_line)
            .collect();
        let egress = bottle.spec.egress.clone().unwrap_or_default();
        Ok::<_, CliError>(render(
            &a.name_any(),
            bottle_name,
            egress.report(),
            egress.routes(),
            &reported,
        ))
    })?;
    print!("{text}");
    Ok(())
}

fn render(
    agent: &str,
    bottle: &str,
    report_mode: bool,
    declared: &[bb_crds::egress::EgressRoute],
    reported: &[Reported],
) -> String {
    let (routes, redacted) = suggest(declared, reported);
    let mut out = format!(
        "# Suggested from {} request(s) agent/{agent} made with its egress in report mode (bottle/{bottle}).\n",
        reported.len()
    );
    if !report_mode {
        out.push_str(
            "# bottle/{bottle} is not in report mode now: what follows was recorded earlier.\n"
                .replace("{bottle}", bottle)
                .as_str(),
        );
    }
    if redacted > 0 {
        out.push_str(&format!(
            "# {redacted} request(s) with a secret in the path were left out.\n"
        ));
    }
    out.push_str("# Review, then put these in the Bottle's spec.egress.routes (replacing a route they extend) and set spec.egress.mode: enforce.\n");
    for s in &routes {
        out.push_str(&format!(
            "# {}: {}\n",
            s.route.host,
            if s.extends.is_some() {
                "extends the declared route"
            } else {
                "new route"
            }
        ));
    }
    let doc = serde_json::json!({
        "routes": routes.iter().map(|s| &s.route).collect::<Vec<_>>()
    });
    out.push_str(&serde_yaml::to_string(&doc).unwrap_or_default());
    out
}
