//! `bbctl demo`: the README's main job. By default it runs an agent in a bottle on Docker
//! (`demo_live`); `--offline` instead validates the example bottles and agents as a set and
//! prints each bottle's resolved policy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bb_crds::common::SecretSource;
use bb_crds::resolve::resolve_bottle;
use bb_crds::{BottleSpec, Resource};

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not run anything: validate the examples and print each bottle's resolved policy.
    #[arg(long)]
    offline: bool,
    /// Base image (BASE build argument) for the demo's images (default: bot-bottle/base:bookworm
    /// when present, else debian:bookworm-slim).
    #[arg(long, value_name = "IMAGE", conflicts_with = "offline")]
    base_image: Option<String>,
    /// Directory of example manifests (with --offline).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    if !args.offline {
        return super::demo_live::run(args.base_image);
    }
    let (resources, errors) = super::validate::load(std::slice::from_ref(&args.examples), true)?;
    if !errors.is_empty() {
        return Err(CliError::new(Kind::Validation, errors.join("\n")));
    }
    let bottles: BTreeMap<String, BottleSpec> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Bottle(b) => Some((r.name().to_string(), b.spec.clone())),
            Resource::Agent(_) | Resource::AgentPool(_) => None,
        })
        .collect();
    println!(
        "{} bottles and {} agents in {} are valid.\n",
        bottles.len(),
        resources.len() - bottles.len(),
        args.examples.display()
    );
    for name in bottles.keys() {
        let r = resolve_bottle(name, &bottles)
            .map_err(|e| CliError::new(Kind::Validation, e.to_string()))?;
        let provider = r
            .spec
            .agent_provider
            .as_ref()
            .map(|p| p.template())
            .unwrap_or_default();
        println!("bottle/{name}  (chain: {})", r.chain.join(" -> "));
        println!(
            "  provider: {}   supervise: {}",
            provider.as_str(),
            r.spec.supervise()
        );
        for (route, origin) in r
            .spec
            .egress
            .iter()
            .flat_map(|e| e.routes())
            .zip(&r.route_origins)
        {
            let auth = route
                .auth
                .as_ref()
                .map(|a| format!("  injects {} from {}", a.scheme.as_str(), source(&a.token)))
                .unwrap_or_default();
            println!(
                "  allow {}{auth}   (from bottle/{})",
                route.host, origin.bottle
            );
        }
        println!();
    }
    for r in &resources {
        if let Resource::Agent(a) = r {
            println!(
                "agent/{} runs in bottle/{}",
                r.name(),
                a.spec.bottle_ref.name
            );
        }
    }
    println!(
        "\nRun them: bbctl controller run, then kubectl apply -f examples/ (or `bbctl demo` for a live walk-through)."
    );
    Ok(())
}

/// Names where a credential comes from, never its value.
pub fn source(s: &SecretSource) -> String {
    if let Some(r) = &s.secret_key_ref {
        format!(
            "secret {}/{}",
            r.namespace
                .as_deref()
                .unwrap_or(bb_crds::common::DEFAULT_SECRET_NAMESPACE),
            r.name
        )
    } else if let Some(h) = &s.host_env {
        format!("host env ${h}")
    } else if let Some(j) = &s.host_json {
        format!("the runner's {}", j.path.display())
    } else {
        "a token file".into()
    }
}
