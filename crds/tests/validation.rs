//! Table-driven spec of every validation rule: each case is a manifest and the exact errors
//! (path and message) it must produce, in order. Valid cases must produce none.

use bb_crds::manifest::{ManifestError, parse_resources};

fn bottle(spec: &str) -> String {
    format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {{name: b}}\nspec:\n{}",
        indent(spec)
    )
}

fn agent(spec: &str) -> String {
    format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: a}}\nspec:\n{}",
        indent(spec)
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// `path: message` for every error, in order.
fn errors(text: &str) -> Vec<String> {
    match parse_resources(text) {
        Ok(_) => vec![],
        Err(ManifestError::Invalid(all)) => all
            .iter()
            .flat_map(|e| e.errors.iter().map(|f| f.to_string()))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[track_caller]
fn case(text: String, want: &[&str]) {
    let got = errors(&text);
    assert_eq!(got, want, "\nmanifest:\n{text}");
}

#[test]
fn unknown_fields_are_rejected_everywhere() {
    case(
        bottle("bogus: 1"),
        &[
            "spec.bogus: unknown field; allowed: agentProvider, egress, env, extends, gitGate, runtime, secretDiscovery, supervise",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, role: x}]}"),
        &[
            "spec.egress.routes[0].role: unknown field; allowed: allowPrivateAddresses, auth, dlp, git, host, matches, plainHttp, ports",
        ],
    );
    case(
        bottle(
            "egress: {routes: [{host: a.com, matches: [{paths: [{value: /, kind: x}], query: 1}]}]}",
        ),
        &[
            "spec.egress.routes[0].matches[0].paths[0].kind: unknown field; allowed: type, value",
            "spec.egress.routes[0].matches[0].query: unknown field; allowed: headers, methods, paths",
        ],
    );
    case(
        bottle(
            "gitGate: {repos: {r: {url: 'git@h:o/r.git', key: {provider: static, path: /k, extra: 1}, identity: /x}}}",
        ),
        &[
            "spec.gitGate.repos[r].identity: unknown field; allowed: hostKey, key, url",
            "spec.gitGate.repos[r].key.extra: unknown field; allowed: apiUrl, forgeToken, path, provider",
        ],
    );
    case(
        bottle("agentProvider: {settings: {api_key_env: X}, template: pi}"),
        &[
            "spec.agentProvider.settings.api_key_env: unknown field; allowed: api, apiKey, apiKeyFrom, baseUrl, contextWindow, maxTokens, maxTokensField, models, provider, supportsDeveloperRole, supportsReasoningEffort",
        ],
    );
    case(
        agent("bottleRef: {name: b}\nworkspace: {hostPath: /w, mount: true}"),
        &["spec.workspace.mount: unknown field; allowed: copy, hostPath, includeGit"],
    );
    case(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {bottleRef: {name: b}}\nextra: 1\n".into(),
        &["extra: unknown field; allowed: apiVersion, kind, metadata, spec, status"],
    );
}

