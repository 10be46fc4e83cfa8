//! The HTTP relay: one request from the agent, judged (`decision`), rewritten (normal path, hop
//! headers dropped, the route's credential in place of the agent's), sent upstream and answered.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use bb_policy::rule::Rule;

use crate::audit::Seen;
use crate::decision::{self, Decision, Permit, Refusal, Target};
use crate::hold::Hold;
use crate::ledger::Ledger;
use crate::live_policy::LivePolicy;
use crate::relay_body::{
    Body, BoxError, REFLECTED_DETECTOR, SCAN_BUFFER_LIMIT, Screened, close_delimited, discard,
    screen,
};
use crate::responses::{bad_gateway, bad_request, empty};
use crate::tunnel_upstream::{Connector, Parking, TunnelUpstream};

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

/// A refusal made after the decision, while relaying; with the request's body when it was
/// never read (so it can be drained while the refusal goes out).
struct Refused {
    refusal: Refusal,
    unread: Option<(http::request::Parts, Incoming)>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Refused {
            refusal,
            unread: None,
        }
    }
}

type Upstream = Client<Connector, Body>;

/// Sends permitted requests upstream and answers the agent: the upstream clients, the policy in
/// force and the ledger every outcome goes to.
pub struct Relay {
    policy: LivePolicy,
    upstream: Upstream,
    /// What both clients connect with; a tunnel's own connection (`TunnelUpstream`) too.
    connector: Connector,
    /// Ended tunnels' idle upstream connections, for the next tunnel to the same origin.
    parking: Arc<Parking>,
    /// HTTP/1.1 only: a WebSocket upgrade cannot ride an HTTP/2 connection the pool chose.
    upgrades: Upstream,
    ledger: Arc<Ledger>,
    /// The runner's hold: once it lapses every request is refused and upgrades are cut.
    hold: Arc<Hold>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl Relay {
    /// Upstream clients that trust the system roots and `upstream_ca`, resolve through the
    /// private-address check, and add no Nagle delays (a streamed event would wait for an ACK).
    pub fn new(
        policy: LivePolicy,
        ledger: Arc<Ledger>,
        upstream_ca: Option<&str>,
        hold: Arc<Hold>,
    ) -> anyhow::Result<Relay> {
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
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp());
        Ok(Relay {
            policy,
            upstream: Client::builder(TokioExecutor::new()).build(https.clone()),
            connector: https,
            parking: Arc::default(),
            upgrades: Client::builder(TokioExecutor::new()).build(http1),
            ledger,
            hold,
        })
    }

    /// The ledger outcomes go to (a tunnel closed before any request records there too).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The runner's hold on this bottle.
    pub fn hold(&self) -> &Arc<Hold> {
        &self.hold
    }

    /// A connection of its own for one HTTP/1.1 tunnel (see `tunnel_upstream`).
    pub fn tunnel_upstream(&self) -> TunnelUpstream {
        TunnelUpstream::new(self.connector.clone(), self.parking.clone())
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<crate::policy::Policy> {
        self.policy.current()
    }

    /// Judges and relays one request under one policy snapshot; the outcome (permit or the
    /// refusal, early or late) is what the response, the audit record and the counters show.
    /// `own`: the tunnel's own upstream connection, where it has one (else the shared pool).
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        target: Target,
        own: Option<&TunnelUpstream>,
    ) -> Response<Body> {
        let policy = self.policy();
        let seen = Seen {
            method: req.method().to_string(),
            host: target.host.clone(),
            path: req.uri().path().to_string(),
            started: std::time::Instant::now(),
            headers: self.ledger.audits().then(|| req.headers().clone()),
            reported: None,
            target: Some((target.port, target.scheme())),
        };
        let mut seen = seen;
        let decided = if self.hold.lapsed() {
            Decision::Refuse(self.hold.refusal())
        } else {
            decision::decide(&policy, &req, &target)
        };
        let outcome = match decided {
            Decision::Refuse(r) => {
                let path = crate::audit::shown_path(&policy, &seen.path);
                tracing::info!(host = %target.host, method = %seen.method, %path, rule = %r.rule, "blocked");
                let (parts, body) = req.into_parts();
                Err(Refused {
                    refusal: r,
                    unread: Some((parts, body)),
                })
            }
            Decision::Permit(permit) => {
                if let Some(rule) = permit.reported {
                    tracing::info!(host = %target.host, method = %seen.method, %rule, "reported (mode: report)");
                    seen.reported = Some(rule);
                }
                self.relay(permit, req, &target, own).await
            }
        };
        let (resp, refused_by) = match outcome {
            Ok(resp) => (resp, None),
            Err(Refused { refusal, unread }) => {
                let resp = refusal.response();
                let resp = match unread {
                    Some((parts, body)) => refuse_unread(resp, &parts, body),
                    None => resp,
                };
                (resp, Some(refusal.rule))
            }
        };
        self.ledger
            .record(&policy, &seen, resp.status(), refused_by);
        resp
    }

