//! The secret scanner of pushed commits: the added lines of each commit, as `git log -p -U0`
//! prints them, against credential formats, high-entropy values beside credential words, and the
//! bottle's own secrets in every encoding DLP knows. Findings carry no secret bytes.

use std::io::BufRead;

use bb_policy::secret_rules::LineRules;

use crate::dlp::Detectors;
use crate::needles::Needle;

/// Inline marker that suppresses a finding on its line. It does not wave the push through: a
/// human decides (see `allow`).
pub const ALLOW_MARKER: &[u8] = b"gitleaks:allow";

/// One secret found in one added line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub commit: String,
    pub file: String,
    pub line: u64,
    pub rule: String,
    /// The line with the secret replaced by `REDACTED` (cut to 160 characters).
    pub redacted: String,
    /// The line carries `gitleaks:allow`.
    pub allowed: bool,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} in commit {}{}\n    {}",
            self.file,
            self.line,
            self.rule,
            &self.commit[..self.commit.len().min(12)],
            if self.allowed {
                " (marked gitleaks:allow)"
            } else {
                ""
            },
            self.redacted
        )
    }
}

/// The compiled rules, and the bottle's own secrets.
pub struct Scanner {
    rules: LineRules,
    known: Detectors,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// `needles`: the secrets the bottle holds (its token and key files, and what the runner
    /// copied into the agent).
    pub fn new(needles: &[Needle]) -> Scanner {
        Scanner {
            rules: LineRules::new(),
            known: Detectors::new(needles),
        }
    }

    /// The first secret in `line`: its rule and, when known, where it is.
    pub fn scan_line(&self, line: &[u8]) -> Option<(&'static str, Option<(usize, usize)>)> {
        if let Some(found) = self.rules.scan_line(line) {
            return Some(found);
        }
        self.known.known_secret(line).map(|rule| (rule, None))
    }

    /// Every finding in `git log -p -U0 --format=%x01%H` output read from `log`.
    pub fn scan_log(&self, log: impl BufRead) -> std::io::Result<Vec<Finding>> {
        let mut findings = Vec::new();
        self.scan_log_with(log, |f| findings.push(f))?;
        Ok(findings)
    }

    /// Whether `block` may hold a finding: every rule at once over a whole file's added
    /// lines. A superset of the per-line scan (lines are joined by newlines, which no rule
    /// matches across as a secret), so a clean block needs no per-line look.
    fn may_hold(&self, block: &[u8]) -> bool {
        self.rules.may_hold(block) || self.known.known_secret(block).is_some()
    }

    /// `scan_log`, handing each finding to `found` as it is made.
    pub fn scan_log_with(
        &self,
        mut log: impl BufRead,
        mut found: impl FnMut(Finding),
    ) -> std::io::Result<()> {
        let mut commit = String::new();
        let mut file = FileLines::default();
        let mut in_hunk = false;
        let mut lineno = 0u64;
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            if log.read_until(b'\n', &mut buf)? == 0 {
                self.flush(&commit, &mut file, &mut found);
                return Ok(());
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if let Some(sha) = line.strip_prefix(b"\x01") {
                self.flush(&commit, &mut file, &mut found);
                commit = String::from_utf8_lossy(sha).trim().to_string();
                in_hunk = false;
            } else if line.starts_with(b"diff --git ") {
                self.flush(&commit, &mut file, &mut found);
                in_hunk = false;
            } else if !in_hunk && let Some(path) = line.strip_prefix(b"+++ ") {
                file.path = (path != b"/dev/null").then(|| diff_path(path));
            } else if let Some(rest) = line.strip_prefix(b"@@ ") {
                in_hunk = true;
                lineno = hunk_start(rest);
            } else if in_hunk && let Some(added) = line.strip_prefix(b"+") {
                if file.path.is_some() {
                    file.push(lineno, added);
                }
                lineno += 1;
            } else if in_hunk && line.starts_with(b" ") {
                lineno += 1;
            }
        }
    }

