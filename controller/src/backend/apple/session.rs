//! Sessions on Apple Container: `container exec` run by the runner, under a pseudo-terminal it
//! owns for TTY sessions (raw bytes both ways, resized through it), plain pipes otherwise.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::watch;

use super::{AppleBackend, cli};
use crate::backend::health::Check;
use crate::backend::names::{self, Role};
use crate::backend::session::{Chunk, LogOptions, LogSource, Output, OutputStream, Session};
use crate::backend::sidecar_command::SIDECAR_USER;
use crate::backend::{AgentId, BackendError, SessionSpec, Step};

/// How long an ended session's exit code is awaited once its output has closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The sessions this runner has open: how to resize each, and its exit code once known.
#[derive(Debug, Clone, Default)]
pub(super) struct Sessions {
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
    fn track(&self, handle: &str, tty: Option<OwnedFd>, mut child: tokio::process::Child) {
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

    pub(super) fn resize(&self, handle: &str, width: u16, height: u16) {
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
    pub(super) async fn exit_code(&self, handle: &str) -> Option<i64> {
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
fn child_output(child: &mut tokio::process::Child) -> Output {
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

impl AppleBackend {
    pub(super) async fn open_exec_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
    ) -> Result<Session, BackendError> {
        let name = names::name(id, Role::Agent);
        let env_names: Vec<String> = spec.env.iter().map(|(k, _)| k.clone()).collect();
        let args = cli::exec(
            &name,
            spec.user.as_deref(),
            spec.workdir.as_deref(),
            true,
            spec.tty,
            &env_names,
            &spec.argv,
        );
        let handle = format!("apple-{}", random_id());
        let mut command = self.cli.command(&args, &spec.env);
        if spec.tty {
            let fail = |e: pty_process::Error| {
                BackendError::new(Step::Session, format!("opening a terminal: {e}"))
            };
            let (pty, pts) = pty_process::open().map_err(fail)?;
            if let Some((w, h)) = spec.size {
                pty.resize(pty_process::Size::new(h, w)).map_err(fail)?;
            }
            let resize = rustix::io::dup(&pty).map_err(|e| {
                BackendError::new(Step::Session, format!("opening a terminal: {e}"))
            })?;
            let child = pty_process::Command::from(command)
                .spawn(pts)
                .map_err(|e| {
                    self.cli
                        .spawn_error(Step::Session, &args, std::io::Error::other(e.to_string()))
                })?;
            let (read, write) = pty.into_split();
            self.sessions.track(&handle, Some(resize), child);
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
            .map_err(|e| self.cli.spawn_error(Step::Session, &args, e))?;
        let output = child_output(&mut child);
        let input = child
            .stdin
            .take()
            .ok_or_else(|| BackendError::new(Step::Session, "the session has no stdin"))?;
        self.sessions.track(&handle, None, child);
        Ok(Session {
            handle,
            output,
            input: Box::pin(input),
        })
    }

    pub(super) async fn log_stream(
        &self,
        id: &AgentId,
        source: LogSource,
        options: LogOptions,
    ) -> Result<Output, BackendError> {
        let args = match source {
            LogSource::Agent | LogSource::Sidecar => {
                let role = if source == LogSource::Agent {
                    Role::Agent
                } else {
                    Role::Sidecar
                };
                cli::logs(&names::name(id, role), options.follow, options.tail)
            }
            LogSource::Egress => {
                let argv = crate::backend::sidecar_command::audit_log(options.follow);
                cli::exec(
                    &names::name(id, Role::Sidecar),
                    Some(SIDECAR_USER),
                    None,
                    false,
                    false,
                    &[],
                    &argv,
                )
            }
        };
        let mut child = self
            .cli
            .command(&args, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.cli.spawn_error(Step::Session, &args, e))?;
        let output = child_output(&mut child);
        // The stream owns the CLI process (killed on drop): a client that stops following
        // ends it too.
        Ok(Box::pin(futures_util::stream::unfold(
            (output, child),
            |(mut output, child)| async move {
                let item = output.next().await?;
                Some((item, (output, child)))
            },
        )))
    }

    pub(super) async fn runtime_checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let version = self
            .cli
            .output(Step::Connect, &["--version".to_string()], None)
            .await
            .ok()
            .filter(|o| o.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        checks.push(Check::ok(
            "apple-container",
            format!(
                "{} answers{}; its system service runs",
                self.cli.program().display(),
                if version.is_empty() {
                    String::new()
                } else {
                    format!(" ({version})")
                }
            ),
        ));
        checks.push(Check::ok(
            "resolver",
            format!("sidecars and builds resolve through {}", self.dns().await),
        ));
        checks
    }
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
