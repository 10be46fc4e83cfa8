//! What counts as a credential inside one file: the formats that hold them by name (dotenv, INI
//! credential files, kubeconfigs, `.npmrc`, `.netrc`, `.git-credentials`, Docker and cloud JSON),
//! PEM private keys anywhere, and every line git-gate's rules flag. Pure: bytes in, values out.

use base64::Engine;
use bb_crds::policy::secret_rules::{LineRules, MIN_ENTROPY, entropy, is_placeholder};

/// Values shorter than this are not secrets worth guarding (the sidecar ignores them too).
pub const MIN_VALUE_LEN: usize = 8;

/// One credential value found in a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Found {
    pub line: u32,
    pub kind: &'static str,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("line", &self.line)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A key name that says its value is a credential.
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "token",
        "passw",
        "pwd",
        "credential",
        "api_key",
        "apikey",
        "api-key",
        "private_key",
        "privatekey",
        "access_key",
        "accesskey",
        "auth",
        "session_key",
        "signing_key",
        "encryption_key",
        "_key",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k == "key"
}

/// A value that looks like a credential whatever its name: long, random, letters and digits.
fn looks_random(v: &[u8]) -> bool {
    v.len() >= 16
        && entropy(v) >= MIN_ENTROPY
        && v.iter().any(u8::is_ascii_digit)
        && v.iter().any(u8::is_ascii_alphabetic)
        && !v.contains(&b' ')
}

/// Whether `v` is worth guarding once something (its name, its format) says it is a secret.
fn worth_guarding(v: &[u8]) -> bool {
    v.len() >= MIN_VALUE_LEN
        && !is_placeholder(v)
        && !v.iter().all(|&b| b == v[0])
        && !matches!(
            v.to_ascii_lowercase().as_slice(),
            b"true" | b"false" | b"null" | b"none" | b"redacted"
        )
}

/// The password of a `scheme://user:password@host` value, or the value itself.
fn url_password(v: &[u8]) -> &[u8] {
    let Some(scheme_end) = memchr::memmem::find(v, b"://") else {
        return v;
    };
    let rest = &v[scheme_end + 3..];
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = memchr::memrchr(b'@', authority) else {
        return v;
    };
    match memchr::memchr(b':', &authority[..at]) {
        Some(colon) => &authority[colon + 1..at],
        None => &authority[..at],
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\'', '`'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return inner;
        }
    }
    // An unquoted value ends at an inline comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end(),
        None => v,
    }
}

/// The kind of credential file `path` names, by the conventions of the tools that read them.
fn file_kind(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let in_dir =
        |dir: &str| path.contains(&format!("/{dir}/")) || path.starts_with(&format!("{dir}/"));
    Some(match name {
        ".env" | "env" => "dotenv",
        n if n.starts_with(".env.") || n.ends_with(".env") => "dotenv",
        "credentials" | "config" if in_dir(".aws") => "aws-credentials",
        "config" if in_dir(".kube") => "kubeconfig",
        n if n.starts_with("kubeconfig") => "kubeconfig",
        ".npmrc" => "npmrc",
        ".yarnrc.yml" => "yarnrc",
        ".pypirc" => "pypirc",
        ".netrc" | "_netrc" => "netrc",
        ".git-credentials" => "git-credentials",
        "config.json" if in_dir(".docker") => "docker-config",
        ".s3cfg" | ".boto" => "ini-credentials",
        n if n.ends_with(".json") => "json",
        n if n.ends_with(".yaml") || n.ends_with(".yml") => "yaml",
        _ => return None,
    })
}

