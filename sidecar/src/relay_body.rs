//! Bodies on their way through the proxy, in either direction: screened by DLP (whole when small
//! and sized, streamed otherwise) and ended honestly. A body that ends cleanly arrives whole, the
//! scanner's hold-back flushed; one that breaks arrives as an error, never as a short clean body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::dlp::{Finding, Holdback};
use crate::needles::NeedleSet;
use crate::policy::{DlpSwitches, Policy};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Bodies up to this size are scanned whole before anything is sent, so a DLP hit is a clean
/// 403; larger or unsized bodies are scanned as they stream and cut off on a hit.
pub const SCAN_BUFFER_LIMIT: u64 = 1024 * 1024;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Whether an upstream response's body runs until the connection closes (HTTP/1.x with neither
/// `Content-Length` nor `Transfer-Encoding`, on a response that has a body at all). Such a body
/// legitimately ends at EOF, often without a TLS `close_notify`; every other body that ends at
/// EOF was cut short. Call before hop-by-hop headers are stripped.
pub fn close_delimited(
    request_method: &http::Method,
    status: http::StatusCode,
    version: http::Version,
    headers: &http::HeaderMap,
) -> bool {
    version <= http::Version::HTTP_11
        && request_method != http::Method::HEAD
        && !status.is_informational()
        && status != http::StatusCode::NO_CONTENT
        && status != http::StatusCode::NOT_MODIFIED
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// An EOF where more was expected (a TLS peer closing without `close_notify`, for one), found
/// anywhere in the error's chain.
fn is_unexpected_eof(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The error a streamed body fails with when DLP stops it.
#[derive(Debug)]
pub struct CutOff(pub Finding);

impl std::fmt::Display for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blocked by DLP: {} ({})", self.0.detector, self.0.rule)
    }
}

impl std::error::Error for CutOff {}

/// Reads and discards what is left of a body the proxy stopped relaying (bounded in bytes and
/// time), so the peer still sending it reads the refusal instead of a connection reset.
pub async fn discard(mut body: Body) {
    const LIMIT: u64 = 64 * 1024 * 1024;
    let mut seen = 0u64;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > LIMIT {
                break;
            }
        }
    })
    .await;
}

/// What a body is scanned for, in which direction, and where a streamed cut-off is told: the
/// upstream client turns a failing request body into its own error (over HTTP/2 it says only
/// "stream error"), so the proxy learns why from here and answers with the refusal.
#[derive(Clone)]
pub struct Scan {
    pub policy: Arc<Policy>,
    pub dlp: DlpSwitches,
    pub outbound: bool,
    pub cut_off: Arc<std::sync::OnceLock<Finding>>,
    /// Inbound only: the credential the route injects, which no response may carry back.
    pub credential: Option<Arc<NeedleSet>>,
}

impl Scan {
    pub fn new(policy: Arc<Policy>, dlp: DlpSwitches, outbound: bool) -> Scan {
        Scan {
            policy,
            dlp,
            outbound,
            cut_off: Arc::default(),
            credential: None,
        }
    }

    /// An inbound scan that also refuses `credential` coming back.
    pub fn guarding(mut self, credential: Option<Arc<NeedleSet>>) -> Scan {
        self.credential = credential;
        self
    }
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

impl Scan {
    /// Whether any detector of this direction is on for the route.
    pub fn enabled(&self) -> bool {
        if self.outbound {
            self.dlp.token_patterns || self.dlp.known_secrets
        } else {
            self.dlp.injection || self.credential.is_some()
        }
    }

    /// What the enabled detectors of this direction find in `buf`, if anything.
    pub fn find(&self, buf: &[u8]) -> Option<Finding> {
        if !self.enabled() {
            return None;
        }
        if self.outbound {
            return self.policy.detectors.outbound(
                buf,
                self.dlp.token_patterns,
                self.dlp.known_secrets,
            );
        }
        if let Some(c) = &self.credential
            && c.find(buf).is_some()
        {
            return Some(Finding {
                detector: REFLECTED_DETECTOR,
                rule: "injected-credential",
                view: "raw",
                origin: None,
            });
        }
        self.dlp
            .injection
            .then(|| self.policy.detectors.inbound(buf))
            .flatten()
    }

    /// How much of the end of `buf`, scanned clean, a stream keeps back unsent. Outbound, the
    /// whole window: no part of a secret leaves before it is judged. Inbound, only what could
    /// still complete the guarded credential, so a model's stream is not delayed; a phrase a
    /// later chunk completes still cuts the stream before that chunk is sent.
    pub fn hold_back(&self, buf: &[u8]) -> usize {
        if self.outbound {
            return crate::dlp::OVERLAP;
        }
        self.credential.as_ref().map_or(0, |c| c.open_suffix(buf))
    }

