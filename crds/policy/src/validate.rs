//! The rules of an egress policy that its schema cannot express (hosts, regexes, header and
//! method tokens, detector names, secret sources), and the name checks they share with the
//! resource model. Each check appends to one error list so users see everything at once.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;

use crate::egress::{
    DetectorSelection, EgressSpec, HeaderMatchType, INBOUND_DETECTORS, OUTBOUND_DETECTORS,
    PathMatchType, RouteDlp,
};
use crate::error::{FieldPath, ValidationErrors, list};
use crate::secret::{SecretKeySelector, SecretSource};

/// Which token sources a route's `auth` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyContext {
    /// `Bottle.spec.egress`: users name a Secret key or a host variable.
    Bottle,
    /// The sidecar's resolved policy file: the controller names a file under `--secrets-dir`.
    SidecarPolicy,
}

/// Rules of an egress policy, shared by Bottles and the sidecar's policy file.
pub fn egress(e: &EgressSpec, path: &FieldPath, ctx: PolicyContext, errs: &mut ValidationErrors) {
    for (i, r) in e.routes().iter().enumerate() {
        let rp = path.field("routes").index(i);
        if let Err(m) = check_host(&r.host) {
            errs.push(&rp.field("host"), m);
        }
        for (k, m) in r.matches.iter().flatten().enumerate() {
            let mp = rp.field("matches").index(k);
            for (j, pm) in m.paths.iter().flatten().enumerate() {
                let pp = mp.field("paths").index(j).field("value");
                match pm.match_type.unwrap_or_default() {
                    PathMatchType::Regex => {
                        if let Err(err) = Regex::new(&pm.value) {
                            errs.push(
                                &pp,
                                format!(
                                    "invalid regular expression: {}",
                                    one_line(&err.to_string())
                                ),
                            );
                        }
                    }
                    t => {
                        if !pm.value.starts_with('/') {
                            errs.push(
                                &pp,
                                format!(
                                    "{} path must start with '/' (got '{}')",
                                    if t == PathMatchType::Exact {
                                        "an exact"
                                    } else {
                                        "a prefix"
                                    },
                                    pm.value
                                ),
                            );
                        }
                    }
                }
            }
            let mut seen = BTreeSet::new();
            for (j, method) in m.methods.iter().flatten().enumerate() {
                let p = mp.field("methods").index(j);
                if method.is_empty() || !method.bytes().all(is_token_byte) {
                    errs.push(
                        &p,
                        format!("'{method}' is not an HTTP method such as GET or POST"),
                    );
                } else if !seen.insert(method.to_ascii_uppercase()) {
                    errs.push(&p, format!("duplicate method '{method}'"));
                }
            }
            for (j, h) in m.headers.iter().flatten().enumerate() {
                let hp = mp.field("headers").index(j);
                if !h.name.bytes().all(is_token_byte) {
                    errs.push(
                        &hp.field("name"),
                        format!("'{}' is not a valid header name", h.name),
                    );
                }
                if h.match_type.unwrap_or_default() == HeaderMatchType::Regex
                    && let Err(err) = Regex::new(&h.value)
                {
                    errs.push(
                        &hp.field("value"),
                        format!("invalid regular expression: {}", one_line(&err.to_string())),
                    );
                }
            }
        }
        if let Some(auth) = &r.auth {
            secret_source(&auth.token, &rp.field("auth"), ctx, errs);
            if auth.allow_plaintext == Some(true) && !r.plain_http() {
                errs.push(
                    &rp.field("auth").field("allowPlaintext"),
                    "needs plainHttp: true on the route (without it the route is TLS-only and the credential never travels in clear)",
                );
            }
        }
        if let Some(ports) = &r.ports {
            if ports.is_empty() {
                errs.push(
                    &rp.field("ports"),
                    "must list at least one port; omit it for the default (443, or 80 with plainHttp)",
                );
            }
            let mut seen = BTreeSet::new();
            for (j, port) in ports.iter().enumerate() {
                if *port == 0 {
                    errs.push(
                        &rp.field("ports").index(j),
                        "must be a port from 1 to 65535",
                    );
                } else if !seen.insert(*port) {
                    errs.push(
                        &rp.field("ports").index(j),
                        format!("duplicate port {port}"),
                    );
                }
            }
        }
        if let Some(dlp) = &r.dlp {
            route_dlp(dlp, &rp.field("dlp"), errs);
        }
    }
}