    /// Every finding in `lines` (number, text) of `path` in `commit`: the rules and known
    /// secrets as `scan_log` applies them, and then the decoded views egress reads (percent,
    /// JSON escapes, base64 and hex runs, MIME) for what the rules alone do not see.
    pub fn scan_lines(
        &self,
        commit: &str,
        path: &str,
        lines: &[(u64, &[u8])],
        mut found: impl FnMut(Finding),
    ) {
        let mut file = FileLines {
            path: Some(path.to_string()),
            ..Default::default()
        };
        for (n, l) in lines {
            file.push(*n, l);
        }
        let mut any = false;
        let text = file.text.clone();
        let numbered = file.lines.clone();
        self.flush(commit, &mut file, &mut |f| {
            any = true;
            found(f)
        });
        if any || self.known.outbound(&text, true, true).is_none() {
            return;
        }
        let mut start = 0;
        for (lineno, end) in numbered {
            let line = &text[start..end];
            start = end + 1;
            if let Some(f) = self.known.outbound(line, true, true) {
                found(Finding {
                    commit: commit.to_string(),
                    file: path.to_string(),
                    line: lineno,
                    rule: format!("{} (seen {})", f.rule, f.view),
                    redacted: "REDACTED (the whole line)".into(),
                    allowed: memchr::memmem::find(line, ALLOW_MARKER).is_some(),
                });
            }
        }
    }

    /// Scans one file's added lines: the whole block first, line by line only when it may
    /// hold something.
    fn flush(&self, commit: &str, file: &mut FileLines, found: &mut impl FnMut(Finding)) {
        if let Some(path) = &file.path
            && !file.text.is_empty()
            && self.may_hold(&file.text)
        {
            let mut start = 0;
            for &(lineno, end) in &file.lines {
                let added = &file.text[start..end];
                start = end + 1;
                if let Some((rule, span)) = self.scan_line(added) {
                    found(Finding {
                        commit: commit.to_string(),
                        file: path.clone(),
                        line: lineno,
                        rule: rule.to_string(),
                        redacted: redact(added, span),
                        allowed: memchr::memmem::find(added, ALLOW_MARKER).is_some(),
                    });
                }
            }
        }
        file.clear();
    }
}

/// The added lines of one file of one commit: their text joined by newlines, and each line's
/// number and end offset.
#[derive(Debug, Default)]
struct FileLines {
    path: Option<String>,
    text: Vec<u8>,
    lines: Vec<(u64, usize)>,
}

impl FileLines {
    fn push(&mut self, lineno: u64, added: &[u8]) {
        self.text.extend_from_slice(added);
        self.lines.push((lineno, self.text.len()));
        self.text.push(b'\n');
    }

    fn clear(&mut self) {
        self.path = None;
        self.text.clear();
        self.lines.clear();
    }
}

/// `b/path` of a `+++` header (quoted when git escaped it).
fn diff_path(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s.trim_end_matches('\t');
    let s = s
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s);
    s.strip_prefix("b/").unwrap_or(s).to_string()
}

