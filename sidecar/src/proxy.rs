//! The egress proxy: an explicit HTTP proxy that forwards absolute-form HTTP and TLS-bumps
//! CONNECT tunnels, deciding every request with the policy and injecting route credentials.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::dlp::Finding;
use crate::mint::Minter;
use crate::policy::{Policy, Refusal, RequestView, normalise_host};
use crate::relay_body::{Body, Scan, Screened, close_delimited, discard, full, screen};
pub use crate::relay_body::{BoxError, SCAN_BUFFER_LIMIT};

type Upstream =
    Client<hyper_rustls::HttpsConnector<HttpConnector<crate::resolve::CheckedResolver>>, Body>;

/// Header naming the rule that refused a request.
pub const RULE_HEADER: &str = "x-bot-bottle-egress-rule";

/// Headers that belong to one hop and never travel on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

pub struct Proxy {
    /// Shared with the upstream resolver, which asks it which hosts may go private.
    policy: Arc<RwLock<Arc<Policy>>>,
    /// `--allow-private-upstreams`: a test-rig switch, off in production.
    allow_private: bool,
    minter: Minter,
    upstream: Upstream,
    /// HTTP/1.1 only: a WebSocket upgrade cannot ride an HTTP/2 connection the pool chose.
    upgrades: Upstream,
    audit: Option<crate::audit::Audit>,
}

/// The host agents reach the proxy's own endpoints on (`http://_egress.local/allowlist`).
pub const INTROSPECTION_HOST: &str = "_egress.local";

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
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

/// The rule that refused a request, carried on the response to the audit log as a value (the
/// `X-Bot-Bottle-Egress-Rule` header is for the agent, and is never read back).
#[derive(Debug, Clone, Copy)]
struct RefusedBy(&'static str);

/// What the audit log records of a request, taken before the request is consumed.
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    started: std::time::Instant,
    headers: Option<&'a http::HeaderMap>,
}

/// Inside a tunnel, every host a request names (its one `Host` header, and the authority of an
/// absolute-form target or HTTP/2's `:authority`) must be the tunnel's target: otherwise it is
/// domain fronting, refused here. Two `Host` headers are ambiguous, so refused too (RFC 9112).
fn fronted(req: &Request<Incoming>, host: &str, port: u16) -> Option<Response<Body>> {
    let mismatch = |named: &str| {
        Some(refusal(&Refusal {
            rule: "host-mismatch",
            reason: format!(
                "egress: the request names host {named} inside a tunnel to {host}; domain fronting is blocked"
            ),
        }))
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
        if host_port(n, port).map(|(h, _)| normalise_host(&h)) != Some(want.clone()) {
            return mismatch(n);
        }
    }
    None
}

fn refusal(r: &Refusal) -> Response<Body> {
    let mut resp = Response::new(full(format!("{}\n", r.reason)));
    resp.extensions_mut().insert(RefusedBy(r.rule));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(r.rule) {
        resp.headers_mut().insert(RULE_HEADER, v);
    }
    resp
}

/// `resp` (a refusal) for a request whose body was never read. Closing a connection with unread
/// input makes the kernel answer with a reset, which can arrive before the client has read the
/// response; so what the agent still sends is read and discarded (bounded) while the response
/// goes out, and the connection stays usable. A client waiting on `Expect: 100-continue` is
/// never asked for its body: it gets the refusal and the connection closes cleanly.
fn refuse_unread(
    mut resp: Response<Body>,
    req: &http::request::Parts,
    body: Incoming,
) -> Response<Body> {
    use http_body::Body as _;
    let expects_continue = req
        .headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        // HTTP/2 has no Connection header: the stream ends with the response there.
        if req.version < http::Version::HTTP_2 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }
    if body.is_end_stream() {
        return resp;
    }
    tokio::spawn(discard(body.map_err(|e| Box::new(e) as BoxError).boxed()));
    resp
}

fn bad_request(msg: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{msg}\n")));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp
}

