//! Kubernetes' remote-command stream protocol over WebSocket (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io` for older clients): one channel byte before each binary message, the
//! exit as a `metav1.Status` on the error channel. Spoken by the runner and by `bbctl`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// v5 adds the close channel, so a client can end stdin without closing the connection.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

/// Channel numbers, as Kubernetes' `remotecommand` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// The session's end: a JSON `Status`.
    Error = 3,
    /// A JSON `{"Width": w, "Height": h}`.
    Resize = 4,
    /// v5 only: the one byte that follows names the channel that reached EOF.
    Close = 255,
}

impl Channel {
    fn from_byte(b: u8) -> Option<Channel> {
        Some(match b {
            0 => Channel::Stdin,
            1 => Channel::Stdout,
            2 => Channel::Stderr,
            3 => Channel::Error,
            4 => Channel::Resize,
            255 => Channel::Close,
            _ => return None,
        })
    }
}

/// The subprotocol the server picks from a client's `Sec-WebSocket-Protocol` list: v5 when
/// offered, else v4; `None` when neither is (older protocols carry no exit status).
pub fn negotiate(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    [V5, V4].into_iter().find(|p| offered.contains(p))
}

/// A message on `channel`.
pub fn frame(channel: Channel, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel as u8);
    m.extend_from_slice(data);
    m
}

/// The channel and payload of a binary message; `None` for an empty message or an unknown
/// channel.
pub fn parse(message: &[u8]) -> Option<(Channel, &[u8])> {
    let (first, rest) = message.split_first()?;
    Some((Channel::from_byte(*first)?, rest))
}

/// A TTY size on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The Status that ends a session: Success for 0, `NonZeroExitCode` with an `ExitCode` cause
/// otherwise (what kubectl turns back into its own exit code).
pub fn exit_status(code: i64) -> Status {
    if code == 0 {
        return Status {
            status: Some("Success".into()),
            ..Default::default()
        };
    }
    Status {
        status: Some("Failure".into()),
        reason: Some("NonZeroExitCode".into()),
        message: Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                field: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Status for a session that could not run or lost its exit code.
pub fn failure(reason: &str, message: impl Into<String>) -> Status {
    Status {
        status: Some("Failure".into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// How a session ended, read back from its Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i64),
    /// The session did not run to an exit code: the runner's message.
    Failed(String),
}

pub fn outcome(status: &Status) -> Outcome {
    if status.status.as_deref() == Some("Success") {
        return Outcome::Exited(0);
    }
    let code = (status.reason.as_deref() == Some("NonZeroExitCode"))
        .then(|| status.details.as_ref()?.causes.as_ref())
        .flatten()
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref()?.parse().ok());
    match code {
        Some(c) => Outcome::Exited(c),
        None => Outcome::Failed(
            status
                .message
                .clone()
                .unwrap_or_else(|| "the session failed".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_is_preferred_and_old_protocols_are_refused() {
        assert_eq!(negotiate("v4.channel.k8s.io, v5.channel.k8s.io"), Some(V5));
        assert_eq!(negotiate("v4.channel.k8s.io"), Some(V4));
        assert_eq!(negotiate("channel.k8s.io, base64.channel.k8s.io"), None);
        assert_eq!(negotiate(""), None);
    }

    #[test]
    fn frames_round_trip() {
        let m = frame(Channel::Stderr, b"oops");
        assert_eq!(m[0], 2);
        assert_eq!(parse(&m), Some((Channel::Stderr, &b"oops"[..])));
        assert_eq!(parse(&[255, 0]), Some((Channel::Close, &[0u8][..])));
        assert_eq!(parse(&[9, 1]), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn exit_codes_survive_the_status() {
        for code in [0, 1, 3, 7, 130, 255] {
            assert_eq!(outcome(&exit_status(code)), Outcome::Exited(code));
        }
        assert_eq!(
            outcome(&failure("InternalError", "lost it")),
            Outcome::Failed("lost it".into())
        );
    }

    #[test]
    fn the_status_is_kubernetes_shaped() {
        let v = serde_json::to_value(exit_status(3)).unwrap_or_default();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let size: TerminalSize =
            serde_json::from_str(r#"{"Width":120,"Height":30}"#).unwrap_or(TerminalSize {
                width: 0,
                height: 0,
            });
        assert_eq!((size.width, size.height), (120, 30));
    }
}
