//! The proxy's judgement of one request or CONNECT as a typed value: a permit carrying what the
//! relay needs, or a refusal carrying the rule. Responses, audit records and counters read it.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use bb_policy::rule::Rule;

pub use crate::policy::Refusal;
use crate::policy::{Policy, RequestView, Route, normalise_host};
use crate::relay_body::{Body, Scan, full};

/// Header naming the rule that refused a request (for the agent; nothing reads it back).
pub const RULE_HEADER: &str = "x-bot-bottle-egress-rule";

/// Where a request goes: the tunnel's target, or an absolute-form `http://` URI's authority.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Inside a CONNECT tunnel (TLS to the upstream), rather than plain `http://`.
    pub tls: bool,
}

impl Target {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// What the proxy decided about one request.
#[derive(Debug)]
pub enum Decision<'p> {
    Permit(Permit<'p>),
    Refuse(Refusal),
}

/// A request the policy admitted: the route, the path in the one form rules matched (and the
/// upstream receives), and the DLP scans its body, response and frames still pass through.
#[derive(Debug)]
pub struct Permit<'p> {
    pub route: &'p Route,
    /// `report` mode: the rule that would have refused it.
    pub reported: Option<Rule>,
    pub path: String,
    pub query: Option<String>,
    pub outbound: Scan,
    pub inbound: Scan,
}

impl Refusal {
    /// The answer the agent gets: the reason as text, the rule in a header.
    pub fn response(&self) -> Response<Body> {
        let mut resp = Response::new(full(format!("{}\n", self.reason)));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(RULE_HEADER, HeaderValue::from_static(self.rule.as_str()));
        resp
    }
}

/// Judges `req` bound for `target` under `policy`, in order: fronting, path, policy rules, and
/// DLP over the request line and headers. The body is judged later, as it arrives.
pub fn decide<'p>(
    policy: &'p Arc<Policy>,
    req: &Request<Incoming>,
    target: &Target,
) -> Decision<'p> {
    if target.tls
        && let Some(r) = fronted(req, &target.host, target.port)
    {
        return Decision::Refuse(r);
    }
    // TRACE (and IIS's TRACK) answer with the request as the upstream received it: the
    // injected credential included. No route allows them.
    if matches!(req.method().as_str(), "TRACE" | "TRACK") {
        return Decision::Refuse(Refusal::new(
            Rule::EchoMethod,
            format!(
                "egress: {} is refused on every route: its answer echoes the request, with the credential the sidecar injects",
                req.method()
            ),
        ));
    }
    let path = match crate::target_path::normalise(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            return Decision::Refuse(
                Refusal::new(Rule::AmbiguousPath, e.to_string())
                    .with_status(StatusCode::BAD_REQUEST),
            );
        }
    };
    let query = req.uri().query().map(str::to_string);
    let route = match policy.decide_reporting(&RequestView {
        host: &target.host,
        port: target.port,
        tls: target.tls,
        method: req.method().as_str(),
        path: &path,
        query: query.as_deref(),
        headers: req.headers(),
    }) {
        Ok(r) => r,
        Err(r) => return Decision::Refuse(r),
    };
    let (route, reported) = route;
    let outbound = Scan::new(policy.clone(), route.dlp, true);
    let inbound = Scan::new(policy.clone(), route.dlp, false)
        .guarding(route.auth.as_ref().map(|a| a.reflected.clone()));
    if outbound.enabled() {
        let head = head_text(
            &target.host,
            &path,
            query.as_deref(),
            req.headers(),
            route.auth.is_some(),
        );
        if let Some(f) = outbound.find(&head) {
            return Decision::Refuse(dlp_refusal(&target.host, &f, "request line or headers"));
        }
    }
    Decision::Permit(Permit {
        route,
        reported,
        path,
        query,
        outbound,
        inbound,
    })
}

/// Outbound DLP found `f` in `part` of a request to `host`.
pub fn dlp_refusal(host: &str, f: &crate::dlp::Finding, part: &str) -> Refusal {
    tracing::warn!(%host, detector = f.detector, rule = f.rule, view = f.view, origin = f.origin.as_deref(), part, "request blocked by DLP");
    let seen = if f.view == "raw" {
        String::new()
    } else {
        format!(", seen {}", f.view)
    };
    // Where a copied secret came from, so the agent knows which file not to send (never the value).
    let from = f
        .origin
        .as_deref()
        .map(|o| format!(" from {o}"))
        .unwrap_or_default();
    Refusal::new(
        Rule::DlpOutbound,
        format!(
            "egress: outbound DLP blocked the request to {host}: {} ({}{from}) in the {part}{seen}; remove the secret or ask for the route to be adjusted",
            f.detector, f.rule
        ),
    )
}

/// A request body outbound DLP cannot read.
pub fn unscannable(host: &str, why: &str) -> Refusal {
    tracing::warn!(%host, why, "request refused: its body cannot be scanned");
    Refusal::new(
        Rule::DlpOutbound,
        format!(
            "egress: outbound DLP cannot read the request body to {host}: {why}; send it without Content-Encoding"
        ),
    )
}

/// Inside a tunnel, every host a request names (its one `Host` header, and the authority of an
/// absolute-form target or HTTP/2's `:authority`) must be the tunnel's target: otherwise it is
/// domain fronting, refused here. Two `Host` headers are ambiguous, so refused too (RFC 9112).
fn fronted(req: &Request<Incoming>, host: &str, port: u16) -> Option<Refusal> {
    let mismatch = |named: &str| {
        Some(Refusal::new(
            Rule::HostMismatch,
            format!(
                "egress: the request names host {named} inside a tunnel to {host}; domain fronting is blocked"
            ),
        ))
    };
    let host_headers: Vec<_> = req.headers().get_all(header::HOST).iter().collect();
    if host_headers.len() > 1 {
        return mismatch("twice (two Host headers)");
    }
    let mut named: Vec<String> = Vec::new();
    for v in host_headers {
        match v.to_str() {
            Ok(v) => named.push(v.to_string()),
            Err(_) => return mismatch("<not text>"),
        }
    }
    if let Some(a) = req.uri().authority() {
        named.push(a.to_string());
    }
    if named.is_empty() {
        return mismatch("<none>");
    }
    let want = normalise_host(host);
    for n in &named {
        if crate::address::host_port(n, port).map(|(h, _)| normalise_host(&h)) != Some(want.clone())
        {
            return mismatch(n);
        }
    }
    None
}

/// The request line and headers as scanned text. The agent's own Authorization is left out on
/// routes that inject one: it is replaced anyway, and holds only the placeholder.
pub(crate) fn head_text(
    host: &str,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
    skip_auth: bool,
) -> Vec<u8> {
    let mut out = format!("{host}\n{path}?{}\n", query.unwrap_or("")).into_bytes();
    for (k, v) in headers {
        if skip_auth && *k == header::AUTHORIZATION {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_response_carries_status_reason_and_rule() {
        let r = Refusal::new(Rule::NoMatch, "egress: nope").with_status(StatusCode::BAD_REQUEST);
        let resp = r.response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()
                .get(RULE_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("no-match")
        );
    }

    /// What an operator reads the audit log and counters with: every rule is documented.
    #[test]
    fn every_rule_is_in_the_sidecar_docs() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sidecar.md"),
        )
        .expect("docs/sidecar.md");
        let missing: Vec<&str> = Rule::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|n| !docs.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "rules docs/sidecar.md does not name: {missing:?}"
        );
    }
}
