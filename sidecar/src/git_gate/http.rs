//! git-gate's smart-HTTP front door: `GET /NAME.git/info/refs?service=...` and `POST
//! /NAME.git/git-{upload,receive}-pack`, each answered by `git {upload,receive}-pack
//! --stateless-rpc` on the repository's mirror after refreshing it from upstream.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::MAX_PUSH_BYTES;
use super::config::GateConfig;
use super::repo::GatePaths;
use crate::hold::Hold;
use crate::relay_body::{Body, BoxError, full};

/// The two services git speaks over smart HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn parse(s: &str) -> Option<Service> {
        match s {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    fn subcommand(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Advertise { repo: String, service: Service },
    Rpc { repo: String, service: Service },
}

/// Routes a request line; `Err` is the status and message to answer with.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Route, (StatusCode, String)> {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            format!(
                "git-gate serves /NAME.git/info/refs and /NAME.git/git-upload-pack|git-receive-pack, not {path}"
            ),
        )
    };
    let path = path.strip_prefix('/').ok_or_else(not_found)?;
    let (repo, rest) = path.split_once(".git/").ok_or_else(not_found)?;
    if repo.is_empty() || repo.contains('/') {
        return Err(not_found());
    }
    let repo = repo.to_string();
    match (method, rest) {
        (&Method::GET, "info/refs") => {
            let service = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|kv| kv.strip_prefix("service="))
                .and_then(Service::parse)
                .ok_or((
                    StatusCode::FORBIDDEN,
                    "git-gate speaks only smart HTTP: info/refs needs ?service=git-upload-pack or git-receive-pack".to_string(),
                ))?;
            Ok(Route::Advertise { repo, service })
        }
        (&Method::POST, rpc) => {
            let service = Service::parse(rpc).ok_or_else(not_found)?;
            Ok(Route::Rpc { repo, service })
        }
        _ => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path} is not a git smart-HTTP request"),
        )),
    }
}

/// Checks a request's declared body size before any of it is read: a number no larger than
/// the push limit, or chunked framing (counted as it arrives).
pub fn check_length(headers: &http::HeaderMap) -> Result<(), (StatusCode, String)> {
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => {
            let n: u64 = v.to_str().ok().and_then(|s| s.trim().parse().ok()).ok_or((
                StatusCode::BAD_REQUEST,
                "Content-Length must be a non-negative number".to_string(),
            ))?;
            if n > MAX_PUSH_BYTES {
                return Err(too_large());
            }
            Ok(())
        }
        None if chunked => Ok(()),
        None => Err((
            StatusCode::BAD_REQUEST,
            "a git request body needs Content-Length or chunked transfer encoding".to_string(),
        )),
    }
}