fn bad_gateway(msg: String) -> Response<Body> {
    let mut resp = Response::new(full(format!("{msg}\n")));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// Splits `host:port` (or `[v6]:port`), with `default` when no port is given.
pub(crate) fn host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        (
            h.to_string(),
            tail.strip_prefix(':')
                .map(str::parse)
                .transpose()
                .ok()?
                .unwrap_or(default),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default),
        }
    };
    if host.is_empty() {
        None
    } else {
        Some((host, port))
    }
}

impl Proxy {
    fn dlp_refused(&self, host: &str, f: &Finding, part: &str) -> Response<Body> {
        tracing::warn!(%host, detector = f.detector, rule = f.rule, view = f.view, part, "request blocked by DLP");
        let seen = if f.view == "raw" {
            String::new()
        } else {
            format!(", seen {}", f.view)
        };
        refusal(&Refusal {
            rule: "dlp-outbound",
            reason: format!(
                "egress: outbound DLP blocked the request to {host}: {} ({}) in the {part}{seen}; remove the secret or ask for the route to be adjusted",
                f.detector, f.rule
            ),
        })
    }

    fn dlp_unscannable(&self, host: &str, why: &str) -> Response<Body> {
        tracing::warn!(%host, why, "request refused: its body cannot be scanned");
        refusal(&Refusal {
            rule: "dlp-outbound",
            reason: format!(
                "egress: outbound DLP cannot read the request body to {host}: {why}; send it without Content-Encoding"
            ),
        })
    }

