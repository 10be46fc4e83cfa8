//! Semantic rules the schema cannot express: cross-field constraints, formats, the reference's
//! provider and key rules. Each check appends to one error list so users see everything at once.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;

use crate::agent::AgentSpec;
use crate::bottle::BottleSpec;
use crate::common::{GitUser, SecretKeySelector, SecretSource};
use crate::egress::{
    DetectorSelection, EgressSpec, HeaderMatchType, INBOUND_DETECTORS, OUTBOUND_DETECTORS,
    PathMatchType, RouteDlp,
};
use crate::env::EnvVar;
use crate::error::{FieldPath, ValidationErrors, list};
use crate::git_gate::{GitGateSpec, KeyProvider, RepoKey, parse_git_upstream};
use crate::provider::{AgentProvider, MAX_TOKENS_FIELDS, PiSettings, ProviderTemplate};
use crate::quantity::parse_quantity;
use crate::runtime::RuntimeSpec;

/// Which token sources a route's `auth` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyContext {
    /// `Bottle.spec.egress`: users name a Secret key or a host variable.
    Bottle,
    /// The sidecar's resolved policy file: the controller names a file under `--secrets-dir`.
    SidecarPolicy,
}

/// Rules of one Bottle's own spec that hold regardless of what it extends.
pub fn bottle_spec(spec: &BottleSpec, errs: &mut ValidationErrors) {
    let root = FieldPath::root("spec");
    if let Some(parent) = &spec.extends
        && let Err(m) = check_dns_subdomain(parent)
    {
        errs.push(&root.field("extends"), m);
    }
    if let Some(p) = &spec.agent_provider {
        agent_provider(p, &root.field("agentProvider"), errs);
    }
    if let Some(env) = &spec.env {
        env_vars(env, &root.field("env"), errs);
    }
    if let Some(e) = &spec.egress {
        egress(e, &root.field("egress"), PolicyContext::Bottle, errs);
    }
    if let Some(g) = &spec.git_gate {
        git_gate(g, &root.field("gitGate"), errs);
    }
    if let Some(r) = &spec.runtime {
        runtime(r, &root.field("runtime"), errs);
    }
}

fn agent_provider(p: &AgentProvider, path: &FieldPath, errs: &mut ValidationErrors) {
    let template = p.template();
    let t = template.as_str();
    if template == ProviderTemplate::Custom {
        match (&p.image, &p.dockerfile) {
            (Some(_), Some(_)) => errs.push(
                &path.field("image"),
                "template 'custom' takes exactly one of image or dockerfile, not both",
            ),
            (None, None) => errs.push(
                &path.field("image"),
                "template 'custom' needs an image or a dockerfile",
            ),
            _ => {}
        }
        match &p.command {
            None => errs.push(
                &path.field("command"),
                "required value: template 'custom' needs the command a session runs, e.g. [bash]",
            ),
            Some(cmd) if cmd.is_empty() => {
                errs.push(&path.field("command"), "must have at least 1 item")
            }
            Some(cmd) => {
                for (i, c) in cmd.iter().enumerate() {
                    if c.is_empty() {
                        errs.push(&path.field("command").index(i), "must not be empty");
                    }
                }
            }
        }
    } else {
        if p.image.is_some() {
            errs.push(
                &path.field("image"),
                format!(
                    "is only supported for template 'custom'; template '{t}' builds its own image (set dockerfile to override it)"
                ),
            );
        }
        if p.command.is_some() {
            errs.push(
                &path.field("command"),
                format!("is only supported for template 'custom'; template '{t}' runs '{t}'"),
            );
        }
    }
    if let Some(image) = &p.image
        && (image.is_empty() || image.chars().any(char::is_whitespace))
    {
        errs.push(
            &path.field("image"),
            "must be an image reference such as registry.example/agent:1.0",
        );
    }
    if let Some(d) = &p.dockerfile
        && d.is_empty()
    {
        errs.push(&path.field("dockerfile"), "must not be empty");
    }
    if let Some(tok) = &p.auth_token {
        if template != ProviderTemplate::Claude {
            errs.push(
                &path.field("authToken"),
                format!(
                    "is only supported for template 'claude'; template '{t}' does not use it ({})",
                    match template {
                        ProviderTemplate::Codex => "use forwardHostCredentials",
                        ProviderTemplate::Pi => "use settings.apiKeyFrom",
                        _ => "declare an egress route with auth",
                    }
                ),
            );
        }
        secret_source(tok, &path.field("authToken"), PolicyContext::Bottle, errs);
    }
    if p.forward_host_credentials.is_some() && template != ProviderTemplate::Codex {
        errs.push(
            &path.field("forwardHostCredentials"),
            "is currently only supported for template 'codex'",
        );
    }
    if let Some(s) = &p.settings {
        if template != ProviderTemplate::Pi {
            errs.push(
                &path.field("settings"),
                "is only supported for template 'pi'",
            );
        }
        pi_settings(s, &path.field("settings"), errs);
    }
}

