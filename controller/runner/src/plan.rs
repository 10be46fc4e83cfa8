//! Turns an Agent, its resolved Bottle and its provider into what the backend realises, with no
//! I/O: the sidecar's typed policy and its text (rendered once, auth pointing at token files),
//! the agent container's spec and hash, and the secrets both need, by reference only. Reading
//! those references is the next step's job (`crate::resolve`).

use std::collections::BTreeMap;

use bb_crds::common::{SecretKeySelector, SecretSource};
use bb_crds::egress::{EgressRoute, EgressSpec};
use bb_crds::git_gate::GitRepo;
use bb_crds::{Agent, ResolvedBottle};

use crate::git_gate;
use crate::provider::{self, Provider};
use bb_backend::hash::sha256_hex;
use bb_backend::{AgentPlan, ImageSource};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// What was planned is not a policy the sidecar would load (a bug, never user input).
    #[error("internal: {0}")]
    Internal(String),
}

/// What an Agent's reconcile drives toward, before any secret is read.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sidecar's policy: the Bottle's routes (with approved grants merged in) and the
    /// provider's, each route's auth naming its token file (`route-N-token`).
    pub policy: EgressSpec,
    /// `policy` as the sidecar reads it, rendered once.
    pub policy_yaml: String,
    /// The secrets the sidecar and the agent need, named, not read.
    pub secrets: SecretRefs,
    /// The agent container; its `secret_env` and `credential_files` stay empty until resolved.
    pub agent: AgentPlan,
    /// Whether the Bottle runs the supervise MCP server.
    pub supervise: bool,
}

/// What `crate::resolve` reads for a `Plan`.
#[derive(Debug, Clone, Default)]
pub struct SecretRefs {
    /// Each route's token file and the source of its value.
    pub route_tokens: Vec<(String, SecretSource)>,
    /// Each secret environment variable of the agent and where its value comes from.
    pub env: Vec<(String, EnvSecret)>,
    /// git-gate's repositories: a static key is read from its file, a Gitea key is minted.
    pub git_repos: BTreeMap<String, GitRepo>,
}

/// Where one secret environment variable's value comes from.
#[derive(Debug, Clone)]
pub enum EnvSecret {
    SecretKey(SecretKeySelector),
    /// A variable of the runner's own environment.
    HostEnv(String),
}

/// Adds the provider's routes for hosts the Bottle has none for: the Bottle's own route for a
/// provider's host wins (it may narrow paths or add DLP).
fn with_provider_routes(routes: &mut Vec<EgressRoute>, extra: Vec<EgressRoute>) {
    for route in extra {
        if !routes.iter().any(|r| r.host == route.host) {
            routes.push(route);
        }
    }
}

/// How many routes a sidecar of this Bottle enforces: its own and its provider's.
pub fn route_count(resolved: &ResolvedBottle, provider_routes: Vec<EgressRoute>) -> usize {
    let mut routes = resolved
        .spec
        .egress
        .as_ref()
        .map(|e| e.routes().to_vec())
        .unwrap_or_default();
    with_provider_routes(&mut routes, provider_routes);
    routes.len()
}

/// The sidecar's typed policy for a resolved Bottle and its provider's routes, each route's
/// auth replaced by its token file, and the secret source behind each file.
pub fn sidecar_policy(
    resolved: &ResolvedBottle,
    provider_routes: Vec<EgressRoute>,
) -> (EgressSpec, Vec<(String, SecretSource)>) {
    let mut egress: EgressSpec = resolved.spec.egress.clone().unwrap_or_default();
    let routes = egress.routes.get_or_insert_with(Vec::new);
    with_provider_routes(routes, provider_routes);
    if routes.is_empty() {
        egress.routes = None;
    }
    let mut sources = Vec::new();
    for (i, route) in egress.routes.iter_mut().flatten().enumerate() {
        if let Some(auth) = route.auth.as_mut() {
            let file = format!("route-{i}-token");
            let source = std::mem::replace(
                &mut auth.token,
                SecretSource {
                    token_file: Some(file.clone()),
                    ..Default::default()
                },
            );
            sources.push((file, source));
        }
    }
    (egress, sources)
}

