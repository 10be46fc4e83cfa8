//! The runner's session endpoint: attach, exec and logs of the Agents this runner runs, served
//! as Kubernetes-shaped subresources over WebSocket (`v5.channel.k8s.io`) with bearer auth.
//! It is the only door from a client to a runtime; its URL is in each Agent's status.

pub mod bridge;
pub mod client;
pub mod plans;
pub mod protocol;
pub mod request;
pub mod review;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::runtime::reflector::ObjectRef;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use self::plans::SessionPlans;
use self::request::{Refusal, SessionRequest, Verb};
use bb_backend::{Backend, SharedBackend};
use bb_home::https::{self, ServeError};
use bb_home::pki::Credentials;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

struct State {
    client: kube::Client,
    backend: SharedBackend,
    plans: SessionPlans,
    token: String,
    endpoint: String,
    /// Cluster mode: a token other than this runner's own is judged by the cluster
    /// (`review`), so the cluster's users reach the Agents wherever they run.
    delegate: bool,
}

/// A running session endpoint.
#[derive(Debug)]
pub struct SessionServer {
    pub local_addr: SocketAddr,
    endpoint: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SessionServer {
    /// Binds `addr` and serves the Agents `backend` runs (as `client` describes them, with what
    /// their reconciles put in `plans`) until [`SessionServer::shutdown`].
    pub async fn start(
        addr: SocketAddr,
        creds: &Credentials,
        client: kube::Client,
        backend: SharedBackend,
        plans: SessionPlans,
    ) -> Result<SessionServer, ServeError> {
        Self::start_delegating(addr, creds, client, backend, plans, false).await
    }

    /// `start`; with `delegate`, tokens other than the runner's own are reviewed by the cluster
    /// `client` talks to (TokenReview, then SubjectAccessReview on the Agent's subresource).
    pub async fn start_delegating(
        addr: SocketAddr,
        creds: &Credentials,
        client: kube::Client,
        backend: SharedBackend,
        plans: SessionPlans,
        delegate: bool,
    ) -> Result<SessionServer, ServeError> {
        let (listener, local_addr) = https::bind(addr).await?;
        // WebSocket upgrades are HTTP/1.1 only: do not offer h2.
        let tls = https::tls_acceptor(creds, &[b"http/1.1"])?;
        let host = if local_addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            local_addr.ip()
        };
        let endpoint = format!("https://{}", SocketAddr::new(host, local_addr.port()));
        let state = Arc::new(State {
            client,
            backend,
            plans,
            token: creds.token.clone(),
            endpoint: endpoint.clone(),
            delegate,
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(https::serve(listener, tls, rx, move |req| {
            handle(state.clone(), req)
        }));
        Ok(SessionServer {
            local_addr,
            endpoint,
            shutdown: tx,
            task,
        })
    }

    /// The URL clients reach this runner at (`status.sessionEndpoint`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops accepting and waits for the accept loop; open sessions get a short grace.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn full(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = code;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A refusal as Kubernetes sends one: a `Status` object with the HTTP code.
fn refused(r: &Refusal) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": r.message, "reason": r.reason, "code": r.code,
    });
    full(
        StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/json",
        serde_json::to_vec(&status).unwrap_or_default(),
    )
}

fn wants_websocket<T>(req: &Request<T>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(refusal) => {
            tracing::debug!(code = refusal.code, message = %refusal.message, "session refused");
            refused(&refusal)
        }
    }
}