/// Every credential in `text`, the file the agent sees at `path`.
pub fn find(path: &str, text: &[u8], rules: &LineRules) -> Vec<Found> {
    let mut out = Vec::new();
    let s = String::from_utf8_lossy(text);
    match file_kind(path) {
        Some("dotenv") => assignments(&s, "dotenv", &['='], true, &mut out),
        Some(kind @ ("aws-credentials" | "pypirc" | "ini-credentials")) => {
            assignments(&s, kind, &['=', ':'], false, &mut out)
        }
        Some(kind @ ("npmrc" | "yarnrc")) => assignments(&s, kind, &['=', ':'], false, &mut out),
        Some("netrc") => netrc(&s, &mut out),
        Some("git-credentials") => {
            for (i, l) in s.lines().enumerate() {
                push(
                    &mut out,
                    i,
                    "git-credentials",
                    url_password(l.trim().as_bytes()),
                );
            }
        }
        Some("docker-config") => json(&s, "docker-config", &mut out),
        Some("kubeconfig") => kubeconfig(&s, &mut out),
        Some("json") => json(&s, "json-credentials", &mut out),
        Some("yaml") if s.contains("kind: Config") && s.contains("users:") => {
            kubeconfig(&s, &mut out)
        }
        _ => {}
    }
    private_keys(&s, &mut out);
    if rules.may_hold(text) {
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if let Some((rule, Some((a, b)))) = rules.scan_line(line)
                && !rule.contains("private-key")
            {
                push(&mut out, i, rule, &line[a..b]);
            }
        }
    }
    out
}

fn push(out: &mut Vec<Found>, line0: usize, kind: &'static str, value: &[u8]) {
    if worth_guarding(value) && !out.iter().any(|f| f.value == value) {
        out.push(Found {
            line: u32::try_from(line0 + 1).unwrap_or(u32::MAX),
            kind,
            value: value.to_vec(),
        });
    }
}

/// `KEY=value` lines (dotenv, INI, `.npmrc`): values of keys named like credentials, and in
/// dotenv also values that look random whatever their name.
fn assignments(s: &str, kind: &'static str, seps: &[char], any_random: bool, out: &mut Vec<Found>) {
    for (i, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some(at) = line.find(|c| seps.contains(&c)) else {
            continue;
        };
        let (key, value) = (line[..at].trim(), unquote(&line[at + 1..]));
        let whole = value.as_bytes();
        let value = url_password(whole);
        let in_url = value.len() != whole.len();
        if secret_name(key) || in_url || (any_random && looks_random(value)) {
            push(out, i, kind, value);
        }
    }
}

/// `.netrc`: the token after each `password` (and `account`).
fn netrc(s: &str, out: &mut Vec<Found>) {
    for (i, line) in s.lines().enumerate() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if matches!(w, "password" | "account")
                && let Some(v) = words.next()
            {
                push(out, i, "netrc", v.as_bytes());
            }
        }
    }
}

/// The line (1-based counting from 0) where `needle` first shows in `s`.
fn line_of(s: &str, needle: &str) -> usize {
    s.find(needle)
        .map_or(0, |at| s[..at].bytes().filter(|&b| b == b'\n').count())
}

/// String values under credential-named keys, anywhere in a JSON document (Docker's `auths`,
/// GCP service accounts and ADC files, Azure token caches). Docker's `auth` is base64 of
/// `user:password`: the password is guarded too.
fn json(s: &str, kind: &'static str, out: &mut Vec<Found>) {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(s) else {
        return;
    };
    let mut stack = vec![(String::new(), &doc)];
    while let Some((key, v)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => stack.extend(m.iter().map(|(k, v)| (k.clone(), v))),
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|v| (key.clone(), v))),
            serde_json::Value::String(text) if secret_name(&key) => {
                let line = line_of(s, text);
                push(out, line, kind, text.as_bytes());
                if key == "auth"
                    && let Ok(plain) = base64::engine::general_purpose::STANDARD.decode(text)
                    && let Some(colon) = memchr::memchr(b':', &plain)
                {
                    push(out, line, kind, &plain[colon + 1..]);
                }
            }
            _ => {}
        }
    }
}

