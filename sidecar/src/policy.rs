//! The egress decision: a policy compiled from the shared `EgressSpec` into matchers, and the
//! rules that fire before a request may leave (host, matches, git, DNS-over-HTTPS, IP literals).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use bb_policy::egress::{
    AuthScheme, DetectorSelection, EgressRoute, EgressSpec, HeaderMatchType, PathMatchType,
};
use bb_policy::rule::Rule;
use regex::Regex;

use crate::secret_files::SecretFiles;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("route {host}: reading token file {file}: {source}")]
    Token {
        host: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
enum PathRule {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct MatchRule {
    paths: Vec<PathRule>,
    methods: Vec<String>,
    headers: Vec<(String, HeaderRule)>,
}

#[derive(Debug)]
enum HeaderRule {
    Exact(String),
    Regex(Regex),
}

/// Credential injected on a route. `Debug` never shows the token.
pub struct Injected {
    pub scheme: AuthScheme,
    token: String,
    /// Also over plain `http://` (`auth.allowPlaintext`).
    pub plaintext: bool,
    /// The token as a needle for responses: an upstream that echoes the request (`TRACE`, a
    /// header-echo endpoint) must not hand the agent the credential it never holds.
    pub reflected: std::sync::Arc<crate::needles::NeedleSet>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Injected({}, <redacted>)", self.scheme.as_str())
    }
}

impl Injected {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        format!("{} {}", self.scheme.as_str(), self.token)
    }
}

/// Which DLP detectors run on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlpSwitches {
    pub token_patterns: bool,
    pub known_secrets: bool,
    pub injection: bool,
}

#[derive(Debug)]
pub struct Route {
    pub host: String,
    /// Ports the host may be reached on (`ports`, default 443 or 80).
    pub ports: Vec<u16>,
    /// Plain `http://` allowed (`plainHttp`).
    pub plain_http: bool,
    /// May resolve to (or be) a private, loopback or link-local address (`allowPrivateAddresses`).
    pub allow_private: bool,
    matches: Vec<MatchRule>,
    pub auth: Option<Injected>,
    pub git_fetch: bool,
    pub dlp: DlpSwitches,
}

/// A policy ready to answer requests.
#[derive(Debug)]
pub struct Policy {
    routes: HashMap<String, Route>,
    /// Detectors over the bottle's own secrets (every file of the secrets directory).
    pub detectors: crate::dlp::Detectors,
    /// The policy as loaded, for introspection.
    pub spec: EgressSpec,
    /// Every route may reach private addresses (`--allow-private-upstreams`, test rigs only).
    private_everywhere: bool,
    /// `mode: report`: what the routes would refuse goes through `learning` and is recorded.
    report: bool,
    /// The route a reported request travels: no credential, every DLP detector, any port.
    learning: Route,
}

/// Why a request was refused: `rule` is a stable name for the header, the audit log and the
/// counters; `reason` says what to do; `status` is what the agent receives (403 unless the
/// request itself was malformed or the refusal concerns the upstream's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub reason: String,
    pub status: http::StatusCode,
}

impl Refusal {
    pub fn new(rule: Rule, reason: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            reason: reason.into(),
            status: http::StatusCode::FORBIDDEN,
        }
    }

    pub fn with_status(mut self, status: http::StatusCode) -> Refusal {
        self.status = status;
        self
    }
}

fn refuse(rule: Rule, reason: impl Into<String>) -> Refusal {
    Refusal::new(rule, reason)
}

/// The parts of a request the decision looks at.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub host: &'a str,
    /// The port the request goes to upstream.
    pub port: u16,
    /// Whether it travels over TLS (a CONNECT tunnel) rather than plain `http://`.
    pub tls: bool,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

pub fn normalise_host(h: &str) -> String {
    // The one canonical form validation also keys routes by: `[::1]`, `::1` and `0:0::1` are
    // one host.
    bb_policy::validate::host_key(h)
}

impl Policy {
    /// Parses and compiles a policy file; token files are read from `secrets_dir`.
    pub fn load(text: &str, secrets_dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let secrets = secrets_dir
            .map(|dir| {
                SecretFiles::read(dir).map_err(|source| PolicyError::Token {
                    host: String::new(),
                    file: dir.display().to_string(),
                    source,
                })
            })
            .transpose()?;
        Self::parse(text, secrets.as_ref())
    }

