//! The upstream connection an HTTP/1.1 tunnel keeps for itself: opened on the tunnel's first
//! request, reused while it lives, and driven by the tunnel's own task instead of a pool's.
//!
//! Why: through the shared pool, every request hops from the agent's connection task to the
//! pooled connection's task and back, and each hop is a cross-task (often cross-core) wake-up.
//! An HTTP/1.1 agent sends one request at a time to one host per tunnel, so one upstream
//! connection per tunnel serves it exactly, and polling that connection in the same task as the
//! agent's side makes a request and its streamed answer cost no hop at all. When the tunnel
//! ends, an idle connection is parked (`Parking`) for the next tunnel to the same origin, so an
//! agent that opens a tunnel per request (curl, git's one-shot calls) reuses upstream
//! connections as it did through the pool.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::relay_body::{Body, BoxError};
use crate::resolve::CheckedResolver;

/// How the relay connects upstream (TLS by ALPN, through the private-address check).
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>;

type Driven = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The request side of the tunnel's connection, by the protocol its ALPN settled on.
enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

#[derive(Default)]
struct State {
    /// The origin (`scheme://authority`) of the connection, once one was opened.
    origin: Option<String>,
    /// Taken out while an HTTP/1.1 request is in flight (one at a time), put back once sent.
    sender: Option<Sender>,
    /// The connection's I/O future: polled by `drive`, dropped when the connection ends.
    connection: Option<Driven>,
    /// The tunnel task's waker, to have a newly opened connection polled.
    driver: Option<Waker>,
}

/// One tunnel's upstream connection. Cloned into the tunnel's service; `drive` must be polled
/// by the task that serves the tunnel, for as long as it does.
#[derive(Clone)]
pub struct TunnelUpstream {
    state: Arc<Mutex<State>>,
    connector: Connector,
    parking: Arc<Parking>,
}

impl std::fmt::Debug for TunnelUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelUpstream").finish_non_exhaustive()
    }
}

impl TunnelUpstream {
    pub fn new(connector: Connector, parking: Arc<Parking>) -> TunnelUpstream {
        TunnelUpstream {
            state: Arc::default(),
            connector,
            parking,
        }
    }

    /// Parks the connection for the next tunnel to its origin when it is idle and open (call
    /// when the tunnel ends).
    pub fn park(&self) {
        let mut state = self.state();
        let (Some(origin), Some(sender), Some(connection)) = (
            state.origin.take(),
            state.sender.take(),
            state.connection.take(),
        ) else {
            return;
        };
        if sender.is_idle() {
            self.parking.park(
                origin,
                Parked {
                    sender,
                    connection,
                    since: Instant::now(),
                },
            );
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls the tunnel's upstream connection, forever: run it beside the tunnel's server.
    pub async fn drive(&self) {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            let mut state = self.state();
            if !state
                .driver
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.driver = Some(cx.waker().clone());
            }
            if let Some(conn) = state.connection.as_mut()
                && conn.as_mut().poll(cx).is_ready()
            {
                state.connection = None;
                state.sender = None;
            }
            Poll::<()>::Pending
        })
        .await
    }

    /// Sends `req` (an absolute URI) on the tunnel's connection, opening one when there is none
    /// or the last one closed; a request the connection closed on before sending is retried
    /// once on a new one.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        let uri = req.uri().clone();
        let sender = match self.reusable(&uri).await {
            Some(s) => s,
            None => match self.unpark(&uri) {
                Some(s) => s,
                None => self.connect(&uri).await?,
            },
        };
        let req = match self.try_send(sender, &uri, req).await {
            Ok(resp) => return Ok(resp),
            Err(Unsent(Some(req), _)) => req,
            Err(Unsent(None, e)) => return Err(e),
        };
        tracing::debug!("the tunnel's upstream connection closed before a request: reconnecting");
        let sender = self.connect(&uri).await?;
        self.try_send(sender, &uri, req)
            .await
            .map_err(|Unsent(_, e)| e)
    }

    /// The open connection's sender once it can take a request, or none. Only a connection to
    /// `uri`'s own origin: a request never rides a connection opened for another host.
    async fn reusable(&self, uri: &Uri) -> Option<Sender> {
        let mut sender = {
            let mut state = self.state();
            if state.origin.as_deref() != Some(origin(uri).as_str()) {
                return None;
            }
            state.sender.take()?
        };
        let ready = match &mut sender {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        };
        ready.is_ok().then_some(sender)
    }

    /// A parked connection to `uri`'s origin, made the tunnel's own.
    fn unpark(&self, uri: &Uri) -> Option<Sender> {
        let origin = origin(uri);
        let Parked {
            sender, connection, ..
        } = self.parking.take(&origin)?;
        self.adopt(origin, connection);
        Some(sender)
    }

    /// Makes `connection` the one `drive` polls.
    fn adopt(&self, origin: String, connection: Driven) {
        let mut state = self.state();
        state.origin = Some(origin);
        state.connection = Some(connection);
        if let Some(w) = &state.driver {
            w.wake_by_ref();
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Sender, BoxError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri.clone()).await?;
        let (sender, connection): (Sender, Driven) = if io.connected().is_negotiated_h2() {
            let (s, c) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await?;
            (Sender::Http2(s), Box::pin(async move { log_end(c.await) }))
        } else {
            let (s, c) = http1::handshake(io).await?;
            (Sender::Http1(s), Box::pin(async move { log_end(c.await) }))
        };
        self.adopt(origin(uri), connection);
        Ok(sender)
    }

    /// Sends on `sender`, which goes back for the next request once the request is queued (the
    /// response is awaited without it); hands back a request that was never sent.
    async fn try_send(
        &self,
        mut sender: Sender,
        uri: &Uri,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, Unsent> {
        let sent: Sending = match &mut sender {
            Sender::Http1(s) => {
                origin_form(&mut req, uri);
                Box::pin(s.try_send_request(req))
            }
            Sender::Http2(s) => Box::pin(s.try_send_request(req)),
        };
        self.state().sender = Some(sender);
        sent.await.map_err(|mut e| {
            let unsent = e.take_message();
            Unsent(unsent, Box::new(e.into_error()))
        })
    }
}