/// The new-file start line of a hunk header's rest (`-a,b +c,d @@ ...`).
fn hunk_start(rest: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(rest);
    s.split_whitespace()
        .find_map(|w| w.strip_prefix('+'))
        .and_then(|w| w.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The line with the secret replaced; a line whose secret has no known span is withheld whole.
fn redact(line: &[u8], span: Option<(usize, usize)>) -> String {
    let Some((start, end)) = span else {
        return "(line withheld: it holds one of the bottle's own secrets)".into();
    };
    let mut out = String::from_utf8_lossy(&line[..start]).into_owned();
    out.push_str("REDACTED");
    out.push_str(&String::from_utf8_lossy(&line[end..]));
    let out = out.trim().to_string();
    if out.chars().count() > 160 {
        let cut: String = out.chars().take(157).collect();
        format!("{cut}...")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One planted secret per rule family, each found under its rule name, its bytes gone
    /// from what is shown.
    #[test]
    fn every_rule_family_is_found_and_redacted() {
        let s = Scanner::new(&[crate::needles::Needle::own("bottle-own-secret-93f1c2")]);
        let cases: &[(&str, &str)] = &[
            ("aws-access-key-id", "AKIAQ3EGRUOPXNVZLM7K"),
            ("github-token", "ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi"),
            ("gitlab-token", "glpat-Xy7pQ2rS9tU4vW1zA3bC"),
            ("slack-token", "xoxb-2741-99318-Zq8LmT3pRx"),
            ("anthropic-key", "sk-ant-api03-Zq8LmT3pRx7vN2bC4dF6gH"),
            ("openai-key", "sk-proj-Zq8LmT3pRx7vN2bC4dF6gH1jK5lM9nP0"),
            ("google-api-key", "AIzaSyD4m9Xq2Lr7Vt1Bw8Kc3Np6Hz0Jf5Gy2Ue"),
            ("stripe-live-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
            ("huggingface-token", "hf_ZqLmTpRxvNbCdFgHjKlMnPqRsTuVwXyZ12"),
            ("private-key-block", "-----BEGIN OPENSSH PRIVATE KEY-----"),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            ),
            (
                "slack-webhook-url",
                "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/abcdEFGHijklMNOPqrstUVWX",
            ),
            (
                "sendgrid-api-key",
                "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",
            ),
            ("npm-token", "npm_Zq8LmT3pRx7vN2bC4dF6gH1jK5lM9nP0qR2s"),
            ("stripe-test-key", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
            (
                "url-credentials",
                "https://deploy:Zq8LmT3pRx7v@git.internal.corp/x.git",
            ),
            (
                "generic-credential",
                "db_password = \"Zq8LmT3pRx7vN2bC4dF6\"",
            ),
            ("bottle-secret", "bottle-own-secret-93f1c2"),
        ];
        for (rule, secret) in cases {
            let line = format!("config = {secret} # end");
            let (got, span) = s
                .scan_line(line.as_bytes())
                .unwrap_or_else(|| panic!("{rule}: nothing found in {line}"));
            assert_eq!(got, *rule, "{line}");
            let shown = redact(line.as_bytes(), span);
            // A URL keeps its user and host; its password goes.
            let hidden = match *rule {
                "url-credentials" => "Zq8LmT3pRx7v",
                _ => &secret[secret.len() - 8..],
            };
            assert!(!shown.contains(hidden), "{rule}: {shown}");
        }
        // The bottle's secret, base64-encoded, is still its secret.
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "bottle-own-secret-93f1c2",
        );
        assert_eq!(
            s.scan_line(format!("blob: {b64}").as_bytes()).map(|f| f.0),
            Some("bottle-secret")
        );
    }

    #[test]
    fn ordinary_code_is_clean() {
        let s = Scanner::new(&[]);
        for line in [
            "let token = self.tokenizer.next_token();",
            "password: ${DB_PASSWORD}",
            "api_key = \"your_api_key_here_12345\"",
            "secret_name = settings.SECRET_KEY_NAME",
            "AUTH_TOKEN_HEADER = \"Authorization\"",
            "fn parse_access_key_id(input: &str) -> Result<AccessKey, Error> {",
            "token_count: usize = 1024,",
            "let sk = \"sk-short\";",
            "password = \"aaaaaaaaaaaaaaaaaaaa1\"",
            "https://docs.rs/regex/1.10.0/regex/",
            "/// http://username:password@example.com:123/path/data?key=value",
            "all(\"http://user:pass@localhost:8887\")",
        ] {
            assert_eq!(s.scan_line(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn log_parsing_names_commit_file_and_line() {
        let s = Scanner::new(&[]);
        let log = "\x01aaaa1111\n\
diff --git a/src/a.rs b/src/a.rs\n\
index 1..2 100644\n\
--- a/src/a.rs\n\
+++ b/src/a.rs\n\
@@ -3,0 +4,2 @@ fn x() {\n\
+let ok = 1;\n\
+let k = \"AKIAQ3EGRUOPXNVZLM7K\"; // gitleaks:allow\n\
diff --git a/gone.txt b/gone.txt\n\
--- a/gone.txt\n\
+++ /dev/null\n\
@@ -1 +0,0 @@\n\
-ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi\n\
\x01bbbb2222\n\
diff --git a/k.pem b/k.pem\n\
new file mode 100644\n\
--- /dev/null\n\
+++ b/k.pem\n\
@@ -0,0 +1,2 @@\n\
++++ not a header: a line starting with ++\n\
+-----BEGIN RSA PRIVATE KEY-----\n";
        let f = s.scan_log(log.as_bytes()).expect("scan");
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            (f[0].commit.as_str(), f[0].file.as_str(), f[0].line),
            ("aaaa1111", "src/a.rs", 5)
        );
        assert!(f[0].allowed && f[0].redacted.contains("REDACTED"));
        assert_eq!(
            (
                f[1].commit.as_str(),
                f[1].file.as_str(),
                f[1].line,
                f[1].rule.as_str()
            ),
            ("bbbb2222", "k.pem", 2, "private-key-block")
        );
        assert!(!f[1].allowed);
    }
}
