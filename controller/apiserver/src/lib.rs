//! The local apiserver: a Kubernetes-compatible REST API over TLS with bearer-token auth,
//! serving discovery, OpenAPI and the resources in `resources` from the SQLite `Store`.

pub mod audit;
mod discovery;
mod events;
mod fields;
mod handlers;
mod managed;
pub mod objects;
mod protobuf;
pub mod resources;
pub mod reviews;
mod select;
pub mod status;
pub mod store;
pub mod strategy;
mod table;
mod watch;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

use self::handlers::{Query, Reply, Target};
use self::objects::Registry;
use self::status::ApiError;
use self::table::View;
use crate::store::Store;
use bb_home::https;
pub use bb_home::https::ServeError;
use bb_home::pki::Credentials;

/// Largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Response bodies: a whole JSON document or a watch stream.
#[derive(Debug)]
pub enum Body {
    Full(Full<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, Infallible>>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }
}

/// Renders the process's metrics as OpenMetrics text for `GET /metrics`. Injected, so the API
/// server knows nothing of who keeps them (the reconcilers, in the control plane).
/// The content type `/metrics` is served with: what a [`MetricsSource`] renders.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

struct State {
    registry: Registry,
    metrics: MetricsSource,
    token: String,
    server_address: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
    audit: Option<audit::AuditLog>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Full(Full::new(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(Body::Full(Full::new(Bytes::new()))))
}

/// The response encoding a request asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    /// Every listed media type is protobuf: nothing else would be read.
    Protobuf,
}

impl Encoding {
    fn negotiate(accept: &str) -> Encoding {
        let types: Vec<&str> = accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .filter(|t| !t.is_empty())
            .collect();
        if !types.is_empty() && types.iter().all(|t| *t == protobuf::MEDIA_TYPE) {
            Encoding::Protobuf
        } else {
            Encoding::Json
        }
    }
}

/// An object response in the negotiated encoding; 406 when it has no protobuf form.
fn object_response(encoding: Encoding, code: u16, v: &Value) -> Response<Body> {
    if encoding == Encoding::Json {
        return json_response(code, v);
    }
    let bytes = match protobuf::encode(v) {
        Some(Ok(b)) => b,
        Some(Err(e)) => return json_response(e.code, &e.to_status()),
        None => {
            let kind = v
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("this response");
            let e = ApiError::new(
                406,
                "NotAcceptable",
                format!(
                    "{kind} has no protobuf form here (protobuf is served for v1 {}); accept application/json",
                    protobuf::KINDS.join(", ")
                ),
            );
            return json_response(e.code, &e.to_status());
        }
    };
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, protobuf::MEDIA_TYPE)
        .body(Body::Full(Full::new(Bytes::from(bytes))))
        .unwrap_or_else(|_| Response::new(Body::Full(Full::new(Bytes::new()))))
}

fn text_response(code: u16, text: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::Full(Full::new(Bytes::from(text.to_string()))))
        .unwrap_or_else(|_| Response::new(Body::Full(Full::new(Bytes::new()))))
}

fn version_info() -> Value {
    serde_json::json!({
        "major": "1", "minor": "33", "gitVersion": concat!("v1.33.0-bot-bottle.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "n/a (rust)",
        "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// Parses a resource path (`/api/v1/...`, `/apis/g/v/...`) into its target.
fn route(segs: &[&str]) -> Result<Target, ApiError> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(ApiError::not_found(
                "the server could not find the requested resource",
            ));
        }
    };
    let unknown = |plural: &str| {
        ApiError::not_found(format!(
            "the server could not find the requested resource ({plural})"
        ))
    };
    let lookup =
        |plural: &str| resources::find(group, version, plural).ok_or_else(|| unknown(plural));
    let (res, namespace, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            let res = lookup(plural)?;
            if !res.namespaced {
                return Err(unknown(plural));
            }
            match tail {
                [] => (res, Some(*ns), None, None),
                [name] => (res, Some(*ns), Some(*name), None),
                [name, sub] => (res, Some(*ns), Some(*name), Some(*sub)),
                _ => return Err(unknown(plural)),
            }
        }
        [plural] => (lookup(plural)?, None, None, None),
        [plural, name] => (lookup(plural)?, None, Some(*name), None),
        [plural, name, sub] => (lookup(plural)?, None, Some(*name), Some(*sub)),
        _ => {
            return Err(ApiError::not_found(
                "the server could not find the requested resource",
            ));
        }
    };
    if let Some(s) = sub
        && !(s == "status" && res.status_subresource)
    {
        return Err(ApiError::not_found(format!(
            "the server could not find the requested resource ({}/{s})",
            res.plural
        )));
    }
    if !res.namespaced && namespace.is_some() {
        return Err(unknown(res.plural));
    }
    Ok(Target {
        res,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    })
}