    /// Parses and compiles a policy file against token files already read.
    pub fn parse(text: &str, secrets: Option<&SecretFiles>) -> Result<Policy, PolicyError> {
        let spec = bb_policy::file::parse_sidecar_policy(text)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        Self::compile(spec, secrets)
    }

    pub fn compile(spec: EgressSpec, secrets: Option<&SecretFiles>) -> Result<Policy, PolicyError> {
        let mut routes = HashMap::new();
        for r in spec.routes() {
            let route = compile_route(r, secrets)?;
            routes.insert(normalise_host(&r.host), route);
        }
        let needles = secrets
            .map(SecretFiles::needles)
            .transpose()
            .map_err(|e| {
                PolicyError::Invalid(format!("{}: {e}", bb_policy::guarded::GUARDED_SECRETS_FILE))
            })?
            .unwrap_or_default();
        let detectors = crate::dlp::Detectors::new(&needles);
        let learning = compile_route(
            &EgressRoute {
                host: "(report mode)".into(),
                plain_http: Some(true),
                git: Some(bb_policy::egress::RouteGit { fetch: Some(true) }),
                ..Default::default()
            },
            None,
        )?;
        Ok(Policy {
            routes,
            detectors,
            report: spec.report(),
            spec,
            private_everywhere: false,
            learning,
        })
    }

    /// The same policy with every route allowed private addresses (`--allow-private-upstreams`).
    pub fn with_private_everywhere(mut self, on: bool) -> Policy {
        self.private_everywhere = on;
        self
    }

    #[cfg(test)]
    pub fn route(&self, host: &str) -> Option<&Route> {
        self.routes.get(&normalise_host(host))
    }

    /// In `report` mode, what a refusal of the routes lets through instead: the learning route
    /// (no credential, all DLP). `None` for a refusal that holds in every mode.
    pub fn reported(&self, refusal: &Refusal) -> Option<&Route> {
        (self.report && refusal.rule.reportable()).then_some(&self.learning)
    }

    /// May a tunnel to `host` be opened at all? (CONNECT, before any request is seen.)
    pub fn admit_host(&self, host: &str) -> Result<&Route, Refusal> {
        let h = normalise_host(host);
        match self.routes.get(&h) {
            Some(r) => Ok(r),
            None if h.parse::<IpAddr>().is_ok() => Err(refuse(
                Rule::IpLiteral,
                format!(
                    "egress: IP address {h} is not allowed; connect by a hostname the bottle's policy names"
                ),
            )),
            None => Err(refuse(
                Rule::HostNotAllowed,
                format!(
                    "egress: host {h} is not in the bottle's egress policy; ask for access with the supervise egress-block tool"
                ),
            )),
        }
    }

    /// Whether the route for `host` may reach private addresses: asked by the resolver for
    /// names, and by `admit` for IP literals (which never reach a resolver).
    pub fn allows_private(&self, host: &str) -> bool {
        self.private_everywhere
            || self
                .routes
                .get(&normalise_host(host))
                .is_some_and(|r| r.allow_private)
    }

    /// May `host:port` be reached at all, over TLS (`tls`) or plain HTTP? (CONNECT checks this
    /// before any request is seen; every request checks it again.)
    pub fn admit(&self, host: &str, port: u16, tls: bool) -> Result<&Route, Refusal> {
        let route = self.admit_host(host)?;
        if !route.ports.contains(&port) {
            let ports: Vec<String> = route.ports.iter().map(u16::to_string).collect();
            return Err(refuse(
                Rule::PortNotAllowed,
                format!(
                    "egress: port {port} of {} is not allowed; the route allows port {} (egress.routes[].ports)",
                    route.host,
                    ports.join(", ")
                ),
            ));
        }
        if !tls && !route.plain_http {
            return Err(refuse(
                Rule::PlainHttpNotAllowed,
                format!(
                    "egress: plain http:// to {} is not allowed; use https://, or set egress.routes[].plainHttp: true for a server without TLS",
                    route.host
                ),
            ));
        }
        if let Ok(ip) = route.host.parse::<IpAddr>()
            && crate::resolve::is_private(ip)
            && !self.allows_private(host)
        {
            return Err(refuse(
                Rule::PrivateAddress,
                format!(
                    "egress: {ip} is a private, loopback or link-local address; a route reaches those only with egress.routes[].allowPrivateAddresses: true"
                ),
            ));
        }
        if !tls && route.auth.as_ref().is_some_and(|a| !a.plaintext) {
            return Err(refuse(
                Rule::PlaintextCredential,
                format!(
                    "egress: the route to {} injects a credential, which would cross the wire in clear over http://; use https://, or set egress.routes[].auth.allowPlaintext: true",
                    route.host
                ),
            ));
        }
        Ok(route)
    }