async fn serve(state: &Arc<State>, mut req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
    if req.method() == Method::GET && req.uri().path() == "/healthz" {
        return Ok(full(StatusCode::OK, "text/plain", b"ok".to_vec()));
    }
    let own = https::authorized(&req, &state.token);
    if !own && !state.delegate {
        return Err(Refusal::new(401, "Unauthorized", "Unauthorized"));
    }
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(Refusal::new(
            405,
            "MethodNotAllowed",
            format!("{} is not supported here: use GET (or POST)", req.method()),
        ));
    }
    let parsed = request::parse(req.uri().path(), req.uri().query())?;
    if !own {
        let Some(token) = https::bearer(&req) else {
            return Err(Refusal::new(401, "Unauthorized", "Unauthorized"));
        };
        let verdict = review::review(&state.client, token, &parsed)
            .await
            .map_err(|e| {
                Refusal::new(
                    503,
                    "ServiceUnavailable",
                    format!("asking the cluster who this is: {e}"),
                )
            })?;
        match verdict {
            review::Verdict::Allowed => {}
            review::Verdict::Unauthenticated => {
                return Err(Refusal::new(401, "Unauthorized", "Unauthorized"));
            }
            review::Verdict::Forbidden(user) => {
                let (verb, sub) = review::access(&parsed);
                return Err(Refusal::new(
                    403,
                    "Forbidden",
                    format!(
                        "user \"{user}\" cannot {verb} agents/{sub} of agent/{} in namespace \"{}\"",
                        parsed.name, parsed.namespace
                    ),
                ));
            }
        }
    }
    let agent = request::running_agent(&state.client, &state.endpoint, &parsed).await?;
    let id = crate::reconcile::claim::runtime_id(&*state.backend, &agent);
    let websocket = wants_websocket(&req);
    if !websocket {
        // Plain HTTP logs, as the Kubernetes log endpoint: one merged text stream.
        let output = match parsed.verb {
            Verb::Log { source, options } => state
                .backend
                .logs(&id, source, options)
                .await
                .map_err(|e| Refusal::new(503, "ServiceUnavailable", e.to_string()))?,
            Verb::SuperviseLog { tail } => supervise_log(&*state.backend, &id, tail),
            _ => {
                return Err(Refusal::bad_request(
                    "exec and attach need a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io)",
                ));
            }
        };
        let frames = output.map(|c| {
            c.map(|c| http_body::Frame::data(c.data))
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        return Ok(r);
    }
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(subprotocol) = protocol::negotiate(offered) else {
        return Err(Refusal::bad_request(format!(
            "Sec-WebSocket-Protocol '{offered}': this endpoint speaks {} and {}",
            protocol::V5,
            protocol::V4
        )));
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refusal::bad_request("missing Sec-WebSocket-Key"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Resolve before upgrading, so a failure is an HTTP error the client can read.
    let spec = match &parsed.verb {
        Verb::Log { .. } | Verb::SuperviseLog { .. } => None,
        verb => Some(request::session_spec(
            &state.plans,
            &agent,
            &id,
            verb,
            parsed.streams,
        )?),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let state = state.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "session upgrade failed");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run(&state, socket, &id, parsed, spec).await;
    });
    let mut r = full(
        StatusCode::SWITCHING_PROTOCOLS,
        "application/octet-stream",
        Vec::new(),
    );
    let h = r.headers_mut();
    h.remove(header::CONTENT_TYPE);
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(subprotocol),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

async fn run(
    state: &State,
    socket: bridge::Socket,
    id: &bb_backend::AgentId,
    req: SessionRequest,
    spec: Option<bb_backend::SessionSpec>,
) {
    match (req.verb, spec) {
        (Verb::Log { source, options }, _) => {
            let opened = state.backend.logs(id, source, options).await;
            bridge::log(socket, opened).await;
        }
        (Verb::SuperviseLog { tail }, _) => {
            bridge::log(socket, Ok(supervise_log(&*state.backend, id, tail))).await;
        }
        (verb, Some(spec)) => {
            tracing::info!(agent = %id, verb = verb.name(), argv0 = spec.argv.first().map(String::as_str).unwrap_or(""), "session opened");
            // The API object (a claimed pool member's runtime name is another).
            let agent = ObjectRef::<bb_crds::Agent>::new(&req.name).within(&req.namespace);
            let activity = &state.plans.activity;
            let _open = activity.open(&id.uid, agent.clone());
            let opened = state.backend.open_session(id, &spec).await;
            let code = bridge::session(&*state.backend, socket, opened, req.streams).await;
            if matches!(verb, Verb::Attach) && code.is_some() {
                activity.exited(&id.uid, agent);
            }
        }
        (_, None) => {}
    }
}

/// The Agent's supervise audit log, which this runner keeps itself (no runtime involved).
fn supervise_log(
    backend: &dyn Backend,
    id: &bb_backend::AgentId,
    tail: Option<u64>,
) -> bb_backend::Output {
    let file = crate::supervise::audit_file(&backend.supervise_dir(id));
    let data = crate::supervise::audit::read(&file, tail.map(|n| n as usize));
    Box::pin(futures_util::stream::once(std::future::ready(Ok(
        bb_backend::Chunk {
            stream: bb_backend::OutputStream::Stdout,
            data: data.into(),
        },
    ))))
}