#[test]
fn types_enums_and_ranges_come_from_the_schema() {
    case(
        bottle("supervise: 'yes'"),
        &["spec.supervise: must be of type boolean, got string"],
    );
    case(
        bottle("egress: {log: 3}"),
        &["spec.egress.log: must be less than or equal to 2"],
    );
    case(
        bottle("egress: {log: -1}"),
        &["spec.egress.log: must be greater than or equal to 0"],
    );
    case(
        bottle("agentProvider: {template: gpt}"),
        &[
            "spec.agentProvider.template: unsupported value \"gpt\"; supported values: \"claude\", \"codex\", \"pi\", \"custom\", \"plugin\"",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, auth: {scheme: basic, hostEnv: T}}]}"),
        &[
            "spec.egress.routes[0].auth.scheme: unsupported value \"basic\"; supported values: \"Bearer\", \"token\"",
        ],
    );
    case(
        bottle(
            "egress: {routes: [{host: a.com, matches: [{paths: [{type: glob, value: /x}], headers: [{name: A, value: b, type: prefix}]}]}]}",
        ),
        &[
            "spec.egress.routes[0].matches[0].headers[0].type: unsupported value \"prefix\"; supported values: \"exact\", \"regex\"",
            "spec.egress.routes[0].matches[0].paths[0].type: unsupported value \"glob\"; supported values: \"prefix\", \"exact\", \"regex\"",
        ],
    );
    case(
        bottle("egress: {routes: [{}]}"),
        &["spec.egress.routes[0].host: required value"],
    );
    case(
        bottle("egress: {routes: [{host: ''}]}"),
        &["spec.egress.routes[0].host: must not be empty"],
    );
    case(
        bottle("gitGate: {repos: {r: {url: 'git@h:o/r.git', key: {provider: vault}}}}"),
        &[
            "spec.gitGate.repos[r].key.provider: unsupported value \"vault\"; supported values: \"static\", \"gitea\"",
        ],
    );
    case(
        bottle("runtime: {gvisor: maybe, pids: 0}"),
        &[
            "spec.runtime.gvisor: unsupported value \"maybe\"; supported values: \"auto\", \"required\", \"off\"",
            "spec.runtime.pids: must be greater than or equal to 1",
        ],
    );
    case(
        agent("bottleRef: {name: b}\ncolor: cyan"),
        &[
            "spec.color: unsupported value \"cyan\"; supported values: \"red\", \"green\", \"yellow\", \"blue\", \"magenta\"",
        ],
    );
    case(
        agent("bottleRef: {name: b}\nbackend: podman"),
        &[
            "spec.backend: unsupported value \"podman\"; supported values: \"auto\", \"docker\", \"apple-container\", \"smolvm\"",
        ],
    );
    case(agent("prompt: hi"), &["spec.bottleRef: required value"]);
}

#[test]
fn agent_provider_rules_in_reference_order() {
    case(
        bottle(
            "agentProvider: {template: codex, settings: {models: [m]}, forwardHostCredentials: true}",
        ),
        &["spec.agentProvider.settings: is only supported for template 'pi'"],
    );
    case(
        bottle("agentProvider: {template: claude, forwardHostCredentials: true}"),
        &[
            "spec.agentProvider.forwardHostCredentials: is currently only supported for template 'codex'",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, authToken: {hostEnv: T}}"),
        &[
            "spec.agentProvider.authToken: is only supported for template 'claude'; template 'pi' does not use it (use settings.apiKeyFrom)",
        ],
    );
    case(
        bottle("agentProvider: {image: x:1, command: [x]}"),
        &[
            "spec.agentProvider.image: is only supported for template 'custom'; template 'claude' builds its own image (set dockerfile to override it)",
            "spec.agentProvider.command: is only supported for template 'custom'; template 'claude' runs 'claude'",
        ],
    );
    case(
        bottle("agentProvider: {template: claude, promptArg: {flag: -p}}"),
        &[
            "spec.agentProvider.promptArg: is only supported for template 'custom'; template 'claude' passes the prompt its own way",
        ],
    );
    case(
        bottle(
            "agentProvider: {template: custom, image: h:1, command: [h], promptArg: {flag: -p, argument: x}}",
        ),
        &["spec.agentProvider.promptArg: set flag or argument, not both"],
    );
    // A host file is a source only a provider may name (a forwarded login); a manifest that
    // tries is refused, on the provider's token and on a route's.
    case(
        bottle("agentProvider: {template: claude, authToken: {hostJson: {path: /etc/shadow}}}"),
        &[
            "spec.agentProvider.authToken.hostJson: unknown field; allowed: hostEnv, secretKeyRef, tokenFile",
        ],
    );
    case(
        bottle(
            "egress: {routes: [{host: a.test, auth: {scheme: Bearer, hostJson: {path: /root/.codex/auth.json}}}]}",
        ),
        &[
            "spec.egress.routes[0].auth.hostJson: unknown field; allowed: allowPlaintext, hostEnv, scheme, secretKeyRef, tokenFile",
        ],
    );
    case(
        bottle("agentProvider: {template: plugin}"),
        &[
            "spec.agentProvider.plugin: required value: template 'plugin' names a harness under the runner's $BOT_BOTTLE_HOME/contrib/, e.g. plugin: aider",
        ],
    );
    case(
        bottle("agentProvider: {template: plugin, plugin: ../etc}"),
        &[
            "spec.agentProvider.plugin: '../etc' is not a plugin directory name: lowercase letters, digits and '-', starting and ending with a letter or digit",
        ],
    );
    case(
        bottle("agentProvider: {template: claude, plugin: aider}"),
        &["spec.agentProvider.plugin: is only supported for template 'plugin', not 'claude'"],
    );
    case(
        bottle("agentProvider: {template: custom}"),
        &[
            "spec.agentProvider.image: template 'custom' needs an image or a dockerfile",
            "spec.agentProvider.command: required value: template 'custom' needs the command a session runs, e.g. [bash]",
        ],
    );
    case(
        bottle(
            "agentProvider: {template: custom, image: a:1, dockerfile: /d, command: [bash, '']}",
        ),
        &[
            "spec.agentProvider.image: template 'custom' takes exactly one of image or dockerfile, not both",
            "spec.agentProvider.command[1]: must not be empty",
        ],
    );
    case(
        bottle("agentProvider: {template: custom, image: a:1, command: [bash]}"),
        &[],
    );
    case(
        bottle("agentProvider: {template: claude, authToken: {}}"),
        &[
            "spec.agentProvider.authToken: exactly one of secretKeyRef or hostEnv must be set (found none)",
        ],
    );
    case(
        bottle(
            "agentProvider: {template: claude, authToken: {hostEnv: T, secretKeyRef: {name: s, key: k}}}",
        ),
        &[
            "spec.agentProvider.authToken: exactly one of secretKeyRef or hostEnv must be set (found secretKeyRef, hostEnv)",
        ],
    );
    case(
        bottle("agentProvider: {template: claude, authToken: {tokenFile: t}}"),
        &[
            "spec.agentProvider.authToken.tokenFile: is only valid in the sidecar's resolved policy; in a Bottle use secretKeyRef or hostEnv",
        ],
    );
}