    /// The decision for one request. Order: host, port and scheme, DNS-over-HTTPS, matches, git.
    pub fn decide(&self, req: &RequestView<'_>) -> Result<&Route, Refusal> {
        let route = self.admit(req.host, req.port, req.tls)?;
        self.request_rules(route, req)?;
        Ok(route)
    }

    /// `decide`, and in `report` mode a refusal of the routes turned into the learning route
    /// with the rule it would have broken. What holds in every mode (DNS-over-HTTPS, git push)
    /// is judged again on the learning route: a reported host is no way around it.
    pub fn decide_reporting(
        &self,
        req: &RequestView<'_>,
    ) -> Result<(&Route, Option<Rule>), Refusal> {
        match self.decide(req) {
            Ok(route) => Ok((route, None)),
            Err(r) => {
                let learning = self.reported(&r).ok_or_else(|| r.clone())?;
                self.request_rules(learning, req)?;
                Ok((learning, Some(r.rule)))
            }
        }
    }

    /// The rules on a request to an admitted host: DNS-over-HTTPS, the route's matches, git.
    fn request_rules(&self, route: &Route, req: &RequestView<'_>) -> Result<(), Refusal> {
        let ctype = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let accept = req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if req.path.ends_with("/dns-query")
            || ctype.starts_with("application/dns-message")
            || accept.contains("application/dns-message")
        {
            return Err(refuse(
                Rule::DnsOverHttps,
                "egress: DNS-over-HTTPS is blocked; names resolve through the sidecar",
            ));
        }
        if !route.matches.is_empty() && !route.matches.iter().any(|m| m.matches(req)) {
            return Err(refuse(
                Rule::NoMatch,
                format!(
                    "egress: {} {} on {} matches none of the route's rules (paths, methods, headers)",
                    req.method, req.path, route.host
                ),
            ));
        }
        if is_git_push(req.path, req.query) {
            return Err(refuse(
                Rule::GitPush,
                "egress: git push over HTTPS is never allowed; push through git-gate",
            ));
        }
        if is_git_fetch(req.path, req.query) && !route.git_fetch {
            return Err(refuse(
                Rule::GitFetch,
                "egress: git fetch/clone over HTTPS is not allowed by default; use git-gate for declared repos or set egress.routes[].git.fetch=true for explicit read-only HTTPS Git access.",
            ));
        }
        Ok(())
    }
}