type Sending =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<Body>>>> + Send>>;

/// A request the connection refused before sending it (given back when it can be retried).
struct Unsent(Option<Request<Body>>, BoxError);

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "the tunnel's upstream connection ended");
    }
}

/// HTTP/1.1 to an origin server: the path in the request line, the authority in `Host`.
fn origin_form(req: &mut Request<Body>, uri: &Uri) {
    if let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().entry(header::HOST).or_insert(host);
    }
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(origin) = pq.parse() {
        *req.uri_mut() = origin;
    }
}

fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

impl Sender {
    /// Open and able to take a request now.
    fn is_idle(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(s) => s.is_ready(),
        }
    }
}

/// A connection no tunnel uses, and since when.
struct Parked {
    sender: Sender,
    connection: Driven,
    since: Instant,
}

/// Idle upstream connections of ended tunnels, by origin, for the next tunnel to the same one.
/// Parked connections are not polled: one is checked for a close it missed when taken, and
/// dropped after `PARKED_FOR`.
#[derive(Default)]
pub struct Parking {
    idle: Mutex<HashMap<String, Vec<Parked>>>,
}

/// How long a parked connection is kept (servers' keep-alive timeouts are mostly 5 s to 2 min;
/// one closed earlier is noticed when taken).
const PARKED_FOR: Duration = Duration::from_secs(60);
/// At most this many parked connections per origin.
const PARKED_PER_ORIGIN: usize = 8;

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking").finish_non_exhaustive()
    }
}

impl Parking {
    fn idle(&self) -> MutexGuard<'_, HashMap<String, Vec<Parked>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn park(&self, origin: String, parked: Parked) {
        let mut idle = self.idle();
        // Expired ones of every origin go now, so the map holds only what can still be used.
        idle.retain(|_, list| {
            list.retain(|p| p.since.elapsed() < PARKED_FOR);
            !list.is_empty()
        });
        let list = idle.entry(origin).or_default();
        if list.len() >= PARKED_PER_ORIGIN {
            list.remove(0);
        }
        list.push(parked);
    }

    /// The most recently parked connection to `origin` that is still open.
    fn take(&self, origin: &str) -> Option<Parked> {
        let mut idle = self.idle();
        let list = idle.get_mut(origin)?;
        while let Some(mut p) = list.pop() {
            if p.since.elapsed() >= PARKED_FOR {
                continue;
            }
            // One poll reads what arrived while parked: a close ends the connection here.
            let mut cx = Context::from_waker(Waker::noop());
            if p.connection.as_mut().poll(&mut cx).is_pending() && p.sender.is_idle() {
                return Some(p);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A connector this test never connects with (the connection is adopted by hand).
    fn unused_connector() -> Connector {
        let policy = crate::policy::Policy::parse("routes: []\n", None).expect("policy");
        let resolver = CheckedResolver {
            policy: crate::live_policy::LivePolicy::new(policy, false),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(HttpConnector::new_with_resolver(resolver))
    }

    /// The tunnel's connection, opened for one origin, is never handed a request for another
    /// (it would carry a request judged for one host to a different one).
    #[tokio::test]
    async fn a_connection_serves_only_its_own_origin() {
        let up = TunnelUpstream::new(unused_connector(), Arc::default());
        let (client, _server) = tokio::io::duplex(4096);
        let (sender, conn) = http1::handshake(TokioIo::new(client))
            .await
            .expect("handshake");
        up.adopt(
            "https://a.test:443".into(),
            Box::pin(async move { log_end(conn.await) }),
        );
        up.state().sender = Some(Sender::Http1(sender));
        let driving = up.clone();
        let driver = tokio::spawn(async move { driving.drive().await });

        let other: Uri = "https://b.test:443/x".parse().expect("uri");
        assert!(
            up.reusable(&other).await.is_none(),
            "reused for another host"
        );
        let own: Uri = "https://a.test:443/x".parse().expect("uri");
        assert!(
            up.reusable(&own).await.is_some(),
            "the positive control: its own origin reuses it"
        );
        driver.abort();
    }
}
