//! `bbctl demo`, live: a private control plane and the Docker backend run one Agent in a bottle
//! beside a local HTTPS "internet"; from inside the agent one request is allowed (with a
//! credential the agent never holds) and one is refused; then everything is removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bb_controller::control_plane;
use bb_controller::demo::{DEBIAN_BASE, DemoRuntime, Fixture, HERMETIC_BASE};
use bb_crds::{Agent, AgentPhase};
use bb_home::Home;
use bb_runner::sessions::client;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::exit::{CliError, Kind};

const AGENT_DOCKERFILE: &str = include_str!("../../../images/test-agent/Dockerfile");
const UPSTREAM_PY: &str = include_str!("../../../images/demo-upstream/upstream.py");
/// hack/build-base-image.sh, carried by the binary so an installed bbctl can build it too.
const BASE_IMAGE_SCRIPT: &str = include_str!("../../../hack/build-base-image.sh");
const ALLOWED: &str = "api.demo.test";
const BLOCKED: &str = "exfil.demo.test";

fn step(text: &str) {
    eprintln!("==> {text}");
}

/// The demo's own CA and a certificate for the allowed host (PEM: ca, cert, key).
fn demo_pki() -> Result<(String, String, String), CliError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let err = |e: rcgen::Error| CliError::new(Kind::General, format!("demo certificates: {e}"));
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "bot-bottle demo upstream CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = CertificateParams::new(vec![ALLOWED.to_string()])
        .map_err(err)?
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(err)?;
    Ok((ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem()))
}

async fn apply(client: &kube::Client, value: serde_json::Value) -> Result<(), CliError> {
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pp = PatchParams::apply("bbctl").force();
    let result = match kind.as_str() {
        "Secret" => {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(client.clone(), bb_crds::common::DEFAULT_SECRET_NAMESPACE);
            api.patch(&name, &pp, &Patch::Apply(&value))
                .await
                .map(|_| ())
        }
        "Bottle" => {
            let api: Api<bb_crds::Bottle> = Api::all(client.clone());
            api.patch(&name, &pp, &Patch::Apply(&value))
                .await
                .map(|_| ())
        }
        _ => {
            let api: Api<Agent> = Api::namespaced(client.clone(), "default");
            api.patch(&name, &pp, &Patch::Apply(&value))
                .await
                .map(|_| ())
        }
    };
    result.map_err(|e| CliError::new(Kind::General, format!("applying {kind}/{name}: {e}")))
}

