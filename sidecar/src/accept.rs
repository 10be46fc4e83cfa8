//! Accepting connections in a way that outlives running out of file descriptors: an accept
//! error (EMFILE, ENFILE, ENOBUFS...) sheds load for a moment and the listener keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The longest pause after a failed accept.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The next connection of `listener`. A failed accept is logged and retried after a pause that
/// doubles up to a second while failures last (the pending connection waits in the backlog):
/// never the end of the listener, which would take the whole sidecar down with it.
pub async fn next(listener: &TcpListener, what: &'static str) -> (TcpStream, SocketAddr) {
    let mut pause = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, retry_in = ?pause, "accept failed; shedding load");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
