//! The CLI's error kinds and the exit code each maps to, as documented in docs/cli.md.

use std::fmt;
use std::process::ExitCode;

/// Exit codes are part of the interface: scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1: anything not covered below (I/O, internal).
    General,
    /// 2: bad flags or arguments (clap uses 2 as well).
    Usage,
    /// 3: a named object or file does not exist.
    NotFound,
    /// 4: the request conflicts with current state (e.g. a control plane already runs).
    Conflict,
    /// 5: a server could not be reached or could not listen.
    Unavailable,
    /// 6: input was read but is invalid.
    Validation,
}

#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.kind {
            Kind::General => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Conflict => 4,
            Kind::Unavailable => 5,
            Kind::Validation => 6,
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::new(Kind::General, format!("{e:#}"))
    }
}