/// Reads (and discards) what the client is still sending, within bounds, so that an early error
/// response reaches it instead of a reset stream.
async fn drain(mut body: Incoming) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > 4 * MAX_BODY_BYTES {
                break;
            }
        }
    })
    .await;
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            buf.extend_from_slice(d);
            if buf.len() > MAX_BODY_BYTES {
                drain(body).await;
                return Err(ApiError::too_large(format!(
                    "the request body is larger than the {MAX_BODY_BYTES} byte limit"
                )));
            }
        }
    }
    Ok(buf.freeze())
}

/// Decodes a JSON or YAML request body.
fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"))),
        protobuf::MEDIA_TYPE => protobuf::decode(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
            let docs = bb_crds::manifest::yaml_documents(text)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            match docs.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(ApiError::bad_request(
                    "the body must hold exactly one YAML document",
                )),
            }
        }
        other => Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({other}); accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

/// A request header as text (empty when absent or not text).
fn header_text<T>(req: &Request<T>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let encoding = Encoding::negotiate(&header_text(&req, header::ACCEPT));
    // What the request asks, for the audit log: resource requests only (discovery, health and
    // metrics are every authenticated client's).
    let audited = state.audit.as_ref().and_then(|_| {
        let segs: Vec<&str> = path
            .trim_end_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let agent = header_text(&req, header::USER_AGENT);
        if let Some(which) = reviews::is_review(&segs) {
            let group = segs.get(1).copied().unwrap_or_default();
            return Some((agent, audit::review_attributes(&method, group, which)));
        }
        let target = route(&segs).ok()?;
        Some((
            agent,
            audit::attributes(&method, &target, &Query::parse(req.uri().query())),
        ))
    });
    let result = dispatch(&state, req, encoding).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, reason = e.reason, "request failed");
            object_response(encoding, e.code, &e.to_status())
        }
    };
    if let (Some(log), Some((agent, attributes))) = (&state.audit, audited) {
        log.record(&agent, &attributes, response.status().as_u16());
    }
    response
}

