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

impl CliError {
    /// The one mapping from an API error to a message and an exit code, used by every verb:
    /// 404 is NotFound, 409 Conflict, 400/422 Validation, anything else (401/403, 5xx, a
    /// server that cannot be reached) Unavailable. The server's own message is kept.
    pub fn api(what: &str, e: kube::Error) -> CliError {
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        match &e {
            kube::Error::Api(s) => {
                let kind = match s.code {
                    404 => Kind::NotFound,
                    409 => Kind::Conflict,
                    400 | 422 => Kind::Validation,
                    _ => Kind::Unavailable,
                };
                let hint = match s.code {
                    401 | 403 => " (check the kubeconfig's credentials)",
                    _ => "",
                };
                CliError::new(kind, format!("{prefix}{}{hint}", s.message))
            }
            _ => CliError::new(Kind::Unavailable, format!("{prefix}{e}")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        let s: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "message": message, "reason": "x"
        }))
        .expect("status");
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_errors_map_to_one_kind_each_and_keep_the_servers_words() {
        for (code, kind) in [
            (404, Kind::NotFound),
            (409, Kind::Conflict),
            (400, Kind::Validation),
            (422, Kind::Validation),
            (401, Kind::Unavailable),
            (403, Kind::Unavailable),
            (500, Kind::Unavailable),
        ] {
            let e = CliError::api("agent.bot-bottle.dev/a", status(code, "the reason"));
            assert_eq!(e.kind, kind, "HTTP {code}");
            assert!(
                e.message.starts_with("agent.bot-bottle.dev/a: the reason"),
                "{}",
                e.message
            );
        }
        assert_eq!(CliError::api("", status(404, "gone")).message, "gone");
    }
}
