//! `bbctl demo`: the README's main job. Today it loads the example bottles and agents, validates
//! them as a set and prints each bottle's resolved policy; running the agent follows the control
//! plane.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bb_crds::common::SecretSource;
use bb_crds::resolve::resolve_bottle;
use bb_crds::{BottleSpec, Resource};

use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of example manifests.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let (resources, errors) = super::validate::load(std::slice::from_ref(&args.examples), true)?;
    if !errors.is_empty() {
        return Err(CliError::new(Kind::Validation, errors.join("\n")));
    }
    let bottles: BTreeMap<String, BottleSpec> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Bottle(b) => Some((r.name().to_string(), b.spec.clone())),
            Resource::Agent(_) => None,
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
    println!("\nRunning these agents needs the local control plane, which has not landed yet.");
    Ok(())
}

/// Names where a credential comes from, never its value.
fn source(s: &SecretSource) -> String {
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
    } else {
        "a token file".into()
    }
}
