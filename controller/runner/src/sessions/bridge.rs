//! Carries a backend session or log over an upgraded WebSocket in the remote-command protocol:
//! client messages to stdin and resize, output to the stdout and stderr channels, and the
//! exit code as the closing Status.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{self, Channel, TerminalSize};
use super::request::Streams;
use bb_backend::{Backend, Output, OutputStream, Session};

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;
type Sink = futures_util::stream::SplitSink<Socket, Message>;

/// Sends the output the client asked for; returns when the output ends or the client is gone
/// (`false`).
async fn pump_output(sink: &mut Sink, mut output: Output, streams: Streams) -> bool {
    while let Some(chunk) = output.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "session output failed");
                return true;
            }
        };
        let channel = match chunk.stream {
            OutputStream::Stdout if streams.stdout => Channel::Stdout,
            OutputStream::Stderr if streams.stderr => Channel::Stderr,
            // A TTY has one stream; without one, an unasked-for stream is dropped.
            OutputStream::Stderr if streams.tty && streams.stdout => Channel::Stdout,
            _ => continue,
        };
        let message = Message::Binary(protocol::frame(channel, &chunk.data).into());
        if sink.send(message).await.is_err() {
            return false;
        }
    }
    true
}

async fn finish(mut sink: Sink, status: &Status) {
    match serde_json::to_vec(status) {
        Ok(json) => {
            let _ = sink
                .send(Message::Binary(
                    protocol::frame(Channel::Error, &json).into(),
                ))
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "encoding a session status failed"),
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

async fn close(input: &mut Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>) {
    if let Some(mut i) = input.take() {
        let _ = i.shutdown().await;
    }
}

/// Runs one session to its end over `socket`; returns the command's exit code when it ran to
/// its end (not when the client went away first).
pub async fn session(
    backend: &dyn Backend,
    socket: Socket,
    opened: Result<Session, bb_backend::BackendError>,
    streams: Streams,
) -> Option<i64> {
    let (mut sink, mut source) = socket.split();
    let Session {
        handle,
        output,
        input,
    } = match opened {
        Ok(s) => s,
        Err(e) => {
            finish(sink, &protocol::failure("InternalError", e.to_string())).await;
            return None;
        }
    };
    // Ending stdin is a shutdown (a half-close for a socket) and a drop (a pipe closes only
    // then).
    let mut input = Some(input);
    if !streams.stdin {
        close(&mut input).await;
    }
    let from_client = async {
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match protocol::parse(&data) {
                Some((Channel::Stdin, bytes)) => {
                    if let Some(i) = input.as_mut()
                        && (i.write_all(bytes).await.is_err() || i.flush().await.is_err())
                    {
                        input = None;
                    }
                }
                Some((Channel::Resize, json)) => {
                    if let Ok(size) = serde_json::from_slice::<TerminalSize>(json) {
                        backend
                            .resize_session(&handle, size.width, size.height)
                            .await;
                    }
                }
                Some((Channel::Close, [0])) => close(&mut input).await,
                _ => {}
            }
        }
    };
    let ended = {
        let to_client = pump_output(&mut sink, output, streams);
        tokio::pin!(from_client, to_client);
        tokio::select! {
            delivered = &mut to_client => delivered,
            // The client went away: dropping the input closes the command's stdin.
            () = &mut from_client => false,
        }
    };
    if !ended {
        return None;
    }
    let code = backend.session_exit_code(&handle).await;
    let status = match &code {
        Ok(Some(code)) => protocol::exit_status(*code),
        Ok(None) => protocol::failure("InternalError", "the runtime lost the session's exit code"),
        Err(e) => protocol::failure("InternalError", e.to_string()),
    };
    finish(sink, &status).await;
    code.ok().flatten()
}

/// Streams a log over `socket`, stdout and stderr on their own channels.
pub async fn log(socket: Socket, opened: Result<Output, bb_backend::BackendError>) {
    let (mut sink, mut source) = socket.split();
    let output = match opened {
        Ok(o) => o,
        Err(e) => {
            finish(sink, &protocol::failure("InternalError", e.to_string())).await;
            return;
        }
    };
    let streams = Streams {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let delivered = {
        let to_client = pump_output(&mut sink, output, streams);
        let from_client = async { while let Some(Ok(_)) = source.next().await {} };
        tokio::pin!(to_client, from_client);
        tokio::select! {
            d = &mut to_client => d,
            () = &mut from_client => false,
        }
    };
    if delivered {
        finish(sink, &protocol::exit_status(0)).await;
    }
}