/// The policy's text, held to every rule the sidecar holds it to (so it is never handed
/// something it would refuse).
pub fn render_policy(policy: &EgressSpec) -> Result<String, PlanError> {
    bb_crds::policy::check_sidecar_policy(policy)
        .map_err(|e| PlanError::Internal(e.to_string()))?;
    serde_yaml::to_string(policy).map_err(|e| PlanError::Internal(e.to_string()))
}

/// `status.resolvedPolicyHash` of a resolved Bottle: the hash of its sidecar policy text.
/// A provider this controller cannot run yet contributes no routes: no Agent of the Bottle can
/// start (its status says why), and the hash still identifies the Bottle's own policy.
pub fn bottle_policy_hash(
    resolved: &ResolvedBottle,
    provider_routes: Vec<EgressRoute>,
) -> Result<String, PlanError> {
    let (policy, _) = sidecar_policy(resolved, provider_routes);
    Ok(bb_crds::policy::policy_hash(
        render_policy(&policy)?.as_bytes(),
    ))
}

/// The plan for `agent` of `resolved` (its grants already merged in) run by `provider`;
/// `supervise_url` is where the agent reaches the supervise MCP server, when it runs one.
pub fn plan(
    agent: &Agent,
    resolved: &ResolvedBottle,
    provider: &dyn Provider,
    supervise_url: Option<&str>,
) -> Result<Plan, PlanError> {
    let (policy, route_tokens) = sidecar_policy(resolved, provider.routes());
    let policy_yaml = render_policy(&policy)?;
    let env = secret_env_refs(resolved);
    let git_repos = git_gate::repos(resolved.spec.git_gate.as_ref());
    let mut agent_plan = agent_plan(agent, resolved, provider, supervise_url, &git_repos);
    // Sorted, as the resolved map's keys are: the hash is the same before and after resolving.
    let names: std::collections::BTreeSet<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    agent_plan.container_hash = container_hash_of(&agent_plan, &names);
    agent_plan.inputs_hash = inputs_hash(&agent_plan);
    Ok(Plan {
        policy,
        policy_yaml,
        secrets: SecretRefs {
            route_tokens,
            env,
            git_repos,
        },
        agent: agent_plan,
        supervise: resolved.spec.supervise(),
    })
}

/// What a warm pool's member is started from, and an Agent claiming it must match: the
/// container's identity and the sidecar's policy text.
pub fn pool_plan_hash(plan: &Plan) -> String {
    sha256_hex(&[
        plan.agent.container_hash.as_bytes(),
        plan.policy_yaml.as_bytes(),
    ])
}

/// The Bottle's secret environment variables (prompted ones are asked for by the attached
/// session, not the runner).
fn secret_env_refs(resolved: &ResolvedBottle) -> Vec<(String, EnvSecret)> {
    let mut out = Vec::new();
    for var in resolved.spec.env() {
        let Some(from) = var
            .value
            .is_none()
            .then_some(var.value_from.as_ref())
            .flatten()
        else {
            continue;
        };
        if let Some(sel) = &from.secret_key_ref {
            out.push((var.name.clone(), EnvSecret::SecretKey(sel.clone())));
        } else if let Some(h) = &from.host_env {
            out.push((var.name.clone(), EnvSecret::HostEnv(h.name.clone())));
        }
    }
    out
}