    /// `allow_private`: every host may resolve to private addresses (`--allow-private-upstreams`,
    /// for test rigs whose stand-in upstreams live on private networks).
    pub fn new(
        policy: Policy,
        minter: Minter,
        upstream_ca: Option<&str>,
        allow_private: bool,
    ) -> anyhow::Result<Proxy> {
        let policy = Arc::new(RwLock::new(Arc::new(
            policy.with_private_everywhere(allow_private),
        )));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = upstream_ca {
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c?)?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // A proxy must not add Nagle delays: a streamed event would wait for the peer's ACK.
        let resolver = crate::resolve::CheckedResolver {
            policy: policy.clone(),
        };
        let tcp = || {
            let mut c = HttpConnector::new_with_resolver(resolver.clone());
            c.set_nodelay(true);
            c.enforce_http(false);
            c
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp());
        let upstream = Client::builder(TokioExecutor::new()).build(https);
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp());
        let upgrades = Client::builder(TokioExecutor::new()).build(http1);
        Ok(Proxy {
            policy,
            allow_private,
            minter,
            upstream,
            upgrades,
            audit: None,
        })
    }

    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Audits one decision under `policy`, the policy that made it (a reload in between must
    /// not change the level it is logged at).
    fn record(&self, policy: &Policy, req: Seen<'_>, resp: &Response<Body>) {
        if let Some(a) = &self.audit {
            a.record(
                policy,
                &crate::audit::Entry {
                    method: req.method,
                    host: req.host,
                    path: req.path,
                    status: resp.status().as_u16(),
                    rule: resp.extensions().get::<RefusedBy>().map(|r| r.0),
                    started: req.started,
                    headers: req.headers,
                },
            );
        }
    }

    /// Audits a tunnel closed before any request could be read from it (not TLS, SNI mismatch).
    fn record_closed_tunnel(&self, host: &str, rule: &'static str) {
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.extensions_mut().insert(RefusedBy(rule));
        let seen = Seen {
            method: "CONNECT",
            host,
            path: "",
            started: std::time::Instant::now(),
            headers: None,
        };
        self.record(&self.policy(), seen, &resp);
    }

    /// The live policy, in the policy schema (tokens by file name only), for the agent to read
    /// before it asks for more access.
    fn allowlist(&self, want_json: bool) -> Response<Body> {
        let spec = &self.policy().spec;
        let (body, ctype) = if want_json {
            (
                serde_json::to_string_pretty(spec).unwrap_or_default(),
                "application/json",
            )
        } else {
            (
                serde_yaml::to_string(spec).unwrap_or_default(),
                "application/yaml",
            )
        };
        let mut resp = Response::new(full(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        resp
    }

    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new policy; requests already admitted finish under the one they started with.
    pub fn replace_policy(&self, p: Policy) {
        if let Ok(mut g) = self.policy.write() {
            *g = Arc::new(p.with_private_everywhere(self.allow_private));
        }
    }

    /// Accepts agent connections until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = listener.accept().await?;
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
            }
            let proxy = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.outer(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "agent connection ended");
                }
            });
        }
    }

    async fn outer(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if req.method() == Method::CONNECT {
            let Some((host, port)) = req
                .uri()
                .authority()
                .and_then(|a| host_port(a.as_str(), 443))
            else {
                return bad_request("CONNECT needs a host:port target");
            };
            let policy = self.policy();
            if let Err(r) = policy.admit(&host, port, true) {
                tracing::info!(%peer, %host, rule = r.rule, "blocked CONNECT");
                let resp = refusal(&r);
                let seen = Seen {
                    method: "CONNECT",
                    host: &host,
                    path: "",
                    started: std::time::Instant::now(),
                    headers: None,
                };
                self.record(&policy, seen, &resp);
                return resp;
            }
            let proxy = self.clone();
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => proxy.tunnel(upgraded, host, port).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            return Response::new(empty());
        }
        // Absolute-form plain HTTP (e.g. a local model server over http://).
        if req.uri().scheme_str() == Some("http") {
            let Some((host, port)) = req
                .uri()
                .authority()
                .and_then(|a| host_port(a.as_str(), 80))
            else {
                return bad_request("absolute-form request without a host");
            };
            if normalise_host(&host) == INTROSPECTION_HOST {
                if req.uri().path() == "/allowlist" {
                    let json = req
                        .headers()
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|a| a.contains("json"));
                    return self.allowlist(json);
                }
                let mut resp =
                    Response::new(full("egress: the introspection endpoint is /allowlist\n"));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                return resp;
            }
            return self.forward(req, &host, port, "http").await;
        }
        bad_request(
            "this is an egress proxy: send absolute-form http:// requests or CONNECT host:443",
        )
    }

    async fn tunnel(self: Arc<Self>, upgraded: hyper::upgrade::Upgraded, host: String, port: u16) {
        let cfg = match self.minter.server_config(&normalise_host(&host)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint a certificate");
                return;
            }
        };
        // Anything but a TLS handshake (raw bytes, another protocol) fails here and the tunnel
        // closes.
        let tls = match TlsAcceptor::from(cfg).accept(TokioIo::new(upgraded)).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(%host, error = %e, "closed a tunnel that did not speak TLS");
                self.record_closed_tunnel(&host, "not-tls");
                return;
            }
        };
        if let Some(sni) = tls.get_ref().1.server_name()
            && normalise_host(sni) != normalise_host(&host)
        {
            tracing::warn!(%host, sni, "closed a tunnel whose SNI differs from its CONNECT target");
            self.record_closed_tunnel(&host, "sni-mismatch");
            return;
        }
        let svc = hyper::service::service_fn(move |req| {
            let proxy = self.clone();
            let host = host.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.inner(req, host, port).await) }
        });
        // The agent picks HTTP/2 or HTTP/1.1 by ALPN inside the tunnel; both get the same rules.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(64 * 1024);
        builder.http2().max_header_list_size(64 * 1024);
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
            .await
        {
            tracing::debug!(error = %e, "tunnel ended");
        }
    }

    async fn inner(
        self: Arc<Self>,
        req: Request<Incoming>,
        host: String,
        port: u16,
    ) -> Response<Body> {
        self.forward(req, &host, port, "https").await
    }

    /// `relay` under one policy snapshot, plus the audit record of its outcome (refusals that
    /// come before `relay`, such as domain fronting, included).
    async fn forward(
        &self,
        req: Request<Incoming>,
        host: &str,
        port: u16,
        scheme: &str,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let policy = self.policy();
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let headers = self.audit.is_some().then(|| req.headers().clone());
        let resp = match (scheme == "https")
            .then(|| fronted(&req, host, port))
            .flatten()
        {
            Some(refused) => {
                let (parts, body) = req.into_parts();
                refuse_unread(refused, &parts, body)
            }
            None => self.relay(&policy, req, host, port, scheme).await,
        };
        let seen = Seen {
            method: &method,
            host,
            path: &path,
            started,
            headers: headers.as_ref(),
        };
        self.record(&policy, seen, &resp);
        resp
    }

    /// Decides, rewrites credentials, and relays one request upstream.
    async fn relay(
        &self,
        policy: &Arc<Policy>,
        mut req: Request<Incoming>,
        host: &str,
        port: u16,
        scheme: &str,
    ) -> Response<Body> {
        // Taken before the request is consumed; only used once policy admitted it.
        let websocket = is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        // Rules see, and the upstream receives, one normal form of the path.
        let path = match crate::target_path::normalise(req.uri().path()) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(%host, error = %e, "refused an ambiguous request path");
                let mut resp = refusal(&Refusal {
                    rule: "ambiguous-path",
                    reason: e.to_string(),
                });
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                let (parts, body) = req.into_parts();
                return refuse_unread(resp, &parts, body);
            }
        };
        let query = req.uri().query().map(str::to_string);
        let request_method = req.method().clone();
        let method = req.method().to_string();
        let decision = policy.decide(&RequestView {
            host,
            port,
            tls: scheme == "https",
            method: &method,
            path: &path,
            query: query.as_deref(),
            headers: req.headers(),
        });
        let route = match decision {
            Ok(r) => r,
            Err(r) => {
                let path = crate::audit::shown_path(policy, &path);
                tracing::info!(%host, %method, %path, rule = r.rule, "blocked");
                let (parts, body) = req.into_parts();
                return refuse_unread(refusal(&r), &parts, body);
            }
        };
        let dlp = route.dlp;
        // What this route's DLP looks for, going out and coming back (bodies, heads, frames).
        let outbound = Scan::new(policy.clone(), dlp, true);
        let inbound = Scan::new(policy.clone(), dlp, false);
        if outbound.enabled() {
            let head = head_text(
                host,
                &path,
                query.as_deref(),
                req.headers(),
                route.auth.is_some(),
            );
            if let Some(f) = outbound.find(&head) {
                let resp = self.dlp_refused(host, &f, "request line or headers");
                let (parts, body) = req.into_parts();
                return refuse_unread(resp, &parts, body);
            }
        }
        let (mut parts, body) = req.into_parts();
        let pq = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let authority = if port == default_port {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        parts.uri = match format!("{scheme}://{authority}{pq}").parse() {
            Ok(u) => u,
            Err(_) => return bad_request("cannot rebuild the request URI"),
        };
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        if websocket.is_some() {
            // The upgrade is the one hop-by-hop exchange that must travel on.
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        parts.headers.remove(header::HOST);
        // The agent's credential never leaves; the route's own is injected instead.
        parts.headers.remove(header::AUTHORIZATION);
        if let Some(auth) = &route.auth {
            match HeaderValue::from_str(&auth.header_value()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    parts.headers.insert(header::AUTHORIZATION, v);
                }
                Err(_) => {
                    return bad_gateway(
                        "egress: the injected token is not a valid header value".into(),
                    );
                }
            }
        }
        // The upstream connection's own ALPN decides the version, not the agent's.
        parts.version = http::Version::default();
        // A coded upload is decoded to be scanned, which is bounded: one too large to read whole
        // is refused (unread) rather than streamed past DLP unseen.
        if outbound.enabled()
            && !crate::relay_body::codings(&parts.headers).is_empty()
            && crate::relay_body::content_length(&parts.headers)
                .is_none_or(|n| n > SCAN_BUFFER_LIMIT)
        {
            let resp = self.dlp_unscannable(
                host,
                "it is coded (Content-Encoding) and larger than 1 MiB or of unknown size",
            );
            return refuse_unread(resp, &parts, body);
        }
        // The response must reach the inbound scanner uncompressed to be read at all.
        if inbound.enabled() {
            parts.headers.remove(header::ACCEPT_ENCODING);
        }
        let cut_off = outbound.cut_off.clone();
        let body = match screen(body, &parts.headers, outbound.clone(), false).await {
            Ok(b) => b,
            Err(Screened::Found(f)) => return self.dlp_refused(host, &f, "request body"),
            Err(Screened::Unscannable(e)) => {
                return self.dlp_unscannable(host, &e.to_string());
            }
            Err(Screened::Unreadable(e)) => {
                return bad_request(&format!("reading the request body: {e}"));
            }
        };
        if websocket.is_some() {
            parts.headers.remove(crate::websocket::EXTENSIONS_HEADER);
        }
        let upstream_req = Request::from_parts(parts, body);
        if let Some(agent_side) = websocket {
            return self
                .relay_websocket(upstream_req, agent_side, host, (outbound, inbound))
                .await;
        }
        let resp = match self.upstream.request(upstream_req).await {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(f) = cut_off.get() {
                    return self.dlp_refused(host, f, "request body");
                }
                if let Some(why) = crate::resolve::private_refusal(&e) {
                    tracing::warn!(%host, %why, "refused a private address");
                    return refusal(&Refusal {
                        rule: "private-address",
                        reason: format!("egress: {why} (egress.routes[].allowPrivateAddresses)"),
                    });
                }
                // The chain says why (refused, TLS verification, timeout); hyper's top line does not.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    src = s.source();
                }
                tracing::info!(%host, error = %why, "upstream failed");
                return bad_gateway(format!("egress: upstream {host} failed: {why}"));
            }
        };
        let (mut parts, body) = resp.into_parts();
        let until_close =
            close_delimited(&request_method, parts.status, parts.version, &parts.headers);
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        let body = match screen(body, &parts.headers, inbound, until_close).await {
            Ok(b) => b,
            Err(Screened::Found(f)) => {
                tracing::warn!(%host, detector = f.detector, rule = f.rule, "response blocked");
                let mut resp = refusal(&Refusal {
                    rule: "dlp-inbound",
                    reason: format!(
                        "egress: the response from {host} was withheld: it looks like a prompt-injection attempt ({}: {})",
                        f.detector, f.rule
                    ),
                });
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                return resp;
            }
            Err(Screened::Unreadable(e)) => {
                tracing::info!(%host, error = %e, "upstream response unreadable");
                return bad_gateway(format!("egress: reading the response from {host}: {e}"));
            }
            // Responses are not decoded (requests go out without Accept-Encoding instead).
            Err(Screened::Unscannable(e)) => {
                return bad_gateway(format!("egress: the response from {host}: {e}"));
            }
        };
        Response::from_parts(parts, body)
    }
}