/// Waits for the Agent to run, printing each phase it passes through.
async fn wait_running(agents: &Api<Agent>, name: &str) -> Result<Agent, CliError> {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(900) {
        if let Ok(a) = agents.get(name).await {
            let status = a.status.clone().unwrap_or_default();
            if status.phase != last {
                if let Some(p) = status.phase {
                    eprintln!(
                        "    agent/{name}: {p} ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                last = status.phase;
            }
            match status.phase {
                Some(AgentPhase::Running) => return Ok(a),
                Some(AgentPhase::Failed) => {
                    return Err(CliError::new(
                        Kind::General,
                        format!(
                            "agent/{name} failed: {}",
                            status.message.unwrap_or_default()
                        ),
                    ));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(CliError::new(
        Kind::Unavailable,
        format!("agent/{name} did not start within 15 minutes"),
    ))
}

/// The hermetic base when present; else Debian's slim image, pulled if need be; else (no
/// registry) the hermetic base, built from Debian packages with debootstrap.
async fn choose_base(backend: &DemoRuntime) -> Result<String, CliError> {
    let present = |image: &'static str| async move { backend.has_image(image).await };
    if present(HERMETIC_BASE).await {
        return Ok(HERMETIC_BASE.to_string());
    }
    let slim = DEBIAN_BASE;
    if present(slim).await || backend.pull(slim).await {
        return Ok(slim.to_string());
    }
    step(&format!(
        "no registry reachable: building {HERMETIC_BASE} from Debian packages (debootstrap, about a minute)"
    ));
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(BASE_IMAGE_SCRIPT)
        .arg("build-base-image")
        .arg(HERMETIC_BASE)
        .status()
        .map_err(|e| CliError::new(Kind::Unavailable, format!("running bash: {e}")))?;
    if !status.success() {
        return Err(CliError::new(
            Kind::Unavailable,
            format!(
                "no base image: {slim} cannot be pulled and building {HERMETIC_BASE} failed; run hack/build-base-image.sh as root (needs debootstrap) or pass --base-image"
            ),
        ));
    }
    Ok(HERMETIC_BASE.to_string())
}

/// Image builds take minutes on a first run: show each Dockerfile step as it starts.
async fn print_build_progress(mut rx: tokio::sync::broadcast::Receiver<String>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(line) => {
                let line: String = line.chars().take(120).collect();
                eprintln!("    {line}");
            }
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

async fn start_upstream(
    backend: &DemoRuntime,
    agent: &Agent,
    name: &str,
    image: &str,
    cert: &str,
    key: &str,
) -> Result<(), CliError> {
    backend
        .start_upstream(
            agent,
            Fixture {
                name: name.to_string(),
                image: image.to_string(),
                command: vec![
                    "python3".into(),
                    "-u".into(),
                    "-c".into(),
                    UPSTREAM_PY.into(),
                ],
                env: vec![("CERT".into(), cert.into()), ("KEY".into(), key.into())],
                labels: HashMap::from([(
                    "bot-bottle.dev/demo".to_string(),
                    "upstream".to_string(),
                )]),
                network: String::new(),
                aliases: vec![ALLOWED.to_string()],
            },
        )
        .await
        .map_err(|e| CliError::new(Kind::Unavailable, format!("demo upstream: {e}")))
}

/// The demo's stand-in internet: a container name and its TLS certificate and key (PEM).
struct DemoUpstream {
    name: String,
    cert: String,
    key: String,
}

/// Where the demo reaches its Agent: the private control plane's kubeconfig and the runner's
/// session endpoint, the same door `bbctl exec` uses.
struct Door {
    kubeconfig: PathBuf,
    endpoint: String,
}

/// Runs `script` in the agent as its user through the runner; stdout (and stderr) as text.
async fn in_agent(door: &Door, agent: &Agent, script: &str) -> Result<String, CliError> {
    let target = super::target::Target {
        home: None,
        kubeconfig: Some(door.kubeconfig.clone()),
        context: None,
        namespace: None,
    };
    let runner = target.runner_client(agent, &door.endpoint).await?;
    let path = format!(
        "/apis/{}/namespaces/default/agents/{}/exec?{}",
        bb_crds::API_VERSION,
        agent.name_any(),
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("command", "sh"), ("command", "-c"), ("command", script)])
            .extend_pairs([("user", "1000"), ("stdout", "true"), ("stderr", "true")])
            .finish()
    );
    let got = client::collect(&runner, &path)
        .await
        .map_err(super::session::session_error)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&got.stderr)
    ))
}

pub fn run(base_image: Option<String>) -> Result<(), CliError> {
    super::dev_sidecar::ensure_built(None)?;
    let rt = super::runtime()?;
    let dir = std::env::temp_dir().join(format!("bot-bottle-demo-{}", std::process::id()));
    let result = rt.block_on(demo(&dir, base_image));
    let _ = std::fs::remove_dir_all(&dir);
    rt.shutdown_background();
    result
}

async fn demo(dir: &Path, base_image: Option<String>) -> Result<(), CliError> {
    std::fs::create_dir_all(dir.join("agent-image"))
        .map_err(|e| CliError::new(Kind::General, format!("{}: {e}", dir.display())))?;
    let home =
        Home::open(&dir.join("home")).map_err(|e| CliError::new(Kind::General, e.to_string()))?;
    let (ca, cert, key) = demo_pki()?;
    let ca_path = dir.join("upstream-ca.pem");
    let dockerfile = dir.join("agent-image/Dockerfile");
    for (path, text) in [
        (&ca_path, &ca),
        (&dockerfile, &AGENT_DOCKERFILE.to_string()),
    ] {
        std::fs::write(path, text)
            .map_err(|e| CliError::new(Kind::General, format!("{}: {e}", path.display())))?;
    }

    step("connecting to Docker");
    let instance = format!("demo-{}", std::process::id());
    let backend = DemoRuntime::connect(home.dir.as_path(), &instance, &ca_path)
        .await
        .map_err(|e| {
            CliError::new(
                Kind::Unavailable,
                format!("bbctl demo needs a running Docker engine: {e}"),
            )
        })?;
    let base = match base_image {
        Some(b) => b,
        None => choose_base(&backend).await?,
    };
    let backend = backend.with_base_image(&base);
    eprintln!("    images build on {base} (hack/build-base-image.sh makes one without a registry)");
    let progress = tokio::spawn(print_build_progress(backend.build_progress()));

    step("starting a private control plane");
    let emb = control_plane::embedded(
        home,
        "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::new(Kind::General, "address"))?,
    )
    .await
    .map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))?;
    let runner = backend
        .start_runner(emb.client.clone(), &instance, &emb.creds)
        .await
        .map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))?;
    let door = Door {
        kubeconfig: emb.kubeconfig.clone(),
        endpoint: runner
            .sessions
            .as_ref()
            .map(|s| s.endpoint().to_string())
            .unwrap_or_default(),
    };

    let upstream = DemoUpstream {
        name: format!("bb-demo-upstream-{}", std::process::id()),
        cert,
        key,
    };
    let outcome = run_agent(&emb.client, &backend, &door, &dockerfile, &base, &upstream).await;

    step("cleaning up (agent, sidecar, networks, upstream)");
    let agents: Api<Agent> = Api::namespaced(emb.client.clone(), "default");
    let _ = agents.delete("demo", &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && matches!(agents.get_opt("demo").await, Ok(Some(_))) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    backend.remove_upstream(&upstream.name).await;
    runner.shutdown(None).await;
    progress.abort();
    emb.server.shutdown().await;
    if outcome.is_ok() {
        eprintln!("    removed the agent, its sidecar, networks and the demo upstream");
    }
    outcome
}

