//! `bbctl diff -f`: what `apply` would change, as a unified diff of each object's YAML (the
//! live object against the server's dry-run result), exit 1 when anything differs, like
//! `kubectl diff`.

use bb_crds::{Agent, AgentPool, Bottle, Resource};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    files: crate::input::FileArgs,
    #[command(flatten)]
    target: Target,
}

/// The parts of an object a user declares: no server bookkeeping, no status.
fn comparable(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "finalizers",
        ] {
            m.remove(k);
        }
    }
    v
}

fn yaml(v: &serde_json::Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// A unified diff of two texts (whole-file hunk), from the longest common subsequence of lines.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut body = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            body.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as diff(1) prints a changed line.
            body.push(format!("-{}", a[i]));
            i += 1;
        } else {
            body.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    if body.iter().all(|l| l.starts_with(' ')) {
        return String::new();
    }
    let mut out = format!(
        "--- {old_name}\n+++ {new_name}\n@@ -1,{} +1,{} @@\n",
        a.len(),
        b.len()
    );
    for l in body {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

pub fn run(args: DiffArgs) -> Result<bool, CliError> {
    // Unreadable or invalid manifests are refused before a control plane is started for them.
    let (resources, errors) =
        super::validate::load(&args.files.required()?.files, args.files.recursive)?;
    if !errors.is_empty() {
        return Err(CliError::new(Kind::Validation, errors.join("\n")));
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.target.client_autostart().await?;
        let mut pp = PatchParams::apply(super::apply::FIELD_MANAGER);
        pp.dry_run = true;
        let mut changed = false;
        for r in resources {
            let what = format!("{}.bot-bottle.dev/{}", r.kind().to_lowercase(), r.name());
            let api_err = |e: kube::Error| CliError::api(&what, e);
            let ns = || args.target.namespace();
            let (live, planned) = match r {
                Resource::Bottle(mut b) => {
                    b.status = None;
                    dry_run(Api::<Bottle>::all(client.clone()), &b, &pp).await
                }
                Resource::Agent(mut a) => {
                    a.status = None;
                    let ns = a.namespace().unwrap_or_else(ns);
                    a.metadata.namespace = Some(ns.clone());
                    dry_run(Api::<Agent>::namespaced(client.clone(), &ns), &a, &pp).await
                }
                Resource::AgentPool(mut p) => {
                    p.status = None;
                    let ns = p.namespace().unwrap_or_else(ns);
                    p.metadata.namespace = Some(ns.clone());
                    dry_run(Api::<AgentPool>::namespaced(client.clone(), &ns), &p, &pp).await
                }
            }
            .map_err(api_err)?;
            let old = live.map(|l| yaml(&comparable(l))).unwrap_or_default();
            let new = yaml(&comparable(planned));
            let d = unified(
                &format!("live/{what}"),
                &format!("merged/{what}"),
                &old,
                &new,
            );
            if !d.is_empty() {
                changed = true;
                print!("{d}");
            }
        }
        Ok(changed)
    })
}

/// The live object (as JSON, if any) and what applying `obj` would make of it.
async fn dry_run<K>(
    api: Api<K>,
    obj: &K,
    pp: &PatchParams,
) -> Result<(Option<serde_json::Value>, serde_json::Value), kube::Error>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::Serialize
        + for<'de> k8s_openapi::serde::Deserialize<'de>,
{
    let value = serde_json::to_value(obj).unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    let live = api.get_opt(&name).await?;
    let planned = api.patch(&name, pp, &Patch::Apply(&value)).await?;
    Ok((
        live.map(|l| serde_json::to_value(l).unwrap_or_default()),
        serde_json::to_value(planned).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diffs() {
        assert_eq!(unified("a", "b", "x\ny\n", "x\ny\n"), "");
        assert_eq!(
            unified("a", "b", "x\ny\nz\n", "x\nY\nz\nw\n"),
            "--- a\n+++ b\n@@ -1,3 +1,4 @@\n x\n-y\n+Y\n z\n+w\n"
        );
        assert!(unified("a", "b", "", "new\n").contains("+new"));
    }
}