fn too_large() -> (StatusCode, String) {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "git-gate takes request bodies up to {} MiB",
            MAX_PUSH_BYTES >> 20
        ),
    )
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(format!("{}\n", message.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The git-gate server: its config file (read per request, so a new delivery applies to the
/// next one) and one lock per mirror (a refresh and a push never interleave).
#[derive(Debug)]
pub struct GateServer {
    config: PathBuf,
    paths: GatePaths,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The runner's hold: once it lapses, requests are refused and connections cut.
    hold: Arc<Hold>,
}

impl GateServer {
    pub fn new(config: PathBuf, paths: GatePaths) -> Result<GateServer, super::repo::RepoError> {
        paths.prepare()?;
        Ok(GateServer {
            config,
            paths,
            locks: std::sync::Mutex::new(HashMap::new()),
            hold: Hold::unfenced(),
        })
    }

    /// Serves only while `hold` is kept (cluster mode).
    pub fn with_hold(mut self, hold: Arc<Hold>) -> GateServer {
        self.hold = hold;
        self
    }

    /// The declared repositories; none before the first delivery.
    fn config(&self) -> Result<GateConfig, super::config::ConfigError> {
        if !self.config.exists() {
            return Ok(GateConfig::default());
        }
        GateConfig::load(&self.config)
    }

    fn lock(&self, repo: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(repo.to_string()).or_default().clone()
    }

    /// Accepts agent connections for as long as the process runs (`accept::next`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = crate::accept::next(&listener, "git-gate").await;
            let gate = self.clone();
            let hold = self.hold.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let gate = gate.clone();
                    async move { Ok::<_, std::convert::Infallible>(gate.handle(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc);
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "git-gate connection ended");
                    },
                    () = hold.until_lapsed() => {}
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if self.hold.lapsed() {
            tracing::info!(%peer, "refused a git request: the runner's hold lapsed");
            return answer(
                StatusCode::FORBIDDEN,
                format!("git-gate: {} (runner-lost)", crate::hold::LAPSED),
            );
        }
        let route = match route(req.method(), req.uri().path(), req.uri().query()) {
            Ok(r) => r,
            Err((status, msg)) => return answer(status, msg),
        };
        let (repo_name, service) = match &route {
            Route::Advertise { repo, service } | Route::Rpc { repo, service } => {
                (repo.clone(), *service)
            }
        };
        let config = match self.config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "git-gate config unreadable");
                return answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
        };
        let lock = self.lock(&repo_name);
        let Some(repo) = config.repos.get(&repo_name) else {
            let known: Vec<&str> = config.repos.keys().map(String::as_str).collect();
            return answer(
                StatusCode::NOT_FOUND,
                format!(
                    "no repository {repo_name:?} behind git-gate; declared: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        };
        let env = match self.paths.env(&repo_name, repo) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(repo = %repo_name, error = %e, "git-gate cannot serve");
                return answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
        };
        // Protocol v2 is negotiated by header; only its plain `key=value:...` form passes.
        let protocol = req
            .headers()
            .get("git-protocol")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b))
            })
            .map(str::to_string);
        // A push's body is read whole before the repository is locked, within a deadline: a
        // client that stalls mid-body holds nothing, and every fetch of the repository goes on.
        let input = match &route {
            Route::Rpc { .. } => {
                if let Err((status, msg)) = check_length(req.headers()) {
                    return answer(status, msg);
                }
                let gzip = req
                    .headers()
                    .get(header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
                match tokio::time::timeout(BODY_DEADLINE, read_body(req.into_body(), gzip)).await {
                    Ok(Ok(b)) => Some(b),
                    Ok(Err((status, msg))) => return answer(status, msg),
                    Err(_) => {
                        tracing::info!(%peer, repo = %repo_name, "request body stalled; dropped");
                        return answer(
                            StatusCode::REQUEST_TIMEOUT,
                            format!(
                                "git-gate: the request body did not arrive within {}s",
                                BODY_DEADLINE.as_secs()
                            ),
                        );
                    }
                }
            }
            Route::Advertise { .. } => None,
        };
        let guard = lock.clone().lock_owned().await;
        let (dir, created) = match self.paths.ensure_mirror(&repo_name, &env).await {
            Ok(d) => d,
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        // A fetch or clone sees upstream as it is now. A push needs no refresh (a new mirror
        // aside): upstream itself refuses an update that is not a fast-forward of what it has,
        // and forced ones carry a lease on what the agent replaced.
        let refresh = match route {
            Route::Advertise { service, .. } => service == Service::UploadPack || created,
            Route::Rpc { .. } => false,
        };
        if refresh && let Err(e) = self.paths.refresh(&dir, repo, &env, created).await {
            tracing::warn!(repo = %repo_name, error = %e, "refreshing the mirror failed");
            return answer(
                StatusCode::BAD_GATEWAY,
                format!("git-gate could not reach the upstream of {repo_name}: {e}"),
            );
        }
        tracing::info!(%peer, repo = %repo_name, service = service.name(), advertise = matches!(route, Route::Advertise { .. }), "git-gate request");
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg(service.subcommand())
            .arg("--stateless-rpc")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        match route {
            Route::Advertise { .. } => {
                cmd.arg("--advertise-refs").arg(&dir);
                let out = match cmd.stdin(Stdio::null()).output().await {
                    Ok(o) if o.status.success() => o.stdout,
                    Ok(o) => {
                        return answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            String::from_utf8_lossy(&o.stderr).into_owned(),
                        );
                    }
                    Err(e) => {
                        return answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("running git: {e}"),
                        );
                    }
                };
                let mut body = Vec::with_capacity(out.len() + 64);
                // v2 clients get the capability advertisement as is; v0 the service header first.
                if protocol.as_deref().is_none_or(|p| !p.contains("version=2")) {
                    let line = format!("# service={}\n", service.name());
                    body.extend(format!("{:04x}{line}0000", line.len() + 4).into_bytes());
                }
                body.extend(out);
                let mut r = Response::new(full(body));
                let ct = format!("application/x-{}-advertisement", service.name());
                if let Ok(v) = http::HeaderValue::from_str(&ct) {
                    r.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-cache"),
                );
                r
            }
            Route::Rpc { .. } => {
                cmd.arg(&dir);
                let input = input.unwrap_or_default();
                // The hook (and its upstream push) runs inside; the response streams as git
                // writes it, and the lock is held until the request is answered.
                let out = match run_rpc(cmd, input, guard).await {
                    Ok(out) => out,
                    Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e),
                };
                let mut r = Response::new(out);
                let ct = format!("application/x-{}-result", service.name());
                if let Ok(v) = http::HeaderValue::from_str(&ct) {
                    r.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                r
            }
        }
    }
}

