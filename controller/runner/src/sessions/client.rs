//! The client side of a session endpoint: connects through kube-rs (TLS, token, WebSocket
//! upgrade) and carries stdin, output, resizes and the exit status for `bbctl`.
//!
//! kube-rs's own `AttachedProcess` speaks the same protocol but cannot add the `user` query
//! parameter or keep a log's stdout and stderr apart, so the channel loop is here; the framing
//! it adds to tungstenite is one byte.

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{self, Channel, Outcome, TerminalSize};

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Connect(#[from] kube::Error),
    #[error("writing the session's output: {0}")]
    Output(std::io::Error),
    #[error("the session ended without an exit status (the runner went away?)")]
    NoStatus,
    #[error("the session's status is not valid JSON: {0}")]
    BadStatus(serde_json::Error),
}

/// The CA certificates (DER) a cluster-mode runner's session endpoint chains to, as its Lease
/// publishes them; `None` when the runner publishes none (a local control plane's runner
/// serves with the control plane's own CA, which the kubeconfig already trusts).
pub async fn runner_trust(
    client: &kube::Client,
    runner: &str,
) -> Result<Option<Vec<Vec<u8>>>, kube::Error> {
    use crate::cluster::lease::{NAMESPACE, SESSION_CA_ANNOTATION, name};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), NAMESPACE);
    let Some(lease) = leases.get_opt(&name(runner)).await? else {
        return Ok(None);
    };
    let Some(pem) = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SESSION_CA_ANNOTATION))
    else {
        return Ok(None);
    };
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    Ok((!ders.is_empty()).then_some(ders))
}

/// A session opened on a runner: the socket and whether it can signal end of stdin (v5).
#[derive(Debug)]
pub struct Connected {
    socket: Socket,
    closes_stdin: bool,
}

/// Opens `path_and_query` (a `/apis/.../agents/NAME/{exec,attach,log}?...` path) on the runner
/// `client` points at.
pub async fn connect(
    client: &kube::Client,
    path_and_query: &str,
) -> Result<Connected, ClientError> {
    let req = http::Request::get(path_and_query)
        .body(Vec::new())
        .map_err(|e| ClientError::Connect(kube::Error::HttpError(e)))?;
    let conn = client.connect(req).await?;
    let closes_stdin = conn.supports_stream_close();
    Ok(Connected {
        socket: conn.into_stream(),
        closes_stdin,
    })
}

/// Where a session's input comes from.
#[derive(Debug)]
pub enum Input<R> {
    /// No stdin: the remote command sees end of input at once.
    None,
    Reader(R),
}

/// Runs the session to its end: `input` to stdin, stdout and stderr to their writers, each
/// size from `resize` to the TTY. Returns how the remote command ended.
pub async fn run<R, O, E>(
    connected: Connected,
    input: Input<R>,
    mut stdout: O,
    mut stderr: E,
    mut resize: tokio::sync::mpsc::Receiver<TerminalSize>,
) -> Result<Outcome, ClientError>
where
    R: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let Connected {
        socket,
        closes_stdin,
    } = connected;
    let (mut sink, mut source) = socket.split();
    let (to_send, mut outgoing) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    // Stdin is read on its own task: a blocked terminal read must not hold up the output.
    let stdin_task = match input {
        Input::Reader(mut r) => {
            let tx = to_send.clone();
            Some(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx
                                .send(protocol::frame(Channel::Stdin, &buf[..n]))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                if closes_stdin {
                    let _ = tx
                        .send(vec![Channel::Close as u8, Channel::Stdin as u8])
                        .await;
                }
            }))
        }
        Input::None => None,
    };
    let resize_tx = to_send.clone();
    let resize_task = tokio::spawn(async move {
        while let Some(size) = resize.recv().await {
            if let Ok(json) = serde_json::to_vec(&size)
                && resize_tx
                    .send(protocol::frame(Channel::Resize, &json))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    drop(to_send);
    let sender = tokio::spawn(async move {
        while let Some(m) = outgoing.recv().await {
            if sink.send(Message::Binary(m.into())).await.is_err() {
                break;
            }
        }
    });
    let mut status: Option<Status> = None;
    let mut result = Ok(());
    while let Some(Ok(message)) = source.next().await {
        let data = match message {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let written = match protocol::parse(&data) {
            Some((Channel::Stdout, bytes)) => write(&mut stdout, bytes).await,
            Some((Channel::Stderr, bytes)) => write(&mut stderr, bytes).await,
            Some((Channel::Error, json)) => match serde_json::from_slice(json) {
                Ok(s) => {
                    status = Some(s);
                    Ok(())
                }
                Err(e) => {
                    result = Err(ClientError::BadStatus(e));
                    break;
                }
            },
            _ => Ok(()),
        };
        if let Err(e) = written {
            // The reader went away (a closed pipe): stop quietly, as `docker logs | head`.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                status = Some(protocol::exit_status(0));
            } else {
                result = Err(ClientError::Output(e));
            }
            break;
        }
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    resize_task.abort();
    sender.abort();
    result?;
    status
        .map(|s| protocol::outcome(&s))
        .ok_or(ClientError::NoStatus)
}

async fn write(w: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Everything a session without input printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `path_and_query` on the runner with no stdin and collects its output (scripts, tests,
/// the demo).
pub async fn collect(
    client: &kube::Client,
    path_and_query: &str,
) -> Result<Collected, ClientError> {
    let connected = connect(client, path_and_query).await?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // No TTY: nothing will ever be resized.
    let (_sizes, resize) = tokio::sync::mpsc::channel::<TerminalSize>(1);
    let outcome = run(
        connected,
        Input::<tokio::io::Empty>::None,
        &mut stdout,
        &mut stderr,
        resize,
    )
    .await?;
    Ok(Collected {
        outcome,
        stdout,
        stderr,
    })
}