fn compile_route(r: &EgressRoute, secrets: Option<&SecretFiles>) -> Result<Route, PolicyError> {
    let mut matches = Vec::new();
    for m in r.matches.iter().flatten() {
        let mut paths = Vec::new();
        for p in m.paths.iter().flatten() {
            paths.push(match p.match_type.unwrap_or_default() {
                PathMatchType::Prefix => PathRule::Prefix(p.value.clone()),
                PathMatchType::Exact => PathRule::Exact(p.value.clone()),
                PathMatchType::Regex => PathRule::Regex(
                    Regex::new(&p.value).map_err(|e| PolicyError::Invalid(e.to_string()))?,
                ),
            });
        }
        let mut headers = Vec::new();
        for h in m.headers.iter().flatten() {
            let rule = match h.match_type.unwrap_or_default() {
                HeaderMatchType::Exact => HeaderRule::Exact(h.value.clone()),
                HeaderMatchType::Regex => HeaderRule::Regex(
                    Regex::new(&h.value).map_err(|e| PolicyError::Invalid(e.to_string()))?,
                ),
            };
            headers.push((h.name.to_ascii_lowercase(), rule));
        }
        matches.push(MatchRule {
            paths,
            methods: m
                .methods
                .iter()
                .flatten()
                .map(|x| x.to_ascii_uppercase())
                .collect(),
            headers,
        });
    }
    let auth = match &r.auth {
        None => None,
        Some(a) => {
            let file = a.token.token_file.clone().unwrap_or_default();
            let secrets = secrets.ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "route {} injects auth but no --secrets-dir was given",
                    r.host
                ))
            })?;
            let token_error = |kind: std::io::ErrorKind, what: &str| PolicyError::Token {
                host: r.host.clone(),
                file: file.clone(),
                source: std::io::Error::new(kind, what.to_string()),
            };
            let token = secrets
                .get(&file)
                .ok_or_else(|| token_error(std::io::ErrorKind::NotFound, "no such file"))?;
            let token = std::str::from_utf8(token)
                .map_err(|_| token_error(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
            let token = token.trim_end_matches(['\r', '\n']).to_string();
            Some(Injected {
                scheme: a.scheme,
                reflected: std::sync::Arc::new(crate::needles::NeedleSet::new(&[
                    crate::needles::Needle::own(token.as_bytes()),
                ])),
                token,
                plaintext: a.allow_plaintext.unwrap_or(false),
            })
        }
    };
    let on = |sel: Option<&DetectorSelection>, name: &str| match sel {
        None | Some(DetectorSelection::Enabled(true)) => true,
        Some(DetectorSelection::Enabled(false)) => false,
        Some(DetectorSelection::Only(names)) => names.iter().any(|n| n == name),
    };
    let dlp = r.dlp.clone().unwrap_or_default();
    Ok(Route {
        host: normalise_host(&r.host),
        ports: r.allowed_ports(),
        plain_http: r.plain_http(),
        allow_private: r.allow_private_addresses.unwrap_or(false),
        matches,
        auth,
        git_fetch: r.git.as_ref().and_then(|g| g.fetch).unwrap_or(false),
        dlp: DlpSwitches {
            token_patterns: on(dlp.outbound.as_ref(), "token_patterns"),
            known_secrets: on(dlp.outbound.as_ref(), "known_secrets"),
            injection: on(dlp.inbound.as_ref(), "naive_injection_detection"),
        },
    })
}

impl MatchRule {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        let path_ok = self.paths.is_empty()
            || self.paths.iter().any(|p| match p {
                PathRule::Prefix(v) => req.path.starts_with(v.as_str()),
                PathRule::Exact(v) => req.path == v,
                PathRule::Regex(re) => re.is_match(req.path),
            });
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(req.method));
        let headers_ok = self.headers.iter().all(|(name, rule)| {
            req.headers.get_all(name.as_str()).iter().any(|v| {
                let v = v.to_str().unwrap_or("");
                match rule {
                    HeaderRule::Exact(want) => v == want,
                    HeaderRule::Regex(re) => re.is_match(v),
                }
            })
        });
        path_ok && method_ok && headers_ok
    }
}

fn query_has(query: Option<&str>, key: &str, value: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split_once('=') == Some((key, value)))
    })
}

pub fn is_git_push(path: &str, query: Option<&str>) -> bool {
    path.ends_with("/git-receive-pack")
        || (path.ends_with("/info/refs") && query_has(query, "service", "git-receive-pack"))
}