/// A kubeconfig's user credentials: tokens, passwords, client keys (the base64 text and the
/// key inside it), auth-provider tokens and secrets.
fn kubeconfig(s: &str, out: &mut Vec<Found>) {
    let Ok(doc) = serde_yaml::from_str::<serde_json::Value>(s) else {
        return;
    };
    for user in doc["users"].as_array().into_iter().flatten() {
        let u = &user["user"];
        let provider = &u["auth-provider"]["config"];
        for v in [
            &u["token"],
            &u["password"],
            &u["client-key-data"],
            &provider["id-token"],
            &provider["refresh-token"],
            &provider["access-token"],
            &provider["client-secret"],
        ] {
            let Some(text) = v.as_str() else { continue };
            let line = line_of(s, text);
            push(out, line, "kubeconfig", text.as_bytes());
            if let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(text) {
                let mut inner = Vec::new();
                private_keys(&String::from_utf8_lossy(&pem), &mut inner);
                for f in inner {
                    push(out, line, "kubeconfig", &f.value);
                }
            }
        }
    }
}

/// Every PEM private key block: its base64 body as one line (how it leaves when newlines are
/// stripped, and every run of it within one line) and the key bytes it encodes.
fn private_keys(s: &str, out: &mut Vec<Found>) {
    let mut rest = s;
    let mut offset = 0;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let Some(head_end) = rest[begin..].find("-----\n").map(|e| begin + e + 6) else {
            break;
        };
        let head = &rest[begin..head_end];
        let Some(end) = rest[head_end..].find("-----END ").map(|e| head_end + e) else {
            break;
        };
        if head.contains("PRIVATE KEY") {
            let body: String = rest[head_end..end]
                .lines()
                .filter(|l| !l.contains(':'))
                .flat_map(|l| l.trim().chars())
                .collect();
            let line = s[..offset + head_end]
                .bytes()
                .filter(|&b| b == b'\n')
                .count();
            push(out, line, "private-key", body.as_bytes());
            if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
                push(out, line, "private-key", &der);
            }
        }
        offset += end + 9;
        rest = &rest[end + 9..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(path: &str, text: &str) -> Vec<(u32, &'static str, String)> {
        find(path, text.as_bytes(), &LineRules::new())
            .into_iter()
            .map(|f| {
                (
                    f.line,
                    f.kind,
                    String::from_utf8_lossy(&f.value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn dotenv_takes_named_and_random_values_and_skips_placeholders() {
        let env = "# comment\n\
                   DB_PASSWORD=hunter2hunter2\n\
                   export API_TOKEN=\"tok-9f8e7d6c5b4a\"\n\
                   DATABASE_URL=postgres://app:S3cretPassw0rd@db:5432/app\n\
                   SENTRY_DSN=Xq7Lm2Pz9Rt4Vw8Ky3Nb\n\
                   STRIPE_KEY=your_stripe_key_here\n\
                   LOG_LEVEL=debug\n\
                   SHORT_SECRET=abc\n\
                   PORT=8080\n";
        assert_eq!(
            values("/workspace/.env", env),
            vec![
                (2, "dotenv", "hunter2hunter2".into()),
                (3, "dotenv", "tok-9f8e7d6c5b4a".into()),
                (4, "dotenv", "S3cretPassw0rd".into()),
                (5, "dotenv", "Xq7Lm2Pz9Rt4Vw8Ky3Nb".into()),
            ]
        );
        assert_eq!(values("/workspace/app/.env.production", env).len(), 4);
    }

    #[test]
    fn aws_credentials_and_config() {
        let creds = "[default]\naws_access_key_id = AKIAQ3EGRUOPXNVZLM7K\n\
                     aws_secret_access_key = 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\n\
                     region = eu-west-1\n";
        let found = values("/workspace/.aws/credentials", creds);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].1, "aws-credentials");
        assert_eq!(found[1].0, 3);
    }

    #[test]
    fn kubeconfig_tokens_and_client_keys() {
        let key_pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkq7JzQ0cM5vN3xR8pL2mT6wY9aF4sD1gH7jK0lZ3xVoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(key_pem);
        let kc = format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: kube-token-7f3a9c2e1b\n    client-key-data: {key_b64}\n"
        );
        let found = values("/workspace/.kube/config", &kc);
        let kinds: Vec<_> = found.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(kinds[0], (6, "kubeconfig"));
        assert!(found.iter().any(|f| f.2 == "kube-token-7f3a9c2e1b"));
        assert!(found.iter().any(|f| f.2 == key_b64));
        assert!(
            found.iter().any(|f| f.2.starts_with("MHcCAQEEIBkq7")),
            "{found:?}"
        );
        assert_eq!(
            values("/workspace/deploy/cluster.yaml", &kc).len(),
            found.len()
        );
    }

    #[test]
    fn small_credential_files() {
        assert_eq!(
            values(
                "/w/.npmrc",
                "//registry.npmjs.org/:_authToken=npm-tok-12345678\n"
            )[0]
            .2,
            "npm-tok-12345678"
        );
        assert_eq!(
            values(
                "/w/.netrc",
                "machine api.example.test login me password n3tRcP4ss\n"
            )[0]
            .2,
            "n3tRcP4ss"
        );
        assert_eq!(
            values(
                "/w/.git-credentials",
                "https://bot:gitCr3dT0ken@git.example.test\n"
            )[0]
            .2,
            "gitCr3dT0ken"
        );
        assert_eq!(
            values(
                "/w/.pypirc",
                "[pypi]\nusername = __token__\npassword = pypi-t0ken-value\n"
            )[0]
            .2,
            "pypi-t0ken-value"
        );
        let docker = base64::engine::general_purpose::STANDARD.encode("me:d0ckerPassw0rd");
        let cfg = format!("{{\"auths\":{{\"r.test\":{{\"auth\":\"{docker}\"}}}}}}");
        let found = values("/w/.docker/config.json", &cfg);
        assert!(found.iter().any(|f| f.2 == docker));
        assert!(found.iter().any(|f| f.2 == "d0ckerPassw0rd"));
        let sa = r#"{"type": "service_account", "private_key_id": "0123456789abcdef0123", "client_email": "x@y.iam.gserviceaccount.com"}"#;
        let found = values("/w/gcp/sa.json", sa);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].2, "0123456789abcdef0123");
    }

    #[test]
    fn git_gate_rules_flag_values_in_any_file_and_ordinary_code_is_clean() {
        let src = "fn main() {\n    let key = \"AKIAQ3EGRUOPXNVZLM7K\";\n}\n";
        assert_eq!(
            values("/w/src/main.rs", src),
            vec![(2, "aws-access-key-id", "AKIAQ3EGRUOPXNVZLM7K".into())]
        );
        let clean = "let token = self.tokenizer.next_token();\npassword: ${DB_PASSWORD}\n";
        assert!(values("/w/src/lib.rs", clean).is_empty());
        assert!(values("/w/package.json", r#"{"name":"x","version":"1.0.0"}"#).is_empty());
    }

    #[test]
    fn pem_private_keys_anywhere() {
        let pem = "notes\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBq1Jc9aXk2\n-----END OPENSSH PRIVATE KEY-----\n";
        let found = values("/w/deploy_key", pem);
        assert_eq!(found[0].0, 3, "the line after the header");
        assert_eq!(
            found[0].2,
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBq1Jc9aXk2"
        );
        let public =
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUEXAMPLE\n-----END CERTIFICATE-----\n";
        assert!(values("/w/ca.crt", public).is_empty());
    }

    #[test]
    fn url_passwords() {
        assert_eq!(url_password(b"postgres://u:pw12345678@h/db"), b"pw12345678");
        assert_eq!(url_password(b"https://tok123456789@h/x"), b"tok123456789");
        assert_eq!(url_password(b"plain-value-1234"), b"plain-value-1234");
    }
}
