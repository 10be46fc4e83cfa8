//! Import of the reference system's Markdown manifests (`bottles/*.md`, `agents/*.md`: YAML
//! frontmatter plus a body that is the agent's prompt) into `Bottle` and `Agent` objects.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::API_VERSION;
use crate::error::{FieldError, ValidationErrors};
use crate::manifest::{Resource, check_document, validate_bottle_set, yaml_documents};

/// Which directory of the reference layout a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Bottle,
    Agent,
}

/// One reference manifest file handed in by the caller (this crate does no I/O).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as the user should see it in messages.
    pub path: String,
    pub kind: ManifestKind,
    pub contents: String,
}

/// Converted objects (Bottles first, then Agents, each sorted by name) and what was ignored.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    pub resources: Vec<Resource>,
    pub warnings: Vec<String>,
}

/// Every problem found, each prefixed with its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConvertError(pub Vec<String>);

const BOTTLE_KEYS: &[&str] = &[
    "agent_provider",
    "egress",
    "env",
    "extends",
    "git-gate",
    "supervise",
];
const AGENT_KEYS: &[&str] = &["bottle", "git-gate", "skills"];
/// Claude Code sub-agent frontmatter the reference tolerated and ignored.
const AGENT_PASSTHROUGH_KEYS: &[&str] = &["color", "description", "model", "name", "tools"];
const PROVIDER_KEYS: &[&str] = &[
    "auth_token",
    "dockerfile",
    "forward_host_credentials",
    "settings",
    "template",
];
const BUILTIN_TEMPLATES: &[&str] = &["claude", "codex", "pi"];
const SETTINGS_KEYS: &[(&str, &str)] = &[
    ("api", "api"),
    ("api_key", "apiKey"),
    ("api_key_env", "apiKeyFrom"),
    ("base_url", "baseUrl"),
    ("context_window", "contextWindow"),
    ("max_tokens", "maxTokens"),
    ("max_tokens_field", "maxTokensField"),
    ("models", "models"),
    ("provider", "provider"),
    ("supports_developer_role", "supportsDeveloperRole"),
    ("supports_reasoning_effort", "supportsReasoningEffort"),
];
const ROUTE_KEYS: &[&str] = &["host", "matches", "auth", "role", "dlp", "git"];

/// The manifest name a reference file name stands for (`dev.md` → `dev`), or `None` when the
/// reference would have skipped it (names must match `[a-z][a-z0-9-]*.md`).
pub fn manifest_name(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".md")?;
    let mut bytes = stem.bytes();
    let first = bytes.next()?;
    (first.is_ascii_lowercase()
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    .then_some(stem)
}