fn pi_settings(s: &PiSettings, path: &FieldPath, errs: &mut ValidationErrors) {
    if let Some(url) = &s.base_url
        && let Err(m) = check_http_url(url)
    {
        errs.push(
            &path.field("baseUrl"),
            format!("pi settings base_url must be an absolute URL: {m}"),
        );
    }
    if s.api_key.is_some() && s.api_key_from.is_some() {
        errs.push(
            &path.field("apiKeyFrom"),
            "apiKey and apiKeyFrom are mutually exclusive: set a literal apiKey or a secret apiKeyFrom, not both",
        );
    }
    if let Some(src) = &s.api_key_from {
        secret_source(src, &path.field("apiKeyFrom"), PolicyContext::Bottle, errs);
    }
    if let Some(models) = &s.models {
        let mut seen = BTreeSet::new();
        for (i, m) in models.iter().enumerate() {
            if m.trim().is_empty() {
                errs.push(
                    &path.field("models").index(i),
                    "must be a non-empty model id",
                );
            } else if !seen.insert(m.as_str()) {
                errs.push(
                    &path.field("models").index(i),
                    format!("duplicate model '{m}'"),
                );
            }
        }
    }
    if let Some(f) = &s.max_tokens_field
        && !MAX_TOKENS_FIELDS.contains(&f.as_str())
    {
        errs.push(
            &path.field("maxTokensField"),
            format!(
                "unsupported value \"{f}\"; supported values: {}",
                list(MAX_TOKENS_FIELDS)
            ),
        );
    }
}