async fn run_agent(
    client: &kube::Client,
    backend: &DemoRuntime,
    door: &Door,
    dockerfile: &Path,
    base: &str,
    upstream: &DemoUpstream,
) -> Result<(), CliError> {
    let (upstream_name, cert, key) = (upstream.name.as_str(), &upstream.cert, &upstream.key);
    let token = format!(
        "demo-token-{}",
        bb_home::pki::random_hex(8).map_err(|e| CliError::new(Kind::General, e.to_string()))?
    );
    step("applying a Bottle (one allowed host, credential injected) and an Agent");
    apply(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-token", "namespace": bb_crds::common::DEFAULT_SECRET_NAMESPACE}, "stringData": {"token": token}})).await?;
    apply(client, json!({
        "apiVersion": bb_crds::API_VERSION, "kind": "Bottle", "metadata": {"name": "demo"},
        "spec": {
            "agentProvider": {"template": "custom", "dockerfile": dockerfile.display().to_string(), "command": ["bash"]},
            "egress": {"log": 1, "routes": [{"host": ALLOWED, "auth": {"scheme": "Bearer", "secretKeyRef": {"name": "demo-token", "key": "token"}}}]}
        }
    })).await?;
    apply(client, json!({"apiVersion": bb_crds::API_VERSION, "kind": "Agent", "metadata": {"name": "demo", "namespace": "default"}, "spec": {"bottleRef": {"name": "demo"}, "label": "demo"}})).await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), "default");
    step("waiting for the agent (the first run builds the sidecar and agent images)");
    let agent = wait_running(&agents, "demo").await?;

    start_upstream(backend, &agent, upstream_name, base, cert, key).await?;
    step(&format!(
        "inside agent/{} ({}):",
        agent.name_any(),
        backend.agent_container(&agent)
    ));
    let mut allowed = String::new();
    for _ in 0..40 {
        allowed = in_agent(door, &agent, &format!("curl -sS -m 5 -H 'Authorization: Bearer egress-placeholder' https://{ALLOWED}/hello")).await?;
        if allowed.contains("hello from upstream") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("$ curl https://{ALLOWED}/hello\n{}", allowed.trim_end());
    let blocked = in_agent(
        door,
        &agent,
        &format!("curl -sS -m 5 -i http://{BLOCKED}/upload"),
    )
    .await?;
    println!(
        "\n$ curl -i http://{BLOCKED}/upload\n{}",
        blocked.trim_end()
    );
    let env = in_agent(door, &agent, "env | grep -c demo-token- || true").await?;
    let logs = backend.upstream_log(upstream_name).await;
    let injected = logs.contains(&format!("Bearer {token}"));
    println!(
        "\nthe upstream received the real credential: {}; the agent's environment holds it: {}",
        if injected { "yes" } else { "no" },
        if env.trim() == "0" { "no" } else { "YES" }
    );
    if !allowed.contains("hello from upstream")
        || !blocked.contains(" 403 ")
        || !injected
        || env.trim() != "0"
    {
        return Err(CliError::new(
            Kind::General,
            "the demo did not behave as expected (see above)",
        ));
    }
    Ok(())
}
