//! Sessions and log streams of runtimes driven through a CLI (Apple Container, smolvm): the
//! CLI's exec under a pseudo-terminal the runner owns, or on plain pipes, tracked until it exits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::watch;

use crate::cli_process::RuntimeCli;
use crate::session::{Chunk, Output, OutputStream, Session};
use crate::{BackendError, Step};

/// How long an ended session's exit code is awaited once its output has closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The sessions this runner has open: how to resize each, and its exit code once known.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    /// A duplicate of the terminal's controlling side (TTY sessions only).
    tty: Option<OwnedFd>,
    exit: watch::Receiver<Option<Option<i64>>>,
}

impl Sessions {
    /// Tracks `child` as session `handle`: its exit code once it ends, and until then the
    /// terminal to resize (released as soon as the command is gone, asked for or not).
    pub fn track(&self, handle: &str, tty: Option<OwnedFd>, mut child: tokio::process::Child) {
        let (tx, exit) = watch::channel(None);
        if let Ok(mut m) = self.inner.lock() {
            m.insert(handle.to_string(), Entry { tty, exit });
        }
        let inner = self.inner.clone();
        let handle = handle.to_string();
        tokio::spawn(async move {
            let code = child
                .wait()
                .await
                .ok()
                .and_then(|s| s.code())
                .map(i64::from);
            if let Ok(mut m) = inner.lock()
                && let Some(e) = m.get_mut(&handle)
            {
                e.tty = None;
            }
            let _ = tx.send(Some(code));
        });
    }

    pub fn resize(&self, handle: &str, width: u16, height: u16) {
        let Ok(m) = self.inner.lock() else { return };
        if let Some(fd) = m.get(handle).and_then(|e| e.tty.as_ref()) {
            let size = rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // The kernel tells the CLI (SIGWINCH), which resizes the terminal in the VM.
            let _ = rustix::termios::tcsetwinsize(fd, size);
        }
    }

    /// The exit code of a session whose output ended; the entry goes with it.
    pub async fn exit_code(&self, handle: &str) -> Option<i64> {
        let mut rx = self.inner.lock().ok()?.get(handle)?.exit.clone();
        let code = tokio::time::timeout(EXIT_WAIT, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.flatten()));
        if let Ok(mut m) = self.inner.lock() {
            m.remove(handle);
        }
        code
    }
}

/// A reader's bytes as chunks of `stream`, ending at end of file or when a terminal's other
/// side closes (EIO).
fn read_chunks(
    reader: impl AsyncRead + Send + Unpin + 'static,
    stream: OutputStream,
) -> impl futures_util::Stream<Item = Result<Chunk, BackendError>> + Send {
    tokio_util::io::ReaderStream::new(reader)
        // A terminal whose other side closed reports EIO: that is its end of file.
        .take_while(|r| {
            futures_util::future::ready(!matches!(r, Err(e) if e.raw_os_error() == Some(5)))
        })
        .map(move |r| match r {
            Ok(data) => Ok(Chunk { stream, data }),
            Err(e) => Err(BackendError::new(Step::Session, e.to_string())),
        })
}

/// A child's stdout and stderr as one output stream, kept until both end.
pub fn child_output(child: &mut tokio::process::Child) -> Output {
    let out = child
        .stdout
        .take()
        .map(|o| read_chunks(o, OutputStream::Stdout).boxed());
    let err = child
        .stderr
        .take()
        .map(|e| read_chunks(e, OutputStream::Stderr).boxed());
    Box::pin(futures_util::stream::select(
        out.unwrap_or_else(|| futures_util::stream::empty().boxed()),
        err.unwrap_or_else(|| futures_util::stream::empty().boxed()),
    ))
}

/// Runs the CLI's exec `args` as session `prefix-<random>`: under a terminal of `size` when
/// `tty`, else on pipes. `env` is set on the CLI process only (values the argv names).
pub fn spawn(
    cli: &RuntimeCli,
    sessions: &Sessions,
    prefix: &str,
    args: &[String],
    env: &[(String, crate::SecretBytes)],
    tty: bool,
    size: Option<(u16, u16)>,
) -> Result<Session, BackendError> {
    let handle = format!("{prefix}-{}", random_id());
    let mut command = cli.command(args, env);
    if tty {
        let fail = |e: pty_process::Error| {
            BackendError::new(Step::Session, format!("opening a terminal: {e}"))
        };
        let (pty, pts) = pty_process::open().map_err(fail)?;
        if let Some((w, h)) = size {
            pty.resize(pty_process::Size::new(h, w)).map_err(fail)?;
        }
        let resize = rustix::io::dup(&pty)
            .map_err(|e| BackendError::new(Step::Session, format!("opening a terminal: {e}")))?;
        let child = pty_process::Command::from(command)
            .spawn(pts)
            .map_err(|e| {
                cli.spawn_error(Step::Session, args, std::io::Error::other(e.to_string()))
            })?;
        let (read, write) = pty.into_split();
        sessions.track(&handle, Some(resize), child);
        return Ok(Session {
            handle,
            output: Box::pin(read_chunks(read, OutputStream::Stdout)),
            input: Box::pin(write),
        });
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| cli.spawn_error(Step::Session, args, e))?;
    let output = child_output(&mut child);
    let input = child
        .stdin
        .take()
        .ok_or_else(|| BackendError::new(Step::Session, "the session has no stdin"))?;
    sessions.track(&handle, None, child);
    Ok(Session {
        handle,
        output,
        input: Box::pin(input),
    })
}

/// The output of the CLI command `args` (a log, followed or not) as a stream that owns the
/// process: a client that stops reading ends it.
pub fn stream(cli: &RuntimeCli, args: &[String]) -> Result<Output, BackendError> {
    let mut child = cli
        .command(args, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cli.spawn_error(Step::Session, args, e))?;
    let output = child_output(&mut child);
    Ok(Box::pin(futures_util::stream::unfold(
        (output, child),
        |(mut output, child)| async move {
            let item = output.next().await?;
            Some((item, (output, child)))
        },
    )))
}

/// 16 hex digits, for names that must not collide.
pub fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
