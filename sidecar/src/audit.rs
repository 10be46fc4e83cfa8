//! The egress audit log: one JSON line per decision. Level 0 records refusals, 1 every
//! decision, 2 adds request headers with credentials and known secrets redacted.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use bb_policy::rule::Rule;

use crate::policy::Policy;

/// What the audit log records of a request, taken before the request is consumed.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub host: String,
    pub path: String,
    pub started: Instant,
    pub headers: Option<http::HeaderMap>,
    /// `report` mode: the rule that would have refused the request.
    pub reported: Option<Rule>,
    /// The upstream port and scheme of a request (not known for a refused CONNECT).
    pub target: Option<(u16, &'static str)>,
}

pub struct Audit {
    file: Mutex<std::fs::File>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

/// One decision to record.
#[derive(Debug)]
pub struct Entry<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// Path only: query strings can carry secrets.
    pub path: &'a str,
    pub status: u16,
    pub rule: Option<Rule>,
    pub started: Instant,
    pub headers: Option<&'a http::HeaderMap>,
    /// `report` mode: the rule that would have refused this permitted request.
    pub reported: Option<Rule>,
    /// Port and scheme (`https`, `http`) the request went to, when known.
    pub target: Option<(u16, &'a str)>,
}

/// A path as logs may show it: one holding a credential format or a known secret (a token in
/// a URL path is common) is replaced.
pub fn shown_path<'a>(policy: &Policy, path: &'a str) -> &'a str {
    if policy
        .detectors
        .outbound(path.as_bytes(), true, true)
        .is_some()
    {
        "<redacted>"
    } else {
        path
    }
}

const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

impl Audit {
    pub fn open(path: &std::path::Path) -> std::io::Result<Audit> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    pub fn record(&self, policy: &Policy, e: &Entry<'_>) {
        let level = policy.spec.log_level();
        let blocked = e.rule.is_some();
        // A would-be refusal is recorded at every level: recording it is what report mode is for.
        if level == 0 && !blocked && e.reported.is_none() {
            return;
        }
        let mut line = json!({
            "time": jiff::Timestamp::now().to_string(),
            "method": e.method,
            "host": e.host,
            "path": shown_path(policy, e.path),
            "decision": match (blocked, e.reported) {
                (true, _) => "block",
                (false, Some(_)) => "report",
                (false, None) => "allow",
            },
            "status": e.status,
            "durationMs": (e.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        });
        if let Some(rule) = e.rule.or(e.reported) {
            line["rule"] = json!(rule.as_str());
        }
        if let Some((port, scheme)) = e.target {
            line["port"] = json!(port);
            line["scheme"] = json!(scheme);
        }
        if level >= 2
            && let Some(h) = e.headers
        {
            let mut out = serde_json::Map::new();
            for (k, v) in h {
                let redact = ALWAYS_REDACTED.contains(&k.as_str())
                    || policy
                        .detectors
                        .outbound(v.as_bytes(), true, true)
                        .is_some();
                let shown = if redact {
                    "<redacted>".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                out.insert(k.as_str().to_string(), Value::String(shown));
            }
            line["headers"] = Value::Object(out);
        }
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_2_headers_are_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("s");
        std::fs::create_dir(&secrets).expect("mkdir");
        std::fs::write(secrets.join("t"), "very-secret-value").expect("write");
        let policy =
            Policy::load("log: 2\nroutes: [{host: a.com}]", Some(&secrets)).expect("policy");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).expect("open");
        let mut h = http::HeaderMap::new();
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer egress-placeholder"),
        );
        h.insert(
            "x-leak",
            http::HeaderValue::from_static("very-secret-value"),
        );
        h.insert("accept", http::HeaderValue::from_static("text/html"));
        audit.record(
            &policy,
            &Entry {
                method: "GET",
                host: "a.com",
                path: "/",
                status: 200,
                rule: None,
                started: Instant::now(),
                headers: Some(&h),
                reported: None,
                target: None,
            },
        );
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&path).expect("read").trim())
                .expect("json");
        assert_eq!(line["headers"]["authorization"], "<redacted>");
        assert_eq!(line["headers"]["x-leak"], "<redacted>");
        assert_eq!(line["headers"]["accept"], "text/html");
        assert_eq!(line["decision"], "allow");
    }

    #[test]
    fn paths_holding_secrets_are_redacted() {
        let policy = Policy::load("routes: [{host: a.com}]", None).expect("policy");
        assert_eq!(
            shown_path(&policy, "/bot/AKIAIOSFODNN7EXAMPLE/send"),
            "<redacted>"
        );
        assert_eq!(shown_path(&policy, "/api/v1/items"), "/api/v1/items");
    }

    #[test]
    fn level_0_records_only_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = Policy::load("routes: [{host: a.com}]", None).expect("policy");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).expect("open");
        let e = |rule| Entry {
            method: "GET",
            host: "a.com",
            path: "/",
            status: 403,
            rule,
            started: Instant::now(),
            headers: None,
            reported: None,
            target: None,
        };
        audit.record(&policy, &e(None));
        audit.record(&policy, &e(Some(Rule::NoMatch)));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"rule\":\"no-match\""));
        // A would-be refusal of report mode is recorded at level 0 too, as such.
        audit.record(
            &policy,
            &Entry {
                status: 200,
                reported: Some(Rule::HostNotAllowed),
                ..e(None)
            },
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let last: Value = serde_json::from_str(text.lines().last().unwrap_or("")).expect("json");
        assert_eq!(last["decision"], "report");
        assert_eq!(last["rule"], "host-not-allowed");
    }
}
