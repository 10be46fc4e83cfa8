//! Entry points for fuzzing what the proxy does with attacker-controlled bytes: a request head
//! (target, Host, headers) through authority parsing, policy matching and outbound DLP, and a
//! policy file through parsing and compilation. Neither may panic on any input.

use std::sync::OnceLock;

use crate::address::host_port;
use crate::decision::head_text;
use crate::policy::{Policy, RequestView, normalise_host};

/// Routes that exercise every kind of match: prefixes, exact and regex paths, methods,
/// exact and regex headers, git fetch, injected auth and narrowed DLP.
const POLICY: &str = r#"
log: 2
routes:
  - host: api.example.com
    matches:
      - paths: [{value: /v1/}, {type: exact, value: /health}, {type: regex, value: '^/items/[0-9]+$'}]
        methods: [GET, POST]
      - methods: [DELETE]
        headers: [{name: X-Confirm, value: "yes"}, {name: X-Trace, type: regex, value: '^[a-f0-9]{8}$'}]
  - host: git.example.com
    git: {fetch: true}
  - host: 10.0.0.7
  - host: uploads.example.com
    dlp: {outbound: [known_secrets]}
"#;

fn policy() -> Option<&'static Policy> {
    static P: OnceLock<Option<Policy>> = OnceLock::new();
    P.get_or_init(|| Policy::load(POLICY, None).ok()).as_ref()
}

/// `METHOD TARGET` on the first line, `Name: value` headers after it, as an agent would send
/// inside a tunnel or to the proxy directly.
pub fn request_head(data: &[u8]) {
    let Some(policy) = policy() else { return };
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    let uri: Option<http::Uri> = target.parse().ok();
    let authority = uri
        .as_ref()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let Some((host, port)) = host_port(&authority, 443) else {
        return;
    };
    let host = normalise_host(&host);
    let raw_path = uri.as_ref().map_or("/", |u| u.path());
    let Ok(path) = crate::target_path::normalise(raw_path) else {
        return;
    };
    // The normal form is a fixed point: normalising again changes nothing.
    assert_eq!(
        crate::target_path::normalise(&path).as_deref(),
        Ok(path.as_str())
    );
    let query = uri.as_ref().and_then(|u| u.query()).map(str::to_string);
    let tls = uri.as_ref().and_then(|u| u.scheme_str()) != Some("http");
    let _ = policy.admit(&host, port, tls);
    let view = RequestView {
        host: &host,
        port,
        tls,
        method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
    };
    if let Ok(route) = policy.decide(&view) {
        let head = head_text(
            &host,
            &path,
            query.as_deref(),
            &headers,
            route.auth.is_some(),
        );
        let _ = policy.detectors.outbound(&head, true, true);
        let _ = policy.detectors.inbound(&head);
    }
}

/// A policy file (YAML in the Bottle's egress schema) through parsing and compilation.
pub fn policy_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::load(text, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift): the fuzz entry points run in every test
    /// run on mutations of realistic inputs, even where no fuzzer is installed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const SEEDS: &[&str] = &[
        "GET /v1/items?x=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Trace: deadbeef\r\n",
        "DELETE https://api.example.com/items/42 HTTP/1.1\r\nX-Confirm: yes\r\n",
        "POST /repo.git/git-receive-pack HTTP/1.1\r\nHost: git.example.com:443\r\n",
        "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: git.example.com\r\n",
        "GET /dns-query HTTP/1.1\r\nHost: [::1]:8443\r\nContent-Type: application/dns-message\r\n",
        "PUT http://10.0.0.7:8080/ HTTP/1.1\r\nAuthorization: Bearer ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    ];

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=rng.below(8) {
            let at = rng.below(v.len() + 1);
            match rng.below(4) {
                0 if !v.is_empty() => {
                    let i = at.min(v.len() - 1);
                    v[i] = rng.next() as u8;
                }
                1 => v.insert(at, b"\r\n:[]%?#/@ \x00\xff"[rng.below(12)]),
                2 if at < v.len() => {
                    v.remove(at);
                }
                _ => {
                    let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                    let from = rng.below(other.len());
                    let to = (from + rng.below(32)).min(other.len());
                    v.splice(at..at, other[from..to].iter().copied());
                }
            }
        }
        v
    }

    #[test]
    fn the_fixed_policy_compiles() {
        assert!(policy().is_some(), "the fuzzing policy must load");
    }

    #[test]
    fn mutated_request_heads_and_policies_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let seed = SEEDS[i % SEEDS.len()].as_bytes();
            request_head(&mutate(&mut rng, seed));
        }
        for _ in 0..2_000 {
            policy_text(&mutate(&mut rng, POLICY.as_bytes()));
        }
    }
}