pub fn is_git_fetch(path: &str, query: Option<&str>) -> bool {
    path.ends_with("/git-upload-pack")
        || (path.ends_with("/info/refs") && query_has(query, "service", "git-upload-pack"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::load(yaml, None).expect("policy")
    }

    /// A guarded-secrets file the sidecar cannot read fails the load: the sidecar keeps what
    /// it enforced (and never reports the new hash) rather than guard less than it was told.
    #[test]
    fn an_unreadable_guarded_secrets_file_fails_the_load() {
        let files: SecretFiles = [(
            bb_policy::guarded::GUARDED_SECRETS_FILE.to_string(),
            b"[{\"path\":".to_vec(),
        )]
        .into_iter()
        .collect();
        let err = Policy::parse("routes: []\n", Some(&files))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("guarded-secrets.json"), "{err}");
    }

    fn decide(
        p: &Policy,
        host: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<String, &'static str> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        p.decide(&RequestView {
            host,
            port: 443,
            tls: true,
            method,
            path,
            query,
            headers: &h,
        })
        .map(|r| r.host.clone())
        .map_err(|e| e.rule.as_str())
    }

    #[test]
    fn default_deny_and_host_matching() {
        // A public address: private ones also need allowPrivateAddresses (tested below).
        let p = policy("routes: [{host: api.example.com}, {host: 203.0.113.5}]");
        assert_eq!(
            decide(&p, "API.example.com.", "GET", "/", None, &[]),
            Ok("api.example.com".into())
        );
        assert_eq!(
            decide(&p, "evil.example.com", "GET", "/", None, &[]),
            Err("host-not-allowed")
        );
        assert_eq!(
            decide(&p, "93.184.216.34", "GET", "/", None, &[]),
            Err("ip-literal")
        );
        assert_eq!(
            decide(&p, "203.0.113.5", "GET", "/", None, &[]),
            Ok("203.0.113.5".into()),
            "a route may name an IP"
        );
        assert_eq!(
            decide(&p, "[::1]", "GET", "/", None, &[]),
            Err("ip-literal")
        );
    }

    fn admit(p: &Policy, host: &str, port: u16, tls: bool) -> Result<(), &'static str> {
        p.admit(host, port, tls)
            .map(|_| ())
            .map_err(|e| e.rule.as_str())
    }

    #[test]
    fn ports_and_schemes_are_the_routes_to_name() {
        let p = Policy::load(
            "routes:\n  - host: a.com\n  - host: b.com\n    ports: [8443, 443]\n  - host: ollama\n    plainHttp: true\n    ports: [11434]\n  - host: lan.test\n    plainHttp: true\n",
            None,
        )
        .expect("policy");
        assert_eq!(admit(&p, "a.com", 443, true), Ok(()));
        assert_eq!(admit(&p, "a.com", 8443, true), Err("port-not-allowed"));
        assert_eq!(admit(&p, "a.com", 80, false), Err("port-not-allowed"));
        assert_eq!(
            admit(&p, "a.com", 443, false),
            Err("plain-http-not-allowed")
        );
        assert_eq!(admit(&p, "b.com", 8443, true), Ok(()));
        assert_eq!(admit(&p, "ollama", 11434, false), Ok(()));
        assert_eq!(admit(&p, "ollama", 80, false), Err("port-not-allowed"));
        assert_eq!(admit(&p, "lan.test", 80, false), Ok(()));
        assert_eq!(admit(&p, "lan.test", 443, true), Err("port-not-allowed"));
        let e = p.admit("a.com", 22, true).expect_err("port");
        assert!(e.reason.contains("egress.routes[].ports"), "{}", e.reason);
    }

    #[test]
    fn private_ip_literals_need_the_routes_consent() {
        let yaml = "routes:\n  - host: 10.0.0.5\n  - host: 192.168.1.9\n    allowPrivateAddresses: true\n  - host: 93.184.216.34\n";
        let p = Policy::load(yaml, None).expect("policy");
        assert_eq!(admit(&p, "10.0.0.5", 443, true), Err("private-address"));
        assert_eq!(admit(&p, "192.168.1.9", 443, true), Ok(()));
        assert_eq!(admit(&p, "93.184.216.34", 443, true), Ok(()));
        assert!(!p.allows_private("a.example") && p.allows_private("192.168.1.9"));
        let rig = Policy::load(yaml, None)
            .expect("policy")
            .with_private_everywhere(true);
        assert_eq!(admit(&rig, "10.0.0.5", 443, true), Ok(()));
        assert!(rig.allows_private("a.example"));
    }

    #[test]
    fn credentials_travel_in_clear_only_when_the_route_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t"), "tok").expect("write");
        let p = Policy::load(
            "routes:\n  - host: a.lan\n    plainHttp: true\n    auth: {scheme: Bearer, tokenFile: t}\n  - host: b.lan\n    plainHttp: true\n    auth: {scheme: Bearer, tokenFile: t, allowPlaintext: true}\n",
            Some(dir.path()),
        )
        .expect("policy");
        assert_eq!(admit(&p, "a.lan", 80, false), Err("plaintext-credential"));
        assert_eq!(admit(&p, "b.lan", 80, false), Ok(()));
        let e = Policy::load(
            "routes:\n  - host: c.lan\n    auth: {scheme: Bearer, tokenFile: t, allowPlaintext: true}\n",
            Some(dir.path()),
        )
        .expect_err("allowPlaintext without plainHttp");
        assert!(
            e.to_string()
                .contains("routes[0].auth.allowPlaintext: needs plainHttp: true"),
            "{e}"
        );
    }

    #[test]
    fn matches_paths_methods_headers() {
        let p = policy(
            r#"routes:
  - host: a.com
    matches:
      - paths: [{value: /api/v1/}, {type: exact, value: /health}, {type: regex, value: '^/u/[0-9]+$'}]
        methods: [GET, post]
      - methods: [DELETE]
        headers: [{name: X-Confirm, value: "yes"}, {name: Accept, value: '^application/(json|yaml)$', type: regex}]
"#,
        );
        assert!(decide(&p, "a.com", "GET", "/api/v1/repos", None, &[]).is_ok());
        assert!(decide(&p, "a.com", "POST", "/health", None, &[]).is_ok());
        assert_eq!(
            decide(&p, "a.com", "GET", "/healthz", None, &[]),
            Err("no-match")
        );
        assert!(decide(&p, "a.com", "GET", "/u/42", None, &[]).is_ok());
        assert_eq!(
            decide(&p, "a.com", "GET", "/u/4x", None, &[]),
            Err("no-match")
        );
        assert_eq!(
            decide(&p, "a.com", "PUT", "/api/v1/x", None, &[]),
            Err("no-match")
        );
        assert!(
            decide(
                &p,
                "a.com",
                "DELETE",
                "/anything",
                None,
                &[("x-confirm", "yes"), ("accept", "application/json")]
            )
            .is_ok()
        );
        assert_eq!(
            decide(
                &p,
                "a.com",
                "DELETE",
                "/anything",
                None,
                &[("x-confirm", "yes")]
            ),
            Err("no-match")
        );
        assert_eq!(
            decide(
                &p,
                "a.com",
                "DELETE",
                "/anything",
                None,
                &[("x-confirm", "YES"), ("accept", "application/json")]
            ),
            Err("no-match")
        );
    }

    #[test]
    fn git_and_doh_rules() {
        let p = policy(
            "routes: [{host: git.example.com}, {host: mirror.example.com, git: {fetch: true}}]",
        );
        assert_eq!(
            decide(
                &p,
                "git.example.com",
                "POST",
                "/o/r.git/git-receive-pack",
                None,
                &[]
            ),
            Err("git-push")
        );
        assert_eq!(
            decide(
                &p,
                "git.example.com",
                "GET",
                "/o/r.git/info/refs",
                Some("service=git-receive-pack"),
                &[]
            ),
            Err("git-push")
        );
        assert_eq!(
            decide(
                &p,
                "mirror.example.com",
                "POST",
                "/o/r.git/git-receive-pack",
                None,
                &[]
            ),
            Err("git-push"),
            "fetch never allows push"
        );
        assert_eq!(
            decide(
                &p,
                "git.example.com",
                "GET",
                "/o/r.git/info/refs",
                Some("service=git-upload-pack"),
                &[]
            ),
            Err("git-fetch")
        );
        assert!(
            decide(
                &p,
                "mirror.example.com",
                "POST",
                "/o/r.git/git-upload-pack",
                None,
                &[]
            )
            .is_ok()
        );
        assert_eq!(
            decide(
                &p,
                "git.example.com",
                "GET",
                "/dns-query",
                Some("dns=AAAB"),
                &[]
            ),
            Err("dns-over-https")
        );
        assert_eq!(
            decide(
                &p,
                "git.example.com",
                "POST",
                "/resolve",
                None,
                &[("content-type", "application/dns-message")]
            ),
            Err("dns-over-https")
        );
    }

    #[test]
    fn injected_tokens_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t"), "s3cr3t\n").expect("write");
        let p = Policy::load(
            "routes: [{host: a.com, auth: {scheme: token, tokenFile: t}}]",
            Some(dir.path()),
        )
        .expect("policy");
        let r = p.route("a.com").expect("route");
        let auth = r.auth.as_ref().expect("auth");
        assert_eq!(auth.header_value(), "token s3cr3t");
        assert!(!format!("{p:?}").contains("s3cr3t"));
        let missing = Policy::load(
            "routes: [{host: a.com, auth: {scheme: token, tokenFile: nope}}]",
            Some(dir.path()),
        );
        assert!(matches!(missing, Err(PolicyError::Token { .. })));
    }
}