fn env_vars(env: &[EnvVar], path: &FieldPath, errs: &mut ValidationErrors) {
    let mut seen = BTreeSet::new();
    for (i, e) in env.iter().enumerate() {
        let p = path.index(i);
        if let Err(m) = check_env_name(&e.name) {
            errs.push(&p.field("name"), m);
        } else if !seen.insert(e.name.as_str()) {
            errs.push(&p.field("name"), format!("duplicate env name '{}'", e.name));
        }
        match (&e.value, &e.value_from) {
            (Some(_), Some(_)) => errs.push(
                &p.field("valueFrom"),
                "value and valueFrom are mutually exclusive: a literal value or a secret source, not both",
            ),
            (None, None) => errs.push(
                &p.field("value"),
                "required value: set value (literal) or valueFrom (secretKeyRef, hostEnv or prompt)",
            ),
            _ => {}
        }
        if let Some(from) = &e.value_from {
            let fp = p.field("valueFrom");
            let set = from.set_sources();
            if set.len() != 1 {
                errs.push(
                    &fp,
                    format!(
                        "exactly one of secretKeyRef, hostEnv or prompt must be set (found {})",
                        found(&set)
                    ),
                );
            }
            if let Some(sel) = &from.secret_key_ref {
                secret_key_ref(sel, &fp.field("secretKeyRef"), errs);
            }
            if let Some(h) = &from.host_env
                && let Err(m) = check_env_name(&h.name)
            {
                errs.push(&fp.field("hostEnv").field("name"), m);
            }
        }
    }
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

fn route_dlp(dlp: &RouteDlp, path: &FieldPath, errs: &mut ValidationErrors) {
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

fn secret_source(
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

fn secret_key_ref(sel: &SecretKeySelector, path: &FieldPath, errs: &mut ValidationErrors) {
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

fn git_gate(g: &GitGateSpec, path: &FieldPath, errs: &mut ValidationErrors) {
    if let Some(u) = &g.user {
        git_user(u, &path.field("user"), errs);
    }
    let Some(repos) = &g.repos else { return };
    let name_re = repo_name_re();
    for (name, repo) in repos {
        let rp = path.field("repos").key(name);
        if name.is_empty() {
            errs.push(&rp, "repo name must not be empty");
        } else if !name_re.is_match(name) || name == "." || name == ".." {
            errs.push(
                &rp,
                format!("repo name '{name}' must match ^[A-Za-z0-9._-]+$"),
            );
        }
        if let Some(url) = &repo.url
            && let Err(m) = parse_git_upstream(url)
        {
            errs.push(&rp.field("url"), m);
        }
        if let Some(key) = &repo.key {
            repo_key(key, &rp.field("key"), errs);
        }
        if let Some(hk) = &repo.host_key {
            let mut parts = hk.split_whitespace();
            let ok = matches!((parts.next(), parts.next()), (Some(t), Some(_))
                if t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"));
            if !ok {
                errs.push(
                    &rp.field("hostKey"),
                    "must be an SSH public host key line such as 'ssh-ed25519 AAAAC3...'",
                );
            }
        }
    }
}

/// The reference checks the provider first and only then which fields it allows; an unknown
/// provider is already rejected by the schema's enum, so this starts at the field check.
fn repo_key(key: &RepoKey, path: &FieldPath, errs: &mut ValidationErrors) {
    let provider = key.provider;
    let allowed = list(provider.allowed_fields());
    let present = [
        ("path", key.path.is_some()),
        ("forgeToken", key.forge_token.is_some()),
        ("apiUrl", key.api_url.is_some()),
    ];
    for (field, is_set) in present {
        if is_set && !provider.allowed_fields().contains(&field) {
            errs.push(
                &path.field(field),
                format!(
                    "is not allowed for provider '{}'; allowed: {allowed}",
                    provider.as_str()
                ),
            );
        }
    }
    match provider {
        KeyProvider::Static => match &key.path {
            None => errs.push(
                &path.field("path"),
                "required value: provider 'static' needs the private key's path on the controller host",
            ),
            Some(p) if !(p.starts_with('/') || p.starts_with("~/")) => errs.push(
                &path.field("path"),
                format!("must be an absolute path (or start with ~/), got '{p}'"),
            ),
            _ => {}
        },
        KeyProvider::Gitea => {
            match &key.forge_token {
                None => errs.push(
                    &path.field("forgeToken"),
                    "required value: provider 'gitea' needs an API token (secretKeyRef or hostEnv)",
                ),
                Some(t) => secret_source(t, &path.field("forgeToken"), PolicyContext::Bottle, errs),
            }
            if let Some(u) = &key.api_url
                && let Err(m) = check_http_url(u)
            {
                errs.push(&path.field("apiUrl"), m);
            }
        }
    }
}

fn runtime(r: &RuntimeSpec, path: &FieldPath, errs: &mut ValidationErrors) {
    if let Some(cpu) = &r.cpu {
        match parse_quantity(cpu) {
            Err(m) => errs.push(&path.field("cpu"), m),
            Ok(q) if q.milli() == 0 => errs.push(&path.field("cpu"), "must be greater than 0"),
            Ok(_) => {}
        }
    }
    if let Some(mem) = &r.memory {
        match parse_quantity(mem) {
            Err(m) => errs.push(&path.field("memory"), m),
            Ok(q) if q.ceil_units() < 6 << 20 => errs.push(
                &path.field("memory"),
                format!("'{mem}' is below the 6Mi minimum a container engine accepts"),
            ),
            Ok(_) => {}
        }
    }
}

fn git_user(u: &GitUser, path: &FieldPath, errs: &mut ValidationErrors) {
    for (field, v) in [("name", &u.name), ("email", &u.email)] {
        if let Some(v) = v
            && v.chars().any(char::is_control)
        {
            errs.push(
                &path.field(field),
                "must not contain control characters or newlines",
            );
        }
    }
}

/// Rules of an Agent's spec.
pub fn agent_spec(spec: &AgentSpec, errs: &mut ValidationErrors) {
    let root = FieldPath::root("spec");
    if let Err(m) = check_dns_subdomain(&spec.bottle_ref.name) {
        errs.push(&root.field("bottleRef").field("name"), m);
    }
    let name_re = repo_name_re();
    let mut seen = BTreeSet::new();
    for (i, s) in spec.skills.iter().flatten().enumerate() {
        let p = root.field("skills").index(i);
        let is_path = s.starts_with('/');
        if !is_path && (!name_re.is_match(s) || s == "." || s == "..") {
            errs.push(
                &p,
                format!("'{s}' must be a skill name (letters, digits, '.', '_', '-') or an absolute host directory"),
            );
        } else if !seen.insert(s.trim_end_matches('/')) {
            errs.push(&p, format!("duplicate skill '{s}'"));
        }
    }
    if let Some(w) = &spec.workspace
        && !w.host_path.starts_with('/')
    {
        errs.push(
            &root.field("workspace").field("hostPath"),
            format!(
                "must be an absolute directory on the controller host, got '{}'",
                w.host_path
            ),
        );
    }
    if let Some(u) = &spec.git_user {
        git_user(u, &root.field("gitUser"), errs);
    }
    if let Some(label) = &spec.label {
        if label.chars().count() > 64 {
            errs.push(&root.field("label"), "must be at most 64 characters long");
        }
        if label.chars().any(char::is_control) {
            errs.push(
                &root.field("label"),
                "must not contain control characters or newlines",
            );
        }
    }
}

fn found(set: &[&str]) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.join(", ")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn repo_name_re() -> Regex {
    #[allow(clippy::unwrap_used)] // a literal pattern, covered by tests
    Regex::new(r"^[A-Za-z0-9._-]+$").unwrap()
}

pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
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
pub(crate) fn check_dns_label(s: &str) -> Result<(), String> {
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
pub(crate) fn check_dns_subdomain(s: &str) -> Result<(), String> {
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
pub(crate) fn check_host(h: &str) -> Result<(), String> {
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
            "'{h}' must not include a port; a route covers every port of its host"
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
pub(crate) fn host_key(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn check_http_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| format!("'{u}' must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_once(']')
            .map_or("", |(h, _)| h.trim_start_matches('['))
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(format!("'{u}' has no host"));
    }
    if u.chars().any(char::is_whitespace) {
        return Err(format!("'{u}' must not contain whitespace"));
    }
    Ok(())
}

/// The hostname of an absolute http(s) URL (port dropped), as the Pi provider's egress route.
pub fn url_host(u: &str) -> Option<String> {
    check_http_url(u).ok()?;
    let rest = u.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h.to_string());
    }
    host.split(':').next().map(|h| h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "api.example.com",
            "10.0.0.1",
            "::1",
            "[::1]",
            "ollama",
            "a-b.c",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://x.com",
            "x.com/a",
            "*.x.com",
            "x.com:443",
            "X.com",
            "-a.com",
            "a..b",
            "x.com.",
            "a_b.com",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_host("http://ollama:11434/v1").as_deref(),
            Some("ollama")
        );
        assert_eq!(
            url_host("https://OpenRouter.ai/api").as_deref(),
            Some("openrouter.ai")
        );
        assert_eq!(url_host("https://[::1]:8080/").as_deref(), Some("::1"));
        assert!(url_host("ollama:11434").is_none());
        assert!(url_host("http:///v1").is_none());
    }

    #[test]
    fn names() {
        assert!(check_env_name("A_1").is_ok());
        assert!(check_env_name("1A").is_err());
        assert!(check_env_name("A-B").is_err());
        assert!(check_dns_subdomain("claude.base").is_ok());
        assert!(check_dns_subdomain("Claude").is_err());
        assert!(check_dns_label("a.b").is_err());
    }
}