pub fn route_dlp(dlp: &RouteDlp, path: &FieldPath, errs: &mut ValidationErrors) {
    for (field, sel, names) in [
        ("outbound", &dlp.outbound, OUTBOUND_DETECTORS),
        ("inbound", &dlp.inbound, INBOUND_DETECTORS),
    ] {
        let p = path.field(field);
        match sel {
            None | Some(DetectorSelection::Enabled(false)) => {}
            Some(DetectorSelection::Enabled(true)) => errs.push(
                &p,
                format!(
                    "must be false or a list of detector names ({}); omit it to keep every detector on",
                    list(names)
                ),
            ),
            Some(DetectorSelection::Only(list_)) => {
                let mut seen = BTreeSet::new();
                for (i, n) in list_.iter().enumerate() {
                    if !names.contains(&n.as_str()) {
                        errs.push(
                            &p.index(i),
                            format!("unknown {field} detector '{n}'; allowed: {}", list(names)),
                        );
                    } else if !seen.insert(n.as_str()) {
                        errs.push(&p.index(i), format!("duplicate detector '{n}'"));
                    }
                }
            }
        }
    }
}

pub fn secret_source(
    s: &SecretSource,
    path: &FieldPath,
    ctx: PolicyContext,
    errs: &mut ValidationErrors,
) {
    let set = s.set_sources();
    let allowed = match ctx {
        PolicyContext::Bottle => "secretKeyRef or hostEnv",
        PolicyContext::SidecarPolicy => "tokenFile",
    };
    if ctx == PolicyContext::Bottle && s.token_file.is_some() {
        errs.push(
            &path.field("tokenFile"),
            "is only valid in the sidecar's resolved policy; in a Bottle use secretKeyRef or hostEnv",
        );
    } else if ctx == PolicyContext::SidecarPolicy && set.iter().any(|n| *n != "tokenFile") {
        errs.push(
            path,
            "the sidecar policy names tokens by tokenFile only; the controller resolves secretKeyRef and hostEnv",
        );
    } else if set.len() != 1 {
        errs.push(
            path,
            format!(
                "exactly one of {allowed} must be set (found {})",
                found(&set)
            ),
        );
    }
    if let Some(sel) = &s.secret_key_ref {
        secret_key_ref(sel, &path.field("secretKeyRef"), errs);
    }
    if let Some(h) = &s.host_env
        && let Err(m) = check_env_name(h)
    {
        errs.push(&path.field("hostEnv"), m);
    }
    if let Some(f) = &s.token_file
        && (f.is_empty() || f.contains('/') || f == "." || f == "..")
    {
        errs.push(
            &path.field("tokenFile"),
            "must be a plain file name (no '/')",
        );
    }
}

pub fn secret_key_ref(sel: &SecretKeySelector, path: &FieldPath, errs: &mut ValidationErrors) {
    if let Err(m) = check_dns_subdomain(&sel.name) {
        errs.push(&path.field("name"), m);
    }
    if !sel.key.is_empty()
        && !sel
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errs.push(
            &path.field("key"),
            "a Secret key may only hold letters, digits, '-', '_' and '.'",
        );
    }
    if let Some(ns) = &sel.namespace
        && let Err(m) = check_dns_label(ns)
    {
        errs.push(&path.field("namespace"), m);
    }
}

pub fn found(set: &[&str]) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.join(", ")
    }
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid environment variable name: use letters, digits and '_', not starting with a digit"
        ))
    }
}

/// RFC 1123 label: what Kubernetes requires of namespaces and what container names can hold.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' must be a lowercase RFC 1123 label: at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
        ))
    }
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| check_dns_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
        ))
    }
}

/// A route host: a lowercase DNS name or an IP literal, nothing else.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.contains("://") {
        return Err(format!(
            "'{h}' must be a bare hostname without a scheme, e.g. 'api.example.com'"
        ));
    }
    if h.contains('/') {
        return Err(format!(
            "'{h}' must be a bare hostname without a path; use matches[].paths to restrict paths"
        ));
    }
    if h.contains('*') {
        return Err(format!(
            "'{h}': wildcards are not supported; list each host as its own route"
        ));
    }
    if h.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let unbracketed = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    if unbracketed.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if h.contains(':') {
        return Err(format!(
            "'{h}' must not include a port; list ports in the route's `ports` (default [443], or [80] with plainHttp)"
        ));
    }
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "'{h}' must be lowercase ('{}')",
            h.to_ascii_lowercase()
        ));
    }
    let valid = h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{h}' is not a valid hostname: dot-separated labels of a-z, 0-9 and '-', no trailing dot"
        ))
    }
}

/// The lowercase host a route is keyed by, for duplicate detection.
pub fn host_key(h: &str) -> String {
    let h = h.trim_end_matches('.');
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    // An IP literal in its one printed form (IPv6 compressed, lowercase, no brackets).
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod host_key_tests {
    use super::host_key;

    #[test]
    fn one_key_per_host_whatever_its_spelling() {
        for same in ["::1", "[::1]", "0:0::1", "[0000::0001]", "::1."] {
            assert_eq!(host_key(same), "::1", "{same}");
        }
        assert_eq!(host_key("API.Example.com."), "api.example.com");
        assert_eq!(host_key("10.0.0.1"), "10.0.0.1");
        assert_ne!(host_key("::2"), host_key("::1"));
    }
}
