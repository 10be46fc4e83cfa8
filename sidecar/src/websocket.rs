//! WebSocket traffic after an admitted upgrade: both connections are read as WebSocket messages
//! (tungstenite reassembles fragments and unmasks client frames), each data message is scanned
//! by the same DLP as bodies, and one that DLP stops closes both sides with 1008 (policy).

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::relay_body::Scan;

/// The largest message relayed (and so scanned) whole; a larger one ends the connection.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The header that would negotiate compression (permessage-deflate): stripped from the upgrade
/// request, because DLP must read payloads as they are.
pub const EXTENSIONS_HEADER: &str = "sec-websocket-extensions";

fn payload(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

fn policy_close(reason: String) -> Message {
    // A close reason is at most 123 bytes.
    let mut reason = reason;
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: reason.into(),
    }))
}

/// Relays messages between the agent's and the upstream's upgraded connections until either
/// closes, or until DLP stops a message: outbound (agent to upstream) with `outbound`, inbound
/// with `inbound`.
pub async fn relay(
    agent: Upgraded,
    upstream: Upgraded,
    outbound: Scan,
    inbound: Scan,
    host: String,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let agent =
        WebSocketStream::from_raw_socket(TokioIo::new(agent), Role::Server, Some(config)).await;
    let upstream =
        WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config)).await;
    let (mut to_agent, mut from_agent) = agent.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    loop {
        tokio::select! {
            m = from_agent.next() => {
                let Some(Ok(m)) = m else {
                    let _ = to_upstream.close().await;
                    return;
                };
                if let Some(f) = payload(&m).and_then(|p| outbound.find(p)) {
                    tracing::warn!(%host, detector = f.detector, rule = f.rule, view = f.view, "websocket message blocked by outbound DLP");
                    let _ = to_agent
                        .send(policy_close(format!(
                            "egress: outbound DLP blocked a message to {host}: {} ({})",
                            f.detector, f.rule
                        )))
                        .await;
                    let _ = to_upstream.send(policy_close("policy".into())).await;
                    return;
                }
                let closing = m.is_close();
                if to_upstream.send(m).await.is_err() || closing {
                    let _ = to_agent.close().await;
                    return;
                }
            }
            m = from_upstream.next() => {
                let Some(Ok(m)) = m else {
                    let _ = to_agent.close().await;
                    return;
                };
                if let Some(f) = payload(&m).and_then(|p| inbound.find(p)) {
                    tracing::warn!(%host, detector = f.detector, rule = f.rule, "websocket message withheld by inbound DLP");
                    let _ = to_agent
                        .send(policy_close(format!(
                            "egress: a message from {host} was withheld: {} ({})",
                            f.detector, f.rule
                        )))
                        .await;
                    let _ = to_upstream.send(policy_close("policy".into())).await;
                    return;
                }
                let closing = m.is_close();
                if to_agent.send(m).await.is_err() || closing {
                    let _ = to_upstream.close().await;
                    return;
                }
            }
        }
    }
}
