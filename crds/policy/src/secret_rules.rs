//! The rules that say a string is a credential, shared by everyone who looks for one: the
//! sidecar's egress detector and git-gate's scanner, and the runner's discovery of secrets in the
//! files it copies into an agent. Rules name what matched, never the matched bytes.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Well-known credential formats (rule name, pattern): the egress detector, and the first rules
/// of the git-gate scanner.
pub const TOKEN_PATTERNS: &[(&str, &str)] = &[
    (
        "aws-access-key-id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    ),
    ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
    (
        "github-fine-grained-token",
        r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
    ),
    ("gitlab-token", r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    (
        "openai-key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}",
    ),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    ("stripe-live-key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}\b"),
    ("huggingface-token", r"\bhf_[A-Za-z0-9]{34,}\b"),
    (
        "private-key-block",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----",
    ),
];

/// Formats beyond the egress detector's: kinds that are fine to send to their own API (a JWT,
/// a webhook URL) yet must never be committed.
pub const COMMIT_PATTERNS: &[(&str, &str)] = &[
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
    (
        "slack-webhook-url",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
    ),
    ("stripe-test-key", r"\b(?:sk|rk)_test_[0-9A-Za-z]{24,}\b"),
    (
        "sendgrid-api-key",
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
    ),
    ("twilio-api-key", r"\bSK[0-9a-f]{32}\b"),
    ("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    ("pypi-token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ("shopify-token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b"),
    ("digitalocean-token", r"\bdo[opr]_v1_[a-f0-9]{64}\b"),
    ("databricks-token", r"\bdapi[a-f0-9]{32}(?:-\d)?\b"),
    ("linear-api-key", r"\blin_api_[A-Za-z0-9]{40}\b"),
    ("gitlab-runner-token", r"\bglrt-[A-Za-z0-9_-]{20,}\b"),
    ("azure-storage-key", r"AccountKey=[A-Za-z0-9+/]{86}=="),
    (
        "gcp-service-account",
        r#""private_key_id"\s*:\s*"[a-f0-9]{40}""#,
    ),
    (
        "private-key",
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
    ),
];

/// `scheme://user:PASSWORD@host`, the password as group 1.
pub const URL_CREDENTIALS: &str =
    r"\b[a-z][a-z0-9+.-]{1,15}://[^\s:/@'\x22]{1,64}:([^\s:/@'\x22$\{\}]{8,128})@[A-Za-z0-9.-]+";

/// A credential word, an assignment, and a quoted or bare value (group 1).
pub const GENERIC: &str = r#"(?i)(?:api[_.-]?key|apikey|secret|token|passw(?:or)?d|pwd|credentials?|auth[_.-]?key|access[_.-]?key|client[_.-]?secret)[A-Za-z0-9_.-]{0,24}["']?\s*(?::=|=>|==|:|=)\s*[@"'`]?([A-Za-z0-9+/_.=~!$%^*-]{16,200})"#;

/// Shannon entropy (bits per byte) a generic value needs: random keys of 16+ characters are
/// above it; words, paths and identifiers mostly below.
pub const MIN_ENTROPY: f64 = 3.5;

/// Shannon entropy of `v` in bits per byte.
pub fn entropy(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A value written to be replaced (`your_token_here`, `${VAR}`, `<password>`): not a secret.
pub fn is_placeholder(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    [
        &b"example"[..],
        b"placeholder",
        b"changeme",
        b"xxxxxxxx",
        b"your_",
        b"your-",
        b"<",
        b"${",
        b"{{",
    ]
    .iter()
    .any(|w| memchr::memmem::find(&lower, w).is_some())
}

#[allow(clippy::expect_used)] // literal patterns, every one exercised by the tests
fn regex(p: &str) -> Regex {
    RegexBuilder::new(p)
        .unicode(false)
        .size_limit(1 << 24)
        .build()
        .expect("built-in pattern compiles")
}

/// Every rule compiled once: credential formats, URL passwords and high-entropy values beside
/// credential words, line by line.
pub struct LineRules {
    any: RegexSet,
    rules: Vec<(&'static str, Regex)>,
    generic: Regex,
    url_credentials: Regex,
    identifier: Regex,
}

impl std::fmt::Debug for LineRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineRules")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Default for LineRules {
    fn default() -> Self {
        Self::new()
    }
}

impl LineRules {
    /// One compiled set for the whole process: compiling every rule costs tens of
    /// milliseconds, which a discovery on an Agent's start path (a pool claim) should not pay.
    pub fn shared() -> &'static LineRules {
        static RULES: std::sync::OnceLock<LineRules> = std::sync::OnceLock::new();
        RULES.get_or_init(LineRules::new)
    }

    pub fn new() -> LineRules {
        let all: Vec<(&'static str, &'static str)> = TOKEN_PATTERNS
            .iter()
            .chain(COMMIT_PATTERNS)
            .copied()
            .collect();
        #[allow(clippy::expect_used)] // the same literal patterns as `regex`
        let any = RegexSetBuilder::new(all.iter().map(|(_, p)| *p))
            .unicode(false)
            .size_limit(1 << 25)
            .build()
            .expect("built-in patterns compile");
        LineRules {
            any,
            rules: all.iter().map(|(n, p)| (*n, regex(p))).collect(),
            generic: regex(GENERIC),
            url_credentials: regex(URL_CREDENTIALS),
            // `self.token_cache`, `os.environ.API_TOKEN`: code, not a value.
            identifier: regex(r"^[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)+$"),
        }
    }

    /// The first credential in `line`: its rule and, when known, where it is.
    pub fn scan_line(&self, line: &[u8]) -> Option<(&'static str, Option<(usize, usize)>)> {
        if self.any.is_match(line)
            && let Some(i) = self.any.matches(line).iter().next()
        {
            let (rule, re) = &self.rules[i];
            let span = re.find(line).map(|m| (m.start(), m.end()));
            return Some((rule, span));
        }
        // Documentation's `user:password@` is not a credential; a password with some
        // randomness in it is.
        for c in self.url_credentials.captures_iter(line) {
            let Some(v) = c.get(1) else { continue };
            let value = v.as_bytes();
            if entropy(value) >= 3.0
                && value.iter().any(|b| !b.is_ascii_lowercase())
                && !is_placeholder(value)
            {
                return Some(("url-credentials", Some((v.start(), v.end()))));
            }
        }
        for c in self.generic.captures_iter(line) {
            let Some(v) = c.get(1) else { continue };
            let value = v.as_bytes();
            if entropy(value) >= MIN_ENTROPY
                && value.iter().any(u8::is_ascii_digit)
                && !self.identifier.is_match(value)
                && !is_placeholder(value)
            {
                return Some(("generic-credential", Some((v.start(), v.end()))));
            }
        }
        None
    }

    /// Whether `block` may hold a finding: every rule at once over many lines. A superset of
    /// the per-line scan (lines are joined by newlines, which no rule matches across as a
    /// secret), so a clean block needs no per-line look.
    pub fn may_hold(&self, block: &[u8]) -> bool {
        self.any.is_match(block)
            || self.generic.is_match(block)
            || self.url_credentials.is_match(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_separates_keys_from_words() {
        assert!(entropy(b"Zq8LmT3pRx7vN2bC4dF6") > MIN_ENTROPY);
        assert!(entropy(b"aaaaaaaaaaaaaaaaaaaa") < MIN_ENTROPY);
        assert!(entropy(b"passwordpassword") < MIN_ENTROPY);
    }

    #[test]
    fn placeholders_are_not_secrets() {
        for v in ["your_api_key_here", "${TOKEN}", "<password>", "changeme123"] {
            assert!(is_placeholder(v.as_bytes()), "{v}");
        }
        assert!(!is_placeholder(b"Zq8LmT3pRx7vN2bC4dF6"));
    }
}
