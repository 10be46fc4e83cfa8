//! `extends` resolution: merges a Bottle onto its parents with the reference's rules, detects
//! cycles and unknown parents, and runs the checks that only make sense on the merged result.

use std::collections::{BTreeMap, BTreeSet};

use crate::bottle::BottleSpec;
use crate::egress::{EgressRoute, EgressSpec};
use crate::env::EnvVar;
use crate::error::{FieldPath, ValidationErrors};
use crate::git_gate::{GitGateSpec, GitRepo};
use crate::validate::{self, host_key};

/// Where a merged route was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOrigin {
    pub bottle: String,
    pub index: usize,
}

/// A Bottle merged with every parent it extends.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedBottle {
    pub name: String,
    /// The `extends` chain, root first, ending with `name`.
    pub chain: Vec<String>,
    /// The merged spec; `extends` is cleared.
    pub spec: BottleSpec,
    /// One entry per merged egress route, in order.
    pub route_origins: Vec<RouteOrigin>,
}

/// Resolves `name` against `bottles` (every Bottle known, by name). Errors name the chain or the
/// bottles that exist.
pub fn resolve_bottle(
    name: &str,
    bottles: &BTreeMap<String, BottleSpec>,
) -> Result<ResolvedBottle, ValidationErrors> {
    let mut errs = ValidationErrors::new(format!("Bottle/{name}"));
    let extends_path = FieldPath::root("spec").field("extends");
    let available = || {
        if bottles.is_empty() {
            "(none)".to_string()
        } else {
            bottles.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let mut chain = vec![name.to_string()];
    let mut current = name.to_string();
    loop {
        let Some(spec) = bottles.get(&current) else {
            if current == name {
                errs.push(
                    &FieldPath::default(),
                    format!("bottle '{name}' not found; available: {}", available()),
                );
            }
            return Err(errs);
        };
        let Some(parent) = &spec.extends else { break };
        if let Some(pos) = chain.iter().position(|c| c == parent) {
            let mut cycle: Vec<&str> = chain[pos..].iter().map(String::as_str).collect();
            cycle.push(parent);
            errs.push(
                &extends_path,
                format!(
                    "bottle '{name}' is in an extends cycle: {}",
                    cycle.join(" -> ")
                ),
            );
            return Err(errs);
        }
        if !bottles.contains_key(parent) {
            errs.push(
                &extends_path,
                format!(
                    "bottle '{current}' extends '{parent}' which is not defined; available bottles: {}",
                    available()
                ),
            );
            return Err(errs);
        }
        chain.push(parent.clone());
        current = parent.clone();
    }
    chain.reverse();

    let mut merged = BottleSpec::default();
    let mut origins: Vec<RouteOrigin> = Vec::new();
    for bottle in &chain {
        let Some(spec) = bottles.get(bottle) else {
            break;
        };
        for i in 0..spec.egress.as_ref().map_or(0, |e| e.routes().len()) {
            origins.push(RouteOrigin {
                bottle: bottle.clone(),
                index: i,
            });
        }
        merged = merge(&merged, spec);
    }
    merged.extends = None;
    Ok(ResolvedBottle {
        name: name.to_string(),
        chain,
        spec: merged,
        route_origins: origins,
    })
}

/// Merges `child` onto `parent` with the reference rules: env by name (child wins), git user per
/// field, repos united by name with field-level merge (`{}` clears), routes concatenated, `log`
/// only when the child sets it, agentProvider replaced whole, other fields when present.
pub fn merge(parent: &BottleSpec, child: &BottleSpec) -> BottleSpec {
    BottleSpec {
        extends: child.extends.clone(),
        agent_provider: child
            .agent_provider
            .clone()
            .or_else(|| parent.agent_provider.clone()),
        env: merge_env(parent.env.as_deref(), child.env.as_deref()),
        egress: merge_egress(parent.egress.as_ref(), child.egress.as_ref()),
        git_gate: merge_git_gate(parent.git_gate.as_ref(), child.git_gate.as_ref()),
        supervise: child.supervise.or(parent.supervise),
        runtime: match (&parent.runtime, &child.runtime) {
            (Some(p), Some(c)) => Some(p.overlay(c)),
            (p, c) => c.clone().or_else(|| p.clone()),
        },
        secret_discovery: match (&parent.secret_discovery, &child.secret_discovery) {
            (Some(p), Some(c)) => Some(crate::bottle::SecretDiscovery {
                enabled: c.enabled.or(p.enabled),
                exclude: p.exclude.iter().chain(&c.exclude).cloned().collect(),
            }),
            (p, c) => c.clone().or_else(|| p.clone()),
        },
    }
}

fn merge_env(parent: Option<&[EnvVar]>, child: Option<&[EnvVar]>) -> Option<Vec<EnvVar>> {
    match (parent, child) {
        (None, None) => None,
        (p, c) => {
            let mut out: Vec<EnvVar> = p.unwrap_or(&[]).to_vec();
            for var in c.unwrap_or(&[]) {
                match out.iter_mut().find(|e| e.name == var.name) {
                    Some(slot) => *slot = var.clone(),
                    None => out.push(var.clone()),
                }
            }
            Some(out)
        }
    }
}

fn merge_egress(parent: Option<&EgressSpec>, child: Option<&EgressSpec>) -> Option<EgressSpec> {
    match (parent, child) {
        (None, None) => None,
        (p, c) => {
            let routes: Vec<EgressRoute> = p
                .map(|e| e.routes().to_vec())
                .unwrap_or_default()
                .into_iter()
                .chain(c.map(|e| e.routes().to_vec()).unwrap_or_default())
                .collect();
            let any_routes =
                p.is_some_and(|e| e.routes.is_some()) || c.is_some_and(|e| e.routes.is_some());
            Some(EgressSpec {
                mode: c.and_then(|e| e.mode).or_else(|| p.and_then(|e| e.mode)),
                log: c.and_then(|e| e.log).or_else(|| p.and_then(|e| e.log)),
                routes: any_routes.then_some(routes),
            })
        }
    }
}

fn merge_git_gate(
    parent: Option<&GitGateSpec>,
    child: Option<&GitGateSpec>,
) -> Option<GitGateSpec> {
    match (parent, child) {
        (None, None) => None,
        (p, c) => {
            let user = match (
                p.and_then(|g| g.user.as_ref()),
                c.and_then(|g| g.user.as_ref()),
            ) {
                (Some(pu), Some(cu)) => Some(pu.overlay(cu)),
                (pu, cu) => cu.or(pu).cloned(),
            };
            let repos = match (
                p.and_then(|g| g.repos.as_ref()),
                c.and_then(|g| g.repos.as_ref()),
            ) {
                (pr, None) => pr.cloned(),
                (_, Some(cr)) if cr.is_empty() => Some(BTreeMap::new()),
                (None, Some(cr)) => Some(cr.clone()),
                (Some(pr), Some(cr)) => {
                    let mut out = pr.clone();
                    for (name, entry) in cr {
                        let merged = match out.get(name) {
                            Some(base) => GitRepo {
                                url: entry.url.clone().or_else(|| base.url.clone()),
                                key: entry.key.clone().or_else(|| base.key.clone()),
                                host_key: entry.host_key.clone().or_else(|| base.host_key.clone()),
                            },
                            None => entry.clone(),
                        };
                        out.insert(name.clone(), merged);
                    }
                    Some(out)
                }
            };
            Some(GitGateSpec { user, repos })
        }
    }
}

/// Validates the Bottle `name` completely: its own rules, its `extends` chain, and the rules of
/// the merged result that this bottle is responsible for. Returns the resolved bottle when valid.
pub fn validate_bottle(
    name: &str,
    bottles: &BTreeMap<String, BottleSpec>,
) -> Result<ResolvedBottle, ValidationErrors> {
    let mut errs = ValidationErrors::new(format!("Bottle/{name}"));
    let Some(own) = bottles.get(name) else {
        return resolve_bottle(name, bottles);
    };
    validate::bottle_spec(own, &mut errs);
    let resolved = match resolve_bottle(name, bottles) {
        Ok(r) => r,
        Err(e) => {
            errs.extend(e);
            return Err(errs);
        }
    };
    merged_rules(own, &resolved, &mut errs);
    errs.into_result().map(|()| resolved)
}

/// Checks of the merged spec, each reported only by the bottle that introduced the problem so
/// an error in a parent is not repeated by every child.
fn merged_rules(own: &BottleSpec, resolved: &ResolvedBottle, errs: &mut ValidationErrors) {
    let routes_path = FieldPath::root("spec").field("egress").field("routes");
    let mut first_seen: BTreeMap<String, &RouteOrigin> = BTreeMap::new();
    let routes = resolved
        .spec
        .egress
        .as_ref()
        .map(|e| e.routes())
        .unwrap_or(&[]);
    for (route, origin) in routes.iter().zip(&resolved.route_origins) {
        let key = host_key(&route.host);
        match first_seen.get(&key) {
            None => {
                first_seen.insert(key, origin);
            }
            Some(first) if origin.bottle == resolved.name => {
                let where_ = if first.bottle == resolved.name {
                    format!("spec.egress.routes[{}]", first.index)
                } else {
                    format!(
                        "spec.egress.routes[{}] of bottle '{}'",
                        first.index, first.bottle
                    )
                };
                errs.push(
                    &routes_path.index(origin.index).field("host"),
                    format!(
                        "duplicate host '{}': already allowed by {where_}; merge the two into one route (one route per host)",
                        route.host
                    ),
                );
            }
            Some(_) => {}
        }
    }

    let own_repos: BTreeSet<&String> = own
        .git_gate
        .as_ref()
        .and_then(|g| g.repos.as_ref())
        .map(|r| r.keys().collect())
        .unwrap_or_default();
    let inherited = resolved.chain.len() > 1;
    let suffix = if inherited {
        " (neither this bottle nor any bottle it extends sets it)"
    } else {
        ""
    };
    if let Some(repos) = resolved
        .spec
        .git_gate
        .as_ref()
        .and_then(|g| g.repos.as_ref())
    {
        for (name, repo) in repos {
            if !own_repos.contains(name) {
                continue;
            }
            let rp = FieldPath::root("spec")
                .field("gitGate")
                .field("repos")
                .key(name);
            if repo.url.is_none() {
                errs.push(
                    &rp.field("url"),
                    format!("required value: the upstream SSH URL{suffix}"),
                );
            }
            if repo.key.is_none() {
                errs.push(
                    &rp.field("key"),
                    format!("missing required 'key' block (provider static or gitea){suffix}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(docs: &[(&str, &str)]) -> BTreeMap<String, BottleSpec> {
        docs.iter()
            .map(|(n, y)| (n.to_string(), serde_yaml::from_str(y).expect("spec yaml")))
            .collect()
    }

    #[test]
    fn merge_rules_follow_the_reference() {
        let b = set(&[
            (
                "base",
                r#"
env: [{name: A, value: "1"}, {name: B, value: "2"}]
gitGate:
  user: {name: base, email: base@example.com}
  repos:
    main: {url: "git@h:o/main.git", key: {provider: static, path: /k}}
    docs: {url: "git@h:o/docs.git", key: {provider: static, path: /k}}
egress: {log: 1, routes: [{host: a.example.com}]}
agentProvider: {template: codex}
runtime: {cpu: "2", memory: 4Gi}
"#,
            ),
            (
                "child",
                r#"
extends: base
env: [{name: B, value: "20"}, {name: C, value: "3"}]
gitGate:
  user: {name: "", email: child@example.com}
  repos:
    main: {key: {provider: gitea, forgeToken: {hostEnv: TOK}}}
    extra: {url: "git@h:o/extra.git", key: {provider: static, path: /k}}
egress: {routes: [{host: b.example.com}]}
runtime: {memory: 8Gi}
"#,
            ),
        ]);
        let r = validate_bottle("child", &b).expect("valid");
        assert_eq!(r.chain, vec!["base", "child"]);
        let env: Vec<(&str, &str)> = r
            .spec
            .env()
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env, vec![("A", "1"), ("B", "20"), ("C", "3")]);
        let gg = r.spec.git_gate.as_ref().expect("git gate");
        let user = gg.user.as_ref().expect("user");
        assert_eq!(user.name.as_deref(), Some("base"));
        assert_eq!(user.email.as_deref(), Some("child@example.com"));
        let repos = gg.repos.as_ref().expect("repos");
        assert_eq!(
            repos.keys().collect::<Vec<_>>(),
            vec!["docs", "extra", "main"]
        );
        assert_eq!(repos["main"].url.as_deref(), Some("git@h:o/main.git"));
        assert_eq!(
            repos["main"].key.as_ref().map(|k| k.provider),
            Some(crate::git_gate::KeyProvider::Gitea)
        );
        let eg = r.spec.egress.as_ref().expect("egress");
        assert_eq!(
            eg.log,
            Some(1),
            "log inherited when the child does not set it"
        );
        let hosts: Vec<&str> = eg.routes().iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, vec!["a.example.com", "b.example.com"]);
        assert_eq!(
            r.route_origins,
            vec![
                RouteOrigin {
                    bottle: "base".into(),
                    index: 0
                },
                RouteOrigin {
                    bottle: "child".into(),
                    index: 0
                }
            ]
        );
        assert_eq!(
            r.spec.agent_provider.as_ref().map(|p| p.template()),
            Some(crate::provider::ProviderTemplate::Codex)
        );
        let rt = r.spec.runtime.as_ref().expect("runtime");
        assert_eq!(
            (rt.cpu.as_deref(), rt.memory.as_deref()),
            (Some("2"), Some("8Gi"))
        );
        assert_eq!(r.spec.extends, None);
    }

    #[test]
    fn empty_repos_clear_and_child_log_wins_and_provider_replaced_whole() {
        let b = set(&[
            (
                "base",
                r#"
gitGate: {repos: {main: {url: "git@h:o/m.git", key: {provider: static, path: /k}}}}
egress: {log: 2}
agentProvider: {template: pi, settings: {models: [m]}}
"#,
            ),
            (
                "child",
                "{extends: base, gitGate: {repos: {}}, egress: {log: 0}, agentProvider: {template: claude}}",
            ),
        ]);
        let r = validate_bottle("child", &b).expect("valid");
        assert_eq!(
            r.spec.git_gate.and_then(|g| g.repos).map(|r| r.len()),
            Some(0)
        );
        assert_eq!(r.spec.egress.and_then(|e| e.log), Some(0));
        let p = r.spec.agent_provider.expect("provider");
        assert_eq!(p.settings, None, "provider is replaced whole, not merged");
    }

    fn errors_of(name: &str, b: &BTreeMap<String, BottleSpec>) -> Vec<String> {
        match validate_bottle(name, b) {
            Ok(_) => vec![],
            Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn cycles_unknown_parents_and_missing_bottles() {
        let b = set(&[
            ("a", "{extends: b}"),
            ("b", "{extends: c}"),
            ("c", "{extends: a}"),
            ("d", "{extends: zz}"),
        ]);
        assert_eq!(
            errors_of("a", &b),
            vec!["spec.extends: bottle 'a' is in an extends cycle: a -> b -> c -> a"]
        );
        assert_eq!(
            errors_of("d", &b),
            vec![
                "spec.extends: bottle 'd' extends 'zz' which is not defined; available bottles: a, b, c, d"
            ]
        );
        assert_eq!(
            errors_of("nope", &b),
            vec!["bottle 'nope' not found; available: a, b, c, d"]
        );
        let selfref = set(&[("s", "{extends: s}")]);
        assert_eq!(
            errors_of("s", &selfref),
            vec!["spec.extends: bottle 's' is in an extends cycle: s -> s"]
        );
    }

    #[test]
    fn duplicate_hosts_are_reported_once_by_the_bottle_that_repeats_them() {
        let b = set(&[
            (
                "base",
                "{egress: {routes: [{host: a.example.com}, {host: A.example.com}]}}",
            ),
            (
                "child",
                "{extends: base, egress: {routes: [{host: x.example.com}, {host: a.example.com}]}}",
            ),
        ]);
        let base = errors_of("base", &b);
        assert_eq!(
            base,
            vec![
                "spec.egress.routes[1].host: 'A.example.com' must be lowercase ('a.example.com')",
                "spec.egress.routes[1].host: duplicate host 'A.example.com': already allowed by spec.egress.routes[0]; merge the two into one route (one route per host)",
            ]
        );
        assert_eq!(
            errors_of("child", &b),
            vec![
                "spec.egress.routes[1].host: duplicate host 'a.example.com': already allowed by spec.egress.routes[0] of bottle 'base'; merge the two into one route (one route per host)"
            ]
        );
    }

    #[test]
    fn repo_required_fields_are_checked_after_merge() {
        let b = set(&[
            (
                "base",
                "{gitGate: {repos: {main: {url: 'git@h:o/m.git', key: {provider: static, path: /k}}}}}",
            ),
            (
                "partial",
                "{extends: base, gitGate: {repos: {main: {hostKey: 'ssh-ed25519 AAAA'}, lone: {url: 'git@h:o/l.git'}}}}",
            ),
            (
                "orphan",
                "{gitGate: {repos: {main: {hostKey: 'ssh-ed25519 AAAA'}}}}",
            ),
        ]);
        assert_eq!(
            errors_of("partial", &b),
            vec![
                "spec.gitGate.repos[lone].key: missing required 'key' block (provider static or gitea) (neither this bottle nor any bottle it extends sets it)"
            ]
        );
        assert_eq!(
            errors_of("orphan", &b),
            vec![
                "spec.gitGate.repos[main].url: required value: the upstream SSH URL",
                "spec.gitGate.repos[main].key: missing required 'key' block (provider static or gitea)",
            ]
        );
    }
}