#[test]
fn pi_settings_rules() {
    case(
        bottle("agentProvider: {template: pi, settings: {apiKey: k, apiKeyFrom: {hostEnv: K}}}"),
        &[
            "spec.agentProvider.settings.apiKeyFrom: apiKey and apiKeyFrom are mutually exclusive: set a literal apiKey or a secret apiKeyFrom, not both",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {models: []}}"),
        &["spec.agentProvider.settings.models: must have at least 1 item"],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {models: [a, '', a]}}"),
        &[
            "spec.agentProvider.settings.models[1]: must be a non-empty model id",
            "spec.agentProvider.settings.models[2]: duplicate model 'a'",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {contextWindow: 0, maxTokens: true}}"),
        &[
            "spec.agentProvider.settings.contextWindow: must be greater than or equal to 1",
            "spec.agentProvider.settings.maxTokens: must be of type integer, got boolean",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {maxTokensField: tokens}}"),
        &[
            "spec.agentProvider.settings.maxTokensField: unsupported value \"tokens\"; supported values: max_tokens, max_completion_tokens",
        ],
    );
    case(
        bottle(
            "agentProvider: {template: pi, settings: {baseUrl: 'ollama:11434', supportsDeveloperRole: 1}}",
        ),
        &[
            "spec.agentProvider.settings.supportsDeveloperRole: must be of type boolean, got integer",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {baseUrl: 'ollama:11434'}}"),
        &[
            "spec.agentProvider.settings.baseUrl: pi settings base_url must be an absolute URL: 'ollama:11434' must start with http:// or https://",
        ],
    );
    case(
        bottle("agentProvider: {template: pi, settings: {provider: ''}}"),
        &["spec.agentProvider.settings.provider: must not be empty"],
    );
}

#[test]
fn env_rules() {
    case(
        bottle("env: [{name: A, value: x}, {name: A, value: y}]"),
        &["spec.env[1].name: duplicate env name 'A'"],
    );
    case(
        bottle("env: [{name: 1A, value: x}]"),
        &[
            "spec.env[0].name: '1A' is not a valid environment variable name: use letters, digits and '_', not starting with a digit",
        ],
    );
    case(
        bottle("env: [{name: A}]"),
        &[
            "spec.env[0].value: required value: set value (literal) or valueFrom (secretKeyRef, hostEnv or prompt)",
        ],
    );
    case(
        bottle("env: [{name: A, value: x, valueFrom: {prompt: {}}}]"),
        &[
            "spec.env[0].valueFrom: value and valueFrom are mutually exclusive: a literal value or a secret source, not both",
        ],
    );
    case(
        bottle("env: [{name: A, valueFrom: {}}]"),
        &[
            "spec.env[0].valueFrom: exactly one of secretKeyRef, hostEnv or prompt must be set (found none)",
        ],
    );
    case(
        bottle(
            "env: [{name: A, valueFrom: {hostEnv: {name: 'B-C'}, secretKeyRef: {name: S, key: 'k/1'}}}]",
        ),
        &[
            "spec.env[0].valueFrom: exactly one of secretKeyRef, hostEnv or prompt must be set (found secretKeyRef, hostEnv)",
            "spec.env[0].valueFrom.secretKeyRef.name: 'S' must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            "spec.env[0].valueFrom.secretKeyRef.key: a Secret key may only hold letters, digits, '-', '_' and '.'",
            "spec.env[0].valueFrom.hostEnv.name: 'B-C' is not a valid environment variable name: use letters, digits and '_', not starting with a digit",
        ],
    );
    case(
        bottle("env: [{name: A, value: ''}, {name: B, valueFrom: {prompt: {message: hi}}}]"),
        &[],
    );
}