/// Splits `---` frontmatter from the Markdown body.
pub fn split_frontmatter(text: &str) -> Result<(&str, &str), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.trim_end() == "---" => {}
        _ => return Err("missing YAML frontmatter: the file must start with a '---' line".into()),
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = start;
    for line in lines {
        if line.trim_end() == "---" {
            return Ok((&text[start..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err("unterminated YAML frontmatter: no closing '---' line".into())
}

/// Converts a set of reference files. Agents are checked against the Bottles in the same set.
/// Every problem of every file is reported at once: the reference's own rules first, then the
/// converted objects' validation (minus what the first pass already said about the same part).
pub fn convert(files: &[SourceFile]) -> Result<Converted, ConvertError> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut bottles: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut agents: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut flagged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let file_name = f.path.rsplit('/').next().unwrap_or(&f.path);
        let Some(name) = manifest_name(file_name) else {
            warnings.push(format!(
                "{}: skipped: manifest file names must match [a-z][a-z0-9-]*.md",
                f.path
            ));
            continue;
        };
        let mut problems = Problems::default();
        let obj = parse_file(f, name, &mut problems, &mut warnings);
        errors.extend(problems.errors.iter().map(|e| format!("{}: {e}", f.path)));
        let Some(obj) = obj else { continue };
        let slot = match f.kind {
            ManifestKind::Bottle => &mut bottles,
            ManifestKind::Agent => &mut agents,
        };
        if let Some((prev, _)) = slot.get(name) {
            errors.push(format!(
                "{}: {} '{name}' is also defined by {prev}",
                f.path,
                kind_word(f.kind)
            ));
            continue;
        }
        flagged.insert(f.path.clone(), problems.flagged);
        slot.insert(name.to_string(), (f.path.clone(), obj));
    }
    for (name, (path, agent)) in &agents {
        let bottle = agent
            .pointer("/spec/bottleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bottles.contains_key(bottle) {
            let available = if bottles.is_empty() {
                "(none)".to_string()
            } else {
                bottles.keys().cloned().collect::<Vec<_>>().join(", ")
            };
            errors.push(format!(
                "{path}: agent '{name}' names bottle '{bottle}' which is not defined. Available: {available}"
            ));
            flagged
                .entry(path.clone())
                .or_default()
                .push("spec.bottleRef".into());
        }
    }
    // The converted objects must pass the same validation as hand-written ones.
    let already_said = |path: &str, field: &str| {
        flagged
            .get(path)
            .is_some_and(|f| f.iter().any(|p| under(field, p)))
    };
    let mut resources = Vec::new();
    // Objects that failed the structural checks, minus the elements that failed them: still
    // checked against the set's rules, so their other problems are not hidden behind the first.
    let mut pruned = Vec::new();
    let mut removed: BTreeMap<String, Removed> = BTreeMap::new();
    let mut origin: BTreeMap<(bool, String), String> = BTreeMap::new();
    for (is_bottle, set) in [(true, &bottles), (false, &agents)] {
        for (name, (path, obj)) in set {
            origin.insert((is_bottle, name.clone()), path.clone());
            match check_document(obj, 0) {
                Ok(r) => resources.push(r),
                Err(e) => {
                    errors.extend(
                        e.errors
                            .iter()
                            .filter(|fe| !already_said(path, &fe.path.to_string()))
                            .map(|fe| format!("{path}: {} {fe}", e.object)),
                    );
                    if let Some((r, gone)) = without_failing_elements(obj, &e) {
                        removed.insert(path.clone(), gone);
                        pruned.push(r);
                    }
                }
            }
        }
    }
    let checked: Vec<Resource> = resources.iter().chain(&pruned).cloned().collect();
    for e in validate_bottle_set(&checked, &BTreeMap::new()) {
        let name = e.object.trim_start_matches("Bottle/").to_string();
        let path = origin.get(&(true, name)).cloned().unwrap_or_default();
        let gone = removed.get(&path);
        errors.extend(
            e.errors
                .iter()
                .map(|fe| FieldError {
                    path: gone.map_or(fe.path.clone(), |g| g.original(&fe.path)),
                    message: fe.message.clone(),
                })
                .filter(|fe| !already_said(&path, &fe.path))
                .map(|fe| format!("{path}: {} {fe}", e.object)),
        );
    }
    if errors.is_empty() {
        Ok(Converted {
            resources,
            warnings,
        })
    } else {
        // Grouped by file (in the order given), each file's problems in the order found.
        let order: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let rank = |e: &String| {
            order
                .iter()
                .position(|p| e.starts_with(&format!("{p}: ")))
                .unwrap_or(usize::MAX)
        };
        errors.sort_by_key(rank);
        Err(ConvertError(errors))
    }
}

/// The array elements taken out of an object, by array path (`spec.egress.routes`).
#[derive(Debug, Default)]
struct Removed(BTreeMap<String, Vec<usize>>);

impl Removed {
    /// `path` in the pruned object as it reads in the original (indices shifted back).
    fn original(&self, path: &str) -> String {
        let mut out = path.to_string();
        for (array, gone) in &self.0 {
            let prefix = format!("{array}[");
            let Some(rest) = out.strip_prefix(&prefix) else {
                continue;
            };
            let Some((n, tail)) = rest.split_once(']') else {
                continue;
            };
            let Ok(mut i) = n.parse::<usize>() else {
                continue;
            };
            for g in gone {
                if *g <= i {
                    i += 1;
                }
            }
            out = format!("{prefix}{i}]{tail}");
        }
        out
    }
}

/// `obj` without the array elements its structural errors are inside, when that passes the
/// structural checks; `None` when an error is not inside an array element.
fn without_failing_elements(obj: &Value, errs: &ValidationErrors) -> Option<(Resource, Removed)> {
    let mut gone: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for fe in &errs.errors {
        let p = fe.path.to_string();
        let open = p.rfind('[')?;
        let close = open + p[open..].find(']')?;
        let i: usize = p[open + 1..close].parse().ok()?;
        gone.entry(p[..open].to_string()).or_default().push(i);
    }
    let mut copy = obj.clone();
    for (array, idx) in &mut gone {
        idx.sort_unstable();
        idx.dedup();
        let pointer = format!("/{}", array.replace('.', "/"));
        let items = copy.pointer_mut(&pointer)?.as_array_mut()?;
        for i in idx.iter().rev() {
            (*i < items.len()).then(|| items.remove(*i))?;
        }
    }
    let r = check_document(&copy, 0).ok()?;
    Some((r, Removed(gone)))
}

fn kind_word(k: ManifestKind) -> &'static str {
    match k {
        ManifestKind::Bottle => "bottle",
        ManifestKind::Agent => "agent",
    }
}

fn parse_file(
    f: &SourceFile,
    name: &str,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    let errs = &mut problems.errors;
    let (front, body) = match split_frontmatter(&f.contents) {
        Ok(v) => v,
        Err(e) => {
            errs.push(e);
            return None;
        }
    };
    let fm = match yaml_documents(front) {
        Ok(mut docs) if docs.len() <= 1 => docs.pop().unwrap_or(Value::Object(Map::new())),
        Ok(_) => {
            errs.push("frontmatter must be a single YAML document".into());
            return None;
        }
        Err(e) => {
            errs.push(e.to_string().replace("document 1: ", "frontmatter: "));
            return None;
        }
    };
    let Value::Object(fm) = fm else {
        errs.push("frontmatter must be a YAML mapping".into());
        return None;
    };
    match f.kind {
        ManifestKind::Bottle => bottle(name, &fm, problems),
        ManifestKind::Agent => agent(name, &fm, body, problems, warnings, &f.path),
    }
}

/// What one file's conversion found wrong, in the reference's own terms.
#[derive(Debug, Default)]
struct Problems {
    errors: Vec<String>,
    /// Spec subtrees converted incompletely because of a reported problem: the converted
    /// object's own validation would only say the same thing again about them.
    flagged: Vec<String>,
}

struct Ctx<'a> {
    label: String,
    problems: &'a mut Problems,
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

impl Ctx<'_> {
    /// Marks a spec subtree as already reported (see `Problems::flagged`).
    fn flag(&mut self, spec_path: impl Into<String>) {
        self.problems.flagged.push(spec_path.into());
    }

    fn err(&mut self, what: &str, msg: impl AsRef<str>) {
        if what.is_empty() {
            let line = format!("{} {}", self.label, msg.as_ref());
            self.problems.errors.push(line);
        } else {
            let line = format!("{} {what} {}", self.label, msg.as_ref());
            self.problems.errors.push(line);
        }
    }

    fn object<'v>(&mut self, what: &str, v: &'v Value) -> Option<&'v Map<String, Value>> {
        let o = v.as_object();
        if o.is_none() {
            self.err(what, format!("must be an object (was {})", type_name(v)));
        }
        o
    }

    fn unknown_keys(&mut self, what: &str, m: &Map<String, Value>, allowed: &[&str]) {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                let mut sorted = allowed.to_vec();
                sorted.sort_unstable();
                self.err(
                    what,
                    format!("has unknown key '{k}'; allowed: {}", sorted.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, what: &str, v: &Value) -> Option<String> {
        match v.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                self.err(
                    what,
                    format!("must be a non-empty string (was {})", type_name(v)),
                );
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn host_env(name: String) -> Value {
    json!({ "hostEnv": name })
}

fn bottle(name: &str, fm: &Map<String, Value>, problems: &mut Problems) -> Option<Value> {
    let mut c = Ctx {
        label: format!("bottle '{name}'"),
        problems,
    };
    c.unknown_keys("", fm, BOTTLE_KEYS);
    let mut spec = Map::new();
    if let Some(v) = fm.get("extends")
        && let Some(s) = c.string("extends", v)
    {
        spec.insert("extends".into(), Value::String(s));
    }
    if let Some(v) = fm.get("supervise") {
        if v.is_boolean() {
            spec.insert("supervise".into(), v.clone());
        } else {
            c.err("supervise", "must be a boolean");
        }
    }
    if let Some(v) = fm.get("env")
        && let Some(m) = c.object("env", v)
    {
        let mut env = Vec::new();
        for (k, val) in m {
            let Some(s) = val.as_str() else {
                c.err(
                    &format!("env.{k}"),
                    format!("must be a string (was {})", type_name(val)),
                );
                continue;
            };
            env.push(env_entry(k, s));
        }
        spec.insert("env".into(), Value::Array(env));
    }
    if let Some(v) = fm.get("agent_provider") {
        match c.object("agent_provider", v) {
            Some(p) => {
                let p = provider(p, &mut c);
                spec.insert("agentProvider".into(), p);
            }
            None => c.flag("spec.agentProvider"),
        }
    }
    if let Some(v) = fm.get("git-gate")
        && let Some(g) = c.object("git-gate", v)
    {
        c.unknown_keys("git-gate", g, &["user", "repos"]);
        let mut out = Map::new();
        if let Some(u) = g.get("user") {
            out.insert("user".into(), git_user(u, &mut c));
        }
        if let Some(r) = g.get("repos")
            && let Some(repos) = c.object("git-gate.repos", r)
        {
            let mut conv = Map::new();
            for (rname, entry) in repos {
                conv.insert(rname.clone(), repo(rname, entry, &mut c));
            }
            out.insert("repos".into(), Value::Object(conv));
        }
        spec.insert("gitGate".into(), Value::Object(out));
    }
    if let Some(v) = fm.get("egress")
        && let Some(e) = c.object("egress", v)
    {
        c.unknown_keys("egress", e, &["log", "routes"]);
        let mut out = Map::new();
        if let Some(l) = e.get("log") {
            out.insert("log".into(), l.clone());
        }
        if let Some(r) = e.get("routes") {
            match r.as_array() {
                None => c.err(
                    "egress.routes",
                    format!("must be an array (was {})", type_name(r)),
                ),
                Some(routes) => {
                    let conv = routes
                        .iter()
                        .enumerate()
                        .map(|(i, r)| route(i, r, &mut c))
                        .collect();
                    out.insert("routes".into(), Value::Array(conv));
                }
            }
        }
        spec.insert("egress".into(), Value::Object(out));
    }
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "Bottle",
        "metadata": { "name": name },
        "spec": spec,
    }))
}

