//! Kubernetes RBAC rule matching for the tests: which requests the roles bound to one
//! ServiceAccount allow, and which of their rules no request needed.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};

/// A rule and where it applies: everywhere (a ClusterRole bound cluster-wide) or one namespace.
#[derive(Debug, Clone)]
pub struct Grant {
    pub namespace: Option<String>,
    pub rule: PolicyRule,
}

/// What one request asks, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
}

impl Request {
    pub fn from_audit(v: &serde_json::Value) -> Request {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Request {
            verb: s("verb").unwrap_or_default(),
            api_group: s("apiGroup").unwrap_or_default(),
            resource: s("resource").unwrap_or_default(),
            subresource: s("subresource"),
            namespace: s("namespace"),
        }
    }

    fn resource_path(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

fn bound_to(
    subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
    sa: &str,
    ns: &str,
) -> bool {
    subjects
        .iter()
        .flatten()
        .any(|s| s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ns))
}

/// The grants of ServiceAccount `ns/sa` among the rendered `objects`.
pub fn grants(objects: &[serde_json::Value], sa: &str, ns: &str) -> Vec<Grant> {
    let of_kind = |k: &'static str| objects.iter().filter(move |o| o["kind"] == k);
    let cluster_roles: Vec<ClusterRole> = of_kind("ClusterRole")
        .filter_map(|o| serde_json::from_value(o.clone()).ok())
        .collect();
    let roles: Vec<Role> = of_kind("Role")
        .filter_map(|o| serde_json::from_value(o.clone()).ok())
        .collect();
    let mut out = Vec::new();
    for b in of_kind("ClusterRoleBinding")
        .filter_map(|o| serde_json::from_value::<ClusterRoleBinding>(o.clone()).ok())
    {
        if !bound_to(&b.subjects, sa, ns) || b.role_ref.kind != "ClusterRole" {
            continue;
        }
        for r in cluster_roles
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name))
        {
            out.extend(r.rules.iter().flatten().map(|rule| Grant {
                namespace: None,
                rule: rule.clone(),
            }));
        }
    }
    for b in
        of_kind("RoleBinding").filter_map(|o| serde_json::from_value::<RoleBinding>(o.clone()).ok())
    {
        if !bound_to(&b.subjects, sa, ns) {
            continue;
        }
        let at = b.metadata.namespace.clone();
        let rules: Vec<PolicyRule> = match b.role_ref.kind.as_str() {
            "Role" => roles
                .iter()
                .filter(|r| {
                    r.metadata.name.as_deref() == Some(&b.role_ref.name)
                        && r.metadata.namespace == at
                })
                .flat_map(|r| r.rules.clone().unwrap_or_default())
                .collect(),
            _ => cluster_roles
                .iter()
                .filter(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name))
                .flat_map(|r| r.rules.clone().unwrap_or_default())
                .collect(),
        };
        out.extend(rules.into_iter().map(|rule| Grant {
            namespace: at.clone(),
            rule,
        }));
    }
    out
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.iter().flatten().any(|x| x == want || x == "*")
}

/// Whether `g` allows `r`.
pub fn allows(g: &Grant, r: &Request) -> bool {
    if g.namespace.is_some() && g.namespace != r.namespace {
        return false;
    }
    let rule = &g.rule;
    rule.api_groups
        .iter()
        .flatten()
        .any(|x| x == &r.api_group || x == "*")
        && has(&rule.resources, &r.resource_path())
        && rule.verbs.iter().any(|v| v == &r.verb || v == "*")
        && rule.resource_names.as_ref().is_none_or(|n| n.is_empty())
}

/// Every (group, resource, verb) a grant names, as `verb group/resource@namespace`.
pub fn permissions(g: &Grant) -> Vec<(String, Request)> {
    let mut out = Vec::new();
    for group in g.rule.api_groups.iter().flatten() {
        for res in g.rule.resources.iter().flatten() {
            for verb in &g.rule.verbs {
                let (resource, subresource) = match res.split_once('/') {
                    Some((a, b)) => (a.to_string(), Some(b.to_string())),
                    None => (res.clone(), None),
                };
                let label = format!(
                    "{verb} {group}/{res}@{}",
                    g.namespace.as_deref().unwrap_or("*")
                );
                out.push((
                    label,
                    Request {
                        verb: verb.clone(),
                        api_group: group.clone(),
                        resource,
                        subresource,
                        namespace: g.namespace.clone(),
                    },
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: Option<&str>, groups: &[&str], resources: &[&str], verbs: &[&str]) -> Grant {
        Grant {
            namespace: ns.map(Into::into),
            rule: PolicyRule {
                api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
                resources: Some(resources.iter().map(|s| s.to_string()).collect()),
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    fn req(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        ns: Option<&str>,
    ) -> Request {
        Request {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: ns.map(Into::into),
        }
    }

    #[test]
    fn rules_match_as_kubernetes_matches_them() {
        let g = grant(None, &["bot-bottle.dev"], &["agents"], &["get", "list"]);
        assert!(allows(
            &g,
            &req("get", "bot-bottle.dev", "agents", None, Some("x"))
        ));
        assert!(!allows(
            &g,
            &req("patch", "bot-bottle.dev", "agents", None, Some("x"))
        ));
        assert!(
            !allows(
                &g,
                &req("get", "bot-bottle.dev", "agents", Some("status"), Some("x"))
            ),
            "a subresource is its own resource"
        );
        assert!(!allows(&g, &req("get", "", "agents", None, Some("x"))));
        let ns = grant(Some("sys"), &[""], &["secrets"], &["get"]);
        assert!(allows(&ns, &req("get", "", "secrets", None, Some("sys"))));
        assert!(
            !allows(&ns, &req("get", "", "secrets", None, Some("default"))),
            "a Role is one namespace"
        );
    }
}
