//! Secrets the runner found in the files it copied into an agent, on their way to the sidecar:
//! the one file in its secrets directory that lists them (value, and where each was found), so
//! outbound DLP and git-gate guard them like the bottle's own credentials.

use serde::{Deserialize, Serialize};

/// The file in a sidecar's secrets directory holding the guarded secrets. It travels in the
/// secret delivery (never an argv, env, the API or a log) and the applied hash covers it.
pub const GUARDED_SECRETS_FILE: &str = "guarded-secrets.json";

/// One value found in a copied file. `Debug` shows where, never the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardedSecret {
    /// Where the agent sees the file (`/workspace/.env`).
    pub path: String,
    /// 1-based line of the value in that file (0 when the file has no lines to speak of).
    pub line: u32,
    /// What kind of file or rule found it (`dotenv`, `aws-credentials`, `kubeconfig`, ...).
    pub kind: String,
    /// The value, hex-encoded so that any bytes travel in JSON.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for GuardedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedSecret")
            .field("path", &self.path)
            .field("line", &self.line)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl GuardedSecret {
    /// Where it was found, as refusals and status show it: `/workspace/.env:3 (dotenv)`.
    pub fn origin(&self) -> String {
        format!("{}:{} ({})", self.path, self.line, self.kind)
    }
}

/// The file's contents: every guarded secret, in the order they were found.
pub fn to_file(secrets: &[GuardedSecret]) -> Vec<u8> {
    // A Vec of plain structs always serialises.
    serde_json::to_vec(secrets).unwrap_or_default()
}

/// Reads the file; a malformed one is an error (the sidecar then refuses to load the policy
/// rather than guard less than it was told to).
pub fn from_file(bytes: &[u8]) -> Result<Vec<GuardedSecret>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text: String = v.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        text.as_bytes()
            .chunks(2)
            .map(|p| match (digit(p[0]), digit(p[1])) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(serde::de::Error::custom("not a hex digit")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes_and_never_prints_a_value() {
        let s = vec![GuardedSecret {
            path: "/workspace/.env".into(),
            line: 3,
            kind: "dotenv".into(),
            value: b"p\x00ss\xffword-1234".to_vec(),
        }];
        let bytes = to_file(&s);
        assert_eq!(from_file(&bytes).expect("parses"), s);
        assert!(!String::from_utf8_lossy(&bytes).contains("word-1234"));
        assert!(!format!("{s:?}").contains("word"));
        assert_eq!(s[0].origin(), "/workspace/.env:3 (dotenv)");
        assert!(from_file(br#"[{"path":"a","line":1,"kind":"k","value":"zz"}]"#).is_err());
    }
}
