//! Semantic rules the schema cannot express: cross-field constraints, formats, the reference's
//! provider and key rules. Each check appends to one error list so users see everything at once.

use std::collections::BTreeSet;

use regex::Regex;

use crate::agent::AgentSpec;
use crate::bottle::BottleSpec;
use crate::common::GitUser;
use crate::env::EnvVar;
use crate::error::{FieldPath, ValidationErrors, list};
use crate::git_gate::{GitGateSpec, KeyProvider, RepoKey, parse_git_upstream};
use crate::provider::{AgentProvider, MAX_TOKENS_FIELDS, PiSettings, ProviderTemplate};
use crate::quantity::parse_quantity;
use crate::runtime::RuntimeSpec;
pub use bb_policy::validate::{
    PolicyContext, check_dns_label, check_dns_subdomain, check_env_name, check_host, egress,
    host_key,
};
use bb_policy::validate::{found, secret_key_ref, secret_source};

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
    if let Some(d) = &spec.secret_discovery {
        for (i, e) in d.exclude.iter().enumerate() {
            let path = root.field("secretDiscovery").field("exclude").index(i);
            let rel = e.trim_matches('/');
            if rel.is_empty() {
                errs.push(&path, "must name a file or directory inside the workspace");
            } else if rel
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
            {
                errs.push(
                    &path,
                    format!("'{e}' must be a plain workspace-relative path (no '.', '..' or '//')"),
                );
            }
        }
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
    if let Some(pa) = &p.prompt_arg {
        if template != ProviderTemplate::Custom {
            errs.push(
                &path.field("promptArg"),
                format!("is only supported for template 'custom'; template '{t}' passes the prompt its own way"),
            );
        } else if let Some(m) = pa.problem() {
            errs.push(&path.field("promptArg"), m);
        }
    }
    match (template == ProviderTemplate::Plugin, &p.plugin) {
        (true, None) => errs.push(
            &path.field("plugin"),
            "required value: template 'plugin' names a harness under the runner's $BOT_BOTTLE_HOME/contrib/, e.g. plugin: aider",
        ),
        (true, Some(name)) if !is_plugin_name(name) => errs.push(
            &path.field("plugin"),
            format!("'{name}' is not a plugin directory name: lowercase letters, digits and '-', starting and ending with a letter or digit"),
        ),
        (false, Some(_)) => errs.push(
            &path.field("plugin"),
            format!("is only supported for template 'plugin', not '{t}'"),
        ),
        _ => {}
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

/// A directory name that cannot leave `contrib/`: a DNS label.
fn is_plugin_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
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
    for (k, v) in spec.runner_selector.iter().flatten() {
        let p = root.field("runnerSelector").field(k);
        if let Some(e) = crate::labels::key_error(k).or_else(|| crate::labels::value_error(v)) {
            errs.push(&p, e);
        }
    }
    if let Some(src) = &spec.source
        && let Err(m) = check_dns_subdomain(&src.agent_ref.name)
    {
        errs.push(&root.field("source").field("agentRef").field("name"), m);
    }
    if let Some(l) = &spec.lifecycle {
        let p = root.field("lifecycle");
        for (field, value) in [("idleSuspendAfter", &l.idle_suspend_after), ("ttl", &l.ttl)] {
            if let Some(v) = value
                && let Err(m) = crate::duration::parse_positive(v)
            {
                errs.push(&p.field(field), m);
            }
        }
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

fn repo_name_re() -> Regex {
    #[allow(clippy::unwrap_used)] // a literal pattern, covered by tests
    Regex::new(r"^[A-Za-z0-9._-]+$").unwrap()
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

#[cfg(test)]
mod secret_discovery_tests {
    use super::*;
    use crate::bottle::SecretDiscovery;

    fn errors(exclude: &[&str]) -> String {
        let spec = BottleSpec {
            secret_discovery: Some(SecretDiscovery {
                enabled: None,
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        };
        let mut errs = ValidationErrors::new("Bottle/b");
        bottle_spec(&spec, &mut errs);
        errs.into_result()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn exclude_paths_stay_inside_the_workspace() {
        assert_eq!(errors(&["fixtures/", "test/keys.pem", "/docs"]), "");
        let e = errors(&["ok", "../etc", "a//b", ""]);
        assert!(e.contains("spec.secretDiscovery.exclude[1]"), "{e}");
        assert!(e.contains("spec.secretDiscovery.exclude[2]"), "{e}");
        assert!(e.contains("spec.secretDiscovery.exclude[3]"), "{e}");
        assert!(!e.contains("exclude[0]"), "{e}");
    }

    #[test]
    fn a_child_sets_enabled_and_adds_excludes() {
        let parent = BottleSpec {
            secret_discovery: Some(SecretDiscovery {
                enabled: Some(false),
                exclude: vec!["a".into()],
            }),
            ..Default::default()
        };
        let child = BottleSpec {
            secret_discovery: Some(SecretDiscovery {
                enabled: Some(true),
                exclude: vec!["b".into()],
            }),
            ..Default::default()
        };
        let merged = crate::resolve::merge(&parent, &child);
        assert_eq!(
            merged.secret_discovery,
            Some(SecretDiscovery {
                enabled: Some(true),
                exclude: vec!["a".into(), "b".into()],
            })
        );
    }
}

/// The rules of an `AgentPool`: a Bottle named, a size the runner can hold, and a name that
/// leaves room for its members' suffix (`<pool>-<5 characters>` names runtime resources).
pub fn pool(name: &str, spec: &crate::pool::AgentPoolSpec, errs: &mut ValidationErrors) {
    let root = FieldPath::root("spec");
    if let Err(m) = check_dns_subdomain(&spec.bottle_ref.name) {
        errs.push(&root.field("bottleRef").field("name"), m);
    }
    if !(0..=crate::pool::MAX_SIZE).contains(&spec.size) {
        errs.push(
            &root.field("size"),
            format!(
                "must be between 0 and {}, got {}",
                crate::pool::MAX_SIZE,
                spec.size
            ),
        );
    }
    if let Some(n) = spec.max_starting
        && !(1..=10).contains(&n)
    {
        errs.push(
            &root.field("maxStarting"),
            format!("must be between 1 and 10, got {n}"),
        );
    }
    if name.len() > 57 {
        errs.push(
            &FieldPath::root("metadata").field("name"),
            "must be at most 57 characters long (members are named <pool>-<5 characters>)",
        );
    }
}