#[test]
fn egress_route_rules() {
    case(
        bottle(
            "egress: {routes: [{host: 'https://a.com'}, {host: 'a.com:443'}, {host: A.com}, {host: '*.a.com'}, {host: a.com/x}]}",
        ),
        &[
            "spec.egress.routes[0].host: 'https://a.com' must be a bare hostname without a scheme, e.g. 'api.example.com'",
            "spec.egress.routes[1].host: 'a.com:443' must not include a port; list ports in the route's `ports` (default [443], or [80] with plainHttp)",
            "spec.egress.routes[2].host: 'A.com' must be lowercase ('a.com')",
            "spec.egress.routes[3].host: '*.a.com': wildcards are not supported; list each host as its own route",
            "spec.egress.routes[4].host: 'a.com/x' must be a bare hostname without a path; use matches[].paths to restrict paths",
        ],
    );
    case(
        bottle(
            "egress: {routes: [{host: a.com, matches: [{paths: [{value: api}, {type: exact, value: x}, {type: regex, value: '(' }]}]}]}",
        ),
        &[
            "spec.egress.routes[0].matches[0].paths[0].value: a prefix path must start with '/' (got 'api')",
            "spec.egress.routes[0].matches[0].paths[1].value: an exact path must start with '/' (got 'x')",
            "spec.egress.routes[0].matches[0].paths[2].value: invalid regular expression: regex parse error: ( ^ error: unclosed group",
        ],
    );
    case(
        bottle(
            "egress: {routes: [{host: a.com, matches: [{methods: [GET, get, 'PO ST'], headers: [{name: 'X Y', value: v}, {name: X, value: '[', type: regex}]}]}]}",
        ),
        &[
            "spec.egress.routes[0].matches[0].methods[1]: duplicate method 'get'",
            "spec.egress.routes[0].matches[0].methods[2]: 'PO ST' is not an HTTP method such as GET or POST",
            "spec.egress.routes[0].matches[0].headers[0].name: 'X Y' is not a valid header name",
            "spec.egress.routes[0].matches[0].headers[1].value: invalid regular expression: regex parse error: [ ^ error: unclosed character class",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, auth: {scheme: Bearer}}]}"),
        &[
            "spec.egress.routes[0].auth: exactly one of secretKeyRef or hostEnv must be set (found none)",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, git: {fetch: 'yes'}}]}"),
        &["spec.egress.routes[0].git.fetch: must be of type boolean, got string"],
    );
    case(
        bottle(
            "egress: {routes: [{host: 10.0.0.1}, {host: '::1'}, {host: a.com, git: {fetch: true}, auth: {scheme: token, hostEnv: T}}]}",
        ),
        &[],
    );
}

#[test]
fn dlp_rules() {
    case(
        bottle(
            "egress: {routes: [{host: a.com, dlp: {outbound: [token_patterns, naive_injection_detection, token_patterns], inbound: [known_secrets]}}]}",
        ),
        &[
            "spec.egress.routes[0].dlp.outbound[1]: unknown outbound detector 'naive_injection_detection'; allowed: token_patterns, known_secrets",
            "spec.egress.routes[0].dlp.outbound[2]: duplicate detector 'token_patterns'",
            "spec.egress.routes[0].dlp.inbound[0]: unknown inbound detector 'known_secrets'; allowed: naive_injection_detection",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, dlp: {outbound: true}}]}"),
        &[
            "spec.egress.routes[0].dlp.outbound: must be false or a list of detector names (token_patterns, known_secrets); omit it to keep every detector on",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, dlp: {outbound: 'all'}}]}"),
        &[
            "spec.egress.routes[0].dlp.outbound: data did not match any variant of untagged enum DetectorSelection",
        ],
    );
    case(
        bottle("egress: {routes: [{host: a.com, dlp: {outbound: false, inbound: []}}]}"),
        &[],
    );
}