    /// Rewrites a permitted request, relays it upstream, and screens the answer.
    async fn relay(
        &self,
        permit: Permit<'_>,
        mut req: Request<Incoming>,
        target: &Target,
        own: Option<&TunnelUpstream>,
    ) -> Result<Response<Body>, Refused> {
        let host = target.host.as_str();
        // Taken before the request is consumed.
        let websocket = is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let request_method = req.method().clone();
        let Permit {
            route,
            path,
            query,
            outbound,
            inbound,
            reported: _,
        } = permit;
        let (mut parts, body) = req.into_parts();
        let pq = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let default_port = if target.tls { 443 } else { 80 };
        // An IPv6 literal goes back in brackets, or the URI does not parse.
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = if target.port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{}", target.port)
        };
        parts.uri = match format!("{}://{authority}{pq}", target.scheme()).parse() {
            Ok(u) => u,
            Err(_) => return Ok(bad_request("cannot rebuild the request URI")),
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
                    return Ok(bad_gateway(
                        "egress: the injected token is not a valid header value".into(),
                    ));
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
            return Err(Refused {
                refusal: decision::unscannable(
                    host,
                    "it is coded (Content-Encoding) and larger than 1 MiB or of unknown size",
                ),
                unread: Some((parts, body)),
            });
        }
        // The response must reach the inbound scanner uncompressed to be read at all.
        if inbound.enabled() {
            parts.headers.remove(header::ACCEPT_ENCODING);
        }
        let cut_off = outbound.cut_off.clone();
        let body = match screen(body, &parts.headers, outbound.clone(), false).await {
            Ok(b) => b,
            Err(Screened::Found(f)) => {
                return Err(decision::dlp_refusal(host, &f, "request body").into());
            }
            Err(Screened::Unscannable(e)) => {
                return Err(decision::unscannable(host, &e.to_string()).into());
            }
            Err(Screened::Unreadable(e)) => {
                return Ok(bad_request(&format!("reading the request body: {e}")));
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
        let sent = match own {
            Some(own) => own.send(upstream_req).await,
            None => self
                .upstream
                .request(upstream_req)
                .await
                .map_err(|e| Box::new(e) as BoxError),
        };
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(f) = cut_off.get() {
                    return Err(decision::dlp_refusal(host, f, "request body").into());
                }
                if let Some(why) = crate::resolve::private_refusal(&*e) {
                    tracing::warn!(%host, %why, "refused a private address");
                    return Err(Refusal::new(
                        Rule::PrivateAddress,
                        format!("egress: {why} (egress.routes[].allowPrivateAddresses)"),
                    )
                    .into());
                }
                // The chain says why (refused, TLS verification, timeout); hyper's top line does not.
                let mut why = e.to_string();
                let mut src = e.source();
                while let Some(s) = src {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    src = s.source();
                }
                tracing::info!(%host, error = %why, "upstream failed");
                return Ok(bad_gateway(format!(
                    "egress: upstream {host} failed: {why}"
                )));
            }
        };
        let (mut parts, body) = resp.into_parts();
        let until_close =
            close_delimited(&request_method, parts.status, parts.version, &parts.headers);
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        if inbound.reflected_in(&parts.headers) {
            return Err(response_refusal(host, REFLECTED_DETECTOR, "injected-credential").into());
        }
        let body = match screen(body, &parts.headers, inbound, until_close).await {
            Ok(b) => b,
            Err(Screened::Found(f)) => {
                tracing::warn!(%host, detector = f.detector, rule = f.rule, "response blocked");
                return Err(response_refusal(host, f.detector, f.rule).into());
            }
            Err(Screened::Unreadable(e)) => {
                tracing::info!(%host, error = %e, "upstream response unreadable");
                return Ok(bad_gateway(format!(
                    "egress: reading the response from {host}: {e}"
                )));
            }
            // Responses are not decoded (requests go out without Accept-Encoding instead).
            Err(Screened::Unscannable(e)) => {
                return Ok(bad_gateway(format!(
                    "egress: the response from {host}: {e}"
                )));
            }
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Sends an admitted WebSocket upgrade upstream; on `101` relays messages between the two
    /// upgraded connections, each scanned by DLP (`websocket::relay`).
    async fn relay_websocket(
        &self,
        req: Request<Body>,
        agent_side: hyper::upgrade::OnUpgrade,
        host: &str,
        (outbound, inbound): (crate::relay_body::Scan, crate::relay_body::Scan),
    ) -> Result<Response<Body>, Refused> {
        let mut resp = match self.upgrades.request(req).await {
            Ok(r) => r,
            Err(e) => return Ok(bad_gateway(format!("egress: upstream {host} failed: {e}"))),
        };
        if inbound.reflected_in(resp.headers()) {
            return Err(response_refusal(host, REFLECTED_DETECTOR, "injected-credential").into());
        }
        // Not upgraded: an ordinary response, screened as any other.
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            return match screen(body, &parts.headers, inbound, false).await {
                Ok(b) => Ok(Response::from_parts(parts, b)),
                Err(Screened::Found(f)) => Err(response_refusal(host, f.detector, f.rule).into()),
                Err(Screened::Unreadable(e)) => Ok(bad_gateway(format!(
                    "egress: reading the response from {host}: {e}"
                ))),
                Err(Screened::Unscannable(e)) => Ok(bad_gateway(format!(
                    "egress: the response from {host}: {e}"
                ))),
            };
        }
        let upstream_side = hyper::upgrade::on(&mut resp);
        let host_owned = host.to_string();
        let hold = self.hold.clone();
        tokio::spawn(async move {
            let relayed = async move {
                match tokio::join!(agent_side, upstream_side) {
                    (Ok(agent), Ok(upstream)) => {
                        crate::websocket::relay(agent, upstream, outbound, inbound, host_owned)
                            .await;
                    }
                    (a, u) => {
                        tracing::debug!(host = %host_owned, agent_ok = a.is_ok(), upstream_ok = u.is_ok(), "websocket upgrade failed");
                    }
                }
            };
            hold.cut(relayed).await;
        });
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, empty()))
    }
}

/// A response withheld from the agent: it carried the route's own credential back, or what
/// inbound DLP calls a prompt injection.
fn response_refusal(host: &str, detector: &str, rule: &str) -> Refusal {
    let why = if detector == REFLECTED_DETECTOR {
        "it carries the credential this route injects (the upstream echoed the request); the agent never holds it".to_string()
    } else {
        format!("it looks like a prompt-injection attempt ({detector}: {rule})")
    };
    Refusal::new(
        Rule::DlpInbound,
        format!("egress: the response from {host} was withheld: {why}"),
    )
    .with_status(StatusCode::BAD_GATEWAY)
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