/// The agent container for the Agent's provider, secrets left out.
fn agent_plan(
    agent: &Agent,
    resolved: &ResolvedBottle,
    provider: &dyn Provider,
    supervise_url: Option<&str>,
    repos: &BTreeMap<String, GitRepo>,
) -> AgentPlan {
    let view = provider::AgentView {
        supervise_url,
        ..provider::AgentView::of(agent)
    };
    let mut env = provider.env();
    if let Some(url) = supervise_url {
        env.insert("MCP_SUPERVISE_URL".into(), url.into());
    }
    for var in resolved.spec.env() {
        if let Some(v) = &var.value {
            env.insert(var.name.clone(), v.clone());
        }
    }
    let gate = resolved.spec.git_gate.as_ref();
    let gitconfig = git_gate::agent_gitconfig(
        git_gate::identity(
            gate.and_then(|g| g.user.as_ref()),
            agent.spec.git_user.as_ref(),
        )
        .as_ref(),
        repos,
    );
    AgentPlan {
        image: provider.image(),
        command: provider.attach_command(&view),
        env,
        secret_env: BTreeMap::new(),
        runtime: resolved.spec.runtime.clone().unwrap_or_default(),
        prompt: agent.spec.prompt.clone(),
        workspace: agent.spec.workspace.clone(),
        gitconfig,
        dirs: provider.dirs(),
        files: provider.files(&view),
        credential_files: Vec::new(),
        skills: agent.spec.skills.clone().unwrap_or_default(),
        skills_dir: provider.skills_dir(),
        container_hash: String::new(),
        inputs_hash: String::new(),
    }
}

/// `container_hash_of` with the names of the plan's resolved secret variables.
pub fn container_hash(plan: &AgentPlan) -> String {
    let names: Vec<&str> = plan.secret_env.keys().map(String::as_str).collect();
    container_hash_of(plan, &names)
}

/// The identity of the agent container: everything it is made from (image, env, runtime,
/// secret names, the provider's directories), so a change to any of it gives a new container.
/// Secret values are left out (they reach sessions at exec time), their names are not. What
/// provisioning delivers of the Agent's own is `inputs_hash`: a warm pool's member is made from
/// its Bottle alone, and the Agent claiming it matches it here.
fn container_hash_of(plan: &AgentPlan, secret_names: &[&str]) -> String {
    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }
    fn image_key(image: &ImageSource) -> String {
        match image {
            ImageSource::Reference(r) => format!("ref:{r}"),
            ImageSource::Dockerfile(d) => format!("dockerfile:{d}"),
            ImageSource::Builtin(b) => format!(
                "builtin:{}:{}",
                b.name,
                sha256_hex(&[b.dockerfile.as_bytes()])
            ),
            // An approved capability waits for the agent's next start unless asked to restart
            // it: only then is it part of the running container's identity.
            ImageSource::Capability {
                base,
                dockerfile,
                restart,
            } => match restart {
                true => format!(
                    "{}+capability:{}",
                    image_key(base),
                    sha256_hex(&[dockerfile.as_bytes()])
                ),
                false => image_key(base),
            },
        }
    }
    let dirs: Vec<String> = plan
        .dirs
        .iter()
        .map(|d| format!("{}:{:o}", d.guest_path, d.mode))
        .collect();
    sha256_hex(&[
        image_key(&plan.image).as_bytes(),
        &json(&plan.env),
        &json(&plan.runtime),
        secret_names.join(",").as_bytes(),
        dirs.join(",").as_bytes(),
        plan.skills_dir.as_bytes(),
    ])
}