/// Reference env values: `?text` is prompted, `$VAR` / `${VAR}` is read from the host, anything
/// else is a literal.
fn env_entry(name: &str, value: &str) -> Value {
    if let Some(msg) = value.strip_prefix('?') {
        let msg = msg.trim();
        return if msg.is_empty() {
            json!({ "name": name, "valueFrom": { "prompt": {} } })
        } else {
            json!({ "name": name, "valueFrom": { "prompt": { "message": msg } } })
        };
    }
    let var = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'));
    match var {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            json!({ "name": name, "valueFrom": { "hostEnv": { "name": v } } })
        }
        _ => json!({ "name": name, "value": value }),
    }
}

fn provider(p: &Map<String, Value>, c: &mut Ctx<'_>) -> Value {
    c.unknown_keys("agent_provider", p, PROVIDER_KEYS);
    let mut out = Map::new();
    let template = match p.get("template") {
        None => None,
        Some(v) => c.string("agent_provider.template", v),
    };
    match template.as_deref() {
        Some(t) if BUILTIN_TEMPLATES.contains(&t) => {
            out.insert("template".into(), Value::String(t.into()));
        }
        // A contrib template was a Dockerfile under ~/.bot-bottle/contrib/<template>/ whose
        // command was the template name; that is exactly a custom provider.
        Some(t) => {
            out.insert("template".into(), json!("custom"));
            if !p.contains_key("dockerfile") {
                out.insert(
                    "dockerfile".into(),
                    Value::String(format!("~/.bot-bottle/contrib/{t}/Dockerfile")),
                );
            }
            out.insert("command".into(), json!([t]));
        }
        None => {}
    }
    if let Some(v) = p.get("dockerfile") {
        out.insert("dockerfile".into(), v.clone());
    }
    if let Some(v) = p.get("auth_token")
        && let Some(s) = c.string("agent_provider.auth_token", v)
    {
        out.insert("authToken".into(), host_env(s));
    }
    if let Some(v) = p.get("forward_host_credentials") {
        out.insert("forwardHostCredentials".into(), v.clone());
    }
    if let Some(v) = p.get("settings")
        && let Some(s) = c.object("agent_provider.settings", v)
    {
        let allowed: Vec<&str> = SETTINGS_KEYS.iter().map(|(k, _)| *k).collect();
        c.unknown_keys("agent_provider.settings", s, &allowed);
        let mut conv = Map::new();
        for (k, v) in s {
            let Some((_, camel)) = SETTINGS_KEYS.iter().find(|(r, _)| r == k) else {
                continue;
            };
            if *k == "api_key_env" {
                if let Some(name) = c.string("agent_provider.settings.api_key_env", v) {
                    conv.insert((*camel).into(), host_env(name));
                }
            } else {
                conv.insert((*camel).into(), v.clone());
            }
        }
        out.insert("settings".into(), Value::Object(conv));
    }
    Value::Object(out)
}

