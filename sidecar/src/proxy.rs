//! The egress proxy's front door: it accepts agent connections, admits or refuses each CONNECT,
//! takes absolute-form `http://` requests, and serves the proxy's own `_egress.local` endpoints.
//! TLS bump is in `bump`, judging a request in `decision`, relaying it in `relay`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use bb_policy::rule::Rule;

use crate::address::host_port;
use crate::audit::Seen;
pub use crate::decision::RULE_HEADER;
use crate::decision::{Counters, Target};
use crate::mint::Minter;
use crate::policy::{Policy, normalise_host};
use crate::relay_body::{Body, full};
pub use crate::relay_body::{BoxError, SCAN_BUFFER_LIMIT};
use crate::responses::{bad_request, empty};

type Upstream =
    Client<hyper_rustls::HttpsConnector<HttpConnector<crate::resolve::CheckedResolver>>, Body>;

pub struct Proxy {
    /// Shared with the upstream resolver, which asks it which hosts may go private.
    policy: Arc<RwLock<Arc<Policy>>>,
    /// `--allow-private-upstreams`: a test-rig switch, off in production.
    allow_private: bool,
    pub(crate) minter: Minter,
    pub(crate) upstream: Upstream,
    /// HTTP/1.1 only: a WebSocket upgrade cannot ride an HTTP/2 connection the pool chose.
    pub(crate) upgrades: Upstream,
    pub(crate) audit: Option<crate::audit::Audit>,
    counters: Counters,
}

/// The host agents reach the proxy's own endpoints on (`http://_egress.local/allowlist`).
pub const INTROSPECTION_HOST: &str = "_egress.local";

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
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
            counters: Counters::default(),
        })
    }

    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Audits and counts one outcome under `policy`, the policy that made it (a reload in
    /// between must not change the level it is logged at).
    pub(crate) fn record(
        &self,
        policy: &Policy,
        seen: &Seen,
        status: StatusCode,
        refused_by: Option<Rule>,
    ) {
        self.counters.count(refused_by);
        if let Some(a) = &self.audit {
            a.record(
                policy,
                &crate::audit::Entry {
                    method: &seen.method,
                    host: &seen.host,
                    path: &seen.path,
                    status: status.as_u16(),
                    rule: refused_by,
                    started: seen.started,
                    headers: seen.headers.as_ref(),
                    reported: seen.reported,
                    target: seen.target,
                },
            );
        }
    }

    /// Audits a CONNECT refused, or a tunnel closed before any request could be read from it
    /// (not TLS, SNI mismatch).
    pub(crate) fn record_tunnel(&self, policy: &Policy, host: &str, rule: Rule) {
        let seen = Seen {
            method: "CONNECT".into(),
            host: host.to_string(),
            path: String::new(),
            started: std::time::Instant::now(),
            headers: None,
            reported: None,
            target: None,
        };
        self.record(policy, &seen, StatusCode::FORBIDDEN, Some(rule));
    }

    pub(crate) fn record_closed_tunnel(&self, host: &str, rule: Rule) {
        self.record_tunnel(&self.policy(), host, rule);
    }

    /// `http://_egress.local/allowlist` (the live policy) and `/metrics` (decision counters).
    fn introspection(&self, req: &Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/allowlist" => {
                let json = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("json"));
                self.allowlist(json)
            }
            "/metrics" => {
                let mut resp = Response::new(full(self.counters.render()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                resp
            }
            _ => {
                let mut resp = Response::new(full(
                    "egress: the introspection endpoints are /allowlist and /metrics\n",
                ));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                resp
            }
        }
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

    /// Accepts agent connections for as long as the process runs (`accept::next`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = crate::accept::next(&listener, "egress").await;
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
            if let Err(r) = policy.admit(&host, port, true)
                && policy.reported(&r).is_none()
            {
                tracing::info!(%peer, %host, rule = %r.rule, "blocked CONNECT");
                self.record_tunnel(&policy, &host, r.rule);
                return r.response();
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
                return self.introspection(&req);
            }
            return self
                .forward(
                    req,
                    Target {
                        host,
                        port,
                        tls: false,
                    },
                )
                .await;
        }
        bad_request(
            "this is an egress proxy: send absolute-form http:// requests or CONNECT host:443",
        )
    }
}
