//! Sessions in an Agent, whatever runtime holds it: a command with its streams (`attach`,
//! `exec`) and the logs a runner can stream (agent, sidecar, egress audit).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncWrite;

use super::{BackendError, SecretBytes};

/// What a session runs and how.
#[derive(Debug, Clone, Default)]
pub struct SessionSpec {
    pub argv: Vec<String>,
    /// The Agent's secret env (`valueFrom`): given to this process only, never to the
    /// container's configuration.
    pub env: Vec<(String, SecretBytes)>,
    pub tty: bool,
    /// `uid[:gid]`; `None` runs as the image's user.
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Initial TTY size (columns, rows).
    pub size: Option<(u16, u16)>,
}

/// Which of a process's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Some output of a session or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: OutputStream,
    pub data: Bytes,
}

pub type Output = Pin<Box<dyn Stream<Item = Result<Chunk, BackendError>> + Send>>;

/// A running session: write to `input`, read `output` to its end, then ask the backend for
/// the exit code of `handle`.
pub struct Session {
    pub handle: String,
    pub output: Output,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// The logs a runner serves for an Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The agent container's output.
    Agent,
    /// The sidecar's own output (its tracing log).
    Sidecar,
    /// The sidecar's egress audit log (JSON lines).
    Egress,
}

impl LogSource {
    pub const ALL: [LogSource; 3] = [LogSource::Agent, LogSource::Sidecar, LogSource::Egress];

    /// The name in `?container=` of the log endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Agent => "agent",
            LogSource::Sidecar => "sidecar",
            LogSource::Egress => "egress",
        }
    }

    pub fn parse(s: &str) -> Option<LogSource> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a log, and whether to keep streaming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N lines (of container output, or of the egress audit log).
    pub tail: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_source_names_round_trip() {
        for l in LogSource::ALL {
            assert_eq!(LogSource::parse(l.as_str()), Some(l));
        }
        assert_eq!(LogSource::parse("sidecar-audit"), None);
    }
}