fn git_user(u: &Value, c: &mut Ctx<'_>) -> Value {
    let Some(m) = c.object("git-gate.user", u) else {
        return json!({});
    };
    c.unknown_keys("git-gate.user", m, &["name", "email"]);
    let mut out = Map::new();
    for k in ["name", "email"] {
        if let Some(v) = m.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn repo(name: &str, entry: &Value, c: &mut Ctx<'_>) -> Value {
    let what = format!("git-gate.repos['{name}']");
    let Some(e) = c.object(&what, entry) else {
        return json!({});
    };
    for k in e.keys() {
        if !["url", "key", "host_key"].contains(&k.as_str()) {
            c.err(
                &what,
                format!("has unknown key '{k}'; allowed: url, key, host_key"),
            );
        }
    }
    let mut out = Map::new();
    if let Some(v) = e.get("url") {
        out.insert("url".into(), v.clone());
    }
    if let Some(v) = e.get("host_key") {
        out.insert("hostKey".into(), v.clone());
    }
    if let Some(k) = e.get("key") {
        let kwhat = format!("{what} key");
        match c.object(&kwhat, k) {
            Some(km) => {
                let key = repo_key(&kwhat, km, c);
                out.insert("key".into(), key);
            }
            None => c.flag(format!("spec.gitGate.repos[{name}].key")),
        }
    }
    Value::Object(out)
}

/// `NAME` of a `git-gate.repos['NAME'] key` label.
fn repo_name(what: &str) -> &str {
    what.split("['")
        .nth(1)
        .and_then(|r| r.split("']").next())
        .unwrap_or("")
}

/// The reference checks the provider before the keys it allows; so does this.
fn repo_key(what: &str, k: &Map<String, Value>, c: &mut Ctx<'_>) -> Value {
    let provider = match k.get("provider") {
        None => {
            c.err(what, "missing required string field 'provider'");
            c.flag(format!("spec.gitGate.repos[{}].key", repo_name(what)));
            return json!({});
        }
        Some(v) => match c.string(&format!("{what}.provider"), v) {
            Some(p) => p,
            None => {
                c.flag(format!("spec.gitGate.repos[{}].key", repo_name(what)));
                return json!({});
            }
        },
    };
    let allowed: &[&str] = match provider.as_str() {
        "static" => &["provider", "path"],
        "gitea" => &["provider", "forge_token_env", "api_url"],
        other => {
            c.err(
                what,
                format!("provider '{other}' is unknown; allowed: gitea, static"),
            );
            c.flag(format!("spec.gitGate.repos[{}].key", repo_name(what)));
            return json!({ "provider": other });
        }
    };
    for key in k.keys() {
        if !allowed.contains(&key.as_str()) {
            c.err(
                what,
                format!(
                    "has unknown key '{key}' for provider '{provider}'; allowed: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
    // Only the keys this provider allows are carried over: the others were reported above.
    let mut out = Map::new();
    out.insert("provider".into(), Value::String(provider.clone()));
    if let Some(v) = k.get("path").filter(|_| allowed.contains(&"path")) {
        out.insert("path".into(), v.clone());
    }
    if let Some(v) = k.get("api_url").filter(|_| allowed.contains(&"api_url")) {
        out.insert("apiUrl".into(), v.clone());
    }
    if let Some(v) = k
        .get("forge_token_env")
        .filter(|_| allowed.contains(&"forge_token_env"))
        && let Some(s) = c.string(&format!("{what}.forge_token_env"), v)
    {
        out.insert("forgeToken".into(), host_env(s));
    }
    Value::Object(out)
}

fn route(i: usize, r: &Value, c: &mut Ctx<'_>) -> Value {
    let what = format!("egress.routes[{i}]");
    let Some(m) = c.object(&what, r) else {
        return json!({});
    };
    for k in m.keys() {
        if !ROUTE_KEYS.contains(&k.as_str()) {
            c.err(
                &what,
                format!("has unknown key '{k}'; accepted keys are 'host', 'matches', 'auth', 'role', 'dlp', 'git'"),
            );
        }
    }
    if m.contains_key("role") {
        c.err(
            &what,
            "role is reserved for future use; any value is rejected",
        );
    }
    let mut out = Map::new();
    for k in ["host", "matches", "git"] {
        if let Some(v) = m.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(a) = m.get("auth")
        && let Some(am) = c.object(&format!("{what} auth"), a)
    {
        c.unknown_keys(&format!("{what} auth"), am, &["scheme", "token_ref"]);
        let mut auth = Map::new();
        if let Some(s) = am.get("scheme") {
            auth.insert("scheme".into(), s.clone());
        }
        match am.get("token_ref") {
            Some(t) => {
                if let Some(name) = c.string(&format!("{what} auth.token_ref"), t) {
                    auth.insert("hostEnv".into(), Value::String(name));
                }
            }
            None => {
                c.err(
                    &format!("{what} auth"),
                    "missing required field 'token_ref'",
                );
                c.flag(format!("spec.egress.routes[{i}].auth"));
            }
        }
        out.insert("auth".into(), Value::Object(auth));
    }
    if let Some(d) = m.get("dlp")
        && let Some(dm) = c.object(&format!("{what} dlp"), d)
    {
        c.unknown_keys(
            &format!("{what} dlp"),
            dm,
            &["outbound_detectors", "inbound_detectors"],
        );
        let mut dlp = Map::new();
        if let Some(v) = dm.get("outbound_detectors") {
            dlp.insert("outbound".into(), v.clone());
        }
        if let Some(v) = dm.get("inbound_detectors") {
            dlp.insert("inbound".into(), v.clone());
        }
        out.insert("dlp".into(), Value::Object(dlp));
    }
    Value::Object(out)
}

fn agent(
    name: &str,
    fm: &Map<String, Value>,
    body: &str,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
    path: &str,
) -> Option<Value> {
    let mut c = Ctx {
        label: format!("agent '{name}'"),
        problems,
    };
    let mut all_allowed: Vec<&str> = AGENT_KEYS.to_vec();
    all_allowed.extend(AGENT_PASSTHROUGH_KEYS);
    for k in fm.keys() {
        if !all_allowed.contains(&k.as_str()) {
            c.err(
                "",
                format!("has unknown key '{k}'; allowed: {}", AGENT_KEYS.join(", ")),
            );
        } else if AGENT_PASSTHROUGH_KEYS.contains(&k.as_str()) {
            warnings.push(format!("{path}: ignored Claude Code frontmatter key '{k}'"));
        }
    }
    let bottle = match fm.get("bottle") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            c.err("", "must declare a 'bottle' field naming a defined bottle");
            return None;
        }
    };
    let mut spec = Map::new();
    spec.insert("bottleRef".into(), json!({ "name": bottle }));
    let prompt = body.trim();
    if !prompt.is_empty() {
        spec.insert("prompt".into(), Value::String(prompt.to_string()));
    }
    if let Some(s) = fm.get("skills") {
        if s.is_array() {
            spec.insert("skills".into(), s.clone());
        } else {
            c.err("skills", format!("must be an array (was {})", type_name(s)));
        }
    }
    if let Some(g) = fm.get("git-gate")
        && let Some(gm) = c.object("git-gate", g)
    {
        if gm.contains_key("repos") {
            c.err(
                "git-gate.repos",
                "is not allowed in an agent: repos are bottle-only (they carry credentials and host trust)",
            );
        }
        c.unknown_keys("git-gate", gm, &["user", "repos"]);
        if let Some(u) = gm.get("user") {
            spec.insert("gitUser".into(), git_user(u, &mut c));
        }
    }
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "Agent",
        "metadata": { "name": name },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, kind: ManifestKind, contents: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            kind,
            contents: contents.into(),
        }
    }

    #[test]
    fn names_and_frontmatter() {
        assert_eq!(manifest_name("dev.md"), Some("dev"));
        assert_eq!(manifest_name("Dev.md"), None);
        assert_eq!(manifest_name("1a.md"), None);
        assert_eq!(manifest_name("a_b.md"), None);
        assert_eq!(
            split_frontmatter("---\na: 1\n---\nbody\n"),
            Ok(("a: 1\n", "body\n"))
        );
        assert!(split_frontmatter("a: 1\n").is_err());
        assert!(split_frontmatter("---\na: 1\n").is_err());
    }

    #[test]
    fn env_forms() {
        assert_eq!(env_entry("A", "lit"), json!({"name": "A", "value": "lit"}));
        assert_eq!(
            env_entry("A", "${HOME_X}"),
            json!({"name": "A", "valueFrom": {"hostEnv": {"name": "HOME_X"}}})
        );
        assert_eq!(
            env_entry("A", "$X"),
            json!({"name": "A", "valueFrom": {"hostEnv": {"name": "X"}}})
        );
        assert_eq!(
            env_entry("A", "?Your key"),
            json!({"name": "A", "valueFrom": {"prompt": {"message": "Your key"}}})
        );
        assert_eq!(
            env_entry("A", "$ not a var"),
            json!({"name": "A", "value": "$ not a var"})
        );
    }

    #[test]
    fn reference_errors() {
        let bad = [
            file(
                "b/x.md",
                ManifestKind::Bottle,
                "---\nbogus: 1\negress:\n  routes:\n    - host: a.com\n      role: x\n---\n",
            ),
            file(
                "b/y.md",
                ManifestKind::Bottle,
                "---\ngit-gate:\n  repos:\n    r:\n      url: git@h:o/r.git\n      key: {provider: gitea, path: /k, forge_token_env: T}\n---\n",
            ),
            file(
                "b/z.md",
                ManifestKind::Bottle,
                "---\ngit-gate:\n  repos:\n    r:\n      url: git@h:o/r.git\n      key: {provider: vault, bogus: 1}\n---\n",
            ),
            file(
                "a/q.md",
                ManifestKind::Agent,
                "---\nbottle: nope\ngit-gate: {repos: {}}\n---\nhi\n",
            ),
        ];
        let e = convert(&bad).expect_err("invalid").0;
        assert_eq!(
            e,
            vec![
                "b/x.md: bottle 'x' has unknown key 'bogus'; allowed: agent_provider, egress, env, extends, git-gate, supervise",
                "b/x.md: bottle 'x' egress.routes[0] role is reserved for future use; any value is rejected",
                "b/y.md: bottle 'y' git-gate.repos['r'] key has unknown key 'path' for provider 'gitea'; allowed: provider, forge_token_env, api_url",
                "b/z.md: bottle 'z' git-gate.repos['r'] key provider 'vault' is unknown; allowed: gitea, static",
                "a/q.md: agent 'q' git-gate.repos is not allowed in an agent: repos are bottle-only (they carry credentials and host trust)",
                "a/q.md: agent 'q' names bottle 'nope' which is not defined. Available: x, y, z",
            ]
        );
    }

    #[test]
    fn duplicate_keys_in_frontmatter() {
        let e = convert(&[file(
            "b/x.md",
            ManifestKind::Bottle,
            "---\nsupervise: true\nsupervise: false\n---\n",
        )])
        .expect_err("dup")
        .0;
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("b/x.md: frontmatter: invalid YAML: ") && e[0].contains("duplicate"),
            "{e:?}"
        );
    }
}