#[test]
fn git_gate_rules() {
    case(
        bottle(
            "gitGate: {repos: {'bad name': {url: 'git@h:o/r.git', key: {provider: static, path: /k}}}}",
        ),
        &["spec.gitGate.repos[bad name]: repo name 'bad name' must match ^[A-Za-z0-9._-]+$"],
    );
    case(
        bottle("gitGate: {repos: {'': {url: 'git@h:o/r.git', key: {provider: static, path: /k}}}}"),
        &["spec.gitGate.repos[]: repo name must not be empty"],
    );
    case(
        bottle(
            "gitGate: {repos: {r: {url: 'https://h/o/r.git', key: {provider: static, path: k}}}}",
        ),
        &[
            "spec.gitGate.repos[r].url: scheme is not ssh; expected an SSH remote such as git@host:owner/repo.git or ssh://git@host:22/owner/repo.git",
            "spec.gitGate.repos[r].key.path: must be an absolute path (or start with ~/), got 'k'",
        ],
    );
    case(
        bottle(
            "gitGate: {repos: {r: {url: 'git@h:o/r.git', key: {provider: static, apiUrl: 'https://h', forgeToken: {hostEnv: T}}}}}",
        ),
        &[
            "spec.gitGate.repos[r].key.forgeToken: is not allowed for provider 'static'; allowed: provider, path",
            "spec.gitGate.repos[r].key.apiUrl: is not allowed for provider 'static'; allowed: provider, path",
            "spec.gitGate.repos[r].key.path: required value: provider 'static' needs the private key's path on the controller host",
        ],
    );
    case(
        bottle(
            "gitGate: {repos: {r: {url: 'git@h:o/r.git', key: {provider: gitea, path: /k, apiUrl: 'h'}}}}",
        ),
        &[
            "spec.gitGate.repos[r].key.path: is not allowed for provider 'gitea'; allowed: provider, forgeToken, apiUrl",
            "spec.gitGate.repos[r].key.forgeToken: required value: provider 'gitea' needs an API token (secretKeyRef or hostEnv)",
            "spec.gitGate.repos[r].key.apiUrl: 'h' must start with http:// or https://",
        ],
    );
    case(
        bottle(
            "gitGate: {repos: {r: {url: 'git@h:o/r.git', hostKey: 'AAAA', key: {provider: gitea, forgeToken: {hostEnv: T}}}}}",
        ),
        &[
            "spec.gitGate.repos[r].hostKey: must be an SSH public host key line such as 'ssh-ed25519 AAAAC3...'",
        ],
    );
    case(
        bottle("gitGate: {repos: {r: {url: 'git@h:o/r.git'}}}"),
        &["spec.gitGate.repos[r].key: missing required 'key' block (provider static or gitea)"],
    );
    case(
        bottle("gitGate: {user: {name: \"a\\nb\"}}"),
        &["spec.gitGate.user.name: must not contain control characters or newlines"],
    );
}

#[test]
fn runtime_rules() {
    case(
        bottle("runtime: {cpu: '0', memory: 1Mi}"),
        &[
            "spec.runtime.cpu: must be greater than 0",
            "spec.runtime.memory: '1Mi' is below the 6Mi minimum a container engine accepts",
        ],
    );
    case(
        bottle("runtime: {cpu: two, memory: 4GB}"),
        &[
            "spec.runtime.cpu: 'two' has no valid number; expected a Kubernetes quantity such as 2, 1.5, 500m, 512Mi, 4Gi or 1G",
            "spec.runtime.memory: '4GB' has unknown suffix 'GB'; expected a Kubernetes quantity such as 2, 1.5, 500m, 512Mi, 4Gi or 1G",
        ],
    );
    case(
        bottle("runtime: {cpu: 500m, memory: 512Mi, pids: 256, gvisor: off}"),
        &[],
    );
}