async fn dispatch(
    state: &State,
    req: Request<Incoming>,
    encoding: Encoding,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Liveness and version are public, as in Kubernetes' default RBAC.
    match (req.method(), segs.as_slice()) {
        (&Method::GET, ["healthz" | "livez" | "readyz", ..]) => {
            return Ok(text_response(200, "ok"));
        }
        (&Method::GET, ["version"]) => return Ok(json_response(200, &version_info())),
        _ => {}
    }
    if !https::authorized(&req, &state.token) {
        return Err(ApiError::unauthorized());
    }
    if req.method() == Method::GET && segs.as_slice() == ["metrics"] {
        let mut resp = text_response(200, &(state.metrics)());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
        );
        return Ok(resp);
    }
    if req.method() == Method::GET {
        let doc = match segs.as_slice() {
            ["api"] => Some(discovery::api_versions(&state.server_address)),
            ["apis"] => Some(discovery::group_list()),
            ["api", v] => discovery::resource_list("", v),
            ["apis", g] => discovery::group(g),
            ["apis", g, v] => discovery::resource_list(g, v),
            ["openapi", "v3"] => Some(discovery::openapi_v3_index()),
            ["openapi", "v3", "api", v] => discovery::openapi_v3_doc("", v),
            ["openapi", "v3", "apis", g, v] => discovery::openapi_v3_doc(g, v),
            _ => None,
        };
        if let Some(doc) = doc {
            return Ok(json_response(200, &doc));
        }
        if matches!(
            segs.as_slice(),
            ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] | ["openapi", ..]
        ) {
            return Err(ApiError::not_found(
                "the server could not find the requested resource",
            ));
        }
    }
    // Reviews are answered, not stored: they have no route.
    let review = reviews::is_review(&segs);
    let target = match review {
        Some(_) => None,
        None => Some(route(&segs)?),
    };
    // Refuse an oversized body before reading any of it, so the client gets the 413 rather
    // than a reset connection.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        drain(req.into_body()).await;
        return Err(ApiError::too_large(format!(
            "the request body is larger than the {MAX_BODY_BYTES} byte limit"
        )));
    }
    let Some(target) = target else {
        let which = review.unwrap_or_default();
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed(format!(
                "{} is not supported on {path}: reviews are created (POST)",
                req.method()
            )));
        }
        let ctype = header_text(&req, header::CONTENT_TYPE);
        let body = read_body(req.into_body()).await?;
        let answered = reviews::answer(which, &decode_body(&ctype, &body)?, &state.token)?;
        return Ok(object_response(encoding, 201, &answered));
    };
    let q = Query::parse(req.uri().query());
    let view = if header_text(&req, header::ACCEPT).contains("as=Table") {
        View::Table
    } else {
        View::Object
    };
    let ctype = header_text(&req, header::CONTENT_TYPE);
    let method = req.method().clone();
    let reg = &state.registry;
    let reply = match (method, target.name.is_some()) {
        (Method::GET, true) => handlers::get(reg, &target, view, &q)?,
        (Method::GET, false) => handlers::list(reg, &target, view, &q, state.shutdown.clone())?,
        (Method::POST, _) => {
            let body = read_body(req.into_body()).await?;
            handlers::create(reg, &target, decode_body(&ctype, &body)?, &q)?
        }
        (Method::PUT, true) => {
            let body = read_body(req.into_body()).await?;
            handlers::update(reg, &target, decode_body(&ctype, &body)?, &q)?
        }
        (Method::PATCH, true) => {
            let body = read_body(req.into_body()).await?;
            handlers::patch(reg, &target, &ctype, &body, &q)?
        }
        (Method::DELETE, true) => {
            let body = read_body(req.into_body()).await?;
            handlers::delete(reg, &target, &body, &q)?
        }
        (Method::DELETE, false) => {
            let body = read_body(req.into_body()).await?;
            handlers::delete_collection(reg, &target, &body, &q)?
        }
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on {path}"
            )));
        }
    };
    Ok(match reply {
        Reply::Json(code, v) => object_response(encoding, code, &v),
        Reply::Watch(_) if encoding == Encoding::Protobuf => {
            return Err(ApiError::new(
                406,
                "NotAcceptable",
                "watch streams are served as JSON only; accept application/json",
            ));
        }
        Reply::Watch(rx) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::Stream(rx))
            .map_err(|e| ApiError::internal(e.to_string()))?,
    })
}

/// A running apiserver.
#[derive(Debug)]
pub struct ApiServer {
    pub local_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Binds `addr` and serves until [`ApiServer::shutdown`].
    pub async fn start(
        addr: SocketAddr,
        creds: &Credentials,
        store: Store,
        metrics: MetricsSource,
        audit: Option<audit::AuditLog>,
    ) -> Result<ApiServer, ServeError> {
        let (listener, local_addr) = https::bind(addr).await?;
        let tls = https::tls_acceptor(creds, &[b"h2", b"http/1.1"])?;
        let registry = Registry::new(store);
        registry
            .bootstrap()
            .map_err(|e| ServeError::Bootstrap(e.message))?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(State {
            registry,
            metrics,
            token: creds.token.clone(),
            server_address: local_addr.to_string(),
            shutdown: rx.clone(),
            audit,
        });
        let task = tokio::spawn(https::serve(listener, tls, rx, move |req| {
            handle(state.clone(), req)
        }));
        Ok(ApiServer {
            local_addr,
            shutdown: tx,
            task,
        })
    }

    /// Stops accepting, ends watches, and waits for the accept loop to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