/// What provisioning delivers of the Agent's own: its prompt and the command made from it,
/// workspace, skills, git identity and the provider's files (label, colour, settings). The
/// provisioning marker records it; a container provisioned with other inputs than its plan's is
/// replaced (a pool member's are delivered into it instead). The placeholder copies of a host
/// login are left out: the host refreshing its login never replaces the agent.
pub fn inputs_hash(plan: &AgentPlan) -> String {
    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }
    let mut parts: Vec<Vec<u8>> = vec![
        plan.command.join("\u{0}").into_bytes(),
        json(&plan.prompt),
        json(&plan.workspace),
        json(&plan.gitconfig),
        plan.skills.join("\u{0}").into_bytes(),
    ];
    for f in &plan.files {
        parts.push(format!("{}:{:o}", f.guest_path, f.mode).into_bytes());
        parts.push(f.contents.clone());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    sha256_hex(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb_backend::{ProvisionDir, ProvisionFile, SecretBytes};

    /// A Bottle with an authenticated route, a secret and a plain env var, and git-gate.
    fn bottle() -> ResolvedBottle {
        let spec: bb_crds::bottle::BottleSpec = serde_json::from_value(serde_json::json!({
            "agentProvider": {"template": "custom", "image": "img:1", "command": ["sh"]},
            "env": [
                {"name": "PLAIN", "value": "1"},
                {"name": "ZED", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "ALPHA", "valueFrom": {"hostEnv": {"name": "HOME"}}}
            ],
            "egress": {"routes": [
                {"host": "a.test"},
                {"host": "b.test", "auth": {"scheme": "Bearer", "secretKeyRef": {"name": "t", "key": "token"}}}
            ]},
            "gitGate": {"repos": {"app": {"url": "ssh://git@forge.test/team/app.git"}}}
        }))
        .expect("bottle spec");
        ResolvedBottle {
            name: "b".into(),
            chain: vec!["b".into()],
            spec,
            route_origins: Vec::new(),
        }
    }

    fn agent() -> Agent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": bb_crds::API_VERSION, "kind": "Agent",
            "metadata": {"name": "a", "namespace": "default", "uid": "u1"},
            "spec": {"bottleRef": {"name": "b"}, "prompt": "go"}
        }))
        .expect("agent")
    }

    /// A plan names its secrets without reading them, and its container hash is the one the
    /// resolved plan has: resolving never makes a running container look out of date.
    #[test]
    fn a_plan_names_its_secrets_and_hashes_as_resolved() {
        let b = bottle();
        let provider = crate::provider::of_bottle(&b).expect("provider");
        let p = plan(&agent(), &b, provider.as_ref(), None).expect("plan");
        let files: Vec<&str> = p
            .secrets
            .route_tokens
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(files, ["route-1-token"]);
        let names: Vec<&str> = p.secrets.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ZED", "ALPHA"]);
        assert_eq!(p.secrets.git_repos.len(), 1);
        assert!(p.agent.secret_env.is_empty());
        assert_eq!(p.agent.env.get("PLAIN").map(String::as_str), Some("1"));
        let mut resolved = p.agent.clone();
        for (name, _) in &p.secrets.env {
            resolved
                .secret_env
                .insert(name.clone(), SecretBytes::new(b"v".to_vec()));
        }
        assert_eq!(container_hash(&resolved), p.agent.container_hash);
        // And the names are part of it (a positive control for the comparison above).
        resolved.secret_env.remove("ZED");
        assert_ne!(container_hash(&resolved), p.agent.container_hash);
    }

    /// The policy is rendered once and never parsed back at run time; this is the proof that
    /// its text reads back as exactly the typed policy the runner planned and reports.
    #[test]
    fn the_rendered_policy_reads_back_as_planned() {
        let b = bottle();
        let provider = crate::provider::of_bottle(&b).expect("provider");
        let p = plan(&agent(), &b, provider.as_ref(), None).expect("plan");
        let read =
            bb_crds::policy::parse_sidecar_policy(&p.policy_yaml).expect("the sidecar reads it");
        assert_eq!(read, p.policy);
        assert_eq!(
            read.routes()[1]
                .auth
                .as_ref()
                .and_then(|a| a.token.token_file.as_deref()),
            Some("route-1-token")
        );
    }

    /// What the sidecar would refuse is refused at planning, before anything is rendered.
    #[test]
    fn a_policy_the_sidecar_would_refuse_is_not_rendered() {
        let mut b = bottle();
        let routes = b
            .spec
            .egress
            .as_mut()
            .and_then(|e| e.routes.as_mut())
            .expect("routes");
        let dup = routes[0].clone();
        routes.push(dup);
        let provider = crate::provider::of_bottle(&b).expect("provider");
        let e = plan(&agent(), &b, provider.as_ref(), None).expect_err("duplicate host");
        assert!(e.to_string().contains("duplicate host"), "{e}");
    }

    fn base() -> AgentPlan {
        AgentPlan {
            image: ImageSource::Reference("img:1".into()),
            command: vec!["sh".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            runtime: Default::default(),
            prompt: Some("do it".into()),
            workspace: None,
            gitconfig: None,
            dirs: vec![ProvisionDir {
                guest_path: "/home/agent/.x".into(),
                mode: 0o700,
            }],
            files: vec![ProvisionFile {
                guest_path: "/home/agent/.x/label".into(),
                contents: b"blue".to_vec(),
                mode: 0o600,
            }],
            credential_files: Vec::new(),
            skills: vec!["review".into()],
            skills_dir: "/home/agent/.x/skills".into(),
            container_hash: String::new(),
            inputs_hash: String::new(),
        }
    }

    /// Everything the container is made from is its identity, and everything provisioning
    /// delivers is its inputs: a change that left both alone would leave an Agent "Running"
    /// with its old image, prompt, skills or workspace. An Agent's own inputs are never part of
    /// the container's identity (a pool member made without them must match its claimant).
    #[test]
    fn own_inputs_are_provisioned_and_the_rest_makes_the_container() {
        type Change = Box<dyn Fn(&mut AgentPlan)>;
        let made: Vec<(&str, Change)> = vec![
            (
                "image",
                Box::new(|p| p.image = ImageSource::Reference("img:2".into())),
            ),
            (
                "env",
                Box::new(|p| {
                    p.env.insert("A".into(), "1".into());
                }),
            ),
            ("dirs", Box::new(|p| p.dirs[0].mode = 0o755)),
            (
                "skills dir",
                Box::new(|p| p.skills_dir = "/elsewhere".into()),
            ),
        ];
        let own: Vec<(&str, Change)> = vec![
            ("command", Box::new(|p| p.command.push("-c".into()))),
            ("prompt", Box::new(|p| p.prompt = Some("do that".into()))),
            (
                "workspace",
                Box::new(|p| {
                    p.workspace = Some(bb_crds::agent::Workspace {
                        host_path: "/src".into(),
                        ..Default::default()
                    })
                }),
            ),
            (
                "gitconfig",
                Box::new(|p| p.gitconfig = Some("[user]\n\tname = n\n".into())),
            ),
            (
                "file contents",
                Box::new(|p| p.files[0].contents = b"red".to_vec()),
            ),
            ("file mode", Box::new(|p| p.files[0].mode = 0o644)),
            ("skills", Box::new(|p| p.skills.push("more".into()))),
        ];
        let (h, i) = (container_hash(&base()), inputs_hash(&base()));
        for (what, change) in made {
            let mut p = base();
            change(&mut p);
            assert_ne!(
                container_hash(&p),
                h,
                "{what} left the container hash unchanged"
            );
        }
        for (what, change) in own {
            let mut p = base();
            change(&mut p);
            assert_eq!(container_hash(&p), h, "{what} changed the container hash");
            assert_ne!(inputs_hash(&p), i, "{what} left the inputs hash unchanged");
        }
        assert_eq!(container_hash(&base()), h, "the hash is not deterministic");
        assert_eq!(
            inputs_hash(&base()),
            i,
            "the inputs hash is not deterministic"
        );
        // A refreshed host login is neither a new container nor new inputs.
        let mut p = base();
        p.credential_files.push(ProvisionFile {
            guest_path: "/home/agent/.codex/auth.json".into(),
            contents: b"{\"last_refresh\": \"later\"}".to_vec(),
            mode: 0o600,
        });
        assert_eq!(
            (container_hash(&p), inputs_hash(&p)),
            (h, i),
            "a host login refresh would replace the agent"
        );
    }
}