#[test]
fn agent_rules() {
    case(
        agent(
            "bottleRef: {name: Base}\nskills: [ok, ../x, /abs, ok]\nworkspace: {hostPath: rel/dir}\nlabel: \"a\\tb\"",
        ),
        &[
            "spec.bottleRef.name: 'Base' must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            "spec.skills[1]: '../x' must be a skill name (letters, digits, '.', '_', '-') or an absolute host directory",
            "spec.skills[3]: duplicate skill 'ok'",
            "spec.workspace.hostPath: must be an absolute directory on the controller host, got 'rel/dir'",
            "spec.label: must not contain control characters or newlines",
        ],
    );
    case(
        agent(&format!(
            "bottleRef: {{name: b}}\nlabel: {}",
            "x".repeat(65)
        )),
        &["spec.label: must be at most 64 characters long"],
    );
    case(
        agent("bottleRef: {name: b}\ngitUser: {email: \"a\\n\"}"),
        &["spec.gitUser.email: must not contain control characters or newlines"],
    );
    case(
        agent("bottleRef: {name: b}\nlifecycle: {idleSuspendAfter: 0s, ttl: soon}"),
        &[
            "spec.lifecycle.idleSuspendAfter: '0s' is no time at all: use more than 0",
            "spec.lifecycle.ttl: 'soon' is not a duration; use for example 90s, 5m, 1h30m or 7d",
        ],
    );
    case(
        agent("bottleRef: {name: b}\nsource: {agentRef: {name: Src}}"),
        &[
            "spec.source.agentRef.name: 'Src' must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
        ],
    );
    case(
        agent(
            "bottleRef: {name: b}\nlifecycle: {idleSuspendAfter: 30m, ttl: 8h, deleteAfterExit: true, keepSnapshot: true}",
        ),
        &[],
    );
}

#[test]
fn every_error_of_every_document_is_reported_at_once() {
    let text = format!(
        "{}---\n{}",
        bottle("egress: {log: 9, routes: [{host: A.com}]}\nsupervise: 1"),
        agent("bottleRef: {name: b}\ncolor: cyan\nbackend: x")
    );
    assert_eq!(
        errors(&text),
        vec![
            "spec.egress.log: must be less than or equal to 2",
            "spec.supervise: must be of type boolean, got integer",
            "spec.backend: unsupported value \"x\"; supported values: \"auto\", \"docker\", \"apple-container\", \"smolvm\"",
            "spec.color: unsupported value \"cyan\"; supported values: \"red\", \"green\", \"yellow\", \"blue\", \"magenta\"",
        ]
    );
}

#[test]
fn route_ports_and_plaintext_are_checked() {
    let errors = |yaml: &str| -> Vec<String> {
        let doc: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        match bb_crds::manifest::check_document(&doc, 1) {
            Ok(bb_crds::Resource::Bottle(b)) => {
                let mut ve = bb_crds::ValidationErrors::default();
                bb_crds::validate::bottle_spec(&b.spec, &mut ve);
                ve.errors.iter().map(ToString::to_string).collect()
            }
            Ok(_) => vec!["not a bottle".into()],
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    };
    let bottle = |route: &str| {
        format!(
            "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {{name: b}}\nspec:\n  egress:\n    routes:\n      - {route}\n"
        )
    };
    assert!(errors(&bottle("{host: a.com, ports: [443, 8443]}")).is_empty());
    assert!(errors(&bottle("{host: ollama, plainHttp: true, ports: [11434], auth: {scheme: Bearer, hostEnv: K, allowPlaintext: true}}")).is_empty());
    assert_eq!(
        errors(&bottle("{host: a.com, ports: [443, 443, 0]}")),
        vec![
            "spec.egress.routes[0].ports[1]: duplicate port 443",
            "spec.egress.routes[0].ports[2]: must be a port from 1 to 65535"
        ]
    );
    assert_eq!(
        errors(&bottle("{host: a.com, ports: []}")),
        vec![
            "spec.egress.routes[0].ports: must list at least one port; omit it for the default (443, or 80 with plainHttp)"
        ]
    );
    assert_eq!(
        errors(&bottle(
            "{host: a.com, auth: {scheme: Bearer, hostEnv: K, allowPlaintext: true}}"
        )),
        vec![
            "spec.egress.routes[0].auth.allowPlaintext: needs plainHttp: true on the route (without it the route is TLS-only and the credential never travels in clear)"
        ]
    );
    assert!(!errors(&bottle("{host: a.com, ports: [70000]}")).is_empty());
}