/// The whole request body (gunzipped when sent so), at most `MAX_PUSH_BYTES`.
async fn read_body(mut body: Incoming, gzip: bool) -> Result<Vec<u8>, (StatusCode, String)> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > MAX_PUSH_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    if !gzip {
        return Ok(buf);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(buf.as_slice())
        .take(MAX_PUSH_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the gzip request body does not decode: {e}"),
            )
        })?;
    if out.len() as u64 > MAX_PUSH_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

/// How long a push's request body may take to arrive.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
/// How long one git run (with the scan and the forwarded push inside) may hold a repository.
pub const RPC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Feeds `input` to the git process and hands back its stdout as it comes; stderr goes to the
/// log (what the agent must see, git sends in-band).
async fn run_rpc(
    mut cmd: tokio::process::Command,
    input: Vec<u8>,
    guard: tokio::sync::OwnedMutexGuard<()>,
) -> Result<Body, String> {
    let mut child = cmd.spawn().map_err(|e| format!("running git: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("git has no stdin")?;
    let stdout = child.stdout.take().ok_or("git has no stdout")?;
    let stderr = child.stderr.take().ok_or("git has no stderr")?;
    tokio::spawn(async move {
        if let Err(e) = stdin.write_all(&input).await {
            tracing::debug!(error = %e, "git stopped reading its request");
        }
    });
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        // A git that never finishes (upstream stalling the forwarded push, an agent that stops
        // reading the answer) is killed, and the repository is free again.
        let run = async {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::info!(git = %l, "git-gate");
            }
            child.wait().await
        };
        match tokio::time::timeout(RPC_DEADLINE, run).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "waiting for git"),
            Err(_) => {
                tracing::warn!(limit = ?RPC_DEADLINE, "git did not finish; killed it");
                let _ = child.kill().await;
            }
            Ok(Ok(_)) => {}
        }
        drop(guard);
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = stdout;
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            let item = match out.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Frame::data(Bytes::from(buf)))
                }
                Err(e) => Err(Box::new(e) as BoxError),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_smart_http_ones() {
        assert_eq!(
            route(
                &Method::GET,
                "/app.git/info/refs",
                Some("service=git-upload-pack")
            ),
            Ok(Route::Advertise {
                repo: "app".into(),
                service: Service::UploadPack
            })
        );
        assert_eq!(
            route(&Method::POST, "/app.git/git-receive-pack", None),
            Ok(Route::Rpc {
                repo: "app".into(),
                service: Service::ReceivePack
            })
        );
        assert_eq!(
            route(&Method::GET, "/app.git/info/refs", None).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            route(&Method::GET, "/app.git/HEAD", None).map_err(|e| e.0),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            route(&Method::POST, "/a/b.git/git-upload-pack", None).map_err(|e| e.0),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            route(&Method::POST, "/app.git/git-frob", None).map_err(|e| e.0),
            Err(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn body_sizes_are_checked_before_reading() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        assert!(check_length(&h(&[("content-length", "1024")])).is_ok());
        assert!(check_length(&h(&[("transfer-encoding", "chunked")])).is_ok());
        assert_eq!(
            check_length(&h(&[])).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check_length(&h(&[("content-length", "-1")])).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check_length(&h(&[("content-length", "ten")])).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check_length(&h(&[("content-length", "104857601")])).map_err(|e| e.0),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }
}
