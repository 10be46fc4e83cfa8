//! Learning a policy: the requests `report` mode let through (and recorded in the egress audit
//! log) turned into the smallest routes that cover them, on top of the routes already declared.

use std::collections::BTreeMap;

use crate::egress::{EgressRoute, PathMatch, PathMatchType, RouteGit, RouteMatch};
use crate::validate::host_key;

/// One request `report` mode let through: an audit line with `"decision": "report"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub method: String,
    pub host: String,
    pub path: String,
    pub port: Option<u16>,
    /// `https` or `http`.
    pub scheme: Option<String>,
    pub rule: String,
}

impl Reported {
    /// Reads an audit log line; `None` for any line that is not a reported request.
    pub fn from_audit_line(line: &str) -> Option<Reported> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["decision"] != "report" {
            return None;
        }
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Some(Reported {
            method: s("method")?,
            host: s("host")?,
            path: s("path")?,
            port: v["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            scheme: s("scheme"),
            rule: s("rule")?,
        })
    }
}

/// A route the suggestion adds or extends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggested {
    pub route: EgressRoute,
    /// The declared route it extends; `None` for a new host.
    pub extends: Option<EgressRoute>,
}

/// What the recorded requests need beyond `declared`: per host, the declared route (if any)
/// widened by exactly what was seen: one match per method listing its exact paths, the ports
/// and plain `http://` used, git fetch. Paths the audit log redacted (they held a secret) are
/// counted in the second value and left out.
pub fn suggest(declared: &[EgressRoute], reported: &[Reported]) -> (Vec<Suggested>, usize) {
    let mut by_host: BTreeMap<String, Vec<&Reported>> = BTreeMap::new();
    let mut redacted = 0;
    for r in reported {
        if r.path == "<redacted>" {
            redacted += 1;
            continue;
        }
        by_host.entry(host_key(&r.host)).or_default().push(r);
    }
    let mut out = Vec::new();
    for (key, seen) in by_host {
        let existing = declared.iter().find(|d| host_key(&d.host) == key);
        let mut route = existing.cloned().unwrap_or_else(|| EgressRoute {
            host: seen[0].host.clone(),
            ..Default::default()
        });
        let plain = seen.iter().any(|r| r.scheme.as_deref() == Some("http"));
        let default_port = |r: &&Reported| {
            r.port.unwrap_or(if r.scheme.as_deref() == Some("http") {
                80
            } else {
                443
            })
        };
        let mut ports = route.allowed_ports();
        if existing.is_none() {
            ports.clear();
        }
        for r in &seen {
            let p = default_port(r);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports.sort_unstable();
        let default_ports = if plain && !ports.contains(&443) {
            vec![80]
        } else {
            vec![443]
        };
        route.ports = (ports != default_ports || route.ports.is_some()).then_some(ports);
        if plain {
            route.plain_http = Some(true);
        }
        if seen.iter().any(|r| r.rule == "git-fetch") {
            route.git = Some(RouteGit { fetch: Some(true) });
        }
        // Only a host that already narrows its requests, or a new one, gets matches: a declared
        // route without matches already allows every path.
        if existing.is_none() || route.matches.is_some() {
            let mut methods: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in &seen {
                if r.rule == "git-fetch" && existing.is_some() {
                    continue;
                }
                let paths = methods.entry(r.method.to_ascii_uppercase()).or_default();
                if !paths.contains(&r.path) {
                    paths.push(r.path.clone());
                }
            }
            let matches = route.matches.get_or_insert_with(Vec::new);
            for (method, paths) in methods {
                matches.push(RouteMatch {
                    paths: Some(
                        paths
                            .into_iter()
                            .map(|value| PathMatch {
                                match_type: Some(PathMatchType::Exact),
                                value,
                            })
                            .collect(),
                    ),
                    methods: Some(vec![method]),
                    headers: None,
                });
            }
        }
        out.push(Suggested {
            route,
            extends: existing.cloned(),
        });
    }
    (out, redacted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(method: &str, host: &str, path: &str, port: u16, scheme: &str, rule: &str) -> Reported {
        Reported {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            port: Some(port),
            scheme: Some(scheme.into()),
            rule: rule.into(),
        }
    }

    #[test]
    fn audit_lines_are_read_and_others_skipped() {
        let line = r#"{"time":"t","method":"GET","host":"a.test","path":"/x","decision":"report","status":200,"rule":"host-not-allowed","port":443,"scheme":"https"}"#;
        assert_eq!(
            Reported::from_audit_line(line),
            Some(rep("GET", "a.test", "/x", 443, "https", "host-not-allowed"))
        );
        assert_eq!(
            Reported::from_audit_line(&line.replace("report", "allow")),
            None
        );
        assert_eq!(Reported::from_audit_line("not json"), None);
    }

    #[test]
    fn the_smallest_routes_that_cover_what_was_seen() {
        let declared = crate::proposal::parse_proposed_routes(
            "routes:\n  - host: api.test\n    matches: [{paths: [{type: prefix, value: /v1/}]}]\n  - host: open.test\n",
        )
        .expect("routes");
        let seen = [
            rep(
                "GET",
                "docs.test",
                "/guide",
                443,
                "https",
                "host-not-allowed",
            ),
            rep(
                "get",
                "docs.test",
                "/guide",
                443,
                "https",
                "host-not-allowed",
            ),
            rep(
                "POST",
                "docs.test",
                "/search",
                443,
                "https",
                "host-not-allowed",
            ),
            rep("GET", "api.test", "/v2/items", 443, "https", "no-match"),
            rep("GET", "open.test", "/x", 8443, "https", "port-not-allowed"),
            rep("GET", "lan.test", "/m", 8080, "http", "host-not-allowed"),
            rep(
                "GET",
                "x.test",
                "<redacted>",
                443,
                "https",
                "host-not-allowed",
            ),
        ];
        let (routes, redacted) = suggest(&declared, &seen);
        assert_eq!(redacted, 1);
        let yaml = |h: &str| {
            let r = routes.iter().find(|s| s.route.host == h).expect(h);
            (
                serde_json::to_value(&r.route).expect("json"),
                r.extends.is_some(),
            )
        };
        assert_eq!(
            yaml("docs.test"),
            (
                serde_json::json!({"host": "docs.test", "matches": [
                    {"paths": [{"type": "exact", "value": "/guide"}], "methods": ["GET"]},
                    {"paths": [{"type": "exact", "value": "/search"}], "methods": ["POST"]}]}),
                false
            )
        );
        assert_eq!(
            yaml("api.test"),
            (
                serde_json::json!({"host": "api.test", "matches": [
                    {"paths": [{"type": "prefix", "value": "/v1/"}]},
                    {"paths": [{"type": "exact", "value": "/v2/items"}], "methods": ["GET"]}]}),
                true
            )
        );
        // A declared route without matches allows every path: only the port is added.
        assert_eq!(
            yaml("open.test"),
            (
                serde_json::json!({"host": "open.test", "ports": [443, 8443]}),
                true
            )
        );
        assert_eq!(
            yaml("lan.test").0,
            serde_json::json!({"host": "lan.test", "ports": [8080], "plainHttp": true, "matches": [
                {"paths": [{"type": "exact", "value": "/m"}], "methods": ["GET"]}]})
        );
        // What it suggests parses as routes again.
        let doc = serde_yaml::to_string(&serde_json::json!({
            "routes": routes.iter().map(|s| &s.route).collect::<Vec<_>>()
        }))
        .expect("yaml");
        assert_eq!(
            crate::proposal::parse_proposed_routes(&doc)
                .map(|r| r.len())
                .ok(),
            Some(4)
        );
    }
}