    /// Whether response `headers` carry the credential this (inbound) scan guards.
    pub fn reflected_in(&self, headers: &http::HeaderMap) -> bool {
        self.credential
            .as_ref()
            .is_some_and(|c| c.find(&header_text(headers)).is_some())
    }
}

/// The detector that finds a route's own credential in what comes back to the agent.
pub const REFLECTED_DETECTOR: &str = "credential_reflection";

/// A header map as `name: value` lines, the form every header scan reads.
pub fn header_text(headers: &http::HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

impl Scan {}

/// Why a body did not pass screening.
#[derive(Debug)]
pub enum Screened {
    Found(Finding),
    Unreadable(BoxError),
    /// Coded (`Content-Encoding`) in a way DLP cannot read: refused rather than passed unseen.
    Unscannable(crate::content_coding::Undecodable),
}

/// The `Content-Encoding` codings of a message (empty for none or `identity`).
pub fn codings(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(crate::content_coding::codings)
        .collect()
}

/// Screens a body. Small sized bodies are read and scanned whole, so a finding comes before
/// anything is sent; others are scanned as they stream. `close_delimited` as above.
pub async fn screen(
    body: Incoming,
    headers: &http::HeaderMap,
    scan: Scan,
    close_delimited: bool,
) -> Result<Body, Screened> {
    let coded = if scan.outbound {
        codings(headers)
    } else {
        Vec::new()
    };
    // An unsized upload (chunked, or HTTP/2 without content-length) is gathered too while it
    // keeps coming, so that a small one is refused before its head leaves, however it is framed.
    let mut body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    if scan.enabled()
        && scan.outbound
        && !close_delimited
        && content_length(headers).is_none()
        && !http_body::Body::is_end_stream(&body)
    {
        match gather(body).await.map_err(Screened::Unreadable)? {
            Gathered::Whole(frames) => {
                let mut bytes: Vec<u8> = frames
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .flat_map(|d| d.iter().copied())
                    .collect();
                // Trailers are part of what leaves: scanned with the body they end.
                for t in frames.iter().filter_map(|f| f.trailers_ref()) {
                    bytes.push(b'\n');
                    bytes.extend(header_text(t));
                }
                if let Some(f) = scan.find(&bytes) {
                    return Err(Screened::Found(f));
                }
                return Ok(from_frames(frames, None));
            }
            Gathered::Partial(frames, rest) => body = from_frames(frames, Some(rest)),
        }
    } else if scan.enabled() && content_length(headers).is_some_and(|n| n <= SCAN_BUFFER_LIMIT) {
        let bytes = body
            .collect()
            .await
            .map_err(Screened::Unreadable)?
            .to_bytes();
        // A coded upload is scanned as the upstream will read it, and sent as it came.
        let found = if coded.is_empty() {
            scan.find(&bytes)
        } else {
            let decoded =
                crate::content_coding::decode(&bytes, &coded).map_err(Screened::Unscannable)?;
            scan.find(&decoded).or_else(|| scan.find(&bytes))
        };
        return match found {
            Some(f) => Err(Screened::Found(f)),
            None => Ok(full(bytes)),
        };
    }
    Ok(RelayBody {
        inner: body,
        scan: scan.enabled().then_some(scan),
        holdback: Holdback::default(),
        parked: None,
        done: false,
        close_delimited,
    }
    .boxed())
}

/// How long an unsized upload may pause before what has arrived is sent on (scanned, held back
/// as any stream): a request that waits for its answer before finishing must not hang.
const GATHER_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

enum Gathered {
    /// The body ended within the limit: every frame, trailers included.
    Whole(Vec<Frame<Bytes>>),
    /// It paused or grew past the limit: what came so far, and the rest still to come.
    Partial(Vec<Frame<Bytes>>, Body),
}

async fn gather(mut body: Body) -> Result<Gathered, BoxError> {
    let mut frames = Vec::new();
    let mut size = 0u64;
    loop {
        match tokio::time::timeout(GATHER_PAUSE, body.frame()).await {
            Ok(Some(frame)) => {
                let frame = frame?;
                size += frame.data_ref().map_or(0, |d| d.len() as u64);
                frames.push(frame);
                if size > SCAN_BUFFER_LIMIT {
                    return Ok(Gathered::Partial(frames, body));
                }
            }
            Ok(None) => return Ok(Gathered::Whole(frames)),
            Err(_paused) => return Ok(Gathered::Partial(frames, body)),
        }
    }
}

/// `frames`, then `rest` when there is more to come.
fn from_frames(frames: Vec<Frame<Bytes>>, rest: Option<Body>) -> Body {
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
    match rest {
        None => BodyExt::boxed(http_body_util::StreamBody::new(head)),
        Some(rest) => BodyExt::boxed(http_body_util::StreamBody::new(
            head.chain(http_body_util::BodyStream::new(rest)),
        )),
    }
}

/// A body relayed frame by frame. With a scan, only bytes scanned together with what follows
/// them are sent, and a finding fails the transfer. Either way its end is the inner body's:
/// clean (everything held back flushed first), or an error.
struct RelayBody {
    inner: Body,
    scan: Option<Scan>,
    holdback: Holdback,
    /// A trailers frame waiting for the held-back bytes to go first.
    parked: Option<Frame<Bytes>>,
    done: bool,
    close_delimited: bool,
}

impl RelayBody {
    /// Ends the transfer on DLP's finding `f` in `what`: the error the peer sees, and the
    /// finding told to whoever answers the request.
    fn cut_off(&mut self, f: Finding, what: &str) -> BoxError {
        if let Some(scan) = &self.scan {
            tracing::warn!(
                detector = f.detector,
                rule = f.rule,
                outbound = scan.outbound,
                "{what} cut off by DLP"
            );
            let _ = scan.cut_off.set(f.clone());
        }
        self.done = true;
        self.holdback = Holdback::default();
        Box::new(CutOff(f))
    }
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                let rest = this.holdback.finish();
                if !rest.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                }
                return Poll::Ready(this.parked.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let Some(scan) = &this.scan else {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        };
                        let buf = this.holdback.push(&data);
                        if let Some(f) = scan.find(&buf) {
                            // The agent may still be sending: keep reading (and dropping) so
                            // its refusal is not reset away.
                            if scan.outbound {
                                let rest = std::mem::replace(&mut this.inner, full(Bytes::new()));
                                tokio::spawn(discard(rest));
                            }
                            return Poll::Ready(Some(Err(this.cut_off(f, "streaming body"))));
                        }
                        let keep = scan.hold_back(&buf);
                        let send = this.holdback.release(buf, keep);
                        if !send.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(send)))));
                        }
                    }
                    Err(trailers) => {
                        // Trailers travel only once scanned like headers, with the end of the
                        // body before them (the scan window).
                        if let (Some(scan), Some(t)) = (&this.scan, trailers.trailers_ref()) {
                            let mut buf = this.holdback.window();
                            buf.push(b'\n');
                            buf.extend(header_text(t));
                            if let Some(f) = scan.find(&buf) {
                                return Poll::Ready(Some(Err(this.cut_off(f, "trailers"))));
                            }
                        }
                        this.parked = Some(trailers);
                        this.done = true;
                    }
                },
                // The connection closing is how a close-delimited body ends, with or without
                // TLS close_notify (many servers skip it): that is the whole body.
                Poll::Ready(Some(Err(e))) if this.close_delimited && is_unexpected_eof(&*e) => {
                    this.done = true;
                }
                // Anything else breaking mid-body reaches the agent as a broken body.
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.holdback.is_empty() && self.parked.is_none()
    }

    /// The inner body's remaining size plus what is held back, so a sized body keeps its
    /// `Content-Length` framing towards the agent.
    fn size_hint(&self) -> SizeHint {
        let held = self.holdback.len() as u64;
        if self.done {
            return SizeHint::with_exact(held);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http1_responses_without_framing_are_close_delimited() {
        use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
        let none = HeaderMap::new();
        let mut sized = HeaderMap::new();
        sized.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let mut chunked = HeaderMap::new();
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let get = Method::GET;
        assert!(close_delimited(
            &get,
            StatusCode::OK,
            Version::HTTP_11,
            &none
        ));
        assert!(close_delimited(
            &get,
            StatusCode::OK,
            Version::HTTP_10,
            &none
        ));
        assert!(!close_delimited(
            &get,
            StatusCode::OK,
            Version::HTTP_2,
            &none
        ));
        assert!(!close_delimited(
            &get,
            StatusCode::OK,
            Version::HTTP_11,
            &sized
        ));
        assert!(!close_delimited(
            &get,
            StatusCode::OK,
            Version::HTTP_11,
            &chunked
        ));
        assert!(!close_delimited(
            &Method::HEAD,
            StatusCode::OK,
            Version::HTTP_11,
            &none
        ));
        assert!(!close_delimited(
            &get,
            StatusCode::NO_CONTENT,
            Version::HTTP_11,
            &none
        ));
        assert!(!close_delimited(
            &get,
            StatusCode::NOT_MODIFIED,
            Version::HTTP_11,
            &none
        ));
    }

    #[test]
    fn unexpected_eof_is_found_through_the_error_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let eof = Wrap(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        ));
        assert!(is_unexpected_eof(&eof));
        let reset = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!is_unexpected_eof(&reset));
    }
}