impl Proxy {
    /// Sends an admitted WebSocket upgrade upstream; on `101` relays messages between the two
    /// upgraded connections, each scanned by DLP (`websocket::relay`).
    async fn relay_websocket(
        &self,
        req: Request<Body>,
        agent_side: hyper::upgrade::OnUpgrade,
        host: &str,
        (outbound, inbound): (Scan, Scan),
    ) -> Response<Body> {
        let mut resp = match self.upgrades.request(req).await {
            Ok(r) => r,
            Err(e) => return bad_gateway(format!("egress: upstream {host} failed: {e}")),
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            return Response::from_parts(parts, body.map_err(Into::into).boxed());
        }
        let upstream_side = hyper::upgrade::on(&mut resp);
        let host_owned = host.to_string();
        tokio::spawn(async move {
            match tokio::join!(agent_side, upstream_side) {
                (Ok(agent), Ok(upstream)) => {
                    crate::websocket::relay(agent, upstream, outbound, inbound, host_owned).await;
                }
                (a, u) => {
                    tracing::debug!(host = %host_owned, agent_ok = a.is_ok(), upstream_ok = u.is_ok(), "websocket upgrade failed");
                }
            }
        });
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, empty())
    }
}

/// An HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket` request. Other upgrade protocols
/// (h2c and the like) are not relayed.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.version() == http::Version::HTTP_11
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(host_port("a.com:443", 1), Some(("a.com".into(), 443)));
        assert_eq!(host_port("a.com", 80), Some(("a.com".into(), 80)));
        assert_eq!(host_port("[::1]:8443", 1), Some(("::1".into(), 8443)));
        assert_eq!(host_port("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(host_port("a.com:x", 1), None);
        assert_eq!(host_port(":443", 1), None);
    }
}
