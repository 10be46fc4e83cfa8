//! The egress proxy's front door: it accepts agent connections, admits or refuses each CONNECT,
//! takes absolute-form `http://` requests, and serves the proxy's own `_egress.local` endpoints.
//! Tunnels (TLS bump) are `bump::Tunnel`, judging a request `decision`, relaying it `relay::Relay`,
//! writing outcomes down `ledger::Ledger`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use bb_policy::rule::Rule;

use crate::address::host_port;
use crate::bump::Tunnel;
pub use crate::decision::RULE_HEADER;
use crate::decision::Target;
use crate::hold::Hold;
use crate::ledger::Ledger;
use crate::live_policy::LivePolicy;
use crate::mint::Minter;
use crate::policy::{Policy, normalise_host};
use crate::relay::Relay;
use crate::relay_body::{Body, full};
pub use crate::relay_body::{BoxError, SCAN_BUFFER_LIMIT};
use crate::responses::{bad_request, empty};

/// The front door, with the relay and tunnels it hands admitted traffic to.
pub struct Proxy {
    policy: LivePolicy,
    ledger: Arc<Ledger>,
    relay: Arc<Relay>,
    tunnel: Arc<Tunnel>,
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
    /// for test rigs whose stand-in upstreams live on private networks). `hold`: the runner's
    /// hold on the bottle (`Hold::unfenced()` where there is none).
    pub fn new(
        policy: Policy,
        minter: Minter,
        upstream_ca: Option<&str>,
        allow_private: bool,
        hold: Arc<Hold>,
    ) -> anyhow::Result<Proxy> {
        let policy = LivePolicy::new(policy, allow_private);
        let ledger = Arc::new(Ledger::default());
        let relay = Arc::new(Relay::new(
            policy.clone(),
            ledger.clone(),
            upstream_ca,
            hold,
        )?);
        let tunnel = Arc::new(Tunnel::new(minter, relay.clone()));
        Ok(Proxy {
            policy,
            ledger,
            relay,
            tunnel,
        })
    }

    pub fn with_audit(self, audit: crate::audit::Audit) -> Self {
        self.ledger.set_audit(audit);
        self
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
                let mut resp = Response::new(full(self.ledger.metrics()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::ledger::METRICS_CONTENT_TYPE),
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
        self.policy.current()
    }

    /// Swaps in a new policy; requests already admitted finish under the one they started with.
    pub fn replace_policy(&self, p: Policy) {
        self.policy.replace(p);
    }

    /// Accepts agent connections for as long as the process runs (`accept::next`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = crate::accept::next(&listener, "egress").await;
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
            }
            let proxy = self.clone();
            let hold = self.relay.hold().clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.outer(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades();
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "agent connection ended");
                    },
                    () = hold.until_lapsed() => {
                        tracing::info!(%peer, "the runner's hold lapsed: cut an agent connection");
                    }
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
            let hold = self.relay.hold();
            if hold.lapsed() {
                tracing::info!(%peer, %host, "blocked CONNECT: the runner's hold lapsed");
                self.ledger.record_tunnel(&policy, &host, Rule::RunnerLost);
                return hold.refusal().response();
            }
            if let Err(r) = policy.admit(&host, port, true)
                && policy.reported(&r).is_none()
            {
                tracing::info!(%peer, %host, rule = %r.rule, "blocked CONNECT");
                self.ledger.record_tunnel(&policy, &host, r.rule);
                return r.response();
            }
            let tunnel = self.tunnel.clone();
            let hold = hold.clone();
            tokio::spawn(async move {
                let served = async {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => tunnel.serve(upgraded, host, port).await,
                        Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                    }
                };
                hold.cut(served).await;
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
                .relay
                .forward(
                    req,
                    Target {
                        host,
                        port,
                        tls: false,
                    },
                    None,
                )
                .await;
        }
        bad_request(
            "this is an egress proxy: send absolute-form http:// requests or CONNECT host:443",
        )
    }
}
